import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// CREATE_CHILD_SA rekeying the IKE SA (RFC 7296 §1.3.2, §2.18), collisions (§2.8.2) and the hand-over to the new SA.
extension IKESA {
    mutating func startIKERekey(context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
        let current = establishedKeys.algorithms
        let keyExchange: KeyExchange
        do {
            keyExchange = try KeyExchange(group: current.dhGroup)
        } catch {
            preconditionFailure("key exchange for negotiated group \(current.dhGroup) failed: \(error)")
        }
        var newSPI: UInt64 = 0
        while newSPI == 0 || context.usedIKESPIs.contains(newSPI) { newSPI = random.next() }
        let nonce = newNonce(&random)
        // Offer the current algorithms first so the KE we send fits the likely choice.
        let first = IKEProposal(encryption: [current.encryption], integrity: current.integrity.map { [$0] } ?? [], prf: [current.prf], dhGroups: [current.dhGroup])
        let proposals = [first] + connection.ikeProposals.filter { $0 != first }
        let payloads: [IKEv2.Payload] = [
            .securityAssociation(ProposalNegotiation.offer(proposals, spi: bigEndian(newSPI))),
            .nonce(nonce),
            .keyExchange(IKEv2.KeyExchange(group: keyExchange.group.rawValue, data: keyExchange.publicValue)),
        ]
        effects.log(.info, "\(label): rekeying IKE SA")
        startRequest(.createChildSA, payloads, kind: .rekeyIKE(RekeyIKERequest(newSPI: newSPI, nonce: nonce, keyExchange: keyExchange)),
                     now: context.now, random: &random, effects: &effects)
    }

    mutating func handleRekeyIKEResponse(
        _ request: RekeyIKERequest, _ inner: [IKEv2.Payload], context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        finishRequest(&effects)
        func abandon(_ reason: String) {
            effects.exchange(.createChildSA, .initiator, .failed)
            if let theirs = collision?.successor.first {
                // Our rekey failed but the peer's succeeded: it wins.
                collision = nil
                effects.log(.info, "\(label): our IKE SA rekey failed (\(reason)); the peer's replaces this SA")
                handOver(to: theirs, context: context, random: &random, effects: &effects)
                return
            }
            effects.log(.warning, "\(label): IKE SA rekey failed: \(reason); will retry")
            effects.actions.append(.scheduleTimer(.rekeyIKESA(id), at: context.now + IKEv2Tunables.rekeyRetryDelay))
        }
        if let error = inner.errorNotify {
            abandon("peer answered \(error.type)")
            return
        }
        guard let sa = inner.securityAssociation, let nr = inner.nonce, let ke = inner.keyExchange,
              let algorithms = ProposalNegotiation.accepted(sa, offered: connection.ikeProposals),
              let spiBytes = sa.proposals.first?.spi, spiBytes.count == IKEv2.Spec.ikeSPISize, spiBytes.contains(where: { $0 != 0 }),
              ke.group == request.keyExchange.group.rawValue, algorithms.dhGroup == request.keyExchange.group,
              let shared = try? request.keyExchange.sharedSecret(peerPublicValue: ke.data)
        else {
            abandon("the answer lacks SA, Nr or KE, or does not match our offer")
            return
        }
        let peerSPI = spiBytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        effects.exchange(.createChildSA, .initiator, .ok)
        let old = establishedKeys
        let keys = IKESAKeys.rekeyed(algorithms, oldPRF: old.algorithms.prf, oldSKd: old.skD, sharedSecret: shared,
                                     ni: request.nonce, nr: nr, spiI: request.newSPI, spiR: peerSPI)
        let ours = successor(IKESAID(request.newSPI), initiatorSPI: request.newSPI, responderSPI: peerSPI, weInitiated: true, keys: keys, now: context.now)
        if let collision, let theirs = collision.successor.first {
            self.collision = nil
            // §2.25.2: the new IKE SA with the lowest of the four nonces is redundant; its creator deletes it, the
            // other inherits the Child SAs, and the creator of the survivor deletes the old SA.
            if lowerNonce(request.nonce, nr).lexicographicallyPrecedes(collision.lowestNonce) {
                effects.log(.info, "\(label): IKE SA rekey collision: ours is redundant; deleting it")
                handOver(to: theirs, context: context, random: &random, effects: &effects)
                var loser = redundant(ours)
                var loserEffects = Effects()
                loser.startRequest(.informational, [.delete(IKEv2.Delete(protocolID: .ike, spis: []))], kind: .deleteIKE,
                                   now: context.now, random: &random, effects: &loserEffects)
                effects.actions += loserEffects.actions
                effects.spawned.append(loser)
                return
            }
            effects.log(.info, "\(label): IKE SA rekey collision: the peer's is redundant; it deletes it")
            effects.spawned.append(redundant(theirs))
        }
        handOver(to: ours, context: context, random: &random, effects: &effects)
        // §2.18: the initiator of the rekey deletes the old IKE SA.
        startRequest(.informational, [.delete(IKEv2.Delete(protocolID: .ike, spis: []))], kind: .deleteIKE,
                     now: context.now, random: &random, effects: &effects)
    }

