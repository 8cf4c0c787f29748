import Foundation
import Testing
import VigilDaemon
import VigilLab

/// Issue 15's updown hook during a failover: vigild against strongSwan gateways with a hook that records its
/// environment. `established` with gateway 1; gateway 1 killed (SIGKILL); then `dead-peer` and `down` for gateway 1,
/// `failover` from gateway 1 to gateway 2 and `established` with gateway 2, each with the right variables.
@Suite(.serialized) struct VigildHookTests {
    /// One run of the hook as it recorded itself.
    typealias Run = [String: String]

    /// A hook that writes its environment to a file of its own per run in `directory`.
    static func writeHook(in directory: URL) throws -> String {
        let path = directory.appendingPathComponent("updown").path
        try ExecutableFile.write("""
        #!/bin/sh
        out="\(directory.path)/runs"
        mkdir -p "$out"
        env > "$out/.$$"
        mv "$out/.$$" "$out/$VIGIL_EVENT-$$"
        echo "recorded $VIGIL_EVENT"

        """, to: path)
        return path
    }

    static func runs(in directory: URL) -> [Run] {
        let runs = directory.appendingPathComponent("runs")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: runs.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.compactMap { name in
            guard let text = try? String(contentsOfFile: runs.appendingPathComponent(name).path, encoding: .utf8) else { return nil }
            var run: Run = [:]
            for line in text.split(separator: "\n") {
                guard let equals = line.firstIndex(of: "=") else { continue }
                run[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
            return run
        }
    }

    @Test(arguments: [2, 1])
    func hooksRunForEstablishedDeadPeerFailoverWithTheirVariables(ikeVersion: Int) throws {
        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        settings.gatewayCount = 2
        settings.dataPlane = .kernel
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-hook-lab-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let hook = try Self.writeHook(in: scratch)
        settings.extraGlobal = "  hooks: [{ path: \(hook), timeout: 10s }]"
        let (first, second) = (FailoverLab.gatewayAddress(0), FailoverLab.gatewayAddress(1))
        func finished(_ event: String, _ peer: String) -> (DaemonEvent) -> Bool {
            { $0.kind == "hook-finished" && $0.peer == peer && $0.detail.contains("for \(event) exited with status 0") }
        }
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()

        // Established with gateway 1.
        try #require(try lab.waitForEvent(timeout: 15, finished("established", first)) != nil,
                     "no established hook with the first gateway:\n\(lab.diagnostics)")
        let before = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first?.childSAs.first { $0.peer == first })
        let up = try #require(Self.runs(in: scratch).first { $0["VIGIL_EVENT"] == "established" })
        #expect(up["VIGIL_PEER"] == first)
        #expect(up["VIGIL_MAP"] == "LAB" && up["VIGIL_SEQUENCE"] == "10" && up["VIGIL_IKE_VERSION"] == String(ikeVersion))
        #expect(up["VIGIL_LOCAL_SUBNETS"] == FailoverLab.localSubnet && up["VIGIL_REMOTE_SUBNETS"] == FailoverLab.remoteSubnet)
        #expect(up["VIGIL_SPI_IN"] == before.inboundSPI && up["VIGIL_SPI_OUT"] == before.outboundSPI, "\(up) vs \(before)")
        #expect(up["VIGIL_PREVIOUS_PEER"] == nil && up["VIGIL_REASON"] == nil)
        #expect(up["PATH"] == "/usr/sbin:/usr/bin:/sbin:/bin")
        let time = try #require(up["VIGIL_TIME"])
        #expect(time.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) != nil, "\(time)")
        // vigild's own environment is not passed on.
        #expect(up.keys.allSatisfy { $0.hasPrefix("VIGIL_") || ["PATH", "PWD", "SHLVL", "_", "OLDPWD"].contains($0) }, "\(up.keys.sorted())")

        lab.lab.kill(0)
        let wanted: [(DaemonEvent) -> Bool] = [
            finished("dead-peer", first), finished("down", first), finished("failover", second), finished("established", second),
        ]
        let events = try lab.waitForEvents(timeout: 20) { events in wanted.allSatisfy { events.contains(where: $0) } }
        if events == nil {
            let seen = try lab.events().map { "\($0.kind) \($0.peer ?? "") \($0.detail)" }.joined(separator: "\n")
            Issue.record("not every hook ran after the failure:\n\(seen)\n\(lab.diagnostics)")
            return
        }
        let runs = Self.runs(in: scratch)
        let dead = try #require(runs.first { $0["VIGIL_EVENT"] == "dead-peer" })
        #expect(dead["VIGIL_PEER"] == first)
        #expect(dead["VIGIL_REASON"]?.contains("no answer to 3 DPD probes") == true, "\(dead)")
        #expect(dead["VIGIL_SPI_IN"] == before.inboundSPI, "\(dead)")
        let down = try #require(runs.first { $0["VIGIL_EVENT"] == "down" })
        #expect(down["VIGIL_PEER"] == first && down["VIGIL_SPI_OUT"] == before.outboundSPI, "\(down)")
        #expect(down["VIGIL_REASON"] != nil)
        let failover = try #require(runs.first { $0["VIGIL_EVENT"] == "failover" })
        #expect(failover["VIGIL_PEER"] == second && failover["VIGIL_PREVIOUS_PEER"] == first, "\(failover)")
        let after = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first?.childSAs.first { $0.peer == second })
        let upAgain = try #require(runs.first { $0["VIGIL_EVENT"] == "established" && $0["VIGIL_PEER"] == second })
        #expect(upAgain["VIGIL_SPI_IN"] == after.inboundSPI && upAgain["VIGIL_SPI_OUT"] == after.outboundSPI, "\(upAgain) vs \(after)")

        // Logged with what the hook printed, and counted.
        #expect(lab.vigild.log.contains("for failover exited with status 0; output: recorded failover"), "\(lab.diagnostics)")
        let metrics = try #require(try lab.request(ControlRequest(command: .metrics)).metrics)
        #expect(metrics.contains("vigil_hook_runs_total{event=\"established\",result=\"success\"} 2"), "\(metrics)")
        #expect(metrics.contains("vigil_hook_runs_total{event=\"failover\",result=\"success\"} 1"), "\(metrics)")
    }
}
