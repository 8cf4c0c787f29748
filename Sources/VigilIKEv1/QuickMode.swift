import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// RFC 2409 §5.5 Quick Mode:
///   QM1 E{ HASH(1), SA, Ni, [KE], IDci, IDcr } -->
///   <-- QM2 E{ HASH(2), SA, Nr, [KE], IDci, IDcr }
///   QM3 E{ HASH(3) } -->
extension IKEv1Endpoint {
    /// One Quick Mode per pair of protected subnets (a crypto map ACL with several lines makes several IPsec SAs).
    mutating func startQuickModes(sa: inout ISAKMPSA, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        let connection = sa.connection
        guard !connection.localTrafficSelectors.isEmpty, !connection.remoteTrafficSelectors.isEmpty else {
            context.log(.error, "\(connection.name): no traffic selectors configured, no Quick Mode")
            return
        }
        for local in connection.localTrafficSelectors {
            for remote in connection.remoteTrafficSelectors where remote.family == local.family {
                startQuickMode(sa: &sa, local: local, remote: remote, rekeyOf: nil, &context, &random)
            }
        }
    }

    mutating func startQuickMode(sa: inout ISAKMPSA, rekeyOf: ChildSAID, _ context: inout Context,
                                 _ random: inout some RandomNumberGenerator) {
        guard let old = children[rekeyOf] else { return }
        startQuickMode(sa: &sa, local: old.info.localTrafficSelectors[0], remote: old.info.remoteTrafficSelectors[0],
                       rekeyOf: rekeyOf, &context, &random)
    }

    mutating func startQuickMode(sa: inout ISAKMPSA, local: IPPrefix, remote: IPPrefix, rekeyOf: ChildSAID?,
                                 _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard sa.isEstablished, let keys = sa.keys else { return }
        let connection = sa.connection
        guard sa.quickModes.count < IKEv1Limits.quickModesInFlight else {
            context.log(.error, "\(connection.name): \(sa.quickModes.count) Quick Modes already in flight on ISAKMP SA \(sa.id), no more")
            return
        }
        var messageID: UInt32 = 0
        while !sa.freshness.isUnused(messageID) || sa.quickModes[messageID] != nil { messageID = UInt32(truncatingIfNeeded: random.next()) }
        var spi = Self.nonzero32(&random)
        while children[ChildSAID(spi)] != nil { spi = Self.nonzero32(&random) }
        let suites = ProposalMapping.phase2Suites(connection.espProposals, group: connection.pfsGroup,
                                                  lifetimeSeconds: Self.seconds(connection.childLifetime), udpEncapsulated: sa.udpEncapsulated)
        guard !suites.isEmpty else {
            context.log(.error, "\(connection.name): no IKEv1-capable ESP proposal configured")
            return
        }
        let nonce = Self.randomBytes(Self.nonceLength, &random)
        var rest: [ISAKMP.Payload] = [.securityAssociation(ProposalMapping.phase2SA(suites, spi: spi)), .nonce(nonce)]
        var keyExchange: KeyExchange?
        if let group = connection.pfsGroup {
            guard let exchange = try? KeyExchange(group: group) else {
                context.log(.error, "\(connection.name): PFS group \(group) unavailable")
                return
            }
            keyExchange = exchange
            rest.append(.keyExchange(exchange.publicValue))
        }
        rest += [.identification(ProposalMapping.proxyIdentity(local)), .identification(ProposalMapping.proxyIdentity(remote))]
        let hash = keys.prf(keys.skeyidA, Self.messageIDBytes(messageID) + ISAKMP.encodePayloads(rest).bytes)
        let payloads = [ISAKMP.Payload.hash(hash)] + rest
        let bytes: [UInt8]
        let iv: [UInt8]
        do {
            (bytes, iv) = try Self.encryptedMessage(sa: sa, keys: keys, exchange: .quickMode, messageID: messageID,
                                                    payloads: payloads, iv: keys.exchangeIV(messageID: messageID))
        } catch {
            preconditionFailure("AES-CBC with a key we derived failed: \(error)")
        }
        sa.quickModes[messageID] = .initiatorSentQM1(.init(
            messageID: messageID, iv: iv, localNonce: nonce, keyExchange: keyExchange, inboundSPI: spi, offered: suites,
            localTrafficSelector: local, remoteTrafficSelector: remote, rekeyOf: rekeyOf))
        sa.freshness.ownMessageIDs.insert(messageID)
        context.log(.info, "\(connection.name): \(rekeyOf.map { "rekeying IPsec SA \($0) with a " } ?? "")Quick Mode \(String(messageID, radix: 16)) "
                    + "for \(local) === \(remote), inbound SPI \(String(spi, radix: 16))")
        context.log(.debug, "sending QM1 \(Self.payloadList(payloads)) to \(sa.remote)")
        sendRequest(bytes, messageID: messageID, purpose: "Quick Mode \(String(messageID, radix: 16))", sa: &sa, &context)
    }

