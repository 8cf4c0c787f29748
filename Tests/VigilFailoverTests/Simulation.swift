import VigilFailover
import VigilLiveness

typealias Coordinator = FailoverCoordinator<Int>

/// A simulated peer as the machines see it: reachable or not over time, a one-way delay, loss, and whether it
/// rejects our authentication.
struct PeerModel {
    var delay: Duration
    var loss: Double = 0
    var rejects = false
    /// Half-open periods in which the peer is dead or partitioned away (sorted, disjoint).
    var unreachable: [Range<Duration>] = []

    func reachable(at time: Duration) -> Bool { !unreachable.contains { $0.contains(time) } }

    /// The first moment at or after `time` at which the peer is unreachable.
    func stopsAnswering(after time: Duration) -> Duration? {
        if !reachable(at: time) { return time }
        return unreachable.first { $0.lowerBound > time }?.lowerBound
    }
}

/// Everything a run depends on; `random(seed:)` draws one, named scenarios write one out.
struct Scenario {
    var seed: UInt64
    var horizon: Duration
    var peers: [PeerModel]
    var coordinator: Coordinator.Configuration
    var detector: DeadPeerDetector.Configuration
    var ikev1 = true
    var outboundGap: Duration?
    var inboundGap: Duration?
    var rekeyGap: Duration?
    var rekeyGiveUp: Duration = .seconds(30)
    var rekeysAt: [Duration] = []
    var listUpdates: [(at: Duration, peers: [Int], preferred: Int?)] = []
    /// Operator commands (`.operatorFailover`, `.operatorClear`, `.start`).
    var operatorCommands: [(at: Duration, command: Coordinator.Event)] = []
    /// Deliver `.start` at time zero (auto start); otherwise the first traffic starts the entry.
    var autoStart = true

    static func random(seed: UInt64) -> Scenario {
        var random = SeededGenerator(seed: seed)
        let horizon = Duration.seconds(240)
        let universe = Int.random(in: 1 ... 6, using: &random)
        let lossy = random.chance(0.3)
        let peers = (0 ..< universe).map { _ in
            PeerModel(delay: random.milliseconds(1 ... 150), loss: lossy ? Double.random(in: 0 ... 0.2, using: &random) : 0,
                      rejects: random.chance(0.05), unreachable: randomOutages(horizon: horizon, &random))
        }
        let list = Array((0 ..< universe).shuffled(using: &random).prefix(Int.random(in: 1 ... universe, using: &random)))
        let preferred = random.chance(0.5) ? list.randomElement(using: &random) : nil
        let modes: [DeadPeerDetector.Configuration.Mode] = [.periodic, .periodic, .onDemand]
        let actions: [Coordinator.DeadPeerAction] = [.restart, .restart, .clear, .hold]
        let initial = random.milliseconds(500 ... 5000)
        let coordinator = Coordinator.Configuration(
            peers: list, preferred: preferred, deadPeerAction: actions.randomElement(using: &random)!,
            attemptTimeout: random.milliseconds(2000 ... 10_000),
            backoff: .init(initial: initial, maximum: initial * Int.random(in: 1 ... 16, using: &random)),
            idleTime: random.chance(0.2) ? random.milliseconds(5000 ... 60_000) : nil,
            preemption: random.chance(0.3) ? .init(probeInterval: random.milliseconds(1000 ... 10_000),
                                                   holdDown: random.milliseconds(0 ... 20_000),
                                                   maximumHoldDown: .seconds(60)) : nil)
        let detector = DeadPeerDetector.Configuration(
            mode: modes.randomElement(using: &random)!, interval: random.milliseconds(1000 ... 20_000),
            retry: random.milliseconds(400 ... 5000), retries: Int.random(in: 1 ... 6, using: &random),
            flavour: .ikev2)
        var scenario = Scenario(seed: seed, horizon: horizon, peers: peers, coordinator: coordinator, detector: detector)
        scenario.ikev1 = random.chance(0.5)
        scenario.outboundGap = random.chance(0.8) ? random.milliseconds(200 ... 30_000) : nil
        scenario.inboundGap = random.chance(0.5) ? random.milliseconds(200 ... 30_000) : nil
        scenario.rekeyGap = random.chance(0.5) ? random.milliseconds(5000 ... 60_000) : nil
        scenario.rekeyGiveUp = random.milliseconds(1000 ... 40_000)
        scenario.autoStart = random.chance(0.8)
        for _ in 0 ..< (random.chance(0.3) ? Int.random(in: 1 ... 3, using: &random) : 0) {
            let newList = Array((0 ..< universe).shuffled(using: &random).prefix(Int.random(in: 1 ... universe, using: &random)))
            scenario.listUpdates.append((at: random.milliseconds(0 ... 200_000), peers: newList,
                                         preferred: random.chance(0.5) ? newList.randomElement(using: &random) : nil))
        }
        for _ in 0 ..< (random.chance(0.2) ? Int.random(in: 1 ... 4, using: &random) : 0) {
            let commands: [Coordinator.Event] = [.operatorFailover(to: nil), .operatorFailover(to: Int.random(in: 0 ..< universe, using: &random)),
                                                 .operatorClear, .start]
            scenario.operatorCommands.append((at: random.milliseconds(0 ... 200_000), command: commands.randomElement(using: &random)!))
        }
        return scenario
    }

