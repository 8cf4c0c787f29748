import Foundation

/// The strongSwan failover baseline: the failover lab (host, local gateway, N remote gateways that all hold
/// 10.2.0.1) with strongSwan 5.9.8 as the LOCAL gateway, configured the way an experienced operator does failover to
/// the next of several peers with DPD: one connection with `remote_addrs = gw1,gw2,gw3`, `dpd_action = restart`,
/// `keyingtries = 0`. Gateway 1 is SIGKILLed while the host pings 10.2.0.1 every 10 ms; the run measures the time to
/// "declared dead" (charon's log), the time to a Child SA with another gateway, and the ping blackout.
///
/// Mapping from Vigil's periodic DPD (interval 1 s, retry interval 200 ms, 3 retries: probe, three retries 200 ms
/// apart, dead 800 ms after the probe) to strongSwan, which has no separate retry interval:
/// - `dpd_delay = 1s`: charon probes when nothing arrived for 1 s (IKEv2 empty INFORMATIONAL, IKEv1 R-U-THERE).
///   Its DPD timer counts whole seconds, so the first probe came 0.6-1.6 s after the kill in our runs.
/// - `retransmit_timeout = 0.2`, `retransmit_base = 1.0`, `retransmit_tries = 3`: an IKEv2 probe is retransmitted
///   3 times 200 ms apart and the peer is declared dead 800 ms after the probe, as with Vigil. The schedule is
///   charon-global: it also paces IKE_SA_INIT / Main Mode towards the next peer, which Vigil tunes separately.
/// - IKEv1: charon never retransmits an R-U-THERE; it sends one per `dpd_delay` and schedules a timeout check
///   `dpd_timeout - dpd_delay` after each (whole seconds; `dpd_timeout` 0 means "the retransmit schedule's sum",
///   but strongSwan's task_manager_v1.c subtracts `dpd_delay` from that in unsigned milliseconds: 800 - 1000 wraps
///   to ~49 days. Consistent with that, 5.9.8 with `dpd_timeout` unset never declared the peer dead in our runs).
///   `dpd_timeout = 2s` is the closest honest setting: dead 1 s after the probe (Vigil: 0.8 s); `1s` would
///   declare a quiet but healthy peer dead at the very probe.
public enum StrongSwanBaseline {
    public struct Configuration: Sendable {
        public var ikeVersion: Int
        public var gatewayCount = 3
        /// `dpd_delay` in whole seconds (swanctl accepts no fractions).
        public var dpdDelaySeconds = 1
        public var retransmitTimeout = 0.2
        public var retransmitBase = 1.0
        public var retransmitTries = 3
        /// IKEv1 only: `dpd_timeout` in whole seconds (see the mapping above).
        public var ikev1DPDTimeoutSeconds = 2
        /// How long to wait after the kill for a Child SA with another gateway and a ping through it.
        public var recoveryBound: Duration = .seconds(60)
        /// Steady pinging through the tunnel before the kill.
        public var settleBeforeKill: Duration = .seconds(2)
        public var ikeProposal = "aes256-sha256-modp2048"
        public var espProposal = "aes256-sha256"
        public var psk = "lab-baseline-secret-42"
        /// Every charon leaves ESP to the kernel (kernel-netlink; a kernel with ESP) instead of kernel-libipsec.
        public var kernelESP = false
        /// How the local charon moves to the next gateway.
        public var handover: Handover = .remoteAddresses

        public init(ikeVersion: Int) {
            precondition(ikeVersion == 1 || ikeVersion == 2, "IKE version is 1 or 2")
            self.ikeVersion = ikeVersion
        }
    }

