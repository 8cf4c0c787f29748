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
                try namespace.addGatewayLinks(localAddresses: (1...localAddresses).map(Lab.localAddress))
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

extension NetworkNamespace {
    /// Runs the kernel fixture (a "Vigil" that installs `count` Child SAs and waits) in this namespace and kills it
    /// with SIGKILL once it has installed them, so nothing is cleaned up. Returns its line and how it ended.
    func installAndKillFixture(_ fixture: String, count: Int) throws -> (line: String, reason: Process.TerminationReason) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ip", "netns", "exec", name, fixture, "install", String(count), "wan0"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        try process.run()
        let line = String(decoding: output.fileHandleForReading.availableDataUntilNewline(), as: UTF8.self)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return (line, process.terminationReason)
    }

    /// Sends one ping from the local protected address 10.1.1.1 to a host in the remote protected subnet.
    func sendProbe() throws {
        _ = try run(["ping", "-n", "-q", "-c", "1", "-W", "1", "-I", "10.1.1.1", "10.2.1.5"])
    }
}
