import Testing
import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilWire
@testable import VigilIKEv2

extension [IKEv2Action] {
    var provesLife: Bool {
        contains { if case .authenticatedMessageReceived = $0 { true } else { false } }
            || contains { if case .livenessCheckAnswered = $0 { true } else { false } }
    }
    var addressChanges: [(IKESAID, Endpoint, Endpoint)] {
        compactMap { if case .peerAddressChanged(let id, let old, let new) = $0 { (id, old, new) } else { nil } }
    }
}

extension Datagram {
    /// What a reflector at the destination sends back: the same bytes, source and destination swapped.
    var reflected: Datagram { Datagram(bytes: bytes, from: to, to: from) }
}

/// Issue 13: only the peer's authenticated, fresh word counts; nothing unauthenticated ends a negotiation.
@Suite struct ProofOfLifeTests {
    /// Defect 1: a reflector on the peer's address sends every datagram back. Vigil's own liveness checks (both roles)
    /// and its own IKE_SA_INIT must never look like the peer's word.
    @Test func reflectedDatagramsAreNeverProofOfLife() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        let westID = try #require(lockstep.west.ikeSAs.first?.id)
        let eastID = try #require(lockstep.east.ikeSAs.first?.id)
        for round in 1...4 {
            // INFORMATIONAL { } -->  (reflected: <-- the same bytes)
            let check = try #require(lockstep.westHandles(.sendLivenessCheck(westID)).sent.first)
            let back = lockstep.westHandles(.datagramReceived(bytes: check.bytes, from: check.to, to: check.from))
            #expect(!back.provesLife, "round \(round): our own request counted as life")
            #expect(back.sent.isEmpty, "a reflection is not answered")
            // <-- INFORMATIONAL { }  (east's, reflected back to east)
            let eastCheck = try #require(lockstep.eastHandles(.sendLivenessCheck(eastID)).sent.first)
            let eastBack = lockstep.eastHandles(.datagramReceived(bytes: eastCheck.bytes, from: eastCheck.to, to: eastCheck.from))
            #expect(!eastBack.provesLife && eastBack.sent.isEmpty)
        }
        #expect(lockstep.west.counters[.reflectedMessages] == 4)
        #expect(lockstep.east.counters[.reflectedMessages] == 4)
        #expect(lockstep.west.counters[.livenessRetransmissions] == 3, "the first check is still unanswered")

        // IKE_SA_INIT { SA, KE, Ni, N, N } -->  (reflected): not a peer's request that creates a half-open SA
        var fresh = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        let initRequest = try #require(fresh.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress)).sent.first)
        let reflected = fresh.westHandles(.datagramReceived(bytes: initRequest.bytes, from: initRequest.to, to: initRequest.from))
        #expect(reflected.sent.isEmpty)
        #expect(fresh.west.ikeSAs.count == 1 && fresh.west.counters[.reflectedMessages] == 1)
    }

    /// Defect 1: a captured liveness response replayed (after it was consumed, and after a newer check went out) is
    /// no proof of life; neither is a replayed old request, answered from the cache.
    @Test func replayedResponsesAndRequestsAreNeverProofOfLife() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        let westID = try #require(lockstep.west.ikeSAs.first?.id)
        // INFORMATIONAL { } -->
        let request = try #require(lockstep.westHandles(.sendLivenessCheck(westID)).sent.first)
        let answer = lockstep.deliver(request)
        #expect(answer.provesLife)
        // <-- INFORMATIONAL { }
        let response = try #require(answer.sent.first)
        #expect(lockstep.deliver(response).provesLife)
        // <-- INFORMATIONAL { }  (replayed)
        #expect(!lockstep.deliver(response).provesLife)
        // INFORMATIONAL { } -->  (a newer check, lost)   <-- the old response replayed again
        _ = lockstep.westHandles(.sendLivenessCheck(westID))
        #expect(!lockstep.deliver(response).provesLife)
        #expect(lockstep.west.counters[.unexpectedResponses] == 2)
        // INFORMATIONAL { } -->  (the first request replayed to east): answered from the cache, no life
        let replay = lockstep.deliver(request)
        #expect(!replay.provesLife)
        #expect(replay.sent.first?.bytes == response.bytes)
    }
}

