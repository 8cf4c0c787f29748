import Testing
import VigilAddressing

@Suite struct IPAddressTests {
    @Test func parsesAndPrintsBothFamilies() throws {
        #expect(IPAddress("192.0.2.1")?.description == "192.0.2.1")
        #expect(IPAddress("192.0.2.1")?.bytes == [192, 0, 2, 1])
        #expect(IPAddress("2001:db8::1")?.description == "2001:db8::1")
        #expect(IPAddress("2001:db8::1")?.bytes.count == 16)
        #expect(IPAddress("300.1.1.1") == nil)
        #expect(IPAddress("gw1.example.net") == nil)
        #expect(IPAddress(bytes: [10, 0, 0, 1]) == .v4(0x0A00_0001))
    }

    @Test func prefixesNormalizeContainAndOverlap() throws {
        let a = try IPPrefix.parse("10.1.0.0/16")
        let b = try IPPrefix.parse("10.1.2.0/24")
        let c = try IPPrefix.parse("10.2.0.0/16")
        #expect(a.overlaps(b) && b.overlaps(a))
        #expect(!a.overlaps(c))
        #expect(a.contains(IPAddress("10.1.200.3")!))
        #expect(a.last == IPAddress("10.1.255.255"))
        #expect(try IPPrefix.parse("2001:db8::/32").last == IPAddress("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"))
        #expect(try IPPrefix.parse("192.0.2.7").length == 32)
        #expect(!a.overlaps(try IPPrefix.parse("2001:db8::/32")))
    }

    @Test func rejectsMalformedPrefixesWithReasons() {
        #expect(throws: IPPrefix.ParseError.hostBitsSet("10.1.2.3/16", network: "10.1.0.0/16")) {
            try IPPrefix.parse("10.1.2.3/16")
        }
        #expect(throws: IPPrefix.ParseError.lengthOutOfRange(33, family: .ipv4)) { try IPPrefix.parse("10.0.0.0/33") }
        #expect(throws: IPPrefix.ParseError.malformedLength("x")) { try IPPrefix.parse("10.0.0.0/x") }
        #expect(throws: IPPrefix.ParseError.malformedAddress("10.0.0")) { try IPPrefix.parse("10.0.0/8") }
    }
}

@Suite struct IdentityTests {
    @Test func parsesStrongSwanStyleText() {
        #expect(Identity("192.0.2.1") == .address(IPAddress("192.0.2.1")!))
        #expect(Identity("@gw.example.net") == .fqdn("gw.example.net"))
        #expect(Identity("gw.example.net") == .fqdn("gw.example.net"))
        #expect(Identity("ops@example.net") == .email("ops@example.net"))
        #expect(Identity("@#0a0b") == .keyID([0x0A, 0x0B]))
        #expect(Identity("") == nil)
    }

    @Test func roundTripsWireForm() {
        for identity in [Identity.address(IPAddress("2001:db8::1")!), .fqdn("a.example"), .email("x@a.example"), .keyID([1, 2])] {
            #expect(Identity(idType: identity.idType, data: identity.data) == identity)
        }
        #expect(Identity(idType: 1, data: [1, 2, 3]) == nil)
    }
}
