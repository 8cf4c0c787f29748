import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// IKE_SA_INIT and IKE_AUTH with the first Child SA (RFC 7296 §1.2, §2.15, §2.23).
extension IKESA {
    // MARK: - Initiator

    static func initiator(
        id: IKESAID, connection: IKEv2Endpoint.ConnectionConfiguration, peer: IKEv2Endpoint.PeerConfiguration,
        schedule: RetransmissionSchedule, context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects
    ) throws(CryptoError) -> IKESA {
        guard let group = connection.ikeProposals.first?.dhGroups.first else {
            preconditionFailure("connection \(connection.name) has no IKE proposal with a DH group")
        }
        let state = InitiatorInit(keyExchange: try KeyExchange(group: group), nonce: randomBytes(IKEv2Tunables.nonceLength, &random), cookie: nil)
        var sa = IKESA(
            id: id, connection: connection, peer: peer, isOriginalInitiator: true, initiatorSPI: id.spi, responderSPI: 0,
            local: Endpoint(connection.localAddress, IKEv2Ports.ike), remote: Endpoint(peer.address, IKEv2Ports.ike),
            phase: .initiatorInit(state), schedule: schedule
        )
        effects.log(.notice, "\(sa.label): initiating to \(peer.address) with \(connection.ikeProposals.map(\.description).joined(separator: ", "))")
        sa.sendInitRequest(state, now: context.now, random: &random, effects: &effects)
        return sa
    }

    private mutating func sendInitRequest(_ state: InitiatorInit, now: Duration, random: inout some RandomNumberGenerator, effects: inout Effects) {
        var payloads: [IKEv2.Payload] = []
        // §2.6: the cookie goes first, everything else unchanged.
        if let cookie = state.cookie { payloads.append(.notify(IKEv2.Notify(type: .cookie, data: cookie))) }
        payloads += [
            .securityAssociation(ProposalNegotiation.offer(connection.ikeProposals)),
            .keyExchange(IKEv2.KeyExchange(group: state.keyExchange.group.rawValue, data: state.keyExchange.publicValue)),
            .nonce(state.nonce),
        ]
        payloads += natDetectionPayloads(random: &random)
        let message = IKEv2.Message(header: header(.ikeSAInit, messageID: 0, response: false), payloads: payloads)
        let datagram = message.serialize()
        message1 = datagram
        nextRequestID = 1
        phase = .initiatorInit(state)
        startRequest(message, datagram: datagram, kind: .ikeSAInit, now: now, effects: &effects)
    }

    /// §2.23: NAT_DETECTION_SOURCE_IP / _DESTINATION_IP. A random source hash fakes a NAT so that ESP is
    /// UDP-encapsulated when the connection forces it.
    func natDetectionPayloads(random: inout some RandomNumberGenerator) -> [IKEv2.Payload] {
        let source = connection.forceUDPEncapsulation
            ? randomBytes(20, &random)
            : Self.natHash(initiatorSPI, responderSPI, local)
        let destination = Self.natHash(initiatorSPI, responderSPI, remote)
        return [
            .notify(IKEv2.Notify(type: .natDetectionSourceIP, data: source)),
            .notify(IKEv2.Notify(type: .natDetectionDestinationIP, data: destination)),
        ]
    }

    /// §2.23: SHA-1(SPIi | SPIr | IP | Port), SPIs as in the message's header.
    static func natHash(_ spiI: UInt64, _ spiR: UInt64, _ endpoint: Endpoint) -> [UInt8] {
        Hash.digest(.sha1, bigEndian(spiI) + bigEndian(spiR) + endpoint.address.bytes
            + [UInt8(endpoint.port >> 8), UInt8(truncatingIfNeeded: endpoint.port)])
    }

