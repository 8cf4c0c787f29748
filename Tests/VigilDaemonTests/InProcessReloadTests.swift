import Foundation
import Testing
import VigilAddressing
@testable import VigilDaemon
import VigilKernel

/// A reload (SIGHUP, `vigil reload`) applies the file as a diff of entries, with vigild's core in process
/// (`InProcessLab`): a new entry is guarded and comes up, a removed one's SAs are gone on both sides with its guards,
/// a changed one renegotiates while an unchanged one keeps its SPIs, and a file with an error changes nothing.
@Suite struct InProcessReloadTests {
    /// LAB/20, to the third peer (LAB/10 runs with the first).
    static let second = InProcessLab.ExtraEntry(sequence: 20, remoteSubnet: "10.3.0.0/16")

    static func entry(_ lab: InProcessLab, _ sequence: Int) -> StatusReport.Entry? {
        lab.gateway.daemon.status().entries.first { $0.sequence == sequence }
    }

    /// The entry's Child SAs as "inbound/outbound" SPIs, and its IKE SAs' ids.
    static func spis(_ lab: InProcessLab, _ sequence: Int) -> [String] {
        (entry(lab, sequence)?.childSAs ?? []).map { "\($0.inboundSPI)/\($0.outboundSPI)" }.sorted()
            + (entry(lab, sequence)?.ikeSAs ?? []).map(\.id).sorted()
    }

    /// The entry's traffic is in the gateway's data plane (after `since`).
    static func programmed(_ lab: InProcessLab, _ sequence: Int, since: Duration = .zero) -> Bool {
        lab.events.contains { $0.kind == "dataplane-programmed" && $0.sequence == sequence && $0.time >= since.seconds }
    }

    /// The gateway's policies (guards and tunnels) on selectors to or from `remote`.
    static func policies(_ lab: InProcessLab, remote: String) throws -> [InstalledPolicy] {
        let prefix = try IPPrefix.parse(remote)
        return try lab.gateway.kernel.listPolicies().filter { $0.id.selector.destination == prefix || $0.id.selector.source == prefix }
    }

    /// SAs in `host`'s kernel with one of the SPIs.
    static func sas(_ host: InProcessLab.Host, spis: Set<UInt32>) throws -> [SAState] {
        try host.kernel.listSAs().filter { spis.contains($0.id.spi) }
    }

    static func kernelSPIs(_ lab: InProcessLab, _ sequence: Int) -> Set<UInt32> {
        Set((entry(lab, sequence)?.childSAs ?? []).flatMap { [UInt32($0.inboundSPI, radix: 16)!, UInt32($0.outboundSPI, radix: 16)!] })
    }

    /// The gateway with LAB/10 and LAB/20 (`second`, over `ikeVersion`), both up and settled.
    static func bothUp(seed: UInt64, ikeVersion: Int = 2) throws -> InProcessLab {
        var extra = second
        extra.ikeVersion = ikeVersion
        var settings = InProcessLab.Settings()
        settings.extraEntries = [extra]
        settings.answeredEntries = [extra]
        let lab = try InProcessLab(seed: seed, settings)
        try lab.start()
        let up = lab.run(within: .seconds(60)) {
            programmed(lab, 10) && programmed(lab, 20) && !(entry(lab, 10)?.childSAs.isEmpty ?? true) && !(entry(lab, 20)?.childSAs.isEmpty ?? true)
        }
        #expect(up, "\(lab.narrative.joined(separator: "\n"))")
        lab.run(for: .seconds(2))
        return lab
    }

    /// The added entry is guarded before it negotiates, then comes up; with IKEv1 the gateway had no IKEv1 engine
    /// and registers one. The unchanged entry keeps its SAs.
    @Test(arguments: [2, 1])
    func anAddedEntryIsGuardedThenComesUpAndTheOthersKeepTheirSAs(ikeVersion: Int) throws {
        var added = Self.second
        added.ikeVersion = ikeVersion
        var settings = InProcessLab.Settings()
        settings.answeredEntries = [added]
        let lab = try InProcessLab(seed: 21, settings)
        try lab.start()
        #expect(lab.run(within: .seconds(60)) { Self.programmed(lab, 10) }, "\(lab.narrative.joined(separator: "\n"))")
        lab.run(for: .seconds(2))
        let before = Self.spis(lab, 10)
        #expect(try Self.policies(lab, remote: added.remoteSubnet).isEmpty)

        let reloadedAt = lab.now
        let report = lab.reloadGateway(lab.gatewayYAML(extra: [added]))
        #expect(!report.refused && report.added == ["LAB/20"] && report.removed.isEmpty && report.replaced.isEmpty, "\(report)")
        #expect(report.needsRestart.isEmpty, "\(report)")
        // Fail closed: its guards (out, in, fwd) are in before any answer could have come back.
        #expect(try Self.policies(lab, remote: added.remoteSubnet).count == 3)
        #expect(lab.events.contains { $0.kind == "entry-loaded" && $0.sequence == 20 && $0.time >= reloadedAt.seconds })
        let up = lab.run(within: .seconds(30)) { Self.programmed(lab, 20, since: reloadedAt) && !(Self.entry(lab, 20)?.childSAs.isEmpty ?? true) }
        #expect(up, "\(lab.narrative.joined(separator: "\n"))")
        #expect(Self.entry(lab, 20)?.ikeVersion == "v\(ikeVersion)")
        // IKEv1's responder installs on Quick Mode's third message, a one-way trip after the initiator.
        let atPeer = lab.run(within: .seconds(5)) { ((try? Self.sas(lab.peers[2], spis: Self.kernelSPIs(lab, 20))) ?? []).count == 2 }
        #expect(atPeer, "the peer does not hold the new Child SA")
        #expect(Self.spis(lab, 10) == before, "an unchanged entry was renegotiated")
    }

