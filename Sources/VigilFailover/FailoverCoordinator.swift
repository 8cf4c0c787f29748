/// Failover over one crypto-map entry's ordered peer list (Cisco `set peer A`, `set peer B`, ...).
///
/// A pure state machine: the daemon feeds it events (from IKE, the dead peer detectors, the data plane and the
/// operator) with the monotonic time and injected randomness, and performs the returned actions in order. The
/// daemon keeps one timer per coordinator, armed by `.scheduleTimer(at:)` (also readable as `nextWakeup`), and
/// delivers `.timerFired` when it expires; early or stale firings are harmless.
///
/// Policy in one place:
/// - A *cycle* tries every listed peer once, in list order, wrapping round. A dead peer's cycle starts at the next
///   listed peer; an attempt that fails or does not complete within `attemptTimeout` moves on to the next peer (never
///   stuck on the first address: strongSwan issue #776). After a whole cycle fails the coordinator backs off
///   (bounded exponential with jitter) and starts the next cycle from the preferred peer, or the first listed.
/// - `restart` fails over at once; `clear` removes the protection and waits for traffic or the operator; `hold`
///   keeps the policies (traffic is held, not leaked in clear) and renegotiates on demand.
/// - Preferred peer (Cisco `set peer X default` + `set security-association idle-time`): after `idleTime` without
///   traffic on a backup peer the SAs go, and the next connection tries the preferred peer first.
/// - Optional preemption (beyond Cisco): while on a backup, the preferred peer gets a Phase 1 probe every
///   `probeInterval`; once it has answered for the hold-down, the coordinator moves back make-before-break. Every
///   flap (a preferred peer that stops answering, fails a preemption, or dies soon after one) doubles the hold-down
///   up to `maximumHoldDown`; a quiet `maximumHoldDown` forgets the flaps.
/// - Peer-list updates are atomic (see `Event.peerListUpdated`).
/// - Moves off a live peer (preemption, operator failover) are make-before-break: the old peer stays active until
///   the new one's Phase 2 is up (`.programKernel(new, replacing: old)`, then `.deleteSAs(old)`); a failed move
///   returns to the old peer. If the old peer dies meanwhile, its SAs go and the negotiation in flight continues as
///   the first attempt of a cycle (it is not abandoned to start over).
///
/// The daemon's side: perform the actions in order; map IKE results to `.phase1Established`, `.childEstablished`
/// and `.attemptFailed`, each detector's `.peerDead` to `.peerDead`, acquires to `.trafficWaiting`, SA traffic
/// counters to `.activityObserved`, Phase 1 probe outcomes to `.phase1ProbeAnswered`/`.phase1ProbeFailed`, and the
/// control API to the operator events. Peer lists are validated before they get here (non-empty, no duplicates,
/// preferred peer listed): an invalid one is a bug and stops the process.
public struct FailoverCoordinator<Peer: Hashable & Sendable>: Sendable {
    public enum DeadPeerAction: Hashable, Sendable {
        case restart
        case clear
        case hold
    }

    /// Bounded exponential backoff between failed cycles, with jitter in [delay/2, delay].
    public struct Backoff: Hashable, Sendable {
        public var initial: Duration
        public var maximum: Duration

        public init(initial: Duration, maximum: Duration) {
            precondition(initial > .zero && maximum >= initial, "backoff needs 0 < initial <= maximum")
            self.initial = initial
            self.maximum = maximum
        }

        /// The pause after the `failedCycles`-th consecutive failed cycle (1-based).
        public func delay(afterFailedCycles failedCycles: Int, random: inout some RandomNumberGenerator) -> Duration {
            let doublings = min(max(failedCycles - 1, 0), 30)
            let base = min(initial * (1 << doublings), maximum)
            return base * Double.random(in: 0.5 ... 1, using: &random)
        }
    }

    public struct Preemption: Hashable, Sendable {
        public var probeInterval: Duration
        public var holdDown: Duration
        public var maximumHoldDown: Duration

