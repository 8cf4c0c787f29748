import Foundation
import Testing
import VigilConfig
@testable import VigilCiscoImport

/// Loads an import's output as `vigil config check` does (ConfigurationLoader on the YAML and its secrets).
private func load(_ result: CiscoImportResult) throws -> VigilConfiguration {
    try ConfigurationLoader.load(yaml: result.yaml, fileName: "out/vigil.yaml", secrets: result.secrets)
}

private func entry(_ configuration: VigilConfiguration, _ map: String, _ sequence: Int) -> CryptoMapEntry? {
    configuration.cryptoMaps.first { $0.name == map }?.entries.first { $0.sequence == sequence }
}

private func prefix(_ text: String) throws -> IPPrefix { try IPPrefix.parse(text) }

@Suite struct CiscoImportTests {
    @Test func anIKEv1BranchWithTwoMapsLoadsAsVigilConfiguration() throws {
        let result = try CiscoImport.convert(Fixtures.ikev1)
        let configuration = try load(result)
        #expect(result.entries == 3)
        #expect(configuration.global.listen == [IPAddress("192.0.2.1")!, IPAddress("192.0.2.129")!])
        #expect(configuration.global.identity == .address(IPAddress("192.0.2.1")!))
        // `crypto isakmp keepalive 10 periodic`: no retry written, Cisco's 2 s.
        #expect(configuration.global.dpd == DPDSettings(mode: .periodic, interval: .seconds(10), retry: .seconds(2), retries: 5, action: .restart))

        let hq = try #require(entry(configuration, "HQ", 10))
        #expect(hq.ikeVersion == .v1)
        // `set peer 198.51.100.1 default` is tried first although written second.
        #expect(hq.peers.map(\.address.description) == ["198.51.100.1", "198.51.100.2"])
        #expect(hq.preferredPeer?.address.description == "198.51.100.1")
        #expect(hq.traffic.map(\.local) == [try prefix("10.1.0.0/16"), try prefix("10.1.0.10/32")])
        #expect(hq.traffic.map(\.remote) == [try prefix("10.2.0.0/16"), try prefix("10.9.9.9/32")])
        #expect(hq.espProposals.map(\.description) == ["aes256gcm16", "aes256-sha256"])
        #expect(hq.ikeProposals.map(\.description) == ["aes256-sha256-prfsha256-modp2048", "aes128-sha1-prfsha1-ecp256"])
        #expect(hq.pfsGroup?.keyword == "modp2048")
        #expect(hq.ikeLifetime == .seconds(28800))
        #expect(hq.childLifetime == .seconds(3600))
        #expect(hq.idleTime == .seconds(600))
        #expect(hq.peers.map(\.preSharedKey) == [Secret(bytes: Array("hq-primary-key".utf8)), Secret(bytes: Array("hq-backup-key".utf8))])

        let numbered = try #require(entry(configuration, "HQ", 20))
        #expect(numbered.traffic.map(\.local) == [try prefix("10.3.0.0/24")])
        #expect(numbered.espProposals.map(\.description) == ["aes128-sha1"])

        let partner = try #require(entry(configuration, "PARTNER", 10))
        #expect(partner.peers.map(\.address.description) == ["203.0.113.20", "203.0.113.21"])
        #expect(partner.preferredPeer == nil)
        #expect(partner.childLifetime == .seconds(7200))
        // `crypto isakmp key ... address 203.0.113.0 255.255.255.0` covers both partner peers.
        #expect(Set(partner.peers.map(\.preSharedKey)) == [Secret(bytes: Array("partner-key".utf8))])
    }

