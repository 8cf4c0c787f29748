import Testing
import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE

/// The one Child SA both engines hand to the daemon.
@Suite struct ChildSATests {
    static func child() throws -> NegotiatedChildSA<UInt64> {
        NegotiatedChildSA(
            ikeSA: 0x1122_3344_5566_7788, connection: "SITE-A/10", inboundSPI: 0xC0, outboundSPI: 0xC1,
            algorithms: ChildAlgorithms(encryption: .aes256cbc, integrity: .hmacSHA2_256_128, dhGroup: .curve25519),
            localTrafficSelectors: [try IPPrefix.parse("10.1.0.0/16")], remoteTrafficSelectors: [try IPPrefix.parse("10.2.0.0/16")],
            localEndpoint: Endpoint(try #require(IPAddress("192.0.2.1")), 4500),
            remoteEndpoint: Endpoint(try #require(IPAddress("192.0.2.2")), 4500), udpEncapsulated: true, establishedAt: .seconds(3),
            keys: ChildSAKeys(encryptionIn: SecureBytes([1]), encryptionOut: SecureBytes([2]),
                              integrityIn: SecureBytes([3]), integrityOut: SecureBytes([4])),
            negotiatedAsResponder: true, outboundAwaitsOldDeletion: true)
    }

    @Test func itsIdIsOurInboundSPIAndItsAlgorithmsReadAsAProposal() throws {
        let child = try Self.child()
        #expect(child.id == ChildSAID(0xC0))
        #expect(child.id.description == "000000c0")
        #expect(child.algorithms.description == "aes256-sha256-x25519")
        #expect(ChildAlgorithms(encryption: .aes256cbc, integrity: nil, dhGroup: nil).description == "aes256")
    }

    @Test func namingItsIKESAAnewKeepsEverythingElse() throws {
        let child = try Self.child()
        let renamed = child.withIKESA { "v2/\(String($0, radix: 16))" }
        #expect(renamed.ikeSA == "v2/1122334455667788")
        #expect(renamed.withIKESA { _ in child.ikeSA } == child)
    }
}