        public init(probeInterval: Duration, holdDown: Duration, maximumHoldDown: Duration) {
            precondition(probeInterval > .zero && holdDown >= .zero && maximumHoldDown >= holdDown,
                         "preemption needs a positive probe interval and holdDown <= maximumHoldDown")
            self.probeInterval = probeInterval
            self.holdDown = holdDown
            self.maximumHoldDown = maximumHoldDown
        }
    }

    public struct Configuration: Hashable, Sendable {
        public var peers: [Peer]
        public var preferred: Peer?
        public var deadPeerAction: DeadPeerAction
        public var attemptTimeout: Duration
        public var backoff: Backoff
        public var idleTime: Duration?
        public var preemption: Preemption?

        public init(peers: [Peer], preferred: Peer? = nil, deadPeerAction: DeadPeerAction = .restart,
                    attemptTimeout: Duration, backoff: Backoff, idleTime: Duration? = nil, preemption: Preemption? = nil) {
            Self.validate(peers, preferred)
            self.peers = peers
            self.preferred = preferred
            self.deadPeerAction = deadPeerAction
            self.attemptTimeout = attemptTimeout
            self.backoff = backoff
            self.idleTime = idleTime
            self.preemption = preemption
        }

        static func validate(_ peers: [Peer], _ preferred: Peer?) {
            precondition(!peers.isEmpty && Set(peers).count == peers.count, "a peer list is non-empty and unique")
            precondition(preferred.map(peers.contains) ?? true, "the preferred peer is one of the listed peers")
        }
    }

    public enum Event: Hashable, Sendable {
        /// The entry is brought up (auto start), or the operator asks for it after a clear.
        case start
        case phase1Established(Peer)
        /// The first Phase 2 SA is up: the attempt is complete.
        case childEstablished(Peer)
        /// The negotiation failed (rejected proposal, authentication failure, no response given up by IKE).
        case attemptFailed(Peer, reason: String)
        /// A dead peer detector declared `Peer` dead.
        case peerDead(Peer)
        /// An acquire: traffic needs an SA and none is up.
        case trafficWaiting
        /// Traffic flowed on the established SAs (resets the idle-time clock).
        case activityObserved
        case operatorClear
        /// Move to the named peer, or to the next listed one.
        case operatorFailover(to: Peer?)
        /// The new list replaces the old atomically: the active peer keeps its SAs if still listed, is left at once
        /// for the first listed peer if not; a negotiation in flight with a still-listed peer is kept (not repeated),
        /// one with a removed peer is abandoned and replaced (not lost).
        case peerListUpdated([Peer], preferred: Peer?)
        case phase1ProbeAnswered(Peer)
        /// A probe sent at `probeSentAt` got no answer; a failure of a probe sent before the latest answer is stale.
        case phase1ProbeFailed(Peer, probeSentAt: Duration)
        /// A listed peer negotiated Phase 1 and Phase 2 with us as responder (it initiated).
        case peerConnected(Peer)
        case timerFired
    }

    public enum Action: Hashable, Sendable {
        /// Start Phase 1 with `Peer`; `attempt` is the cycle number (0 for the first cycle of an episode).
        case initiate(Peer, attempt: Int)
        /// Stop the negotiation with `Peer` and forget its half-open SAs.
        case abandonAttempt(Peer)
        case deleteSAs(Peer)
        /// Point the entry's policies at `Peer`'s SAs; `replacing` was the active peer (make-before-break).
        case programKernel(Peer, replacing: Peer?)
        /// Keep the policies with no SA: traffic is held (dropped or queued), never sent in clear.
        case holdTraffic
        /// Remove the entry's SAs and policies.
        case clearProtection
        /// Probe the preferred peer's Phase 1 (an IKE_SA_INIT or Main Mode first message that is not pursued).
        case probePhase1(Peer)
        case scheduleTimer(at: Duration)
        case emit(Notice)
    }

    /// A record for logs and the control API.
    public struct Notice: Hashable, Sendable {
        public enum Kind: String, Hashable, Sendable {
            case attemptStarted, phase1Established, established, attemptFailed, attemptTimedOut, peerDead
            case cycleFailed, backoffEnded, cleared, held, idleTimeout, preempting, preemptionAbandoned
            case listUpdated, operatorFailover, rejected
        }