    @Test func everyLineNotImportedIsListedWithItsNumber() throws {
        let result = try CiscoImport.convert(Fixtures.ikev1)
        #expect(result.behaviourChanges.isEmpty)
        let outside = result.unrecognized.filter { $0.kind == .outsideIPsec }
        let lines = Fixtures.ikev1.split(separator: "\n", omittingEmptySubsequences: false).map { String($0.drop(while: { $0 == " " })) }
        for line in outside { #expect(lines[line.line - 1] == line.text) }
        #expect(outside.map(\.text) == [
            "version 15.4", "service timestamps debug datetime msec", "description WAN to the ISP", "duplex auto",
            "interface GigabitEthernet0/2", "ip address 10.1.0.1 255.255.0.0", "ip route 0.0.0.0 0.0.0.0 192.0.2.254",
            "line vty 0 4", "transport input ssh",
        ])
        #expect(result.unrecognized.allSatisfy { $0.kind == .outsideIPsec })
    }

    @Test func anIKEv2HeadEndWithProposalsKeyringAndProfileDPD() throws {
        let result = try CiscoImport.convert(Fixtures.ikev2)
        #expect(result.unrecognized.filter { $0.kind != .outsideIPsec }.isEmpty, "\(result.unrecognized)")
        let configuration = try load(result)
        let vpn = try #require(entry(configuration, "VPN", 10))
        #expect(vpn.ikeVersion == .v2)
        #expect(vpn.ikeProposals.map(\.description) == ["aes256gcm16-prfsha384-ecp384", "aes256-aes128-sha256-sha1-prfsha256-prfsha1-ecp256-modp2048"])
        #expect(vpn.espProposals.map(\.description) == ["aes256gcm16"])
        #expect(vpn.pfsGroup?.keyword == "ecp384")
        #expect(vpn.ikeLifetime == .seconds(14400))
        #expect(vpn.localIdentity == .fqdn("hub.example.net"))
        #expect(vpn.dpd == DPDSettings(mode: .onDemand, interval: .seconds(10), retry: .seconds(3), retries: 5, action: .restart))
        #expect(vpn.traffic.map(\.remote) == [try prefix("0.0.0.0/0")])
        #expect(vpn.peers.map(\.preSharedKey) == [Secret(bytes: Array("site-a-key".utf8)), Secret(bytes: Array("site-a-backup-key".utf8))])
        // No IKEv1 entry: no global keepalive, DPD off unless an entry says otherwise.
        #expect(configuration.global.dpd.mode == .off)
    }

    @Test func unsupportedFeaturesAreReportedNeverGuessed() throws {
        let config = """
        crypto isakmp policy 5
         encr 3des
         hash md5
         authentication pre-share
         group 2
        crypto isakmp policy 10
         encr aes 256
         authentication pre-share
         group 14
        crypto isakmp key k1 address 198.51.100.1
        crypto isakmp keepalive 10 30
        crypto isakmp nat keepalive 20
        crypto ipsec transform-set OLD esp-3des esp-md5-hmac
        crypto ipsec transform-set GOOD esp-aes 256 esp-sha256-hmac
         mode transport
        crypto ipsec transform-set SPARE esp-gcm 128
        crypto map M 10 ipsec-isakmp
         set peer 198.51.100.1
         set transform-set OLD GOOD
         set pfs group5
         set security-association lifetime kilobytes 4608000
         set reverse-route
         match address ACL
        crypto map UNAPPLIED 10 ipsec-isakmp
         set peer 198.51.100.9
        ip access-list extended ACL
         permit ip 10.1.0.0 0.0.255.255 10.2.0.0 0.0.255.255
         deny ip host 10.1.0.1 any
         permit ip 10.1.0.0 0.255.0.255 10.3.0.0 0.0.0.255
         permit tcp 10.1.0.0 0.0.255.255 10.4.0.0 0.0.255.255 eq 443
        interface Gi1
         ip address 192.0.2.1 255.255.255.0
         crypto map M
        """
        let result = try CiscoImport.convert(config)
        let byLine = Dictionary(grouping: result.unrecognized, by: \.line)
        func kinds(_ line: Int) -> [Unrecognized.Kind] { byLine[line]?.map(\.kind) ?? [] }
        #expect(kinds(2) == [.unsupported])                 // encr 3des
        #expect(kinds(3) == [.unsupported])                 // hash md5
        #expect(kinds(5) == [.unsupported])                 // group 2
        #expect(kinds(11) == [.unsupported])                // keepalive retry 30 s > interval 10 s
        #expect(kinds(12) == [.unsupported])                // crypto isakmp nat keepalive
        #expect(kinds(13) == [.unsupported])                // esp-3des esp-md5-hmac
        #expect(byLine[13]?.first?.reason.contains("esp-3des") == true)
        #expect(kinds(15) == [.unsupported])                // mode transport
        #expect(kinds(16) == [.unused])                     // SPARE, set by no entry
        #expect(kinds(20) == [.unsupported])                // set pfs group5
        #expect(kinds(21) == [.unsupported])                // lifetime kilobytes
        #expect(kinds(22) == [.unsupported])                // set reverse-route
        #expect(kinds(24) == [.unused])                     // a map on no interface
        #expect(kinds(28) == [.unsupported])                // deny
        #expect(kinds(29) == [.unsupported])                // 0.255.0.255 is not contiguous
        #expect(byLine[29]?.first?.reason.contains("not contiguous") == true)
        #expect(kinds(30) == [.unsupported])                // a protocol and a port
        #expect(result.unrecognized.count == 15, "\(result.unrecognized)")
        #expect(result.behaviourChanges.count == 13)

        // What could be imported still loads: one subnet pair, the GOOD transform set, the aes256 policy, DPD off.
        let configuration = try load(result)
        let m = try #require(entry(configuration, "M", 10))
        #expect(m.traffic.count == 1)
        #expect(m.espProposals.map(\.description) == ["aes256-sha256"])
        #expect(m.ikeProposals.map(\.description) == ["aes256-sha1-prfsha1-modp2048"])
        #expect(m.pfsGroup == nil)
        #expect(configuration.global.dpd.mode == .off)
    }

    @Test func nothingToImportIsAnErrorThatStillListsTheLines() throws {
        let error = #expect(throws: CiscoImportError.self) {
            try CiscoImport.convert("hostname lonely\ncrypto map M 10 ipsec-isakmp\n set peer 198.51.100.1\n")
        }
        #expect(error?.message.contains("nothing to listen on") == true)
        #expect(error?.unrecognized.map(\.line) == [2])
    }

    @Test func wildcardMasksBecomePrefixesOnlyWhenContiguous() {
        #expect(CiscoAddresses.prefixLength(wildcard: 0x0000_FFFF) == 16)
        #expect(CiscoAddresses.prefixLength(wildcard: 0) == 32)
        #expect(CiscoAddresses.prefixLength(wildcard: 0xFFFF_FFFF) == 0)
        #expect(CiscoAddresses.prefixLength(wildcard: 0x0000_007F) == 25)
        #expect(CiscoAddresses.prefixLength(wildcard: 0x00FF_00FF) == nil)
        #expect(CiscoAddresses.prefixLength(wildcard: 0x0000_0100) == nil)
        var words = ["10.1.2.0", "0.0.0.255", "host", "10.9.9.9", "any"][...]
        #expect((try? CiscoAddresses.aclOperand(&words).get())?.description == "10.1.2.0/24")
        #expect((try? CiscoAddresses.aclOperand(&words).get())?.description == "10.9.9.9/32")
        #expect((try? CiscoAddresses.aclOperand(&words).get())?.description == "0.0.0.0/0")
    }

    @Test func keepaliveWordsFollowCiscoDefaults() throws {
        func globalDPD(_ keepalive: String) throws -> DPDSettings {
            let config = """
            crypto isakmp policy 10
             encr aes 256
             authentication pre-share
             group 14
            crypto isakmp key k address 198.51.100.1
            \(keepalive)
            crypto ipsec transform-set T esp-gcm 256
            crypto map M 10 ipsec-isakmp
             set peer 198.51.100.1
             set transform-set T
             match address 150
            access-list 150 permit ip 10.1.0.0 0.0.255.255 10.2.0.0 0.0.255.255
            interface Gi1
             ip address 192.0.2.1 255.255.255.0
             crypto map M
            """
            let result = try CiscoImport.convert(config)
            #expect(result.unrecognized.isEmpty, "\(result.unrecognized)")
            return try load(result).global.dpd
        }
        #expect(try globalDPD("crypto isakmp keepalive 30") == DPDSettings(mode: .onDemand, interval: .seconds(30), retry: .seconds(2), retries: 5, action: .restart))
        #expect(try globalDPD("crypto isakmp keepalive 10 5 periodic").mode == .periodic)
        #expect(try globalDPD("crypto isakmp keepalive 10 5 periodic").retry == .seconds(5))
        #expect(try globalDPD("crypto isakmp keepalive 60 on-demand") == DPDSettings(mode: .onDemand, interval: .seconds(60), retry: .seconds(2), retries: 5, action: .restart))
        #expect(try globalDPD("!").mode == .off)
    }

    @Test func hostnameIdentityAndALoopbackLocalAddress() throws {
        // `crypto isakmp identity hostname`: the FQDN of hostname and ip domain name. `local-address Loopback0`: IKE
        // listens on the loopback's address, not on the interface the map is applied to.
        let config = Fixtures.ikev1
            .replacingOccurrences(of: "crypto isakmp keepalive 10 periodic\n",
                                  with: "crypto isakmp keepalive 10 periodic\ncrypto isakmp identity hostname\ncrypto map HQ local-address Loopback0\n")
            .replacingOccurrences(of: "interface GigabitEthernet0/2\n", with: "interface Loopback0\n ip address 192.0.2.200 255.255.255.255\n!\ninterface GigabitEthernet0/2\n")
        let result = try CiscoImport.convert(config)
        #expect(result.behaviourChanges.isEmpty, "\(result.behaviourChanges)")
        let configuration = try load(result)
        #expect(configuration.global.identity == .fqdn("branch1.example.net"))
        #expect(configuration.global.listen == [IPAddress("192.0.2.200")!, IPAddress("192.0.2.129")!])
    }

    @Test func aKeyringPeerIdentityBecomesThePeersIdentity() throws {
        let config = Fixtures.ikev2.replacingOccurrences(
            of: "  pre-shared-key site-a-key\n", with: "  pre-shared-key site-a-key\n  identity fqdn site-a.example.net\n")
        let result = try CiscoImport.convert(config)
        #expect(result.behaviourChanges.isEmpty, "\(result.behaviourChanges)")
        let vpn = try #require(entry(try load(result), "VPN", 10))
        #expect(vpn.peers.map(\.identity) == [.fqdn("site-a.example.net"), nil])
        #expect(vpn.preferredPeer?.address.description == "198.51.100.10")
        // The key is filed under the identity, where Vigil looks for a peer that has one.
        #expect(vpn.peers[0].preSharedKey == Secret(bytes: Array("site-a-key".utf8)))
        #expect(result.secrets.contains("\"@site-a.example.net\": \"site-a-key\""))
    }

    @Test func quotingKeepsKeysAndNamesIntact() throws {
        #expect(YAMLText.scalar("aes256-sha256") == "aes256-sha256")
        #expect(YAMLText.scalar("2001:db8::1") == "\"2001:db8::1\"")
        #expect(YAMLText.scalar("off") == "\"off\"")
        #expect(YAMLText.quoted("a\"b\\c") == "\"a\\\"b\\\\c\"")
        #expect(YAMLText.duration(seconds: 86400) == "1d")
        #expect(YAMLText.duration(seconds: 5400) == "90m")
        #expect(YAMLText.duration(seconds: 45) == "45s")
    }
}

