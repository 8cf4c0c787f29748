import Foundation
import VigilAddressing
import VigilConfig
import VigilKernel

/// The daemon's view of where SAs, policies and routes go: the kernel (XFRM via libnl), the userspace data plane, or
/// — in tests on a kernel without ESP — recorded SAs with real policies and routes. Everything goes through a
/// `KernelExecutor`, and every refused step is reported, never taken as done.
public final class DaemonKernel {
    public let executor: KernelExecutor
    /// What carries ESP, for status and logs.
    public let dataplaneDescription: String
    /// Route table for routes to remote protected subnets (`RoutingTable.main` or a table with a rule).
    public let table: UInt32
    public let installRoutes: Bool
    /// The device routes point at: the userspace data plane's TUN, or (nil) the interface holding the local tunnel
    /// endpoint address (kernel data plane: XFRM policies catch the packets).
    let tunnelDevice: String?

    public init(ipsec: any IPsecKernel, routes: any RouteKernel, dataplaneDescription: String,
                settings: KernelSettings, tunnelDevice: String?) {
        executor = KernelExecutor(ipsec: ipsec, routes: routes)
        self.dataplaneDescription = dataplaneDescription
        switch settings.routeTable {
        case .main: table = RoutingTable.main
        case .number(let number): table = number
        }
        installRoutes = settings.installRoutes
        self.tunnelDevice = tunnelDevice
    }

    /// Fail-closed guards by selector pair ("local=remote", as `KernelChildSA.selectorKey`) that the kernel
    /// accepted at start-up: their policies are there, so a Child SA repoints them in place.
    private(set) var guards: [String: SelectorGuard] = [:]
    /// The userspace data plane's blackhole routes (one per guarded remote subnet), installed at start-up.
    private(set) var dropRoutes: [RouteID] = []

    /// Whether blackhole routes back the userspace data plane: its TUN device (and every route through it) vanishes
    /// with vigild, and then only these keep protected traffic from following another route in clear. The kernel
    /// data plane needs none: its guard policies stay in the kernel when vigild dies.
    var installsDropRoutes: Bool { installRoutes && tunnelDevice != nil }

    /// The rules that make Vigil's table count (none for the main table, none when routes are not installed).
    private var wantedRules: [RoutingRule] {
        guard installRoutes else { return [] }
        return KernelPlanner.installRoutingRule(table: table).steps.compactMap { step -> RoutingRule? in
            if case .addRule(let rule) = step { return rule }
            return nil
        }
    }

    /// Start-up, fail closed: guard every configured selector pair (leftovers of a killed run updated in place into
    /// the guard, never deleted first), install the blackhole routes and the rule, and only then remove what an
    /// earlier run left and nobody adopted. Returns a line for the event log.
    ///
    /// No blackhole route goes to a remote subnet that holds a peer (`peers`, a full tunnel): routes apply to every
    /// socket, so it would drop IKE and the outer ESP-in-UDP packets themselves (the sockets' IPsec policy bypass
    /// does not reach routing). Its guard policies still go in; the line says which routes were left out.
    func reconcile(guards wanted: [String: SelectorGuard], peers: [IPAddress] = []) -> String {
        let keys = wanted.keys.sorted()
        let ordered = keys.map { wanted[$0]! }
        let remoteSubnets = Set(ordered.map(\.remoteSubnet))
        let coveringPeers = remoteSubnets.filter { subnet in peers.contains(where: subnet.contains) }
        let drops = installsDropRoutes
            ? remoteSubnets.subtracting(coveringPeers).map { RouteID(table: table, destination: $0, type: .blackhole) }
                .sorted { $0.description < $1.description }
            : []
        var lines: [String] = []
        do {
            let (plan, report) = try executor.reconcile(guards: ordered, dropRoutes: drops, rules: wantedRules, tables: [table])
            let refusedPolicies = Set(report.refused.compactMap { refusal -> PolicyID? in
                switch refusal.step {
                case .addPolicy(let id, _), .updatePolicy(let id, _): id
                default: nil
                }
            })
            let foreign = Set(plan.foreign.map(\.id))
            for key in keys {
                let candidate = wanted[key]!
                if candidate.policies.allSatisfy({ !refusedPolicies.contains($0.0) && !foreign.contains($0.0) }) {
                    guards[key] = candidate
                }
            }
            let refusedRoutes = Set(report.refused.compactMap { refusal -> RouteID? in
                if case .replaceRoute(let id, _) = refusal.step { return id }
                return nil
            })
            dropRoutes = drops.filter { !refusedRoutes.contains($0) }
            let blocks = guards.values.filter { $0.form == .block }.count
            lines.append("fail closed: \(blocks) block and \(guards.count - blocks) hold guards for \(wanted.count) selector pairs"
                + (installsDropRoutes ? ", \(dropRoutes.count) blackhole routes" : ""))
            lines.append("leftovers: \(plan.adopted.count) policies adopted in place, \(plan.keptRoutes.count) routes kept, "
                + "\(plan.removed) objects removed after the guards were in")
            if !plan.foreign.isEmpty {
                lines.append("NOT guarded, another daemon's policy holds the selector: \(plan.foreign.map(\.description).joined(separator: "; "))")
            }
            if !report.refused.isEmpty {
                lines.append("\(report.refused.count) refused: \(report.refused.map(\.description).joined(separator: "; "))")
            }
        } catch {
            // Without a listing nothing can be adopted or removed, but the guards still go in (an add that finds a
            // leftover becomes an update in place).
            let report = executor.apply(KernelPlanner.installGuards(ordered))
            let refused = Set(report.refused.compactMap { refusal -> PolicyID? in
                if case .addPolicy(let id, _) = refusal.step { return id }
                return nil
            })
            for key in keys where wanted[key]!.policies.allSatisfy({ !refused.contains($0.0) }) { guards[key] = wanted[key]! }
            lines.append("could not list the kernel's state (\(error)); \(guards.count) of \(wanted.count) selector pairs guarded, "
                + "leftovers left in place")
        }
        if installsDropRoutes, !coveringPeers.isEmpty {
            lines.append("no blackhole route to \(coveringPeers.map(\.description).sorted().joined(separator: ", ")): "
                + "it holds a peer, and the route would drop IKE")
        }
        return lines.joined(separator: "; ")
    }

