import Foundation
import Synchronization
import Testing
import VigilAddressing
import VigilKernel
import VigilLab
@testable import VigilNetlink

/// Fail closed in the real kernel (namespaces), with `ip`, nftables counters and the interface's own counters as
/// witnesses.
@Suite("Fail closed in a namespace, witnessed by ip")
struct FailClosedKernelTests {
    let child = Lab.child(1, remote: Lab.peerA, reqid: 0x5649_0001)

    var selectorGuard: SelectorGuard {
        get throws { try SelectorGuard(localSubnet: child.localSubnet, remoteSubnet: child.remoteSubnet, form: .block) }
    }

    /// A gateway with a default route out of wan0 (on link, as on any real gateway): a packet no policy or route
    /// holds back leaves wan0 in clear, which an nftables counter on wan0's postrouting sees (it counts before ARP).
    func gatewayWithDefaultRoute(_ namespace: NetworkNamespace) throws {
        try namespace.exec(["sysctl", "-q", "-w", "net.ipv6.conf.wan0.disable_ipv6=1"])
        try namespace.ip("route", "add", "default", "dev", "wan0")
        try namespace.exec(["nft", "add table ip witness; add chain ip witness out { type filter hook postrouting priority 0; }; "
                            + "add rule ip witness out oifname wan0 ip daddr 10.2.0.0/16 counter"])
    }

