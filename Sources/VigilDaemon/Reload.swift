import VigilConfig

/// What a loaded configuration changes in the running one: pure, so SIGHUP and the control API share it and tests
/// can check it without a daemon.
struct ReloadPlan: Equatable {
    /// One running entry as the plan needs it.
    struct Running {
        var name: String
        /// The running entry (its peers are the running list).
        var entry: CryptoMapEntry
        /// The file's list as last loaded.
        var configuredPeers: [Peer]
        var configuredPreferred: Peer?
    }

    enum Change: Equatable {
        /// The file changed the entry's list: it replaces the running one (also one set at run time).
        case peerList(entry: String, peers: [Peer], preferred: Peer?)
        /// Same list, new keys or expected identities.
        case credentials(entry: String, peers: [Peer])
        /// An entry new to the running configuration, in its map: guarded, then loaded (and started if `start`).
        case addEntry(map: String, entry: CryptoMapEntry)
        /// An entry no longer in the file: its SAs deleted (DELETE to the peer), its kernel state removed.
        case removeEntry(String)
        /// An entry whose other settings changed (`changed` names them): removed, then added from the file, so it
        /// renegotiates with them. `runTimeList` is the run-time list it keeps (the file did not change its list).
        case replaceEntry(String, entry: CryptoMapEntry, changed: [String], runTimeList: PeerList?)
    }

    /// A peer list kept across a replacement.
    struct PeerList: Equatable {
        var peers: [Peer]
        var preferred: Peer?
    }

    var changes: [Change] = []
    var kept: [String] = []
    var needsRestart: [String] = []

    static func make(running: [Running], runningGlobal: GlobalSettings, next: VigilConfiguration) -> ReloadPlan {
        var plan = ReloadPlan()
        let nextPeers = next.cryptoMaps.flatMap(\.entries).flatMap(\.peers)
        let nextNames = Set(next.cryptoMaps.flatMap { map in map.entries.map { "\(map.name)/\($0.sequence)" } })
        // Removals first: a replaced or added entry may take over what a removed one guarded.
        plan.changes += running.map(\.name).filter { !nextNames.contains($0) }.map { .removeEntry($0) }
        for map in next.cryptoMaps {
            for candidate in map.entries {
                let name = "\(map.name)/\(candidate.sequence)"
                guard let current = running.first(where: { $0.name == name }) else {
                    plan.changes.append(.addEntry(map: map.name, entry: candidate))
                    continue
                }
                let fileListChanged = candidate.peers.map(\.description) != current.configuredPeers.map(\.description)
                    || candidate.preferredPeer?.description != current.configuredPreferred?.description
                let runningNames = current.entry.peers.map(\.description)
                let runTimeList = !fileListChanged && (runningNames != candidate.peers.map(\.description)
                    || current.entry.preferredPeer?.description != candidate.preferredPeer?.description)
                if runTimeList { plan.kept.append("peers of \(name) as set at run time (\(runningNames.joined(separator: ", ")))") }
                // Keys and expected identities of the running peers, from this entry first, then any entry.
                let renewed = current.entry.peers.map { peer in
                    (candidate.peers + nextPeers).first { $0.address == peer.address } ?? peer
                }
                let changed = changedSettings(current.entry, candidate)
                if !changed.isEmpty {
                    let kept = runTimeList
                        ? PeerList(peers: renewed, preferred: current.entry.preferredPeer.flatMap { preferred in renewed.first { $0.address == preferred.address } })
                        : nil
                    plan.changes.append(.replaceEntry(name, entry: candidate, changed: changed, runTimeList: kept))
                } else if fileListChanged {
                    plan.changes.append(.peerList(entry: name, peers: candidate.peers, preferred: candidate.preferredPeer))
                } else if renewed != current.entry.peers {
                    plan.changes.append(.credentials(entry: name, peers: renewed))
                }
            }
        }
        let global = changedSettings(runningGlobal, next.global)
        if !global.isEmpty { plan.needsRestart.append("global (\(global.joined(separator: ", ")))") }
        return plan
    }

    /// A setting compared by a reload: its configuration key and whether two values differ in it.
    struct Field<Root> {
        var name: String
        var differs: (Root, Root) -> Bool
        init<Value: Equatable>(_ name: String, _ path: KeyPath<Root, Value>) {
            self.name = name
            differs = { $0[keyPath: path] != $1[keyPath: path] }
        }
    }

    /// The keys of `fields` whose values differ between `old` and `new`.
    static func changed<Root>(_ old: Root, _ new: Root, _ fields: [Field<Root>]) -> [String] {
        fields.filter { $0.differs(old, new) }.map(\.name)
    }

    /// The settings of an entry a reload changes by replacing the entry (peers, keys and hooks it changes in place).
    static func changedSettings(_ old: CryptoMapEntry, _ new: CryptoMapEntry) -> [String] {
        changed(old, new, [
            Field("ike-version", \.ikeVersion), Field("idle-time", \.idleTime), Field("preemption", \.preemption),
            Field("traffic", \.traffic), Field("ike-proposals", \.ikeProposals), Field("esp-proposals", \.espProposals),
            Field("pfs-group", \.pfsGroup), Field("ike-lifetime", \.ikeLifetime), Field("child-lifetime", \.childLifetime),
            Field("rekey-margin", \.rekeyMargin), Field("dpd", \.dpd), Field("start", \.start), Field("encapsulation", \.encapsulation),
            Field("connect-timeout", \.connectTimeout), Field("backoff", \.backoff), Field("local-identity", \.localIdentity),
            Field("retransmit", \.retransmit), Field("monitor", \.monitor),
        ])
    }

    /// The global settings a reload cannot change in place (hooks and keys it can).
    static func changedSettings(_ old: GlobalSettings, _ new: GlobalSettings) -> [String] {
        changed(old, new, [
            Field("identity", \.identity), Field("listen", \.listen), Field("dataplane", \.dataplane), Field("secrets", \.secretsPath),
            Field("control-socket", \.controlSocket), Field("control-group", \.controlGroup), Field("state-file", \.stateFile),
            Field("ike-retransmit", \.ikeRetransmit), Field("kernel", \.kernel), Field("half-open", \.halfOpen), Field("metrics", \.metrics),
        ])
    }
}
