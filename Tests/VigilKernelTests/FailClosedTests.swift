import Testing
import VigilAddressing
@testable import VigilKernel

/// Fail closed (issue 13 defect 8): guards before any Child SA, leftovers adopted in place, guards repointed and
/// restored in place, kernel SA lifetimes; and endpoint moves as a planned change (defect 2).
@Suite("Fail closed and endpoint moves (planner, in-memory kernel)")
struct FailClosedPlannerTests {
    let a = Lab.child(1, remote: Lab.peerA, reqid: 0x5649_0001)

    func block(_ child: KernelChildSA) throws -> SelectorGuard {
        try SelectorGuard(localSubnet: child.localSubnet, remoteSubnet: child.remoteSubnet, form: .block)
    }

    /// Replays recorded steps over the policies present before them and returns the first step after which one of
    /// `ids` had no policy at all (a moment a packet could leave in clear), or nil.
    func firstGap(start: [PolicyID], steps: [KernelStep], ids: [PolicyID]) -> KernelStep? {
        var present = Set(start)
        for step in steps {
            switch step {
            case .addPolicy(let id, _), .updatePolicy(let id, _): present.insert(id)
            case .deletePolicy(let id): present.remove(id)
            case .addSA, .updateSA, .deleteSA, .addRoute, .replaceRoute, .deleteRoute, .addRule, .deleteRule: break
            }
            if !ids.allSatisfy(present.contains) { return step }
        }
        return nil
    }