    mutating func handleIKERekeyRequest(
        messageID: UInt32, _ sa: IKEv2.SecurityAssociation, ni: [UInt8], _ inner: [IKEv2.Payload], context: SAContext,
        random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        func refuse(_ type: IKEv2.NotifyType, data: [UInt8] = [], _ reason: String) {
            effects.log(.warning, "\(label): refusing IKE SA rekey with \(type): \(reason)")
            respond(.createChildSA, messageID: messageID, [.notify(IKEv2.Notify(type: type, data: data))], random: &random, effects: &effects)
        }
        guard !rekeyedAway else {
            refuse(.temporaryFailure, "this IKE SA is already replaced")
            return
        }
        guard let (chosen, algorithms) = ProposalNegotiation.select(sa, from: connection.ikeProposals),
              chosen.spi.count == IKEv2.Spec.ikeSPISize, chosen.spi.contains(where: { $0 != 0 })  // §3.1: SPIs are nonzero
        else {
            refuse(.noProposalChosen, "no IKE proposal of \(connection.name) matches")
            return
        }
        guard let ke = inner.keyExchange, ke.group == algorithms.dhGroup.rawValue else {
            refuse(.invalidKEPayload, data: bigEndianGroup(algorithms.dhGroup), "need group \(algorithms.dhGroup)")
            return
        }
        let ours: KeyExchange
        let shared: SecureBytes
        do {
            ours = try KeyExchange(group: algorithms.dhGroup)
            shared = try ours.sharedSecret(peerPublicValue: ke.data)
        } catch {
            refuse(.invalidSyntax, "unusable KE: \(error)")
            return
        }
        var newSPI: UInt64 = 0
        while newSPI == 0 || context.usedIKESPIs.contains(newSPI) { newSPI = random.next() }
        let peerSPI = chosen.spi.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let nr = newNonce(&random)
        var answer = chosen
        answer.spi = bigEndian(newSPI)
        respond(.createChildSA, messageID: messageID,
                [.securityAssociation(IKEv2.SecurityAssociation(proposals: [answer])), .nonce(nr),
                 .keyExchange(IKEv2.KeyExchange(group: algorithms.dhGroup.rawValue, data: ours.publicValue))],
                random: &random, effects: &effects)
        let old = establishedKeys
        let keys = IKESAKeys.rekeyed(algorithms, oldPRF: old.algorithms.prf, oldSKd: old.skD, sharedSecret: shared,
                                     ni: ni, nr: nr, spiI: peerSPI, spiR: newSPI)
        let new = successor(IKESAID(newSPI), initiatorSPI: peerSPI, responderSPI: newSPI, weInitiated: false, keys: keys, now: context.now)
        if case .rekeyIKE = outstanding?.kind {
            // §2.25.2: our own rekey is in flight; which new SA survives is decided when its answer arrives.
            effects.log(.info, "\(label): IKE SA rekey collision; answering the peer's and waiting for ours")
            collision = IKERekeyCollision(successor: [new], lowestNonce: lowerNonce(ni, nr))
            return
        }
        handOver(to: new, context: context, random: &random, effects: &effects)
    }

    /// The new IKE SA born from a rekey (§2.18), still without Child SAs; message IDs start again at 0.
    private func successor(
        _ newID: IKESAID, initiatorSPI: UInt64, responderSPI: UInt64, weInitiated: Bool, keys: IKESAKeys, now: Duration
    ) -> IKESA {
        let protection: MessageProtection
        do {
            protection = try MessageProtection(keys: keys, weAreOriginalInitiator: weInitiated)
        } catch {
            preconditionFailure("keying the rekeyed IKE SA failed: \(error)")
        }
        var successor = IKESA(
            id: newID, connection: connection, peer: peer, isOriginalInitiator: weInitiated, initiatorSPI: initiatorSPI,
            responderSPI: responderSPI, local: local, remote: remote, phase: .established(Established(keys: keys, protection: protection)),
            schedule: schedule
        )
        successor.remoteIdentity = remoteIdentity
        successor.establishedAt = now
        successor.localBehindNAT = localBehindNAT
        successor.remoteBehindNAT = remoteBehindNAT
        return successor
    }

    /// Moves the Child SAs to the successor; this SA only waits to be deleted.
    private mutating func handOver(to successor: IKESA, context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
        var successor = successor
        let newID = successor.id
        successor.children = children.map { child in
            var moved = child
            moved.info.ikeSA = newID
            return moved
        }
        successor.queue = queue.filter { $0 != .rekeyIKE && $0 != .liveness }
        successor.scheduleRekey(.rekeyIKESA(newID), lifetime: connection.ikeLifetime, now: context.now, random: &random, effects: &effects)
        if localBehindNAT {
            effects.actions.append(.cancelTimer(.natKeepalive(id)))
            effects.actions.append(.scheduleTimer(.natKeepalive(newID), at: context.now + context.configuration.natKeepaliveInterval))
        }
        children = []
        queue = []
        rekeyedAway = true
        effects.actions.append(.cancelTimer(.rekeyIKESA(id)))
        effects.actions.append(.scheduleTimer(.expireReplacedIKESA(id), at: context.now + context.configuration.halfOpenTimeout))
        effects.log(.notice, "\(label): rekeyed; successor \(successor.label) with \(successor.algorithms?.description ?? "?")")
        effects.actions.append(.ikeSARekeyed(old: id, new: successor.info))
        effects.spawned.append(successor)
    }

    /// A successor that lost a rekey collision (§2.25.2): it exists only until it is deleted, never reported.
    private func redundant(_ successor: IKESA) -> IKESA {
        var redundant = successor
        redundant.rekeyedAway = true
        return redundant
    }
}