    /// Packets to the remote protected subnets that left wan0 (in clear: nothing here has ESP).
    func clearPackets(_ namespace: NetworkNamespace) throws -> Int {
        let text = try namespace.exec(["nft", "list", "chain", "ip", "witness", "out"]).stdout
        guard let range = text.range(of: #"packets [0-9]+"#, options: .regularExpression),
              let count = Int(text[range].dropFirst("packets ".count)) else {
            Issue.record("no counter in: \(text)")
            return -1
        }
        return count
    }

    @Test func guardsBlockBeforeAnyChildSAAndARepointKeepsThemInPlace() throws {
        let lab = try KernelLab(.netlink)
        defer { lab.destroy() }
        let namespace = try #require(lab.namespace)
        try gatewayWithDefaultRoute(namespace)
        let executor = KernelExecutor(ipsec: lab.ipsec, routes: lab.routes)
        let (plan, report) = try executor.reconcile(guards: [try selectorGuard], dropRoutes: [], rules: [], tables: [])
        #expect(report.succeeded && plan.removed == 0)
        let policies = try lab.ip("xfrm", "policy")
        #expect(policies.components(separatedBy: "action block").count - 1 == 3, "\(policies)")
        for direction in ["out", "in", "fwd"] {
            #expect(policies.contains("dir \(direction) action block priority \(VigilOwnership.policyPriority(for: PolicySelector(source: child.localSubnet, destination: child.remoteSubnet)))"))
        }
        try namespace.sendProbe()
        #expect(try clearPackets(namespace) == 0, "a packet left in clear while the selectors were guarded")

        // A Child SA comes up: the guards are repointed in place (the SA adds are refused: no ESP here).
        let establish = executor.apply(KernelPlanner.establish(child, overGuard: true))
        #expect(establish.refused.allSatisfy { $0.error.code == .protocolNotSupported })
        #expect(establish.applied.filter { $0.operation == .updatePolicy }.count == 3)
        let repointed = try lab.ip("xfrm", "policy")
        #expect(!repointed.contains("action block"))
        #expect(repointed.components(separatedBy: "tmpl src").count - 1 == 3)
        try namespace.sendProbe()
        #expect(try clearPackets(namespace) == 0)

        // Control: with the policies gone the same probe leaves in clear, so the witness can see a leak.
        #expect(executor.apply(KernelPlanner.removeGuards([try selectorGuard], dropRoutes: [])).succeeded)
        try namespace.sendProbe()
        #expect(try clearPackets(namespace) > 0, "the witness cannot see clear-text traffic")
    }

    /// DPD action `hold`: the guard's templates name the first peer with a reqid no SA carries; the kernel holds
    /// (drops, raising an acquire) what they match, never sends it in clear.
    @Test func holdGuardsKeepTrafficBackToo() throws {
        let lab = try KernelLab(.netlink)
        defer { lab.destroy() }
        let namespace = try #require(lab.namespace)
        try gatewayWithDefaultRoute(namespace)
        let hold = try SelectorGuard(localSubnet: child.localSubnet, remoteSubnet: child.remoteSubnet,
                                     form: .hold(localTunnelEndpoint: Lab.local, remoteTunnelEndpoint: Lab.peerA))
        let (_, report) = try KernelExecutor(ipsec: lab.ipsec, routes: lab.routes)
            .reconcile(guards: [hold], dropRoutes: [], rules: [], tables: [])
        #expect(report.succeeded, "\(report)")
        let policies = try lab.ip("xfrm", "policy")
        #expect(policies.components(separatedBy: "reqid \(VigilOwnership.holdReqid)").count - 1 == 3, "\(policies)")
        #expect(policies.contains("tmpl src \(Lab.local) dst \(Lab.peerA)"))
        #expect(Set(try lab.ipsec.listPolicies().map(\.id)) == Set(hold.policies.map(\.0)))
        try namespace.sendProbe()
        #expect(try clearPackets(namespace) == 0, "a held packet left in clear")
    }

    /// A Vigil killed with SIGKILL (the fixture) left three Child SAs' policies, routes and rule; two of those
    /// selector pairs are still configured. Every operation of the next start's reconciliation goes through a
    /// witness that lists the real kernel's policies after it: the guarded selectors are never without a policy.
    @Test func restartAfterSIGKILLAdoptsLeftoversWithoutAGap() throws {
        let fixture = try #require(productPath("vigil-kernel-fixture"),
                                   "build the vigil-kernel-fixture product first (swift build --build-tests)")
        let lab = try KernelLab(.netlink)
        defer { lab.destroy() }
        let namespace = try #require(lab.namespace)
        let (line, _) = try namespace.installAndKillFixture(fixture, count: 3)
        #expect(line.hasPrefix("installed"), "fixture said: \(line)")

        let guards = try [1, 2].map { n in
            try SelectorGuard(localSubnet: Lab.prefix("10.1.\(n).0/24"), remoteSubnet: Lab.prefix("10.2.\(n).0/24"), form: .block)
        }
        let witness = GapWitness(lab.ipsec, guarded: guards.flatMap { $0.policies.map(\.0) })
        let rules = KernelPlanner.installRoutingRule(families: [.ipv4]).steps.compactMap { step -> RoutingRule? in
            if case .addRule(let rule) = step { return rule }
            return nil
        }
        let (plan, report) = try KernelExecutor(ipsec: witness, routes: lab.routes)
            .reconcile(guards: guards, dropRoutes: [], rules: rules, tables: [VigilOwnership.defaultRouteTable])
        #expect(report.succeeded, "\(report)")
        #expect(witness.gaps.isEmpty, "guarded selectors without a policy after: \(witness.gaps)")
        #expect(witness.operations > 6)
        #expect(plan.adopted.count == 6)
        #expect(report.applied.filter { $0.operation == .deletePolicy }.count == 3)

        let policies = try lab.ip("xfrm", "policy")
        #expect(policies.components(separatedBy: "action block").count - 1 == 6, "\(policies)")
        #expect(!policies.contains("10.1.3.0/24"))
        #expect(!policies.contains("reqid 1447624"))
        let routes = try lab.ip("route", "show", "table", String(VigilOwnership.defaultRouteTable))
        #expect(routes.contains("10.2.1.0/24") && routes.contains("10.2.2.0/24") && !routes.contains("10.2.3.0/24"), "\(routes)")
        #expect(try lab.ip("rule", "show").contains("lookup \(VigilOwnership.defaultRouteTable)"))
    }

    /// The lifetimes a kernel SA is given, as they stand in the XFRM_MSG_NEWSA message (this kernel refuses the SA
    /// itself for lack of ESP, so the message is the witness).
    @Test func saLifetimesInTheNetlinkMessage() throws {
        var withBackstop = child
        withBackstop.lifetime = .backstop(negotiated: .seconds(3600))
        let message = SAObject(withBackstop.outboundSAID, withBackstop.outboundSARequest).lifetimeInAddRequest()
        #expect(message == withBackstop.lifetime)
        #expect(message?.hardSeconds == 3600 + KernelLifetimeMargin.hardSeconds)
        #expect(SAObject(child.inboundSAID, child.inboundSARequest).lifetimeInAddRequest() == .unlimited)
    }

