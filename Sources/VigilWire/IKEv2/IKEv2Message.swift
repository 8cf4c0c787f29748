import VigilAddressing

extension IKEv2 {
    /// A whole IKE message: header and payloads in order. An encrypted message carries one `.encrypted` payload
    /// last (§3.14); its inner payloads are parsed with `Payloads.read(_:first:)` once the engine has opened it.
    public struct Message: Hashable, Sendable {
        public var header: Header
        public var payloads: [Payload]

        public init(header: Header, payloads: [Payload]) {
            self.header = header
            self.payloads = payloads
        }

        /// Parses a datagram (marker already stripped). Strict: lengths are checked against what is left, an
        /// unknown payload with the Critical bit set is refused (§2.5), and no byte may be left over.
        public static func parse(_ bytes: [UInt8]) throws(WireError) -> Message {
            guard bytes.count <= Spec.maximumMessageLength else {
                throw WireError(.invalidLength, "message of \(bytes.count) octets")
            }
            var reader = WireReader(bytes)
            let header = try Header.read(from: &reader)
            let payloads = try Payloads.read(&reader, first: header.nextPayload)
            return Message(header: header, payloads: payloads)
        }

        /// Writes the message with the chain and lengths filled in.
        public func serialize() -> [UInt8] {
            var header = self.header
            let body = Payloads.write(payloads)
            header.nextPayload = body.first
            header.length = UInt32(Spec.headerLength + body.bytes.count)
            var writer = WireWriter(capacity: Int(header.length))
            header.write(to: &writer)
            writer.write(bytes: body.bytes)
            return writer.bytes
        }

        /// A description for logs: `IKE_SA_INIT request 0 { SA, KE, No, N(NAT_DETECTION_SOURCE_IP) }`.
        public var summary: String {
            "\(header.exchangeType) \(header.isResponse ? "response" : "request") \(header.messageID) "
                + "{ \(payloads.map(\.logName).joined(separator: ", ")) }"
        }

        /// The header and SK generic payload header that precede the IV of an encrypted message whose SK body
        /// (IV || ciphertext || ICV) is `bodyLength` long: the integrity-protected prefix and, for AEAD, the
        /// associated data (RFC 5282 §5.1).
        public static func encryptedPrefix(header: Header, firstInnerPayload: UInt8, bodyLength: Int) -> [UInt8] {
            var header = header
            header.nextPayload = PayloadType.encrypted.rawValue
            header.length = UInt32(Spec.headerLength + Spec.genericPayloadHeaderLength + bodyLength)
            var writer = WireWriter(capacity: Spec.headerLength + Spec.genericPayloadHeaderLength)
            header.write(to: &writer)
            writer.write(firstInnerPayload)
            writer.write(UInt8(0))
            writer.write(UInt16(Spec.genericPayloadHeaderLength + bodyLength))
            return writer.bytes
        }
    }

    /// Reading and writing a chain of payloads (the message body, or the plaintext inside SK).
    public enum Payloads {
        public static func read(_ bytes: [UInt8], first: UInt8) throws(WireError) -> [Payload] {
            var reader = WireReader(bytes)
            return try read(&reader, first: first)
        }

        static func read(_ reader: inout WireReader, first: UInt8) throws(WireError) -> [Payload] {
            var payloads: [Payload] = []
            var next = first
            while next != PayloadType.none.rawValue {
                let type = next
                next = try reader.readUInt8("Next Payload")
                let flags = try reader.readUInt8("Critical/RESERVED")
                let length = Int(try reader.readUInt16("Payload Length"))
                guard length >= Spec.genericPayloadHeaderLength else {
                    throw WireError(.invalidLength, "payload \(type) length \(length) shorter than its header")
                }
                var body = try reader.subReader(length - Spec.genericPayloadHeaderLength, "payload body")
                let critical = flags & Spec.criticalFlag != 0
                if type == PayloadType.encrypted.rawValue {
                    // §3.14: SK is the last payload; its Next Payload names the first inner payload.
                    guard reader.isAtEnd else { throw WireError(.trailingBytes, "bytes after the SK payload") }
                    payloads.append(.encrypted(firstPayload: next, body: body.readRest()))
                    return payloads
                }
                guard let known = PayloadType(rawValue: type) else {
                    // §2.5: unknown payloads are skipped unless the Critical bit is set.
                    guard !critical else {
                        throw WireError(.unsupportedCriticalPayload, "unknown critical payload type \(type)")
                    }
                    payloads.append(.other(type: type, critical: critical, body: body.readRest()))
                    continue
                }
                let payload = try readBody(known, critical: critical, &body)
                guard body.isAtEnd else {
                    throw WireError(.trailingBytes, "\(body.remaining) octets left in payload \(known)")
                }
                payloads.append(payload)
            }
            guard reader.isAtEnd else { throw WireError(.trailingBytes, "\(reader.remaining) octets after the last payload") }
            return payloads
        }

