import VigilAddressing
import VigilConfig
import VigilCrypto
import VigilFailover
import VigilIKE
import VigilKernel
import VigilLiveness

/// Feeding the state machines and carrying out what they return.
extension Daemon {
    // MARK: Failover coordinator

    func coordinate(_ entry: EntryRuntime, _ event: FailoverCoordinator<String>.Event) {
        let actions = entry.coordinator.handle(event, now: loop.now, random: &random)
        for action in actions { perform(action, entry) }
        updateTunnelMonitor(entry)
    }

    /// The coordinator's one timer, armed as its `.scheduleTimer` says (a later one replaces it; an early or stale
    /// firing is harmless to the coordinator).
    private func armCoordinatorTimer(_ entry: EntryRuntime, at wakeup: Duration) {
        if let timer = entry.coordinatorTimer { loop.cancel(timer) }
        entry.coordinatorTimer = loop.schedule(at: wakeup) { [unowned self] in
            entry.coordinatorTimer = nil
            self.enqueue { self.coordinate(entry, .timerFired) }
            self.drain()
        }
    }

    private func perform(_ action: FailoverCoordinator<String>.Action, _ entry: EntryRuntime) {
        switch action {
        case .initiate(let peer, let attempt):
            initiate(entry, peer: peer, probe: false, attempt: attempt)
        case .abandonAttempt(let peer):
            abandonNegotiations(with: peer, entry)
        case .deleteSAs(let peer):
            deleteSAs(of: peer, entry)
        case .programKernel(let peer, let replacing):
            programKernel(entry, peer: peer, replacing: replacing)
        case .holdTraffic:
            record(.trafficHeld, entry, detail: "policies kept without SAs: matching traffic is dropped, never sent in clear")
        case .clearProtection:
            for child in entry.installed.values { applyPlan(kernel.releasePlan(child), entry, what: "clear") }
            entry.installed.removeAll()
        case .probePhase1(let peer):
            initiate(entry, peer: peer, probe: true, attempt: 0)
        case .scheduleTimer(let wakeup):
            armCoordinatorTimer(entry, at: wakeup)
        case .emit(let notice):
            if notice.kind == .attemptTimedOut, let peer = notice.peer { entry.noteHealth(of: peer) { $0.failed(notice.reason, at: loop.now) } }
            record(EventKind(notice.kind), entry, peer: notice.peer, detail: notice.reason)
            failoverNotice(notice.kind, entry)
        }
    }

    private func initiate(_ entry: EntryRuntime, peer: String, probe: Bool, attempt: Int) {
        guard let engine = engines[entry.version] else {
            preconditionFailure("entry \(entry.name) needs the IKE\(entry.version) engine, which was not registered")
        }
        guard let address = entry.addresses[peer] ?? entry.entry.peers.first(where: { $0.description == peer }).flatMap({ EntryRuntime.resolve($0.address) }) else {
            record(.resolveFailed, entry, peer: peer, detail: "cannot resolve the peer's address")
            enqueue { self.coordinate(entry, probe ? .phase1ProbeFailed(peer, probeSentAt: self.loop.now) : .attemptFailed(peer, reason: "cannot resolve \(peer)")) }
            return
        }
        entry.addresses[peer] = address
        if probe { entry.probing.insert(peer) }
        metrics.increment("vigil_phase1_initiated_total{map=\"\(entry.map)\",sequence=\"\(entry.entry.sequence)\"}", help: "Phase 1 negotiations started")
        record(probe ? .preemptionProbe : .phase1Initiate, entry, peer: peer, detail: probe ? "Phase 1 probe of the preferred peer" : "attempt \(attempt)")
        engine.initiate(connection: entry.name, peer: address)
    }

