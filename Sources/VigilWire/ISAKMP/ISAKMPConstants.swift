/// ISAKMP (RFC 2408) with the IPsec DOI (RFC 2407) and IKEv1 (RFC 2409): every type of the IKEv1 codec lives inside
/// this namespace so its names never collide with the IKEv2 codec.
public enum ISAKMP {}

extension ISAKMP {
    /// RFC 2408 §3.1: major version 1, minor version 0.
    public static let version: UInt8 = 0x10
    /// RFC 2408 §3.1: the fixed header is 28 octets.
    public static let headerLength = 28
    /// RFC 2408 §3.2: every payload starts with a 4-octet generic header.
    public static let genericHeaderLength = 4
    /// RFC 2407 §4.2: the IPsec Domain of Interpretation.
    public static let ipsecDOI: UInt32 = 1
    /// RFC 2407 §4.2: SIT_IDENTITY_ONLY.
    public static let situationIdentityOnly: UInt32 = 1
    /// Largest datagram we accept (RFC 2408 leaves it open; strongSwan's own limit is 10000).
    public static let maximumMessageLength = 10_000

    /// RFC 2408 §3.1 Next Payload values, RFC 3947 §3.2 NAT-D / §5.2 NAT-OA.
    public enum PayloadType: UInt8, Sendable, Hashable, CustomStringConvertible {
        case none = 0
        case securityAssociation = 1
        case proposal = 2
        case transform = 3
        case keyExchange = 4
        case identification = 5
        case certificate = 6
        case certificateRequest = 7
        case hash = 8
        case signature = 9
        case nonce = 10
        case notification = 11
        case delete = 12
        case vendorID = 13
        case natDiscovery = 20
        case natOriginalAddress = 21

        public var description: String {
            switch self {
            case .none: "NONE"
            case .securityAssociation: "SA"
            case .proposal: "P"
            case .transform: "T"
            case .keyExchange: "KE"
            case .identification: "ID"
            case .certificate: "CERT"
            case .certificateRequest: "CERTREQ"
            case .hash: "HASH"
            case .signature: "SIG"
            case .nonce: "No"
            case .notification: "N"
            case .delete: "D"
            case .vendorID: "V"
            case .natDiscovery: "NAT-D"
            case .natOriginalAddress: "NAT-OA"
            }
        }
    }

    /// RFC 2408 §3.1 Exchange Type; Quick Mode is RFC 2409 §5.5 (32).
    public enum ExchangeType: UInt8, Sendable, Hashable, CustomStringConvertible {
        case base = 1
        case identityProtection = 2   // Main Mode
        case authenticationOnly = 3
        case aggressive = 4
        case informational = 5
        case quickMode = 32

        public var description: String {
            switch self {
            case .base: "BASE"
            case .identityProtection: "ID_PROT"
            case .authenticationOnly: "AUTH_ONLY"
            case .aggressive: "AGGRESSIVE"
            case .informational: "INFORMATIONAL_V1"
            case .quickMode: "QUICK_MODE"
            }
        }
    }

