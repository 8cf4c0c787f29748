import Foundation
import VigilControl

/// The flood lab (`bench-flood`): vigild holding many established IKEv2 tunnels while an attacker namespace on the
/// same WAN floods it.
///
/// ```
///  vigil gw 192.0.2.1 --wan bridge-- gw1 192.0.2.11: one charon, one connection, `tunnels` Child SAs (one per entry)
///                                    gw2 192.0.2.12: first peer of the extra entry (killed during the flood)
///                                    gw3 192.0.2.13: its second peer (the failover target)
///                                    attacker 192.0.2.64 ... (attackerAddressCount addresses)
/// ```
/// Entry `i` (sequence 10 × (i + 1)) protects 10.64.i.0/24 <=> 10.100.i.0/24 with gw1 only; the extra entry
/// (sequence `extraSequence`) protects the failover lab's 10.1.0.0/24 <=> 10.2.0.0/24 with gw2 then gw3.
/// `destroy()` removes every namespace, charon and vigild.
public final class FloodLab: @unchecked Sendable {
    public let lab: FailoverLab
    public let attacker: NetworkNamespace
    public let tunnels: Int
    public let directory: URL
    public private(set) var vigild: VigildProcess?
    public var socketPath: String { directory.appendingPathComponent("vigil.sock").path }
    public var logPath: String { directory.appendingPathComponent("vigild.log").path }

    public static let mapName = "FLOOD"
    public static let extraSequence = 9000
    /// The gateway holding the many tunnels, and the extra entry's two peers (indices into the failover lab).
    public static let tunnelGateway = 0
    public static let killedGateway = 1
    public static let failoverGateway = 2
    /// Addresses the attacker owns: 192.0.2.64 and up, inside the WAN's documentation prefix (RFC 5737).
    public static let attackerAddressCount = 64
    public static func attackerAddress(_ index: Int) -> String { "192.0.2.\(64 + index)" }
    /// The most entries the subnet plan (10.64.i.0/24, 10.100.i.0/24) can number.
    public static let maximumTunnels = 200

    public struct Settings: Sendable {
        public var interval = "1s"
        public var retry = "200ms"
        public var retries = 3
        public var logLevel = "info"
        public var ikeProposal = "aes256-sha256-modp2048"
        public var espProposal = "aes256-sha256"
        public init() {}
    }

    public let settings: Settings