@Suite struct FarSideRoundTripTests {
    /// deploy/far-side/site-to-site.cisco-ios.txt is the router side of config/site-to-site.yaml: imported, it is that
    /// tunnel seen from the router (the subnets swapped, Vigil's address the peer).
    @Test func theShippedIOSFarSideImportsAsTheMirrorOfTheSiteToSiteExample() throws {
        let root = String(#filePath).split(separator: "/").dropLast(3).joined(separator: "/")
        let text = try String(contentsOfFile: "/" + root + "/deploy/far-side/site-to-site.cisco-ios.txt", encoding: .utf8)
        let result = try CiscoImport.convert(text)
        #expect(result.unrecognized.isEmpty, "\(result.unrecognized)")
        let configuration = try ConfigurationLoader.load(yaml: result.yaml, fileName: "out/vigil.yaml", secrets: result.secrets)
        let entry = try #require(configuration.cryptoMaps.first?.entries.first)
        #expect(configuration.global.listen == [IPAddress("198.51.100.1")!])
        #expect(entry.peers.map(\.address.description) == ["192.0.2.1"])
        #expect(entry.traffic.map(\.description) == ["10.2.0.0/16 <=> 10.1.0.0/16", "10.3.0.0/24 <=> 10.1.0.0/16"])
        #expect(entry.ikeProposals.map(\.description) == ["aes256-sha256-prfsha256-x25519", "aes256gcm16-prfsha256-ecp256"])   // the implied PRF spelt out
        #expect(entry.pfsGroup?.keyword == "x25519")
        #expect(entry.dpd.mode == .onDemand)
    }
}

@Suite struct CiscoImportRobustnessTests {
    /// Every line of the fixtures cut short at every word: the import reports or refuses, never traps.
    @Test func truncatedLinesAreReportedNotTrapped() {
        var conversions = 0
        for fixture in [Fixtures.ikev1, Fixtures.ikev2] {
            let lines = fixture.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            for (index, line) in lines.enumerated() {
                let indent = line.prefix(while: { $0 == " " })
                let words = line.split(separator: " ")
                for count in 0 ..< words.count {
                    var changed = lines
                    changed[index] = indent + words.prefix(count).joined(separator: " ")
                    _ = try? CiscoImport.convert(changed.joined(separator: "\n"))
                    conversions += 1
                }
            }
        }
        #expect(conversions > 300)
    }