    private static func randomOutages(horizon: Duration, _ random: inout SeededGenerator) -> [Range<Duration>] {
        var outages: [Range<Duration>] = []
        var time: Duration = random.chance(0.4) ? .zero : random.milliseconds(0 ... 240_000)
        while time < horizon {
            let end = time + random.milliseconds(1000 ... 120_000)
            outages.append(time ..< end)
            time = end + random.milliseconds(1000 ... 150_000)
        }
        return outages
    }
}

/// A discrete-event run of one crypto-map entry: the coordinator, one detector per established SA, the simulated
/// peers and network, a virtual clock. Every step checks the invariants; a violation names the seed.
struct Simulation {
    enum Step {
        case start
        case coordinatorTimer
        case detectorTimer(sa: Int)
        case negotiationReply(peer: Int, generation: Int, final: Bool)
        case negotiationRejected(peer: Int, generation: Int)
        case probeAck(sa: Int, sequence: UInt32)
        case inboundPacket(sa: Int)
        case outboundTick
        case inboundTick
        case rekeyTick
        case rekeyAt
        case rekeyAnswer(sa: Int)
        case rekeyGiveUp(sa: Int)
        case phase1Probe(peer: Int, sentAt: Duration, answered: Bool)
        case listUpdate(Int)
        case operatorCommand(Int)
    }

    struct SecurityAssociation {
        var peer: Int
        var detector: DeadPeerDetector
        var armed: Duration?
        var inboundPackets: UInt64 = 0
        /// Last delivery that is certainly proof of life (authenticated answer, traffic, ACK of the latest probe).
        var certainProof: Duration
        /// Last delivery of anything from the peer.
        var latestDelivery: Duration
        var lastSentSequence: UInt32?
        var lastOutbound: Duration?
        var outbound: [Duration] = []
        var rekeyInFlight = false
    }

    let scenario: Scenario
    var random: SeededGenerator
    var queue = EventQueue<Step>()
    var now: Duration = .zero
    var coordinator: Coordinator
    var list: [Int]
    var sas: [Int: SecurityAssociation] = [:]
    var nextSA = 0
    var generation: [Int: Int] = [:]
    var coordinatorArmed: Duration?
    /// What the kernel is programmed for, rebuilt from actions alone.
    var kernelPeer: Int?
    /// After a death on the active peer: the peer the next initiate must go to.
    var expectedNext: Int?
    var lastListUpdate: Duration = .zero
    /// The last moment the entry had an active peer.
    var lastActive: Duration = .zero

    // Results
    var violations: [String] = []
    var initiates: [(at: Duration, peer: Int)] = []
    var deaths: [(at: Duration, peer: Int)] = []
    var established: [(at: Duration, peer: Int)] = []
    var notices: [Coordinator.Notice] = []
    var probes = 0
    var probeLog: [(at: Duration, peer: Int, attempt: Int)] = []

    init(_ scenario: Scenario) {
        self.scenario = scenario
        random = SeededGenerator(seed: scenario.seed ^ 0x5EED)
        coordinator = Coordinator(configuration: scenario.coordinator)
        list = scenario.coordinator.peers
    }

    static func run(_ scenario: Scenario) -> Simulation {
        var simulation = Simulation(scenario)
        simulation.run()
        return simulation
    }

