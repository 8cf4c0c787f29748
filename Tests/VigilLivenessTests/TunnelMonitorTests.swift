import Testing
@testable import VigilLiveness

private let identifier: UInt16 = 0x4242
private func monitor(threshold: Int = 3) -> TunnelMonitor {
    TunnelMonitor(configuration: .init(interval: .seconds(2), threshold: threshold))
}
private func send(_ sequence: UInt16) -> TunnelMonitor.Action { .sendEchoRequest(identifier: identifier, sequence: sequence) }
private func reply(_ sequence: UInt16, identifier: UInt16 = identifier) -> TunnelMonitor.Event {
    .echoReplyReceived(identifier: identifier, sequence: sequence)
}

@Suite struct TunnelMonitorTests {
    /// Interval 2 s, threshold 3, nothing answered: the type's documented example.
    @Test func silentDataPathIsDeclaredDeadAfterThresholdIntervals() {
        var subject = monitor()
        var log = [(Duration.zero, subject.handle(.start(identifier: identifier, firstSequence: 7), now: .zero)!)]
        log += run(&subject, until: .seconds(60))
        let expected: [(Duration, TunnelMonitor.Action)] = [
            (.zero, send(7)), (.seconds(2), send(8)), (.seconds(4), send(9)),
            (.seconds(6), .dataPathDead(.init(unanswered: 3, lastReply: nil, startedAt: .zero, declaredAt: .seconds(6)))),
        ]
        #expect(log.map(\.0) == expected.map(\.0))
        #expect(log.map(\.1) == expected.map(\.1))
        #expect(subject.isDead)
        #expect(subject.nextWakeup == nil)
    }

    @Test func answeredRequestsKeepTheMonitorRunning() {
        var subject = monitor()
        _ = subject.handle(.start(identifier: identifier, firstSequence: 0), now: .zero)
        // Each request answered 50 ms after it went out.
        let inputs = (0..<30).map { (Duration.seconds(2) * $0 + .milliseconds(50), reply(UInt16($0))) }
        let log = run(&subject, until: .seconds(60), inputs: inputs)
        #expect(!log.contains { if case .dataPathDead = $0.1 { true } else { false } })
        #expect(subject.isRunning)
    }

    @Test func aReplyEndsTheRowOfUnansweredRequests() {
        var subject = monitor()
        _ = subject.handle(.start(identifier: identifier, firstSequence: 0), now: .zero)
        // Requests 0 and 1 unanswered, 2 answered, then silence: dead three intervals after request 3 went out.
        let log = run(&subject, until: .seconds(60), inputs: [(.seconds(4) + .milliseconds(10), reply(2))])
        let deaths = log.filter { if case .dataPathDead = $0.1 { true } else { false } }
        #expect(deaths.map(\.0) == [.seconds(12)])
        #expect(deaths.first?.1 == .dataPathDead(.init(unanswered: 3, lastReply: .seconds(4) + .milliseconds(10),
                                                        startedAt: .zero, declaredAt: .seconds(12))))
    }

    @Test func aLateReplyToARequestAlreadyCountedStillCounts() {
        var subject = monitor()
        _ = subject.handle(.start(identifier: identifier, firstSequence: 0), now: .zero)
        // Request 0 is answered after its interval (counted unanswered at 2 s), at 3 s: the row starts again.
        let log = run(&subject, until: .seconds(60), inputs: [(.seconds(3), reply(0))])
        let deaths = log.filter { if case .dataPathDead = $0.1 { true } else { false } }
        #expect(deaths.map(\.0) == [.seconds(8)])
    }

    /// Only fresh input counts: a duplicate, a foreign identifier, a sequence never sent, one that left the window.
    @Test func staleDuplicateAndForeignRepliesAreIgnored() {
        var subject = monitor()
        _ = subject.handle(.start(identifier: identifier, firstSequence: 100), now: .zero)
        let inputs: [(Duration, TunnelMonitor.Event)] = [
            (.milliseconds(10), reply(100)),                          // fresh: answers request 100
            (.milliseconds(20), reply(100)),                          // duplicate
            (.seconds(3), reply(101, identifier: identifier &+ 1)),   // another pinger's
            (.seconds(5), reply(150)),                                // never sent
            (.seconds(5), reply(99)),                                 // before the run
        ]
        let log = run(&subject, until: .seconds(60), inputs: inputs)
        // Request 100 answered; 101, 102, 103 unanswered: dead at 2 s + 3 × 2 s.
        let deaths = log.filter { if case .dataPathDead = $0.1 { true } else { false } }
        #expect(deaths.map(\.0) == [.seconds(8)])
        #expect(deaths.first?.1 == .dataPathDead(.init(unanswered: 3, lastReply: .milliseconds(10), startedAt: .zero,
                                                        declaredAt: .seconds(8))))
    }

    @Test func aReplyOlderThanTheWindowIsStale() {
        var subject = monitor(threshold: 2)
        _ = subject.handle(.start(identifier: identifier, firstSequence: 0), now: .zero)
        // With threshold 2 the window holds the last two requests: after 6 s those are 2 and 3, so 0 is stale.
        let log = run(&subject, until: .seconds(60), inputs: [(.milliseconds(2500), reply(1)), (.milliseconds(6500), reply(0))])
        let deaths = log.filter { if case .dataPathDead = $0.1 { true } else { false } }
        #expect(deaths.map(\.0) == [.seconds(8)])
    }

    @Test func stopEndsTheRunAndItsRepliesAreIgnored() {
        var subject = monitor()
        _ = subject.handle(.start(identifier: identifier, firstSequence: 0), now: .zero)
        #expect(subject.handle(.stop, now: .seconds(1)) == nil)
        #expect(subject.nextWakeup == nil)
        #expect(subject.handle(reply(0), now: .seconds(1)) == nil)
        #expect(subject.handle(.timerFired, now: .seconds(10)) == nil)
        #expect(!subject.isDead && !subject.isRunning)
    }

    /// A new active peer is a new run: the old identifier's replies no longer count, and the count starts afresh.
    @Test func restartBeginsANewRun() {
        var subject = monitor()
        _ = subject.handle(.start(identifier: identifier, firstSequence: 0), now: .zero)
        _ = run(&subject, until: .seconds(6))
        #expect(subject.isDead)
        let first = subject.handle(.start(identifier: 9, firstSequence: 500), now: .seconds(7))
        #expect(first == .sendEchoRequest(identifier: 9, sequence: 500))
        #expect(subject.nextWakeup == .seconds(9))
        _ = subject.handle(reply(0), now: .seconds(8))
        let log = run(&subject, until: .seconds(60))
        #expect(log.last?.0 == .seconds(13))
    }

    @Test func earlyTimerDoesNothingAndALateOneSendsTheNextRequestAtOnce() {
        var subject = monitor()
        _ = subject.handle(.start(identifier: identifier, firstSequence: 0), now: .zero)
        #expect(subject.handle(.timerFired, now: .seconds(1)) == nil)
        // 1.5 s late: request 0 counted, request 1 sent now, given its full interval.
        #expect(subject.handle(.timerFired, now: .milliseconds(3500)) == send(1))
        #expect(subject.nextWakeup == .milliseconds(5500))
    }

    @Test func sequenceNumbersWrap() {
        var subject = monitor()
        #expect(subject.handle(.start(identifier: identifier, firstSequence: .max), now: .zero) == send(.max))
        #expect(subject.handle(.timerFired, now: .seconds(2)) == send(0))
    }

    @Test func thresholdOneDiesAfterOneUnansweredRequest() {
        var subject = monitor(threshold: 1)
        _ = subject.handle(.start(identifier: identifier, firstSequence: 0), now: .zero)
        #expect(subject.handle(.timerFired, now: .seconds(2))
                == .dataPathDead(.init(unanswered: 1, lastReply: nil, startedAt: .zero, declaredAt: .seconds(2))))
    }
}