    @Test func aBannerIsReadPastAsOneLineOutsideIPsec() throws {
        let config = "banner motd ^C\ncrypto map X 1 ipsec-isakmp\n  set peer 1.2.3.4\n^C\n" + Fixtures.ikev2
        let result = try CiscoImport.convert(config)
        #expect(result.unrecognized.first == Unrecognized(line: 1, text: "banner motd", reason: "not an IPsec command (4 lines); not read", kind: .outsideIPsec))
        #expect(result.entries == 1)
    }
}

@Suite struct ExampleConfigurationTests {
    /// config/cisco-branch.ios.txt, the README's example: three entries, exactly the two lines it shows unsupported.
    @Test func theBranchExampleImportsWithTheTwoLinesTheREADMEShows() throws {
        let root = String(#filePath).split(separator: "/").dropLast(3).joined(separator: "/")
        let text = try String(contentsOfFile: "/" + root + "/config/cisco-branch.ios.txt", encoding: .utf8)
        let result = try CiscoImport.convert(text)
        #expect(result.entries == 3)
        #expect(result.behaviourChanges.map(\.line) == [31, 71])
        #expect(result.behaviourChanges.map(\.text) == ["crypto ipsec transform-set TS-LEGACY esp-3des esp-md5-hmac", "30 deny ip host 10.1.0.66 any"])
        #expect(result.yaml.contains("      # crypto map HQ 10 (line 33): to headquarters\n"))
        _ = try ConfigurationLoader.load(yaml: result.yaml, fileName: "out/vigil.yaml", secrets: result.secrets)
    }
}
