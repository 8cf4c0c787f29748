import Foundation
import Testing
import VigilAddressing
@testable import VigilDaemon

@Suite struct EventLoopTests {
    @Test func timersFireInDeadlineOrderAndCancelledOnesDoNot() {
        let loop = EventLoop()
        var fired: [String] = []
        let base = loop.now
        loop.schedule(at: base + .milliseconds(30)) { fired.append("c") }
        loop.schedule(at: base + .milliseconds(10)) { fired.append("a") }
        let cancelled = loop.schedule(at: base + .milliseconds(20)) { fired.append("x") }
        loop.schedule(at: base + .milliseconds(20)) { fired.append("b") }
        loop.cancel(cancelled)
        while loop.now < base + .milliseconds(60) { loop.runOnce(maximumWait: .milliseconds(5)) }
        #expect(fired == ["a", "b", "c"])
    }

    @Test func postedWorkRunsOnTheLoop() async {
        let loop = EventLoop()
        let flag = LockedFlag()
        Thread { loop.post { flag.set() } }.start()
        for _ in 0..<200 where !flag.value { loop.runOnce(maximumWait: .milliseconds(10)) }
        #expect(flag.value)
    }

    @Test func udpSocketsExchangeDatagramsOnLoopback() throws {
        let a = try UDPSocket(bindTo: Endpoint(IPAddress("127.0.0.1")!, 0))
        // Port 0 binds an ephemeral port; find it through a send to self.
        let b = try UDPSocket(bindTo: Endpoint(IPAddress("127.0.0.1")!, 0))
        var name = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &name) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(b.fd, $0, &length) } }
        let bPort = UInt16(bigEndian: name.sin_port)
        #expect(a.send([1, 2, 3], to: Endpoint(IPAddress("127.0.0.1")!, bPort)) == nil)
        var received: (bytes: [UInt8], from: Endpoint)?
        for _ in 0..<100 where received == nil {
            received = b.receive()
            if received == nil { usleep(1000) }
        }
        #expect(received?.bytes == [1, 2, 3])
        #expect(received?.from.address == IPAddress("127.0.0.1"))
    }
}

@Suite struct ControlAPITests {
    @Test func requestResponseAndStableErrorCodes() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-ctl-\(UUID().uuidString.prefix(8)).sock").path
        let loop = EventLoop()
        let server = try ControlServer(path: path, loop: loop) { request in
            switch request.command {
            case .status: .success(message: "fine")
            default: .failure(ControlError(.unknownMap, "no crypto map named \(request.map ?? "?")"))
            }
        }
        let done = LockedFlag()
        let results = ResultsBox()
        Thread {
            do {
                let client = try ControlClient(path: path)
                results.status = try client.send(ControlRequest(command: .status))
                results.clear = try client.send(ControlRequest(command: .clear, map: "NOPE"))
            } catch {
                results.failure = "\(error)"
            }
            done.set()
        }.start()
        for _ in 0..<500 where !done.value { loop.runOnce(maximumWait: .milliseconds(10)) }
        withExtendedLifetime(server) {}
        #expect(results.failure == nil)
        #expect(results.status?.ok == true && results.status?.message == "fine")
        #expect(results.clear?.ok == false)
        #expect(results.clear?.error?.code == .unknownMap)
        #expect(results.clear?.error?.message.contains("NOPE") == true)
    }

    @Test func clientReportsAMissingDaemonClearly() {
        do {
            _ = try ControlClient(path: "/nonexistent-vigil/vigil.sock")
            Issue.record("connected to nothing")
        } catch let error as ControlError {
            #expect(error.code == .daemonUnreachable)
            #expect(error.message.contains("is vigild running?"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}

final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised = false
    func set() { lock.lock(); raised = true; lock.unlock() }
    var value: Bool { lock.lock(); defer { lock.unlock() }; return raised }
}

final class ResultsBox: @unchecked Sendable {
    var status: ControlResponse?
    var clear: ControlResponse?
    var failure: String?
}