    /// The peer's SAs go: the IKE SA is abandoned (silently when the peer is dead, with a DELETE otherwise) and its
    /// Child SAs leave the kernel. Policies stay in place (traffic is held) until the coordinator programs the next
    /// peer or clears the protection: make-before-break, never clear text.
    private func deleteSAs(of peer: String, _ entry: EntryRuntime) {
        if let key = entry.sessions[peer] {
            let dead = sessions[key]?.detector?.isDead ?? false
            endSession(key, entry, politely: !dead)
        }
        for (spi, record) in entry.children where record.peer == peer {
            let active = isActive(record, entry)
            for child in record.kernel where entry.installed[child.selectorKey]?.reqid == child.reqid {
                applyPlan(KernelPlanner.hold(child), entry, what: "remove SAs of \(peer)")
            }
            entry.children[spi] = nil
            if active { runHooks(.down, entry, peer: peer, child: record.child, reason: "SAs of \(peer) deleted by the failover coordinator") }
        }
    }

    /// Drops every IKE SA still negotiating with `peer` for this entry (the engine would otherwise keep
    /// retransmitting into a dead address, and a late answer would bring up a peer the coordinator left).
    private func abandonNegotiations(with peer: String, _ entry: EntryRuntime) {
        if let key = entry.sessions[peer] { endSession(key, entry, politely: false) }
        guard let engine = engines[entry.version], let address = entry.addresses[peer] else { return }
        for view in engine.sessions where view.connection == entry.name && view.peer == address && sessions[view.key] == nil {
            engine.abandon(view.key)
        }
    }

    private func endSession(_ key: SessionKey, _ entry: EntryRuntime, politely: Bool) {
        guard let engine = engines[key.version] else { return }
        if politely { engine.delete(key) } else { engine.abandon(key) }
        forget(key)
    }

    func forget(_ key: SessionKey) {
        guard let session = sessions.removeValue(forKey: key) else { return }
        if let timer = session.detectorTimer { loop.cancel(timer) }
        if let entry = entries[session.entryName], entry.sessions[session.peer] == key { entry.sessions[session.peer] = nil }
    }

    /// Installs the peer's Child SAs: a move from the peer the policies point at now (make-before-break), or a fresh
    /// establishment; a refused step is reported and never taken as installed.
    /// Programs `peer`'s Child SAs (`only`: just the one with that inbound SPI, a Child SA that joins those already
    /// installed; the others must not be replayed over it).
    private func programKernel(_ entry: EntryRuntime, peer: String, replacing: String?, only: UInt32? = nil) {
        let start = loop.now
        var steps = 0
        var refused: [String] = []
        var previousPeer: String?
        let fresh = entry.children.values.filter { $0.peer == peer && (only == nil || $0.child.inboundSPI == only) && bringsUp($0, entry) }
        for record in entry.children.values where record.peer == peer && (only == nil || record.child.inboundSPI == only) {
            for child in record.kernel {
                let plan: KernelPlan
                if let old = entry.installed[child.selectorKey] {
                    if old.reqid == child.reqid && old.inbound.spi == child.inbound.spi { continue }
                    if old.reqid == child.reqid && old.sameTunnel(as: child),
                       entry.children.values.contains(where: { $0.kernel.contains { $0.inbound.spi == old.inbound.spi } }) {
                        // A further Child SA with the same peer for the same selectors (an IKEv1 Quick Mode that
                        // renews a Phase 2): the old one stays until the peer deletes it or it expires.
                        plan = KernelPlanner.supersede(old, with: child)
                        let report = applyPlan(plan, entry, what: "program \(peer)")
                        steps += report.applied.count
                        refused += report.refused.map(\.description)
                        entry.installed[child.selectorKey] = child
                        continue
                    }
                    if old.remoteTunnelEndpoint != child.remoteTunnelEndpoint {
                        previousPeer = entry.peerName(for: old.remoteTunnelEndpoint) ?? old.remoteTunnelEndpoint.description
                    }
                    plan = KernelPlanner.failover(from: old, to: child)
                } else {
                    plan = kernel.establishPlan(child)
                }
                let report = applyPlan(plan, entry, what: "program \(peer)")
                steps += report.applied.count
                refused += report.refused.map(\.description)
                entry.installed[child.selectorKey] = child
            }
        }
        let elapsed = (loop.now - start).seconds * 1000
        let mode = (replacing ?? previousPeer).map { "moved from \($0) make-before-break" } ?? "installed"
        record(.dataplaneProgrammed, entry, peer: peer, detail: "\(mode) via \(kernel.dataplaneDescription): \(steps) steps in "
            + "\(String(format: "%.2f", elapsed)) ms" + (refused.isEmpty ? "" : "; REFUSED: \(refused.joined(separator: "; "))"))
        if let from = replacing ?? previousPeer, from != peer { entry.noteHealth(of: from) { $0.failedOver() } }
        failoverStep(.dataplaneProgrammed(peer, movedFrom: replacing ?? previousPeer), entry)
        if let from = replacing ?? previousPeer, from != peer { runHooks(.failover, entry, peer: peer, previousPeer: from, child: fresh.first?.child) }
        if refused.isEmpty { for record in fresh { runHooks(.established, entry, peer: peer, child: record.child) } }
        // The kernel's answer is the coordinator's input: a refused install is a failed attempt, not a log line.
        enqueue { self.coordinate(entry, refused.isEmpty ? .kernelProgrammed(peer) : .kernelRefused(peer, reason: refused.joined(separator: "; "))) }
    }

