import Testing
import VigilAddressing
@testable import VigilConfig

/// An entry's `monitor` key: what it becomes in the model, and each way it is refused (the message names the key and,
/// through the path, the entry).
@Suite struct TunnelMonitorConfigurationTests {
    static let esp = "        esp-proposals: [aes256gcm16]"
    static let path = "crypto-maps.A.entries[10].monitor"

    static func withMonitor(_ monitor: String) -> String {
        changing(esp, to: esp + "\n        monitor: \(monitor)")
    }

    static func entry(_ yaml: String) throws -> CryptoMapEntry {
        let configuration = try ConfigurationLoader.load(yaml: yaml, fileName: "test.yaml", secrets: validSecrets)
        return try #require(configuration.cryptoMaps.first?.entries.first)
    }

    @Test func fullKeyIsRead() throws {
        let entry = try Self.entry(Self.withMonitor("{ address: 10.2.0.10, source: 10.1.0.1, interval: 2s, threshold: 3 }"))
        #expect(entry.monitor == TunnelMonitorSettings(address: IPAddress("10.2.0.10")!, source: IPAddress("10.1.0.1")!,
                                                       interval: .seconds(2), threshold: 3))
    }

    @Test func configCheckSummaryShowsTheMonitor() throws {
        let yaml = Self.withMonitor("{ address: 10.2.0.10, source: 10.1.0.1, interval: 2s, threshold: 3 }")
        let configuration = try ConfigurationLoader.load(yaml: yaml, fileName: "test.yaml", secrets: validSecrets)
        #expect(configuration.normalizedSummary.contains("      monitor: echo 10.1.0.1 -> 10.2.0.10 every 2s, dead after 3 unanswered\n"))
    }

    @Test func intervalAndThresholdDefaultToPaloAltos() throws {
        let entry = try Self.entry(Self.withMonitor("{ address: 10.2.0.10, source: 10.1.0.1 }"))
        #expect(entry.monitor?.interval == .seconds(3))
        #expect(entry.monitor?.threshold == 5)
    }

    @Test func absentKeyMonitorsNothing() throws {
        #expect(try Self.entry(validDocument).monitor == nil)
    }

    @Test func addressAndSourceAreRequired() {
        let found = errors(Self.withMonitor("{ interval: 2s }"))
        #expect(found.map(\.path) == ["\(Self.path).address", "\(Self.path).source"])
        #expect(found.allSatisfy { $0.message.hasPrefix("required key") })
    }

    @Test func addressMustParse() throws {
        let error = try singleError(Self.withMonitor("{ address: 10.2.0.300, source: 10.1.0.1 }"))
        #expect(error.path == "\(Self.path).address")
        #expect(error.message == "'10.2.0.300' is not an IP address; allowed: an IPv4 address such as 10.2.0.10")
    }

    @Test func ipv6IsRefusedClearly() throws {
        let yaml = changing("        traffic: [{local: 10.1.0.0/16, remote: 10.2.0.0/16}]",
                            to: "        traffic: [{local: '2001:db8:1::/48', remote: '2001:db8:2::/48'}]",
                            in: changing(Self.esp, to: Self.esp + "\n        monitor: { address: '2001:db8:2::10', source: '2001:db8:1::1' }"))
        let found = errors(yaml)
        #expect(found.map(\.path) == ["\(Self.path).address", "\(Self.path).source"])
        #expect(found.allSatisfy { $0.message.contains("is IPv6; tunnel monitoring sends ICMP (IPv4) echo requests only") })
    }

    @Test func sourceOutsideTheLocalSelectors() throws {
        let error = try singleError(Self.withMonitor("{ address: 10.2.0.10, source: 192.0.2.1 }"))
        #expect(error.path == "\(Self.path).source")
        #expect(error.message.hasPrefix("source 192.0.2.1 is not inside a local traffic selector of this entry (10.1.0.0/16 <=> 10.2.0.0/16)"))
    }

    @Test func addressOutsideTheRemoteSelectors() throws {
        let error = try singleError(Self.withMonitor("{ address: 10.3.0.10, source: 10.1.0.1 }"))
        #expect(error.path == "\(Self.path).address")
        #expect(error.message.hasPrefix("address 10.3.0.10 is not inside a remote traffic selector of this entry"))
    }

    @Test func sourceAndAddressMustShareOneSelectorPair() throws {
        let yaml = changing(
            "        traffic: [{local: 10.1.0.0/16, remote: 10.2.0.0/16}]",
            to: "        traffic: [{local: 10.1.0.0/16, remote: 10.2.0.0/16}, {local: 10.5.0.0/16, remote: 10.6.0.0/16}]",
            in: Self.withMonitor("{ address: 10.6.0.10, source: 10.1.0.1 }"))
        let error = try singleError(yaml)
        #expect(error.path == "\(Self.path).address")
        #expect(error.message.hasPrefix("source 10.1.0.1 and address 10.6.0.10 are not in one traffic selector pair"))
    }

    @Test func intervalBounds() throws {
        let low = try singleError(Self.withMonitor("{ address: 10.2.0.10, source: 10.1.0.1, interval: 99ms }"))
        #expect(low.path == "\(Self.path).interval")
        #expect(low.message == "99ms is out of range; allowed: 100ms to 1h")
        let high = try singleError(Self.withMonitor("{ address: 10.2.0.10, source: 10.1.0.1, interval: 61m }"))
        #expect(high.message == "61m is out of range; allowed: 100ms to 1h")
    }

    @Test func thresholdBounds() throws {
        for value in ["0", "101"] {
            let error = try singleError(Self.withMonitor("{ address: 10.2.0.10, source: 10.1.0.1, threshold: \(value) }"))
            #expect(error.path == "\(Self.path).threshold")
            #expect(error.message == "\(value) is out of range; allowed: 1 to 100")
        }
    }

    @Test func unknownKeysAreRefused() throws {
        let error = try singleError(Self.withMonitor("{ address: 10.2.0.10, source: 10.1.0.1, treshold: 3 }"))
        #expect(error.path == "\(Self.path).treshold")
        #expect(error.message.hasPrefix("unknown key 'treshold' (did you mean 'threshold'?)"))
    }
}