        private static func readBody(_ type: PayloadType, critical: Bool, _ body: inout WireReader) throws(WireError) -> Payload {
            switch type {
            case .securityAssociation: return .securityAssociation(try SecurityAssociation.read(&body))
            case .keyExchange:
                let group = try body.readUInt16("Diffie-Hellman Group Num")
                _ = try body.readUInt16("RESERVED")
                return .keyExchange(KeyExchange(group: group, data: body.readRest()))
            case .identificationInitiator, .identificationResponder:
                let idType = try body.readUInt8("ID Type")
                try body.skip(3, "RESERVED")
                let id = Identification(idType: idType, data: body.readRest())
                return type == .identificationInitiator ? .identificationInitiator(id) : .identificationResponder(id)
            case .authentication:
                let method = try body.readUInt8("Auth Method")
                try body.skip(3, "RESERVED")
                return .authentication(Authentication(rawMethod: method, data: body.readRest()))
            case .nonce:
                let nonce = body.readRest()
                guard Spec.nonceLengths.contains(nonce.count) else {
                    throw WireError(.invalidLength, "nonce of \(nonce.count) octets (§2.10: 16-256)")
                }
                return .nonce(nonce)
            case .notify:
                let protocolID = try body.readUInt8("Protocol ID")
                let spiSize = try body.readUInt8("SPI Size")
                let notifyType = try body.readUInt16("Notify Message Type")
                let spi = try body.readBytes(Int(spiSize), "SPI")
                return .notify(Notify(rawProtocolID: protocolID, spi: spi, type: NotifyType(rawValue: notifyType), data: body.readRest()))
            case .delete:
                let protocolRaw = try body.readUInt8("Protocol ID")
                guard let protocolID = ProtocolID(rawValue: protocolRaw), protocolID != .none else {
                    throw WireError(.invalidValue, "Delete with protocol \(protocolRaw)")
                }
                let spiSize = try body.readUInt8("SPI Size")
                let count = Int(try body.readUInt16("Num of SPIs"))
                // §3.11: SPI Size is 0 for IKE, 4 for AH/ESP.
                let expectedSize = protocolID == .ike ? 0 : Spec.espSPISize
                guard spiSize == expectedSize else {
                    throw WireError(.invalidValue, "Delete \(protocolID) with SPI size \(spiSize)")
                }
                var spis: [[UInt8]] = []
                for _ in 0..<count { spis.append(try body.readBytes(Int(spiSize), "SPI")) }
                return .delete(Delete(protocolID: protocolID, spis: spis))
            case .vendorID: return .vendorID(body.readRest())
            case .trafficSelectorInitiator: return .trafficSelectorInitiator(try TrafficSelector.readList(&body))
            case .trafficSelectorResponder: return .trafficSelectorResponder(try TrafficSelector.readList(&body))
            case .none, .encrypted:
                preconditionFailure("payload chain handles \(type) itself")
            case .certificate, .certificateRequest, .configuration, .eap:
                return .other(type: type.rawValue, critical: critical, body: body.readRest())
            }
        }

        /// §2.5: the type of the first payload in the chain that is unknown and marked critical (what an
        /// UNSUPPORTED_CRITICAL_PAYLOAD notify reports); nil if there is none or the chain is malformed before it.
        public static func firstUnsupportedCriticalPayload(_ bytes: [UInt8], first: UInt8) -> UInt8? {
            var reader = WireReader(bytes)
            var next = first
            while next != PayloadType.none.rawValue, next != PayloadType.encrypted.rawValue {
                let type = next
                guard let following = try? reader.readUInt8("Next Payload"), let flags = try? reader.readUInt8("Critical"),
                      let length = try? reader.readUInt16("Payload Length"), length >= 4,
                      (try? reader.skip(Int(length) - 4, "payload body")) != nil
                else { return nil }
                if PayloadType(rawValue: type) == nil, flags & Spec.criticalFlag != 0 { return type }
                next = following
            }
            return nil
        }