    @Test func guardsBlockAtStartAndAChildSARepointsThemInPlace() throws {
        let kernel = RecordingKernel()
        let executor = KernelExecutor(ipsec: kernel, routes: kernel)
        let selectorGuard = try block(a)
        #expect(executor.apply(KernelPlanner.installGuards([selectorGuard])).succeeded)
        let guarded = try kernel.listPolicies()
        #expect(guarded.count == 3)
        #expect(guarded.allSatisfy { $0.request.action == .block && VigilOwnership.owns($0) })
        #expect(Set(guarded.map(\.id)) == Set(a.policies.map(\.0)))

        kernel.clearRecordedSteps()
        #expect(executor.apply(KernelPlanner.establish(a, overGuard: true)).succeeded)
        #expect(kernel.recordedSteps.map(\.operation)
                == [.addSA, .addSA, .updatePolicy, .updatePolicy, .updatePolicy, .addRoute])
        #expect(Set(try kernel.listPolicies()) == Set(a.policies.map { InstalledPolicy(id: $0.0, request: $0.1) }))
    }

    @Test func holdGuardNamesThePeerWithAReqidNoSACarries() throws {
        let hold = try SelectorGuard(localSubnet: a.localSubnet, remoteSubnet: a.remoteSubnet,
                                     form: .hold(localTunnelEndpoint: Lab.local, remoteTunnelEndpoint: Lab.peerA))
        var allocator = ReqidAllocator()
        #expect(allocator.allocate() != VigilOwnership.holdReqid)
        for (id, request) in hold.policies {
            guard case .protect(let template) = request.action else {
                Issue.record("hold guard without a template: \(id)")
                continue
            }
            #expect(template.reqid == VigilOwnership.holdReqid)
            #expect(VigilOwnership.owns(InstalledPolicy(id: id, request: request)))
            let endpoints = [template.source, template.destination]
            #expect(Set(endpoints) == [Lab.local, Lab.peerA])
        }
        #expect(throws: KernelPlanError.self) {
            _ = try SelectorGuard(localSubnet: a.localSubnet, remoteSubnet: Lab.prefix("2001:db8::/64"), form: .block)
        }
    }

    /// A killed run left a Child SA (policies, SAs, route, rule) and a Child SA for a selector no longer configured.
    /// The next start updates the leftover into the guard in place, and removes only after every guard is in: at no
    /// moment is a guarded selector without a policy. Removing first (the old reconciliation) leaves a gap.
    @Test func reconciliationAdoptsLeftoversWithoutAGap() throws {
        let kernel = RecordingKernel()
        let executor = KernelExecutor(ipsec: kernel, routes: kernel)
        let stale = Lab.child(2, remote: Lab.peerA, reqid: 0x5649_0002)
        _ = executor.apply(KernelPlanner.installRoutingRule())
        _ = executor.apply(KernelPlanner.establish(a))
        _ = executor.apply(KernelPlanner.establish(stale))
        let foreignID = PolicyID(selector: PolicySelector(source: Lab.prefix("10.9.0.0/16"), destination: Lab.prefix("10.8.0.0/16")),
                                 direction: .outbound)
        let foreign = PolicyRequest(action: .protect(PolicyTemplate(source: Lab.local, destination: Lab.peerA, reqid: 1)),
                                    priority: 2080)
        kernel.installForeignPolicy(foreignID, foreign)
        let before = try kernel.listPolicies().map(\.id)
        let guardedIDs = a.policies.map(\.0)

        // Control: the old reconciliation deletes the guarded selectors' policies before anything replaces them.
        let old = KernelPlanner.removeOwned(sas: try kernel.listSAs(), policies: try kernel.listPolicies(),
                                            routes: try kernel.listRoutes(table: VigilOwnership.defaultRouteTable),
                                            rules: try kernel.listRules())
        #expect(firstGap(start: before, steps: old.steps, ids: guardedIDs) != nil)

        kernel.clearRecordedSteps()
        let rules = KernelPlanner.installRoutingRule().steps.compactMap { step -> RoutingRule? in
            if case .addRule(let rule) = step { return rule }
            return nil
        }
        let (plan, report) = try executor.reconcile(guards: [try block(a)], dropRoutes: [], rules: rules,
                                                    tables: [VigilOwnership.defaultRouteTable])
        #expect(report.succeeded, "\(report)")
        let steps = kernel.recordedSteps
        #expect(firstGap(start: before, steps: steps, ids: guardedIDs) == nil, "\(steps)")
        // The leftover was updated in place (never deleted), the stale Child SA's policies deleted after.
        #expect(Array(steps.prefix(3).map(\.operation)) == [.updatePolicy, .updatePolicy, .updatePolicy])
        #expect(!steps.contains { if case .deletePolicy(let id) = $0 { guardedIDs.contains(id) } else { false } })
        #expect(Set(plan.adopted) == Set(guardedIDs))
        #expect(plan.keptRoutes == [a.routeID!])
        let firstDelete = try #require(steps.firstIndex { [.deletePolicy, .deleteRoute, .deleteRule, .deleteSA].contains($0.operation) })
        #expect(steps[..<firstDelete].filter { $0.operation == .updatePolicy }.count == 3)
        // What remains: the guard (block), the foreign policy, the rule, a's route; no SA.
        let policies = Set(try kernel.listPolicies())
        #expect(policies == Set(try block(a).policies.map { InstalledPolicy(id: $0.0, request: $0.1) }
                                + [InstalledPolicy(id: foreignID, request: foreign)]))
        #expect(try kernel.listSAs().isEmpty)
        #expect(try kernel.listRules() == rules)
        #expect(try kernel.listRoutes(table: VigilOwnership.defaultRouteTable).map(\.id) == [a.routeID!])
        #expect(!steps.contains { $0.operation == .deleteRule || $0.operation == .addRule })
    }

    @Test func anotherDaemonsPolicyOnAGuardedSelectorIsLeftAlone() throws {
        let kernel = RecordingKernel()
        let executor = KernelExecutor(ipsec: kernel, routes: kernel)
        let (id, _) = a.policies[0]
        let theirs = PolicyRequest(action: .protect(PolicyTemplate(source: Lab.local, destination: Lab.peerB, reqid: 3)),
                                   priority: 100)
        kernel.installForeignPolicy(id, theirs)
        let (plan, report) = try executor.reconcile(guards: [try block(a)], dropRoutes: [], rules: [], tables: [])
        #expect(report.succeeded)
        #expect(plan.foreign == [InstalledPolicy(id: id, request: theirs)])
        #expect(try kernel.listPolicies().first { $0.id == id }?.request == theirs)
        #expect(try kernel.listPolicies().count == 3)
    }

    @Test func blackholeRoutesAreInstalledAtStartAndKeptBesideTunnelRoutes() throws {
        let kernel = RecordingKernel()
        let executor = KernelExecutor(ipsec: kernel, routes: kernel)
        let drop = RouteID(table: VigilOwnership.defaultRouteTable, destination: a.remoteSubnet, type: .blackhole)
        let staleDrop = RouteID(table: VigilOwnership.defaultRouteTable, destination: Lab.prefix("10.7.0.0/16"), type: .blackhole)
        try kernel.replaceRoute(staleDrop, .drop)
        _ = try executor.reconcile(guards: [try block(a)], dropRoutes: [drop], rules: [], tables: [VigilOwnership.defaultRouteTable])
        #expect(try kernel.listRoutes(table: VigilOwnership.defaultRouteTable).map(\.id) == [drop])
        // The tunnel route to the same prefix is another route (lower metric), not a replacement of the blackhole.
        #expect(executor.apply(KernelPlanner.establish(a, overGuard: true)).succeeded)
        #expect(Set(try kernel.listRoutes(table: VigilOwnership.defaultRouteTable).map(\.id)) == [drop, a.routeID!])
        #expect(a.routeID!.metric < drop.metric)
        #expect(drop.metric == VigilOwnership.dropRouteMetric)
    }

    @Test func clearReturnsToTheGuardInPlaceAndShutdownRemovesEverything() throws {
        let kernel = RecordingKernel()
        let executor = KernelExecutor(ipsec: kernel, routes: kernel)
        let selectorGuard = try block(a)
        _ = executor.apply(KernelPlanner.installGuards([selectorGuard]))
        _ = executor.apply(KernelPlanner.establish(a, overGuard: true))
        kernel.clearRecordedSteps()
        #expect(executor.apply(KernelPlanner.release(a, to: selectorGuard)).succeeded)
        #expect(kernel.recordedSteps.map(\.operation)
                == [.updatePolicy, .updatePolicy, .updatePolicy, .deleteRoute, .deleteSA, .deleteSA])
        #expect(Set(try kernel.listPolicies()) == Set(selectorGuard.policies.map { InstalledPolicy(id: $0.0, request: $0.1) }))
        #expect(try kernel.listSAs().isEmpty)

        let drop = RouteID(table: VigilOwnership.defaultRouteTable, destination: a.remoteSubnet, type: .blackhole)
        try kernel.replaceRoute(drop, .drop)
        #expect(executor.apply(KernelPlanner.removeGuards([selectorGuard], dropRoutes: [drop])).succeeded)
        #expect(try kernel.listPolicies().isEmpty)
        #expect(try kernel.listRoutes(table: VigilOwnership.defaultRouteTable).isEmpty)
    }

    // MARK: Kernel SA lifetimes

    @Test func kernelSAsExpireAMarginAfterTheNegotiatedLifetime() throws {
        let lifetime = SALifetime.backstop(negotiated: .seconds(3600))
        #expect(lifetime.softSeconds == 3600 + KernelLifetimeMargin.softSeconds)
        #expect(lifetime.hardSeconds == 3600 + KernelLifetimeMargin.hardSeconds)
        #expect(lifetime.softSeconds! < lifetime.hardSeconds!)
        #expect(lifetime.hardBytes == nil && lifetime.hardPackets == nil)
        // No overflow and no trap on absurd values.
        #expect(SALifetime.backstop(negotiated: .seconds(Int64.max)).hardSeconds
                == KernelLifetimeMargin.longestNegotiatedSeconds + KernelLifetimeMargin.hardSeconds)
        #expect(SALifetime.backstop(negotiated: .seconds(-5)).hardSeconds == KernelLifetimeMargin.hardSeconds)

        var child = a
        child.lifetime = lifetime
        let kernel = RecordingKernel()
        _ = KernelExecutor(ipsec: kernel, routes: kernel).apply(KernelPlanner.establish(child))
        let requests = kernel.recordedSteps.compactMap { step -> SARequest? in
            if case .addSA(_, let request) = step { return request }
            return nil
        }
        #expect(requests.count == 2)
        #expect(requests.allSatisfy { $0.lifetime == lifetime })
    }

    // MARK: Endpoint moves (RFC 7296 §2.23)

    /// Before: `precondition(old.remoteTunnelEndpoint == new.remoteTunnelEndpoint)` trapped vigild on a rekey after
    /// the peer's NAT mapping changed. Now the rekey is a make-before-break endpoint move.
    @Test func rekeyFromAMovedPeerIsAPlannedMove() throws {
        var encapsulated = a
        encapsulated.encapsulation = UDPEncapsulation(sourcePort: 4500, destinationPort: 4500)
        var rekeyed = try encapsulated.movingPeer(to: Lab.ip("198.51.100.3"),
                                                  encapsulation: UDPEncapsulation(sourcePort: 4500, destinationPort: 31_000))
        rekeyed.inbound.spi = 0x9000
        rekeyed.outbound.spi = 0x9001
        let kernel = RecordingKernel()
        let executor = KernelExecutor(ipsec: kernel, routes: kernel)
        _ = executor.apply(KernelPlanner.establish(encapsulated))
        kernel.clearRecordedSteps()
        let plan = KernelPlanner.rekey(from: encapsulated, to: rekeyed)
        #expect(executor.apply(plan).succeeded)
        #expect(kernel.recordedSteps.map(\.operation)
                == [.addSA, .addSA, .updatePolicy, .updatePolicy, .updatePolicy, .deleteSA, .deleteSA])
        #expect(Set(try kernel.listSAs().map(\.id)) == [rekeyed.inboundSAID, rekeyed.outboundSAID])
        #expect(try kernel.listPolicies().allSatisfy {
            guard case .protect(let template) = $0.request.action else { return false }
            return [template.source, template.destination].contains(Lab.ip("198.51.100.3"))
        })
        // A rekey that stays put is unchanged: SAs only.
        var same = encapsulated
        same.inbound.spi = 0x9100
        same.outbound.spi = 0x9101
        #expect(KernelPlanner.rekey(from: encapsulated, to: same).steps.map(\.operation) == [.addSA, .addSA, .deleteSA, .deleteSA])
    }

    @Test func portOnlyMoveUpdatesTheSAsInPlace() throws {
        var encapsulated = a
        encapsulated.encapsulation = UDPEncapsulation(sourcePort: 4500, destinationPort: 4500)
        let moved = try encapsulated.movingPeer(to: Lab.peerA,
                                                encapsulation: UDPEncapsulation(sourcePort: 4500, destinationPort: 40_000))
        let plan = KernelPlanner.moveEndpoints(from: encapsulated, to: moved)
        #expect(plan.steps == [.updateSA(moved.inboundSAID, moved.inboundSARequest),
                               .updateSA(moved.outboundSAID, moved.outboundSARequest)])
        #expect(moved.outboundSARequest.encapsulation?.destinationPort == 40_000)
        #expect(moved.inboundSARequest.encapsulation?.sourcePort == 40_000)
    }

    @Test func addressMoveKeepsSPIsAddsBeforeItDeletes() throws {
        let moved = try a.movingPeer(to: Lab.ip("198.51.100.3"), encapsulation: nil)
        let kernel = RecordingKernel()
        let executor = KernelExecutor(ipsec: kernel, routes: kernel)
        _ = executor.apply(KernelPlanner.establish(a))
        kernel.clearRecordedSteps()
        #expect(executor.apply(KernelPlanner.moveEndpoints(from: a, to: moved)).succeeded)
        // Inbound SA id (our address, our SPI) is unchanged: updated; outbound goes to a new destination: added,
        // policies repointed in place, the old outbound SA deleted last.
        #expect(kernel.recordedSteps.map(\.operation)
                == [.updateSA, .addSA, .updatePolicy, .updatePolicy, .updatePolicy, .deleteSA])
        #expect(kernel.recordedSteps.last == .deleteSA(a.outboundSAID))
        #expect(Set(try kernel.listSAs().map(\.id)) == [a.inboundSAID, moved.outboundSAID])
    }

    /// Values from the peer that the kernel types cannot hold are error values with stable codes, not traps.
    @Test func familyMismatchesFromThePeerAreErrorValues() throws {
        #expect(throws: KernelPlanError.tunnelEndpointFamilyMismatch(local: Lab.local, remote: Lab.ip("2001:db8::2"))) {
            _ = try a.movingPeer(to: Lab.ip("2001:db8::2"), encapsulation: nil)
        }
        do {
            try KernelChildSA.check(reqid: 0x5649_0001, localTunnelEndpoint: Lab.local, remoteTunnelEndpoint: Lab.peerA,
                                    localSubnet: Lab.prefix("10.1.0.0/16"), remoteSubnet: Lab.prefix("2001:db8::/64"))
            Issue.record("a mixed-family selector pair was accepted")
        } catch {
            #expect(error.code == .trafficSelectorFamilyMismatch)
            #expect(error.description.hasPrefix("traffic-selector-family-mismatch"))
        }
        #expect(throws: KernelPlanError.reqidOutsideBand(7)) {
            try KernelChildSA.check(reqid: 7, localTunnelEndpoint: Lab.local, remoteTunnelEndpoint: Lab.peerA,
                                    localSubnet: a.localSubnet, remoteSubnet: a.remoteSubnet)
        }
    }
}