    mutating func quickModeReceived(header: ISAKMP.Header, body: [UInt8], raw: [UInt8], from: Endpoint, to: Endpoint, sa: inout ISAKMPSA,
                                    _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard sa.isEstablished, let keys = sa.keys, header.flags.contains(.encryption) else {
            context.count(.unexpectedDropped)
            context.log(.warning, "dropped Quick Mode from \(from): ISAKMP SA \(sa.id) not established or message not encrypted")
            return
        }
        let messageID = header.messageID
        let quickMode = sa.quickModes[messageID]
        if case .responderSentQM2(let existing)? = quickMode, raw == existing.lastRequest {
            context.count(.retransmittedRequestsAnswered)
            context.actions.append(.send(bytes: existing.lastResponse, from: sa.local, to: sa.remote))
            return
        }
        if quickMode == nil, let finished = sa.finishedQuickModes.first(where: { $0.messageID == messageID }) {
            if raw == finished.request, !finished.response.isEmpty {
                context.count(.retransmittedRequestsAnswered)
                context.actions.append(.send(bytes: finished.response, from: sa.local, to: sa.remote))
            } else {
                context.count(.unexpectedDropped)
            }
            return
        }
        if quickMode == nil {
            // A QM1 under a message ID we chose is our own QM1 reflected; one the peer already used is a replay.
            if sa.freshness.ownMessageIDs.contains(messageID) {
                context.count(.reflectedDropped)
                context.log(.debug, "dropped Quick Mode \(String(messageID, radix: 16)) from \(from): our own message ID, reflected")
                return
            }
            if sa.freshness.peerMessageIDs.contains(messageID) {
                context.count(.replayedDropped)
                context.log(.debug, "dropped Quick Mode \(String(messageID, radix: 16)) from \(from): message ID already used (replay?)")
                return
            }
            let carried = children.values.count { $0.info.ikeSA == sa.id }
            guard sa.quickModes.count < IKEv1Limits.quickModesInFlight, carried < IKEv1Limits.ipsecSAsPerISAKMPSA else {
                context.count(.quickModeLimitDropped)
                context.log(.warning, "dropped QM1 from \(from): ISAKMP SA \(sa.id) has \(sa.quickModes.count) Quick Modes in flight "
                            + "and \(carried) IPsec SAs")
                return
            }
        }
        let iv = quickMode?.iv ?? keys.exchangeIV(messageID: messageID)
        let payloads: [ISAKMP.Payload]
        let nextIV: [UInt8]
        do {
            let (plaintext, next) = try keys.decrypt(body, iv: iv)
            payloads = try ISAKMP.decodePayloads(firstPayload: header.nextPayload, plaintext, allowPadding: true)
            nextIV = next
        } catch {
            context.count(.malformedDropped)
            context.log(.warning, "dropped Quick Mode \(String(messageID, radix: 16)) from \(from): \(error)")
            return
        }
        guard case .hash(let hash)? = payloads.first else {
            context.count(.malformedDropped)
            context.log(.warning, "dropped Quick Mode from \(from): HASH is not the first payload")
            return
        }
        do throws(NegotiationFailure) {
            switch quickMode {
            case nil:
                try quickMode1Received(messageID: messageID, hash: hash, payloads: payloads, raw: raw, nextIV: nextIV, keys: keys,
                                       from: from, to: to, sa: &sa, &context, &random)
            case .initiatorSentQM1(let sent)?:
                try quickMode2Received(hash: hash, payloads: payloads, raw: raw, sent: sent, nextIV: nextIV, keys: keys, from: from, to: to,
                                       sa: &sa, &context, &random)
            case .responderSentQM2(let sent)?:
                // QM3 { HASH(3) } -->   HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)
                let agreed = sent.agreed
                let expected = keys.prf(keys.skeyidA, [0] + Self.messageIDBytes(messageID) + agreed.initiatorNonce + agreed.responderNonce)
                guard constantTimeEquals(expected, hash) else { throw NegotiationFailure(.authenticationFailed, "QM3 HASH(3) does not verify") }
                context.log(.debug, "received QM3 { HASH } from \(from)")
                answered(messageID: messageID, sa: &sa, &context)
                // A late duplicate of QM1 must not start this exchange over.
                sa.rememberFinishedQuickMode(FinishedQuickMode(messageID: messageID, request: raw, response: []))
                freshMessageReceived(from: from, to: to, sa: &sa, &context)
                installChildSA(agreed, keys: keys, sa: &sa, weInitiated: false, &context, &random)
            }
        } catch {
            if error.code == .authenticationFailed {
                // The HASH does not verify: anyone could have sent this (our own message reflected, noise, a forgery).
                // It changes nothing; the exchange waits for the peer's real message.
                context.count(.authenticationFailures)
                context.log(.warning, "dropped Quick Mode \(String(messageID, radix: 16)) from \(from): \(error.message)")
                return
            }
            context.log(.error, "\(sa.connection.name): Quick Mode \(String(messageID, radix: 16)) with \(sa.remote) failed: \(error.message)")
            let ours = quickMode?.weInitiated == true
            context.exchange(.quickMode, .init(initiator: ours), .failed)
            if sa.quickModes.removeValue(forKey: messageID) != nil {
                answered(messageID: messageID, sa: &sa, &context)
            }
            context.actions.append(.negotiationFailed(connection: sa.connection.name, peer: sa.peer.address, reason: error))
            // Tell the initiator why its QM1 was refused, so it stops retransmitting (RFC 2408 §5.5).
            let notify: UInt16? = switch error.code {
            case .noProposalChosen: ISAKMP.NotifyType.noProposalChosen
            case .invalidIDInformation: ISAKMP.NotifyType.invalidIDInformation
            case .authenticationFailed, .invalidKEPayload, .timeout, .peerDeleted, .unknownPeer, .malformed, .tsUnacceptable, .internalError: nil
            }
            if quickMode == nil, let notify {
                sendInformational([.notification(.init(protocolID: .isakmp, notifyType: notify, spi: sa.cookies))], sa: &sa, &context, &random)
            }
            if ours { quickModeFailed(sa: &sa, reason: "Quick Mode failed (\(error.code.rawValue))", &context, &random) }
        }
    }

