import Foundation
import Testing
import VigilDaemon
import VigilLab

/// vigild in the failover lab against strongSwan gateways: configuration, start, control API, events.
final class VigildLab {
    enum DataPlane: String { case userspace, kernel }

    struct Settings {
        var ikeVersion = 2
        var dataPlane = DataPlane.userspace
        var dpdMode = "periodic"
        var interval = "1s"
        var retry = "200ms"
        var retries = 3
        var action = "restart"
        var ikeProposal = "aes256-sha256-modp2048"
        var espProposal = "aes256-sha256"
        var connectTimeout = "3s"
        var backoff = "{ initial: 500ms, maximum: 2s }"
        var preferredFirst = false
        var idleTime: String?
        var start = true
        var gatewayCount = 3
        var childLifetime: String?
        var ikeLifetime: String?
    }

    static let psk = "vigil-lab-secret-0123456789"

    let lab: FailoverLab
    let settings: Settings
    let directory: URL
    var vigild: VigildProcess!
    var socketPath: String { directory.appendingPathComponent("vigil.sock").path }

    init(_ settings: Settings = Settings()) throws {
        self.settings = settings
        lab = try FailoverLab(gatewayCount: settings.gatewayCount)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vigild-lab-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func destroy() {
        vigild?.stop()
        lab.destroy()
    }

    /// Starts strongSwan on the gateways (responders for Vigil's entry), with strongSwan's own DPD when asked.
    func startGateways(_ indices: [Int]? = nil, dpdDelay: String? = nil, rekeyTime: String? = nil, childRekeyTime: String? = nil) throws {
        for index in indices ?? Array(0..<settings.gatewayCount) {
            try lab.startStrongSwan(index, swanctlConf: gatewayConfig(index, dpdDelay: dpdDelay, rekeyTime: rekeyTime, childRekeyTime: childRekeyTime))
        }
    }

    func gatewayConfig(_ index: Int, dpdDelay: String? = nil, rekeyTime: String? = nil, childRekeyTime: String? = nil) -> String {
        FailoverLab.remoteGatewayConfig(
            index: index, ikeVersion: settings.ikeVersion, ikeProposal: settings.ikeProposal, espProposal: settings.espProposal,
            psk: Self.psk, dpdDelay: dpdDelay, rekeyTime: rekeyTime, childRekeyTime: childRekeyTime)
    }

    var configYAML: String {
        let peers = (0..<settings.gatewayCount).map { FailoverLab.gatewayAddress($0) }
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
                  - local: \(FailoverLab.localSubnet)
                    remote: \(FailoverLab.remoteSubnet)
                ike-proposals: [\(settings.ikeProposal)]
                esp-proposals: [\(settings.espProposal)]
                encapsulation: force
                connect-timeout: \(settings.connectTimeout)
                backoff: \(settings.backoff)
        """
        if let idle = settings.idleTime { entry += "\n        idle-time: \(idle)" }
        if let child = settings.childLifetime { entry += "\n        child-lifetime: \(child)" }
        if let ike = settings.ikeLifetime { entry += "\n        ike-lifetime: \(ike)" }
        return """
        global:
          identity: \(FailoverLab.vigilWANAddress)
          listen: [\(FailoverLab.vigilWANAddress)]
          dataplane: \(settings.dataPlane.rawValue)
          secrets: vigil.secrets.yaml
          control-socket: \(socketPath)
          dpd:
            mode: \(settings.dpdMode)
            interval: \(settings.interval)
            retry: \(settings.retry)
            retries: \(settings.retries)
            action: \(settings.action)
          ike-retransmit: { timeout: 500ms, base: 1.5, tries: 3 }
        crypto-maps:
          LAB:
            entries:
        \(entry)
        """
    }

    /// Writes the configuration and secrets and starts vigild in the Vigil gateway's namespace.
    func startVigild() throws {
        let config = directory.appendingPathComponent("vigil.yaml")
        try configYAML.write(to: config, atomically: true, encoding: .utf8)
        let secrets = directory.appendingPathComponent("vigil.secrets.yaml")
        let keys = (0..<settings.gatewayCount).map { "  \(FailoverLab.gatewayAddress($0)): \"\(Self.psk)\"" }.joined(separator: "\n")
        try "pre-shared-keys:\n\(keys)\n".write(to: secrets, atomically: true, encoding: .utf8)
        chmod(secrets.path, 0o600)
        guard let binary = VigildProcess.productPath("vigild") else { throw LabError("vigild is not built next to the tests") }
        vigild = VigildProcess(namespace: lab.vigil, binary: binary, configPath: config.path,
                               logPath: directory.appendingPathComponent("vigild.log").path)
        let extra = settings.dataPlane == .kernel ? ["--sa-kernel", "recorded"] : []
        try vigild.start(extraArguments: extra + ["--log-level", "debug"])
        guard vigild.waitForLog(timeout: 10, { $0.contains("vigild running") }) else {
            throw LabError("vigild did not start:\n\(vigild.log)")
        }
    }

    func request(_ request: ControlRequest) throws -> ControlResponse {
        try ControlClient(path: socketPath).send(request)
    }

    func events() throws -> [DaemonEvent] { try request(ControlRequest(command: .events)).events ?? [] }

    /// Polls the event list until `predicate` finds an event, or the timeout passes.
    @discardableResult
    func waitForEvent(timeout: Double, _ predicate: (DaemonEvent) -> Bool) throws -> DaemonEvent? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let event = try events().first(where: predicate) { return event }
            usleep(20_000)
        }
        return try events().first(where: predicate)
    }

    var diagnostics: String {
        "vigild log:\n\(vigild?.log.suffix(6000) ?? "")"
    }
}
