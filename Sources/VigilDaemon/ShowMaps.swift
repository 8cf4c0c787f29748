import Foundation
import VigilConfig
import VigilFailover

/// What `vigil show maps` returns (Cisco `show crypto map`): the running configuration of every entry, its ordered
/// peers with their last known health, and the entry's backoff state. Durations and ages are in seconds.
public struct MapsReport: Codable, Sendable, Equatable {
    public struct Peer: Codable, Sendable, Equatable {
        public var address: String
        /// The identity it must authenticate as.
        public var identity: String
        public var active: Bool
        public var negotiating: Bool
        public var preferred: Bool
        /// Seconds since it last answered (an IKE SA established, a DPD answer); nil: not since vigild started.
        public var lastAnswer: Double?
        /// DPD probes unanswered in a row.
        public var probesMissed: Int
        /// Times the entry's traffic moved away from it.
        public var failovers: Int
        public var lastFailure: String?
        /// Seconds since that failure.
        public var lastFailureAge: Double?
    }

    public struct TrafficSelector: Codable, Sendable, Equatable {
        public var local: String
        public var remote: String
    }

    public struct DPD: Codable, Sendable, Equatable {
        public var mode: String
        public var interval: Double?
        public var retry: Double
        public var retries: Int
        public var action: String
    }

    public struct Preemption: Codable, Sendable, Equatable {
        public var holdDown: Double
        public var maxFlaps: Int
        public var flapWindow: Double
    }

    public struct Backoff: Codable, Sendable, Equatable {
        public var initial: Double
        public var maximum: Double
        /// Every listed peer failed in the last cycle and the entry waits before the next.
        public var allPeersDown: Bool
        public var failedCycles: Int?
        /// Seconds until the next cycle starts.
        public var nextAttemptIn: Double?
    }

    public struct Entry: Codable, Sendable, Equatable {
        public var map: String
        public var sequence: Int
        public var ikeVersion: String
        public var state: String
        public var activePeer: String?
        public var preferredPeer: String?
        public var peers: [Peer]
        public var traffic: [TrafficSelector]
        public var ikeProposals: [String]
        public var espProposals: [String]
        public var pfsGroup: String
        public var ikeLifetime: Double
        public var childLifetime: Double
        public var dpd: DPD
        public var preemption: Preemption?
        public var idleTime: Double?
        public var connectTimeout: Double
        public var backoff: Backoff
    }

    public var entries: [Entry]
}

