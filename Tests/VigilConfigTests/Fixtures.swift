import Testing
@testable import VigilConfig

/// A small valid document; tests change one line and assert the error's place and text.
/// Line numbers (1-based) are fixed: the entry starts at line 9, `peers` is line 11.
let validDocument = """
global:
  identity: 192.0.2.1
  listen: [192.0.2.1]
  secrets: secrets.yaml
  dpd: {mode: periodic, interval: 1s, retry: 200ms}
crypto-maps:
  A:
    entries:
      - sequence: 10
        ike-version: v2
        peers: [198.51.100.1, 198.51.100.2]
        traffic: [{local: 10.1.0.0/16, remote: 10.2.0.0/16}]
        ike-proposals: [aes256-sha256-x25519]
        esp-proposals: [aes256gcm16]

"""

let validSecrets = """
pre-shared-keys:
  198.51.100.1: example-key-1
  198.51.100.2: example-key-2
  198.51.100.3: example-key-3
  198.51.100.9: example-key-9

"""

/// The document with `line` (exact text, leading spaces included) replaced by `replacement`.
func changing(_ line: String, to replacement: String, in document: String = validDocument) -> String {
    let lines = document.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    precondition(lines.filter { $0 == line }.count == 1, "fixture line not found exactly once: \(line)")
    return lines.map { $0 == line ? replacement : $0 }.joined(separator: "\n")
}

/// The errors loading `yaml` produces (empty when it loads).
func errors(_ yaml: String, secrets: String? = validSecrets) -> [ConfigurationError] {
    do {
        _ = try ConfigurationLoader.load(yaml: yaml, fileName: "test.yaml", secrets: secrets)
        return []
    } catch {
        return error.errors
    }
}

/// The single error loading `yaml` produces; fails the test when there is not exactly one.
func singleError(_ yaml: String, secrets: String? = validSecrets, sourceLocation: SourceLocation = #_sourceLocation) throws -> ConfigurationError {
    let found = errors(yaml, secrets: secrets)
    try #require(found.count == 1, "expected one error, got: \(found.map(\.description))", sourceLocation: sourceLocation)
    return found[0]
}
