import VigilAddressing
import Foundation
import Yams

/// Reads, parses and validates a configuration; every problem found comes back at once.
public enum ConfigurationLoader {
    /// How the secrets file is obtained: from disk (with its permission check) or as text (tests).
    enum SecretsSource {
        case disk
        case text(String?)
    }

    /// Loads the main file at `path` and the secrets file it names (relative to the main file's directory).
    public static func load(path: String) throws(ConfigurationErrors) -> VigilConfiguration {
        let yaml: String
        do {
            yaml = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationErrors([ConfigurationError(
                file: path, line: 0, column: 0, path: "", message: "cannot read the file: \(Self.reason(error, path: path))")])
        }
        return try load(yaml: yaml, fileName: path, secrets: .disk)
    }

    /// Loads from text: `fileName` labels errors and anchors a relative secrets path; `secrets` is the secrets
    /// file's text (nil: none available). No permission check is made on text.
    public static func load(yaml: String, fileName: String, secrets: String?) throws(ConfigurationErrors) -> VigilConfiguration {
        try load(yaml: yaml, fileName: fileName, secrets: .text(secrets))
    }

    /// Reads the secrets file again (same permission rule), for peers added at run time by a peer-list update:
    /// the keys by peer address or identity.
    public static func preSharedKeys(secretsPath path: String) throws(ConfigurationErrors) -> [Identity: Secret] {
        func failure(_ message: String) -> ConfigurationErrors {
            ConfigurationErrors([ConfigurationError(file: path, line: 0, column: 0, path: "", message: message)])
        }
        let text: String
        switch SecretsFileReader.read(path: path) {
        case .success(let read): text = read
        case .failure(let refusal): throw failure(refusal.message)
        }
        var diagnostics = Diagnostics()
        guard let root = compose(text, file: path, &diagnostics),
              let secrets = SecretsFile.parse(root, file: path, &diagnostics), diagnostics.sorted.isEmpty
        else { throw ConfigurationErrors(diagnostics.sorted) }
        return secrets
    }

    static func load(yaml: String, fileName: String, secrets source: SecretsSource) throws(ConfigurationErrors) -> VigilConfiguration {
        var diagnostics = Diagnostics()
        guard let root = compose(yaml, file: fileName, &diagnostics) else { throw ConfigurationErrors(diagnostics.sorted) }
        var parser = DocumentParser(file: fileName)
        let document = parser.parse(root)
        diagnostics.append(contentsOf: parser.diagnostics)
        checkOverlaps(document, &diagnostics)

        var secretsDiagnostics = Diagnostics()
        var maps = document.maps.map(\.map)
        var secretsPath: String?
        if let field = document.secretsField, let written = field.node.scalar?.string, !written.isEmpty {
            let path = resolve(written, relativeTo: fileName)
            secretsPath = path
            if let secrets = readSecrets(path: path, field: field, source: source, &diagnostics, &secretsDiagnostics) {
                assignKeys(secrets, to: &maps, allPeers: document.allPeers, &diagnostics)
            }
        } else if document.secretsField == nil, !document.allPeers.isEmpty, document.global != nil {
            diagnostics.report(fileName, root["global"]?.mark, "global.secrets",
                "required key 'secrets' is missing; allowed: the path of the secrets file holding the peers' pre-shared keys")
        }

        let errors = unique(diagnostics.sorted + secretsDiagnostics.sorted)
        guard errors.isEmpty, var global = document.global else { throw ConfigurationErrors(errors) }
        global.secretsPath = secretsPath
        return VigilConfiguration(global: global, cryptoMaps: maps)
    }

    // MARK: steps

    private static func compose(_ yaml: String, file: String, _ diagnostics: inout Diagnostics) -> Node? {
        if let deep = NestingBound.firstViolation(in: yaml) {
            diagnostics.report(file, line: deep.line,
                "nested more than \(NestingBound.limit) levels deep (indentation, indicators and open brackets); refused before parsing: a Vigil configuration needs about ten")
            return nil
        }
        do {
            // UTF-8 named here: Yams' default encoding reads the process environment on every parse.
            guard let root = try Yams.compose(yaml: yaml, .default, .default, .utf8) else {
                diagnostics.report(file, nil, "", "the file is empty; allowed: a mapping with keys global, crypto-maps")
                return nil
            }
            return root
        } catch let error as YamlError {
            switch error {
            case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
                 .composer(let context, let problem, let mark, _):
                let detail = context.map { " \($0.text)" } ?? ""
                diagnostics.report(file, mark, "", "not valid YAML: \(problem)\(detail)")
            case .duplicatedKeysInMapping(let duplicates, let context):
                diagnostics.report(file, context.mark, "",
                    "duplicate key \(duplicates.map { "'\($0)'" }.joined(separator: ", ")) in one mapping; allowed: each key once")
            case .no, .memory, .reader, .writer, .emitter, .representer, .dataCouldNotBeDecoded:
                diagnostics.report(file, nil, "", "not valid YAML: \(error)")
            }
            return nil
        } catch {
            diagnostics.report(file, nil, "", "not valid YAML: \(error)")
            return nil
        }
    }

