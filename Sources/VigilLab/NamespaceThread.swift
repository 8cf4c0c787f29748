import Foundation

#if canImport(Glibc)
import Glibc
#endif

extension NetworkNamespace {
    /// Runs `body` on a new thread that has entered this namespace (setns), and waits for it. Sockets and netlink
    /// sockets created inside `body` belong to the namespace for their whole life, so a test can bind a UDP socket in
    /// a namespace and keep using it from anywhere after `body` returns.
    public func runInside<T>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        let path = "/var/run/netns/\(name)"
        let box = ResultBox<T>()
        let thread = Thread {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                box.set(.failure(NamespaceError(message: "open \(path): errno \(errno)")))
                return
            }
            defer { close(fd) }
            guard enterNetworkNamespace(fd) == 0 else {
                box.set(.failure(NamespaceError(message: "setns \(path): errno \(errno)")))
                return
            }
            box.set(Result { try body() })
        }
        thread.start()
        return try box.wait().get()
    }
}

public struct NamespaceError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// A result one thread sets and another waits for.
public final class ResultBox<T>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: Result<T, any Error>?

    public init() {}

    public var isSet: Bool {
        condition.lock()
        defer { condition.unlock() }
        return value != nil
    }

    public func set(_ result: Result<T, any Error>) {
        condition.lock()
        value = result
        condition.signal()
        condition.unlock()
    }

    public func wait() -> Result<T, any Error> {
        condition.lock()
        defer { condition.unlock() }
        while value == nil { condition.wait() }
        return value!
    }
}

/// setns(2) is hidden behind _GNU_SOURCE in the Glibc module; look it up once at run time.
private let setnsFunction: @convention(c) (Int32, Int32) -> Int32 = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else {
        preconditionFailure("libc has no setns")
    }
    return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
}()

/// CLONE_NEWNET from <sched.h>.
private let cloneNewNet: Int32 = 0x4000_0000

private func enterNetworkNamespace(_ fd: Int32) -> Int32 { setnsFunction(fd, cloneNewNet) }
