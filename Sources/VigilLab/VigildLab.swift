import Foundation
import VigilAddressing
import VigilControl

/// vigild in the failover lab against strongSwan gateways: its configuration, start, control API and events. Used
/// by the end-to-end tests and by `make demo`.
public final class VigildLab: @unchecked Sendable {
    public enum DataPlane: String, Sendable { case userspace, kernel }

    public struct Settings: Sendable {
        public var ikeVersion = 2
        public var dataPlane = DataPlane.userspace
        public var dpdMode = "periodic"
        public var interval = "1s"
        public var retry = "200ms"
        public var retries = 3
        public var action = "restart"
        public var ikeProposal = "aes256-sha256-modp2048"
        public var espProposal = "aes256-sha256"
        public var connectTimeout = "3s"
        public var backoff = "{ initial: 500ms, maximum: 2s }"
        public var preferredFirst = false
        public var idleTime: String?
        public var start = true
        public var gatewayCount = 3
        public var childLifetime: String?
        public var ikeLifetime: String?
        /// Return to the preferred peer once it has answered Phase 1 probes for this long.
        public var preemptionHoldDown: String?
        /// How many of the gateways vigild lists (and has keys for); the rest are strangers to it.
        public var listedPeers: Int?
        /// Kernel data plane only: SAs to XFRM through libnl (a kernel with ESP, e.g. the QEMU guest) instead of the
        /// recording fake this host's kernel needs.
        public var kernelSAs = false
        /// vigild's `encapsulation` (`force` or `auto`) and strongSwan's `encap` (yes / no) on the gateways.
        public var encapsulation = "force"
        /// strongSwan gateways leave ESP to the kernel (kernel-netlink) instead of kernel-libipsec.
        public var gatewayKernelESP = false
        /// The entry's `monitor` key (tunnel monitoring), as YAML, e.g. `{ address: 10.2.0.1, source: 10.1.0.1 }`.
        public var monitor: String?
        /// vigild's traffic selectors (its entry's `traffic`) and the gateways' (`local_ts`, `remote_ts`), when not
        /// the lab's subnets: e.g. a full tunnel, whose selectors cover the tunnel endpoints themselves.
        public var traffic: (local: String, remote: String) = (FailoverLab.localSubnet, FailoverLab.remoteSubnet)
        public var gatewayTraffic: (local: String, remote: String) = (FailoverLab.remoteSubnet, FailoverLab.localSubnet)
        /// More `global:` keys, as YAML lines indented by two spaces (e.g. `  hooks: [...]`).
        public var extraGlobal: String?
        public init() {}
    }

    public static let psk = "vigil-lab-secret-0123456789"

    public let lab: FailoverLab
    public let settings: Settings
    public let directory: URL
    public private(set) var vigild: VigildProcess!
    public var socketPath: String { directory.appendingPathComponent("vigil.sock").path }
    /// vigild's state file (run-time peer lists), in the lab's own directory.
    public var stateFilePath: String { directory.appendingPathComponent("state/peers.json").path }

