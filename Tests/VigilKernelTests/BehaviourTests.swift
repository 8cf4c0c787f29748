import Testing
import VigilAddressing
import VigilKernel

/// The same behaviour from the in-memory kernel and the libnl kernel (in a namespace).
@Suite("Kernel behaviour, in-memory and libnl")
struct BehaviourTests {
    let selector = PolicySelector(source: Lab.prefix("10.1.1.0/24"), destination: Lab.prefix("10.2.1.0/24"))

    func request(to peer: IPAddress, reqid: UInt32) -> PolicyRequest {
        PolicyRequest(action: .protect(PolicyTemplate(source: Lab.local, destination: peer, reqid: reqid)),
                      priority: VigilOwnership.policyPriority(for: selector))
    }

    @Test(arguments: KernelKind.allCases)
    func policiesAddUpdateDeleteWithStableErrors(kind: KernelKind) throws {
        let lab = try KernelLab(kind)
        defer { lab.destroy() }
        let id = PolicyID(selector: selector, direction: .outbound)
        let toA = request(to: Lab.peerA, reqid: 0x5649_0001)
        let toB = request(to: Lab.peerB, reqid: 0x5649_0002)

        try lab.ipsec.addPolicy(id, toA)
        #expect(try lab.ipsec.listPolicies() == [InstalledPolicy(id: id, request: toA)])
        #expect(code { try lab.ipsec.addPolicy(id, toA) } == .alreadyExists)

        try lab.ipsec.updatePolicy(id, toB)
        #expect(try lab.ipsec.listPolicies() == [InstalledPolicy(id: id, request: toB)])

        // Like XFRM_MSG_UPDPOLICY, an update of a policy that is not there installs it.
        let missing = PolicyID(selector: selector, direction: .inbound)
        try lab.ipsec.updatePolicy(missing, toB)
        #expect(try lab.ipsec.listPolicies().count == 2)
        try lab.ipsec.deletePolicy(missing)

        try lab.ipsec.deletePolicy(id)
        #expect(try lab.ipsec.listPolicies().isEmpty)
        #expect(code { try lab.ipsec.deletePolicy(id) } == .notFound)
    }

    @Test(arguments: KernelKind.allCases)
    func blockPolicyRoundTrips(kind: KernelKind) throws {
        let lab = try KernelLab(kind)
        defer { lab.destroy() }
        let id = PolicyID(selector: selector, direction: .forward)
        let block = PolicyRequest(action: .block, priority: VigilOwnership.policyPriorities.lowerBound)
        try lab.ipsec.addPolicy(id, block)
        #expect(try lab.ipsec.listPolicies() == [InstalledPolicy(id: id, request: block)])
    }