    /// Reads the peer's NAT_DETECTION notifies from an IKE_SA_INIT message with `header`'s SPIs.
    mutating func evaluateNAT(_ payloads: [IKEv2.Payload], header: IKEv2.Header, effects: inout Effects) {
        let source = payloads.notifies(.natDetectionSourceIP).map(\.data)
        let destination = payloads.notifies(.natDetectionDestinationIP).map(\.data)
        guard !source.isEmpty, !destination.isEmpty else {
            localBehindNAT = connection.forceUDPEncapsulation
            return
        }
        remoteBehindNAT = !source.contains(Self.natHash(header.initiatorSPI, header.responderSPI, remote))
        localNATDetected = !destination.contains(Self.natHash(header.initiatorSPI, header.responderSPI, local))
        localBehindNAT = localNATDetected
        if connection.forceUDPEncapsulation && !localBehindNAT {
            localBehindNAT = true
            effects.log(.info, "\(label): faking a NAT on our side to force UDP encapsulation of ESP")
        }
        if localBehindNAT || remoteBehindNAT {
            effects.log(.info, "\(label): NAT detected (local \(localBehindNAT ? "behind NAT" : "direct"), remote \(remoteBehindNAT ? "behind NAT" : "direct")); IKE floats to UDP 4500, ESP in UDP")
        }
    }

