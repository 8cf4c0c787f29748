import Foundation

extension NetworkNamespace {
    /// Runs `body` on a new thread that has entered this namespace with `setns(CLONE_NEWNET)` and returns its result.
    /// Sockets created inside `body` (netlink, UDP) belong to this namespace for their whole life, whichever thread
    /// uses them afterwards. Throws if the namespace cannot be entered, or what `body` throws.
    public func perform<T>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        let path = "/var/run/netns/\(name)"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw NamespaceEntryError(namespace: name, step: "open \(path)", errno: errno) }
        defer { close(fd) }
        let outcome = PerformOutcome<T>()
        let done = DispatchSemaphore(value: 0)
        let namespaceName = name
        let thread = Thread {
            defer { done.signal() }
            guard vigilLabSetns(fd, cloneNewNet) == 0 else {
                outcome.result = .failure(NamespaceEntryError(namespace: namespaceName, step: "setns", errno: errno))
                return
            }
            outcome.result = Result { try body() }
        }
        thread.start()
        done.wait()
        guard let result = outcome.result else { preconditionFailure("namespace thread ended without a result") }
        return try result.get()
    }
}

/// Entering a namespace failed (it was deleted, or the process lacks CAP_SYS_ADMIN).
public struct NamespaceEntryError: Error, CustomStringConvertible {
    public let namespace: String
    public let step: String
    public let errno: Int32
    public var description: String { "cannot enter network namespace \(namespace): \(step): \(String(cString: strerror(errno)))" }
}

/// Hands a result from the namespace thread back; written once before the semaphore is signalled, read after.
private final class PerformOutcome<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}

/// glibc's `setns(2)`: declared only under _GNU_SOURCE, so Glibc's module does not export it.
@_silgen_name("setns")
private func vigilLabSetns(_ fd: Int32, _ nstype: Int32) -> Int32

/// CLONE_NEWNET from <linux/sched.h> (also hidden behind _GNU_SOURCE).
private let cloneNewNet: Int32 = 0x4000_0000
