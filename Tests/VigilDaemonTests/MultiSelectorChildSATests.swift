import Testing
import VigilAddressing
import VigilCrypto
@testable import VigilDaemon
import VigilKernel

/// A Child SA whose traffic selectors hold several subnets (RFC 7296 §2.9; Cisco ACLs with several lines) is one
/// pair of SAs and one reqid with policies per selector pair. Per pair reqids and SAs once made the second pair's
/// SA add replace the first's (same SPI), leaving the first subnet's policies without an SA: nothing reached it.
@Suite struct MultiSelectorChildSATests {
    typealias Wiring = FailClosedWiringTests

    /// The stub's configuration with a second traffic pair (same local subnet, another remote one).
    static let yaml: String = {
        let lines = Wiring.yaml.split(separator: "\n", omittingEmptySubsequences: false)
        guard let at = lines.firstIndex(where: { $0.contains("remote: 10.2.1.0/24") }) else { return Wiring.yaml }
        let local = lines[at - 1], remote = lines[at]
        var result = Array(lines[...at])
        result += [Substring(local), Substring(remote.replacingOccurrences(of: "10.2.1.0/24", with: "10.2.2.0/24"))]
        result += lines[(at + 1)...]
        return result.joined(separator: "\n")
    }()

    func child(_ session: SessionKey, spi: UInt32, remote: IPAddress) -> NegotiatedChild {
        var child = Wiring().child(session, spi: spi, remote: Endpoint(remote, 4500))
        child.remoteTrafficSelectors = [try! IPPrefix.parse("10.2.1.0/24"), try! IPPrefix.parse("10.2.2.0/24")]
        return child
    }

    @Test func oneChildSAWithTwoSubnetsIsOnePairOfSAsUnderOneReqidAndFailsOverMakeBeforeBreak() throws {
        #expect(Self.yaml.contains("10.2.2.0/24"), "the test's configuration lists the second subnet")
        let (daemon, kernel, engine) = try Wiring.daemonWithStubEngine(yaml: Self.yaml)
        _ = daemon.reconcileFailClosed()
        let entry = try #require(daemon.entries["LAB/10"])
        daemon.coordinate(entry, .start)
        daemon.drain()
        let a = SessionKey(version: .v2, spi: 1)
        engine.output(.ikeUp(a, connection: "LAB/10", peer: Wiring.peerA, detail: "test", peerSupportsDPD: true))
        kernel.clearRecordedSteps()
        engine.output(.childUp(child(a, spi: 0x1000, remote: Wiring.peerA)))
        daemon.drain()
        #expect(kernel.recordedSteps.filter { $0.operation == .addSA }.count == 2, "\(kernel.recordedSteps)")
        #expect(Set(try kernel.listSAs().map(\.id.spi)) == [0x1000, 0x1001])
        let reqids = Set(try kernel.listSAs().map(\.reqid))
        #expect(reqids.count == 1)
        let templates = try kernel.listPolicies().compactMap { policy -> UInt32? in
            if case .protect(let template) = policy.request.action { template.reqid } else { nil }
        }
        #expect(templates.count == 6 && Set(templates) == reqids, "both pairs' policies name the one reqid: \(templates)")

        // Failover to B: B's SAs once, every policy repointed, then A's SAs deleted once, at the very end.
        let b = SessionKey(version: .v2, spi: 2)
        let peerB = IPAddress("203.0.113.2")!
        kernel.clearRecordedSteps()
        daemon.coordinate(entry, .peerDead(Wiring.peerA.description))
        daemon.drain()
        engine.output(.ikeUp(b, connection: "LAB/10", peer: peerB, detail: "test", peerSupportsDPD: true))
        engine.output(.childUp(child(b, spi: 0x2000, remote: peerB)))
        daemon.drain()
        let steps = kernel.recordedSteps
        #expect(steps.filter { if case .addSA(let id, _) = $0 { [0x2000, 0x2001].contains(id.spi) } else { false } }.count == 2, "\(steps)")
        #expect(steps.filter { if case .deleteSA(let id) = $0 { [0x1000, 0x1001].contains(id.spi) } else { false } }.count == 2, "\(steps)")
        #expect(Set(try kernel.listSAs().map(\.id.spi)) == [0x2000, 0x2001])
        #expect(try kernel.listPolicies().allSatisfy { policy in
            if case .protect(let template) = policy.request.action { return template.destination == peerB || template.source == peerB }
            return false
        })

        // B's Child SA deleted: its SAs go once, the policies stay (traffic held).
        kernel.clearRecordedSteps()
        engine.output(.childDown(connection: "LAB/10", inboundSPI: 0x2000, reason: "deleted by peer"))
        daemon.drain()
        #expect(kernel.recordedSteps.filter { $0.operation == .deleteSA }.count == 2, "\(kernel.recordedSteps)")
        #expect(try kernel.listSAs().isEmpty)
        #expect(kernel.recordedSteps.allSatisfy { $0.operation == .deleteSA }, "no refused or repeated step: \(kernel.recordedSteps)")
    }

    @Test func theCountDropsRepeatsAndLetsTheLastDeleteThrough() throws {
        var users = SAUsers()
        let id = SAID(destination: IPAddress("192.0.2.1")!, spi: 0x10)
        let request = SARequest(source: IPAddress("198.51.100.2")!, destination: IPAddress("192.0.2.1")!, reqid: 1,
                                encryption: .aes256gcm16, encryptionKey: Array(repeating: 1, count: 36), integrity: nil)
        let add = KernelPlan([.addSA(id, request)]), delete = KernelPlan([.deleteSA(id)])
        let kernel = RecordingKernel()
        let executor = KernelExecutor(ipsec: kernel, routes: kernel)
        #expect(users.admit(add) == add)
        users.record(executor.apply(add))
        #expect(users.admit(add).steps.isEmpty && users.count(id) == 2)
        #expect(users.admit(delete).steps.isEmpty && users.count(id) == 1)
        #expect(users.admit(delete) == delete)
        users.record(executor.apply(delete))
        #expect(users.count(id) == 0)
        #expect(try kernel.listSAs().isEmpty)
        #expect(users.admit(add) == add, "after the last delete an add installs again")
    }
}
