import Foundation
import Logging
import VigilAddressing
import VigilConfig
@testable import VigilDaemon
import VigilKernel

/// vigild's core in process: a gateway and its peers, each a real `Daemon` with the real IKE engines, over one
/// `SimulatedNetwork`, one `VirtualScheduler` (each host on a lane of its own) and an in-memory kernel each, with a
/// seeded generator. A 30-second failover runs in milliseconds, and a seed replays it exactly.
final class InProcessLab {
    /// Documentation addresses (RFC 5737): the gateway, and the listed peers in order.
    static let gatewayAddress = "192.0.2.1"
    static let peerAddresses = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
    static let localSubnet = "10.1.0.0/16"
    static let remoteSubnet = "10.2.0.0/16"
    static let psk = "in-process-lab-key"

    struct Settings {
        var ikeVersion = 2
        var peers = 3
        /// The gateway's entry DPD block.
        var dpd = "{ mode: periodic, interval: 1s, retry: 200ms, retries: 3, action: restart }"
        /// Extra lines of the gateway's entry (indented as entry keys).
        var entryExtra: [String] = []
        var latency: Duration = .milliseconds(5)
        /// The first peer is the preferred one (`default: true`), for preemption.
        var preferredFirst = false
        /// Further gateway entries at start-up (`ExtraEntry`).
        var extraEntries: [ExtraEntry] = []
        /// The further entries every peer answers (whether the gateway has them now or gets them by a reload).
        var answeredEntries: [ExtraEntry] = []
    }

    /// A further gateway entry, LAB/`sequence`, to the last peer only (LAB/10 runs with the first), from the local
    /// subnet to a remote subnet of its own; the peers answer it as SITE/`sequence` with either ESP proposal.
    struct ExtraEntry {
        var sequence: Int
        var remoteSubnet: String
        var espProposals = "aes256-sha256"
        var ikeVersion = 2

        var gatewayYAML: String {
            """

                  - sequence: \(sequence)
                    ike-version: v\(ikeVersion)
                    peers: [\(InProcessLab.peerAddresses[2])]
                    traffic:
                      - local: \(InProcessLab.localSubnet)
                        remote: \(remoteSubnet)
                    ike-proposals: [aes256-sha256-x25519]
                    esp-proposals: [\(espProposals)]
                    dpd: { mode: periodic, interval: 1s, retry: 200ms, retries: 3, action: restart }
            """
        }
    }

    final class Host {
        let name: String
        let address: IPAddress
        let daemon: Daemon
        let kernel: RecordingKernel
        let lane: VirtualScheduler.Lane
        var alive = true
        init(name: String, address: IPAddress, daemon: Daemon, kernel: RecordingKernel, lane: VirtualScheduler.Lane) {
            self.name = name
            self.address = address
            self.daemon = daemon
            self.kernel = kernel
            self.lane = lane
        }
    }

    let seed: UInt64
    let settings: Settings
    let scheduler = VirtualScheduler()
    let network: SimulatedNetwork
    private(set) var gateway: Host!
    private(set) var peers: [Host] = []
    /// Addresses whose traffic the network drops (killed hosts, cut links).
    private var unreachable: Set<IPAddress> = []
    /// A test's own loss: datagrams it returns true for are dropped.
    var drop: (SimulatedNetwork.Datagram) -> Bool = { _ in false }
    private var random: DaemonRandom
    /// Each host's state file (run-time peer lists) lives here, removed with the lab.
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-in-process-\(UUID().uuidString.prefix(8))").path

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    init(seed: UInt64, _ settings: Settings = Settings()) throws {
        self.seed = seed
        self.settings = settings
        random = .seeded(seed)
        network = SimulatedNetwork(scheduler: scheduler, latency: settings.latency)
        network.filter = { [unowned self] datagram in
            !unreachable.contains(datagram.from.address) && !unreachable.contains(datagram.to.address) && !drop(datagram)
        }
        for index in 0..<settings.peers {
            peers.append(try makeHost(name: "peer\(index + 1)", yaml: responderYAML(index), secrets: Self.secrets([Self.gatewayAddress])))
        }
        gateway = try makeHost(name: "gateway", yaml: gatewayYAML, secrets: Self.secrets(Array(Self.peerAddresses.prefix(settings.peers))))
    }

    static func secrets(_ addresses: [String]) -> String {
        "pre-shared-keys:\n" + addresses.map { "  \($0): \"\(psk)\"\n" }.joined()
    }

    var gatewayYAML: String { gatewayYAML(extra: settings.extraEntries) }

    /// The gateway's configuration with `extra` entries after LAB/10 (what a reload test writes).
    func gatewayYAML(extra: [ExtraEntry]) -> String {
        let peerList = Self.peerAddresses.prefix(settings.peers).enumerated()
            .map { index, peer in index == 0 && settings.preferredFirst ? "{ address: \(peer), default: true }" : peer }
            .joined(separator: ", ")
        return """
        global:
          identity: \(Self.gatewayAddress)
          listen: [\(Self.gatewayAddress)]
          dataplane: kernel
          secrets: vigil.secrets.yaml
          state-file: \(directory)/gateway/peers.json
          ike-retransmit: { timeout: 500ms, base: 1.5, tries: 3 }
        crypto-maps:
          LAB:
            entries:
              - sequence: 10
                ike-version: v\(settings.ikeVersion)
                peers: [\(peerList)]
                traffic:
                  - local: \(Self.localSubnet)
                    remote: \(Self.remoteSubnet)
                ike-proposals: [aes256-sha256-x25519]
                esp-proposals: [aes256-sha256]
                dpd: \(settings.dpd)
        """ + settings.entryExtra.map { "\n        " + $0 }.joined() + extra.map(\.gatewayYAML).joined()
    }

