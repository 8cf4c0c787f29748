import Testing
import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilIKEv1
import VigilWire

/// Issue 13 in the IKEv1 engine: only the peer's authenticated, fresh word is proof of life; unauthenticated input
/// changes no negotiation; no orphaned or lingering ISAKMP SA; half-open state per source; NAT moves reported.
@Suite struct HardeningLockstepTests {
    static func established(pfs: DHGroup? = .modp2048, force: Bool = false) -> Lockstep {
        var net = Lockstep(west: Fixture.westEndpoint(pfs: pfs, force: force), east: Fixture.eastEndpoint(pfs: pfs))
        net.west(.initiate(connection: "SITE/10", peer: Fixture.east))
        net.settle()
        return net
    }

    // MARK: - Proof of life (defect 1)

    @Test func ourOwnRUThereReflectedBackIsNeitherLifeNorAnswered() throws {
        var net = Self.established()
        let westSA = try #require(net.west.ikeSAs.first).id
        // INFORMATIONAL E{ HASH(1), N(R-U-THERE seq 100) } --> reflected by the dead peer's address back to west
        net.west(.sendDPDProbe(westSA, sequence: 100))
        let probeTaken = net.intercept()
        let probe = try #require(probeTaken)
        let reflected = net.inject(probe, from: probe.to, to: probe.from)
        #expect(reflected.proofsOfLife == 0, "our own probe counted as the peer's proof of life")
        #expect(reflected.sends == 0, "our own probe answered with an ACK")
        #expect(reflected.acknowledged.isEmpty)
        #expect(net.west.counters[.reflectedDropped] == 1)
        // A reflector loops forever: still nothing, no ACK storm.
        for _ in 0..<10 { #expect(net.inject(probe, from: probe.to, to: probe.from).sends == 0) }
        #expect(net.wire.isEmpty)
    }

    @Test func ourOwnRUThereReplayedLongAfterIsNoProofOfLife() throws {
        var net = Self.established(pfs: nil)
        let westSA = try #require(net.west.ikeSAs.first).id
        // R-U-THERE seq 1000 --> captured, then so many more probes that its message ID is long forgotten.
        net.west(.sendDPDProbe(westSA, sequence: 1000))
        let probeTaken = net.intercept()
        let probe = try #require(probeTaken)
        for sequence: UInt32 in 1001...5200 { net.west(.sendDPDProbe(westSA, sequence: sequence)) }
        net.wire.removeAll()
        let replayed = net.inject(probe, from: probe.to, to: probe.from)
        #expect(replayed.proofsOfLife == 0, "our own old probe counted as the peer's proof of life")
        #expect(net.west.counters[.reflectedDropped] == 1)
    }

    @Test func aReplayedRUThereIsAnsweredButIsNoProofOfLife() throws {
        var net = Self.established()
        let eastSA = try #require(net.east.ikeSAs.first).id
        // <-- INFORMATIONAL E{ HASH(1), N(R-U-THERE seq 7) }
        net.east(.sendDPDProbe(eastSA, sequence: 7))
        let probeTaken = net.intercept()
        let probe = try #require(probeTaken)
        let first = net.inject(probe)
        #expect(first.proofsOfLife == 1)
        #expect(first.sends == 1)
        // <-- the same R-U-THERE again (replayed): sequence not above the last, ACKed but no proof of life
        let replay = net.inject(probe)
        #expect(replay.proofsOfLife == 0)
        #expect(replay.sends == 1)
        #expect(net.west.counters[.dpdStaleSequence] == 1)
        // <-- a fresh R-U-THERE seq 8: life again.
        net.wire.removeAll()
        net.east(.sendDPDProbe(eastSA, sequence: 8))
        let freshTaken = net.intercept()
        let fresh = try #require(freshTaken)
        #expect(net.inject(fresh).proofsOfLife == 1)
    }

    @Test func onlyTheLastProbesWaitForAnACK() throws {
        var net = Self.established(pfs: nil)
        let westSA = try #require(net.west.ikeSAs.first).id
        // 40 R-U-THEREs --> all answered, but west only remembers the last 32 as outstanding.
        for sequence: UInt32 in 1...40 { net.west(.sendDPDProbe(westSA, sequence: sequence)) }
        net.settle(limit: 200)
        #expect(net.westActions.acknowledged == Array(9...40))
        #expect(net.west.counters[.dpdAckMismatch] == 8)
    }

    @Test func aReplayedQM1IsDroppedNotAnswered() throws {
        var net = Lockstep(west: Fixture.westEndpoint(pfs: nil), east: Fixture.eastEndpoint(pfs: nil))
        net.west(.initiate(connection: "SITE/10", peer: Fixture.east))
        for _ in 0..<6 { net.deliver() }   // MM1...MM6
        // QM1 E{ HASH(1), SA, Ni, IDci, IDcr } --> (captured by an attacker)
        let qm1 = try #require(net.wire.first)
        net.settle()
        #expect(net.east.childSAs.count == 1)
        // More Quick Modes than the old 16-entry memory held.
        for _ in 0..<20 {
            let child = try #require(net.west.childSAs.first).id
            net.west(.rekeyChildSA(child))
            net.settle()
        }
        #expect(net.east.childSAs.count == 1)
        let replayed = net.inject(qm1)
        #expect(replayed.proofsOfLife == 0, "a replayed QM1 counted as proof of life")
        #expect(replayed.sends == 0, "a replayed QM1 started a new Quick Mode")
        #expect(net.east.counters[.replayedDropped] == 1)
        // The same QM1 reflected back to west, which sent it: its own message ID.
        let reflected = net.inject(qm1, from: qm1.to, to: qm1.from)
        #expect(reflected.proofsOfLife == 0 && reflected.sends == 0 && reflected.failures.isEmpty)
        #expect(net.west.counters[.reflectedDropped] == 1)
    }

    @Test func aQM2ThatDoesNotVerifyDoesNotEndOurQuickMode() throws {
        var net = Self.established()
        let child = try #require(net.west.childSAs.first).id
        net.west(.rekeyChildSA(child))
        // QM1 -->   <-- QM2, first damaged inside its KE payload (HASH(2) fails), then the real one.
        net.deliver()
        let qm2Taken = net.intercept()
        let qm2 = try #require(qm2Taken)
        var forged = qm2
        forged.bytes[ISAKMP.headerLength + 16 * 12] ^= 0x55
        let refused = net.inject(forged)
        #expect(refused.failures.isEmpty, "a QM2 anyone could have sent ended our Quick Mode")
        #expect(refused.proofsOfLife == 0)
        #expect(net.west.counters[.authenticationFailures] == 1)
        net.inject(qm2)
        net.settle()
        #expect(net.westActions.contains { if case .childSARekeyed(old: child, _) = $0 { true } else { false } })
        #expect(net.westActions.failures.isEmpty)
    }

    @Test func anUnconfirmedResponderQM2DoesNotDeclareAHealthyPeerUnreachable() throws {
        var net = Self.established()
        let child = try #require(net.west.childSAs.first).id
        net.west(.rekeyChildSA(child))
        // QM1 -->   <-- QM2   QM3 --> lost
        net.deliver()
        net.deliver()
        #expect(net.intercept() != nil)
        // East retransmits QM2 until its schedule runs out; west answers each with QM3, which is lost too.
        net.advance(to: .seconds(60), deliverSends: false)
        #expect(net.eastActions.unreachable == 0, "a responder's unconfirmed QM2 declared the peer unreachable")
        #expect(net.east.counters[.quickMode3Missing] == 1)
        #expect(net.eastActions.failures.isEmpty)
        #expect(!net.east.ikeSAs.isEmpty)
    }

    @Test func dpdProbesGoOutWhileAQuickModeIsInFlight() throws {
        var net = Self.established()
        let westSA = try #require(net.west.ikeSAs.first).id
        let child = try #require(net.west.childSAs.first).id
        let rekey = net.west(.rekeyChildSA(child))
        // The Quick Mode does not silence the detector ("declared dead after 0 probes").
        #expect(!rekey.contains { if case .exchangeInFlight = $0 { true } else { false } })
        let qm1Taken = net.intercept()
        let qm1 = try #require(qm1Taken)
        // INFORMATIONAL E{ HASH(1), N(R-U-THERE seq 5) } --> while QM1 is unanswered
        let probe = net.west(.sendDPDProbe(westSA, sequence: 5))
        #expect(probe.sends == 1)
        net.settle()
        #expect(net.westActions.acknowledged == [5])
        net.inject(qm1)
        net.settle()
        #expect(net.westActions.contains { if case .childSARekeyed = $0 { true } else { false } })
    }

    // MARK: - Unauthenticated input (defect 4)

    @Test func aPlaintextNotifyDoesNotEndMainMode() throws {
        var net = Lockstep(west: Fixture.westEndpoint(), east: Fixture.eastEndpoint())
        net.west(.initiate(connection: "SITE/10", peer: Fixture.east))
        let mm1 = try #require(net.wire.first)
        let cookie = try ISAKMP.Message.decodeHeader(mm1.bytes).header.initiatorCookie
        // <-- INFORMATIONAL { N(NO_PROPOSAL_CHOSEN) } in the clear, spoofed from east's address
        let spoof = ISAKMP.Message(header: .init(initiatorCookie: cookie, responderCookie: 0, nextPayload: 0, exchangeType: .informational,
                                                 flags: [], messageID: 0),
                                   payloads: [.notification(.init(protocolID: .isakmp, notifyType: ISAKMP.NotifyType.noProposalChosen, spi: []))])
        let spoofed = net.west(.datagramReceived(bytes: spoof.encode(), from: mm1.to, to: mm1.from))
        #expect(spoofed.failures.isEmpty)
        #expect(net.west.ikeSAs.count == 1)
        #expect(net.west.counters[.unauthenticatedDropped] == 1)
        net.settle()
        #expect(net.west.childSAs.count == 1 && net.east.childSAs.count == 1)
        #expect(net.westActions.failures.isEmpty)
    }

    @Test func aForgedMM6IsAHintNotTheEnd() throws {
        var net = Lockstep(west: Fixture.westEndpoint(), east: Fixture.eastEndpoint())
        net.west(.initiate(connection: "SITE/10", peer: Fixture.east))
        for _ in 0..<5 { net.deliver() }   // MM1...MM5
        // <-- MM6 E{ IDir, HASH_R }, first forged (its first block damaged), then the real one.
        let mm6Taken = net.intercept()
        let mm6 = try #require(mm6Taken)
        var forged = mm6
        forged.bytes[ISAKMP.headerLength] ^= 0x55
        let refused = net.inject(forged)
        #expect(refused.failures.isEmpty)
        #expect(refused.ikeEstablished.isEmpty)
        #expect(net.west.ikeSAs.count == 1)
        #expect(net.inject(mm6).ikeEstablished.count == 1, "the forgery moved the IV chain or ended Main Mode")
        net.settle()
        #expect(net.west.childSAs.count == 1 && net.east.childSAs.count == 1)
    }

    @Test func aRefusedMM1FromASpoofedSourceIsNoFailureAndSparesOurOwnAttempt() throws {
        var net = Lockstep(west: Fixture.westEndpoint(), east: Fixture.eastEndpoint())
        // East initiates to west ...
        net.east(.initiate(connection: "SITE/10", peer: Fixture.west))
        // ... while an MM1 offering nothing east allows arrives "from west".
        var spoofer = Fixture.westEndpoint(ike: "aes128-sha1-ecp384")
        var random = SeededGenerator(seed: 99)
        let spoof = spoofer.handle(.initiate(connection: "SITE/10", peer: Fixture.east), now: .zero, random: &random)
        for case .send(let bytes, let from, let to) in spoof {
            let refused = net.east(.datagramReceived(bytes: bytes, from: from, to: to))
            #expect(refused.failures.isEmpty, "a spoofable MM1 was reported as the peer's failure")
        }
        #expect(net.east.counters[.unauthenticatedRequestsRefused] == 1)
        net.settle()
        #expect(net.east.childSAs.count == 1 && net.west.childSAs.count == 1)
        #expect(net.eastActions.failures.isEmpty)
    }

    // MARK: - Orphaned and lingering ISAKMP SAs (defect 5)

    @Test func anISAKMPSALeftWithoutIPsecSAAfterARefusedQuickModeIsDeleted() throws {
        let narrow = Fixture.connection(local: Fixture.west, remote: Fixture.east, localNet: Fixture.westNet,
                                        remoteNet: try IPPrefix.parse("10.9.0.0/24"))
        var net = Lockstep(west: IKEv1Endpoint(configuration: .init(connections: [narrow])), east: Fixture.eastEndpoint())
        net.west(.initiate(connection: "SITE/10", peer: Fixture.east))
        net.settle()
        #expect(net.westActions.failures.map(\.code) == [.invalidIDInformation])
        // INFORMATIONAL E{ HASH(1), D(ISAKMP) } --> : neither side keeps a half-dead ISAKMP SA.
        #expect(net.west.ikeSAs.isEmpty && net.east.ikeSAs.isEmpty)
        #expect(net.westActions.deletedIKESAs.count == 1)
    }

    @Test func anISAKMPSAWhoseQuickModeGoesUnansweredIsDeleted() throws {
        var net = Lockstep(west: Fixture.westEndpoint(), east: Fixture.eastEndpoint())
        net.west(.initiate(connection: "SITE/10", peer: Fixture.east))
        for _ in 0..<6 { net.deliver() }   // MM1...MM6
        net.wire.removeAll()                // QM1 lost, and every retransmission too
        net.advance(to: .seconds(30), deliverSends: false)
        #expect(net.westActions.unreachable == 1)
        #expect(net.westActions.failures.map(\.code) == [.timeout])
        #expect(net.west.ikeSAs.isEmpty)
        #expect(net.westActions.deletedIKESAs.map(\.1) == [.local("Quick Mode unanswered")])
    }

    @Test func aReauthenticationRetiresTheOldISAKMPSAAtOnce() throws {
        var net = Self.established()
        let eastOld = try #require(net.east.ikeSAs.first).id
        let westOld = try #require(net.west.ikeSAs.first).id
        net.west(.rekeyIKESA(westOld))
        // MM1 -->  <-- MM2  MM3 -->  <-- MM4  MM5 (no INITIAL-CONTACT) -->
        for _ in 0..<5 { net.deliver() }
        #expect(net.east.ikeSAs.count == 1, "the replaced ISAKMP SA lingers: \(net.east.ikeSAs.map(\.id))")
        #expect(net.east.ikeSAs.first?.id != eastOld)
        #expect(net.east.childSAs.first?.ikeSA == net.east.ikeSAs.first?.id)
        let deleted = net.eastActions.deletedIKESAs
        #expect(deleted.map(\.0.id) == [eastOld])
        #expect(deleted.allSatisfy { !$0.1.endedByPeer }, "the daemon would read a peer's doing into \(deleted.map(\.1))")
        net.settle()
        #expect(net.west.ikeSAs.count == 1 && net.east.ikeSAs.count == 1)
        #expect(net.west.childSAs.count == 1 && net.east.childSAs.count == 1)
    }

    /// Both ends rekey the same ISAKMP SA at once; whichever new one has the lower initiator cookie (the seed
    /// decides) survives on both sides, and nothing is left orphaned or lost.
    @Test(arguments: 1...12 as ClosedRange<UInt64>)
    func simultaneousPhase1RekeysLeaveNoOrphanedISAKMPSA(seed: UInt64) throws {
        var net = Self.established(pfs: nil)
        net.random = SeededGenerator(seed: seed)
        let westOld = try #require(net.west.ikeSAs.first).id
        let eastOld = try #require(net.east.ikeSAs.first).id
        // Both rekey at once: MM1 --> and <-- MM1, each side a responder to the other's Main Mode as well.
        net.west(.rekeyIKESA(westOld))
        if seed % 2 == 0 { net.deliver() }   // half the runs let west's MM1 arrive first
        net.east(.rekeyIKESA(eastOld))
        net.settle(limit: 200)
        let west = net.west.ikeSAs.filter { $0.state == .established }
        let east = net.east.ikeSAs.filter { $0.state == .established }
        #expect(west.count == 1 && east.count == 1, "west \(west.map(\.id)) east \(east.map(\.id))\n\(net.westActions.logText)\n\(net.eastActions.logText)")
        #expect(Set(west.map(\.initiatorCookie)) == Set(east.map(\.initiatorCookie)))
        // Both ends rekeyed the IPsec SA too (IKEv1 has no Phase 2 collision rule): one or two pairs, the same on both.
        #expect((1...2).contains(net.west.childSAs.count), "\(net.west.childSAs)")
        #expect(Set(net.west.childSAs.map(\.inboundSPI)) == Set(net.east.childSAs.map(\.outboundSPI)))
        #expect(Set(net.west.childSAs.map(\.outboundSPI)) == Set(net.east.childSAs.map(\.inboundSPI)))
        #expect(net.west.childSAs.allSatisfy { $0.ikeSA == west.first?.id } && net.east.childSAs.allSatisfy { $0.ikeSA == east.first?.id })
    }

    // MARK: - Half-open state (defect 7)

    @Test func oneSourceFloodingMM1sEvictsOnlyItsOwnHalfOpenSAs() throws {
        let third = IPAddress("192.0.2.3")!
        var eastConnection = Fixture.connection(local: Fixture.east, remote: Fixture.west, localNet: Fixture.eastNet, remoteNet: Fixture.westNet)
        eastConnection.peers.append(.init(address: third, identity: .address(third), preSharedKey: SecureBytes(Array("lab-secret-123".utf8))))
        var east = IKEv1Endpoint(configuration: .init(connections: [eastConnection], maximumHalfOpen: 10, maximumHalfOpenPerSource: 2))
        var random = SeededGenerator(seed: 5)
        func mm1(from local: IPAddress) {
            // MM1 { SA, V, V } --> from an initiator that never continues
            var initiator = IKEv1Endpoint(configuration: .init(connections: [
                Fixture.connection(local: local, remote: Fixture.east, localNet: Fixture.westNet, remoteNet: Fixture.eastNet)]))
            for case .send(let bytes, let from, let to) in initiator.handle(.initiate(connection: "SITE/10", peer: Fixture.east), now: .zero, random: &random) {
                _ = east.handle(.datagramReceived(bytes: bytes, from: from, to: to), now: .zero, random: &random)
            }
        }
        for _ in 0..<5 { mm1(from: Fixture.west) }
        mm1(from: third)
        for _ in 0..<20 { mm1(from: Fixture.west) }
        let bySource = Dictionary(grouping: east.ikeSAs, by: \.remoteEndpoint.address).mapValues(\.count)
        #expect(bySource[Fixture.west] == 2)
        #expect(bySource[third] == 1, "another source's half-open SA was evicted")
        #expect(east.counters[.halfOpenEvicted] == 23)
        #expect(east.counters[.halfOpenLimitDropped] == nil)
    }

    /// A flood of MM1s spoofed from one listed address (fresh cookies each): the state stays at that source's limit,
    /// and a genuine initiator from the same address still gets through once the flood pauses.
    @Test func aFloodOfSpoofedMM1sKeepsStateBounded() throws {
        var east = Fixture.eastEndpoint()
        var random = SeededGenerator(seed: 11)
        var template = Fixture.westEndpoint()
        let first = template.handle(.initiate(connection: "SITE/10", peer: Fixture.east), now: .zero, random: &random)
        guard case .send(let bytes, let from, let to)? = first.first(where: { if case .send = $0 { true } else { false } }) else {
            Issue.record("no MM1")
            return
        }
        let flood = 5_000
        let clock = ContinuousClock()
        let started = clock.now
        for index in 0..<flood {
            var spoofed = bytes
            for shift in 0..<8 { spoofed[shift] = UInt8(truncatingIfNeeded: (index + 1) >> (shift * 8)) }
            _ = east.handle(.datagramReceived(bytes: spoofed, from: from, to: to), now: .zero, random: &random)
        }
        let elapsed = clock.now - started
        print("IKEv1 engine: \(flood) spoofed MM1s from one address in \(elapsed), "
              + "\(Int(Double(flood) / (Double(elapsed.components.attoseconds) / 1e18 + Double(elapsed.components.seconds)))) per second")
        #expect(east.ikeSAs.count == IKEv1Endpoint.Configuration.defaultMaximumHalfOpenPerSource)
        #expect(east.counters[.halfOpenEvicted] == UInt64(flood - IKEv1Endpoint.Configuration.defaultMaximumHalfOpenPerSource))
        // The genuine west still completes Main Mode and Quick Mode with east.
        var net = Lockstep(west: Fixture.westEndpoint(), east: east)
        net.west(.initiate(connection: "SITE/10", peer: Fixture.east))
        net.settle()
        #expect(net.west.childSAs.count == 1 && net.east.childSAs.count == 1)
    }

    @Test func halfOpenLimitsAreConfigurationWithNamedDefaults() {
        let configuration = IKEv1Endpoint.Configuration(connections: [])
        #expect(configuration.halfOpenTimeout == IKEv1Endpoint.Configuration.defaultHalfOpenTimeout)
        #expect(configuration.maximumHalfOpen == IKEv1Endpoint.Configuration.defaultMaximumHalfOpen)
        #expect(configuration.maximumHalfOpenPerSource == IKEv1Endpoint.Configuration.defaultMaximumHalfOpenPerSource)
        #expect(configuration.maximumHalfOpenPerSource < configuration.maximumHalfOpen)
    }

    // MARK: - NAT (defect 2)

    @Test func aPeerBehindNATThatMovesIsFollowedAndReported() throws {
        // West fakes NAT (a false NAT-D for itself), so east sees it behind one.
        var net = Self.established(force: true)
        let eastSA = try #require(net.east.ikeSAs.first)
        let westSA = try #require(net.west.ikeSAs.first).id
        let moved = Endpoint(Fixture.west, 40_000)
        // R-U-THERE seq 1 --> from a new NAT mapping
        net.west(.sendDPDProbe(westSA, sequence: 1))
        let probeTaken = net.intercept()
        let probe = try #require(probeTaken)
        let actions = net.inject(probe, from: moved)
        let changes = actions.compactMap { if case .peerAddressChanged(let id, let old, let new) = $0 { (id, old, new) } else { nil } }
        #expect(changes.count == 1)
        #expect(changes.first?.0 == eastSA.id && changes.first?.1 == eastSA.remoteEndpoint && changes.first?.2 == moved)
        #expect(net.east.ikeSAs.first?.remoteEndpoint == moved)
        #expect(net.east.childSAs.first?.remoteEndpoint == moved)
        // <-- the ACK goes to the new mapping.
        #expect(net.wire.last?.to == moved)
        // The same R-U-THERE replayed from yet another port: not fresh, the address stays.
        let replay = net.inject(probe, from: Endpoint(Fixture.west, 40_001))
        #expect(!replay.contains { if case .peerAddressChanged = $0 { true } else { false } })
        #expect(net.east.ikeSAs.first?.remoteEndpoint == moved)
    }

    @Test func withoutNATAnMM5FromANewPortDoesNotMoveTheResponder() throws {
        var net = Lockstep(west: Fixture.westEndpoint(), east: Fixture.eastEndpoint())
        net.west(.initiate(connection: "SITE/10", peer: Fixture.east))
        for _ in 0..<4 { net.deliver() }   // MM1...MM4
        // MM5 E{ IDii, HASH_I, N(INITIAL-CONTACT) } --> arriving from another port, with no NAT detected
        let mm5Taken = net.intercept()
        let mm5 = try #require(mm5Taken)
        let actions = net.inject(mm5, from: Endpoint(Fixture.west, 40_000))
        #expect(actions.ikeEstablished.count == 1)
        #expect(net.east.ikeSAs.first?.remoteEndpoint == Endpoint(Fixture.west, 500))
        #expect(net.east.counters[.addressChangeIgnored] == 1)
        net.settle()
        #expect(net.west.childSAs.count == 1 && net.east.childSAs.count == 1)
    }

    @Test func withoutNATAnAuthenticatedMessageFromANewSourceDoesNotMoveTheSA() throws {
        var net = Self.established()
        let eastSA = try #require(net.east.ikeSAs.first)
        let westSA = try #require(net.west.ikeSAs.first).id
        net.west(.sendDPDProbe(westSA, sequence: 1))
        let probeTaken = net.intercept()
        let probe = try #require(probeTaken)
        let actions = net.inject(probe, from: Endpoint(Fixture.west, 40_000))
        #expect(!actions.contains { if case .peerAddressChanged = $0 { true } else { false } })
        #expect(net.east.ikeSAs.first?.remoteEndpoint == eastSA.remoteEndpoint)
        #expect(net.east.counters[.addressChangeIgnored] == 1)
    }
}
