/// How one IKE exchange ended, as the engine that ran it knows: counted by the engines and exported by the daemon as
/// `vigil_ike_exchanges_total{version,exchange,role,result}`. The raw values are the exported label values and never
/// change (dashboards and tests read them).
///
/// An exchange is a request and its response (RFC 7296 §1; RFC 2409 §5 counts a whole Main Mode or Quick Mode as
/// one). The initiator counts it when the response is handled (`ok` or `failed`) or when it stops waiting
/// (`timeout`: retransmissions exhausted, or the IKE SA abandoned as dead with the request outstanding); the
/// responder when it answers (`failed` when the answer is an error notify) or when it completes its part.
/// A COOKIE or INVALID_KE_PAYLOAD answer to IKE_SA_INIT restarts the exchange and is not an outcome.
public struct IKEExchangeOutcome: Hashable, Sendable, CustomStringConvertible {
    public enum Exchange: String, Hashable, Sendable, CaseIterable {
        // IKEv2 (RFC 7296 §1.2-1.4): the exchange types' names as the RFC writes them.
        case ikeSAInit = "IKE_SA_INIT"
        case ikeAuth = "IKE_AUTH"
        case createChildSA = "CREATE_CHILD_SA"
        case informational = "INFORMATIONAL"
        // IKEv1 (RFC 2409 §5, RFC 3706): Main Mode, Quick Mode, and the informational exchange's R-U-THERE.
        case mainMode = "main-mode"
        case quickMode = "quick-mode"
        case isakmpInformational = "informational"
    }

    public enum Role: String, Hashable, Sendable, CaseIterable {
        case initiator
        case responder
    }

    public enum Result: String, Hashable, Sendable, CaseIterable {
        case ok
        case failed
        case timeout
    }

    public var exchange: Exchange
    public var role: Role
    public var result: Result

    public init(_ exchange: Exchange, _ role: Role, _ result: Result) {
        self.exchange = exchange
        self.role = role
        self.result = result
    }

    public var description: String { "\(exchange.rawValue) \(role.rawValue) \(result.rawValue)" }
}

extension IKEExchangeOutcome.Role {
    public init(initiator: Bool) { self = initiator ? .initiator : .responder }
}
