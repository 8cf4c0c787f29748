import Testing
import VigilAddressing
@testable import VigilConfig
import VigilIKE

@Suite struct ModelTests {
    @Test func durationsParseWithUnits() throws {
        let cases: [(String, Duration)] = [
            ("500ms", .milliseconds(500)), ("10s", .seconds(10)), ("5m", .seconds(300)), ("1h", .seconds(3600)),
            ("1d", .seconds(86400)), ("1m30s", .seconds(90)), ("2s500ms", .milliseconds(2500)),
        ]
        for (text, expected) in cases {
            #expect(try DurationText.parse(text).get() == expected, "\(text)")
        }
    }

    @Test func durationsWithoutUnitsOrMalformedAreRefused() {
        #expect(DurationText.parse("10") == .failure(.bareNumber("10")))
        #expect(DurationText.parse("10 sec") == .failure(.malformed("10 sec")))
        #expect(DurationText.parse("-1s") == .failure(.malformed("-1s")))
        #expect(DurationText.parse("s") == .failure(.malformed("s")))
    }

    @Test func durationsFormatShortestExact() {
        #expect(Duration.seconds(5400).configurationText == "1h30m")
        #expect(Duration.milliseconds(2500).configurationText == "2s500ms")
        #expect(Duration.seconds(86400).configurationText == "1d")
        #expect(Duration.zero.configurationText == "0s")
    }

    @Test func dpdDefaultsFollowCisco() throws {
        let yaml = changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {interval: 10s}")
        let configuration = try ConfigurationLoader.load(yaml: yaml, fileName: "test.yaml", secrets: validSecrets)
        let dpd = configuration.cryptoMaps[0].entries[0].dpd
        #expect(dpd == DPDSettings(mode: .onDemand, interval: .seconds(10), retry: .seconds(2), retries: 5, action: .restart))
    }

    @Test func entryOverridesGlobalDPDKeyByKey() throws {
        let yaml = changing("        esp-proposals: [aes256gcm16]", to: "        esp-proposals: [aes256gcm16]\n        dpd: {mode: on-demand, retries: 2}")
        let configuration = try ConfigurationLoader.load(yaml: yaml, fileName: "test.yaml", secrets: validSecrets)
        let entry = configuration.cryptoMaps[0].entries[0]
        #expect(entry.dpd == DPDSettings(mode: .onDemand, interval: .seconds(1), retry: .milliseconds(200), retries: 2, action: .restart))
        #expect(configuration.global.dpd.mode == .periodic)
    }

    @Test func onIdleIsReadGloballyAndPerEntry() throws {
        let global = changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {mode: on-idle, interval: 3s, retry: 500ms}")
        let configuration = try ConfigurationLoader.load(yaml: global, fileName: "test.yaml", secrets: validSecrets)
        #expect(configuration.global.dpd.mode == .onIdle)
        #expect(configuration.cryptoMaps[0].entries[0].dpd
            == DPDSettings(mode: .onIdle, interval: .seconds(3), retry: .milliseconds(500), retries: 5, action: .restart))
        #expect(configuration.normalizedSummary.contains("dpd: on-idle, interval 3s, retry 500ms, retries 5, action restart"))

