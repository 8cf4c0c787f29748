import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// Protected exchanges after IKE_SA_INIT: message-ID window, INFORMATIONAL, CREATE_CHILD_SA (RFC 7296 §1.3-1.5, §2.25).
extension IKESA {
    mutating func receive(
        _ message: IKEv2.Message, datagram: [UInt8], from: Endpoint, to: Endpoint, context: SAContext,
        random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        if case .initiatorInit = phase {
            handleInitResponse(message, datagram: datagram, context: context, random: &random, effects: &effects)
            return
        }
        let header = message.header
        guard message.payloads.count == 1, case .encrypted(let first, let body) = message.payloads[0], let protection else {
            effects.count(.unprotectedMessages)
            effects.log(.debug, "\(label): dropping unprotected \(message.summary) from \(from)")
            return
        }
        var unsupportedCritical: UInt8?
        func open() -> [IKEv2.Payload]? {
            do throws(MessageProtection.OpenError) {
                return try protection.open(datagram: datagram, firstPayload: first, body: body)
            } catch {
                switch error {
                case .unsupportedCriticalPayload(let type):
                    unsupportedCritical = type
                    effects.count(.unsupportedCriticalPayloads)
                    effects.log(.warning, "\(label): \(header.exchangeType) message \(header.messageID) from \(from) has unknown critical payload \(type)")
                case .integrity:
                    effects.count(.integrityFailures)
                    effects.log(.warning, "\(label): \(header.exchangeType) message \(header.messageID) from \(from) fails its integrity check; dropped")
                case .malformed(let reason):
                    effects.count(.malformedDatagrams)
                    effects.log(.warning, "\(label): \(header.exchangeType) message \(header.messageID) from \(from) is malformed inside SK: \(reason)")
                }
                return nil
            }
        }
        if header.isResponse {
            guard let request = outstanding, request.messageID == header.messageID else {
                effects.count(.unexpectedResponses)
                return
            }
            guard let inner = open() else { return }
            // Fresh: the answer to the request we have outstanding (§2.2, window of one).
            noteAuthenticated(from: from, to: to, effects: &effects)
            effects.log(.info, "\(label): received \(IKEv2.Message(header: header, payloads: inner).summary) from \(from)")
            dispatchResponse(request.kind, inner, context: context, random: &random, effects: &effects)
        } else {
            requestPath = (to, from)
            defer { requestPath = nil }
            if let cached = cachedResponse, cached.messageID == header.messageID {
                guard open() != nil else { return }
                // §2.1: answered again from the cache; a replay of an old request is no proof of life.
                effects.count(.retransmittedRequests)
                effects.log(.info, "\(label): retransmitted \(header.exchangeType) request \(header.messageID); sending the cached response")
                transmitResponse(cached.datagram, &effects)
                return
            }
            guard header.messageID == nextPeerRequestID else {
                effects.count(.invalidMessageIDs)
                effects.log(.debug, "\(label): request with message ID \(header.messageID), expected \(nextPeerRequestID); dropped")
                return
            }
            guard let inner = open() else {
                // §2.5: an authentic request with an unknown critical payload is refused, and answered.
                if let type = unsupportedCritical {
                    nextPeerRequestID &+= 1
                    respond(header.exchangeType, messageID: header.messageID,
                            [.notify(IKEv2.Notify(type: .unsupportedCriticalPayload, data: [type]))], random: &random, effects: &effects)
                }
                return
            }
            nextPeerRequestID &+= 1
            // Fresh: the next request ID expected from the peer (§2.2), newer than every one seen.
            noteAuthenticated(from: from, to: to, effects: &effects)
            effects.log(.info, "\(label): received \(IKEv2.Message(header: header, payloads: inner).summary) from \(from)")
            dispatchRequest(header.exchangeType, messageID: header.messageID, inner, context: context, random: &random, effects: &effects)
        }
    }

    /// An authenticated, fresh message proves the peer alive. It moves the SA to its source only as §2.23 allows:
    /// the float to port 4500 once a NAT is detected, or a new mapping of a peer behind a NAT when we are not behind
    /// one ourselves. Callers pass only fresh messages (a response to our outstanding request or the peer's next
    /// request), so the message ID is newer than that of any message that moved the SA before.
    private mutating func noteAuthenticated(from: Endpoint, to: Endpoint, effects: inout Effects) {
        effects.actions.append(.authenticatedMessageReceived(id))
        guard from != remote || to.port != local.port else { return }
        let floats = udpEncapsulated && from.address == remote.address && to.address == local.address
            && from.port == IKEv2Ports.natTraversal && to.port == IKEv2Ports.natTraversal
        let peerMayMove = remoteBehindNAT && !localNATDetected && to.address == local.address
        guard floats || peerMayMove else {
            effects.count(.addressChangesRefused)
            effects.log(.warning, "\(label): authenticated message from \(from) to \(to), but no NAT was detected in front of the peer; the SA stays with \(remote) (RFC 7296 §2.23)")
            return
        }
        let old = remote
        remote = from
        local.port = to.port
        for index in children.indices {
            children[index].info.remoteEndpoint = remote
            children[index].info.localEndpoint = local
        }
        effects.log(.notice, "\(label): peer moved from \(old) to \(remote)" + (floats ? " (NAT-T float)" : " (NAT mapping changed)"))
        if establishedAt != nil, old != remote {
            effects.count(.peerAddressChanges)
            effects.actions.append(.peerAddressChanged(id, old: old, new: remote))
        }
    }

