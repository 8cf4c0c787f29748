/// Dead peer detection for one active IKE SA: RFC 3706 (IKEv1 R-U-THERE) and RFC 7296 §2.4 (IKEv2 liveness check).
///
/// A pure state machine. The daemon feeds it events with the current monotonic time and performs the action it
/// returns; after every call it (re)arms one timer at `nextWakeup` and delivers `.timerFired` then. Nothing here
/// reads a clock, sends a packet or allocates on the hot path (`handle` returns at most one action).
///
/// ## The schedule (the bounds the simulation checks)
///
/// Let `P` be the last proof of life (an authenticated IKE message, a valid acknowledgement, inbound ESP traffic, or
/// the establishment of the SA). A probe run starts at its *origin*:
/// - `.periodic`: `origin = P + interval`, whether or not we have traffic to send (Cisco `periodic`).
/// - `.onIdle`: `origin = P + interval`, whether or not we send (FortiGate `dpd on-idle`, strongSwan's `dpd_delay`:
///   "only enforced if no IKE or ESP/AH packet has been received"). Only what arrives from the peer counts; our own
///   sending neither starts nor postpones a run. Vigil's `.periodic` has always been scheduled from the last proof of
///   life too (not on a fixed cadence as Cisco IOS sends it), so the two share this schedule: `.onIdle` is the name
///   FortiGate and strongSwan operators know, kept apart so that either may change without the other.
/// - `.onDemand`: `origin = max(P + interval, O)` where `O` is the first outbound traffic after `P` (RFC 3706 §5.4,
///   Cisco's default). With no outbound traffic after `P` there is no run at all: a peer that sends nothing while we
///   send nothing is never probed.
///
/// In a run, probe number `a` (`attempt` 0 is the first probe, 1... are the aggressive retries) goes out at
/// `origin + a × retry` for `a` in `0 ..< retries`, and the peer is declared dead at `origin + retries × retry`
/// when no proof of life arrived meanwhile: the `retries`-th unanswered probe's own retry slot.
///
/// A death needs its probes: every one of the `retries` probes actually sent (or stood in for by an exchange in
/// flight, below), each given its full retry interval. A late timer (a loaded loop) therefore sends the next probe
/// rather than skipping slots or declaring a death nobody was asked about: probe `a` goes out at
/// `max(origin + a × retry, previous probe + retry)` and the death at `max(origin + retries × retry, last probe +
/// retry)`. On time, both are the schedule above.
///
/// Example, periodic, interval 10 s, retry 2 s, retries 5, last proof at 0 s: probes at 10, 12, 14, 16, 18 s
/// (attempts 0...4), dead at 10 + 5 × 2 = 20 s after the last proof. Any proof of life cancels the run.
///
/// ## Exchanges in flight
/// While another exchange with the peer is in flight (rekey, delete: `.exchangeStarted` ... `.exchangeCompleted`)
/// no probe is sent: that exchange's own retransmissions are the probes, and its answer is the proof of life. The
/// clock keeps running though, so a peer that dies during a rekey is still declared dead at `origin + retries ×
/// retry`; of the probe slots that fell inside the exchange the exchange stood in for all but the latest, which is
/// sent as soon as the exchange completes without an answer, and the schedule goes on from that slot.
///
/// ## Probe numbering
/// IKEv1 (RFC 3706 §6, replay resistance): the first R-U-THERE of an IKE SA carries a random sequence number with the
/// top bit clear (``Configuration/randomFirstSequence(using:)``), and each later R-U-THERE carries the previous number
/// plus one, **retries included**. RFC 3706 leaves the retry case open: its implementation suggestion (§5.5) has the
/// sender retry after a missed R-U-THERE-ACK without saying whether a retry reuses the number, while its replay and
/// security text (§6, §7) rests the protection against a replayed or forged ACK on each R-U-THERE carrying a number
/// the sender has not used before and on matching the ACK against it. Implementations differ; strongSwan and racoon
/// send a fresh, incremented R-U-THERE per retry, and so do we: a retry is then never confused with its original, and
/// a peer answers a new number whatever it does with repeats. An acknowledgement counts when it echoes the number of
/// *any* probe of the latest run (a late ACK to an earlier retry is still the peer's authenticated answer to a number
/// we chose), also after another proof of life ended that run; a number from an older run, or one never sent, is
/// stale and ignored. The daemon puts both ISAKMP cookies in the notify's SPI field (RFC 3706 §5.3).
///
/// IKEv2: a probe is an empty INFORMATIONAL request. All probes of one run share one `sequence` (a run counter, not
/// a Message ID); the daemon turns a retry into a retransmission of the same outstanding request, on this
/// detector's own per-peer schedule rather than a daemon-wide retransmit setting.
public struct DeadPeerDetector: Sendable {
    /// Everything the daemon maps from its configuration; validated there, so an invalid value is our bug.
    public struct Configuration: Hashable, Sendable {
        public enum Mode: Hashable, Sendable {
            /// Probe whenever nothing arrived for `interval` (Cisco `crypto isakmp keepalive ... periodic`).
            case periodic
            /// Probe whenever nothing arrived for `interval`, whatever we send (FortiGate `on-idle`, strongSwan).
            case onIdle
            /// Probe only when we have traffic to send and nothing arrived for `interval` (RFC 3706, Cisco default).
            case onDemand
            /// Never probe; the detector only records proof of life.
            case off
        }

