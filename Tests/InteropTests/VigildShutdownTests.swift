import Foundation
import Testing
import VigilDaemon
import VigilLab

/// vigild's graceful shutdown (SIGTERM) as a process in a namespace, against strongSwan: the DELETE reaches a peer
/// that answers, a peer that does not cannot hold the exit up, and what vigild installed in the kernel goes.
///
/// The shutdown sends its DELETEs without waiting for answers, so an unresponsive peer is not what the service's
/// bound (`VigildService.Limits`: 10 s, then 2 s of cancellation) guards against; a stuck event loop is. (An
/// in-process test of that bound was withdrawn: it needs the service group to run while the suite's synchronous
/// tests hold both threads of the cooperative pool, so under the full suite it waited minutes for a thread.)
@Suite(.serialized) struct VigildShutdownTests {
    /// The graceful shutdown bound plus the cancellation bound.
    static let bound: Double = 12

    static func establishedLab() throws -> VigildLab {
        var settings = VigildLab.Settings()
        settings.dataPlane = .kernel
        settings.gatewayCount = 1
        let lab = try VigildLab(settings)
        do {
            try lab.startGateways()
            try lab.startVigild()
            try #require(try lab.waitForEvent(timeout: 15) { $0.kind == "dataplane-programmed" } != nil, "\(lab.diagnostics)")
        } catch {
            lab.destroy()
            throw error
        }
        return lab
    }

    /// What vigild installs in its namespace's kernel: XFRM policies (fail-closed guards and tunnels, nothing else
    /// installs any there), routes in table 86 and the rule that looks it up.
    static func ownedState(_ lab: VigildLab) throws -> (policies: String, routes: String, rules: [Substring]) {
        let policies = try lab.lab.vigil.ip("xfrm", "policy").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let routes = try lab.lab.vigil.ip("route", "show", "table", "86").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let rules = try lab.lab.vigil.ip("rule").stdout.split(separator: "\n").filter { $0.contains("lookup 86") }
        return (policies, routes, rules)
    }

    /// SIGTERM; returns the seconds until vigild had exited.
    static func terminate(_ lab: VigildLab) throws -> Double {
        let start = Date()
        lab.vigild.signal(SIGTERM)
        // Generous: a loaded machine may be slow, but past the bound the group would have given up on the loop.
        try #require(lab.vigild.waitForExit(timeout: bound + 20), "vigild still running after SIGTERM:\n\(lab.vigild.log)")
        return Date().timeIntervalSince(start)
    }

    @Test func aSIGTERMDeletesTheIKESAAtAResponsivePeer() throws {
        let lab = try Self.establishedLab()
        defer { lab.destroy() }
        let swan = try #require(lab.lab.strongSwans[0])
        #expect(try swan.listSAs().contains("state=ESTABLISHED"))

        let took = try Self.terminate(lab)
        #expect(took < Self.bound, "\(took) s")
        #expect(lab.vigild.termination.map { $0.status == 0 && !$0.bySignal } == true, "\(String(describing: lab.vigild.termination))")
        // INFORMATIONAL { D(IKE) } -->: charon deletes the IKE SA and its Child SA.
        let deadline = Date().addingTimeInterval(10)
        var listing = try swan.listSAs()
        while listing.contains("state="), Date() < deadline {
            usleep(50_000)
            listing = try swan.listSAs()
        }
        #expect(!listing.contains("state="), "strongSwan still holds SAs after vigild's shutdown: \(listing)\n\(lab.vigild.log)")
        #expect(lab.vigild.log.contains("sending INFORMATIONAL"), "\(lab.vigild.log)")
    }

    @Test func aPeerThatStoppedAnsweringCannotHoldTheShutdownUpAndTheKernelStateGoes() throws {
        let lab = try Self.establishedLab()
        defer { lab.destroy() }
        let before = try Self.ownedState(lab)
        #expect(!before.policies.isEmpty && !before.routes.isEmpty && !before.rules.isEmpty, "\(before)")

        // The peer is gone from the wire (its charon keeps running): the DELETE will never be answered.
        try lab.lab.cutLink(0)
        let took = try Self.terminate(lab)
        #expect(took < Self.bound, "vigild took \(took) s to exit")
        #expect(lab.vigild.termination.map { $0.status == 0 && !$0.bySignal } == true, "\(String(describing: lab.vigild.termination))")
        #expect(lab.vigild.log.contains("kernel state removed"), "\(lab.vigild.log)")
        let after = try Self.ownedState(lab)
        #expect(after.policies.isEmpty, "policies left after shutdown: \(after.policies)")
        #expect(after.routes.isEmpty, "routes left in table 86: \(after.routes)")
        #expect(after.rules.isEmpty, "rule left: \(after.rules)")
    }
}
