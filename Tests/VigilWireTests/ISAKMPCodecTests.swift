import Testing
import VigilWire

private func hex(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        bytes.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}

@Suite struct ISAKMPCodecTests {
    /// strongSwan 5.9.8's first Main Mode message (`proposals = aes256-sha256-modp2048`), captured in the lab.
    static let strongSwanMM1 = hex(
        "7ae45daa263a6f9500000000000000000110020000000000000000b40d00003800000001000000010000002c01010001000000240101000080010007800e0100800200048004000e80030001800b0001800c3de00d00000c09002689dfd6b7120d000014afcad71368a1f1c96b8696fc775701000d0000184048b7d56ebce88525e7de7f00d6c2d3800000000d0000144a131c81070358455c5728f20e95452f0000001490cb80913ebb696e086381b5ec427b1f"
    )

    @Test func decodesStrongSwanMainMode1AndReencodesItByteForByte() throws {
        let message = try ISAKMP.Message.decode(Self.strongSwanMM1)
        #expect(message.header.initiatorCookie == 0x7AE4_5DAA_263A_6F95)
        #expect(message.header.responderCookie == 0)
        #expect(message.header.exchangeType == ISAKMP.ExchangeType.identityProtection.rawValue)
        #expect(message.header.messageID == 0)
        #expect(message.payloads.count == 6)
        guard case .securityAssociation(let sa) = message.payloads[0] else {
            Issue.record("first payload is not an SA: \(message.payloads[0])")
            return
        }
        #expect(sa.proposals.count == 1)
        let transform = try #require(sa.proposals.first?.transforms.first)
        #expect(transform.transformID == ISAKMP.Phase1Attribute.keyIKE)
        #expect(transform.attribute(ISAKMP.Phase1Attribute.encryptionAlgorithm)?.numericValue == 7)
        #expect(transform.attribute(ISAKMP.Phase1Attribute.keyLength)?.numericValue == 256)
        #expect(transform.attribute(ISAKMP.Phase1Attribute.hashAlgorithm)?.numericValue == 4)
        #expect(transform.attribute(ISAKMP.Phase1Attribute.groupDescription)?.numericValue == 14)
        #expect(transform.attribute(ISAKMP.Phase1Attribute.authenticationMethod)?.numericValue == 1)
        #expect(transform.attribute(ISAKMP.Phase1Attribute.lifeDuration)?.numericValue == 15840)
        #expect(message.payloads.contains(.vendorID(ISAKMP.VendorID.dpd)))
        #expect(message.payloads.contains(.vendorID(ISAKMP.VendorID.natTraversal)))
        #expect(message.encode() == Self.strongSwanMM1)
    }

    @Test func refusesLengthsThatDisagree() {
        var short = Self.strongSwanMM1
        short.removeLast()
        #expect(throws: WireError.self) { try ISAKMP.Message.decode(short) }
        // SA payload length claims more than the message holds.
        var lying = Self.strongSwanMM1
        lying[30] = 0xFF
        #expect(throws: WireError.self) { try ISAKMP.Message.decode(lying) }
        // A transform count of 2 where one transform follows.
        var count = Self.strongSwanMM1
        count[28 + 4 + 8 + 7] = 2
        #expect(throws: WireError.self) { try ISAKMP.Message.decode(count) }
        // IKEv2's major version is refused.
        var v2 = Self.strongSwanMM1
        v2[17] = 0x20
        #expect(throws: WireError.self) { try ISAKMP.Message.decode(v2) }
    }

    @Test func roundTripsEveryPayloadKind() throws {
        let payloads: [ISAKMP.Payload] = [
            .hash([1, 2, 3, 4]),
            .securityAssociation(ISAKMP.SecurityAssociation(proposals: [
                ISAKMP.Proposal(number: 1, protocolID: .esp, spi: [0xC0, 0, 0, 1], transforms: [
                    ISAKMP.Transform(number: 1, transformID: ISAKMP.Phase2Attribute.espAES, attributes: [
                        .basic(ISAKMP.Phase2Attribute.encapsulationMode, ISAKMP.Phase2Attribute.udpEncapsulatedTunnel),
                        .number(ISAKMP.Phase2Attribute.lifeDuration, 100_000),
                    ]),
                ]),
            ])),
            .nonce(Array(repeating: 7, count: 32)),
            .keyExchange(Array(repeating: 9, count: 64)),
            .identification(ISAKMP.Identification(idType: ISAKMP.IDType.ipv4Subnet, data: [10, 1, 0, 0, 255, 255, 255, 0])),
            .notification(ISAKMP.Notification(protocolID: .isakmp, notifyType: ISAKMP.NotifyType.rUThere,
                                              spi: Array(repeating: 1, count: 16), data: [0, 0, 0, 42])),
            .delete(ISAKMP.Delete(protocolID: .esp, spiSize: 4, spis: [[1, 2, 3, 4], [5, 6, 7, 8]])),
            .vendorID(ISAKMP.VendorID.dpd),
            .natDiscovery(Array(repeating: 3, count: 32)),
        ]
        let (first, bytes) = ISAKMP.encodePayloads(payloads)
        #expect(first == ISAKMP.PayloadType.hash.rawValue)
        #expect(try ISAKMP.decodePayloads(firstPayload: first, bytes, allowPadding: false) == payloads)
        // Padding after the last payload passes only in decrypted bodies.
        #expect(try ISAKMP.decodePayloads(firstPayload: first, bytes + [0, 0, 0], allowPadding: true) == payloads)
        #expect(throws: WireError.self) { try ISAKMP.decodePayloads(firstPayload: first, bytes + [0], allowPadding: false) }
        if case .securityAssociation(let sa) = payloads[1] {
            #expect(sa.proposals[0].transforms[0].attribute(ISAKMP.Phase2Attribute.lifeDuration)?.isBasic == false)
        }
    }

    @Test func refusesANonceOutsideRFC2409Limits() {
        let (first, bytes) = ISAKMP.encodePayloads([.nonce([1, 2, 3])])
        #expect(throws: WireError.self) { try ISAKMP.decodePayloads(firstPayload: first, bytes, allowPadding: false) }
    }

    /// Every single-byte corruption and every truncation of a real message decodes or throws; none crashes.
    @Test func corruptedAndTruncatedMessagesNeverCrash() {
        var decoded = 0
        var refused = 0
        for index in Self.strongSwanMM1.indices {
            for value: UInt8 in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                var bytes = Self.strongSwanMM1
                bytes[index] = value
                if (try? ISAKMP.Message.decode(bytes)) != nil { decoded += 1 } else { refused += 1 }
            }
            if (try? ISAKMP.Message.decode(Array(Self.strongSwanMM1.prefix(index)))) != nil { decoded += 1 } else { refused += 1 }
        }
        #expect(decoded > 0 && refused > Self.strongSwanMM1.count)
    }
}
