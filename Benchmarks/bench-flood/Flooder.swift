import Foundation
import VigilAlgorithms
import VigilLiveness
import VigilWire

/// The attacker: one raw IPv4 socket (IP_HDRINCL, created inside the attacker namespace) sending forged IKE_SA_INIT
/// requests and garbage datagrams at fixed rates for a fixed time, then stopping by itself. Raw, so the source
/// address and port of every datagram can be chosen: the attacker's own addresses, or (spoofing) a listed peer's.
final class Flooder: @unchecked Sendable {
    struct Plan {
        var initRate: Int
        var garbageRate: Int
        var seconds: Double
        /// Percent of datagrams whose source is a listed peer's address rather than one of the attacker's.
        var spoofPercent: Int
        /// Where forged IKE_SA_INITs go: 500, or 4500 behind the non-ESP marker (RFC 3948 §2.2), or both.
        var initPorts: [UInt16]
        var target: String
        var attackerAddresses: [String]
        var spoofedAddresses: [String]
        /// Inbound SPIs of vigild's Child SAs and the peer each belongs to: forged ESP with a real SPI, sent from
        /// that peer's address, must fail authentication and never count as proof of life.
        var childSPIs: [(spi: UInt32, peer: String)]
    }

    /// What each kind of datagram is, and where it goes.
    enum Kind: Int, CaseIterable {
        /// RFC 7296 §1.2: a parseable IKE_SA_INIT request (SA, KE, Ni) with a random initiator SPI.
        case forgedInit
        /// Random bytes of random length to UDP 500.
        case garbage500
        /// Random bytes to UDP 4500: an ESP packet with a random SPI to the data plane (RFC 3948).
        case garbage4500
        /// A well-formed IKE header with random SPIs and a random SK body, to 500 or behind the non-ESP marker to 4500.
        case unknownSA
        /// ESP with one of vigild's real inbound SPIs and a random body (fails the ICV).
        case forgedESP

        var label: String {
            switch self {
            case .forgedInit: "forged IKE_SA_INIT"
            case .garbage500: "random bytes to 500"
            case .garbage4500: "random bytes to 4500 (ESP, random SPI)"
            case .unknownSA: "IKE header, unknown SPIs, random SK"
            case .forgedESP: "ESP with a real inbound SPI, bad ICV"
            }
        }
    }

    struct Counts {
        var sent = Array(repeating: 0, count: Kind.allCases.count)
        var spoofed = 0
        var sendErrors = 0
        var firstError: String?
        /// Datagrams never sent because the sender fell more than `maximumBacklog` behind its schedule.
        var skipped = 0
        var elapsed = 0.0
        var forgedInits: Int { sent[Kind.forgedInit.rawValue] }
        var garbage: Int { sent.reduce(0, +) - forgedInits }
    }

    /// The sender catches up after a stall by at most this much of its schedule; the rest is counted as skipped.
    static let maximumBacklog = 0.1
    /// Longest garbage datagram: stays under a 1500-octet MTU with the IPv4 and UDP headers.
    static let maximumGarbageLength = 1400
    /// RFC 3526 group 14: the KE data of a MODP-2048 offer is 256 octets.
    static let modp2048Length = 256
    static let nonceLength = 32
    static let templateCount = 16
    /// RFC 3602 AES-CBC block and IV, RFC 4868 HMAC-SHA-256-128 ICV: the shape of an ESP packet of the lab's SAs.
    static let aesBlock = 16
    static let sha256ICV = 16

    private let fd: Int32
    private let plan: Plan
    private var random: SplitMix64
    private let templates: [[UInt8]]
    private let target: UInt32
    private let attackerAddresses: [UInt32]
    private let spoofedAddresses: [UInt32]
    private let childSPIs: [(spi: UInt32, peer: UInt32)]
    private let stopLock = NSLock()
    private var stopRequested = false

