import VigilAddressing
import VigilCrypto
import VigilIKE
import VigilWire

/// Informational exchanges (RFC 2408 §4.8, RFC 2409 §5.7): E{ HASH(1), N/D } with
/// HASH(1) = prf(SKEYID_a, M-ID | N/D) and a fresh IV per message ID; RFC 3706 DPD rides on them.
extension IKEv1Endpoint {
    /// RFC 2408 §3.14.1: notify types 1-16383 are errors, 16384 and above status.
    static let firstStatusNotifyType: UInt16 = 16384

    /// Sends E{ HASH(1), N/D } under a message ID we never used on this SA, remembered as ours so the message
    /// reflected back is recognised.
    func sendInformational(_ rest: [ISAKMP.Payload], sa: inout ISAKMPSA, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard let keys = sa.keys, sa.isEstablished else { return }
        var messageID: UInt32 = 0
        while !sa.freshness.isUnused(messageID) { messageID = UInt32(truncatingIfNeeded: random.next()) }
        sa.freshness.ownMessageIDs.insert(messageID)
        let hash = keys.prf(keys.skeyidA, Self.messageIDBytes(messageID) + ISAKMP.encodePayloads(rest).bytes)
        let payloads = [ISAKMP.Payload.hash(hash)] + rest
        do {
            let (bytes, _) = try Self.encryptedMessage(sa: sa, keys: keys, exchange: .informational, messageID: messageID,
                                                       payloads: payloads, iv: keys.exchangeIV(messageID: messageID))
            context.actions.append(.send(bytes: bytes, from: sa.local, to: sa.remote))
        } catch {
            preconditionFailure("AES-CBC with a key we derived failed: \(error)")
        }
    }

    /// `sendInformational` on the stored SA `id`.
    mutating func sendInformational(_ rest: [ISAKMP.Payload], on id: IKEv1SAID, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard var sa = sas[id] else { return }
        sendInformational(rest, sa: &sa, &context, &random)
        sas[id] = sa
    }

    /// RFC 3706: sent whenever the detector asks, also while a Quick Mode is in flight (IKEv1 informational
    /// exchanges run beside Phase 2; a Quick Mode the peer never answers must not silence the probes).
    mutating func sendDPDProbe(_ requested: IKEv1SAID, sequence: UInt32, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard let id = liveSuccessor(of: requested), var sa = sas[id] else {
            context.log(.debug, "R-U-THERE \(sequence): ISAKMP SA \(requested) is not established")
            return
        }
        if id != requested {
            context.log(.info, "R-U-THERE \(sequence) for replaced ISAKMP SA \(requested) goes on its successor \(id)")
        }
        guard sa.peerSupportsDPD else {
            context.log(.warning, "R-U-THERE \(sequence) not sent: \(sa.remote) did not advertise RFC 3706 DPD")
            return
        }
        context.log(.info, "sending R-U-THERE seq \(sequence) to \(sa.remote) on ISAKMP SA \(id)")
        sendInformational([.notification(Self.dpdNotification(ISAKMP.NotifyType.rUThere, sa: sa, sequence: sequence))], sa: &sa, &context, &random)
        sa.freshness.rUThereSent(sequence)
        sas[id] = sa
    }

    /// RFC 3706 §5: protocol ISAKMP, SPI = CKY-I | CKY-R, data = the 32-bit sequence number.
    static func dpdNotification(_ type: UInt16, sa: ISAKMPSA, sequence: UInt32) -> ISAKMP.Notification {
        ISAKMP.Notification(protocolID: .isakmp, notifyType: type, spi: sa.cookies, data: messageIDBytes(sequence))
    }

    mutating func deleteChildSA(_ id: ChildSAID, reason: String, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard let child = children.removeValue(forKey: id) else { return }
        if let sa = sas[child.info.ikeSA] {
            context.log(.info, "sending DELETE for IPsec SA \(id) (out \(String(child.info.outboundSPI, radix: 16))) to \(sa.remote): \(reason)")
            sendInformational([.delete(ISAKMP.Delete(protocolID: .esp, spiSize: 4, spis: [ProposalMapping.spiBytes(child.info.inboundSPI)]))],
                              on: sa.id, &context, &random)
        }
        context.actions.append(.cancelTimer(.rekeyChildSA(id)))
        context.actions.append(.cancelTimer(.expireChildSA(id)))
        context.actions.append(.childSADeleted(child.info, reason: reason))
    }

