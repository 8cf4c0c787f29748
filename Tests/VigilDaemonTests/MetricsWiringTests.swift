import Foundation
import Testing
import VigilAddressing
import VigilConfig
@testable import VigilDaemon
import VigilKernel

/// Where the daemon feeds the metrics, driven by the stub engine over the in-memory kernel: per-peer `up`, the
/// dead-peer event by cause, the failover by reason and its phase histograms; and the endpoint's bind errors.
@Suite struct MetricsWiringTests {
    @Test func aFailoverMovesTheCountersAndThePhaseHistograms() throws {
        let (first, second) = (SessionKey(version: .v2, spi: 1), SessionKey(version: .v2, spi: 2))
        let harness = FailClosedWiringTests()
        let (daemon, _, engine) = try FailClosedWiringTests.daemonWithStubEngine(yaml: FailClosedWiringTests.yaml)
        _ = daemon.reconcileFailClosed()
        daemon.coordinate(try #require(daemon.entries["LAB/10"]), .start)
        daemon.drain()
        engine.output(.ikeUp(first, connection: "LAB/10", peer: FailClosedWiringTests.peerA, detail: "test", peerSupportsDPD: true))
        engine.output(.childUp(harness.child(first, spi: 0x1000, remote: Endpoint(FailClosedWiringTests.peerA, 4500))))
        daemon.drain()
        let entry = "map=\"LAB\",sequence=\"10\""
        let (a, b) = (FailClosedWiringTests.peerA.description, HookWiringTests.peerB.description)
        var text = daemon.metricsText()
        #expect(text.contains("vigil_peer_up{\(entry),peer=\"\(a)\"} 1\n"), "\(text)")
        #expect(text.contains("vigil_peer_up{\(entry),peer=\"\(b)\"} 0\n"))
        #expect(text.contains("vigil_child_sas_installed{\(entry)} 1\n"))
        // The first installation is no failover.
        #expect(!text.contains("vigil_failovers_total"))

        // The first peer stops answering; the second comes up.
        engine.output(.unreachable(first))
        daemon.drain()
        engine.output(.ikeUp(second, connection: "LAB/10", peer: HookWiringTests.peerB, detail: "test", peerSupportsDPD: true))
        engine.output(.childUp(harness.child(second, spi: 0x5000, remote: Endpoint(HookWiringTests.peerB, 4500))))
        daemon.drain()

        text = daemon.metricsText()
        #expect(text.contains("vigil_peer_up{\(entry),peer=\"\(a)\"} 0\n"), "\(text)")
        #expect(text.contains("vigil_peer_up{\(entry),peer=\"\(b)\"} 1\n"))
        #expect(text.contains("vigil_peer_active{\(entry),peer=\"\(b)\"} 1\n"))
        #expect(text.contains("vigil_peer_dead_total{\(entry),peer=\"\(a)\",cause=\"retransmissions-exhausted\"} 1\n"))
        #expect(text.contains("vigil_failovers_total{\(entry),reason=\"retransmissions-exhausted\"} 1\n"))
        for phase in ["phase1", "phase2", "dataplane"] {
            #expect(daemon.metrics.histogram("vigil_failover_\(phase)_seconds", ["map": "LAB", "sequence": "10"])?.count == 1, "\(phase)")
            #expect(text.contains("# TYPE vigil_failover_\(phase)_seconds histogram\n"))
        }
        // Detection is DPD's alone: a retransmission timeout has no last proof of life to measure from.
        #expect(daemon.metrics.histogram("vigil_failover_detection_seconds", ["map": "LAB", "sequence": "10"]) == nil)
    }

    @Test func aListenAddressInUseIsAnErrorNamingTheField() throws {
        let first = try MetricsHTTPServer(listen: Endpoint(IPAddress("127.0.0.1")!, 0))
        #expect(first.local.port != 0)
        let error = #expect(throws: MetricsHTTPServer.Failure.self) { try MetricsHTTPServer(listen: first.local) }
        #expect(error?.description.hasPrefix("metrics.listen 127.0.0.1:\(first.local.port): ") == true, "\(String(describing: error))")
        #expect(error?.errno == EADDRINUSE)
    }

    @Test func anIPv6AddressIsServed() throws {
        let server = try MetricsHTTPServer(listen: Endpoint(IPAddress("::1")!, 0))
        #expect(server.local.description.hasPrefix("[::1]:"))
    }
}

/// A reload whose `global.metrics` differs names it under `needsRestart` (the endpoint is bound once, at start).
@Suite struct MetricsReloadTests {
    @Test func aChangedMetricsAddressNeedsARestart() throws {
        let old = try OperatorCommandTests.configuration()
        let next = try OperatorCommandTests.configuration(FailClosedWiringTests.yaml
            .replacingOccurrences(of: "  listen: [192.0.2.1]\n", with: "  listen: [192.0.2.1]\n  metrics: { listen: 192.0.2.1:9464 }\n"))
        #expect(next.global.metrics?.listen.port == 9464)
        let plan = ReloadPlan.make(running: OperatorCommandTests.running(old), runningGlobal: old.global, next: next)
        #expect(plan.changes.isEmpty)
        #expect(plan.needsRestart == ["global (metrics)"])
    }
}
