import VigilAddressing
import VigilAlgorithms
import VigilConfig
import VigilCrypto
import VigilIKE

/// IKE version of a crypto-map entry and of the engine that serves it.
public enum IKEVersionTag: String, Hashable, Sendable, CustomStringConvertible {
    case v1 = "v1"
    case v2 = "v2"
    public var description: String { rawValue }
}

/// One IKE SA (Phase 1) as the daemon names it: the engine's version and our SPI (cookie) for it.
public struct SessionKey: Hashable, Sendable, CustomStringConvertible {
    public var version: IKEVersionTag
    public var spi: UInt64
    public var description: String { "\(version)/\(hex(spi))" }
}

/// A negotiated Child SA (Phase 2) of either IKE version, with its keys, its IKE SA named by the daemon's session key.
public typealias NegotiatedChild = NegotiatedChildSA<SessionKey>

/// A read-only view of an IKE SA for status.
public struct SessionView: Sendable {
    public var key: SessionKey
    public var connection: String
    public var peer: IPAddress
    public var state: String
    public var localSPI: UInt64
    public var remoteSPI: UInt64
    public var algorithms: String
    public var establishedAt: Duration?
    /// When the engine's IKE SA rekey timer is due (nil while none is scheduled).
    public var rekeyAt: Duration?
}

/// What an IKE engine tells the daemon, in one vocabulary for IKEv1 and IKEv2.
public enum EngineOutput: Sendable {
    /// Send IKE bytes; `.send` on port 4500 gets the non-ESP marker from the daemon.
    case send(bytes: [UInt8], from: Endpoint, to: Endpoint)
    /// Send raw bytes as they are (NAT keepalive 0xFF).
    case sendRaw(bytes: [UInt8], from: Endpoint, to: Endpoint)
    case ikeUp(SessionKey, connection: String, peer: IPAddress, detail: String, peerSupportsDPD: Bool)
    case childUp(NegotiatedChild)
    case childRekeyed(oldInboundSPI: UInt32, NegotiatedChild)
    case childDown(connection: String, inboundSPI: UInt32, reason: String)
    case ikeDown(SessionKey, connection: String, peer: IPAddress, reason: String, byPeer: Bool)
    case ikeRekeyed(old: SessionKey, new: SessionKey)
    /// Any authenticated inbound message (RFC 7296 §2.4: proof of liveness).
    case proofOfLife(SessionKey)
    /// RFC 7296 §2.23: an authenticated, fresh message showed the peer (behind a NAT) at a new address or port.
    case peerMoved(SessionKey, old: Endpoint, new: Endpoint)
    /// A liveness check (IKEv2) or R-U-THERE-ACK (IKEv1, with its echoed sequence) came back.
    case probeAnswered(SessionKey, sequence: UInt32?)
    case exchangeInFlight(SessionKey, Bool)
    /// Retransmissions of a request ran out.
    case unreachable(SessionKey)
    case negotiationFailed(connection: String, peer: IPAddress, NegotiationFailure)
    case log(LogLevel, String)
}


/// What the daemon asks of an IKE engine. Each driver owns its engine (a pure value) and the engine's timers; it
/// hands everything the engine returns to `output`, on the event loop thread.
public protocol IKEEngineDriver: AnyObject {
    var version: IKEVersionTag { get }
    var output: (EngineOutput) -> Void { get set }

    func initiate(connection: String, peer: IPAddress)
    /// A DPD probe: IKEv2 sends (or retransmits) an empty INFORMATIONAL; IKEv1 an R-U-THERE with `sequence`.
    func probe(_ session: SessionKey, sequence: UInt32)
    func delete(_ session: SessionKey)
    /// Forget silently (the peer is dead): nothing is sent.
    func abandon(_ session: SessionKey)
    func received(_ bytes: [UInt8], from: Endpoint, to: Endpoint)
    /// Replace a connection's peers (address, identity, key) after a run-time peer-list update.
    func updatePeers(connection: String, peers: [EnginePeer])
    /// A reload added an entry or changed it (a connection of the same name is replaced): new negotiations and
    /// responders use it.
    func addConnection(map: String, entry: CryptoMapEntry, global: GlobalSettings)
    /// A reload removed an entry: nothing new is negotiated or answered for it (its SAs are deleted first).
    func removeConnection(_ name: String)

    var sessions: [SessionView] { get }
    var counters: [String: UInt64] { get }
    /// The exchanges that ended, by type, role and result (`vigil_ike_exchanges_total`).
    var exchanges: [IKEExchangeOutcome: UInt64] { get }
    /// When the engine's rekey timer of each Child SA is due (absent: none scheduled, e.g. an IKEv1 responder's).
    var childRekeyAt: [ChildSAID: Duration] { get }
}

/// A peer as the engines need it.
public typealias EnginePeer = PeerConfiguration

extension SecureBytes {
    /// A configured key, already in wiped storage: shared, not copied.
    init(_ secret: Secret) {
        self = secret.secureBytes
    }
}
