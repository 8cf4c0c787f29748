extension ISAKMP {
    /// RFC 2408 §3.3: a data attribute, basic (AF = 1, 16-bit value) or variable length (AF = 0).
    public struct Attribute: Sendable, Hashable {
        public var type: UInt16
        public var value: [UInt8]
        /// Whether it travels as a basic (TV) attribute.
        public var isBasic: Bool

        public static func basic(_ type: UInt16, _ value: UInt16) -> Attribute {
            Attribute(type: type, value: [UInt8(value >> 8), UInt8(value & 0xFF)], isBasic: true)
        }

        public static func variable(_ type: UInt16, _ value: [UInt8]) -> Attribute {
            Attribute(type: type, value: value, isBasic: false)
        }

        /// A number attribute: basic when it fits 16 bits, else variable (RFC 2409 Appendix A life durations).
        public static func number(_ type: UInt16, _ value: UInt32) -> Attribute {
            if value <= UInt32(UInt16.max) { return .basic(type, UInt16(value)) }
            var writer = WireWriter(capacity: 4)
            writer.write(value)
            return .variable(type, writer.bytes)
        }

        /// The value as an unsigned number (big-endian, at most 8 bytes), nil if longer.
        public var numericValue: UInt64? {
            guard value.count <= 8 else { return nil }
            return value.reduce(0) { $0 << 8 | UInt64($1) }
        }

        static let formatBit: UInt16 = 0x8000

        func encode(into writer: inout WireWriter) {
            if isBasic {
                precondition(value.count == 2, "a basic attribute carries exactly 16 bits")
                writer.write(type | Attribute.formatBit)
                writer.write(bytes: value)
            } else {
                writer.write(type & ~Attribute.formatBit)
                writer.write(UInt16(value.count))
                writer.write(bytes: value)
            }
        }

        static func decode(_ reader: inout WireReader) throws(WireError) -> Attribute {
            let typeField = try reader.readUInt16("attribute type")
            if typeField & formatBit != 0 {
                return Attribute(type: typeField & ~formatBit, value: try reader.readBytes(2, "basic attribute value"), isBasic: true)
            }
            let length = Int(try reader.readUInt16("attribute length"))
            return Attribute(type: typeField, value: try reader.readBytes(length, "variable attribute value"), isBasic: false)
        }
    }

    /// RFC 2408 §3.6: a transform with its attributes.
    public struct Transform: Sendable, Hashable {
        public var number: UInt8
        public var transformID: UInt8
        public var attributes: [Attribute]

        public init(number: UInt8, transformID: UInt8, attributes: [Attribute]) {
            self.number = number
            self.transformID = transformID
            self.attributes = attributes
        }

        public func attribute(_ type: UInt16) -> Attribute? { attributes.first { $0.type == type } }
    }

    /// RFC 2408 §3.5: a proposal (protocol, SPI, transforms offered as alternatives).
    public struct Proposal: Sendable, Hashable {
        public var number: UInt8
        public var protocolID: UInt8
        public var spi: [UInt8]
        public var transforms: [Transform]

        public init(number: UInt8, protocolID: ProtocolID, spi: [UInt8], transforms: [Transform]) {
            self.number = number
            self.protocolID = protocolID.rawValue
            self.spi = spi
            self.transforms = transforms
        }
    }

    /// RFC 2408 §3.4 with the IPsec DOI's situation (RFC 2407 §4.6.1).
    public struct SecurityAssociation: Sendable, Hashable {
        public var doi: UInt32
        public var situation: UInt32
        public var proposals: [Proposal]

        public init(doi: UInt32 = ISAKMP.ipsecDOI, situation: UInt32 = ISAKMP.situationIdentityOnly, proposals: [Proposal]) {
            self.doi = doi
            self.situation = situation
            self.proposals = proposals
        }

        func encode(into writer: inout WireWriter) {
            writer.write(doi)
            writer.write(situation)
            for (index, proposal) in proposals.enumerated() {
                let start = writer.count
                writer.write(index + 1 < proposals.count ? PayloadType.proposal.rawValue : PayloadType.none.rawValue)
                writer.write(UInt8(0))
                writer.write(UInt16(0))   // length, patched below
                writer.write(proposal.number)
                writer.write(proposal.protocolID)
                writer.write(UInt8(proposal.spi.count))
                writer.write(UInt8(proposal.transforms.count))
                writer.write(bytes: proposal.spi)
                for (tIndex, transform) in proposal.transforms.enumerated() {
                    let tStart = writer.count
                    writer.write(tIndex + 1 < proposal.transforms.count ? PayloadType.transform.rawValue : PayloadType.none.rawValue)
                    writer.write(UInt8(0))
                    writer.write(UInt16(0))
                    writer.write(transform.number)
                    writer.write(transform.transformID)
                    writer.write(UInt16(0))
                    for attribute in transform.attributes { attribute.encode(into: &writer) }
                    writer.patch(UInt16(writer.count - tStart), at: tStart + 2)
                }
                writer.patch(UInt16(writer.count - start), at: start + 2)
            }
        }

        static func decode(_ reader: inout WireReader) throws(WireError) -> SecurityAssociation {
            let doi = try reader.readUInt32("SA DOI")
            guard doi == ISAKMP.ipsecDOI else { throw WireError(.invalidValue, "SA DOI \(doi), only IPsec (1) is supported") }
            let situation = try reader.readUInt32("SA situation")
            var proposals: [Proposal] = []
            var next = PayloadType.proposal.rawValue
            while next != PayloadType.none.rawValue {
                guard next == PayloadType.proposal.rawValue else { throw WireError(.invalidValue, "SA holds payload type \(next), not a proposal") }
                next = try reader.readUInt8("proposal next payload")
                _ = try reader.readUInt8("proposal reserved")
                let length = Int(try reader.readUInt16("proposal length"))
                guard length >= 8 else { throw WireError(.invalidLength, "proposal length \(length) < 8") }
                var body = try reader.subReader(length - 4, "proposal body")
                let number = try body.readUInt8("proposal number")
                let protocolID = try body.readUInt8("proposal protocol ID")
                let spiSize = Int(try body.readUInt8("proposal SPI size"))
                let count = Int(try body.readUInt8("proposal transform count"))
                let spi = try body.readBytes(spiSize, "proposal SPI")
                var transforms: [Transform] = []
                var tNext = PayloadType.transform.rawValue
                for _ in 0..<count {
                    guard tNext == PayloadType.transform.rawValue else { throw WireError(.invalidValue, "proposal holds payload type \(tNext), not a transform") }
                    tNext = try body.readUInt8("transform next payload")
                    _ = try body.readUInt8("transform reserved")
                    let tLength = Int(try body.readUInt16("transform length"))
                    guard tLength >= 8 else { throw WireError(.invalidLength, "transform length \(tLength) < 8") }
                    var tBody = try body.subReader(tLength - 4, "transform body")
                    let tNumber = try tBody.readUInt8("transform number")
                    let tID = try tBody.readUInt8("transform ID")
                    _ = try tBody.readUInt16("transform reserved")
                    var attributes: [Attribute] = []
                    while !tBody.isAtEnd { attributes.append(try Attribute.decode(&tBody)) }
                    transforms.append(Transform(number: tNumber, transformID: tID, attributes: attributes))
                }
                guard tNext == PayloadType.none.rawValue, body.isAtEnd else {
                    throw WireError(.invalidLength, "proposal \(number): transform count \(count) disagrees with its length")
                }
                var proposal = Proposal(number: number, protocolID: .isakmp, spi: spi, transforms: transforms)
                proposal.protocolID = protocolID
                proposals.append(proposal)
            }
            return SecurityAssociation(doi: doi, situation: situation, proposals: proposals)
        }
    }

    /// RFC 2407 §4.6.2: identification (Phase 1 identities and Phase 2 proxy identities).
    public struct Identification: Sendable, Hashable {
        public var idType: UInt8
        public var protocolID: UInt8
        public var port: UInt16
        public var data: [UInt8]

        public init(idType: UInt8, protocolID: UInt8 = 0, port: UInt16 = 0, data: [UInt8]) {
            self.idType = idType
            self.protocolID = protocolID
            self.port = port
            self.data = data
        }

        func encode(into writer: inout WireWriter) {
            writer.write(idType)
            writer.write(protocolID)
            writer.write(port)
            writer.write(bytes: data)
        }

        static func decode(_ reader: inout WireReader) throws(WireError) -> Identification {
            let idType = try reader.readUInt8("ID type")
            let protocolID = try reader.readUInt8("ID protocol")
            let port = try reader.readUInt16("ID port")
            return Identification(idType: idType, protocolID: protocolID, port: port, data: reader.readRest())
        }
    }

    /// RFC 2408 §3.14: notification.
    public struct Notification: Sendable, Hashable {
        public var doi: UInt32
        public var protocolID: UInt8
        public var notifyType: UInt16
        public var spi: [UInt8]
        public var data: [UInt8]

        public init(doi: UInt32 = ISAKMP.ipsecDOI, protocolID: ProtocolID, notifyType: UInt16, spi: [UInt8], data: [UInt8] = []) {
            self.doi = doi
            self.protocolID = protocolID.rawValue
            self.notifyType = notifyType
            self.spi = spi
            self.data = data
        }

        func encode(into writer: inout WireWriter) {
            writer.write(doi)
            writer.write(protocolID)
            writer.write(UInt8(spi.count))
            writer.write(notifyType)
            writer.write(bytes: spi)
            writer.write(bytes: data)
        }

        static func decode(_ reader: inout WireReader) throws(WireError) -> Notification {
            let doi = try reader.readUInt32("notify DOI")
            let protocolID = try reader.readUInt8("notify protocol ID")
            let spiSize = Int(try reader.readUInt8("notify SPI size"))
            let type = try reader.readUInt16("notify type")
            let spi = try reader.readBytes(spiSize, "notify SPI")
            var notification = Notification(doi: doi, protocolID: .isakmp, notifyType: type, spi: spi, data: reader.readRest())
            notification.protocolID = protocolID
            return notification
        }
    }

    /// RFC 2408 §3.15: delete.
    public struct Delete: Sendable, Hashable {
        public var doi: UInt32
        public var protocolID: UInt8
        public var spiSize: UInt8
        public var spis: [[UInt8]]

        public init(doi: UInt32 = ISAKMP.ipsecDOI, protocolID: ProtocolID, spiSize: UInt8, spis: [[UInt8]]) {
            precondition(spis.allSatisfy { $0.count == Int(spiSize) }, "every SPI has the declared size")
            self.doi = doi
            self.protocolID = protocolID.rawValue
            self.spiSize = spiSize
            self.spis = spis
        }

        func encode(into writer: inout WireWriter) {
            writer.write(doi)
            writer.write(protocolID)
            writer.write(spiSize)
            writer.write(UInt16(spis.count))
            for spi in spis { writer.write(bytes: spi) }
        }

        static func decode(_ reader: inout WireReader) throws(WireError) -> Delete {
            let doi = try reader.readUInt32("delete DOI")
            let protocolID = try reader.readUInt8("delete protocol ID")
            let spiSize = try reader.readUInt8("delete SPI size")
            let count = Int(try reader.readUInt16("delete SPI count"))
            var spis: [[UInt8]] = []
            for _ in 0..<count { spis.append(try reader.readBytes(Int(spiSize), "delete SPI")) }
            var delete = Delete(doi: doi, protocolID: .isakmp, spiSize: spiSize, spis: spis)
            delete.protocolID = protocolID
            return delete
        }
    }
}