extension ProofOfLifeTests {
    /// Defect 1: flags that do not fit are dropped even when the message decrypts (sealed here with the peer's
    /// real keys): our own role's I flag, a response to nothing outstanding, a request with a stale message ID.
    @Test func misflaggedMessagesThatDecryptAreNeverProofOfLife() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        let westID = try #require(lockstep.west.ikeSAs.first?.id)
        let eastID = try #require(lockstep.east.ikeSAs.first?.id)
        let east = try #require(lockstep.east.sas[eastID])
        let protection = try #require(east.protection)
        let west = try #require(lockstep.west.sas[westID])
        func sealed(_ flags: IKEv2.Header.Flags, messageID: UInt32) -> Datagram {
            let header = IKEv2.Header(initiatorSPI: east.initiatorSPI, responderSPI: east.responderSPI, exchangeType: .informational,
                                      flags: flags, messageID: messageID)
            return Datagram(bytes: protection.seal(header: header, payloads: [], random: &lockstep.random),
                            from: Endpoint(Lockstep.eastAddress, 500), to: Endpoint(Lockstep.westAddress, 500))
        }
        // <-- INFORMATIONAL request { } claiming to come from the original initiator (west's own role)
        let ownRole = lockstep.deliver(sealed(.initiator, messageID: west.nextPeerRequestID))
        #expect(!ownRole.provesLife && ownRole.sent.isEmpty)
        #expect(lockstep.west.counters[.reflectedMessages] == 1)
        // <-- INFORMATIONAL response { } while west has nothing outstanding
        let stray = lockstep.deliver(sealed(.response, messageID: west.nextPeerRequestID))
        #expect(!stray.provesLife)
        #expect(lockstep.west.counters[.unexpectedResponses] == 1)
        // <-- INFORMATIONAL request { } with a message ID outside the window (not the next expected, not the cached one)
        let stale = lockstep.deliver(sealed([], messageID: west.nextPeerRequestID &+ 5))
        #expect(!stale.provesLife && stale.sent.isEmpty)
        #expect(lockstep.west.counters[.invalidMessageIDs] == 1)
        // <-- INFORMATIONAL request { } with the next message ID: that one is the peer's word.
        #expect(lockstep.deliver(sealed([], messageID: west.nextPeerRequestID)).provesLife)
    }
}