        public enum ProbeFlavour: Hashable, Sendable {
            /// R-U-THERE notifies; `firstSequence` has its top bit clear (RFC 3706 §6.2).
            case ikev1(firstSequence: UInt32)
            /// Empty INFORMATIONAL requests (RFC 7296 §2.4).
            case ikev2
        }

        public var mode: Mode
        /// Silence from the peer that starts a probe run (Cisco keepalive seconds, RFC 3706 "worry metric").
        public var interval: Duration
        /// Spacing of the aggressive retries.
        public var retry: Duration
        /// Probes per run, the first included; death follows the last one by `retry`.
        public var retries: Int
        public var flavour: ProbeFlavour

        public init(mode: Mode, interval: Duration, retry: Duration, retries: Int = Liveness.defaultRetries,
                    flavour: ProbeFlavour) {
            precondition(interval > .zero && retry > .zero, "DPD interval and retry must be positive")
            precondition(retries >= 1, "DPD needs at least one probe before declaring death")
            if case .ikev1(let first) = flavour {
                precondition(first & Liveness.sequenceTopBit == 0, "RFC 3706 §6.2: first sequence has its top bit clear")
            }
            self.mode = mode
            self.interval = interval
            self.retry = retry
            self.retries = retries
            self.flavour = flavour
        }

        /// Time from the start of a probe run to the declaration of death.
        public var runLength: Duration { retry * retries }

        /// A random first R-U-THERE sequence number with the top bit clear (RFC 3706 §6.2).
        public static func randomFirstSequence(using random: inout some RandomNumberGenerator) -> UInt32 {
            UInt32.random(in: 0 ... ~Liveness.sequenceTopBit, using: &random)
        }
    }

    public enum Event: Hashable, Sendable {
        /// An authenticated IKE message from the peer (any exchange): proof of life (RFC 7296 §2.4).
        case authenticatedMessageReceived
        /// The data plane's inbound packet counter for this peer's SAs; a change since the last value is proof of life.
        case inboundTrafficObserved(packets: UInt64)
        /// We have traffic to send to the peer now (drives `.onDemand`).
        case outboundTrafficPending
        /// An R-U-THERE-ACK or INFORMATIONAL response echoing `sequence`.
        case probeAcknowledged(sequence: UInt32)
        /// Another exchange with the peer (rekey, delete) started; probes wait for it.
        case exchangeStarted
        /// That exchange ended (answered or given up); an answer also arrives as `.authenticatedMessageReceived`.
        case exchangeCompleted
        /// The timer armed at `nextWakeup` expired (early or spurious firings are harmless).
        case timerFired
    }

