import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE

/// Our ISAKMP SA's identity: our own cookie (initiator cookie when we initiated, responder cookie otherwise).
public struct IKEv1SAID: Hashable, Sendable, CustomStringConvertible {
    public var cookie: UInt64
    public init(_ cookie: UInt64) { self.cookie = cookie }
    public var description: String { String(cookie, radix: 16).leftPadded(to: 16) }
}

extension IKEv1Endpoint {
    public struct Configuration: Sendable {
        /// A responder's half-open ISAKMP SA (Main Mode not finished) lives this long by default.
        public static let defaultHalfOpenTimeout: Duration = .seconds(30)
        /// Responder half-open ISAKMP SAs in all, by default.
        public static let defaultMaximumHalfOpen = 256
        /// Responder half-open ISAKMP SAs per source address, by default: a flood of MM1s spoofed from one listed
        /// address then evicts only that address's own oldest half-open SAs, never another peer's.
        public static let defaultMaximumHalfOpenPerSource = 8

        public var connections: [ConnectionConfiguration]
        public var retransmission: RetransmissionSchedule
        /// Responder half-open ISAKMP SAs (Main Mode not finished) expire after this.
        public var halfOpenTimeout: Duration
        /// At most this many responder half-open ISAKMP SAs; further MM1s are dropped (IKEv1 has no cookie
        /// challenge, so this bounds the state and Diffie-Hellman work a flood can cause).
        public var maximumHalfOpen: Int
        /// At most this many of them from one source address; a further MM1 from it evicts its own oldest half-open
        /// SA that has not shown it receives at that address yet (still at MM2), or is dropped.
        public var maximumHalfOpenPerSource: Int

        public init(connections: [ConnectionConfiguration], retransmission: RetransmissionSchedule = .strongSwanDefault,
                    halfOpenTimeout: Duration = Configuration.defaultHalfOpenTimeout,
                    maximumHalfOpen: Int = Configuration.defaultMaximumHalfOpen,
                    maximumHalfOpenPerSource: Int = Configuration.defaultMaximumHalfOpenPerSource) {
            self.connections = connections
            self.retransmission = retransmission
            self.halfOpenTimeout = halfOpenTimeout
            self.maximumHalfOpen = maximumHalfOpen
            self.maximumHalfOpenPerSource = maximumHalfOpenPerSource
        }
    }

    /// One crypto-map entry: what both IKE versions configure, and IKEv1's own rekey margin.
    @dynamicMemberLookup
    public struct ConnectionConfiguration: Sendable {
        /// IKEv1 has no rekey jitter of its own: we rekey this long before a lifetime ends (the peer may rekey first).
        public static let defaultRekeyMargin: Duration = .seconds(60)

        public var connection: VigilIKE.ConnectionConfiguration
        /// Rekey this long before a lifetime ends (we initiate the rekey; the peer may rekey first).
        public var rekeyMargin: Duration

        public init(_ connection: VigilIKE.ConnectionConfiguration, rekeyMargin: Duration = ConnectionConfiguration.defaultRekeyMargin) {
            self.connection = connection
            self.rekeyMargin = rekeyMargin
        }

        public subscript<Value>(dynamicMember path: WritableKeyPath<VigilIKE.ConnectionConfiguration, Value>) -> Value {
            get { connection[keyPath: path] }
            set { connection[keyPath: path] = newValue }
        }
    }

    public typealias PeerConfiguration = VigilIKE.PeerConfiguration
}

public enum IKEv1TimerID: Hashable, Sendable {
    /// Retransmit our request of the exchange with this message ID (0: Main Mode).
    case retransmit(IKEv1SAID, messageID: UInt32)
    /// A responder's half-open ISAKMP SA expires.
    case halfOpenExpired(IKEv1SAID)
    case rekeyIKESA(IKEv1SAID)
    case expireIKESA(IKEv1SAID)
    case rekeyChildSA(ChildSAID)
    case expireChildSA(ChildSAID)
}