    @discardableResult
    func applyPlan(_ plan: KernelPlan, _ entry: EntryRuntime, what: String) -> KernelPlanReport {
        let report = kernel.executor.apply(saUsers.admit(plan))
        saUsers.record(report)
        metrics.increment("vigil_kernel_steps_total", by: UInt64(report.applied.count), help: "kernel steps applied")
        if !report.refused.isEmpty {
            metrics.increment("vigil_kernel_refusals_total", by: UInt64(report.refused.count), help: "kernel steps refused")
            for refusal in report.refused {
                logger.error("kernel refused (\(what)) for \(entry.name): \(refusal)")
            }
        }
        return report
    }

    // MARK: IKE engine outputs

    func handle(_ output: EngineOutput, from version: IKEVersionTag) {
        switch output {
        case .send(let bytes, let from, let to):
            send(bytes, from: from, to: to, marker: true)
        case .sendRaw(let bytes, let from, let to):
            send(bytes, from: from, to: to, marker: false)
        case .ikeUp(let key, let connection, let address, let detail, let peerSupportsDPD):
            ikeUp(key, connection: connection, address: address, detail: detail, peerSupportsDPD: peerSupportsDPD)
        case .childUp(let child):
            childUp(child)
        case .childRekeyed(let oldSPI, let child):
            childRekeyed(oldSPI: oldSPI, child)
        case .childDown(let connection, let spi, let reason):
            childDown(connection: connection, spi: spi, reason: reason)
        case .ikeDown(let key, let connection, let address, let reason, let byPeer):
            ikeDown(key, connection: connection, address: address, reason: reason, byPeer: byPeer)
        case .ikeRekeyed(let old, let new):
            if let session = sessions.removeValue(forKey: old) {
                let moved = SessionRecord(key: new, entryName: session.entryName, peer: session.peer, peerAddress: session.peerAddress,
                                          established: session.established)
                moved.detector = session.detector
                moved.lastProbeSequence = session.lastProbeSequence
                if let timer = session.detectorTimer { loop.cancel(timer) }
                sessions[new] = moved
                if let entry = entries[session.entryName] { entry.sessions[session.peer] = new }
                rescheduleDetector(moved)
                record(.phase1Rekeyed, entries[session.entryName], peer: session.peer, detail: "IKE SA \(old) replaced by \(new)")
            }
        case .peerMoved(let key, let old, let new):
            if let session = sessions[key], let entry = entries[session.entryName] {
                record(.peerMoved, entry, peer: session.peer, detail: "behind a NAT: \(old) -> \(new) (RFC 7296 §2.23)")
                // Later Child SAs from the new address still belong to this listed peer.
                if old.address != new.address { entry.movedAddresses[new.address] = session.peer }
            }
            peerAddressChanged(key, from: old, to: new)
        case .proofOfLife(let key):
            detect(key, .authenticatedMessageReceived)
        case .probeAnswered(let key, let sequence):
            guard let session = sessions[key] else { return }
            let echoed = sequence ?? session.lastProbeSequence
            entries[session.entryName]?.noteHealth(of: session.peer) { $0.answered(at: loop.now) }
            record(key.version == .v1 ? .rUThereAck : .livenessAnswered, entries[session.entryName], peer: session.peer,
                   detail: "sequence \(echoed)")
            peerProbe(.answered, session.peer, session.entryName)
            detect(key, .probeAcknowledged(sequence: echoed))
        case .exchangeInFlight(let key, let inFlight):
            detect(key, inFlight ? .exchangeStarted : .exchangeCompleted)
        case .unreachable(let key):
            guard let session = sessions[key], let entry = entries[session.entryName] else { return }
            record(.peerUnreachable, entry, peer: session.peer, detail: "retransmissions exhausted")
            entry.noteHealth(of: session.peer) { $0.failed("retransmissions exhausted", at: loop.now) }
            if session.established {
                deadPeer(session.peer, entry, .retransmissionsExhausted)
                runHooks(.deadPeer, entry, peer: session.peer, child: activeChild(of: session.peer, entry), reason: "retransmissions exhausted")
                coordinate(entry, .peerDead(session.peer))
            } else {
                forget(key)
                coordinate(entry, .attemptFailed(session.peer, reason: "no answer"))
            }
        case .negotiationFailed(let connection, let address, let failure):
            guard let entry = entries[connection] else { return }
            let peer = entry.peerName(for: address) ?? address.description
            metrics.increment("vigil_negotiation_failures_total{code=\"\(failure.code.rawValue)\"}", help: "failed negotiations by reason")
            record(.negotiationFailed, entry, peer: peer, detail: failure.description)
            entry.noteHealth(of: peer) { $0.failed(failure.description, at: loop.now) }
            if let key = entry.sessions[peer], sessions[key]?.established == false { forget(key) }
            if entry.probing.remove(peer) != nil {
                coordinate(entry, .phase1ProbeFailed(peer, probeSentAt: loop.now))
            } else {
                coordinate(entry, .attemptFailed(peer, reason: failure.description))
            }
        case .log(let level, let text):
            engineLog(level, text)
        }
    }

