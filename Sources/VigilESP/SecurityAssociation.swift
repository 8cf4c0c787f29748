import Synchronization
import VigilAddressing
import VigilKernel

/// Per-SA counters: what traffic-based (on-demand) DPD reads, and why packets were refused.
public struct SACounters: Hashable, Sendable {
    /// Inner-packet bytes and packets carried (as the kernel's `xfrm_lifetime_cur` counts them).
    public var bytes: UInt64 = 0
    public var packets: UInt64 = 0
    /// Monotonic time of the last packet carried (for an inbound SA: the last authenticated inbound packet).
    public var lastUsed: Duration?
    /// Inbound refusals (RFC 4303 §3.4.3, §3.4.4).
    public var replayedDuplicates: UInt64 = 0
    public var replayedTooOld: UInt64 = 0
    public var authenticationFailures: UInt64 = 0
    public var malformed: UInt64 = 0
    public var badPadding: UInt64 = 0
    /// Inner packet not covered by the SA's inbound policy (RFC 4301 §5.2, step 4).
    public var selectorMismatches: UInt64 = 0
    /// Packets refused because a hard lifetime was reached or the sequence number would cycle.
    public var expiredDrops: UInt64 = 0
    /// Soft and hard lifetimes (bytes, packets or seconds) reached; after a hard one the SA carries nothing.
    public var softExpired = false
    public var hardExpired = false

    public init() {}

    /// Sets the flag of `event`; returns the event only the first time, so each is reported once.
    mutating func reach(_ event: LifetimeEvent) -> LifetimeEvent? {
        switch event {
        case .soft:
            guard !softExpired else { return nil }
            softExpired = true
        case .hard:
            guard !hardExpired else { return nil }
            hardExpired = true
        }
        return event
    }
}

/// An SA reached a lifetime (the userspace counterpart of XFRM_MSG_EXPIRE): soft asks the IKE engine to rekey,
/// hard means the SA no longer carries traffic.
public enum LifetimeEvent: Hashable, Sendable {
    case soft
    case hard
}

/// One installed SA of the userspace data plane: its request, its crypto transform and its mutable state (sequence
/// number or replay window, counters). All mutation happens under one lock; per-packet crypto happens under it too,
/// so the transform's OpenSSL contexts are never used by two threads at once.
final class SecurityAssociation: Sendable {
    let id: SAID
    let request: SARequest
    let addedAtSeconds: UInt64
    /// Monotonic time of installation, for the seconds lifetimes.
    let installedAt: Duration
    /// Monotonic install order: the newest SA wins when a rekey leaves two for one template (as in XFRM).
    let generation: UInt64

    struct State: ~Copyable {
        let transform: ESPTransform
        var nextSequenceNumber: UInt32 = 1
        var window: ReplayWindow?
        var counters = SACounters()
    }

    let state: Mutex<State>

    init(
        id: SAID, request: SARequest, transform: ESPTransform, replayWindow: Int, addedAtSeconds: UInt64,
        installedAt: Duration, generation: UInt64
    ) {
        self.id = id
        self.request = request
        self.addedAtSeconds = addedAtSeconds
        self.installedAt = installedAt
        self.generation = generation
        state = Mutex(State(transform: transform, window: replayWindow > 0 ? ReplayWindow(size: replayWindow) : nil))
    }

    /// Where outbound packets of this SA go: the peer's NAT-T port, or 4500.
    var peer: Endpoint {
        Endpoint(request.destination, request.encapsulation?.destinationPort ?? ESPSpec.natTraversalPort)
    }

    var counters: SACounters { state.withLock { $0.counters } }

    /// The SA as the kernel layer reports it; `now`/`wallSeconds` convert the monotonic last-use time.
    func kernelState(now: Duration, wallSeconds: UInt64) -> SAState {
        let counters = self.counters
        let lastUsed = counters.lastUsed.map { wallSeconds - min(wallSeconds, UInt64(max(0, (now - $0).components.seconds))) }
        return SAState(
            id: id, source: request.source, mode: request.mode, reqid: request.reqid,
            encapsulation: request.encapsulation, bytes: counters.bytes, packets: counters.packets,
            addedAtSeconds: addedAtSeconds, lastUsedAtSeconds: lastUsed)
    }
}

extension SACounters {
    /// Adds one carried packet and applies the SA's byte and packet lifetimes (RFC 4301 §4.4.2.1). `carried` is
    /// false when the hard limit is now exceeded and the packet must not be carried; `event` is a newly reached
    /// lifetime.
    mutating func carry(bytes count: Int, now: Duration, lifetime: SALifetime) -> (carried: Bool, event: LifetimeEvent?) {
        let newBytes = bytes + UInt64(count)
        let newPackets = packets + 1
        var event: LifetimeEvent?
        if let hard = lifetime.hardBytes, newBytes > hard { event = reach(.hard) ?? event }
        if let hard = lifetime.hardPackets, newPackets > hard { event = reach(.hard) ?? event }
        if hardExpired {
            expiredDrops += 1
            return (false, event)
        }
        bytes = newBytes
        packets = newPackets
        lastUsed = now
        if let soft = lifetime.softBytes, newBytes >= soft { event = reach(.soft) }
        if let soft = lifetime.softPackets, newPackets >= soft { event = reach(.soft) ?? event }
        return (true, event)
    }
}
