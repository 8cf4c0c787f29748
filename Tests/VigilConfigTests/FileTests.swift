import Foundation
import Testing
@testable import VigilConfig

/// A directory of its own under the temporary directory, removed by `remove()`.
struct ScratchDirectory {
    let path: String

    init() throws {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("vigil-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    @discardableResult
    func write(_ name: String, _ text: String, mode: Int = 0o600) throws -> String {
        let file = (path as NSString).appendingPathComponent(name)
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: file)
        return file
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

@Suite struct FileTests {
    @Test(arguments: [0o644, 0o640, 0o604, 0o660])
    func secretsFileReadableByOthersIsRefused(mode: Int) throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let main = try directory.write("vigil.yaml", validDocument, mode: 0o644)
        let secrets = try directory.write("secrets.yaml", validSecrets, mode: mode)
        let failure = #expect(throws: ConfigurationErrors.self) { try ConfigurationLoader.load(path: main) }
        let errors = try #require(failure).errors
        try #require(errors.count == 1, "\(errors)")
        #expect(errors[0].file == main)
        #expect(errors[0].path == "global.secrets")
        #expect((errors[0].line, errors[0].column) == (4, 12))
        #expect(errors[0].message == "the secrets file '\(secrets)' has mode \(String(format: "%04o", mode)), which lets group or others access it; allowed: no group or other permission bits; fix: chmod 600 \(secrets)")
    }

    @Test func secretsFileWithMode600Loads() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let main = try directory.write("vigil.yaml", validDocument, mode: 0o644)
        let secrets = try directory.write("secrets.yaml", validSecrets, mode: 0o600)
        let configuration = try ConfigurationLoader.load(path: main)
        #expect(configuration.global.secretsPath == secrets)
        #expect(configuration.cryptoMaps[0].entries[0].peers.map(\.preSharedKey.bytes) == [Array("example-key-1".utf8), Array("example-key-2".utf8)])
    }

    @Test func missingSecretsFileIsPlaced() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let main = try directory.write("vigil.yaml", validDocument, mode: 0o644)
        let failure = #expect(throws: ConfigurationErrors.self) { try ConfigurationLoader.load(path: main) }
        let errors = try #require(failure).errors
        #expect(errors.map(\.path) == ["global.secrets"])
        #expect(errors.first?.message.contains("cannot read the secrets file") == true)
    }

