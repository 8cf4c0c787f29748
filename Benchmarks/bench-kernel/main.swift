// bench-kernel: in a network namespace it creates (and deletes), installs 1,000 Child SAs' policies (in/out/fwd)
// and routes towards peer A, then times the failover move of all of them to peer B through the libnl kernel:
// B's SA adds, policy updates in place, route replaces, A's SA deletes. On a kernel without ESP the SA steps are
// refused; they are counted and timed separately, never hidden. Run as root:
//   swift build -c release --product bench-kernel && .build/release/bench-kernel [COUNT]
import Foundation
import VigilAddressing
import VigilKernel
import VigilLab
import VigilNetlink

let count = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 1000 : 1000
precondition((1...30_000).contains(count), "COUNT must be 1...30000")

func address(_ text: String) -> IPAddress {
    guard let value = IPAddress(text) else { preconditionFailure("bad address \(text)") }
    return value
}

/// Child SA `n` between 10.(1+2k).m.0/24 and 10.(2+2k).m.0/24 (n = 256k + m) with `peer`.
func child(_ n: Int, peer: IPAddress, reqid: UInt32, spiBase: UInt32) -> KernelChildSA {
    let local = "10.\(1 + 2 * (n / 256)).\(n % 256)", remote = "10.\(2 + 2 * (n / 256)).\(n % 256)"
    return KernelChildSA(
        reqid: reqid, localTunnelEndpoint: address("192.0.2.1"), remoteTunnelEndpoint: peer,
        localSubnet: IPPrefix(address: address("\(local).0"), length: 24),
        remoteSubnet: IPPrefix(address: address("\(remote).0"), length: 24),
        inbound: SAKeys(spi: spiBase + UInt32(2 * n), encryptionKey: Array(repeating: 0x11, count: 16),
                        integrityKey: Array(repeating: 0x22, count: 32)),
        outbound: SAKeys(spi: spiBase + UInt32(2 * n + 1), encryptionKey: Array(repeating: 0x33, count: 16),
                         integrityKey: Array(repeating: 0x44, count: 32)),
        encryption: .aes128cbc, integrity: .hmacSHA2_256_128,
        route: ChildSARoute(device: "wan0", gateway: address(peer == address("198.51.100.2") ? "192.0.2.254" : "192.0.2.253"),
                            source: address("\(local).1")))
}

/// Applies steps one by one, timing each kind of operation and counting refusals per kind.
struct Timing {
    var elapsed: [KernelOperation: Duration] = [:]
    var applied: [KernelOperation: Int] = [:]
    var refused: [KernelOperation: [KernelError.Code: Int]] = [:]
    var total: Duration = .zero

    mutating func run(_ plan: KernelPlan, _ executor: KernelExecutor) {
        let clock = ContinuousClock()
        let start = clock.now
        for step in plan.steps {
            let before = clock.now
            do {
                try executor.perform(step)
                applied[step.operation, default: 0] += 1
            } catch {
                refused[step.operation, default: [:]][error.code, default: 0] += 1
            }
            elapsed[step.operation, default: .zero] += clock.now - before
        }
        total = clock.now - start
    }

    func ms(_ duration: Duration) -> String {
        let value = Double(duration.components.seconds) * 1e3 + Double(duration.components.attoseconds) / 1e15
        return String(format: "%.1f ms", value)
    }

    func print(_ title: String) {
        Swift.print("\(title): \(ms(total)) total")
        for operation in KernelOperation.allCases where elapsed[operation] != nil {
            let refusals = (refused[operation] ?? [:]).map { "\($0.value) \($0.key.rawValue)" }.sorted()
            Swift.print("  \(operation.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0))"
                        + " \(String(applied[operation] ?? 0).leftPad(5)) applied"
                        + (refusals.isEmpty ? "" : ", refused: " + refusals.joined(separator: ", "))
                        + "  \(ms(elapsed[operation] ?? .zero))")
        }
    }
}

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

let namespace = try NetworkNamespace(prefix: "bench")
defer { namespace.destroy() }
try namespace.addGatewayLinks(localAddresses: (1...count).map { "10.\(1 + 2 * ($0 / 256)).\($0 % 256).1" })
let executor = try namespace.perform { () throws -> KernelExecutor in try KernelExecutor.netlink() }

var reqids = ReqidAllocator()
let peerA = address("198.51.100.2"), peerB = address("203.0.113.2")
var onA: [KernelChildSA] = [], onB: [KernelChildSA] = []
for n in 1...count {
    guard let a = reqids.allocate(), let b = reqids.allocate() else { preconditionFailure("reqid band exhausted") }
    onA.append(child(n, peer: peerA, reqid: a, spiBase: 0x1000_0000))
    onB.append(child(n, peer: peerB, reqid: b, spiBase: 0x2000_0000))
}

print("bench-kernel: \(count) Child SAs (3 policies + 1 route each) in namespace \(namespace.name)")
var install = Timing()
install.run(KernelPlan(KernelPlanner.installRoutingRule(families: [.ipv4]).steps + onA.flatMap { KernelPlanner.establish($0).steps }),
            executor)
install.print("establish on peer A")

var failover = Timing()
failover.run(KernelPlan(zip(onA, onB).flatMap { KernelPlanner.failover(from: $0, to: $1).steps }), executor)
failover.print("failover A -> B")
if let refusedAdds = failover.refused[.addSA], !refusedAdds.isEmpty {
    print("  note: this kernel refused every SA add (\(refusedAdds.map { "\($0.key.rawValue)" }.joined())), so A's SAs were"
          + " never installed and their deletes found nothing (counted as done: a delete of an absent SA is harmless)")
}
let policyAndRoute = (failover.elapsed[.updatePolicy] ?? .zero) + (failover.elapsed[.replaceRoute] ?? .zero)
print("failover policies + routes only: \(failover.ms(policyAndRoute)) for \(count) Child SAs")

// Independent witness: every policy now points at B.
let policies = try namespace.ip("xfrm", "policy").stdout
let towardsB = policies.components(separatedBy: "dst 203.0.113.2").count - 1
let towardsA = policies.components(separatedBy: "198.51.100.2").count - 1
let routes = try namespace.ip("route", "show", "table", String(VigilOwnership.defaultRouteTable)).stdout
print("ip xfrm policy: \(towardsB) template endpoints at B, \(towardsA) mentions of A; "
      + "ip route table \(VigilOwnership.defaultRouteTable): \(routes.split(separator: "\n").count) routes, "
      + "\(routes.components(separatedBy: "via 192.0.2.253").count - 1) via B's next hop")

let clock = ContinuousClock()
let started = clock.now
let removed = try executor.removeOwnedState(tables: [VigilOwnership.defaultRouteTable])
print("reconcile (remove all of Vigil's state): \(removed.applied.count) steps, \(removed.refused.count) refused, "
      + install.ms(clock.now - started))
