import VigilAddressing
import VigilAlgorithms
import VigilCrypto

/// A Child SA's id in both IKE versions (an IPsec SA pair, IKEv1's Phase 2 SA): our inbound ESP SPI.
public struct ChildSAID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var inboundSPI: UInt32
    public init(_ inboundSPI: UInt32) { self.inboundSPI = inboundSPI }
    public static func < (a: ChildSAID, b: ChildSAID) -> Bool { a.inboundSPI < b.inboundSPI }
    public var description: String {
        let digits = String(inboundSPI, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}

/// The algorithms chosen for a Child SA (ESP): RFC 7296 §3.3.2 transforms, RFC 2407 §4.5 attributes.
public struct ChildAlgorithms: Hashable, Sendable, CustomStringConvertible {
    public var encryption: EncryptionAlgorithm
    public var integrity: IntegrityAlgorithm?
    /// The PFS group of the exchange that made it; none for IKEv2's first Child SA.
    public var dhGroup: DHGroup?

    public init(encryption: EncryptionAlgorithm, integrity: IntegrityAlgorithm?, dhGroup: DHGroup?) {
        self.encryption = encryption
        self.integrity = integrity
        self.dhGroup = dhGroup
    }

    public var description: String {
        ([encryption.rawValue] + (integrity.map { [$0.rawValue] } ?? []) + (dhGroup.map { [$0.keyword] } ?? [])).joined(separator: "-")
    }
}

/// Keys of one Child SA, per direction (RFC 7296 §2.17, RFC 2409 §5.5 KEYMAT). GCM keys include the 4-byte salt.
public struct ChildSAKeys: Sendable, Hashable {
    public var encryptionIn: SecureBytes
    public var encryptionOut: SecureBytes
    public var integrityIn: SecureBytes?
    public var integrityOut: SecureBytes?

    public init(encryptionIn: SecureBytes, encryptionOut: SecureBytes, integrityIn: SecureBytes?, integrityOut: SecureBytes?) {
        self.encryptionIn = encryptionIn
        self.encryptionOut = encryptionOut
        self.integrityIn = integrityIn
        self.integrityOut = integrityOut
    }
}

/// A negotiated Child SA (IKEv2 Child SA, IKEv1 Phase 2 IPsec SA pair) with its keys, as both engines hand it to the
/// daemon. `IKESA` names the IKE SA (ISAKMP SA) that negotiated it: each engine's own id, the daemon's session key.
public struct NegotiatedChildSA<IKESA: Hashable & Sendable>: Sendable, Hashable {
    public var ikeSA: IKESA
    /// The crypto-map entry, e.g. "SITE-A/10".
    public var connection: String
    public var inboundSPI: UInt32
    public var outboundSPI: UInt32
    public var encryption: EncryptionAlgorithm
    public var integrity: IntegrityAlgorithm?
    public var dhGroup: DHGroup?
    public var localTrafficSelectors: [IPPrefix]
    public var remoteTrafficSelectors: [IPPrefix]
    public var localEndpoint: Endpoint
    public var remoteEndpoint: Endpoint
    /// ESP in UDP 4500 (RFC 3948).
    public var udpEncapsulated: Bool
    public var establishedAt: Duration
    public var keys: ChildSAKeys
    /// We answered the exchange that created it (IKEv2 IKE_AUTH or CREATE_CHILD_SA as responder). After a rekey the
    /// initiator installs its new inbound SA only when our response arrives, so until it deletes the old Child SA
    /// (which it does once the new one is in) the responder keeps sending on the old outbound SA.
    public var negotiatedAsResponder: Bool
    /// A rekey we answered (IKEv2 CREATE_CHILD_SA as responder): the peer installs its new inbound SA only when our
    /// response arrives, so the new outbound SA goes in when the peer deletes the old Child SA (RFC 7296 §2.8: the
    /// rekey's initiator deletes the old one once the new is in), and until then traffic leaves on the old one.
    public var outboundAwaitsOldDeletion: Bool

    public init(
        ikeSA: IKESA, connection: String, inboundSPI: UInt32, outboundSPI: UInt32, algorithms: ChildAlgorithms,
        localTrafficSelectors: [IPPrefix], remoteTrafficSelectors: [IPPrefix], localEndpoint: Endpoint, remoteEndpoint: Endpoint,
        udpEncapsulated: Bool, establishedAt: Duration, keys: ChildSAKeys,
        negotiatedAsResponder: Bool = false, outboundAwaitsOldDeletion: Bool = false
    ) {
        self.ikeSA = ikeSA
        self.connection = connection
        self.inboundSPI = inboundSPI
        self.outboundSPI = outboundSPI
        self.encryption = algorithms.encryption
        self.integrity = algorithms.integrity
        self.dhGroup = algorithms.dhGroup
        self.localTrafficSelectors = localTrafficSelectors
        self.remoteTrafficSelectors = remoteTrafficSelectors
        self.localEndpoint = localEndpoint
        self.remoteEndpoint = remoteEndpoint
        self.udpEncapsulated = udpEncapsulated
        self.establishedAt = establishedAt
        self.keys = keys
        self.negotiatedAsResponder = negotiatedAsResponder
        self.outboundAwaitsOldDeletion = outboundAwaitsOldDeletion
    }

    public var id: ChildSAID { ChildSAID(inboundSPI) }

    public var algorithms: ChildAlgorithms {
        ChildAlgorithms(encryption: encryption, integrity: integrity, dhGroup: dhGroup)
    }

    /// The same Child SA with its IKE SA named in another vocabulary (an engine's id to the daemon's session key).
    public func withIKESA<Other>(_ name: (IKESA) -> Other) -> NegotiatedChildSA<Other> {
        NegotiatedChildSA<Other>(
            ikeSA: name(ikeSA), connection: connection, inboundSPI: inboundSPI, outboundSPI: outboundSPI, algorithms: algorithms,
            localTrafficSelectors: localTrafficSelectors, remoteTrafficSelectors: remoteTrafficSelectors,
            localEndpoint: localEndpoint, remoteEndpoint: remoteEndpoint, udpEncapsulated: udpEncapsulated,
            establishedAt: establishedAt, keys: keys,
            negotiatedAsResponder: negotiatedAsResponder, outboundAwaitsOldDeletion: outboundAwaitsOldDeletion)
    }
}