    private mutating func dispatchResponse(
        _ kind: OutstandingRequest.Kind, _ inner: [IKEv2.Payload], context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        switch kind {
        case .ikeSAInit:
            effects.count(.unexpectedResponses)
        case .ikeAuth:
            handleAuthResponse(inner, context: context, random: &random, effects: &effects)
        case .liveness:
            finishRequest(&effects)
            effects.actions.append(.livenessCheckAnswered(id))
        case .deleteChild(let childID):
            finishRequest(&effects)
            if let index = children.firstIndex(where: { $0.info.id == childID }) {
                let child = children.remove(at: index)
                effects.actions.append(.cancelTimer(.rekeyChildSA(childID)))
                effects.actions.append(.childSADeleted(child.info, reason: child.state == .rekeyed ? "rekeyed" : "deleted"))
                effects.log(.notice, "\(label): Child SA \(connection.name){\(childID)} deleted")
            }
        case .deleteIKE:
            finishRequest(&effects)
            close(reason: rekeyedAway ? .replaced("rekeyed") : .local("deleted"), effects: &effects)
            return
        case .rekeyChild(let request):
            handleRekeyChildResponse(request, inner, context: context, random: &random, effects: &effects)
        case .rekeyIKE(let request):
            handleRekeyIKEResponse(request, inner, context: context, random: &random, effects: &effects)
        }
        drainQueue(context: context, random: &random, effects: &effects)
    }

    private mutating func dispatchRequest(
        _ exchange: IKEv2.ExchangeType, messageID: UInt32, _ inner: [IKEv2.Payload], context: SAContext,
        random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        switch (exchange, phase) {
        case (.ikeAuth, .responderHalfOpen):
            handleAuthRequest(messageID: messageID, inner, context: context, random: &random, effects: &effects)
        case (.informational, .established):
            handleInformationalRequest(messageID: messageID, inner, random: &random, effects: &effects)
        case (.createChildSA, .established):
            handleCreateChildRequest(messageID: messageID, inner, context: context, random: &random, effects: &effects)
        case (.ikeSAInit, _), (.ikeAuth, _), (.informational, _), (.createChildSA, _):
            effects.count(.unexpectedMessages)
            effects.log(.debug, "\(label): \(exchange) request in this phase ignored")
        }
    }

    // MARK: - Our requests (window of one)

    mutating func request(_ intent: RequestIntent, context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
        guard isEstablished, !rekeyedAway else {
            effects.log(.debug, "\(label): \(intent) ignored: SA not established or being replaced")
            return
        }
        if let request = outstanding {
            if !queue.contains(intent) { queue.append(intent) }
            if request.isLiveness, !request.onSchedule {
                // Work now waits behind a liveness check: make sure it is answered or the peer declared dead even if
                // the detector stops asking (an unanswered check would otherwise block the window of one forever).
                outstanding?.onSchedule = true
                effects.actions.append(.scheduleTimer(.retransmit(id, messageID: request.messageID),
                                                      at: context.now + schedule.delay(afterAttempt: request.transmissions - 1)))
            }
            return
        }
        perform(intent, context: context, random: &random, effects: &effects)
    }

    /// `.sendLivenessCheck`: a new empty INFORMATIONAL, or the same bytes again if the last one is unanswered.
    mutating func livenessCheck(context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
        guard isEstablished, !rekeyedAway else { return }
        if let request = outstanding {
            if request.isLiveness {
                effects.count(.livenessRetransmissions)
                effects.log(.info, "\(label): liveness check \(request.messageID) unanswered; retransmitting it")
                transmit(request.datagram, &effects)
                outstanding?.transmissions += 1
            } else {
                effects.log(.debug, "\(label): liveness check skipped: an exchange is in flight and retransmits on its own")
            }
            return
        }
        perform(.liveness, context: context, random: &random, effects: &effects)
    }

