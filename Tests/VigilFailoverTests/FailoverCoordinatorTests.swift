import Testing
import VigilFailover

/// Direct event → action tests of the coordinator (the simulation covers the combinations).
@Suite struct FailoverCoordinatorTests {
    typealias C = FailoverCoordinator<String>

    static func coordinator(_ peers: [String] = ["a", "b", "c"], preferred: String? = nil, action: C.DeadPeerAction = .restart,
                            idleTime: Duration? = nil) -> C {
        C(configuration: .init(peers: peers, preferred: preferred, deadPeerAction: action, attemptTimeout: .seconds(10),
                               backoff: .init(initial: .seconds(2), maximum: .seconds(16)), idleTime: idleTime))
    }

    /// Runs events at `now` and returns the actions without timers and notices.
    static func drive(_ coordinator: inout C, _ event: C.Event, at now: Duration) -> [C.Action] {
        var random = SeededGenerator(seed: 7)
        return coordinator.handle(event, now: now, random: &random).filter {
            switch $0 {
            case .emit, .scheduleTimer: false
            case .initiate, .abandonAttempt, .deleteSAs, .programKernel, .holdTraffic, .clearProtection, .probePhase1: true
            }
        }
    }

    static func established(on peer: String, _ coordinator: inout C, at now: Duration = .seconds(1)) {
        _ = drive(&coordinator, .start, at: .zero)
        var peers = coordinator.configuration.peers
        while let first = peers.first, first != peer {
            _ = drive(&coordinator, .attemptFailed(first, reason: "test"), at: .zero)
            peers.removeFirst()
        }
        _ = drive(&coordinator, .childEstablished(peer), at: now)
        #expect(coordinator.activePeer == peer)
    }

    @Test func startTriesThePreferredPeerFirstAndProgramsTheKernelOnceEstablished() {
        var coordinator = Self.coordinator(preferred: "b")
        #expect(Self.drive(&coordinator, .start, at: .zero) == [.initiate("b", attempt: 0)])
        #expect(Self.drive(&coordinator, .phase1Established("b"), at: .seconds(1)) == [])
        #expect(Self.drive(&coordinator, .childEstablished("b"), at: .seconds(1)) == [.programKernel("b", replacing: nil)])
        #expect(coordinator.activePeer == "b")
    }

    @Test func restartFailsOverToTheNextListedPeerWrappingRound() {
        var coordinator = Self.coordinator()
        Self.established(on: "c", &coordinator)
        #expect(Self.drive(&coordinator, .peerDead("c"), at: .seconds(50)) == [.deleteSAs("c"), .initiate("a", attempt: 0)])
        #expect(coordinator.activePeer == nil && coordinator.negotiatingPeer == "a")
    }

    /// A peer that goes down as soon as it comes up (it deletes every SA it agrees to) is a failed attempt of the
    /// cycle that brought it up: the entry moves down the list and backs off once every peer had its turn, instead
    /// of looping at network speed (found by the in-process lab: two vigilds re-initiating to each other).
    @Test func aPeerThatDiesAsItComesUpEndsItsTurnInTheCycle() {
        var coordinator = Self.coordinator(["a", "b"])
        Self.established(on: "a", &coordinator, at: .seconds(1))
        #expect(Self.drive(&coordinator, .peerDead("a"), at: .seconds(2)) == [.deleteSAs("a"), .initiate("b", attempt: 0)])
        _ = Self.drive(&coordinator, .childEstablished("b"), at: .seconds(2))
        #expect(Self.drive(&coordinator, .peerDead("b"), at: .seconds(3)) == [.deleteSAs("b")])
        guard case .backingOff(let backingOff) = coordinator.state else { Issue.record("not backing off: \(coordinator.state)"); return }
        #expect(backingOff.failedCycles == 1 && backingOff.until > .seconds(3))
        // The next cycle's early death backs off longer.
        _ = Self.drive(&coordinator, .timerFired, at: backingOff.until)
        _ = Self.drive(&coordinator, .childEstablished("a"), at: backingOff.until)
        _ = Self.drive(&coordinator, .peerDead("a"), at: backingOff.until + .seconds(1))
        _ = Self.drive(&coordinator, .childEstablished("b"), at: backingOff.until + .seconds(1))
        _ = Self.drive(&coordinator, .peerDead("b"), at: backingOff.until + .seconds(2))
        guard case .backingOff(let again) = coordinator.state else { Issue.record("not backing off: \(coordinator.state)"); return }
        #expect(again.failedCycles == 2)
        // A peer that lived longer than the attempt timeout starts a fresh cycle, as before.
        _ = Self.drive(&coordinator, .timerFired, at: again.until)
        _ = Self.drive(&coordinator, .childEstablished("a"), at: again.until)
        #expect(Self.drive(&coordinator, .peerDead("a"), at: again.until + .seconds(60)) == [.deleteSAs("a"), .initiate("b", attempt: 0)])
    }