    public init(tunnels: Int, settings: Settings = Settings()) throws {
        guard (1...Self.maximumTunnels).contains(tunnels) else { throw LabError("the subnet plan numbers 1 to \(Self.maximumTunnels) tunnels") }
        self.tunnels = tunnels
        self.settings = settings
        lab = try FailoverLab(gatewayCount: 3)
        do {
            attacker = try NetworkNamespace(prefix: "attack")
        } catch {
            lab.destroy()
            throw error
        }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vigild-flood-\(UUID().uuidString.prefix(8))")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try attachAttacker()
        } catch {
            destroy()
            throw error
        }
    }

    /// A veth from the attacker namespace to the WAN bridge, holding every attacker address.
    private func attachAttacker() throws {
        try NetworkNamespace.link(attacker, "wan0", "\(Self.attackerAddress(0))/24", lab.wan, "pa", "169.254.0.200/32")
        try lab.wan.ip("addr", "flush", "dev", "pa")
        try lab.wan.ip("link", "set", "pa", "master", "br0")
        let batch = (1..<Self.attackerAddressCount).map { "addr add \(Self.attackerAddress($0))/32 dev wan0" }
        let file = directory.appendingPathComponent("attacker.batch")
        try batch.joined(separator: "\n").appending("\n").write(to: file, atomically: true, encoding: .utf8)
        try attacker.ip("-batch", file.path)
    }

    /// Stops vigild, every charon, and deletes every namespace and file.
    public func destroy() {
        vigild?.stop()
        lab.destroy()
        attacker.destroy()
        try? FileManager.default.removeItem(at: directory)
    }

    public static func localSubnet(_ index: Int) -> String { "10.64.\(index).0/24" }
    public static func remoteSubnet(_ index: Int) -> String { "10.100.\(index).0/24" }
    public static func sequence(_ index: Int) -> Int { 10 * (index + 1) }

    // MARK: Gateways

    /// gw1: one connection with a child per tunnel. `unique = never`: vigild brings up one IKE SA per entry with one
    /// identity, and INITIAL_CONTACT must not make charon replace the earlier ones.
    public var tunnelGatewayConfig: String {
        let gateway = FailoverLab.gatewayAddress(Self.tunnelGateway)
        let children = (0..<tunnels).map { index in
            """
                    t\(index) {
                        local_ts = \(Self.remoteSubnet(index))
                        remote_ts = \(Self.localSubnet(index))
                        esp_proposals = \(settings.espProposal)
                        dpd_action = clear
                        start_action = none
                    }
            """
        }.joined(separator: "\n")
        return """
        connections {
            vigil {
                version = 2
                local_addrs = \(gateway)
                remote_addrs = \(FailoverLab.vigilWANAddress)
                proposals = \(settings.ikeProposal)
                encap = yes
                unique = never
                local { auth = psk
                        id = \(gateway) }
                remote { auth = psk
                         id = \(FailoverLab.vigilWANAddress) }
                children {
        \(children)
                }
            }
        }
        secrets {
            ike-vigil { secret = "\(VigildLab.psk)"
                        id-gw = \(gateway)
                        id-vigil = \(FailoverLab.vigilWANAddress) }
        }
        """
    }

    /// Like the failover lab's gateways hold 10.2.0.1: gw1 holds 10.100.i.1 on its loopback, because
    /// kernel-libipsec's route for a Child SA needs a local source address inside the local traffic selector.
    public func startGateways() throws {
        let batch = (0..<tunnels).map { "addr add 10.100.\($0).1/24 dev lo" }
        let file = directory.appendingPathComponent("gw1.batch")
        try batch.joined(separator: "\n").appending("\n").write(to: file, atomically: true, encoding: .utf8)
        try lab.gateways[Self.tunnelGateway].ip("-batch", file.path)
        try lab.startStrongSwan(Self.tunnelGateway, swanctlConf: tunnelGatewayConfig)
        for index in [Self.killedGateway, Self.failoverGateway] {
            try lab.startStrongSwan(index, swanctlConf: FailoverLab.remoteGatewayConfig(
                index: index, ikeVersion: 2, ikeProposal: settings.ikeProposal, espProposal: settings.espProposal, psk: VigildLab.psk))
        }
    }

    // MARK: vigild

    public var configYAML: String {
        func entry(sequence: Int, peers: [Int], local: String, remote: String) -> String {
            """
                  - sequence: \(sequence)
                    ike-version: v2
                    peers: [\(peers.map { FailoverLab.gatewayAddress($0) }.joined(separator: ", "))]
                    traffic:
                      - { local: \(local), remote: \(remote) }
                    ike-proposals: [\(settings.ikeProposal)]
                    esp-proposals: [\(settings.espProposal)]
                    encapsulation: force
                    connect-timeout: 3s
                    backoff: { initial: 500ms, maximum: 2s }
            """
        }
        let entries = (0..<tunnels).map {
            entry(sequence: Self.sequence($0), peers: [Self.tunnelGateway], local: Self.localSubnet($0), remote: Self.remoteSubnet($0))
        } + [entry(sequence: Self.extraSequence, peers: [Self.killedGateway, Self.failoverGateway],
                   local: FailoverLab.localSubnet, remote: FailoverLab.remoteSubnet)]
        return """
        global:
          identity: \(FailoverLab.vigilWANAddress)
          listen: [\(FailoverLab.vigilWANAddress)]
          dataplane: userspace
          secrets: vigil.secrets.yaml
          control-socket: \(socketPath)
          dpd:
            mode: periodic
            interval: \(settings.interval)
            retry: \(settings.retry)
            retries: \(settings.retries)
            action: restart
          ike-retransmit: { timeout: 500ms, base: 1.5, tries: 3 }
        crypto-maps:
          \(Self.mapName):
            entries:
        \(entries.joined(separator: "\n"))
        """
    }

    /// Writes the configuration and secrets, starts vigild in the Vigil gateway's namespace and waits for it to run.
    public func startVigild() throws {
        let config = directory.appendingPathComponent("vigil.yaml")
        try configYAML.write(to: config, atomically: true, encoding: .utf8)
        let secrets = directory.appendingPathComponent("vigil.secrets.yaml")
        let keys = [Self.tunnelGateway, Self.killedGateway, Self.failoverGateway]
            .map { "  \(FailoverLab.gatewayAddress($0)): \"\(VigildLab.psk)\"" }.joined(separator: "\n")
        try "pre-shared-keys:\n\(keys)\n".write(to: secrets, atomically: true, encoding: .utf8)
        chmod(secrets.path, 0o600)
        guard let binary = VigildProcess.productPath("vigild") else { throw LabError("vigild is not built next to this program") }
        let process = VigildProcess(namespace: lab.vigil, binary: binary, configPath: config.path, logPath: logPath)
        vigild = process
        try process.start(extraArguments: ["--log-level", settings.logLevel])
        guard process.waitForLog(timeout: 10, { $0.contains("vigild running") }) else {
            throw LabError("vigild did not start:\n\(process.log.suffix(4000))")
        }
    }

    public func request(_ request: ControlRequest) throws -> ControlResponse {
        try ControlClient(path: socketPath).send(request)
    }
}