    /// The IKE_SA_INIT response (§1.2). Nothing in it is authenticated (§2.21.1): an error notify, a COOKIE or
    /// INVALID_KE_PAYLOAD we will not follow, or an answer we cannot use is logged, counted and remembered, and we
    /// keep waiting for a valid answer until the retransmissions run out. COOKIE (§2.6, bounded) and
    /// INVALID_KE_PAYLOAD (§1.2, once, for a group we offered) restart the request.
    mutating func handleInitResponse(
        _ message: IKEv2.Message, datagram: [UInt8], context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        guard case .initiatorInit(var state) = phase, let request = outstanding, case .ikeSAInit = request.kind,
              message.header.isResponse, message.header.messageID == 0
        else {
            effects.count(.unexpectedMessages)
            return
        }
        let payloads = message.payloads
        effects.log(.info, "\(label): received \(message.summary) from \(remote)")
        func ignore(_ code: NegotiationFailure.Code, _ reason: String, counter: IKECounter) {
            effects.count(counter)
            effects.log(.warning, "\(label): \(reason); unauthenticated, so still waiting for a valid answer (RFC 7296 §2.21.1)")
            unauthenticatedHint = NegotiationFailure(code, reason)
        }
        if let cookie = payloads.notifies(.cookie).first {
            guard IKEv2Tunables.cookieLengths.contains(cookie.data.count), state.cookie != cookie.data,
                  state.cookieRetries < IKEv2Tunables.maximumCookieRetries
            else {
                ignore(.malformed, "responder \(remote) demanded a COOKIE we do not follow (\(cookie.data.count) octets, \(state.cookieRetries) retries so far)",
                       counter: .unauthenticatedNotifies)
                return
            }
            effects.log(.info, "\(label): responder demands a COOKIE; retrying IKE_SA_INIT with it")
            finishRequest(&effects)
            state.cookie = cookie.data
            state.cookieRetries += 1
            sendInitRequest(state, now: context.now, random: &random, effects: &effects)
            return
        }
        if let invalidKE = payloads.notifies(.invalidKEPayload).first {
            let offered = connection.ikeProposals.flatMap(\.dhGroups)
            guard invalidKE.data.count == 2,
                  let group = DHGroup(rawValue: UInt16(invalidKE.data[0]) << 8 | UInt16(invalidKE.data[1])),
                  offered.contains(group), group != state.keyExchange.group, !state.changedGroup
            else {
                ignore(.invalidKEPayload, "responder \(remote) sent INVALID_KE_PAYLOAD asking for a group we did not offer or already tried",
                       counter: .unauthenticatedNotifies)
                return
            }
            do {
                state.keyExchange = try KeyExchange(group: group)
            } catch {
                ignore(.internalError, "key exchange for \(group), which the responder asked for: \(error)", counter: .unauthenticatedNotifies)
                return
            }
            state.changedGroup = true
            effects.log(.info, "\(label): responder wants DH group \(group) (INVALID_KE_PAYLOAD); retrying IKE_SA_INIT")
            finishRequest(&effects)
            sendInitRequest(state, now: context.now, random: &random, effects: &effects)
            return
        }
        if let error = payloads.errorNotify {
            ignore(failureCode(error.type), "responder \(remote) answered IKE_SA_INIT with \(error.type)"
                   + (error.type == .noProposalChosen ? " (no common IKE proposal; we offered \(connection.ikeProposals.map(\.description).joined(separator: ", ")))" : ""),
                   counter: .unauthenticatedNotifies)
            return
        }
        guard let sa = payloads.securityAssociation, let ke = payloads.keyExchange, let nr = payloads.nonce,
              IKEv2.Spec.nonceLengths.contains(nr.count), message.header.responderSPI != 0
        else {
            ignore(.malformed, "IKE_SA_INIT response from \(remote) lacks SA, KE or a valid Nr", counter: .unusableInitResponses)
            return
        }
        guard let algorithms = ProposalNegotiation.accepted(sa, offered: connection.ikeProposals) else {
            ignore(.noProposalChosen, "responder \(remote) chose an IKE proposal we did not offer", counter: .unusableInitResponses)
            return
        }
        guard ke.group == algorithms.dhGroup.rawValue, algorithms.dhGroup == state.keyExchange.group else {
            ignore(.invalidKEPayload, "responder \(remote) sent KE of group \(ke.group) for chosen group \(algorithms.dhGroup)", counter: .unusableInitResponses)
            return
        }
        let peerSPI = message.header.responderSPI
        let keys: IKESAKeys
        let protection: MessageProtection
        do {
            let shared = try state.keyExchange.sharedSecret(peerPublicValue: ke.data)
            keys = IKESAKeys.initial(algorithms, sharedSecret: shared, ni: state.nonce, nr: nr, spiI: initiatorSPI, spiR: peerSPI)
            protection = try MessageProtection(keys: keys, weAreOriginalInitiator: true)
        } catch {
            ignore(.malformed, "responder \(remote) sent an unusable KE: \(error)", counter: .unusableInitResponses)
            return
        }
        responderSPI = peerSPI
        unauthenticatedHint = nil
        effects.log(.info, "\(label): selected proposal \(algorithms)")
        finishRequest(&effects)
        effects.exchange(.ikeSAInit, .initiator, .ok)
        evaluateNAT(payloads, header: message.header, effects: &effects)
        if udpEncapsulated {
            local.port = IKEv2Ports.natTraversal
            remote.port = IKEv2Ports.natTraversal
        }

        let childSPI = newChildSPI(context, &random)
        let localSelectors = connection.localTrafficSelectors.map(IKEv2.TrafficSelector.init)
        let remoteSelectors = connection.remoteTrafficSelectors.map(IKEv2.TrafficSelector.init)
        let idi = IKEv2.Identification(connection.localIdentity)
        let auth = keys.sharedKeyAuthentication(preSharedKey: peer.preSharedKey, realMessage: message1, otherNonce: nr, identification: idi, ofInitiator: true)
        var authRequest: [IKEv2.Payload] = [.identificationInitiator(idi)]
        if !context.establishedPeers.contains(peer.address) { authRequest.append(.notify(IKEv2.Notify(type: .initialContact))) }
        authRequest += [
            .identificationResponder(IKEv2.Identification(peer.identity)),
            .authentication(IKEv2.Authentication(method: .sharedKeyMIC, data: auth)),
            .securityAssociation(ProposalNegotiation.offer(connection.espProposals, dhGroups: { _ in [] }, spi: childSPI)),
            .trafficSelectorInitiator(localSelectors),
            .trafficSelectorResponder(remoteSelectors),
        ]
        phase = .initiatorAuth(InitiatorAuth(
            keys: keys, protection: protection, ni: state.nonce, nr: nr, message2: datagram, childSPI: childSPI,
            localSelectors: localSelectors, remoteSelectors: remoteSelectors))
        startRequest(.ikeAuth, authRequest, kind: .ikeAuth, now: context.now, random: &random, effects: &effects)
    }

