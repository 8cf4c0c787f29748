import Foundation
import Testing
import VigilDaemon
import VigilLab

/// Issue 7 against strongSwan: Vigil's userspace ESP data plane and strongSwan's kernel-libipsec carry ping and TCP
/// in both directions, for AES-GCM and AES-CBC with HMAC-SHA2-256, and keep carrying it across Child SA rekeys.
@Suite(.serialized) struct VigildDataPlaneTests {
    @Test(arguments: ["aes256gcm16", "aes256-sha256"])
    func pingAndTCPBothWaysThroughVigilAndStrongSwan(espProposal: String) throws {
        var settings = VigildLab.Settings()
        settings.espProposal = espProposal
        settings.gatewayCount = 1
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" } != nil, "\(lab.diagnostics)")
        let child = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first?.childSAs.first)
        #expect(child.algorithms == espProposal)

        // Ping from the host behind Vigil, and from behind strongSwan (its service address) back to the host.
        let out = try lab.lab.host.run(["ping", "-c", "5", "-i", "0.05", "-W", "1", FailoverLab.remoteServiceAddress])
        #expect(out.succeeded, "\(out.stdout)")
        let back = try lab.lab.gateways[0].run(["ping", "-c", "5", "-i", "0.05", "-W", "1", "-I", FailoverLab.remoteServiceAddress, FailoverLab.hostAddress])
        #expect(back.succeeded, "\(back.stdout)")

        // TCP both ways: a one-shot iperf3 server behind strongSwan per run, the client on the host; -R reverses the
        // direction. Children of the test process are stopped with SIGKILL (they may inherit a blocked SIGTERM).
        for reverse in [false, true] {
            let server = Process()
            server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            server.arguments = ["ip", "netns", "exec", lab.lab.gateways[0].name, "iperf3", "-s", "-1", "-B", FailoverLab.remoteServiceAddress, "-p", "5201"]
            server.standardOutput = FileHandle.nullDevice
            server.standardError = FileHandle.nullDevice
            try server.run()
            defer {
                if server.isRunning { kill(server.processIdentifier, SIGKILL) }
                server.waitUntilExit()
            }
            // The server listens before the client connects.
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline, !(try lab.lab.gateways[0].run(["ss", "-Hltn", "sport = :5201"]).stdout.contains("5201")) { usleep(20_000) }
            let run = try lab.lab.host.run(["timeout", "-s", "KILL", "30", "iperf3", "-c", FailoverLab.remoteServiceAddress, "-p", "5201",
                                            "-n", "8M", "-J", "--connect-timeout", "3000"] + (reverse ? ["-R"] : []))
            #expect(run.succeeded, "iperf3 \(reverse ? "-R " : "")failed: \(run.stdout.suffix(800))\(run.stderr)")
            let json = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
            let end = json?["end"] as? [String: Any]
            let sent = ((end?["sum_sent"] as? [String: Any])?["bytes"] as? NSNumber)?.intValue ?? 0
            let received = end?["sum_received"] as? [String: Any]
            let rate = (received?["bits_per_second"] as? NSNumber)?.doubleValue ?? 0
            #expect(sent >= 8 * 1024 * 1024, "only \(sent) bytes were sent")
            #expect(rate > 0, "nothing was received")
            print("[dataplane] \(espProposal) \(reverse ? "strongSwan -> Vigil" : "Vigil -> strongSwan"): \(String(format: "%.0f", rate / 1e6)) Mbit/s (debug build)")
        }
        let metrics = try lab.request(ControlRequest(command: .metrics)).metrics ?? ""
        #expect(!metrics.contains("vigil_dataplane_drops_authentication-failed"), "authentication failures: \(metrics)")
    }

    @Test func trafficContinuesAcrossChildSARekeys() throws {
        var settings = VigildLab.Settings()
        settings.gatewayCount = 1
        settings.dpdMode = "off"
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        // strongSwan rekeys the Child SA every 4 s (CREATE_CHILD_SA with REKEY_SA); Vigil's data plane follows.
        try lab.startGateways(childRekeyTime: "4s")
        try lab.startVigild()
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" } != nil, "\(lab.diagnostics)")
        let ping = try lab.lab.host.run(["ping", "-c", "300", "-i", "0.03", "-W", "1", FailoverLab.remoteServiceAddress])
        let rekeys = try lab.events().filter { $0.kind == "phase2-rekeyed" }
        #expect(rekeys.count >= 1, "no Child SA rekey in 9 s with strongSwan rekeying every 4 s:\n\(lab.diagnostics)")
        #expect(ping.stdout.contains(" 0% packet loss"), "packets lost across \(rekeys.count) rekeys: \(ping.stdout.suffix(300))")
        // The newest Child SA is the last rekey's ("... replaced by in X out Y"); an older one may still be listed
        // until its DELETE has been exchanged.
        let theirs = try lab.lab.strongSwans[0]!.listSAs()
        let newestOutbound = try #require(try lab.events().last { $0.kind == "phase2-rekeyed" }?.detail.components(separatedBy: " out ").last)
        #expect(theirs.contains("spi-in=\(newestOutbound)"), "strongSwan does not have the newest Child SA (out \(newestOutbound)): \(theirs)")
    }
}
