import Foundation
import Testing
import VigilAddressing
import VigilIKE
import VigilIKEv1
import VigilLab

/// Interop cases 2, 3, 4 (DELETE) and 5 against strongSwan 5.9.8.
@Suite(.serialized) struct StrongSwanDPDAndDeleteTests {
    @Test func strongSwanProbesVigilAndTheAcksKeepTheSA() throws {
        var options = InteropLab.Options()
        options.dpdDelay = "1s"
        options.swanExtra = "dpd_timeout = 3s"
        let lab = try InteropLab(options)
        defer { lab.close() }
        try lab.establish()
        // Three R-U-THEREs answered, and strongSwan has parsed the ACKs.
        lab.driver.run(seconds: 15) { _ in
            lab.driver.endpoint.counters[.dpdProbesAnswered, default: 0] >= 3
                && lab.swan.log.components(separatedBy: "N(DPD_ACK)").count > 3
        }
        let answered = lab.driver.endpoint.counters[.dpdProbesAnswered, default: 0]
        #expect(answered >= 3, "Vigil answered \(answered) R-U-THERE; strongSwan:\n\(lab.swan.log)")
        // The sequence numbers Vigil echoed are strongSwan's: consecutive, and strongSwan accepted every ACK.
        let sequences = lab.driver.log.split(separator: "\n").compactMap { line -> UInt32? in
            guard line.hasPrefix("received R-U-THERE seq ") else { return nil }
            return UInt32(line.dropFirst("received R-U-THERE seq ".count).prefix { $0.isNumber })
        }
        #expect(sequences.count >= 3)
        #expect(zip(sequences, sequences.dropFirst()).allSatisfy { $1 == $0 &+ 1 }, "\(sequences)")
        #expect(lab.swan.log.contains("N(DPD_ACK)"), "strongSwan never parsed an ACK:\n\(lab.swan.log)")
        #expect(!lab.swan.log.contains("invalid DPD sequence"), "\(lab.swan.log)")
        let listing = try lab.swanSAs()
        #expect(listing.contains("state=ESTABLISHED") && listing.contains("state=INSTALLED"), "\(listing)")
        #expect(lab.driver.endpoint.ikeSAs.count == 1)
    }

    @Test func vigilProbesStrongSwanAndGetsItsSequenceNumbersBack() throws {
        let lab = try InteropLab(InteropLab.Options())
        defer { lab.close() }
        try lab.establish()
        let sa = try #require(lab.driver.endpoint.ikeSAs.first)
        #expect(sa.peerSupportsDPD)
        for sequence: UInt32 in [1000, 1001, 1002] {
            lab.driver.handle(.sendDPDProbe(sa.id, sequence: sequence))
            lab.driver.run(seconds: 15) { $0.acknowledged.contains(sequence) }
        }
        #expect(lab.driver.acknowledged == [1000, 1001, 1002], "Vigil:\n\(lab.driver.log)\nstrongSwan:\n\(lab.swan.log)")
        #expect(lab.swan.log.contains("N(DPD)"), "\(lab.swan.log)")
    }

    @Test func killedStrongSwanLeavesProbesUnanswered() throws {
        let lab = try InteropLab(InteropLab.Options())
        defer { lab.close() }
        try lab.establish()
        let sa = try #require(lab.driver.endpoint.ikeSAs.first).id
        lab.driver.handle(.sendDPDProbe(sa, sequence: 5))
        lab.driver.run(seconds: 15) { $0.acknowledged.contains(5) }
        #expect(lab.driver.acknowledged == [5])
        lab.swan.kill()
        for sequence: UInt32 in [6, 7, 8] {
            lab.driver.handle(.sendDPDProbe(sa, sequence: sequence))
            lab.driver.run(seconds: 0.5)
        }
        #expect(lab.driver.acknowledged == [5], "a dead peer acknowledged: \(lab.driver.acknowledged)")
        // The detector declares the peer dead and abandons the SA: no message, IPsec SAs reported deleted.
        let before = lab.driver.actions.count
        lab.driver.handle(.abandonIKESA(sa))
        let after = lab.driver.actions[before...]
        #expect(!after.contains { if case .send = $0 { true } else { false } })
        #expect(after.contains { if case .childSADeleted = $0 { true } else { false } })
        #expect(lab.driver.endpoint.ikeSAs.isEmpty && lab.driver.endpoint.childSAs.isEmpty)
    }

