import Foundation
import Testing
@testable import VigilLab

/// What strongSwan 5.9.8 does as a failover gateway with `remote_addrs = gw1,gw2,gw3`, `dpd_action = restart`,
/// `keyingtries = 0` when gateway 1 dies: it declares gateway 1 dead within about 1.5 s, then re-initiates to
/// gateway 1 again and again (ike_cfg's resolve_other always returns the first address; strongSwan issue #776) and
/// never reaches gateway 2. Serialized: two labs with charons and 10 ms pings would skew each other's timing.
@Suite(.serialized) struct StrongSwanBaselineTests {
    static let bound: Duration = .seconds(12)

    static func explain(_ result: StrongSwanBaseline.Result) -> Comment {
        let log = result.logAfterKill.split(separator: "\n").filter {
            !$0.contains("activating") && !$0.contains("queueing") && !$0.contains("error writing to socket")
        }.prefix(60).joined(separator: "\n")
        return "\(result.report)\ncharon log after the kill:\n\(log)"
    }

    static func assertRetriesTheDeadGatewayForever(ikeVersion: Int) throws {
        var configuration = StrongSwanBaseline.Configuration(ikeVersion: ikeVersion)
        configuration.recoveryBound = bound
        let result = try StrongSwanBaseline.run(configuration)
        let deadGateway = FailoverLab.gatewayAddress(0)

        // DPD works: the dead peer is noticed within dpd_delay plus the 0.8-1 s probe deadline (observed ~1.4-1.6 s).
        let dead = try #require(result.timeToDeclaredDead, explain(result))
        #expect(dead < .milliseconds(3500), explain(result))
        let probe = try #require(result.timeline.time(of: .firstProbe), explain(result))
        #expect(probe < result.timeline.time(of: .declaredDead)!, explain(result))
        // ... but every new attempt goes to the first address again, never to gateway 2 or 3.
        #expect(result.initiations.count >= 3, explain(result))
        #expect(result.initiations.allSatisfy { $0 == deadGateway }, explain(result))
        #expect(result.recoveredVia == nil, explain(result))
        #expect(!result.recovered, explain(result))
        // So the host's traffic stays black until the end of the bound.
        let blackout = try #require(result.blackout, explain(result))
        #expect(!blackout.recovered, explain(result))
        #expect(blackout.duration > bound - .seconds(1), explain(result))
        #expect(result.ping.received > 20, "traffic flowed before the kill: \(result.ping.summary)")
        // The control: gateway 2 was alive and acceptable all along.
        #expect(result.nextGatewayWorks, explain(result))
    }

    @Test func ikev2KeepsRetryingTheDeadFirstGateway() throws {
        try Self.assertRetriesTheDeadGatewayForever(ikeVersion: 2)
    }

    @Test func ikev1KeepsRetryingTheDeadFirstGateway() throws {
        try Self.assertRetriesTheDeadGatewayForever(ikeVersion: 1)
    }

    @Test func localConfigurationIsTheOperatorsFailoverSetup() {
        let v2 = StrongSwanBaseline.localConfig(StrongSwanBaseline.Configuration(ikeVersion: 2))
        #expect(v2.contains("remote_addrs = 192.0.2.11,192.0.2.12,192.0.2.13"))
        #expect(v2.contains("dpd_action = restart"))
        #expect(v2.contains("keyingtries = 0"))
        #expect(v2.contains("dpd_delay = 1s"))
        #expect(!v2.contains("dpd_timeout"), "IKEv2 liveness uses the retransmit schedule")
        let v1 = StrongSwanBaseline.localConfig(StrongSwanBaseline.Configuration(ikeVersion: 1))
        #expect(v1.contains("version = 1"))
        #expect(v1.contains("dpd_timeout = 2s"))
    }