    public init(_ settings: Settings = Settings()) throws {
        self.settings = settings
        lab = try FailoverLab(gatewayCount: settings.gatewayCount)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vigild-lab-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    public func destroy() {
        vigild?.stop()
        lab.destroy()
    }

    /// Starts strongSwan on the gateways (responders for Vigil's entry), with strongSwan's own DPD when asked.
    public func startGateways(_ indices: [Int]? = nil, dpdDelay: String? = nil, rekeyTime: String? = nil, childRekeyTime: String? = nil) throws {
        for index in indices ?? Array(0..<settings.gatewayCount) {
            var strongSwan = StrongSwan.Settings()
            strongSwan.userspaceESP = !settings.gatewayKernelESP
            // A full tunnel: the gateway's remote selector holds vigild's address.
            let vigil = IPAddress(FailoverLab.vigilWANAddress)!
            strongSwan.allowPeerTrafficSelectors = !((try? IPPrefix.parse(settings.gatewayTraffic.remote))?.contains(vigil) ?? false)
            try lab.startStrongSwan(index, swanctlConf: gatewayConfig(index, dpdDelay: dpdDelay, rekeyTime: rekeyTime, childRekeyTime: childRekeyTime),
                                    settings: strongSwan)
        }
    }

    public func gatewayConfig(_ index: Int, dpdDelay: String? = nil, rekeyTime: String? = nil, childRekeyTime: String? = nil) -> String {
        FailoverLab.remoteGatewayConfig(
            index: index, ikeVersion: settings.ikeVersion, ikeProposal: settings.ikeProposal, espProposal: settings.espProposal,
            psk: Self.psk, dpdDelay: dpdDelay, rekeyTime: rekeyTime, childRekeyTime: childRekeyTime,
            forceEncapsulation: settings.encapsulation == "force",
            localTS: settings.gatewayTraffic.local, remoteTS: settings.gatewayTraffic.remote)
    }

    public var configYAML: String {
        let peers = (0..<(settings.listedPeers ?? settings.gatewayCount)).map { FailoverLab.gatewayAddress($0) }
        let peerList = peers.enumerated().map { index, peer in
            index == 0 && settings.preferredFirst ? "          - { address: \(peer), default: true }" : "          - \(peer)"
        }.joined(separator: "\n")
        var entry = """
              - sequence: 10
                ike-version: v\(settings.ikeVersion)
                start: \(settings.start)
                peers:
        \(peerList)
                traffic:
                  - local: \(settings.traffic.local)
                    remote: \(settings.traffic.remote)
                ike-proposals: [\(settings.ikeProposal)]
                esp-proposals: [\(settings.espProposal)]
                encapsulation: \(settings.encapsulation)
                connect-timeout: \(settings.connectTimeout)
                backoff: \(settings.backoff)
        """
        if let idle = settings.idleTime { entry += "\n        idle-time: \(idle)" }
        if let holdDown = settings.preemptionHoldDown { entry += "\n        preemption: { hold-down: \(holdDown) }" }
        if let child = settings.childLifetime { entry += "\n        child-lifetime: \(child)" }
        if let ike = settings.ikeLifetime { entry += "\n        ike-lifetime: \(ike)" }
        if let monitor = settings.monitor { entry += "\n        monitor: \(monitor)" }
        return """
        global:
          identity: \(FailoverLab.vigilWANAddress)
          listen: [\(FailoverLab.vigilWANAddress)]
          dataplane: \(settings.dataPlane.rawValue)
          secrets: vigil.secrets.yaml
          control-socket: \(socketPath)
          state-file: \(stateFilePath)
          dpd:
            mode: \(settings.dpdMode)
            interval: \(settings.interval)
            retry: \(settings.retry)
            retries: \(settings.retries)
            action: \(settings.action)
          ike-retransmit: { timeout: 500ms, base: 1.5, tries: 3 }\(settings.extraGlobal.map { "\n" + $0 } ?? "")
        crypto-maps:
          LAB:
            entries:
        \(entry)
        """
    }

    /// Writes the configuration and secrets and starts vigild in the Vigil gateway's namespace.
    public func startVigild(environment: [String: String] = [:]) throws {
        let config = directory.appendingPathComponent("vigil.yaml")
        try configYAML.write(to: config, atomically: true, encoding: .utf8)
        let secrets = directory.appendingPathComponent("vigil.secrets.yaml")
        let keys = (0..<(settings.listedPeers ?? settings.gatewayCount)).map { "  \(FailoverLab.gatewayAddress($0)): \"\(Self.psk)\"" }.joined(separator: "\n")
        try "pre-shared-keys:\n\(keys)\n".write(to: secrets, atomically: true, encoding: .utf8)
        chmod(secrets.path, 0o600)
        // VIGIL_VIGILD: another vigild binary, e.g. the one the Debian package installed (package-test).
        guard let binary = ProcessInfo.processInfo.environment["VIGIL_VIGILD"] ?? VigildProcess.productPath("vigild") else {
            throw LabError("vigild is not built next to the tests")
        }
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw LabError("vigild binary \(binary) is not executable") }
        vigild = VigildProcess(namespace: lab.vigil, binary: binary, configPath: config.path,
                               logPath: directory.appendingPathComponent("vigild.log").path)
        let extra = settings.dataPlane == .kernel && !settings.kernelSAs ? ["--sa-kernel", "recorded"] : []
        try vigild.start(extraArguments: extra + ["--log-level", "debug"], environment: environment)
        guard vigild.waitForLog(timeout: 10, { $0.contains("vigild running") }) else {
            throw LabError("vigild did not start:\n\(vigild.log)")
        }
    }

    public func request(_ request: ControlRequest) throws -> ControlResponse {
        try ControlClient(path: socketPath).send(request)
    }

    public func events() throws -> [DaemonEvent] { try request(ControlRequest(command: .events)).events ?? [] }

    /// Polls the event list until `predicate` finds an event, or the timeout passes.
    @discardableResult
    public func waitForEvent(timeout: Double, _ predicate: (DaemonEvent) -> Bool) throws -> DaemonEvent? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let event = try events().first(where: predicate) { return event }
            usleep(20_000)
        }
        return try events().first(where: predicate)
    }

    /// Waits until vigild has programmed a data plane with `peer`; throws with vigild's log when it did not.
    @discardableResult
    public func requireTunnel(with peer: String, timeout: Double = 10) throws -> DaemonEvent {
        guard let event = try waitForEvent(timeout: timeout, { $0.kind == "dataplane-programmed" && $0.peer == peer }) else {
            throw LabError("no tunnel with \(peer) within \(timeout) s:\n\(diagnostics)")
        }
        return event
    }

    /// Polls the event list until `condition` holds for the whole list (one control request per poll), or the
    /// timeout passes; returns the list it held for, or nil.
    public func waitForEvents(timeout: Double, until condition: ([DaemonEvent]) -> Bool) throws -> [DaemonEvent]? {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            let events = try events()
            if condition(events) { return events }
            usleep(20_000)
        } while Date() < deadline
        let events = try events()
        return condition(events) ? events : nil
    }

    public var diagnostics: String {
        "vigild log:\n\(vigild?.log.suffix(6000) ?? "")"
    }
}

