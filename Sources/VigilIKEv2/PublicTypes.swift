import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// An IKE SA's id: our own SPI for it (initiator SPI if we initiated, responder SPI otherwise).
public struct IKESAID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var spi: UInt64
    public init(_ spi: UInt64) { self.spi = spi }
    public static func < (a: IKESAID, b: IKESAID) -> Bool { a.spi < b.spi }
    public var description: String { hex64(spi) }
}

/// The timers the engine asks the runtime to run; each fires back as `.timerFired`.
public enum IKEv2TimerID: Hashable, Sendable {
    /// Our outstanding request with this message ID is due for retransmission.
    case retransmit(IKESAID, messageID: UInt32)
    /// A responder half-open IKE SA (IKE_SA_INIT answered, no IKE_AUTH yet) expires.
    case halfOpenExpiry(IKESAID)
    /// Time to rekey the IKE SA / the Child SA.
    case rekeyIKESA(IKESAID)
    case rekeyChildSA(ChildSAID)
    /// Time to send a NAT keepalive from behind a NAT (RFC 3948 §4).
    case natKeepalive(IKESAID)
    /// An IKE SA replaced by a rekey that the peer has not deleted yet is forgotten.
    case expireReplacedIKESA(IKESAID)
    /// Time to replace the secret behind stateless cookies (RFC 7296 §2.6); the previous one stays valid until the
    /// next rotation.
    case rotateCookieSecret
}

/// The algorithms chosen for an IKE SA.
public struct IKEAlgorithms: Hashable, Sendable, CustomStringConvertible {
    public var encryption: EncryptionAlgorithm
    public var integrity: IntegrityAlgorithm?
    public var prf: PseudorandomFunction
    public var dhGroup: DHGroup

    public var description: String {
        ([encryption.rawValue] + (integrity.map { [$0.rawValue] } ?? []) + [prf.rawValue, dhGroup.keyword]).joined(separator: "-")
    }
}

/// A read-only view of one IKE SA.
public struct IKESAInfo: Sendable, Hashable {
    public enum State: String, Hashable, Sendable {
        case connecting      // IKE_SA_INIT / IKE_AUTH in progress
        case established
        case rekeying        // an IKE SA rekey in progress
        case deleting
    }

    public var id: IKESAID
    public var connection: String
    public var localEndpoint: Endpoint
    public var remoteEndpoint: Endpoint
    public var localIdentity: Identity
    public var remoteIdentity: Identity?
    public var initiatorSPI: UInt64
    public var responderSPI: UInt64
    public var isInitiator: Bool
    public var state: State
    public var proposal: IKEAlgorithms?
    public var establishedAt: Duration?
    /// When its rekey timer (`IKEv2TimerID.rekeyIKESA`) is due, as last scheduled; nil while none is (not yet
    /// established, a rekey in flight, replaced).
    public var rekeyAt: Duration?
    /// NAT detected on our side / the peer's side (or faked to force UDP encapsulation).
    public var localBehindNAT: Bool
    public var remoteBehindNAT: Bool
}

/// A Child SA as IKEv2 negotiated it, its IKE SA named by our SPI.
public typealias IKEv2ChildSA = NegotiatedChildSA<IKESAID>

/// A read-only view of one Child SA: what was negotiated, and where its rekey stands.
@dynamicMemberLookup
public struct ChildSAStatus: Sendable, Hashable {
    public enum State: String, Hashable, Sendable {
        case installed
        case rekeying    // our CREATE_CHILD_SA for it is in flight
        case rekeyed     // replaced; waits for its DELETE
        case deleting
    }

    public var childSA: IKEv2ChildSA
    public var state: State

    public subscript<Value>(dynamicMember path: KeyPath<IKEv2ChildSA, Value>) -> Value { childSA[keyPath: path] }
}

public enum IKEv2Event: Sendable {
    /// Marker-free IKE bytes; `to.port` tells 500 or 4500.
    case datagramReceived(bytes: [UInt8], from: Endpoint, to: Endpoint)
    case timerFired(IKEv2TimerID)
    /// Phase 1 and the first Child SA (IKE_SA_INIT + IKE_AUTH) of a connection to one of its peers.
    case initiate(connection: String, peer: IPAddress)
    /// An empty INFORMATIONAL; if our previous liveness request is still unanswered, it is retransmitted (same
    /// message ID, same bytes). The dead peer detector drives these; the engine never retransmits them itself.
    case sendLivenessCheck(IKESAID)
    case deleteChildSA(ChildSAID)
    case deleteIKESA(IKESAID)
    /// Forget silently (dead peer): nothing is sent; its Child SAs are reported deleted.
    case abandonIKESA(IKESAID)
    case rekeyChildSA(ChildSAID)
    case rekeyIKESA(IKESAID)
}

public enum IKEv2Action: Sendable {
    /// The runtime prepends the non-ESP marker on port 4500.
    case send(bytes: [UInt8], from: Endpoint, to: Endpoint)
    /// A NAT keepalive (RFC 3948 §2.3): the single octet 0xFF, sent as is (no non-ESP marker) from port 4500.
    case sendNATKeepalive(from: Endpoint, to: Endpoint)
    case scheduleTimer(IKEv2TimerID, at: Duration)
    case cancelTimer(IKEv2TimerID)
    case ikeSAEstablished(IKESAInfo)
    case childSAEstablished(IKEv2ChildSA)
    case childSARekeyed(old: ChildSAID, new: IKEv2ChildSA)
    case childSADeleted(IKEv2ChildSA, reason: String)
    case ikeSADeleted(IKESAInfo, reason: IKESAEnd)
    /// The IKE SA was rekeyed (§2.18): its Child SAs now belong to `new`; the old id is gone without an
    /// `ikeSADeleted` (this is not a failure).
    case ikeSARekeyed(old: IKESAID, new: IKESAInfo)
    /// An authenticated, fresh inbound message (a response to our outstanding request, or the peer's next request;
    /// never a retransmitted old request nor a reflection of our own): proof of liveness.
    case authenticatedMessageReceived(IKESAID)
    /// The peer behind a NAT moved (RFC 7296 §2.23): IKE now goes to `new`; the SA's Child SAs (ESP in UDP) must be
    /// moved from `old` to `new` as a planned change. Child SA infos handed out from now on carry `new`.
    case peerAddressChanged(IKESAID, old: Endpoint, new: Endpoint)
    case livenessCheckAnswered(IKESAID)
    /// A non-liveness exchange we initiated started (true) or finished (false).
    case exchangeInFlight(IKESAID, Bool)
    /// Retransmissions exhausted.
    case peerUnreachable(IKESAID)
    case negotiationFailed(connection: String, peer: IPAddress, reason: NegotiationFailure)
    case log(LogLevel, String)
}

func hex64(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}

func hex32(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
}