    mutating func run() {
        if scenario.autoStart { queue.push(.start, at: .zero) }
        if scenario.outboundGap != nil { queue.push(.outboundTick, at: .milliseconds(1)) }
        if scenario.inboundGap != nil { queue.push(.inboundTick, at: .milliseconds(2)) }
        if scenario.rekeyGap != nil { queue.push(.rekeyTick, at: scenario.rekeyGap!) }
        for time in scenario.rekeysAt { queue.push(.rekeyAt, at: time) }
        for (index, update) in scenario.listUpdates.enumerated() { queue.push(.listUpdate(index), at: update.at) }
        for (index, command) in scenario.operatorCommands.enumerated() { queue.push(.operatorCommand(index), at: command.at) }
        while let (time, step) = queue.pop(), time <= scenario.horizon {
            now = time
            perform(step)
            if !violations.isEmpty { return }
        }
        now = scenario.horizon
        checkLiveness()
    }

    // MARK: Network

    private func peer(_ id: Int) -> PeerModel { scenario.peers[id] }

    /// One message to the peer and its answer: both legs need the peer reachable and survive loss.
    private mutating func roundTrip(_ id: Int) -> Bool {
        let model = peer(id)
        return model.reachable(at: now) && model.reachable(at: now + model.delay)
            && !random.chance(model.loss) && !random.chance(model.loss)
    }

    // MARK: Steps

    private mutating func perform(_ step: Step) {
        switch step {
        case .start:
            coordinate(.start)
        case .coordinatorTimer:
            coordinate(.timerFired)
        case .detectorTimer(let sa):
            detect(sa, .timerFired)
        case .negotiationReply(let id, let gen, let final):
            guard generation[id] == gen else { return }
            if !final {
                if peer(id).rejects {
                    coordinate(.attemptFailed(id, reason: "AUTHENTICATION_FAILED"))
                } else if roundTrip(id) {
                    queue.push(.negotiationReply(peer: id, generation: gen, final: true), at: now + peer(id).delay * 2)
                }
                return
            }
            coordinate(.phase1Established(id))
            coordinate(.childEstablished(id))
        case .negotiationRejected(let id, let gen):
            if generation[id] == gen { coordinate(.attemptFailed(id, reason: "NO_PROPOSAL_CHOSEN")) }
        case .probeAck(let sa, let sequence):
            guard var record = sas[sa] else { return }
            record.latestDelivery = now
            if sequence == record.lastSentSequence { record.certainProof = now }
            sas[sa] = record
            detect(sa, .probeAcknowledged(sequence: sequence))
        case .inboundPacket(let sa):
            guard var record = sas[sa] else { return }
            record.latestDelivery = now
            record.certainProof = now
            record.inboundPackets += 1
            sas[sa] = record
            detect(sa, .inboundTrafficObserved(packets: record.inboundPackets))
        case .outboundTick:
            queue.push(.outboundTick, at: now + jittered(scenario.outboundGap!))
            switch coordinator.state {
            case .idle: coordinate(.trafficWaiting)
            case .established: coordinate(.activityObserved)
            case .connecting, .backingOff: break
            }
            if let active = kernelPeer, let sa = saOf(active) {
                sas[sa]!.outbound.append(now)
                sas[sa]!.lastOutbound = now
                detect(sa, .outboundTrafficPending)
            }
        case .inboundTick:
            queue.push(.inboundTick, at: now + jittered(scenario.inboundGap!))
            if let active = kernelPeer, let sa = saOf(active), peer(active).reachable(at: now),
               !random.chance(peer(active).loss) {
                queue.push(.inboundPacket(sa: sa), at: now + peer(active).delay)
            }
        case .rekeyTick:
            queue.push(.rekeyTick, at: now + jittered(scenario.rekeyGap!))
            startRekey()
        case .rekeyAt:
            startRekey()
        case .rekeyAnswer(let sa):
            guard var record = sas[sa] else { return }
            record.latestDelivery = now
            record.certainProof = now
            record.rekeyInFlight = false
            sas[sa] = record
            detect(sa, .authenticatedMessageReceived)
            detect(sa, .exchangeCompleted)
        case .rekeyGiveUp(let sa):
            guard sas[sa]?.rekeyInFlight == true else { return }
            sas[sa]!.rekeyInFlight = false
            detect(sa, .exchangeCompleted)
        case .phase1Probe(let id, let sentAt, let answered):
            coordinate(answered ? .phase1ProbeAnswered(id) : .phase1ProbeFailed(id, probeSentAt: sentAt))
        case .listUpdate(let index):
            let update = scenario.listUpdates[index]
            list = update.peers
            lastListUpdate = now
            expectedNext = nil
            coordinate(.peerListUpdated(update.peers, preferred: update.preferred))
        case .operatorCommand(let index):
            expectedNext = nil
            coordinate(scenario.operatorCommands[index].command)
        }
    }