    @Test func missingMainFile() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let path = (directory.path as NSString).appendingPathComponent("absent.yaml")
        let failure = #expect(throws: ConfigurationErrors.self) { try ConfigurationLoader.load(path: path) }
        let errors = try #require(failure).errors
        #expect(errors.count == 1)
        #expect(errors.first?.description.hasPrefix("\(path): cannot read the file") == true)
    }

    @Test func secretsFileErrorsNameTheSecretsFile() throws {
        let secrets = """
        pre-shared-keys:
          198.51.100.1: example-key-1
          198.51.100.2: ""
          "@bad name": k
        pre-shared-kyes: {}

        """
        let found = errors(validDocument, secrets: secrets)
        #expect(found.map(\.file) == ["secrets.yaml", "secrets.yaml", "secrets.yaml"])
        #expect(found.map(\.path) == ["pre-shared-keys.198.51.100.2", "pre-shared-keys.@bad name", "pre-shared-kyes"])
        #expect(found.map(\.line) == [3, 4, 5])
        #expect(found.first?.message.hasPrefix("the key is empty") == true)
    }

    @Test func keysAreFoundByIdentityThenAddressAndHexIsDecoded() throws {
        let yaml = changing("        peers: [198.51.100.1, 198.51.100.2]", to: """
                    peers:
                      - address: 198.51.100.1
                        identity: "@peer1.example.net"
                      - vpn.example.net
            """)
        let secrets = """
        pre-shared-keys:
          "@peer1.example.net": 0x0102ff
          198.51.100.1: not-this-one
          VPN.example.net: by-name

        """
        let configuration = try ConfigurationLoader.load(yaml: yaml, fileName: "dir/main.yaml", secrets: secrets)
        let peers = configuration.cryptoMaps[0].entries[0].peers
        #expect(peers[0].identity == .fqdn("peer1.example.net"))
        #expect(peers[0].preSharedKey.bytes == [1, 2, 255])
        #expect(peers[1].address == .host("vpn.example.net"))
        #expect(peers[1].preSharedKey.bytes == Array("by-name".utf8))
        #expect(configuration.global.secretsPath == "dir/secrets.yaml")
    }

    /// A peer with an identity of its own whose key is filed by address (Cisco's `crypto isakmp key ... address`;
    /// IKEv1 Main Mode picks the key before the peer's ID arrives) still finds it; the error names both names.
    @Test func aPeerWithAnIdentityFindsAKeyFiledByItsAddress() throws {
        let yaml = changing("        peers: [198.51.100.1, 198.51.100.2]", to: """
                    peers:
                      - address: 198.51.100.1
                        identity: "@peer1.example.net"
                      - address: 198.51.100.4
                        identity: "@peer4.example.net"
            """)
        let secrets = """
        pre-shared-keys:
          198.51.100.1: by-address

        """
        let missing = try singleError(yaml, secrets: secrets)
        #expect(missing.message == "peer 198.51.100.4 has no pre-shared key in the secrets file; allowed: add one under pre-shared-keys as 'peer4.example.net' or '198.51.100.4'", "\(missing)")
        let configuration = try ConfigurationLoader.load(yaml: yaml, fileName: "dir/main.yaml", secrets: secrets + "  198.51.100.4: four\n")
        let peers = configuration.cryptoMaps[0].entries[0].peers
        #expect(peers[0].preSharedKey.bytes == Array("by-address".utf8))
        #expect(peers[0].expectedIdentity == .fqdn("peer1.example.net"), "the identity expected from the peer stays its own")
    }
}

/// Every example in config/ loads; the copy's secrets files get mode 600 because git keeps only 644/755.
@Suite struct ExampleFileTests {
    static let configDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("config").path

    static var examples: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: configDirectory)) ?? []
        return names.filter { $0.hasSuffix(".yaml") && !$0.hasSuffix(".secrets.yaml") }.sorted()
    }

    @Test func theThreeExamplesExist() {
        #expect(Self.examples == ["ikev1-on-demand.yaml", "multi-map.yaml", "site-to-site.yaml"])
    }

    @Test(arguments: examples)
    func exampleLoads(name: String) throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        for file in try FileManager.default.contentsOfDirectory(atPath: Self.configDirectory) {
            let text = try String(contentsOfFile: (Self.configDirectory as NSString).appendingPathComponent(file), encoding: .utf8)
            try directory.write(file, text, mode: file.hasSuffix(".secrets.yaml") ? 0o600 : 0o644)
        }
        let configuration = try ConfigurationLoader.load(path: (directory.path as NSString).appendingPathComponent(name))
        #expect(!configuration.cryptoMaps.isEmpty)
        for entry in configuration.cryptoMaps.flatMap(\.entries) {
            #expect(entry.peers.allSatisfy { !$0.preSharedKey.bytes.isEmpty })
        }
    }

    @Test func siteToSiteHasThreePeersAndPeriodicDPD() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        for file in ["site-to-site.yaml", "site-to-site.secrets.yaml"] {
            let text = try String(contentsOfFile: (Self.configDirectory as NSString).appendingPathComponent(file), encoding: .utf8)
            try directory.write(file, text)
        }
        let configuration = try ConfigurationLoader.load(path: (directory.path as NSString).appendingPathComponent("site-to-site.yaml"))
        let entry = try #require(configuration.cryptoMaps.first?.entries.first)
        #expect(entry.ikeVersion == .v2)
        #expect(entry.peers.map(\.address.description) == ["198.51.100.1", "198.51.100.2", "203.0.113.7"])
        #expect(entry.preferredPeer?.address.description == "198.51.100.1")
        #expect(entry.dpd == DPDSettings(mode: .periodic, interval: .seconds(1), retry: .milliseconds(200), retries: 3, action: .restart))
    }
}
