import Foundation
import Testing
import VigilDaemon
import VigilLab

/// The control API and CLI against a running vigild with strongSwan peers: what automation drives.
@Suite(.serialized) struct VigildControlTests {
    static func vigil(_ lab: VigildLab, _ arguments: [String]) throws -> Command.Result {
        guard let binary = VigildProcess.productPath("vigil") else { throw LabError("vigil is not built next to the tests") }
        return try Command.run([binary] + arguments + ["--socket", lab.socketPath])
    }

    /// Polls the first entry's status until `predicate` holds (deadline `timeout`); returns the last status read.
    static func waitForEntry(_ lab: VigildLab, timeout: Double = 10, _ predicate: (StatusReport.Entry) -> Bool) throws -> StatusReport.Entry? {
        let deadline = Date().addingTimeInterval(timeout)
        var entry = try lab.request(ControlRequest(command: .status)).status?.entries.first
        while Date() < deadline, !(entry.map(predicate) ?? false) {
            usleep(20_000)
            entry = try lab.request(ControlRequest(command: .status)).status?.entries.first
        }
        return entry
    }

    /// Reads what `pipe` delivers until `text` holds for everything read so far (deadline `timeout`).
    static func read(_ pipe: Pipe, into text: inout String, timeout: Double = 10, until done: (String) -> Bool) {
        let fd = pipe.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(timeout)
        while !done(text), Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 65536)
            let count = Foundation.read(fd, &buffer, buffer.count)
            guard count > 0 else { return }
            text += String(decoding: buffer[..<count], as: UTF8.self)
        }
    }

    /// The two meanings of "not connected" apart: a daemon the CLI cannot reach (exit 3) is not an entry without an
    /// active peer (exit 1, `not-connected`).
    @Test func anUnreachableDaemonIsExitThreeWithItsOwnCode() throws {
        guard let binary = VigildProcess.productPath("vigil") else { throw LabError("vigil is not built next to the tests") }
        let result = try Command.run([binary, "status", "--socket", "/nonexistent-vigil/vigil.sock"])
        #expect(result.status == 3, "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("daemon-unreachable") && !result.stderr.contains("not-connected"), "\(result.stderr)")
    }

    /// vigild as a `Type=notify` service: READY=1 once running, a STATUS= line that follows the entry's state,
    /// WATCHDOG=1 from the event loop at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM (a path socket: an abstract
    /// one would belong to the test's network namespace, not vigild's).
    @Test func underSystemdVigildNotifiesReadyStatusWatchdogAndStopping() throws {
        let systemd = try NotifySocket(abstract: false)
        let lab = try VigildLab()
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild(environment: ["NOTIFY_SOCKET": systemd.name, "WATCHDOG_USEC": "400000"])
        let first = FailoverLab.gatewayAddress(0)
        var seen: [[String: String]] = []
        let deadline = Date().addingTimeInterval(20)
        func heard(_ condition: ([[String: String]]) -> Bool) -> Bool {
            while !condition(seen), Date() < deadline { if let message = systemd.receive() { seen.append(message) } }
            return condition(seen)
        }
        #expect(heard { $0.contains { $0["READY"] == "1" } }, "no READY=1: \(seen)\n\(lab.diagnostics)")
        #expect(seen.first { $0["READY"] == "1" }?["MAINPID"] == lab.vigild.pid.map(String.init), "\(seen)")
        #expect(heard { $0.contains { $0["STATUS"]?.contains("LAB/10 established with \(first)") == true } },
                "no STATUS= with the established entry: \(seen)")
        #expect(heard { $0.filter { $0["WATCHDOG"] == "1" }.count >= 3 }, "the watchdog is not pinged: \(seen)")
        lab.vigild.stop()
        #expect(heard { $0.contains { $0["STOPPING"] == "1" } }, "no STOPPING=1 on SIGTERM: \(seen)")
    }

    @Test func peerListUpdateRemovingTheActivePeerFailsOverAtOnce() throws {
        let lab = try VigildLab()
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let first = FailoverLab.gatewayAddress(0)
        let second = FailoverLab.gatewayAddress(1)
        let third = FailoverLab.gatewayAddress(2)
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" && $0.peer == first } != nil)

        // A bad list changes nothing and says why, with a stable code.
        let duplicate = try Self.vigil(lab, ["peers", "set", "LAB", "10", third, third])
        #expect(duplicate.status == 1)
        #expect(duplicate.stderr.contains("invalid-peer-list") && duplicate.stderr.contains("listed twice"), "\(duplicate.stderr)")
        let unknownMap = try Self.vigil(lab, ["peers", "set", "NOPE", "10", third])
        #expect(unknownMap.status == 1 && unknownMap.stderr.contains("unknown-map"), "\(unknownMap.stderr)")
        let notFirst = try lab.request(ControlRequest(command: .setPeers, map: "LAB", sequence: 10, peers: [third, second], preferred: second))
        #expect(notFirst.error?.code == .invalidPeerList)
        #expect(try lab.request(ControlRequest(command: .status)).status?.entries.first?.peers == [first, second, third])

        // Keeping the active peer keeps its SAs.
        let keep = try Self.vigil(lab, ["peers", "set", "LAB", "10", third, first])
        #expect(keep.succeeded, "\(keep.stderr)")
        var status = try #require(try Self.waitForEntry(lab) { $0.peers == [third, first] })
        #expect(status.peers == [third, first])
        #expect(status.activePeer == first)

        // Removing it fails over at once to the first usable peer of the new list.
        let remove = try Self.vigil(lab, ["peers", "set", "LAB", "10", third, second])
        #expect(remove.succeeded, "\(remove.stderr)")
        let moved = try lab.waitForEvent(timeout: 5) { $0.kind == "dataplane-programmed" && $0.peer == third }
        #expect(moved != nil, "no move to the new list's first peer:\n\(lab.diagnostics)")
        status = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first)
        #expect(status.activePeer == third)
        #expect(!status.ikeSAs.contains { $0.peer == first }, "the removed peer's IKE SA remains: \(status.ikeSAs)")
        let ping = try lab.lab.host.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", FailoverLab.remoteServiceAddress])
        #expect(ping.succeeded)
    }

    /// `--json` on every command: status, peers set, failover, clear, initiate, events (one object per line),
    /// metrics (samples), and errors as `{"ok": false, "error": {"code": ...}}` with the same exit codes.
    @Test func everyCommandAnswersInJSONWhenAsked() throws {
        let lab = try VigildLab()
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let first = FailoverLab.gatewayAddress(0), second = FailoverLab.gatewayAddress(1), third = FailoverLab.gatewayAddress(2)
        try lab.requireTunnel(with: first)
        func object(_ arguments: [String], status: Int32 = 0) throws -> [String: Any] {
            let result = try Self.vigil(lab, arguments + ["--json"])
            #expect(result.status == status, "\(arguments): exit \(result.status) \(result.stderr)")
            let parsed = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            return try #require(parsed, "\(arguments) --json printed no JSON object: \(result.stdout)")
        }

        let status = try object(["status"])
        let entries = try #require(status["entries"] as? [[String: Any]])
        #expect(entries.first?["activePeer"] as? String == first)
        #expect(entries.first?["peers"] as? [String] == [first, second, third])

        for arguments in [["peers", "set", "LAB", "10", first, third, second], ["failover", "LAB", "10", "--to", third]] {
            let answer = try object(arguments)
            #expect(answer["ok"] as? Bool == true && answer["message"] is String, "\(arguments): \(answer)")
        }
        try lab.requireTunnel(with: third)

        // Child SA details: the data plane's counters move with traffic; age and the lifetime left.
        let ping = try lab.lab.host.run(["ping", "-c", "5", "-i", "0.1", "-W", "1", FailoverLab.remoteServiceAddress])
        #expect(ping.succeeded, "\(ping.stdout)")
        let after = try object(["status"])
        let child = try #require(((after["entries"] as? [[String: Any]])?.first?["childSAs"] as? [[String: Any]])?.first { $0["peer"] as? String == third })
        for field in ["bytesIn", "bytesOut"] { #expect((child[field] as? Int ?? 0) >= 5 * 84, "\(field): \(child)") }
        for field in ["packetsIn", "packetsOut"] { #expect((child[field] as? Int ?? 0) >= 5, "\(field): \(child)") }
        let age = try #require(child["age"] as? Double), expiresIn = try #require(child["expiresIn"] as? Double)
        #expect(age >= 0 && age < 60 && expiresIn > 0 && age + expiresIn <= 3600 + 1, "age \(age), expires in \(expiresIn)")
        let text = try Self.vigil(lab, ["status"])
        #expect(text.stdout.contains("packets in,") && text.stdout.contains("lifetime ends in"), "\(text.stdout)")

        let events = try Self.vigil(lab, ["events", "--json"])
        let lines = events.stdout.split(separator: "\n")
        #expect(!lines.isEmpty)
        let kinds = try lines.map { line -> String? in
            (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["kind"] as? String
        }
        #expect(kinds.allSatisfy { $0 != nil }, "not one JSON object per line: \(events.stdout.prefix(500))")
        #expect(kinds.contains("dataplane-programmed"))

        let metrics = try Self.vigil(lab, ["metrics", "--json"])
        let samples = try #require(try JSONSerialization.jsonObject(with: Data(metrics.stdout.utf8)) as? [[String: Any]], "\(metrics.stdout.prefix(300))")
        let established = samples.first { $0["name"] as? String == "vigil_phase2_established_total" }
        #expect((established?["value"] as? Double ?? 0) >= 2, "\(samples.prefix(5))")
        #expect(samples.contains { ($0["labels"] as? [String: String])?.isEmpty == false }, "labels parsed")

        let clear = try object(["clear", "LAB", "10", "--hold"])
        #expect(clear["ok"] as? Bool == true)
        let initiate = try object(["initiate", "LAB", "10"])
        #expect(initiate["ok"] as? Bool == true)

        let refused = try object(["initiate", "LAB", "99"], status: 1)
        #expect(refused["ok"] as? Bool == false)
        #expect((refused["error"] as? [String: Any])?["code"] as? String == "unknown-entry", "\(refused)")
        guard let binary = VigildProcess.productPath("vigil") else { throw LabError("vigil is not built next to the tests") }
        let unreachable = try Command.run([binary, "status", "--json", "--socket", "/nonexistent-vigil/vigil.sock"])
        #expect(unreachable.status == 3)
        let gone = try JSONSerialization.jsonObject(with: Data(unreachable.stdout.utf8)) as? [String: Any]
        #expect((gone?["error"] as? [String: Any])?["code"] as? String == "daemon-unreachable", "\(unreachable.stdout)")
    }

    @Test func forcedFailoverClearStatusMetricsAndEventStream() throws {
        let lab = try VigildLab()
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let first = FailoverLab.gatewayAddress(0)
        let third = FailoverLab.gatewayAddress(2)
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" && $0.peer == first } != nil)

        // An event stream follower sees the forced failover happen.
        guard let binary = VigildProcess.productPath("vigil") else { throw LabError("vigil not built") }
        let follower = Process()
        follower.executableURL = URL(fileURLWithPath: binary)
        follower.arguments = ["events", "--follow", "--socket", lab.socketPath]
        let stream = Pipe()
        follower.standardOutput = stream
        try follower.run()
        // Following once it has printed what happened so far (the tunnel with the first peer).
        var streamed = ""
        Self.read(stream, into: &streamed) { $0.contains("\"kind\":\"dataplane-programmed\"") }

        let unknownPeer = try Self.vigil(lab, ["failover", "LAB", "10", "--to", "203.0.113.99"])
        #expect(unknownPeer.status == 1 && unknownPeer.stderr.contains("unknown-peer"), "\(unknownPeer.stderr)")
        let failover = try Self.vigil(lab, ["failover", "LAB", "10", "--to", third])
        #expect(failover.succeeded, "\(failover.stderr)")
        #expect(try lab.waitForEvent(timeout: 5) { $0.kind == "dataplane-programmed" && $0.peer == third } != nil, "\(lab.diagnostics)")
        Self.read(stream, into: &streamed) { $0.contains("\"kind\":\"dataplane-programmed\"") && $0.contains(third) }
        kill(follower.processIdentifier, SIGKILL)
        follower.waitUntilExit()
        streamed += String(decoding: stream.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(streamed.contains("\"kind\":\"dataplane-programmed\"") && streamed.contains(third), "stream: \(streamed)")

        let status = try Self.vigil(lab, ["status"])
        #expect(status.succeeded && status.stdout.contains("established with \(third)"), "\(status.stdout)")
        #expect(status.stdout.contains("3. \(third) [active]"), "\(status.stdout)")

        let metrics = try Self.vigil(lab, ["metrics"])
        #expect(metrics.stdout.contains("vigil_phase2_established_total 2"), "\(metrics.stdout)")
        #expect(metrics.stdout.contains("vigil_ike_sas 1"), "\(metrics.stdout)")

        // clear --hold: the SAs go (strongSwan's too) and nothing comes back until `initiate`.
        let clear = try Self.vigil(lab, ["clear", "LAB", "10", "--hold"])
        #expect(clear.succeeded && clear.stdout.contains("held down"), "\(clear.stdout)\(clear.stderr)")
        #expect(try lab.waitForEvent(timeout: 5) { $0.kind == "cleared" } != nil)
        let after = try #require(try Self.waitForEntry(lab) { $0.ikeSAs.isEmpty && $0.childSAs.isEmpty && $0.state == "idle" })
        #expect(after.ikeSAs.isEmpty && after.childSAs.isEmpty, "\(after)")
        #expect(after.state == "idle")

        // initiate brings it up from its first usable peer; a second initiate is refused with its code.
        let programmed = { try lab.events().filter { $0.kind == "dataplane-programmed" && $0.peer == first }.count }
        let before = try programmed()
        let initiate = try Self.vigil(lab, ["initiate", "LAB", "10"])
        #expect(initiate.succeeded, "\(initiate.stderr)")
        #expect(try lab.waitForEvents(timeout: 15) { $0.filter { $0.kind == "dataplane-programmed" && $0.peer == first }.count > before } != nil,
                "initiate did not bring the entry up with the first peer:\n\(lab.diagnostics)")
        let again = try Self.vigil(lab, ["initiate", "LAB", "10"])
        #expect(again.status == 1 && again.stderr.contains("already-up"), "\(again.stdout)\(again.stderr)")
        let missing = try Self.vigil(lab, ["initiate", "LAB", "99"])
        #expect(missing.status == 1 && missing.stderr.contains("unknown-entry"), "\(missing.stderr)")

        // Cisco's clear: the SAs go and the entry (which starts by itself) renegotiates at once.
        let up = try programmed()
        let renegotiate = try Self.vigil(lab, ["clear", "LAB", "10"])
        #expect(renegotiate.succeeded && renegotiate.stdout.contains("renegotiating"), "\(renegotiate.stdout)\(renegotiate.stderr)")
        #expect(try lab.waitForEvents(timeout: 15) { $0.filter { $0.kind == "dataplane-programmed" && $0.peer == first }.count > up } != nil,
                "clear did not renegotiate:\n\(lab.diagnostics)")
        let ping = try lab.lab.host.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", FailoverLab.remoteServiceAddress])
        #expect(ping.succeeded, "no traffic after clear and renegotiation: \(ping.stdout)")
    }

    @Test func aBadReloadKeepsTheRunningConfigurationAndAGoodOneAppliesPeers() throws {
        let lab = try VigildLab()
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" } != nil)
        let config = lab.directory.appendingPathComponent("vigil.yaml")
        let good = try String(contentsOf: config, encoding: .utf8)

        try (good + "\n  unknown-key: 1\n").write(to: config, atomically: true, encoding: .utf8)
        lab.vigild.signal(SIGHUP)
        #expect(try lab.waitForEvent(timeout: 5) { $0.kind == "reload-refused" } != nil, "\(lab.diagnostics)")
        #expect(lab.vigild.log.contains("unknown-key"), "the refused reload does not name the bad key")
        var status = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first)
        #expect(status.activePeer == FailoverLab.gatewayAddress(0))

        let reordered = good.replacingOccurrences(
            of: "          - \(FailoverLab.gatewayAddress(2))", with: "          - 203.0.113.50")
        try reordered.write(to: config, atomically: true, encoding: .utf8)
        // A new peer without a key in the secrets file is refused with a reason; the running list stays.
        lab.vigild.signal(SIGHUP)
        let refusal = try lab.waitForEvent(timeout: 5) { $0.kind == "reload-refused" && $0.detail.contains("203.0.113.50") }
        #expect(refusal?.detail.contains("key") == true, "\(refusal?.detail ?? "no refusal")")
        status = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first)
        #expect(status.peers.contains(FailoverLab.gatewayAddress(2)))
        #expect(lab.vigild.isRunning, "vigild died on a bad reload")

        // A good reload (the list reordered) applies at once.
        let swapped = good.replacingOccurrences(of: "          - \(FailoverLab.gatewayAddress(1))\n", with: "")
            .replacingOccurrences(of: "          - \(FailoverLab.gatewayAddress(2))", with: "          - \(FailoverLab.gatewayAddress(2))\n          - \(FailoverLab.gatewayAddress(1))")
        try swapped.write(to: config, atomically: true, encoding: .utf8)
        lab.vigild.signal(SIGHUP)
        #expect(try lab.waitForEvent(timeout: 5) { $0.kind == "reloaded" } != nil, "\(lab.diagnostics)")
        status = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first)
        #expect(status.peers == [FailoverLab.gatewayAddress(0), FailoverLab.gatewayAddress(2), FailoverLab.gatewayAddress(1)])
        #expect(status.activePeer == FailoverLab.gatewayAddress(0))
    }

    /// Issue 13, defect 9: a changed pre-shared key is applied on SIGHUP (not silently kept until a restart), without
    /// touching the established SAs.
    @Test func aReloadAppliesAChangedKeyAndKeepsTheSAs() throws {
        let lab = try VigildLab()
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" } != nil)
        let before = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first)
        let secrets = lab.directory.appendingPathComponent("vigil.secrets.yaml")
        let text = try String(contentsOf: secrets, encoding: .utf8)
        let changed = text.replacingOccurrences(of: "\(FailoverLab.gatewayAddress(1)): \"\(VigildLab.psk)\"",
                                                with: "\(FailoverLab.gatewayAddress(1)): \"a-new-key-for-gateway-1\"")
        try #require(changed != text)
        try changed.write(to: secrets, atomically: true, encoding: .utf8)
        chmod(secrets.path, 0o600)
        lab.vigild.signal(SIGHUP)
        let reloaded = try lab.waitForEvent(timeout: 10) { $0.kind == "reloaded" }
        #expect(reloaded?.detail.contains("keys of") == true, "\(reloaded?.detail ?? "no reload") \(lab.diagnostics)")
        #expect(try lab.waitForEvent(timeout: 5) { $0.kind == "credentials-updated" } != nil)
        let after = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first)
        #expect(after.childSAs.map(\.inboundSPI) == before.childSAs.map(\.inboundSPI), "a key change tore down established SAs")
        #expect(after.activePeer == before.activePeer)
    }

    @Test func shutdownRemovesWhatVigilInstalledAndARestartReconciles() throws {
        var settings = VigildLab.Settings()
        settings.dataPlane = .kernel
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        // A foreign policy (another IKE daemon's) must survive Vigil's reconciliation and shutdown.
        try lab.lab.vigil.ip("xfrm", "policy", "add", "src", "10.9.0.0/24", "dst", "10.8.0.0/24", "dir", "out", "priority", "100",
                             "tmpl", "src", "192.0.2.1", "dst", "192.0.2.99", "proto", "esp", "mode", "tunnel", "reqid", "7")
        try lab.startVigild()
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" } != nil)
        #expect(try lab.lab.vigil.ip("xfrm", "policy").stdout.contains("dst \(FailoverLab.gatewayAddress(0))"))

        // SIGKILL leaves state behind; the next start removes exactly Vigil's.
        lab.vigild.signal(SIGKILL)
        let deadline = Date().addingTimeInterval(10)
        while lab.vigild.isRunning, Date() < deadline { usleep(10_000) }
        #expect(!lab.vigild.isRunning)
        #expect(try lab.lab.vigil.ip("xfrm", "policy").stdout.contains("dst \(FailoverLab.gatewayAddress(0))"))
        lab.vigild.stop()
        lab.lab.strongSwans[0]?.kill()
        try lab.startGateways([0])
        try lab.startVigild()
        let reconciled = try lab.waitForEvent(timeout: 5) { $0.kind == "kernel-reconciled" }
        #expect(reconciled?.detail.contains("removed 0 leftover") == false, "nothing was reconciled: \(reconciled?.detail ?? "")")
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" } != nil)

        // SIGTERM: Vigil's policies and routes go, the foreign policy stays.
        lab.vigild.stop()
        let policies = try lab.lab.vigil.ip("xfrm", "policy").stdout
        #expect(!policies.contains("dst \(FailoverLab.gatewayAddress(0))"), "Vigil's policies survived shutdown: \(policies)")
        #expect(policies.contains("dst 192.0.2.99"), "the foreign policy was removed: \(policies)")
        #expect(try lab.lab.vigil.ip("route", "show", "table", "86").stdout.isEmpty)
    }
}