    mutating func handleAuthResponse(_ payloads: [IKEv2.Payload], context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
        guard case .initiatorAuth(let state) = phase else { preconditionFailure("IKE_AUTH response outside the IKE_AUTH phase") }
        finishRequest(&effects)
        if payloads.notifies(.authenticationFailed).first != nil {
            fail(.authenticationFailed, "\(remote) refused our AUTH (AUTHENTICATION_FAILED): pre-shared key or identity mismatch", effects: &effects)
            return
        }
        guard let idr = payloads.identificationResponder, let auth = payloads.authentication else {
            let error = payloads.errorNotify.map { " (\($0.type))" } ?? ""
            fail(.malformed, "IKE_AUTH response from \(remote) lacks IDr or AUTH\(error)", effects: &effects)
            return
        }
        guard let identity = idr.identity, identity == peer.identity else {
            fail(.authenticationFailed, "peer \(remote) identified as \(idr.identity?.description ?? "an unsupported ID type"), expected \(peer.identity)", effects: &effects)
            return
        }
        let expected = state.keys.sharedKeyAuthentication(preSharedKey: peer.preSharedKey, realMessage: state.message2, otherNonce: state.ni, identification: idr, ofInitiator: false)
        guard auth.method == IKEv2.AuthMethod.sharedKeyMIC.rawValue, constantTimeEquals(expected, auth.data) else {
            fail(.authenticationFailed, "AUTH from \(identity) at \(remote) does not verify: the pre-shared keys differ", effects: &effects)
            return
        }
        remoteIdentity = identity

        if let error = payloads.errorNotify {
            deleteWithoutChild(failureCode(error.type), "peer \(remote) refused the Child SA with \(error.type)", random: &random, effects: &effects)
            return
        }
        guard let sa = payloads.securityAssociation, let tsi = payloads.trafficSelectorsInitiator, let tsr = payloads.trafficSelectorsResponder,
              let accepted = ProposalNegotiation.accepted(sa, offered: connection.espProposals, pfs: { _ in nil })
        else {
            deleteWithoutChild(.noProposalChosen, "peer \(remote) chose an ESP proposal we did not offer", random: &random, effects: &effects)
            return
        }
        guard TrafficSelectorNarrowing.isWithin(tsi, connection.localTrafficSelectors),
              TrafficSelectorNarrowing.isWithin(tsr, connection.remoteTrafficSelectors)
        else {
            deleteWithoutChild(.tsUnacceptable, "peer \(remote) answered traffic selectors \(tsi) === \(tsr) outside ours", random: &random, effects: &effects)
            return
        }
        becomeEstablished(keys: state.keys, protection: state.protection, context: context, random: &random, effects: &effects)
        let keys = state.keys.childKeys(accepted.algorithms, sharedSecret: nil, ni: state.ni, nr: state.nr, weAreInitiator: true)
        installChild(accepted.algorithms, inbound: state.childSPI, outbound: accepted.peerSPI, localSelectors: tsi, remoteSelectors: tsr,
                     keys: keys, rekeyOf: nil, asResponder: false, now: context.now, random: &random, effects: &effects)
    }

    /// The IKE SA is authenticated but its first Child SA failed: rather than leave a childless IKE SA at the peer
    /// (an orphan nothing uses or watches), it is deleted with INFORMATIONAL { D(IKE) } (§1.4.1) and the failure
    /// reported. The SA was never reported established, so no `ikeSADeleted` follows.
    private mutating func deleteWithoutChild(_ code: NegotiationFailure.Code, _ message: String, random: inout some RandomNumberGenerator, effects: inout Effects) {
        effects.count(.childlessIKESAsDeleted)
        effects.log(.warning, "\(label): no Child SA: \(message); deleting the IKE SA")
        effects.actions.append(.negotiationFailed(connection: connection.name, peer: peer.address, reason: NegotiationFailure(code, message)))
        sendDelete(random: &random, effects: &effects)
        close(reason: .local(message), effects: &effects)
    }

