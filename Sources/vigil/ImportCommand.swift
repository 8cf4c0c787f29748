import ArgumentParser
import Foundation
import VigilCiscoImport
import VigilConfig

/// `vigil import ...`: turn another vendor's configuration into Vigil's.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Turn another IPsec configuration into a Vigil configuration.",
        subcommands: [ImportCiscoCommand.self]
    )
}

/// `vigil import cisco FILE [--out DIR]`: reading and writing at the edge; `CiscoImport` does the rest.
struct ImportCiscoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cisco",
        abstract: "Import a Cisco IOS / IOS XE running-config (crypto maps, ISAKMP, IKEv2, transform sets, crypto ACLs).",
        discussion: """
        Writes DIR/\(CiscoImportNames.configurationFile) and DIR/\(CiscoImportNames.secretsFile) (mode 0600), or prints \
        both to standard output without --out. Every line not imported is listed on standard error as \
        FILE:LINE: KIND: TEXT: REASON. Nothing is written unless the result passes `vigil config check`.
        Exit status: 0 imported; 1 nothing written (unreadable file, nothing to import, existing files without \
        --force, or a result that does not load); \(Self.unsupportedExitCode) written, but lines of kind unsupported \
        or malformed were not imported, so Vigil may behave differently from the router (0 with \
        --allow-unrecognized). Lines of kind unused or outside-ipsec are listed but never change the status.
        """
    )

    /// Distinct from 1 (nothing written) and 3 (the CLI's daemon-unreachable).
    static let unsupportedExitCode: Int32 = 4

    @Argument(help: "The Cisco configuration (`show running-config`).")
    var file: String

    @Option(name: .long, help: "Directory to write \(CiscoImportNames.configurationFile) and \(CiscoImportNames.secretsFile) into (created if missing).")
    var out: String?

    @Flag(name: .long, help: "Exit 0 even when some lines had no Vigil equivalent.")
    var allowUnrecognized = false

    @Flag(name: .long, help: "Replace files already in --out.")
    var force = false

    func run() throws {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            StandardError.write("\(file): cannot read the file: \(error.localizedDescription)\n")
            throw ExitCode.failure
        }
        let result: CiscoImportResult
        do {
            result = try CiscoImport.convert(text)
        } catch {
            list(error.unrecognized)
            StandardError.write("\(file): \(error.message); nothing written\n")
            throw ExitCode.failure
        }
        list(result.unrecognized)

        let directory = out ?? "."
        let yamlPath = (directory as NSString).appendingPathComponent(CiscoImportNames.configurationFile)
        let secretsPath = (directory as NSString).appendingPathComponent(CiscoImportNames.secretsFile)
        do {
            _ = try ConfigurationLoader.load(yaml: result.yaml, fileName: yamlPath, secrets: result.secrets)
        } catch {
            StandardError.write(error.description + "\n")
            StandardError.write("\(file): the imported configuration does not load (\(error.errors.count) error\(error.errors.count == 1 ? "" : "s") above); nothing written\n")
            throw ExitCode.failure
        }

        if let out {
            do {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                // Both or neither: a configuration never lands beside another import's keys.
                if !force, let existing = [yamlPath, secretsPath].first(where: FileManager.default.fileExists(atPath:)) {
                    throw WriteRefusal(message: "\(existing): already exists (pass --force to replace it); nothing written")
                }
                try write(result.yaml, to: yamlPath, mode: 0o644)
                try write(result.secrets, to: secretsPath, mode: 0o600)
            } catch let refusal as WriteRefusal {
                StandardError.write("\(refusal.message)\n")
                throw ExitCode.failure
            } catch {
                StandardError.write("\(out): \(error.localizedDescription)\n")
                throw ExitCode.failure
            }
            print("wrote \(yamlPath) and \(secretsPath): \(result.entries) crypto map entr\(result.entries == 1 ? "y" : "ies")")
        } else {
            print("# \(CiscoImportNames.configurationFile)")
            print(result.yaml, terminator: "")
            print("---\n# \(CiscoImportNames.secretsFile) (mode 0600)")
            print(result.secrets, terminator: "")
        }

        let changes = result.behaviourChanges.count
        guard changes > 0, !allowUnrecognized else { return }
        StandardError.write("\(file): \(changes) line\(changes == 1 ? "" : "s") had no Vigil equivalent (unsupported or malformed, above); check the result, or pass --allow-unrecognized\n")
        throw ExitCode(Self.unsupportedExitCode)
    }

    private func list(_ lines: [Unrecognized]) {
        for line in lines { StandardError.write("\(file):\(line.line): \(line.kind): \(line.text): \(line.reason)\n") }
    }

    private struct WriteRefusal: Error {
        var message: String
    }

    /// Creates (or with --force replaces) `path` with `mode` from the first byte: a secrets file is never readable
    /// by others, not even for a moment.
    private func write(_ text: String, to path: String, mode: mode_t) throws {
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (force ? O_TRUNC : O_EXCL)
        let descriptor = open(path, flags, mode)
        guard descriptor >= 0 else {
            let reason = errno == EEXIST ? "already exists (pass --force to replace it)" : String(cString: strerror(errno))
            throw WriteRefusal(message: "\(path): \(reason)")
        }
        defer { close(descriptor) }
        guard fchmod(descriptor, mode) == 0 else { throw WriteRefusal(message: "\(path): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { throw WriteRefusal(message: "\(path): \(String(cString: strerror(errno)))") }
            written += count
        }
    }
}