public enum IKEv1Event: Sendable {
    /// Marker-free ISAKMP bytes; `to.port` tells 500 or 4500.
    case datagramReceived(bytes: [UInt8], from: Endpoint, to: Endpoint)
    case timerFired(IKEv1TimerID)
    /// Main Mode, then Quick Mode for the connection's proxy identities.
    case initiate(connection: String, peer: IPAddress)
    /// RFC 3706: send a fresh R-U-THERE with this sequence number (the dead peer detector chooses it).
    case sendDPDProbe(IKEv1SAID, sequence: UInt32)
    case deleteChildSA(ChildSAID)
    case deleteIKESA(IKEv1SAID)
    /// Forget silently (dead peer): no message, Child SAs reported deleted.
    case abandonIKESA(IKEv1SAID)
    case rekeyChildSA(ChildSAID)
    case rekeyIKESA(IKEv1SAID)
}


public enum IKEv1Action: Sendable {
    /// The runtime prepends the non-ESP marker on port 4500.
    case send(bytes: [UInt8], from: Endpoint, to: Endpoint)
    case scheduleTimer(IKEv1TimerID, at: Duration)
    case cancelTimer(IKEv1TimerID)
    case ikeSAEstablished(IKEv1SAInfo)
    case childSAEstablished(IKEv1ChildSA)
    case childSARekeyed(old: ChildSAID, new: IKEv1ChildSA)
    case childSADeleted(IKEv1ChildSA, reason: String)
    case ikeSADeleted(IKEv1SAInfo, reason: IKESAEnd)
    /// Proof of liveness: an authenticated message from the peer that Vigil has not seen before (a Quick Mode
    /// message, a DELETE or notify with a fresh message ID, an R-U-THERE whose sequence number is above the last
    /// one). Never our own message reflected back, never a replay.
    case authenticatedMessageReceived(IKEv1SAID)
    /// An R-U-THERE-ACK echoing a sequence number we sent (RFC 3706 §5).
    case dpdAcknowledged(IKEv1SAID, sequence: UInt32)
    /// A Phase 1 rekey started / finished: the detector must not read its silence as death. (Quick Modes are not
    /// reported: R-U-THEREs go out beside them.)
    case exchangeInFlight(IKEv1SAID, Bool)
    /// Retransmissions of one of our own requests exhausted (never a responder's unconfirmed QM2).
    case peerUnreachable(IKEv1SAID)
    /// A peer behind NAT (NAT-D) sent an authenticated, fresh message from a new address or port: the ISAKMP SA and
    /// its IPsec SAs now use `new`. The runtime moves the kernel SAs and policies to it as a planned change.
    case peerAddressChanged(IKEv1SAID, old: Endpoint, new: Endpoint)
    case negotiationFailed(connection: String, peer: IPAddress, reason: NegotiationFailure)
    /// Operator log in the spirit of `debug crypto isakmp`.
    case log(LogLevel, String)
}

public struct IKEv1SAInfo: Sendable, Hashable {
    public enum State: String, Sendable, Hashable { case mainMode, established, deleting }
    public var id: IKEv1SAID
    public var connection: String
    public var localEndpoint: Endpoint
    public var remoteEndpoint: Endpoint
    public var localIdentity: Identity
    public var remoteIdentity: Identity
    public var initiatorCookie: UInt64
    public var responderCookie: UInt64
    public var isInitiator: Bool
    public var state: State
    public var proposal: IKEProposal?
    public var establishedAt: Duration?
    /// When its rekey timer (`IKEv1TimerID.rekeyIKESA`) is due, as last scheduled; nil while none is.
    public var rekeyAt: Duration?
    /// The peer advertised RFC 3706 DPD in Main Mode: only then may it be probed.
    public var peerSupportsDPD: Bool
    public var udpEncapsulated: Bool
    /// We are behind NAT (or pretend to be, with forced encapsulation): the runtime should send RFC 3948 NAT
    /// keepalives (a single 0xFF byte, no non-ESP marker) from 4500 to the peer every 20 s or so.
    public var localBehindNAT: Bool
}

/// An IPsec SA pair as Quick Mode negotiated it, its ISAKMP SA named by our cookie.
public typealias IKEv1ChildSA = NegotiatedChildSA<IKEv1SAID>

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