    private mutating func jittered(_ gap: Duration) -> Duration { gap * Double.random(in: 0.5 ... 1.5, using: &random) }

    private func saOf(_ peer: Int) -> Int? { sas.first { $0.value.peer == peer }?.key }

    private mutating func startRekey() {
        guard let active = kernelPeer, let sa = saOf(active), !sas[sa]!.rekeyInFlight, !sas[sa]!.detector.isDead else { return }
        sas[sa]!.rekeyInFlight = true
        detect(sa, .exchangeStarted)
        if roundTrip(active) {
            queue.push(.rekeyAnswer(sa: sa), at: now + peer(active).delay * 2)
        } else {
            queue.push(.rekeyGiveUp(sa: sa), at: now + scenario.rekeyGiveUp)
        }
    }

    // MARK: Machines

    private mutating func coordinate(_ event: Coordinator.Event) {
        if coordinator.activePeer != nil { lastActive = now }
        let actions = coordinator.handle(event, now: now, random: &random)
        var lastFailure: Int?
        for action in actions {
            switch action {
            case .initiate(let id, _):
                initiates.append((now, id))
                if let expected = expectedNext, expected != id {
                    fail("after a death the next attempt went to \(id), expected \(expected)")
                }
                expectedNext = nil
                // Within a cycle, a failed or timed-out attempt moves to the next listed peer.
                if let failed = lastFailure, let index = list.firstIndex(of: failed), list[(index + 1) % list.count] != id {
                    fail("after \(failed) failed the next attempt went to \(id), not the next listed peer")
                }
                let gen = (generation[id] ?? 0) + 1
                generation[id] = gen
                if roundTrip(id) {
                    queue.push(.negotiationReply(peer: id, generation: gen, final: false), at: now + peer(id).delay * 2)
                }
            case .abandonAttempt(let id):
                generation[id] = (generation[id] ?? 0) + 1
            case .deleteSAs(let id):
                if kernelPeer == id { kernelPeer = nil }
                if let sa = saOf(id) { sas[sa] = nil }
            case .programKernel(let id, let replacing):
                if replacing != kernelPeer {
                    fail("programKernel(\(id), replacing: \(String(describing: replacing))) while the kernel holds \(String(describing: kernelPeer))")
                }
                if !list.contains(id) { fail("programmed the removed peer \(id)") }
                kernelPeer = id
                established.append((now, id))
                establish(id)
            case .holdTraffic, .clearProtection:
                break
            case .probePhase1(let id):
                let answered = roundTrip(id)
                queue.push(.phase1Probe(peer: id, sentAt: now, answered: answered), at: now + (answered ? peer(id).delay * 2 : .seconds(2)))
            case .scheduleTimer(let at):
                if at != coordinatorArmed {
                    coordinatorArmed = at
                    queue.push(.coordinatorTimer, at: max(at, now))
                }
            case .emit(let notice):
                notices.append(notice)
                if notice.kind == .attemptFailed || notice.kind == .attemptTimedOut { lastFailure = notice.peer }
            }
        }
        if coordinator.activePeer != kernelPeer {
            fail("coordinator says active \(String(describing: coordinator.activePeer)), kernel holds \(String(describing: kernelPeer))")
        }
        if coordinator.activePeer != nil { lastActive = now }
        for id in [coordinator.activePeer, coordinator.negotiatingPeer].compactMap({ $0 }) where !list.contains(id) {
            fail("entry points at \(id), which is not in the list \(list)")
        }
    }

    private mutating func establish(_ id: Int) {
        let flavour: DeadPeerDetector.Configuration.ProbeFlavour = scenario.ikev1
            ? .ikev1(firstSequence: DeadPeerDetector.Configuration.randomFirstSequence(using: &random)) : .ikev2
        var configuration = scenario.detector
        configuration.flavour = flavour
        let sa = nextSA
        nextSA += 1
        sas[sa] = SecurityAssociation(peer: id, detector: DeadPeerDetector(configuration: configuration, establishedAt: now),
                                      certainProof: now, latestDelivery: now)
        rearm(sa)
    }

    private mutating func rearm(_ sa: Int) {
        guard let wake = sas[sa]?.detector.nextWakeup, wake != sas[sa]!.armed else { return }
        sas[sa]!.armed = wake
        queue.push(.detectorTimer(sa: sa), at: max(wake, now))
    }