    mutating func deleteIKESA(_ id: IKEv1SAID, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard sas[id] != nil else { return }
        for (childID, child) in children where child.info.ikeSA == id {
            deleteChildSA(childID, reason: "ISAKMP SA deleted locally", &context, &random)
        }
        sendISAKMPDelete(id, &context, &random)
    }

    /// DELETE for the ISAKMP SA alone (RFC 2408 §3.15: SPI = both cookies), then forget it.
    mutating func sendISAKMPDelete(_ id: IKEv1SAID, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard var sa = sas[id] else { return }
        sendISAKMPDelete(sa: &sa, reason: .local("deleted locally"), &context, &random)
        sas[id] = sa
    }

    mutating func sendISAKMPDelete(sa: inout ISAKMPSA, reason: IKESAEnd, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        context.log(.info, "sending DELETE for ISAKMP SA \(sa.id) to \(sa.remote)")
        sendInformational([.delete(ISAKMP.Delete(protocolID: .isakmp, spiSize: 16, spis: [sa.cookies]))], sa: &sa, &context, &random)
        sa.phase = .dead
        sa.deathReason = reason
    }

    mutating func informationalReceived(header: ISAKMP.Header, body: [UInt8], from: Endpoint, to: Endpoint, sa: inout ISAKMPSA,
                                        _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard header.flags.contains(.encryption) else {
            plaintextInformationalReceived(header: header, body: body, from: from, sa: &sa, &context)
            return
        }
        guard let keys = sa.keys else {
            context.count(.malformedDropped)
            return
        }
        let payloads: [ISAKMP.Payload]
        do {
            let (plaintext, _) = try keys.decrypt(body, iv: keys.exchangeIV(messageID: header.messageID))
            payloads = try ISAKMP.decodePayloads(firstPayload: header.nextPayload, plaintext, allowPadding: true)
        } catch {
            if sa.awaitsMainMode6 {
                // strongSwan answers an MM5 it cannot verify with an encrypted error notify; under the wrong key it
                // reads as noise, which is the telling symptom. Anyone could send noise, though: it is only a hint.
                unauthenticatedReply(sa: &sa, .authenticationFailed, "the peer answered MM5 with an informational that does not "
                                     + "decrypt under our keys: pre-shared key mismatch?", &context)
                return
            }
            context.count(.malformedDropped)
            context.log(.warning, "dropped informational from \(from): \(error)")
            return
        }
        guard case .hash(let hash)? = payloads.first,
              constantTimeEquals(keys.prf(keys.skeyidA, Self.messageIDBytes(header.messageID) + Self.bytesAfterHash(payloads)), hash)
        else {
            if sa.awaitsMainMode6 {
                unauthenticatedReply(sa: &sa, .authenticationFailed, "the peer answered MM5 with an informational whose HASH(1) "
                                     + "does not verify: pre-shared key mismatch?", &context)
                return
            }
            context.count(.authenticationFailures)
            context.log(.warning, "dropped informational from \(from): HASH(1) missing or wrong")
            return
        }
        // HASH(1) is the same in both directions: a valid one does not say who sent the message.
        if sa.freshness.ownMessageIDs.contains(header.messageID) {
            context.count(.reflectedDropped)
            context.log(.debug, "dropped informational \(String(header.messageID, radix: 16)) from \(from): our own message, reflected")
            return
        }
        let isDPD = !payloads.dropFirst().isEmpty && payloads.dropFirst().allSatisfy {
            if case .notification(let n) = $0 { return n.notifyType == ISAKMP.NotifyType.rUThere || n.notifyType == ISAKMP.NotifyType.rUThereAck }
            return false
        }
        if !isDPD {
            // DPD is judged by its sequence numbers (a peer probing every second would flood the window); anything
            // else must carry a message ID the peer has not used before.
            guard sa.freshness.peerMessageIDs.insert(header.messageID) else {
                context.count(.replayedDropped)
                context.log(.debug, "dropped informational \(String(header.messageID, radix: 16)) from \(from): already received (replay?)")
                return
            }
        }
        guard sa.isEstablished else {
            // Authenticated under keys Main Mode has not confirmed yet: noted for the operator, nothing more.
            for case .notification(let notification) in payloads where notification.notifyType < Self.firstStatusNotifyType {
                sa.lastUnauthenticatedReason = .init(Self.mainModeFailureCode(notification.notifyType),
                                                     "the peer sent \(ISAKMP.NotifyType.name(notification.notifyType)) during Main Mode")
            }
            context.log(.info, "informational \(Self.payloadList(payloads)) from \(from) before Main Mode finished: noted")
            return
        }
        context.log(.debug, "received INFORMATIONAL \(Self.payloadList(payloads)) from \(from)")
        if !isDPD { freshMessageReceived(from: from, to: to, sa: &sa, &context) }
        for payload in payloads.dropFirst() {
            switch payload {
            case .notification(let notification):
                notificationReceived(notification, from: from, to: to, sa: &sa, &context, &random)
            case .delete(let delete):
                deleteReceived(delete, sa: &sa, &context)
            case .hash, .securityAssociation, .keyExchange, .identification, .nonce, .vendorID, .natDiscovery, .natOriginalAddress, .other:
                context.log(.debug, "ignored \(payload.name) in an informational exchange from \(from)")
            }
        }
    }

