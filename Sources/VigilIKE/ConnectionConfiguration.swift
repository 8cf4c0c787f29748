import VigilAddressing
import VigilAlgorithms
import VigilCrypto

/// A listed peer of a crypto-map entry (Cisco `set peer`) as an IKE engine of either version needs it.
public struct PeerConfiguration: Sendable {
    public var address: IPAddress
    /// The remote IKE ID (IDr / IDii payload) expected.
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

/// One crypto-map entry as an IKE engine of either version needs it: who, with what, for which traffic, how long.
/// What only one version has (IKEv1's rekey margin) the engine keeps beside it.
public struct ConnectionConfiguration: Sendable {
    /// e.g. "SITE-A/10" (crypto map / sequence).
    public var name: String
    public var localAddress: IPAddress
    public var localIdentity: Identity
    /// Who may connect as responder, and whom we may initiate to.
    public var peers: [PeerConfiguration]
    /// Phase 1 (IKE SA / ISAKMP SA) proposals.
    public var ikeProposals: [IKEProposal]
    /// Phase 2 (Child SA) proposals; a DH group inside one is ignored, PFS comes from `pfsGroup`.
    public var espProposals: [ESPProposal]
    /// PFS group for Phase 2: each Quick Mode's KE (IKEv1); a Child SA rekey's KE (IKEv2, whose first Child SA never
    /// has its own).
    public var pfsGroup: DHGroup?
    public var localTrafficSelectors: [IPPrefix]
    public var remoteTrafficSelectors: [IPPrefix]
    public var ikeLifetime: Duration
    public var childLifetime: Duration
    /// Send a false NAT detection hash for our own address so the peer believes we are behind NAT and both sides
    /// carry ESP in UDP 4500 (RFC 3948): what kernel-libipsec peers do on their side and expect.
    public var forceUDPEncapsulation: Bool
    /// Overrides the engine's default schedule for this connection; a peer may override it again.
    public var retransmission: RetransmissionSchedule?

    /// A Child SA lifetime when none is configured (Cisco's `security-association lifetime seconds 3600`).
    public static let defaultChildLifetime: Duration = .seconds(3_600)

    public init(
        name: String, localAddress: IPAddress, localIdentity: Identity, peers: [PeerConfiguration],
        ikeProposals: [IKEProposal], espProposals: [ESPProposal], pfsGroup: DHGroup? = nil,
        localTrafficSelectors: [IPPrefix], remoteTrafficSelectors: [IPPrefix],
        ikeLifetime: Duration, childLifetime: Duration = ConnectionConfiguration.defaultChildLifetime,
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

    /// The schedule for a request to `peer`: the peer's own, else the connection's, else the engine's default.
    public func retransmission(for peer: PeerConfiguration, default schedule: RetransmissionSchedule) -> RetransmissionSchedule {
        peer.retransmission ?? retransmission ?? schedule
    }
}
