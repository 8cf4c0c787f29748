extension ISAKMP {
    /// RFC 2408 §3.1: the fixed ISAKMP header.
    public struct Header: Sendable, Hashable {
        public var initiatorCookie: UInt64
        public var responderCookie: UInt64
        /// Type of the first payload (raw: an unknown type is the receiver's business).
        public var nextPayload: UInt8
        public var exchangeType: UInt8
        public var flags: Flags
        public var messageID: UInt32
        /// Total message length including the header (as received; recomputed when encoding).
        public var length: UInt32

        public init(initiatorCookie: UInt64, responderCookie: UInt64, nextPayload: UInt8, exchangeType: ExchangeType,
                    flags: Flags, messageID: UInt32, length: UInt32 = 0) {
            self.initiatorCookie = initiatorCookie
            self.responderCookie = responderCookie
            self.nextPayload = nextPayload
            self.exchangeType = exchangeType.rawValue
            self.flags = flags
            self.messageID = messageID
            self.length = length
        }

        /// Both cookies, as R-U-THERE and DELETE carry them (RFC 3706 §5, RFC 2408 §3.15).
        public var cookies: [UInt8] {
            var writer = WireWriter(capacity: 16)
            writer.write(initiatorCookie)
            writer.write(responderCookie)
            return writer.bytes
        }

        public static func decode(_ reader: inout WireReader) throws(WireError) -> Header {
            let initiatorCookie = try reader.readUInt64("ISAKMP initiator cookie")
            let responderCookie = try reader.readUInt64("ISAKMP responder cookie")
            let nextPayload = try reader.readUInt8("ISAKMP next payload")
            let version = try reader.readUInt8("ISAKMP version")
            // RFC 2408 §5.1: a major version we do not speak is refused (IKEv2 has major 2).
            guard version >> 4 == 1 else { throw WireError(.unsupportedVersion, "ISAKMP major version \(version >> 4)") }
            let exchangeType = try reader.readUInt8("ISAKMP exchange type")
            let flags = Flags(rawValue: try reader.readUInt8("ISAKMP flags"))
            let messageID = try reader.readUInt32("ISAKMP message ID")
            let length = try reader.readUInt32("ISAKMP length")
            var header = Header(initiatorCookie: initiatorCookie, responderCookie: responderCookie, nextPayload: nextPayload,
                                exchangeType: .base, flags: flags, messageID: messageID, length: length)
            header.exchangeType = exchangeType
            return header
        }

        public func encode(into writer: inout WireWriter, length: Int) {
            writer.write(initiatorCookie)
            writer.write(responderCookie)
            writer.write(nextPayload)
            writer.write(ISAKMP.version)
            writer.write(exchangeType)
            writer.write(flags.rawValue)
            writer.write(messageID)
            writer.write(UInt32(length))
        }
    }

    /// One payload of an ISAKMP message, decoded; each case's body type quotes its RFC section.
    public enum Payload: Sendable, Hashable {
        case securityAssociation(SecurityAssociation)
        case keyExchange([UInt8])                 // RFC 2408 §3.7
        case identification(Identification)       // RFC 2407 §4.6.2
        case hash([UInt8])                        // RFC 2408 §3.11
        case nonce([UInt8])                       // RFC 2408 §3.13
        case notification(Notification)           // RFC 2408 §3.14
        case delete(Delete)                       // RFC 2408 §3.15
        case vendorID([UInt8])                    // RFC 2408 §3.16
        case natDiscovery([UInt8])                // RFC 3947 §3.2
        case natOriginalAddress(Identification)   // RFC 3947 §5.2 (same layout as ID)
        case other(type: UInt8, body: [UInt8])    // anything else, kept raw (certificates, signatures...)

        public var type: UInt8 {
            switch self {
            case .securityAssociation: PayloadType.securityAssociation.rawValue
            case .keyExchange: PayloadType.keyExchange.rawValue
            case .identification: PayloadType.identification.rawValue
            case .hash: PayloadType.hash.rawValue
            case .nonce: PayloadType.nonce.rawValue
            case .notification: PayloadType.notification.rawValue
            case .delete: PayloadType.delete.rawValue
            case .vendorID: PayloadType.vendorID.rawValue
            case .natDiscovery: PayloadType.natDiscovery.rawValue
            case .natOriginalAddress: PayloadType.natOriginalAddress.rawValue
            case .other(let type, _): type
            }
        }

        /// The payload body without its generic header (what RFC 2409 calls `SAi_b`, `IDii_b`, `Ni_b`).
        public var body: [UInt8] {
            var writer = WireWriter()
            switch self {
            case .securityAssociation(let sa): sa.encode(into: &writer)
            case .keyExchange(let data), .hash(let data), .nonce(let data), .vendorID(let data), .natDiscovery(let data):
                writer.write(bytes: data)
            case .identification(let id), .natOriginalAddress(let id): id.encode(into: &writer)
            case .notification(let notification): notification.encode(into: &writer)
            case .delete(let delete): delete.encode(into: &writer)
            case .other(_, let body): writer.write(bytes: body)
            }
            return writer.bytes
        }

        public var name: String {
            PayloadType(rawValue: type)?.description ?? "PAYLOAD(\(type))"
        }

        static func decode(type: UInt8, body: WireReader) throws(WireError) -> Payload {
            var reader = body
            let payload: Payload
            switch PayloadType(rawValue: type) {
            case .securityAssociation: payload = .securityAssociation(try SecurityAssociation.decode(&reader))
            case .keyExchange: payload = .keyExchange(reader.readRest())
            case .identification: payload = .identification(try Identification.decode(&reader))
            case .hash: payload = .hash(reader.readRest())
            case .nonce:
                let nonce = reader.readRest()
                // RFC 2409 §5: nonces are 8 to 256 bytes.
                guard (ISAKMP.minimumNonceLength...ISAKMP.maximumNonceLength).contains(nonce.count) else {
                    throw WireError(.invalidLength, "nonce of \(nonce.count) bytes (RFC 2409 §5: 8...256)")
                }
                payload = .nonce(nonce)
            case .notification: payload = .notification(try Notification.decode(&reader))
            case .delete: payload = .delete(try Delete.decode(&reader))
            case .vendorID: payload = .vendorID(reader.readRest())
            case .natDiscovery: payload = .natDiscovery(reader.readRest())
            case .natOriginalAddress: payload = .natOriginalAddress(try Identification.decode(&reader))
            case .some(.none), .proposal, .transform, .certificate, .certificateRequest, .signature, nil:
                payload = .other(type: type, body: reader.readRest())
            }
            guard reader.isAtEnd else { throw WireError(.trailingBytes, "\(payload.name): \(reader.remaining) bytes past its content") }
            return payload
        }
    }

    /// RFC 2409 §5: nonce length limits.
    public static let minimumNonceLength = 8
    public static let maximumNonceLength = 256

    /// Encodes a payload chain (generic headers linked by Next Payload); returns the first payload's type.
    public static func encodePayloads(_ payloads: [Payload]) -> (firstPayload: UInt8, bytes: [UInt8]) {
        var writer = WireWriter(capacity: 512)
        for (index, payload) in payloads.enumerated() {
            let body = payload.body
            writer.write(index + 1 < payloads.count ? payloads[index + 1].type : PayloadType.none.rawValue)
            writer.write(UInt8(0))
            writer.write(UInt16(body.count + genericHeaderLength))
            writer.write(bytes: body)
        }
        return (payloads.first?.type ?? PayloadType.none.rawValue, writer.bytes)
    }

    /// Decodes a payload chain starting with `firstPayload`. An encrypted body is followed by padding
    /// (RFC 2408 §3.5 / RFC 2409 Appendix B), so `allowPadding` lets bytes after the last payload pass.
    public static func decodePayloads(firstPayload: UInt8, _ bytes: [UInt8], allowPadding: Bool) throws(WireError) -> [Payload] {
        var reader = WireReader(bytes)
        var next = firstPayload
        var payloads: [Payload] = []
        while next != PayloadType.none.rawValue {
            let type = next
            next = try reader.readUInt8("payload next payload")
            _ = try reader.readUInt8("payload reserved")
            let length = Int(try reader.readUInt16("payload length"))
            guard length >= genericHeaderLength else {
                throw WireError(.invalidLength, "payload type \(type) claims \(length) bytes, less than its header")
            }
            let body = try reader.subReader(length - genericHeaderLength, "payload body")
            payloads.append(try Payload.decode(type: type, body: body))
        }
        guard allowPadding || reader.isAtEnd else {
            throw WireError(.trailingBytes, "\(reader.remaining) bytes after the last payload")
        }
        return payloads
    }

    /// A whole plaintext message (Main Mode 1-4); encrypted messages are assembled by the engine from
    /// `encodePayloads` and `Header.encode`.
    public struct Message: Sendable, Hashable {
        public var header: Header
        public var payloads: [Payload]

        public init(header: Header, payloads: [Payload]) {
            self.header = header
            self.payloads = payloads
        }

        public func encode() -> [UInt8] {
            let (first, body) = ISAKMP.encodePayloads(payloads)
            var header = header
            header.nextPayload = first
            var writer = WireWriter(capacity: ISAKMP.headerLength + body.count)
            header.encode(into: &writer, length: ISAKMP.headerLength + body.count)
            writer.write(bytes: body)
            return writer.bytes
        }

        /// Splits a datagram into its header and the (possibly encrypted) body, checking the length field.
        public static func decodeHeader(_ bytes: [UInt8]) throws(WireError) -> (header: Header, body: [UInt8]) {
            guard bytes.count <= ISAKMP.maximumMessageLength else {
                throw WireError(.invalidLength, "datagram of \(bytes.count) bytes exceeds \(ISAKMP.maximumMessageLength)")
            }
            var reader = WireReader(bytes)
            let header = try Header.decode(&reader)
            guard Int(header.length) == bytes.count else {
                throw WireError(.invalidLength, "ISAKMP length \(header.length) but datagram has \(bytes.count) bytes")
            }
            return (header, reader.readRest())
        }

        /// Decodes a plaintext message.
        public static func decode(_ bytes: [UInt8]) throws(WireError) -> Message {
            let (header, body) = try decodeHeader(bytes)
            guard !header.flags.contains(.encryption) else {
                throw WireError(.invalidValue, "message is encrypted; decrypt its body first")
            }
            return Message(header: header, payloads: try decodePayloads(firstPayload: header.nextPayload, body, allowPadding: false))
        }
    }
}
