import Foundation
import Testing
import VigilAddressing
import VigilAlgorithms
import VigilKernel
import VigilLab
@testable import VigilESP

/// A UDP socket bound to `address:port` in the calling thread's namespace; the caller closes it.
func boundUDPSocket(_ address: IPAddress, _ port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { throw ESPSystemError("socket") }
    var socketAddress = SocketAddress(Endpoint(address, port))
    let length = socketAddress.length
    let status = withUnsafePointer(to: &socketAddress.storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard status == 0 else {
        let error = ESPSystemError("bind \(address):\(port)")
        close(fd)
        throw error
    }
    return fd
}

/// One gateway in its own namespace: a data plane (TUN + socket), with a protected address on the TUN device.
final class LabGateway: @unchecked Sendable {
    let namespace: NetworkNamespace
    let plane: ESPDataPlane
    let socket: Int32
    let outer: IPAddress
    let ikeReceived = IKEInbox()

    init(namespace: NetworkNamespace, outer: IPAddress, inner: String, remoteSubnet: String) throws {
        self.namespace = namespace
        self.outer = outer
        (plane, socket) = try namespace.runInside {
            var configuration = ESPDataPlane.Configuration()
            configuration.interfaceName = "esp%d"
            let plane = try ESPDataPlane(configuration: configuration, clock: ESPEngine.systemClock())
            return (plane, try boundUDPSocket(outer, 4500))
        }
        try namespace.ip("addr", "add", inner, "dev", plane.interfaceName)
        try namespace.ip("route", "add", remoteSubnet, "dev", plane.interfaceName, "src", String(inner.split(separator: "/")[0]))
        let inbox = ikeReceived
        try plane.start(socket: socket) { message, from in inbox.append(message, from) }
    }

    func shutdown() {
        plane.stop()
        close(socket)
    }
}

final class IKEInbox: @unchecked Sendable {
    private let lock = NSLock()
    private var messages: [([UInt8], Endpoint)] = []
    func append(_ message: [UInt8], _ from: Endpoint) { lock.withLock { messages.append((message, from)) } }
    var all: [([UInt8], Endpoint)] { lock.withLock { messages } }
}

/// Installs a Child SA pair (A→B `spiAB`, B→A `spiBA`) with static keys in both gateways' engines: inbound SAs
/// first, then outbound, as IKE does, so no packet arrives for an SA its receiver does not have yet.
func installChildSA(
    _ a: LabGateway, _ b: LabGateway, _ encryption: EncryptionAlgorithm, _ integrity: IntegrityAlgorithm?,
    spiAB: UInt32, spiBA: UInt32
) throws -> (ab: SAID, ba: SAID) {
    let ab = SAID(destination: b.outer, spi: spiAB)
    let ba = SAID(destination: a.outer, spi: spiBA)
    let keysAB = keys(encryption, integrity, label: UInt8(truncatingIfNeeded: spiAB))
    let keysBA = keys(encryption, integrity, label: UInt8(truncatingIfNeeded: spiBA))
    let udp = UDPEncapsulation(sourcePort: 4500, destinationPort: 4500)
    let requestAB = SARequest(
        source: a.outer, destination: b.outer, reqid: 1, encryption: encryption, encryptionKey: keysAB.enc,
        integrity: integrity, integrityKey: keysAB.integ, encapsulation: udp)
    let requestBA = SARequest(
        source: b.outer, destination: a.outer, reqid: 1, encryption: encryption, encryptionKey: keysBA.enc,
        integrity: integrity, integrityKey: keysBA.integ, encapsulation: udp)
    try b.plane.engine.addSA(ab, requestAB)
    try a.plane.engine.addSA(ba, requestBA)
    try a.plane.engine.addSA(ab, requestAB)
    try b.plane.engine.addSA(ba, requestBA)
    return (ab, ba)
}

func installPolicies(_ gateway: LabGateway, local: String, remote: String, peer: IPAddress) throws {
    let local = try IPPrefix.parse(local)
    let remote = try IPPrefix.parse(remote)
    try gateway.plane.engine.addPolicy(
        PolicyID(selector: PolicySelector(source: local, destination: remote), direction: .outbound),
        PolicyRequest(action: .protect(PolicyTemplate(source: gateway.outer, destination: peer, reqid: 1)), priority: 100))
    try gateway.plane.engine.addPolicy(
        PolicyID(selector: PolicySelector(source: remote, destination: local), direction: .inbound),
        PolicyRequest(action: .protect(PolicyTemplate(source: peer, destination: gateway.outer, reqid: 1)), priority: 100))
}

/// Two gateways in two namespaces joined by a veth (192.0.2.1 ↔ 192.0.2.2), protecting 10.1.0.1 and 10.2.0.1.
final class LabPair {
    let nsA: NetworkNamespace
    let nsB: NetworkNamespace
    let a: LabGateway
    let b: LabGateway

    init() throws {
        nsA = try NetworkNamespace(prefix: "espa")
        nsB = try NetworkNamespace(prefix: "espb")
        do {
            try NetworkNamespace.link(nsA, "wan", "192.0.2.1/24", nsB, "wan", "192.0.2.2/24")
            a = try LabGateway(namespace: nsA, outer: IPAddress("192.0.2.1")!, inner: "10.1.0.1/32", remoteSubnet: "10.2.0.0/24")
            b = try LabGateway(namespace: nsB, outer: IPAddress("192.0.2.2")!, inner: "10.2.0.1/32", remoteSubnet: "10.1.0.0/24")
            try installPolicies(a, local: "10.1.0.0/24", remote: "10.2.0.0/24", peer: b.outer)
            try installPolicies(b, local: "10.2.0.0/24", remote: "10.1.0.0/24", peer: a.outer)
        } catch {
            nsA.destroy()
            nsB.destroy()
            throw error
        }
    }

    func destroy() {
        a.shutdown()
        b.shutdown()
        nsA.destroy()
        nsB.destroy()
    }

    func ping(count: Int = 3) throws -> Bool {
        try nsA.run(["ping", "-c", "\(count)", "-i", "0.2", "-W", "1", "-I", "10.1.0.1", "10.2.0.1"]).succeeded
    }
}

@Suite(.serialized) struct DataPlaneLabTests {
    @Test(arguments: [(EncryptionAlgorithm.aes256gcm16, IntegrityAlgorithm?.none), (.aes128cbc, .hmacSHA2_256_128)])
    func pingAndTCPTransferThroughTwoDataPlanes(_ encryption: EncryptionAlgorithm, _ integrity: IntegrityAlgorithm?) async throws {
        let lab = try LabPair()
        defer { lab.destroy() }
        let child = try installChildSA(lab.a, lab.b, encryption, integrity, spiAB: 0xC000_0001, spiBA: 0xC000_0002)
        #expect(try lab.ping())

        // TCP: 4 MB from A to B through both data planes, every byte checked at B.
        let size = 4 * 1024 * 1024
        let listener = try lab.nsB.runInside { try tcpListener(IPAddress("10.2.0.1")!, 5001) }
        defer { close(listener) }
        let receiver = Task.detached { try receiveAll(listener) }
        let sender = try lab.nsA.runInside { try tcpConnect(from: IPAddress("10.1.0.1")!, to: IPAddress("10.2.0.1")!, 5001) }
        try sendAll(sender, count: size)
        close(sender)
        let received = try await receiver.value
        #expect(received.count == size)
        #expect(received.firstMismatch == nil)
        let counters = try #require(lab.b.plane.engine.counters(child.ab))
        #expect(counters.bytes >= UInt64(size), "\(counters)")
        #expect(counters.authenticationFailures == 0 && counters.replayedDuplicates == 0)
        #expect(lab.a.plane.ioCounters.sendErrors == 0)
    }

    @Test func failoverSwapsSAsWithoutRestartingTheTUNDeviceAndNeverLeaksClear() throws {
        let lab = try LabPair()
        defer { lab.destroy() }
        let first = try installChildSA(lab.a, lab.b, .aes128gcm16, nil, spiAB: 0xC000_0011, spiBA: 0xC000_0012)
        #expect(try lab.ping())
        let interface = lab.a.plane.interfaceIndex

        // The peer is declared dead: its SAs go, the policies stay (hold). Nothing leaves A, not even in clear.
        for gateway in [lab.a, lab.b] {
            try gateway.plane.engine.deleteSA(first.ab)
            try gateway.plane.engine.deleteSA(first.ba)
        }
        try lab.nsB.exec(["nft", "add table ip watch; add chain ip watch in { type filter hook prerouting priority -300; };"
            + " add rule ip watch in ip saddr { 192.0.2.1, 10.1.0.1 } counter"])
        #expect(try !lab.ping(count: 2))
        #expect(try ipPacketsFromA(lab.nsB) == 0, "packets reached the peer while it had no SA")
        #expect(lab.a.plane.engine.counters.held >= 2)

        // New SAs (the next peer's, here re-keyed to the same gateway): traffic resumes on the same TUN device.
        _ = try installChildSA(lab.a, lab.b, .aes128gcm16, nil, spiAB: 0xC000_0021, spiBA: 0xC000_0022)
        #expect(try lab.ping())
        #expect(lab.a.plane.interfaceIndex == interface)
        #expect(try ipPacketsFromA(lab.nsB) >= 3, "the watch counter sees ESP once SAs exist")
        // The echo requests held during the gap left under the new SAs.
        #expect(lab.a.plane.engine.counters.released >= 2)
    }

    @Test func rekeyDuringATCPTransferLosesNothing() throws {
        let lab = try LabPair()
        defer { lab.destroy() }
        let old = try installChildSA(lab.a, lab.b, .aes128cbc, .hmacSHA2_256_128, spiAB: 0xC000_0031, spiBA: 0xC000_0032)
        let size = 16 * 1024 * 1024
        let listener = try lab.nsB.runInside { try tcpListener(IPAddress("10.2.0.1")!, 5002) }
        defer { close(listener) }
        // Sender and receiver block in system calls: plain threads, never the cooperative pool.
        let receiver = ThreadResult { try receiveAll(listener) }
        let sender = try lab.nsA.runInside { try tcpConnect(from: IPAddress("10.1.0.1")!, to: IPAddress("10.2.0.1")!, 5002) }
        // The connection spans the rekey whatever the machine's speed: the first half goes under the old SAs, then the
        // sender waits (its bytes still in flight) while CREATE_CHILD_SA's outcome lands, then sends the rest.
        let halfway = DispatchSemaphore(value: 0)
        let rekeyed = DispatchSemaphore(value: 0)
        let sending = ThreadResult {
            defer { close(sender) }
            try sendAll(sender, count: size / 2)
            halfway.signal()
            rekeyed.wait()
            try sendAll(sender, count: size - size / 2, from: size / 2)
        }
        halfway.wait()
        // The new pair next to the old, then the old goes while the second half is in flight.
        let new = try installChildSA(lab.a, lab.b, .aes128cbc, .hmacSHA2_256_128, spiAB: 0xC000_0041, spiBA: 0xC000_0042)
        rekeyed.signal()
        // The second half is in flight on the new pair before the old one goes.
        let deadline = Date().addingTimeInterval(10)
        while (lab.b.plane.engine.counters(new.ab)?.bytes ?? 0) == 0, Date() < deadline { Thread.sleep(forTimeInterval: 0.001) }
        for gateway in [lab.a, lab.b] {
            try gateway.plane.engine.deleteSA(old.ab)
            try gateway.plane.engine.deleteSA(old.ba)
        }
        try sending.value()
        let received = try receiver.value()
        #expect(received.count == size && received.firstMismatch == nil)
        let carriedByNew = try #require(lab.b.plane.engine.counters(new.ab)).bytes
        #expect(carriedByNew > 0 && carriedByNew < UInt64(size))
        for gateway in [lab.a, lab.b] {
            let counters = gateway.plane.engine.counters
            #expect(counters[.unknownSPI] == 0 && counters[.authenticationFailed] == 0 && counters[.noSA] == 0, "\(counters)")
        }
    }

    @Test func ikeDatagramsAndKeepalivesShareTheSocket() throws {
        let lab = try LabPair()
        defer { lab.destroy() }
        let message: [UInt8] = Array(repeating: 0x2B, count: 28)
        try lab.a.plane.sendIKE(message, to: Endpoint(lab.b.outer, 4500))
        try lab.a.plane.sendNATKeepalive(to: Endpoint(lab.b.outer, 4500))
        let deadline = Date().addingTimeInterval(10)
        while lab.b.ikeReceived.all.isEmpty || lab.b.plane.engine.counters.natKeepalives == 0, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        let received = lab.b.ikeReceived.all
        #expect(received.count == 1)
        #expect(received.first?.0 == message)
        #expect(received.first?.1 == Endpoint(lab.a.outer, 4500))
        #expect(lab.b.plane.engine.counters.natKeepalives == 1)
    }
}

// MARK: - A TCP transfer with checked content

/// The byte at `offset` of the test stream.
func streamByte(_ offset: Int) -> UInt8 { UInt8(truncatingIfNeeded: offset &* 2_654_435_761 >> 13) }

func tcpListener(_ address: IPAddress, _ port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var socketAddress = SocketAddress(Endpoint(address, port))
    let length = socketAddress.length
    let bound = withUnsafePointer(to: &socketAddress.storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard fd >= 0, bound == 0, listen(fd, 1) == 0 else { throw ESPSystemError("tcp listen") }
    return fd
}

func tcpConnect(from source: IPAddress, to destination: IPAddress, _ port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var local = SocketAddress(Endpoint(source, 0))
    var remote = SocketAddress(Endpoint(destination, port))
    let localLength = local.length
    let remoteLength = remote.length
    let bound = withUnsafePointer(to: &local.storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, localLength) } }
    let connected = withUnsafePointer(to: &remote.storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, remoteLength) }
    }
    guard fd >= 0, bound == 0, connected == 0 else { throw ESPSystemError("tcp connect") }
    return fd
}

