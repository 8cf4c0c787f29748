import CNetlink
import VigilAddressing
import VigilAlgorithms
import VigilKernel
#if canImport(Glibc)
import Glibc
#endif

/// The kernel's SA and policy databases over NETLINK_XFRM, through libnl-xfrm. Create it in the network namespace
/// it should program: its socket stays there.
public final class NetlinkIPsecKernel: IPsecKernel {
    private let owner: SocketOwner

    public init() throws(KernelError) {
        owner = try SocketOwner(protocol: NETLINK_XFRM)
    }

    // MARK: SAs

    public func addSA(_ id: SAID, _ request: SARequest) throws(KernelError) {
        try writeSA(.addSA, id, request) { xfrmnl_sa_add($0, $1, 0) }
    }

    public func updateSA(_ id: SAID, _ request: SARequest) throws(KernelError) {
        try writeSA(.updateSA, id, request) { xfrmnl_sa_update($0, $1, 0) }
    }

    public func deleteSA(_ id: SAID) throws(KernelError) {
        let sa = SAObject(id)
        try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) in
            try socket.call(.deleteSA, id.description) { socket in sa.lend { xfrmnl_sa_delete(socket, $0, 0) } }
        }
    }

    public func querySA(_ id: SAID) throws(KernelError) -> SAState {
        let destination = NetlinkAddress(id.destination)
        return try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) -> SAState in
            var found: OpaquePointer?
            try socket.call(.querySA, id.description) { socket in
                destination.lend {
                    xfrmnl_sa_get_kernel(socket, $0, id.spi, UInt32(id.ipsecProtocol.rawValue), 0, 0, &found)
                }
            }
            guard let found else {
                throw KernelError.notFound(.init(operation: .querySA, subject: id.description, errno: ESRCH))
            }
            defer { xfrmnl_sa_put(found) }
            guard let state = SAObject.state(of: found) else {
                throw KernelError.other(.init(operation: .querySA, subject: "\(id): unreadable answer", errno: 0))
            }
            return state
        }
    }

    public func listSAs() throws(KernelError) -> [SAState] {
        try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) -> [SAState] in
            var cache: OpaquePointer?
            try socket.call(.listSAs, "SAs") { xfrmnl_sa_alloc_cache($0, &cache) }
            defer { nl_cache_free(cache) }
            return Self.objects(in: cache).compactMap(SAObject.state(of:))
        }
    }

    private func writeSA(_ operation: KernelOperation, _ id: SAID, _ request: SARequest,
                         _ send: (OpaquePointer, OpaquePointer) -> Int32) throws(KernelError) {
        try request.validate(for: id, operation)
        let sa = SAObject(id, request)
        try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) in
            try socket.call(operation, "\(id) \(request)") { socket in sa.lend { send(socket, $0) } }
        }
    }

    // MARK: Policies

    public func addPolicy(_ id: PolicyID, _ request: PolicyRequest) throws(KernelError) {
        let policy = PolicyObject(id, request)
        try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) in
            try socket.call(.addPolicy, "\(id) \(request)") { socket in policy.lend { xfrmnl_sp_add(socket, $0, 0) } }
        }
    }

    public func updatePolicy(_ id: PolicyID, _ request: PolicyRequest) throws(KernelError) {
        let policy = PolicyObject(id, request)
        try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) in
            // XFRM_MSG_UPDPOLICY: replaced in place under the kernel's policy lock (same index), or installed.
            try socket.call(.updatePolicy, "\(id) \(request)") { socket in policy.lend { xfrmnl_sp_update(socket, $0, 0) } }
        }
    }

    public func deletePolicy(_ id: PolicyID) throws(KernelError) {
        try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) in
            try socket.call(.deletePolicy, id.description) { PolicyObject.delete($0, id) }
        }
    }

    public func listPolicies() throws(KernelError) -> [InstalledPolicy] {
        try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) -> [InstalledPolicy] in
            var cache: OpaquePointer?
            try socket.call(.listPolicies, "policies") { xfrmnl_sp_alloc_cache($0, &cache) }
            defer { nl_cache_free(cache) }
            return Self.objects(in: cache).compactMap(PolicyObject.installed(from:))
        }
    }

    static func objects(in cache: OpaquePointer?) -> [OpaquePointer] {
        var objects: [OpaquePointer] = []
        var object = nl_cache_get_first(cache)
        while let current = object {
            objects.append(current)
            object = nl_cache_get_next(current)
        }
        return objects
    }
}

extension KernelExecutor {
    /// The daemon's executor: both libnl kernels, with sockets in the calling thread's network namespace.
    public static func netlink() throws(KernelError) -> KernelExecutor {
        KernelExecutor(ipsec: try NetlinkIPsecKernel(), routes: try NetlinkRouteKernel())
    }
}
