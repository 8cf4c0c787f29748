import Testing
@testable import VigilLiveness

private func config(_ mode: DeadPeerDetector.Configuration.Mode, flavour: DeadPeerDetector.Configuration.ProbeFlavour = .ikev1(firstSequence: 100))
    -> DeadPeerDetector.Configuration {
    .init(mode: mode, interval: .seconds(10), retry: .seconds(2), retries: 5, flavour: flavour)
}

/// Interval 10 s, retry 2 s, 5 probes, a peer silent since 0 s: the type's documented example.
private let silentPeerSchedule: [(Duration, DeadPeerDetector.Action)] = [
    (.seconds(10), .sendProbe(sequence: 100, attempt: 0)),
    (.seconds(12), .sendProbe(sequence: 101, attempt: 1)),
    (.seconds(14), .sendProbe(sequence: 102, attempt: 2)),
    (.seconds(16), .sendProbe(sequence: 103, attempt: 3)),
    (.seconds(18), .sendProbe(sequence: 104, attempt: 4)),
    (.seconds(20), .peerDead(.init(lastProofOfLife: .zero, probesSent: 5, declaredAt: .seconds(20)))),
]

@Suite struct DeadPeerDetectorTests {
    @Test func periodicScheduleMatchesTheDocumentedExample() {
        var detector = DeadPeerDetector(configuration: config(.periodic), establishedAt: .zero)
        let log = run(&detector, until: .seconds(100))
        let expected = silentPeerSchedule
        #expect(log.map(\.0) == expected.map(\.0))
        #expect(log.map(\.1) == expected.map(\.1))
        #expect(detector.isDead && detector.nextWakeup == nil)
    }

    @Test func onDemandNeverProbesWhileBothDirectionsAreIdle() {
        var detector = DeadPeerDetector(configuration: config(.onDemand), establishedAt: .zero)
        #expect(detector.nextWakeup == nil)
        #expect(run(&detector, until: .seconds(3600)).isEmpty)
        #expect(!detector.isDead)
    }

    @Test func onDemandProbesWhenTrafficWaitsAndThePeerIsSilent() {
        var detector = DeadPeerDetector(configuration: config(.onDemand), establishedAt: .zero)
        // Outbound at 3 s: the peer has been quiet for less than interval, so the probe waits until 10 s.
        let log = run(&detector, until: .seconds(60), inputs: [(.seconds(3), .outboundTrafficPending)])
        #expect(log.first?.0 == .seconds(10))
        #expect(log.last?.0 == .seconds(20))
        // Outbound long after the last proof: probe at once.
        var late = DeadPeerDetector(configuration: config(.onDemand), establishedAt: .zero)
        #expect(late.handle(.outboundTrafficPending, now: .seconds(50)) == .sendProbe(sequence: 100, attempt: 0))
    }

    @Test func anAcknowledgementOfAnyProbeOfTheRunIsProofOfLife() {
        var detector = DeadPeerDetector(configuration: config(.periodic), establishedAt: .zero)
        _ = run(&detector, until: .seconds(12))   // probes 100 at 10 s and 101 at 12 s
        #expect(detector.handle(.probeAcknowledged(sequence: 100), now: .seconds(13)) == nil)
        #expect(detector.lastProofOfLife == .seconds(13))
        #expect(detector.nextWakeup == .seconds(23))
        // The next run continues the sequence (RFC 3706 §6.2).
        #expect(detector.handle(.timerFired, now: .seconds(23)) == .sendProbe(sequence: 102, attempt: 0))
    }

    @Test func staleOrMismatchedAcknowledgementsAreNotProofOfLife() {
        var detector = DeadPeerDetector(configuration: config(.periodic), establishedAt: .zero)
        _ = run(&detector, until: .seconds(10))   // probe 100
        for sequence: UInt32 in [99, 101, 7, 0x8000_0064] {
            _ = detector.handle(.probeAcknowledged(sequence: sequence), now: .seconds(11))
        }
        #expect(detector.lastProofOfLife == .zero)
        let log = run(&detector, until: .seconds(30))
        #expect(log.last?.1 == .peerDead(.init(lastProofOfLife: .zero, probesSent: 5, declaredAt: .seconds(20))))
    }

