import VigilAddressing

// MARK: Kernel SA lifetimes

/// How far past the negotiated Child SA lifetime the kernel's own expiry is set. The IKE engine rekeys before the
/// negotiated lifetime ends and deletes the old SAs itself, so the kernel's expiry only bites when vigild is gone
/// (killed): the SAs it left then expire instead of carrying traffic for ever (RFC 4301 §4.4.2.1 lifetimes).
public enum KernelLifetimeMargin {
    /// Soft expiry (XFRM_MSG_EXPIRE with hard = 0): a notice only; vigild's own rekey came long before it.
    public static let softSeconds: UInt64 = 30
    /// Hard expiry: the kernel deletes the SA.
    public static let hardSeconds: UInt64 = 60
    /// The longest negotiated lifetime taken as it is; longer ones are clamped (no arithmetic can overflow, and an
    /// SA that outlives its daemon by years is no backstop).
    public static let longestNegotiatedSeconds: UInt64 = 7 * 86_400
}

extension SALifetime {
    /// Kernel lifetimes for a Child SA whose negotiated lifetime is `negotiated`: soft and hard expiry a margin
    /// beyond it (`KernelLifetimeMargin`); byte and packet limits stay unlimited, as the IKE engines set none.
    public static func backstop(negotiated: Duration) -> SALifetime {
        let whole = negotiated.components.seconds
        let seconds = min(whole <= 0 ? 0 : UInt64(whole), KernelLifetimeMargin.longestNegotiatedSeconds)
        return SALifetime(softSeconds: seconds + KernelLifetimeMargin.softSeconds,
                          hardSeconds: seconds + KernelLifetimeMargin.hardSeconds)
    }
}

// MARK: Values a peer can get wrong

/// A Child SA or guard the kernel layer refuses to build: its values came (in part) from the network, so a mismatch
/// is the peer's doing, never a trap. Stable codes for logs, events and the control API.
public enum KernelPlanError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The outer addresses differ in family (an IPv4 tunnel endpoint and an IPv6 one).
    case tunnelEndpointFamilyMismatch(local: IPAddress, remote: IPAddress)
    /// A traffic-selector pair mixes families (negotiated selectors against configured ones).
    case trafficSelectorFamilyMismatch(local: IPPrefix, remote: IPPrefix)
    /// A reqid outside `VigilOwnership.reqids`.
    case reqidOutsideBand(UInt32)

    public enum Code: String, Hashable, Sendable, CaseIterable {
        case tunnelEndpointFamilyMismatch = "tunnel-endpoint-family-mismatch"
        case trafficSelectorFamilyMismatch = "traffic-selector-family-mismatch"
        case reqidOutsideBand = "reqid-outside-band"
    }

    public var code: Code {
        switch self {
        case .tunnelEndpointFamilyMismatch: .tunnelEndpointFamilyMismatch
        case .trafficSelectorFamilyMismatch: .trafficSelectorFamilyMismatch
        case .reqidOutsideBand: .reqidOutsideBand
        }
    }

    public var description: String {
        switch self {
        case .tunnelEndpointFamilyMismatch(let local, let remote):
            "\(code.rawValue): tunnel endpoints \(local) and \(remote) differ in family"
        case .trafficSelectorFamilyMismatch(let local, let remote):
            "\(code.rawValue): traffic selectors \(local) and \(remote) differ in family"
        case .reqidOutsideBand(let reqid): "\(code.rawValue): reqid \(reqid) outside Vigil's band"
        }
    }
}

extension KernelChildSA {
    /// Checks what `init` requires, as an error value: call it before building a Child SA from negotiated values.
    public static func check(reqid: UInt32, localTunnelEndpoint: IPAddress, remoteTunnelEndpoint: IPAddress,
                             localSubnet: IPPrefix, remoteSubnet: IPPrefix) throws(KernelPlanError) {
        guard VigilOwnership.reqids.contains(reqid) else { throw .reqidOutsideBand(reqid) }
        guard localTunnelEndpoint.family == remoteTunnelEndpoint.family else {
            throw .tunnelEndpointFamilyMismatch(local: localTunnelEndpoint, remote: remoteTunnelEndpoint)
        }
        guard localSubnet.family == remoteSubnet.family else {
            throw .trafficSelectorFamilyMismatch(local: localSubnet, remote: remoteSubnet)
        }
    }