    @Test(arguments: KernelKind.allCases)
    func routesAddReplaceDeleteWithStableErrors(kind: KernelKind) throws {
        let lab = try KernelLab(kind)
        defer { lab.destroy() }
        let table = VigilOwnership.defaultRouteTable
        let id = RouteID(table: table, destination: Lab.prefix("10.2.1.0/24"))
        let viaA = RouteRequest(device: "wan0", gateway: Lab.ip("192.0.2.254"), preferredSource: Lab.ip("10.1.1.1"))
        let viaB = RouteRequest(device: "wan0", gateway: Lab.ip("192.0.2.253"), preferredSource: Lab.ip("10.1.1.1"))

        try lab.routes.addRoute(id, viaA)
        #expect(try lab.routes.listRoutes(table: table)
                == [InstalledRoute(id: id, request: viaA, routingProtocol: VigilOwnership.routeProtocol)])
        #expect(code { try lab.routes.addRoute(id, viaA) } == .alreadyExists)
        try lab.routes.replaceRoute(id, viaB)
        #expect(try lab.routes.listRoutes(table: table).map(\.request) == [viaB])
        try lab.routes.deleteRoute(id)
        #expect(try lab.routes.listRoutes(table: table).isEmpty)
        #expect(code { try lab.routes.deleteRoute(id) } == .notFound)
    }

    @Test(arguments: KernelKind.allCases)
    func rulesAddListDelete(kind: KernelKind) throws {
        let lab = try KernelLab(kind)
        defer { lab.destroy() }
        let rule = RoutingRule(family: .ipv4, priority: VigilOwnership.defaultRulePriority,
                               table: VigilOwnership.defaultRouteTable)
        try lab.routes.addRule(rule)
        #expect(try lab.routes.listRules() == [rule])
        #expect(code { try lab.routes.addRule(rule) } == .alreadyExists)
        try lab.routes.deleteRule(rule)
        #expect(try lab.routes.listRules().isEmpty)
        #expect(code { try lab.routes.deleteRule(rule) } == .notFound)
    }

    /// Where the kernel has ESP the SA is installed, queryable and deletable; where it lacks ESP (this project's
    /// CI kernel) the add is refused as `.protocolNotSupported` and nothing is listed.
    @Test(arguments: KernelKind.allCases)
    func saAddIsInstalledOrRefusedAsLackingESP(kind: KernelKind) throws {
        let lab = try KernelLab(kind)
        defer { lab.destroy() }
        let child = Lab.child(1, remote: Lab.peerA, reqid: 0x5649_0001)
        if let refusal = addSARefusal(lab.ipsec, child.outboundSAID, child.outboundSARequest) {
            #expect(refusal.code == .protocolNotSupported)
            #expect(refusal.errno == 93 || kind == .inMemory)
            #expect(try lab.ipsec.listSAs().isEmpty)
            return
        }
        let state = try lab.ipsec.querySA(child.outboundSAID)
        #expect(state.reqid == child.reqid && state.source == Lab.local && state.packets == 0)
        #expect(code { try lab.ipsec.addSA(child.outboundSAID, child.outboundSARequest) } == .alreadyExists)
        try lab.ipsec.deleteSA(child.outboundSAID)
        #expect(code { _ = try lab.ipsec.querySA(child.outboundSAID) } == .notFound)
        #expect(code { try lab.ipsec.deleteSA(child.outboundSAID) } == .notFound)
    }
}

extension BehaviourTests {
    @Test(arguments: KernelKind.allCases)
    func missingSAsAreNotFound(kind: KernelKind) throws {
        let lab = try KernelLab(kind)
        defer { lab.destroy() }
        let child = Lab.child(1, remote: Lab.peerA, reqid: 0x5649_0001)
        #expect(code { _ = try lab.ipsec.querySA(child.inboundSAID) } == .notFound)
        #expect(code { try lab.ipsec.deleteSA(child.inboundSAID) } == .notFound)
        #expect(code { try lab.ipsec.updateSA(child.inboundSAID, child.inboundSARequest) } != nil)
        #expect(try lab.ipsec.listSAs().isEmpty)
    }

    /// Key lengths are checked before the request leaves Vigil: a kernel without ESP would not check them (its ESP
    /// init does), so a wrong length must never hide behind "kernel lacks ESP".
    @Test(arguments: KernelKind.allCases)
    func wrongKeyLengthIsRefusedAsInvalid(kind: KernelKind) throws {
        let lab = try KernelLab(kind)
        defer { lab.destroy() }
        let child = Lab.child(1, remote: Lab.peerA, reqid: 0x5649_0001)
        var request = child.inboundSARequest
        request.encryptionKey = Array(request.encryptionKey.prefix(5))
        let refusal = addSARefusal(lab.ipsec, child.inboundSAID, request)
        #expect(refusal?.code == .other)
        #expect(refusal?.errno == 22)
        #expect(refusal?.description.contains("key") == true)
    }
}

/// The stable code a throwing kernel call failed with; nil if it did not throw (or threw something else).
func code(_ body: () throws -> Void) -> KernelError.Code? {
    do {
        try body()
        return nil
    } catch {
        return (error as? KernelError)?.code
    }
}

/// The kernel's refusal of an SA add, or nil when the SA was installed.
func addSARefusal(_ kernel: any IPsecKernel, _ id: SAID, _ request: SARequest) -> KernelError? {
    do {
        try kernel.addSA(id, request)
        return nil
    } catch {
        return error
    }
}