    /// An authenticated message from the peer that Vigil has not seen before: proof of life (issue 13's rule), and
    /// the only kind of message that may move the SA to a new address.
    mutating func freshMessageReceived(from: Endpoint, to: Endpoint, sa: inout ISAKMPSA, countsAsLife: Bool = true, _ context: inout Context) {
        if countsAsLife { context.actions.append(.authenticatedMessageReceived(sa.id)) }
        guard from != sa.remote else { return }
        // RFC 3947 §5 / RFC 7296 §2.23 in spirit: only a peer NAT-D showed behind a NAT may move, and only on an
        // authenticated, fresh message; otherwise the datagram was forged or misrouted and the address stays.
        guard sa.isEstablished, sa.peerBehindNAT, from.address.family == sa.remote.address.family else {
            context.count(.addressChangeIgnored)
            context.log(.warning, "authenticated message for ISAKMP SA \(sa.id) from \(from), not \(sa.remote): "
                        + "no NAT detected in front of the peer, its address stays")
            return
        }
        let old = sa.remote
        context.log(.notice, "\(sa.connection.name): peer behind NAT moved from \(old) to \(from) (ISAKMP SA \(sa.id))")
        context.count(.peerAddressChanges)
        sa.remote = from
        if to.port == sa.local.port { sa.local = to }
        for (id, child) in children where child.info.ikeSA == sa.id {
            children[id]?.info.remoteEndpoint = from
            children[id]?.info.localEndpoint = sa.local
        }
        context.actions.append(.peerAddressChanged(sa.id, old: old, new: from))
    }

