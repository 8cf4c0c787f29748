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

    /// One per crypto-map entry; IKEv2 has nothing of its own to add. The IKE SA and the Child SA are rekeyed after
    /// their lifetimes minus a random jitter of up to 10 %.
    public typealias ConnectionConfiguration = VigilIKE.ConnectionConfiguration
    public typealias PeerConfiguration = VigilIKE.PeerConfiguration
}