    @Test func vigilDeletesTheIPsecSAThenTheISAKMPSA() throws {
        let lab = try InteropLab(InteropLab.Options())
        defer { lab.close() }
        try lab.establish()
        let child = try #require(lab.driver.endpoint.childSAs.first)
        lab.driver.handle(.deleteChildSA(child.id))
        lab.driver.run(seconds: 15) { _ in (try? lab.swanSAs().contains("state=INSTALLED")) == false }
        var listing = try lab.swanSAs()
        #expect(!listing.contains("state=INSTALLED") && listing.contains("state=ESTABLISHED"), "\(listing)")
        let sa = try #require(lab.driver.endpoint.ikeSAs.first).id
        lab.driver.handle(.deleteIKESA(sa))
        lab.driver.run(seconds: 15) { _ in (try? lab.swanSAs().contains("state=ESTABLISHED")) == false }
        listing = try lab.swanSAs()
        #expect(!listing.contains("state=ESTABLISHED"), "\(listing)\n\(lab.swan.log)")
        #expect(lab.driver.endpoint.ikeSAs.isEmpty)
    }

    @Test func strongSwanDeletesAndVigilForgets() throws {
        let lab = try InteropLab(InteropLab.Options())
        defer { lab.close() }
        try lab.establish()
        let swan = lab.swan
        let result = try lab.whileRunning({ try swan.swanctl(["--terminate", "--ike", "lab", "--timeout", "5"]) }, seconds: 6)
        #expect(result.succeeded, "\(result.stdout)\(result.stderr)")
        lab.driver.run(seconds: 15) { $0.endpoint.ikeSAs.isEmpty && $0.endpoint.childSAs.isEmpty }
        #expect(lab.driver.endpoint.childSAs.isEmpty, "Vigil:\n\(lab.driver.log)")
        #expect(lab.driver.endpoint.ikeSAs.isEmpty, "Vigil:\n\(lab.driver.log)")
        #expect(lab.driver.actions.contains { if case .childSADeleted(_, let reason) = $0 { reason == "deleted by peer" } else { false } })
        #expect(lab.driver.actions.contains { if case .ikeSADeleted(_, let reason) = $0 { reason == .deletedByPeer } else { false } })
    }

    @Test func wrongKeyWhenVigilInitiates() throws {
        var options = InteropLab.Options()
        options.vigilPSK = "not-the-secret"
        let lab = try InteropLab(options)
        defer { lab.close() }
        lab.driver.handle(.initiate(connection: "lab", peer: InteropLab.swanAddress))
        // strongSwan's answer to an MM5 it cannot verify does not decrypt for us: a hint, not the end. The failure
        // comes when MM5's retransmissions run out (about 8 s on the lab's schedule) and still names the cause.
        lab.driver.run(seconds: 4) { !$0.failures.isEmpty }
        #expect(lab.driver.failures.isEmpty, "failed on unauthenticated input: \(lab.driver.failures)")
        lab.driver.run(seconds: 12) { !$0.failures.isEmpty }
        #expect(lab.driver.established.isEmpty)
        let failure = try #require(lab.driver.failures.first, "Vigil:\n\(lab.driver.log)")
        #expect(failure.message.contains("pre-shared key"), "\(failure)")
        #expect(!(try lab.swanSAs().contains("state=ESTABLISHED")))
    }

    @Test func wrongKeyWhenStrongSwanInitiates() throws {
        var options = InteropLab.Options()
        options.swanPSK = "not-the-secret"
        // Vigil's half-open SA waits for a valid MM5 until it expires, then reports why none came.
        options.halfOpenTimeout = .seconds(4)
        let lab = try InteropLab(options)
        defer { lab.close() }
        let swan = lab.swan
        let result = try lab.whileRunning({ try swan.initiate(child: "net", timeoutSeconds: 3) }, seconds: 5)
        #expect(!result.succeeded)
        lab.driver.run(seconds: 6) { !$0.failures.isEmpty }
        let failure = try #require(lab.driver.failures.first, "Vigil:\n\(lab.driver.log)")
        #expect(failure.code == .authenticationFailed)
        #expect(failure.message.contains("pre-shared key"), "\(failure)")
        #expect(lab.driver.endpoint.ikeSAs.allSatisfy { $0.state != .established })
    }

