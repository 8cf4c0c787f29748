import Foundation
import Logging
import Testing
import VigilAddressing
import VigilConfig
@testable import VigilDaemon
import VigilFailover
import VigilIKE
import VigilKernel

/// `vigil reload`, `vigil show maps` and the state file, without sockets: the reload plan, the state file's round
/// trip and validation, the show-maps report and text, and the daemon wiring behind them (stub engine, in-memory
/// kernel, files in a temporary directory).
@Suite struct OperatorCommandTests {
    static let secrets = "pre-shared-keys:\n  198.51.100.2: \"a\"\n  203.0.113.2: \"b\"\n  203.0.113.3: \"c\"\n"

    static func configuration(_ yaml: String = FailClosedWiringTests.yaml) throws -> VigilConfiguration {
        try ConfigurationLoader.load(yaml: yaml, fileName: "/nonexistent/vigil.yaml", secrets: secrets)
    }

    static func running(_ configuration: VigilConfiguration) -> [ReloadPlan.Running] {
        configuration.cryptoMaps.flatMap { map in
            map.entries.map { ReloadPlan.Running(name: "\(map.name)/\($0.sequence)", entry: $0, configuredPeers: $0.peers, configuredPreferred: $0.preferredPeer) }
        }
    }

    /// A temporary directory with the configuration (and its 0600 secrets file) on disk, and the daemon built from it.
    static func daemonOnDisk(yaml: String = FailClosedWiringTests.yaml) throws -> (Daemon, FailClosedWiringTests.StubEngine, String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-operator-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let withState = yaml.replacingOccurrences(of: "  secrets: vigil.secrets.yaml\n",
                                                  with: "  secrets: vigil.secrets.yaml\n  state-file: \(directory)/state/peers.json\n")
        try withState.write(toFile: directory + "/vigil.yaml", atomically: true, encoding: .utf8)
        try secrets.write(toFile: directory + "/vigil.secrets.yaml", atomically: true, encoding: .utf8)
        chmod(directory + "/vigil.secrets.yaml", 0o600)
        let configuration = try ConfigurationLoader.load(path: directory + "/vigil.yaml")
        let kernel = RecordingKernel()
        let daemon = Daemon(configuration: configuration, loop: EventLoop(),
                            kernel: DaemonKernel(ipsec: kernel, routes: kernel, dataplaneDescription: "recorded",
                                                 settings: configuration.global.kernel, tunnelDevice: nil),
                            logger: Logger(label: "test"))
        daemon.configurationPath = directory + "/vigil.yaml"
        let engine = FailClosedWiringTests.StubEngine()
        daemon.register(engine)
        return (daemon, engine, directory)
    }

    // MARK: The reload plan

    @Test func aChangedFileListIsAppliedInPlace() throws {
        let old = try Self.configuration()
        let next = try Self.configuration(FailClosedWiringTests.yaml
            .replacingOccurrences(of: "peers: [198.51.100.2, 203.0.113.2]", with: "peers: [203.0.113.2, 198.51.100.2]"))
        let plan = ReloadPlan.make(running: Self.running(old), runningGlobal: old.global, next: next)
        let entry = try #require(next.cryptoMaps.first?.entries.first)
        #expect(plan.changes == [.peerList(entry: "LAB/10", peers: entry.peers, preferred: nil)])
        #expect(plan.needsRestart.isEmpty && plan.kept.isEmpty)
    }

    /// Other settings of an entry replace it (its new list comes with it); global ones still need a restart.
    @Test func aChangedEntryIsReplacedAndGlobalChangesNeedARestart() throws {
        let old = try Self.configuration()
        let next = try Self.configuration(FailClosedWiringTests.yaml
            .replacingOccurrences(of: "peers: [198.51.100.2, 203.0.113.2]", with: "peers: [203.0.113.2, 198.51.100.2]")
            .replacingOccurrences(of: "esp-proposals: [aes256-sha256]", with: "esp-proposals: [aes128-sha256]")
            .replacingOccurrences(of: "  listen: [192.0.2.1]", with: "  listen: [192.0.2.1, 192.0.2.5]"))
        let plan = ReloadPlan.make(running: Self.running(old), runningGlobal: old.global, next: next)
        let entry = try #require(next.cryptoMaps.first?.entries.first)
        #expect(plan.changes == [.replaceEntry("LAB/10", entry: entry, changed: ["esp-proposals"], runTimeList: nil)])
        #expect(plan.needsRestart == ["global (listen)"])
        #expect(plan.kept.isEmpty)
    }