@Suite struct NATRebindingTests {
    /// Defect 2: without a NAT in front of the peer, an authenticated message from elsewhere does not move the SA; it
    /// is answered where it came from (§2.11) and rekeys keep the old endpoint.
    @Test func withoutNATTheAddressIsKept() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        let westID = try #require(lockstep.west.ikeSAs.first?.id)
        let original = try #require(lockstep.east.ikeSAs.first?.remoteEndpoint)
        let elsewhere = Endpoint(IPAddress("198.51.100.7")!, 31_000)
        // INFORMATIONAL { } -->  (from another address)
        var check = try #require(lockstep.westHandles(.sendLivenessCheck(westID)).sent.first)
        check.from = elsewhere
        let answer = lockstep.deliver(check)
        #expect(answer.provesLife)
        #expect(answer.addressChanges.isEmpty)
        // <-- INFORMATIONAL { }  (to where the request came from)
        #expect(answer.sent.first?.to == elsewhere)
        #expect(lockstep.east.ikeSAs.first?.remoteEndpoint == original)
        #expect(lockstep.east.counters[.addressChangesRefused] == 1)
        // <-- CREATE_CHILD_SA { N(REKEY_SA), SA, Ni, TSi, TSr }: still to the original endpoint
        let child = try #require(lockstep.east.childSAs.first)
        let rekey = lockstep.eastHandles(.rekeyChildSA(child.id))
        #expect(rekey.sent.first?.to == original)
        let all = lockstep.pump(rekey)
        #expect(all.rekeyed.count == 2)
        #expect(lockstep.east.childSAs.map(\.remoteEndpoint) == [original])
    }

    /// Defect 2: behind a NAT, a new mapping moves the SA once (a planned change the daemon performs), the Child
    /// SAs handed out afterwards carry the new endpoint, and a replay from the old mapping moves nothing back.
    @Test func behindNATTheSAMovesAndRekeysCarryTheNewEndpoint() throws {
        // West fakes a NAT (random NAT_DETECTION_SOURCE_IP): east sees the peer behind one.
        var lockstep = Lockstep(west: Fixtures.connection(west: true, forceUDP: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        let westID = try #require(lockstep.west.ikeSAs.first?.id)
        let eastSA = try #require(lockstep.east.ikeSAs.first)
        #expect(eastSA.remoteBehindNAT)
        let old = eastSA.remoteEndpoint
        let mapped = Endpoint(IPAddress("198.51.100.7")!, 31_000)
        // INFORMATIONAL { } -->  (through the new NAT mapping)
        let first = try #require(lockstep.westHandles(.sendLivenessCheck(westID)).sent.first)
        var moved = first
        moved.from = mapped
        let answer = lockstep.deliver(moved)
        let changes = answer.addressChanges
        #expect(changes.count == 1)
        #expect(changes.first?.0 == eastSA.id && changes.first?.1 == old && changes.first?.2 == mapped)
        #expect(answer.sent.first?.to == mapped)
        #expect(lockstep.east.ikeSAs.first?.remoteEndpoint == mapped)
        #expect(lockstep.east.childSAs.map(\.remoteEndpoint) == [mapped])
        // The captured request replayed from the old mapping: answered from the cache, moves nothing.
        let replay = lockstep.deliver(first)
        #expect(replay.addressChanges.isEmpty && !replay.provesLife)
        #expect(lockstep.east.ikeSAs.first?.remoteEndpoint == mapped)
        // <-- CREATE_CHILD_SA { N(REKEY_SA), ... } to the new mapping; the new Child SA carries it.
        let child = try #require(lockstep.east.childSAs.first)
        let rekey = lockstep.eastHandles(.rekeyChildSA(child.id))
        #expect(rekey.sent.first?.to == mapped)
        // (the NAT maps west's answers to `mapped` again)
        var all = rekey
        var pending = rekey.sent
        while !pending.isEmpty {
            var next = pending.removeFirst()
            if next.to.address == Lockstep.eastAddress { next.from = mapped }
            let produced = next.to.address == Lockstep.eastAddress
                ? lockstep.eastHandles(.datagramReceived(bytes: next.bytes, from: next.from, to: next.to))
                : lockstep.westHandles(.datagramReceived(bytes: next.bytes, from: next.from, to: next.to))
            all += produced
            pending += produced.sent
        }
        let eastRekeyed = try #require(all.rekeyed.first { $0.new.ikeSA == eastSA.id })
        #expect(eastRekeyed.new.remoteEndpoint == mapped)
        #expect(all.addressChanges.isEmpty, "the same mapping again is no move")
        #expect(lockstep.east.childSAs.map(\.remoteEndpoint) == [mapped])
    }
}

@Suite struct TrafficSelectorLimitTests {
    static func selector(_ text: String, protocol ipProtocol: UInt8 = 0) throws -> IKEv2.TrafficSelector {
        let prefix = try IPPrefix.parse(text)
        return IKEv2.TrafficSelector(ipProtocol: ipProtocol, startAddress: prefix.first, endAddress: prefix.last)
    }

    /// Defect 3: 300 proposed selectors (more than one TS payload can carry) narrow to a capped, duplicate-free list.
    @Test func threeHundredProposedSelectorsNarrowToABoundedList() throws {
        var proposed: [IKEv2.TrafficSelector] = []
        for index in 0..<300 { proposed.append(try Self.selector("10.1.\(index % 256).\(index / 256 * 128)/25")) }
        proposed += proposed.prefix(20)  // duplicates
        let narrowed = TrafficSelectorNarrowing.narrow(proposed, to: [try IPPrefix.parse("10.1.0.0/16")])
        #expect(narrowed.count == IKEv2Tunables.maximumNarrowedTrafficSelectors)
        #expect(Set(narrowed).count == narrowed.count)
        #expect(IKEv2Tunables.maximumNarrowedTrafficSelectors <= IKEv2Tunables.maximumTrafficSelectorsOnWire)
    }

    @Test func duplicateAndSubsumedSelectorsAreDropped() throws {
        let proposed = [try Self.selector("10.1.0.128/25"), try Self.selector("10.1.0.0/24"), try Self.selector("10.1.0.0/24"),
                        try Self.selector("10.1.0.0/26", protocol: 6), try Self.selector("10.1.1.0/24", protocol: 17)]
        let narrowed = TrafficSelectorNarrowing.narrow(proposed, to: [try IPPrefix.parse("10.1.0.0/16")])
        #expect(narrowed == [try Self.selector("10.1.0.0/24"), try Self.selector("10.1.1.0/24", protocol: 17)])
    }

    /// Defect 3, end to end: a peer proposes 255 selectors (the most a TS payload holds, §3.13), each narrowing to
    /// two of ours (510 before the fix, and `UInt8(510)` trapped while the IKE_AUTH answer was built).
    @Test func aPeerProposingTheMostSelectorsGetsABoundedAnswer() throws {
        var west = Fixtures.connection(west: true)
        west.localTrafficSelectors = try (0..<255).map { try IPPrefix.parse("10.\(1 + $0 / 128).\($0 % 128 * 2).0/23") }
        west.remoteTrafficSelectors = [try IPPrefix.parse("10.200.0.0/24")]
        var east = Fixtures.connection(west: false)
        east.localTrafficSelectors = [try IPPrefix.parse("10.200.0.0/24")]
        east.remoteTrafficSelectors = try west.localTrafficSelectors.flatMap { prefix in
            [IPPrefix(address: prefix.first, length: 24), IPPrefix(address: try #require(IPAddress(bytes: prefix.last.bytes)), length: 24)]
        }
        var lockstep = Lockstep(west: west, east: east)
        let (westActions, eastActions) = try LockstepTests.establish(&lockstep)
        let eastChild = try #require(eastActions.established.first, "\(eastActions.logText)")
        #expect(eastChild.remoteTrafficSelectors.count == IKEv2Tunables.maximumNarrowedTrafficSelectors)
        let westChild = try #require(westActions.established.first, "\(westActions.logText)")
        #expect(westChild.localTrafficSelectors == eastChild.remoteTrafficSelectors)
    }
}

@Suite struct UnauthenticatedInputTests {
    static func initResponse(to request: Datagram, _ notify: IKEv2.Notify) throws -> Datagram {
        let header = try IKEv2.Message.parse(request.bytes).header
        let message = IKEv2.Message(
            header: IKEv2.Header(initiatorSPI: header.initiatorSPI, responderSPI: 0, exchangeType: .ikeSAInit, flags: .response, messageID: 0),
            payloads: [.notify(notify)])
        return Datagram(bytes: message.serialize(), from: request.to, to: request.from)
    }

    /// Defect 4: a forged NO_PROPOSAL_CHOSEN ends nothing; the real answer that follows establishes the SA.
    @Test func aForgedErrorNotifyDoesNotEndTheNegotiation() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        let start = lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress))
        let request = try #require(start.sent.first)
        // <-- IKE_SA_INIT { N(NO_PROPOSAL_CHOSEN) }  (forged)
        let forged = lockstep.deliver(try Self.initResponse(to: request, IKEv2.Notify(type: .noProposalChosen)))
        #expect(forged.failures.isEmpty && forged.sent.isEmpty)
        #expect(lockstep.west.counters[.unauthenticatedNotifies] == 1)
        // IKE_SA_INIT -->  <-- IKE_SA_INIT  IKE_AUTH -->  <-- IKE_AUTH
        let all = lockstep.pump([.send(bytes: request.bytes, from: request.from, to: request.to)])
        #expect(all.established.count == 2, "\(all.logText)")
        #expect(all.failures.isEmpty)
    }

    /// Defect 4: a spoofed IKE_SA_INIT request from the peer's address that matches no proposal is refused and
    /// counted as junk; our own attempt with that peer goes on, and no failure is reported for the peer.
    @Test func aSpoofedRequestFromThePeerNeverAbortsOurAttempt() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        let start = lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress))
        // <-- IKE_SA_INIT { SA(aes128-sha1-modp2048), KE, Ni, N, N }  (spoofed from east's address)
        var spoofer = IKEv2Endpoint(configuration: .init(connections: [Fixtures.connection(west: false, ike: "aes128-sha1-modp2048")]))
        var random = SeededGenerator(seed: 99)
        var connection = Fixtures.connection(west: false, ike: "aes128-sha1-modp2048")
        connection.name = "SPOOF"
        spoofer.configuration.connections = [connection]
        let spoofed = try #require(spoofer.handle(.initiate(connection: "SPOOF", peer: Lockstep.westAddress), now: .zero, random: &random).sent.first)
        let refusal = lockstep.deliver(spoofed)
        // --> IKE_SA_INIT { N(NO_PROPOSAL_CHOSEN) }  (to the spoofed source)
        #expect(refusal.failures.isEmpty)
        #expect(refusal.logText.contains("no common IKE proposal"))
        #expect(lockstep.west.counters[.unauthenticatedRefusals] == 1)
        #expect(lockstep.west.ikeSAs.count == 1)
        let all = lockstep.pump(start)
        #expect(all.established.count == 2, "\(all.logText)")
    }

    /// Defect 4: INVALID_KE_PAYLOAD changes the group once, to one we offered; COOKIE demands are followed a bounded
    /// number of times; the rest are ignored (still waiting on the retransmission schedule).
    @Test func invalidKEOnceAndCookiesBounded() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true, ike: "aes256-sha256-x25519-modp2048"), east: Fixtures.connection(west: false))
        let start = lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress))
        var request = try #require(start.sent.first)
        // <-- IKE_SA_INIT { N(INVALID_KE_PAYLOAD(modp2048)) }
        let retry = lockstep.deliver(try Self.initResponse(to: request, IKEv2.Notify(type: .invalidKEPayload, data: [0, 14])))
        request = try #require(retry.sent.first)
        // <-- IKE_SA_INIT { N(INVALID_KE_PAYLOAD(x25519)) }  (not followed: the group changed once already)
        let second = lockstep.deliver(try Self.initResponse(to: request, IKEv2.Notify(type: .invalidKEPayload, data: [0, 31])))
        #expect(second.sent.isEmpty && second.failures.isEmpty)
        // <-- IKE_SA_INIT { N(COOKIE) } x 5 with different cookies: followed 3 times
        var followed = 0
        for index in 0..<5 {
            let demand = lockstep.deliver(try Self.initResponse(to: request, IKEv2.Notify(type: .cookie, data: [UInt8](repeating: UInt8(index), count: 16))))
            if let next = demand.sent.first {
                followed += 1
                request = next
            }
        }
        #expect(followed == IKEv2Tunables.maximumCookieRetries)
        #expect(lockstep.west.ikeSAs.count == 1)
        #expect(lockstep.west.counters[.unauthenticatedNotifies] == 3)
    }
}

