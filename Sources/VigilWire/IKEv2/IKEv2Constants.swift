/// The IKEv2 codec (RFC 7296). Every type lives inside `IKEv2` so names never collide with the ISAKMP codec.
public enum IKEv2 {}

extension IKEv2 {
    /// Numbers the RFC fixes, with the section that fixes them. Implementation tunables live in VigilIKEv2.
    public enum Spec {
        /// §3.1: the fixed IKE header is 28 octets.
        public static let headerLength = 28
        /// §3.2: every payload starts with a 4-octet generic payload header.
        public static let genericPayloadHeaderLength = 4
        /// §3.1: Major Version 2, Minor Version 0.
        public static let version: UInt8 = 0x20
        /// §3.3.1: an IKE SPI is 8 octets; an ESP SPI is 4.
        public static let ikeSPISize = 8
        public static let espSPISize = 4
        /// §3.3.5: TV-format attributes have the high bit of the type set.
        public static let attributeFormatTV: UInt16 = 0x8000
        /// §3.3.5: Key Length attribute type.
        public static let keyLengthAttribute: UInt16 = 14
        /// §2.10: nonces are at least 16 and at most 256 octets.
        public static let nonceLengths = 16...256
        /// §3.2: the Critical bit of the generic payload header.
        public static let criticalFlag: UInt8 = 0x80
        /// §3.3.1 Last Substruc: 0 last, 2 more proposals; §3.3.2: 0 last, 3 more transforms.
        public static let lastSubstructure: UInt8 = 0
        public static let moreProposals: UInt8 = 2
        public static let moreTransforms: UInt8 = 3
        /// A datagram larger than this is refused before parsing (a UDP datagram cannot carry more).
        public static let maximumMessageLength = 65_535
    }

    /// §3.1 Exchange Type.
    public enum ExchangeType: UInt8, Hashable, Sendable, CustomStringConvertible {
        case ikeSAInit = 34
        case ikeAuth = 35
        case createChildSA = 36
        case informational = 37

        public var description: String {
            switch self {
            case .ikeSAInit: "IKE_SA_INIT"
            case .ikeAuth: "IKE_AUTH"
            case .createChildSA: "CREATE_CHILD_SA"
            case .informational: "INFORMATIONAL"
            }
        }
    }

    /// §3.2 Payload Type values.
    public enum PayloadType: UInt8, Hashable, Sendable, CustomStringConvertible {
        case none = 0
        case securityAssociation = 33
        case keyExchange = 34
        case identificationInitiator = 35
        case identificationResponder = 36
        case certificate = 37
        case certificateRequest = 38
        case authentication = 39
        case nonce = 40
        case notify = 41
        case delete = 42
        case vendorID = 43
        case trafficSelectorInitiator = 44
        case trafficSelectorResponder = 45
        case encrypted = 46
        case configuration = 47
        case eap = 48

        /// The short names used in RFC 7296 message diagrams and in `debug crypto` logs.
        public var description: String {
            switch self {
            case .none: "NONE"
            case .securityAssociation: "SA"
            case .keyExchange: "KE"
            case .identificationInitiator: "IDi"
            case .identificationResponder: "IDr"
            case .certificate: "CERT"
            case .certificateRequest: "CERTREQ"
            case .authentication: "AUTH"
            case .nonce: "N(nonce)"
            case .notify: "N"
            case .delete: "D"
            case .vendorID: "V"
            case .trafficSelectorInitiator: "TSi"
            case .trafficSelectorResponder: "TSr"
            case .encrypted: "SK"
            case .configuration: "CP"
            case .eap: "EAP"
            }
        }
    }

    /// §3.3.1 Protocol ID.
    public enum ProtocolID: UInt8, Hashable, Sendable, CustomStringConvertible {
        case none = 0
        case ike = 1
        case ah = 2
        case esp = 3

        public var description: String {
            switch self {
            case .none: "none"
            case .ike: "IKE"
            case .ah: "AH"
            case .esp: "ESP"
            }
        }
    }

    /// §3.3.2 Transform Type.
    public enum TransformType: UInt8, Hashable, Sendable {
        case encryption = 1
        case pseudorandomFunction = 2
        case integrity = 3
        case keyExchange = 4
        case extendedSequenceNumbers = 5
    }

    /// §3.8 Auth Method.
    public enum AuthMethod: UInt8, Hashable, Sendable {
        case rsaSignature = 1
        case sharedKeyMIC = 2
        case dssSignature = 3
        case digitalSignature = 14
    }

    /// §3.13.1 TS Type.
    public enum TrafficSelectorType: UInt8, Hashable, Sendable {
        case ipv4AddressRange = 7
        case ipv6AddressRange = 8
    }