    /// Two ways an operator makes charon move to another gateway.
    public enum Handover: String, Sendable {
        /// One connection, `remote_addrs = gw1,gw2,gw3`, `dpd_action = restart`, `keyingtries = 0`: charon's own
        /// retry. With kernel-netlink in the guest charon re-initiated to gateway 1 about 70 times in 60 s and
        /// never tried gateway 2 (swanctl.conf: "the first non-range/non-subnet is used to initiate").
        case remoteAddresses
        /// One connection per gateway (`site1` to gateway 1 with `dpd_action = clear`, `site2` to gateway 2 with
        /// `dpd_action = restart`) and an updown script that initiates `site2` when `site1`'s Child SA goes down
        /// (`down-client`): the usual way strongSwan fails over to a second peer.
        case updownHook
    }

    public struct Result: Sendable {
        public let configuration: Configuration
        /// The implementation-neutral part the benchmark compares (timeline from the kill, ping report).
        public let measurement: FailoverMeasurement
        /// Where charon sent IKE_SA_INIT / Main Mode after the kill, in order.
        public let initiations: [String]
        /// Bringing up Phase 1 and Phase 2 with live gateway 1 before the kill (`swanctl --initiate` round trip):
        /// what any failover must add to the detection time.
        public let initialNegotiation: Duration
        /// After the bound, the control: the same configuration with gateway 2 as its only peer comes up and carries
        /// ping (true when the run recovered by itself).
        public let nextGatewayWorks: Bool
        /// Charon's log after the kill, each line with its observed offset from the kill (charon's own timestamps
        /// have one-second resolution; the follower reads the log every 5 ms).
        public let logAfterKill: String

        public var timeline: FailoverTimeline { measurement.timeline }
        public var ping: PingReport { measurement.ping }
        public var killedAt: Date { measurement.killedAt }
        /// Kill → charon gave up on gateway 1 (IKEv2 "giving up after N retransmits", IKEv1 "DPD check timed out").
        public var timeToDeclaredDead: Duration? { measurement.sinceKill(.declaredDead) }
        /// Kill → a Child SA installed under an IKE SA with a gateway other than gateway 1.
        public var timeToChildSAWithNextGateway: Duration? { measurement.sinceKill(.phase2Up) }
        /// The silence the kill caused (the ping gap in progress at the kill); not recovered if it ran to the stop.
        public var blackout: PingGap? { measurement.blackout }
        /// The gateway the new Phase 1 came up with, if any.
        public var recoveredVia: String? { measurement.recoveredVia }

        public var recovered: Bool { timeToChildSAWithNextGateway != nil }

        public var report: String {
            var text = "strongSwan 5.9.8 baseline, IKEv\(configuration.ikeVersion), remote_addrs = "
            text += (0..<configuration.gatewayCount).map(FailoverLab.gatewayAddress).joined(separator: ",")
            text += ", dpd_delay \(configuration.dpdDelaySeconds)s, retransmit \(configuration.retransmitTimeout)/\(configuration.retransmitBase)/\(configuration.retransmitTries)\n"
            text += timeline.rendered(expected: [.firstProbe, .declaredDead, .phase1Up, .phase2Up, .firstPingThrough]) + "\n"
            text += "declared dead: \(StrongSwanBaseline.describe(timeToDeclaredDead))\n"
            text += "Child SA with next gateway: \(StrongSwanBaseline.describe(timeToChildSAWithNextGateway))"
            text += recoveredVia.map { " via \($0)" } ?? " (not within \(configuration.recoveryBound))"
            text += "\nblackout: \(blackout.map { PingOutput.milliseconds($0.duration) + ($0.recovered ? "" : " (not recovered)") } ?? "none")\n"
            let counts = Dictionary(grouping: initiations, by: { $0 }).mapValues(\.count)
            text += "initial Phase 1 + Phase 2 with live gateway 1: \(StrongSwanBaseline.describe(initialNegotiation))\n"
            text += "control, same configuration with only gateway 2: \(nextGatewayWorks ? "comes up and carries ping" : "FAILED")\n"
            text += "initiations after kill: \(initiations.count) " + counts.keys.sorted().map { "\($0)×\(counts[$0]!)" }.joined(separator: " ") + "\n"
            text += "ping: \(ping.summary)"
            return text
        }
    }

