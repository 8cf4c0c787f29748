import VigilAddressing
import VigilConfig
import VigilKernel

/// Fail closed (issue 13 defect 8) and planned endpoint moves (defect 2, kernel side).
extension Daemon {
    /// Start-up: every entry's selector pairs guarded before any negotiation (block, or hold for DPD action
    /// `hold`), leftovers of a killed run adopted in place, then removed only where nothing needs them. Returns the
    /// line for the `kernel-reconciled` event. Selectors that cover the tunnel endpoints themselves (a full tunnel,
    /// 0.0.0.0/0 or ::/0) are guarded like any other: every IKE socket bypasses IPsec policies (`UDPSocket`,
    /// `SocketPolicy.bypass`), so a guard never blocks IKE.
    func reconcileFailClosed() -> String {
        var guards: [String: SelectorGuard] = [:]
        var problems: [String] = []
        for name in entryOrder {
            let entry = entries[name]!
            for (key, built) in failClosedGuards(entry) {
                switch built {
                case .success(let selectorGuard): guards[key] = guards[key] ?? selectorGuard
                case .failure(let error): problems.append("\(entry.name) \(key): \(error)")
                }
            }
        }
        let peers = entryOrder.flatMap { name in entries[name]!.addresses.values }
        let line = kernel.reconcile(guards: guards, peers: peers)
        return problems.isEmpty ? line : line + "; not guarded: " + problems.joined(separator: "; ")
    }

    /// The guards of one entry: its configured local and remote prefixes paired as the IKE engines propose them
    /// (every local with every remote of its family), so a Child SA's policies land on a guard in place.
    func failClosedGuards(_ entry: EntryRuntime) -> [(String, Result<SelectorGuard, KernelPlanError>)] {
        let locals = unique(entry.entry.traffic.map(\.local))
        let remotes = unique(entry.entry.traffic.map(\.remote))
        let firstPeer = entry.entry.peers.lazy.compactMap { entry.addresses[$0.description] }.first
        var result: [(String, Result<SelectorGuard, KernelPlanError>)] = []
        for local in locals {
            for remote in remotes where remote.family == local.family {
                let form: SelectorGuard.Form
                switch entry.entry.dpd.action {
                case .hold:
                    guard let peer = firstPeer,
                          let listen = configuration.global.listen.first(where: { $0.family == peer.family }) else {
                        form = .block  // no peer address to name: block holds the traffic back just as well
                        break
                    }
                    form = .hold(localTunnelEndpoint: listen, remoteTunnelEndpoint: peer)
                case .restart, .clear:
                    form = .block
                }
                result.append(("\(local)=\(remote)", Result { () throws(KernelPlanError) in
                    try SelectorGuard(localSubnet: local, remoteSubnet: remote, form: form)
                }))
            }
        }
        return result
    }

    private func unique(_ prefixes: [IPPrefix]) -> [IPPrefix] {
        var seen = Set<IPPrefix>()
        return prefixes.filter { seen.insert($0).inserted }
    }

    /// RFC 7296 §2.23: the IKE engine saw the peer of `session` move (its NAT mapping changed) and authenticated it.
    /// Every Child SA of that IKE SA moves as a planned change, make-before-break (`KernelPlanner.moveEndpoints`):
    /// SAs to the new address and port, policies' templates repointed in place, old SAs deleted last. A move the
    /// kernel layer cannot express (another address family) is refused and recorded, never a trap.
    func peerAddressChanged(_ session: SessionKey, from old: Endpoint, to new: Endpoint) {
        for name in entryOrder {
            let entry = entries[name]!
            for (spi, var childRecord) in entry.children where childRecord.child.ikeSA == session {
                var moved: [KernelChildSA] = []
                var steps = 0
                var refusals: [String] = []
                for previous in childRecord.kernel {
                    let encapsulation = previous.encapsulation.map {
                        UDPEncapsulation(sourcePort: $0.sourcePort, destinationPort: new.port)
                    }
                    let next: KernelChildSA
                    do {
                        next = try previous.movingPeer(to: new.address, encapsulation: encapsulation)
                    } catch {
                        refusals.append(error.description)
                        moved.append(previous)
                        continue
                    }
                    if entry.installed[previous.selectorKey]?.inbound.spi == previous.inbound.spi {
                        let report = applyPlan(KernelPlanner.moveEndpoints(from: previous, to: next), entry, what: "endpoint move")
                        steps += report.applied.count
                        refusals += report.refused.map(\.description)
                        entry.installed[previous.selectorKey] = next
                    }
                    moved.append(next)
                }
                childRecord.kernel = moved
                childRecord.child.remoteEndpoint = new
                entry.children[spi] = childRecord
                metrics.increment("vigil_endpoint_moves_total", help: "Child SAs moved to a peer's new address (RFC 7296 §2.23)")
                record(.endpointsMoved, entry, peer: childRecord.peer,
                       detail: "Child SA \(hex(spi)) from \(old) to \(new): \(steps) steps"
                           + (refusals.isEmpty ? "" : "; REFUSED: \(refusals.joined(separator: "; "))"))
            }
        }
    }
}