    @Test func ikev2RetriesRetransmitTheSameRequest() {
        var detector = DeadPeerDetector(configuration: config(.periodic, flavour: .ikev2), establishedAt: .zero)
        let log = run(&detector, until: .seconds(15))
        #expect(log.map(\.1) == [.sendProbe(sequence: 0, attempt: 0), .sendProbe(sequence: 0, attempt: 1),
                                 .sendProbe(sequence: 0, attempt: 2)])
        #expect(detector.handle(.probeAcknowledged(sequence: 1), now: .seconds(15)) == nil)
        #expect(detector.lastProofOfLife == .zero)
        _ = detector.handle(.probeAcknowledged(sequence: 0), now: .seconds(15))
        #expect(detector.lastProofOfLife == .seconds(15))
        #expect(detector.handle(.timerFired, now: .seconds(25)) == .sendProbe(sequence: 1, attempt: 0))
    }

    @Test func inboundTrafficCountsOnlyWhenTheCounterMoves() {
        var detector = DeadPeerDetector(configuration: config(.periodic), establishedAt: .zero)
        _ = detector.handle(.inboundTrafficObserved(packets: 5), now: .seconds(4))
        _ = detector.handle(.inboundTrafficObserved(packets: 5), now: .seconds(8))
        #expect(detector.lastProofOfLife == .seconds(4))
        #expect(detector.nextWakeup == .seconds(14))
    }

    @Test func noProbeDuringARekeyButADeathDuringItIsNotLost() {
        var detector = DeadPeerDetector(configuration: config(.periodic), establishedAt: .zero)
        _ = detector.handle(.exchangeStarted, now: .seconds(9))
        let log = run(&detector, until: .seconds(40))
        #expect(log.map(\.1) == [.peerDead(.init(lastProofOfLife: .zero, probesSent: 0, declaredAt: .seconds(20)))])
    }

    @Test func aProbeSlotMissedDuringAnExchangeIsSentWhenItCompletes() {
        var detector = DeadPeerDetector(configuration: config(.periodic), establishedAt: .zero)
        _ = detector.handle(.exchangeStarted, now: .seconds(9))
        _ = run(&detector, until: .seconds(13))
        #expect(detector.handle(.exchangeCompleted, now: .seconds(13)) == .sendProbe(sequence: 100, attempt: 1))
        // The exchange waited for the peer meanwhile: the schedule goes on from the slot (12 s).
        #expect(detector.nextWakeup == .seconds(14))
    }

    @Test func aLateTimerSendsTheNextProbeInsteadOfDeclaringADeath() {
        var detector = DeadPeerDetector(configuration: config(.periodic), establishedAt: .zero)
        #expect(detector.nextWakeup == .seconds(10))
        // The loop was busy: the timer armed for 10 s fires at 25 s, past the whole run (10 + 5 × 2 s). No probe was
        // sent, so this is no death: the first probe goes out now.
        #expect(detector.handle(.timerFired, now: .seconds(25)) == .sendProbe(sequence: 100, attempt: 0))
        #expect(!detector.isDead)
        #expect(detector.nextWakeup == .seconds(27))
        // Another late firing still sends one probe, the next one, and the one after waits its retry again.
        #expect(detector.handle(.timerFired, now: .seconds(40)) == .sendProbe(sequence: 101, attempt: 1))
        #expect(detector.nextWakeup == .seconds(42))
        let log = run(&detector, until: .seconds(100))
        let expected: [(Duration, DeadPeerDetector.Action)] = [
            (.seconds(42), .sendProbe(sequence: 102, attempt: 2)),
            (.seconds(44), .sendProbe(sequence: 103, attempt: 3)),
            (.seconds(46), .sendProbe(sequence: 104, attempt: 4)),
            (.seconds(48), .peerDead(.init(lastProofOfLife: .zero, probesSent: 5, declaredAt: .seconds(48)))),
        ]
        #expect(log.map(\.0) == expected.map(\.0))
        #expect(log.map(\.1) == expected.map(\.1))
    }

    @Test func aLateTimerAfterTheLastProbeStillGivesItsRetryBeforeTheDeath() {
        var detector = DeadPeerDetector(configuration: config(.periodic), establishedAt: .zero)
        _ = run(&detector, until: .seconds(16))   // probes at 10, 12, 14, 16 s
        // The last probe's slot (18 s) is served late at 19.5 s: the death waits a retry after it, not the schedule.
        #expect(detector.handle(.timerFired, now: .milliseconds(19_500)) == .sendProbe(sequence: 104, attempt: 4))
        #expect(detector.handle(.timerFired, now: .seconds(20)) == nil)
        #expect(detector.nextWakeup == .milliseconds(21_500))
        #expect(detector.handle(.timerFired, now: .milliseconds(21_500))
            == .peerDead(.init(lastProofOfLife: .zero, probesSent: 5, declaredAt: .milliseconds(21_500))))
    }

    @Test func offNeverProbesAndRandomFirstSequencesKeepTheTopBitClear() {
        var detector = DeadPeerDetector(configuration: config(.off), establishedAt: .zero)
        _ = detector.handle(.outboundTrafficPending, now: .seconds(100))
        #expect(detector.nextWakeup == nil)
        var random = SystemRandomNumberGenerator()
        for _ in 0..<1000 {
            #expect(DeadPeerDetector.Configuration.randomFirstSequence(using: &random) & Liveness.sequenceTopBit == 0)
        }
    }

    // MARK: on-idle (FortiGate `dpd on-idle`, strongSwan `dpd_delay`)

    @Test func onIdleProbesWhenNothingArrivedEvenWhileBothDirectionsAreIdle() {
        // Unlike on-demand (never probes while idle, above), on-idle probes one interval after the last proof of life.
        var detector = DeadPeerDetector(configuration: config(.onIdle), establishedAt: .zero)
        #expect(detector.nextWakeup == .seconds(10))
        let log = run(&detector, until: .seconds(100))
        let expected = silentPeerSchedule
        #expect(log.map(\.0) == expected.map(\.0))
        #expect(log.map(\.1) == expected.map(\.1))
    }

    @Test func onIdleIgnoresOurOwnSending() {
        // Outbound traffic neither brings the probe forward (on-demand at 50 s probes at once) nor postpones it.
        var sending = DeadPeerDetector(configuration: config(.onIdle), establishedAt: .zero)
        let inputs: [(Duration, DeadPeerDetector.Event)] = [
            (.seconds(3), .outboundTrafficPending), (.seconds(9), .outboundTrafficPending), (.seconds(11), .outboundTrafficPending),
        ]
        let withTraffic = run(&sending, until: .seconds(100), inputs: inputs)
        var quiet = DeadPeerDetector(configuration: config(.onIdle), establishedAt: .zero)
        let withoutTraffic = run(&quiet, until: .seconds(100))
        #expect(withTraffic.map(\.0) == withoutTraffic.map(\.0))
        #expect(withTraffic.map(\.1) == withoutTraffic.map(\.1))
        var late = DeadPeerDetector(configuration: config(.onIdle), establishedAt: .zero)
        #expect(late.handle(.outboundTrafficPending, now: .seconds(5)) == nil)
        #expect(late.nextWakeup == .seconds(10))
    }

    @Test func onIdleInboundTrafficAndIKEMessagesPostponeTheRun() {
        var detector = DeadPeerDetector(configuration: config(.onIdle), establishedAt: .zero)
        _ = detector.handle(.inboundTrafficObserved(packets: 7), now: .seconds(8))
        #expect(detector.nextWakeup == .seconds(18))
        _ = detector.handle(.inboundTrafficObserved(packets: 7), now: .seconds(12))   // counter unchanged: no proof
        #expect(detector.nextWakeup == .seconds(18))
        _ = detector.handle(.authenticatedMessageReceived, now: .seconds(17))
        #expect(detector.nextWakeup == .seconds(27))
        let log = run(&detector, until: .seconds(100))
        #expect(log.first?.0 == .seconds(27))
        #expect(log.last?.1 == .peerDead(.init(lastProofOfLife: .seconds(17), probesSent: 5, declaredAt: .seconds(37))))
    }

    @Test func onIdleRetriesFollowTheSameRulesAsTheOtherModes() {
        // An answer to any probe of the run ends it; the next run starts one interval after the answer.
        var detector = DeadPeerDetector(configuration: config(.onIdle), establishedAt: .zero)
        _ = run(&detector, until: .seconds(14))   // probes 100, 101, 102 at 10, 12, 14 s
        #expect(detector.handle(.probeAcknowledged(sequence: 101), now: .seconds(15)) == nil)
        #expect(detector.nextWakeup == .seconds(25))
        #expect(detector.handle(.timerFired, now: .seconds(25)) == .sendProbe(sequence: 103, attempt: 0))
        // An exchange in flight stands in for the probes, and a death during it is still declared on time.
        var rekeying = DeadPeerDetector(configuration: config(.onIdle, flavour: .ikev2), establishedAt: .zero)
        _ = rekeying.handle(.exchangeStarted, now: .seconds(9))
        let log = run(&rekeying, until: .seconds(40))
        #expect(log.map(\.1) == [.peerDead(.init(lastProofOfLife: .zero, probesSent: 0, declaredAt: .seconds(20)))])
    }

    @Test func theThreeProbingModesDifferOnlyInWhatStartsARun() {
        // The same events through periodic, on-idle and on-demand: inbound at 5 s, outbound at 30 s.
        let inputs: [(Duration, DeadPeerDetector.Event)] = [
            (.seconds(5), .inboundTrafficObserved(packets: 1)), (.seconds(30), .outboundTrafficPending),
        ]
        func firstProbe(_ mode: DeadPeerDetector.Configuration.Mode) -> Duration? {
            var detector = DeadPeerDetector(configuration: config(mode), establishedAt: .zero)
            return run(&detector, until: .seconds(100), inputs: inputs).first?.0
        }
        #expect(firstProbe(.periodic) == .seconds(15))
        #expect(firstProbe(.onIdle) == .seconds(15))
        #expect(firstProbe(.onDemand) == .seconds(30))   // silent since 5 s, but nothing to send until 30 s
        #expect(firstProbe(.off) == nil)
    }
}