    private func ikeUp(_ key: SessionKey, connection: String, address: IPAddress, detail: String, peerSupportsDPD: Bool) {
        guard let entry = entries[connection] else { return }
        let peer = entry.peerName(for: address) ?? address.description
        entry.noteHealth(of: peer) { $0.answered(at: loop.now) }
        if entry.probing.remove(peer) != nil {
            record(.preemptionProbeAnswered, entry, peer: peer, detail: detail)
            // Its Child SA (IKE_AUTH brings one) is not installed; the probe IKE SA is deleted at once.
            probeSessions.insert(key)
            engines[key.version]?.delete(key)
            coordinate(entry, .phase1ProbeAnswered(peer))
            return
        }
        let session = SessionRecord(key: key, entryName: entry.name, peer: peer, peerAddress: address, established: true)
        var first: UInt32 = 0
        if entry.version == .v1 {
            // RFC 3706 §7: a random starting sequence number with the top bit clear.
            first = UInt32.random(in: 0...0x7FFF_FFFF, using: &random)
        }
        if let configuration = entry.detectorConfiguration(firstSequence: first), entry.version == .v2 || peerSupportsDPD {
            session.detector = DeadPeerDetector(configuration: configuration, establishedAt: loop.now)
        } else if entry.entry.dpd.mode != .off {
            record(.dpdUnavailable, entry, peer: peer, detail: "the peer did not advertise RFC 3706 DPD; it is not probed")
        }
        sessions[key] = session
        entry.sessions[peer] = key
        metrics.increment("vigil_phase1_established_total", help: "IKE SAs established")
        record(.phase1Up, entry, peer: peer, detail: "IKE SA \(key): \(detail)")
        failoverStep(.phase1Up(peer), entry)
        rescheduleDetector(session)
        coordinate(entry, .phase1Established(peer))
    }

