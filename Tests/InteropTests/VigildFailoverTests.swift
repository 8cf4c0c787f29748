import Foundation
import Testing
import VigilDaemon
import VigilLab

/// Issue 8's acceptance: vigild against three strongSwan gateways listed in order, periodic DPD with short settings
/// (interval 1 s, retry 200 ms, 3 retries → death 1.6 s after the last proof of life), for IKEv2 and IKEv1, with the
/// userspace data plane carrying real pings every 10 ms (blackout measured), and cases 1 and 3 again with the kernel
/// data plane (policies and routes in the real kernel, SAs recorded because this kernel lacks ESP).
@Suite(.serialized) struct VigildFailoverTests {
    static let versions = [2, 1]
    /// interval + retries × retry with the lab's settings.
    static let deathSchedule = 1.0 + 3 * 0.2
    static let retry = 0.2

    // MARK: 1. Active peer killed with SIGKILL

    @Test(arguments: versions)
    func activePeerKilledFailsOverToTheNextListedPeer(ikeVersion: Int) throws {
        try killedPeerCase(ikeVersion: ikeVersion, dataPlane: .userspace, cut: false)
    }

    @Test(arguments: versions)
    func activePeerKilledWithTheKernelDataPlane(ikeVersion: Int) throws {
        try killedPeerCase(ikeVersion: ikeVersion, dataPlane: .kernel, cut: false)
    }

    // MARK: 2. Active peer's link cut with nftables

    @Test(arguments: versions)
    func activePeerLinkCutFailsOverToTheNextListedPeer(ikeVersion: Int) throws {
        try killedPeerCase(ikeVersion: ikeVersion, dataPlane: .userspace, cut: true)
    }

    private func killedPeerCase(ikeVersion: Int, dataPlane: VigildLab.DataPlane, cut: Bool) throws {
        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        settings.dataPlane = dataPlane
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let first = FailoverLab.gatewayAddress(0)
        let second = FailoverLab.gatewayAddress(1)
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" && $0.peer == first } != nil,
                     "no tunnel with the first peer:\n\(lab.diagnostics)")

        let ping = dataPlane == .userspace ? try PingMonitorLite.start(in: lab.lab.host) : nil
        if ping != nil {
            // Traffic flows before the failure.
            try #require(ping!.waitForReplies(10, timeout: 3), "no ping through the tunnel before the failure:\n\(lab.diagnostics)")
        }
        let failedAt = Date()
        if cut { try lab.lab.cutLink(0) } else { lab.lab.kill(0) }

        let moved = try lab.waitForEvent(timeout: 15) { $0.kind == "dataplane-programmed" && $0.peer == second }
        let pingReport = ping.map { monitor -> PingMonitorLite.Report in
            _ = monitor.waitForReplies(20, after: Date(), timeout: 3)
            return monitor.stop()
        }
        let events = try lab.events()
        let timeline = Self.timeline(events, failedAt: failedAt)
        try #require(moved != nil, "no failover to the second peer:\n\(timeline)\n\(lab.diagnostics)")

        // Declared dead no earlier than the schedule allows, and within one retry interval after it.
        let dead = try #require(events.first { $0.kind == "declared-dead" && $0.peer == first }, "\(timeline)")
        let deadAfter = Self.date(dead).timeIntervalSince(failedAt)
        let lastProof = Self.lastProofOfLife(dead)
        #expect(lastProof >= Self.deathSchedule - 0.001, "declared dead \(lastProof) s after the last proof of life\n\(timeline)")
        #expect(deadAfter <= Self.deathSchedule + Self.retry, "declared dead \(deadAfter) s after the failure\n\(timeline)")
        #expect(deadAfter >= Self.deathSchedule - 0.1, "declared dead only \(deadAfter) s after the failure\n\(timeline)")
        let probes = events.filter { ($0.kind == "liveness-check" || $0.kind == "r-u-there") && $0.peer == first && Self.date($0) > failedAt }
        #expect(probes.count == 3, "expected 3 probes to the dead peer, saw \(probes.count)\n\(timeline)")