        /// Writes payloads chained; returns the first payload's type (for the header or SK) and the bytes.
        public static func write(_ payloads: [Payload]) -> (first: UInt8, bytes: [UInt8]) {
            var writer = WireWriter(capacity: 512)
            for (index, payload) in payloads.enumerated() {
                if case .encrypted(let firstInner, let body) = payload {
                    precondition(index == payloads.count - 1, "SK must be the last payload")
                    writer.write(firstInner)
                    writer.write(UInt8(0))
                    writer.write(UInt16(Spec.genericPayloadHeaderLength + body.count))
                    writer.write(bytes: body)
                    continue
                }
                let next = index + 1 < payloads.count ? payloads[index + 1].type : PayloadType.none.rawValue
                let start = writer.count
                writer.write(next)
                if case .other(_, let critical, _) = payload, critical {
                    writer.write(Spec.criticalFlag)
                } else {
                    writer.write(UInt8(0))
                }
                writer.write(UInt16(0))
                writeBody(payload, &writer)
                writer.patch(UInt16(writer.count - start), at: start + 2)
            }
            return (payloads.first?.type ?? PayloadType.none.rawValue, writer.bytes)
        }

        private static func writeBody(_ payload: Payload, _ writer: inout WireWriter) {
            switch payload {
            case .securityAssociation(let sa): sa.write(&writer)
            case .keyExchange(let ke):
                writer.write(ke.group)
                writer.write(UInt16(0))
                writer.write(bytes: ke.data)
            case .identificationInitiator(let id), .identificationResponder(let id):
                writer.write(bytes: id.body)
            case .authentication(let auth):
                writer.write(auth.method)
                writer.write(bytes: [0, 0, 0])
                writer.write(bytes: auth.data)
            case .nonce(let nonce): writer.write(bytes: nonce)
            case .notify(let notify):
                writer.write(notify.protocolID)
                writer.write(UInt8(notify.spi.count))
                writer.write(notify.type.rawValue)
                writer.write(bytes: notify.spi)
                writer.write(bytes: notify.data)
            case .delete(let delete):
                writer.write(delete.protocolID.rawValue)
                writer.write(delete.spiSize)
                writer.write(UInt16(delete.spis.count))
                for spi in delete.spis { writer.write(bytes: spi) }
            case .vendorID(let data): writer.write(bytes: data)
            case .trafficSelectorInitiator(let list), .trafficSelectorResponder(let list):
                TrafficSelector.writeList(list, &writer)
            case .other(_, _, let body): writer.write(bytes: body)
            case .encrypted: preconditionFailure("SK is written by the chain")
            }
        }
    }
}

extension IKEv2.Notify {
    init(rawProtocolID: UInt8, spi: [UInt8], type: IKEv2.NotifyType, data: [UInt8]) {
        self.init(type: type, spi: spi, data: data)
        self.protocolID = rawProtocolID
    }
}

extension IKEv2.SecurityAssociation {
    static func read(_ body: inout WireReader) throws(WireError) -> IKEv2.SecurityAssociation {
        var proposals: [IKEv2.Proposal] = []
        var more = true
        while more {
            let last = try body.readUInt8("Last Substruc")
            guard last == IKEv2.Spec.lastSubstructure || last == IKEv2.Spec.moreProposals else {
                throw WireError(.invalidValue, "proposal Last Substruc \(last)")
            }
            more = last == IKEv2.Spec.moreProposals
            _ = try body.readUInt8("RESERVED")
            let length = Int(try body.readUInt16("Proposal Length"))
            guard length >= 8 else { throw WireError(.invalidLength, "proposal length \(length)") }
            var proposal = try body.subReader(length - 4, "proposal")
            let number = try proposal.readUInt8("Proposal Num")
            let protocolRaw = try proposal.readUInt8("Protocol ID")
            let spiSize = try proposal.readUInt8("SPI Size")
            let transformCount = try proposal.readUInt8("Num Transforms")
            let spi = try proposal.readBytes(Int(spiSize), "SPI")
            var transforms: [IKEv2.Transform] = []
            for index in 0..<Int(transformCount) {
                transforms.append(try IKEv2.Transform.read(&proposal, isLast: index == Int(transformCount) - 1))
            }
            guard proposal.isAtEnd else { throw WireError(.trailingBytes, "bytes after the transforms of proposal \(number)") }
            // An unknown protocol is kept as .none so the proposal can be declined rather than the message refused.
            proposals.append(IKEv2.Proposal(number: number, protocolID: IKEv2.ProtocolID(rawValue: protocolRaw) ?? .none, spi: spi, transforms: transforms))
        }
        guard body.isAtEnd else { throw WireError(.trailingBytes, "bytes after the last proposal") }
        return IKEv2.SecurityAssociation(proposals: proposals)
    }

    func write(_ writer: inout WireWriter) {
        for (index, proposal) in proposals.enumerated() {
            let start = writer.count
            writer.write(index == proposals.count - 1 ? IKEv2.Spec.lastSubstructure : IKEv2.Spec.moreProposals)
            writer.write(UInt8(0))
            writer.write(UInt16(0))
            writer.write(proposal.number)
            writer.write(proposal.protocolID.rawValue)
            writer.write(UInt8(proposal.spi.count))
            writer.write(UInt8(proposal.transforms.count))
            writer.write(bytes: proposal.spi)
            for (t, transform) in proposal.transforms.enumerated() {
                transform.write(&writer, isLast: t == proposal.transforms.count - 1)
            }
            writer.patch(UInt16(writer.count - start), at: start + 2)
        }
    }
}

