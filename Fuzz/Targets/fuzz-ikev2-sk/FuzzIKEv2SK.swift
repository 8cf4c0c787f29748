import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilFuzzSupport
import VigilLiveness
@testable import VigilIKEv2
import VigilWire

/// The IKEv2 SK payload path (RFC 7296 §3.14) past the integrity check: two endpoints bring an IKE SA up in
/// lockstep once, with a fixed seed; each input is then taken as the plaintext inner payload chain of a message
/// from the peer, protected with the SA's keys exactly as the engine protects (AES-GCM, or AES-CBC + HMAC), and
/// delivered to a copy of the established endpoint through `handle(.datagramReceived)`. So the decrypted payload
/// decoder and every exchange handler behind it (INFORMATIONAL, CREATE_CHILD_SA, IKE_AUTH on an established SA,
/// responses to an outstanding request) see fuzzed, authentic input.
///
/// Input layout: octet 0 picks the session (bits 0-3, see `sessions`: suite GCM or CBC, receiver the original
/// initiator or the responder, and what the receiver waits for: nothing, the response to its INFORMATIONAL
/// liveness check, to its CREATE_CHILD_SA Child SA rekey, or to its IKE SA rekey), octet 1 the exchange and flags
/// (bits 0-1: INFORMATIONAL, CREATE_CHILD_SA, IKE_AUTH, IKE_SA_INIT; bit 2: Response flag as the session expects,
/// or flipped; bit 3: message ID as expected, or one ahead), octet 2 the first inner payload type; the rest is the
/// inner chain. `--seeds DIR` writes, as inputs, the inner chains of the peer's own requests and responses.
enum FuzzIKEv2SK {
    static let west = IPAddress("192.0.2.1")!
    static let east = IPAddress("192.0.2.2")!

    enum Outstanding: Sendable, CaseIterable { case nothing, livenessCheck, childRekey, ikeRekey }

    /// An established endpoint, its peer, the SA the input is for, and the request the receiver has outstanding.
    struct Session: Sendable {
        var receiver: IKEv2Endpoint
        var peer: IKEv2Endpoint
        var id: IKESAID
        var outstanding: Outstanding
        var request: [UInt8]?
        var local: Endpoint
        var remote: Endpoint
        var awaitsResponse: Bool { outstanding != .nothing }
    }

    /// 16 sessions, index = outstanding * 4 + (receiver is the initiator) * 2 + (suite is CBC).
    static let sessions: [Session] = {
        var sessions: [Session] = []
        for outstanding in Outstanding.allCases {
            for initiatorReceives in [false, true] {
                for (ike, esp) in [("aes128gcm16-prfsha256-x25519", "aes128gcm16"), ("aes256-sha256-x25519", "aes256-sha256")] {
                    sessions.append(establish(ike: ike, esp: esp, initiatorReceives: initiatorReceives, outstanding: outstanding))
                }
            }
        }
        return sessions
    }()

    static func connection(west isWest: Bool, ike: String, esp: String) -> IKEv2Endpoint.ConnectionConfiguration {
        IKEv2Endpoint.ConnectionConfiguration(
            name: isWest ? "EAST/10" : "WEST/10", localAddress: isWest ? west : east, localIdentity: .fqdn(isWest ? "west" : "east"),
            peers: [.init(address: isWest ? east : west, identity: .fqdn(isWest ? "east" : "west"),
                          preSharedKey: SecureBytes(Array("fuzz-secret".utf8)))],
            ikeProposals: [try! IKEProposal.parse(ike)], espProposals: [try! ESPProposal.parse(esp)], pfsGroup: .curve25519,
            localTrafficSelectors: [try! IPPrefix.parse(isWest ? "10.1.0.0/24" : "10.2.0.0/24")],
            remoteTrafficSelectors: [try! IPPrefix.parse(isWest ? "10.2.0.0/24" : "10.1.0.0/16")], ikeLifetime: .seconds(14_400))
    }

    static func firstSend(_ actions: [IKEv2Action]) -> (bytes: [UInt8], from: Endpoint, to: Endpoint)? {
        for case .send(let bytes, let from, let to) in actions { return (bytes, from, to) }
        return nil
    }