    // QM1 E{ HASH(1), SA, Ni, [KE], IDci, IDcr } -->
    mutating func quickMode1Received(messageID: UInt32, hash: [UInt8], payloads: [ISAKMP.Payload], raw: [UInt8], nextIV: [UInt8],
                                     keys: Phase1Keys, from: Endpoint, to: Endpoint, sa: inout ISAKMPSA, _ context: inout Context, _ random: inout some RandomNumberGenerator) throws(NegotiationFailure) {
        // HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [ | KE ] [ | IDci | IDcr ])
        let expected = keys.prf(keys.skeyidA, Self.messageIDBytes(messageID) + Self.bytesAfterHash(payloads))
        guard constantTimeEquals(expected, hash) else { throw .init(.authenticationFailed, "QM1 HASH(1) does not verify") }
        context.log(.debug, "received QM1 \(Self.payloadList(payloads)) from \(sa.remote)")
        sa.freshness.peerMessageIDs.insert(messageID)
        freshMessageReceived(from: from, to: to, sa: &sa, &context)
        let parts = try QuickModePayloads(payloads, message: "QM1")
        let connection = sa.connection
        let allowed = ProposalMapping.phase2Suites(connection.espProposals, group: connection.pfsGroup,
                                                   lifetimeSeconds: Self.seconds(connection.childLifetime), udpEncapsulated: sa.udpEncapsulated)
        guard let (proposal, transform, suite) = ProposalMapping.selectPhase2(parts.sa, allowed: allowed),
              let outboundSPI = ProposalMapping.spiValue(proposal.spi) else {
            let offered = parts.sa.proposals.flatMap(\.transforms).compactMap(ProposalMapping.phase2Suite)
                .map { "\($0.encryption)-\($0.integrity)\($0.group.map { "-\($0)" } ?? "")" }
            let ours = allowed.map { "\($0.encryption)-\($0.integrity)\($0.group.map { "-\($0)" } ?? "")" }
            throw .init(.noProposalChosen, "no Phase 2 proposal chosen: peer offered \(offered.isEmpty ? "nothing Vigil supports" : offered.joined(separator: ", ")), we allow \(ours.joined(separator: ", "))")
        }
        // Proxy identities: IDci is the peer's side, IDcr ours; absent, they are the gateways themselves.
        let remoteTS = try parts.initiatorID.map(Self.prefixOrThrow) ?? IPPrefix(address: sa.remote.address, length: sa.remote.address.family.bitWidth)
        let localTS = try parts.responderID.map(Self.prefixOrThrow) ?? IPPrefix(address: sa.local.address, length: sa.local.address.family.bitWidth)
        guard connection.remoteTrafficSelectors.contains(where: { Self.covers($0, remoteTS) }),
              connection.localTrafficSelectors.contains(where: { Self.covers($0, localTS) }) else {
            throw .init(.invalidIDInformation, "proxy identities \(localTS) === \(remoteTS) are outside "
                        + "\(connection.localTrafficSelectors) === \(connection.remoteTrafficSelectors)")
        }
        var spi = Self.nonzero32(&random)
        while children[ChildSAID(spi)] != nil { spi = Self.nonzero32(&random) }
        let nonce = Self.randomBytes(Self.nonceLength, &random)
        var chosen = proposal
        chosen.spi = ProposalMapping.spiBytes(spi)
        chosen.transforms = [transform]
        var rest: [ISAKMP.Payload] = [.securityAssociation(ISAKMP.SecurityAssociation(proposals: [chosen])), .nonce(nonce)]
        var pfsSecret: SecureBytes?
        if let group = suite.group {
            guard let peerKE = parts.keyExchange else { throw .init(.invalidKEPayload, "QM1 asks for PFS \(group) without a KE payload") }
            let exchange = try Self.keyExchange(group)
            do {
                pfsSecret = try exchange.sharedSecret(peerPublicValue: peerKE)
            } catch {
                throw .init(.invalidKEPayload, "PFS key exchange failed: \(error)")
            }
            rest.append(.keyExchange(exchange.publicValue))
        }
        if let id = parts.initiatorID { rest.append(.identification(id)) }
        if let id = parts.responderID { rest.append(.identification(id)) }
        // HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [ | KE ] [ | IDci | IDcr ])
        let hash2 = keys.prf(keys.skeyidA, Self.messageIDBytes(messageID) + parts.nonce + ISAKMP.encodePayloads(rest).bytes)
        let reply = [ISAKMP.Payload.hash(hash2)] + rest
        let bytes: [UInt8]
        let iv: [UInt8]
        do {
            (bytes, iv) = try Self.encryptedMessage(sa: sa, keys: keys, exchange: .quickMode, messageID: messageID, payloads: reply, iv: nextIV)
        } catch {
            preconditionFailure("AES-CBC with a key we derived failed: \(error)")
        }
        let agreed = AgreedQuickMode(
            messageID: messageID, suite: suite, inboundSPI: spi, outboundSPI: outboundSPI, initiatorNonce: parts.nonce, responderNonce: nonce,
            pfsSecret: pfsSecret, localTrafficSelector: localTS, remoteTrafficSelector: remoteTS, rekeyOf: nil)
        sa.quickModes[messageID] = .responderSentQM2(.init(agreed: agreed, iv: iv, lastRequest: raw, lastResponse: bytes))
        context.log(.info, "\(connection.name): Quick Mode \(String(messageID, radix: 16)) from \(sa.remote) accepted: "
                    + "\(suite.encryption)-\(suite.integrity)\(suite.group.map { "-\($0)" } ?? ""), \(localTS) === \(remoteTS)")
        context.log(.debug, "sending QM2 \(Self.payloadList(reply)) to \(sa.remote)")
        // Retransmitted until QM3 confirms it (RFC 2409 §5.5 leaves the responder waiting for QM3).
        sendRequest(bytes, messageID: messageID, purpose: "Quick Mode 2 \(String(messageID, radix: 16))", sa: &sa, &context)
    }

