import Foundation
import Testing
@testable import VigilDaemon

/// Issue 13, defect 9: the control socket is never more open than it should be, and the caller is checked with
/// SO_PEERCRED (root, our own user, or the configured group).
@Suite(.serialized) struct ControlSocketSecurityTests {
    static func scratch() throws -> String {
        let directory = "/tmp/vigil-ctl-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    static func mode(_ path: String) -> (mode: Int, gid: gid_t) {
        var status = stat()
        _ = stat(path, &status)
        return (Int(status.st_mode) & 0o7777, status.st_gid)
    }

    @Test func socketIsBornMode0600InAPrivateDirectory() throws {
        let base = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let path = base + "/run/vigil.sock"
        let loop = EventLoop()
        let server = try ControlServer(path: path, loop: loop) { _ in .success(message: "ok") }
        #expect(Self.mode(path).mode == 0o600)
        #expect(Self.mode(base + "/run").mode == 0o700)
        withExtendedLifetime(server) {}
    }

    @Test func aControlGroupGetsMode0660AndOwnership() throws {
        let base = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let path = base + "/vigil.sock"
        let server = try ControlServer(path: path, loop: EventLoop(), group: 65_534) { _ in .success(message: "ok") }
        #expect(Self.mode(path) == (0o660, 65_534))
        withExtendedLifetime(server) {}
    }

    /// Runs a client as uid/gid 65534 (nobody/nogroup) with setpriv and returns what the daemon answered.
    static func askAsNobody(_ path: String, loop: EventLoop) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", """
            import socket, sys
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(20)
            s.connect(sys.argv[1])
            try:
                s.sendall(b'{"command":"status"}\\n')
            except OSError:
                pass  # a refused caller may find the socket closed already; the reason is still to be read
            data = b''
            while not data.endswith(b'\\n'):
                try:
                    chunk = s.recv(4096)
                except OSError:
                    break
                if not chunk: break
                data += chunk
            print(data.decode())
            """, path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let deadline = ContinuousClock.now + .seconds(20)
        while process.isRunning, ContinuousClock.now < deadline { loop.runOnce(maximumWait: .milliseconds(10)) }
        process.waitUntilExit()
        return String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    @Test func aCallerWhoIsNeitherRootNorOfTheGroupIsRefused() throws {
        let base = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: base) }
        chmod(base, 0o755)
        let path = base + "/vigil.sock"
        let loop = EventLoop()
        let handled = LockedFlag()
        let server = try ControlServer(path: path, loop: loop) { _ in handled.set(); return .success(message: "ok") }
        // Open the file bits on purpose: SO_PEERCRED must refuse even where the mode would let the caller in.
        chmod(path, 0o666)
        let answer = try Self.askAsNobody(path, loop: loop)
        #expect(answer.contains("permission-denied"))
        #expect(answer.contains("uid 65534"))
        #expect(!handled.value)
        #expect(server.refusedConnections == 1)
    }

    @Test func aMemberOfTheControlGroupIsServed() throws {
        let base = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: base) }
        chmod(base, 0o755)
        let path = base + "/vigil.sock"
        let loop = EventLoop()
        let server = try ControlServer(path: path, loop: loop, group: 65_534) { _ in .success(message: "served") }
        let answer = try Self.askAsNobody(path, loop: loop)
        #expect(answer.contains("served"))
        #expect(server.refusedConnections == 0)
    }
}
