import VigilAddressing
import VigilAlgorithms

/// Keys and SPI of one direction of a Child SA. `description` never prints the keys.
public struct SAKeys: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public var spi: UInt32
    public var encryptionKey: [UInt8]
    public var integrityKey: [UInt8]

    public init(spi: UInt32, encryptionKey: [UInt8], integrityKey: [UInt8] = []) {
        self.spi = spi
        self.encryptionKey = encryptionKey
        self.integrityKey = integrityKey
    }

    public var description: String { "spi 0x\(spiHex(spi)) (keys redacted)" }
    public var debugDescription: String { description }
}

/// Where the route to the remote protected subnet goes.
public struct ChildSARoute: Hashable, Sendable {
    /// `RoutingTable.main` or a table consulted through a rule (`KernelPlanner.installRoutingRule`).
    public var table: UInt32
    /// The interface towards the peer.
    public var device: String
    /// Next hop towards the peer, if not on-link.
    public var gateway: IPAddress?
    /// The local protected address (inside `localSubnet`): source hint for locally originated traffic.
    public var source: IPAddress?

    public init(table: UInt32 = VigilOwnership.defaultRouteTable, device: String, gateway: IPAddress? = nil,
                source: IPAddress? = nil) {
        self.table = table
        self.device = device
        self.gateway = gateway
        self.source = source
    }
}

/// A Child SA as the kernel needs it: what the IKE engine negotiated (SPIs, keys, algorithms, selectors) with the
/// peer it was negotiated with, plus the reqid Vigil gave it. One selector pair per Child SA, tunnel mode.
public struct KernelChildSA: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// Unique per Child SA, from `ReqidAllocator`; a rekey keeps it, a move to another peer gets a new one.
    public var reqid: UInt32
    /// Outer addresses: this gateway and the peer.
    public var localTunnelEndpoint: IPAddress
    public var remoteTunnelEndpoint: IPAddress
    /// Protected subnets (the traffic selectors).
    public var localSubnet: IPPrefix
    public var remoteSubnet: IPPrefix
    /// Inbound SA: SPI we chose, keys the peer encrypts with. Outbound: SPI the peer chose.
    public var inbound: SAKeys
    public var outbound: SAKeys
    public var encryption: EncryptionAlgorithm
    public var integrity: IntegrityAlgorithm?
    /// UDP encapsulation when NAT was detected: local and remote ports (usually 4500/4500).
    public var encapsulation: UDPEncapsulation?
    public var replayWindow: UInt8
    public var lifetime: SALifetime
    /// nil: no route (the peer's subnet is reachable by other means).
    public var route: ChildSARoute?

    public init(
        reqid: UInt32, localTunnelEndpoint: IPAddress, remoteTunnelEndpoint: IPAddress,
        localSubnet: IPPrefix, remoteSubnet: IPPrefix, inbound: SAKeys, outbound: SAKeys,
        encryption: EncryptionAlgorithm, integrity: IntegrityAlgorithm?, encapsulation: UDPEncapsulation? = nil,
        replayWindow: UInt8 = 32, lifetime: SALifetime = .unlimited, route: ChildSARoute? = nil
    ) {
        precondition(VigilOwnership.reqids.contains(reqid), "reqid \(reqid) outside Vigil's band")
        precondition(localTunnelEndpoint.family == remoteTunnelEndpoint.family, "tunnel endpoints differ in family")
        precondition(localSubnet.family == remoteSubnet.family, "protected subnets differ in family")
        self.reqid = reqid
        self.localTunnelEndpoint = localTunnelEndpoint
        self.remoteTunnelEndpoint = remoteTunnelEndpoint
        self.localSubnet = localSubnet
        self.remoteSubnet = remoteSubnet
        self.inbound = inbound
        self.outbound = outbound
        self.encryption = encryption
        self.integrity = integrity
        self.encapsulation = encapsulation
        self.replayWindow = replayWindow
        self.lifetime = lifetime
        self.route = route
    }

    /// For logs: selectors, peers, SPIs and reqid; never keys.
    public var description: String {
        "Child SA reqid \(reqid) \(localSubnet) === \(remoteSubnet) via \(localTunnelEndpoint) -> \(remoteTunnelEndpoint)"
            + " in \(inbound) out \(outbound)"
    }

    public var debugDescription: String { description }

    // MARK: What this Child SA puts in the kernel

    public var inboundSAID: SAID { SAID(destination: localTunnelEndpoint, spi: inbound.spi) }
    public var outboundSAID: SAID { SAID(destination: remoteTunnelEndpoint, spi: outbound.spi) }

    public var inboundSARequest: SARequest {
        SARequest(
            source: remoteTunnelEndpoint, destination: localTunnelEndpoint, reqid: reqid,
            encryption: encryption, encryptionKey: inbound.encryptionKey,
            integrity: integrity, integrityKey: inbound.integrityKey,
            encapsulation: encapsulation.map { UDPEncapsulation(sourcePort: $0.destinationPort, destinationPort: $0.sourcePort) },
            replayWindow: replayWindow, lifetime: lifetime)
    }

    public var outboundSARequest: SARequest {
        SARequest(
            source: localTunnelEndpoint, destination: remoteTunnelEndpoint, reqid: reqid,
            encryption: encryption, encryptionKey: outbound.encryptionKey,
            integrity: integrity, integrityKey: outbound.integrityKey,
            encapsulation: encapsulation, replayWindow: 0, lifetime: lifetime)
    }

    /// The three policies (out, in, fwd) that send this Child SA's traffic through its SAs.
    public var policies: [(PolicyID, PolicyRequest)] {
        SelectorPolicies.make(
            localSubnet: localSubnet, remoteSubnet: remoteSubnet,
            outbound: .protect(PolicyTemplate(source: localTunnelEndpoint, destination: remoteTunnelEndpoint, reqid: reqid)),
            inbound: .protect(PolicyTemplate(source: remoteTunnelEndpoint, destination: localTunnelEndpoint, reqid: reqid)))
    }

    public var routeID: RouteID? { route.map { RouteID(table: $0.table, destination: remoteSubnet) } }
    public var routeRequest: RouteRequest? {
        route.map { RouteRequest(device: $0.device, gateway: $0.gateway, preferredSource: $0.source) }
    }
}

