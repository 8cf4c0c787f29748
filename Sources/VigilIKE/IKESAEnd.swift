/// Why an IKE SA (an ISAKMP SA in IKEv1) ended, as both engines report it to the daemon. The daemon's failover rule
/// reads `endedByPeer`, never the words: the active peer's IKE SA ending by the peer's word or silence means that
/// peer is down.
public enum IKESAEnd: Sendable, Hashable, CustomStringConvertible {
    /// The peer sent an authenticated DELETE for it (RFC 7296 §1.4.1; RFC 2408 §3.15 for an ISAKMP SA).
    case deletedByPeer
    /// A request of ours went unanswered through the whole retransmission schedule (RFC 7296 §2.4).
    case peerUnreachable
    /// The peer started over: a new IKE SA from it carried INITIAL_CONTACT (RFC 7296 §2.4, RFC 2407 §4.6.3.3).
    case peerRestarted
    /// The daemon abandoned it after its dead peer detector declared the peer dead (nothing sent).
    case abandonedAsDead
    /// Its role passed to another IKE SA with the same peer: rekeyed (RFC 7296 §2.18), reauthenticated, the loser
    /// of a rekey collision, or superseded; the words say which.
    case replaced(String)
    /// Ended on our side: deleted by the daemon (operator, failover, shutdown, reload), a failed exchange, a
    /// half-open SA expiring; the words say which.
    case local(String)

    /// The peer's word or silence ended it.
    public var endedByPeer: Bool {
        switch self {
        case .deletedByPeer, .peerUnreachable, .peerRestarted, .abandonedAsDead: true
        case .replaced, .local: false
        }
    }

    public var description: String {
        switch self {
        case .deletedByPeer: "deleted by peer"
        case .peerUnreachable: "peer unreachable"
        case .peerRestarted: "INITIAL_CONTACT from peer"
        case .abandonedAsDead: "abandoned: peer dead"
        case .replaced(let why), .local(let why): why
        }
    }
}