extension MapsReport.Entry {
    /// One entry's report from its running state: pure (clock given).
    init(map: String, entry: CryptoMapEntry, coordinator: FailoverCoordinator<String>, health: [String: PeerHealth], now: Duration) {
        let active = coordinator.activePeer, negotiating = coordinator.negotiatingPeer
        self.map = map
        sequence = entry.sequence
        ikeVersion = entry.ikeVersion.rawValue
        state = coordinator.state.summary
        activePeer = active
        preferredPeer = entry.preferredPeer?.description
        peers = entry.peers.map { peer in
            let name = peer.description
            let known = health[name] ?? PeerHealth()
            return MapsReport.Peer(
                address: name, identity: peer.expectedIdentity.description, active: name == active, negotiating: name == negotiating,
                preferred: name == entry.preferredPeer?.description, lastAnswer: known.lastAnswer.map { (now - $0).seconds },
                probesMissed: known.probesMissed, failovers: known.failoversAway, lastFailure: known.lastFailure,
                lastFailureAge: known.lastFailureAt.map { (now - $0).seconds })
        }
        traffic = entry.traffic.map { MapsReport.TrafficSelector(local: $0.local.description, remote: $0.remote.description) }
        ikeProposals = entry.ikeProposals.map(\.description)
        espProposals = entry.espProposals.map(\.description)
        pfsGroup = entry.pfsGroup?.description ?? "none"
        ikeLifetime = entry.ikeLifetime.seconds
        childLifetime = entry.childLifetime.seconds
        dpd = MapsReport.DPD(mode: entry.dpd.mode.rawValue, interval: entry.dpd.interval?.seconds, retry: entry.dpd.retry.seconds,
                             retries: entry.dpd.retries, action: entry.dpd.action.rawValue)
        preemption = entry.preemption.map {
            MapsReport.Preemption(holdDown: $0.holdDown.seconds, maxFlaps: $0.maxFlaps, flapWindow: $0.flapWindow.seconds)
        }
        idleTime = entry.idleTime?.seconds
        connectTimeout = entry.connectTimeout.seconds
        backoff = MapsReport.Backoff(initial: entry.backoff.initial.seconds, maximum: entry.backoff.maximum.seconds,
                                     allPeersDown: false, failedCycles: nil, nextAttemptIn: nil)
        if case .backingOff(let backingOff) = coordinator.state {
            backoff.allPeersDown = true
            backoff.failedCycles = backingOff.failedCycles
            backoff.nextAttemptIn = max(backingOff.until - now, .zero).seconds
        }
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

extension MapsReport {
    /// The text `vigil show maps` prints, in the spirit of Cisco's `show crypto map`.
    public var text: String {
        var lines: [String] = []
        for entry in entries {
            lines.append("Crypto Map \"\(entry.map)\" \(entry.sequence) (IKE\(entry.ikeVersion)): \(entry.state)")
            lines.append("  Peers, in order:")
            for (index, peer) in entry.peers.enumerated() {
                let marks = [peer.active ? "active" : nil, peer.negotiating ? "negotiating" : nil, peer.preferred ? "default" : nil].compactMap { $0 }
                lines.append("    \(index + 1). \(peer.address)\(marks.isEmpty ? "" : " [\(marks.joined(separator: ", "))]")")
                var health = [peer.lastAnswer.map { "last answer \(Self.seconds($0)) ago" } ?? "no answer yet"]
                health.append("\(peer.probesMissed) probe\(peer.probesMissed == 1 ? "" : "s") missed")
                health.append("\(peer.failovers) failover\(peer.failovers == 1 ? "" : "s") away")
                lines.append("       \(health.joined(separator: ", "))")
                if let failure = peer.lastFailure {
                    lines.append("       last failure\(peer.lastFailureAge.map { " \(Self.seconds($0)) ago" } ?? ""): \(failure)")
                }
            }
            for selector in entry.traffic { lines.append("  Traffic: \(selector.local) === \(selector.remote)") }
            lines.append("  IKE proposals: \(entry.ikeProposals.joined(separator: ", ")); lifetime \(Self.seconds(entry.ikeLifetime))")
            lines.append("  ESP proposals: \(entry.espProposals.joined(separator: ", ")); PFS \(entry.pfsGroup); lifetime \(Self.seconds(entry.childLifetime))")
            let dpd = entry.dpd
            lines.append("  DPD: " + (dpd.mode == "off" ? "off" : "\(dpd.mode), interval \(dpd.interval.map(Self.seconds) ?? "none"), "
                + "retry \(Self.seconds(dpd.retry)), retries \(dpd.retries), action \(dpd.action)"))
            lines.append("  Preferred peer: \(entry.preferredPeer ?? "none")"
                + (entry.idleTime.map { ", idle-time \(Self.seconds($0))" } ?? "")
                + (entry.preemption.map { ", preemption hold-down \(Self.seconds($0.holdDown)), max-flaps \($0.maxFlaps) per \(Self.seconds($0.flapWindow))" }
                   ?? ", no preemption"))
            let backoff = entry.backoff
            let waiting = backoff.allPeersDown
                ? "all peers down (\(backoff.failedCycles ?? 0) failed cycle\(backoff.failedCycles == 1 ? "" : "s")), next attempt in \(Self.seconds(backoff.nextAttemptIn ?? 0))"
                : "not backing off"
            lines.append("  Backoff: \(waiting) (initial \(Self.seconds(backoff.initial)), maximum \(Self.seconds(backoff.maximum)), "
                + "connect-timeout \(Self.seconds(entry.connectTimeout)))")
        }
        return lines.joined(separator: "\n") + (lines.isEmpty ? "" : "\n")
    }

    static func seconds(_ value: Double) -> String { String(format: "%.1f s", value) }
}
