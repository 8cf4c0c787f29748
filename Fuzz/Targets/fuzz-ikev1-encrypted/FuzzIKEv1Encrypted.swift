import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilFuzzSupport
import VigilLiveness
@testable import VigilIKEv1
import VigilWire

/// The IKEv1 encrypted-message paths past decryption and HASH (RFC 2409 §5.5, §5.7, Appendix B): two endpoints
/// bring an ISAKMP SA (and a first IPsec SA) up in lockstep once, with a fixed seed; each input is then the
/// plaintext payload chain of an informational or Quick Mode message from the peer, given the HASH the receiver
/// expects, encrypted with the SA's key and the IV of its message ID, and delivered to a copy of the receiver
/// through `handle(.datagramReceived)`. So the payload decoder behind decryption, the HASH checks and every
/// handler behind them (notifies incl. RFC 3706 DPD, DELETE, QM1, QM2, QM3) see fuzzed, authentic input.
///
/// Input layout: octet 0 picks the session (kind: idle with an R-U-THERE outstanding, our Quick Mode waiting for
/// QM2, the peer's Quick Mode waiting for QM3; receiver: initiator or responder), octet 1 the message (bits 0-1:
/// hashed INFORMATIONAL with a fresh message ID; hashed Quick Mode for the session's step; unhashed plaintext
/// as is; Main Mode on the established SA. Bit 2: the unhashed plaintext goes as INFORMATIONAL rather than Quick
/// Mode), octet 2 the type of the first payload after HASH (or of the chain when unhashed); the rest is the chain.
enum FuzzIKEv1Encrypted {
    static let west = IPAddress("192.0.2.1")!
    static let east = IPAddress("192.0.2.2")!
    static let freshMessageID: UInt32 = 0x5EED_0001
    static let outstandingProbe: UInt32 = 0x0000_1000

    enum Kind: Sendable { case idle, awaitingQM2(UInt32), awaitingQM3(UInt32) }

    struct Session: Sendable {
        var endpoint: IKEv1Endpoint
        var id: IKEv1SAID
        var kind: Kind
        /// The pair as it was, with what the receiver sent last still on the wire (for `seeds`).
        var pair: Pair
        var receiverIsWest: Bool
    }

    static func connection(west isWest: Bool) -> IKEv1Endpoint.ConnectionConfiguration {
        let local = isWest ? west : east
        let remote = isWest ? east : west
        return IKEv1Endpoint.ConnectionConfiguration(.init(
            name: "SITE/10", localAddress: local, localIdentity: .address(local),
            peers: [.init(address: remote, identity: .address(remote), preSharedKey: SecureBytes(Array("fuzz-secret".utf8)))],
            ikeProposals: [try! IKEProposal.parse("aes256-sha256-modp2048")], espProposals: [try! ESPProposal.parse("aes256-sha256")],
            pfsGroup: nil,
            localTrafficSelectors: [try! IPPrefix.parse(isWest ? "10.1.0.0/24" : "10.2.0.0/24")],
            remoteTrafficSelectors: [try! IPPrefix.parse(isWest ? "10.2.0.0/24" : "10.1.0.0/24")], ikeLifetime: .seconds(28_800)))
    }

    /// Two endpoints and the datagrams between them.
    struct Pair: Sendable {
        var west = IKEv1Endpoint(configuration: .init(connections: [connection(west: true)]))
        var east = IKEv1Endpoint(configuration: .init(connections: [connection(west: false)]))
        var random = SplitMix64(seed: 7)
        var wire: [(bytes: [UInt8], from: Endpoint, to: Endpoint)] = []

        mutating func handle(westSide: Bool, _ event: IKEv1Event) {
            let actions = westSide ? west.handle(event, now: .zero, random: &random) : east.handle(event, now: .zero, random: &random)
            for case .send(let bytes, let from, let to) in actions { wire.append((bytes, from, to)) }
        }

        /// Delivers until quiet, or only `count` datagrams.
        mutating func deliver(_ count: Int = 50) {
            var delivered = 0
            while !wire.isEmpty, delivered < count {
                let datagram = wire.removeFirst()
                handle(westSide: datagram.to.address == FuzzIKEv1Encrypted.west, .datagramReceived(bytes: datagram.bytes, from: datagram.from, to: datagram.to))
                delivered += 1
            }
        }
    }