@Suite struct OrphanTests {
    /// Defect 5: a Child SA that cannot be rekeyed does not leave the IKE SA running around it forever: after a
    /// bounded number of failed rekeys the IKE SA is deleted (INFORMATIONAL { D(IKE) }).
    @Test func childRekeyFailuresAreBoundedThenTheIKESAIsDeleted() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        let eastID = try #require(lockstep.east.ikeSAs.first?.id)
        lockstep.east.sas[eastID]?.connection.espProposals = [try ESPProposal.parse("aes128gcm16")]
        var all: [IKEv2Action] = []
        for attempt in 1...IKEv2Tunables.maximumChildRekeyAttempts {
            let child = try #require(lockstep.west.childSAs.first, "attempt \(attempt)")
            // CREATE_CHILD_SA { N(REKEY_SA), SA, Ni, TSi, TSr } -->  <-- CREATE_CHILD_SA { N(NO_PROPOSAL_CHOSEN) }
            all += lockstep.pump(lockstep.westHandles(.rekeyChildSA(child.id)))
        }
        // ... and the last time INFORMATIONAL { D(IKE) } -->
        #expect(all.deletedIKESAs.count == 2, "\(all.logText)")
        #expect(lockstep.west.ikeSAs.isEmpty && lockstep.east.ikeSAs.isEmpty)
        #expect(lockstep.west.counters[.childRekeysGivenUp] == 1)
    }

    /// Defect 5: when the peer brings up a new IKE SA, its old childless one is deleted at both ends, not kept.
    @Test func aNewIKESASupersedesTheChildlessOne() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        let child = try #require(lockstep.west.childSAs.first)
        // INFORMATIONAL { D(ESP) } -->  <-- INFORMATIONAL { D(ESP) }
        _ = lockstep.pump(lockstep.westHandles(.deleteChildSA(child.id)))
        let orphanAtEast = try #require(lockstep.east.ikeSAs.first?.id)
        // IKE_SA_INIT, IKE_AUTH (no INITIAL_CONTACT: west still has its old SA); then <-- INFORMATIONAL { D(IKE) }
        let all = lockstep.pump(lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress)))
        #expect(all.established.count == 2)
        #expect(all.deletedIKESAs.contains { $0.id == orphanAtEast })
        #expect(lockstep.east.ikeSAs.count == 1 && lockstep.west.ikeSAs.count == 1, "\(all.logText)")
        #expect(lockstep.east.ikeSAs.first?.id != orphanAtEast)
    }
}

