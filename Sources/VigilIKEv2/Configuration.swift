import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE

extension IKEv2Endpoint {
    public struct Configuration: Sendable {
        /// One per crypto-map entry.
        public var connections: [ConnectionConfiguration]
        /// The default schedule; a connection or a peer may override it.
        public var retransmission: RetransmissionSchedule
        /// Responder half-open IKE SAs (IKE_SA_INIT answered, no IKE_AUTH) expire after this.
        public var halfOpenTimeout: Duration
        /// Half-open IKE SAs before a COOKIE is demanded (RFC 7296 §2.6).
        public var cookieThreshold: Int
        /// Interval of NAT keepalives when we are behind a NAT (RFC 3948 §4 suggests 20 s).
        public var natKeepaliveInterval: Duration
        /// Half-open IKE SAs one source address may hold. From there on that source must return a COOKIE (§2.6), and
        /// a request with a valid one replaces the source's oldest half-open SA, so one address cannot starve others
        /// and the table stays bounded (listed peer addresses x this).
        public var halfOpenLimitPerSource: Int
        /// The cookie secret is replaced this often; cookies made with the current or the previous one are accepted
        /// (§2.6).
        public var cookieSecretLifetime: Duration

        /// §2.6 leaves the numbers to us; strongSwan's defaults where it has one.
        public static let defaultHalfOpenTimeout: Duration = .seconds(30)
        public static let defaultCookieThreshold = 10
        public static let defaultHalfOpenLimitPerSource = 5
        public static let defaultCookieSecretLifetime: Duration = .seconds(120)
        public static let defaultNATKeepaliveInterval: Duration = .seconds(20)
        /// A shorter configured lifetime is raised to this, so the rotation timer can never spin.
        public static let minimumCookieSecretLifetime: Duration = .seconds(1)

        var effectiveCookieSecretLifetime: Duration { max(cookieSecretLifetime, Self.minimumCookieSecretLifetime) }

        public init(
            connections: [ConnectionConfiguration], retransmission: RetransmissionSchedule = .strongSwanDefault,
            halfOpenTimeout: Duration = Configuration.defaultHalfOpenTimeout, cookieThreshold: Int = Configuration.defaultCookieThreshold,
            natKeepaliveInterval: Duration = Configuration.defaultNATKeepaliveInterval,
            halfOpenLimitPerSource: Int = Configuration.defaultHalfOpenLimitPerSource,
            cookieSecretLifetime: Duration = Configuration.defaultCookieSecretLifetime
        ) {
            self.connections = connections
            self.retransmission = retransmission
            self.halfOpenTimeout = halfOpenTimeout
            self.cookieThreshold = cookieThreshold
            self.natKeepaliveInterval = natKeepaliveInterval
            self.halfOpenLimitPerSource = halfOpenLimitPerSource
            self.cookieSecretLifetime = cookieSecretLifetime
        }
    }

    public struct ConnectionConfiguration: Sendable {
        /// e.g. "SITE-A/10" (crypto map / sequence).
        public var name: String
        public var localAddress: IPAddress
        public var localIdentity: Identity
        /// Who may connect as responder, and whom we may initiate to.
        public var peers: [PeerConfiguration]
        public var ikeProposals: [IKEProposal]
        public var espProposals: [ESPProposal]
        /// PFS group for Child SA rekeys (CREATE_CHILD_SA carries KE); the first Child SA never has its own KE.
        public var pfsGroup: DHGroup?
        public var localTrafficSelectors: [IPPrefix]
        public var remoteTrafficSelectors: [IPPrefix]
        /// Rekey the IKE SA / Child SA after this (minus a random jitter of up to 10 %).
        public var ikeLifetime: Duration
        public var childLifetime: Duration
        /// Send a fake NAT_DETECTION_SOURCE_IP so ESP goes in UDP 4500 (what kernel-libipsec peers expect).
        public var forceUDPEncapsulation: Bool
        public var retransmission: RetransmissionSchedule?

        public init(
            name: String, localAddress: IPAddress, localIdentity: Identity, peers: [PeerConfiguration],
            ikeProposals: [IKEProposal], espProposals: [ESPProposal], pfsGroup: DHGroup? = nil,
            localTrafficSelectors: [IPPrefix], remoteTrafficSelectors: [IPPrefix],
            ikeLifetime: Duration = .seconds(14_400), childLifetime: Duration = .seconds(3_600),
            forceUDPEncapsulation: Bool = false, retransmission: RetransmissionSchedule? = nil
        ) {
            self.name = name
            self.localAddress = localAddress
            self.localIdentity = localIdentity
            self.peers = peers
            self.ikeProposals = ikeProposals
            self.espProposals = espProposals
            self.pfsGroup = pfsGroup
            self.localTrafficSelectors = localTrafficSelectors
            self.remoteTrafficSelectors = remoteTrafficSelectors
            self.ikeLifetime = ikeLifetime
            self.childLifetime = childLifetime
            self.forceUDPEncapsulation = forceUDPEncapsulation
            self.retransmission = retransmission
        }
    }

    public struct PeerConfiguration: Sendable {
        public var address: IPAddress
        /// The remote IKE ID expected.
        public var identity: Identity
        public var preSharedKey: SecureBytes
        /// Overrides the connection's schedule for this peer.
        public var retransmission: RetransmissionSchedule?

        public init(address: IPAddress, identity: Identity, preSharedKey: SecureBytes, retransmission: RetransmissionSchedule? = nil) {
            self.address = address
            self.identity = identity
            self.preSharedKey = preSharedKey
            self.retransmission = retransmission
        }
    }
}