    /// This Child SA after its peer moved to `address` (and, encapsulated, to new ports): same reqid, selectors,
    /// SPIs and keys. Refused, as an error value, when the new address is of another family.
    public func movingPeer(to address: IPAddress, encapsulation: UDPEncapsulation?) throws(KernelPlanError) -> KernelChildSA {
        try Self.check(reqid: reqid, localTunnelEndpoint: localTunnelEndpoint, remoteTunnelEndpoint: address,
                       localSubnet: localSubnet, remoteSubnet: remoteSubnet)
        var moved = self
        moved.remoteTunnelEndpoint = address
        moved.encapsulation = encapsulation
        return moved
    }

    /// Same peer (same reqid, selectors), other outer addresses or UDP encapsulation ports.
    func sameTunnel(as other: KernelChildSA) -> Bool {
        localTunnelEndpoint == other.localTunnelEndpoint && remoteTunnelEndpoint == other.remoteTunnelEndpoint
            && encapsulation == other.encapsulation
    }
}

/// The three policies (out, in, fwd) of one selector pair, in the shape both Child SAs and guards use: the same ids
/// and priority, so one replaces the other in place.
enum SelectorPolicies {
    static func make(localSubnet: IPPrefix, remoteSubnet: IPPrefix, outbound: PolicyAction, inbound: PolicyAction)
        -> [(PolicyID, PolicyRequest)]
    {
        let outSelector = PolicySelector(source: localSubnet, destination: remoteSubnet)
        let inSelector = PolicySelector(source: remoteSubnet, destination: localSubnet)
        let priority = VigilOwnership.policyPriority(for: outSelector)
        return [
            (PolicyID(selector: outSelector, direction: .outbound), PolicyRequest(action: outbound, priority: priority)),
            (PolicyID(selector: inSelector, direction: .inbound), PolicyRequest(action: inbound, priority: priority)),
            (PolicyID(selector: inSelector, direction: .forward), PolicyRequest(action: inbound, priority: priority)),
        ]
    }
}

// MARK: Guards: what protects a selector pair while no Child SA does

/// Fail closed: the policies that keep a crypto-map entry's protected traffic from leaving in clear before its first
/// Child SA is up, while no peer is, and across a restart after vigild was killed. Same selectors, directions and
/// priority as the Child SA's policies, so a Child SA repoints a guard in place (XFRM_MSG_UPDPOLICY) and a cleared
/// one returns to it in place.
public struct SelectorGuard: Hashable, Sendable, CustomStringConvertible {
    public enum Form: Hashable, Sendable {
        /// XFRM_POLICY_BLOCK: dropped (DPD actions `restart` and `clear`).
        case block
        /// DPD action `hold`: a template naming the tunnel endpoints with `VigilOwnership.holdReqid`, which no SA
        /// ever carries: the kernel drops and raises an acquire, the userspace data plane queues the packet.
        case hold(localTunnelEndpoint: IPAddress, remoteTunnelEndpoint: IPAddress)
    }

    public let localSubnet: IPPrefix
    public let remoteSubnet: IPPrefix
    public let form: Form

    public init(localSubnet: IPPrefix, remoteSubnet: IPPrefix, form: Form) throws(KernelPlanError) {
        guard localSubnet.family == remoteSubnet.family else {
            throw .trafficSelectorFamilyMismatch(local: localSubnet, remote: remoteSubnet)
        }
        if case .hold(let local, let remote) = form, local.family != remote.family {
            throw .tunnelEndpointFamilyMismatch(local: local, remote: remote)
        }
        self.localSubnet = localSubnet
        self.remoteSubnet = remoteSubnet
        self.form = form
    }

    public var policies: [(PolicyID, PolicyRequest)] {
        switch form {
        case .block:
            return SelectorPolicies.make(localSubnet: localSubnet, remoteSubnet: remoteSubnet,
                                         outbound: .block, inbound: .block)
        case .hold(let local, let remote):
            let reqid = VigilOwnership.holdReqid
            return SelectorPolicies.make(
                localSubnet: localSubnet, remoteSubnet: remoteSubnet,
                outbound: .protect(PolicyTemplate(source: local, destination: remote, reqid: reqid)),
                inbound: .protect(PolicyTemplate(source: remote, destination: local, reqid: reqid)))
        }
    }

    public var description: String {
        switch form {
        case .block: "block \(localSubnet) === \(remoteSubnet)"
        case .hold(let local, let remote): "hold \(localSubnet) === \(remoteSubnet) via \(local) -> \(remote)"
        }
    }
}

