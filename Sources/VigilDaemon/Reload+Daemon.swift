import VigilConfig
import VigilCrypto
import VigilFailover
import VigilKernel

extension Daemon {
    /// SIGHUP and `vigil reload`: load the configuration again. With errors, nothing changes and every error is
    /// in the report (and the log). Otherwise the file is applied as a diff of entries, at once: new entries are
    /// guarded, loaded and started as configured; removed ones have their SAs deleted (DELETE to the peer) and
    /// their kernel state removed; changed ones are replaced (removed, then added: they renegotiate); unchanged ones
    /// keep their SAs. Each entry's peer list is updated atomically (the file's list also replaces one set at run
    /// time, and the state file follows), changed keys and hooks too; changed global settings need a restart and
    /// are named.
    @discardableResult
    func reload(path: String) -> ReloadReport {
        let next: VigilConfiguration
        do {
            next = try ConfigurationLoader.load(path: path)
        } catch {
            return refuse(ReloadReport(path: path, refused: true, errors: error.errors.map(\.description)))
        }
        return reload(next, path: path)
    }

    /// The same with the file's text already read (`fileName` names it in errors; `secrets`: the secrets file's text).
    @discardableResult
    func reload(yaml: String, fileName: String, secrets: String?) -> ReloadReport {
        let next: VigilConfiguration
        do {
            next = try ConfigurationLoader.load(yaml: yaml, fileName: fileName, secrets: secrets)
        } catch {
            return refuse(ReloadReport(path: fileName, refused: true, errors: error.errors.map(\.description)))
        }
        return reload(next, path: fileName)
    }

    private func reload(_ next: VigilConfiguration, path: String) -> ReloadReport {
        let running = entryOrder.map { entries[$0]! }.map {
            ReloadPlan.Running(name: $0.name, entry: $0.entry, configuredPeers: $0.configuredPeers, configuredPreferred: $0.configuredPreferred)
        }
        let plan = ReloadPlan.make(running: running, runningGlobal: configuration.global, next: next)
        var report = ReloadReport(path: path, refused: false, kept: plan.kept, needsRestart: plan.needsRestart)
        // Everything that can fail is prepared before anything changes.
        var errors: [String] = []
        var updates: [() -> Void] = []
        /// Entries added or replaced, built from the file, by name.
        var incoming: [String: EntryRuntime] = [:]
        var listsChanged = false
        for change in plan.changes {
            switch change {
            case .peerList(let name, let peers, let preferred):
                do {
                    let update = try preparePeerList(entries[name]!, peers: peers, preferred: preferred, fromFile: true)
                    updates.append { _ = update() }
                } catch {
                    errors.append("\(path): peers of \(name): \(error)")
                }
                report.applied.append("peers of \(name)")
                listsChanged = true
            case .credentials(let name, let peers):
                let entry = entries[name]!
                updates.append { [self] in _ = applyCredentials(peers, to: entry) }
                report.applied.append("keys of \(name)")
            case .addEntry(let map, let entry):
                let runtime = EntryRuntime(map: map, entry: entry, global: configuration.global)
                incoming[runtime.name] = runtime
                report.added.append(runtime.name)
            case .removeEntry(let name):
                let entry = entries[name]!
                updates.append { [self] in unload(entry, replaced: false, reason: "removed from \(path)") }
                report.removed.append(name)
                listsChanged = true
            case .replaceEntry(let name, let entry, let changed, let runTimeList):
                let old = entries[name]!
                let runtime = EntryRuntime(map: old.map, entry: entry, global: configuration.global)
                if let runTimeList {
                    runtime.entry.peers = runTimeList.peers
                    runtime.entry.preferredPeer = runTimeList.preferred
                    runtime.coordinator = FailoverCoordinator(configuration: EntryRuntime.coordinatorConfiguration(runtime.entry))
                    for peer in runTimeList.peers {
                        runtime.addresses[peer.description] = old.addresses[peer.description] ?? EntryRuntime.resolve(peer.address)
                    }
                }
                incoming[name] = runtime
                let settings = changed.joined(separator: ", ")
                updates.append { [self] in unload(old, replaced: true, reason: "replaced from \(path): \(settings) changed") }
                report.replaced.append("\(name) (\(settings))")
                listsChanged = true
            }
        }
        var incomingGuards: [String: SelectorGuard] = [:]
        for name in incoming.keys.sorted() {
            for (key, built) in failClosedGuards(incoming[name]!) {
                switch built {
                case .success(let selectorGuard): incomingGuards[key] = incomingGuards[key] ?? selectorGuard
                case .failure(let error): errors.append("\(path): \(name): traffic \(key) cannot be guarded: \(error)")
                }
            }
        }
        guard errors.isEmpty else { return refuse(ReloadReport(path: path, refused: true, errors: errors)) }

        for update in updates { update() }
        configuration.cryptoMaps = next.cryptoMaps
        entryOrder = next.cryptoMaps.flatMap { map in map.entries.map { "\(map.name)/\($0.sequence)" } }
        for name in entryOrder {
            guard let runtime = incoming[name] else { continue }
            entries[name] = runtime
            if engines[runtime.version] == nil { registerEngine(runtime.entry.ikeVersion) }
            engines[runtime.version]!.addConnection(map: runtime.map, entry: runtime.entry, global: configuration.global)
        }
        // Fail closed: the guards nobody needs any more go, the new entries' go in before they negotiate (a
        // selector pair another entry's Child SA holds stays as it is).
        let wanted = Set(entryOrder.flatMap { failClosedGuards(entries[$0]!).map(\.0) })
        var refusals = kernel.removeGuards(keeping: wanted)
        let held = Set(entryOrder.flatMap { entries[$0]!.installed.keys })
        refusals += kernel.installGuards(incomingGuards.filter { !held.contains($0.key) },
                                         peers: entryOrder.flatMap { entries[$0]!.addresses.values })
        if !refusals.isEmpty {
            logger.error("reload: fail-closed guards not all in place: \(refusals.joined(separator: "; "))")
            report.applied.append("guards (NOT all in place: \(refusals.joined(separator: "; ")))")
        }
        for name in entryOrder { if let runtime = incoming[name] { loaded(runtime) } }
        if applyHooks(of: next) { report.applied.append("hooks") }
        if listsChanged, let failure = writeState() { report.applied.append("peer lists (\(failure))") }
        record(.reloaded, detail: report.summary)
        drain()
        return report
    }