extension IKEv2.Transform {
    static func read(_ proposal: inout WireReader, isLast: Bool) throws(WireError) -> IKEv2.Transform {
        let last = try proposal.readUInt8("Last Substruc")
        let expected = isLast ? IKEv2.Spec.lastSubstructure : IKEv2.Spec.moreTransforms
        guard last == expected else { throw WireError(.invalidValue, "transform Last Substruc \(last), expected \(expected)") }
        _ = try proposal.readUInt8("RESERVED")
        let length = Int(try proposal.readUInt16("Transform Length"))
        guard length >= 8 else { throw WireError(.invalidLength, "transform length \(length)") }
        var body = try proposal.subReader(length - 4, "transform")
        let type = try body.readUInt8("Transform Type")
        _ = try body.readUInt8("RESERVED")
        let id = try body.readUInt16("Transform ID")
        var keyLength: UInt16?
        var unknownAttribute = false
        while !body.isAtEnd {
            let attributeType = try body.readUInt16("Attribute Type")
            if attributeType & IKEv2.Spec.attributeFormatTV != 0 {
                let value = try body.readUInt16("Attribute Value")
                if attributeType & ~IKEv2.Spec.attributeFormatTV == IKEv2.Spec.keyLengthAttribute {
                    keyLength = value
                } else {
                    unknownAttribute = true
                }
            } else {
                let valueLength = Int(try body.readUInt16("Attribute Length"))
                try body.skip(valueLength, "Attribute Value")
                unknownAttribute = true
            }
        }
        // §3.3.6: a transform with an unrecognized attribute must be declined, never half understood: mark it
        // with an impossible type so no selection matches it.
        return IKEv2.Transform(rawType: unknownAttribute ? 0 : type, id: id, keyLength: keyLength)
    }

    func write(_ writer: inout WireWriter, isLast: Bool) {
        writer.write(isLast ? IKEv2.Spec.lastSubstructure : IKEv2.Spec.moreTransforms)
        writer.write(UInt8(0))
        writer.write(UInt16(keyLength == nil ? 8 : 12))
        writer.write(type)
        writer.write(UInt8(0))
        writer.write(id)
        if let keyLength {
            writer.write(IKEv2.Spec.attributeFormatTV | IKEv2.Spec.keyLengthAttribute)
            writer.write(keyLength)
        }
    }
}

extension IKEv2.TrafficSelector {
    static func readList(_ body: inout WireReader) throws(WireError) -> [IKEv2.TrafficSelector] {
        let count = Int(try body.readUInt8("Number of TSs"))
        try body.skip(3, "RESERVED")
        var list: [IKEv2.TrafficSelector] = []
        for _ in 0..<count {
            let typeRaw = try body.readUInt8("TS Type")
            let ipProtocol = try body.readUInt8("IP Protocol ID")
            let length = Int(try body.readUInt16("Selector Length"))
            guard let type = IKEv2.TrafficSelectorType(rawValue: typeRaw) else {
                throw WireError(.invalidValue, "traffic selector type \(typeRaw)")
            }
            let addressLength = type == .ipv4AddressRange ? 4 : 16
            guard length == 8 + 2 * addressLength else {
                throw WireError(.invalidLength, "traffic selector length \(length) for type \(typeRaw)")
            }
            let startPort = try body.readUInt16("Start Port")
            let endPort = try body.readUInt16("End Port")
            let start = try body.readBytes(addressLength, "Starting Address")
            let end = try body.readBytes(addressLength, "Ending Address")
            guard let startAddress = IPAddress(bytes: start), let endAddress = IPAddress(bytes: end) else {
                preconditionFailure("4 or 16 bytes always form an address")
            }
            list.append(IKEv2.TrafficSelector(ipProtocol: ipProtocol, startPort: startPort, endPort: endPort, startAddress: startAddress, endAddress: endAddress))
        }
        return list
    }

    static func writeList(_ list: [IKEv2.TrafficSelector], _ writer: inout WireWriter) {
        writer.write(UInt8(list.count))
        writer.write(bytes: [0, 0, 0])
        for ts in list {
            writer.write(ts.type.rawValue)
            writer.write(ts.ipProtocol)
            writer.write(UInt16(8 + 2 * ts.startAddress.bytes.count))
            writer.write(ts.startPort)
            writer.write(ts.endPort)
            writer.write(bytes: ts.startAddress.bytes)
            writer.write(bytes: ts.endAddress.bytes)
        }
    }
}