/// What start-up reconciliation found in the kernel.
public struct KernelListing: Hashable, Sendable {
    public var sas: [SAState]
    public var policies: [InstalledPolicy]
    public var routes: [InstalledRoute]
    public var rules: [RoutingRule]

    public init(sas: [SAState] = [], policies: [InstalledPolicy] = [], routes: [InstalledRoute] = [],
                rules: [RoutingRule] = []) {
        self.sas = sas
        self.policies = policies
        self.routes = routes
        self.rules = rules
    }
}

/// Start-up reconciliation as planned: the steps, and what they mean for the log.
public struct Reconciliation: Hashable, Sendable {
    public var plan: KernelPlan
    /// Leftover Vigil policies turned into their guard in place (never deleted first).
    public var adopted: [PolicyID]
    /// Leftover routes kept for a guarded subnet (a Child SA's route replaces them in place later).
    public var keptRoutes: [RouteID]
    /// Another daemon's policies on a guarded selector and direction: left alone, so that selector is not guarded.
    public var foreign: [InstalledPolicy]
    /// Leftovers deleted once every guard was in place.
    public var removed: Int
}

extension KernelPlanner {
    /// Fail closed at start-up: every guard's policies, added (a leftover one with the same id is updated in place
    /// by the executor: an add refused with EEXIST changes nothing, then the update swaps it).
    public static func installGuards(_ guards: [SelectorGuard]) -> KernelPlan {
        KernelPlan(guards.flatMap { $0.policies.map { KernelStep.addPolicy($0.0, $0.1) } })
    }