/// Writes stream bytes `start..<start + count` (the pattern `receiveAll` checks).
func sendAll(_ fd: Int32, count: Int, from start: Int = 0) throws {
    let bytes = (start..<start + count).map(streamByte)
    var offset = 0
    while offset < count {
        let sent = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, count - offset) }
        guard sent > 0 else { throw ESPSystemError("tcp write") }
        offset += sent
    }
}

/// Accepts one connection and reads it to the end, checking every byte against `streamByte`.
func receiveAll(_ listener: Int32) throws -> (count: Int, firstMismatch: Int?) {
    let fd = accept(listener, nil, nil)
    guard fd >= 0 else { throw ESPSystemError("tcp accept") }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 65_536)
    var total = 0
    var mismatch: Int?
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { break }
        for index in 0..<count where mismatch == nil && buffer[index] != streamByte(total + index) { mismatch = total + index }
        total += count
    }
    return (total, mismatch)
}

/// IPv4 packets B received from A's outer or inner address since the `watch` counter was added.
func ipPacketsFromA(_ namespace: NetworkNamespace) throws -> Int {
    let listing = try namespace.exec(["nft", "list", "table", "ip", "watch"]).stdout
    let counter = try #require(listing.range(of: #"packets (\d+)"#, options: .regularExpression))
    return try #require(Int(listing[counter].dropFirst("packets ".count)))
}

/// Runs a blocking body on its own thread; `value()` waits for it.
final class ThreadResult<T>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<T, any Error>?

    init(_ body: @escaping @Sendable () throws -> T) {
        Thread { [self] in
            result = Result { try body() }
            done.signal()
        }.start()
    }

    func value() throws -> T {
        done.wait()
        return try result!.get()
    }
}
