import Logging
import Testing
import VigilAddressing
import VigilConfig
import VigilCrypto
import VigilIKE
@testable import VigilDaemon
import VigilKernel

/// The daemon's fail-closed wiring against the in-memory kernel, with a stub IKE engine feeding it outputs: guards
/// at start-up, a Child SA repointing them in place, a NAT rebinding and a rekey from the new address as planned
/// moves, an operator clear returning to the guards.
@Suite struct FailClosedWiringTests {
    static let peerA = IPAddress("198.51.100.2")!
    static let natted = IPAddress("198.51.100.20")!
    static let local = IPAddress("192.0.2.1")!

    final class StubEngine: IKEEngineDriver {
        let version = IKEVersionTag.v2
        var output: (EngineOutput) -> Void = { _ in }
        var initiated: [IPAddress] = []
        func initiate(connection: String, peer: IPAddress) { initiated.append(peer) }
        func probe(_ session: SessionKey, sequence: UInt32) {}
        func delete(_ session: SessionKey) {}
        func abandon(_ session: SessionKey) {}
        func received(_ bytes: [UInt8], from: Endpoint, to: Endpoint) {}
        func updatePeers(connection: String, peers: [EnginePeer]) {}
        var connections: [String] = []
        func addConnection(map: String, entry: CryptoMapEntry, global: GlobalSettings) { connections.append("\(map)/\(entry.sequence)") }
        func removeConnection(_ name: String) { connections.removeAll { $0 == name } }
        var sessions: [SessionView] { [] }
        var counters: [String: UInt64] { [:] }
        var exchanges: [IKEExchangeOutcome: UInt64] { [:] }
        var childRekeyAt: [ChildSAID: Duration] { [:] }
    }

    static let yaml = """
    global:
      identity: 192.0.2.1
      listen: [192.0.2.1]
      dataplane: kernel
      secrets: vigil.secrets.yaml
      kernel: { install-routes: false }
    crypto-maps:
      LAB:
        entries:
          - sequence: 10
            ike-version: v2
            peers: [198.51.100.2, 203.0.113.2]
            traffic:
              - local: 10.1.1.0/24
                remote: 10.2.1.0/24
            ike-proposals: [aes256-sha256-x25519]
            esp-proposals: [aes256-sha256]
            dpd: { mode: periodic, interval: 1s, retry: 200ms, retries: 3 }
    """

    func child(_ session: SessionKey, spi: UInt32, remote: Endpoint) -> NegotiatedChild {
        NegotiatedChild(
            ikeSA: session, connection: "LAB/10", inboundSPI: spi, outboundSPI: spi + 1,
            algorithms: ChildAlgorithms(encryption: .aes256cbc, integrity: .hmacSHA2_256_128, dhGroup: nil),
            localTrafficSelectors: [try! IPPrefix.parse("10.1.1.0/24")], remoteTrafficSelectors: [try! IPPrefix.parse("10.2.1.0/24")],
            localEndpoint: Endpoint(Self.local, 4500), remoteEndpoint: remote, udpEncapsulated: true, establishedAt: .zero,
            keys: ChildSAKeys(
                encryptionIn: SecureBytes(Array(repeating: 1, count: 32)), encryptionOut: SecureBytes(Array(repeating: 2, count: 32)),
                integrityIn: SecureBytes(Array(repeating: 3, count: 32)), integrityOut: SecureBytes(Array(repeating: 4, count: 32))))
    }

    /// The daemon over the in-memory kernel with the stub engine registered (nothing started yet).
    static func daemonWithStubEngine(yaml: String = Self.yaml) throws -> (Daemon, RecordingKernel, StubEngine) {
        let configuration = try ConfigurationLoader.load(
            yaml: yaml, fileName: "/nonexistent/vigil.yaml",
            secrets: "pre-shared-keys:\n  198.51.100.2: \"a\"\n  203.0.113.2: \"b\"\n")
        let kernel = RecordingKernel()
        let daemonKernel = DaemonKernel(ipsec: kernel, routes: kernel, dataplaneDescription: "recorded",
                                        settings: configuration.global.kernel, tunnelDevice: nil)
        let daemon = Daemon(configuration: configuration, loop: EventLoop(), kernel: daemonKernel, logger: Logger(label: "test"))
        let engine = StubEngine()
        daemon.register(engine)
        return (daemon, kernel, engine)
    }

