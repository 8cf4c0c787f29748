import Foundation
import Testing
@testable import VigilConfig

/// fuzz-config found YAML that nests complex keys (`? - ? - ...`) a few kilobytes deep: the YAML library hashes each
/// mapping's keys whole, so composing cost seconds for 4 KB and minutes for 64 KB, and a reload would stall vigild's
/// event loop. Such text is refused before the library sees it, with the line; real configurations still load.
@Suite struct NestingBoundTests {
    @Test func nestedComplexKeysAreRefusedBeforeParsingWithTheLine() throws {
        let deep = validDocument + String(repeating: "? - ", count: 40) + "x\n"
        let error = try singleError(deep)
        #expect(error.line == 15, "\(error)")
        #expect(error.message.contains("nested more than 64 levels deep"), "\(error)")
    }

    /// The fuzzer's own inputs (kept in its seed corpus): each refused at once, with the nesting error.
    @Test func theFuzzFindingsAreRefusedWithTheNestingError() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Fuzz/corpus/fuzz-config").standardized
        let findings = try FileManager.default.contentsOfDirectory(atPath: corpus.path).filter { $0.hasPrefix("finding-nested-complex-keys-") }
        #expect(findings.count == 2)
        for name in findings {
            let text = String(decoding: try Data(contentsOf: corpus.appendingPathComponent(name)), as: UTF8.self)
            let found = errors(text)
            #expect(found.contains { $0.message.contains("nested more than 64 levels deep") }, "\(name): \(found.map(\.description))")
        }
    }

    @Test func deepFlowCollectionsAcrossLinesAreRefused() throws {
        let opened = String(repeating: "[\n", count: 70)
        let error = try singleError("global: " + opened + String(repeating: "]", count: 70) + "\n")
        #expect(error.message.contains("nested more than 64 levels deep"), "\(error)")
        #expect(error.line > 1 && error.line <= 70, "the line where the bound was passed: \(error)")
    }

    @Test func bracketsInQuotesAndCommentsAndPlainScalarsDoNotCount() {
        let brackets = String(repeating: "[", count: 100)
        let document = changing("  identity: 192.0.2.1", to: "  identity: 192.0.2.1  # \(brackets)")
        #expect(errors(document).isEmpty, "\(errors(document).map(\.description))")
        let quoted = changing("      - sequence: 10", to: "      - sequence: 10\n        local-identity: \"\(brackets)\\\"\(brackets)\"")
        #expect(!errors(quoted).contains { $0.message.contains("nested") }, "\(errors(quoted).map(\.description))")
        let plain = changing("      - sequence: 10", to: "      - sequence: 10\n        local-identity: a\(brackets)")
        #expect(!errors(plain).contains { $0.message.contains("nested") }, "\(errors(plain).map(\.description))")
    }

    @Test func theBoundIsAnOverestimateThatLeavesRealConfigurationsAlone() {
        #expect(NestingBound.firstViolation(in: validDocument) == nil)
        #expect(NestingBound.firstViolation(in: validSecrets) == nil)
        // 64 levels of indentation and indicators pass; one more does not.
        #expect(NestingBound.firstViolation(in: String(repeating: " ", count: 62) + "- x") == nil)
        #expect(NestingBound.firstViolation(in: String(repeating: " ", count: 63) + "- x")?.depth == 65)
        #expect(NestingBound.firstViolation(in: "a: " + String(repeating: "{", count: 65))?.depth == 65)
        #expect(NestingBound.firstViolation(in: "a: " + String(repeating: "{\"k\":", count: 65))?.depth == 65, "JSON-style keys")
        #expect(NestingBound.firstViolation(in: "a: [x" + String(repeating: "[", count: 64))?.depth == 65, "a flow scalar ends at a bracket")
    }

    @Test func theSecretsFileIsBoundedToo() throws {
        let error = try #require(errors(validDocument, secrets: validSecrets + String(repeating: "- ", count: 40) + "x\n").first)
        #expect(error.message.contains("nested more than 64 levels deep"), "\(error)")
    }
}
