import VigilConfig
import VigilCrypto

extension Daemon {
    /// SIGHUP and `vigil reload`: load the configuration again. With errors, nothing changes and every error is
    /// in the report (and the log). Otherwise what the file changed is applied at once, each entry's peer list
    /// atomically (the file's list also replaces one set at run time, and the state file follows), changed keys
    /// and hooks too; other changes need a restart and are named.
    @discardableResult
    func reload(path: String) -> ReloadReport {
        let next: VigilConfiguration
        do {
            next = try ConfigurationLoader.load(path: path)
        } catch {
            return refuse(ReloadReport(path: path, refused: true, errors: error.errors.map(\.description)))
        }
        let running = entryOrder.map { entries[$0]! }.map {
            ReloadPlan.Running(name: $0.name, entry: $0.entry, configuredPeers: $0.configuredPeers, configuredPreferred: $0.configuredPreferred)
        }
        let plan = ReloadPlan.make(running: running, runningGlobal: configuration.global, next: next)
        var updates: [() -> String] = []
        var applied: [String] = []
        var listsChanged = false
        for change in plan.changes {
            switch change {
            case .peerList(let name, let peers, let preferred):
                do {
                    updates.append(try preparePeerList(entries[name]!, peers: peers, preferred: preferred, fromFile: true))
                } catch {
                    return refuse(ReloadReport(path: path, refused: true, errors: ["\(path): peers of \(name): \(error)"]))
                }
                applied.append("peers of \(name)")
                listsChanged = true
            case .credentials(let name, let peers):
                let entry = entries[name]!
                updates.append { [self] in applyCredentials(peers, to: entry) }
                applied.append("keys of \(name)")
            }
        }
        for update in updates { _ = update() }
        if applyHooks(of: next) { applied.append("hooks") }
        if listsChanged, let failure = writeState() { applied.append("peer lists (\(failure))") }
        let report = ReloadReport(path: path, refused: false, applied: applied, kept: plan.kept, needsRestart: plan.needsRestart)
        record(.reloaded, detail: report.summary)
        drain()
        return report
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