    /// A full tunnel: selectors that cover our listen address and the peers' (0.0.0.0/0, or a /24 holding the listen
    /// address to everything) are guarded like any other pair, since every IKE socket bypasses IPsec policies
    /// (`SocketBypassTests`, the strongSwan full-tunnel interop test). Nothing is reported unguarded.
    @Test(arguments: [("0.0.0.0/0", "0.0.0.0/0"), ("192.0.2.0/24", "0.0.0.0/0")])
    func aFullTunnelIsGuardedLikeAnyOtherPair(local: String, remote: String) throws {
        let yaml = Self.yaml.replacingOccurrences(of: "local: 10.1.1.0/24", with: "local: \(local)")
            .replacingOccurrences(of: "remote: 10.2.1.0/24", with: "remote: \(remote)")
        let (daemon, kernel, _) = try Self.daemonWithStubEngine(yaml: yaml)
        let line = daemon.reconcileFailClosed()
        #expect(line.contains("1 block and 0 hold guards for 1 selector pairs"), "\(line)")
        #expect(!line.contains("not guarded") && !line.contains("NOT guarded"), "\(line)")
        let policies = try kernel.listPolicies()
        #expect(policies.count == 3 && policies.allSatisfy { $0.request.action == .block }, "\(policies)")
        let outbound = try #require(policies.first { $0.id.direction == .outbound })
        #expect(outbound.id.selector == PolicySelector(source: try IPPrefix.parse(local), destination: try IPPrefix.parse(remote)))
    }

    /// The userspace data plane's blackhole routes apply to every socket, the IKE sockets too: none goes to a remote
    /// subnet that holds a peer (a full tunnel), and the line says so; the guard policies still go in.
    @Test func aFullTunnelGetsNoBlackholeRouteThatWouldDropIKE() throws {
        let yaml = Self.yaml.replacingOccurrences(of: "dataplane: kernel", with: "dataplane: userspace")
            .replacingOccurrences(of: "kernel: { install-routes: false }", with: "kernel: { install-routes: true }")
            .replacingOccurrences(of: "remote: 10.2.1.0/24", with: "remote: 10.2.1.0/24\n          - local: 10.1.1.0/24\n            remote: 0.0.0.0/0")
        let configuration = try ConfigurationLoader.load(
            yaml: yaml, fileName: "/nonexistent/vigil.yaml",
            secrets: "pre-shared-keys:\n  198.51.100.2: \"a\"\n  203.0.113.2: \"b\"\n")
        let kernel = RecordingKernel()
        let daemonKernel = DaemonKernel(ipsec: kernel, routes: kernel, dataplaneDescription: "recorded",
                                        settings: configuration.global.kernel, tunnelDevice: "vigil0")
        let daemon = Daemon(configuration: configuration, loop: EventLoop(), kernel: daemonKernel, logger: Logger(label: "test"))
        let line = daemon.reconcileFailClosed()
        #expect(line.contains("2 block and 0 hold guards for 2 selector pairs, 1 blackhole routes"), "\(line)")
        #expect(line.contains("no blackhole route to 0.0.0.0/0: it holds a peer"), "\(line)")
        let blackholes = try kernel.listRoutes(table: VigilOwnership.defaultRouteTable).filter { $0.id.type == .blackhole }.map(\.id.destination)
        #expect(blackholes == [try IPPrefix.parse("10.2.1.0/24")], "\(blackholes)")
        #expect(try kernel.listPolicies().count == 6)
    }