    /// The gateway reloads `yaml` as its configuration file (SIGHUP), with the lab's keys.
    @discardableResult
    func reloadGateway(_ yaml: String) -> ReloadReport {
        let report = gateway.daemon.reload(yaml: yaml, fileName: "/nonexistent/gateway.yaml",
                                           secrets: Self.secrets(Array(Self.peerAddresses.prefix(settings.peers))))
        gateway.daemon.drain()
        return report
    }

    /// A listed peer: vigild as responder for the gateway's entry (it starts nothing and probes nothing itself).
    func responderYAML(_ index: Int) -> String {
        """
        global:
          identity: \(Self.peerAddresses[index])
          listen: [\(Self.peerAddresses[index])]
          dataplane: kernel
          secrets: vigil.secrets.yaml
          state-file: \(directory)/peer\(index + 1)/peers.json
          dpd: { mode: off }
        crypto-maps:
          SITE:
            entries:
        """ + Self.responderEntryYAML(sequence: 10, ikeVersion: settings.ikeVersion, local: Self.remoteSubnet, espProposals: "aes256-sha256")
            + settings.answeredEntries.map {
                Self.responderEntryYAML(sequence: $0.sequence, ikeVersion: $0.ikeVersion, local: $0.remoteSubnet,
                                        espProposals: "aes256-sha256, aes128-sha256")
            }.joined()
    }

    /// One entry of a peer: the gateway's entry of that sequence answered, never started by the peer.
    static func responderEntryYAML(sequence: Int, ikeVersion: Int, local: String, espProposals: String) -> String {
        """

              - sequence: \(sequence)
                ike-version: v\(ikeVersion)
                start: false
                peers: [\(gatewayAddress)]
                traffic:
                  - local: \(local)
                    remote: \(localSubnet)
                ike-proposals: [aes256-sha256-x25519]
                esp-proposals: [\(espProposals)]
        """
    }

    private func makeHost(name: String, yaml: String, secrets: String) throws -> Host {
        let configuration = try ConfigurationLoader.load(yaml: yaml, fileName: "/nonexistent/\(name).yaml", secrets: secrets)
        let kernel = RecordingKernel()
        let lane = scheduler.lane()
        let daemon = Daemon(
            configuration: configuration, loop: lane, network: network.attachment(), random: random.split(),
            kernel: DaemonKernel(ipsec: kernel, routes: kernel, dataplaneDescription: "recorded (in process)",
                                 settings: configuration.global.kernel, tunnelDevice: nil),
            logger: Logger(label: "vigild.\(name)") { _ in SwiftLogNoOpLogHandler() })
        daemon.registerEngines(forceEncapsulation: false)
        return Host(name: name, address: configuration.global.listen[0], daemon: daemon, kernel: kernel, lane: lane)
    }

    /// Starts the peers, then the gateway (whose entry starts with its first listed peer).
    func start() throws {
        for peer in peers { try peer.daemon.start() }
        try gateway.daemon.start()
    }

    // MARK: Faults

    /// SIGKILL: the host's timers stop and nothing reaches it or leaves it any more.
    func kill(_ host: Host) {
        host.alive = false
        host.lane.halt()
        unreachable.insert(host.address)
    }

    /// A killed peer comes back: a new vigild on its address, with nothing of the old one's state.
    @discardableResult
    func revive(_ index: Int) throws -> Host {
        let old = peers[index]
        network.unbindAll(of: old.address)
        let host = try makeHost(name: old.name, yaml: responderYAML(index), secrets: Self.secrets([Self.gatewayAddress]))
        peers[index] = host
        unreachable.remove(host.address)
        try host.daemon.start()
        return host
    }

    /// Cuts the host's link: it runs on (and times out on its own) but nothing gets through.
    func cut(_ host: Host) { unreachable.insert(host.address) }
    func restore(_ host: Host) { unreachable.remove(host.address) }

    // MARK: Running

    /// Runs virtual time until `condition` holds, at most `within` from now; true if it held.
    @discardableResult
    func run(within: Duration, until condition: () -> Bool) -> Bool {
        scheduler.run(until: condition, deadline: scheduler.now + within)
    }

    func run(for duration: Duration) { scheduler.run(until: scheduler.now + duration) }

    var now: Duration { scheduler.now }

    // MARK: What happened

    var events: [DaemonEvent] { gateway.daemon.events.recent }

    func firstEvent(_ kind: String, peer: String? = nil, after: Duration = .zero) -> DaemonEvent? {
        events.first { $0.kind == kind && (peer == nil || $0.peer == peer) && $0.time >= after.seconds }
    }

    /// The gateway's active peer for its one entry, as `vigil status` shows it.
    var activePeer: String? { gateway.daemon.status().entries.first?.activePeer }

    /// The peers the gateway's outbound SAs go to, per its kernel (one, once a failover has settled).
    var outboundPeers: Set<String> {
        Set(((try? gateway.kernel.listSAs()) ?? []).filter { $0.source.description == Self.gatewayAddress }.map { $0.id.destination.description })
    }

    /// The Child SAs (inbound SAs) a peer holds with the gateway.
    func childSAs(of host: Host) -> Int {
        ((try? host.kernel.listSAs()) ?? []).filter { $0.id.destination == host.address }.count
    }

    /// One line per gateway event (time, kind, peer, detail), for replay comparison and failure messages.
    var narrative: [String] { narrative(of: gateway) }

    func narrative(of host: Host) -> [String] {
        host.daemon.events.recent.map { String(format: "%9.3f ", $0.time) + "\($0.kind) \($0.peer ?? "-"): \($0.detail)" }
    }
}