@Suite struct BoundedTablesTests {
    /// An authenticated peer cannot grow one IKE SA's Child SAs without end: past the cap a CREATE_CHILD_SA for a
    /// new Child SA is refused with NO_ADDITIONAL_SAS.
    @Test func childSAsPerIKESAAreBounded() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        let id = try #require(lockstep.west.ikeSAs.first?.id)
        var last: [IKEv2Action] = []
        for index in 0..<IKEv2Tunables.maximumChildSAsPerIKESA {
            var sa = try #require(lockstep.west.sas[id])
            var effects = Effects()
            let offer = ProposalNegotiation.offer(sa.connection.espProposals, dhGroups: { _ in [] }, spi: 0x1000 + UInt32(index))
            // CREATE_CHILD_SA { SA, Ni, TSi, TSr } -->  (a new Child SA, no REKEY_SA)
            sa.startRequest(.createChildSA, [.securityAssociation(offer), .nonce(sa.newNonce(&lockstep.random)),
                                             .trafficSelectorInitiator(sa.connection.localTrafficSelectors.map(IKEv2.TrafficSelector.init)),
                                             .trafficSelectorResponder(sa.connection.remoteTrafficSelectors.map(IKEv2.TrafficSelector.init))],
                            kind: .liveness, now: .zero, random: &lockstep.random, effects: &effects)
            lockstep.west.sas[id] = sa
            last = lockstep.deliver(try #require(effects.actions.sent.first))
            // <-- CREATE_CHILD_SA { SA, Nr, TSi, TSr } or { N(NO_ADDITIONAL_SAS) }
            _ = lockstep.deliver(try #require(last.sent.first))
        }
        #expect(lockstep.east.childSAs.count == IKEv2Tunables.maximumChildSAsPerIKESA)
        #expect(last.logText.contains("NO_ADDITIONAL_SAS"), "\(last.logText)")
    }

    /// A peer that rekeys its IKE SA again and again and never deletes the old ones leaves a bounded number behind.
    @Test func replacedIKESAsAreBounded() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        for _ in 0..<(IKEv2Tunables.maximumReplacedIKESAs + 3) {
            let current = try #require(lockstep.east.ikeSAs.first { $0.state == .established }?.id)
            // <-- CREATE_CHILD_SA { SA, Ni, KEi }
            let request = try #require(lockstep.eastHandles(.rekeyIKESA(current)).sent.first)
            // CREATE_CHILD_SA { SA, Nr, KEr } -->  (east's INFORMATIONAL { D(IKE) } for the old SA is lost)
            _ = lockstep.deliver(try #require(lockstep.deliver(request).sent.first))
        }
        #expect(lockstep.west.ikeSAs.filter { $0.state == .deleting }.count == IKEv2Tunables.maximumReplacedIKESAs)
        #expect(lockstep.west.ikeSAs.filter { $0.state == .established }.count == 1)
        #expect(lockstep.west.counters[.replacedIKESAsForgotten] == 3)
        #expect(lockstep.west.childSAs.count == 1)
    }
}

extension OrphanTests {
    /// Defect 5: INITIAL_CONTACT ends every older IKE SA of that identity, also one its NAT mapping had moved
    /// elsewhere (before, only SAs at the same address were ended and the others lingered in `ikeSAs`).
    @Test func initialContactEndsTheOldSAEvenAfterANATMove() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true, forceUDP: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        let westID = try #require(lockstep.west.ikeSAs.first?.id)
        let stale = try #require(lockstep.east.ikeSAs.first?.id)
        // INFORMATIONAL { } -->  (through a new NAT mapping)
        var check = try #require(lockstep.westHandles(.sendLivenessCheck(westID)).sent.first)
        check.from = Endpoint(IPAddress("198.51.100.7")!, 31_000)
        #expect(lockstep.deliver(check).addressChanges.count == 1)
        // West restarts and connects again from its own address with INITIAL_CONTACT.
        lockstep.west = IKEv2Endpoint(configuration: lockstep.west.configuration)
        let (_, east) = try LockstepTests.establish(&lockstep)
        #expect(east.deletedIKESAs.map(\.id) == [stale])
        #expect(lockstep.east.ikeSAs.count == 1 && lockstep.east.ikeSAs.first?.id != stale)
    }
}

