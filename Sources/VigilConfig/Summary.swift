import VigilIKE

extension VigilConfiguration {
    /// A deterministic, human-readable account of what was understood: maps in name order, entries by sequence,
    /// peer lists in order, durations with units. Secrets never appear.
    public var normalizedSummary: String {
        var lines: [String] = []
        lines.append("global:")
        lines.append("  identity: \(global.identity)")
        lines.append("  listen: \(global.listen.map(\.description).joined(separator: ", "))")
        lines.append("  dataplane: \(global.dataplane)")
        lines.append("  secrets: \(global.secretsPath ?? "none")")
        lines.append("  control-socket: \(global.controlSocket)")
        if let group = global.controlGroup { lines.append("  control-group: \(group)") }
        lines.append("  state-file: \(global.stateFile)")
        lines.append("  dpd defaults: \(global.dpd.summary)")
        lines.append("  ike-retransmit: \(global.ikeRetransmit.summary)")
        lines.append("  kernel: route-table \(global.kernel.routeTable), install-routes \(global.kernel.installRoutes)")
        let halfOpen = global.halfOpen
        if let value = halfOpen.perSource { lines.append("  half-open-per-source: \(value)") }
        if let value = halfOpen.total { lines.append("  half-open-total: \(value)") }
        if let value = halfOpen.lifetime { lines.append("  half-open-lifetime: \(value.configurationText)") }
        if let value = halfOpen.cookieThreshold { lines.append("  cookie-threshold: \(value)") }
        for hook in global.hooks { lines.append("  hook: \(hook.summary)") }
        if let metrics = global.metrics { lines.append("  metrics: http://\(metrics.listen)/metrics") }
        lines.append("crypto-maps:")
        for map in cryptoMaps {
            lines.append("  \(map.name):")
            for entry in map.entries {
                lines.append("    entry \(entry.sequence) (IKE\(entry.ikeVersion)):")
                lines.append("      peers:")
                for (position, peer) in entry.peers.enumerated() {
                    var line = "        \(position + 1). \(peer.address)"
                    if let identity = peer.identity { line += " (identity \(identity))" }
                    if position == 0, entry.preferredPeer != nil { line += " [default]" }
                    lines.append(line)
                }
                if entry.preferredPeer != nil {
                    var line = "      preferred peer: \(entry.peers[0].address)"
                    if let idle = entry.idleTime { line += ", idle-time \(idle.configurationText)" }
                    lines.append(line)
                }
                if let preemption = entry.preemption {
                    lines.append("      preemption: hold-down \(preemption.holdDown.configurationText), at most \(preemption.maxFlaps) per \(preemption.flapWindow.configurationText)")
                }
                for pair in entry.traffic { lines.append("      traffic: \(pair)") }
                lines.append("      ike-proposals: \(entry.ikeProposals.map(\.description).joined(separator: ", "))")
                lines.append("      esp-proposals: \(entry.espProposals.map(\.description).joined(separator: ", "))")
                lines.append("      pfs-group: \(entry.pfsGroup?.keyword ?? "none")")
                var lifetimes = "      lifetimes: ike \(entry.ikeLifetime.configurationText), child \(entry.childLifetime.configurationText)"
                if let margin = entry.rekeyMargin { lifetimes += ", rekey-margin \(margin.configurationText)" }
                lines.append(lifetimes)
                lines.append("      dpd: \(entry.dpd.summary)")
                lines.append("      local-identity: \(entry.localIdentity ?? global.identity)")
                lines.append("      start: \(entry.start), encapsulation: \(entry.encapsulation), connect-timeout: \(entry.connectTimeout.configurationText), backoff: \(entry.backoff.initial.configurationText) to \(entry.backoff.maximum.configurationText)")
                lines.append("      retransmit: \(entry.retransmit.summary)")
                for hook in entry.hooks { lines.append("      hook: \(hook.summary)") }
                if let monitor = entry.monitor { lines.append("      monitor: \(monitor.summary)") }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension DPDSettings {
    var summary: String {
        switch mode {
        case .off:
            "off"
        case .periodic, .onDemand, .onIdle:
            "\(mode), interval \(interval?.configurationText ?? "none"), retry \(retry.configurationText), retries \(retries), action \(action)"
        }
    }
}

extension TunnelMonitorSettings {
    /// `echo 10.1.0.1 -> 10.2.0.10 every 2s, dead after 3 unanswered`: the summary `vigil config check` prints and
    /// vigild's `entry-loaded` event repeats.
    public var summary: String {
        "echo \(source) -> \(address) every \(interval.configurationText), dead after \(threshold) unanswered"
    }
}

extension RetransmissionSchedule {
    var summary: String { "timeout \(timeout.configurationText), base \(base), tries \(tries)" }
}

extension Hook {
    var summary: String {
        "\(path) on \(events.map(\.rawValue).joined(separator: ", ")), timeout \(timeout.configurationText)"
    }
}
