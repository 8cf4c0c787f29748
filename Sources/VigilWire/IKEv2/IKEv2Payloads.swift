import VigilAddressing

extension IKEv2 {
    /// One payload of a message, as data. The payload chain and the generic headers are the message's business.
    public enum Payload: Hashable, Sendable {
        case securityAssociation(SecurityAssociation)
        case keyExchange(KeyExchange)
        case identificationInitiator(Identification)
        case identificationResponder(Identification)
        case authentication(Authentication)
        case nonce([UInt8])
        case notify(Notify)
        case delete(Delete)
        case vendorID([UInt8])
        case trafficSelectorInitiator([TrafficSelector])
        case trafficSelectorResponder([TrafficSelector])
        /// §3.14: the SK payload, still encrypted: `firstPayload` is the type of the first inner payload, `body` is
        /// IV || ciphertext || ICV. Only the engine can open it.
        case encrypted(firstPayload: UInt8, body: [UInt8])
        /// A payload this codec does not interpret (CERTREQ, CP, EAP, or an unknown non-critical type): kept raw.
        case other(type: UInt8, critical: Bool, body: [UInt8])

        public var type: UInt8 {
            switch self {
            case .securityAssociation: PayloadType.securityAssociation.rawValue
            case .keyExchange: PayloadType.keyExchange.rawValue
            case .identificationInitiator: PayloadType.identificationInitiator.rawValue
            case .identificationResponder: PayloadType.identificationResponder.rawValue
            case .authentication: PayloadType.authentication.rawValue
            case .nonce: PayloadType.nonce.rawValue
            case .notify: PayloadType.notify.rawValue
            case .delete: PayloadType.delete.rawValue
            case .vendorID: PayloadType.vendorID.rawValue
            case .trafficSelectorInitiator: PayloadType.trafficSelectorInitiator.rawValue
            case .trafficSelectorResponder: PayloadType.trafficSelectorResponder.rawValue
            case .encrypted: PayloadType.encrypted.rawValue
            case .other(let type, _, _): type
            }
        }

        /// A short name for logs: `SA`, `KE`, `N(COOKIE)`, `D`...
        public var logName: String {
            switch self {
            case .notify(let notify): "N(\(notify.type))"
            case .nonce: "No"
            case .other(let type, _, _): PayloadType(rawValue: type)?.description ?? "UNKNOWN(\(type))"
            case .securityAssociation, .keyExchange, .identificationInitiator, .identificationResponder, .authentication,
                 .delete, .vendorID, .trafficSelectorInitiator, .trafficSelectorResponder, .encrypted:
                PayloadType(rawValue: type)?.description ?? "\(type)"
            }
        }
    }

    /// §3.3 Security Association payload: proposals in order of preference.
    public struct SecurityAssociation: Hashable, Sendable {
        public var proposals: [Proposal]
        public init(proposals: [Proposal]) { self.proposals = proposals }
    }

    /// §3.3.1 Proposal substructure.
    public struct Proposal: Hashable, Sendable {
        public var number: UInt8
        public var protocolID: ProtocolID
        /// Empty in an initial IKE_SA_INIT; 8 octets for IKE rekeys; 4 octets for ESP.
        public var spi: [UInt8]
        public var transforms: [Transform]

        public init(number: UInt8, protocolID: ProtocolID, spi: [UInt8], transforms: [Transform]) {
            self.number = number
            self.protocolID = protocolID
            self.spi = spi
            self.transforms = transforms
        }
    }

    /// §3.3.2 Transform substructure; the only attribute IKEv2 defines is Key Length (§3.3.5).
    public struct Transform: Hashable, Sendable {
        public var type: UInt8
        public var id: UInt16
        public var keyLength: UInt16?

        public init(type: TransformType, id: UInt16, keyLength: UInt16? = nil) {
            self.type = type.rawValue
            self.id = id
            self.keyLength = keyLength
        }

        public init(rawType: UInt8, id: UInt16, keyLength: UInt16?) {
            self.type = rawType
            self.id = id
            self.keyLength = keyLength
        }