    /// The handover that works: a connection per gateway, the first cleared on DPD and its updown hook initiating
    /// the second in the background; the control run (`peers`) stays one connection.
    @Test func updownHandoverIsTwoConnectionsAndAHook() throws {
        var configuration = StrongSwanBaseline.Configuration(ikeVersion: 2)
        configuration.handover = .updownHook
        let text = StrongSwanBaseline.localConfig(configuration, updown: "/lab/updown.sh")
        let site1 = try #require(text.range(of: "site1 {")), site2 = try #require(text.range(of: "site2 {"))
        let first = String(text[site1.lowerBound..<site2.lowerBound]), second = String(text[site2.lowerBound...])
        #expect(first.contains("remote_addrs = 192.0.2.11\n"))
        #expect(first.contains("dpd_action = clear"))
        #expect(first.contains("updown = /lab/updown.sh"))
        #expect(second.contains("remote_addrs = 192.0.2.12\n"))
        #expect(second.contains("dpd_action = restart"))
        #expect(!second.contains("updown"))
        let control = StrongSwanBaseline.localConfig(configuration, peers: ["192.0.2.12"], updown: "/lab/updown.sh")
        #expect(control.contains("site {") && !control.contains("site1") && !control.contains("updown"))
        let namespace = try NetworkNamespace(prefix: "hook")
        defer { namespace.destroy() }
        let local = try StrongSwan(namespace: namespace, name: "hook")
        defer { local.removeFiles() }
        let script = StrongSwanBaseline.updownScript(local)
        #expect(script.hasPrefix("#!/bin/sh\n"))
        #expect(script.contains("[ \"$PLUTO_VERB\" = down-client ] && [ \"$PLUTO_CONNECTION\" = site1 ]"))
        #expect(script.contains("swanctl --initiate --child site2") && script.contains("&\n"), "initiates in the background")
    }

    /// The log observer on charon 5.9.8 wording: a failover that does reach gateway 2 (lines as charon prints them).
    @Test func observerMarksAFailoverFromCharonLogLines() throws {
        let origin = Date(timeIntervalSince1970: 1_800_000_000)
        let lines: [(Double, String)] = [
            (0.60, "16:18:06 13[IKE] sending DPD request"),
            (0.80, "16:18:07 14[IKE] retransmit 1 of request with message ID 2"),
            (1.40, "16:18:07 12[IKE] giving up after 3 retransmits"),
            (1.41, "16:18:07 12[IKE] initiating IKE_SA site[2] to 192.0.2.11"),
            (2.20, "16:18:08 02[IKE] giving up after 3 retransmits"),
            (2.21, "16:18:08 02[IKE] initiating IKE_SA site[3] to 192.0.2.12"),
            (2.25, "16:18:08 09[IKE] IKE_SA site[3] established between 192.0.2.1[192.0.2.1]...192.0.2.12[192.0.2.12]"),
            (2.26, "16:18:08 09[IKE] CHILD_SA site{2} established with SPIs c1a2b3c4_i c5d6e7f8_o and TS 10.1.0.0/24 === 10.2.0.0/24"),
        ]
        var observer = CharonLogObserver(deadPeer: "192.0.2.11")
        var timeline = FailoverTimeline()
        timeline.mark(.killed, at: origin)
        for (offset, text) in lines {
            observer.observe(LogFollower.Line(observed: origin.addingTimeInterval(offset), text: text), timeline: &timeline)
        }
        #expect(observer.initiations == ["192.0.2.11", "192.0.2.12"])
        #expect(observer.recoveredVia == "192.0.2.12")
        #expect(observer.childSAWithNextGateway == origin.addingTimeInterval(2.26))
        #expect(timeline.time(of: .firstProbe) == origin.addingTimeInterval(0.60))
        #expect(timeline.time(of: .declaredDead) == origin.addingTimeInterval(1.40), "the first give-up, not the later ones")
        #expect(timeline.time(of: .phase1Up) == origin.addingTimeInterval(2.25))
        #expect(timeline.time(of: .phase2Up) == origin.addingTimeInterval(2.26))
    }

    @Test func ikev1DPDTimeoutLineDeclaresDeath() {
        var observer = CharonLogObserver(deadPeer: "192.0.2.11")
        var timeline = FailoverTimeline()
        let at = Date(timeIntervalSince1970: 5)
        observer.observe(.init(observed: at, text: "16:19:17 11[JOB] DPD check timed out, enforcing DPD action"), timeline: &timeline)
        observer.observe(.init(observed: at, text: "16:19:17 11[IKE] initiating Main Mode IKE_SA site[2] to 192.0.2.11"), timeline: &timeline)
        #expect(timeline.time(of: .declaredDead) == at)
        #expect(observer.initiations == ["192.0.2.11"])
        #expect(observer.childSAWithNextGateway == nil)
    }
}
