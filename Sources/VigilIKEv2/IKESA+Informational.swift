import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// INFORMATIONAL exchanges (RFC 7296 §1.4): liveness checks (§2.4), DELETE of the IKE SA or its Child SAs, notifications.
extension IKESA {
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

    /// `.deleteIKESA`: INFORMATIONAL { D } and forget at once (the peer may be gone).
    mutating func deleteIKESA(context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
        if isEstablished {
            sendDelete(random: &random, effects: &effects)
        } else if withdrawn, let delete = outstanding {
            // Its DELETE is already out: once more, not awaited.
            transmit(delete.datagram, &effects)
        }
        close(reason: .local("deleted"), effects: &effects)
    }

    /// The peer's INFORMATIONAL request: an empty one (liveness), DELETEs, notifications.
    mutating func handleInformationalRequest(messageID: UInt32, _ inner: [IKEv2.Payload], random: inout some RandomNumberGenerator, effects: inout Effects) {
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
}