        public var kind: Kind
        public var peer: Peer?
        public var reason: String
        public var at: Duration
    }

    // MARK: States

    public enum Protection: Hashable, Sendable {
        /// Policies in place (trap): traffic raises `.trafficWaiting`.
        case trap
        case held
        case cleared
    }

    public struct Idle: Hashable, Sendable {
        /// The next cycle starts after this peer (the one that died), if it is still listed.
        var resumeAfter: Peer?
        var preferredFirst: Bool
        public var protection: Protection
    }

    public enum AttemptKind: Hashable, Sendable {
        /// Part of a cycle: a failure moves to the next listed peer.
        case cycle
        /// Make-before-break move off a live `retained` peer: a failure returns to it.
        case preemption
        case operatorMove
    }

    public struct Connecting: Hashable, Sendable {
        public var peer: Peer
        /// The cycle number, given to `.initiate`.
        public var attempt: Int
        /// Peers tried in this cycle, this one included.
        var tried: Int
        public var deadline: Duration
        public var phase1Up = false
        /// The still-active peer in a make-before-break move.
        public var retained: Peer?
        public var kind: AttemptKind
    }

    public struct Established: Hashable, Sendable {
        public var peer: Peer
        public var since: Duration
        /// The cycle that brought the peer up (its number, and peers tried in it): a peer that dies within
        /// `attemptTimeout` of coming up counts as a failed attempt of that cycle, so a peer that comes up and at once
        /// goes down (deletes every SA it agrees to, or is killed as it answers) moves the entry down the list and
        /// into back-off, never round a loop at network speed.
        var cycle: Int
        var triedInCycle: Int
        var lastActivity: Duration
        /// When the preferred peer started answering Phase 1 probes without a failure since (preemption).
        var preferredAnsweringSince: Duration?
        var nextProbe: Duration?
    }

    public struct BackingOff: Hashable, Sendable {
        public var until: Duration
        public var failedCycles: Int
    }

    public enum State: Hashable, Sendable {
        case idle(Idle)
        case connecting(Connecting)
        case established(Established)
        case backingOff(BackingOff)
    }

    public private(set) var configuration: Configuration
    public private(set) var state: State
    /// Flap damping of the preferred peer.
    private var flaps = 0
    private var lastFlap: Duration?
    private var scheduled: Duration?

    public init(configuration: Configuration) {
        self.configuration = configuration
        self.state = .idle(Idle(resumeAfter: nil, preferredFirst: true, protection: .trap))
    }

    /// The one peer whose SAs carry the entry's traffic, if any.
    public var activePeer: Peer? {
        switch state {
        case .idle, .backingOff: nil
        case .connecting(let connecting): connecting.retained
        case .established(let established): established.peer
        }
    }

    /// The peer a negotiation is in flight with, if any.
    public var negotiatingPeer: Peer? {
        if case .connecting(let connecting) = state { return connecting.peer }
        return nil
    }

    public var nextWakeup: Duration? {
        switch state {
        case .idle: return nil
        case .connecting(let connecting): return connecting.deadline
        case .backingOff(let backingOff): return backingOff.until
        case .established(let established):
            return [idleDeadline(established), established.nextProbe].compactMap { $0 }.min()
        }
    }