        let entry = changing("        esp-proposals: [aes256gcm16]", to: "        esp-proposals: [aes256gcm16]\n        dpd: {mode: on-idle}")
        let overridden = try ConfigurationLoader.load(yaml: entry, fileName: "test.yaml", secrets: validSecrets)
        #expect(overridden.cryptoMaps[0].entries[0].dpd.mode == .onIdle)
        #expect(overridden.global.dpd.mode == .periodic)
    }

    @Test func entryDefaults() throws {
        let configuration = try ConfigurationLoader.load(yaml: validDocument, fileName: "test.yaml", secrets: validSecrets)
        let entry = configuration.cryptoMaps[0].entries[0]
        #expect(entry.ikeLifetime == .seconds(86400))
        #expect(entry.childLifetime == .seconds(3600))
        #expect(entry.start)
        #expect(entry.encapsulation == .auto)
        #expect(entry.connectTimeout == .seconds(10))
        #expect(entry.backoff == Backoff(initial: .seconds(1), maximum: .seconds(60)))
        #expect(entry.retransmit == RetransmissionSchedule(timeout: .seconds(1), base: 1.8, tries: 4))
        #expect(entry.pfsGroup == nil)
        #expect(configuration.global.controlSocket == "/run/vigil/vigil.sock")
        #expect(configuration.global.dataplane == .auto)
        #expect(configuration.global.kernel == KernelSettings(routeTable: .number(86), installRoutes: true))
    }

    @Test func identitiesInStrongSwanNotation() throws {
        #expect(try TextForms.identity("192.0.2.1").get() == .address(try #require(IPAddress("192.0.2.1"))))
        #expect(try TextForms.identity("@gw.example.net").get() == .fqdn("gw.example.net"))
        #expect(try TextForms.identity("gw.example.net").get() == .fqdn("gw.example.net"))
        #expect(try TextForms.identity("vpn@gw.example.net").get() == .email("vpn@gw.example.net"))
        #expect(throws: TextFormError.self) { try TextForms.identity("C=CH, O=strongSwan").get() }
    }

    @Test func secretsNeverPrint() {
        let secret = Secret(bytes: Array("hunter2".utf8))
        let peer = Peer(address: .host("vpn.example.net"), identity: nil, preSharedKey: secret)
        #expect("\(secret)" == "<secret>")
        #expect(String(reflecting: secret) == "<secret>")
        var dumped = ""
        dump(peer, to: &dumped)
        #expect(!dumped.contains("hunter2"))
        #expect(!dumped.contains("104"))  // 'h' as a byte
    }

    @Test func summaryListsPeersInOrderAndIsDeterministic() throws {
        let yaml = changing("        peers: [198.51.100.1, 198.51.100.2]", to: "        peers: [{address: 198.51.100.2, default: true}, 198.51.100.1]")
        let first = try ConfigurationLoader.load(yaml: yaml, fileName: "test.yaml", secrets: validSecrets).normalizedSummary
        let second = try ConfigurationLoader.load(yaml: yaml, fileName: "test.yaml", secrets: validSecrets).normalizedSummary
        #expect(first == second)
        #expect(first.contains("""
                entry 10 (IKEv2):
                  peers:
                    1. 198.51.100.2 [default]
                    2. 198.51.100.1
                  preferred peer: 198.51.100.2
            """))
        #expect(first.contains("dpd: periodic, interval 1s, retry 200ms, retries 5, action restart"))
        #expect(first.contains("ike-proposals: aes256-sha256-prfsha256-x25519"))
        #expect(!first.contains("example-key"))
    }
}

@Suite struct RetransmitTests {
    @Test func entryRetransmitOverridesGlobalKeyByKey() throws {
        var yaml = changing("  secrets: secrets.yaml", to: "  secrets: secrets.yaml\n  ike-retransmit: {timeout: 500ms, tries: 6}")
        yaml = changing("        esp-proposals: [aes256gcm16]", to: "        esp-proposals: [aes256gcm16]\n        retransmit: {base: 2}", in: yaml)
        let configuration = try ConfigurationLoader.load(yaml: yaml, fileName: "test.yaml", secrets: validSecrets)
        #expect(configuration.global.ikeRetransmit == RetransmissionSchedule(timeout: .milliseconds(500), base: 1.8, tries: 6))
        #expect(configuration.cryptoMaps[0].entries[0].retransmit == RetransmissionSchedule(timeout: .milliseconds(500), base: 2, tries: 6))
    }

    @Test func retransmitBaseOutOfRange() throws {
        let yaml = changing("  secrets: secrets.yaml", to: "  secrets: secrets.yaml\n  ike-retransmit: {base: 0.5}")
        let error = try singleError(yaml)
        #expect(error.path == "global.ike-retransmit.base")
        #expect(error.message == "0.5 is out of range; allowed: 1.0 to 4.0")
    }
}
