import Foundation
import Testing
import VigilAddressing
import VigilConfig
@testable import VigilDaemon
import VigilKernel

/// Where the daemon runs its hooks, driven by the stub engine over the in-memory kernel: `established` when a
/// tunnel's data plane is programmed (not for a renewal beside a live Child SA), `dead-peer` and `down` when the
/// active peer is lost, `failover` and `established` when the next peer takes over; a superseded Child SA that
/// retires is no `down`.
@Suite struct HookWiringTests {
    static let peerB = IPAddress("203.0.113.2")!

    @Test func aFailoverRunsEachHookOnceWithTheDaemonsValues() throws {
        let (path, directory) = try HookRunnerTests.script("env > \"$(dirname \"$0\")/run-$VIGIL_EVENT-${VIGIL_SPI_IN:-none}\"")
        let yaml = FailClosedWiringTests.yaml.replacingOccurrences(
            of: "  kernel: { install-routes: false }\n", with: "  kernel: { install-routes: false }\n  hooks: [{ path: \(path) }]\n")
        let (first, second) = (SessionKey(version: .v2, spi: 1), SessionKey(version: .v2, spi: 2))
        let peerA = Endpoint(FailClosedWiringTests.peerA, 4500)
        let harness = FailClosedWiringTests()
        let (daemon, _, engine) = try FailClosedWiringTests.daemonWithStubEngine(yaml: yaml)
        _ = daemon.reconcileFailClosed()
        daemon.coordinate(try #require(daemon.entries["LAB/10"]), .start)
        daemon.drain()

        // Up with the first peer; then a renewal beside it (a rekey) and the old Child SA retiring: no hook for those.
        engine.output(.ikeUp(first, connection: "LAB/10", peer: FailClosedWiringTests.peerA, detail: "test", peerSupportsDPD: true))
        engine.output(.childUp(harness.child(first, spi: 0x1000, remote: peerA)))
        daemon.drain()
        engine.output(.childUp(harness.child(first, spi: 0x3000, remote: peerA)))
        engine.output(.childDown(connection: "LAB/10", inboundSPI: 0x1000, reason: "deleted by peer"))
        daemon.drain()

        // The first peer stops answering; the coordinator goes to the second, which comes up.
        engine.output(.unreachable(first))
        daemon.drain()
        engine.output(.ikeUp(second, connection: "LAB/10", peer: Self.peerB, detail: "test", peerSupportsDPD: true))
        engine.output(.childUp(harness.child(second, spi: 0x5000, remote: Endpoint(Self.peerB, 4500))))
        daemon.drain()

        let expected: Set<String> = ["run-established-00001000", "run-dead-peer-00003000", "run-down-00003000",
                                     "run-failover-00005000", "run-established-00005000"]
        #expect(HookRunnerTests.wait { daemon.hooks.runner.running == 0 })
        let runs = Set(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("run-") })
        #expect(runs == expected)

        func run(_ name: String) throws -> [String: String] {
            let text = try String(contentsOfFile: directory + "/" + name, encoding: .utf8)
            return Dictionary(text.split(separator: "\n").compactMap { line in
                line.firstIndex(of: "=").map { (String(line[..<$0]), String(line[line.index(after: $0)...])) }
            }, uniquingKeysWith: { first, _ in first })
        }
        let up = try run("run-established-00001000")
        #expect(up["VIGIL_PEER"] == "198.51.100.2" && up["VIGIL_SPI_OUT"] == "00001001" && up["VIGIL_IKE_VERSION"] == "2")
        #expect(up["VIGIL_LOCAL_SUBNETS"] == "10.1.1.0/24" && up["VIGIL_REMOTE_SUBNETS"] == "10.2.1.0/24")
        let dead = try run("run-dead-peer-00003000")
        #expect(dead["VIGIL_PEER"] == "198.51.100.2" && dead["VIGIL_REASON"] == "retransmissions exhausted")
        let down = try run("run-down-00003000")
        #expect(down["VIGIL_PEER"] == "198.51.100.2" && down["VIGIL_REASON"]?.contains("deleted by the failover coordinator") == true)
        let failover = try run("run-failover-00005000")
        #expect(failover["VIGIL_PEER"] == "203.0.113.2" && failover["VIGIL_PREVIOUS_PEER"] == "198.51.100.2")
        let upAgain = try run("run-established-00005000")
        #expect(upAgain["VIGIL_PEER"] == "203.0.113.2" && upAgain["VIGIL_SPI_OUT"] == "00005001")
        daemon.shutdown()
    }

    @Test func aReloadPutsChangedHooksInPlace() throws {
        let (path, _) = try HookRunnerTests.script("exit 0")
        let (daemon, _, _) = try FailClosedWiringTests.daemonWithStubEngine()
        #expect(daemon.hooks.global.isEmpty)
        let withHooks = FailClosedWiringTests.yaml
            .replacingOccurrences(of: "  kernel: { install-routes: false }\n", with: "  kernel: { install-routes: false }\n  hooks: [{ path: \(path) }]\n")
            .replacingOccurrences(of: "        esp-proposals: [aes256-sha256]\n", with: "        esp-proposals: [aes256-sha256]\n        hooks: [{ path: \(path), events: down }]\n")
        let next = try ConfigurationLoader.load(yaml: withHooks, fileName: "/nonexistent/vigil.yaml",
                                                secrets: "pre-shared-keys:\n  198.51.100.2: \"a\"\n  203.0.113.2: \"b\"\n")
        #expect(daemon.applyHooks(of: next))
        #expect(daemon.hooks.global == [Hook(path: path)])
        #expect(daemon.entries["LAB/10"]?.entry.hooks == [Hook(path: path, events: [.down])])
        #expect(!daemon.applyHooks(of: next))
    }
}
