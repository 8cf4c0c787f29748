import Foundation
import Testing
import VigilLab

/// deploy/systemd/vigild.service as systemd reads it: `systemd-analyze verify` (every directive known, the
/// binaries there) and `systemd-analyze security` (the sandbox keeps its exposure low).
@Suite struct SystemdUnitTests {
    static let unit = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deploy/systemd/vigild.service")

    /// The unit with its binary paths pointing at the vigild under test (the installed paths do not exist here).
    private func unitUnderTest() throws -> URL {
        let vigild = try #require(VigildProcess.productPath("vigild"), "vigild is not built next to the tests")
        let text = try String(contentsOf: Self.unit, encoding: .utf8).replacingOccurrences(of: "/usr/sbin/vigild", with: vigild)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-unit-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let copy = directory.appendingPathComponent("vigild.service")
        try text.write(to: copy, atomically: true, encoding: .utf8)
        return copy
    }

    @Test func theUnitVerifies() throws {
        let unit = try unitUnderTest()
        defer { try? FileManager.default.removeItem(at: unit.deletingLastPathComponent()) }
        // The man pages are checked where they are built (the package); here only the unit's own directives.
        let verify = try Command.run(["systemd-analyze", "verify", "--man=no", unit.path])
        #expect(verify.succeeded && verify.stderr.isEmpty, "\(verify.stdout)\(verify.stderr)")
    }

    @Test func theSandboxKeepsItsExposureLow() throws {
        let unit = try unitUnderTest()
        defer { try? FileManager.default.removeItem(at: unit.deletingLastPathComponent()) }
        // Exposure on systemd's 0-10 scale, times ten: at most 3.0 ("OK"), with root kept for XFRM and routes.
        let security = try Command.run(["systemd-analyze", "security", "--offline=yes", "--threshold=30", unit.path])
        #expect(security.succeeded, "\(security.stdout.suffix(3000))\(security.stderr)")
    }

    @Test func theServiceNotifiesAndIsWatched() throws {
        let text = try String(contentsOf: Self.unit, encoding: .utf8)
        for directive in ["Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                          "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/run/vigil /var/lib/vigil",
                          "ProtectHome=yes", "PrivateTmp=yes",
                          "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW",
                          "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK"] {
            #expect(text.contains("\n\(directive)"), "vigild.service lacks \(directive)")
        }
    }
}
