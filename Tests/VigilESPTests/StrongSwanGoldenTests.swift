import Testing
import VigilAddressing
import VigilAlgorithms
import VigilKernel
@testable import VigilESP

/// ESP-in-UDP packets captured on the wire between two strongSwan 5.9.8 gateways using kernel-libipsec (192.0.2.1,
/// initiator, protecting 10.1.0.0/24 → 192.0.2.2 protecting 10.2.0.0/24), with the Child SA keys charon printed
/// at `chd = 4`. Each is the first packet of `ping -s 37 -I 10.1.0.1 10.2.0.1`: a 65-byte ICMP echo request.
/// Decoding them with Vigil's engine checks the wire format against an independent implementation: header, IV
/// placement, GCM nonce and AAD, CBC padding, ICV coverage and truncation.
@Suite struct StrongSwanGoldenTests {
    struct Capture: Sendable, CustomStringConvertible {
        var encryption: EncryptionAlgorithm
        var integrity: IntegrityAlgorithm?
        var spi: UInt32
        /// encryption key (|| salt for GCM), integrity key: "encryption/integrity initiator key" in charon's log.
        var encryptionKey: String
        var integrityKey: String
        /// The UDP payload on port 4500.
        var datagram: String
        var description: String { "\(encryption)\(integrity.map { "-\($0)" } ?? "")" }
    }

    static let captures = [
        Capture(
            encryption: .aes128gcm16, integrity: nil, spi: 0xF0B4_E1F2,
            encryptionKey: "c233c6b8278a173621ae866365f8dafcc1a2c605", integrityKey: "",
            datagram: "f0b4e1f200000001d99e890e10bd4c5b2cf019a1d105790c84d4aa71421da1925be55bd22b402e2a973d6d165b79"
                + "4e59f5ebcc3c58358c4d4142f3b9f9a12bbb7b1c68c31fab8a4a97c1b33fdec63e088af3d556bc3df420ca46b0bd0c053b8d"
                + "abd8c869"),
        Capture(
            encryption: .aes256gcm16, integrity: nil, spi: 0x1705_D45C,
            encryptionKey: "d65a3717c52c43112179e6ff10b48a54f16abfd5808a1dcea843e61b5a154ecf72f00e0d", integrityKey: "",
            datagram: "1705d45c000000013220e9f72adc665c2e107d68b50f2e91589a4e6e4e0361e35ea845ed8a37be7dd3500eebc0f5"
                + "0cb57c45e20211bdd34f482b836cf61aea71294d3d2ff4f1fa9dd6e061e0e0a7c5b161a47f46205e5aff55bd815fc751c51e"
                + "4525652a"),
        Capture(
            encryption: .aes128cbc, integrity: .hmacSHA2_256_128, spi: 0x3416_F6C5,
            encryptionKey: "1b7e0602a457461badd6c1e8573f2cba",
            integrityKey: "9837c42ff1b8bb90347f74bce5f142ccb935e904236ef443d905173f4b515740",
            datagram: "3416f6c50000000126a1b35de9205243c24083ad2c79567aab02c62ac1e43a5649d0ecd9b6de76c66e3018c997"
                + "027469915ea205338645306c674ed71bfb703bbd9fc733d1d987ce590e8331855a054920e37fd59e5d805544af8c437fa9e5"
                + "8a1c6e262622dbba0ad21d3f3b250e85412371584f5175637a"),
        Capture(
            encryption: .aes256cbc, integrity: .hmacSHA1_96, spi: 0x7574_1F55,
            encryptionKey: "048624c73829fe5a2316c09480dee4acd412733e2b482c1d449a5d346933ffc6",
            integrityKey: "e1d8111facdcbb9faf456adfd9ecef64751a5d15",
            datagram: "75741f5500000001d8b48563b530e8f6d9ef4bf9920d4f0408f2d1f9ea49d5c744dc0b38a63a244fbc12229881"
                + "1e342373064320d3a558fc7c401248ca042825c835cdfb85b4511999584af93fb5f51a2690d2b0ea1abd3fc9a1cea03e2b23"
                + "b7e805996f10a6609300ee5355b3261ac7643ea2c5"),
    ]

    static let west = IPAddress("192.0.2.1")!
    static let east = IPAddress("192.0.2.2")!

    /// East's engine with the captured SA installed inbound and the Child SA's inbound policy.
    static func eastEngine(_ capture: Capture) throws -> (ESPEngine, SAID) {
        let engine = ESPEngine(clock: { .zero })
        let id = SAID(destination: east, spi: capture.spi)
        try engine.addSA(id, SARequest(
            source: west, destination: east, reqid: 1, encryption: capture.encryption,
            encryptionKey: hex(capture.encryptionKey), integrity: capture.integrity, integrityKey: hex(capture.integrityKey),
            encapsulation: UDPEncapsulation(sourcePort: 4500, destinationPort: 4500)))
        try engine.addPolicy(
            PolicyID(
                selector: PolicySelector(source: try IPPrefix.parse("10.1.0.0/24"), destination: try IPPrefix.parse("10.2.0.0/24")),
                direction: .inbound),
            PolicyRequest(action: .protect(PolicyTemplate(source: west, destination: east, reqid: 1)), priority: 100))
        return (engine, id)
    }

    @Test(arguments: captures)
    func decodesStrongSwansPacket(_ capture: Capture) throws {
        let (engine, id) = try Self.eastEngine(capture)
        let buffer = PacketBuffer()
        let datagram = hex(capture.datagram)
        let verdict = engine.decapsulate(buffer: buffer.raw, datagram: buffer.load(datagram, at: 0), source: Endpoint(Self.west, 4500))
        guard case .deliver(let range) = verdict else {
            Issue.record("\(capture): \(verdict)")
            return
        }
        let inner = buffer[range]
        #expect(inner.count == 65)
        #expect(inner[0] == 0x45 && inner[2] == 0 && inner[3] == 65)  // IPv4, total length 65
        #expect(inner[9] == 1)  // ICMP
        #expect(Array(inner[12..<16]) == [10, 1, 0, 1] && Array(inner[16..<20]) == [10, 2, 0, 1])
        #expect(inner[20] == 8)  // echo request
        #expect(engine.counters(id)?.packets == 1 && engine.counters(id)?.bytes == 65)

        // The same bytes again are a replay; one flipped bit anywhere is a forgery.
        let replay = engine.decapsulate(buffer: buffer.raw, datagram: buffer.load(datagram, at: 0), source: Endpoint(Self.west, 4500))
        #expect(replay == .drop(.replayed))
        let (fresh, _) = try Self.eastEngine(capture)
        var forged = datagram
        forged[forged.count / 2] ^= 0x80
        let forgedVerdict = fresh.decapsulate(buffer: buffer.raw, datagram: buffer.load(forged, at: 0), source: Endpoint(Self.west, 4500))
        #expect(forgedVerdict == .drop(.authenticationFailed))
    }
}

func hex(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        bytes.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}