    /// `fd` is a raw socket made in the attacker namespace.
    init(fd: Int32, plan: Plan, seed: UInt64) throws {
        self.fd = fd
        self.plan = plan
        random = SplitMix64(seed: seed)
        var templateRandom = SplitMix64(seed: seed ^ 0x5eed)
        templates = try (0..<Self.templateCount).map { _ in try Self.forgedInitTemplate(&templateRandom) }
        guard let target = ipv4(plan.target) else { throw FloodError("bad target \(plan.target)") }
        self.target = target
        attackerAddresses = plan.attackerAddresses.compactMap(ipv4)
        spoofedAddresses = plan.spoofedAddresses.compactMap(ipv4)
        childSPIs = plan.childSPIs.compactMap { entry in ipv4(entry.peer).map { (entry.spi, $0) } }
        guard !attackerAddresses.isEmpty, !spoofedAddresses.isEmpty else { throw FloodError("no source addresses") }
    }

    /// An IKE_SA_INIT request built with the codec and checked to parse: the lab's proposal, a MODP-2048 KE and a
    /// nonce, all random where the value is the initiator's choice.
    static func forgedInitTemplate(_ random: inout SplitMix64) throws -> [UInt8] {
        let proposal = IKEv2.Proposal(number: 1, protocolID: .ike, spi: [], transforms: [
            IKEv2.Transform(type: .encryption, id: EncryptionAlgorithm.aes256cbc.ikev2TransformID,
                            keyLength: UInt16(EncryptionAlgorithm.aes256cbc.keyBits)),
            IKEv2.Transform(type: .pseudorandomFunction, id: PseudorandomFunction.hmacSHA2_256.ikev2TransformID),
            IKEv2.Transform(type: .integrity, id: IntegrityAlgorithm.hmacSHA2_256_128.ikev2TransformID),
            IKEv2.Transform(type: .keyExchange, id: DHGroup.modp2048.rawValue),
        ])
        // A public value below the group's prime (whose top octets are all ones) and above 1.
        var ke = randomBytes(modp2048Length, &random)
        ke[0] = 0x7f
        let message = IKEv2.Message(
            header: IKEv2.Header(initiatorSPI: random.next() | 1, responderSPI: 0, exchangeType: .ikeSAInit, flags: .initiator, messageID: 0),
            payloads: [
                .securityAssociation(IKEv2.SecurityAssociation(proposals: [proposal])),
                .keyExchange(IKEv2.KeyExchange(group: DHGroup.modp2048.rawValue, data: ke)),
                .nonce(randomBytes(nonceLength, &random)),
            ])
        let bytes = message.serialize()
        let parsed = try IKEv2.Message.parse(bytes)
        guard parsed.payloads.count == 3, parsed.header.exchangeType == .ikeSAInit else { throw FloodError("forged IKE_SA_INIT does not parse back") }
        return bytes
    }

    func stop() {
        stopLock.lock()
        stopRequested = true
        stopLock.unlock()
    }

    private var shouldStop: Bool {
        stopLock.lock()
        defer { stopLock.unlock() }
        return stopRequested
    }