    @Test func clearRemovesProtectionAndTrafficResumesWithTheNextPeer() {
        var coordinator = Self.coordinator(action: .clear)
        Self.established(on: "a", &coordinator)
        #expect(Self.drive(&coordinator, .peerDead("a"), at: .seconds(50)) == [.deleteSAs("a"), .clearProtection])
        #expect(coordinator.nextWakeup == nil)
        #expect(Self.drive(&coordinator, .trafficWaiting, at: .seconds(60)) == [.initiate("b", attempt: 0)])
    }

    @Test func holdKeepsThePoliciesAndRenegotiatesOnDemand() {
        var coordinator = Self.coordinator(action: .hold)
        Self.established(on: "b", &coordinator)
        #expect(Self.drive(&coordinator, .peerDead("b"), at: .seconds(50)) == [.deleteSAs("b"), .holdTraffic])
        guard case .idle(let idle) = coordinator.state else { Issue.record("not idle: \(coordinator.state)"); return }
        #expect(idle.protection == .held)
        #expect(Self.drive(&coordinator, .trafficWaiting, at: .seconds(60)) == [.initiate("c", attempt: 0)])
    }

    @Test func anAttemptThatTimesOutMovesOnAndAFailedCycleBacksOff() {
        var coordinator = Self.coordinator()
        _ = Self.drive(&coordinator, .start, at: .zero)
        #expect(coordinator.nextWakeup == .seconds(10))
        #expect(Self.drive(&coordinator, .timerFired, at: .seconds(10)) == [.abandonAttempt("a"), .initiate("b", attempt: 0)])
        #expect(Self.drive(&coordinator, .timerFired, at: .seconds(20)) == [.abandonAttempt("b"), .initiate("c", attempt: 0)])
        #expect(Self.drive(&coordinator, .timerFired, at: .seconds(30)) == [.abandonAttempt("c")])
        guard case .backingOff(let backingOff) = coordinator.state else { Issue.record("\(coordinator.state)"); return }
        #expect(backingOff.until >= .seconds(31) && backingOff.until <= .seconds(32))
        #expect(Self.drive(&coordinator, .timerFired, at: backingOff.until) == [.initiate("a", attempt: 1)])
    }

    @Test func backoffIsBoundedExponentialWithJitter() {
        let backoff = C.Backoff(initial: .seconds(2), maximum: .seconds(16))
        var random = SeededGenerator(seed: 3)
        for cycle in 1 ... 12 {
            let bound = min(Duration.seconds(2) * (1 << (cycle - 1)), .seconds(16))
            let delays = (0 ..< 50).map { _ in backoff.delay(afterFailedCycles: cycle, random: &random) }
            #expect(delays.allSatisfy { $0 >= bound / 2 && $0 <= bound })
            #expect(Set(delays).count > 1)   // jittered
        }
    }

