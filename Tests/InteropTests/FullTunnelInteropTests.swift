import Foundation
import Testing
import VigilDaemon
import VigilLab

/// A full tunnel against strongSwan: vigild's selectors (192.0.2.0/24, which holds its own WAN address, to 0.0.0.0/0)
/// cover both IKE endpoints. Kernel data plane with real XFRM policies (SAs recorded: this kernel has no ESP). The
/// block guard goes in before IKE_SA_INIT and the Child SA's policies then cover vigild's own IKE packets to the
/// gateway, so IKE_SA_INIT, IKE_AUTH and the DPD rounds after it only pass because every IKE socket bypasses IPsec
/// policies; without the bypass the first send is refused (EPERM) and no tunnel comes up.
@Suite(.serialized) struct FullTunnelInteropTests {
    @Test func aFullTunnelIsGuardedAtStartAndIKEKeepsWorkingUnderItsOwnPolicies() throws {
        var settings = VigildLab.Settings()
        settings.gatewayCount = 1
        settings.dataPlane = .kernel
        settings.traffic = ("192.0.2.0/24", "0.0.0.0/0")
        settings.gatewayTraffic = ("0.0.0.0/0", "192.0.2.0/24")
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let peer = FailoverLab.gatewayAddress(0)

        // Guarded before any negotiation, and nothing reported unguarded.
        let reconciled = try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "kernel-reconciled" }, "\(lab.diagnostics)")
        #expect(reconciled.detail.contains("1 block and 0 hold guards for 1 selector pairs"), "\(reconciled.detail)")
        #expect(!reconciled.detail.lowercased().contains("not guarded"), "\(reconciled.detail)")

        // IKE_SA_INIT and IKE_AUTH through the guard; the Child SA repoints it in place.
        guard let programmed = try lab.waitForEvent(timeout: 20, { $0.kind == "dataplane-programmed" && $0.peer == peer }) else {
            var evidence = try ["nstat -az", "ip xfrm policy"].map {
                "$ \($0)\n" + (try lab.lab.vigil.run($0.split(separator: " ").map(String.init)).stdout)
            }.joined(separator: "\n")
            evidence += try ["nstat -az", "ss -uan", "ip xfrm policy", "ip route show table all"].map {
                "gw $ \($0)\n" + (try lab.lab.gateways[0].run($0.split(separator: " ").map(String.init)).stdout)
            }.joined(separator: "\n")
            Issue.record("no tunnel with \(peer):\n\(evidence)\ncharon:\n\(lab.lab.strongSwans[0]?.log.suffix(3000) ?? "")\n\(lab.diagnostics)")
            return
        }
        let policies = try lab.lab.vigil.ip("xfrm", "policy", "list", "dir", "out").stdout
        #expect(policies.contains("src 192.0.2.0/24 dst 0.0.0.0/0") && policies.contains("tmpl src \(FailoverLab.vigilWANAddress) dst \(peer)")
                && !policies.contains("action block"), "\(policies)")
        let theirs = try lab.lab.strongSwans[0]!.listSAs()
        #expect(theirs.contains("local-ts=[0.0.0.0/0]") && theirs.contains("remote-ts=[192.0.2.0/24]"), "\(theirs)")

        // IKE under the tunnel's own policies: three DPD rounds (INFORMATIONAL request and answer, 1 s apart) after
        // the Child SA was installed, and the peer never declared dead.
        let events = try lab.waitForEvents(timeout: 20) { events in
            events.filter { $0.kind == "liveness-answered" && $0.time > programmed.time }.count >= 3
        }
        #expect(events != nil, "no three DPD rounds under the full tunnel's policies:\n\(lab.diagnostics)")
        #expect(try lab.events().allSatisfy { $0.kind != "declared-dead" }, "\(lab.diagnostics)")
        print("[full-tunnel] 192.0.2.0/24 <-> 0.0.0.0/0 guarded at start; IKE_SA_INIT, IKE_AUTH and 3 DPD rounds through the tunnel's own policies")
    }
}