    /// RFC 2408 §3.1 Flags.
    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let encryption = Flags(rawValue: 0x01)
        public static let commit = Flags(rawValue: 0x02)
        public static let authenticationOnly = Flags(rawValue: 0x04)
    }

    /// RFC 2408 §3.5 / RFC 2407 §4.4.1 Protocol IDs.
    public enum ProtocolID: UInt8, Sendable, Hashable {
        case isakmp = 1
        case ah = 2
        case esp = 3
        case ipcomp = 4
    }

    /// RFC 2408 §3.14.1 and RFC 3706 §5 notify message types used by Vigil.
    public enum NotifyType {
        public static let invalidPayloadType: UInt16 = 1
        public static let payloadMalformed: UInt16 = 16
        public static let noProposalChosen: UInt16 = 14
        public static let invalidIDInformation: UInt16 = 18
        public static let invalidHashInformation: UInt16 = 23
        public static let authenticationFailed: UInt16 = 24
        /// RFC 2407 §4.6.3.
        public static let responderLifetime: UInt16 = 24576
        public static let replayStatus: UInt16 = 24577
        public static let initialContact: UInt16 = 24578
        /// RFC 3706 §5.
        public static let rUThere: UInt16 = 36136
        public static let rUThereAck: UInt16 = 36137

        public static func name(_ type: UInt16) -> String {
            switch type {
            case invalidPayloadType: "INVALID_PAYLOAD_TYPE"
            case payloadMalformed: "PAYLOAD_MALFORMED"
            case noProposalChosen: "NO_PROPOSAL_CHOSEN"
            case invalidIDInformation: "INVALID_ID_INFORMATION"
            case invalidHashInformation: "INVALID_HASH_INFORMATION"
            case authenticationFailed: "AUTHENTICATION_FAILED"
            case responderLifetime: "RESPONDER_LIFETIME"
            case replayStatus: "REPLAY_STATUS"
            case initialContact: "INITIAL_CONTACT"
            case rUThere: "R_U_THERE"
            case rUThereAck: "R_U_THERE_ACK"
            default: "NOTIFY(\(type))"
            }
        }
    }

    /// Well-known vendor IDs.
    public enum VendorID {
        /// RFC 3706 §3: DPD.
        public static let dpd: [UInt8] = [0xAF, 0xCA, 0xD7, 0x13, 0x68, 0xA1, 0xF1, 0xC9, 0x6B, 0x86, 0x96, 0xFC, 0x77, 0x57, 0x01, 0x00]
        /// RFC 3947 §2: MD5("RFC 3947").
        public static let natTraversal: [UInt8] = [0x4A, 0x13, 0x1C, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5C, 0x57, 0x28, 0xF2, 0x0E, 0x95, 0x45, 0x2F]
    }

    /// RFC 2409 Appendix A: Phase 1 (ISAKMP SA) attribute classes.
    public enum Phase1Attribute {
        public static let encryptionAlgorithm: UInt16 = 1
        public static let hashAlgorithm: UInt16 = 2
        public static let authenticationMethod: UInt16 = 3
        public static let groupDescription: UInt16 = 4
        public static let lifeType: UInt16 = 11
        public static let lifeDuration: UInt16 = 12
        public static let keyLength: UInt16 = 14
        /// Encryption Algorithm value AES-CBC (RFC 3602 §5.1 registry entry).
        public static let aesCBC: UInt16 = 7
        /// Hash Algorithm values: SHA = 2, SHA2-256 = 4, SHA2-384 = 5, SHA2-512 = 6 (RFC 4868 §3).
        public static let sha1: UInt16 = 2
        public static let sha2_256: UInt16 = 4
        public static let sha2_384: UInt16 = 5
        public static let sha2_512: UInt16 = 6
        /// Authentication Method: pre-shared key.
        public static let preSharedKey: UInt16 = 1
        /// Life Type: seconds.
        public static let lifeTypeSeconds: UInt16 = 1
        /// RFC 2409 §5 / Appendix A: KEY_IKE transform ID.
        public static let keyIKE: UInt8 = 1
    }

    /// RFC 2407 §4.5: Phase 2 (IPsec SA) attribute classes.
    public enum Phase2Attribute {
        public static let lifeType: UInt16 = 1
        public static let lifeDuration: UInt16 = 2
        public static let groupDescription: UInt16 = 3
        public static let encapsulationMode: UInt16 = 4
        public static let authenticationAlgorithm: UInt16 = 5
        public static let keyLength: UInt16 = 6
        /// Encapsulation modes: tunnel 1, transport 2; RFC 3947 §5.1 UDP-Encapsulated-Tunnel 3, -Transport 4.
        public static let tunnel: UInt16 = 1
        public static let transport: UInt16 = 2
        public static let udpEncapsulatedTunnel: UInt16 = 3
        public static let udpEncapsulatedTransport: UInt16 = 4
        /// Authentication algorithm values: HMAC-SHA 2; HMAC-SHA2-256 5, -384 6, -512 7 (RFC 4868 §3).
        public static let hmacSHA1: UInt16 = 2
        public static let hmacSHA2_256: UInt16 = 5
        public static let hmacSHA2_384: UInt16 = 6
        public static let hmacSHA2_512: UInt16 = 7
        /// RFC 2407 §4.4.4: ESP_AES transform ID (RFC 3602).
        public static let espAES: UInt8 = 12
        /// Life type seconds.
        public static let lifeTypeSeconds: UInt16 = 1
    }

    /// RFC 2407 §4.6.2.1 identification types beyond those of `Identity`.
    public enum IDType {
        public static let ipv4Address: UInt8 = 1
        public static let fqdn: UInt8 = 2
        public static let userFQDN: UInt8 = 3
        public static let ipv4Subnet: UInt8 = 4
        public static let ipv6Address: UInt8 = 5
        public static let ipv6Subnet: UInt8 = 6
        public static let ipv4Range: UInt8 = 7
        public static let ipv6Range: UInt8 = 8
        public static let keyID: UInt8 = 11
    }
}