    // <-- QM2 E{ HASH(2), SA, Nr, [KE], IDci, IDcr }
    mutating func quickMode2Received(hash: [UInt8], payloads: [ISAKMP.Payload], raw: [UInt8], sent: QuickMode.InitiatorSentQM1, nextIV: [UInt8],
                                     keys: Phase1Keys, from: Endpoint, to: Endpoint, sa: inout ISAKMPSA,
                                     _ context: inout Context, _ random: inout some RandomNumberGenerator) throws(NegotiationFailure) {
        let messageID = sent.messageID
        let expected = keys.prf(keys.skeyidA, Self.messageIDBytes(messageID) + sent.localNonce + Self.bytesAfterHash(payloads))
        guard constantTimeEquals(expected, hash) else { throw .init(.authenticationFailed, "QM2 HASH(2) does not verify") }
        context.log(.debug, "received QM2 \(Self.payloadList(payloads)) from \(sa.remote)")
        freshMessageReceived(from: from, to: to, sa: &sa, &context)
        answered(messageID: messageID, sa: &sa, &context)
        let parts = try QuickModePayloads(payloads, message: "QM2")
        guard parts.sa.proposals.count == 1, parts.sa.proposals[0].transforms.count == 1,
              let suite = ProposalMapping.phase2Suite(parts.sa.proposals[0].transforms[0]),
              sent.offered.contains(where: { $0.encryption == suite.encryption && $0.integrity == suite.integrity && $0.group == suite.group }),
              let outboundSPI = ProposalMapping.spiValue(parts.sa.proposals[0].spi)
        else { throw .init(.noProposalChosen, "QM2 does not choose exactly one of the ESP transforms we offered") }
        // IKEv1 has no narrowing: the responder echoes our proxy identities (RFC 2409 §5.5).
        if let initiatorID = parts.initiatorID, let responderID = parts.responderID {
            guard ProposalMapping.prefix(initiatorID) == sent.localTrafficSelector,
                  ProposalMapping.prefix(responderID) == sent.remoteTrafficSelector else {
                throw .init(.invalidIDInformation, "QM2 changed the proxy identities we proposed "
                            + "(\(sent.localTrafficSelector) === \(sent.remoteTrafficSelector))")
            }
        }
        var pfsSecret: SecureBytes?
        if let group = suite.group {
            guard let peerKE = parts.keyExchange, let exchange = sent.keyExchange, exchange.group == group else {
                throw .init(.invalidKEPayload, "QM2 lacks the PFS KE payload for \(group)")
            }
            do {
                pfsSecret = try exchange.sharedSecret(peerPublicValue: peerKE)
            } catch {
                throw .init(.invalidKEPayload, "PFS key exchange failed: \(error)")
            }
        }
        // QM3 E{ HASH(3) } -->
        let hash3 = keys.prf(keys.skeyidA, [0] + Self.messageIDBytes(messageID) + sent.localNonce + parts.nonce)
        let bytes: [UInt8]
        do {
            (bytes, _) = try Self.encryptedMessage(sa: sa, keys: keys, exchange: .quickMode, messageID: messageID, payloads: [.hash(hash3)], iv: nextIV)
        } catch {
            preconditionFailure("AES-CBC with a key we derived failed: \(error)")
        }
        context.log(.debug, "sending QM3 { HASH } to \(sa.remote)")
        context.actions.append(.send(bytes: bytes, from: sa.local, to: sa.remote))
        sa.rememberFinishedQuickMode(FinishedQuickMode(messageID: messageID, request: raw, response: bytes))
        let agreed = AgreedQuickMode(
            messageID: messageID, suite: suite, inboundSPI: sent.inboundSPI, outboundSPI: outboundSPI, initiatorNonce: sent.localNonce,
            responderNonce: parts.nonce, pfsSecret: pfsSecret, localTrafficSelector: sent.localTrafficSelector,
            remoteTrafficSelector: sent.remoteTrafficSelector, rekeyOf: sent.rekeyOf)
        installChildSA(agreed, keys: keys, sa: &sa, weInitiated: true, &context, &random)
    }