    /// The local gateway's swanctl.conf: one connection, the remote gateways in order (all of them unless `peers`
    /// is given), DPD with restart; with `.updownHook` (and no `peers`), one connection per first two gateways and
    /// the hook at `updown`.
    public static func localConfig(_ configuration: Configuration, peers: [String]? = nil, updown: String? = nil) -> String {
        if peers == nil, configuration.handover == .updownHook, let updown {
            let first = connection("site1", configuration, peers: FailoverLab.gatewayAddress(0), dpdAction: "clear", updown: updown)
            let second = connection("site2", configuration, peers: FailoverLab.gatewayAddress(1), dpdAction: "restart", updown: nil)
            return "connections {\n\(first)\n\(second)\n}\n" + secrets(configuration)
        }
        let peers = (peers ?? (0..<configuration.gatewayCount).map(FailoverLab.gatewayAddress)).joined(separator: ",")
        return "connections {\n\(connection("site", configuration, peers: peers, dpdAction: "restart", updown: nil))\n}\n" + secrets(configuration)
    }

    static func connection(_ name: String, _ configuration: Configuration, peers: String, dpdAction: String, updown: String?) -> String {
        """
            \(name) {
                version = \(configuration.ikeVersion)
                local_addrs = \(FailoverLab.vigilWANAddress)
                remote_addrs = \(peers)
                proposals = \(configuration.ikeProposal)
                encap = yes
                dpd_delay = \(configuration.dpdDelaySeconds)s\(configuration.ikeVersion == 1 ? "\n        dpd_timeout = \(configuration.ikev1DPDTimeoutSeconds)s" : "")
                keyingtries = 0
                local { auth = psk
                        id = \(FailoverLab.vigilWANAddress) }
                remote { auth = psk }
                children {
                    \(name) {
                        local_ts = \(FailoverLab.localSubnet)
                        remote_ts = \(FailoverLab.remoteSubnet)
                        esp_proposals = \(configuration.espProposal)
                        dpd_action = \(dpdAction)\(updown.map { "\n                updown = \($0)" } ?? "")
                    }
                }
            }
        """
    }

    static func secrets(_ configuration: Configuration) -> String {
        """
        secrets {
            ike-any { secret = "\(configuration.psk)" }
        }
        """
    }

    /// The updown hook of `.updownHook`: when `site1`'s Child SA goes down, initiate `site2` in the background
    /// (the hook runs in a charon thread; swanctl waits for charon, so it must not block the hook).
    static func updownScript(_ local: StrongSwan) -> String {
        let conf = local.directory.appendingPathComponent("strongswan.conf").path
        return """
        #!/bin/sh
        if [ "$PLUTO_VERB" = down-client ] && [ "$PLUTO_CONNECTION" = site1 ]; then
            STRONGSWAN_CONF='\(conf)' swanctl --initiate --child site2 --timeout 60 --uri 'unix://\(local.viciSocket)' >/dev/null 2>&1 &
        fi
        exit 0

        """
    }

