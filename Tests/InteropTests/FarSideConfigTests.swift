import Foundation
import Testing
import VigilDaemon
import VigilLab

/// The README's far side for `config/site-to-site.yaml`, proven: strongSwan loads
/// `deploy/far-side/site-to-site.swanctl.conf` and vigild runs the example itself, both with the documentation
/// addresses mapped onto the lab's, and the tunnel comes up and carries traffic.
@Suite struct FarSideConfigTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Documentation addresses to the lab's. The subnets stay: the lab's 10.1.0.0/24 and 10.2.0.0/24 lie inside the
    /// example's 10.1.0.0/16 and 10.2.0.0/16, and Vigil's own address is the lab's already.
    static let addresses = [
        ("198.51.100.1", FailoverLab.gatewayAddress(0)), ("198.51.100.2", FailoverLab.gatewayAddress(1)),
        ("203.0.113.7", FailoverLab.gatewayAddress(2)),
    ]

    static func mapped(_ relativePath: String) throws -> String {
        var text = try String(contentsOf: repository.appendingPathComponent(relativePath), encoding: .utf8)
        for (documentation, lab) in addresses { text = text.replacingOccurrences(of: documentation, with: lab) }
        return text
    }

    @Test func strongSwanWithTheFarSideConfigurationComesUpWithTheExample() throws {
        let lab = try FailoverLab(gatewayCount: 1)
        defer { lab.destroy() }
        var farSide = try Self.mapped("deploy/far-side/site-to-site.swanctl.conf")
        #expect(farSide.contains("local_addrs = \(FailoverLab.gatewayAddress(0))") && farSide.contains("remote_addrs = \(FailoverLab.vigilWANAddress)"))
        // The lab's strongSwan carries ESP in userspace (kernel-libipsec), which speaks only ESP in UDP: ask for it.
        // A far side with kernel ESP, as on a real gateway, needs no such line.
        farSide = farSide.replacingOccurrences(of: "        version = 2\n", with: "        version = 2\n        encap = yes\n")
        // The example protects 10.3.0.0/24 as well; charon installs a route per selector pair with a source address
        // of its own inside local_ts, so the gateway needs one there (a real far side has that subnet behind it).
        try lab.gateways[0].exec(["ip", "addr", "add", "10.3.0.1/32", "dev", "lo"])
        let swan = try lab.startStrongSwan(0, swanctlConf: farSide)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-far-side-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let socket = directory.appendingPathComponent("vigil.sock").path
        let example = try Self.mapped("config/site-to-site.yaml")
            .replacingOccurrences(of: "control-socket: /run/vigil/vigil.sock", with: "control-socket: \(socket)")
        #expect(example.contains("control-socket: \(socket)"), "the example's control socket line changed")
        let config = directory.appendingPathComponent("site-to-site.yaml")
        try example.write(to: config, atomically: true, encoding: .utf8)
        let secrets = directory.appendingPathComponent("site-to-site.secrets.yaml")
        try Self.mapped("config/site-to-site.secrets.yaml").write(to: secrets, atomically: true, encoding: .utf8)
        chmod(secrets.path, 0o600)

        guard let binary = VigildProcess.productPath("vigild") else { throw LabError("vigild is not built next to the tests") }
        let vigild = VigildProcess(namespace: lab.vigil, binary: binary, configPath: config.path,
                                   logPath: directory.appendingPathComponent("vigild.log").path)
        try vigild.start(extraArguments: ["--log-level", "debug"])
        defer { vigild.stop() }
        let deadline = Date().addingTimeInterval(20)
        var programmed = false
        while !programmed, Date() < deadline {
            let events = (try? ControlClient(path: socket).send(ControlRequest(command: .events)).events) ?? []
            programmed = events.contains { $0.kind == "dataplane-programmed" && $0.peer == FailoverLab.gatewayAddress(0) }
            if !programmed { usleep(50_000) }
        }
        #expect(programmed, "no tunnel with the preferred peer:\n\(vigild.log.suffix(4000))\nstrongSwan:\n\(swan.log.suffix(3000))")
        guard programmed else { return }
        let listing = try swan.listSAs()
        #expect(listing.contains("hq") && listing.contains("state=INSTALLED"), "\(listing)")
        let ping = try lab.host.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", FailoverLab.remoteServiceAddress])
        #expect(ping.succeeded, "no traffic through the tunnel: \(ping.stdout)\n\(vigild.log.suffix(3000))\n\(swan.log.suffix(2000))")
        // The example protects two subnets in one Child SA: both pairs' policies use its one pair of SAs.
        let child = try #require(try ControlClient(path: socket).send(ControlRequest(command: .status)).status?.entries.first?.childSAs.first)
        #expect(child.remoteTS == ["10.2.0.0/16", "10.3.0.0/24"])
        #expect((child.packetsIn ?? 0) >= 3 && (child.packetsOut ?? 0) >= 3, "\(child)")
    }
}
