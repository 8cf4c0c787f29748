import Testing
import VigilFailover
import VigilLiveness

/// The classic failover cases, each a scripted run of the same simulation (invariants included).
@Suite struct NamedScenarioTests {
    /// interval 5 s, retry 1 s, 3 probes: death 8 s after the last proof of life.
    static let dpd = DeadPeerDetector.Configuration(mode: .periodic, interval: .seconds(5), retry: .seconds(1), retries: 3,
                                                     flavour: .ikev2)

    static func scenario(peers: [PeerModel], list: [Int]? = nil, preferred: Int? = nil, horizon: Duration = .seconds(300),
                         preemption: Coordinator.Preemption? = nil) -> Scenario {
        let configuration = Coordinator.Configuration(
            peers: list ?? Array(peers.indices), preferred: preferred, deadPeerAction: .restart, attemptTimeout: .seconds(10),
            backoff: .init(initial: .seconds(5), maximum: .seconds(40)), preemption: preemption)
        return Scenario(seed: 1, horizon: horizon, peers: peers, coordinator: configuration, detector: dpd)
    }

    static let forever = Duration.zero ..< .seconds(100_000)

    @Test func firstTwoOfThreePeersDeadAtStart() throws {
        let run = Simulation.run(Self.scenario(peers: [
            PeerModel(delay: .milliseconds(20), unreachable: [Self.forever]),
            PeerModel(delay: .milliseconds(20), unreachable: [Self.forever]),
            PeerModel(delay: .milliseconds(20)),
        ]))
        #expect(run.violations.isEmpty, "\(run.violations)")
        // Each address gets its own timeout, then the next one: never stuck on the first (strongSwan #776).
        #expect(run.initiates.map(\.peer) == [0, 1, 2])
        #expect(run.initiates.map(\.at) == [.zero, .seconds(10), .seconds(20)])
        #expect(run.established.map(\.peer) == [2])
        #expect(try #require(run.established.first).at == .seconds(20) + .milliseconds(80))
        #expect(run.coordinator.activePeer == 2)
    }

    @Test func activePeerDiesDuringARekey() throws {
        var scenario = Self.scenario(peers: [
            PeerModel(delay: .milliseconds(10), unreachable: [.seconds(50) ..< .seconds(100_000)]),
            PeerModel(delay: .milliseconds(10)),
        ])
        scenario.rekeysAt = [.milliseconds(49_990)]   // the request goes out, the peer dies before answering
        scenario.rekeyGiveUp = .seconds(60)           // IKE keeps retransmitting long past the DPD bound
        let run = Simulation.run(scenario)
        #expect(run.violations.isEmpty, "\(run.violations)")
        let death = try #require(run.deaths.first)
        #expect(death.peer == 0)
        // Declared within interval + retries × retry + RTT of the last answer, the rekey notwithstanding.
        #expect(death.at <= .seconds(50) + .seconds(8) + .milliseconds(20))
        // No probe while the rekey was in flight.
        #expect(!run.probeLog.contains { $0.at >= .milliseconds(49_990) && $0.at < death.at })
        #expect(run.initiates.map(\.peer) == [0, 1])
        #expect(run.coordinator.activePeer == 1)
    }

    @Test func allPeersDeadThenTheSecondReturns() throws {
        let run = Simulation.run(Self.scenario(peers: [
            PeerModel(delay: .milliseconds(20), unreachable: [Self.forever]),
            PeerModel(delay: .milliseconds(20), unreachable: [.zero ..< .seconds(100)]),
            PeerModel(delay: .milliseconds(20), unreachable: [Self.forever]),
        ]))
        #expect(run.violations.isEmpty, "\(run.violations)")
        let cycles = run.notices.filter { $0.kind == .cycleFailed }
        #expect(cycles.count >= 2)
        // Bounded exponential backoff: each pause (jitter in [d/2, d]) is within its bound and no longer than the maximum.
        let backoffs = run.notices.filter { $0.kind == .backoffEnded }.map(\.at)
        for (index, (failed, ended)) in zip(cycles.map(\.at), backoffs).enumerated() {
            let bound = min(Duration.seconds(5) * (1 << index), .seconds(40))
            #expect(ended - failed >= bound / 2 && ended - failed <= bound)
        }
        // Every cycle starts from the first listed peer and walks the list in order.
        #expect(Array(run.initiates.map(\.peer).prefix(6)) == [0, 1, 2, 0, 1, 2])
        let established = try #require(run.established.first)
        #expect(established.peer == 1)
        #expect(established.at > .seconds(100) && established.at < .seconds(100) + .seconds(30 + 40 + 30))
    }

