import Testing
import VigilAddressing
@testable import VigilWire

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

/// Codec tests against bytes captured from strongSwan 5.9.8 in the lab.
@Suite struct IKEv2CodecTests {
    /// strongSwan 5.9.8's IKE_SA_INIT request for `proposals = aes256-sha256-modp2048`, captured with a UDP socket on
    /// port 500 in a namespace that charon initiated to.
    static let strongSwanInitRequest = hex(
        "1b104ef5fa23455800000000000000002120220800000000000001d0220000300000002c010100040300000c0100000c800e0100030000"
        + "080300000c0300000802000005000000080400000e28000108000e00006f88cf50de8a6cc19a5b32743223fd6a789244d09de9e4c5cd72"
        + "9f37590a161607a42e9288462d0a2335772400c0ef597b5717f3cb679ad64cbfd847b5c34fc0f40ce201c0ac628cae94c66c61302801702"
        + "c82e905d2cb9d5c59e437d40a7ed6e0bb050e9249b04f8e1d324d927da153ef67bf0621316ce99e73ee4ebed5e3b7db32db42d5c8f4e9602"
        + "85957b13a0949ff4852ab464c703a6a51e52b3aca3e0c26aaa6e395e2d69ac6118372ee438f77661e7912e0d6e4dc657ee024e6ba7a16d17"
        + "c3e9d19efef895b30fec5ff54ee966dcca7407df03610fd3f3cd77c455ce7552946d6d840086712695e39247659996f819e42ce175f48cd1"
        + "867173e63bb3d29000024c5f1478727453c632d835a32ee635e32baf520c857c1f13b4bf6fd47f20725df2900001c0000400431dcea023c"
        + "1f1b090d445b70db8332146d0ca2302900001c00004005a6f3505aab4bc139b418e1a05ead9d000115a4f7290000080000402e29000010"
        + "0000402f00020003000400050000000800004016"
    )

    /// strongSwan 5.9.8's IKE_SA_INIT response (aes256-sha256-modp2048) to a Vigil initiator, captured by the interop
    /// driver: SA, KE, Nr, both NAT-D, CHILDLESS_IKEV2_SUPPORTED (16418), MULTIPLE_AUTH_SUPPORTED.
    static let strongSwanInitResponse = hex(
        "a6c819b31dec1f7da99aa543d9564cc22120222000000000000001c0220000300000002c010100040300000c0100000c800e0100030000"
        + "080300000c0300000802000005000000080400000e28000108000e00001108886e07f7efb25e0d3da3e05a858fb48eb853f6228b86a831"
        + "b4e85b0ae89d69bed34fdfbf4c1bbe890b5eeeb25a99b0459df92129e0d0e0a3174a6819c16b62903030cfbda6ad9cabdba671a9d7464b"
        + "e8ab80853e48c6f68a64bba4d9e5e3fdb8465391df89bf5d87cef11feac6ff86cc49a8a5cb9218ddb5c2a8d3979cd9e22e409076f0d849"
        + "79c9365e3d2ff2fa5e6488836a322f644b61248a436d4d3fdbf72386cc2b5d7cb3237a811bbfc95c69d8f6f3a904fdc029c7cc010b52fa"
        + "d46853dda0c1d00d7d903826a8d652f30d4c253e6119fb5d8a0793b2d24efdf4ba5bde80aa4831afaba78d8ab03060b6714165a1791ed2"
        + "6848823ee009734b4694290000244b87e79d0737c06b022debe317226a3d45cf4f2abfd834d3a100c0036881a9702900001c0000400484"
        + "eacb1c5474098b4aff6dd592bebd79e1e2e1362900001c00004005d1b47b37d44e1d6dd5a6640e9c907064a908dc5d2900000800004022"
        + "0000000800004014"
    )