    mutating func drainQueue(context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
        while outstanding == nil, !queue.isEmpty, isEstablished, !rekeyedAway, !isClosed {
            perform(queue.removeFirst(), context: context, random: &random, effects: &effects)
        }
    }

    private mutating func perform(_ intent: RequestIntent, context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
        switch intent {
        case .liveness:
            startRequest(.informational, [], kind: .liveness, now: context.now, random: &random, effects: &effects)
        case .deleteChild(let childID):
            guard let index = children.firstIndex(where: { $0.info.id == childID }) else { return }
            if children[index].state != .rekeyed { children[index].state = .deleting }
            let delete = IKEv2.Delete(protocolID: .esp, spis: [bigEndian(childID.inboundSPI)])
            startRequest(.informational, [.delete(delete)], kind: .deleteChild(childID), now: context.now, random: &random, effects: &effects)
        case .rekeyChild(let childID):
            startChildRekey(childID, context: context, random: &random, effects: &effects)
        case .rekeyIKE:
            startIKERekey(context: context, random: &random, effects: &effects)
        }
    }

    /// `.deleteIKESA`: INFORMATIONAL { D } and forget at once (the peer may be gone).
    mutating func deleteIKESA(context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
        if isEstablished { sendDelete(random: &random, effects: &effects) }
        close(reason: .local("deleted"), effects: &effects)
    }

    // MARK: - INFORMATIONAL requests from the peer

    private mutating func handleInformationalRequest(messageID: UInt32, _ inner: [IKEv2.Payload], random: inout some RandomNumberGenerator, effects: inout Effects) {
        var response: [IKEv2.Payload] = []
        var deleteIKE = false
        for delete in inner.deletes {
            switch delete.protocolID {
            case .ike:
                deleteIKE = true
            case .esp, .ah:
                var ours: [[UInt8]] = []
                for spi in delete.spis {
                    guard let index = children.firstIndex(where: { bigEndian($0.info.outboundSPI) == spi }) else { continue }
                    let child = children.remove(at: index)
                    ours.append(bigEndian(child.info.inboundSPI))
                    effects.actions.append(.cancelTimer(.rekeyChildSA(child.info.id)))
                    effects.actions.append(.childSADeleted(child.info, reason: child.state == .rekeyed ? "rekeyed" : "deleted by peer"))
                    effects.log(.notice, "\(label): Child SA \(connection.name){\(child.info.id)} deleted by peer")
                }
                // §1.4.1: answer with the SPIs of our half of each pair.
                if !ours.isEmpty { response.append(.delete(IKEv2.Delete(protocolID: delete.protocolID, spis: ours))) }
            case .none:
                continue
            }
        }
        respond(.informational, messageID: messageID, deleteIKE ? [] : response, random: &random, effects: &effects)
        if deleteIKE {
            effects.log(.notice, "\(label): deleted by peer")
            close(reason: rekeyedAway ? .replaced("rekeyed") : .deletedByPeer, effects: &effects)
        }
    }

    // MARK: - CREATE_CHILD_SA: Child SA rekey (§1.3.3, §2.8)

    func pfsGroups(_ proposal: ESPProposal) -> [DHGroup] {
        proposal.dhGroups.isEmpty ? (connection.pfsGroup.map { [$0] } ?? []) : proposal.dhGroups
    }

    private var establishedKeys: IKESAKeys {
        guard case .established(let state) = phase else { preconditionFailure("CREATE_CHILD_SA outside an established IKE SA") }
        return state.keys
    }

    /// `group` overrides the PFS group (the peer asked for it with INVALID_KE_PAYLOAD).
    private mutating func startChildRekey(
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

    private mutating func handleRekeyChildResponse(
        _ request: RekeyChildRequest, _ inner: [IKEv2.Payload], context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        finishRequest(&effects)
        guard let index = children.firstIndex(where: { $0.info.id == request.old }) else {
            effects.log(.info, "\(label): Child SA \(request.old) went away while we rekeyed it")
            return
        }
        func abandon(_ reason: String) {
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

    private mutating func handleCreateChildRequest(
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

    // MARK: - CREATE_CHILD_SA: IKE SA rekey (§1.3.2, §2.18)

    private mutating func startIKERekey(context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
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

    private mutating func handleRekeyIKEResponse(
        _ request: RekeyIKERequest, _ inner: [IKEv2.Payload], context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        finishRequest(&effects)
        func abandon(_ reason: String) {
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

    private mutating func handleIKERekeyRequest(
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

/// §2.25 compares nonces as octet strings.
func lowerNonce(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] { a.lexicographicallyPrecedes(b) ? a : b }

func bigEndianGroup(_ group: DHGroup) -> [UInt8] { [UInt8(group.rawValue >> 8), UInt8(truncatingIfNeeded: group.rawValue)] }