    /// A reload that adds or replaces entries: their guards go in (a guard already there in another form is updated
    /// in place), with their blackhole routes, before anything of theirs negotiates. Another daemon's policy on a
    /// selector is left alone, as at start-up (`reconcile`). Returns the refusals and the selectors left unguarded; a
    /// guard not installed is not recorded, so its Child SA is established without it.
    func installGuards(_ requested: [String: SelectorGuard], peers: [IPAddress]) -> [String] {
        let foreign = Set(((try? executor.ipsec.listPolicies()) ?? []).filter { !VigilOwnership.owns($0) }.map(\.id))
        let held = requested.filter { _, candidate in candidate.policies.contains { foreign.contains($0.0) } }
        let wanted = requested.filter { held[$0.key] == nil }
        var steps: [KernelStep] = []
        for key in wanted.keys.sorted() where guards[key] != wanted[key] {
            let policies = wanted[key]!.policies
            steps += guards[key] == nil ? policies.map { KernelStep.addPolicy($0.0, $0.1) } : policies.map { KernelStep.updatePolicy($0.0, $0.1) }
        }
        let routes = installsDropRoutes
            ? Set(wanted.values.map(\.remoteSubnet)).filter { subnet in !peers.contains(where: subnet.contains) }
                .map { RouteID(table: table, destination: $0, type: .blackhole) }.filter { !dropRoutes.contains($0) }
                .sorted { $0.description < $1.description }
            : []
        steps += routes.map { KernelStep.replaceRoute($0, .drop) }
        let report = executor.apply(KernelPlan(steps))
        let refused = Set(report.refused.map(\.step))
        for key in wanted.keys where wanted[key]!.policies.allSatisfy({ !refused.contains(.addPolicy($0.0, $0.1)) && !refused.contains(.updatePolicy($0.0, $0.1)) }) {
            guards[key] = wanted[key]!
        }
        dropRoutes += routes.filter { !refused.contains(.replaceRoute($0, .drop)) }
        return report.refused.map(\.description)
            + held.keys.sorted().map { "\($0) NOT guarded: another daemon's policy holds the selector" }
    }

    /// A reload that removes or replaces entries: the guards no entry needs any more (`keeping` are the selector
    /// pairs still wanted) and the blackhole routes of remote subnets no guard covers any more. Returns the
    /// refusals.
    func removeGuards(keeping: Set<String>) -> [String] {
        let gone = guards.keys.filter { !keeping.contains($0) }.sorted()
        let remaining = Set(guards.filter { keeping.contains($0.key) }.values.map(\.remoteSubnet))
        let routes = dropRoutes.filter { !remaining.contains($0.destination) }
        let report = executor.apply(KernelPlanner.removeGuards(gone.map { guards[$0]! }, dropRoutes: routes))
        for key in gone { guards[key] = nil }
        dropRoutes.removeAll { routes.contains($0) }
        return report.refused.map(\.description)
    }

    /// Clean shutdown, after the Child SAs' own removal: the guards, blackhole routes and rule go too. A deliberate
    /// stop removes protection (the operator stopped the service); a crash keeps it until the next start adopts it.
    func removeRule() -> String {
        var steps = KernelPlanner.removeGuards(guards.keys.sorted().map { guards[$0]! }, dropRoutes: dropRoutes).steps
        steps += wantedRules.map { KernelStep.deleteRule($0) }
        guards.removeAll()
        dropRoutes.removeAll()
        let report = executor.apply(KernelPlan(steps))
        return report.refused.isEmpty ? "kernel state removed" : "removal refused: \(report.refused.map(\.description).joined(separator: "; "))"
    }

