import Foundation
import Testing
import VigilDaemon
import VigilLab

/// Issue 13, defect 2 end to end: the NAT in front of an established peer changes its mapping (nftables rewrites
/// the gateway's UDP source port 4500 to a new one), then a Child SA rekey comes from the new port. vigild moves
/// the IKE SA and the Child SAs to the new port as a planned change (RFC 7296 §2.23), the tunnel keeps carrying
/// traffic through the rebinding and the rekey, and vigild keeps running.
@Suite(.serialized) struct NATRebindingInteropTests {
    static let versions = [2]
    /// The port the NAT maps the gateway's 4500 to after the rebinding.
    static let rebound: UInt16 = 14500

    @Test(arguments: versions)
    func aNATRebindingThenARekeyKeepsTheTunnel(ikeVersion: Int) throws {
        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        settings.gatewayCount = 2
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        // strongSwan's own liveness checks every second: authenticated requests that come from the new port.
        try lab.startGateways(dpdDelay: "1s")
        try lab.startVigild()
        let peer = FailoverLab.gatewayAddress(0)
        try lab.requireTunnel(with: peer)
        try #require(lab.pingThrough(), "no traffic through the tunnel before the rebinding:\n\(lab.diagnostics)")

        try lab.lab.gateways[0].rebindUDP(port: 4500, to: Self.rebound)
        let moved = try lab.waitForEvents(timeout: 15) { events in
            events.contains { $0.kind == "peer-moved" && $0.peer == peer && $0.detail.contains(":\(Self.rebound)") }
                && events.contains { $0.kind == "endpoints-moved" && $0.peer == peer && $0.detail.contains(":\(Self.rebound)") }
        }
        try #require(moved != nil, "vigild did not follow the NAT rebinding:\n\(lab.diagnostics)")
        #expect(lab.pingThrough(), "no traffic through the tunnel after the rebinding:\n\(lab.diagnostics)")

        // A Child SA rekey from the new port (the case that used to hit a precondition in KernelPlanner).
        let swan = try #require(lab.lab.strongSwans[0])
        let rekey = try swan.swanctl(["--rekey", "--child", "site"])
        #expect(rekey.succeeded, "\(rekey.stdout)\(rekey.stderr)")
        let rekeyed = try lab.waitForEvents(timeout: 15) { events in
            events.contains { $0.kind == "phase2-rekeyed" && $0.peer == peer }
        }
        try #require(rekeyed != nil, "no Child SA rekey after the rebinding (swanctl: \(rekey.stdout)):\n\(lab.diagnostics)\n\(swan.log.components(separatedBy: "\n").filter { $0.contains("CHILD") || $0.contains("rekey") }.joined(separator: "\n"))")
        #expect(lab.vigild.isRunning, "vigild stopped:\n\(lab.diagnostics)")
        #expect(lab.pingThrough(), "no traffic through the rekeyed tunnel:\n\(lab.diagnostics)")
        let status = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first)
        #expect(status.activePeer == peer)
    }
}

extension VigildLab {
    /// Pings the service behind the active gateway from the host behind vigild until one answer comes back or the
    /// deadline passes (a condition, not a delay: the first try normally answers).
    func pingThrough(timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            if let result = try? lab.host.run(["ping", "-c", "1", "-W", "1", FailoverLab.remoteServiceAddress]),
               result.succeeded { return true }
        } while Date() < deadline
        return false
    }
}

extension NetworkNamespace {
    /// A NAT rebinding in front of this namespace's IKE daemon: from now on its datagrams from UDP `port` leave
    /// from `newPort`, datagrams to `newPort` reach `port` (stateless nftables rewrites at raw priority, checksums
    /// updated), and datagrams still sent to the old `port` are dropped, as by a NAT whose old mapping expired: only
    /// a peer that moved to the new port still reaches the daemon.
    func rebindUDP(port: UInt16, to newPort: UInt16) throws {
        let rules = """
            table ip vigil_lab_rebind {
                chain out { type filter hook output priority -300; udp sport \(port) udp sport set \(newPort); }
                chain in {
                    type filter hook prerouting priority -300;
                    udp dport \(port) drop
                    udp dport \(newPort) udp dport set \(port)
                }
            }

            """
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-rebind-\(UUID().uuidString.prefix(8)).nft")
        try rules.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try exec(["nft", "-f", file.path])
        guard result.succeeded else { throw LabError("nft refused the rebinding rules: \(result.stderr)") }
    }
}
