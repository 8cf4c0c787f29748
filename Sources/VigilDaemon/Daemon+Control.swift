import VigilAddressing
import VigilConfig
import VigilCrypto
import VigilFailover
import VigilIKE

/// The control API's commands, answered on the event loop thread.
extension Daemon {
    func handleControl(_ request: ControlRequest) -> ControlResponse {
        switch request.command {
        case .status:
            return ControlResponse(ok: true, error: nil, status: status(), events: nil, metrics: nil, message: nil)
        case .events:
            return ControlResponse(ok: true, error: nil, status: nil, events: events.recent, metrics: nil, message: nil)
        case .metrics:
            return ControlResponse(ok: true, error: nil, status: nil, events: nil, metrics: metricsText(), message: nil)
        case .setPeers:
            return respond { try preparePeerUpdate(request)() + saveState() }
        case .reload:
            guard let path = configurationPath else {
                return .failure(ControlError(.internalError, "vigild was started without a configuration file to reload"))
            }
            let report = reload(path: path)
            var response = report.refused ? ControlResponse.failure(ControlError(.reloadRefused, report.summary)) : .success(message: report.summary)
            response.reload = report
            return response
        case .maps:
            do {
                let selected = try selectEntries(map: request.map, sequence: nil)
                var response = ControlResponse.success(message: "\(selected.count) entries")
                response.maps = MapsReport(entries: selected.map {
                    MapsReport.Entry(map: $0.map, entry: $0.entry, coordinator: $0.coordinator, health: $0.health, now: loop.now)
                })
                return response
            } catch let error as ControlError {
                return .failure(error)
            } catch {
                return .failure(ControlError(.internalError, "\(error)"))
            }
        case .clear:
            return respond {
                let targets = try selectEntries(map: request.map, sequence: request.sequence)
                let hold = request.hold ?? false
                // Cisco's clear: the SAs go and the entry renegotiates as configured (at once when it starts by
                // itself, on traffic otherwise); with hold it stays down until `initiate`.
                for entry in targets {
                    enqueue {
                        self.coordinate(entry, .operatorClear)
                        if !hold && entry.entry.start { self.coordinate(entry, .start) }
                    }
                }
                let names = targets.map(\.name).joined(separator: ", ")
                return hold ? "cleared \(names); held down until vigil initiate" : "cleared \(names); renegotiating as configured"
            }
        case .initiate:
            return respond {
                guard let map = request.map, let sequence = request.sequence else {
                    throw ControlError(.badRequest, "initiate needs a map and a sequence number")
                }
                let entry = try selectEntries(map: map, sequence: sequence)[0]
                guard case .idle = entry.coordinator.state else {
                    throw ControlError(.alreadyUp, "\(entry.name) is not idle (\(entry.coordinator.activePeer.map { "established with \($0)" } ?? "negotiating or backing off")); clear it first")
                }
                enqueue { self.coordinate(entry, .start) }
                return "initiating \(entry.name) from its first usable peer"
            }
        case .failover:
            return respond {
                guard let map = request.map, let sequence = request.sequence else {
                    throw ControlError(.badRequest, "failover needs a map and a sequence number")
                }
                let entry = try selectEntries(map: map, sequence: sequence)[0]
                if let target = request.to, !entry.peerNames.contains(target) {
                    throw ControlError(.unknownPeer, "\(target) is not listed in \(entry.name); listed: \(entry.peerNames.joined(separator: ", "))")
                }
                guard entry.coordinator.activePeer != nil || entry.coordinator.negotiatingPeer != nil else {
                    throw ControlError(.notConnected, "\(entry.name) has no active peer to fail over from")
                }
                enqueue { self.coordinate(entry, .operatorFailover(to: request.to)) }
                return "failover of \(entry.name) requested" + (request.to.map { " to \($0)" } ?? " to the next listed peer")
            }
        }
    }

    private func respond(_ body: () throws -> String) -> ControlResponse {
        do {
            return .success(message: try body())
        } catch let error as ControlError {
            return .failure(error)
        } catch {
            return .failure(ControlError(.internalError, "\(error)"))
        }
    }