    /// Sends on schedule until `plan.seconds` have passed (or `stop()`), checking the clock every millisecond.
    func run() -> Counts {
        var counts = Counts()
        var buffer = [UInt8](repeating: 0, count: 28 + Self.maximumGarbageLength + 64)
        let start = monotonicSeconds()
        var dueInit = 0.0
        var dueGarbage = 0.0
        var sentInit = 0
        var sentGarbage = 0
        var garbageKind = 0
        let garbageKinds: [Kind] = childSPIs.isEmpty ? [.garbage500, .garbage4500, .unknownSA] : [.garbage500, .garbage4500, .unknownSA, .forgedESP]
        while !shouldStop {
            let elapsed = monotonicSeconds() - start
            if elapsed >= plan.seconds { break }
            dueInit = elapsed * Double(plan.initRate)
            dueGarbage = elapsed * Double(plan.garbageRate)
            let backlogLimitInit = Double(plan.initRate) * Self.maximumBacklog
            let backlogLimitGarbage = Double(plan.garbageRate) * Self.maximumBacklog
            if dueInit - Double(sentInit) > backlogLimitInit {
                let skip = Int(dueInit - Double(sentInit) - backlogLimitInit)
                counts.skipped += skip
                sentInit += skip
            }
            if dueGarbage - Double(sentGarbage) > backlogLimitGarbage {
                let skip = Int(dueGarbage - Double(sentGarbage) - backlogLimitGarbage)
                counts.skipped += skip
                sentGarbage += skip
            }
            var progressed = false
            while Double(sentInit) < dueInit || Double(sentGarbage) < dueGarbage {
                // Interleave the two streams in proportion to how far behind each is.
                let initBehind = dueInit - Double(sentInit)
                let garbageBehind = dueGarbage - Double(sentGarbage)
                let kind: Kind
                if initBehind >= garbageBehind {
                    kind = .forgedInit
                    sentInit += 1
                } else {
                    kind = garbageKinds[garbageKind % garbageKinds.count]
                    garbageKind += 1
                    sentGarbage += 1
                }
                send(kind, &buffer, &counts)
                progressed = true
            }
            if !progressed { usleep(1000) }
        }
        counts.elapsed = monotonicSeconds() - start
        return counts
    }

    private func send(_ kind: Kind, _ buffer: inout [UInt8], _ counts: inout Counts) {
        var spoof = Int(random.next() % 100) < plan.spoofPercent
        var source = spoof ? pick(spoofedAddresses) : pick(attackerAddresses)
        let sourcePort = UInt16(1024 + random.next() % (65536 - 1024))
        var destinationPort: UInt16 = 500
        var length: Int
        switch kind {
        case .forgedInit:
            let template = templates[Int(random.next() % UInt64(templates.count))]
            destinationPort = plan.initPorts[Int(random.next() % UInt64(plan.initPorts.count))]
            let marker = destinationPort == 4500 ? 4 : 0
            length = marker + template.count
            for i in 28..<(28 + marker) { buffer[i] = 0 }
            buffer.replaceSubrange((28 + marker)..<(28 + length), with: template)
            put64(&buffer, at: 28 + marker, random.next() | 1)
        case .garbage500, .garbage4500:
            destinationPort = kind == .garbage500 ? 500 : 4500
            length = 1 + Int(random.next() % UInt64(Self.maximumGarbageLength))
            fillRandom(&buffer, from: 28, count: length)
            if kind == .garbage4500, length >= 4, buffer[28..<32].allSatisfy({ $0 == 0 }) { buffer[28] = 1 }
        case .unknownSA:
            // §3.1 header (28 octets) + an SK payload header (4) + random IV/ciphertext/ICV.
            let toNATT = random.next() & 1 == 1
            destinationPort = toNATT ? 4500 : 500
            let marker = toNATT ? 4 : 0
            let body = 32 + Int(random.next() % 256)
            length = marker + 28 + 4 + body
            fillRandom(&buffer, from: 28, count: length)
            if toNATT { for i in 28..<32 { buffer[i] = 0 } }
            let ike = 28 + marker
            buffer[ike + 16] = IKEv2.PayloadType.encrypted.rawValue
            buffer[ike + 17] = 0x20
            buffer[ike + 18] = IKEv2.ExchangeType.informational.rawValue
            buffer[ike + 19] = IKEv2.Header.Flags.initiator.rawValue
            put32(&buffer, at: ike + 24, UInt32(28 + 4 + body))
            buffer[ike + 28] = 0
            buffer[ike + 29] = 0
            put16(&buffer, at: ike + 30, UInt16(4 + body))
        case .forgedESP:
            // RFC 4303 §2: SPI, sequence number, IV, whole cipher blocks, ICV: a length the lab's aes256-sha256
            // SA accepts, so the packet reaches the ICV check (random, so authentication fails).
            let child = childSPIs[Int(random.next() % UInt64(childSPIs.count))]
            destinationPort = 4500
            spoof = true
            source = child.peer
            length = 8 + Self.aesBlock + Self.aesBlock * (1 + Int(random.next() % 8)) + Self.sha256ICV
            fillRandom(&buffer, from: 28, count: length)
            put32(&buffer, at: 28, child.spi)
            put32(&buffer, at: 32, UInt32(truncatingIfNeeded: random.next() % 1_000_000) + 1)
        }
        writeHeaders(&buffer, source: source, sourcePort: spoof && kind == .forgedESP ? 4500 : sourcePort,
                     destinationPort: destinationPort, payloadLength: length)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = target.bigEndian
        let total = 28 + length
        let result = buffer.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, total, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        if result == total {
            counts.sent[kind.rawValue] += 1
            if spoof { counts.spoofed += 1 }
        } else {
            counts.sendErrors += 1
            if counts.firstError == nil { counts.firstError = String(cString: strerror(errno)) }
        }
    }