    /// Start-up after a run that may have been killed: protection first, removal last, never a delete before its
    /// replacement exists.
    /// 1. Each guard policy: a leftover of Vigil's with that id is updated in place into the guard
    ///    (XFRM_MSG_UPDPOLICY), a missing one added; another daemon's policy there is left alone (`foreign`).
    /// 2. The fail-closed blackhole routes (replace: installed or kept, no gap), the routing rules (kept if there).
    /// 3. Only then Vigil's leftovers nobody adopted: policies, routes (a unicast route to a guarded subnet is kept:
    ///    the Child SA's route replaces it), rules, and last the SAs, which no policy uses any more.
    public static func reconcile(guards: [SelectorGuard], dropRoutes: [RouteID], rules: [RoutingRule],
                                 found: KernelListing) -> Reconciliation {
        var steps: [KernelStep] = []
        var adopted: [PolicyID] = []
        var foreign: [InstalledPolicy] = []
        let listed = Dictionary(found.policies.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var guarded = Set<PolicyID>()
        for (id, request) in guards.flatMap(\.policies) where guarded.insert(id).inserted {
            if let leftover = listed[id] {
                if VigilOwnership.owns(leftover) {
                    steps.append(.updatePolicy(id, request))
                    adopted.append(id)
                } else {
                    foreign.append(leftover)
                }
            } else {
                steps.append(.addPolicy(id, request))
            }
        }
        steps += dropRoutes.map { KernelStep.replaceRoute($0, .drop) }
        steps += rules.filter { !found.rules.contains($0) }.map { KernelStep.addRule($0) }

        var removals: [KernelStep] = []
        removals += found.policies.filter { VigilOwnership.owns($0) && !guarded.contains($0.id) }
            .map { KernelStep.deletePolicy($0.id) }
        let guardedSubnets = Set(guards.map(\.remoteSubnet))
        var keptRoutes: [RouteID] = []
        for route in found.routes where VigilOwnership.owns(route) && !dropRoutes.contains(route.id) {
            switch route.id.type {
            case .unicast where guardedSubnets.contains(route.id.destination):
                keptRoutes.append(route.id)
            case .unicast, .blackhole:
                removals.append(.deleteRoute(route.id))
            }
        }
        removals += found.rules.filter { !rules.contains($0) }.map { KernelStep.deleteRule($0) }
        removals += found.sas.filter(VigilOwnership.owns).map { KernelStep.deleteSA($0.id) }
        return Reconciliation(plan: KernelPlan(steps + removals), adopted: adopted, keptRoutes: keptRoutes,
                              foreign: foreign, removed: removals.count)
    }

    /// Established over a guard: SAs first, then the guard's policies repointed to the Child SA's templates in place
    /// (update, never delete-then-add), then the route.
    public static func establish(_ child: KernelChildSA, overGuard: Bool) -> KernelPlan {
        guard overGuard else { return establish(child) }
        var steps = saSteps(child, install: true)
        steps += child.policies.map { KernelStep.updatePolicy($0.0, $0.1) }
        if let id = child.routeID, let request = child.routeRequest { steps.append(.addRoute(id, request)) }
        return KernelPlan(steps)
    }

    /// Protection ends while vigild runs (DPD action `clear`, `vigil clear`): the policies return to the guard in
    /// place, then the route and the SAs go. Nothing leaves in clear; a later `establish(_:overGuard:)` resumes.
    public static func release(_ child: KernelChildSA, to guard: SelectorGuard) -> KernelPlan {
        precondition(child.localSubnet == `guard`.localSubnet && child.remoteSubnet == `guard`.remoteSubnet,
                     "a Child SA returns to the guard of its own selectors")
        var steps = `guard`.policies.map { KernelStep.updatePolicy($0.0, $0.1) }
        if let id = child.routeID { steps.append(.deleteRoute(id)) }
        return KernelPlan(steps + saSteps(child, install: false))
    }

    /// Clean shutdown: the guards and blackhole routes go too. A deliberate stop removes protection (the operator
    /// stopped the service); a crash keeps it (nothing runs to remove it) until the next start adopts it.
    public static func removeGuards(_ guards: [SelectorGuard], dropRoutes: [RouteID]) -> KernelPlan {
        KernelPlan(guards.flatMap { $0.policies.map { KernelStep.deletePolicy($0.0) } }
                   + dropRoutes.map { KernelStep.deleteRoute($0) })
    }

    /// Same peer, new tunnel endpoint or encapsulation port (RFC 7296 §2.23 NAT mapping change, or a rekey that
    /// came from a new address): make-before-break. SAs whose id (destination, SPI) is unchanged are updated in place
    /// (XFRM_MSG_UPDSA carries the new encapsulation ports); the others are added first. Then the policies'
    /// templates are updated in place if the outer addresses moved, the route replaced if it changed, and the old
    /// SAs deleted last. `new` keeps `old`'s reqid and selectors.
    public static func moveEndpoints(from old: KernelChildSA, to new: KernelChildSA) -> KernelPlan {
        precondition(old.reqid == new.reqid && old.localSubnet == new.localSubnet && old.remoteSubnet == new.remoteSubnet,
                     "an endpoint move keeps the reqid and selectors")
        var steps: [KernelStep] = []
        var deletions: [KernelStep] = []
        let directions = [(old.inboundSAID, new.inboundSAID, new.inboundSARequest),
                          (old.outboundSAID, new.outboundSAID, new.outboundSARequest)]
        for (oldID, newID, request) in directions {
            if oldID == newID {
                steps.append(.updateSA(newID, request))
            } else {
                steps.append(.addSA(newID, request))
                deletions.append(.deleteSA(oldID))
            }
        }
        if old.localTunnelEndpoint != new.localTunnelEndpoint || old.remoteTunnelEndpoint != new.remoteTunnelEndpoint {
            steps += new.policies.map { KernelStep.updatePolicy($0.0, $0.1) }
        }
        if let id = new.routeID, let request = new.routeRequest, id != old.routeID || request != old.routeRequest {
            steps.append(.replaceRoute(id, request))
        }
        if let oldID = old.routeID, oldID != new.routeID { steps.append(.deleteRoute(oldID)) }
        return KernelPlan(steps + deletions)
    }
}

extension KernelExecutor {
    /// Start-up reconciliation with fail-closed guards (`KernelPlanner.reconcile`): lists the kernel (routes in
    /// `tables`), then applies. A refused listing throws.
    public func reconcile(guards: [SelectorGuard], dropRoutes: [RouteID], rules: [RoutingRule], tables: [UInt32])
        throws(KernelError) -> (Reconciliation, KernelPlanReport)
    {
        var found = KernelListing(sas: try ipsec.listSAs(), policies: try ipsec.listPolicies(), rules: try routes.listRules())
        for table in Set(tables).sorted() { found.routes += try routes.listRoutes(table: table) }
        let reconciliation = KernelPlanner.reconcile(guards: guards, dropRoutes: dropRoutes, rules: rules, found: found)
        return (reconciliation, apply(reconciliation.plan))
    }
}
