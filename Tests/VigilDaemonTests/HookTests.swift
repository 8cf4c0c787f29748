import Foundation
import Synchronization
import Testing
import VigilLab
import VigilAddressing
import VigilConfig
@testable import VigilDaemon

/// Updown hooks (issue 15): the pure part (which hooks an event runs, the exact environment, the bounds) and the
/// runner against real scripts (environment recorded, a run killed at its timeout, exit statuses).
@Suite struct HookPlanTests {
    static let occasion = HookOccasion(
        event: .failover, map: "SITE-A", sequence: 10, ikeVersion: .v2, peer: "198.51.100.2", previousPeer: "198.51.100.1",
        localSubnets: [try! IPPrefix.parse("10.1.0.0/16"), try! IPPrefix.parse("2001:db8:1::/48")],
        remoteSubnets: [try! IPPrefix.parse("10.2.0.0/16")],
        spis: ChildSPIs(inbound: 0x00c0_ffee, outbound: 0xdead_beef), reason: nil,
        unixMilliseconds: 1_796_655_630_007)

    @Test func theEnvironmentIsExactlyPathAndTheHookVariables() {
        #expect(HookPlan.environment(Self.occasion) == [
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "VIGIL_EVENT": "failover",
            "VIGIL_MAP": "SITE-A",
            "VIGIL_SEQUENCE": "10",
            "VIGIL_IKE_VERSION": "2",
            "VIGIL_PEER": "198.51.100.2",
            "VIGIL_PREVIOUS_PEER": "198.51.100.1",
            "VIGIL_LOCAL_SUBNETS": "10.1.0.0/16 2001:db8:1::/48",
            "VIGIL_REMOTE_SUBNETS": "10.2.0.0/16",
            "VIGIL_SPI_IN": "00c0ffee",
            "VIGIL_SPI_OUT": "deadbeef",
            "VIGIL_TIME": "2026-12-07T15:00:30.007Z",
        ])
    }

    @Test func variablesThatDoNotApplyAreLeftOut() {
        var occasion = Self.occasion
        occasion.event = .down
        occasion.ikeVersion = .v1
        occasion.previousPeer = nil
        occasion.spis = nil
        occasion.reason = "deleted by the peer\nVIGIL_EVENT=established"
        let environment = HookPlan.environment(occasion)
        #expect(environment["VIGIL_PREVIOUS_PEER"] == nil)
        #expect(environment["VIGIL_SPI_IN"] == nil && environment["VIGIL_SPI_OUT"] == nil)
        #expect(environment["VIGIL_IKE_VERSION"] == "1")
        // A reason stays one line: a newline cannot forge a second record in what the hook writes.
        #expect(environment["VIGIL_REASON"] == "deleted by the peer VIGIL_EVENT=established")
        #expect(HookPlan.oneLine(String(repeating: "x", count: 1000)).count == HookPlan.maximumReasonLength)
    }

    @Test func timesAreRFC3339InUTCWithMilliseconds() {
        #expect(HookPlan.rfc3339(unixMilliseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(HookPlan.rfc3339(unixMilliseconds: 951_782_400_999) == "2000-02-29T00:00:00.999Z")
        #expect(HookPlan.rfc3339(unixMilliseconds: -1) == "1969-12-31T23:59:59.999Z")
    }

    @Test func globalHooksRunFirstAndOnlyForTheirEvents() {
        let all = Hook(path: "/etc/vigil/all")
        let down = Hook(path: "/etc/vigil/down", events: [.down, .deadPeer])
        let own = Hook(path: "/etc/vigil/own", events: [.established])
        #expect(HookPlan.hooks(for: .established, global: [all, down], entry: [own]).map(\.path) == ["/etc/vigil/all", "/etc/vigil/own"])
        #expect(HookPlan.hooks(for: .deadPeer, global: [all, down], entry: [own]).map(\.path) == ["/etc/vigil/all", "/etc/vigil/down"])
        #expect(HookPlan.hooks(for: .failover, global: [down], entry: [own]).isEmpty)
        // The same executable at both levels runs once (the global listing wins).
        #expect(HookPlan.hooks(for: .established, global: [all], entry: [Hook(path: "/etc/vigil/all", timeout: .seconds(1))])
            == [all])
    }

    @Test func admissionIsBoundedAndFreedByFinishedRuns() {
        var admission = HookAdmission()
        var admitted = 0
        for _ in 0..<HookAdmission.maximumRunning { if admission.admit() { admitted += 1 } }
        #expect(admitted == HookAdmission.maximumRunning)
        var excess = admission.admit()
        #expect(!excess)
        #expect(admission.running == HookAdmission.maximumRunning)
        admission.finished()
        let again = admission.admit()
        excess = admission.admit()
        #expect(again && !excess)
    }

    @Test func outcomesHaveAFixedSetOfMetricLabels() {
        #expect(HookOutcome.exited(0).label == "success")
        #expect(HookOutcome.exited(3).label == "failure")
        #expect(HookOutcome.signalled(15).label == "signal")
        #expect(HookOutcome.timedOut.label == "timeout")
        #expect(HookOutcome.spawnFailed(ENOENT).label == "spawn-failed")
        #expect(HookOutcome.dropped.label == "dropped")
    }
}