    /// strongSwan 5.9.8's IKE_AUTH response (SK only, AES-CBC + HMAC-SHA2-256-128), same conversation.
    static let strongSwanAuthResponse = hex(
        "a6c819b31dec1f7da99aa543d9564cc22e20232000000001000000e0240000c4ea5ad64cb2ad6902f0d6c4166b92f3f6eea25fd35b7322"
        + "528ad051fd7a4b7b35e7bec9292bcc2e11a59032066b118678a1f9d9ae93673490d01c92ec0c368c6e70d96c3ee10c04f5b364b870d1c3"
        + "572a4a816a5d8461b4fd9a6a0b6afbdeb5de28bbce7daea7ed153329a5a0b7746d099bfb3ca22c7e75bc308de7e80983a5e48722811dce"
        + "2ac497676136f6c4f46278422bac4198f34872b46cc5b393cae7b1652f4d85676bcd8bf45c63facb3c1e5b98cb5d12fee56fea9061d02c"
        + "43bc4a1a"
    )

    @Test func parsesStrongSwanInitResponseAndReserializesIt() throws {
        let message = try IKEv2.Message.parse(Self.strongSwanInitResponse)
        #expect(message.header.flags == .response)
        #expect(message.header.responderSPI == 0xa99a_a543_d956_4cc2)
        #expect(message.payloads.map(\.logName) == [
            "SA", "KE", "No", "N(NAT_DETECTION_SOURCE_IP)", "N(NAT_DETECTION_DESTINATION_IP)", "N(NOTIFY(16418))",
            "N(MULTIPLE_AUTH_SUPPORTED)",
        ])
        guard case .securityAssociation(let sa) = message.payloads[0] else { Issue.record("no SA"); return }
        #expect(sa.proposals.map(\.transforms.count) == [4])
        #expect(message.serialize() == Self.strongSwanInitResponse)
    }

    @Test func parsesStrongSwanEncryptedAuthResponse() throws {
        let message = try IKEv2.Message.parse(Self.strongSwanAuthResponse)
        #expect(message.header.exchangeType == .ikeAuth && message.header.messageID == 1)
        guard case .encrypted(let first, let body) = try #require(message.payloads.first) else { Issue.record("no SK"); return }
        #expect(first == IKEv2.PayloadType.identificationResponder.rawValue)
        // IV (16) + whole AES blocks + ICV (16)
        #expect((body.count - 32) % 16 == 0)
        #expect(message.serialize() == Self.strongSwanAuthResponse)
    }

    @Test func parsesStrongSwanInitRequest() throws {
        let message = try IKEv2.Message.parse(Self.strongSwanInitRequest)
        #expect(message.header.initiatorSPI == 0x1b10_4ef5_fa23_4558)
        #expect(message.header.responderSPI == 0)
        #expect(message.header.exchangeType == .ikeSAInit)
        #expect(message.header.flags == .initiator)
        #expect(message.header.messageID == 0)
        #expect(message.payloads.map(\.logName) == [
            "SA", "KE", "No", "N(NAT_DETECTION_SOURCE_IP)", "N(NAT_DETECTION_DESTINATION_IP)",
            "N(FRAGMENTATION_SUPPORTED)", "N(SIGNATURE_HASH_ALGORITHMS)", "N(REDIRECT_SUPPORTED)",
        ])
        guard case .securityAssociation(let sa) = message.payloads[0] else { Issue.record("first payload is not SA"); return }
        #expect(sa.proposals.count == 1)
        let proposal = try #require(sa.proposals.first)
        #expect(proposal.protocolID == .ike)
        #expect(proposal.spi.isEmpty)
        #expect(proposal.transforms == [
            IKEv2.Transform(type: .encryption, id: 12, keyLength: 256),
            IKEv2.Transform(type: .integrity, id: 12),
            IKEv2.Transform(type: .pseudorandomFunction, id: 5),
            IKEv2.Transform(type: .keyExchange, id: 14),
        ])
        guard case .keyExchange(let ke) = message.payloads[1] else { Issue.record("second payload is not KE"); return }
        #expect(ke.group == 14)
        #expect(ke.data.count == 256)
        guard case .nonce(let nonce) = message.payloads[2] else { Issue.record("third payload is not Ni"); return }
        #expect(nonce.count == 32)
        guard case .notify(let natSource) = message.payloads[3] else { Issue.record("no NAT-D"); return }
        #expect(natSource.data.count == 20)
    }

    @Test func reserializesStrongSwanInitRequestByteForByte() throws {
        let message = try IKEv2.Message.parse(Self.strongSwanInitRequest)
        #expect(message.serialize() == Self.strongSwanInitRequest)
    }

    @Test func roundTripsEveryPayloadKind() throws {
        let header = IKEv2.Header(initiatorSPI: 1, responderSPI: 2, exchangeType: .informational, flags: [.initiator, .response], messageID: 7)
        let ts4 = IKEv2.TrafficSelector(try IPPrefix.parse("10.1.0.0/24"))
        let ts6 = IKEv2.TrafficSelector(ipProtocol: 17, startPort: 500, endPort: 500, startAddress: IPAddress("2001:db8::")!, endAddress: IPAddress("2001:db8::ff")!)
        let payloads: [IKEv2.Payload] = [
            .securityAssociation(IKEv2.SecurityAssociation(proposals: [
                IKEv2.Proposal(number: 1, protocolID: .esp, spi: [1, 2, 3, 4], transforms: [IKEv2.Transform(type: .encryption, id: 20, keyLength: 256)]),
                IKEv2.Proposal(number: 2, protocolID: .esp, spi: [1, 2, 3, 4], transforms: [
                    IKEv2.Transform(type: .encryption, id: 12, keyLength: 128), IKEv2.Transform(type: .integrity, id: 2),
                    IKEv2.Transform(type: .extendedSequenceNumbers, id: 0),
                ]),
            ])),
            .keyExchange(IKEv2.KeyExchange(group: 31, data: Array(repeating: 9, count: 32))),
            .identificationInitiator(IKEv2.Identification(.fqdn("west"))),
            .identificationResponder(IKEv2.Identification(.address(IPAddress("192.0.2.2")!))),
            .authentication(IKEv2.Authentication(method: .sharedKeyMIC, data: Array(repeating: 5, count: 32))),
            .nonce(Array(repeating: 3, count: 16)),
            .notify(IKEv2.Notify(type: .rekeySA, protocolID: .esp, spi: [9, 9, 9, 9])),
            .delete(IKEv2.Delete(protocolID: .esp, spis: [[1, 2, 3, 4], [5, 6, 7, 8]])),
            .delete(IKEv2.Delete(protocolID: .ike, spis: [])),
            .vendorID([0xde, 0xad]),
            .trafficSelectorInitiator([ts4, ts6]),
            .trafficSelectorResponder([ts4]),
            .other(type: 47, critical: false, body: [1, 0, 0, 0]),
        ]
        let message = IKEv2.Message(header: header, payloads: payloads)
        let bytes = message.serialize()
        var parsed = try IKEv2.Message.parse(bytes)
        parsed.header.nextPayload = 0
        parsed.header.length = 0
        #expect(parsed == message)
        #expect(ts4.prefix?.description == "10.1.0.0/24")
    }

    @Test func encryptedPayloadIsKeptForTheEngine() throws {
        let header = IKEv2.Header(initiatorSPI: 1, responderSPI: 2, exchangeType: .ikeAuth, flags: .initiator, messageID: 1)
        let body = Array(repeating: UInt8(0xab), count: 48)
        let bytes = IKEv2.Message(header: header, payloads: [.encrypted(firstPayload: 35, body: body)]).serialize()
        let parsed = try IKEv2.Message.parse(bytes)
        #expect(parsed.payloads == [.encrypted(firstPayload: 35, body: body)])
        // The prefix the engine MACs (or uses as AEAD associated data) is exactly what precedes the SK body.
        #expect(IKEv2.Message.encryptedPrefix(header: header, firstInnerPayload: 35, bodyLength: 48) == Array(bytes.prefix(32)))
    }

    @Test func refusesATruncatedMessage() {
        let truncated = Array(Self.strongSwanInitRequest.dropLast(10))
        #expect(throws: WireError.self) { try IKEv2.Message.parse(truncated) }
    }

    @Test func refusesAHeaderLengthThatDisagreesWithTheDatagram() {
        var bytes = Self.strongSwanInitRequest
        bytes[27] &+= 1
        #expect { try IKEv2.Message.parse(bytes) } throws: { ($0 as? WireError)?.code == .invalidLength }
    }

    @Test func refusesAPayloadLengthPastTheEnd() {
        var bytes = Self.strongSwanInitRequest
        bytes[30] = 0xff  // SA payload length high byte
        #expect { try IKEv2.Message.parse(bytes) } throws: { ($0 as? WireError)?.code == .truncated }
    }

    @Test func refusesIKEv1AndFutureVersions() {
        var bytes = Self.strongSwanInitRequest
        bytes[17] = 0x10
        #expect { try IKEv2.Message.parse(bytes) } throws: { ($0 as? WireError)?.code == .unsupportedVersion }
        bytes[17] = 0x30
        #expect { try IKEv2.Message.parse(bytes) } throws: { ($0 as? WireError)?.code == .unsupportedVersion }
    }

    @Test func skipsUnknownNonCriticalPayloadAndRefusesUnknownCriticalOne() throws {
        let header = IKEv2.Header(initiatorSPI: 1, responderSPI: 0, exchangeType: .ikeSAInit, flags: .initiator, messageID: 0)
        let plain = IKEv2.Message(header: header, payloads: [.other(type: 200, critical: false, body: [1, 2]), .nonce(Array(repeating: 1, count: 16))])
        let parsed = try IKEv2.Message.parse(plain.serialize())
        #expect(parsed.payloads.count == 2)
        let critical = IKEv2.Message(header: header, payloads: [.other(type: 200, critical: true, body: [1, 2])])
        #expect { try IKEv2.Message.parse(critical.serialize()) } throws: { ($0 as? WireError)?.code == .unsupportedCriticalPayload }
        let body = Array(critical.serialize().dropFirst(IKEv2.Spec.headerLength))
        #expect(IKEv2.Payloads.firstUnsupportedCriticalPayload(body, first: 200) == 200)
        #expect(IKEv2.Payloads.firstUnsupportedCriticalPayload(Array(plain.serialize().dropFirst(28)), first: 200) == nil)
    }

    @Test func refusesShortNonceAndBadTrafficSelectorLength() throws {
        let header = IKEv2.Header(initiatorSPI: 1, responderSPI: 0, exchangeType: .ikeSAInit, flags: .initiator, messageID: 0)
        let short = IKEv2.Message(header: header, payloads: [.nonce([1, 2, 3])])
        #expect { try IKEv2.Message.parse(short.serialize()) } throws: { ($0 as? WireError)?.code == .invalidLength }
        let ts = IKEv2.Message(header: header, payloads: [.trafficSelectorInitiator([IKEv2.TrafficSelector(try IPPrefix.parse("10.0.0.0/8"))])])
        var bytes = ts.serialize()
        bytes[28 + 4 + 4 + 3] = 20  // Selector Length 16 -> 20
        #expect(throws: WireError.self) { try IKEv2.Message.parse(bytes) }
    }

    @Test func refusesTrailingBytesInsideAPayload() throws {
        let header = IKEv2.Header(initiatorSPI: 1, responderSPI: 0, exchangeType: .informational, flags: .initiator, messageID: 0)
        var bytes = IKEv2.Message(header: header, payloads: [.delete(IKEv2.Delete(protocolID: .esp, spis: [[1, 2, 3, 4]]))]).serialize()
        bytes.append(0)
        bytes[27] += 1      // message length
        bytes[28 + 3] += 1  // payload length: one octet more than the SPIs it announces
        #expect { try IKEv2.Message.parse(bytes) } throws: { ($0 as? WireError)?.code == .trailingBytes }
    }
}
