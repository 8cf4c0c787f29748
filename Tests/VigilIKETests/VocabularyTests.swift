import Testing
import VigilIKE

/// The shared IKE vocabulary: what the daemon's failover rule reads, and the one retransmission schedule.
@Suite struct VocabularyTests {
    @Test func onlyThePeersWordOrSilenceEndsAnIKESAByThePeer() {
        let byPeer: [IKESAEnd] = [.deletedByPeer, .peerUnreachable, .peerRestarted, .abandonedAsDead]
        let ours: [IKESAEnd] = [.replaced("rekeyed"), .replaced("replaced by ISAKMP SA 1 (reauthentication)"), .local("deleted"),
                                .local("half-open timeout"), .local("peer words in a local reason")]
        #expect(byPeer.allSatisfy { $0.endedByPeer })
        #expect(!ours.contains { $0.endedByPeer }, "words never decide: a local reason mentioning the peer is still ours")
        #expect(IKESAEnd.deletedByPeer.description == "deleted by peer")
        #expect(IKESAEnd.local("half-open timeout").description == "half-open timeout")
    }

    @Test func theScheduleGrowsByItsBaseAndStopsGrowingAtItsCap() {
        let schedule = RetransmissionSchedule(timeout: .seconds(1), base: 2, tries: 5)
        #expect((0...3).map { schedule.delay(afterAttempt: $0) } == [.seconds(1), .seconds(2), .seconds(4), .seconds(8)])
        // However many transmissions (a hostile or silly configuration), the wait stays finite: no Duration trap.
        #expect(schedule.delay(afterAttempt: 10_000) == .seconds(RetransmissionSchedule.maximumBackoffFactor))
        #expect(schedule.delay(afterAttempt: -1) == .seconds(1))
        #expect(RetransmissionSchedule.strongSwanDefault == RetransmissionSchedule(timeout: .seconds(4), base: 1.8, tries: 5))
    }
}
