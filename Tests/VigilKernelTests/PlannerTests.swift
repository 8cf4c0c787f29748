import Testing
import VigilAddressing
@testable import VigilKernel

@Suite("Kernel planner and executor (in-memory kernel)")
struct PlannerTests {
    let a = Lab.child(1, remote: Lab.peerA, reqid: 0x5649_0001)
    var b: KernelChildSA { Lab.child(1, remote: Lab.peerB, reqid: 0x5649_0002, spiBase: 0x2000) }

    @Test func establishInstallsSAsBeforePoliciesAndRouteLast() {
        let plan = KernelPlanner.establish(a)
        #expect(plan.steps.map(\.operation) == [.addSA, .addSA, .addPolicy, .addPolicy, .addPolicy, .addRoute])
        let kernel = RecordingKernel()
        let report = KernelExecutor(ipsec: kernel, routes: kernel).apply(plan)
        #expect(report.succeeded)
        #expect(kernel.recordedSteps == plan.steps)
    }

    @Test func failoverIsMakeBeforeBreak() throws {
        let kernel = RecordingKernel()
        let executor = KernelExecutor(ipsec: kernel, routes: kernel)
        #expect(executor.apply(KernelPlanner.establish(a)).succeeded)
        kernel.clearRecordedSteps()

        let report = executor.apply(KernelPlanner.failover(from: a, to: b))
        #expect(report.succeeded)
        // B's SAs, then policies updated in place (never deleted), then the route, then A's SAs.
        #expect(kernel.recordedSteps.map(\.operation)
                == [.addSA, .addSA, .updatePolicy, .updatePolicy, .updatePolicy, .replaceRoute, .deleteSA, .deleteSA])
        #expect(!kernel.recordedSteps.contains { $0.operation == .deletePolicy })
        let policies = try kernel.listPolicies()
        #expect(policies.count == 3)
        for policy in policies {
            guard case .protect(let template) = policy.request.action else {
                Issue.record("policy lost its template: \(policy)")
                continue
            }
            #expect(template.reqid == b.reqid)
            #expect([template.source, template.destination].contains(Lab.peerB))
            #expect(![template.source, template.destination].contains(Lab.peerA))
        }
        let sas = try kernel.listSAs()
        #expect(Set(sas.map(\.id)) == [b.inboundSAID, b.outboundSAID])
    }

    @Test func holdKeepsPoliciesAndDropsTheDeadPeersSAs() throws {
        let kernel = RecordingKernel()
        let executor = KernelExecutor(ipsec: kernel, routes: kernel)
        _ = executor.apply(KernelPlanner.establish(a))
        let before = Set(try kernel.listPolicies())
        #expect(executor.apply(KernelPlanner.hold(a)).succeeded)
        #expect(Set(try kernel.listPolicies()) == before)
        #expect(try kernel.listSAs().isEmpty)
        #expect(try kernel.listRoutes(table: VigilOwnership.defaultRouteTable).count == 1)
    }

    @Test func rekeyInstallsNewSAsBeforeDeletingOldAndLeavesPolicies() {
        var rekeyed = a
        rekeyed.inbound.spi = 0x9000
        rekeyed.outbound.spi = 0x9001
        let plan = KernelPlanner.rekey(from: a, to: rekeyed)
        #expect(plan.steps == [
            .addSA(rekeyed.inboundSAID, rekeyed.inboundSARequest), .addSA(rekeyed.outboundSAID, rekeyed.outboundSARequest),
            .deleteSA(a.inboundSAID), .deleteSA(a.outboundSAID),
        ])
    }

    @Test func supersedeAddsOnlyTheNewSAsAndRetireRemovesOnlyTheOld() {
        var renewed = a
        renewed.inbound.spi = 0x9000
        renewed.outbound.spi = 0x9001
        #expect(KernelPlanner.supersede(a, with: renewed).steps == [
            .addSA(renewed.inboundSAID, renewed.inboundSARequest), .addSA(renewed.outboundSAID, renewed.outboundSARequest),
        ])
        #expect(KernelPlanner.retire(a).steps == [.deleteSA(a.inboundSAID), .deleteSA(a.outboundSAID)])
    }

    @Test func deleteRemovesPoliciesFirstThenRouteThenSAs() throws {
        let kernel = RecordingKernel()
        let executor = KernelExecutor(ipsec: kernel, routes: kernel)
        _ = executor.apply(KernelPlanner.establish(a))
        kernel.clearRecordedSteps()
        #expect(executor.apply(KernelPlanner.delete(a)).succeeded)
        #expect(kernel.recordedSteps.map(\.operation)
                == [.deletePolicy, .deletePolicy, .deletePolicy, .deleteRoute, .deleteSA, .deleteSA])
        #expect(try kernel.listPolicies().isEmpty)
        #expect(try kernel.listSAs().isEmpty)
    }

    @Test func refusedSAIsReportedAndNeverRecordedAsInstalled() throws {
        let kernel = RecordingKernel(espSupported: false)
        let report = KernelExecutor(ipsec: kernel, routes: kernel).apply(KernelPlanner.establish(a))
        #expect(report.refused.map(\.error.code) == [.protocolNotSupported, .protocolNotSupported])
        #expect(!report.applied.contains { $0.operation == .addSA })
        #expect(report.applied.count == 4)
        #expect(try kernel.listSAs().isEmpty)
        #expect(report.refused[0].error.description.contains("kernel lacks ESP"))
    }

    @Test func stopOnRefusalSkipsTheRest() {
        let kernel = RecordingKernel(espSupported: false)
        let report = KernelExecutor(ipsec: kernel, routes: kernel).apply(KernelPlanner.establish(a), onRefusal: .stop)
        #expect(report.refused.count == 1)
        #expect(report.skipped.count == 5)
        #expect(kernel.recordedSteps.isEmpty)
    }

    @Test func repeatingAPlanIsHarmless() throws {
        let kernel = RecordingKernel()
        let executor = KernelExecutor(ipsec: kernel, routes: kernel)
        #expect(executor.apply(KernelPlanner.establish(a)).succeeded)
        #expect(executor.apply(KernelPlanner.establish(a)).succeeded)
        #expect(try kernel.listPolicies().count == 3)
        #expect(executor.apply(KernelPlanner.delete(a)).succeeded)
        #expect(executor.apply(KernelPlanner.delete(a)).succeeded)
        #expect(try kernel.listPolicies().isEmpty)
    }

    @Test func removeOwnedSparesForeignState() throws {
        let kernel = RecordingKernel()
        let executor = KernelExecutor(ipsec: kernel, routes: kernel)
        _ = executor.apply(KernelPlanner.establish(a))
        _ = executor.apply(KernelPlanner.installRoutingRule())
        let foreignID = PolicyID(selector: PolicySelector(source: Lab.prefix("10.9.0.0/16"), destination: Lab.prefix("10.8.0.0/16")),
                                 direction: .outbound)
        let foreign = PolicyRequest(action: .protect(PolicyTemplate(source: Lab.local, destination: Lab.peerA, reqid: 1)),
                                    priority: 2080)
        kernel.installForeignPolicy(foreignID, foreign)
        let report = try executor.removeOwnedState(tables: [VigilOwnership.defaultRouteTable])
        #expect(report.succeeded)
        #expect(try kernel.listPolicies() == [InstalledPolicy(id: foreignID, request: foreign)])
        #expect(try kernel.listSAs().isEmpty)
        #expect(try kernel.listRules().isEmpty)
        #expect(try kernel.listRoutes(table: VigilOwnership.defaultRouteTable).isEmpty)
    }

    @Test func reqidsAreUniqueAndInsideVigilsBand() {
        var allocator = ReqidAllocator()
        var seen: Set<UInt32> = []
        for _ in 0..<1000 {
            guard let reqid = allocator.allocate() else { Issue.record("ran out of reqids"); return }
            #expect(VigilOwnership.reqids.contains(reqid))
            #expect(seen.insert(reqid).inserted)
        }
        allocator.release(0x5649_0005)
        #expect(allocator.allocate() == 0x5649_0005)
    }

    @Test func moreSpecificSelectorsGetPreferredPriorities() {
        let narrow = PolicySelector(source: Lab.prefix("10.1.1.0/24"), destination: Lab.prefix("10.2.1.0/24"))
        let wide = PolicySelector(source: Lab.prefix("10.1.0.0/16"), destination: Lab.prefix("10.2.0.0/16"))
        #expect(VigilOwnership.policyPriority(for: narrow) < VigilOwnership.policyPriority(for: wide))
        #expect(VigilOwnership.policyPriorities.contains(VigilOwnership.policyPriority(for: wide)))
    }

    @Test func errnoMapsToStableCases() {
        func code(_ errno: Int32, _ operation: KernelOperation) -> KernelError.Code {
            KernelError(errno: errno, operation: operation, subject: "x").code
        }
        #expect(code(-17, .addPolicy) == .alreadyExists)
        #expect(code(-3, .deleteSA) == .notFound)
        #expect(code(-2, .deletePolicy) == .notFound)
        #expect(code(-1, .addSA) == .permissionDenied)
        #expect(code(-93, .addSA) == .protocolNotSupported)
        #expect(code(-38, .addSA) == .algorithmNotSupported)
        #expect(code(-22, .addSA) == .other)
        #expect(KernelError(errno: -93, operation: .addSA, subject: "x").errno == 93)
    }

    @Test func querySAReportsCountersForTrafficBasedDPD() throws {
        let kernel = RecordingKernel()
        _ = KernelExecutor(ipsec: kernel, routes: kernel).apply(KernelPlanner.establish(a))
        let idle = try kernel.querySA(a.inboundSAID)
        #expect(idle.packets == 0 && idle.lastUsedAtSeconds == nil)
        kernel.recordTraffic(on: a.inboundSAID, bytes: 1400, packets: 1, atSeconds: 1_000)
        let busy = try kernel.querySA(a.inboundSAID)
        #expect(busy.packets == 1 && busy.bytes == 1400 && busy.lastUsedAtSeconds == 1_000)
        #expect(code { _ = try kernel.querySA(b.inboundSAID) } == .notFound)
    }

    @Test func descriptionsNeverPrintKeys() {
        let texts = ["\(a)", String(reflecting: a), "\(a.inboundSARequest)", String(reflecting: a.outboundSARequest),
                     KernelPlanner.establish(a).description]
        for text in texts {
            #expect(!text.contains("\(a.inbound.encryptionKey)"))
            #expect(!text.contains("encryptionKey"))
        }
        #expect("\(a)".contains("reqid \(a.reqid)"))
    }
}
