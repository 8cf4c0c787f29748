import Synchronization
import VigilAddressing
import VigilAlgorithms
import VigilKernel
@testable import VigilESP

/// A monotonic clock the test moves by hand.
final class ManualClock: Sendable {
    private let value = Mutex(Duration.seconds(1000))
    var now: Duration { value.withLock { $0 } }
    func advance(_ by: Duration) { value.withLock { $0 += by } }
    var function: @Sendable () -> Duration { { self.now } }
}

/// An IPv4 packet (RFC 791 header, checksum left zero: the engine never reads it) around `payload`.
func ipv4Packet(from source: String, to destination: String, protocol ipProtocol: UInt8 = 17, payload: [UInt8]) -> [UInt8] {
    let total = 20 + payload.count
    var header: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0, 0, 0x40, 0, 64, ipProtocol, 0, 0]
    header += IPAddress(source)!.bytes + IPAddress(destination)!.bytes
    return header + payload
}

/// A buffer laid out as the data plane's: headroom, packet, tailroom.
final class PacketBuffer {
    let raw: UnsafeMutableRawBufferPointer
    init(capacity: Int = 70_000) {
        raw = .allocate(byteCount: capacity, alignment: 16)
        raw.initializeMemory(as: UInt8.self, repeating: 0xEE)
    }
    deinit { raw.deallocate() }

    /// Copies `bytes` after the headroom; returns their range.
    func load(_ bytes: [UInt8], at offset: Int = ESPEngine.headroom) -> Range<Int> {
        UnsafeMutableRawBufferPointer(rebasing: raw[offset..<offset + bytes.count]).copyBytes(from: bytes)
        return offset..<offset + bytes.count
    }

    subscript(range: Range<Int>) -> [UInt8] { Array(raw[range]) }
}

/// Keys for one SA, derived from a label so each SA differs.
func keys(_ encryption: EncryptionAlgorithm, _ integrity: IntegrityAlgorithm?, label: UInt8) -> (enc: [UInt8], integ: [UInt8]) {
    let enc = (0..<encryption.keyMaterialLength).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(label)) }
    let integ = integrity.map { a in (0..<a.keyLength).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ Int(label) &+ 1) } } ?? []
    return (enc, integ)
}

/// Two gateways' engines: A (192.0.2.1, protecting 10.1.0.0/24) and B (192.0.2.2, protecting 10.2.0.0/24), wired
/// in memory. `establish` installs a Child SA pair like the IKE engine would, in both, with the policies.
final class Tunnel {
    let clock = ManualClock()
    let a: ESPEngine
    let b: ESPEngine
    static let addressA = IPAddress("192.0.2.1")!
    static let addressB = IPAddress("192.0.2.2")!
    static let subnetA = try! IPPrefix.parse("10.1.0.0/24")
    static let subnetB = try! IPPrefix.parse("10.2.0.0/24")

    let eventsOfA = EventLog()

    init(replayWindow: Int = 64, holdQueueLimit: Int = 0) {
        let configuration = ESPEngine.Configuration(replayWindow: replayWindow, holdQueueLimit: holdQueueLimit)
        let log = eventsOfA
        a = ESPEngine(configuration: configuration, clock: clock.function, wallSeconds: { 1_700_000_000 }) { log.append($0, $1) }
        b = ESPEngine(configuration: configuration, clock: clock.function, wallSeconds: { 1_700_000_000 })
    }

    struct ChildSA {
        var outboundOfA: SAID
        var outboundOfB: SAID
    }