    public enum Action: Hashable, Sendable {
        /// IKEv1: send R-U-THERE with `sequence`. IKEv2: `attempt` 0 sends a new empty INFORMATIONAL request,
        /// later attempts retransmit it.
        case sendProbe(sequence: UInt32, attempt: Int)
        case peerDead(Death)
    }

    public struct Death: Hashable, Sendable {
        /// The last proof of life.
        public var lastProofOfLife: Duration
        /// Probes sent in the final run (fewer than `retries` when an exchange in flight stood in for them).
        public var probesSent: Int
        /// When the death was declared.
        public var declaredAt: Duration
    }

    /// A probe run in progress.
    struct ProbeRun: Hashable, Sendable {
        var origin: Duration
        /// The next attempt number to send; slots before it were sent or stood in for by an exchange in flight.
        var nextAttempt: Int
        /// Sequence of attempt 0 (IKEv1) or the run's id (IKEv2).
        var firstSequence: UInt32
        var probesSent: Int
        /// When the latest probe of this run went out: the next probe and the death each wait a retry after it.
        var lastProbeAt: Duration?
    }

    enum Phase: Hashable, Sendable {
        case watching
        case probing(ProbeRun)
        case dead
    }

    public let configuration: Configuration
    private(set) var phase: Phase
    public private(set) var lastProofOfLife: Duration
    /// Last outbound traffic (for `.onDemand`); nil when none since the start.
    private var lastOutbound: Duration?
    private var inboundPackets: UInt64 = 0
    private var exchangesInFlight = 0
    /// The sequence the next IKEv1 R-U-THERE (or next IKEv2 run) takes.
    private var nextSequence: UInt32
    /// The sequences an acknowledgement may echo: those of the latest run's probes (kept after the run ends, so a
    /// late answer still counts; replaced when the next run sends its first probe).
    private var firstAcceptableSequence: UInt32 = 0
    private var acceptableAcks: UInt32 = 0

    /// A detector for an SA established at `now` (the establishment is the first proof of life).
    public init(configuration: Configuration, establishedAt now: Duration) {
        self.configuration = configuration
        self.phase = .watching
        self.lastProofOfLife = now
        switch configuration.flavour {
        case .ikev1(let first): nextSequence = first
        case .ikev2: nextSequence = 0
        }
    }

    public var isDead: Bool { phase == .dead }

    /// When the daemon must deliver `.timerFired`; nil when no timer is needed.
    public var nextWakeup: Duration? {
        switch phase {
        case .dead:
            return nil
        case .watching:
            return runOrigin
        case .probing(let run):
            if exchangesInFlight > 0 || run.nextAttempt >= configuration.retries { return deathTime(run) }
            return probeTime(run)
        }
    }

    /// When the run's next probe may go out: its slot, and a full retry after the previous probe.
    private func probeTime(_ run: ProbeRun) -> Duration {
        let slot = run.origin + configuration.retry * run.nextAttempt
        guard let last = run.lastProbeAt else { return slot }
        return max(slot, last + configuration.retry)
    }

    /// When the run ends in a death once all its probes are out: the schedule's end, and a full retry after the last.
    private func deathTime(_ run: ProbeRun) -> Duration {
        let end = run.origin + configuration.runLength
        guard let last = run.lastProbeAt else { return end }
        return max(end, last + configuration.retry)
    }

    /// While an exchange is in flight its retransmissions stand in for the probe slots that came: all of them once
    /// the schedule has run out, otherwise all but the latest (sent when the exchange completes unanswered).
    private func standIn(_ run: inout ProbeRun, now: Duration) {
        guard exchangesInFlight > 0 else { return }
        if now - run.origin >= configuration.runLength {
            run.nextAttempt = configuration.retries
            return
        }
        var come = run.nextAttempt   // slots whose time has come (exact Duration arithmetic, no division)
        while come < configuration.retries, run.origin + configuration.retry * come <= now { come += 1 }
        run.nextAttempt = max(run.nextAttempt, come - 1)
    }