    private func childUp(_ child: NegotiatedChild) {
        guard let entry = entries[child.connection] else { return }
        let peer = entry.peerName(for: child.remoteEndpoint.address) ?? child.remoteEndpoint.address.description
        if probeSessions.contains(child.ikeSA) { return }
        // One Child SA is one pair of SAs and one reqid, whatever number of selector pairs it protects: every pair's
        // policies name that reqid, and the pairs share the SAs (`applyPlan` installs them once, deletes them with
        // the last pair). The reqid of the peer's Child SA it renews is kept.
        let pairs = child.localTrafficSelectors.flatMap { local in
            child.remoteTrafficSelectors.filter { $0.family == local.family }.map { (local, $0) }
        }
        let kept = pairs.lazy.compactMap { local, remote in
            entry.installed["\(local)=\(remote)"].flatMap { $0.remoteTunnelEndpoint == child.remoteEndpoint.address ? $0.reqid : nil }
        }.first
        var kernelChildren: [KernelChildSA] = []
        if let reqid = kept ?? entry.reqids.allocate() {
            kernelChildren = pairs.compactMap { local, remote in kernelChild(child, reqid: reqid, local: local, remote: remote, entry: entry) }
            if kernelChildren.isEmpty, kept == nil { entry.reqids.release(reqid) }
        } else {
            record(.reqidExhausted, entry, peer: peer, detail: "no free reqid in Vigil's band")
        }
        entry.children[child.inboundSPI] = EntryRuntime.ChildRecord(child: child, peer: peer, kernel: kernelChildren, since: loop.now)
        metrics.increment("vigil_phase2_established_total", help: "Child SAs established")
        record(.phase2Up, entry, peer: peer, detail: "Child SA in \(hex(child.inboundSPI)) out \(hex(child.outboundSPI)) "
            + "\(child.algorithms) \(child.localTrafficSelectors.map(\.description).joined(separator: ",")) === "
            + "\(child.remoteTrafficSelectors.map(\.description).joined(separator: ","))\(child.udpEncapsulated ? " UDP-encapsulated" : "")")
        failoverStep(.phase2Up(peer), entry)
        if case .connecting(let connecting) = entry.coordinator.state, connecting.peer == peer {
            coordinate(entry, .childEstablished(peer))
        } else if entry.coordinator.activePeer == peer {
            // A further Child SA with the active peer (or one the peer re-created): install it alongside.
            programKernel(entry, peer: peer, replacing: nil, only: child.inboundSPI)
        } else {
            coordinate(entry, .peerConnected(peer))
        }
    }

