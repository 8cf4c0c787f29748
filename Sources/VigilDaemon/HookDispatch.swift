import Foundation
import VigilAddressing
import VigilConfig

/// The daemon's hooks: the runner, and the global hooks (replaced by a reload; an entry's own are in its
/// `CryptoMapEntry`). Touched on the event loop thread only.
struct DaemonHooks {
    let runner = HookRunner()
    var global: [Hook]
}

/// Where the daemon's events meet the updown hooks: the occasion is built from the daemon's own state (the entry,
/// the Child SA record, the peers the coordinator named), the runs go to `HookRunner` off the loop, and their ends
/// come back through `loop.post` to be logged, recorded (`hook-finished`) and counted.
extension Daemon {
    /// Runs the hooks configured for `event` (global ones, then the entry's own). `child` gives the SPIs and the
    /// negotiated selectors; without one the entry's configured traffic selectors are given.
    func runHooks(_ event: Hook.Event, _ entry: EntryRuntime, peer: String, previousPeer: String? = nil,
                  child: NegotiatedChild? = nil, reason: String? = nil) {
        let chosen = HookPlan.hooks(for: event, global: hooks.global, entry: entry.entry.hooks)
        guard !chosen.isEmpty else { return }
        let occasion = HookOccasion(
            event: event, map: entry.map, sequence: entry.entry.sequence, ikeVersion: entry.version, peer: peer,
            previousPeer: previousPeer,
            localSubnets: child?.localTrafficSelectors ?? entry.entry.traffic.map(\.local),
            remoteSubnets: child?.remoteTrafficSelectors ?? entry.entry.traffic.map(\.remote),
            spis: child.map { ChildSPIs(inbound: $0.inboundSPI, outbound: $0.outboundSPI) }, reason: reason,
            unixMilliseconds: Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)))
        let environment = HookPlan.environment(occasion)
        for hook in chosen {
            let dropped = hooks.runner.run(hook, environment: environment) { [self] outcome, output in
                loop.post { [self] in
                    hookFinished(hook, occasion, outcome, output: output)
                    drain()
                }
            }
            if let dropped { hookFinished(hook, occasion, dropped, output: "") }
        }
    }

    /// A reload's hooks take the place of the running ones (global and per entry; an entry a reload adds needs a
    /// restart anyway). True when any changed.
    func applyHooks(of next: VigilConfiguration) -> Bool {
        var changed = hooks.global != next.global.hooks
        hooks.global = next.global.hooks
        for map in next.cryptoMaps {
            for candidate in map.entries {
                guard let entry = entries["\(map.name)/\(candidate.sequence)"], entry.entry.hooks != candidate.hooks else { continue }
                entry.entry.hooks = candidate.hooks
                changed = true
            }
        }
        return changed
    }

    /// True when the kernel's policies point at this Child SA (it carries the traffic; not one superseded by a rekey).
    func isActive(_ record: EntryRuntime.ChildRecord, _ entry: EntryRuntime) -> Bool {
        record.kernel.contains { entry.installed[$0.selectorKey]?.inbound.spi == $0.inbound.spi }
    }

    /// True when programming this Child SA brings a tunnel up (`established`): its selectors carry nothing yet,
    /// or carry another tunnel (a failover), or a Child SA that is gone. Not a renewal beside a live Child SA of
    /// the same tunnel (an IKEv1 Quick Mode renewing a Phase 2: a rekey), nor one already installed.
    func bringsUp(_ record: EntryRuntime.ChildRecord, _ entry: EntryRuntime) -> Bool {
        record.kernel.contains { child in
            guard let current = entry.installed[child.selectorKey] else { return true }
            guard current.inbound.spi != child.inbound.spi else { return false }
            let currentLives = entry.children.values.contains { $0.kernel.contains { $0.inbound.spi == current.inbound.spi } }
            return !(current.sameTunnel(as: child) && currentLives)
        }
    }

    /// The Child SA that carries `peer`'s traffic, if any.
    func activeChild(of peer: String, _ entry: EntryRuntime) -> NegotiatedChild? {
        entry.children.values.first { $0.peer == peer && isActive($0, entry) }?.child
    }

    private func hookFinished(_ hook: Hook, _ occasion: HookOccasion, _ outcome: HookOutcome, output: String) {
        metrics.increment("vigil_hook_runs_total{event=\"\(occasion.event)\",result=\"\(outcome.label)\"}",
                          help: "updown hook runs by event and result")
        let entry = entries["\(occasion.map)/\(occasion.sequence)"]
        let detail = "\(hook.path) for \(occasion.event) \(outcome.description)" + (output.isEmpty ? "" : "; output: \(output)")
        switch outcome {
        case .exited(0):
            logger.info("hook \(detail)")
        case .exited, .signalled, .timedOut, .spawnFailed, .dropped:
            logger.warning("hook \(detail)")
        }
        record(.hookFinished, entry, peer: occasion.peer, detail: detail)
    }
}