@Suite struct HalfOpenTests {
    /// Defect 7: the cookie secret rotates on its timer; a cookie made with the previous secret is still accepted,
    /// one made two secrets ago is not.
    @Test(arguments: [1, 2])
    func cookieSecretRotates(rotations: Int) throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false), eastCookieThreshold: 0)
        let start = lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress))
        // IKE_SA_INIT -->  <-- IKE_SA_INIT { N(COOKIE) }
        let demand = lockstep.deliver(try #require(start.sent.first))
        let rotation = try #require(demand.timers.first { $0.0 == .rotateCookieSecret })
        for round in 0..<rotations {
            lockstep.now = rotation.1 + lockstep.east.configuration.effectiveCookieSecretLifetime * round
            let next = lockstep.eastHandles(.timerFired(.rotateCookieSecret))
            #expect(next.timers.map(\.0) == [.rotateCookieSecret])
        }
        // IKE_SA_INIT { N(COOKIE), ... } -->
        let retry = lockstep.deliver(try #require(demand.sent.first))
        let answer = lockstep.deliver(try #require(retry.sent.first))
        if rotations == 1 {
            #expect(lockstep.east.ikeSAs.count == 1, "the previous secret's cookie is accepted")
        } else {
            #expect(lockstep.east.ikeSAs.isEmpty)
            #expect(try IKEv2.Message.parse(try #require(answer.sent.first).bytes).payloads.map(\.logName) == ["N(COOKIE)"])
        }
    }

    /// Defect 7: one source cannot hold more than its share of half-open SAs: beyond it a COOKIE is demanded, and a
    /// valid one replaces the source's oldest; another listed source is served without one.
    @Test func halfOpenSAsAreLimitedPerSource() throws {
        let other = IPAddress("192.0.2.3")!
        var eastConfig = Fixtures.connection(west: false)
        eastConfig.peers.append(.init(address: other, identity: .fqdn("other"), preSharedKey: Fixtures.psk))
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: eastConfig)
        lockstep.east.configuration.halfOpenLimitPerSource = 2
        for _ in 0..<2 {
            // IKE_SA_INIT -->  <-- IKE_SA_INIT { SA, KE, Nr, ... }
            let request = try #require(lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress)).sent.first)
            _ = lockstep.deliver(request)
        }
        #expect(lockstep.east.ikeSAs.count == 2)
        // IKE_SA_INIT -->  <-- IKE_SA_INIT { N(COOKIE) }
        let third = try #require(lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress)).sent.first)
        let demand = lockstep.deliver(third)
        #expect(try IKEv2.Message.parse(try #require(demand.sent.first).bytes).payloads.map(\.logName) == ["N(COOKIE)"])
        #expect(lockstep.east.ikeSAs.count == 2)
        // IKE_SA_INIT { N(COOKIE), ... } -->  the oldest half-open SA of this source makes room
        let retry = lockstep.deliver(try #require(demand.sent.first))
        _ = lockstep.deliver(try #require(retry.sent.first))
        #expect(lockstep.east.ikeSAs.count == 2)
        #expect(lockstep.east.counters[.halfOpenEvicted] == 1)
        // Another listed source is not starved: answered without a COOKIE.
        var otherConfig = Fixtures.connection(west: true)
        otherConfig.localAddress = other
        var otherSide = IKEv2Endpoint(configuration: .init(connections: [otherConfig]))
        let otherRequest = try #require(otherSide.handle(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress), now: .zero, random: &lockstep.random).sent.first)
        let otherAnswer = lockstep.deliver(otherRequest)
        #expect(try IKEv2.Message.parse(try #require(otherAnswer.sent.first).bytes).payloads.first?.logName == "SA")
        #expect(lockstep.east.ikeSAs.count == 3)
    }
}
