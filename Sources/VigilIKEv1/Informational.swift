import VigilAddressing
import VigilCrypto
import VigilWire

/// Informational exchanges (RFC 2408 §4.8, RFC 2409 §5.7): E{ HASH(1), N/D } with
/// HASH(1) = prf(SKEYID_a, M-ID | N/D) and a fresh IV per message ID; RFC 3706 DPD rides on them.
extension IKEv1Endpoint {
    func sendInformational(_ rest: [ISAKMP.Payload], sa: ISAKMPSA, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard let keys = sa.keys, sa.isEstablished else { return }
        var messageID: UInt32 = 0
        while messageID == 0 { messageID = UInt32(truncatingIfNeeded: random.next()) }
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
        sendInformational([.notification(Self.dpdNotification(ISAKMP.NotifyType.rUThere, sa: sa, sequence: sequence))], sa: sa, &context, &random)
        sa.outstandingDPD.insert(sequence)
        sas[id] = sa
    }

    /// RFC 3706 §5: protocol ISAKMP, SPI = CKY-I | CKY-R, data = the 32-bit sequence number.
    static func dpdNotification(_ type: UInt16, sa: ISAKMPSA, sequence: UInt32) -> ISAKMP.Notification {
        ISAKMP.Notification(protocolID: .isakmp, notifyType: type, spi: sa.cookies, data: messageIDBytes(sequence))
    }

