// VigilNetlink: the only importer of libnl. One `NetlinkSocket` owns each `nl_sock` and its callback set; every
// libnl object is freed in the scope that allocated it (or by the owner it was handed to, as libnl documents).
import CNetlink
import Synchronization
import VigilKernel
#if canImport(Glibc)
import Glibc
#endif

/// One netlink socket (NETLINK_XFRM or NETLINK_ROUTE) and the callbacks that read the kernel's own errno.
///
/// libnl translates a kernel error into its own codes (EPROTONOSUPPORT becomes "Protocol mismatch", ENOSYS
/// "Unspecific failure"), losing what Vigil must report. The socket is therefore created with a callback set whose
/// error handler stores `nlmsgerr.error` in `kernelErrno` before libnl translates it.
/// `@unchecked Sendable`: only `SocketOwner` holds one, and it lends it out under its lock.
final class NetlinkSocket: @unchecked Sendable {
    let socket: OpaquePointer
    private let callbacks: OpaquePointer
    /// Written by the error callback during a call, read right after it. Allocated once, freed in deinit.
    private let kernelErrno: UnsafeMutablePointer<Int32>

    init(protocol netlinkProtocol: Int32) throws(KernelError) {
        let subject = netlinkProtocol == NETLINK_XFRM ? "NETLINK_XFRM socket" : "NETLINK_ROUTE socket"
        guard let callbacks = nl_cb_alloc(NL_CB_DEFAULT) else {
            throw KernelError(errno: ENOMEM, operation: .openSocket, subject: subject)
        }
        kernelErrno = .allocate(capacity: 1)
        kernelErrno.initialize(to: 0)
        let handler: nl_recvmsg_err_cb_t = { _, error, slot in
            if let error, let slot { slot.assumingMemoryBound(to: Int32.self).pointee = error.pointee.error }
            return Int32(NL_STOP.rawValue)
        }
        nl_cb_err(callbacks, NL_CB_CUSTOM, handler, UnsafeMutableRawPointer(kernelErrno))
        guard let socket = nl_socket_alloc_cb(callbacks) else {
            nl_cb_put(callbacks)
            kernelErrno.deallocate()
            throw KernelError(errno: ENOMEM, operation: .openSocket, subject: subject)
        }
        let connected = nl_connect(socket, netlinkProtocol)
        guard connected == 0 else {
            nl_socket_free(socket)
            nl_cb_put(callbacks)
            kernelErrno.deallocate()
            throw KernelError(errno: EPERM, operation: .openSocket, subject: "\(subject): \(Self.libnlText(connected))")
        }
        self.socket = socket
        self.callbacks = callbacks
    }

    deinit {
        nl_socket_free(socket)
        nl_cb_put(callbacks)
        kernelErrno.deallocate()
    }

    /// Runs one libnl call that talks to the kernel and throws the kernel's refusal as a stable `KernelError`.
    /// `body` returns libnl's result (negative on failure).
    func call(_ operation: KernelOperation, _ subject: @autoclosure () -> String,
              _ body: (OpaquePointer) -> Int32) throws(KernelError) {
        kernelErrno.pointee = 0
        let result = body(socket)
        guard result < 0 else { return }
        let errno = kernelErrno.pointee
        if errno != 0 { throw KernelError(errno: errno, operation: operation, subject: subject()) }
        // libnl refused before the kernel answered (a missing attribute, out of memory): our bug or the system's.
        throw KernelError.other(.init(operation: operation, subject: "\(subject()) [libnl: \(Self.libnlText(result))]",
                                      errno: 0))
    }

    static func libnlText(_ code: Int32) -> String { String(cString: nl_geterror(code)) }
}

/// Serializes use of one socket: a netlink socket carries one request and its answer at a time.
final class SocketOwner: Sendable {
    private let socket: NetlinkSocket
    private let lock = Mutex(())

    init(protocol netlinkProtocol: Int32) throws(KernelError) {
        socket = try NetlinkSocket(protocol: netlinkProtocol)
    }

    func withSocket<R: Sendable>(_ body: (NetlinkSocket) throws(KernelError) -> R) throws(KernelError) -> R {
        try lock.withLock { (_: inout ()) throws(KernelError) -> R in try body(socket) }
    }
}
