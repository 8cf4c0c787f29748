import Foundation
import Testing
import VigilDaemon
import VigilLab

/// Tunnel monitoring against strongSwan (issue 19): two gateways, vigild with the userspace data plane and DPD as
/// the other failover tests use it (periodic, 1 s, retry 200 ms, 3 retries), the active gateway's forwarding broken
/// with nftables while its charon keeps answering DPD. With `monitor` set vigild declares the data path dead and moves
/// to gateway 2; without it vigild cannot tell and stays.
@Suite(.serialized) struct VigildTunnelMonitorTests {
    static let interval = 0.5
    static let threshold = 3
    /// The service address on every gateway's loopback, pinged from vigild's LAN address (inside the local selector).
    static let monitor = "{ address: \(FailoverLab.remoteServiceAddress), source: \(FailoverLab.vigilLANAddress), interval: 500ms, threshold: 3 }"
    static let first = FailoverLab.gatewayAddress(0)
    static let second = FailoverLab.gatewayAddress(1)

    /// A lab with two gateways, vigild up with the first, and pings from the host flowing through it.
    private func establishedLab(ikeVersion: Int, monitor: String?) throws -> (VigildLab, PingMonitorLite) {
        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        settings.gatewayCount = 2
        settings.monitor = monitor
        let lab = try VigildLab(settings)
        do {
            try lab.startGateways()
            try lab.startVigild()
            try lab.requireTunnel(with: Self.first)
            let ping = try PingMonitorLite.start(in: lab.lab.host)
            guard ping.waitForReplies(10, timeout: 5) else {
                _ = ping.stop()
                throw LabError("no ping through the tunnel before the failure:\n\(lab.diagnostics)")
            }
            return (lab, ping)
        } catch {
            lab.destroy()
            throw error
        }
    }

    private static func timeline(_ events: [DaemonEvent], since: Date) -> String {
        events.filter { VigildLab.date(of: $0) >= since.addingTimeInterval(-1) }
            .map { "  \($0.wallClock) \($0.kind) \($0.peer ?? "-") \($0.detail)" }.joined(separator: "\n")
    }

    /// A DPD answer (IKEv2 liveness check or IKEv1 R-U-THERE-ACK) from `peer` after `date`.
    private static func dpdAnswered(_ event: DaemonEvent, by peer: String, after date: Date) -> Bool {
        (event.kind == "liveness-answered" || event.kind == "r-u-there-ack") && event.peer == peer && VigildLab.date(of: event) > date
    }

    @Test(arguments: [2, 1])
    func brokenForwardingOnTheActivePeerIsDataPathDeadAndFailsOver(ikeVersion: Int) throws {
        let (lab, ping) = try establishedLab(ikeVersion: ikeVersion, monitor: Self.monitor)
        defer { lab.destroy() }
        let started = try #require(try lab.events().first { $0.kind == "tunnel-monitor-started" && $0.peer == Self.first },
                                   "monitoring did not start with the first peer:\n\(lab.diagnostics)")
        #expect(started.detail.contains("from 10.1.0.1 to 10.2.0.1 every 500ms"))

        let brokenAt = Date()
        try lab.lab.breakForwarding(0)
        let dead = try lab.waitForEvent(timeout: 15) { $0.kind == "data-path-dead" && $0.peer == Self.first }
        let moved = try lab.waitForEvent(timeout: 15) { $0.kind == "dataplane-programmed" && $0.peer == Self.second }
        let recovered = moved != nil && ping.waitForReplies(20, after: Date(), timeout: 5)
        let report = ping.stop()
        let events = try lab.events()
        let timeline = Self.timeline(events, since: brokenAt)
        let death = try #require(dead, "no data-path-dead:\n\(timeline)\n\(lab.diagnostics)")
        #expect(death.detail.hasPrefix("3 echo requests to 10.2.0.1 unanswered"), "\(death.detail)")
        let programmed = try #require(moved, "no failover to the second peer:\n\(timeline)\n\(lab.diagnostics)")