    public mutating func handle(_ event: Event, now: Duration, random: inout some RandomNumberGenerator) -> [Action] {
        var out = Output(now: now)
        switch event {
        case .start:
            if case .idle(let idle) = state { beginCycle(at: startIndex(idle), failedCycles: 0, &out, "start") }
        case .phase1Established(let peer):
            if case .connecting(var connecting) = state, connecting.peer == peer {
                connecting.phase1Up = true
                state = .connecting(connecting)
                out.notice(.phase1Established, peer, "Phase 1 up")
            }
        case .childEstablished(let peer):
            if case .connecting(let connecting) = state, connecting.peer == peer { complete(connecting, &out) }
        case .attemptFailed(let peer, let reason):
            if case .connecting(let connecting) = state, connecting.peer == peer {
                attemptOver(connecting, .attemptFailed, reason, &out, &random)
            }
        case .peerDead(let peer):
            peerDead(peer, &out, &random)
        case .trafficWaiting:
            switch state {
            case .idle(let idle): beginCycle(at: startIndex(idle), failedCycles: 0, &out, "traffic waiting")
            case .established(var established):
                established.lastActivity = now
                state = .established(established)
            case .connecting, .backingOff: break
            }
        case .activityObserved:
            if case .established(var established) = state {
                established.lastActivity = now
                state = .established(established)
            }
        case .operatorClear:
            leave(&out)
            out.actions.append(.clearProtection)
            state = .idle(Idle(resumeAfter: nil, preferredFirst: true, protection: .cleared))
            out.notice(.cleared, nil, "operator clear")
        case .operatorFailover(let target):
            operatorFailover(to: target, &out)
        case .peerListUpdated(let peers, let preferred):
            updateList(peers, preferred, &out)
        case .phase1ProbeAnswered(let peer):
            // Preempt on an answer that completes the hold-down (never on a timer: the peer may have gone since).
            if case .established(var established) = state, peer == configuration.preferred, peer != established.peer {
                if established.preferredAnsweringSince == nil { established.preferredAnsweringSince = now }
                state = .established(established)
                if let due = preemptionDue(established), due <= now { preempt(established, &out) }
            }
        case .phase1ProbeFailed(let peer, let sentAt):
            if case .established(var established) = state, peer == configuration.preferred,
               let answering = established.preferredAnsweringSince, sentAt >= answering {
                established.preferredAnsweringSince = nil
                state = .established(established)
                flap(now)
            }
        case .peerConnected(let peer):
            peerConnected(peer, &out)
        case .timerFired:
            timerFired(&out, &random)
        }
        let wakeup = nextWakeup
        if let wakeup, wakeup != scheduled { out.actions.append(.scheduleTimer(at: wakeup)) }
        scheduled = wakeup
        return out.actions
    }

    // MARK: Transitions

    private struct Output {
        let now: Duration
        var actions: [Action] = []

        mutating func notice(_ kind: Notice.Kind, _ peer: Peer?, _ reason: String) {
            actions.append(.emit(Notice(kind: kind, peer: peer, reason: reason, at: now)))
        }
    }

    private var peers: [Peer] { configuration.peers }

    private func index(after peer: Peer?) -> Int? {
        guard let peer, let index = peers.firstIndex(of: peer) else { return nil }
        return (index + 1) % peers.count
    }

    /// Where a fresh cycle starts: the preferred peer, or the first listed.
    private var preferredIndex: Int {
        configuration.preferred.flatMap(peers.firstIndex(of:)) ?? 0
    }

    private func startIndex(_ idle: Idle) -> Int {
        if idle.preferredFirst { return preferredIndex }
        return index(after: idle.resumeAfter) ?? preferredIndex
    }

    private mutating func beginCycle(at index: Int, failedCycles: Int, _ out: inout Output, _ reason: String) {
        initiate(Connecting(peer: peers[index], attempt: failedCycles, tried: 1,
                            deadline: out.now + configuration.attemptTimeout, retained: nil, kind: .cycle), &out, reason)
    }

    private mutating func initiate(_ connecting: Connecting, _ out: inout Output, _ reason: String) {
        state = .connecting(connecting)
        out.actions.append(.initiate(connecting.peer, attempt: connecting.attempt))
        out.notice(.attemptStarted, connecting.peer, reason)
    }

    private mutating func complete(_ connecting: Connecting, _ out: inout Output) {
        out.actions.append(.programKernel(connecting.peer, replacing: connecting.retained))
        if let retained = connecting.retained { out.actions.append(.deleteSAs(retained)) }
        state = .established(established(on: connecting.peer, now: out.now, cycle: connecting.attempt, tried: connecting.tried))
        out.notice(.established, connecting.peer, connecting.retained.map { "moved from \($0)" } ?? "established")
    }