    /// The kernel form of a negotiated Child SA for one selector pair; nil (and recorded) when the negotiated values
    /// cannot be put in the kernel (they come from the peer: an error value, never a trap).
    private func kernelChild(_ child: NegotiatedChild, reqid: UInt32, local: IPPrefix, remote: IPPrefix, entry: EntryRuntime) -> KernelChildSA? {
        do {
            try KernelChildSA.check(reqid: reqid, localTunnelEndpoint: child.localEndpoint.address,
                                    remoteTunnelEndpoint: child.remoteEndpoint.address, localSubnet: local, remoteSubnet: remote)
        } catch {
            metrics.increment("vigil_child_sa_refusals_total{code=\"\(error.code.rawValue)\"}", help: "negotiated Child SAs the kernel layer refused")
            record(.phase2Refused, entry, peer: child.remoteEndpoint.address.description, detail: error.description)
            return nil
        }
        return KernelChildSA(
            reqid: reqid,
            localTunnelEndpoint: child.localEndpoint.address, remoteTunnelEndpoint: child.remoteEndpoint.address,
            localSubnet: local, remoteSubnet: remote,
            inbound: SAKeys(spi: child.inboundSPI, encryptionKey: child.keys.encryptionIn.bytes, integrityKey: child.keys.integrityIn?.bytes ?? []),
            outbound: SAKeys(spi: child.outboundSPI, encryptionKey: child.keys.encryptionOut.bytes, integrityKey: child.keys.integrityOut?.bytes ?? []),
            encryption: child.encryption, integrity: child.integrity,
            encapsulation: child.udpEncapsulated ? UDPEncapsulation(sourcePort: child.localEndpoint.port, destinationPort: child.remoteEndpoint.port) : nil,
            replayWindow: 64,
            lifetime: DaemonKernel.kernelLifetime(childLifetime: entry.entry.childLifetime, ikeVersion: entry.version),
            route: kernel.route(localTunnelEndpoint: child.localEndpoint.address, localSubnet: local))
    }

    /// The engines' contract: after a rekey the old Child SA stays until its own `childDown` (the peer may send on
    /// it until it has switched; IKEv2 deletes it in a later INFORMATIONAL). So the new SAs go in beside the old ones
    /// (`supersede`), and `childDown` retires the old ones; only an endpoint move replaces them at once.
    private func childRekeyed(oldSPI: UInt32, _ child: NegotiatedChild) {
        guard let entry = entries[child.connection], let old = entry.children[oldSPI] else {
            return childUp(child)
        }
        var renewed: [KernelChildSA] = []
        var moved = false
        var outboundWaits = false
        for previous in old.kernel {
            guard let next = kernelChild(child, reqid: previous.reqid, local: previous.localSubnet, remote: previous.remoteSubnet, entry: entry) else {
                renewed.append(previous)
                continue
            }
            if entry.installed[previous.selectorKey]?.reqid == previous.reqid {
                if previous.sameTunnel(as: next), child.outboundAwaitsOldDeletion {
                    applyPlan(KernelPlanner.supersedeInbound(previous, with: next), entry, what: "rekey (inbound; outbound when the old Child SA is deleted)")
                    outboundWaits = true
                } else if previous.sameTunnel(as: next) {
                    applyPlan(KernelPlanner.supersede(previous, with: next), entry, what: "rekey")
                } else {
                    applyPlan(KernelPlanner.rekey(from: previous, to: next), entry, what: "rekey")
                    moved = true
                }
                entry.installed[previous.selectorKey] = next
            }
            renewed.append(next)
        }
        if moved { entry.children[oldSPI] = nil }
        entry.children[child.inboundSPI] = EntryRuntime.ChildRecord(
            child: child, peer: old.peer, kernel: renewed, outboundAfterDeletionOf: outboundWaits ? oldSPI : nil, since: loop.now)
        entry.lastInboundPackets[oldSPI] = nil
        entry.lastOutboundPackets[oldSPI] = nil
        metrics.increment("vigil_phase2_rekeyed_total", help: "Child SAs rekeyed")
        record(.phase2Rekeyed, entry, peer: old.peer, detail: "Child SA \(hex(oldSPI)) replaced by in \(hex(child.inboundSPI)) out \(hex(child.outboundSPI))")
    }

    /// `plan` without the deletion of `child`'s outbound SA when that was never installed (a rekey we answered,
    /// deleted before the old Child SA was).
    static func only(_ plan: KernelPlan, outbound installed: Bool, of child: KernelChildSA) -> KernelPlan {
        installed ? plan : KernelPlan(plan.steps.filter { $0 != .deleteSA(child.outboundSAID) })
    }

