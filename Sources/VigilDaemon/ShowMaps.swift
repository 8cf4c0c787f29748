import Foundation
import VigilConfig
import VigilFailover

extension MapsReport.Entry {
    /// One entry's report from its running state: pure (clock given).
    init(map: String, entry: CryptoMapEntry, coordinator: FailoverCoordinator<String>, health: [String: PeerHealth], now: Duration) {
        let active = coordinator.activePeer, negotiating = coordinator.negotiatingPeer
        let peers = entry.peers.map { peer in
            let name = peer.description
            let known = health[name] ?? PeerHealth()
            return MapsReport.Peer(
                address: name, identity: peer.expectedIdentity.description, active: name == active, negotiating: name == negotiating,
                preferred: name == entry.preferredPeer?.description, lastAnswer: known.lastAnswer.map { (now - $0).seconds },
                probesMissed: known.probesMissed, failovers: known.failoversAway, lastFailure: known.lastFailure,
                lastFailureAge: known.lastFailureAt.map { (now - $0).seconds })
        }
        var backoff = MapsReport.Backoff(initial: entry.backoff.initial.seconds, maximum: entry.backoff.maximum.seconds,
                                         allPeersDown: false, failedCycles: nil, nextAttemptIn: nil)
        if case .backingOff(let backingOff) = coordinator.state {
            backoff.allPeersDown = true
            backoff.failedCycles = backingOff.failedCycles
            backoff.nextAttemptIn = max(backingOff.until - now, .zero).seconds
        }
        self.init(
            map: map, sequence: entry.sequence, ikeVersion: entry.ikeVersion.rawValue, state: coordinator.state.summary,
            activePeer: active, preferredPeer: entry.preferredPeer?.description, peers: peers,
            traffic: entry.traffic.map { MapsReport.TrafficSelector(local: $0.local.description, remote: $0.remote.description) },
            ikeProposals: entry.ikeProposals.map(\.description), espProposals: entry.espProposals.map(\.description),
            pfsGroup: entry.pfsGroup?.description ?? "none", ikeLifetime: entry.ikeLifetime.seconds,
            childLifetime: entry.childLifetime.seconds,
            dpd: MapsReport.DPD(mode: entry.dpd.mode.rawValue, interval: entry.dpd.interval?.seconds, retry: entry.dpd.retry.seconds,
                                retries: entry.dpd.retries, action: entry.dpd.action.rawValue),
            preemption: entry.preemption.map {
                MapsReport.Preemption(holdDown: $0.holdDown.seconds, maxFlaps: $0.maxFlaps, flapWindow: $0.flapWindow.seconds)
            },
            idleTime: entry.idleTime?.seconds, connectTimeout: entry.connectTimeout.seconds, backoff: backoff)
    }
}

extension FailoverCoordinator<String>.State {
    /// The entry's state in a few words (`vigil status`, `vigil show maps`).
    var summary: String {
        switch self {
        case .idle: "idle"
        case .connecting(let connecting): "connecting to \(connecting.peer) (attempt \(connecting.attempt))"
        case .established(let established): "established with \(established.peer)"
        case .backingOff(let backingOff): "all peers down, backing off until \(String(format: "%.1f", backingOff.until.seconds)) s"
        }
    }
}