    /// A listed peer came up as initiator. Idle or backing off: it becomes the active peer. Connecting elsewhere: the
    /// peer that reached us wins and our own attempt is abandoned (one active peer per entry). Established with
    /// another peer: the newcomer is refused (its SAs deleted) so the entry never has two active peers.
    private mutating func peerConnected(_ peer: Peer, _ out: inout Output) {
        guard peers.contains(peer) else {
            out.actions.append(.deleteSAs(peer))
            out.notice(.rejected, peer, "not a listed peer")
            return
        }
        switch state {
        case .idle, .backingOff:
            complete(Connecting(peer: peer, attempt: 0, tried: 1, deadline: out.now, retained: nil, kind: .cycle), &out)
        case .connecting(let connecting):
            if connecting.peer != peer { out.actions.append(.abandonAttempt(connecting.peer)) }
            complete(Connecting(peer: peer, attempt: connecting.attempt, tried: connecting.tried, deadline: out.now,
                                retained: connecting.retained == peer ? nil : connecting.retained, kind: connecting.kind), &out)
        case .established(let established):
            if established.peer != peer {
                out.actions.append(.deleteSAs(peer))
                out.notice(.rejected, peer, "\(established.peer) is the active peer")
            }
        }
    }

    /// A failed or timed-out attempt: back to the retained peer, on to the next listed peer, or back off.
    private mutating func attemptOver(_ connecting: Connecting, _ kind: Notice.Kind, _ reason: String,
                                      _ out: inout Output, _ random: inout some RandomNumberGenerator) {
        out.notice(kind, connecting.peer, reason)
        if connecting.phase1Up || kind == .attemptTimedOut { out.actions.append(.abandonAttempt(connecting.peer)) }
        if let retained = connecting.retained {
            if connecting.peer == configuration.preferred { flap(out.now) }
            stay(with: retained, abandoning: connecting.peer, "attempt over", &out)
            return
        }
        continueCycle(after: connecting.peer, cycle: connecting.attempt, tried: connecting.tried, &out, &random, "next listed peer")
    }

    /// The next listed peer in the running cycle, or, when every peer has had its turn, back-off.
    private mutating func continueCycle(after peer: Peer, cycle: Int, tried: Int, _ out: inout Output,
                                        _ random: inout some RandomNumberGenerator, _ reason: String) {
        if tried < peers.count, let next = index(after: peer) {
            initiate(Connecting(peer: peers[next], attempt: cycle, tried: tried + 1,
                                deadline: out.now + configuration.attemptTimeout, retained: nil, kind: .cycle),
                     &out, reason)
            return
        }
        let failedCycles = cycle + 1
        let until = out.now + configuration.backoff.delay(afterFailedCycles: failedCycles, random: &random)
        state = .backingOff(BackingOff(until: until, failedCycles: failedCycles))
        out.notice(.cycleFailed, nil, "all \(peers.count) peers failed; retry at \(until)")
    }

    /// A fresh established state; Phase 1 probes of the preferred peer only while on a backup with preemption on.
    private func established(on peer: Peer, now: Duration, cycle: Int = 0, tried: Int = 1) -> Established {
        Established(peer: peer, since: now, cycle: cycle, triedInCycle: tried, lastActivity: now, preferredAnsweringSince: nil,
                    nextProbe: nextPreemptionProbe(on: peer, now: now))
    }

    private func nextPreemptionProbe(on peer: Peer, now: Duration) -> Duration? {
        guard let preemption = configuration.preemption, let preferred = configuration.preferred, preferred != peer else { return nil }
        return now + preemption.probeInterval
    }

    /// Ends a make-before-break move: the retained peer stays active.
    private mutating func stay(with retained: Peer, abandoning peer: Peer, _ reason: String, _ out: inout Output) {
        state = .established(established(on: retained, now: out.now))
        out.notice(.preemptionAbandoned, peer, "\(reason); staying with \(retained)")
    }

