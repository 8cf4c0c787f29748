/// How Vigil recognizes what it installed, so start-up reconciliation removes its own leftovers and nothing else.
///
/// README text:
/// > Vigil marks everything it installs in the kernel. **SAs** carry a reqid in 0x56490000–0x5649FFFF ("VI"),
/// > unique per Child SA. **Policies** carry a priority in 0x56490000–0x5649FFFF (lower is preferred; Vigil orders
/// > its own policies by selector specificity inside the band) and, when they protect traffic, a template with a
/// > reqid in Vigil's band. **Routes and rules** carry routing protocol 86
/// > (`ip route show proto 86`). At start-up Vigil lists the kernel's SAs, policies, routes and rules, and deletes
/// > the ones in these bands left by a previous run; on clean shutdown it deletes what it installed. Keep other IKE
/// > daemons (strongSwan numbers reqids from 1 and uses priorities below 0x00100000) and manual policies outside
/// > these bands. No XFRM mark is used: a mark would change which packets match a policy.
public enum VigilOwnership {
    /// Reqids Vigil gives its Child SAs.
    public static let reqids: ClosedRange<UInt32> = 0x5649_0000...0x5649_FFFF
    /// Priorities of Vigil's policies.
    public static let policyPriorities: ClosedRange<UInt32> = 0x5649_0000...0x5649_FFFF
    /// `rtm_protocol` of Vigil's routes and `FRA_PROTOCOL` of its rules (unassigned in iproute2's rt_protos).
    public static let routeProtocol: UInt8 = 86
    /// Default table for Vigil's routes and the default priority of its `from all lookup` rule.
    public static let defaultRouteTable: UInt32 = 86
    public static let defaultRulePriority: UInt32 = 86
    /// The reqid of hold-form guard templates (`SelectorGuard.Form.hold`): inside the band, never handed to a Child
    /// SA (`ReqidAllocator` starts above it), so the kernel never finds an SA for it and drops what it matches.
    public static let holdReqid: UInt32 = reqids.lowerBound
    /// Metric of the userspace data plane's fail-closed blackhole routes: far above any tunnel route's, so the TUN
    /// route to the same prefix wins while vigild runs, and the blackhole remains when the TUN device vanishes.
    public static let dropRouteMetric: UInt32 = 0x5649_0000

    public static func owns(_ sa: SAState) -> Bool { reqids.contains(sa.reqid) }
    /// A policy is Vigil's when its priority is in Vigil's band and, if it protects, its template's reqid is too.
    public static func owns(_ policy: InstalledPolicy) -> Bool {
        guard policyPriorities.contains(policy.request.priority) else { return false }
        switch policy.request.action {
        case .protect(let template): return reqids.contains(template.reqid)
        case .block: return true
        }
    }
    public static func owns(_ route: InstalledRoute) -> Bool { route.routingProtocol == routeProtocol }

    /// A priority in Vigil's band for a selector: more specific selectors (longer prefixes) get lower numbers so
    /// the kernel prefers them, as RFC 4301 §4.4.1's ordered SPD would.
    public static func policyPriority(for selector: PolicySelector) -> UInt32 {
        let widest = 2 * selector.source.family.bitWidth
        let unspecified = widest - selector.source.length - selector.destination.length
        let protocolBonus = selector.ipProtocol == 0 ? 1 : 0
        return policyPriorities.lowerBound + UInt32(2 * unspecified + protocolBonus)
    }
}

/// Hands out reqids from Vigil's band, each once per run: duplicate reqids across Child SAs make the kernel pick the
/// wrong SA (a known strongSwan failure). A pure value; the daemon keeps one.
public struct ReqidAllocator: Sendable {
    private var next: UInt32
    private var free: [UInt32] = []

    public init(first: UInt32 = VigilOwnership.reqids.lowerBound + 1) {
        precondition(VigilOwnership.reqids.contains(first), "first reqid outside Vigil's band")
        next = first
    }

    /// A reqid no live Child SA uses; nil when all 65,535 are in use.
    public mutating func allocate() -> UInt32? {
        if let reused = free.popLast() { return reused }
        guard VigilOwnership.reqids.contains(next) else { return nil }
        defer { next &+= 1 }
        return next
    }

    /// Returns a reqid once its Child SA's SAs and policies are gone from the kernel.
    public mutating func release(_ reqid: UInt32) {
        precondition(VigilOwnership.reqids.contains(reqid) && reqid < next && !free.contains(reqid),
                     "releasing a reqid that was not allocated")
        free.insert(reqid, at: 0)
    }
}
