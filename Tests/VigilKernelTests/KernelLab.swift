import Foundation
import VigilAddressing
import VigilKernel
import VigilLab
import VigilNetlink

/// Which implementation a behavioural test runs against.
enum KernelKind: String, CaseIterable, CustomStringConvertible, Sendable {
    case inMemory
    case netlink
    var description: String { rawValue }
}

/// A kernel to test: the in-memory one, or the libnl one inside a fresh namespace with `wan0` (192.0.2.1/24, a veth
/// whose peer stays in the same namespace) and `lan0` holding the local protected addresses. `destroy()` in a defer.
final class KernelLab: @unchecked Sendable {
    let ipsec: any IPsecKernel
    let routes: any RouteKernel
    let namespace: NetworkNamespace?

    init(_ kind: KernelKind, localAddresses: Int = 4) throws {
        switch kind {
        case .inMemory:
            let kernel = RecordingKernel()
            ipsec = kernel
            routes = kernel
            namespace = nil
        case .netlink:
            let namespace = try NetworkNamespace(prefix: "kern")
            do {
                try Self.wire(namespace, localAddresses: localAddresses)
                let kernels = try namespace.perform { () throws -> (NetlinkIPsecKernel, NetlinkRouteKernel) in
                    (try NetlinkIPsecKernel(), try NetlinkRouteKernel())
                }
                ipsec = kernels.0
                routes = kernels.1
                self.namespace = namespace
            } catch {
                namespace.destroy()
                throw error
            }
        }
    }

    func destroy() { namespace?.destroy() }

    /// `ip -n NS ARGS...` output (the independent witness).
    func ip(_ arguments: String...) throws -> String {
        guard let namespace else { preconditionFailure("ip witness needs the netlink kernel") }
        return try Command.check(["ip", "-n", namespace.name] + arguments).stdout
    }

    private static func wire(_ namespace: NetworkNamespace, localAddresses: Int) throws {
        try namespace.ip("link", "add", "wan0", "type", "veth", "peer", "name", "wan0p")
        try namespace.ip("link", "add", "lan0", "type", "veth", "peer", "name", "lan0p")
        var batch = [
            "addr add 192.0.2.1/24 dev wan0",
            "link set wan0 up", "link set wan0p up", "link set lan0 up", "link set lan0p up",
        ]
        for n in 1...localAddresses {
            batch.append("addr add 10.\(1 + 2 * (n / 256)).\(n % 256).1/32 dev lan0")
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-\(namespace.name).batch")
        try batch.joined(separator: "\n").appending("\n").write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        try namespace.ip("-batch", file.path)
    }
}

/// Finds an executable target's binary next to the test bundle (SwiftPM puts products in one directory).
func productPath(_ name: String) -> String? {
    var candidates: [URL] = []
    if let first = CommandLine.arguments.first {
        candidates.append(URL(fileURLWithPath: first).deletingLastPathComponent())
    }
    if let executable = Bundle.main.executableURL { candidates.append(executable.deletingLastPathComponent()) }
    candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
    let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    candidates.append(packageRoot.appendingPathComponent(".build/debug"))
    for directory in candidates {
        let path = directory.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}