    private mutating func peerDead(_ peer: Peer, _ out: inout Output, _ random: inout some RandomNumberGenerator) {
        switch state {
        case .idle, .backingOff:
            return
        case .connecting(var connecting):
            if connecting.retained == peer {
                out.actions.append(.deleteSAs(peer))
                out.notice(.peerDead, peer, "died during a move to \(connecting.peer)")
                connecting.retained = nil
                connecting.kind = .cycle
                connecting.tried = 1
                state = .connecting(connecting)
            } else if connecting.peer == peer {
                attemptOver(connecting, .attemptFailed, "declared dead while negotiating", &out, &random)
            }
        case .established(let established):
            guard established.peer == peer else { return }
            if peer == configuration.preferred, let preemption = configuration.preemption,
               out.now - established.since < preemption.maximumHoldDown {
                flap(out.now)
            }
            out.actions.append(.deleteSAs(peer))
            out.notice(.peerDead, peer, "dead peer detection")
            switch configuration.deadPeerAction {
            case .restart:
                let lived = out.now - established.since
                if lived < configuration.attemptTimeout {
                    continueCycle(after: peer, cycle: established.cycle, tried: established.triedInCycle, &out, &random,
                                  "failover from \(peer), dead \(lived) after it came up")
                } else {
                    beginCycle(at: index(after: peer) ?? preferredIndex, failedCycles: 0, &out, "failover from \(peer)")
                }
            case .clear:
                out.actions.append(.clearProtection)
                state = .idle(Idle(resumeAfter: peer, preferredFirst: false, protection: .cleared))
                out.notice(.cleared, peer, "dead peer action clear")
            case .hold:
                out.actions.append(.holdTraffic)
                state = .idle(Idle(resumeAfter: peer, preferredFirst: false, protection: .held))
                out.notice(.held, peer, "dead peer action hold")
            }
        }
    }

    /// Drops whatever the entry holds (SAs, a negotiation in flight).
    private func leave(_ out: inout Output) {
        switch state {
        case .idle, .backingOff:
            break
        case .connecting(let connecting):
            out.actions.append(.abandonAttempt(connecting.peer))
            if let retained = connecting.retained { out.actions.append(.deleteSAs(retained)) }
        case .established(let established):
            out.actions.append(.deleteSAs(established.peer))
        }
    }

    private mutating func operatorFailover(to target: Peer?, _ out: inout Output) {
        if let target, !peers.contains(target) {
            out.notice(.rejected, target, "operator failover to a peer that is not listed")
            return
        }
        switch state {
        case .established(let established):
            let next = target ?? peers[index(after: established.peer) ?? 0]
            guard next != established.peer else {
                out.notice(.rejected, next, "already the active peer")
                return
            }
            out.notice(.operatorFailover, next, "make-before-break from \(established.peer)")
            initiate(Connecting(peer: next, attempt: 0, tried: 1, deadline: out.now + configuration.attemptTimeout,
                                retained: established.peer, kind: .operatorMove), &out, "operator failover")
        case .connecting(let connecting):
            let next = target ?? peers[index(after: connecting.peer) ?? 0]
            guard next != connecting.peer else { return }
            out.actions.append(.abandonAttempt(connecting.peer))
            if let retained = connecting.retained, next == retained {
                stay(with: retained, abandoning: connecting.peer, "operator failover back to \(retained)", &out)
                return
            }
            out.notice(.operatorFailover, next, "abandoning \(connecting.peer)")
            var moved = connecting
            moved.peer = next
            moved.tried = 1
            moved.phase1Up = false
            moved.deadline = out.now + configuration.attemptTimeout
            initiate(moved, &out, "operator failover")
        case .idle, .backingOff:
            out.notice(.operatorFailover, target, "operator start")
            beginCycle(at: target.flatMap(peers.firstIndex(of:)) ?? preferredIndex, failedCycles: 0, &out, "operator failover")
        }
    }

