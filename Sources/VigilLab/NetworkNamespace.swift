import Foundation

/// A network namespace the lab created and will delete. Names are unique per process (prefix, pid, counter) so tests
/// running in parallel never share one; `destroy()` (or the owner going away) removes it and every veth inside.
public final class NetworkNamespace: @unchecked Sendable {
    public let name: String
    private let lock = NSLock()
    private var destroyed = false

    private static let counter = Counter()

    /// Creates `vl<prefix>-<pid>-<n>` with loopback up; the pid lets `removeLeftovers` tell a dead run's namespaces
    /// from those of a lab that is still running.
    public init(prefix: String) throws {
        let n = NetworkNamespace.counter.next()
        name = "vl\(prefix.prefix(6))-\(getpid())-\(n)"
        try Command.check(["ip", "netns", "add", name])
        try Command.check(["ip", "-n", name, "link", "set", "lo", "up"])
    }

    deinit { destroy() }

    /// Deletes the namespace; processes still running in it lose their network (kill them first).
    public func destroy() {
        lock.lock()
        defer { lock.unlock() }
        guard !destroyed else { return }
        destroyed = true
        _ = try? Command.run(["ip", "netns", "del", name])
    }

    /// Runs a command inside the namespace and throws unless it exits 0.
    @discardableResult
    public func exec(_ arguments: [String]) throws -> Command.Result {
        try Command.check(["ip", "netns", "exec", name] + arguments)
    }

    /// Runs a command inside the namespace and returns its result whatever the exit status.
    @discardableResult
    public func run(_ arguments: [String]) throws -> Command.Result {
        try Command.run(["ip", "netns", "exec", name] + arguments)
    }

    /// `ip -n NAME ...`
    @discardableResult
    public func ip(_ arguments: String...) throws -> Command.Result {
        try Command.check(["ip", "-n", name] + arguments)
    }

    /// Enables IPv4 forwarding (a gateway between a protected subnet and the outside).
    public func enableForwarding() throws {
        try exec(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
    }

    /// Connects two namespaces with a veth pair and gives each end an address (CIDR notation) and brings both up.
    public static func link(
        _ a: NetworkNamespace, _ aInterface: String, _ aAddress: String,
        _ b: NetworkNamespace, _ bInterface: String, _ bAddress: String
    ) throws {
        // Temporary names in the root namespace (15 characters at most): random, so parallel labs never collide.
        let tag = String(UInt32.random(in: 0..<UInt32.max), radix: 16)
        let tmpA = "vt\(tag)a"
        let tmpB = "vt\(tag)b"
        try Command.check(["ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB])
        try Command.check(["ip", "link", "set", tmpA, "netns", a.name, "name", aInterface])
        try Command.check(["ip", "link", "set", tmpB, "netns", b.name, "name", bInterface])
        try a.ip("addr", "add", aAddress, "dev", aInterface)
        try b.ip("addr", "add", bAddress, "dev", bInterface)
        try a.ip("link", "set", aInterface, "up")
        try b.ip("link", "set", bInterface, "up")
    }

    /// Removes namespaces left by lab processes that no longer exist (killed runs). Namespaces of live processes,
    /// this one included, are never touched: other test processes may be using them.
    public static func removeLeftovers() {
        guard let result = try? Command.run(["ip", "netns", "list"]) else { return }
        for line in result.stdout.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            let parts = name.split(separator: "-")
            guard name.hasPrefix("vl"), parts.count == 3, let pid = Int32(parts[1]) else { continue }
            if kill(pid, 0) == 0 || errno == EPERM { continue }
            _ = try? Command.run(["ip", "netns", "del", name])
        }
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}