    // MARK: - Responder

    /// The IKE_AUTH request of a half-open SA (§1.2): identity, AUTH, then the first Child SA.
    mutating func handleAuthRequest(
        messageID: UInt32, _ payloads: [IKEv2.Payload], context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        guard case .responderHalfOpen(let state) = phase else { preconditionFailure("IKE_AUTH request outside the half-open phase") }
        effects.actions.append(.cancelTimer(.halfOpenExpiry(id)))
        guard let idi = payloads.identificationInitiator, let auth = payloads.authentication, let identity = idi.identity else {
            refuseAuthentication(messageID: messageID, "IKE_AUTH from \(remote) lacks IDi or AUTH", random: &random, effects: &effects)
            return
        }
        let candidates = state.candidates.filter { connection in
            connection.peers.contains { $0.address == remote.address && $0.identity == identity }
        }
        guard let firstCandidate = candidates.first,
              let peerConfiguration = firstCandidate.peers.first(where: { $0.address == remote.address && $0.identity == identity })
        else {
            refuseAuthentication(messageID: messageID, "peer \(remote) identified as \(identity), which no connection expects", random: &random, effects: &effects)
            return
        }
        let expected = state.keys.sharedKeyAuthentication(preSharedKey: peerConfiguration.preSharedKey, realMessage: state.message1, otherNonce: state.nr, identification: idi, ofInitiator: true)
        guard auth.method == IKEv2.AuthMethod.sharedKeyMIC.rawValue, constantTimeEquals(expected, auth.data) else {
            refuseAuthentication(messageID: messageID, "AUTH from \(identity) at \(remote) does not verify: the pre-shared keys differ", random: &random, effects: &effects)
            return
        }
        peer = peerConfiguration
        remoteIdentity = identity

        // The first candidate whose ESP proposals and traffic selectors fit owns the SA.
        var chosen: (connection: IKEv2Endpoint.ConnectionConfiguration, answer: IKEv2.Proposal, algorithms: ChildAlgorithms, peerSPI: UInt32,
                     tsi: [IKEv2.TrafficSelector], tsr: [IKEv2.TrafficSelector])?
        var failure: IKEv2.NotifyType?
        if let sa = payloads.securityAssociation, let tsi = payloads.trafficSelectorsInitiator, let tsr = payloads.trafficSelectorsResponder {
            for candidate in candidates {
                guard let selection = ProposalNegotiation.select(sa, from: candidate.espProposals, pfs: { _ in nil }) else {
                    failure = failure ?? .noProposalChosen
                    continue
                }
                let narrowedI = TrafficSelectorNarrowing.narrow(tsi, to: candidate.remoteTrafficSelectors)
                let narrowedR = TrafficSelectorNarrowing.narrow(tsr, to: candidate.localTrafficSelectors)
                guard !narrowedI.isEmpty, !narrowedR.isEmpty else {
                    failure = .tsUnacceptable
                    continue
                }
                chosen = (candidate, selection.answer, selection.algorithms, selection.peerSPI, narrowedI, narrowedR)
                break
            }
        }
        connection = chosen?.connection ?? firstCandidate
        let idr = IKEv2.Identification(connection.localIdentity)
        let ourAuth = state.keys.sharedKeyAuthentication(preSharedKey: peer.preSharedKey, realMessage: state.message2, otherNonce: state.ni, identification: idr, ofInitiator: false)
        var response: [IKEv2.Payload] = [.identificationResponder(idr), .authentication(IKEv2.Authentication(method: .sharedKeyMIC, data: ourAuth))]
        var inboundSPI: UInt32 = 0
        if let chosen {
            inboundSPI = newChildSPI(context, &random)
            var answer = chosen.answer
            answer.spi = bigEndian(inboundSPI)
            response += [.securityAssociation(IKEv2.SecurityAssociation(proposals: [answer])),
                         .trafficSelectorInitiator(chosen.tsi), .trafficSelectorResponder(chosen.tsr)]
        } else if let failure {
            response.append(.notify(IKEv2.Notify(type: failure)))
        }
        if !payloads.notifies(.initialContact).isEmpty { effects.initialContact = (remote.address, identity) }
        guard let chosen else {
            // The initiator learns why from our answer; then the IKE SA goes instead of lingering without a Child SA.
            respond(.ikeAuth, messageID: messageID, response, random: &random, effects: &effects)
            let type = failure ?? .noProposalChosen
            let detail = type == .tsUnacceptable
                ? "traffic selectors \(payloads.trafficSelectorsInitiator ?? []) === \(payloads.trafficSelectorsResponder ?? []) do not fit \(connection.name)"
                : "peer offered ESP \(payloads.securityAssociation.map(ProposalNegotiation.describe) ?? "nothing"), we accept \(connection.espProposals.map(\.description).joined(separator: ", "))"
            deleteWithoutChild(failureCode(type), "no Child SA with \(remote): \(type): \(detail)", random: &random, effects: &effects)
            return
        }
        becomeEstablished(keys: state.keys, protection: state.protection, context: context, random: &random, effects: &effects)
        respond(.ikeAuth, messageID: messageID, response, random: &random, effects: &effects)
        effects.supersedesChildless = (connection.name, identity)
        let keys = state.keys.childKeys(chosen.algorithms, sharedSecret: nil, ni: state.ni, nr: state.nr, weAreInitiator: false)
        installChild(chosen.algorithms, inbound: inboundSPI, outbound: chosen.peerSPI, localSelectors: chosen.tsr, remoteSelectors: chosen.tsi,
                     keys: keys, rekeyOf: nil, asResponder: true, now: context.now, random: &random, effects: &effects)
    }

