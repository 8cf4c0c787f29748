import VigilAddressing
import VigilAlgorithms
import VigilCrypto
@testable import VigilESP
import VigilFuzzSupport
import VigilKernel

/// ESP decapsulation in the userspace engine (RFC 4303 §3.4, RFC 3948 §2) with known SAs: the four Child SAs
/// strongSwan 5.9.8 used for the captured packets (AES-GCM-128/256, AES-CBC-128 + HMAC-SHA2-256-128, AES-CBC-256
/// + HMAC-SHA1-96), installed inbound with their keys and policy.
///
/// Input layout: octet 0 bit 0 picks the mode.
/// - raw (0): the rest is a datagram from the peer's NAT-T port, as received (classification, SPI lookup, length
///   and padding checks, and for the captured packets the whole path); the engine's replay check is off.
/// - authenticated (1): bits 1-2 pick the SA, bit 3 the engine (0: replay check off, so every input reaches the
///   inner packet; 1: RFC 4303's window on, its state carried from input to input); octet 1 is the Next Header,
///   octets 2-5 the sequence number; the rest is sealed as the inner packet with that SA's keys exactly as a peer
///   would, so the inner-packet parsing, selector checks, anti-replay window and counters see fuzzed, authentic
///   packets.
enum FuzzESP {
    static let west = IPAddress("192.0.2.1")!
    static let east = IPAddress("192.0.2.2")!

    struct KnownSA {
        var encryption: EncryptionAlgorithm
        var integrity: IntegrityAlgorithm?
        var spi: UInt32
        var encryptionKey: [UInt8]
        var integrityKey: [UInt8]
    }

    /// Keys charon printed for the captured packets (see Tests/VigilESPTests/StrongSwanGoldenTests.swift).
    static let known: [KnownSA] = [
        KnownSA(encryption: .aes128gcm16, integrity: nil, spi: 0xF0B4_E1F2,
                encryptionKey: octets(hex: "c233c6b8278a173621ae866365f8dafcc1a2c605"), integrityKey: []),
        KnownSA(encryption: .aes256gcm16, integrity: nil, spi: 0x1705_D45C,
                encryptionKey: octets(hex: "d65a3717c52c43112179e6ff10b48a54f16abfd5808a1dcea843e61b5a154ecf72f00e0d"), integrityKey: []),
        KnownSA(encryption: .aes128cbc, integrity: .hmacSHA2_256_128, spi: 0x3416_F6C5,
                encryptionKey: octets(hex: "1b7e0602a457461badd6c1e8573f2cba"),
                integrityKey: octets(hex: "9837c42ff1b8bb90347f74bce5f142ccb935e904236ef443d905173f4b515740")),
        KnownSA(encryption: .aes256cbc, integrity: .hmacSHA1_96, spi: 0x7574_1F55,
                encryptionKey: octets(hex: "048624c73829fe5a2316c09480dee4acd412733e2b482c1d449a5d346933ffc6"),
                integrityKey: octets(hex: "e1d8111facdcbb9faf456adfd9ecef64751a5d15")),
    ]

    /// East's engines: `raw` with the replay check off (so a captured packet opens on every run), `windowed` with
    /// RFC 4303's window on.
    static let raw = engine(replayWindow: 0)
    static let windowed = engine(replayWindow: 64)
    /// The peer's sealing side, one transform per known SA.
    static let peers: [ESPTransform] = known.map { sa in
        try! ESPTransform(encryption: sa.encryption, encryptionKey: sa.encryptionKey, integrity: sa.integrity, integrityKey: sa.integrityKey)
    }
    /// The packet buffer (libFuzzer runs inputs one at a time on one thread).
    static let capacity = ESPEngine.headroom + 70_000 + ESPEngine.tailroom
    nonisolated(unsafe) static let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)

    static func engine(replayWindow: UInt8) -> ESPEngine {
        let engine = ESPEngine(configuration: .init(replayWindow: Int(replayWindow), holdQueueLimit: 4), clock: { .seconds(1) }, wallSeconds: { 1_700_000_000 })
        for sa in known {
            try! engine.addSA(SAID(destination: east, spi: sa.spi), SARequest(
                source: west, destination: east, reqid: 1, encryption: sa.encryption, encryptionKey: sa.encryptionKey,
                integrity: sa.integrity, integrityKey: sa.integrityKey,
                encapsulation: UDPEncapsulation(sourcePort: 4500, destinationPort: 4500), replayWindow: replayWindow))
        }
        let selector = PolicySelector(source: try! IPPrefix.parse("10.1.0.0/24"), destination: try! IPPrefix.parse("10.2.0.0/24"))
        for direction in [PolicyDirection.inbound, .forward] {
            try! engine.addPolicy(PolicyID(selector: selector, direction: direction),
                                  PolicyRequest(action: .protect(PolicyTemplate(source: west, destination: east, reqid: 1)), priority: 100))
        }
        return engine
    }

    /// Returns the engine's verdict (the replayer prints it).
    static func run(_ bytes: [UInt8]) -> InboundVerdict? {
        var cursor = FuzzCursor(bytes)
        let select = cursor.byte()
        if select & 1 == 0 {
            let datagram = cursor.remaining
            guard datagram.count <= capacity else { return nil }
            UnsafeMutableRawBufferPointer(rebasing: buffer[0..<datagram.count]).copyBytes(from: datagram)
            return raw.decapsulate(buffer: buffer, datagram: 0..<datagram.count, source: Endpoint(west, 4500))
        }
        let index = Int(select >> 1) & 0b11
        let nextHeader = cursor.byte()
        let sequenceNumber = cursor.uint32()
        let inner = cursor.remaining
        guard ESPEngine.headroom + inner.count + ESPEngine.tailroom <= capacity else { return nil }
        let payload = ESPEngine.headroom..<ESPEngine.headroom + inner.count
        UnsafeMutableRawBufferPointer(rebasing: buffer[payload]).copyBytes(from: inner)
        guard let packet = try? peers[index].seal(buffer: buffer, payload: payload, spi: known[index].spi,
                                                  sequenceNumber: sequenceNumber, nextHeader: nextHeader) else {
            preconditionFailure("sealing with a known key failed")
        }
        let engine = select & 0b1000 == 0 ? raw : windowed
        let verdict = engine.decapsulate(buffer: buffer, datagram: packet, source: Endpoint(west, 4500))
        _ = engine.counters
        return verdict
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    _ = FuzzESP.run(fuzzBytes(data, size))
    return 0
}

#if !VIGIL_LIBFUZZER
@main enum Replay {
    static func main() { replayFiles(Array(CommandLine.arguments.dropFirst())) { FuzzESP.run($0).map { "  \($0)" } ?? "" } }
}
#endif