/// The runner against real processes. Waits are condition polls with generous deadlines, never fixed sleeps.
@Suite struct HookRunnerTests {
    /// A script in a fresh directory; `body` is shell. Returns the script's path and the directory.
    static func script(_ body: String) throws -> (path: String, directory: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-hook-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/updown"
        try ExecutableFile.write("#!/bin/sh\n\(body)\n", to: path)
        return (path, directory)
    }

    /// Collects what completions report.
    final class Results: Sendable {
        let all = Mutex<[(HookOutcome, String)]>([])
        func add(_ outcome: HookOutcome, _ output: String) { all.withLock { $0.append((outcome, output)) } }
        var count: Int { all.withLock { $0.count } }
        var first: (HookOutcome, String)? { all.withLock { $0.first } }
    }

    static func wait(until deadline: Duration = .seconds(30), _ condition: () -> Bool) -> Bool {
        let end = ContinuousClock.now + deadline
        while !condition() {
            if ContinuousClock.now > end { return false }
            usleep(10_000)
        }
        return true
    }

    @Test func theScriptSeesOnlyTheGivenEnvironmentAndNoTerminal() throws {
        let (path, directory) = try Self.script("env > \"$(dirname \"$0\")/env\"; cat > \"$(dirname \"$0\")/stdin\"; echo done")
        let runner = HookRunner()
        let results = Results()
        let environment = HookPlan.environment(HookPlanTests.occasion)
        #expect(runner.run(Hook(path: path), environment: environment, completion: results.add) == nil)
        #expect(Self.wait { results.count == 1 })
        #expect(results.first?.0 == .exited(0))
        #expect(results.first?.1 == "done ")
        let recorded = try String(contentsOfFile: directory + "/env", encoding: .utf8)
        var seen: [String: String] = [:]
        for line in recorded.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            seen[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        // sh adds PWD (and may add SHLVL, _): everything else is exactly what was given.
        let added: Set<String> = ["PWD", "SHLVL", "_", "OLDPWD"]
        #expect(seen.filter { !added.contains($0.key) } == environment)
        #expect(try String(contentsOfFile: directory + "/stdin", encoding: .utf8).isEmpty)
        #expect(Self.wait { runner.running == 0 })
    }

    /// A descriptor of vigild's that some library left without close-on-exec must not reach the hook (an inherited
    /// socket would be the hook's to use; an inherited writer of an executable makes its execve fail with ETXTBSY).
    @Test func theScriptInheritsNoDescriptorButItsOutput() throws {
        let (path, directory) = try Self.script("for fd in /proc/$$/fd/*; do readlink \"$fd\"; done > \"$(dirname \"$0\")/fds\"; echo done")
        let leaked = open(directory + "/leaked", O_WRONLY | O_CREAT, 0o600)  // deliberately without O_CLOEXEC
        #expect(leaked > 2)
        defer { close(leaked) }
        let runner = HookRunner()
        let results = Results()
        #expect(runner.run(Hook(path: path), environment: [:], completion: results.add) == nil)
        #expect(Self.wait { results.count == 1 })
        #expect(results.first?.0 == .exited(0))
        let open = try String(contentsOfFile: directory + "/fds", encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(!open.isEmpty)
        #expect(!open.contains { $0.hasSuffix("/leaked") }, "the hook inherited descriptor \(leaked): \(open)")
        // Nothing but /dev/null, the output pipe and the shell's own script and redirection.
        #expect(open.allSatisfy { $0 == "/dev/null" || $0.hasPrefix("pipe:") || $0.hasSuffix("/updown") || $0.hasSuffix("/fds") }, "\(open)")
        #expect(Self.wait { runner.running == 0 })
    }

    @Test func aRunPastItsTimeoutIsKilledWithItsChildren() throws {
        let (path, directory) = try Self.script("sleep 600 & echo $! > \"$(dirname \"$0\")/child\"; echo started; wait")
        let runner = HookRunner()
        let results = Results()
        let started = ContinuousClock.now
        #expect(runner.run(Hook(path: path, timeout: .seconds(1)), environment: ["PATH": HookPlan.searchPath], completion: results.add) == nil)
        #expect(Self.wait { results.count == 1 })
        let elapsed = ContinuousClock.now - started
        #expect(results.first?.0 == .timedOut)
        #expect(results.first?.1 == "started ")
        #expect(elapsed >= .seconds(1) && elapsed < .seconds(20), "\(elapsed)")
        // The background sleep was in the hook's process group: it went too.
        let child = try #require(Int32(try String(contentsOfFile: directory + "/child", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(Self.wait { kill(child, 0) != 0 && errno == ESRCH }, "the hook's child \(child) outlived the timeout")
    }

    @Test func exitStatusesAndSignalsAreReported() throws {
        let runner = HookRunner()
        let failing = try Self.script("echo oops >&2; exit 3").path
        let signalled = try Self.script("kill -TERM $$").path
        let output = try Self.script("head -c 10000 /dev/zero | tr '\\0' a").path
        for (path, expected, printed) in [(failing, HookOutcome.exited(3), "oops "), (signalled, .signalled(SIGTERM), ""),
                                           (output, .exited(0), String(repeating: "a", count: HookRunner.captureLimit))] {
            let results = Results()
            #expect(runner.run(Hook(path: path), environment: [:], completion: results.add) == nil)
            #expect(Self.wait { results.count == 1 })
            #expect(results.first?.0 == expected)
            #expect(results.first?.1 == printed)
        }
    }

    @Test func runsBeyondTheBoundAreDroppedNotQueued() throws {
        let (path, directory) = try Self.script("touch \"$(dirname \"$0\")/go-$$\"; while [ ! -e \"$(dirname \"$0\")/release\" ]; do sleep 0.05; done")
        let runner = HookRunner()
        let results = Results()
        for _ in 0..<HookAdmission.maximumRunning {
            #expect(runner.run(Hook(path: path, timeout: .seconds(60)), environment: ["PATH": HookPlan.searchPath], completion: results.add) == nil)
        }
        #expect(runner.run(Hook(path: path), environment: [:], completion: results.add) == .dropped)
        #expect(Self.wait { runner.running == HookAdmission.maximumRunning })
        FileManager.default.createFile(atPath: directory + "/release", contents: nil)
        #expect(Self.wait { results.count == HookAdmission.maximumRunning })
        #expect(Self.wait { runner.running == 0 })
        #expect(runner.run(Hook(path: path), environment: ["PATH": HookPlan.searchPath], completion: results.add) == nil)
        #expect(Self.wait { results.count == HookAdmission.maximumRunning + 1 })
    }

    @Test func aMissingExecutableIsASpawnFailure() {
        let results = Results()
        #expect(HookRunner().run(Hook(path: "/nonexistent-vigil-hook"), environment: [:], completion: results.add) == nil)
        #expect(Self.wait { results.count == 1 })
        #expect(results.first?.0 == .spawnFailed(ENOENT))
    }
}