/// An ordered list of kernel steps. The order is the point: see each `KernelPlanner` function.
public struct KernelPlan: Hashable, Sendable, CustomStringConvertible {
    public var steps: [KernelStep]
    public init(_ steps: [KernelStep]) { self.steps = steps }
    public var description: String { steps.map(\.description).joined(separator: "\n") }
}

/// Pure: Child SA values in, ordered kernel steps out. What the daemon calls when a Child SA is established,
/// rekeyed, deleted, moved to another peer, or held after its peer died; `KernelExecutor` applies the result.
public enum KernelPlanner {
    /// Established: SAs first (inbound, then outbound), then policies (out, in, fwd), then the route.
    /// A policy never exists before the SA it needs, so no packet waits on an acquire.
    public static func establish(_ child: KernelChildSA) -> KernelPlan {
        var steps = saSteps(child, install: true)
        steps += child.policies.map { KernelStep.addPolicy($0.0, $0.1) }
        if let id = child.routeID, let request = child.routeRequest { steps.append(.addRoute(id, request)) }
        return KernelPlan(steps)
    }

    /// Rekeyed (same peer, same reqid, same selectors): install the new SAs, leave policies and route alone, delete
    /// the old SAs last so traffic in flight still finds an SA. A rekey whose outer addresses or encapsulation ports
    /// differ (the peer's NAT mapping changed, RFC 7296 §2.23) is an endpoint move as well: `moveEndpoints`, which
    /// also repoints the policies' templates in place. The peer decides where it speaks from, so that is a planned
    /// change, never a trap. (The reqid and selectors are Vigil's own choice for the rekeyed Child SA: our bug if
    /// they differ.)
    public static func rekey(from old: KernelChildSA, to new: KernelChildSA) -> KernelPlan {
        precondition(old.reqid == new.reqid && old.localSubnet == new.localSubnet && old.remoteSubnet == new.remoteSubnet,
                     "a rekey keeps the reqid and selectors")
        guard old.sameTunnel(as: new) else { return moveEndpoints(from: old, to: new) }
        return KernelPlan(saSteps(new, install: true) + saSteps(old, install: false))
    }

    /// Superseded (same peer, same reqid, same selectors, a Child SA negotiated beside the installed one, as an
    /// IKEv1 Quick Mode that renews a Phase 2 is): install the new SAs, inbound then outbound, so outbound traffic
    /// takes the newest SA, and keep the old ones: the peer may go on sending on them until it deletes them (or they
    /// expire), and RFC 2409 links nothing between the two. `retire` removes them then.
    public static func supersede(_ old: KernelChildSA, with new: KernelChildSA) -> KernelPlan {
        precondition(old.reqid == new.reqid && old.localSubnet == new.localSubnet && old.remoteSubnet == new.remoteSubnet,
                     "a superseding Child SA keeps the reqid and selectors")
        return KernelPlan(saSteps(new, install: true))
    }