    /// The plan that installs a Child SA: over its guard (policies updated in place) when one is installed.
    func establishPlan(_ child: KernelChildSA) -> KernelPlan {
        KernelPlanner.establish(child, overGuard: guards[child.selectorKey] != nil)
    }

    /// The plan that ends a Child SA's protection while vigild runs: back to its guard in place, or (no guard for
    /// its selectors, e.g. narrowed ones inside a guarded pair) its policies deleted.
    func releasePlan(_ child: KernelChildSA) -> KernelPlan {
        guard let selectorGuard = guards[child.selectorKey] else { return KernelPlanner.delete(child) }
        return KernelPlanner.release(child, to: selectorGuard)
    }

    /// Kernel lifetimes for a Child SA of an entry: a margin beyond the negotiated lifetime. IKEv2 lifetimes are
    /// local policy (RFC 7296 §2.8): the configured one is what the engine rekeys by. An IKEv1 responder takes the
    /// initiator's proposed lifetime and the engine does not report it, so IKEv1 SAs get at least
    /// `ikev1AcceptedLifetime` (a Cisco peer's 8 h default and the configuration's longest, 1 day).
    static func kernelLifetime(childLifetime: Duration, ikeVersion: IKEVersionTag) -> SALifetime {
        switch ikeVersion {
        case .v2: SALifetime.backstop(negotiated: childLifetime)
        case .v1: SALifetime.backstop(negotiated: max(childLifetime, ikev1AcceptedLifetime))
        }
    }

    /// The longest IKEv1 Phase 2 lifetime taken as possibly negotiated when the engine does not say (Cisco's
    /// `set security-association lifetime seconds` maximum, 86,400 s).
    static let ikev1AcceptedLifetime = Duration.seconds(86_400)

    /// The route for a Child SA: through the TUN device (userspace) or the interface that holds our tunnel endpoint
    /// (kernel), with a local protected address as source hint when this host has one.
    func route(localTunnelEndpoint: IPAddress, localSubnet: IPPrefix) -> ChildSARoute? {
        guard installRoutes else { return nil }
        let interfaces = InterfaceAddresses.current()
        guard let device = tunnelDevice ?? interfaces.first(where: { $0.address == localTunnelEndpoint })?.name else { return nil }
        let source = interfaces.first(where: { localSubnet.contains($0.address) })?.address
        return ChildSARoute(table: table, device: device, gateway: nil, source: source)
    }

    /// Counters of one SA (nil when the SA half cannot report them, e.g. a kernel without ESP).
    func packets(_ id: SAID) -> UInt64? {
        try? executor.ipsec.querySA(id).packets
    }

    /// An SA's bytes and packets so far; nil when it cannot be read.
    func traffic(_ id: SAID) -> (bytes: UInt64, packets: UInt64)? {
        (try? executor.ipsec.querySA(id)).map { ($0.bytes, $0.packets) }
    }
}

/// This host's interface addresses (getifaddrs).
enum InterfaceAddresses {
    struct Entry {
        var name: String
        var address: IPAddress
    }

    static func current() -> [Entry] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var entries: [Entry] = []
        var cursor = list
        while let item = cursor {
            defer { cursor = item.pointee.ifa_next }
            guard let address = item.pointee.ifa_addr else { continue }
            let family = Int32(address.pointee.sa_family)
            guard family == AF_INET || family == AF_INET6 else { continue }
            var storage = sockaddr_storage()
            let length = family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: length)) }
            if let endpoint = SocketAddress.endpoint(from: storage) {
                entries.append(Entry(name: String(cString: item.pointee.ifa_name), address: endpoint.address))
            }
        }
        return entries
    }
}

/// An IPsec kernel whose SA half and policy half are different implementations: in tests on a kernel without ESP,
/// SAs go to the recording fake while policies go to the real kernel (and are checked there).
public final class SplitIPsecKernel: IPsecKernel, @unchecked Sendable {
    let sas: any IPsecKernel
    let policies: any IPsecKernel

    public init(sas: any IPsecKernel, policies: any IPsecKernel) {
        self.sas = sas
        self.policies = policies
    }

    public func addSA(_ id: SAID, _ request: SARequest) throws(KernelError) { try sas.addSA(id, request) }
    public func updateSA(_ id: SAID, _ request: SARequest) throws(KernelError) { try sas.updateSA(id, request) }
    public func deleteSA(_ id: SAID) throws(KernelError) { try sas.deleteSA(id) }
    public func querySA(_ id: SAID) throws(KernelError) -> SAState { try sas.querySA(id) }
    public func listSAs() throws(KernelError) -> [SAState] { try sas.listSAs() }
    public func addPolicy(_ id: PolicyID, _ request: PolicyRequest) throws(KernelError) { try policies.addPolicy(id, request) }
    public func updatePolicy(_ id: PolicyID, _ request: PolicyRequest) throws(KernelError) { try policies.updatePolicy(id, request) }
    public func deletePolicy(_ id: PolicyID) throws(KernelError) { try policies.deletePolicy(id) }
    public func listPolicies() throws(KernelError) -> [InstalledPolicy] { try policies.listPolicies() }
}