    @Test func noCommonProposalBothWays() throws {
        var options = InteropLab.Options()
        options.ike = "aes128-sha1-modp2048"
        options.swanIKE = "aes256-sha256-ecp384"
        let lab = try InteropLab(options)
        defer { lab.close() }
        lab.driver.handle(.initiate(connection: "lab", peer: InteropLab.swanAddress))
        // strongSwan refuses MM1 with a plaintext NO_PROPOSAL_CHOSEN: unauthenticated, so Vigil keeps retransmitting
        // until its schedule runs out (about 8 s) and then reports that notify as the likely reason.
        lab.driver.run(seconds: 15) { !$0.failures.isEmpty }
        let failure = try #require(lab.driver.failures.first, "Vigil:\n\(lab.driver.log)\nstrongSwan:\n\(lab.swan.log)")
        #expect(failure.code == .noProposalChosen, "\(failure)")
        #expect(failure.message.contains("NO_PROPOSAL_CHOSEN"), "\(failure)")
        let swan = lab.swan
        let result = try lab.whileRunning({ try swan.initiate(child: "net", timeoutSeconds: 3) }, seconds: 5)
        #expect(!result.succeeded)
        // Vigil refuses strongSwan's MM1: anyone could send one from that address, so it is counted as junk (not
        // the peer's failure) and logged with both sides' algorithms.
        #expect(lab.driver.failures.count == 1, "\(lab.driver.failures)")
        #expect(lab.driver.endpoint.counters[.unauthenticatedRequestsRefused, default: 0] >= 1)
        #expect(lab.driver.log.contains("MM1 from 192.0.2.2:500 (unauthenticated): no proposal chosen")
                && lab.driver.log.contains("aes256-sha256"), "\(lab.driver.log)")
        #expect(lab.driver.endpoint.ikeSAs.isEmpty)
    }

    @Test func noCommonPhase2ProposalBothWays() throws {
        var options = InteropLab.Options()
        options.esp = "aes128-sha1"
        options.swanESP = "aes256-sha256"
        let lab = try InteropLab(options)
        defer { lab.close() }
        // Vigil initiates: Main Mode succeeds, strongSwan refuses QM1 with an encrypted NO_PROPOSAL_CHOSEN.
        lab.driver.handle(.initiate(connection: "lab", peer: InteropLab.swanAddress))
        lab.driver.run(seconds: 5) { !$0.failures.isEmpty }
        let failure = try #require(lab.driver.failures.first, "Vigil:\n\(lab.driver.log)\nstrongSwan:\n\(lab.swan.log)")
        #expect(failure.code == .noProposalChosen, "\(failure)")
        // The ISAKMP SA, left carrying nothing, is deleted on both sides rather than orphaned.
        lab.driver.run(seconds: 1) { _ in (try? lab.swanSAs().contains("state=ESTABLISHED")) == false }
        #expect(lab.driver.endpoint.childSAs.isEmpty && lab.driver.endpoint.ikeSAs.isEmpty)
        #expect(!(try lab.swanSAs().contains("state=ESTABLISHED")), "strongSwan keeps an orphaned ISAKMP SA")
        // strongSwan initiates its child over the existing ISAKMP SA: Vigil refuses and names both sides' algorithms.
        let swan = lab.swan
        let result = try lab.whileRunning({ try swan.initiate(child: "net", timeoutSeconds: 3) }, seconds: 5)
        #expect(!result.succeeded)
        let refusal = try #require(lab.driver.failures.dropFirst().first, "Vigil:\n\(lab.driver.log)")
        #expect(refusal.code == .noProposalChosen)
        #expect(refusal.message.contains("aes256-sha256") && refusal.message.contains("aes128-sha1"), "\(refusal)")
        #expect(lab.driver.endpoint.childSAs.isEmpty)
    }
}