    private mutating func detect(_ sa: Int, _ event: DeadPeerDetector.Event) {
        guard var record = sas[sa] else { return }
        let action = record.detector.handle(event, now: now)
        sas[sa] = record
        switch action {
        case nil:
            break
        case .sendProbe(let sequence, let attempt)?:
            probes += 1
            probeLog.append((now, record.peer, attempt))
            let configuration = scenario.detector
            if configuration.mode == .onDemand, record.lastOutbound.map({ $0 > record.certainProof }) != true {
                fail("on-demand probe with no outbound traffic since the last proof of life at \(record.certainProof)")
            }
            record.lastSentSequence = sequence
            sas[sa] = record
            if roundTrip(record.peer) {
                queue.push(.probeAck(sa: sa, sequence: sequence), at: now + peer(record.peer).delay * 2)
            }
        case .peerDead(let death)?:
            deaths.append((now, record.peer))
            checkDetectionBounds(record, death)
            if coordinator.activePeer == record.peer, coordinator.negotiatingPeer == nil {
                let index = list.firstIndex(of: record.peer)!
                expectedNext = list[(index + 1) % list.count]
            }
            coordinate(.peerDead(record.peer))
            // A peer that died soon after it came up ends its cycle when it was the last untried: back-off, and the
            // next cycle starts from the preferred (or first) peer.
            if case .backingOff = coordinator.state { expectedNext = nil }
        }
        rearm(sa)
    }

    private mutating func checkDetectionBounds(_ record: SecurityAssociation, _ death: DeadPeerDetector.Death) {
        let configuration = scenario.detector
        let silence = configuration.interval + configuration.runLength
        if now - record.certainProof < silence {
            fail("declared dead \(now - record.certainProof) after a certain proof of life; the bound is \(silence)")
        }
        let model = peer(record.peer)
        let rtt = model.delay * 2
        // The run's origin cannot be later than this (see DeadPeerDetector's schedule).
        var latestOrigin = record.latestDelivery + configuration.interval
        if configuration.mode == .onDemand {
            if let firstOutbound = record.outbound.first(where: { $0 > record.latestDelivery }) {
                latestOrigin = max(latestOrigin, firstOutbound)
            }
        } else if !model.reachable(at: now), let stopped = model.stopsAnswering(after: record.latestDelivery - model.delay) {
            let bound = stopped + configuration.interval + configuration.runLength + rtt
            if now > bound { fail("declared dead at \(now), later than \(bound) (peer stopped answering at \(stopped))") }
        }
        if now > latestOrigin + configuration.runLength {
            fail("declared dead at \(now), later than \(latestOrigin + configuration.runLength)")
        }
    }

    /// With no loss, no rejection and a stable list, an entry without an active peer reaches a peer that has been
    /// reachable all along within two cycles and one backoff (never stuck on one address).
    private mutating func checkLiveness() {
        let configuration = scenario.coordinator
        guard configuration.deadPeerAction == .restart, configuration.idleTime == nil, scenario.autoStart,
              scenario.operatorCommands.isEmpty,
              scenario.peers.allSatisfy({ $0.loss == 0 && !$0.rejects }) else { return }
        let window = (configuration.attemptTimeout + .seconds(1)) * (2 * list.count) + configuration.backoff.maximum
            + .seconds(1)
        guard now - lastListUpdate > window, now - lastActive > window else { return }
        let stable = list.contains { id in
            peer(id).unreachable.allSatisfy { $0.upperBound <= now - window || $0.lowerBound > now }
        }
        if stable, coordinator.activePeer == nil {
            fail("a listed peer was reachable for \(window) but the entry is \(coordinator.state)")
        }
    }

    private mutating func fail(_ message: String) {
        violations.append("seed \(scenario.seed) at \(now): \(message)")
    }

    /// The run as text, for a failing seed's report.
    func narrative(last count: Int = 60) -> String {
        var lines = ["list \(scenario.coordinator.peers) preferred \(String(describing: scenario.coordinator.preferred)) "
            + "\(scenario.coordinator.deadPeerAction) timeout \(scenario.coordinator.attemptTimeout) "
            + "backoff \(scenario.coordinator.backoff.initial)...\(scenario.coordinator.backoff.maximum) "
            + "dpd \(scenario.detector.mode) \(scenario.detector.interval)/\(scenario.detector.retry)x\(scenario.detector.retries)"]
        for (id, model) in scenario.peers.enumerated() {
            lines.append("peer \(id): delay \(model.delay) loss \(model.loss) rejects \(model.rejects) down \(model.unreachable)")
        }
        lines += notices.suffix(count).map { "\($0.at) \($0.kind) \(String(describing: $0.peer)) \($0.reason)" }
        return lines.joined(separator: "\n")
    }
}
