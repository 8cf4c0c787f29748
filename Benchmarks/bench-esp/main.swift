// bench-esp: TCP throughput through Vigil's userspace ESP data plane against strongSwan's kernel-libipsec, in the
// same topology on the same machine, both directions; prints Mbit/s, the ratio and CPU seconds per gigabit.
//
//   host-A (10.1.0.10) ── gw-A (10.1.0.1 | 192.0.2.1) ══ ESP in UDP 4500 ══ (192.0.2.2 | 10.2.0.1) gw-B ── host-B (10.2.0.10)
//
// Run as root from a release build:
//   swift build -c release --product bench-esp && .build/release/bench-esp [seconds per run] [runs] [ESP proposal]
// CPU is what the two gateways' data planes spent (user + system): for Vigil getrusage of this process (both data
// planes run here; iperf3 runs in child processes, not counted), for strongSwan /proc/PID/stat of both charons.
import Foundation
import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilESP
import VigilKernel
import VigilLab

let seconds = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 5 : 5
/// Runs per direction and system, alternating systems; the median is reported (the machine is shared and noisy).
let repetitions = CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2]) ?? 3 : 3
/// ESP proposal in strongSwan notation: aes128gcm16 (default), aes256gcm16, aes128-sha256, aes256-sha256, aes128-sha1.
let espProposal: (encryption: EncryptionAlgorithm, integrity: IntegrityAlgorithm?, swan: String) = {
    let swan = CommandLine.arguments.count > 3 ? CommandLine.arguments[3] : "aes128gcm16"
    let parts = swan.split(separator: "-").map(String.init)
    guard let encryption = EncryptionAlgorithm(rawValue: parts[0]),
        parts.count == 1 ? encryption.isAEAD : IntegrityAlgorithm(rawValue: parts[1]) != nil
    else { fatalError("unknown ESP proposal \(swan)") }
    return (encryption, parts.count > 1 ? IntegrityAlgorithm(rawValue: parts[1]) : nil, swan)
}()

struct Topology {
    let hostA: NetworkNamespace
    let gwA: NetworkNamespace
    let gwB: NetworkNamespace
    let hostB: NetworkNamespace

    init() throws {
        hostA = try NetworkNamespace(prefix: "bha")
        gwA = try NetworkNamespace(prefix: "bga")
        gwB = try NetworkNamespace(prefix: "bgb")
        hostB = try NetworkNamespace(prefix: "bhb")
        try NetworkNamespace.link(hostA, "lan", "10.1.0.10/24", gwA, "lan", "10.1.0.1/24")
        try NetworkNamespace.link(gwA, "wan", "192.0.2.1/24", gwB, "wan", "192.0.2.2/24")
        try NetworkNamespace.link(gwB, "lan", "10.2.0.1/24", hostB, "lan", "10.2.0.10/24")
        try hostA.ip("route", "add", "default", "via", "10.1.0.1")
        try hostB.ip("route", "add", "default", "via", "10.2.0.1")
        try gwA.enableForwarding()
        try gwB.enableForwarding()
    }

    func destroy() {
        for namespace in [hostA, gwA, gwB, hostB] { namespace.destroy() }
    }
}

struct Measurement {
    var megabitsPerSecond: Double
    var cpuSeconds: Double
    /// CPU seconds the gateways spent per gigabit carried.
    var cpuPerGigabit: Double { cpuSeconds / (megabitsPerSecond * Double(seconds) / 1000) }
}

/// Runs iperf3 from host-A to host-B (or reversed) and returns the receiver's rate and the CPU `cpu()` moved.
func iperf(_ topology: Topology, reverse: Bool, cpu: () throws -> Double) throws -> Measurement {
    let server = Process()
    server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    server.arguments = ["ip", "netns", "exec", topology.hostB.name, "iperf3", "-s", "-1", "-B", "10.2.0.10"]
    server.standardOutput = FileHandle.nullDevice
    server.standardError = FileHandle.nullDevice
    try server.run()
    defer { if server.isRunning { server.terminate() } }
    Thread.sleep(forTimeInterval: 0.3)
    let before = try cpu()
    let result = try topology.hostA.run(
        ["iperf3", "-c", "10.2.0.10", "-t", "\(seconds)", "-J", "-O", "1"] + (reverse ? ["-R"] : []))
    let after = try cpu()
    guard result.succeeded,
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
        let end = json["end"] as? [String: Any],
        let received = end["sum_received"] as? [String: Any],
        let bits = received["bits_per_second"] as? Double
    else { throw LabError("iperf3 failed: \(result.stderr)\(result.stdout.suffix(500))") }
    return Measurement(megabitsPerSecond: bits / 1e6, cpuSeconds: after - before)
}

