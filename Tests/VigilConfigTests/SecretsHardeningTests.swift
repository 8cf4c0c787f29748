import Foundation
import Synchronization
import Testing
@testable import VigilCrypto
@testable import VigilConfig

/// Issue 13, defect 9: the secrets file is checked on the descriptor that is read (owner, mode, kind), and keys live
/// in storage that is wiped when released.
@Suite struct SecretsHardeningTests {
    @Test func secretsFileOwnedByAnotherUserIsRefused() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let main = try directory.write("vigil.yaml", validDocument, mode: 0o644)
        let secrets = try directory.write("secrets.yaml", validSecrets, mode: 0o600)
        try #require(chown(secrets, 4_321, 4_321) == 0, "the test runs as root")
        let failure = #expect(throws: ConfigurationErrors.self) { try ConfigurationLoader.load(path: main) }
        let errors = try #require(failure).errors
        #expect(errors.map(\.path) == ["global.secrets"])
        #expect(errors.first?.message.contains("is owned by uid 4321, not by root or by the user vigild runs as") == true)
        // The run-time reader (peers added by `vigil peers set`) applies the same rule.
        let again = #expect(throws: ConfigurationErrors.self) { try ConfigurationLoader.preSharedKeys(secretsPath: secrets) }
        #expect(again?.errors.first?.message.contains("owned by uid 4321") == true)
    }

    @Test func secretsPathThatIsNotARegularFileIsRefused() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let fifo = (directory.path as NSString).appendingPathComponent("secrets.yaml")
        try #require(mkfifo(fifo, 0o600) == 0)
        let main = try directory.write("vigil.yaml", validDocument, mode: 0o644)
        // A plain open(2) of a FIFO blocks until a writer comes: the reader must neither hang nor read it.
        let result = SecretsFileReader.read(path: fifo)
        guard case .failure(let refusal) = result else { Issue.record("a FIFO was read as secrets"); return }
        #expect(refusal.message.contains("is not a regular file"))
        _ = main
    }

    @Test func aSymbolicLinkIsFollowedToTheFileWhoseBitsMatter() throws {
        let directory = try ScratchDirectory()
        defer { directory.remove() }
        let real = try directory.write("real.yaml", validSecrets, mode: 0o644)
        let link = (directory.path as NSString).appendingPathComponent("secrets.yaml")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: real)
        guard case .failure(let refusal) = SecretsFileReader.read(path: link) else { Issue.record("mode 0644 behind a link was accepted"); return }
        #expect(refusal.message.contains("has mode 0644"))
        chmod(real, 0o600)
        guard case .success(let text) = SecretsFileReader.read(path: link) else { Issue.record("mode 0600 behind a link was refused"); return }
        #expect(text == validSecrets)
    }

    @Test func secretStorageIsWipedWhenTheLastCopyIsReleased() {
        let wiped = Mutex<[[UInt8]]>([])
        SecureBytes.withWipeObserver({ bytes in wiped.withLock { $0.append(bytes) } }) {
            let secret = Secret(bytes: Array("hunter2-but-longer".utf8))
            let copy = secret
            #expect(copy == secret)
            #expect(copy.bytes == Array("hunter2-but-longer".utf8))
            #expect(secret.withUnsafeBytes { $0.count } == 18)
            #expect("\(secret)" == "<secret>" && String(reflecting: secret) == "<secret>")
        }
        #expect(wiped.withLock { $0 } == [[UInt8](repeating: 0, count: 18)])
    }

    @Test func controlGroupMustBeAGroupName() throws {
        let error = try singleError(changing("  secrets: secrets.yaml", to: "  secrets: secrets.yaml\n  control-group: Wheel!"))
        #expect(error.path == "global.control-group")
        #expect(error.message.hasPrefix("'Wheel!' is not a group name"))
        let good = try ConfigurationLoader.load(
            yaml: changing("  secrets: secrets.yaml", to: "  secrets: secrets.yaml\n  control-group: vigil-ops"), fileName: "vigil.yaml", secrets: validSecrets)
        #expect(good.global.controlGroup == "vigil-ops")
    }
}