    private func childDown(connection: String, spi: UInt32, reason: String) {
        guard let entry = entries[connection], let record = entry.children.removeValue(forKey: spi) else { return }
        // A rekey we answered waited for this deletion: its outbound SAs go in before the old ones go.
        for (successor, waiting) in entry.children where waiting.outboundAfterDeletionOf == spi {
            for child in waiting.kernel where entry.installed[child.selectorKey]?.inbound.spi == child.inbound.spi {
                applyPlan(KernelPlanner.activateOutbound(child), entry, what: "rekey (outbound, the old Child SA deleted)")
            }
            entry.children[successor]?.outboundAfterDeletionOf = nil
        }
        // Its own outbound SAs never went in while it waited.
        let outboundInstalled = record.outboundAfterDeletionOf == nil
        for child in record.kernel {
            if entry.installed[child.selectorKey]?.inbound.spi == child.inbound.spi {
                // Keep the policies (traffic held) until the coordinator decides: another peer or a clear.
                applyPlan(Self.only(KernelPlanner.hold(child), outbound: outboundInstalled, of: child), entry, what: "Child SA deleted")
            } else if let current = entry.installed[child.selectorKey], current.reqid == child.reqid {
                // Superseded by a later Child SA with the same reqid: only its SAs go.
                applyPlan(Self.only(KernelPlanner.retire(child), outbound: outboundInstalled, of: child), entry, what: "superseded Child SA deleted")
            }
        }
        self.record(.phase2Down, entry, peer: record.peer, detail: "Child SA \(hex(spi)): \(reason)")
        if isActive(record, entry) { runHooks(.down, entry, peer: record.peer, child: record.child, reason: reason) }
    }

    private func ikeDown(_ key: SessionKey, connection: String, address: IPAddress, reason: String, byPeer: Bool) {
        guard let entry = entries[connection] else { return }
        let peer = entry.peerName(for: address) ?? address.description
        if probeSessions.remove(key) != nil { return }
        let wasEstablished = sessions[key]?.established ?? false
        let tracked = sessions[key] != nil
        forget(key)
        guard tracked else { return }
        record(.phase1Down, entry, peer: peer, detail: "IKE SA \(key): \(reason)")
        if byPeer && wasEstablished && entry.coordinator.activePeer == peer {
            deadPeer(peer, entry, .deletedByPeer)
            coordinate(entry, .peerDead(peer))
        } else if !wasEstablished {
            coordinate(entry, .attemptFailed(peer, reason: reason))
        }
    }

    // MARK: Dead peer detectors

    func detect(_ key: SessionKey, _ event: DeadPeerDetector.Event) {
        guard let session = sessions[key], var detector = session.detector else { return }
        let action = detector.handle(event, now: loop.now)
        session.detector = detector
        if let action { perform(action, session) }
        rescheduleDetector(session)
    }

    private func rescheduleDetector(_ session: SessionRecord) {
        if let timer = session.detectorTimer { loop.cancel(timer) }
        session.detectorTimer = nil
        guard let wakeup = session.detector?.nextWakeup else { return }
        let key = session.key
        session.detectorTimer = loop.schedule(at: wakeup) { [unowned self] in
            self.sessions[key]?.detectorTimer = nil
            self.enqueue { self.detect(key, .timerFired) }
            self.drain()
        }
    }

