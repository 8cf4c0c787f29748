/// Why a negotiation failed, in either IKE version, with a stable code a script or a metric label can act on.
public struct NegotiationFailure: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable, CaseIterable {
        /// NO_PROPOSAL_CHOSEN (RFC 7296 §3.10.1 / RFC 2408 §3.14.1), sent or received authenticated.
        case noProposalChosen
        case authenticationFailed
        /// IKEv2 TS_UNACCEPTABLE.
        case tsUnacceptable
        /// IKEv1 INVALID-ID-INFORMATION (Quick Mode identities not acceptable).
        case invalidIDInformation
        case invalidKEPayload
        /// The retransmission schedule ran out without a valid answer.
        case timeout
        case peerDeleted
        case unknownPeer
        case malformed
        case internalError
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