    /// The removed entry's SAs are deleted with a DELETE (the peer's kernel drops its Child SA too), its guards
    /// leave the gateway's kernel, its metrics stop; the other entry keeps its SAs.
    @Test(arguments: [2, 1])
    func aRemovedEntrysSAsAreGoneOnBothSidesWithItsGuards(ikeVersion: Int) throws {
        let lab = try Self.bothUp(seed: 22, ikeVersion: ikeVersion)
        let kept = Self.spis(lab, 10)
        let removedSPIs = Self.kernelSPIs(lab, 20)
        #expect(try Self.sas(lab.peers[2], spis: removedSPIs).count == 2)
        #expect(try Self.policies(lab, remote: Self.second.remoteSubnet).count == 3)
        #expect(lab.gateway.daemon.metricsText().contains("sequence=\"20\""))

        let report = lab.reloadGateway(lab.gatewayYAML(extra: []))
        #expect(!report.refused && report.removed == ["LAB/20"] && report.added.isEmpty && report.replaced.isEmpty, "\(report)")
        #expect(lab.events.contains { $0.kind == "entry-removed" && $0.sequence == 20 })
        let gone = lab.run(within: .seconds(10)) { ((try? Self.sas(lab.peers[2], spis: removedSPIs)) ?? [SAState]()).isEmpty }
        #expect(gone, "the peer still holds the removed entry's Child SA\n\(lab.narrative(of: lab.peers[2]).joined(separator: "\n"))")
        lab.run(for: .seconds(5))  // the peer may try again: the gateway no longer answers for the entry
        #expect(try Self.sas(lab.peers[2], spis: removedSPIs).isEmpty)
        #expect(try Self.sas(lab.gateway, spis: removedSPIs).isEmpty)
        let siteTwenty = lab.peers[2].daemon.status().entries.first { $0.sequence == 20 }
        #expect(siteTwenty?.childSAs.isEmpty == true && siteTwenty?.ikeSAs.allSatisfy { $0.state != "established" } == true,
                "\(String(describing: siteTwenty))")
        #expect(try Self.policies(lab, remote: Self.second.remoteSubnet).isEmpty, "the removed entry's guards are still in the kernel")
        #expect(Self.entry(lab, 20) == nil)
        #expect(!lab.gateway.daemon.metricsText().contains("sequence=\"20\""), "metrics of the removed entry")
        #expect(Self.spis(lab, 10) == kept, "an unchanged entry was renegotiated")
    }

    /// A changed esp-proposals replaces the entry: it renegotiates with the new proposal (new SPIs), while the
    /// unchanged entry keeps its SPIs.
    @Test(arguments: [2, 1])
    func aChangedEntryRenegotiatesAndAnUnchangedOneKeepsItsSPIs(ikeVersion: Int) throws {
        let lab = try Self.bothUp(seed: 23, ikeVersion: ikeVersion)
        let kept = Self.spis(lab, 10)
        let old = Self.kernelSPIs(lab, 20)
        #expect(Self.entry(lab, 20)?.childSAs.allSatisfy { $0.algorithms.contains("256") } == true)

        var changed = Self.second
        changed.ikeVersion = ikeVersion
        changed.espProposals = "aes128-sha256"
        let reloadedAt = lab.now
        let report = lab.reloadGateway(lab.gatewayYAML(extra: [changed]))
        #expect(!report.refused && report.replaced == ["LAB/20 (esp-proposals)"] && report.added.isEmpty && report.removed.isEmpty, "\(report)")
        let renegotiated = lab.run(within: .seconds(30)) {
            Self.programmed(lab, 20, since: reloadedAt) && !(Self.entry(lab, 20)?.childSAs.isEmpty ?? true)
        }
        #expect(renegotiated, "\(lab.narrative.joined(separator: "\n"))")
        lab.run(for: .seconds(3))
        let children = Self.entry(lab, 20)?.childSAs ?? []
        #expect(!children.isEmpty && children.allSatisfy { $0.algorithms.contains("128") }, "\(children.map(\.algorithms))")
        #expect(Self.kernelSPIs(lab, 20).isDisjoint(with: old), "the changed entry kept its SAs")
        #expect(try Self.sas(lab.gateway, spis: old).isEmpty && Self.sas(lab.peers[2], spis: old).isEmpty, "the old Child SA stayed")
        #expect(Self.spis(lab, 10) == kept, "an unchanged entry was renegotiated")
    }

    /// A file whose new entry has an error changes nothing: the entry it drops stays, with its SAs, and nothing of
    /// the new one reaches the kernel.
    @Test func aReloadWithAnErrorInANewEntryChangesNothing() throws {
        let lab = try Self.bothUp(seed: 24)
        let before = (Self.spis(lab, 10), Self.spis(lab, 20))
        let policies = Set(try lab.gateway.kernel.listPolicies())

        let bad = InProcessLab.ExtraEntry(sequence: 30, remoteSubnet: "10.4.0.0/16", espProposals: "no-such-cipher")
        let report = lab.reloadGateway(lab.gatewayYAML(extra: [bad]))
        #expect(report.refused && !report.errors.isEmpty, "\(report)")
        #expect(report.errors.allSatisfy { $0.hasPrefix("/nonexistent/gateway.yaml:") }, "\(report.errors)")
        #expect(lab.events.contains { $0.kind == "reload-refused" })
        lab.run(for: .seconds(3))
        #expect(!lab.events.contains { $0.kind == "entry-removed" })
        #expect(Self.entry(lab, 30) == nil)
        #expect((Self.spis(lab, 10), Self.spis(lab, 20)) == before)
        #expect(Set(try lab.gateway.kernel.listPolicies()) == policies)
    }
}