    /// A reload removed the entry (`replaced`: a new one of the same name follows): its IKE SAs are deleted with a
    /// DELETE to the peer (negotiations not established yet are dropped silently), its Child SAs' SAs, policies and
    /// routes removed (back to the guard first, which `removeGuards` then removes unless another entry needs it),
    /// its timers cancelled, and the engine forgets the connection.
    private func unload(_ entry: EntryRuntime, replaced: Bool, reason: String) {
        let engine = engines[entry.version]
        let tracked = sessions.values.filter { $0.entryName == entry.name }.sorted { $0.key.spi < $1.key.spi }
        let trackedKeys = Set(tracked.map(\.key))
        for view in engine?.sessions ?? [] where view.connection == entry.name && !trackedKeys.contains(view.key) {
            engine?.abandon(view.key)
            probeSessions.remove(view.key)
        }
        for session in tracked {
            if session.established { engine?.delete(session.key) } else { engine?.abandon(session.key) }
            forget(session.key)
        }
        for record in entry.children.values.sorted(by: { $0.child.inboundSPI < $1.child.inboundSPI }) where isActive(record, entry) {
            runHooks(.down, entry, peer: record.peer, child: record.child, reason: reason)
        }
        for record in entry.children.values {
            for child in record.kernel where entry.installed[child.selectorKey]?.inbound.spi != child.inbound.spi {
                applyPlan(KernelPlanner.retire(child), entry, what: "entry removed")
            }
        }
        for key in entry.installed.keys.sorted() { applyPlan(kernel.releasePlan(entry.installed[key]!), entry, what: "entry removed") }
        entry.children.removeAll()
        entry.installed.removeAll()
        if let timer = entry.coordinatorTimer { loop.cancel(timer) }
        entry.coordinatorTimer = nil
        stopTunnelMonitor(of: entry.name)
        failoverPhases.forget(entry.name)
        engine?.removeConnection(entry.name)
        entries[entry.name] = nil
        entryOrder.removeAll { $0 == entry.name }
        if !replaced { metrics.removeSeries(labelledFirst: ["map": entry.map, "sequence": "\(entry.entry.sequence)"]) }
        record(.entryRemoved, entry, detail: "\(reason); \(tracked.count) IKE SAs deleted")
    }

