import Foundation
import Testing
@testable import VigilDaemon
import VigilLab

#if canImport(Glibc)
import Glibc
#endif

/// sd_notify(3) as systemd reads it: a datagram socket of the test's own as NOTIFY_SOCKET.
@Suite struct SystemdNotifierTests {
    @Test(arguments: [false, true])
    func readyStatusWatchdogAndStoppingReachTheSocket(abstract: Bool) throws {
        let systemd = try NotifySocket(abstract: abstract)
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