    public mutating func handle(_ event: Event, now: Duration) -> Action? {
        if case .dead = phase { return nil }
        switch event {
        case .authenticatedMessageReceived:
            proofOfLife(now)
        case .inboundTrafficObserved(let packets):
            if packets != inboundPackets {
                inboundPackets = packets
                proofOfLife(now)
            }
        case .outboundTrafficPending:
            if lastOutbound.map({ $0 < now }) ?? true { lastOutbound = now }
        case .probeAcknowledged(let sequence):
            if acceptableAcks > 0, sequence &- firstAcceptableSequence < acceptableAcks { proofOfLife(now) }
        case .exchangeStarted:
            exchangesInFlight += 1
        case .exchangeCompleted:
            precondition(exchangesInFlight > 0, "exchangeCompleted without exchangeStarted")
            if case .probing(var run) = phase {
                standIn(&run, now: now)
                phase = .probing(run)
            }
            exchangesInFlight -= 1
        case .timerFired:
            break
        }
        return advance(now: now, exchangeJustCompleted: event == .exchangeCompleted)
    }

    private mutating func proofOfLife(_ now: Duration) {
        if now > lastProofOfLife { lastProofOfLife = now }
        if case .probing = phase { phase = .watching }
    }

    /// The origin of the next probe run while watching (see the type's documentation), nil for none.
    private var runOrigin: Duration? {
        let quietUntil = lastProofOfLife + configuration.interval
        switch configuration.mode {
        case .off: return nil
        case .periodic, .onIdle: return quietUntil
        case .onDemand:
            guard let outbound = lastOutbound, outbound > lastProofOfLife else { return nil }
            return max(quietUntil, outbound)
        }
    }

    private mutating func advance(now: Duration, exchangeJustCompleted: Bool) -> Action? {
        var run: ProbeRun
        switch phase {
        case .dead:
            return nil
        case .watching:
            guard let origin = runOrigin, now >= origin else { return nil }
            run = ProbeRun(origin: origin, nextAttempt: 0, firstSequence: nextSequence, probesSent: 0, lastProbeAt: nil)
            if case .ikev2 = configuration.flavour { nextSequence &+= 1 }
        case .probing(let current):
            run = current
        }
        standIn(&run, now: now)
        if run.nextAttempt >= configuration.retries {
            guard now >= deathTime(run) else {
                phase = .probing(run)
                return nil
            }
            phase = .dead
            return .peerDead(Death(lastProofOfLife: lastProofOfLife, probesSent: run.probesSent, declaredAt: now))
        }
        guard exchangesInFlight == 0, now >= probeTime(run) else {
            phase = .probing(run)
            return nil
        }
        let sequence: UInt32
        switch configuration.flavour {
        case .ikev1:
            sequence = nextSequence
            nextSequence &+= 1
        case .ikev2:
            sequence = run.firstSequence
        }
        if run.probesSent == 0 {
            firstAcceptableSequence = sequence
            acceptableAcks = 0
        }
        if case .ikev1 = configuration.flavour { acceptableAcks += 1 } else { acceptableAcks = 1 }
        // A late timer sends the next probe, never skips one: each probe is given its full retry interval.
        let attempt = run.nextAttempt
        run.nextAttempt += 1
        run.probesSent += 1
        // A probe whose slot fell inside an exchange is sent when it completes; the exchange's retransmissions waited
        // for the peer meanwhile, so the schedule goes on from the slot.
        run.lastProbeAt = exchangeJustCompleted ? configuration.retry * attempt + run.origin : now
        phase = .probing(run)
        return .sendProbe(sequence: sequence, attempt: attempt)
    }
}

/// RFC numbers apart from our tunables.
public enum Liveness {
    /// RFC 3706 §6.2: the first sequence number's high bit is initially zero, so it does not wrap soon.
    public static let sequenceTopBit: UInt32 = 0x8000_0000
    /// Cisco `crypto isakmp keepalive` and the issue: five unanswered probes declare the peer dead.
    public static let defaultRetries = 5
}