    /// IKE_SA_INIT and IKE_AUTH between west (initiator) and east, datagram by datagram; then the receiver's
    /// own request, if the session has one outstanding.
    static func establish(ike: String, esp: String, initiatorReceives: Bool, outstanding: Outstanding) -> Session {
        var westEndpoint = IKEv2Endpoint(configuration: .init(connections: [connection(west: true, ike: ike, esp: esp)]))
        var eastEndpoint = IKEv2Endpoint(configuration: .init(connections: [connection(west: false, ike: ike, esp: esp)]))
        var random = SplitMix64(seed: 7)
        var pending = westEndpoint.handle(.initiate(connection: "EAST/10", peer: east), now: .zero, random: &random)
        var steps = 0
        while steps < 20, let (bytes, from, to) = firstSend(pending) {
            steps += 1
            let event = IKEv2Event.datagramReceived(bytes: bytes, from: from, to: to)
            pending = to.address == east
                ? eastEndpoint.handle(event, now: .zero, random: &random)
                : westEndpoint.handle(event, now: .zero, random: &random)
        }
        var receiver = initiatorReceives ? westEndpoint : eastEndpoint
        let peer = initiatorReceives ? eastEndpoint : westEndpoint
        guard let sa = receiver.sas.values.first, sa.isEstablished, let child = receiver.childSAs.first else {
            preconditionFailure("the fuzz harness's IKE SA did not come up (\(ike), \(esp))")
        }
        var request: [UInt8]?
        let event: IKEv2Event? = switch outstanding {
        case .nothing: nil
        case .livenessCheck: .sendLivenessCheck(sa.id)
        case .childRekey: .rekeyChildSA(child.id)
        case .ikeRekey: .rekeyIKESA(sa.id)
        }
        if let event {
            request = firstSend(receiver.handle(event, now: .zero, random: &random))?.bytes
            guard request != nil, receiver.sas[sa.id]?.outstanding != nil else {
                preconditionFailure("the fuzz harness's \(outstanding) request is not outstanding")
            }
        }
        return Session(receiver: receiver, peer: peer, id: sa.id, outstanding: outstanding, request: request, local: sa.local, remote: sa.remote)
    }

    static func run(_ bytes: [UInt8]) -> [IKEv2Action] {
        var cursor = FuzzCursor(bytes)
        let select = cursor.byte()
        let control = cursor.byte()
        let firstPayload = cursor.byte()
        let inner = cursor.remaining
        let session = sessions[Int(select & 0b1111)]
        guard let sa = session.receiver.sas[session.id], let protection = sa.protection else {
            preconditionFailure("the fuzz harness's session lost its SA")
        }
        let exchanges: [IKEv2.ExchangeType] = [.informational, .createChildSA, .ikeAuth, .ikeSAInit]
        let exchange = exchanges[Int(control & 0b11)]
        var isResponse = session.awaitsResponse
        if control & 0b100 != 0 { isResponse.toggle() }
        var messageID = isResponse ? (sa.outstanding?.messageID ?? sa.nextRequestID) : sa.nextPeerRequestID
        if control & 0b1000 != 0 { messageID &+= 1 }
        // The peer's header: the peer is the original initiator exactly when the receiver is not.
        var flags: IKEv2.Header.Flags = sa.isOriginalInitiator ? [] : .initiator
        if isResponse { flags.insert(.response) }
        let header = IKEv2.Header(initiatorSPI: sa.initiatorSPI, responderSPI: sa.responderSPI, exchangeType: exchange,
                                  flags: flags, messageID: messageID)
        let datagram = seal(inner, firstPayload: firstPayload, header: header, with: protection.inbound)
        var endpoint = session.receiver
        var random = SplitMix64(seed: UInt64(select) << 8 | UInt64(control))
        let actions = endpoint.handle(.datagramReceived(bytes: datagram, from: session.remote, to: session.local), now: .seconds(10), random: &random)
        // The views the daemon reads after every event.
        _ = endpoint.ikeSAs
        _ = endpoint.childSAs
        return actions
    }

