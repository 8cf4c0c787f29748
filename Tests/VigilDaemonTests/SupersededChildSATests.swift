import Logging
import Testing
import VigilAddressing
import VigilConfig
@testable import VigilDaemon
import VigilKernel

/// A further Child SA with the same peer for the same selectors (an IKEv1 Quick Mode renewing a Phase 2, which
/// RFC 2409 does not link to the old one): the old SAs stay while the peer may still send on them, and go, alone,
/// when the peer deletes them. Before, the daemon replayed every Child SA of the peer as a failover, in dictionary
/// order, and could delete the new SAs (or the old ones the peer was still using): traffic stopped after a rekey.
@Suite struct SupersededChildSATests {
    @Test func aRenewingChildSAKeepsTheOldSAsUntilThePeerDeletesThem() throws {
        let harness = FailClosedWiringTests()
        let (daemon, kernel, engine) = try FailClosedWiringTests.daemonWithStubEngine()
        _ = daemon.reconcileFailClosed()
        let entry = try #require(daemon.entries["LAB/10"])
        daemon.coordinate(entry, .start)
        daemon.drain()
        let session = SessionKey(version: .v2, spi: 1)
        let peer = Endpoint(FailClosedWiringTests.peerA, 4500)
        engine.output(.ikeUp(session, connection: "LAB/10", peer: FailClosedWiringTests.peerA, detail: "test", peerSupportsDPD: true))
        engine.output(.childUp(harness.child(session, spi: 0x1000, remote: peer)))
        daemon.drain()
        #expect(Set(try kernel.listSAs().map(\.id.spi)) == [0x1000, 0x1001])

        // Several renewals in a row: each adds its SAs and touches nothing else, whatever order the records are in.
        for spi: UInt32 in [0x3000, 0x5000, 0x7000] {
            kernel.clearRecordedSteps()
            engine.output(.childUp(harness.child(session, spi: spi, remote: peer)))
            daemon.drain()
            #expect(kernel.recordedSteps.map(\.operation) == [.addSA, .addSA], "renewal \(String(spi, radix: 16))")
        }
        #expect(Set(try kernel.listSAs().map(\.id.spi)) == [0x1000, 0x1001, 0x3000, 0x3001, 0x5000, 0x5001, 0x7000, 0x7001])

        // The peer deletes the old ones: only their SAs go; the policies stay with the newest.
        for spi: UInt32 in [0x1000, 0x3000, 0x5000] {
            kernel.clearRecordedSteps()
            engine.output(.childDown(connection: "LAB/10", inboundSPI: spi, reason: "deleted by peer"))
            daemon.drain()
            #expect(kernel.recordedSteps.map(\.operation) == [.deleteSA, .deleteSA], "retiring \(String(spi, radix: 16))")
        }
        #expect(Set(try kernel.listSAs().map(\.id.spi)) == [0x7000, 0x7001])
        #expect(try kernel.listPolicies().count == 3)
        #expect(try kernel.listPolicies().allSatisfy { if case .protect = $0.request.action { true } else { false } })
        daemon.shutdown()
    }
}
