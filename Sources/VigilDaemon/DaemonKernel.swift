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

    /// Start-up: remove what an earlier run of Vigil left (SAs, policies, routes, rules in its bands), then install
    /// the rule for its table. Returns a line for the event log.
    func reconcile() -> String {
        var lines: [String] = []
        do {
            let report = try executor.removeOwnedState(tables: [table])
            lines.append("removed \(report.applied.count) leftover objects" + (report.refused.isEmpty ? "" : ", \(report.refused.count) refused: \(report.refused.map(\.description).joined(separator: "; "))"))
        } catch {
            lines.append("could not list the kernel's state: \(error)")
        }
        if installRoutes {
            let rule = executor.apply(KernelPlanner.installRoutingRule(table: table))
            if !rule.refused.isEmpty { lines.append("routing rule refused: \(rule.refused.map(\.description).joined(separator: "; "))") }
        }
        return lines.joined(separator: "; ")
    }

    func removeRule() -> String {
        guard installRoutes, table != RoutingTable.main else { return "done" }
        let steps = KernelPlanner.installRoutingRule(table: table).steps.compactMap { step -> KernelStep? in
            if case .addRule(let rule) = step { return .deleteRule(rule) }
            return nil
        }
        let report = executor.apply(KernelPlan(steps))
        return report.refused.isEmpty ? "kernel state removed" : "rule removal refused: \(report.refused.map(\.description).joined(separator: "; "))"
    }

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