    static let sessions: [Session] = {
        var established = Pair()
        established.handle(westSide: true, .initiate(connection: "SITE/10", peer: east))
        established.deliver()
        guard established.west.childSAs.count == 1, established.east.childSAs.count == 1 else {
            preconditionFailure("the fuzz harness's ISAKMP SA and IPsec SA did not come up")
        }
        var sessions: [Session] = []
        for receiverIsWest in [true, false] {
            // Idle, with an R-U-THERE of ours outstanding.
            var idle = established
            let idleID = (receiverIsWest ? idle.west : idle.east).ikeSAs[0].id
            idle.handle(westSide: receiverIsWest, .sendDPDProbe(idleID, sequence: outstandingProbe))
            sessions.append(Session(endpoint: receiverIsWest ? idle.west : idle.east, id: idleID, kind: .idle, pair: idle, receiverIsWest: receiverIsWest))
            // Our Quick Mode (a rekey) waits for QM2.
            var ours = established
            let oursChild = (receiverIsWest ? ours.west : ours.east).childSAs[0].id
            ours.handle(westSide: receiverIsWest, .rekeyChildSA(oursChild))
            sessions.append(session(ours, receiverIsWest: receiverIsWest, weInitiated: true))
            // The peer's Quick Mode: its QM1 delivered, our QM2 sent, QM3 awaited.
            var theirs = established
            let theirsChild = (receiverIsWest ? theirs.east : theirs.west).childSAs[0].id
            theirs.handle(westSide: !receiverIsWest, .rekeyChildSA(theirsChild))
            theirs.deliver(1)
            sessions.append(session(theirs, receiverIsWest: receiverIsWest, weInitiated: false))
        }
        return sessions
    }()

    /// The session whose Quick Mode is ours waiting for QM2 (`weInitiated`), or the peer's waiting for QM3.
    static func session(_ pair: Pair, receiverIsWest: Bool, weInitiated: Bool) -> Session {
        let endpoint = receiverIsWest ? pair.west : pair.east
        guard let sa = endpoint.sas.values.first(where: \.isEstablished),
              let quickMode = sa.quickModes.values.first(where: { $0.weInitiated == weInitiated }) else {
            preconditionFailure("the fuzz harness's Quick Mode is not at \(weInitiated ? "QM2" : "QM3")")
        }
        return Session(endpoint: endpoint, id: sa.id,
                       kind: weInitiated ? .awaitingQM2(quickMode.messageID) : .awaitingQM3(quickMode.messageID),
                       pair: pair, receiverIsWest: receiverIsWest)
    }

    static func run(_ bytes: [UInt8]) -> [IKEv1Action] {
        var cursor = FuzzCursor(bytes)
        let select = cursor.byte()
        let control = cursor.byte()
        let firstPayload = cursor.byte()
        let rest = cursor.remaining
        let session = sessions[Int(select) % sessions.count]
        guard let sa = session.endpoint.sas[session.id], let keys = sa.keys else {
            preconditionFailure("the fuzz harness's session lost its ISAKMP SA")
        }
        let exchange: ISAKMP.ExchangeType
        let messageID: UInt32
        let plaintext: [UInt8]
        var iv: [UInt8]
        var headerFirst = ISAKMP.PayloadType.hash.rawValue
        switch control & 0b11 {
        case 0:
            exchange = .informational
            messageID = freshMessageID
            plaintext = hashed(rest, firstPayload, keys.prf(keys.skeyidA, IKEv1Endpoint.messageIDBytes(messageID) + covered(rest, firstPayload)))
            iv = keys.exchangeIV(messageID: messageID)
        case 1:
            exchange = .quickMode
            switch session.kind {
            case .idle:
                // QM1: HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [| KE] [| IDci | IDcr]).
                messageID = freshMessageID
                plaintext = hashed(rest, firstPayload, keys.prf(keys.skeyidA, IKEv1Endpoint.messageIDBytes(messageID) + covered(rest, firstPayload)))
                iv = keys.exchangeIV(messageID: messageID)
            case .awaitingQM2(let id):
                // QM2: HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [| KE] [| IDci | IDcr]).
                messageID = id
                guard case .initiatorSentQM1(let sent)? = sa.quickModes[id] else { preconditionFailure("the harness's QM1 is gone") }
                plaintext = hashed(rest, firstPayload, keys.prf(keys.skeyidA, IKEv1Endpoint.messageIDBytes(id) + sent.localNonce + covered(rest, firstPayload)))
                iv = sent.iv
            case .awaitingQM3(let id):
                // QM3: HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b); anything after it rides along.
                messageID = id
                guard case .responderSentQM2(let sent)? = sa.quickModes[id] else { preconditionFailure("the harness's QM2 is gone") }
                plaintext = hashed(rest, firstPayload, keys.prf(keys.skeyidA, [0] + IKEv1Endpoint.messageIDBytes(id) + sent.agreed.initiatorNonce + sent.agreed.responderNonce))
                iv = sent.iv
            }
        case 2:
            exchange = control & 0b100 != 0 ? .informational : .quickMode
            switch session.kind {
            case .idle: messageID = freshMessageID
            case .awaitingQM2(let id), .awaitingQM3(let id): messageID = exchange == .quickMode ? id : freshMessageID
            }
            plaintext = rest
            headerFirst = firstPayload
            iv = sa.quickModes[messageID]?.iv ?? keys.exchangeIV(messageID: messageID)
        default:
            exchange = .identityProtection
            messageID = 0
            plaintext = rest
            headerFirst = firstPayload
            iv = keys.phase1IV
        }
        if iv.isEmpty { iv = [UInt8](repeating: 0, count: Phase1Keys.blockLength) }
        guard let (ciphertext, _) = try? keys.encrypt(plaintext.isEmpty ? [0] : plaintext, iv: iv) else {
            preconditionFailure("AES-CBC with the harness's key failed")
        }
        let header = ISAKMP.Header(initiatorCookie: sa.initiatorCookie, responderCookie: sa.responderCookie, nextPayload: headerFirst,
                                   exchangeType: exchange, flags: .encryption, messageID: messageID)
        var writer = WireWriter(capacity: ISAKMP.headerLength + ciphertext.count)
        header.encode(into: &writer, length: ISAKMP.headerLength + ciphertext.count)
        writer.write(bytes: ciphertext)
        var endpoint = session.endpoint
        var random = SplitMix64(seed: UInt64(select) << 8 | UInt64(control))
        let actions = endpoint.handle(.datagramReceived(bytes: writer.bytes, from: sa.remote, to: sa.local), now: .seconds(10), random: &random)
        _ = endpoint.ikeSAs
        _ = endpoint.childSAs
        return actions
    }