    static func prefixOrThrow(_ id: ISAKMP.Identification) throws(NegotiationFailure) -> IPPrefix {
        guard let prefix = ProposalMapping.prefix(id) else {
            throw .init(.invalidIDInformation, "proxy identity of type \(id.idType) is not a subnet or address")
        }
        return prefix
    }

    static func covers(_ outer: IPPrefix, _ inner: IPPrefix) -> Bool {
        outer.family == inner.family && inner.length >= outer.length && outer.contains(inner.address)
    }

    mutating func installChildSA(_ quickMode: AgreedQuickMode, keys: Phase1Keys, sa: inout ISAKMPSA, weInitiated: Bool, _ context: inout Context,
                                 _ random: inout some RandomNumberGenerator) {
        let suite = quickMode.suite
        let length = suite.keyMaterialLength
        let encryptionLength = suite.encryption.keyBits / 8
        let protocolID = ISAKMP.ProtocolID.esp.rawValue
        let inbound = keys.keyMaterial(length: length, pfsSecret: quickMode.pfsSecret, protocolID: protocolID, spi: quickMode.inboundSPI,
                                       initiatorNonce: quickMode.initiatorNonce, responderNonce: quickMode.responderNonce)
        let outbound = keys.keyMaterial(length: length, pfsSecret: quickMode.pfsSecret, protocolID: protocolID, spi: quickMode.outboundSPI,
                                        initiatorNonce: quickMode.initiatorNonce, responderNonce: quickMode.responderNonce)
        let childKeys = ChildSAKeys(encryptionIn: inbound[0..<encryptionLength], encryptionOut: outbound[0..<encryptionLength],
                                    integrityIn: inbound[encryptionLength..<length], integrityOut: outbound[encryptionLength..<length])
        let udp = sa.udpEncapsulated || suite.udpEncapsulated
        let info = IKEv1ChildSA(
            ikeSA: sa.id, connection: sa.connection.name, inboundSPI: quickMode.inboundSPI, outboundSPI: quickMode.outboundSPI,
            algorithms: ChildAlgorithms(encryption: suite.encryption, integrity: suite.integrity, dhGroup: suite.group),
            localTrafficSelectors: [quickMode.localTrafficSelector], remoteTrafficSelectors: [quickMode.remoteTrafficSelector],
            localEndpoint: sa.local, remoteEndpoint: sa.remote, udpEncapsulated: udp, establishedAt: context.now, keys: childKeys)
        children[info.id] = ChildSA(info: info, weInitiated: weInitiated)
        sa.quickModes[quickMode.messageID] = nil
        context.exchange(.quickMode, .init(initiator: weInitiated), .ok)
        context.log(.notice, "\(sa.connection.name): IPsec SA established, SPIs in \(String(info.inboundSPI, radix: 16)) out \(String(info.outboundSPI, radix: 16)), "
                    + "\(suite.encryption)-\(suite.integrity)\(suite.group.map { "-\($0)" } ?? ""), "
                    + "\(quickMode.localTrafficSelector) === \(quickMode.remoteTrafficSelector)\(udp ? ", UDP-encapsulated" : "")")
        let lifetime = Duration.seconds(Int64(suite.lifetimeSeconds))
        context.actions.append(.scheduleTimer(.expireChildSA(info.id), at: context.now + lifetime))
        if weInitiated {
            let margin = min(sa.connection.rekeyMargin, lifetime / 2)
            context.actions.append(.scheduleTimer(.rekeyChildSA(info.id), at: context.now + lifetime - margin))
        }
        if let old = quickMode.rekeyOf, let oldChild = children[old] {
            context.actions.append(.childSARekeyed(old: old, new: info))
            sas[sa.id] = sa
            // The DELETE travels on the ISAKMP SA that ran the rekey: after a Phase 1 rekey strongSwan has moved the
            // old IPsec SA to the new ISAKMP SA and ignores a DELETE on the old one.
            children[old]?.info.ikeSA = sa.id
            deleteChildSA(old, reason: "rekeyed", &context, &random)
            retireIfReplaced(oldChild.info.ikeSA, &context, &random)
            if let updated = sas[sa.id] { sa = updated }
        } else {
            context.actions.append(.childSAEstablished(info))
        }
    }

