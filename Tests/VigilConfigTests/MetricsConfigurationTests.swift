import Testing
import VigilAddressing
@testable import VigilConfig

/// `global.metrics: { listen: ADDRESS:PORT }` (issue 15): off unless set; IPv4 or bracketed IPv6 with a port; each
/// refusal names the field.
@Suite struct MetricsConfigurationTests {
    static func load(_ yaml: String) throws -> VigilConfiguration { try HookConfigurationTests.load(yaml) }
    static func global(_ lines: String) -> String { HookConfigurationTests.global(lines) }

    @Test func offUnlessSet() throws {
        let configuration = try Self.load(validDocument)
        #expect(configuration.global.metrics == nil)
        #expect(!configuration.normalizedSummary.contains("metrics"))
    }

    @Test(arguments: [
        ("192.0.2.1:9464", Endpoint(IPAddress("192.0.2.1")!, 9464)),
        ("0.0.0.0:1", Endpoint(IPAddress("0.0.0.0")!, 1)),
        ("\"[2001:db8::1]:65535\"", Endpoint(IPAddress("2001:db8::1")!, 65535)),
    ])
    func anAddressAndPortAreRead(text: String, endpoint: Endpoint) throws {
        let configuration = try Self.load(Self.global("  metrics: { listen: \(text) }"))
        #expect(configuration.global.metrics == MetricsSettings(listen: endpoint))
        #expect(configuration.normalizedSummary.contains("  metrics: http://\(endpoint)/metrics"))
    }

    @Test(arguments: [
        ("{ listen: 192.0.2.1 }", "global.metrics.listen", "has no ':PORT'"),
        ("{ listen: \"192.0.2.1:0\" }", "global.metrics.listen", "port '0'"),
        ("{ listen: \"192.0.2.1:65536\" }", "global.metrics.listen", "port '65536'"),
        ("{ listen: \"192.0.2.1:http\" }", "global.metrics.listen", "port 'http'"),
        ("{ listen: \"192.0.2.1:\" }", "global.metrics.listen", "port ''"),
        ("{ listen: \"2001:db8::1:9464\" }", "global.metrics.listen", "without brackets"),
        ("{ listen: \"[192.0.2.1]:9464\" }", "global.metrics.listen", "not an IPv6 address"),
        ("{ listen: \"[2001:db8::1]9464\" }", "global.metrics.listen", "no ':PORT'"),
        ("{ listen: \"gw.example.net:9464\" }", "global.metrics.listen", "not an IP address"),
        ("{ }", "global.metrics.listen", "required key 'listen' is missing"),
        ("{ listen: \"192.0.2.1:9464\", port: 9 }", "global.metrics.port", "unknown key 'port'"),
        ("9464", "global.metrics", "allowed: a mapping with keys listen"),
    ])
    func aBadListenIsRefusedByName(value: String, path: String, message: String) throws {
        let error = try singleError(Self.global("  metrics: \(value)"))
        #expect(error.path == path, "\(error)")
        #expect(error.message.contains(message), "\(error)")
        if path == "global.metrics.listen", !message.contains("required") {
            #expect(error.message.contains("allowed: ADDRESS:PORT"), "\(error)")
        }
    }
}