    /// Blackhole and tunnel routes to one prefix side by side; each named exactly by its id (IPv4 and IPv6).
    @Test func blackholeAndTunnelRoutesLiveSideBySide() throws {
        let lab = try KernelLab(.netlink)
        defer { lab.destroy() }
        let namespace = try #require(lab.namespace)
        try namespace.ip("addr", "add", "2001:db8::1/64", "dev", "wan0", "nodad")
        let table = VigilOwnership.defaultRouteTable
        for destination in [Lab.prefix("10.2.1.0/24"), Lab.prefix("2001:db8:2:1::/64")] {
            let tunnel = RouteID(table: table, destination: destination)
            let drop = RouteID(table: table, destination: destination, type: .blackhole)
            try lab.routes.replaceRoute(drop, .drop)
            try lab.routes.addRoute(tunnel, RouteRequest(device: "wan0"))
            let family = destination.family == .ipv6 ? "-6" : "-4"
            let shown = try lab.ip(family, "route", "show", "table", String(table))
            #expect(shown.hasBlackhole(destination), "\(shown)")
            #expect(shown.contains("\(destination) dev wan0 proto 86"), "\(shown)")
            #expect(Set(try lab.routes.listRoutes(table: table).filter { $0.id.destination == destination }.map(\.id)) == [tunnel, drop])
            // Deleting the tunnel route leaves the blackhole (and the other way round).
            try lab.routes.deleteRoute(tunnel)
            #expect(try lab.routes.listRoutes(table: table).filter { $0.id.destination == destination }.map(\.id) == [drop])
            #expect(code { try lab.routes.deleteRoute(tunnel) } == .notFound)
            try lab.routes.deleteRoute(drop)
            #expect(try lab.routes.listRoutes(table: table).filter { $0.id.destination == destination }.isEmpty)
        }
    }
}

/// An `IPsecKernel` that forwards to the real one and, after every mutating operation, lists the kernel's
/// policies and notes any guarded id that has none: a moment a packet of that selector could leave in clear.
final class GapWitness: IPsecKernel, @unchecked Sendable {
    let inner: any IPsecKernel
    let guarded: Set<PolicyID>
    private let state = Mutex<(gaps: [String], operations: Int)>(([], 0))

    init(_ inner: any IPsecKernel, guarded: [PolicyID]) {
        self.inner = inner
        self.guarded = Set(guarded)
    }

    var gaps: [String] { state.withLock { $0.gaps } }
    var operations: Int { state.withLock { $0.operations } }

    private func look(after operation: String) {
        let present = Set(((try? inner.listPolicies()) ?? []).map(\.id))
        let missing = guarded.subtracting(present)
        state.withLock {
            $0.operations += 1
            if !missing.isEmpty { $0.gaps.append("\(operation): \(missing.map(\.description).sorted())") }
        }
    }

    private func watched(_ operation: @autoclosure () -> String, _ body: () throws(KernelError) -> Void) throws(KernelError) {
        defer { look(after: operation()) }
        try body()
    }

    func addSA(_ id: SAID, _ request: SARequest) throws(KernelError) { try watched("addSA \(id)") { () throws(KernelError) in try inner.addSA(id, request) } }
    func updateSA(_ id: SAID, _ request: SARequest) throws(KernelError) { try watched("updateSA \(id)") { () throws(KernelError) in try inner.updateSA(id, request) } }
    func deleteSA(_ id: SAID) throws(KernelError) { try watched("deleteSA \(id)") { () throws(KernelError) in try inner.deleteSA(id) } }
    func querySA(_ id: SAID) throws(KernelError) -> SAState { try inner.querySA(id) }
    func listSAs() throws(KernelError) -> [SAState] { try inner.listSAs() }
    func addPolicy(_ id: PolicyID, _ request: PolicyRequest) throws(KernelError) { try watched("addPolicy \(id)") { () throws(KernelError) in try inner.addPolicy(id, request) } }
    func updatePolicy(_ id: PolicyID, _ request: PolicyRequest) throws(KernelError) { try watched("updatePolicy \(id)") { () throws(KernelError) in try inner.updatePolicy(id, request) } }
    func deletePolicy(_ id: PolicyID) throws(KernelError) { try watched("deletePolicy \(id)") { () throws(KernelError) in try inner.deletePolicy(id) } }
    func listPolicies() throws(KernelError) -> [InstalledPolicy] { try inner.listPolicies() }
}

extension String {
    /// Whether `ip route show` output has Vigil's blackhole route to `destination` (proto 86, its metric).
    func hasBlackhole(_ destination: some CustomStringConvertible) -> Bool {
        split(separator: "\n").contains { line in
            line.hasPrefix("blackhole \(destination) ") && line.contains(" proto 86 ")
                && line.contains(" metric \(VigilOwnership.dropRouteMetric)")
        }
    }
}