    private mutating func refuseAuthentication(messageID: UInt32, _ reason: String, random: inout some RandomNumberGenerator, effects: inout Effects) {
        respond(.ikeAuth, messageID: messageID, [.notify(IKEv2.Notify(type: .authenticationFailed))], random: &random, effects: &effects)
        fail(.authenticationFailed, reason, effects: &effects)
    }

    // MARK: - Shared

    mutating func becomeEstablished(keys: IKESAKeys, protection: MessageProtection, context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
        let now = context.now
        phase = .established(Established(keys: keys, protection: protection))
        establishedAt = now
        if localBehindNAT {
            // RFC 3948 §4: keep the NAT mapping alive.
            effects.actions.append(.scheduleTimer(.natKeepalive(id), at: now + context.configuration.natKeepaliveInterval))
        }
        effects.log(.notice, "\(label): IKE SA established between \(local)[\(connection.localIdentity)]...\(remote)[\(remoteIdentity?.description ?? "?")] with \(keys.algorithms)")
        effects.actions.append(.ikeSAEstablished(info))
        scheduleRekey(.rekeyIKESA(id), lifetime: connection.ikeLifetime, now: now, random: &random, effects: &effects)
    }

    /// Records a Child SA and hands its keys to the daemon.
    mutating func installChild(
        _ algorithms: ChildAlgorithms, inbound: UInt32, outbound: UInt32, localSelectors: [IKEv2.TrafficSelector],
        remoteSelectors: [IKEv2.TrafficSelector], keys: ChildSAKeys, rekeyOf old: ChildSAID?, asResponder: Bool,
        now: Duration, random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        let info = IKEv2ChildSA(
            ikeSA: id, connection: connection.name, inboundSPI: inbound, outboundSPI: outbound, algorithms: algorithms,
            localTrafficSelectors: TrafficSelectorNarrowing.prefixes(localSelectors),
            remoteTrafficSelectors: TrafficSelectorNarrowing.prefixes(remoteSelectors),
            localEndpoint: local, remoteEndpoint: remote, udpEncapsulated: udpEncapsulated, establishedAt: now, keys: keys,
            negotiatedAsResponder: asResponder, outboundAwaitsOldDeletion: old != nil && asResponder
        )
        children.append(ChildSA(info: info, state: .installed, localSelectors: localSelectors, remoteSelectors: remoteSelectors))
        effects.log(.notice, "\(label): Child SA \(connection.name){\(hex32(inbound))_i \(hex32(outbound))_o} \(old == nil ? "established" : "rekeyed") with \(algorithms), TS \(localSelectors.map(\.description).joined(separator: " ")) === \(remoteSelectors.map(\.description).joined(separator: " "))\(udpEncapsulated ? ", ESP in UDP" : "")")
        if let old {
            effects.actions.append(.childSARekeyed(old: old, new: info))
        } else {
            effects.actions.append(.childSAEstablished(info))
        }
        scheduleRekey(.rekeyChildSA(info.id), lifetime: connection.childLifetime, now: now, random: &random, effects: &effects)
    }

