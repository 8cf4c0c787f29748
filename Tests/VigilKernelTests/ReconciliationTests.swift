import Foundation
import Testing
import VigilKernel
import VigilLab

/// A Vigil process killed with SIGKILL leaves its state in the kernel; the next start removes exactly its own.
@Suite("Start-up reconciliation after SIGKILL")
struct ReconciliationTests {
    @Test func nextStartRemovesOnlyVigilsLeftovers() throws {
        let fixture = try #require(productPath("vigil-kernel-fixture"),
                                   "build the vigil-kernel-fixture product first (swift build --build-tests)")
        let lab = try KernelLab(.netlink)
        defer { lab.destroy() }
        let namespace = try #require(lab.namespace)
        let table = String(VigilOwnership.defaultRouteTable)

        // Another IKE daemon's policy, SA-less, and a route of its own in the same table.
        try namespace.ip("xfrm", "policy", "add", "src", "10.9.0.0/16", "dst", "10.8.0.0/16", "dir", "out",
                         "priority", "2080", "tmpl", "src", "192.0.2.1", "dst", "198.51.100.9", "proto", "esp",
                         "mode", "tunnel", "reqid", "1")
        try namespace.ip("route", "add", "10.8.0.0/16", "dev", "wan0", "table", table)
        // A bypass policy (no template) and an address-family-less one: listing must skip what it cannot describe.
        try namespace.ip("xfrm", "policy", "add", "src", "0.0.0.0/0", "dst", "0.0.0.0/0", "dir", "fwd",
                         "action", "allow", "priority", "7")
        // In Vigil's priority band but protecting with another daemon's reqid: not Vigil's either.
        try namespace.ip("xfrm", "policy", "add", "src", "10.7.0.0/16", "dst", "10.6.0.0/16", "dir", "out",
                         "priority", "0x56490001", "tmpl", "src", "192.0.2.1", "dst", "198.51.100.7", "proto", "esp",
                         "mode", "tunnel", "reqid", "7")
        try namespace.ip("xfrm", "policy", "add", "dir", "in", "action", "block", "priority", "1")

        // A "Vigil" that installs three Child SAs and is killed without cleaning up.
        let (line, reason) = try namespace.installAndKillFixture(fixture, count: 3)
        #expect(line.hasPrefix("installed"), "fixture said: \(line)")
        #expect(reason == .uncaughtSignal)

        // Its leftovers are still in the kernel.
        let leftover = try lab.ip("xfrm", "policy")
        #expect(leftover.components(separatedBy: "reqid 1447624").count - 1 == 9)
        #expect(try lab.ip("route", "show", "table", table, "proto", "86").split(separator: "\n").count == 3)
        #expect(try lab.ip("rule", "show").contains("lookup \(table)"))

        // The next start: list, remove Vigil's own.
        let report = try KernelExecutor(ipsec: lab.ipsec, routes: lab.routes)
            .removeOwnedState(tables: [VigilOwnership.defaultRouteTable])
        #expect(report.succeeded, "\(report)")
        #expect(report.applied.filter { $0.operation == .deletePolicy }.count == 9)

        let policies = try lab.ip("xfrm", "policy")
        #expect(policies.contains("src 10.9.0.0/16 dst 10.8.0.0/16"))
        #expect(policies.contains("reqid 1 "))
        #expect(policies.contains("src 0.0.0.0/0 dst 0.0.0.0/0"))
        #expect(policies.contains("dir in action block"))
        #expect(policies.contains("src 10.7.0.0/16 dst 10.6.0.0/16"))
        #expect(!policies.contains("reqid 1447624"))
        let routes = try lab.ip("route", "show", "table", table)
        #expect(routes.contains("10.8.0.0/16 dev wan0"))
        #expect(!routes.contains("proto 86"))
        #expect(!(try lab.ip("rule", "show")).contains("lookup \(table)"))

        // Running it again finds nothing of Vigil's: reconciliation is idempotent.
        let again = try KernelExecutor(ipsec: lab.ipsec, routes: lab.routes)
            .removeOwnedState(tables: [VigilOwnership.defaultRouteTable])
        #expect(again.applied.isEmpty && again.succeeded)
    }
}

extension FileHandle {
    /// Reads until a newline or end of file (the fixture prints one line, then waits).
    func availableDataUntilNewline() -> Data {
        var data = Data()
        while true {
            let chunk = availableData
            if chunk.isEmpty { return data }
            data.append(chunk)
            if chunk.contains(UInt8(ascii: "\n")) { return data }
        }
    }
}