    /// §3.10.1 Notify Message Types (error types below 16384, status types above).
    public struct NotifyType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        public static let unsupportedCriticalPayload = NotifyType(rawValue: 1)
        public static let invalidIKESPI = NotifyType(rawValue: 4)
        public static let invalidMajorVersion = NotifyType(rawValue: 5)
        public static let invalidSyntax = NotifyType(rawValue: 7)
        public static let invalidMessageID = NotifyType(rawValue: 9)
        public static let invalidSPI = NotifyType(rawValue: 11)
        public static let noProposalChosen = NotifyType(rawValue: 14)
        public static let invalidKEPayload = NotifyType(rawValue: 17)
        public static let authenticationFailed = NotifyType(rawValue: 24)
        public static let singlePairRequired = NotifyType(rawValue: 34)
        public static let noAdditionalSAs = NotifyType(rawValue: 35)
        public static let internalAddressFailure = NotifyType(rawValue: 36)
        public static let failedCPRequired = NotifyType(rawValue: 37)
        public static let tsUnacceptable = NotifyType(rawValue: 38)
        public static let invalidSelectors = NotifyType(rawValue: 39)
        public static let temporaryFailure = NotifyType(rawValue: 43)
        public static let childSANotFound = NotifyType(rawValue: 44)
        public static let initialContact = NotifyType(rawValue: 16384)
        public static let setWindowSize = NotifyType(rawValue: 16385)
        public static let additionalTSPossible = NotifyType(rawValue: 16386)
        public static let ipcompSupported = NotifyType(rawValue: 16387)
        public static let natDetectionSourceIP = NotifyType(rawValue: 16388)
        public static let natDetectionDestinationIP = NotifyType(rawValue: 16389)
        public static let cookie = NotifyType(rawValue: 16390)
        public static let useTransportMode = NotifyType(rawValue: 16391)
        public static let httpCertLookupSupported = NotifyType(rawValue: 16392)
        public static let rekeySA = NotifyType(rawValue: 16393)
        public static let espTFCPaddingNotSupported = NotifyType(rawValue: 16394)
        public static let nonFirstFragmentsAlso = NotifyType(rawValue: 16395)
        /// RFC 7383 §2.5, RFC 4555 §4.2.1, RFC 7427 §4, RFC 8229... (status types peers commonly send).
        public static let mobikeSupported = NotifyType(rawValue: 16396)
        public static let multipleAuthSupported = NotifyType(rawValue: 16404)
        public static let signatureHashAlgorithms = NotifyType(rawValue: 16431)
        public static let fragmentationSupported = NotifyType(rawValue: 16430)
        public static let redirectSupported = NotifyType(rawValue: 16406)

        /// §3.10.1: types below 16384 report errors.
        public var isError: Bool { rawValue < 16384 }

        public var description: String {
            switch self {
            case .unsupportedCriticalPayload: "UNSUPPORTED_CRITICAL_PAYLOAD"
            case .invalidIKESPI: "INVALID_IKE_SPI"
            case .invalidMajorVersion: "INVALID_MAJOR_VERSION"
            case .invalidSyntax: "INVALID_SYNTAX"
            case .invalidMessageID: "INVALID_MESSAGE_ID"
            case .invalidSPI: "INVALID_SPI"
            case .noProposalChosen: "NO_PROPOSAL_CHOSEN"
            case .invalidKEPayload: "INVALID_KE_PAYLOAD"
            case .authenticationFailed: "AUTHENTICATION_FAILED"
            case .singlePairRequired: "SINGLE_PAIR_REQUIRED"
            case .noAdditionalSAs: "NO_ADDITIONAL_SAS"
            case .internalAddressFailure: "INTERNAL_ADDRESS_FAILURE"
            case .failedCPRequired: "FAILED_CP_REQUIRED"
            case .tsUnacceptable: "TS_UNACCEPTABLE"
            case .invalidSelectors: "INVALID_SELECTORS"
            case .temporaryFailure: "TEMPORARY_FAILURE"
            case .childSANotFound: "CHILD_SA_NOT_FOUND"
            case .initialContact: "INITIAL_CONTACT"
            case .setWindowSize: "SET_WINDOW_SIZE"
            case .additionalTSPossible: "ADDITIONAL_TS_POSSIBLE"
            case .ipcompSupported: "IPCOMP_SUPPORTED"
            case .natDetectionSourceIP: "NAT_DETECTION_SOURCE_IP"
            case .natDetectionDestinationIP: "NAT_DETECTION_DESTINATION_IP"
            case .cookie: "COOKIE"
            case .useTransportMode: "USE_TRANSPORT_MODE"
            case .httpCertLookupSupported: "HTTP_CERT_LOOKUP_SUPPORTED"
            case .rekeySA: "REKEY_SA"
            case .espTFCPaddingNotSupported: "ESP_TFC_PADDING_NOT_SUPPORTED"
            case .nonFirstFragmentsAlso: "NON_FIRST_FRAGMENTS_ALSO"
            case .mobikeSupported: "MOBIKE_SUPPORTED"
            case .multipleAuthSupported: "MULTIPLE_AUTH_SUPPORTED"
            case .signatureHashAlgorithms: "SIGNATURE_HASH_ALGORITHMS"
            case .fragmentationSupported: "FRAGMENTATION_SUPPORTED"
            case .redirectSupported: "REDIRECT_SUPPORTED"
            default: "NOTIFY(\(rawValue))"
            }
        }
    }
}
