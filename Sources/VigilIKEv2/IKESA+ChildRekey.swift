import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// CREATE_CHILD_SA rekeying a Child SA (RFC 7296 §1.3.3, §2.8), both as initiator and as responder, collisions (§2.8.1).
extension IKESA {
    func pfsGroups(_ proposal: ESPProposal) -> [DHGroup] {
        proposal.dhGroups.isEmpty ? (connection.pfsGroup.map { [$0] } ?? []) : proposal.dhGroups
    }

    /// `group` overrides the PFS group (the peer asked for it with INVALID_KE_PAYLOAD).
    mutating func startChildRekey(
        _ childID: ChildSAID, group requested: DHGroup? = nil, context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        guard let index = children.firstIndex(where: { $0.info.id == childID && $0.state == .installed }) else { return }
        children[index].state = .rekeying
        let child = children[index]
        let spi = newChildSPI(context, &random)
        let nonce = newNonce(&random)
        var keyExchange: KeyExchange?
        if let group = requested ?? connection.espProposals.first.map(pfsGroups)?.first {
            do {
                keyExchange = try KeyExchange(group: group)
            } catch {
                preconditionFailure("key exchange for configured group \(group) failed: \(error)")
            }
        }
        var payloads: [IKEv2.Payload] = [
            .notify(IKEv2.Notify(type: .rekeySA, protocolID: .esp, spi: bigEndian(child.info.inboundSPI))),
            .securityAssociation(ProposalNegotiation.offer(connection.espProposals, dhGroups: pfsGroups, spi: spi)),
            .nonce(nonce),
        ]
        if let keyExchange { payloads.append(.keyExchange(IKEv2.KeyExchange(group: keyExchange.group.rawValue, data: keyExchange.publicValue))) }
        payloads += [.trafficSelectorInitiator(child.localSelectors), .trafficSelectorResponder(child.remoteSelectors)]
        effects.log(.info, "\(label): rekeying Child SA \(connection.name){\(childID)}")
        let request = RekeyChildRequest(old: childID, newInboundSPI: spi, nonce: nonce, keyExchange: keyExchange)
        startRequest(.createChildSA, payloads, kind: .rekeyChild(request), now: context.now, random: &random, effects: &effects)
    }