    /// Builds the lab, brings the tunnel up through gateway 1, kills it and watches. Tears everything down.
    public static func run(_ configuration: Configuration) throws -> Result {
        let lab = try FailoverLab(gatewayCount: configuration.gatewayCount)
        defer { lab.destroy() }
        var gatewaySettings = StrongSwan.Settings()
        gatewaySettings.userspaceESP = !configuration.kernelESP
        for index in 0..<configuration.gatewayCount {
            try lab.startStrongSwan(index, swanctlConf: FailoverLab.remoteGatewayConfig(
                index: index, ikeVersion: configuration.ikeVersion, ikeProposal: configuration.ikeProposal,
                espProposal: configuration.espProposal, psk: configuration.psk), settings: gatewaySettings)
        }
        var settings = StrongSwan.Settings()
        settings.userspaceESP = !configuration.kernelESP
        settings.retransmitTimeout = configuration.retransmitTimeout
        settings.retransmitBase = configuration.retransmitBase
        settings.retransmitTries = configuration.retransmitTries
        let local = try StrongSwan(namespace: lab.vigil, name: "local")
        defer { local.stop(); local.removeFiles() }
        let updown = local.directory.appendingPathComponent("updown.sh").path
        try updownScript(local).write(toFile: updown, atomically: true, encoding: .utf8)
        chmod(updown, 0o755)
        try local.start(swanctlConf: localConfig(configuration, updown: updown), settings: settings)
        let initiateStarted = Date()
        let initiated = try local.initiate(child: configuration.handover == .updownHook ? "site1" : "site")
        let initialNegotiation = Duration.seconds(Date().timeIntervalSince(initiateStarted))
        guard initiated.succeeded else {
            throw LabError("initial tunnel to gateway 1 failed: \(initiated.stderr)\(initiated.stdout)\nlocal log:\n\(local.log)")
        }

        let ping = PingMonitor(namespace: lab.host, destination: FailoverLab.remoteServiceAddress)
        try ping.start()
        defer { ping.stop() }
        try waitForReplies(ping, count: 20, timeout: .seconds(5))
        sleep(configuration.settleBeforeKill)

        let follower = LogFollower(path: local.logPath)
        _ = follower.poll()  // everything before the kill is history
        var timeline = FailoverTimeline()
        let killedAt = Date()
        timeline.mark(.killed, at: killedAt, detail: "SIGKILL gateway 1 \(FailoverLab.gatewayAddress(0))")
        lab.kill(0)

        var observer = CharonLogObserver(deadPeer: FailoverLab.gatewayAddress(0))
        let deadline = killedAt.addingTimeInterval(seconds(configuration.recoveryBound))
        var lastPingCheck = Date.distantPast
        while Date() < deadline {
            for line in follower.poll() { observer.observe(line, timeline: &timeline) }
            if let phase2 = observer.childSAWithNextGateway, Date().timeIntervalSince(lastPingCheck) > 0.05 {
                lastPingCheck = Date()
                if ping.repliesSoFar().contains(where: { $0.received > phase2 }) { break }
            }
            usleep(5_000)
        }
        usleep(200_000)
        for line in follower.poll() { observer.observe(line, timeline: &timeline) }
        let report = ping.stop()
        // Another process deleting the lab's namespaces mid-run shows up as vanished interfaces: not a measurement.
        if let vanished = follower.lines.first(where: { $0.text.contains("interface wan0 deleted") }) {
            throw LabError("the local gateway's WAN interface vanished during the run (\(vanished.text)); discard this run")
        }

        let nextGatewayWorks = recovered(observer) ? true : try controlWithNextGateway(lab: lab, local: local, configuration)
        let blackout = report.outage(after: killedAt)
        if let blackout, blackout.recovered { timeline.mark(.firstPingThrough, at: blackout.end) }
        let logAfterKill = follower.lines.map { line in
            String(format: "%+8.3f  ", line.observed.timeIntervalSince(killedAt)) + line.text
        }.joined(separator: "\n")
        let measurement = FailoverMeasurement(
            implementation: "strongSwan 5.9.8", ikeVersion: configuration.ikeVersion, timeline: timeline, ping: report,
            bound: configuration.recoveryBound, recoveredVia: observer.recoveredVia)
        return Result(
            configuration: configuration, measurement: measurement, initiations: observer.initiations,
            initialNegotiation: initialNegotiation, nextGatewayWorks: nextGatewayWorks, logAfterKill: logAfterKill)
    }

    static func recovered(_ observer: CharonLogObserver) -> Bool { observer.childSAWithNextGateway != nil }

