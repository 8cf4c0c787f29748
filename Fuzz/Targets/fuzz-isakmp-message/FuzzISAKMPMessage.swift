import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilFuzzSupport
import VigilLiveness
import VigilIKEv1
import VigilWire

/// ISAKMP message and payload decoding (RFC 2408 §3, RFC 2407 §4.6, RFC 3947): header, payload chain, SA /
/// proposal / transform / attribute bodies, an encode/decode round trip, the body of an encrypted message read as
/// the plaintext chain it would decrypt to, and the datagram given to a responder endpoint as an unauthenticated
/// MM1 (proposal matching included).
enum FuzzISAKMPMessage {
    static let west = IPAddress("192.0.2.1")!
    static let east = IPAddress("192.0.2.2")!

    /// A responder for one peer with strongSwan's default-like Main Mode proposal, so captured MM1s match.
    static let responder = IKEv1Endpoint(configuration: .init(connections: [
        IKEv1Endpoint.ConnectionConfiguration(.init(
            name: "WEST/10", localAddress: east, localIdentity: .address(east),
            peers: [.init(address: west, identity: .address(west), preSharedKey: SecureBytes(Array("fuzz-secret".utf8)))],
            ikeProposals: [try! IKEProposal.parse("aes256-sha256-modp2048"), try! IKEProposal.parse("aes128-sha1-modp2048")],
            espProposals: [try! ESPProposal.parse("aes256-sha256")], pfsGroup: nil,
            localTrafficSelectors: [try! IPPrefix.parse("10.2.0.0/24")], remoteTrafficSelectors: [try! IPPrefix.parse("10.1.0.0/24")],
            ikeLifetime: .seconds(28_800)))
    ]))

    static func run(_ bytes: [UInt8]) {
        if let (header, body) = try? ISAKMP.Message.decodeHeader(bytes) {
            if let payloads = try? ISAKMP.decodePayloads(firstPayload: header.nextPayload, body, allowPadding: true) {
                inspect(payloads)
            }
        }
        if let message = try? ISAKMP.Message.decode(bytes) {
            inspect(message.payloads)
            // What the encoder makes of a decoded message must decode as the same message.
            guard let again = try? ISAKMP.Message.decode(message.encode()) else {
                preconditionFailure("a decoded message does not decode after encode()")
            }
            guard again.payloads == message.payloads else { preconditionFailure("payloads changed in a round trip") }
        }
        var endpoint = responder
        var random = SplitMix64(seed: 1)
        _ = endpoint.handle(.datagramReceived(bytes: bytes, from: Endpoint(west, 500), to: Endpoint(east, 500)), now: .seconds(100), random: &random)
    }

    /// Touches what the engine reads of each payload: names, bodies (re-encoded), attribute values.
    static func inspect(_ payloads: [ISAKMP.Payload]) {
        for payload in payloads {
            _ = payload.name
            _ = payload.body
            if case .securityAssociation(let sa) = payload {
                for proposal in sa.proposals {
                    for transform in proposal.transforms {
                        for attribute in transform.attributes { _ = attribute.numericValue }
                    }
                }
            }
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzISAKMPMessage.run(fuzzBytes(data, size))
    return 0
}

#if !VIGIL_LIBFUZZER
@main enum Replay {
    static func main() { replayFiles(Array(CommandLine.arguments.dropFirst())) { FuzzISAKMPMessage.run($0); return "" } }
}
#endif