@Suite struct ICMPEchoTests {
    /// An IPv4 header (IHL 5, protocol 1) in front of an ICMP message, as a raw socket reads it.
    private func datagram(_ message: [UInt8], headerWords: UInt8 = 5, protocolNumber: UInt8 = 1) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: Int(headerWords) * 4)
        header[0] = 0x40 | headerWords
        header[9] = protocolNumber
        return header + message
    }

    private func reply(toRequest request: [UInt8]) -> [UInt8] {
        var message = request
        message[0] = ICMPEcho.echoReplyType
        message[2] = 0
        message[3] = 0
        let sum = ICMPEcho.checksum(message)
        message[2] = UInt8(sum >> 8)
        message[3] = UInt8(sum & 0xFF)
        return message
    }

    @Test func requestHasTypeIdentifierSequenceAndAValidChecksum() {
        let request = ICMPEcho.request(identifier: 0x1234, sequence: 0xABCD)
        #expect(Array(request.prefix(2)) == [8, 0])
        #expect(Array(request[4..<8]) == [0x12, 0x34, 0xAB, 0xCD])
        #expect(Array(request[8...]) == ICMPEcho.payload)
        #expect(ICMPEcho.checksum(request) == 0)
    }

    /// RFC 1071 §3's worked example: the sum of 0001 f203 f4f5 f6f7 is ddf2, its complement 220d.
    @Test func checksumFollowsRFC1071() {
        #expect(ICMPEcho.checksum([0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]) == 0x220D)
        #expect(ICMPEcho.checksum([0xFF]) == 0x00FF)
    }

    @Test func replyIsReadAfterTheIPv4Header() {
        let answer = reply(toRequest: ICMPEcho.request(identifier: 7, sequence: 9))
        #expect(ICMPEcho.reply(inIPv4Datagram: datagram(answer))! == (7, 9))
        // With IPv4 options (IHL 6).
        #expect(ICMPEcho.reply(inIPv4Datagram: datagram(answer, headerWords: 6))! == (7, 9))
    }

    @Test func anythingButAValidEchoReplyIsRefused() {
        let request = ICMPEcho.request(identifier: 7, sequence: 9)
        let answer = reply(toRequest: request)
        #expect(ICMPEcho.reply(inIPv4Datagram: datagram(request)) == nil)                      // a request
        #expect(ICMPEcho.reply(inIPv4Datagram: datagram(answer, protocolNumber: 17)) == nil)   // not ICMP
        var corrupted = answer
        corrupted[7] ^= 1
        #expect(ICMPEcho.reply(inIPv4Datagram: datagram(corrupted)) == nil)                    // bad checksum
        #expect(ICMPEcho.reply(inIPv4Datagram: Array(datagram(answer).prefix(27))) == nil)     // truncated
        #expect(ICMPEcho.reply(inIPv4Datagram: [0x4F] + [UInt8](repeating: 0, count: 30)) == nil)  // IHL beyond it
        #expect(ICMPEcho.reply(inIPv4Datagram: [0x45, 0, 0]) == nil)
        #expect(ICMPEcho.reply(inIPv4Datagram: [0x60] + Array(datagram(answer).dropFirst())) == nil)  // version 6
    }
}