func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// utime + stime of a process from /proc/PID/stat (fields 14 and 15, in clock ticks).
func processCPUSeconds(pid: Int32) throws -> Double {
    let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
    let fields = stat[stat.range(of: ")")!.upperBound...].split(separator: " ")
    // After "pid (comm)", field 3 is at index 0: utime (14) is index 11, stime (15) index 12.
    return (Double(fields[11])! + Double(fields[12])!) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

// MARK: - Vigil

func boundSocket(_ address: IPAddress) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_port = UInt16(4500).bigEndian
    sin.sin_addr.s_addr = inet_addr(address.description)
    let status = withUnsafePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard fd >= 0, status == 0 else { throw LabError("bind \(address):4500 failed") }
    var size: Int32 = 4 << 20
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    return fd
}

/// A system under test, set up in its topology: how to read the CPU its data planes used, and how to tear it down.
struct System {
    let name: String
    let topology: Topology
    let cpu: () throws -> Double
    let teardown: () -> Void
}

func startVigil(_ topology: Topology) throws -> System {
    let outerA = IPAddress("192.0.2.1")!
    let outerB = IPAddress("192.0.2.2")!
    let subnetA = try IPPrefix.parse("10.1.0.0/24")
    let subnetB = try IPPrefix.parse("10.2.0.0/24")
    func gateway(_ namespace: NetworkNamespace, _ outer: IPAddress, remote: String) throws -> (ESPDataPlane, Int32) {
        let (plane, fd) = try namespace.runInside {
            (try ESPDataPlane(clock: ESPEngine.systemClock()), try boundSocket(outer))
        }
        try namespace.ip("route", "add", remote, "dev", plane.interfaceName)
        try plane.start(socket: fd) { _, _ in }
        return (plane, fd)
    }
    let (planeA, fdA) = try gateway(topology.gwA, outerA, remote: "10.2.0.0/24")
    let (planeB, fdB) = try gateway(topology.gwB, outerB, remote: "10.1.0.0/24")
    let teardown = {
        let drops = planeA.engine.counters.drops.merging(planeB.engine.counters.drops, uniquingKeysWith: +)
        if !drops.isEmpty { print("  Vigil engine drops: \(drops)") }
        let io = [planeA.ioCounters, planeB.ioCounters]
        print("  Vigil I/O errors: send \(io.map(\.sendErrors).reduce(0, +)), TUN write \(io.map(\.tunWriteErrors).reduce(0, +))")
        planeA.stop()
        planeB.stop()
        close(fdA)
        close(fdB)
        topology.destroy()
    }
    let keyAB = Random.bytes(espProposal.encryption.keyMaterialLength)
    let keyBA = Random.bytes(espProposal.encryption.keyMaterialLength)
    let integrityAB = Random.bytes(espProposal.integrity?.keyLength ?? 0)
    let integrityBA = Random.bytes(espProposal.integrity?.keyLength ?? 0)
    let ab = SAID(destination: outerB, spi: 0xC100_0001)
    let ba = SAID(destination: outerA, spi: 0xC100_0002)
    let udp = UDPEncapsulation(sourcePort: 4500, destinationPort: 4500)
    for plane in [planeA, planeB] {
        try plane.engine.addSA(ab, SARequest(
            source: outerA, destination: outerB, reqid: 1, encryption: espProposal.encryption, encryptionKey: keyAB,
            integrity: espProposal.integrity, integrityKey: integrityAB, encapsulation: udp))
        try plane.engine.addSA(ba, SARequest(
            source: outerB, destination: outerA, reqid: 1, encryption: espProposal.encryption, encryptionKey: keyBA,
            integrity: espProposal.integrity, integrityKey: integrityBA, encapsulation: udp))
    }
    for (plane, local, remote, me, peer) in [(planeA, subnetA, subnetB, outerA, outerB), (planeB, subnetB, subnetA, outerB, outerA)] {
        try plane.engine.addPolicy(
            PolicyID(selector: PolicySelector(source: local, destination: remote), direction: .outbound),
            PolicyRequest(action: .protect(PolicyTemplate(source: me, destination: peer, reqid: 1)), priority: 100))
        try plane.engine.addPolicy(
            PolicyID(selector: PolicySelector(source: remote, destination: local), direction: .forward),
            PolicyRequest(action: .protect(PolicyTemplate(source: peer, destination: me, reqid: 1)), priority: 100))
    }
    return System(name: "Vigil userspace ESP", topology: topology, cpu: { processCPUSeconds() }, teardown: teardown)
}