    @Test func operatorFailoverIsMakeBeforeBreak() {
        var coordinator = Self.coordinator()
        Self.established(on: "a", &coordinator)
        #expect(Self.drive(&coordinator, .operatorFailover(to: "c"), at: .seconds(5)) == [.initiate("c", attempt: 0)])
        #expect(coordinator.activePeer == "a")
        #expect(Self.drive(&coordinator, .childEstablished("c"), at: .seconds(6))
                == [.programKernel("c", replacing: "a"), .deleteSAs("a")])
        #expect(coordinator.activePeer == "c")
        // A named peer that is not listed is refused.
        #expect(Self.drive(&coordinator, .operatorFailover(to: "z"), at: .seconds(7)) == [])
    }

    @Test func aFailedMoveReturnsToTheRetainedPeer() {
        var coordinator = Self.coordinator()
        Self.established(on: "a", &coordinator)
        _ = Self.drive(&coordinator, .operatorFailover(to: nil), at: .seconds(5))
        #expect(coordinator.negotiatingPeer == "b")
        #expect(Self.drive(&coordinator, .attemptFailed("b", reason: "NO_PROPOSAL_CHOSEN"), at: .seconds(6)) == [])
        #expect(coordinator.activePeer == "a" && coordinator.negotiatingPeer == nil)
    }

    @Test func operatorClearDropsEverything() {
        var coordinator = Self.coordinator()
        Self.established(on: "b", &coordinator)
        #expect(Self.drive(&coordinator, .operatorClear, at: .seconds(5)) == [.deleteSAs("b"), .clearProtection])
        #expect(coordinator.activePeer == nil)
        #expect(Self.drive(&coordinator, .start, at: .seconds(6)) == [.initiate("a", attempt: 0)])
    }

    @Test func idleTimeOnABackupSendsTheNextConnectionToThePreferredPeer() {
        var coordinator = Self.coordinator(preferred: "a", idleTime: .seconds(30))
        Self.established(on: "b", &coordinator, at: .seconds(1))
        _ = Self.drive(&coordinator, .activityObserved, at: .seconds(20))
        #expect(coordinator.nextWakeup == .seconds(50))
        #expect(Self.drive(&coordinator, .timerFired, at: .seconds(50)) == [.deleteSAs("b")])
        #expect(Self.drive(&coordinator, .trafficWaiting, at: .seconds(70)) == [.initiate("a", attempt: 0)])
    }

    @Test func idleTimeDoesNotTearDownThePreferredPeer() {
        var coordinator = Self.coordinator(preferred: "a", idleTime: .seconds(30))
        Self.established(on: "a", &coordinator)
        #expect(coordinator.nextWakeup == nil)
    }

    @Test func aListUpdateKeepsAStillListedActivePeerAndLeavesARemovedOneAtOnce() {
        var coordinator = Self.coordinator()
        Self.established(on: "b", &coordinator)
        #expect(Self.drive(&coordinator, .peerListUpdated(["c", "b"], preferred: nil), at: .seconds(5)) == [])
        #expect(coordinator.activePeer == "b")
        #expect(Self.drive(&coordinator, .peerListUpdated(["d", "c"], preferred: "c"), at: .seconds(6))
                == [.deleteSAs("b"), .initiate("d", attempt: 0)])
        #expect(coordinator.configuration.peers == ["d", "c"])
    }

    @Test func aDeathOfTheRetainedPeerDuringAMoveKeepsTheMoveGoing() {
        var coordinator = Self.coordinator()
        Self.established(on: "a", &coordinator)
        _ = Self.drive(&coordinator, .operatorFailover(to: "b"), at: .seconds(5))
        #expect(Self.drive(&coordinator, .peerDead("a"), at: .seconds(6)) == [.deleteSAs("a")])
        #expect(coordinator.activePeer == nil && coordinator.negotiatingPeer == "b")
        #expect(Self.drive(&coordinator, .childEstablished("b"), at: .seconds(7)) == [.programKernel("b", replacing: nil)])
    }

    @Test func preemptionProbesThePreferredPeerOnlyFromABackupAndMovesBackAfterTheHoldDown() {
        var coordinator = C(configuration: .init(
            peers: ["a", "b"], preferred: "a", attemptTimeout: .seconds(10), backoff: .init(initial: .seconds(2), maximum: .seconds(16)),
            preemption: .init(probeInterval: .seconds(5), holdDown: .seconds(10), maximumHoldDown: .seconds(60))))
        Self.established(on: "b", &coordinator, at: .seconds(1))
        #expect(coordinator.nextWakeup == .seconds(6))
        #expect(Self.drive(&coordinator, .timerFired, at: .seconds(6)) == [.probePhase1("a")])
        #expect(Self.drive(&coordinator, .phase1ProbeAnswered("a"), at: .seconds(6)) == [])
        // A failure of a probe sent before that answer is stale; an answer 10 s after the first completes the hold-down.
        #expect(Self.drive(&coordinator, .phase1ProbeFailed("a", probeSentAt: .seconds(5)), at: .seconds(7)) == [])
        #expect(Self.drive(&coordinator, .phase1ProbeAnswered("a"), at: .seconds(11)) == [])
        #expect(Self.drive(&coordinator, .phase1ProbeAnswered("a"), at: .seconds(16)) == [.initiate("a", attempt: 0)])
        #expect(coordinator.activePeer == "b")
        #expect(Self.drive(&coordinator, .childEstablished("a"), at: .seconds(17)) == [.programKernel("a", replacing: "b"), .deleteSAs("b")])
        // On the preferred peer nothing is probed.
        #expect(coordinator.nextWakeup == nil)
    }
}
