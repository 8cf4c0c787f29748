import Foundation

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

        public init(address: String, identity: String, active: Bool, negotiating: Bool, preferred: Bool, lastAnswer: Double? = nil, probesMissed: Int, failovers: Int, lastFailure: String? = nil, lastFailureAge: Double? = nil) {
            self.address = address
            self.identity = identity
            self.active = active
            self.negotiating = negotiating
            self.preferred = preferred
            self.lastAnswer = lastAnswer
            self.probesMissed = probesMissed
            self.failovers = failovers
            self.lastFailure = lastFailure
            self.lastFailureAge = lastFailureAge
        }
    }

    public struct TrafficSelector: Codable, Sendable, Equatable {
        public var local: String
        public var remote: String

        public init(local: String, remote: String) {
            self.local = local
            self.remote = remote
        }
    }

    public struct DPD: Codable, Sendable, Equatable {
        public var mode: String
        public var interval: Double?
        public var retry: Double
        public var retries: Int
        public var action: String

        public init(mode: String, interval: Double? = nil, retry: Double, retries: Int, action: String) {
            self.mode = mode
            self.interval = interval
            self.retry = retry
            self.retries = retries
            self.action = action
        }
    }

    public struct Preemption: Codable, Sendable, Equatable {
        public var holdDown: Double
        public var maxFlaps: Int
        public var flapWindow: Double

        public init(holdDown: Double, maxFlaps: Int, flapWindow: Double) {
            self.holdDown = holdDown
            self.maxFlaps = maxFlaps
            self.flapWindow = flapWindow
        }
    }

    public struct Backoff: Codable, Sendable, Equatable {
        public var initial: Double
        public var maximum: Double
        /// Every listed peer failed in the last cycle and the entry waits before the next.
        public var allPeersDown: Bool
        public var failedCycles: Int?
        /// Seconds until the next cycle starts.
        public var nextAttemptIn: Double?

        public init(initial: Double, maximum: Double, allPeersDown: Bool, failedCycles: Int? = nil, nextAttemptIn: Double? = nil) {
            self.initial = initial
            self.maximum = maximum
            self.allPeersDown = allPeersDown
            self.failedCycles = failedCycles
            self.nextAttemptIn = nextAttemptIn
        }
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

        public init(map: String, sequence: Int, ikeVersion: String, state: String, activePeer: String? = nil, preferredPeer: String? = nil, peers: [Peer], traffic: [TrafficSelector], ikeProposals: [String], espProposals: [String], pfsGroup: String, ikeLifetime: Double, childLifetime: Double, dpd: DPD, preemption: Preemption? = nil, idleTime: Double? = nil, connectTimeout: Double, backoff: Backoff) {
            self.map = map
            self.sequence = sequence
            self.ikeVersion = ikeVersion
            self.state = state
            self.activePeer = activePeer
            self.preferredPeer = preferredPeer
            self.peers = peers
            self.traffic = traffic
            self.ikeProposals = ikeProposals
            self.espProposals = espProposals
            self.pfsGroup = pfsGroup
            self.ikeLifetime = ikeLifetime
            self.childLifetime = childLifetime
            self.dpd = dpd
            self.preemption = preemption
            self.idleTime = idleTime
            self.connectTimeout = connectTimeout
            self.backoff = backoff
        }
    }

    public var entries: [Entry]

    public init(entries: [Entry]) {
        self.entries = entries
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
