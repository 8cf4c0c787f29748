import Testing
import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilWire
import VigilIKE
@testable import VigilIKEv2

/// A Vigil initiator against a Vigil responder, message by message, no sockets.
@Suite struct LockstepTests {
    /// Runs IKE_SA_INIT and IKE_AUTH by hand; returns the lockstep and every action of both sides.
    static func establish(_ lockstep: inout Lockstep) throws -> (west: [IKEv2Action], east: [IKEv2Action]) {
        var westActions = lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress))
        // IKE_SA_INIT { SA, KE, Ni, N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP) } -->
        let initRequest = try #require(westActions.sent.first)
        #expect(try IKEv2.Message.parse(initRequest.bytes).payloads.map(\.logName) ==
                ["SA", "KE", "No", "N(NAT_DETECTION_SOURCE_IP)", "N(NAT_DETECTION_DESTINATION_IP)"])
        var eastActions = lockstep.deliver(initRequest)
        // <-- IKE_SA_INIT { SA, KE, Nr, N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP) }
        let initResponse = try #require(eastActions.sent.first)
        var produced = lockstep.deliver(initResponse)
        westActions += produced
        // IKE_AUTH { IDi, N(INITIAL_CONTACT), IDr, AUTH, SA, TSi, TSr } -->
        let authRequest = try #require(produced.sent.first)
        #expect(try IKEv2.Message.parse(authRequest.bytes).header.exchangeType == .ikeAuth)
        produced = lockstep.deliver(authRequest)
        eastActions += produced
        // <-- IKE_AUTH { IDr, AUTH, SA, TSi, TSr }
        let authResponse = try #require(produced.sent.first)
        westActions += lockstep.deliver(authResponse)
        return (westActions, eastActions)
    }

    @Test(arguments: [
        ("aes256-sha256-modp2048", "aes256-sha256"),
        ("aes128gcm16-prfsha256-x25519", "aes256gcm16"),
        ("aes256-sha384-ecp384", "aes256-sha256"),
        ("aes256-sha256-modp2048", "aes256gcm16"),
    ])
    func establishesIKEAndChildSA(ike: String, esp: String) throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true, ike: ike, esp: esp), east: Fixtures.connection(west: false, ike: ike, esp: esp))
        let (west, east) = try Self.establish(&lockstep)
        let westChild = try #require(west.established.first, "west: \(west.logText)")
        let eastChild = try #require(east.established.first, "east: \(east.logText)")
        #expect(westChild.inboundSPI == eastChild.outboundSPI)
        #expect(westChild.outboundSPI == eastChild.inboundSPI)
        #expect(westChild.encryption.rawValue == esp.split(separator: "-")[0].description)
        #expect(westChild.localTrafficSelectors.map(\.description) == ["10.1.0.0/24"])
        #expect(westChild.remoteTrafficSelectors.map(\.description) == ["10.2.0.0/24"])
        // East allows 10.1.0.0/16 from west and narrows to what west asked for.
        #expect(eastChild.remoteTrafficSelectors.map(\.description) == ["10.1.0.0/24"])
        let westKeys = try #require(west.childKeys.first)
        let eastKeys = try #require(east.childKeys.first)
        #expect(westKeys.encryptionOut == eastKeys.encryptionIn)
        #expect(westKeys.encryptionIn == eastKeys.encryptionOut)
        #expect(westKeys.encryptionOut != westKeys.encryptionIn)
        #expect(westKeys.integrityOut == eastKeys.integrityIn)
        #expect(lockstep.west.ikeSAs.map(\.state) == [.established])
        #expect(lockstep.east.ikeSAs.map(\.state) == [.established])
        #expect(lockstep.west.ikeSAs.first?.proposal?.description == lockstep.east.ikeSAs.first?.proposal?.description)
        #expect(lockstep.east.ikeSAs.first?.remoteIdentity == .fqdn("west"))
    }

    @Test func establishesOverIPv6WithIPv6TrafficSelectors() throws {
        let westAddress = IPAddress("2001:db8::1")!
        let eastAddress = IPAddress("2001:db8::2")!
        func v6(_ config: IKEv2Endpoint.ConnectionConfiguration, local: IPAddress, remote: IPAddress, localNet: String, remoteNet: String) throws -> IKEv2Endpoint.ConnectionConfiguration {
            var config = config
            config.localAddress = local
            config.peers[0].address = remote
            config.localTrafficSelectors = [try IPPrefix.parse(localNet)]
            config.remoteTrafficSelectors = [try IPPrefix.parse(remoteNet)]
            return config
        }
        var lockstep = Lockstep(
            west: try v6(Fixtures.connection(west: true), local: westAddress, remote: eastAddress, localNet: "2001:db8:1::/48", remoteNet: "2001:db8:2::/48"),
            east: try v6(Fixtures.connection(west: false), local: eastAddress, remote: westAddress, localNet: "2001:db8:2::/48", remoteNet: "2001:db8::/32"))
        lockstep.eastAddress = eastAddress
        let all = lockstep.pump(lockstep.westHandles(.initiate(connection: "EAST/10", peer: eastAddress)))
        #expect(all.established.count == 2, "\(all.logText)")
        let east = try #require(lockstep.east.childSAs.first)
        #expect(east.remoteTrafficSelectors.map(\.description) == ["2001:db8:1::/48"])
        #expect(east.localEndpoint.address == eastAddress)
    }

    @Test func wrongPreSharedKeyFailsWithAuthenticationFailedOnBothSides() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true, psk: SecureBytes(Array("wrong".utf8))), east: Fixtures.connection(west: false))
        let (west, east) = try Self.establish(&lockstep)
        #expect(east.failures.map(\.code) == [.authenticationFailed])
        #expect(west.failures.map(\.code) == [.authenticationFailed])
        #expect(east.logText.contains("pre-shared keys differ"))
        #expect(lockstep.west.ikeSAs.isEmpty)
        #expect(lockstep.east.ikeSAs.isEmpty)
        #expect(lockstep.east.counters[.authenticationFailures] == 1)
        #expect(lockstep.west.counters[.authenticationFailures] == 1)
    }

    /// §2.21.1: NO_PROPOSAL_CHOSEN in an IKE_SA_INIT response is unauthenticated: the initiator keeps retransmitting
    /// and, when the schedule runs out, fails with the hint; the responder's refusal is junk, not the peer's failure.
    @Test func noCommonIKEProposalFailsWithNoProposalChosenWhenTheRetransmissionsRunOut() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true, ike: "aes128-sha1-modp2048"), east: Fixtures.connection(west: false))
        var actions = lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress))
        var west: [IKEv2Action] = actions
        var east: [IKEv2Action] = []
        while true {
            // IKE_SA_INIT { SA, KE, Ni, N, N } -->
            let refusal = lockstep.deliver(try #require(actions.sent.first))
            east += refusal
            // <-- IKE_SA_INIT { N(NO_PROPOSAL_CHOSEN) }
            west += lockstep.deliver(try #require(refusal.sent.first))
            #expect(lockstep.west.ikeSAs.count == 1, "an unauthenticated notify ends nothing")
            let timer = try #require(west.timers.last { if case .retransmit = $0.0 { true } else { false } })
            lockstep.now = timer.1
            actions = lockstep.westHandles(.timerFired(timer.0))
            west += actions
            if !west.failures.isEmpty { break }
        }
        #expect(east.failures.isEmpty, "a spoofable IKE_SA_INIT is never the peer's failure")
        #expect(west.failures.map(\.code) == [.noProposalChosen])
        #expect(west.failures.first?.message.contains("NO_PROPOSAL_CHOSEN") == true, "\(west.failures)")
        #expect(east.logText.contains("peer offered aes128-sha1-prfsha1-modp2048, we accept aes256-sha256-prfsha256-modp2048"), "\(east.logText)")
        #expect(lockstep.west.counters[.unauthenticatedNotifies] == UInt64(1 + RetransmissionSchedule.strongSwanDefault.tries))
        #expect(lockstep.east.counters[.unauthenticatedRefusals] == UInt64(1 + RetransmissionSchedule.strongSwanDefault.tries))
        #expect(lockstep.west.ikeSAs.isEmpty && lockstep.east.ikeSAs.isEmpty)
    }

    /// No orphans: an authenticated IKE SA whose first Child SA failed is deleted (INFORMATIONAL { D(IKE) }) by
    /// both ends instead of lingering without a Child SA.
    @Test func noCommonESPProposalDeletesTheChildlessIKESA() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true, esp: "aes128-sha1"), east: Fixtures.connection(west: false))
        let (west, east) = try Self.establish(&lockstep)
        #expect(west.failures.map(\.code) == [.noProposalChosen])
        #expect(east.failures.map(\.code) == [.noProposalChosen])
        #expect(east.logText.contains("peer offered ESP aes128-sha1-noesn, we accept aes256-sha256"), "\(east.logText)")
        // <-- IKE_AUTH { IDr, AUTH, N(NO_PROPOSAL_CHOSEN) }  <-- INFORMATIONAL { D(IKE) }
        #expect(east.logText.contains("INFORMATIONAL request 0 { D }"), "\(east.logText)")
        // INFORMATIONAL { D(IKE) } -->
        #expect(west.logText.contains("INFORMATIONAL request 2 { D }"), "\(west.logText)")
        #expect(!west.contains { if case .ikeSAEstablished = $0 { true } else { false } })
        #expect(lockstep.west.ikeSAs.isEmpty && lockstep.east.ikeSAs.isEmpty)
        #expect(lockstep.west.counters[.childlessIKESAsDeleted] == 1 && lockstep.east.counters[.childlessIKESAsDeleted] == 1)
    }

    @Test func disjointTrafficSelectorsFailWithTSUnacceptable() throws {
        var westConfig = Fixtures.connection(west: true)
        westConfig.remoteTrafficSelectors = [try IPPrefix.parse("10.9.0.0/24")]
        var lockstep = Lockstep(west: westConfig, east: Fixtures.connection(west: false))
        let (west, _) = try Self.establish(&lockstep)
        #expect(west.failures.map(\.code) == [.tsUnacceptable])
    }

    @Test func invalidKEPayloadMakesInitiatorRetryWithTheRequestedGroup() throws {
        let westConfig = Fixtures.connection(west: true, ike: "aes256-sha256-x25519-modp2048")
        var lockstep = Lockstep(west: westConfig, east: Fixtures.connection(west: false))
        let first = lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress))
        // IKE_SA_INIT { SA, KE(x25519), Ni, N, N } -->
        let refusal = lockstep.deliver(try #require(first.sent.first))
        // <-- IKE_SA_INIT { N(INVALID_KE_PAYLOAD(modp2048)) }
        let refusalMessage = try IKEv2.Message.parse(try #require(refusal.sent.first).bytes)
        #expect(refusalMessage.payloads.map(\.logName) == ["N(INVALID_KE_PAYLOAD)"])
        #expect(lockstep.east.ikeSAs.isEmpty, "INVALID_KE_PAYLOAD keeps no responder state")
        let retry = lockstep.deliver(try #require(refusal.sent.first))
        // IKE_SA_INIT { SA, KE(modp2048), Ni, N, N } -->
        let retryMessage = try IKEv2.Message.parse(try #require(retry.sent.first).bytes)
        guard case .keyExchange(let ke) = retryMessage.payloads[1] else { Issue.record("no KE"); return }
        #expect(ke.group == 14)
        let all = lockstep.pump(retry)
        #expect(all.established.count == 2)
    }

    @Test func cookieIsDemandedAndEchoed() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false), eastCookieThreshold: 0)
        let first = lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress))
        // IKE_SA_INIT { SA, KE, Ni, N, N } -->
        let demand = lockstep.deliver(try #require(first.sent.first))
        // <-- IKE_SA_INIT { N(COOKIE) }
        #expect(try IKEv2.Message.parse(try #require(demand.sent.first).bytes).payloads.map(\.logName) == ["N(COOKIE)"])
        #expect(lockstep.east.ikeSAs.isEmpty)
        let retry = lockstep.deliver(try #require(demand.sent.first))
        // IKE_SA_INIT { N(COOKIE), SA, KE, Ni, N, N } -->
        #expect(try IKEv2.Message.parse(try #require(retry.sent.first).bytes).payloads.first?.logName == "N(COOKIE)")
        let all = lockstep.pump(retry)
        #expect(all.established.count == 2)
        #expect(lockstep.east.counters[.cookiesSent] == 1)
    }

    @Test func halfOpenResponderSAExpires() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        let first = lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress))
        let east = lockstep.deliver(try #require(first.sent.first))
        let expiry = try #require(east.timers.first { if case .halfOpenExpiry = $0.0 { true } else { false } })
        #expect(lockstep.east.ikeSAs.map(\.state) == [.connecting])
        lockstep.now = expiry.1
        _ = lockstep.eastHandles(.timerFired(expiry.0))
        #expect(lockstep.east.ikeSAs.isEmpty)
        #expect(lockstep.east.counters[.halfOpenExpired] == 1)
    }

    @Test func retransmittedRequestGetsTheCachedResponse() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try Self.establish(&lockstep)
        let id = try #require(lockstep.west.ikeSAs.first?.id)
        let check = lockstep.westHandles(.sendLivenessCheck(id))
        // INFORMATIONAL { } -->
        let request = try #require(check.sent.first)
        let first = lockstep.deliver(request)
        // <-- INFORMATIONAL { }
        let again = lockstep.deliver(request)
        #expect(first.sent.first?.bytes == again.sent.first?.bytes)
        #expect(lockstep.east.counters[.retransmittedRequests] == 1)
    }

    @Test func livenessChecksBothWaysAndUnansweredOneIsRetransmittedUnchanged() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try Self.establish(&lockstep)
        let westID = try #require(lockstep.west.ikeSAs.first?.id)
        let eastID = try #require(lockstep.east.ikeSAs.first?.id)
        let check = lockstep.westHandles(.sendLivenessCheck(westID))
        // INFORMATIONAL { } -->  (lost)
        let again = lockstep.westHandles(.sendLivenessCheck(westID))
        #expect(check.sent.first?.bytes == again.sent.first?.bytes)
        #expect(!check.contains { if case .scheduleTimer(.retransmit, _) = $0 { true } else { false } }, "liveness is driven by the detector")
        let answer = lockstep.deliver(try #require(again.sent.first))
        #expect(answer.contains { if case .authenticatedMessageReceived(eastID) = $0 { true } else { false } })
        // <-- INFORMATIONAL { }
        let answered = lockstep.deliver(try #require(answer.sent.first))
        #expect(answered.contains { if case .livenessCheckAnswered(westID) = $0 { true } else { false } })
        // <-- INFORMATIONAL { }  (east asks)
        let eastCheck = lockstep.eastHandles(.sendLivenessCheck(eastID))
        let westAnswer = lockstep.deliver(try #require(eastCheck.sent.first))
        // INFORMATIONAL { } -->
        let eastAnswered = lockstep.deliver(try #require(westAnswer.sent.first))
        #expect(eastAnswered.contains { if case .livenessCheckAnswered(eastID) = $0 { true } else { false } })
    }

    @Test func workQueuedBehindALostLivenessCheckPutsItOnTheRetransmissionSchedule() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try Self.establish(&lockstep)
        let id = try #require(lockstep.west.ikeSAs.first?.id)
        let child = try #require(lockstep.west.childSAs.first)
        // INFORMATIONAL { } -->  (lost; the detector asks no more)
        let lost = try #require(lockstep.westHandles(.sendLivenessCheck(id)).sent.first)
        let queued = lockstep.westHandles(.rekeyChildSA(child.id))
        #expect(queued.sent.isEmpty, "window of one")
        #expect(lockstep.west.childSAs.map(\.state) == [.installed])
        let timer = try #require(queued.timers.first { if case .retransmit = $0.0 { true } else { false } })
        lockstep.now = timer.1
        let retransmitted = lockstep.westHandles(.timerFired(timer.0))
        #expect(retransmitted.sent.first?.bytes == lost.bytes)
        // INFORMATIONAL { } -->  <-- INFORMATIONAL { }  then the queued rekey runs
        let all = lockstep.pump(retransmitted)
        #expect(all.contains { if case .livenessCheckAnswered = $0 { true } else { false } })
        #expect(all.rekeyed.count == 2, "\(all.logText)")
    }

    @Test func deleteChildThenIKESA() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try Self.establish(&lockstep)
        let child = try #require(lockstep.west.childSAs.first)
        // INFORMATIONAL { D(ESP) } -->  <-- INFORMATIONAL { D(ESP) }
        let deleted = lockstep.pump(lockstep.westHandles(.deleteChildSA(child.id)))
        #expect(deleted.deletedChildren.count == 2)
        #expect(lockstep.west.childSAs.isEmpty && lockstep.east.childSAs.isEmpty)
        // <-- INFORMATIONAL { D(IKE) }   INFORMATIONAL { } -->
        let eastID = try #require(lockstep.east.ikeSAs.first?.id)
        let gone = lockstep.pump(lockstep.eastHandles(.deleteIKESA(eastID)))
        #expect(gone.deletedIKESAs.count == 2)
        // Typed for the daemon: the side that deleted says so, the other was told by its peer.
        #expect(Set(gone.ikeSAEnds) == [.local("deleted"), .deletedByPeer], "\(gone.ikeSAEnds)")
        #expect(gone.ikeSAEnds.filter(\.endedByPeer) == [.deletedByPeer])
        #expect(lockstep.west.ikeSAs.isEmpty && lockstep.east.ikeSAs.isEmpty)
    }

    @Test func initialContactFromARestartedPeerReplacesItsStaleSAs() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try Self.establish(&lockstep)
        let stale = try #require(lockstep.east.ikeSAs.first?.id)
        // West restarts (forgets everything) and connects again with INITIAL_CONTACT.
        lockstep.west = IKEv2Endpoint(configuration: lockstep.west.configuration)
        let (_, east) = try Self.establish(&lockstep)
        #expect(east.deletedIKESAs.map(\.id) == [stale])
        #expect(east.ikeSAEnds == [.peerRestarted])
        #expect(east.deletedChildren.count == 1)
        #expect(lockstep.east.ikeSAs.count == 1 && lockstep.east.childSAs.count == 1)
    }

    /// Runs IKE_SA_INIT and lets east complete IKE_AUTH, but loses every IKE_AUTH response on its way to west
    /// until west's retransmissions run out. Returns the late response and west's actions from the give-up on.
    static func loseTheAuthResponses(_ lockstep: inout Lockstep) throws -> (lateResponse: Datagram, west: [IKEv2Action]) {
        let initRequest = try #require(lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress)).sent.first)
        let initResponse = try #require(lockstep.deliver(initRequest).sent.first)
        var actions = lockstep.deliver(initResponse)
        let authRequest = try #require(actions.sent.first)
        let lateResponse = try #require(lockstep.deliver(authRequest).sent.first)
        #expect(lockstep.east.childSAs.count == 1, "east completed IKE_AUTH and installed its Child SA")
        while !actions.contains(where: { if case .negotiationFailed = $0 { true } else { false } }) {
            let timer = try #require(actions.timers.last { if case .retransmit = $0.0 { true } else { false } })
            lockstep.now = timer.1
            actions = lockstep.westHandles(.timerFired(timer.0))
            // Each retransmission reaches east, which answers it from its cache: lost too.
            for retransmission in actions.sent where !actions.contains(where: { if case .negotiationFailed = $0 { true } else { false } }) {
                #expect(lockstep.deliver(retransmission).sent.count == 1)
            }
        }
        return (lateResponse, actions)
    }

    /// West gives up on an IKE_AUTH that east completed: west deletes the SA at east under its keys, so east does
    /// not keep an IKE SA and a Child SA that west never had (and send its traffic into them).
    @Test func unansweredIKEAuthIsDeletedAtThePeer() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        let (lateResponse, gaveUp) = try Self.loseTheAuthResponses(&lockstep)
        #expect(gaveUp.failures.map(\.code) == [.timeout])
        #expect(gaveUp.established.isEmpty && gaveUp.deletedIKESAs.isEmpty, "nothing was up at west, nothing is reported down")
        // INFORMATIONAL { D(IKE) } --> under the IKE SA's keys, message ID 2.
        let delete = try #require(gaveUp.sent.last)
        let header = try IKEv2.Message.parse(delete.bytes).header
        #expect(header.exchangeType == .informational && header.messageID == 2 && !header.flags.contains(.response))
        #expect(lockstep.west.ikeSAs.map(\.state) == [.deleting])
        // The late IKE_AUTH response is not the outstanding request: dropped, nothing established.
        let late = lockstep.deliver(lateResponse)
        #expect(late.established.isEmpty && late.sent.isEmpty)
        #expect(lockstep.west.counters[.unexpectedResponses] == 1)
        // East deletes its IKE SA and the Child SA with it, and answers; west forgets the SA.
        let deleted = lockstep.pump([.send(bytes: delete.bytes, from: delete.from, to: delete.to)])
        #expect(lockstep.east.ikeSAs.isEmpty && lockstep.east.childSAs.isEmpty)
        #expect(deleted.ikeSAEnds == [.deletedByPeer], "only east had the SA up: \(deleted.ikeSAEnds)")
        #expect(deleted.deletedChildren.count == 1)
        #expect(lockstep.west.ikeSAs.isEmpty)
    }

    /// The DELETE of a withdrawn SA is retransmitted like any request (a responder still busy with IKE_AUTH takes
    /// message 2 only after answering message 1) and the SA is forgotten quietly when nobody answers it.
    @Test func unansweredDeleteOfAWithdrawnSAIsRetransmittedThenForgotten() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        var (_, actions) = try Self.loseTheAuthResponses(&lockstep)
        let delete = try #require(actions.sent.last)
        var deletes = 1
        while let timer = actions.timers.last(where: { if case .retransmit = $0.0 { true } else { false } }) {
            lockstep.now = timer.1
            actions = lockstep.westHandles(.timerFired(timer.0))
            #expect(actions.failures.isEmpty && actions.deletedIKESAs.isEmpty, "the failure was reported once, at the give-up")
            #expect(actions.sent.allSatisfy { $0.bytes == delete.bytes }, "retransmitted unchanged")
            deletes += actions.sent.count
        }
        #expect(deletes == 1 + RetransmissionSchedule.strongSwanDefault.tries)
        #expect(lockstep.west.ikeSAs.isEmpty)
        #expect(lockstep.east.childSAs.count == 1, "east never heard: its SA is left to its own liveness checks")
    }

    @Test func abandonSendsNothingAndReportsDeletions() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try Self.establish(&lockstep)
        let id = try #require(lockstep.west.ikeSAs.first?.id)
        let actions = lockstep.westHandles(.abandonIKESA(id))
        #expect(actions.sent.isEmpty)
        #expect(actions.deletedChildren.count == 1 && actions.deletedIKESAs.count == 1)
    }

    @Test(arguments: [nil, DHGroup.curve25519])
    func childSARekeysOverSeveralGenerations(pfs: DHGroup?) throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true, pfs: pfs), east: Fixtures.connection(west: false, pfs: pfs))
        _ = try Self.establish(&lockstep)
        for generation in 1...3 {
            let initiatorIsWest = generation % 2 == 1
            let child = try #require((initiatorIsWest ? lockstep.west : lockstep.east).childSAs.first)
            // CREATE_CHILD_SA { N(REKEY_SA), SA, Ni, [KEi,] TSi, TSr } -->  <-- { SA, Nr, [KEr,] TSi, TSr }
            // INFORMATIONAL { D(old) } -->  <-- INFORMATIONAL { D(old) }
            let start = initiatorIsWest ? lockstep.westHandles(.rekeyChildSA(child.id)) : lockstep.eastHandles(.rekeyChildSA(child.id))
            let all = lockstep.pump(start)
            #expect(all.rekeyed.count == 2, "generation \(generation): \(all.logText)")
            #expect(all.deletedChildren.count == 2)
            let west = try #require(lockstep.west.childSAs.first)
            let east = try #require(lockstep.east.childSAs.first)
            #expect(lockstep.west.childSAs.count == 1 && lockstep.east.childSAs.count == 1)
            #expect(west.inboundSPI == east.outboundSPI && west.outboundSPI == east.inboundSPI)
            #expect(west.dhGroup == pfs)
            let keys = all.childKeys
            #expect(keys.count == 2 && keys[0].encryptionOut == keys[1].encryptionIn)
        }
    }

    @Test func childRekeyRetriesWithThePFSGroupTheResponderAsksFor() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true, esp: "aes256-sha256-x25519-ecp256"),
                                east: Fixtures.connection(west: false, esp: "aes256-sha256-ecp256"))
        _ = try Self.establish(&lockstep)
        let child = try #require(lockstep.west.childSAs.first)
        // CREATE_CHILD_SA { N(REKEY_SA), SA, Ni, KEi(x25519), TSi, TSr } -->
        let first = lockstep.westHandles(.rekeyChildSA(child.id))
        // <-- CREATE_CHILD_SA { N(INVALID_KE_PAYLOAD(ecp256)) }
        let refusal = lockstep.deliver(try #require(first.sent.first))
        #expect(refusal.logText.contains("INVALID_KE_PAYLOAD"))
        // CREATE_CHILD_SA { N(REKEY_SA), SA, Ni, KEi(ecp256), TSi, TSr } -->  ...
        let all = lockstep.pump(refusal)
        #expect(all.rekeyed.count == 2, "\(all.logText)")
        #expect(lockstep.west.childSAs.map(\.dhGroup) == [.ecp256])
    }

    @Test func simultaneousChildRekeyLeavesExactlyOneNewSA() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try Self.establish(&lockstep)
        let westChild = try #require(lockstep.west.childSAs.first)
        let eastChild = try #require(lockstep.east.childSAs.first)
        // CREATE_CHILD_SA { N(REKEY_SA), ... } -->   <-- CREATE_CHILD_SA { N(REKEY_SA), ... }   (crossing)
        let westRequest = lockstep.westHandles(.rekeyChildSA(westChild.id))
        #expect(lockstep.west.childSAs.map(\.state) == [.rekeying])
        let eastRequest = lockstep.eastHandles(.rekeyChildSA(eastChild.id))
        let all = lockstep.pump(westRequest + eastRequest)
        #expect(all.rekeyed.count == 4)
        #expect(lockstep.west.childSAs.count == 1, "west: \(lockstep.west.childSAs.map(\.id))\n\(all.logText)")
        #expect(lockstep.east.childSAs.count == 1, "east: \(lockstep.east.childSAs.map(\.id))")
        let west = try #require(lockstep.west.childSAs.first)
        let east = try #require(lockstep.east.childSAs.first)
        #expect(west.inboundSPI == east.outboundSPI && west.outboundSPI == east.inboundSPI)
    }

    @Test func ikeSARekeyMovesChildrenAndKeepsWorking() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try Self.establish(&lockstep)
        for generation in 1...3 {
            let initiatorIsWest = generation % 2 == 1
            let id = try #require((initiatorIsWest ? lockstep.west : lockstep.east).ikeSAs.first?.id)
            // CREATE_CHILD_SA { SA, Ni, KEi } -->  <-- { SA, Nr, KEr }
            // INFORMATIONAL { D(IKE) } -->  <-- INFORMATIONAL { }
            let all = lockstep.pump(initiatorIsWest ? lockstep.westHandles(.rekeyIKESA(id)) : lockstep.eastHandles(.rekeyIKESA(id)))
            #expect(all.deletedIKESAs.isEmpty, "a rekey is not a deletion")
            #expect(all.deletedChildren.isEmpty)
            #expect(lockstep.west.ikeSAs.count == 1 && lockstep.east.ikeSAs.count == 1, "generation \(generation): \(all.logText)")
            let west = try #require(lockstep.west.ikeSAs.first)
            #expect(west.id != id || !initiatorIsWest)
            #expect(lockstep.west.childSAs.first?.ikeSA == west.id)
            // The new SA carries traffic: a liveness check round trip.
            let check = lockstep.pump(lockstep.westHandles(.sendLivenessCheck(west.id)))
            #expect(check.contains { if case .livenessCheckAnswered = $0 { true } else { false } })
        }
    }

    @Test(arguments: Array(UInt64(1)...16))  // both outcomes (ours or the peer's redundant) occur among these seeds
    func simultaneousIKESARekeyLeavesOneIKESAWithTheChildren(seed: UInt64) throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        lockstep.random = SeededGenerator(seed: seed)
        _ = try Self.establish(&lockstep)
        let westID = try #require(lockstep.west.ikeSAs.first?.id)
        let eastID = try #require(lockstep.east.ikeSAs.first?.id)
        // CREATE_CHILD_SA { SA, Ni, KEi } -->   <-- CREATE_CHILD_SA { SA, Ni, KEi }   (crossing)
        // then the redundant new IKE SA and the old one are deleted by their creators
        let all = lockstep.pump(lockstep.westHandles(.rekeyIKESA(westID)) + lockstep.eastHandles(.rekeyIKESA(eastID)))
        #expect(all.deletedIKESAs.isEmpty && all.deletedChildren.isEmpty, "\(all.logText)")
        #expect(all.logText.contains("IKE SA rekey collision: "))
        #expect(lockstep.west.ikeSAs.count == 1, "west: \(lockstep.west.ikeSAs.map(\.id))\n\(all.logText)")
        #expect(lockstep.east.ikeSAs.count == 1, "east: \(lockstep.east.ikeSAs.map(\.id))")
        let west = try #require(lockstep.west.ikeSAs.first)
        let east = try #require(lockstep.east.ikeSAs.first)
        #expect(west.initiatorSPI == east.initiatorSPI && west.responderSPI == east.responderSPI)
        #expect(lockstep.west.childSAs.first?.ikeSA == west.id && lockstep.east.childSAs.first?.ikeSA == east.id)
        let check = lockstep.pump(lockstep.westHandles(.sendLivenessCheck(west.id)))
        #expect(check.contains { if case .livenessCheckAnswered = $0 { true } else { false } })
    }

    @Test func replacedIKESAThatThePeerNeverDeletesIsForgottenQuietly() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try Self.establish(&lockstep)
        let eastID = try #require(lockstep.east.ikeSAs.first?.id)
        // <-- CREATE_CHILD_SA { SA, Ni, KEi }
        let request = try #require(lockstep.eastHandles(.rekeyIKESA(eastID)).sent.first)
        let westAnswer = lockstep.deliver(request)
        // (east's answer handling and its INFORMATIONAL { D(IKE) } are lost)
        #expect(lockstep.west.ikeSAs.count == 2)
        let expiry = try #require(westAnswer.timers.first { if case .expireReplacedIKESA = $0.0 { true } else { false } })
        lockstep.now = expiry.1
        let forgotten = lockstep.westHandles(.timerFired(expiry.0))
        #expect(forgotten.deletedIKESAs.isEmpty && forgotten.deletedChildren.isEmpty)
        #expect(lockstep.west.ikeSAs.count == 1 && lockstep.west.childSAs.count == 1)
    }

    @Test func retransmissionsExhaustedReportPeerUnreachable() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try Self.establish(&lockstep)
        let child = try #require(lockstep.west.childSAs.first)
        var actions = lockstep.westHandles(.rekeyChildSA(child.id))
        var sends = actions.sent.count
        while let timer = actions.timers.first(where: { if case .retransmit = $0.0 { true } else { false } }) {
            lockstep.now = timer.1
            actions = lockstep.westHandles(.timerFired(timer.0))
            sends += actions.sent.count
            if actions.contains(where: { if case .peerUnreachable = $0 { true } else { false } }) { break }
        }
        #expect(actions.contains { if case .peerUnreachable = $0 { true } else { false } })
        #expect(sends == 1 + RetransmissionSchedule.strongSwanDefault.tries)
        #expect(lockstep.west.ikeSAs.isEmpty)
        // 4 + 7.2 + 12.96 + 23.33 + 41.99 + 75.58 s: strongSwan's 165 s.
        #expect(lockstep.now > .seconds(160) && lockstep.now < .seconds(170))
    }

    @Test func forcedUDPEncapsulationFloatsTo4500AndSendsKeepalives() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true, forceUDP: true), east: Fixtures.connection(west: false))
        let (west, east) = try Self.establish(&lockstep)
        let westChild = try #require(west.established.first)
        let eastChild = try #require(east.established.first)
        #expect(westChild.udpEncapsulated && eastChild.udpEncapsulated)
        #expect(west.sent.last?.to.port == 4500)
        #expect(eastChild.remoteEndpoint.port == 4500)
        let keepalive = try #require(west.timers.first { if case .natKeepalive = $0.0 { true } else { false } })
        lockstep.now = keepalive.1
        let fired = lockstep.westHandles(.timerFired(keepalive.0))
        #expect(fired.contains { if case .sendNATKeepalive(_, let to) = $0 { to.port == 4500 } else { false } })
        #expect(lockstep.east.ikeSAs.first?.remoteBehindNAT == true)
    }

    @Test func unknownCriticalPayloadInARequestIsAnsweredWithUnsupportedCriticalPayload() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try Self.establish(&lockstep)
        let id = try #require(lockstep.west.ikeSAs.first?.id)
        var sa = try #require(lockstep.west.sas[id])
        var effects = Effects()
        // INFORMATIONAL { UNKNOWN(200, critical) } -->
        sa.startRequest(.informational, [.other(type: 200, critical: true, body: [1])], kind: .liveness, now: .zero,
                        random: &lockstep.random, effects: &effects)
        lockstep.west.sas[id] = sa
        let answer = lockstep.deliver(try #require(effects.actions.sent.first))
        #expect(lockstep.east.counters[.unsupportedCriticalPayloads] == 1)
        #expect(answer.logText.contains("INFORMATIONAL response 2 { N(UNSUPPORTED_CRITICAL_PAYLOAD) }"), "\(answer.logText)")
        // <-- INFORMATIONAL { N(UNSUPPORTED_CRITICAL_PAYLOAD) }
        let west = lockstep.deliver(try #require(answer.sent.first))
        #expect(west.logText.contains("N(UNSUPPORTED_CRITICAL_PAYLOAD)"))
    }

    @Test func garbageAndTamperedMessagesAreCountedNotFatal() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try Self.establish(&lockstep)
        let id = try #require(lockstep.west.ikeSAs.first?.id)
        var request = try #require(lockstep.westHandles(.sendLivenessCheck(id)).sent.first)
        request.bytes[request.bytes.count - 1] ^= 1
        #expect(lockstep.deliver(request).sent.isEmpty)
        #expect(lockstep.east.counters[.integrityFailures] == 1)
        _ = lockstep.deliver(Datagram(bytes: [1, 2, 3], from: request.from, to: request.to))
        #expect(lockstep.east.counters[.malformedDatagrams] == 1)
        #expect(lockstep.east.ikeSAs.count == 1)
    }
}
