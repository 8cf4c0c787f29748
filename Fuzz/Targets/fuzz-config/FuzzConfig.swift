import VigilConfig
import VigilFuzzSupport

/// The configuration loader on YAML text (no file I/O): YAML composition (Yams), the document parser, validation,
/// the secrets document, and the normalized summary of what loaded. An input starting with `#secrets` is the
/// secrets document for a fixed main document; any other input is the main document with fixed secrets.
enum FuzzConfig {
    static let secretsMarker = Array("#secrets".utf8)

    static let mainDocument = """
        global:
          identity: 192.0.2.1
          listen: [192.0.2.1]
          secrets: fuzz.secrets.yaml
        crypto-maps:
          A:
            entries:
              - sequence: 10
                ike-version: v2
                peers: [198.51.100.1, {address: 198.51.100.2, identity: "@gw2.example"}]
                traffic: [{local: 10.1.0.0/16, remote: 10.2.0.0/16}]
                ike-proposals: [aes256-sha256-x25519]
                esp-proposals: [aes256gcm16]

        """

    static let secretsDocument = """
        pre-shared-keys:
          198.51.100.1: example-key-1
          198.51.100.2: example-key-2
          198.51.100.3: example-key-3
          203.0.113.7: example-key-7
          "@gw2.example": example-key-gw2

        """

    static func run(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        let loaded: VigilConfiguration
        do {
            if bytes.starts(with: secretsMarker) {
                loaded = try ConfigurationLoader.load(yaml: mainDocument, fileName: "fuzz.yaml", secrets: text)
            } else {
                loaded = try ConfigurationLoader.load(yaml: text, fileName: "fuzz.yaml", secrets: secretsDocument)
            }
        } catch {
            for problem in error.errors { _ = problem.description }
            return
        }
        _ = loaded.normalizedSummary
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzConfig.run(fuzzBytes(data, size))
    return 0
}

#if !VIGIL_LIBFUZZER
@main enum Replay {
    static func main() { replayFiles(Array(CommandLine.arguments.dropFirst())) { FuzzConfig.run($0); return "" } }
}
#endif
