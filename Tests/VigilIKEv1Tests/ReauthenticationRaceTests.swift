import Testing
import VigilIKEv1

/// The flake in `strongSwanReauthenticatesPhase1SeveralGenerations`: our MM2 answering strongSwan's
/// reauthentication was lost, we never resent it, strongSwan waited 4 s for its own retransmission, and our fallback
/// rekey fired into the half-open Main Mode, leaving two new ISAKMP SAs racing for the IPsec SA.
@Suite struct ReauthenticationRaceTests {
    @Test func aLostMM2IsResentAndTheFallbackRekeyWaitsForThePeersMainMode() throws {
        var net = HardeningLockstepTests.established()
        let westOld = try #require(net.west.ikeSAs.first).id
        let eastOld = try #require(net.east.ikeSAs.first).id
        let child = try #require(net.east.childSAs.first)
        // West reauthenticates: MM1 -->  <-- MM2 (lost)
        net.west(.rekeyIKESA(westOld))
        net.deliver()
        let lost = net.intercept()
        #expect(lost != nil)
        let halfOpen = try #require(net.east.ikeSAs.first(where: { $0.id != eastOld })).id
        #expect(net.eastTimers[.retransmit(halfOpen, messageID: 0)] != nil, "the responder does not resend MM2")
        // East's fallback rekey falls due now: held, no Main Mode of its own.
        let held = net.east(.timerFired(.rekeyIKESA(eastOld)))
        #expect(held.sends == 0, "\(held.logText)")
        #expect(held.logText.contains("held"))
        // East resends MM2 on its schedule and west's Main Mode completes; the IPsec SA moves to it.
        let resent = net.east(.timerFired(.retransmit(halfOpen, messageID: 0)))
        #expect(resent.sends == 1)
        net.settle()
        #expect(net.east.ikeSAs.map(\.id) == [halfOpen], "\(net.eastActions.logText)")
        // West's Phase 1 rekey also rekeys the IPsec SA with a Quick Mode on the new ISAKMP SA: still one pair.
        #expect(net.east.childSAs.count == 1 && net.east.childSAs.allSatisfy { $0.ikeSA == halfOpen }, "\(net.east.childSAs) was \(child)")
        #expect(net.east.ikeSAs.allSatisfy { $0.state == .established })
        #expect(net.eastTimers[.retransmit(halfOpen, messageID: 0)] == nil)
        #expect(net.west.ikeSAs.count == 1 && net.west.childSAs.count == 1)
    }

    /// East (the responder of the established ISAKMP SA `old`) holds a half-open SA for an MM1 from west's address
    /// that never continues (spoofed, or a peer that gave up).
    static func peersMainModeStalled() throws -> (net: Lockstep, old: IKEv1SAID, halfOpen: IKEv1SAID) {
        var net = HardeningLockstepTests.established()
        let westOld = try #require(net.west.ikeSAs.first).id
        let eastOld = try #require(net.east.ikeSAs.first).id
        net.west(.rekeyIKESA(westOld))
        net.deliver()
        net.wire.removeAll()
        let halfOpen = try #require(net.east.ikeSAs.first(where: { $0.id != eastOld })).id
        return (net, eastOld, halfOpen)
    }

    @Test func aHalfOpenMainModeHoldsTheFallbackRekeyOnlyOnce() throws {
        var (net, eastOld, _) = try Self.peersMainModeStalled()
        let first = net.east(.timerFired(.rekeyIKESA(eastOld)))
        #expect(first.sends == 0)
        let again = try #require(net.eastTimers[.rekeyIKESA(eastOld)])
        #expect(again > net.now && again < net.now + .seconds(28_800))
        // The second time the rekey goes ahead although the half-open SA is still there.
        let second = net.east(.timerFired(.rekeyIKESA(eastOld)))
        #expect(second.sends == 1, "\(second.logText)")
        #expect(second.logText.contains("rekeying ISAKMP SA"))
    }

    @Test func theResponderStopsResendingAfterItsScheduleWithoutCallingThePeerUnreachable() throws {
        var (net, _, halfOpen) = try Self.peersMainModeStalled()
        var resent = 0
        var actions: [IKEv1Action] = []
        for _ in 0..<10 {
            let step = net.east(.timerFired(.retransmit(halfOpen, messageID: 0)))
            resent += step.sends
            actions += step
        }
        #expect(resent == 3, "the lockstep schedule has 3 tries")
        #expect(actions.unreachable == 0 && actions.failures.isEmpty)
        #expect(net.east.ikeSAs.contains { $0.id == halfOpen }, "the half-open SA waits out its own lifetime")
    }
}
