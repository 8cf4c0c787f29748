extension IKEv2 {
    /// §3.1 The IKE header.
    public struct Header: Hashable, Sendable {
        /// §3.1 Flags: bit 3 Initiator, bit 4 Version, bit 5 Response.
        public struct Flags: OptionSet, Hashable, Sendable {
            public let rawValue: UInt8
            public init(rawValue: UInt8) { self.rawValue = rawValue }
            public static let initiator = Flags(rawValue: 0x08)
            public static let version = Flags(rawValue: 0x10)
            public static let response = Flags(rawValue: 0x20)
        }

        public var initiatorSPI: UInt64
        public var responderSPI: UInt64
        /// Type of the first payload (filled in when the message is written).
        public var nextPayload: UInt8
        public var exchangeType: ExchangeType
        public var flags: Flags
        public var messageID: UInt32
        /// Total length of the message, header included (filled in when the message is written).
        public var length: UInt32

        public init(
            initiatorSPI: UInt64, responderSPI: UInt64, exchangeType: ExchangeType, flags: Flags, messageID: UInt32,
            nextPayload: UInt8 = 0, length: UInt32 = 0
        ) {
            self.initiatorSPI = initiatorSPI
            self.responderSPI = responderSPI
            self.nextPayload = nextPayload
            self.exchangeType = exchangeType
            self.flags = flags
            self.messageID = messageID
            self.length = length
        }

        public var isResponse: Bool { flags.contains(.response) }
        public var isFromInitiator: Bool { flags.contains(.initiator) }
    }
}

extension IKEv2.Header {
    /// Reads the fixed header and checks it against the datagram: version 2.x, length equal to the datagram's,
    /// a known exchange type.
    public static func read(from reader: inout WireReader) throws(WireError) -> IKEv2.Header {
        let initiatorSPI = try reader.readUInt64("IKE SA Initiator's SPI")
        let responderSPI = try reader.readUInt64("IKE SA Responder's SPI")
        let nextPayload = try reader.readUInt8("Next Payload")
        let version = try reader.readUInt8("MjVer/MnVer")
        // §3.1: "Implementations ... MUST reject or ignore messages containing a major version number larger than 2";
        // a major version below 2 is IKEv1 on the wrong engine.
        guard version >> 4 == IKEv2.Spec.version >> 4 else {
            throw WireError(.unsupportedVersion, "IKE major version \(version >> 4), expected 2")
        }
        let exchangeRaw = try reader.readUInt8("Exchange Type")
        guard let exchangeType = IKEv2.ExchangeType(rawValue: exchangeRaw) else {
            throw WireError(.invalidValue, "unknown exchange type \(exchangeRaw)")
        }
        let flags = Flags(rawValue: try reader.readUInt8("Flags"))
        let messageID = try reader.readUInt32("Message ID")
        let length = try reader.readUInt32("Length")
        guard Int(length) == reader.bytes.count else {
            throw WireError(.invalidLength, "IKE header length \(length) but datagram has \(reader.bytes.count) octets")
        }
        return IKEv2.Header(
            initiatorSPI: initiatorSPI, responderSPI: responderSPI, exchangeType: exchangeType, flags: flags,
            messageID: messageID, nextPayload: nextPayload, length: length
        )
    }

    public func write(to writer: inout WireWriter) {
        writer.write(initiatorSPI)
        writer.write(responderSPI)
        writer.write(nextPayload)
        writer.write(IKEv2.Spec.version)
        writer.write(exchangeType.rawValue)
        writer.write(flags.rawValue)
        writer.write(messageID)
        writer.write(length)
    }

    /// Peeks at a datagram's header without validating the payloads (routing to an SA by SPI).
    public static func peek(_ bytes: [UInt8]) throws(WireError) -> IKEv2.Header {
        var reader = WireReader(bytes)
        return try read(from: &reader)
    }
}