        // Detection: the threshold's intervals after the break, and not before (at most one more interval: the
        // request in flight when forwarding broke may have been answered).
        let detection = VigildLab.date(of: death).timeIntervalSince(brokenAt)
        #expect(detection >= Double(Self.threshold) * Self.interval - 0.1, "data path declared dead \(detection) s after the break\n\(timeline)")
        #expect(detection <= Double(Self.threshold + 1) * Self.interval + 0.5, "data path declared dead \(detection) s after the break\n\(timeline)")

        // The gateway's IKE daemon kept answering DPD the whole time: DPD alone would never have moved.
        #expect(!events.contains { $0.kind == "declared-dead" }, "DPD declared a peer dead:\n\(timeline)")
        #expect(events.contains { Self.dpdAnswered($0, by: Self.first, after: brokenAt) && VigildLab.date(of: $0) <= VigildLab.date(of: death) },
                "no DPD answer from the first gateway between the break and the death:\n\(timeline)")
        #expect(events.contains { $0.kind == "peerDead" && $0.peer == Self.first && VigildLab.date(of: $0) >= VigildLab.date(of: death) },
                "the coordinator was not told of the death:\n\(timeline)")

        // Traffic flows again through the second gateway, and monitoring restarted with it.
        #expect(recovered, "pings do not flow through the second gateway (\(report.replies) replies of \(report.sent)):\n\(timeline)")
        #expect(events.contains { $0.kind == "tunnel-monitor-started" && $0.peer == Self.second }, "\(timeline)")
        let status = try #require(try lab.request(ControlRequest(command: .status)).status)
        #expect(status.entries.first?.activePeer == Self.second, "\(timeline)")
        let metrics = try #require(try lab.request(ControlRequest(command: .metrics)).metrics)
        #expect(metrics.contains("vigil_failovers_total{map=\"LAB\",sequence=\"10\",reason=\"data-path-dead\"} 1"), "\(metrics)")
        let maps = try #require(try lab.request(ControlRequest(command: .maps)).maps)
        let failure = maps.entries.first?.peers.first { $0.address == Self.first }?.lastFailure
        #expect(failure?.hasPrefix("data path dead: 3 echo requests to 10.2.0.1 unanswered") == true, "\(String(describing: failure))")

        let toSecond = VigildLab.date(of: programmed).timeIntervalSince(brokenAt)
        print("[tunnel-monitor] IKEv\(ikeVersion) forwarding broken on gateway 1: data-path-dead after \(String(format: "%.3f", detection)) s, "
            + "data plane via gateway 2 after \(String(format: "%.3f", toSecond)) s, ping blackout \(String(format: "%.3f", report.blackout)) s")
    }

    @Test(arguments: [2, 1])
    func withoutMonitoringBrokenForwardingGoesUnnoticed(ikeVersion: Int) throws {
        let (lab, ping) = try establishedLab(ikeVersion: ikeVersion, monitor: nil)
        defer { lab.destroy() }
        let brokenAt = Date()
        try lab.lab.breakForwarding(0)
        // Six monitor intervals' worth of observation: no failover (nothing to wait for but its absence).
        let moved = try lab.waitForEvent(timeout: 6 * Self.interval) { $0.kind == "dataplane-programmed" && $0.peer == Self.second }
        let answered = try lab.waitForEvent(timeout: 5) { Self.dpdAnswered($0, by: Self.first, after: brokenAt) }
        let pingedThrough = ping.waitForReplies(1, after: brokenAt.addingTimeInterval(0.2), timeout: 0.5)
        _ = ping.stop()
        let events = try lab.events()
        let timeline = Self.timeline(events, since: brokenAt)
        // The break is real: the data path is dead, yet DPD through the same gateway is answered.
        #expect(!pingedThrough, "pings still pass the gateway whose forwarding was broken:\n\(timeline)")
        #expect(answered != nil, "the first gateway stopped answering DPD:\n\(timeline)")
        #expect(moved == nil, "vigild moved without tunnel monitoring:\n\(timeline)")
        #expect(!events.contains { $0.kind == "data-path-dead" || $0.kind == "tunnel-monitor-started" }, "\(timeline)")
        let status = try #require(try lab.request(ControlRequest(command: .status)).status)
        #expect(status.entries.first?.activePeer == Self.first, "\(timeline)")
    }
}
