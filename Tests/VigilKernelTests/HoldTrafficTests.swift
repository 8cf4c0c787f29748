import Foundation
import Testing
import VigilKernel
import VigilLab

/// `dpd action: hold` with real packets: while held, a packet matching the Child SA's selectors is dropped by the
/// kernel (its policy's template finds no SA) and nothing leaves the WAN interface in clear. The control: with the
/// policies deleted the same packet does leave (the kernel ARPs for it on wan0), so the witness can see a leak.
@Suite("Hold keeps traffic from leaving in clear")
struct HoldTrafficTests {
    func transmitted(_ namespace: NetworkNamespace) throws -> Int {
        let text = try namespace.exec(["cat", "/sys/class/net/wan0/statistics/tx_packets"]).stdout
        return try #require(Int(text.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    @Test func heldPacketsNeverLeaveInClear() throws {
        let lab = try KernelLab(.netlink)
        defer { lab.destroy() }
        let namespace = try #require(lab.namespace)
        try namespace.exec(["sysctl", "-q", "-w", "net.ipv6.conf.wan0.disable_ipv6=1"])
        let executor = KernelExecutor(ipsec: lab.ipsec, routes: lab.routes)
        // On-link route (no gateway) so a clear-text packet would show up as an ARP request on wan0.
        var child = Lab.child(1, remote: Lab.peerA, reqid: 0x5649_0001)
        child.route?.gateway = nil
        _ = executor.apply(KernelPlanner.installRoutingRule(families: [.ipv4]))
        _ = executor.apply(KernelPlanner.establish(child))
        #expect(executor.apply(KernelPlanner.hold(child)).refused.isEmpty)

        let before = try transmitted(namespace)
        try namespace.sendProbe()
        #expect(try transmitted(namespace) == before, "a held packet left wan0")

        // Control: without the policies the probe is routed out of wan0 in clear.
        #expect(executor.apply(KernelPlan(child.policies.map { .deletePolicy($0.0) })).succeeded)
        try namespace.sendProbe()
        #expect(try transmitted(namespace) > before, "the witness cannot see clear-text traffic")
    }
}
