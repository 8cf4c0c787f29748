import Foundation
import Testing
@testable import VigilDaemon

#if canImport(Glibc)
import Glibc
#endif

/// sd_notify(3) as systemd reads it: a datagram socket of the test's own as NOTIFY_SOCKET.
@Suite struct SystemdNotifierTests {
    /// A bound AF_UNIX datagram socket standing in for systemd's notification socket.
    final class FakeSystemd {
        let descriptor: Int32
        let name: String
        private let path: String?

        init(abstract: Bool) throws {
            descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            let unique = "vigil-notify-\(getpid())-\(UUID().uuidString.prefix(8))"
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes: [UInt8] = abstract ? [0] + Array(unique.utf8) : Array((NSTemporaryDirectory() + unique).utf8)
            path = abstract ? nil : NSTemporaryDirectory() + unique
            name = abstract ? "@" + unique : path!
            withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
            let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (abstract ? 0 : 1))
            let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) } }
            guard bound == 0 else { throw SystemdNotifier.Failure(description: "bind: \(String(cString: strerror(errno)))") }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit {
            close(descriptor)
            if let path { unlink(path) }
        }

        /// The next datagram (waits up to 10 s), as its assignments.
        func receive() -> [String: String]? {
            var buffer = [UInt8](repeating: 0, count: 8192)
            let count = recv(descriptor, &buffer, buffer.count, 0)
            guard count > 0 else { return nil }
            var assignments: [String: String] = [:]
            for line in String(decoding: buffer[..<count], as: UTF8.self).split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1)
                assignments[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
            }
            return assignments
        }
    }

    @Test(arguments: [false, true])
    func readyStatusWatchdogAndStoppingReachTheSocket(abstract: Bool) throws {
        let systemd = try FakeSystemd(abstract: abstract)
        let notifier = try #require(try SystemdNotifier(environment: ["NOTIFY_SOCKET": systemd.name]))
        #expect(try notifier.ready(status: "LAB/10 established with 192.0.2.11\nsecond line").get() == ())
        let ready = try #require(systemd.receive())
        #expect(ready["READY"] == "1")
        #expect(ready["STATUS"] == "LAB/10 established with 192.0.2.11; second line")
        #expect(ready["MAINPID"] == String(getpid()))
        _ = notifier.watchdog()
        #expect(systemd.receive() == ["WATCHDOG": "1"])
        _ = notifier.reloading()
        #expect(systemd.receive() == ["RELOADING": "1"])
        _ = notifier.stopping()
        #expect(systemd.receive() == ["STOPPING": "1"])
    }

    @Test func noNotifySocketMeansNoNotifier() throws {
        #expect(try SystemdNotifier(environment: [:]) == nil)
        #expect(try SystemdNotifier(environment: ["NOTIFY_SOCKET": ""]) == nil)
    }

    @Test func aRelativeOrOverlongSocketNameIsRefusedWithTheReason() {
        #expect { try SystemdNotifier(environment: ["NOTIFY_SOCKET": "run/notify"]) } throws: {
            ($0 as? SystemdNotifier.Failure)?.description.contains("absolute path") == true
        }
        #expect { try SystemdNotifier(environment: ["NOTIFY_SOCKET": "/" + String(repeating: "x", count: 200)]) } throws: {
            ($0 as? SystemdNotifier.Failure)?.description.contains("longer than") == true
        }
    }

    @Test func aVanishedSocketIsAFailureNotATrap() throws {
        let notifier = try #require(try SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/vigil-notify"]))
        guard case .failure(let failure) = notifier.watchdog() else { Issue.record("sent to a socket that does not exist"); return }
        #expect(failure.description.contains("/nonexistent/vigil-notify"))
    }

    @Test func theWatchdogPingsAtHalfTheIntervalOnlyForThisProcess() {
        #expect(SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": "20000000"], processID: 42) == .seconds(10))
        #expect(SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "42"], processID: 42) == .seconds(10))
        #expect(SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "43"], processID: 42) == nil)
        #expect(SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": "0"], processID: 42) == nil)
        #expect(SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": "soon"], processID: 42) == nil)
        #expect(SystemdNotifier.watchdogInterval([:], processID: 42) == nil)
    }

    @Test func theStatusLineNamesEveryEntry() {
        let entry = { (map: String, sequence: Int, state: String) in
            StatusReport.Entry(map: map, sequence: sequence, ikeVersion: "v2", peers: [], preferredPeer: nil, state: state,
                               activePeer: nil, ikeSAs: [], childSAs: [], dpd: "periodic")
        }
        let report = StatusReport(uptime: 1, dataplane: "userspace", entries: [
            entry("LAB", 10, "established with 192.0.2.11"), entry("BRANCH", 20, "connecting to 198.51.100.2 (attempt 2)"),
        ])
        #expect(report.systemdStatus == "LAB/10 established with 192.0.2.11, BRANCH/20 connecting to 198.51.100.2 (attempt 2)")
        #expect(StatusReport(uptime: 0, dataplane: "userspace", entries: []).systemdStatus == "no crypto-map entries")
    }
}
