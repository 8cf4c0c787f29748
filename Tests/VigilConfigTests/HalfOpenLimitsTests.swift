import Testing
@testable import VigilConfig

/// `global.half-open-per-source`, `half-open-total`, `half-open-lifetime`, `cookie-threshold` (issue 13): optional,
/// range-checked, each refusal naming its key; unset keys leave the engines' defaults.
@Suite struct HalfOpenLimitsTests {
    static func document(_ lines: String) -> String {
        changing("  secrets: secrets.yaml", to: "  secrets: secrets.yaml\n" + lines)
    }

    @Test func unsetKeysLeaveTheEngineDefaults() throws {
        let configuration = try ConfigurationLoader.load(yaml: validDocument, fileName: "test.yaml", secrets: validSecrets)
        #expect(configuration.global.halfOpen == HalfOpenSettings())
        #expect(!configuration.normalizedSummary.contains("half-open"))
    }

    @Test func allFourKeysAreRead() throws {
        let yaml = Self.document("  half-open-per-source: 4\n  half-open-total: 64\n  half-open-lifetime: 20s\n  cookie-threshold: 3")
        let configuration = try ConfigurationLoader.load(yaml: yaml, fileName: "test.yaml", secrets: validSecrets)
        #expect(configuration.global.halfOpen == HalfOpenSettings(perSource: 4, total: 64, lifetime: .seconds(20), cookieThreshold: 3))
        let summary = configuration.normalizedSummary
        for line in ["half-open-per-source: 4", "half-open-total: 64", "half-open-lifetime: 20s", "cookie-threshold: 3"] {
            #expect(summary.contains(line), "\(summary)")
        }
    }

    @Test(arguments: [
        ("  half-open-per-source: 0", "global.half-open-per-source", "out of range"),
        ("  half-open-per-source: 1025", "global.half-open-per-source", "out of range"),
        ("  half-open-per-source: many", "global.half-open-per-source", "is not an integer"),
        ("  half-open-total: 0", "global.half-open-total", "out of range"),
        ("  half-open-total: 70000", "global.half-open-total", "out of range"),
        ("  half-open-lifetime: 0s", "global.half-open-lifetime", "out of range"),
        ("  half-open-lifetime: 10m", "global.half-open-lifetime", "out of range"),
        ("  half-open-lifetime: soon", "global.half-open-lifetime", ""),
        ("  cookie-threshold: 0", "global.cookie-threshold", "out of range"),
        ("  cookie-threshold: -1", "global.cookie-threshold", ""),
    ])
    func badValuesAreRefusedNamingTheKey(line: String, path: String, message: String) {
        let found = errors(Self.document(line))
        #expect(found.count == 1, "\(found)")
        #expect(found.first?.path == path, "\(found)")
        #expect(message.isEmpty || found.first?.message.contains(message) == true, "\(found)")
    }

    @Test func perSourceAboveTheTotalIsRefused() {
        let found = errors(Self.document("  half-open-per-source: 16\n  half-open-total: 8"))
        #expect(found.map(\.path) == ["global.half-open-per-source"], "\(found)")
        #expect(found.first?.message.contains("more than half-open-total (8)") == true, "\(found)")
    }

    @Test func aMisspelledKeyIsRefused() {
        let found = errors(Self.document("  half-open-per-src: 4"))
        #expect(found.map(\.path) == ["global.half-open-per-src"], "\(found)")
    }
}