// MARK: - strongSwan kernel-libipsec

func swanctl(local: String, remote: String, localTS: String, remoteTS: String, id: String, peerID: String) -> String {
    """
    connections {
        bench {
            version = 2
            local_addrs = \(local)
            remote_addrs = \(remote)
            proposals = aes128-sha256-x25519
            local { auth = psk
                    id = \(id) }
            remote { auth = psk
                     id = \(peerID) }
            children { net { local_ts = \(localTS)
                             remote_ts = \(remoteTS)
                             esp_proposals = \(espProposal.swan) } }
        }
    }
    secrets { ike-bench { secret = "bench-secret-123"
                          id-a = \(id)
                          id-b = \(peerID) } }
    """
}

func startStrongSwan(_ topology: Topology) throws -> System {
    let a = try StrongSwan(namespace: topology.gwA, name: "bench-a")
    let b = try StrongSwan(namespace: topology.gwB, name: "bench-b")
    let teardown = {
        a.stop(); a.removeFiles()
        b.stop(); b.removeFiles()
        topology.destroy()
    }
    try a.start(swanctlConf: swanctl(local: "192.0.2.1", remote: "192.0.2.2", localTS: "10.1.0.0/24", remoteTS: "10.2.0.0/24", id: "a", peerID: "b"))
    try b.start(swanctlConf: swanctl(local: "192.0.2.2", remote: "192.0.2.1", localTS: "10.2.0.0/24", remoteTS: "10.1.0.0/24", id: "b", peerID: "a"))
    let initiated = try a.initiate(child: "net")
    guard initiated.succeeded else { throw LabError("strongSwan did not establish: \(initiated.stderr)") }
    func pid(_ swan: StrongSwan) throws -> Int32 {
        let text = try String(contentsOfFile: swan.directory.appendingPathComponent("run/charon.pid").path, encoding: .utf8)
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))!
    }
    let pids = [try pid(a), try pid(b)]
    let cpu = { try pids.reduce(0.0) { $0 + (try processCPUSeconds(pid: $1)) } }
    return System(name: "strongSwan kernel-libipsec", topology: topology, cpu: cpu, teardown: teardown)
}

/// Sets up a system in a fresh topology; the topology is destroyed if setting up fails.
func start(_ body: (Topology) throws -> System) throws -> System {
    let topology = try Topology()
    do {
        return try body(topology)
    } catch {
        topology.destroy()
        throw error
    }
}

// MARK: - Main

func median(_ values: [Measurement]) -> Measurement {
    values.sorted { $0.megabitsPerSecond < $1.megabitsPerSecond }[values.count / 2]
}

print("bench-esp: iperf3 TCP, \(seconds) s per run, \(repetitions) runs per direction (median), ESP \(espProposal.swan) in UDP 4500")
let systems = [try start(startVigil), try start(startStrongSwan)]
defer { for system in systems { system.teardown() } }
var results: [[[Measurement]]] = Array(repeating: [[], []], count: systems.count)  // system, direction, runs
for _ in 0..<repetitions {
    for (index, system) in systems.enumerated() {
        for reverse in [false, true] {
            results[index][reverse ? 1 : 0].append(try iperf(system.topology, reverse: reverse, cpu: system.cpu))
        }
    }
}
var medians: [[Measurement]] = []
for (index, system) in systems.enumerated() {
    medians.append(results[index].map(median))
    for (direction, name) in ["A→B", "B→A"].enumerated() {
        let runs = results[index][direction].map { String(format: "%.0f", $0.megabitsPerSecond) }.joined(separator: " ")
        let m = medians[index][direction]
        print(String(format: "  %@ %@  %8.1f Mbit/s  %6.3f CPU-s/Gbit   (runs: %@)",
            system.name.padding(toLength: 27, withPad: " ", startingAt: 0) as NSString, name as NSString,
            m.megabitsPerSecond, m.cpuPerGigabit, runs as NSString))
    }
}
for direction in 0..<2 {
    let vigil = medians[0][direction]
    let swan = medians[1][direction]
    print(String(format: "  %@: throughput %.2fx strongSwan's, CPU per Gbit %.2fx strongSwan's",
        (direction == 0 ? "A→B" : "B→A") as NSString, vigil.megabitsPerSecond / swan.megabitsPerSecond,
        vigil.cpuPerGigabit / swan.cpuPerGigabit))
}