    /// IPv4 (RFC 791) and UDP (RFC 768) headers. The kernel fills in the IPv4 total length, identification and
    /// checksum for IP_HDRINCL; a UDP checksum of zero means "none" over IPv4.
    private func writeHeaders(_ buffer: inout [UInt8], source: UInt32, sourcePort: UInt16, destinationPort: UInt16, payloadLength: Int) {
        buffer[0] = 0x45
        buffer[1] = 0
        put16(&buffer, at: 2, UInt16(20 + 8 + payloadLength))
        put16(&buffer, at: 4, 0)
        put16(&buffer, at: 6, 0)
        buffer[8] = 64
        buffer[9] = UInt8(IPPROTO_UDP)
        put16(&buffer, at: 10, 0)
        put32(&buffer, at: 12, source)
        put32(&buffer, at: 16, target)
        put16(&buffer, at: 20, sourcePort)
        put16(&buffer, at: 22, destinationPort)
        put16(&buffer, at: 24, UInt16(8 + payloadLength))
        put16(&buffer, at: 26, 0)
    }

    private func pick(_ addresses: [UInt32]) -> UInt32 { addresses[Int(random.next() % UInt64(addresses.count))] }

    private func fillRandom(_ buffer: inout [UInt8], from offset: Int, count: Int) {
        buffer.withUnsafeMutableBytes { bytes in
            var index = offset
            let end = offset + count
            while index < end {
                var word = random.next()
                let chunk = min(8, end - index)
                withUnsafeBytes(of: &word) { source in
                    for k in 0..<chunk { bytes[index + k] = source[k] }
                }
                index += chunk
            }
        }
    }
}

struct FloodError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func randomBytes(_ count: Int, _ random: inout SplitMix64) -> [UInt8] {
    (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
}

/// Dotted quad to a host-order UInt32.
func ipv4(_ text: String) -> UInt32? {
    let parts = text.split(separator: ".").compactMap { UInt8($0) }
    guard parts.count == 4 else { return nil }
    return parts.reduce(0) { $0 << 8 | UInt32($1) }
}

func put16(_ buffer: inout [UInt8], at offset: Int, _ value: UInt16) {
    buffer[offset] = UInt8(value >> 8)
    buffer[offset + 1] = UInt8(value & 0xff)
}

func put32(_ buffer: inout [UInt8], at offset: Int, _ value: UInt32) {
    for k in 0..<4 { buffer[offset + k] = UInt8((value >> (24 - 8 * UInt32(k))) & 0xff) }
}

func put64(_ buffer: inout [UInt8], at offset: Int, _ value: UInt64) {
    for k in 0..<8 { buffer[offset + k] = UInt8((value >> (56 - 8 * UInt64(k))) & 0xff) }
}

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