    private static func readSecrets(
        path: String, field: Field, source: SecretsSource, _ diagnostics: inout Diagnostics, _ secretsDiagnostics: inout Diagnostics
    ) -> [Identity: Secret]? {
        let text: String
        switch source {
        case .text(let given):
            guard let given else {
                diagnostics.report(field, "no secrets were provided for '\(path)'")
                return nil
            }
            text = given
        case .disk:
            switch SecretsFileReader.read(path: path) {
            case .success(let read): text = read
            case .failure(let refusal):
                diagnostics.report(field, refusal.message)
                return nil
            }
        }
        guard let root = compose(text, file: path, &secretsDiagnostics) else { return nil }
        return SecretsFile.parse(root, file: path, &secretsDiagnostics)
    }

    /// Every listed peer gets its key: by its configured identity first, then by its address or host name.
    private static func assignKeys(_ secrets: [Identity: Secret], to maps: inout [CryptoMap], allPeers: [Setting<Peer>], _ diagnostics: inout Diagnostics) {
        // By identity first, then by address (IKEv1 Main Mode must pick the key before the peer's ID arrives,
        // and Cisco's `crypto isakmp key ... address` keys are by address).
        func key(for peer: Peer) -> Secret? {
            [peer.identity, peer.addressIdentity].compactMap { $0 }.lazy.compactMap { secrets[$0] }.first
        }
        for setting in allPeers where key(for: setting.value) == nil {
            let peer = setting.value
            let names = [peer.identity, peer.addressIdentity].compactMap { $0?.description }.uniqued.map { "'\($0)'" }
            diagnostics.report(setting.field, "peer \(peer.address) has no pre-shared key in the secrets file; allowed: add one under pre-shared-keys as \(names.joined(separator: " or "))")
        }
        for mapIndex in maps.indices {
            for entryIndex in maps[mapIndex].entries.indices {
                var entry = maps[mapIndex].entries[entryIndex]
                for peerIndex in entry.peers.indices {
                    entry.peers[peerIndex].preSharedKey = key(for: entry.peers[peerIndex]) ?? Secret(bytes: [])
                }
                entry.preferredPeer = entry.preferredPeer == nil ? nil : entry.peers.first
                maps[mapIndex].entries[entryIndex] = entry
            }
        }
    }

    /// Protected traffic of entries in different crypto maps must not overlap: a packet could match both.
    private static func checkOverlaps(_ document: ParsedDocument, _ diagnostics: inout Diagnostics) {
        typealias Placed = (mapName: String, pair: TrafficSelectorPair, field: Field)
        var all: [Placed] = []
        for (map, sites) in document.maps {
            for (entry, site) in zip(map.entries, sites) {
                for (pair, field) in zip(entry.traffic, site.trafficFields) { all.append((map.name, pair, field)) }
            }
        }
        all.sort { ($0.field.mark?.line ?? 0, $0.field.mark?.column ?? 0) < ($1.field.mark?.line ?? 0, $1.field.mark?.column ?? 0) }
        var seen: [Placed] = []
        for (mapName, pair, field) in all {
            if let other = seen.first(where: { $0.mapName != mapName && $0.pair.overlaps(pair) }) {
                diagnostics.report(field, "protected traffic \(pair) overlaps \(other.pair) of \(other.field.path) (line \(other.field.mark?.line ?? 0)) in crypto map \(other.mapName); allowed: selectors of different crypto maps that share no packet")
            }
            seen.append((mapName, pair, field))
        }
    }

    // MARK: helpers

    static func resolve(_ path: String, relativeTo mainFile: String) -> String {
        guard !path.hasPrefix("/") else { return path }
        let directory = (mainFile as NSString).deletingLastPathComponent
        return directory.isEmpty ? path : (directory as NSString).appendingPathComponent(path)
    }

    private static func reason(_ error: any Error, path: String) -> String {
        if !FileManager.default.fileExists(atPath: path) { return String(cString: strerror(ENOENT)) }
        if !FileManager.default.isReadableFile(atPath: path) { return String(cString: strerror(EACCES)) }
        return (error as NSError).localizedDescription
    }

    private static func unique(_ errors: [ConfigurationError]) -> [ConfigurationError] {
        var seen = Set<ConfigurationError>()
        return errors.filter { seen.insert($0).inserted }
    }
}

extension Array where Element: Hashable {
    var uniqued: [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
