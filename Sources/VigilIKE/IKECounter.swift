/// The engines' counters, exported by the daemon as `vigil_ike_<rawValue>{version=...}`: the raw values are the
/// exported names and never change (dashboards and tests read them).
public enum IKECounter: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    // Both versions.
    /// A peer's AUTH (IKEv2 §2.15) or HASH_I / HASH_R (RFC 2409 §5.4) did not verify.
    case authenticationFailures
    /// Our requests sent again after their retransmission timer (RFC 7296 §2.1).
    case retransmissions
    /// Responder half-open SAs that expired / were evicted to make room for another from the same source.
    case halfOpenExpired
    case halfOpenEvicted
    /// The peer behind a NAT moved and its SAs followed (RFC 7296 §2.23, RFC 3947).
    case peerAddressChanges

    // IKEv2 (RFC 7296).
    case malformedDatagrams
    case unknownSPIs
    case unknownPeers
    /// An SK payload's integrity check failed (§3.14).
    case integrityFailures
    /// A retransmitted request of the peer's, answered with our cached response (§2.1).
    case retransmittedRequests
    /// A message ID outside the window (§2.3).
    case invalidMessageIDs
    /// COOKIE notifies sent (§2.6).
    case cookiesSent
    /// Our own messages sent back to us.
    case reflectedMessages
    /// Unprotected error notifies in answer to IKE_SA_INIT, ignored until the retransmissions run out (§2.21.1).
    case unauthenticatedNotifies
    /// IKE_SA_INIT answers that could not be used (§2.21.1).
    case unusableInitResponses
    /// IKE_SA_INIT requests we refused: spoofable, never a peer's failure.
    case unauthenticatedRefusals
    case addressChangesRefused
    case childlessIKESAsDeleted
    /// Our rekeys of a Child SA that failed so often that we stopped (IKEv2Tunables.maximumChildRekeyAttempts).
    case childRekeysGivenUp
    /// IKE SAs replaced by a rekey that the peer never deleted, forgotten.
    case replacedIKESAsForgotten
    /// Liveness checks sent again with the same message ID (§2.4).
    case livenessRetransmissions
    case unexpectedMessages
    case unexpectedResponses
    case unprotectedMessages
    /// Requests with a critical payload we do not support, refused (§2.5).
    case unsupportedCriticalPayloads

    // IKEv1 (RFC 2408, RFC 2409, RFC 3706).
    case malformedDropped
    case unknownSPIDropped
    case unsupportedExchangeDropped
    case unauthenticatedDropped
    case unauthenticatedRequestsRefused
    case unexpectedDropped
    case reflectedDropped
    case replayedDropped
    case unknownPeer
    case addressChangeIgnored
    /// R-U-THERE-ACKs (RFC 3706 §5) that echoed a sequence number we sent / did not.
    case dpdProbesAnswered
    case dpdAckMismatch
    /// R-U-THEREs whose sequence number was not above the last one (RFC 3706 §7).
    case dpdStaleSequence
    case fallbackRekeyHeld
    case halfOpenLimitDropped
    case halfOpenPerSourceDropped
    case mainModeResponseUnanswered
    case quickModeLimitDropped
    /// A responder's QM2 never confirmed by a QM3 (RFC 2409 §5.5).
    case quickMode3Missing
    case retransmittedRequestsAnswered

    public var description: String { rawValue }
}

extension Dictionary where Key == IKECounter, Value == UInt64 {
    /// The counters by their exported names.
    public var byExportedName: [String: UInt64] {
        Dictionary<String, UInt64>(uniqueKeysWithValues: map { ($0.key.rawValue, $0.value) })
    }
}