    @Test func aFlappingPreferredPeerIsDamped() throws {
        // The preferred peer 0 is down for 20 s, then up 5 s / down 5 s for the rest of the run; 1 is stable.
        var flaps: [Range<Duration>] = [.zero ..< .seconds(20)]
        var time = Duration.seconds(25)
        while time < .seconds(600) {
            flaps.append(time ..< time + .seconds(5))
            time += .seconds(10)
        }
        let preemption = Coordinator.Preemption(probeInterval: .seconds(1), holdDown: .seconds(3), maximumHoldDown: .seconds(60))
        let run = Simulation.run(Self.scenario(peers: [
            PeerModel(delay: .milliseconds(20), unreachable: flaps),
            PeerModel(delay: .milliseconds(20)),
        ], preferred: 0, horizon: .seconds(600), preemption: preemption))
        #expect(run.violations.isEmpty, "\(run.violations)")
        let preemptions = run.notices.filter { $0.kind == .preempting }.count
        // Undamped it would move back every 10 s (about 57 times); the first
        // flap doubles the hold-down past the 5 s window, and every later flap keeps it there.
        #expect(preemptions == 1, "\(run.narrative())")
        #expect(run.coordinator.activePeer == 1)
    }

    @Test func aStablePreferredPeerIsPreemptedBackMakeBeforeBreak() throws {
        let preemption = Coordinator.Preemption(probeInterval: .seconds(2), holdDown: .seconds(10), maximumHoldDown: .seconds(60))
        let run = Simulation.run(Self.scenario(peers: [
            PeerModel(delay: .milliseconds(20), unreachable: [.zero ..< .seconds(60)]),
            PeerModel(delay: .milliseconds(20)),
        ], preferred: 0, horizon: .seconds(200), preemption: preemption))
        #expect(run.violations.isEmpty, "\(run.violations)")
        #expect(run.established.map(\.peer) == [1, 0])
        let back = try #require(run.established.last).at
        // First answered probe at most one probe interval after 60 s, then the hold-down.
        #expect(back >= .seconds(70) && back <= .seconds(73))
        #expect(run.coordinator.activePeer == 0)
    }

    @Test func aListUpdateRemovesThePeerBeingNegotiatedMidFailover() throws {
        var scenario = Self.scenario(peers: [
            PeerModel(delay: .milliseconds(20), unreachable: [.seconds(20) ..< .seconds(100_000)]),
            PeerModel(delay: .milliseconds(20), unreachable: [Self.forever]),
            PeerModel(delay: .milliseconds(20)),
        ])
        // Find when the failover to 1 starts, then remove 1 (and the dead 0) one second into that negotiation.
        let failover = try #require(Simulation.run(scenario).initiates.first { $0.peer == 1 }).at
        scenario.listUpdates = [(at: failover + .seconds(1), peers: [2, 0], preferred: nil)]
        let run = Simulation.run(scenario)
        #expect(run.violations.isEmpty, "\(run.violations)")
        // The negotiation with 1 is abandoned and replaced once, at the update: nothing lost, nothing duplicated.
        #expect(run.initiates.map(\.peer) == [0, 1, 2])
        #expect(run.initiates.last?.at == failover + .seconds(1))
        #expect(run.established.map(\.peer) == [0, 2])
        #expect(run.coordinator.activePeer == 2)
    }

    @Test func aListUpdateKeepsANegotiationWithAPeerStillListed() throws {
        var scenario = Self.scenario(peers: [
            PeerModel(delay: .milliseconds(20), unreachable: [.seconds(20) ..< .seconds(100_000)]),
            PeerModel(delay: .milliseconds(20)),   // its negotiation takes 80 ms
            PeerModel(delay: .milliseconds(20)),
        ])
        let failover = try #require(Simulation.run(scenario).initiates.first { $0.peer == 1 }).at
        scenario.listUpdates = [(at: failover + .milliseconds(10), peers: [2, 1], preferred: nil)]
        let run = Simulation.run(scenario)
        #expect(run.violations.isEmpty, "\(run.violations)")
        #expect(run.initiates.map(\.peer) == [0, 1])
        #expect(run.established.map(\.peer) == [0, 1])
        #expect(run.coordinator.activePeer == 1)
    }
}
