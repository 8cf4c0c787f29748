/// Times each failover of an entry from the steps the daemon records (`declared-dead`, `phase1-up`, `phase2-up`,
/// `dataplane-programmed`), for the phase histograms, and names why the traffic moved. Pure: steps and the event
/// loop's clock in, a finished failover out. At most one episode per entry (bounded by the configuration).
struct FailoverPhases {
    /// Why an entry's traffic moved from one peer to another (`vigil_failovers_total{reason}`).
    enum Reason: String, CaseIterable {
        /// RFC 3706 / RFC 7296 §2.4 dead peer detection declared the active peer dead.
        case deadPeerDetection = "dpd"
        /// Tunnel monitoring: echo requests through the tunnel went unanswered while the peer may still answer DPD.
        case dataPathDead = "data-path-dead"
        /// An established IKE SA's request went unanswered through every retransmission (RFC 7296 §2.4).
        case retransmissionsExhausted = "retransmissions-exhausted"
        /// The peer deleted its established IKE SA.
        case deletedByPeer = "deleted-by-peer"
        /// Back to the preferred peer once it answered for the hold-down.
        case preemption
        /// `vigil failover`.
        case operatorFailover = "operator"
        /// Cisco idle-time on a backup peer: the next connection tried the preferred peer.
        case idleTime = "idle-time"
        /// A reload or `set-peers` removed the active peer.
        case peerListChanged = "peer-list-changed"
        /// A move the daemon did not start itself (a listed peer that initiated to us).
        case other
    }

    enum Step {
        /// The active peer is gone (declared dead, unreachable, deleted): the episode starts unless one runs.
        case peerDead(String, Reason)
        /// A move off a live peer starts (preemption, operator, idle-time, list change).
        case moveStarted(Reason)
        case phase1Up(String)
        case phase2Up(String)
        /// `movedFrom`: the peer the policies pointed at before, nil for a fresh installation.
        case dataplaneProgrammed(String, movedFrom: String?)
        /// The protection was cleared (operator, dead-peer action clear): nothing is being restored.
        case abandoned
    }

    /// A failover done: its reason and, for one from a gone peer whose steps were all seen, each phase's duration.
    struct Failover: Equatable {
        var reason: Reason
        /// Start (the death) to Phase 1 up with the peer moved to, failed attempts and backoff included.
        var phase1: Duration?
        /// Phase 1 up to Phase 2 (the first Child SA) up with that peer.
        var phase2: Duration?
        /// Phase 2 up to its data plane programmed.
        var dataplane: Duration?
    }

    private struct Episode {
        var from: String?
        var reason: Reason
        var start: Duration
        var phase1: (peer: String, at: Duration)?
        var phase2: (peer: String, at: Duration)?
    }

    private var episodes: [String: Episode] = [:]

    /// A reload removed or replaced the entry: a failover of it in progress is not timed.
    mutating func forget(_ entry: String) { episodes[entry] = nil }

    mutating func handle(_ step: Step, entry: String, now: Duration) -> Failover? {
        switch step {
        case .peerDead(let peer, let reason):
            if episodes[entry]?.from == nil { episodes[entry] = Episode(from: peer, reason: reason, start: now) }
        case .moveStarted(let reason):
            if episodes[entry] == nil { episodes[entry] = Episode(from: nil, reason: reason, start: now) }
        case .phase1Up(let peer):
            guard var episode = episodes[entry], peer != episode.from else { return nil }
            episode.phase1 = (peer, now)
            episode.phase2 = nil
            episodes[entry] = episode
        case .phase2Up(let peer):
            guard var episode = episodes[entry], episode.phase1?.peer == peer, episode.phase2 == nil else { return nil }
            episode.phase2 = (peer, now)
            episodes[entry] = episode
        case .dataplaneProgrammed(let peer, let movedFrom):
            let episode = episodes.removeValue(forKey: entry)
            guard let movedFrom, movedFrom != peer else { return nil }  // installed afresh, or the same peer again
            var failover = Failover(reason: episode?.reason ?? .other)
            if let episode, episode.from != nil, let phase1 = episode.phase1, let phase2 = episode.phase2, phase2.peer == peer {
                failover.phase1 = phase1.at - episode.start
                failover.phase2 = phase2.at - phase1.at
                failover.dataplane = now - phase2.at
            }
            return failover
        case .abandoned:
            episodes[entry] = nil
        }
        return nil
    }
}