    private func refuse(_ report: ReloadReport) -> ReloadReport {
        logger.error("reload refused, running configuration kept:\n\(report.errors.joined(separator: "\n"))")
        record(.reloadRefused, detail: "\(report.summary): " + report.errors.joined(separator: "; "))
        return report
    }

    /// New keys (or expected identities) for an unchanged peer list.
    func applyCredentials(_ peers: [Peer], to entry: EntryRuntime) -> String {
        entry.entry.peers = peers
        engines[entry.version]?.updatePeers(connection: entry.name, peers: peers.compactMap { peer -> EnginePeer? in
            guard let address = entry.addresses[peer.description] ?? EntryRuntime.resolve(peer.address) else { return nil }
            return EnginePeer(address: address, identity: peer.expectedIdentity, preSharedKey: SecureBytes(peer.preSharedKey))
        })
        record(.credentialsUpdated, entry, detail: "keys reloaded for \(peers.map(\.description).joined(separator: ", "))")
        return "\(entry.name): keys"
    }

    // MARK: The state file

    /// The run-time peer lists now (entries whose list is not the file's).
    var peerListState: PeerListState {
        PeerListState(entries: entryOrder.map { entries[$0]! }.filter(\.listSetAtRunTime).map {
            PeerListState.Entry(map: $0.map, sequence: $0.entry.sequence, peers: $0.peerNames, preferred: $0.entry.preferredPeer?.description,
                                configuredPeers: $0.configuredPeers.map(\.description), configuredPreferred: $0.configuredPreferred?.description)
        })
    }

    /// Writes the state file; the failure, if any (logged and recorded: the change stands, a restart would lose it).
    func writeState() -> String? {
        let path = configuration.global.stateFile
        do {
            try StateFile.write(peerListState, to: path)
            return nil
        } catch {
            logger.error("cannot write the state file \(path): \(error); run-time peer lists will not survive a restart")
            record(.stateWriteFailed, detail: "\(path): \(error)")
            return "NOT saved to \(path): \(error)"
        }
    }

    /// After a peer-list update from the control API: the state file follows; a failure is told to the operator.
    func saveState() -> String {
        writeState().map { "; \($0)" } ?? ""
    }

    /// At start-up: the run-time lists stored by the last run, over the configuration's, where the entry still
    /// exists, its file list is the one they overrode, and every peer has a key. Anything else is logged and
    /// ignored; never a reason not to start.
    func restorePeerLists() {
        let path = configuration.global.stateFile
        let state: PeerListState?
        do {
            state = try StateFile.read(path: path)
        } catch {
            logger.warning("state file \(path) ignored: \(error)")
            record(.stateIgnored, detail: "\(path): \(error); the configured peer lists are used")
            return
        }
        guard let state else { return }
        let configured = entryOrder.map { entries[$0]! }.map {
            PeerListState.Configured(name: $0.name, peers: $0.configuredPeers.map(\.description), preferred: $0.configuredPreferred?.description)
        }
        let (restore, ignored) = state.restorable(over: configured)
        for reason in ignored {
            logger.warning("state file \(path): \(reason)")
            record(.stateIgnored, detail: "\(path): \(reason)")
        }
        for stored in restore {
            let entry = entries[stored.name]!
            do {
                let peers = try validatedPeers(stored.peers, preferred: stored.preferred)
                let preferred = stored.preferred.flatMap { name in peers.first { $0.description == name } }
                _ = try preparePeerList(entry, peers: peers, preferred: preferred, fromFile: false)()
                record(.peerListRestored, entry, detail: "from \(path): \(stored.peers.joined(separator: ", "))")
            } catch {
                logger.warning("state file \(path): \(stored.name): \(error); the configured list is used")
                record(.stateIgnored, entry, detail: "\(path): stored peers \(stored.peers.joined(separator: ", ")): \(error); the configured list is used")
            }
        }
    }
}