    @Test func guardsRepointedMovedAndRestoredInPlace() throws {
        let (daemon, kernel, engine) = try Self.daemonWithStubEngine()

        // Start-up: three block policies before any negotiation.
        let line = daemon.reconcileFailClosed()
        #expect(line.contains("1 block and 0 hold guards"), "\(line)")
        #expect(try kernel.listPolicies().count == 3)
        #expect(try kernel.listPolicies().allSatisfy { $0.request.action == .block })

        let entry = try #require(daemon.entries["LAB/10"])
        daemon.coordinate(entry, .start)
        daemon.drain()
        #expect(engine.initiated == [Self.peerA])
        let session = SessionKey(version: .v2, spi: 1)
        engine.output(.ikeUp(session, connection: "LAB/10", peer: Self.peerA, detail: "test", peerSupportsDPD: true))
        daemon.drain()

        // The Child SA repoints the guards in place; its SAs carry the kernel backstop lifetime.
        kernel.clearRecordedSteps()
        engine.output(.childUp(child(session, spi: 0x1000, remote: Endpoint(Self.peerA, 4500))))
        daemon.drain()
        #expect(kernel.recordedSteps.map(\.operation) == [.addSA, .addSA, .updatePolicy, .updatePolicy, .updatePolicy])
        let lifetimes = kernel.recordedSteps.compactMap { step -> SALifetime? in
            if case .addSA(_, let request) = step { return request.lifetime }
            return nil
        }
        #expect(lifetimes == Array(repeating: SALifetime.backstop(negotiated: entry.entry.childLifetime), count: 2))

        // NAT rebinding (RFC 7296 §2.23): a planned move, make-before-break, no policy deleted.
        kernel.clearRecordedSteps()
        daemon.peerAddressChanged(session, from: Endpoint(Self.peerA, 4500), to: Endpoint(Self.natted, 31_000))
        #expect(kernel.recordedSteps.map(\.operation)
                == [.updateSA, .addSA, .updatePolicy, .updatePolicy, .updatePolicy, .deleteSA])
        #expect(try kernel.listPolicies().allSatisfy {
            guard case .protect(let template) = $0.request.action else { return false }
            return [template.source, template.destination].contains(Self.natted)
        })

        // The next rekey from the new address used to hit a precondition in the planner; now SAs only: the new ones
        // beside the old, which go when the engine reports them deleted (the peer may send on them until then).
        kernel.clearRecordedSteps()
        engine.output(.childRekeyed(oldInboundSPI: 0x1000, child(session, spi: 0x2000, remote: Endpoint(Self.natted, 31_000))))
        daemon.drain()
        #expect(kernel.recordedSteps.map(\.operation) == [.addSA, .addSA])
        #expect(Set(try kernel.listSAs().map(\.id.spi)) == [0x1000, 0x1001, 0x2000, 0x2001])
        kernel.clearRecordedSteps()
        engine.output(.childDown(connection: "LAB/10", inboundSPI: 0x1000, reason: "rekeyed"))
        daemon.drain()
        #expect(kernel.recordedSteps.map(\.operation) == [.deleteSA, .deleteSA])
        #expect(Set(try kernel.listSAs().map(\.id.spi)) == [0x2000, 0x2001])

        // Operator clear: the policies return to the guard in place; nothing is deleted first.
        kernel.clearRecordedSteps()
        daemon.coordinate(entry, .operatorClear)
        daemon.drain()
        #expect(!kernel.recordedSteps.contains { $0.operation == .deletePolicy })
        #expect(try kernel.listPolicies().count == 3)
        #expect(try kernel.listPolicies().allSatisfy { $0.request.action == .block })
        #expect(try kernel.listSAs().isEmpty)

        // Clean shutdown removes the guards (a deliberate stop removes protection).
        daemon.shutdown()
        #expect(try kernel.listPolicies().isEmpty)
    }

    /// A rekey we answered (IKEv2 CREATE_CHILD_SA as responder): the new inbound SA at once, the new outbound only
    /// when the peer deletes the old Child SA, and before the old SAs go. Sent on the new outbound at once, traffic
    /// reached a peer that had not installed its new inbound SA yet (one ping in 300 lost per rekey in the lab).
    @Test(arguments: [false, true])
    func aRekeyWeAnsweredSwitchesOutboundWhenThePeerDeletesTheOld(newDeletedFirst: Bool) throws {
        let (daemon, kernel, engine) = try Self.daemonWithStubEngine()
        _ = daemon.reconcileFailClosed()
        let entry = try #require(daemon.entries["LAB/10"])
        daemon.coordinate(entry, .start)
        daemon.drain()
        let session = SessionKey(version: .v2, spi: 1)
        engine.output(.ikeUp(session, connection: "LAB/10", peer: Self.peerA, detail: "test", peerSupportsDPD: true))
        engine.output(.childUp(child(session, spi: 0x1000, remote: Endpoint(Self.peerA, 4500))))
        daemon.drain()

        kernel.clearRecordedSteps()
        var answered = child(session, spi: 0x2000, remote: Endpoint(Self.peerA, 4500))
        answered.outboundAwaitsOldDeletion = true
        engine.output(.childRekeyed(oldInboundSPI: 0x1000, answered))
        daemon.drain()
        #expect(kernel.recordedSteps.map(\.operation) == [.addSA])
        #expect(Set(try kernel.listSAs().map(\.id.spi)) == [0x1000, 0x1001, 0x2000], "the new outbound SA went in at once")

        kernel.clearRecordedSteps()
        if newDeletedFirst {
            // The new one goes before the old (the peer deleted it): its outbound SA never went in, so none is deleted.
            engine.output(.childDown(connection: "LAB/10", inboundSPI: 0x2000, reason: "deleted by the peer"))
            daemon.drain()
            #expect(!kernel.recordedSteps.contains { $0 == .deleteSA(SAID(destination: Self.peerA, spi: 0x2001)) })
            #expect(!kernel.recordedSteps.contains { $0.operation == .addSA })
            return
        }
        engine.output(.childDown(connection: "LAB/10", inboundSPI: 0x1000, reason: "deleted by the peer"))
        daemon.drain()
        #expect(kernel.recordedSteps.map(\.operation) == [.addSA, .deleteSA, .deleteSA], "outbound in before the old SAs go")
        #expect(Set(try kernel.listSAs().map(\.id.spi)) == [0x2000, 0x2001])

        // Its own deletion later is a whole Child SA's.
        kernel.clearRecordedSteps()
        engine.output(.childDown(connection: "LAB/10", inboundSPI: 0x2000, reason: "deleted"))
        daemon.drain()
        #expect(kernel.recordedSteps.filter { $0.operation == .deleteSA }.count == 2)
    }
}
