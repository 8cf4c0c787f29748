import Testing
import VigilAlgorithms

@Suite struct ProposalTests {
    @Test func parsesStrongSwanIKENotation() throws {
        let classic = try IKEProposal.parse("aes256-sha256-modp2048")
        #expect(classic.encryption == [.aes256cbc])
        #expect(classic.integrity == [.hmacSHA2_256_128])
        #expect(classic.prf == [.hmacSHA2_256])
        #expect(classic.dhGroups == [.modp2048])

        let aead = try IKEProposal.parse("aes128gcm16-prfsha256-x25519")
        #expect(aead.encryption == [.aes128gcm16] && aead.integrity.isEmpty && aead.prf == [.hmacSHA2_256])
        #expect(aead.dhGroups == [.curve25519])
        #expect(try IKEProposal.parse("aes256-sha384-ecp384").prf == [.hmacSHA2_384])
    }

    @Test func parsesESPNotationWithPFS() throws {
        #expect(try ESPProposal.parse("aes256gcm16") == ESPProposal(encryption: [.aes256gcm16], integrity: [], dhGroups: []))
        let pfs = try ESPProposal.parse("aes128-sha1-modp2048")
        #expect(pfs.integrity == [.hmacSHA1_96] && pfs.dhGroups == [.modp2048])
    }

    @Test func refusesWithTheOffendingToken() {
        do {
            _ = try IKEProposal.parse("aes256-sha257-modp2048")
            Issue.record("accepted sha257")
        } catch {
            #expect(error.description.contains("'sha257'"))
            #expect(error.description.contains("sha256"))
        }
        #expect(throws: ProposalError.integrityWithAEAD(proposal: "aes256gcm16-sha256")) {
            try ESPProposal.parse("aes256gcm16-sha256")
        }
        #expect(throws: ProposalError.missing(proposal: "aes256-sha256", what: "a Diffie-Hellman group")) {
            try IKEProposal.parse("aes256-sha256")
        }
    }
}