    private mutating func updateList(_ newPeers: [Peer], _ preferred: Peer?, _ out: inout Output) {
        Configuration.validate(newPeers, preferred)
        configuration.peers = newPeers
        configuration.preferred = preferred
        out.notice(.listUpdated, nil, "\(newPeers.count) peers")
        switch state {
        case .idle(var idle):
            if let after = idle.resumeAfter, !newPeers.contains(after) { idle.resumeAfter = nil }
            state = .idle(idle)
        case .backingOff:
            break
        case .established(var established):
            if newPeers.contains(established.peer) {
                established.preferredAnsweringSince = nil   // the preferred peer may have changed: start over
                established.nextProbe = nextPreemptionProbe(on: established.peer, now: out.now)
                state = .established(established)
                return
            }
            out.actions.append(.deleteSAs(established.peer))
            beginCycle(at: 0, failedCycles: 0, &out, "\(established.peer) removed from the list")
        case .connecting(var connecting):
            if let retained = connecting.retained, !newPeers.contains(retained) {
                out.actions.append(.deleteSAs(retained))
                connecting.retained = nil
                connecting.kind = .cycle
            }
            if newPeers.contains(connecting.peer) {
                connecting.tried = 1   // the cycle now runs over the new list from here
                state = .connecting(connecting)
                return
            }
            out.actions.append(.abandonAttempt(connecting.peer))
            if let retained = connecting.retained {
                stay(with: retained, abandoning: connecting.peer, "removed from the list", &out)
            } else {
                beginCycle(at: 0, failedCycles: connecting.attempt, &out, "\(connecting.peer) removed from the list")
            }
        }
    }

    private mutating func timerFired(_ out: inout Output, _ random: inout some RandomNumberGenerator) {
        switch state {
        case .idle:
            break
        case .connecting(let connecting):
            if out.now >= connecting.deadline {
                attemptOver(connecting, .attemptTimedOut, "no answer within \(configuration.attemptTimeout)", &out, &random)
            }
        case .backingOff(let backingOff):
            if out.now >= backingOff.until {
                out.notice(.backoffEnded, nil, "cycle \(backingOff.failedCycles)")
                beginCycle(at: preferredIndex, failedCycles: backingOff.failedCycles, &out, "new cycle after backoff")
            }
        case .established(var established):
            if let deadline = idleDeadline(established), out.now >= deadline {
                out.actions.append(.deleteSAs(established.peer))
                state = .idle(Idle(resumeAfter: nil, preferredFirst: true, protection: .trap))
                out.notice(.idleTimeout, established.peer, "idle on a backup peer; next connection tries the preferred peer")
                return
            }
            if let probe = established.nextProbe, out.now >= probe, let preferred = configuration.preferred {
                out.actions.append(.probePhase1(preferred))
                established.nextProbe = nextPreemptionProbe(on: established.peer, now: out.now)
                state = .established(established)
            }
        }
    }

    private func idleDeadline(_ established: Established) -> Duration? {
        guard let idleTime = configuration.idleTime, let preferred = configuration.preferred,
              preferred != established.peer else { return nil }
        return established.lastActivity + idleTime
    }

    /// The hold-down with flap damping: doubled per recent flap, capped; flaps are forgotten after a quiet maximum.
    private func holdDown(_ preemption: Preemption, now: Duration) -> Duration {
        guard let lastFlap, now - lastFlap < preemption.maximumHoldDown else { return preemption.holdDown }
        return min(preemption.holdDown * (1 << min(flaps, 30)), preemption.maximumHoldDown)
    }

    private func preemptionDue(_ established: Established) -> Duration? {
        guard let preemption = configuration.preemption, let since = established.preferredAnsweringSince else { return nil }
        return since + holdDown(preemption, now: since)
    }

    private mutating func flap(_ now: Duration) {
        if let lastFlap, let preemption = configuration.preemption, now - lastFlap >= preemption.maximumHoldDown { flaps = 0 }
        flaps += 1
        lastFlap = now
    }

    private mutating func preempt(_ established: Established, _ out: inout Output) {
        guard let preferred = configuration.preferred else { return }
        out.notice(.preempting, preferred, "answered Phase 1 probes for the hold-down")
        initiate(Connecting(peer: preferred, attempt: 0, tried: 1, deadline: out.now + configuration.attemptTimeout,
                            retained: established.peer, kind: .preemption), &out, "preemption")
    }
}