        // The next listed peer has the IKE and Child SA, and strongSwan there agrees on the SPIs.
        let status = try #require(try lab.request(ControlRequest(command: .status)).status)
        let entry = try #require(status.entries.first)
        #expect(entry.activePeer == second, "\(timeline)")
        #expect(entry.ikeSAs.allSatisfy { $0.peer == second }, "the dead peer's IKE SA is still listed: \(entry.ikeSAs)")
        let child = try #require(entry.childSAs.first { $0.peer == second })
        #expect(!entry.childSAs.contains { $0.peer == first }, "the dead peer's Child SA is still listed")
        let theirs = try lab.lab.strongSwans[1]!.listSAs()
        #expect(theirs.contains("state=INSTALLED"), "strongSwan on the second gateway shows no Child SA: \(theirs)")
        #expect(theirs.contains("spi-in=\(child.outboundSPI)") && theirs.contains("spi-out=\(child.inboundSPI)"),
                "SPIs differ: Vigil in \(child.inboundSPI) out \(child.outboundSPI); strongSwan: \(theirs)")

        switch dataPlane {
        case .userspace:
            let report = try #require(pingReport)
            #expect(report.repliesAfterGap > 0, "pings do not flow again after the failover:\n\(timeline)")
            let routes = try lab.lab.vigil.ip("route", "show", "table", "86").stdout
            #expect(routes.contains("10.2.0.0/24 dev vigil0"), "route through the TUN device missing: \(routes)")
            print("[failover] IKEv\(ikeVersion) userspace \(cut ? "link cut" : "SIGKILL"): declared dead \(String(format: "%.3f", deadAfter)) s "
                + "after the failure, Child SA with the next peer \(String(format: "%.3f", Self.date(moved!).timeIntervalSince(Self.date(dead)))) s "
                + "after that, ping blackout \(String(format: "%.3f", report.blackout)) s")
        case .kernel:
            let policies = try lab.lab.vigil.ip("xfrm", "policy").stdout
            #expect(policies.contains("tmpl src \(FailoverLab.vigilWANAddress) dst \(second)"), "policies do not name the new peer: \(policies)")
            #expect(!policies.contains("dst \(first)"), "a policy still names the dead peer: \(policies)")
            let routes = try lab.lab.vigil.ip("route", "show", "table", "86").stdout
            #expect(routes.contains("10.2.0.0/24 dev wan0"), "route missing: \(routes)")
            #expect(!events.contains { $0.kind == "dataplane-programmed" && $0.detail.contains("REFUSED") },
                    "the kernel refused a step:\n\(timeline)")
        }
    }

    // MARK: 3. First two of three peers dead before start

    @Test(arguments: versions)
    func firstTwoPeersDeadAtStartEndsWithTheThird(ikeVersion: Int) throws {
        try firstTwoDeadCase(ikeVersion: ikeVersion, dataPlane: .userspace)
    }

    @Test(arguments: versions)
    func firstTwoPeersDeadAtStartWithTheKernelDataPlane(ikeVersion: Int) throws {
        try firstTwoDeadCase(ikeVersion: ikeVersion, dataPlane: .kernel)
    }

    private func firstTwoDeadCase(ikeVersion: Int, dataPlane: VigildLab.DataPlane) throws {
        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        settings.dataPlane = dataPlane
        settings.connectTimeout = "2s"
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        // Gateway 1 runs but its link is cut; gateway 2 has no IKE daemon at all.
        try lab.startGateways([0, 2])
        try lab.lab.cutLink(0)
        let started = Date()
        try lab.startVigild()
        let third = FailoverLab.gatewayAddress(2)
        let up = try lab.waitForEvent(timeout: 12) { $0.kind == "dataplane-programmed" && $0.peer == third }
        let events = try lab.events()
        try #require(up != nil, "never reached the third peer:\n\(Self.timeline(events, failedAt: started))\n\(lab.diagnostics)")
        // Two attempt timeouts (2 s each) and one negotiation.
        let elapsed = Self.date(up!).timeIntervalSince(started)
        #expect(elapsed <= 2 * 2.0 + 1.5, "took \(elapsed) s")
        let attempts = events.filter { $0.kind == "phase1-initiate" }.compactMap(\.peer)
        #expect(Array(attempts.prefix(3)) == [FailoverLab.gatewayAddress(0), FailoverLab.gatewayAddress(1), third],
                "attempts went to \(attempts)")
        #expect(try lab.lab.strongSwans[2]!.listSAs().contains("state=INSTALLED"))
        if dataPlane == .kernel {
            let policies = try lab.lab.vigil.ip("xfrm", "policy").stdout
            #expect(policies.contains("dst \(third)"), "policies do not name the third peer: \(policies)")
        } else {
            let ping = try lab.lab.host.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", FailoverLab.remoteServiceAddress])
            #expect(ping.succeeded, "no traffic through the third peer")
        }
        print("[failover] IKEv\(ikeVersion) \(dataPlane): first two peers dead, tunnel with the third after \(String(format: "%.3f", elapsed)) s")
    }

    // MARK: 4. All three dead, then the second comes back

    @Test(arguments: versions)
    func allDeadThenTheSecondReturns(ikeVersion: Int) throws {
        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        settings.connectTimeout = "1s"
        settings.backoff = "{ initial: 1s, maximum: 2s }"
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        for index in 0..<3 { try lab.lab.cutLink(index) }
        try lab.startVigild()
        let backedOff = try lab.waitForEvent(timeout: 8) { $0.kind == "cycleFailed" }
        try #require(backedOff != nil, "no backoff after a failed cycle:\n\(lab.diagnostics)")
        let restoredAt = Date()
        try lab.lab.restoreLink(1)
        let second = FailoverLab.gatewayAddress(1)
        let up = try lab.waitForEvent(timeout: 12) { $0.kind == "dataplane-programmed" && $0.peer == second }
        let events = try lab.events()
        try #require(up != nil, "never reached the returning second peer:\n\(Self.timeline(events, failedAt: restoredAt))")
        #expect(events.contains { $0.kind == "backoffEnded" }, "\(Self.timeline(events, failedAt: restoredAt))")
        let ping = try lab.lab.host.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", FailoverLab.remoteServiceAddress])
        #expect(ping.succeeded, "no traffic through the second peer")
    }

    // MARK: 5. On-demand mode

    @Test(arguments: versions)
    func onDemandSendsNoProbeWhileIdleAndAnswersTheirs(ikeVersion: Int) throws {
        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        settings.dpdMode = "on-demand"
        settings.gatewayCount = 2
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways(dpdDelay: "1s")
        try lab.startVigild()
        let first = FailoverLab.gatewayAddress(0)
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" } != nil, "\(lab.diagnostics)")
        // Idle in both directions while strongSwan probes us three times (its dpd_delay is 1 s).
        let probes = { (log: String) in
            ikeVersion == 2
                ? log.components(separatedBy: "generating INFORMATIONAL request").count - 1
                : log.components(separatedBy: "N(DPD) ]").count - 1
        }
        let deadline = Date().addingTimeInterval(20)
        while probes(lab.lab.strongSwans[0]!.log) < 3, Date() < deadline { usleep(50_000) }
        var events = try lab.events()
        #expect(!events.contains { $0.kind == "liveness-check" || $0.kind == "r-u-there" }, "Vigil probed an idle tunnel")
        let theirLog = lab.lab.strongSwans[0]!.log
        // strongSwan probed us (its own DPD) and kept its SA because Vigil answered.
        let theirProbes = probes(theirLog)
        #expect(theirProbes >= 3, "strongSwan sent \(theirProbes) DPD probes; log:\n\(theirLog.suffix(3000))")
        #expect(try lab.lab.strongSwans[0]!.listSAs().contains("state=INSTALLED"))
        // ... and strongSwan agrees that nothing came from Vigil: no request parsed from it.
        let fromVigil = ikeVersion == 2 ? "parsed INFORMATIONAL request" : "N(DPD_ACK) ]"
        let vigilProbesSeen = ikeVersion == 2 ? theirLog.components(separatedBy: fromVigil).count - 1 : 0
        #expect(vigilProbesSeen == 0, "strongSwan received \(vigilProbesSeen) liveness checks from Vigil")

        // Traffic to a silent peer: probes start within the interval, and the peer is declared dead.
        lab.lab.kill(0)
        let ping = try PingMonitorLite.start(in: lab.lab.host)
        let dead = try lab.waitForEvent(timeout: 6) { $0.kind == "declared-dead" && $0.peer == first }
        _ = ping.stop()
        events = try lab.events()
        #expect(dead != nil, "no death declared with traffic waiting:\n\(Self.timeline(events, failedAt: Date()))")
        #expect(events.contains { ($0.kind == "liveness-check" || $0.kind == "r-u-there") && $0.peer == first })
    }

    // MARK: 6. Preferred peer and idle-time

    @Test(arguments: versions)
    func preferredPeerReturnsAfterIdleTime(ikeVersion: Int) throws {
        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        settings.preferredFirst = true
        settings.idleTime = "3s"
        settings.gatewayCount = 2
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let first = FailoverLab.gatewayAddress(0)
        let second = FailoverLab.gatewayAddress(1)
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" && $0.peer == first } != nil)
        lab.lab.kill(0)
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" && $0.peer == second } != nil,
                     "\(lab.diagnostics)")
        // The preferred peer comes back; the entry idles on the backup for idle-time.
        try lab.startGateways([0])
        let idle = try lab.waitForEvent(timeout: 8) { $0.kind == "idleTimeout" && $0.peer == second }
        try #require(idle != nil, "no idle-time teardown of the backup peer:\n\(lab.diagnostics)")
        // Traffic: the next connection goes to the preferred peer first.
        let ping = try lab.lab.host.run(["ping", "-c", "20", "-i", "0.2", "-W", "1", FailoverLab.remoteServiceAddress])
        let back = try lab.waitForEvent(timeout: 8) { $0.kind == "dataplane-programmed" && $0.peer == first && $0.time > idle!.time }
        let events = try lab.events()
        #expect(back != nil, "did not return to the preferred peer:\n\(Self.timeline(events, failedAt: Date()))")
        let after = events.filter { $0.kind == "phase1-initiate" && $0.time > idle!.time }.compactMap(\.peer)
        #expect(after.first == first, "the next connection went to \(after)")
        #expect(ping.stdout.contains("bytes from"), "no traffic after the return")
    }

    // MARK: Preemption (beyond Cisco)

    @Test func preemptionReturnsToTheRecoveredPreferredPeerMakeBeforeBreak() throws {
        var settings = VigildLab.Settings()
        settings.preferredFirst = true
        settings.preemptionHoldDown = "2s"
        settings.gatewayCount = 2
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let first = FailoverLab.gatewayAddress(0)
        let second = FailoverLab.gatewayAddress(1)
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" && $0.peer == first } != nil)
        lab.lab.kill(0)
        try #require(try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" && $0.peer == second } != nil, "\(lab.diagnostics)")
        let ping = try PingMonitorLite.start(in: lab.lab.host)
        try lab.startGateways([0])
        let back = try lab.waitForEvent(timeout: 15) { $0.kind == "dataplane-programmed" && $0.peer == first && $0.detail.contains("moved from \(second)") }
        _ = ping.waitForReplies(20, after: Date(), timeout: 3)
        let report = ping.stop()
        let events = try lab.events()
        #expect(back != nil, "no return to the preferred peer:\n\(Self.timeline(events, failedAt: Date()))")
        #expect(events.contains { $0.kind == "preemption-probe-answered" && $0.peer == first })
        #expect(report.blackout < 0.5, "the move back interrupted traffic for \(report.blackout) s")
    }

    // MARK: Helpers

    static func date(_ event: DaemonEvent) -> Date {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: event.wallClock) ?? .distantPast
    }

    /// "last proof of life X s before" in a declared-dead event.
    static func lastProofOfLife(_ event: DaemonEvent) -> Double {
        guard let range = event.detail.range(of: "last proof of life ") else { return 0 }
        return Double(event.detail[range.upperBound...].prefix { $0 == "." || $0.isNumber }) ?? 0
    }

    static func timeline(_ events: [DaemonEvent], failedAt: Date) -> String {
        events.map { event in
            String(format: "%+8.3f  %-26@ %-12@ %@", date(event).timeIntervalSince(failedAt), event.kind, event.peer ?? "", event.detail)
        }.joined(separator: "\n")
    }
}
