import Testing
import VigilAddressing
import VigilIKE
@testable import VigilIKEv1

/// The exchanges the IKEv1 engine counts by type, role and result (`vigil_ike_exchanges_total`), and the ISAKMP SA
/// rekey deadline it exposes, driven in lockstep.
@Suite struct ExchangeOutcomeTests {
    typealias Outcome = IKEExchangeOutcome

    static func established() throws -> Lockstep {
        var net = Lockstep(west: Fixture.westEndpoint(), east: Fixture.eastEndpoint())
        // MM1-MM6, then QM1-QM3
        net.west(.initiate(connection: "SITE/10", peer: Fixture.east))
        net.settle()
        try #require(net.west.childSAs.count == 1 && net.east.childSAs.count == 1, "\(net.westActions.logText)")
        return net
    }

    @Test func establishmentCountsMainModeAndQuickModeOnBothSides() throws {
        let net = try Self.established()
        #expect(net.west.exchangeOutcomes == [Outcome(.mainMode, .initiator, .ok): 1, Outcome(.quickMode, .initiator, .ok): 1])
        #expect(net.east.exchangeOutcomes == [Outcome(.mainMode, .responder, .ok): 1, Outcome(.quickMode, .responder, .ok): 1])
    }

    @Test func childRekeyCountsAQuickModeOnBothSides() throws {
        var net = try Self.established()
        let child = try #require(net.west.childSAs.first).id
        // QM1 E{ HASH(1), SA, Ni, IDci, IDcr } -->  <-- QM2  QM3 -->, then the old IPsec SA's DELETE
        net.west(.rekeyChildSA(child))
        net.settle()
        #expect(net.west.childSAs.first?.id != child)
        #expect(net.west.exchangeOutcomes[Outcome(.quickMode, .initiator, .ok)] == 2)
        #expect(net.east.exchangeOutcomes[Outcome(.quickMode, .responder, .ok)] == 2)
        #expect(net.west.exchangeOutcomes.count == 2 && net.east.exchangeOutcomes.count == 2, "no failure counted")
    }

    @Test func answeredRUThereIsAnInformationalOnBothSides() throws {
        var net = try Self.established()
        let sa = try #require(net.west.ikeSAs.first).id
        // INFORMATIONAL E{ HASH(1), N(R-U-THERE) } -->  <-- INFORMATIONAL E{ HASH(1), N(R-U-THERE-ACK) }
        net.west(.sendDPDProbe(sa, sequence: 5))
        net.settle()
        #expect(net.westActions.acknowledged == [5])
        #expect(net.west.exchangeOutcomes[Outcome(.isakmpInformational, .initiator, .ok)] == 1)
        #expect(net.east.exchangeOutcomes[Outcome(.isakmpInformational, .responder, .ok)] == 1)
    }

    @Test func unansweredMainModeAndUnansweredRUThereAreTimeouts() throws {
        var lost = Lockstep(west: Fixture.westEndpoint(), east: Fixture.eastEndpoint())
        // MM1 -->  (every transmission lost)
        lost.west(.initiate(connection: "SITE/10", peer: Fixture.east))
        lost.advance(to: .seconds(300), deliverSends: false)
        #expect(lost.westActions.failures.map(\.code) == [.timeout])
        #expect(lost.west.exchangeOutcomes == [Outcome(.mainMode, .initiator, .timeout): 1])

        var net = try Self.established()
        let sa = try #require(net.west.ikeSAs.first).id
        // INFORMATIONAL E{ HASH(1), N(R-U-THERE) } -->  (lost), then the dead peer detector gives up
        net.west(.sendDPDProbe(sa, sequence: 9))
        _ = net.intercept()
        net.west(.abandonIKESA(sa))
        #expect(net.west.exchangeOutcomes[Outcome(.isakmpInformational, .initiator, .timeout)] == 1)
        #expect(net.west.exchangeOutcomes[Outcome(.isakmpInformational, .initiator, .ok)] == nil)
    }

    /// IKEv1 has no authenticated AUTHENTICATION_FAILED: the responder cannot read an MM5 under the wrong key, the
    /// initiator hears nothing. The responder's half-open SA ends the exchange as failed; the initiator times out.
    @Test func preSharedKeyMismatchIsAFailedMainModeAtTheResponderAndATimeoutAtTheInitiator() throws {
        var net = Lockstep(west: Fixture.westEndpoint(psk: "wrong"), east: Fixture.eastEndpoint())
        net.west(.initiate(connection: "SITE/10", peer: Fixture.east))
        net.settle()
        net.advance(to: .seconds(300))
        #expect(net.eastActions.failures.map(\.code) == [.authenticationFailed])
        #expect(net.east.exchangeOutcomes == [Outcome(.mainMode, .responder, .failed): 1])
        #expect(net.west.exchangeOutcomes == [Outcome(.mainMode, .initiator, .timeout): 1])
    }

    @Test func isakmpSARekeyDeadlineIsTheScheduledTimer() throws {
        var net = Lockstep(west: Fixture.westEndpoint(), east: Fixture.eastEndpoint())
        net.now = .seconds(50)
        net.west(.initiate(connection: "SITE/10", peer: Fixture.east))
        net.settle()
        let west = try #require(net.west.ikeSAs.first)
        let east = try #require(net.east.ikeSAs.first)
        #expect(west.rekeyAt != nil && west.rekeyAt == net.westTimers[.rekeyIKESA(west.id)])
        #expect(east.rekeyAt != nil && east.rekeyAt == net.eastTimers[.rekeyIKESA(east.id)])
        // The initiator rekeys before the responder (whose rekey is the fallback).
        #expect(try #require(west.rekeyAt) < #require(east.rekeyAt))
        // After a rekey the successor carries its own deadline, the old SA is gone.
        net.west(.rekeyIKESA(west.id))
        net.settle()
        let successor = try #require(net.west.ikeSAs.first)
        #expect(successor.id != west.id)
        #expect(successor.rekeyAt != nil && successor.rekeyAt == net.westTimers[.rekeyIKESA(successor.id)])
        #expect(net.westTimers[.rekeyIKESA(west.id)] == nil)
    }

    @Test func ipsecSARekeyDeadlineIsTheInitiatorsScheduledTimer() throws {
        var net = try Self.established()
        let child = try #require(net.west.childSAs.first).id
        let timer = try #require(net.westTimers[.rekeyChildSA(child)])
        #expect(net.west.childRekeyAt == [child: timer])
        // The Quick Mode responder leaves the rekey to the initiator.
        #expect(net.east.childRekeyAt.isEmpty)
        // A rekey asked for before the timer (its deadline goes with the old SA's cancelled timer).
        net.west(.rekeyChildSA(child))
        net.settle()
        let new = try #require(net.west.childSAs.first).id
        #expect(new != child)
        let newTimer = try #require(net.westTimers[.rekeyChildSA(new)])
        #expect(net.west.childRekeyAt == [new: newTimer])
    }
}