    /// The control: the same local configuration with gateway 2 as its only peer comes up and carries the host's
    /// ping, so a baseline that never reached gateway 2 failed by its choice of peer, not because of the lab.
    static func controlWithNextGateway(lab: FailoverLab, local: StrongSwan, _ configuration: Configuration) throws -> Bool {
        try local.reconfigure(swanctlConf: localConfig(configuration, peers: [FailoverLab.gatewayAddress(1)]))
        guard try local.initiate(child: "site").succeeded else { return false }
        return try lab.host.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", FailoverLab.remoteServiceAddress]).succeeded
    }

    static func waitForReplies(_ ping: PingMonitor, count: Int, timeout: Duration) throws {
        let deadline = Date().addingTimeInterval(seconds(timeout))
        while Date() < deadline {
            if ping.repliesSoFar().count >= count { return }
            usleep(20_000)
        }
        throw LabError("no steady ping through the tunnel before the kill:\n\(ping.output.suffix(2000))")
    }

    static func sleep(_ duration: Duration) { usleep(UInt32(seconds(duration) * 1_000_000)) }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    static func describe(_ duration: Duration?) -> String {
        duration.map { String(format: "%.3f s", seconds($0)) } ?? "not reached"
    }
}

/// Reads what a process appends to its log, stamping each line with the wall-clock time it was first seen.
public final class LogFollower: @unchecked Sendable {
    public struct Line: Sendable {
        public let observed: Date
        public let text: String
    }

    public let path: String
    private var offset: UInt64 = 0
    private var partial = Data()
    /// Every line returned by `poll()` after the first call, in order.
    public private(set) var lines: [Line] = []
    private var skipped = false

    public init(path: String) { self.path = path }

    /// New complete lines since the last poll. The first call returns the backlog and does not keep it in `lines`.
    public func poll(now: Date = Date()) -> [Line] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: offset)) != nil, let data = try? handle.readToEnd(), !data.isEmpty else { return [] }
        offset += UInt64(data.count)
        partial.append(data)
        guard let lastNewline = partial.lastIndex(of: UInt8(ascii: "\n")) else { return [] }
        let complete = partial[partial.startIndex...lastNewline]
        partial = Data(partial[partial.index(after: lastNewline)...])
        let new = String(decoding: complete, as: UTF8.self).split(separator: "\n").map { Line(observed: now, text: String($0)) }
        if skipped { lines += new } else { skipped = true }
        return new
    }
}

/// Turns charon log lines (5.9.8 wording) into failover marks.
struct CharonLogObserver {
    let deadPeer: String
    private(set) var initiations: [String] = []
    private(set) var recoveredVia: String?
    private(set) var childSAWithNextGateway: Date?
    private var phase1WithNextGateway = false

    init(deadPeer: String) { self.deadPeer = deadPeer }

    mutating func observe(_ line: LogFollower.Line, timeline: inout FailoverTimeline) {
        let text = line.text
        if text.contains("sending DPD request"), timeline.time(of: .firstProbe) == nil {
            timeline.mark(.firstProbe, at: line.observed)
        }
        if text.contains("giving up after") || text.contains("DPD check timed out"), timeline.time(of: .declaredDead) == nil {
            timeline.mark(.declaredDead, at: line.observed)
        }
        if text.contains("initiating "), text.contains("IKE_SA"), let range = text.range(of: " to ") {
            initiations.append(String(text[range.upperBound...].prefix { !$0.isWhitespace }))
        }
        if text.contains("IKE_SA"), text.contains(" established between "), let range = text.range(of: "...") {
            let peer = String(text[range.upperBound...].prefix { $0 != "[" && !$0.isWhitespace })
            timeline.mark(.phase1Up, at: line.observed, detail: peer)
            if peer != deadPeer, recoveredVia == nil {
                recoveredVia = peer
                phase1WithNextGateway = true
            }
        }
        if text.contains("CHILD_SA"), text.contains(" established "), phase1WithNextGateway, childSAWithNextGateway == nil {
            childSAWithNextGateway = line.observed
            timeline.mark(.phase2Up, at: line.observed)
        }
    }
}
