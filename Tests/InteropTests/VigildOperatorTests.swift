import Foundation
import Testing
import VigilDaemon
import VigilLab

/// The operator's commands of issue 15 against a running vigild with strongSwan peers: `vigil reload` through the
/// control API, `vigil show maps` across a failover, and a run-time peer list that survives a restart.
@Suite(.serialized) struct VigildOperatorTests {
    static func json(_ result: Command.Result) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)\(result.stderr)")
    }

    static func firstEntry(_ lab: VigildLab) throws -> StatusReport.Entry {
        try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first)
    }

    @Test func reloadRefusesABadFileWithEveryErrorAndAppliesAGoodOne() throws {
        let lab = try VigildLab()
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let (first, second, third) = (FailoverLab.gatewayAddress(0), FailoverLab.gatewayAddress(1), FailoverLab.gatewayAddress(2))
        try lab.requireTunnel(with: first)
        let before = try Self.firstEntry(lab)
        let config = lab.directory.appendingPathComponent("vigil.yaml")
        let good = try String(contentsOf: config, encoding: .utf8)

        // Two errors: both printed as `vigil config check` prints them, exit 1 with reload-refused, nothing changed.
        let bad = good.replacingOccurrences(of: "    retries: 3\n", with: "    retries: 0\n")
            .replacingOccurrences(of: "  ike-retransmit:", with: "  unknown-key: 1\n  ike-retransmit:")
        try #require(bad != good)
        try bad.write(to: config, atomically: true, encoding: .utf8)
        let refused = try VigildControlTests.vigil(lab, ["reload"])
        #expect(refused.status == 1, "\(refused.stdout)\(refused.stderr)")
        #expect(refused.stderr.contains("vigil: reload-refused: 2 errors in \(config.path); nothing changed"), "\(refused.stderr)")
        #expect(refused.stderr.contains("\(config.path):") && refused.stderr.contains("global.unknown-key")
            && refused.stderr.contains("global.dpd.retries"), "\(refused.stderr)")
        let refusedJSON = try Self.json(try VigildControlTests.vigil(lab, ["reload", "--json"]))
        #expect(refusedJSON["ok"] as? Bool == false)
        #expect((refusedJSON["error"] as? [String: Any])?["code"] as? String == "reload-refused", "\(refusedJSON)")
        #expect(((refusedJSON["reload"] as? [String: Any])?["errors"] as? [String])?.count == 2, "\(refusedJSON)")
        let unchanged = try Self.firstEntry(lab)
        #expect(unchanged.peers == before.peers && unchanged.activePeer == first)
        #expect(unchanged.childSAs.map(\.inboundSPI) == before.childSAs.map(\.inboundSPI), "a refused reload touched the SAs")
        #expect(unchanged.ikeSAs.map(\.localSPI) == before.ikeSAs.map(\.localSPI))

        // A good file without the active peer: applied at once, the traffic moves to the new list's first peer.
        let moved = good.replacingOccurrences(of: "          - \(first)\n", with: "")
        try #require(moved != good)
        try moved.write(to: config, atomically: true, encoding: .utf8)
        let applied = try Self.json(try VigildControlTests.vigil(lab, ["reload", "--json"]))
        #expect(applied["applied"] as? [String] == ["peers of LAB/10"], "\(applied)")
        #expect(applied["refused"] as? Bool == false && (applied["errors"] as? [String])?.isEmpty == true)
        try lab.requireTunnel(with: second)
        let after = try #require(try VigildControlTests.waitForEntry(lab) { $0.activePeer == second })
        #expect(after.peers == [second, third] && after.activePeer == second, "\(after)")
        let text = try VigildControlTests.vigil(lab, ["reload"])
        #expect(text.succeeded && text.stdout.contains("reloaded \(config.path)") && text.stdout.contains("applied: nothing"), "\(text.stdout)")
    }

    /// A reload that removes the running entry and adds another, against strongSwan: the removed entry's IKE SA is
    /// deleted at charon (a DELETE, as `vigil clear` sends), the added one comes up with its peer, and `vigil reload`
    /// names both.
    @Test(arguments: [2, 1])
    func reloadRemovesAnEntryAtTheGatewayAndAddsOne(ikeVersion: Int) throws {
        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        try Self.withTunnel(settings, removeOneEntryAndAddAnother)
    }

    /// The lab with vigild's tunnel up with the first gateway, destroyed after `body`.
    static func withTunnel(_ settings: VigildLab.Settings = VigildLab.Settings(), _ body: (VigildLab) throws -> Void) throws {
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        try lab.requireTunnel(with: FailoverLab.gatewayAddress(0))
        try body(lab)
    }

    private func removeOneEntryAndAddAnother(_ lab: VigildLab) throws {
        let (first, second) = (FailoverLab.gatewayAddress(0), FailoverLab.gatewayAddress(1))
        let (firstSwan, secondSwan) = (try #require(lab.lab.strongSwans[0]), try #require(lab.lab.strongSwans[1]))
        #expect(try firstSwan.listSAs().contains("state=ESTABLISHED"))
        #expect(!(try secondSwan.listSAs().contains("state=ESTABLISHED")))

        // LAB/10 (first listed peer: the first gateway) goes; LAB/20, the same traffic with the second gateway only, comes.
        let config = lab.directory.appendingPathComponent("vigil.yaml")
        let good = try String(contentsOf: config, encoding: .utf8)
        let swapped = good.replacingOccurrences(of: "      - sequence: 10\n", with: "      - sequence: 20\n")
            .replacingOccurrences(of: "          - \(first)\n", with: "")
            .replacingOccurrences(of: "          - \(FailoverLab.gatewayAddress(2))\n", with: "")
        try #require(swapped.contains("sequence: 20") && !swapped.contains(first))
        try swapped.write(to: config, atomically: true, encoding: .utf8)
        let reload = try VigildControlTests.vigil(lab, ["reload"])
        #expect(reload.succeeded, "\(reload.stdout)\(reload.stderr)")
        #expect(reload.stdout.contains("  added: LAB/20\n") && reload.stdout.contains("  removed: LAB/10\n"), "\(reload.stdout)")

        // Charon drops the IKE SA only on vigild's DELETE (no DPD, no start or close action on its side).
        func charonHoldsSAs() throws -> Bool {
            let listing = try firstSwan.listSAs()
            return listing.contains("state=ESTABLISHED") || listing.contains("state=INSTALLED")
        }
        let deadline = Date().addingTimeInterval(10)
        var holds = try charonHoldsSAs()
        while holds, Date() < deadline {
            usleep(50_000)
            holds = try charonHoldsSAs()
        }
        #expect(!holds, "charon still holds the removed entry's SAs:\n\((try? firstSwan.listSAs()) ?? "")\n\(lab.diagnostics)")
        let up = try lab.waitForEvent(timeout: 15) { $0.kind == "dataplane-programmed" && $0.sequence == 20 && $0.peer == second }
        #expect(up != nil, "\(lab.diagnostics)")
        let listing = try secondSwan.listSAs()
        #expect(listing.contains("state=ESTABLISHED"), "\(listing)")
        #expect(try lab.events().contains { $0.kind == "entry-removed" && $0.sequence == 10 })
        let entries = try #require(try lab.request(ControlRequest(command: .status)).status?.entries)
        #expect(entries.map(\.sequence) == [20] && entries.first?.activePeer == second, "\(entries)")

        // The same file again: nothing to add, remove or replace.
        let again = try Self.json(try VigildControlTests.vigil(lab, ["reload", "--json"]))
        #expect(again["added"] as? [String] == [] && again["removed"] as? [String] == [] && again["replaced"] as? [String] == [], "\(again)")
    }

    @Test func showMapsFollowsTheDeadPeerAndTheNewActiveOne() throws {
        let lab = try VigildLab()
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let (first, second) = (FailoverLab.gatewayAddress(0), FailoverLab.gatewayAddress(1))
        try lab.requireTunnel(with: first)

        func peers() throws -> [[String: Any]] {
            let maps = try Self.json(try VigildControlTests.vigil(lab, ["show", "maps", "LAB", "--json"]))
            let entry = try #require((maps["entries"] as? [[String: Any]])?.first, "\(maps)")
            #expect(entry["map"] as? String == "LAB" && entry["sequence"] as? Int == 10 && entry["ikeVersion"] as? String == "v2")
            #expect((entry["dpd"] as? [String: Any])?["retries"] as? Int == 3, "\(entry)")
            #expect((entry["traffic"] as? [[String: Any]])?.first?["remote"] as? String == FailoverLab.remoteSubnet, "\(entry)")
            #expect((entry["backoff"] as? [String: Any])?["allPeersDown"] as? Bool == false, "\(entry)")
            return try #require(entry["peers"] as? [[String: Any]])
        }
        let up = try peers()
        #expect(up.map { $0["address"] as? String } == [first, second, FailoverLab.gatewayAddress(2)])
        #expect(up[0]["active"] as? Bool == true && up[0]["lastAnswer"] is Double && up[0]["probesMissed"] as? Int == 0, "\(up[0])")
        #expect(up[0]["failovers"] as? Int == 0 && up[0]["lastFailure"] == nil, "\(up[0])")
        let textUp = try VigildControlTests.vigil(lab, ["show", "maps"])
        #expect(textUp.succeeded && textUp.stdout.contains("Crypto Map \"LAB\" 10 (IKEv2): established with \(first)"), "\(textUp.stdout)")
        #expect(textUp.stdout.contains("1. \(first) [active]\n       last answer "), "\(textUp.stdout)")

        lab.lab.kill(0)
        try lab.requireTunnel(with: second, timeout: 15)
        let down = try peers()
        #expect(down[0]["active"] as? Bool == false && down[0]["probesMissed"] as? Int == 3, "\(down[0])")
        #expect(down[0]["failovers"] as? Int == 1 && (down[0]["lastFailure"] as? String)?.contains("declared dead") == true, "\(down[0])")
        #expect(down[1]["active"] as? Bool == true && down[1]["lastAnswer"] is Double && down[1]["failovers"] as? Int == 0, "\(down[1])")
        let textDown = try VigildControlTests.vigil(lab, ["show", "maps", "LAB"])
        #expect(textDown.stdout.contains("1. \(first)\n       last answer ") && textDown.stdout.contains("3 probes missed, 1 failover away"), "\(textDown.stdout)")
        #expect(textDown.stdout.contains("2. \(second) [active]"), "\(textDown.stdout)")

        let unknown = try VigildControlTests.vigil(lab, ["show", "maps", "NOPE"])
        #expect(unknown.status == 1 && unknown.stderr.contains("unknown-map"), "\(unknown.stderr)")
    }

    @Test func aRunTimePeerListSurvivesARestart() throws {
        let lab = try VigildLab()
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let (first, third) = (FailoverLab.gatewayAddress(0), FailoverLab.gatewayAddress(2))
        try lab.requireTunnel(with: first)

        let set = try VigildControlTests.vigil(lab, ["peers", "set", "LAB", "10", third, first])
        #expect(set.succeeded && !set.stdout.contains("NOT saved"), "\(set.stdout)\(set.stderr)")
        var mode = stat()
        #expect(stat(lab.stateFilePath, &mode) == 0 && Int(mode.st_mode) & 0o777 == 0o600, "state file \(lab.stateFilePath) missing or not 0600")
        #expect(try String(contentsOfFile: lab.stateFilePath, encoding: .utf8).contains(third))

        lab.vigild.stop()
        try lab.startVigild()
        #expect(try lab.waitForEvent(timeout: 5) { $0.kind == "peer-list-restored" } != nil, "\(lab.diagnostics)")
        // The restored list's first peer is where the entry starts now.
        try lab.requireTunnel(with: third)
        let status = try VigildControlTests.vigil(lab, ["status", "--json"])
        let entry = try #require((try Self.json(status)["entries"] as? [[String: Any]])?.first)
        #expect(entry["peers"] as? [String] == [third, first], "\(entry)")
        #expect(entry["activePeer"] as? String == third, "\(entry)")
    }
}