    mutating func notificationReceived(_ notification: ISAKMP.Notification, from: Endpoint, to: Endpoint, sa: inout ISAKMPSA,
                                       _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        switch notification.notifyType {
        case ISAKMP.NotifyType.rUThere, ISAKMP.NotifyType.rUThereAck:
            guard notification.data.count == 4 else {
                context.count(.malformedDropped)
                context.log(.warning, "\(ISAKMP.NotifyType.name(notification.notifyType)) without a 32-bit sequence number")
                return
            }
            let sequence = notification.data.reduce(0) { $0 << 8 | UInt32($1) }
            if notification.notifyType == ISAKMP.NotifyType.rUThere {
                rUThereReceived(sequence: sequence, from: from, to: to, sa: &sa, &context, &random)
            } else if sa.freshness.outstandingDPD.remove(sequence) {
                context.log(.info, "received R-U-THERE-ACK seq \(sequence) from \(sa.remote)")
                context.exchange(.isakmpInformational, .initiator, .ok)
                // Proof of life is the detector's call: it knows which of its probes this answers.
                freshMessageReceived(from: from, to: to, sa: &sa, countsAsLife: false, &context)
                context.actions.append(.dpdAcknowledged(sa.id, sequence: sequence))
            } else {
                context.count(.dpdAckMismatch)
                context.log(.warning, "R-U-THERE-ACK seq \(sequence) from \(sa.remote) echoes no outstanding R-U-THERE of ours (replay?)")
            }
        case ISAKMP.NotifyType.initialContact:
            initialContactReceived(sa: sa, &context)
        default:
            let name = ISAKMP.NotifyType.name(notification.notifyType)
            context.log(.warning, "notify \(name) from \(sa.remote)")
            // An error notify about a Quick Mode we run ends it (strongSwan sends NO_PROPOSAL_CHOSEN or
            // INVALID_ID_INFORMATION this way). It is authenticated and fresh (checked above).
            guard notification.notifyType < Self.firstStatusNotifyType else { return }
            let refused = sa.quickModes.filter { $0.value.weInitiated }.keys.sorted()
            guard !refused.isEmpty else { return }
            let code: NegotiationFailure.Code = notification.notifyType == ISAKMP.NotifyType.noProposalChosen ? .noProposalChosen
                : notification.notifyType == ISAKMP.NotifyType.invalidIDInformation ? .invalidIDInformation : .malformed
            for messageID in refused {
                context.exchange(.quickMode, .initiator, .failed)
                sa.quickModes[messageID] = nil
                answered(messageID: messageID, sa: &sa, &context)
                context.actions.append(.negotiationFailed(connection: sa.connection.name, peer: sa.peer.address,
                                                          reason: .init(code, "peer refused Quick Mode: \(name)")))
            }
            quickModeFailed(sa: &sa, reason: "Quick Mode refused with \(name)", &context, &random)
        }
    }

    /// RFC 3706 §5: answer with an ACK echoing the sequence number; §7: the peer's sequence numbers increase, so
    /// only one above the last proves the peer is alive now (a replay carries an old one). One of our own sequence
    /// numbers is our probe reflected (its message ID already forgotten): no proof of life. It is still answered,
    /// once, because both ends count up from random starts and may meet: refusing the ACK would make a healthy
    /// peer declare us dead, and an ACK reflected back is dropped, so there is no storm.
    mutating func rUThereReceived(sequence: UInt32, from: Endpoint, to: Endpoint, sa: inout ISAKMPSA,
                                  _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        context.log(.info, "received R-U-THERE seq \(sequence) from \(sa.remote), sending R-U-THERE-ACK")
        context.count(.dpdProbesAnswered)
        if sa.freshness.isOwnSequence(sequence) {
            context.count(.reflectedDropped)
            context.log(.debug, "R-U-THERE seq \(sequence) from \(from) carries a sequence number we sent: not taken as proof of life")
        } else if sa.freshness.isAboveLastPeerSequence(sequence) {
            sa.freshness.lastPeerSequence = sequence
            freshMessageReceived(from: from, to: to, sa: &sa, &context)
        } else {
            context.count(.dpdStaleSequence)
            context.log(.debug, "R-U-THERE seq \(sequence) is not above the last one (\(sa.freshness.lastPeerSequence.map(String.init) ?? "-")): "
                        + "answered, not taken as proof of life")
        }
        context.exchange(.isakmpInformational, .responder, .ok)
        sendInformational([.notification(Self.dpdNotification(ISAKMP.NotifyType.rUThereAck, sa: sa, sequence: sequence))], sa: &sa, &context, &random)
    }

