/// Tunnel monitoring for one crypto-map entry (Palo Alto's tunnel monitor, Juniper's VPN monitor): ICMP echo
/// requests (RFC 792) from a local address inside the entry's local traffic selectors to a remote address inside its
/// remote ones, so that they travel through the tunnel. It catches what dead peer detection cannot: a peer whose IKE
/// daemon answers R-U-THERE / liveness checks while its forwarding is broken.
///
/// A pure state machine, as `DeadPeerDetector` is. The daemon feeds it events with the current monotonic time and
/// performs the actions it returns; after every call it (re)arms one timer at `nextWakeup` and delivers
/// `.timerFired` then.
///
/// ## The schedule
/// `.start` (the entry is established with a peer) sends echo request number 0 at once; every `interval` after that
/// the next one goes out. An echo request is *unanswered* when its interval runs out without a matching reply. When
/// `threshold` requests in a row are unanswered the data path is declared dead, at the deadline of the last of them:
/// with nothing answered, `start + threshold × interval` (interval 2 s, threshold 3: requests at 0, 2 and 4 s, dead at
/// 6 s). Any matching reply ends the row. A late timer (a loaded loop) counts the request it was waiting for and sends
/// the next at once; it never counts a request that was not given its full interval.
///
/// ## Matching replies
/// Only fresh input counts: a reply must carry this run's identifier and the sequence number of one of the last
/// `threshold` requests sent, not answered before. A duplicate, a reply to an older request, one with another
/// identifier (another pinger on the host, an earlier run) or one after `.stop` is ignored. A late reply to a request
/// already counted as unanswered still ends the row: the peer's data path carried it.
///
/// The identifier and first sequence number come with `.start`, drawn by the daemon from its injected generator, so
/// that a run replays from its seed and a restart (a new active peer) does not accept the previous run's replies.
public struct TunnelMonitor: Sendable {
    /// What the daemon maps from the entry's `monitor` key; validated there, so an invalid value is our bug.
    public struct Configuration: Hashable, Sendable {
        /// Time between echo requests, and the time each is given for its reply.
        public var interval: Duration
        /// Unanswered echo requests in a row that declare the data path dead.
        public var threshold: Int

        public init(interval: Duration, threshold: Int) {
            precondition(interval > .zero, "tunnel monitor interval must be positive")
            precondition(threshold >= 1, "tunnel monitor needs at least one echo request before declaring the data path dead")
            self.interval = interval
            self.threshold = threshold
        }
    }

    public enum Event: Hashable, Sendable {
        /// The entry is established with a (new) active peer: a new run, with its own identifier.
        case start(identifier: UInt16, firstSequence: UInt16)
        /// The entry is down (or its active peer is gone): no more echo requests.
        case stop
        /// The timer armed at `nextWakeup` expired (early or spurious firings are harmless).
        case timerFired
        /// An ICMP echo reply from the monitored address arrived.
        case echoReplyReceived(identifier: UInt16, sequence: UInt16)
    }

    public enum Action: Hashable, Sendable {
        case sendEchoRequest(identifier: UInt16, sequence: UInt16)
        case dataPathDead(Death)
    }

    public struct Death: Hashable, Sendable {
        /// Echo requests unanswered in a row (the threshold).
        public var unanswered: Int
        /// The last matching reply of this run; nil when none ever came.
        public var lastReply: Duration?
        /// When the run started (the peer became active).
        public var startedAt: Duration
        public var declaredAt: Duration
    }

    /// One echo request of the window replies may match.
    struct Request: Hashable, Sendable {
        var sequence: UInt16
        var answered: Bool
    }

    /// A run in progress: from `.start` until `.stop` or the death.
    struct Run: Hashable, Sendable {
        var identifier: UInt16
        var nextSequence: UInt16
        /// The deadline of the latest request, when the next one goes out.
        var nextRequestAt: Duration
        /// The last `threshold` requests sent, oldest first.
        var window: [Request]
        var unansweredInARow: Int
        var startedAt: Duration
        var lastReply: Duration?
    }

    enum Phase: Hashable, Sendable {
        case stopped
        case probing(Run)
        case dead
    }

    public let configuration: Configuration
    private(set) var phase: Phase = .stopped

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    public var isDead: Bool { phase == .dead }
    public var isRunning: Bool {
        if case .probing = phase { return true }
        return false
    }

    /// When the daemon must deliver `.timerFired`; nil when no timer is needed.
    public var nextWakeup: Duration? {
        if case .probing(let run) = phase { return run.nextRequestAt }
        return nil
    }

    public mutating func handle(_ event: Event, now: Duration) -> Action? {
        switch event {
        case .start(let identifier, let first):
            phase = .probing(Run(
                identifier: identifier, nextSequence: first &+ 1, nextRequestAt: now + configuration.interval,
                window: [Request(sequence: first, answered: false)], unansweredInARow: 0, startedAt: now, lastReply: nil))
            return .sendEchoRequest(identifier: identifier, sequence: first)
        case .stop:
            phase = .stopped
            return nil
        case .echoReplyReceived(let identifier, let sequence):
            guard case .probing(var run) = phase, identifier == run.identifier,
                  let index = run.window.firstIndex(where: { $0.sequence == sequence && !$0.answered })
            else { return nil }
            run.window[index].answered = true
            run.unansweredInARow = 0
            run.lastReply = now
            phase = .probing(run)
            return nil
        case .timerFired:
            guard case .probing(var run) = phase, now >= run.nextRequestAt else { return nil }
            if run.window.last?.answered == false { run.unansweredInARow += 1 }
            if run.unansweredInARow >= configuration.threshold {
                phase = .dead
                return .dataPathDead(Death(unanswered: run.unansweredInARow, lastReply: run.lastReply,
                                           startedAt: run.startedAt, declaredAt: now))
            }
            let sequence = run.nextSequence
            run.nextSequence &+= 1
            run.window.append(Request(sequence: sequence, answered: false))
            if run.window.count > configuration.threshold { run.window.removeFirst(run.window.count - configuration.threshold) }
            run.nextRequestAt = now + configuration.interval
            phase = .probing(run)
            return .sendEchoRequest(identifier: run.identifier, sequence: sequence)
        }
    }
}
