import Testing
import VigilAddressing
import VigilKernel

/// IPv6 selectors, templates, routes and rules, and the main table, through both kernels.
@Suite("IPv6 and the main table")
struct IPv6Tests {
    @Test(arguments: KernelKind.allCases)
    func ipv6ChildSAPoliciesRouteAndRule(kind: KernelKind) throws {
        let lab = try KernelLab(kind)
        defer { lab.destroy() }
        if let namespace = lab.namespace {
            try namespace.ip("addr", "add", "2001:db8::1/64", "dev", "wan0", "nodad")
            try namespace.ip("addr", "add", "2001:db8:1:1::1/128", "dev", "lan0", "nodad")
        }
        let child = KernelChildSA(
            reqid: 0x5649_0010, localTunnelEndpoint: Lab.ip("2001:db8::1"), remoteTunnelEndpoint: Lab.ip("2001:db8::2"),
            localSubnet: Lab.prefix("2001:db8:1:1::/64"), remoteSubnet: Lab.prefix("2001:db8:2:1::/64"),
            inbound: SAKeys(spi: 0x100, encryptionKey: Lab.key(32, seed: 1), integrityKey: Lab.key(32, seed: 2)),
            outbound: SAKeys(spi: 0x101, encryptionKey: Lab.key(32, seed: 3), integrityKey: Lab.key(32, seed: 4)),
            encryption: .aes256cbc, integrity: .hmacSHA2_256_128,
            route: ChildSARoute(table: RoutingTable.main, device: "wan0", gateway: Lab.ip("2001:db8::fe"),
                                source: Lab.ip("2001:db8:1:1::1")))
        let executor = KernelExecutor(ipsec: lab.ipsec, routes: lab.routes)
        let report = executor.apply(KernelPlanner.establish(child))
        #expect(report.refused.allSatisfy { $0.step.operation == .addSA })
        #expect(Set(try lab.ipsec.listPolicies()) == Set(child.policies.map { InstalledPolicy(id: $0.0, request: $0.1) }))
        let routes = try lab.routes.listRoutes(table: RoutingTable.main).filter(VigilOwnership.owns)
        #expect(routes.map(\.id) == [RouteID(table: RoutingTable.main, destination: child.remoteSubnet)])
        #expect(routes.first?.request == child.routeRequest)
        if lab.namespace != nil {
            #expect(try lab.ip("-6", "route", "show").contains("2001:db8:2:1::/64 via 2001:db8::fe dev wan0 proto 86 src 2001:db8:1:1::1"))
        }

        let rule = RoutingRule(family: .ipv6, priority: 87, table: VigilOwnership.defaultRouteTable)
        try lab.routes.addRule(rule)
        #expect(try lab.routes.listRules() == [rule])

        // Reconciliation removes Vigil's IPv6 state from the main table too, and the kernel's own routes stay.
        let removed = try executor.removeOwnedState(tables: [RoutingTable.main])
        #expect(removed.succeeded)
        #expect(try lab.ipsec.listPolicies().isEmpty)
        #expect(try lab.routes.listRoutes(table: RoutingTable.main).filter(VigilOwnership.owns).isEmpty)
        #expect(try lab.routes.listRules().isEmpty)
        if lab.namespace != nil {
            #expect(try lab.ip("-6", "route", "show").contains("2001:db8::/64 dev wan0"))
        }
    }
}
