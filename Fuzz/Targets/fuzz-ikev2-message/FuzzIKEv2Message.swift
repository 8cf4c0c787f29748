import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilFuzzSupport
import VigilLiveness
import VigilIKEv2
import VigilWire

/// IKEv2 message parsing from the wire: header and payload chain (RFC 7296 §3), the plaintext inside an SK payload
/// as if it were already decrypted, a parse/serialize round trip, and the same bytes given to a responder
/// endpoint as an unauthenticated datagram on UDP 500 (IKE_SA_INIT handling, unknown-SPI and malformed paths).
enum FuzzIKEv2Message {
    static let west = IPAddress("192.0.2.1")!
    static let east = IPAddress("192.0.2.2")!

    /// A responder for one peer. Only X25519 is offered, so a datagram whose proposal matches costs one cheap
    /// exchange; strongSwan's captured MODP-2048 proposal gets INVALID_KE_PAYLOAD, never 3 ms of MODP.
    static let responder = IKEv2Endpoint(configuration: .init(connections: [
        IKEv2Endpoint.ConnectionConfiguration(
            name: "WEST/10", localAddress: east, localIdentity: .fqdn("east"),
            peers: [.init(address: west, identity: .fqdn("west"), preSharedKey: SecureBytes(Array("fuzz-secret".utf8)))],
            ikeProposals: [try! IKEProposal.parse("aes128gcm16-prfsha256-x25519"), try! IKEProposal.parse("aes256-sha256-x25519")],
            espProposals: [try! ESPProposal.parse("aes128gcm16")],
            localTrafficSelectors: [try! IPPrefix.parse("10.2.0.0/24")], remoteTrafficSelectors: [try! IPPrefix.parse("10.1.0.0/24")],
            ikeLifetime: .seconds(14_400))
    ]))

    static func run(_ bytes: [UInt8]) {
        if let message = try? IKEv2.Message.parse(bytes) {
            _ = message.summary
            // What the writer makes of a parsed message must read back as the same message.
            let written = message.serialize()
            guard let again = try? IKEv2.Message.parse(written) else {
                preconditionFailure("a parsed message does not parse after serialize()")
            }
            guard again.payloads == message.payloads else { preconditionFailure("payloads changed in a round trip") }
            for case .encrypted(let first, let body) in message.payloads {
                // The SK body as a plaintext chain: the decoder the engine runs after decryption.
                _ = try? IKEv2.Payloads.read(body, first: first)
                _ = IKEv2.Payloads.firstUnsupportedCriticalPayload(body, first: first)
            }
        }
        var endpoint = responder
        var random = SplitMix64(seed: 1)
        _ = endpoint.handle(.datagramReceived(bytes: bytes, from: Endpoint(west, 500), to: Endpoint(east, 500)), now: .seconds(100), random: &random)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzIKEv2Message.run(fuzzBytes(data, size))
    return 0
}

#if !VIGIL_LIBFUZZER
@main enum Replay {
    static func main() { replayFiles(Array(CommandLine.arguments.dropFirst())) { FuzzIKEv2Message.run($0); return "" } }
}
#endif