    /// Negotiation failed: report it and forget the SA.
    mutating func fail(_ code: NegotiationFailure.Code, _ message: String, effects: inout Effects) {
        if code == .authenticationFailed { effects.count(.authenticationFailures) }
        effects.log(.error, "\(label): \(message)")
        effects.actions.append(.negotiationFailed(connection: connection.name, peer: peer.address, reason: NegotiationFailure(code, message)))
        close(reason: .local(message), effects: &effects)
    }
}

func failureCode(_ type: IKEv2.NotifyType) -> NegotiationFailure.Code {
    switch type {
    case .noProposalChosen: .noProposalChosen
    case .authenticationFailed: .authenticationFailed
    case .tsUnacceptable: .tsUnacceptable
    case .invalidKEPayload: .invalidKEPayload
    default: .malformed
    }
}

/// §2.23 and RFC 3948: IKE ports.
enum IKEv2Ports {
    static let ike: UInt16 = 500
    static let natTraversal: UInt16 = 4500
}

extension [IKEv2.Payload] {
    func notifies(_ type: IKEv2.NotifyType) -> [IKEv2.Notify] {
        compactMap { if case .notify(let n) = $0, n.type == type { n } else { nil } }
    }

    var errorNotify: IKEv2.Notify? {
        lazy.compactMap { if case .notify(let n) = $0, n.type.isError { n } else { nil } }.first
    }

    var securityAssociation: IKEv2.SecurityAssociation? { lazy.compactMap { if case .securityAssociation(let v) = $0 { v } else { nil } }.first }
    var keyExchange: IKEv2.KeyExchange? { lazy.compactMap { if case .keyExchange(let v) = $0 { v } else { nil } }.first }
    var nonce: [UInt8]? { lazy.compactMap { if case .nonce(let v) = $0 { v } else { nil } }.first }
    var identificationInitiator: IKEv2.Identification? { lazy.compactMap { if case .identificationInitiator(let v) = $0 { v } else { nil } }.first }
    var identificationResponder: IKEv2.Identification? { lazy.compactMap { if case .identificationResponder(let v) = $0 { v } else { nil } }.first }
    var authentication: IKEv2.Authentication? { lazy.compactMap { if case .authentication(let v) = $0 { v } else { nil } }.first }
    var trafficSelectorsInitiator: [IKEv2.TrafficSelector]? { lazy.compactMap { if case .trafficSelectorInitiator(let v) = $0 { v } else { nil } }.first }
    var trafficSelectorsResponder: [IKEv2.TrafficSelector]? { lazy.compactMap { if case .trafficSelectorResponder(let v) = $0 { v } else { nil } }.first }
    var deletes: [IKEv2.Delete] { compactMap { if case .delete(let v) = $0 { v } else { nil } } }
}