    /// The peer's own encrypted messages to each session's receiver, decrypted with the receiver's keys and turned
    /// into inputs: its R-U-THERE, DELETEs and QM1 to an idle receiver, its R-U-THERE-ACK, QM2 and QM3 as answers.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        var seeds: [(name: String, bytes: [UInt8])] = []
        for (index, session) in sessions.enumerated() {
            guard let sa = session.endpoint.sas[session.id], let keys = sa.keys else { continue }
            let peerSide = !session.receiverIsWest
            var messages: [(String, [UInt8])] = []
            // Whatever the receiver sent last (its R-U-THERE, QM1 or QM2), answered by the peer.
            var answering = session.pair
            answering.wire = answering.wire.filter { ($0.to.address == FuzzIKEv1Encrypted.west) != session.receiverIsWest }
            if !answering.wire.isEmpty {
                let datagram = answering.wire.removeFirst()
                let before = answering.wire.count
                answering.handle(westSide: peerSide, .datagramReceived(bytes: datagram.bytes, from: datagram.from, to: datagram.to))
                for (number, reply) in answering.wire.dropFirst(before).enumerated() { messages.append(("answer\(number)", reply.bytes)) }
            }
            if case .idle = session.kind {
                let peer = peerSide ? session.pair.west : session.pair.east
                guard let peerSA = peer.ikeSAs.first?.id, let peerChild = peer.childSAs.first?.id else { continue }
                for (name, event) in [("r-u-there", IKEv1Event.sendDPDProbe(peerSA, sequence: 7)), ("quick-mode-1", .rekeyChildSA(peerChild)),
                                      ("delete-child", .deleteChildSA(peerChild)), ("delete-isakmp", .deleteIKESA(peerSA))] {
                    var pair = session.pair
                    pair.wire = []
                    pair.handle(westSide: peerSide, event)
                    for (number, sent) in pair.wire.enumerated() { messages.append(("\(name)\(number)", sent.bytes)) }
                }
            }
            for (name, datagram) in messages {
                guard let (header, body) = try? ISAKMP.Message.decodeHeader(datagram), header.flags.contains(.encryption) else { continue }
                let iv = sa.quickModes[header.messageID]?.iv ?? keys.exchangeIV(messageID: header.messageID)
                guard let (plaintext, _) = try? keys.decrypt(body, iv: iv),
                      let payloads = try? ISAKMP.decodePayloads(firstPayload: header.nextPayload, plaintext, allowPadding: true),
                      case .hash? = payloads.first else { continue }
                let rest = ISAKMP.encodePayloads(Array(payloads.dropFirst()))
                let control: UInt8 = header.exchangeType == ISAKMP.ExchangeType.quickMode.rawValue ? 1 : 0
                seeds.append(("session\(index)-\(name)", [UInt8(index), control, rest.firstPayload] + rest.bytes))
            }
        }
        return seeds
    }

    /// The bytes HASH(1)/HASH(2) cover, as the receiver computes them: the chain after HASH, decoded and encoded
    /// again (the raw bytes when they do not decode; the receiver then drops the message anyway).
    static func covered(_ rest: [UInt8], _ first: UInt8) -> [UInt8] {
        guard let payloads = try? ISAKMP.decodePayloads(firstPayload: first, rest, allowPadding: true) else { return rest }
        return ISAKMP.encodePayloads(payloads).bytes
    }

    /// HASH payload (RFC 2408 §3.11) chained to `rest`.
    static func hashed(_ rest: [UInt8], _ first: UInt8, _ hash: [UInt8]) -> [UInt8] {
        var writer = WireWriter(capacity: 4 + hash.count + rest.count)
        writer.write(first)
        writer.write(UInt8(0))
        writer.write(UInt16(4 + hash.count))
        writer.write(bytes: hash)
        writer.write(bytes: rest)
        return writer.bytes
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    _ = FuzzIKEv1Encrypted.run(fuzzBytes(data, size))
    return 0
}

#if !VIGIL_LIBFUZZER
@main enum Replay {
    static func main() {
        replayFiles(Array(CommandLine.arguments.dropFirst()), seeds: FuzzIKEv1Encrypted.seeds) { bytes in
            FuzzIKEv1Encrypted.run(bytes).compactMap { if case .log(_, let text) = $0 { "  " + text } else { nil } }.joined(separator: "\n")
        }
    }
}
#endif