    /// The peer's own messages to each session's receiver, opened with the receiver's keys: its requests to an
    /// idle receiver, its response to the receiver's outstanding request.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        var seeds: [(name: String, bytes: [UInt8])] = []
        for (index, session) in sessions.enumerated() {
            var random = SplitMix64(seed: 99)
            var messages: [(String, [UInt8])] = []
            if let request = session.request {
                var peer = session.peer
                let answer = peer.handle(.datagramReceived(bytes: request, from: session.local, to: session.remote), now: .seconds(1), random: &random)
                if let response = firstSend(answer) { messages.append(("response-\(session.outstanding)", response.bytes)) }
            } else {
                guard let peerSA = session.peer.ikeSAs.first?.id, let peerChild = session.peer.childSAs.first?.id else { continue }
                let events: [(String, IKEv2Event)] = [
                    ("liveness-check", .sendLivenessCheck(peerSA)), ("child-rekey", .rekeyChildSA(peerChild)),
                    ("ike-rekey", .rekeyIKESA(peerSA)), ("delete-child", .deleteChildSA(peerChild)), ("delete-ike", .deleteIKESA(peerSA)),
                ]
                for (name, event) in events {
                    var peer = session.peer
                    if let request = firstSend(peer.handle(event, now: .seconds(1), random: &random)) { messages.append((name, request.bytes)) }
                }
            }
            guard let protection = session.receiver.sas[session.id]?.protection else { continue }
            for (name, datagram) in messages {
                guard let message = try? IKEv2.Message.parse(datagram), case .encrypted(let first, let body)? = message.payloads.last,
                      let inner = try? protection.open(datagram: datagram, firstPayload: first, body: body) else { continue }
                let exchanges: [IKEv2.ExchangeType] = [.informational, .createChildSA, .ikeAuth, .ikeSAInit]
                var control = UInt8(exchanges.firstIndex(of: message.header.exchangeType) ?? 0)
                if message.header.isResponse != session.awaitsResponse { control |= 0b100 }
                let chain = IKEv2.Payloads.write(inner)
                seeds.append(("session\(index)-\(name)", [UInt8(index), control, chain.first] + chain.bytes))
            }
        }
        return seeds
    }

    /// The peer's side of `MessageProtection.seal`, over raw inner bytes: header, SK generic header, IV,
    /// ciphertext of (inner | padding | Pad Length), ICV.
    static func seal(_ inner: [UInt8], firstPayload: UInt8, header: IKEv2.Header, with cipher: MessageProtection.Cipher) -> [UInt8] {
        switch cipher {
        case .cbc(let cbc, let integrity):
            let block = 16
            let padLength = (block - (inner.count + 1) % block) % block
            let plaintext = inner + [UInt8](repeating: 0, count: padLength) + [UInt8(padLength)]
            let iv = [UInt8](repeating: 0x5A, count: block)
            guard let ciphertext = try? cbc.encrypt(plaintext, iv: iv) else { preconditionFailure("AES-CBC failed") }
            let bodyLength = iv.count + ciphertext.count + integrity.icvLength
            let prefix = IKEv2.Message.encryptedPrefix(header: header, firstInnerPayload: firstPayload, bodyLength: bodyLength)
            let protected = prefix + iv + ciphertext
            return protected + integrity.mac(protected)
        case .gcm(let gcm):
            let plaintext = inner + [0]
            let iv = [UInt8](repeating: 0x5A, count: GCMContext.ivLength)
            let bodyLength = iv.count + plaintext.count + GCMContext.icvLength
            let prefix = IKEv2.Message.encryptedPrefix(header: header, firstInnerPayload: firstPayload, bodyLength: bodyLength)
            guard let sealed = try? gcm.seal(iv: iv, aad: prefix, plaintext: plaintext) else { preconditionFailure("AES-GCM failed") }
            return prefix + iv + sealed
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    _ = FuzzIKEv2SK.run(fuzzBytes(data, size))
    return 0
}

#if !VIGIL_LIBFUZZER
@main enum Replay {
    static func main() {
        replayFiles(Array(CommandLine.arguments.dropFirst()), seeds: FuzzIKEv2SK.seeds) { bytes in
            FuzzIKEv2SK.run(bytes).compactMap { if case .log(_, let text) = $0 { "  " + text } else { nil } }.joined(separator: "\n")
        }
    }
}
#endif