    /// A Quick Mode we started failed (refused with an authenticated notify, or unanswered). An ISAKMP SA left
    /// carrying no IPsec SA and no Quick Mode is deleted with a DELETE rather than kept: the daemon's retry policy
    /// (back-off, failover to the next peer) starts a fresh Main Mode anyway, and an ISAKMP SA kept for nothing
    /// would linger on both sides until its lifetime ends (issue 13: orphaned SAs pile up on the peer). Retrying
    /// Quick Mode here would second-guess that policy, and a refusal (NO_PROPOSAL_CHOSEN, INVALID_ID_INFORMATION)
    /// repeats identically anyway.
    mutating func quickModeFailed(sa: inout ISAKMPSA, reason: String, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard sa.isEstablished, sa.quickModes.isEmpty, !children.values.contains(where: { $0.info.ikeSA == sa.id }),
              !sas.values.contains(where: { $0.replaces == sa.id && !$0.isDead }) else { return }
        context.log(.notice, "\(sa.connection.name): ISAKMP SA \(sa.id) carries no IPsec SA after the failed Quick Mode: deleting it")
        sendISAKMPDelete(sa: &sa, reason: .local(reason), &context, &random)
    }

    mutating func rekeyChildSA(_ id: ChildSAID, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard let child = children[id], var sa = sas[child.info.ikeSA], sa.isEstablished else { return }
        guard !sa.quickModes.values.contains(where: { $0.rekeyOf == id }) else { return }
        startQuickMode(sa: &sa, rekeyOf: id, &context, &random)
        sas[sa.id] = sa
    }
}