    /// Superseded, but the new outbound SA waits (a rekey we answered: the peer installs its new inbound SA when our
    /// response arrives, and deletes the old Child SA once it has): only the new inbound SA now, so the peer's
    /// traffic on the new SA is received while ours still leaves on the old one. `activateOutbound` follows.
    public static func supersedeInbound(_ old: KernelChildSA, with new: KernelChildSA) -> KernelPlan {
        precondition(old.reqid == new.reqid && old.localSubnet == new.localSubnet && old.remoteSubnet == new.remoteSubnet,
                     "a superseding Child SA keeps the reqid and selectors")
        return KernelPlan([.addSA(new.inboundSAID, new.inboundSARequest)])
    }

    /// The waiting outbound SA of `supersedeInbound` goes in (before the old one is retired): outbound traffic takes
    /// the newest SA.
    public static func activateOutbound(_ child: KernelChildSA) -> KernelPlan {
        KernelPlan([.addSA(child.outboundSAID, child.outboundSARequest)])
    }

    /// A superseded Child SA goes (deleted by the peer, or expired): its SAs only. The policies and route belong to
    /// the Child SA that superseded it.
    public static func retire(_ child: KernelChildSA) -> KernelPlan {
        KernelPlan(saSteps(child, install: false))
    }

    /// Failover, make-before-break: install peer B's SAs, repoint the policies' templates from A to B in place
    /// (update, never delete-then-add: there is no instant without a policy, so nothing leaks in clear), replace the
    /// route, then delete A's SAs. `to` has its own reqid (unique per Child SA) and the same selectors.
    public static func failover(from a: KernelChildSA, to b: KernelChildSA) -> KernelPlan {
        precondition(a.localSubnet == b.localSubnet && a.remoteSubnet == b.remoteSubnet,
                     "failover moves a Child SA's selectors to another peer unchanged")
        var steps = saSteps(b, install: true)
        steps += b.policies.map { KernelStep.updatePolicy($0.0, $0.1) }
        if let id = b.routeID, let request = b.routeRequest {
            steps.append(.replaceRoute(id, request))
        }
        if let oldID = a.routeID, oldID != b.routeID { steps.append(.deleteRoute(oldID)) }
        steps += saSteps(a, install: false)
        return KernelPlan(steps)
    }

    /// `dpd action: hold`: the peer is dead and no other peer took over. The policies stay exactly as they are,
    /// templates still naming the dead peer, and its SAs are deleted: the kernel then finds no SA for the template and
    /// drops matching packets (raising an acquire) — traffic is held, never sent in clear. The route stays so
    /// traffic keeps meeting the policy. A later `failover` (or `establish` after re-negotiation, whose policy adds
    /// the executor turns into updates) resumes it.
    public static func hold(_ child: KernelChildSA) -> KernelPlan {
        KernelPlan(saSteps(child, install: false))
    }

    /// Deleted (or shut down): policies first, so no packet is sent towards SAs about to vanish; then the route,
    /// then the SAs.
    public static func delete(_ child: KernelChildSA) -> KernelPlan {
        var steps = child.policies.map { KernelStep.deletePolicy($0.0) }
        if let id = child.routeID { steps.append(.deleteRoute(id)) }
        return KernelPlan(steps + saSteps(child, install: false))
    }

    /// The rule that makes Vigil's table count, once per address family, at start-up (not for the main table).
    public static func installRoutingRule(table: UInt32 = VigilOwnership.defaultRouteTable,
                                          priority: UInt32 = VigilOwnership.defaultRulePriority,
                                          families: [IPAddress.Family] = [.ipv4, .ipv6]) -> KernelPlan {
        guard table != RoutingTable.main else { return KernelPlan([]) }
        return KernelPlan(families.map { .addRule(RoutingRule(family: $0, priority: priority, table: table)) })
    }

    /// Start-up reconciliation and shutdown: delete everything in the listings that is Vigil's
    /// (`VigilOwnership`) — policies first, then routes, rules and SAs — and nothing else.
    public static func removeOwned(
        sas: [SAState], policies: [InstalledPolicy], routes: [InstalledRoute], rules: [RoutingRule]
    ) -> KernelPlan {
        var steps = policies.filter(VigilOwnership.owns).map { KernelStep.deletePolicy($0.id) }
        steps += routes.filter(VigilOwnership.owns).map { KernelStep.deleteRoute($0.id) }
        steps += rules.map { KernelStep.deleteRule($0) }
        steps += sas.filter(VigilOwnership.owns).map { KernelStep.deleteSA($0.id) }
        return KernelPlan(steps)
    }

    static func saSteps(_ child: KernelChildSA, install: Bool) -> [KernelStep] {
        install
            ? [.addSA(child.inboundSAID, child.inboundSARequest), .addSA(child.outboundSAID, child.outboundSARequest)]
            : [.deleteSA(child.inboundSAID), .deleteSA(child.outboundSAID)]
    }
}
