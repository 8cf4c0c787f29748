/// Every kind of event vigild records (`vigil events`, the log, the event stream): the daemon's own, in
/// kebab-case, and the failover coordinator's notices under their own names. On the wire `DaemonEvent.kind` is the
/// raw value, so scripts match on these strings.
public enum EventKind: String, Codable, Sendable, CaseIterable {
    // The daemon's own.
    case peerListUpdated = "peer-list-updated"
    case endpointsMoved = "endpoints-moved"
    case trafficHeld = "traffic-held"
    case resolveFailed = "resolve-failed"
    case preemptionProbe = "preemption-probe"
    case phase1Initiate = "phase1-initiate"
    case dataplaneProgrammed = "dataplane-programmed"
    case phase1Rekeyed = "phase1-rekeyed"
    case peerMoved = "peer-moved"
    case rUThereAck = "r-u-there-ack"
    case livenessAnswered = "liveness-answered"
    case peerUnreachable = "peer-unreachable"
    case negotiationFailed = "negotiation-failed"
    case preemptionProbeAnswered = "preemption-probe-answered"
    case dpdUnavailable = "dpd-unavailable"
    case phase1Up = "phase1-up"
    case reqidExhausted = "reqid-exhausted"
    case phase2Up = "phase2-up"
    case phase2Refused = "phase2-refused"
    case phase2Rekeyed = "phase2-rekeyed"
    case phase2Down = "phase2-down"
    case phase1Down = "phase1-down"
    case rUThere = "r-u-there"
    case livenessCheck = "liveness-check"
    case declaredDead = "declared-dead"
    /// Tunnel monitoring: `threshold` echo requests through the tunnel unanswered; the entry fails over as from a
    /// dead peer.
    case dataPathDead = "data-path-dead"
    case tunnelMonitorStarted = "tunnel-monitor-started"
    /// The monitor's ICMP socket could not be opened or sent on (the entry is not monitored meanwhile).
    case tunnelMonitorUnavailable = "tunnel-monitor-unavailable"
    case kernelReconciled = "kernel-reconciled"
    case entryLoaded = "entry-loaded"
    /// A reload removed the entry (or replaced it: `entry-loaded` follows): its SAs deleted, its kernel state removed.
    case entryRemoved = "entry-removed"
    case shutdown = "shutdown"
    case hookFinished = "hook-finished"
    case espNotDecapsulated = "esp-not-decapsulated"
    case reloaded = "reloaded"
    case reloadRefused = "reload-refused"
    case credentialsUpdated = "credentials-updated"
    case stateWriteFailed = "state-write-failed"
    case stateIgnored = "state-ignored"
    case peerListRestored = "peer-list-restored"
    // The failover coordinator's notices.
    case attemptStarted
    case phase1Established
    case established
    case attemptFailed
    case attemptTimedOut
    case peerDead
    case cycleFailed
    case backoffEnded
    case cleared
    case held
    case idleTimeout
    case preempting
    case preemptionAbandoned
    case listUpdated
    case operatorFailover
    case rejected
    case kernelRefused
}