    private func perform(_ action: DeadPeerDetector.Action, _ session: SessionRecord) {
        let entry = entries[session.entryName]
        switch action {
        case .sendProbe(let sequence, let attempt):
            session.lastProbeSequence = sequence
            if attempt > 0 { entry?.noteHealth(of: session.peer) { $0.probeUnanswered(retry: attempt) } }
            metrics.increment("vigil_dpd_probes_sent_total", help: "R-U-THERE / liveness checks sent, retries included")
            peerProbe(.sent, session.peer, session.entryName)
            if attempt > 0 { peerProbe(.missed, session.peer, session.entryName) }
            let kind: EventKind = session.key.version == .v1 ? .rUThere : .livenessCheck
            record(kind, entry, peer: session.peer, detail: attempt == 0 ? "sequence \(sequence)" : "sequence \(sequence), retry \(attempt)")
            engines[session.key.version]?.probe(session.key, sequence: sequence)
        case .peerDead(let death):
            metrics.increment("vigil_dpd_peers_declared_dead_total", help: "peers declared dead by DPD")
            entry?.noteHealth(of: session.peer) { $0.declaredDead(probesMissed: death.probesSent, at: loop.now) }
            record(.declaredDead, entry, peer: session.peer, detail: "no answer to \(death.probesSent) probes; last proof of life "
                + "\(String(format: "%.3f", (death.declaredAt - death.lastProofOfLife).seconds)) s before")
            if death.probesSent > 0 { peerProbe(.missed, session.peer, session.entryName) }
            if let entry {
                deadPeerDetected(session.peer, entry, detection: death.declaredAt - death.lastProofOfLife)
                runHooks(.deadPeer, entry, peer: session.peer, child: activeChild(of: session.peer, entry),
                         reason: "no answer to \(death.probesSent) DPD probes")
                coordinate(entry, .peerDead(session.peer))
            }
        }
    }

    // MARK: Traffic sampling for on-demand DPD and idle-time

    /// Samples the SA counters of every Child SA: inbound packets are proof of traffic from the peer, outbound ones
    /// mean traffic is waiting for it (RFC 3706 §5.4, Cisco on-demand). Also tells the coordinator about activity
    /// (idle-time).
    func scheduleSampler() {
        // Fine enough that a proof of life is seen within a quarter retry of when it happened.
        let bounds = entries.values.flatMap { entry in [entry.entry.dpd.interval.map { $0 / 10 }, entry.entry.dpd.retry / 4].compactMap { $0 } }
        let period = max(Duration.milliseconds(20), min(Duration.seconds(1), bounds.min() ?? .seconds(1)))
        samplerTimer = loop.schedule(at: loop.now + period) { [unowned self] in
            self.sampleTraffic()
            self.flushLogSummary()
            self.drain()
            if !self.stoppedSampling { self.scheduleSampler() }
        }
    }

    var stoppedSampling: Bool { control == nil }

    private func sampleTraffic() {
        if let held = heldPackets?(), held > lastHeldPackets {
            lastHeldPackets = held
            for name in entryOrder {
                let entry = entries[name]!
                if case .idle = entry.coordinator.state, !entry.installed.isEmpty { coordinate(entry, .trafficWaiting) }
            }
        }
        for name in entryOrder {
            let entry = entries[name]!
            for (spi, record) in entry.children {
                guard let first = record.kernel.first, let key = entry.sessions[record.peer] else { continue }
                var active = false
                if let inbound = kernel.packets(first.inboundSAID) {
                    if inbound > entry.lastInboundPackets[spi, default: 0] {
                        entry.lastInboundPackets[spi] = inbound
                        detect(key, .inboundTrafficObserved(packets: inbound))
                        active = true
                    }
                }
                if let outbound = kernel.packets(first.outboundSAID) {
                    if outbound > entry.lastOutboundPackets[spi, default: 0] {
                        entry.lastOutboundPackets[spi] = outbound
                        detect(key, .outboundTrafficPending)
                        active = true
                    }
                }
                if active { coordinate(entry, .activityObserved) }
            }
        }
    }
}

/// An SPI in hex with its leading zeros: 8 digits for an ESP SPI (UInt32), 16 for an IKE SPI or cookie (UInt64).
func hex<Value: FixedWidthInteger & UnsignedInteger>(_ value: Value) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: Value.bitWidth / 4 - digits.count) + digits
}