    private func selectEntries(map: String?, sequence: Int?) throws -> [EntryRuntime] {
        let all = entryOrder.map { entries[$0]! }
        guard let map else { return all }
        let inMap = all.filter { $0.map == map }
        guard !inMap.isEmpty else {
            throw ControlError(.unknownMap, "no crypto map named '\(map)'; maps: \(Set(all.map(\.map)).sorted().joined(separator: ", "))")
        }
        guard let sequence else { return inMap }
        guard let entry = inMap.first(where: { $0.entry.sequence == sequence }) else {
            throw ControlError(.unknownEntry, "crypto map '\(map)' has no entry \(sequence); entries: \(inMap.map { String($0.entry.sequence) }.joined(separator: ", "))")
        }
        return [entry]
    }

    /// Atomic peer-list update: validated as a whole (addresses, duplicates, preferred first, a key for every peer)
    /// before anything changes; then the engine and the coordinator get the new list together.
    func preparePeerUpdate(_ request: ControlRequest) throws -> () -> String {
        guard let map = request.map, let sequence = request.sequence else {
            throw ControlError(.badRequest, "peers.set needs a map and a sequence number")
        }
        let entry = try selectEntries(map: map, sequence: sequence)[0]
        let peers = try validatedPeers(request.peers ?? [], preferred: request.preferred)
        return try preparePeerList(entry, peers: peers, preferred: request.preferred.flatMap { name in peers.first { $0.description == name } },
                                   fromFile: false)
    }

    /// A peer list given by name (the control API, the state file), each peer with its key: a peer the daemon
    /// knows keeps its configured identity and key, a new one needs a key in the secrets file.
    func validatedPeers(_ names: [String], preferred: String?) throws -> [Peer] {
        guard !names.isEmpty else { throw ControlError(.invalidPeerList, "the peer list is empty; give at least one peer") }
        var seen = Set<String>()
        var peers: [Peer] = []
        var keys: [Identity: Secret]?
        let known = entryOrder.flatMap { entries[$0]!.entry.peers } + configuration.cryptoMaps.flatMap(\.entries).flatMap(\.peers)
        for name in names {
            let normalized = IPAddress(name)?.description ?? name.lowercased()
            guard seen.insert(normalized).inserted else {
                throw ControlError(.invalidPeerList, "peer \(name) is listed twice")
            }
            let address: PeerAddress
            if let ip = IPAddress(name) {
                address = .ip(ip)
            } else if name.range(of: #"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"#, options: .regularExpression) != nil {
                address = .host(normalized)
            } else {
                throw ControlError(.invalidPeerList, "'\(name)' is not an IPv4 or IPv6 address or a host name")
            }
            if let peer = known.first(where: { $0.address == address }) {
                peers.append(peer)
                continue
            }
            // A peer new to this daemon: its key must be in the secrets file.
            if keys == nil {
                guard let path = configuration.global.secretsPath else {
                    throw ControlError(.invalidPeerList, "peer \(name) has no pre-shared key and no secrets file is configured")
                }
                do {
                    keys = try ConfigurationLoader.preSharedKeys(secretsPath: path)
                } catch {
                    throw ControlError(.invalidPeerList, "cannot read the secrets file: \(error.description)")
                }
            }
            let identity: Identity = if case .ip(let ip) = address { .address(ip) } else { .fqdn(normalized) }
            guard let key = keys?[identity] else {
                throw ControlError(.invalidPeerList, "peer \(name) has no pre-shared key in the secrets file")
            }
            peers.append(Peer(address: address, identity: nil, preSharedKey: key))
        }
        if let preferred, preferred != names.first {
            throw ControlError(.invalidPeerList, "the preferred peer \(preferred) must be listed first")
        }
        return peers
    }

    /// Resolves a validated list and returns the closure that applies it at once (so a reload can prepare every
    /// entry's list before applying any). `fromFile`: the configuration file's list (a reload), which becomes the
    /// entry's configured list.
    func preparePeerList(_ entry: EntryRuntime, peers: [Peer], preferred: Peer?, fromFile: Bool) throws -> () -> String {
        var resolved: [String: IPAddress] = [:]
        for peer in peers {
            guard let address = entry.addresses[peer.description] ?? EntryRuntime.resolve(peer.address) else {
                throw ControlError(.invalidPeerList, "cannot resolve \(peer.description)")
            }
            resolved[peer.description] = address
        }
        return { [self] in
            entry.entry.peers = peers
            entry.entry.preferredPeer = preferred
            if fromFile {
                entry.configuredPeers = peers
                entry.configuredPreferred = preferred
            }
            entry.addresses.merge(resolved) { _, new in new }
            entry.forgetUnlistedHealth()
            engines[entry.version]?.updatePeers(connection: entry.name, peers: peers.map {
                EnginePeer(address: resolved[$0.description]!, identity: $0.expectedIdentity, preSharedKey: SecureBytes($0.preSharedKey))
            })
            let list = peers.map(\.description)
            let preferredName = preferred?.description
            enqueue { self.coordinate(entry, .peerListUpdated(list, preferred: preferredName)) }
            record(.peerListUpdated, entry, detail: list.joined(separator: ", ") + (preferredName.map { " (preferred \($0))" } ?? ""))
            return "\(entry.name): peers \(list.joined(separator: ", "))"
        }
    }