/// The payloads of QM1/QM2 sorted out (RFC 2409 §5.5: the first ID is IDci, the second IDcr).
struct QuickModePayloads {
    var sa: ISAKMP.SecurityAssociation
    var nonce: [UInt8]
    var keyExchange: [UInt8]?
    var initiatorID: ISAKMP.Identification?
    var responderID: ISAKMP.Identification?

    init(_ payloads: [ISAKMP.Payload], message: String) throws(NegotiationFailure) {
        var sa: ISAKMP.SecurityAssociation?
        var nonce: [UInt8]?
        var ids: [ISAKMP.Identification] = []
        for payload in payloads.dropFirst() {
            switch payload {
            case .securityAssociation(let value): sa = value
            case .nonce(let value): nonce = value
            case .keyExchange(let value): keyExchange = value
            case .identification(let value): ids.append(value)
            case .hash, .notification, .delete, .vendorID, .natDiscovery, .natOriginalAddress, .other: break
            }
        }
        guard let sa, let nonce else { throw .init(.malformed, "\(message) lacks SA or nonce") }
        guard ids.isEmpty || ids.count == 2 else { throw .init(.invalidIDInformation, "\(message) carries \(ids.count) IDs, not 0 or 2") }
        self.sa = sa
        self.nonce = nonce
        initiatorID = ids.first
        responderID = ids.count == 2 ? ids[1] : nil
    }
}
