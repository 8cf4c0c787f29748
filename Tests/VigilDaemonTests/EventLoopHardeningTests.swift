import Foundation
import Testing
import VigilAddressing
@testable import VigilDaemon

/// Issue 13, defect 6: nothing that arrives from the network may grow a queue without bound or keep timers from
/// running on schedule.
@Suite struct EventLoopHardeningTests {
    @Test func cancelledTimersDoNotStayInTheHeap() {
        let loop = EventLoop()
        let far = loop.now + .seconds(3600)
        var handles: [EventLoop.TimerHandle] = []
        for _ in 0..<10_000 { handles.append(loop.schedule(at: far) {}) }
        // An on-demand DPD detector reschedules on every packet: schedule, cancel, schedule...
        for handle in handles.dropLast(100) { loop.cancel(handle) }
        #expect(loop.pendingTimerEntries < 2 * EventLoop.Limits.cancelledTimersBeforeCompaction)
        // The survivors still fire, in order.
        var fired: [Int] = []
        let soon = loop.now
        for index in 0..<3 { loop.schedule(at: soon + .milliseconds(Int64(3 - index))) { fired.append(index) } }
        while fired.count < 3 { loop.runOnce(maximumWait: .milliseconds(2)) }
        #expect(fired == [2, 1, 0])
    }

    @Test func droppablePostsAreBoundedAndCounted() {
        let loop = EventLoop()
        let ran = LockedCounter()
        var accepted = 0
        for _ in 0..<10_000 where loop.postDroppable({ ran.increment() }) { accepted += 1 }
        #expect(accepted == EventLoop.Limits.droppablePosts)
        #expect(loop.refusedPosts == UInt64(10_000 - EventLoop.Limits.droppablePosts))
        // Work that must not be lost is never refused.
        let signal = LockedCounter()
        loop.post { signal.increment() }
        loop.runOnce(maximumWait: .zero)
        #expect(ran.value == EventLoop.Limits.droppablePosts)
        #expect(signal.value == 1)
        // Once drained, the queue accepts again.
        let again = loop.postDroppable {}
        #expect(again)
    }

    @Test func dueTimersRunBeforeReadableSocketsInARound() throws {
        let loop = EventLoop()
        let socket = try UDPSocket(bindTo: Endpoint(IPAddress("127.0.0.1")!, 0))
        let port = try Self.port(of: socket)
        var order: [String] = []
        loop.watch(socket.fd) { socket.receive(atMost: 1) { _, _ in order.append("datagram") } }
        #expect(socket.send([1], to: Endpoint(IPAddress("127.0.0.1")!, port)) == nil)
        loop.schedule(at: loop.now) { order.append("timer") }
        var rounds = 0
        while order.count < 2, rounds < 1_000 {
            loop.runOnce(maximumWait: .milliseconds(10))
            rounds += 1
        }
        #expect(order == ["timer", "datagram"])
    }

    @Test func oneRoundReadsAtMostItsBudget() throws {
        let socket = try UDPSocket(bindTo: Endpoint(IPAddress("127.0.0.1")!, 0))
        let target = Endpoint(IPAddress("127.0.0.1")!, try Self.port(of: socket))
        let sender = try UDPSocket(bindTo: Endpoint(IPAddress("127.0.0.1")!, 0))
        for index in 0..<100 { #expect(sender.send([UInt8(index)], to: target) == nil) }
        var seen: [UInt8] = []
        // Loopback delivery is synchronous, so all 100 are queued now.
        let first = socket.receive(atMost: EventLoop.Limits.readsPerRound) { bytes, _ in seen += bytes }
        let second = socket.receive(atMost: EventLoop.Limits.readsPerRound) { bytes, _ in seen += bytes }
        #expect(first == EventLoop.Limits.readsPerRound)
        #expect(second == 100 - EventLoop.Limits.readsPerRound)
        #expect(seen == (0..<100).map { UInt8($0) })
    }

    @Test func aReceivedDatagramDoesNotPinTheReceiveBuffer() throws {
        let socket = try UDPSocket(bindTo: Endpoint(IPAddress("127.0.0.1")!, 0))
        let target = Endpoint(IPAddress("127.0.0.1")!, try Self.port(of: socket))
        #expect(socket.send([UInt8](repeating: 7, count: 40), to: target) == nil)
        let received = try #require(socket.receive())
        #expect(received.bytes.count == 40)
        #expect(received.bytes.capacity < 1_024)
    }

    @Test func logLinesAreRateLimitedWithOneSummaryByReason() {
        var limiter = LogRateLimiter()
        var written = 0
        var summaries: [String] = []
        var counters: [String: UInt64] = ["ikev2.malformedDropped": 5, "ikev2.cookiesSent": 0]
        for index in 0..<1_000 {
            counters["ikev2.malformedDropped", default: 0] += 1
            if index % 2 == 0 { counters["ikev2.cookiesSent", default: 0] += 1 }
            let now = Duration.milliseconds(Int64(index))  // one second of flood: one interval
            let (write, summary) = limiter.admit(now: now, isError: false, counters: { counters })
            if write { written += 1 }
            if let summary { summaries.append(summary) }
        }
        #expect(written == LogRateLimiter.Limits.burst)
        #expect(summaries.isEmpty)
        #expect(!limiter.intervalEnded(now: .milliseconds(1_000)))
        #expect(limiter.intervalEnded(now: LogRateLimiter.Limits.interval))
        let summary = limiter.flush(now: LogRateLimiter.Limits.interval, counters: counters)
        #expect(summary?.hasPrefix("suppressed \(1_000 - LogRateLimiter.Limits.burst) log lines") == true)
        // Deltas since the interval began (the first admit already counted one malformed datagram).
        #expect(summary?.contains("ikev2.malformedDropped=999") == true)
        #expect(summary?.contains("ikev2.cookiesSent=499") == true)
        // A quiet interval writes no summary.
        #expect(limiter.flush(now: LogRateLimiter.Limits.interval * 3, counters: counters) == nil)
        // Errors are always written.
        var errors = LogRateLimiter()
        for index in 0..<200 { _ = errors.admit(now: .milliseconds(Int64(index)), isError: false, counters: { [:] }) }
        #expect(errors.admit(now: .milliseconds(300), isError: true, counters: { [:] }).write)
    }

    static func port(of socket: UDPSocket) throws -> UInt16 {
        var name = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let status = withUnsafeMutablePointer(to: &name) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket.fd, $0, &length) } }
        try #require(status == 0)
        return UInt16(bigEndian: name.sin_port)
    }
}

final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