    func status() -> StatusReport {
        var reports: [StatusReport.Entry] = []
        let views = engines.values.flatMap(\.sessions)
        for name in entryOrder {
            let entry = entries[name]!
            let state = entry.coordinator.state.summary
            let ikeSAs = views.filter { $0.connection == name }.map { view in
                StatusReport.IKESAStatus(
                    id: view.key.description, peer: entry.peerName(for: view.peer) ?? view.peer.description, state: view.state,
                    localSPI: hex(view.localSPI), remoteSPI: hex(view.remoteSPI),
                    algorithms: view.algorithms, established: view.establishedAt?.seconds,
                    rekeyIn: view.rekeyAt.map { max($0 - loop.now, .zero).seconds })
            }
            let childRekeys = engines[entry.version]?.childRekeyAt ?? [:]
            let childSAs = entry.children.values.sorted { $0.child.inboundSPI < $1.child.inboundSPI }.map { record in
                var child = StatusReport.ChildSAStatus(
                    peer: record.peer, inboundSPI: hex(record.child.inboundSPI), outboundSPI: hex(record.child.outboundSPI),
                    algorithms: record.child.algorithms.description,
                    localTS: record.child.localTrafficSelectors.map(\.description),
                    remoteTS: record.child.remoteTrafficSelectors.map(\.description),
                    encapsulated: record.child.udpEncapsulated, inboundError: inboundError(record.child.inboundSPI))
                // One traffic pair per Child SA: the first selector pair's SAs (every pair shares the keys' SPIs).
                if let first = record.kernel.first {
                    let inbound = kernel.traffic(first.inboundSAID), outbound = kernel.traffic(first.outboundSAID)
                    child.bytesIn = inbound?.bytes
                    child.packetsIn = inbound?.packets
                    child.bytesOut = outbound?.bytes
                    child.packetsOut = outbound?.packets
                }
                if let since = record.since {
                    let age = loop.now - since
                    child.age = age.seconds
                    child.expiresIn = max(entry.entry.childLifetime - age, .zero).seconds
                }
                child.rekeyIn = childRekeys[ChildSAID(record.child.inboundSPI)].map { max($0 - loop.now, .zero).seconds }
                return child
            }
            reports.append(StatusReport.Entry(
                map: entry.map, sequence: entry.entry.sequence, ikeVersion: entry.version.rawValue, peers: entry.peerNames,
                preferredPeer: entry.entry.preferredPeer?.description, state: state, activePeer: entry.coordinator.activePeer,
                ikeSAs: ikeSAs, childSAs: childSAs, dpd: entry.dpdSummary))
        }
        return StatusReport(uptime: loop.now.seconds, dataplane: kernel.dataplaneDescription, entries: reports)
    }

    func metricsText() -> String {
        var all = metrics
        for (version, engine) in engines {
            for (name, value) in engine.counters {
                all.set("vigil_ike_\(name){version=\"\(version)\"}", value)
            }
            for (outcome, value) in engine.exchanges {
                all.set(Metrics.series("vigil_ike_exchanges_total", [
                    "version": version.rawValue, "exchange": outcome.exchange.rawValue,
                    "role": outcome.role.rawValue, "result": outcome.result.rawValue,
                ]), value, help: "IKE exchanges that ended, by exchange type, our role and result (ok, failed, timeout)")
            }
        }
        all.set("vigil_ike_sas", UInt64(sessions.count), help: "IKE SAs tracked")
        all.set("vigil_event_loop_refused_posts_total", loop.refusedPosts,
                help: "datagrams handed over by the data plane thread and refused because the event loop queue was full")
        all.set("vigil_event_loop_timer_entries", UInt64(loop.pendingTimerEntries), help: "timers waiting in the event loop's heap")
        for (name, value) in dataPlaneCounters?() ?? [:] { all.set("vigil_dataplane_\(name)", value) }
        stateMetrics(into: &all)
        return all.text
    }
}