    mutating func handleRekeyChildResponse(
        _ request: RekeyChildRequest, _ inner: [IKEv2.Payload], context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        finishRequest(&effects)
        guard let index = children.firstIndex(where: { $0.info.id == request.old }) else {
            effects.exchange(.createChildSA, .initiator, .failed)
            effects.log(.info, "\(label): Child SA \(request.old) went away while we rekeyed it")
            return
        }
        func abandon(_ reason: String) {
            effects.exchange(.createChildSA, .initiator, .failed)
            if children[index].state == .rekeying { children[index].state = .installed }
            children[index].failedRekeys += 1
            guard children[index].failedRekeys < IKEv2Tunables.maximumChildRekeyAttempts else {
                // The Child SA cannot be renewed: delete the IKE SA rather than keep it alive around a dying child.
                effects.count(.childRekeysGivenUp)
                effects.log(.warning, "\(label): rekey of Child SA \(request.old) failed \(IKEv2Tunables.maximumChildRekeyAttempts) times (last: \(reason)); deleting the IKE SA")
                sendDelete(random: &random, effects: &effects)
                close(reason: .local("Child SA rekey failed: \(reason)"), effects: &effects)
                return
            }
            effects.log(.warning, "\(label): rekey of Child SA \(request.old) failed: \(reason); will retry")
            effects.actions.append(.scheduleTimer(.rekeyChildSA(request.old), at: context.now + IKEv2Tunables.rekeyRetryDelay))
        }
        if let error = inner.errorNotify {
            // §1.3: INVALID_KE_PAYLOAD names the group the peer wants; retry at once if we offered it.
            if error.type == .invalidKEPayload, error.data.count == 2,
               let group = DHGroup(rawValue: UInt16(error.data[0]) << 8 | UInt16(error.data[1])),
               group != request.keyExchange?.group, connection.espProposals.flatMap(pfsGroups).contains(group),
               children[index].failedRekeys + 1 < IKEv2Tunables.maximumChildRekeyAttempts {
                children[index].failedRekeys += 1
                effects.exchange(.createChildSA, .initiator, .failed)
                effects.log(.info, "\(label): peer wants PFS group \(group) for the Child SA rekey; retrying")
                children[index].state = .installed
                startChildRekey(request.old, group: group, context: context, random: &random, effects: &effects)
                return
            }
            abandon("peer answered \(error.type)")
            return
        }
        guard let sa = inner.securityAssociation, let nr = inner.nonce, let tsi = inner.trafficSelectorsInitiator,
              let tsr = inner.trafficSelectorsResponder,
              let accepted = ProposalNegotiation.accepted(sa, offered: connection.espProposals, pfs: pfsGroups)
        else {
            abandon("the answer lacks SA, Nr or TS, or chose a proposal we did not offer")
            return
        }
        var shared: SecureBytes?
        if let keyExchange = request.keyExchange {
            guard let ke = inner.keyExchange, ke.group == keyExchange.group.rawValue,
                  let secret = try? keyExchange.sharedSecret(peerPublicValue: ke.data)
            else {
                abandon("the answer's KE does not match our PFS group \(keyExchange.group)")
                return
            }
            shared = secret
        }
        guard TrafficSelectorNarrowing.isWithin(tsi, child: children[index].localSelectors),
              TrafficSelectorNarrowing.isWithin(tsr, child: children[index].remoteSelectors)
        else {
            abandon("the answer's traffic selectors \(tsi) === \(tsr) are outside the Child SA's")
            return
        }
        let keys = establishedKeys.childKeys(accepted.algorithms, sharedSecret: shared, ni: request.nonce, nr: nr, weAreInitiator: true)
        let collision = children[index].collision
        effects.exchange(.createChildSA, .initiator, .ok)
        children[index].state = .rekeyed
        effects.actions.append(.cancelTimer(.rekeyChildSA(request.old)))
        installChild(accepted.algorithms, inbound: request.newInboundSPI, outbound: accepted.peerSPI, localSelectors: tsi, remoteSelectors: tsr,
                     keys: keys, rekeyOf: request.old, asResponder: false, now: context.now, random: &random, effects: &effects)
        // §2.25.1: both ends rekeyed the same Child SA. The new SA created with the lowest of the four nonces is
        // redundant and its creator deletes it; the creator of the surviving one deletes the old SA.
        if let collision {
            let ourNewIsRedundant = lowerNonce(request.nonce, nr).lexicographicallyPrecedes(collision.lowestNonce)
            effects.log(.info, "\(label): Child SA rekey collision on \(request.old); \(ourNewIsRedundant ? "ours" : "the peer's") is redundant")
            if ourNewIsRedundant {
                queue.insert(.deleteChild(ChildSAID(request.newInboundSPI)), at: 0)
                return
            }
        }
        queue.insert(.deleteChild(request.old), at: 0)
    }

    mutating func handleCreateChildRequest(
        messageID: UInt32, _ inner: [IKEv2.Payload], context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        func refuse(_ type: IKEv2.NotifyType, data: [UInt8] = [], _ reason: String) {
            effects.log(.warning, "\(label): refusing CREATE_CHILD_SA with \(type): \(reason)")
            respond(.createChildSA, messageID: messageID, [.notify(IKEv2.Notify(type: type, data: data))], random: &random, effects: &effects)
        }
        guard let sa = inner.securityAssociation, let ni = inner.nonce else {
            refuse(.invalidSyntax, "no SA or Ni")
            return
        }
        if sa.proposals.contains(where: { $0.protocolID == .ike }) {
            handleIKERekeyRequest(messageID: messageID, sa, ni: ni, inner, context: context, random: &random, effects: &effects)
            return
        }
        // With REKEY_SA the request replaces an existing Child SA; without it, it creates one (e.g. after a peer's
        // Child SA expired and it sets it up again).
        var index: Int?
        if let rekey = inner.notifies(.rekeySA).first {
            guard let found = children.firstIndex(where: { bigEndian($0.info.outboundSPI) == rekey.spi && $0.state != .rekeyed && $0.state != .deleting }) else {
                refuse(.childSANotFound, "no Child SA with outbound SPI \(rekey.spi)")
                return
            }
            index = found
        }
        guard let tsi = inner.trafficSelectorsInitiator, let tsr = inner.trafficSelectorsResponder else {
            refuse(.invalidSyntax, "no TSi/TSr")
            return
        }
        // A rekey needs room for the old and the new SA until the old one is deleted.
        guard children.count < IKEv2Tunables.maximumChildSAsPerIKESA * (index == nil ? 1 : 2) else {
            refuse(.noAdditionalSAs, "this IKE SA already carries \(children.count) Child SAs")
            return
        }
        guard let selection = ProposalNegotiation.select(sa, from: connection.espProposals, pfs: pfsGroups) else {
            refuse(.noProposalChosen, "no ESP proposal of \(connection.name) matches")
            return
        }
        var shared: SecureBytes?
        var kePayload: [IKEv2.Payload] = []
        if let group = selection.algorithms.dhGroup {
            guard let ke = inner.keyExchange, ke.group == group.rawValue else {
                refuse(.invalidKEPayload, data: bigEndianGroup(group), "PFS needs group \(group)")
                return
            }
            do {
                let ours = try KeyExchange(group: group)
                shared = try ours.sharedSecret(peerPublicValue: ke.data)
                kePayload = [.keyExchange(IKEv2.KeyExchange(group: group.rawValue, data: ours.publicValue))]
            } catch {
                refuse(.invalidSyntax, "unusable KE: \(error)")
                return
            }
        }
        let narrowedI = TrafficSelectorNarrowing.narrow(tsi, to: connection.remoteTrafficSelectors)
        let narrowedR = TrafficSelectorNarrowing.narrow(tsr, to: connection.localTrafficSelectors)
        guard !narrowedI.isEmpty, !narrowedR.isEmpty else {
            refuse(.tsUnacceptable, "\(tsi) === \(tsr) outside \(connection.name)")
            return
        }
        let inbound = newChildSPI(context, &random)
        let nr = newNonce(&random)
        var answer = selection.answer
        answer.spi = bigEndian(inbound)
        respond(.createChildSA, messageID: messageID,
                [.securityAssociation(IKEv2.SecurityAssociation(proposals: [answer])), .nonce(nr)] + kePayload
                    + [.trafficSelectorInitiator(narrowedI), .trafficSelectorResponder(narrowedR)],
                random: &random, effects: &effects)
        let keys = establishedKeys.childKeys(selection.algorithms, sharedSecret: shared, ni: ni, nr: nr, weAreInitiator: false)
        guard let index else {
            installChild(selection.algorithms, inbound: inbound, outbound: selection.peerSPI, localSelectors: narrowedR, remoteSelectors: narrowedI,
                         keys: keys, rekeyOf: nil, asResponder: true, now: context.now, random: &random, effects: &effects)
            return
        }
        let old = children[index].info.id
        if children[index].state == .rekeying {
            // §2.25.1: our own rekey of this SA is in flight; remember this one's nonces to pick the redundant SA.
            children[index].collision = ChildSA.Collision(newChild: ChildSAID(inbound), lowestNonce: lowerNonce(ni, nr))
        } else {
            children[index].state = .rekeyed
            effects.actions.append(.cancelTimer(.rekeyChildSA(old)))
        }
        installChild(selection.algorithms, inbound: inbound, outbound: selection.peerSPI, localSelectors: narrowedR, remoteSelectors: narrowedI,
                     keys: keys, rekeyOf: old, asResponder: true, now: context.now, random: &random, effects: &effects)
    }

}
