import Foundation
import Testing
import VigilCiscoImport
import VigilLab

/// `vigil import cisco` as an operator runs it: the files, their modes, what goes to standard error, the exit codes.
@Suite struct ImportCommandTests {
    private static func vigil(_ arguments: [String]) throws -> Command.Result {
        let binary = try #require(VigildProcess.productPath("vigil"), "vigil is not built next to the tests")
        return try Command.run([binary] + arguments)
    }

    private static func scratch() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-import-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    @Test func aCleanImportWritesBothFilesTheSecretsPrivateAndExitsZero() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("running-config.txt")
        try Fixtures.ikev2.write(to: input, atomically: true, encoding: .utf8)
        let out = directory.appendingPathComponent("etc")

        let result = try Self.vigil(["import", "cisco", input.path, "--out", out.path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("1 crypto map entry"))
        let secrets = out.appendingPathComponent(CiscoImportNames.secretsFile).path
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: secrets)[.posixPermissions] as? Int)
        #expect(mode == 0o600)
        // What was written is what `vigil config check` accepts.
        let check = try Self.vigil(["config", "check", out.appendingPathComponent(CiscoImportNames.configurationFile).path])
        #expect(check.status == 0, "\(check.stderr)")

        // A second run does not overwrite what is there, unless told to.
        let again = try Self.vigil(["import", "cisco", input.path, "--out", out.path])
        #expect(again.status == 1)
        #expect(again.stderr.contains("already exists (pass --force to replace it); nothing written"))
        #expect(try Self.vigil(["import", "cisco", input.path, "--out", out.path, "--force"]).status == 0)
    }

    @Test func unsupportedLinesAreListedAndGiveExitFourUnlessAllowed() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("running-config.txt")
        let text = Fixtures.ikev2.replacingOccurrences(of: " set pfs group20\n", with: " set pfs group5\n set reverse-route\n")
        try text.write(to: input, atomically: true, encoding: .utf8)

        let printed = try Self.vigil(["import", "cisco", input.path])
        #expect(printed.status == ImportCiscoExitCode.unsupported)
        #expect(printed.stdout.contains("ike-version: v2"))
        #expect(printed.stdout.contains("pre-shared-keys:"))
        #expect(printed.stderr.contains("\(input.path):40: unsupported: set pfs group5: "))
        #expect(printed.stderr.contains("\(input.path):41: unsupported: set reverse-route: "))
        #expect(printed.stderr.contains("2 lines had no Vigil equivalent"))

        let allowed = try Self.vigil(["import", "cisco", input.path, "--allow-unrecognized"])
        #expect(allowed.status == 0)
    }

    @Test func aResultThatWouldNotLoadIsNotWritten() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("running-config.txt")
        // The backup peer has no key in the keyring: Vigil would refuse the file, so nothing is written.
        try Fixtures.ikev2.replacingOccurrences(of: "198.51.100.11 255.255.255.255", with: "198.51.100.99 255.255.255.255")
            .write(to: input, atomically: true, encoding: .utf8)
        let out = directory.appendingPathComponent("etc")
        let result = try Self.vigil(["import", "cisco", input.path, "--out", out.path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("peer 198.51.100.11 has no pre-shared key"))
        #expect(result.stderr.contains("nothing written"))
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent(CiscoImportNames.configurationFile).path))
        #expect(try Self.vigil(["import", "cisco", directory.appendingPathComponent("missing.txt").path]).status == 1)
    }
}

/// The documented exit codes (README, "Importing a Cisco configuration").
enum ImportCiscoExitCode {
    static let unsupported: Int32 = 4
}
