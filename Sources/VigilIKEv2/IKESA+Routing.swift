import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// Routing of protected messages after IKE_SA_INIT: the message-ID window of one (RFC 7296 §2.3), each request or
/// response handed to the exchange it belongs to (§1.3-1.5), and our own requests queued behind the one in flight.
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
            // Established, or refused (AUTHENTICATION_FAILED, an AUTH that does not verify, no Child SA).
            effects.exchange(.ikeAuth, .initiator, isEstablished ? .ok : .failed)
        case .liveness:
            finishRequest(&effects)
            effects.exchange(.informational, .initiator, .ok)
            effects.actions.append(.livenessCheckAnswered(id))
        case .deleteChild(let childID):
            finishRequest(&effects)
            effects.exchange(.informational, .initiator, .ok)
            if let index = children.firstIndex(where: { $0.info.id == childID }) {
                let child = children.remove(at: index)
                effects.actions.append(.cancelTimer(.rekeyChildSA(childID)))
                effects.actions.append(.childSADeleted(child.info, reason: child.state == .rekeyed ? "rekeyed" : "deleted"))
                effects.log(.notice, "\(label): Child SA \(connection.name){\(childID)} deleted")
            }
        case .deleteIKE:
            finishRequest(&effects)
            effects.exchange(.informational, .initiator, .ok)
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

    mutating func drainQueue(context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
        while outstanding == nil, !queue.isEmpty, isEstablished, !rekeyedAway, !isClosed {
            perform(queue.removeFirst(), context: context, random: &random, effects: &effects)
        }
    }

    mutating func perform(_ intent: RequestIntent, context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
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

    // MARK: - Shared by the CREATE_CHILD_SA exchanges

    var establishedKeys: IKESAKeys {
        guard case .established(let state) = phase else { preconditionFailure("CREATE_CHILD_SA outside an established IKE SA") }
        return state.keys
    }
}

/// §2.25 compares nonces as octet strings.
func lowerNonce(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] { a.lexicographicallyPrecedes(b) ? a : b }

func bigEndianGroup(_ group: DHGroup) -> [UInt8] { [UInt8(group.rawValue >> 8), UInt8(truncatingIfNeeded: group.rawValue)] }
