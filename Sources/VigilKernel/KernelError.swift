/// What the kernel layer was asked to do when it failed. Stable names: they appear in logs and the control API.
public enum KernelOperation: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case addSA, updateSA, deleteSA, querySA, listSAs
    case addPolicy, updatePolicy, deletePolicy, listPolicies
    case addRoute, replaceRoute, deleteRoute, listRoutes
    case addRule, deleteRule, listRules
    case openSocket

    public var description: String { rawValue }
}

/// A refusal by the kernel (or by the in-memory kernel imitating it). "Throw on theirs": every case keeps the
/// kernel's errno (positive, as in `errno.h`; 0 when the in-memory kernel refused) and the operation, so an operator
/// or a script can act on it. Repeating an add gives `.alreadyExists`, repeating a delete gives `.notFound`: callers
/// that reconcile treat those as "already done".
public enum KernelError: Error, Hashable, Sendable, CustomStringConvertible {
    /// EEXIST: an SA with that SPI, a policy with that selector and direction, or that route is already there.
    case alreadyExists(Context)
    /// ESRCH / ENOENT: nothing with that identifier is installed.
    case notFound(Context)
    /// EPERM / EACCES: the process lacks CAP_NET_ADMIN in this network namespace.
    case permissionDenied(Context)
    /// EPROTONOSUPPORT: the message was well formed and the algorithms were accepted, but the kernel has no ESP
    /// (CONFIG_INET_ESP unset). The SA is NOT installed.
    case protocolNotSupported(Context)
    /// ENOSYS / ENOENT on an algorithm: the kernel's crypto API lacks the cipher or MAC (e.g. no `gcm` module).
    case algorithmNotSupported(Context)
    /// Anything else (EINVAL for a malformed request, ENOBUFS, ...), errno kept.
    case other(Context)

    /// Where and why: the operation, what it was about, the kernel's errno and its text.
    public struct Context: Hashable, Sendable, CustomStringConvertible {
        public var operation: KernelOperation
        /// The identifier the operation was given, as text (an SA, policy, route or rule).
        public var subject: String
        /// The kernel's errno, positive; 0 when no kernel was involved (the in-memory implementation).
        public var errno: Int32

        public init(operation: KernelOperation, subject: String, errno: Int32) {
            self.operation = operation
            self.subject = subject
            self.errno = errno
        }

        public var description: String { "\(operation) \(subject) (errno \(errno))" }
    }

    /// Stable machine-readable codes for the control API.
    public enum Code: String, Hashable, Sendable, CaseIterable {
        case alreadyExists = "already-exists"
        case notFound = "not-found"
        case permissionDenied = "permission-denied"
        case protocolNotSupported = "protocol-not-supported"
        case algorithmNotSupported = "algorithm-not-supported"
        case other = "other"
    }

    public var code: Code {
        switch self {
        case .alreadyExists: .alreadyExists
        case .notFound: .notFound
        case .permissionDenied: .permissionDenied
        case .protocolNotSupported: .protocolNotSupported
        case .algorithmNotSupported: .algorithmNotSupported
        case .other: .other
        }
    }

    public var context: Context {
        switch self {
        case .alreadyExists(let c), .notFound(let c), .permissionDenied(let c), .protocolNotSupported(let c),
            .algorithmNotSupported(let c), .other(let c):
            c
        }
    }

    public var errno: Int32 { context.errno }
    public var operation: KernelOperation { context.operation }

    /// Linux errno values the mapping uses (asm-generic/errno-base.h, errno.h). Kept here so this pure target needs
    /// no libc import; the values are the same on every Linux architecture Vigil builds for.
    public enum Errno {
        public static let EPERM: Int32 = 1
        public static let ENOENT: Int32 = 2
        public static let ESRCH: Int32 = 3
        public static let EACCES: Int32 = 13
        public static let EEXIST: Int32 = 17
        public static let EINVAL: Int32 = 22
        public static let ENOSYS: Int32 = 38
        public static let EPROTONOSUPPORT: Int32 = 93
        public static let EAFNOSUPPORT: Int32 = 97
    }

    /// Maps a kernel errno (positive or negative) to a stable case. ENOENT means "no such object" for deletes and
    /// queries but "no such algorithm" when adding or updating an SA (xfrm_user's algorithm lookup).
    public init(errno rawErrno: Int32, operation: KernelOperation, subject: String) {
        let errno = rawErrno < 0 ? -rawErrno : rawErrno
        let context = Context(operation: operation, subject: subject, errno: errno)
        let writesSA = operation == .addSA || operation == .updateSA
        switch errno {
        case Errno.EEXIST: self = .alreadyExists(context)
        case Errno.ENOENT where writesSA: self = .algorithmNotSupported(context)
        case Errno.ESRCH, Errno.ENOENT: self = .notFound(context)
        case Errno.EPERM, Errno.EACCES: self = .permissionDenied(context)
        case Errno.EPROTONOSUPPORT, Errno.EAFNOSUPPORT: self = .protocolNotSupported(context)
        case Errno.ENOSYS: self = .algorithmNotSupported(context)
        default: self = .other(context)
        }
    }

    public var description: String {
        let c = context
        switch self {
        case .alreadyExists: return "\(c): already installed"
        case .notFound: return "\(c): not installed"
        case .permissionDenied: return "\(c): permission denied; run as root or with CAP_NET_ADMIN"
        case .protocolNotSupported:
            return "\(c): kernel lacks ESP (CONFIG_INET_ESP); the algorithms were accepted but the SA is NOT installed"
        case .algorithmNotSupported:
            return "\(c): kernel lacks the algorithm (load its crypto module, e.g. gcm, or pick another proposal)"
        case .other: return "\(c): refused by the kernel"
        }
    }
}