    /// Installs SAs A→B (`spiAB`) and B→A (`spiBA`) in both engines, and (once) the policies for reqid 1.
    @discardableResult
    func establish(
        _ encryption: EncryptionAlgorithm, _ integrity: IntegrityAlgorithm?, spiAB: UInt32, spiBA: UInt32,
        lifetime: SALifetime = .unlimited, policies: Bool = true
    ) throws -> ChildSA {
        let ab = SAID(destination: Self.addressB, spi: spiAB)
        let ba = SAID(destination: Self.addressA, spi: spiBA)
        let keysAB = keys(encryption, integrity, label: UInt8(truncatingIfNeeded: spiAB))
        let keysBA = keys(encryption, integrity, label: UInt8(truncatingIfNeeded: spiBA))
        func request(_ source: IPAddress, _ destination: IPAddress, _ k: (enc: [UInt8], integ: [UInt8])) -> SARequest {
            SARequest(
                source: source, destination: destination, reqid: 1, encryption: encryption, encryptionKey: k.enc,
                integrity: integrity, integrityKey: k.integ,
                encapsulation: UDPEncapsulation(sourcePort: 4500, destinationPort: 4500), replayWindow: 32, lifetime: lifetime)
        }
        for engine in [a, b] {
            try engine.addSA(ab, request(Self.addressA, Self.addressB, keysAB))
            try engine.addSA(ba, request(Self.addressB, Self.addressA, keysBA))
        }
        if policies {
            try installPolicies(a, local: Self.subnetA, remote: Self.subnetB, localAddress: Self.addressA, remoteAddress: Self.addressB)
            try installPolicies(b, local: Self.subnetB, remote: Self.subnetA, localAddress: Self.addressB, remoteAddress: Self.addressA)
        }
        return ChildSA(outboundOfA: ab, outboundOfB: ba)
    }

    private func installPolicies(
        _ engine: ESPEngine, local: IPPrefix, remote: IPPrefix, localAddress: IPAddress, remoteAddress: IPAddress
    ) throws {
        let out = PolicyTemplate(source: localAddress, destination: remoteAddress, reqid: 1)
        let into = PolicyTemplate(source: remoteAddress, destination: localAddress, reqid: 1)
        try engine.addPolicy(
            PolicyID(selector: PolicySelector(source: local, destination: remote), direction: .outbound),
            PolicyRequest(action: .protect(out), priority: 100))
        for direction in [PolicyDirection.inbound, .forward] {
            try engine.addPolicy(
                PolicyID(selector: PolicySelector(source: remote, destination: local), direction: direction),
                PolicyRequest(action: .protect(into), priority: 100))
        }
    }

    /// Encapsulates `inner` in `from`; returns the ESP datagram bytes and where it goes, or the drop.
    func seal(_ engine: ESPEngine, _ inner: [UInt8]) -> (datagram: [UInt8], peer: Endpoint)? {
        let buffer = PacketBuffer()
        let range = buffer.load(inner)
        switch engine.encapsulate(buffer: buffer.raw, payload: range) {
        case .send(let packet, let peer): return (buffer[packet], peer)
        case .held, .drop: return nil
        }
    }

    /// Delivers a datagram to `engine` as if received from `source`; returns the verdict and the delivered bytes.
    func open(_ engine: ESPEngine, _ datagram: [UInt8], from source: IPAddress) -> (InboundVerdict, [UInt8]?) {
        let buffer = PacketBuffer()
        let range = buffer.load(datagram, at: 0)
        let verdict = engine.decapsulate(buffer: buffer.raw, datagram: range, source: Endpoint(source, 4500))
        if case .deliver(let packet) = verdict { return (verdict, buffer[packet]) }
        return (verdict, nil)
    }

    /// A packet from host 10.1.0.5 to 10.2.0.7 carrying `payload`, sealed by A and opened by B.
    func sendAToB(_ payload: [UInt8]) -> [UInt8]? {
        let inner = ipv4Packet(from: "10.1.0.5", to: "10.2.0.7", payload: payload)
        guard let (datagram, _) = seal(a, inner) else { return nil }
        return open(b, datagram, from: Self.addressA).1
    }
}

/// Lifetime events an engine reported, in order.
final class EventLog: Sendable {
    private let events = Mutex<[(SAID, LifetimeEvent)]>([])
    func append(_ id: SAID, _ event: LifetimeEvent) { events.withLock { $0.append((id, event)) } }
    var all: [LifetimeEvent] { events.withLock { $0.map(\.1) } }
}