        public var transformType: TransformType? { TransformType(rawValue: type) }
    }

    /// §3.4 Key Exchange payload.
    public struct KeyExchange: Hashable, Sendable {
        public var group: UInt16
        public var data: [UInt8]
        public init(group: UInt16, data: [UInt8]) {
            self.group = group
            self.data = data
        }
    }

    /// §3.5 Identification payload (IDi / IDr).
    public struct Identification: Hashable, Sendable {
        public var idType: UInt8
        public var data: [UInt8]
        public init(idType: UInt8, data: [UInt8]) {
            self.idType = idType
            self.data = data
        }

        public init(_ identity: Identity) {
            self.init(idType: identity.idType, data: identity.data)
        }

        public var identity: Identity? { Identity(idType: idType, data: data) }

        /// §2.15 RestOfInitIDPayload / RestOfRespIDPayload: the payload body after the generic header, which the
        /// AUTH computation MACs.
        public var body: [UInt8] { [idType, 0, 0, 0] + data }
    }

    /// §3.8 Authentication payload.
    public struct Authentication: Hashable, Sendable {
        public var method: UInt8
        public var data: [UInt8]
        public init(method: AuthMethod, data: [UInt8]) {
            self.method = method.rawValue
            self.data = data
        }

        public init(rawMethod: UInt8, data: [UInt8]) {
            self.method = rawMethod
            self.data = data
        }
    }

    /// §3.10 Notify payload.
    public struct Notify: Hashable, Sendable {
        public var protocolID: UInt8
        public var spi: [UInt8]
        public var type: NotifyType
        public var data: [UInt8]

        public init(type: NotifyType, protocolID: ProtocolID = .none, spi: [UInt8] = [], data: [UInt8] = []) {
            self.protocolID = protocolID.rawValue
            self.spi = spi
            self.type = type
            self.data = data
        }
    }

    /// §3.11 Delete payload: the SPIs of one protocol.
    public struct Delete: Hashable, Sendable {
        public var protocolID: ProtocolID
        public var spiSize: UInt8
        public var spis: [[UInt8]]

        public init(protocolID: ProtocolID, spis: [[UInt8]]) {
            self.protocolID = protocolID
            self.spiSize = UInt8(protocolID == .ike ? 0 : Spec.espSPISize)
            self.spis = spis
        }
    }

    /// §3.13.1 Traffic Selector (address range, protocol and port range).
    public struct TrafficSelector: Hashable, Sendable, CustomStringConvertible {
        public var ipProtocol: UInt8
        public var startPort: UInt16
        public var endPort: UInt16
        public var startAddress: IPAddress
        public var endAddress: IPAddress

        public init(ipProtocol: UInt8 = 0, startPort: UInt16 = 0, endPort: UInt16 = 65535, startAddress: IPAddress, endAddress: IPAddress) {
            precondition(startAddress.family == endAddress.family, "traffic selector mixes address families")
            self.ipProtocol = ipProtocol
            self.startPort = startPort
            self.endPort = endPort
            self.startAddress = startAddress
            self.endAddress = endAddress
        }

        /// The selector covering a whole prefix, any protocol, any port.
        public init(_ prefix: IPPrefix) {
            self.init(startAddress: prefix.first, endAddress: prefix.last)
        }

        public var type: TrafficSelectorType {
            startAddress.family == .ipv4 ? .ipv4AddressRange : .ipv6AddressRange
        }

        /// The prefix this selector is exactly equal to, if its range is a prefix (and it covers all ports).
        public var prefix: IPPrefix? {
            let width = startAddress.family.bitWidth
            for length in 0...width {
                let candidate = IPPrefix(address: startAddress, length: length)
                if candidate.first == startAddress, candidate.last == endAddress { return candidate }
            }
            return nil
        }

        public var description: String {
            let range = prefix.map(\.description) ?? "\(startAddress)..\(endAddress)"
            let proto = ipProtocol == 0 ? "" : "[\(ipProtocol)"
                + (startPort == 0 && endPort == 65535 ? "" : "/\(startPort)-\(endPort)") + "]"
            return range + proto
        }
    }
}