    mutating func deleteReceived(_ delete: ISAKMP.Delete, sa: inout ISAKMPSA, _ context: inout Context) {
        switch ISAKMP.ProtocolID(rawValue: delete.protocolID) {
        case .isakmp:
            guard delete.spis.contains(sa.cookies) else {
                context.log(.warning, "DELETE from \(sa.remote) names an ISAKMP SA other than \(sa.id)")
                return
            }
            context.log(.notice, "\(sa.connection.name): peer \(sa.remote) deleted ISAKMP SA \(sa.id)")
            sas[sa.id] = sa
            sa.phase = .dead
            sa.deathReason = .deletedByPeer
            sas[sa.id] = sa
            // A reauthentication may be under way (strongSwan deletes the old ISAKMP SA after `over_time` even if the
            // new Main Mode is still running and keeps its IPsec SAs for the new one): hand them over if there is one.
            // The newest established ISAKMP SA with the peer inherits them, else one still in Main Mode.
            let candidates = sas.values.filter { $0.id != sa.id && !$0.isDead && $0.connection.name == sa.connection.name
                && $0.peer.address == sa.peer.address }
            if let heir = candidates.filter(\.isEstablished).max(by: { $0.serial < $1.serial }) ?? candidates.first {
                for (id, child) in children where child.info.ikeSA == sa.id {
                    context.log(.info, "IPsec SA \(id) moves from deleted ISAKMP SA \(sa.id) to \(heir.id)")
                    children[id]?.info.ikeSA = heir.id
                }
                recordSuccessor(of: sa.id, heir.id)
            } else {
                childrenDeleted(by: sa.id, reason: "ISAKMP SA deleted by peer", &context)
            }
        case .esp:
            for spi in delete.spis.compactMap(ProposalMapping.spiValue) {
                guard let (id, child) = children.first(where: { $0.value.info.outboundSPI == spi && $0.value.info.ikeSA == sa.id }) else {
                    context.log(.debug, "DELETE from \(sa.remote) for unknown ESP SPI \(String(spi, radix: 16))")
                    continue
                }
                children[id] = nil
                context.log(.notice, "\(sa.connection.name): peer deleted IPsec SA \(id) (out \(String(spi, radix: 16)))")
                context.actions.append(.cancelTimer(.rekeyChildSA(id)))
                context.actions.append(.cancelTimer(.expireChildSA(id)))
                context.actions.append(.childSADeleted(child.info, reason: "deleted by peer"))
            }
        case .ah, .ipcomp, nil:
            context.log(.debug, "DELETE for protocol \(delete.protocolID) from \(sa.remote) ignored")
        }
    }

    /// Before keys exist the peer can only tell us, in the clear, why it refused Main Mode; anyone can send that, so
    /// it ends nothing (RFC 7296 §2.21.1 reasoning, which IKEv1 needs all the more): we keep waiting for a valid
    /// answer, and the reason goes into the failure if none comes.
    mutating func plaintextInformationalReceived(header: ISAKMP.Header, body: [UInt8], from: Endpoint, sa: inout ISAKMPSA, _ context: inout Context) {
        guard !sa.isEstablished,
              let payloads = try? ISAKMP.decodePayloads(firstPayload: header.nextPayload, body, allowPadding: false) else {
            context.count(.unauthenticatedDropped)
            return
        }
        for case .notification(let notification) in payloads where notification.notifyType < Self.firstStatusNotifyType {
            let name = ISAKMP.NotifyType.name(notification.notifyType)
            unauthenticatedReply(sa: &sa, Self.mainModeFailureCode(notification.notifyType),
                                 "peer \(from) sent \(name) in the clear (unauthenticated)", &context)
            return
        }
        context.count(.unauthenticatedDropped)
    }

    static func mainModeFailureCode(_ notifyType: UInt16) -> NegotiationFailure.Code {
        switch notifyType {
        case ISAKMP.NotifyType.noProposalChosen: .noProposalChosen
        case ISAKMP.NotifyType.authenticationFailed, ISAKMP.NotifyType.invalidHashInformation: .authenticationFailed
        case ISAKMP.NotifyType.invalidIDInformation: .invalidIDInformation
        default: .malformed
        }
    }

    /// An unauthenticated message refused or broke a negotiation of ours: counted, logged, kept as a hint; the
    /// negotiation goes on until its retransmissions (or, as responder, its half-open lifetime) run out.
    func unauthenticatedReply(sa: inout ISAKMPSA, _ code: NegotiationFailure.Code, _ message: String, _ context: inout Context) {
        context.count(.unauthenticatedDropped)
        context.log(.warning, "\(sa.connection.name): \(message); still waiting for a valid answer")
        sa.lastUnauthenticatedReason = .init(code, message)
    }
}