extension VigildLab {
    /// The wall-clock time of a daemon event.
    public static func date(of event: DaemonEvent) -> Date {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: event.wallClock) ?? .distantPast
    }

    /// The failover from `dead` to `next` that followed a failure at `failedAt`, from vigild's events and the ping
    /// monitor: killed, first probe, declared dead, Phase 1 and Phase 2 up with the next peer, data plane
    /// reprogrammed, first ping through.
    public func failoverTimeline(failedAt: Date, failure: String, dead: String, next: String, ping: PingReport?) throws -> FailoverTimeline {
        var timeline = FailoverTimeline()
        timeline.mark(.killed, at: failedAt, detail: "\(failure) \(dead)")
        let after = try events().filter { Self.date(of: $0) >= failedAt }
        let probes = after.filter { ($0.kind == "liveness-check" || $0.kind == "r-u-there") && $0.peer == dead }
        if let first = probes.first { timeline.mark(.firstProbe, at: Self.date(of: first), detail: "\(first.kind) \(first.detail)") }
        for probe in probes.dropFirst() { timeline.mark("probe", at: Self.date(of: probe), detail: "\(probe.kind) \(probe.detail)") }
        if let death = after.first(where: { $0.kind == "declared-dead" && $0.peer == dead }) {
            timeline.mark(.declaredDead, at: Self.date(of: death), detail: death.detail)
        }
        if let up = after.first(where: { $0.kind == "phase1-up" && $0.peer == next }) {
            timeline.mark(.phase1Up, at: Self.date(of: up), detail: next)
        }
        if let up = after.first(where: { $0.kind == "phase2-up" && $0.peer == next }) {
            timeline.mark(.phase2Up, at: Self.date(of: up), detail: next)
        }
        if let programmed = after.first(where: { $0.kind == "dataplane-programmed" && $0.peer == next }) {
            timeline.mark(.dataPlaneReprogrammed, at: Self.date(of: programmed), detail: programmed.detail)
        }
        if let ping, let gap = ping.outage(after: failedAt), gap.recovered {
            timeline.mark(.firstPingThrough, at: gap.end, detail: "blackout \(PingOutput.milliseconds(gap.duration))")
        }
        return timeline
    }
}

extension VigildLab {
    /// One failover measured the way `StrongSwanBaseline` measures strongSwan's: three gateways, DPD interval 1 s,
    /// retry 200 ms, 3 retries, pings every 10 ms from the host, gateway 1 SIGKILLed, wait up to `bound` for the
    /// tunnel through gateway 2.
    public static func measureFailover(ikeVersion: Int, bound: Duration, settings: Settings = Settings()) throws -> FailoverMeasurement {
        var settings = settings
        settings.ikeVersion = ikeVersion
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        guard try lab.waitForEvent(timeout: 10, { $0.kind == "dataplane-programmed" }) != nil else {
            throw LabError("vigild did not bring up the tunnel:\n\(lab.diagnostics)")
        }
        let ping = PingMonitor(namespace: lab.lab.host, destination: FailoverLab.remoteServiceAddress)
        try ping.start()
        Thread.sleep(forTimeInterval: 1)
        let killedAt = Date()
        lab.lab.kill(0)
        let next = FailoverLab.gatewayAddress(1)
        let (seconds, attoseconds) = bound.components
        let recovered = try lab.waitForEvent(timeout: Double(seconds) + Double(attoseconds) / 1e18) {
            $0.kind == "dataplane-programmed" && $0.peer == next
        }
        if recovered != nil {
            let deadline = Date().addingTimeInterval(3)
            while Date() < deadline, !ping.repliesSoFar().contains(where: { $0.received > killedAt.addingTimeInterval(0.2) }) { usleep(10_000) }
            Thread.sleep(forTimeInterval: 0.2)
        }
        let report = ping.stop()
        let timeline = try lab.failoverTimeline(failedAt: killedAt, failure: "SIGKILL", dead: FailoverLab.gatewayAddress(0), next: next, ping: report)
        var measurement = FailoverMeasurement(implementation: "vigild", ikeVersion: ikeVersion, timeline: timeline, ping: report, bound: bound,
                                              recoveredVia: recovered == nil ? nil : next)
        let killedStamp = ISO8601DateFormatter.string(from: killedAt, timeZone: TimeZone(identifier: "UTC")!,
                                                      formatOptions: [.withInternetDateTime, .withFractionalSeconds])
        measurement.evidence = "killed at \(killedStamp); ping \(report.summary); events:\n"
            + (try lab.events()).map { "  \($0.wallClock) \($0.kind) \($0.peer ?? "-") \($0.detail)" }.joined(separator: "\n")
        return measurement
    }
}
