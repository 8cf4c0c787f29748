import Testing
import VigilAddressing
@testable import VigilIKEv1
import VigilWire

@Suite struct ProposalMappingTests {
    @Test func lifeDurationFollowsItsLifeType() throws {
        let transform = ISAKMP.Transform(number: 1, transformID: ISAKMP.Phase2Attribute.espAES, attributes: [
            .basic(ISAKMP.Phase2Attribute.lifeType, 2),                   // kilobytes
            .number(ISAKMP.Phase2Attribute.lifeDuration, 4_608_000),
            .basic(ISAKMP.Phase2Attribute.lifeType, 1),                   // seconds
            .number(ISAKMP.Phase2Attribute.lifeDuration, 3_600),
            .basic(ISAKMP.Phase2Attribute.encapsulationMode, ISAKMP.Phase2Attribute.tunnel),
            .basic(ISAKMP.Phase2Attribute.authenticationAlgorithm, ISAKMP.Phase2Attribute.hmacSHA2_256),
            .basic(ISAKMP.Phase2Attribute.keyLength, 256),
        ])
        let suite = try #require(ProposalMapping.phase2Suite(transform))
        #expect(suite.lifetimeSeconds == 3_600)
        #expect(suite.encryption == .aes256cbc && suite.integrity == .hmacSHA2_256_128 && !suite.udpEncapsulated)
    }

    @Test func proxyIdentitiesRoundTrip() throws {
        for text in ["10.1.0.0/24", "10.1.2.3/32", "2001:db8::/48", "0.0.0.0/0"] {
            let prefix = try IPPrefix.parse(text)
            #expect(ProposalMapping.prefix(ProposalMapping.proxyIdentity(prefix)) == prefix, "\(text)")
        }
    }
}
