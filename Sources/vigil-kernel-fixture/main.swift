// A stand-in for a Vigil daemon that crashes: installs Child SAs' policies, routes and the routing rule through the
// kernel layer in the current network namespace, prints "installed", then waits to be killed (the reconciliation
// test sends SIGKILL, so nothing is cleaned up). Usage: vigil-kernel-fixture install COUNT DEVICE
#if canImport(Glibc)
import Glibc
#endif
import VigilAddressing
import VigilKernel
import VigilNetlink

/// Writes a line straight to a file descriptor (unbuffered, so the test sees it before the SIGKILL).
func writeLine(_ text: String, to fd: Int32) {
    let line = text + "\n"
    _ = line.withCString { write(fd, $0, strlen($0)) }
}

let arguments = CommandLine.arguments
guard arguments.count == 4, arguments[1] == "install", let count = Int(arguments[2]), (1...250).contains(count) else {
    writeLine("usage: vigil-kernel-fixture install COUNT(1-250) DEVICE", to: 2)
    exit(2)
}
let device = arguments[3]

do {
    let ipsec = try NetlinkIPsecKernel()
    let routes = try NetlinkRouteKernel()
    let executor = KernelExecutor(ipsec: ipsec, routes: routes)
    var plan = KernelPlanner.installRoutingRule(families: [.ipv4])
    var reqids = ReqidAllocator()
    for n in 1...count {
        guard let reqid = reqids.allocate(),
              let local = IPAddress("192.0.2.1"), let remote = IPAddress("198.51.100.2"),
              let source = IPAddress("10.1.\(n).1")
        else { preconditionFailure("fixture values") }
        let child = KernelChildSA(
            reqid: reqid, localTunnelEndpoint: local, remoteTunnelEndpoint: remote,
            localSubnet: IPPrefix(address: source, length: 24),
            remoteSubnet: IPPrefix(address: IPAddress("10.2.\(n).0") ?? .any(.ipv4), length: 24),
            inbound: SAKeys(spi: 0x7000 + UInt32(2 * n), encryptionKey: Array(repeating: 1, count: 16),
                            integrityKey: Array(repeating: 2, count: 32)),
            outbound: SAKeys(spi: 0x7001 + UInt32(2 * n), encryptionKey: Array(repeating: 3, count: 16),
                             integrityKey: Array(repeating: 4, count: 32)),
            encryption: .aes128cbc, integrity: .hmacSHA2_256_128,
            route: ChildSARoute(device: device, source: source))
        plan.steps += KernelPlanner.establish(child).steps
    }
    let report = executor.apply(plan)
    // SA adds are refused on a kernel without ESP; everything else must have been applied.
    let unexpected = report.refused.filter { $0.error.code != .protocolNotSupported }
    guard unexpected.isEmpty else {
        writeLine("fixture: refused: \(unexpected)", to: 2)
        exit(1)
    }
    writeLine("installed \(report.applied.count)", to: 1)
    while true { pause() }
} catch {
    writeLine("fixture: \(error)", to: 2)
    exit(1)
}
