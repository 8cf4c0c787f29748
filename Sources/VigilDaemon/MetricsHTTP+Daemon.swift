import Logging
import VigilConfig
import VigilFailover

/// The metrics `GET /metrics` and `vigil metrics` add to the daemon's counters: per-peer state and failover timing.
extension Daemon {
    /// Upper bounds (seconds) of the failover phase histograms: 10 ms (a Phase 2 on a LAN) to 60 s (DPD with
    /// Cisco's default keepalive of 10 s and 5 retries of 2 s is 20 s; a slow Phase 1 with retransmissions more).
    static let failoverPhaseBuckets: [Double] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60]

    /// One step of a failover (called where the daemon records it): times the phases and counts the failover.
    func failoverStep(_ step: FailoverPhases.Step, _ entry: EntryRuntime) {
        guard let failover = failoverPhases.handle(step, entry: entry.name, now: loop.now) else { return }
        metrics.increment(Metrics.series("vigil_failovers_total", ["map": entry.map, "sequence": "\(entry.entry.sequence)",
                                                                    "reason": failover.reason.rawValue]),
                          help: "an entry's traffic moved from one peer to another, by reason")
        let phases: [(String, Duration?, String)] = [
            ("vigil_failover_phase1_seconds", failover.phase1,
             "failover from a gone peer: its death to Phase 1 (IKE SA) up with the peer moved to, failed attempts included"),
            ("vigil_failover_phase2_seconds", failover.phase2, "failover from a gone peer: Phase 1 up to Phase 2 (Child SA) up"),
            ("vigil_failover_dataplane_seconds", failover.dataplane, "failover from a gone peer: Phase 2 up to its data plane programmed"),
        ]
        for (family, duration, help) in phases {
            guard let duration else { continue }
            metrics.observe(family, ["map": entry.map, "sequence": "\(entry.entry.sequence)"], duration.seconds,
                            upperBounds: Self.failoverPhaseBuckets, help: help)
        }
    }

    /// DPD declared `peer` dead: the detection time (its last proof of life to the declaration), and the death.
    func deadPeerDetected(_ peer: String, _ entry: EntryRuntime, detection: Duration) {
        metrics.observe("vigil_failover_detection_seconds", ["map": entry.map, "sequence": "\(entry.entry.sequence)"],
                        max(.zero, detection).seconds, upperBounds: Self.failoverPhaseBuckets,
                        help: "dead peer detection: a peer's last proof of life (authenticated IKE or inbound ESP) to its death declaration")
        deadPeer(peer, entry, .deadPeerDetection)
    }

    /// A peer with an established IKE SA is gone: counted, and a failover episode starts.
    func deadPeer(_ peer: String, _ entry: EntryRuntime, _ reason: FailoverPhases.Reason) {
        metrics.increment(Metrics.series("vigil_peer_dead_total", ["map": entry.map, "sequence": "\(entry.entry.sequence)", "peer": peer,
                                                                    "cause": reason.rawValue]),
                          help: "dead-peer events: a peer with an established IKE SA declared dead or gone, by cause")
        failoverStep(.peerDead(peer, reason), entry)
    }

    /// What became of a DPD probe, for `vigil_peer_probes_{sent,answered,missed}_total`.
    enum ProbeOutcome: String {
        case sent, answered
        /// No answer before the next retry or the death declaration.
        case missed

        var help: String {
            switch self {
            case .sent: "R-U-THERE / liveness checks sent to the peer, retries included"
            case .answered: "R-U-THERE-ACKs / liveness answers received from the peer"
            case .missed: "probes the peer left unanswered until the next retry or the death declaration"
            }
        }
    }

    func peerProbe(_ outcome: ProbeOutcome, _ peer: String, _ entryName: String) {
        guard let entry = entries[entryName] else { return }
        metrics.increment(Metrics.series("vigil_peer_probes_\(outcome.rawValue)_total",
                                         ["map": entry.map, "sequence": "\(entry.entry.sequence)", "peer": peer]),
                          help: outcome.help)
    }

    /// What the coordinator says it starts: the reason a later move will carry.
    func failoverNotice(_ kind: FailoverCoordinator<String>.Notice.Kind, _ entry: EntryRuntime) {
        switch kind {
        case .preempting: failoverStep(.moveStarted(.preemption), entry)
        case .operatorFailover: failoverStep(.moveStarted(.operatorFailover), entry)
        case .idleTimeout: failoverStep(.moveStarted(.idleTime), entry)
        case .listUpdated: failoverStep(.moveStarted(.peerListChanged), entry)
        case .cleared: failoverStep(.abandoned, entry)
        case .attemptStarted, .phase1Established, .established, .attemptFailed, .attemptTimedOut, .peerDead, .cycleFailed,
             .backoffEnded, .held, .preemptionAbandoned, .rejected, .kernelRefused:
            break
        }
    }

    /// Gauges read from the daemon's state when the metrics are rendered.
    func stateMetrics(into metrics: inout Metrics) {
        for name in entryOrder {
            guard let entry = entries[name] else { continue }
            let sequence = "\(entry.entry.sequence)"
            for peer in entry.peerNames {
                let up = entry.sessions[peer].flatMap { sessions[$0]?.established } ?? false
                metrics.set(Metrics.series("vigil_peer_up", ["map": entry.map, "sequence": sequence, "peer": peer]), up ? 1 : 0,
                            help: "1 while the entry holds an established IKE SA (Phase 1) with this listed peer, else 0 "
                                + "(both peers are 1 during a make-before-break move; preemption probes do not count)")
                metrics.set(Metrics.series("vigil_peer_active", ["map": entry.map, "sequence": sequence, "peer": peer]),
                            entry.coordinator.activePeer == peer ? 1 : 0,
                            help: "1 for the peer the failover coordinator holds as the entry's active peer, else 0")
            }
            let installed = entry.children.values.reduce(0) { total, record in
                total + record.kernel.filter { child in
                    entry.installed[child.selectorKey].map { $0.reqid == child.reqid && $0.remoteTunnelEndpoint == child.remoteTunnelEndpoint } ?? false
                }.count
            }
            metrics.set(Metrics.series("vigil_child_sas_installed", ["map": entry.map, "sequence": sequence]), UInt64(installed),
                        help: "Child SAs (an inbound and an outbound ESP SA per selector pair) in the data plane, superseded ones until deleted")
        }
        for (name, value) in dataPlaneCounters?() ?? [:] where name.hasPrefix("drops_") {
            metrics.set(Metrics.series("vigil_packets_dropped_total", ["plane": "userspace-esp", "reason": String(name.dropFirst(6))]), value,
                        help: "packets dropped, by plane and reason")
        }
        metrics.set(Metrics.series("vigil_packets_dropped_total", ["plane": "ike", "reason": "malformed"]),
                    self.metrics.value("vigil_malformed_datagrams_total"), help: "packets dropped, by plane and reason")
        metrics.set(Metrics.series("vigil_packets_dropped_total", ["plane": "ike", "reason": "unsupported-version"]),
                    self.metrics.value("vigil_unsupported_ike_version_total"))
        metrics.set(Metrics.series("vigil_packets_dropped_total", ["plane": "ike", "reason": "event-loop-shed"]), loop.shedPosts)
        metrics.set(Metrics.series("vigil_packets_dropped_total", ["plane": "ike", "reason": "event-loop-refused"]), loop.refusedPosts)
    }
}