    /// A replaced entry keeps a list set at run time when the file did not change its list.
    @Test func aReplacedEntryKeepsARunTimeListTheFileDidNotChange() throws {
        let old = try Self.configuration()
        var running = Self.running(old)
        running[0].entry.peers.reverse()
        let next = try Self.configuration(FailClosedWiringTests.yaml.replacingOccurrences(of: "retries: 3", with: "retries: 5"))
        let plan = ReloadPlan.make(running: running, runningGlobal: old.global, next: next)
        let entry = try #require(next.cryptoMaps.first?.entries.first)
        #expect(plan.changes == [.replaceEntry("LAB/10", entry: entry, changed: ["dpd"],
                                               runTimeList: ReloadPlan.PeerList(peers: entry.peers.reversed(), preferred: nil))])
        #expect(plan.kept == ["peers of LAB/10 as set at run time (203.0.113.2, 198.51.100.2)"])
    }

    /// An identical file changes nothing: no entry is touched (its SAs stay).
    @Test func anUnchangedFileChangesNothing() throws {
        let old = try Self.configuration()
        #expect(ReloadPlan.make(running: Self.running(old), runningGlobal: old.global, next: try Self.configuration()) == ReloadPlan())
    }

    /// The defect the configured list fixes: a reload of an unchanged file must keep a list set at run time (the
    /// file did not change it), not silently put the file's list back.
    @Test func anUnchangedFileKeepsARunTimeList() throws {
        let old = try Self.configuration()
        var running = Self.running(old)
        running[0].entry.peers.reverse()
        let plan = ReloadPlan.make(running: running, runningGlobal: old.global, next: old)
        #expect(plan.changes.isEmpty, "\(plan.changes)")
        #expect(plan.kept == ["peers of LAB/10 as set at run time (203.0.113.2, 198.51.100.2)"])
        #expect(plan.needsRestart.isEmpty)
    }

    @Test func aNewKeyForARunningPeerIsACredentialsChange() throws {
        let old = try Self.configuration()
        let next = try ConfigurationLoader.load(yaml: FailClosedWiringTests.yaml, fileName: "/nonexistent/vigil.yaml",
                                                secrets: Self.secrets.replacingOccurrences(of: "\"b\"", with: "\"new\""))
        let plan = ReloadPlan.make(running: Self.running(old), runningGlobal: old.global, next: next)
        #expect(plan.changes == [.credentials(entry: "LAB/10", peers: next.cryptoMaps[0].entries[0].peers)])
    }

    @Test func newEntriesAreAddedAndRemovedOnesRemoved() throws {
        let old = try Self.configuration()
        let next = try Self.configuration(FailClosedWiringTests.yaml.replacingOccurrences(of: "sequence: 10", with: "sequence: 20"))
        let plan = ReloadPlan.make(running: Self.running(old), runningGlobal: old.global, next: next)
        let added = try #require(next.cryptoMaps.first?.entries.first)
        #expect(plan.changes == [.removeEntry("LAB/10"), .addEntry(map: "LAB", entry: added)])
        #expect(plan.needsRestart.isEmpty)
    }

    @Test func aRefusedReloadReportsEveryErrorAndChangesNothing() throws {
        let (daemon, _, directory) = try Self.daemonOnDisk()
        let path = directory + "/vigil.yaml"
        let good = try String(contentsOfFile: path, encoding: .utf8)
        let bad = good.replacingOccurrences(of: "peers: [198.51.100.2, 203.0.113.2]", with: "peers: [198.51.100.2, 198.51.100.2]")
            .replacingOccurrences(of: "  kernel: { install-routes: false }\n", with: "  kernel: { install-routes: false }\n  unknown-key: 1\n")
        try bad.write(toFile: path, atomically: true, encoding: .utf8)
        let response = daemon.handleControl(ControlRequest(command: .reload))
        #expect(response.ok == false && response.error?.code == .reloadRefused)
        let report = try #require(response.reload)
        #expect(report.refused && report.errors.count == 2, "\(report.errors)")
        #expect(report.errors.allSatisfy { $0.hasPrefix(path + ":") }, "\(report.errors)")
        #expect(daemon.entries["LAB/10"]?.peerNames == ["198.51.100.2", "203.0.113.2"])
        #expect(!FileManager.default.fileExists(atPath: directory + "/state/peers.json"))
    }

    @Test func aGoodReloadAppliesTheFilesListAndTheStateFollows() throws {
        let (daemon, _, directory) = try Self.daemonOnDisk()
        let path = directory + "/vigil.yaml"
        // A run-time list first: stored.
        let set = daemon.handleControl(ControlRequest(command: .setPeers, map: "LAB", sequence: 10, peers: ["203.0.113.3", "198.51.100.2"]))
        #expect(set.ok, "\(String(describing: set.error))")
        var stored = try #require(try StateFile.read(path: directory + "/state/peers.json"))
        #expect(stored.entries.map(\.peers) == [["203.0.113.3", "198.51.100.2"]])

        // An unchanged file keeps it; a file that changes the list wins and the state no longer overrides it.
        var report = try #require(daemon.handleControl(ControlRequest(command: .reload)).reload)
        #expect(!report.refused && report.kept.count == 1 && report.applied.isEmpty, "\(report)")
        #expect(daemon.entries["LAB/10"]?.peerNames == ["203.0.113.3", "198.51.100.2"])
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try text.replacingOccurrences(of: "peers: [198.51.100.2, 203.0.113.2]", with: "peers: [203.0.113.2, 198.51.100.2]")
            .write(toFile: path, atomically: true, encoding: .utf8)
        report = try #require(daemon.handleControl(ControlRequest(command: .reload)).reload)
        #expect(report.applied == ["peers of LAB/10"], "\(report)")
        #expect(daemon.entries["LAB/10"]?.peerNames == ["203.0.113.2", "198.51.100.2"])
        stored = try #require(try StateFile.read(path: directory + "/state/peers.json"))
        #expect(stored.entries.isEmpty)
    }

    /// A replaced entry keeps its run-time list (and the state file it) while the file leaves its list alone; a
    /// removed entry's stored list leaves the state file. The engine learns and forgets the connections.
    @Test func replacedAndRemovedEntriesAndTheStateFile() throws {
        let (daemon, engine, directory) = try Self.daemonOnDisk()
        let path = directory + "/vigil.yaml", state = directory + "/state/peers.json"
        let set = daemon.handleControl(ControlRequest(command: .setPeers, map: "LAB", sequence: 10, peers: ["203.0.113.3", "198.51.100.2"]))
        #expect(set.ok, "\(String(describing: set.error))")
        let good = try String(contentsOfFile: path, encoding: .utf8)

        try good.replacingOccurrences(of: "retries: 3", with: "retries: 5").write(toFile: path, atomically: true, encoding: .utf8)
        var report = try #require(daemon.handleControl(ControlRequest(command: .reload)).reload)
        #expect(!report.refused && report.replaced == ["LAB/10 (dpd)"] && report.kept.count == 1, "\(report)")
        #expect(daemon.entries["LAB/10"]?.peerNames == ["203.0.113.3", "198.51.100.2"])
        #expect(daemon.entries["LAB/10"]?.entry.dpd.retries == 5)
        #expect(try StateFile.read(path: state)?.entries.map(\.peers) == [["203.0.113.3", "198.51.100.2"]])
        #expect(engine.connections == ["LAB/10"])

        try good.replacingOccurrences(of: "sequence: 10", with: "sequence: 20").write(toFile: path, atomically: true, encoding: .utf8)
        report = try #require(daemon.handleControl(ControlRequest(command: .reload)).reload)
        #expect(!report.refused && report.removed == ["LAB/10"] && report.added == ["LAB/20"], "\(report)")
        #expect(report.summary.contains("added: LAB/20") && report.summary.contains("removed: LAB/10"), "\(report.summary)")
        #expect(daemon.entryOrder == ["LAB/20"] && daemon.entries["LAB/10"] == nil)
        #expect(try StateFile.read(path: state)?.entries.isEmpty == true, "the removed entry's run-time list is still stored")
        #expect(engine.connections == ["LAB/20"])
        #expect(daemon.events.recent.contains { $0.kind == "entry-removed" && $0.sequence == 10 })
    }

    /// An added entry is guarded before it negotiates, but another daemon's policy on its selectors is left
    /// alone (as at start-up), and the reload says so.
    @Test func anAddedEntryLeavesAnotherDaemonsPolicyAlone() throws {
        let (daemon, _, directory) = try Self.daemonOnDisk()
        let kernel = try #require(daemon.kernel.executor.ipsec as? RecordingKernel)
        let foreignID = PolicyID(selector: PolicySelector(source: try IPPrefix.parse("10.1.1.0/24"), destination: try IPPrefix.parse("10.2.9.0/24")),
                                 direction: .outbound)
        let foreign = PolicyRequest(action: .protect(PolicyTemplate(source: IPAddress("192.0.2.1")!, destination: IPAddress("198.51.100.2")!, reqid: 1)),
                                    priority: 2080)
        kernel.installForeignPolicy(foreignID, foreign)
        let path = directory + "/vigil.yaml"
        let good = try String(contentsOfFile: path, encoding: .utf8)
        let second = good.components(separatedBy: "\n").drop { !$0.contains("- sequence: 10") }.joined(separator: "\n")
            .replacingOccurrences(of: "sequence: 10", with: "sequence: 20")
        try (good + "\n" + second.replacingOccurrences(of: "10.2.1.0/24", with: "10.2.9.0/24") + "\n"
             + second.replacingOccurrences(of: "sequence: 20", with: "sequence: 30").replacingOccurrences(of: "10.2.1.0/24", with: "10.2.8.0/24"))
            .write(toFile: path, atomically: true, encoding: .utf8)
        let report = try #require(daemon.handleControl(ControlRequest(command: .reload)).reload)
        #expect(!report.refused && report.added == ["LAB/20", "LAB/30"], "\(report)")
        #expect(report.applied.contains { $0.contains("10.1.1.0/24=10.2.9.0/24 NOT guarded") }, "\(report)")
        let policies = try kernel.listPolicies()
        #expect(policies.contains(InstalledPolicy(id: foreignID, request: foreign)), "another daemon's policy was overwritten")
        let other = try IPPrefix.parse("10.2.8.0/24")
        let guarded = policies.filter { $0.id.selector.destination == other || $0.id.selector.source == other }
        #expect(guarded.count == 3 && guarded.allSatisfy { VigilOwnership.owns($0) }, "the other added entry is not guarded: \(guarded)")
    }

    /// A daemon from before the entry diff sends no `added`, `removed`, `replaced`: they read as empty.
    @Test func aReloadReportWithoutTheEntryDiffDecodes() throws {
        let old = #"{"path": "/etc/vigil/vigil.yaml", "refused": false, "errors": [], "applied": ["hooks"], "kept": [], "needsRestart": []}"#
        let report = try JSONDecoder().decode(ReloadReport.self, from: Data(old.utf8))
        #expect(report == ReloadReport(path: "/etc/vigil/vigil.yaml", refused: false, applied: ["hooks"]))
        let now = ReloadReport(path: "/etc/vigil/vigil.yaml", refused: false, added: ["A/1"], removed: ["B/2"], replaced: ["C/3 (dpd)"])
        #expect(try JSONDecoder().decode(ReloadReport.self, from: JSONEncoder().encode(now)) == now)
    }

    // MARK: The state file

    @Test func theStateFileRoundTripsAtomicallyWithMode0600() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-state-\(UUID().uuidString.prefix(8))").path
        let path = directory + "/lib/vigil/peers.json"
        let state = PeerListState(entries: [PeerListState.Entry(map: "HQ", sequence: 10, peers: ["198.51.100.2", "gw.example.net"],
                                                                preferred: "198.51.100.2", configuredPeers: ["198.51.100.1"], configuredPreferred: nil)])
        try StateFile.write(state, to: path)
        #expect(try StateFile.read(path: path) == state)
        var status = stat()
        #expect(stat(path, &status) == 0 && Int(status.st_mode) & 0o777 == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/lib/vigil") == ["peers.json"], "a temporary file was left")
        #expect(try StateFile.read(path: directory + "/missing.json") == nil)
        chmod(path, 0o666)
        #expect(throws: StateFile.Failure.self) { try StateFile.read(path: path) }
        #expect(throws: StateFile.Failure.self) { try StateFile.decode(Array("{\"version\": 2, \"entries\": []}".utf8)) }
        #expect(throws: StateFile.Failure.self) { try StateFile.decode(Array("not json".utf8)) }
    }

    @Test func aStoredListIsRestoredOnlyOverTheFileListItOverrode() {
        let stored = PeerListState(entries: [
            PeerListState.Entry(map: "LAB", sequence: 10, peers: ["b", "a"], preferred: nil, configuredPeers: ["a", "b"], configuredPreferred: nil),
            PeerListState.Entry(map: "LAB", sequence: 20, peers: ["b"], preferred: nil, configuredPeers: ["a"], configuredPreferred: nil),
            PeerListState.Entry(map: "GONE", sequence: 1, peers: ["b"], preferred: nil, configuredPeers: ["a"], configuredPreferred: nil),
        ])
        let (restore, ignored) = stored.restorable(over: [
            .init(name: "LAB/10", peers: ["a", "b"], preferred: nil), .init(name: "LAB/20", peers: ["a", "c"], preferred: nil),
        ])
        #expect(restore.map(\.name) == ["LAB/10"])
        #expect(ignored.count == 2 && ignored[0].hasPrefix("LAB/20: the configuration file's peer list changed") && ignored[1] == "GONE/1: no longer configured")
    }

    @Test func startUpRestoresAValidStoredListAndIgnoresAnInvalidOne() throws {
        let (daemon, _, directory) = try Self.daemonOnDisk()
        // 192.0.2.77 has no key: that list is ignored (logged), the configured one stays; vigild still starts.
        try StateFile.write(PeerListState(entries: [PeerListState.Entry(
            map: "LAB", sequence: 10, peers: ["192.0.2.77"], preferred: nil,
            configuredPeers: ["198.51.100.2", "203.0.113.2"], configuredPreferred: nil)]), to: directory + "/state/peers.json")
        daemon.restorePeerLists()
        #expect(daemon.entries["LAB/10"]?.peerNames == ["198.51.100.2", "203.0.113.2"])
        #expect(daemon.events.recent.contains { $0.kind == "state-ignored" && $0.detail.contains("192.0.2.77") })

        try StateFile.write(PeerListState(entries: [PeerListState.Entry(
            map: "LAB", sequence: 10, peers: ["203.0.113.3", "198.51.100.2"], preferred: nil,
            configuredPeers: ["198.51.100.2", "203.0.113.2"], configuredPreferred: nil)]), to: directory + "/state/peers.json")
        daemon.restorePeerLists()
        daemon.drain()
        #expect(daemon.entries["LAB/10"]?.peerNames == ["203.0.113.3", "198.51.100.2"])
        #expect(daemon.entries["LAB/10"]?.coordinator.configuration.peers == ["203.0.113.3", "198.51.100.2"])
        #expect(daemon.events.recent.contains { $0.kind == "peer-list-restored" })
    }

    // MARK: Show maps

    @Test func showMapsReportsEachPeersHealthAndTheBackoff() throws {
        let entry = try #require(try Self.configuration().cryptoMaps.first?.entries.first)
        var coordinator = FailoverCoordinator<String>(configuration: EntryRuntime.coordinatorConfiguration(entry))
        var random = SystemRandomNumberGenerator()
        _ = coordinator.handle(.start, now: .seconds(1), random: &random)
        _ = coordinator.handle(.attemptFailed("198.51.100.2", reason: "no proposal chosen"), now: .seconds(2), random: &random)
        _ = coordinator.handle(.attemptFailed("203.0.113.2", reason: "authentication failed"), now: .seconds(3), random: &random)
        guard case .backingOff(let backingOff) = coordinator.state else { Issue.record("not backing off: \(coordinator.state)"); return }
        var dead = PeerHealth()
        dead.answered(at: .seconds(1))
        dead.probeUnanswered(retry: 2)
        dead.declaredDead(probesMissed: 3, at: .seconds(2))
        dead.failedOver()
        let report = MapsReport.Entry(map: "LAB", entry: entry, coordinator: coordinator, health: ["198.51.100.2": dead], now: .seconds(3))
        #expect(report.peers.map(\.address) == ["198.51.100.2", "203.0.113.2"])
        #expect(report.peers[0].lastAnswer == 2 && report.peers[0].probesMissed == 3 && report.peers[0].failovers == 1)
        #expect(report.peers[0].lastFailure == "declared dead: no answer to 3 probes" && report.peers[0].lastFailureAge == 1)
        #expect(report.peers[1].lastAnswer == nil && report.peers[1].probesMissed == 0)
        #expect(report.backoff.allPeersDown && report.backoff.failedCycles == 1)
        #expect(report.backoff.nextAttemptIn == (backingOff.until - .seconds(3)).seconds)
        #expect(report.dpd == MapsReport.DPD(mode: "periodic", interval: 1, retry: 0.2, retries: 3, action: "restart"))

        let text = MapsReport(entries: [report]).text
        #expect(text.hasPrefix("Crypto Map \"LAB\" 10 (IKEv2): all peers down"), "\(text)")
        #expect(text.contains("    1. 198.51.100.2\n       last answer 2.0 s ago, 3 probes missed, 1 failover away\n"
            + "       last failure 1.0 s ago: declared dead: no answer to 3 probes\n"), "\(text)")
        #expect(text.contains("    2. 203.0.113.2\n       no answer yet, 0 probes missed, 0 failovers away\n"), "\(text)")
        #expect(text.contains("  Traffic: 10.1.1.0/24 === 10.2.1.0/24\n") && text.contains("  Backoff: all peers down (1 failed cycle), next attempt in "), "\(text)")
    }

    /// Where the daemon learns health: an IKE SA up is an answer; a peer lost is a failure; the traffic moving on is a
    /// failover away from it; an unlisted address is never kept.
    @Test func theDaemonKeepsHealthWhereItLearnsIt() throws {
        let (daemon, _, engine) = try FailClosedWiringTests.daemonWithStubEngine()
        let harness = FailClosedWiringTests()
        _ = daemon.reconcileFailClosed()
        daemon.coordinate(try #require(daemon.entries["LAB/10"]), .start)
        daemon.drain()
        let (first, second) = (SessionKey(version: .v2, spi: 1), SessionKey(version: .v2, spi: 2))
        engine.output(.ikeUp(first, connection: "LAB/10", peer: FailClosedWiringTests.peerA, detail: "test", peerSupportsDPD: true))
        engine.output(.childUp(harness.child(first, spi: 0x1000, remote: Endpoint(FailClosedWiringTests.peerA, 4500))))
        engine.output(.negotiationFailed(connection: "LAB/10", peer: IPAddress("192.0.2.200")!, NegotiationFailure(.noProposalChosen, "stranger")))
        daemon.drain()
        engine.output(.unreachable(first))
        daemon.drain()
        engine.output(.ikeUp(second, connection: "LAB/10", peer: HookWiringTests.peerB, detail: "test", peerSupportsDPD: true))
        engine.output(.childUp(harness.child(second, spi: 0x5000, remote: Endpoint(HookWiringTests.peerB, 4500))))
        daemon.drain()

        let maps = try #require(daemon.handleControl(ControlRequest(command: .maps, map: "LAB")).maps)
        let peers = try #require(maps.entries.first?.peers)
        #expect(peers[0].address == "198.51.100.2" && !peers[0].active && peers[0].failovers == 1 && peers[0].lastAnswer != nil)
        #expect(peers[0].lastFailure == "retransmissions exhausted")
        #expect(peers[1].active && peers[1].lastAnswer != nil && peers[1].failovers == 0 && peers[1].lastFailure == nil)
        #expect(daemon.entries["LAB/10"]?.health.keys.sorted() == ["198.51.100.2", "203.0.113.2"])
        #expect(daemon.handleControl(ControlRequest(command: .maps, map: "NOPE")).error?.code == .unknownMap)
    }
}