    mutating func deleteChildSA(_ id: IKEv1ChildSAID, reason: String, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard let child = children.removeValue(forKey: id) else { return }
        if let sa = sas[child.info.ikeSA] {
            context.log(.info, "sending DELETE for IPsec SA \(id) (out \(String(child.info.outboundSPI, radix: 16))) to \(sa.remote): \(reason)")
            sendInformational([.delete(ISAKMP.Delete(protocolID: .esp, spiSize: 4, spis: [ProposalMapping.spiBytes(child.info.inboundSPI)]))],
                              sa: sa, &context, &random)
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
        context.log(.info, "sending DELETE for ISAKMP SA \(id) to \(sa.remote)")
        sendInformational([.delete(ISAKMP.Delete(protocolID: .isakmp, spiSize: 16, spis: [sa.cookies]))], sa: sa, &context, &random)
        sa.phase = .dead
        sa.deathReason = "deleted locally"
        sas[id] = sa
    }

    mutating func informationalReceived(header: ISAKMP.Header, body: [UInt8], from: Endpoint, sa: inout ISAKMPSA,
                                        _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard header.flags.contains(.encryption) else {
            plaintextInformationalReceived(header: header, body: body, from: from, sa: &sa, &context)
            return
        }
        guard let keys = sa.keys else {
            context.count("malformedDropped")
            return
        }
        let payloads: [ISAKMP.Payload]
        do {
            let (plaintext, _) = try keys.decrypt(body, iv: keys.exchangeIV(messageID: header.messageID))
            payloads = try ISAKMP.decodePayloads(firstPayload: header.nextPayload, plaintext, allowPadding: true)
        } catch {
            if sa.awaitsMainMode6 {
                // strongSwan answers an MM5 it cannot verify with an encrypted error notify; under the wrong key it
                // reads as noise, which is the telling symptom.
                failMainMode(sa: &sa, .authenticationFailed, "peer answered MM5 with an informational that does not "
                             + "decrypt under our keys: pre-shared key mismatch", &context)
                return
            }
            context.count("malformedDropped")
            context.log(.warning, "dropped informational from \(from): \(error)")
            return
        }
        guard case .hash(let hash)? = payloads.first,
              constantTimeEquals(keys.prf(keys.skeyidA, Self.messageIDBytes(header.messageID) + Self.bytesAfterHash(payloads)), hash)
        else {
            context.count("authenticationFailures")
            context.log(.warning, "dropped informational from \(from): HASH(1) missing or wrong")
            return
        }
        context.log(.debug, "received INFORMATIONAL \(Self.payloadList(payloads)) from \(from)")
        context.actions.append(.authenticatedMessageReceived(sa.id))
        for payload in payloads.dropFirst() {
            switch payload {
            case .notification(let notification):
                notificationReceived(notification, sa: &sa, &context, &random)
            case .delete(let delete):
                deleteReceived(delete, sa: &sa, &context)
            case .hash, .securityAssociation, .keyExchange, .identification, .nonce, .vendorID, .natDiscovery, .natOriginalAddress, .other:
                context.log(.debug, "ignored \(payload.name) in an informational exchange from \(from)")
            }
        }
    }

    mutating func notificationReceived(_ notification: ISAKMP.Notification, sa: inout ISAKMPSA, _ context: inout Context,
                                       _ random: inout some RandomNumberGenerator) {
        switch notification.notifyType {
        case ISAKMP.NotifyType.rUThere, ISAKMP.NotifyType.rUThereAck:
            guard notification.data.count == 4 else {
                context.count("malformedDropped")
                context.log(.warning, "\(ISAKMP.NotifyType.name(notification.notifyType)) without a 32-bit sequence number")
                return
            }
            let sequence = notification.data.reduce(0) { $0 << 8 | UInt32($1) }
            if notification.notifyType == ISAKMP.NotifyType.rUThere {
                context.log(.info, "received R-U-THERE seq \(sequence) from \(sa.remote), sending R-U-THERE-ACK")
                context.count("dpdProbesAnswered")
                sendInformational([.notification(Self.dpdNotification(ISAKMP.NotifyType.rUThereAck, sa: sa, sequence: sequence))], sa: sa, &context, &random)
            } else if sa.outstandingDPD.remove(sequence) != nil {
                context.log(.info, "received R-U-THERE-ACK seq \(sequence) from \(sa.remote)")
                context.actions.append(.dpdAcknowledged(sa.id, sequence: sequence))
            } else {
                context.count("dpdAckMismatch")
                context.log(.warning, "R-U-THERE-ACK seq \(sequence) from \(sa.remote) echoes no R-U-THERE we sent")
            }
        case ISAKMP.NotifyType.initialContact:
            initialContactReceived(sa: sa, &context)
        default:
            let name = ISAKMP.NotifyType.name(notification.notifyType)
            context.log(.warning, "notify \(name) from \(sa.remote)")
            // An error notify about a Quick Mode we run ends it (strongSwan sends NO_PROPOSAL_CHOSEN or
            // INVALID_ID_INFORMATION this way).
            if notification.notifyType < 16384, !sa.quickModes.isEmpty {
                for (messageID, quickMode) in sa.quickModes where quickMode.step == .initiatorSentQM1 {
                    sa.quickModes[messageID] = nil
                    answered(messageID: messageID, sa: &sa, &context)
                    context.actions.append(.exchangeInFlight(sa.id, false))
                    let code: IKEv1NegotiationFailure.Code = notification.notifyType == ISAKMP.NotifyType.noProposalChosen ? .noProposalChosen
                        : notification.notifyType == ISAKMP.NotifyType.invalidIDInformation ? .invalidIDInformation : .malformed
                    context.actions.append(.negotiationFailed(connection: sa.connection.name, peer: sa.peer.address,
                                                              reason: .init(code, "peer refused Quick Mode: \(name)")))
                }
            }
        }
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
            sa.deathReason = "deleted by peer"
            sas[sa.id] = sa
            // A reauthentication may be under way (strongSwan deletes the old ISAKMP SA after `over_time` even if the
            // new Main Mode is still running and keeps its IPsec SAs for the new one): hand them over if there is one.
            if let heir = sas.values.first(where: { $0.id != sa.id && !$0.isDead && $0.connection.name == sa.connection.name
                && $0.peer.address == sa.peer.address }) {
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

    /// Before keys exist the peer can only tell us, in the clear, why it refused Main Mode.
    mutating func plaintextInformationalReceived(header: ISAKMP.Header, body: [UInt8], from: Endpoint, sa: inout ISAKMPSA, _ context: inout Context) {
        guard !sa.isEstablished,
              let payloads = try? ISAKMP.decodePayloads(firstPayload: header.nextPayload, body, allowPadding: false) else {
            context.count("unauthenticatedDropped")
            return
        }
        for case .notification(let notification) in payloads where notification.notifyType < 16384 {
            let name = ISAKMP.NotifyType.name(notification.notifyType)
            let code: IKEv1NegotiationFailure.Code = switch notification.notifyType {
            case ISAKMP.NotifyType.noProposalChosen: .noProposalChosen
            case ISAKMP.NotifyType.authenticationFailed, ISAKMP.NotifyType.invalidHashInformation: .authenticationFailed
            default: .malformed
            }
            failMainMode(sa: &sa, code, "peer \(from) refused Main Mode: \(name) (unauthenticated notify)", &context)
            return
        }
    }
}