extension DaemonRunner {
    /// `global.metrics`: binds the HTTP endpoint; a bad address stops the start with the error, before the daemon
    /// has bound or installed anything.
    static func bindMetrics(_ settings: MetricsSettings) throws -> MetricsHTTPServer {
        do {
            return try MetricsHTTPServer(listen: settings.listen)
        } catch {
            throw ControlError(.internalError, "\(error)")
        }
    }

    /// Renders the metrics on the event loop into the server's snapshot now and every
    /// `MetricsHTTP.Limits.snapshotInterval`, and starts serving.
    static func serveMetrics(_ server: MetricsHTTPServer, daemon: Daemon, logger: Logger) {
        let loop = daemon.loop
        func publish() {
            daemon.serverMetrics(server.currentStatistics)
            server.publish(daemon.metricsText())
            _ = loop.schedule(at: loop.now + MetricsHTTP.Limits.snapshotInterval) { publish() }
        }
        publish()
        server.start()
        logger.notice("metrics: http://\(server.local)\(MetricsHTTP.metricsPath)")
    }
}

extension Daemon {
    /// The metrics server's own counts, copied in before each rendering.
    func serverMetrics(_ statistics: MetricsHTTPServer.Statistics) {
        for (status, count) in statistics.responses {
            metrics.set(Metrics.series("vigil_metrics_http_responses_total", ["code": "\(status)"]), count,
                        help: "responses of the metrics HTTP endpoint by status code")
        }
        for (reason, count) in statistics.dropped {
            metrics.set(Metrics.series("vigil_metrics_http_dropped_total", ["reason": reason.rawValue]), count,
                        help: "metrics HTTP connections closed unanswered: request head too large, or not done in time")
        }
    }
}
