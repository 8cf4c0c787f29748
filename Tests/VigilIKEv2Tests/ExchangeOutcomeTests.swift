import Testing
import VigilAddressing
import VigilCrypto
import VigilIKE
@testable import VigilIKEv2

/// The exchanges each engine counts by type, role and result (`vigil_ike_exchanges_total`), and the IKE SA rekey
/// deadline it exposes, driven in lockstep.
@Suite struct ExchangeOutcomeTests {
    typealias Outcome = IKEExchangeOutcome

    @Test func establishmentCountsIKESAInitAndIKEAuthOnBothSides() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        #expect(lockstep.west.exchangeOutcomes == [Outcome(.ikeSAInit, .initiator, .ok): 1, Outcome(.ikeAuth, .initiator, .ok): 1])
        #expect(lockstep.east.exchangeOutcomes == [Outcome(.ikeSAInit, .responder, .ok): 1, Outcome(.ikeAuth, .responder, .ok): 1])
    }

    @Test func childRekeyCountsCreateChildSAAndTheDeleteOfTheOldSA() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        let child = try #require(lockstep.west.childSAs.first)
        // CREATE_CHILD_SA { N(REKEY_SA), SA, Ni, TSi, TSr } -->  <-- { SA, Nr, TSi, TSr }
        // INFORMATIONAL { D(old) } -->  <-- INFORMATIONAL { D(old) }
        let all = lockstep.pump(lockstep.westHandles(.rekeyChildSA(child.id)))
        #expect(all.rekeyed.count == 2, "\(all.logText)")
        #expect(lockstep.west.exchangeOutcomes[Outcome(.createChildSA, .initiator, .ok)] == 1)
        #expect(lockstep.west.exchangeOutcomes[Outcome(.informational, .initiator, .ok)] == 1)
        #expect(lockstep.east.exchangeOutcomes[Outcome(.createChildSA, .responder, .ok)] == 1)
        #expect(lockstep.east.exchangeOutcomes[Outcome(.informational, .responder, .ok)] == 1)
        #expect(lockstep.west.exchangeOutcomes.count == 4 && lockstep.east.exchangeOutcomes.count == 4, "no failure counted")
    }

    @Test func answeredLivenessCheckIsAnInformationalOnBothSides() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        let westID = try #require(lockstep.west.ikeSAs.first?.id)
        // INFORMATIONAL { } -->  <-- INFORMATIONAL { }
        let all = lockstep.pump(lockstep.westHandles(.sendLivenessCheck(westID)))
        #expect(all.contains { if case .livenessCheckAnswered(westID) = $0 { true } else { false } })
        #expect(lockstep.west.exchangeOutcomes[Outcome(.informational, .initiator, .ok)] == 1)
        #expect(lockstep.east.exchangeOutcomes[Outcome(.informational, .responder, .ok)] == 1)
    }

    @Test func requestWhoseRetransmissionsRunOutIsATimeout() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        let child = try #require(lockstep.west.childSAs.first)
        // CREATE_CHILD_SA { N(REKEY_SA), ... } -->  (every transmission lost)
        var actions = lockstep.westHandles(.rekeyChildSA(child.id))
        while let timer = actions.timers.first(where: { if case .retransmit = $0.0 { true } else { false } }) {
            lockstep.now = timer.1
            actions = lockstep.westHandles(.timerFired(timer.0))
        }
        #expect(actions.contains { if case .peerUnreachable = $0 { true } else { false } })
        #expect(lockstep.west.exchangeOutcomes[Outcome(.createChildSA, .initiator, .timeout)] == 1)
        #expect(lockstep.west.exchangeOutcomes[Outcome(.createChildSA, .initiator, .ok)] == nil)
    }

    @Test func livenessCheckOutstandingWhenThePeerIsDeclaredDeadIsATimeout() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        _ = try LockstepTests.establish(&lockstep)
        let westID = try #require(lockstep.west.ikeSAs.first?.id)
        // INFORMATIONAL { } -->  (lost), then the dead peer detector gives up
        #expect(lockstep.westHandles(.sendLivenessCheck(westID)).sent.count == 1)
        _ = lockstep.westHandles(.abandonIKESA(westID))
        #expect(lockstep.west.exchangeOutcomes[Outcome(.informational, .initiator, .timeout)] == 1)
        #expect(lockstep.west.exchangeOutcomes[Outcome(.informational, .initiator, .ok)] == nil)
    }

    @Test func authenticationFailedIsAFailedIKEAuthOnBothSides() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true, psk: SecureBytes(Array("wrong".utf8))), east: Fixtures.connection(west: false))
        let (west, east) = try LockstepTests.establish(&lockstep)
        #expect(west.failures.map(\.code) == [.authenticationFailed])
        #expect(east.failures.map(\.code) == [.authenticationFailed])
        // IKE_SA_INIT itself succeeded; IKE_AUTH { N(AUTHENTICATION_FAILED) } ended the exchange.
        #expect(lockstep.west.exchangeOutcomes == [Outcome(.ikeSAInit, .initiator, .ok): 1, Outcome(.ikeAuth, .initiator, .failed): 1])
        #expect(lockstep.east.exchangeOutcomes == [Outcome(.ikeSAInit, .responder, .ok): 1, Outcome(.ikeAuth, .responder, .failed): 1])
    }

    @Test func ikeSARekeyDeadlineIsTheScheduledTimerAndFollowsTheRekey() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        lockstep.now = .seconds(100)
        let (west, east) = try LockstepTests.establish(&lockstep)
        for (endpoint, actions) in [(lockstep.west, west), (lockstep.east, east)] {
            let sa = try #require(endpoint.ikeSAs.first)
            let timer = try #require(actions.timers.last { $0.0 == .rekeyIKESA(sa.id) })
            #expect(sa.rekeyAt == timer.1)
            // Lifetime minus up to 10 % jitter, from the time it was established.
            let lifetime = Fixtures.connection(west: true).ikeLifetime
            #expect(timer.1 > .seconds(100) + lifetime * 0.89 && timer.1 <= .seconds(100) + lifetime)
        }
        // The rekey timer fires: no deadline while the rekey is in flight, the successor's once it is done.
        let old = try #require(lockstep.west.ikeSAs.first)
        lockstep.now = try #require(old.rekeyAt)
        let start = lockstep.westHandles(.timerFired(.rekeyIKESA(old.id)))
        #expect(lockstep.west.ikeSAs.first { $0.id == old.id }?.rekeyAt == nil)
        let all = lockstep.pump(start)
        let successor = try #require(lockstep.west.ikeSAs.first)
        #expect(successor.id != old.id)
        let timer = try #require(all.timers.last { $0.0 == .rekeyIKESA(successor.id) })
        #expect(successor.rekeyAt == timer.1 && timer.1 > lockstep.now)
    }

    @Test func childSARekeyDeadlineIsTheScheduledTimerAndFollowsTheRekey() throws {
        var lockstep = Lockstep(west: Fixtures.connection(west: true), east: Fixtures.connection(west: false))
        let (west, east) = try LockstepTests.establish(&lockstep)
        for (endpoint, actions) in [(lockstep.west, west), (lockstep.east, east)] {
            let child = try #require(endpoint.childSAs.first)
            let timer = try #require(actions.timers.last { $0.0 == .rekeyChildSA(child.id) })
            #expect(endpoint.childRekeyAt == [child.id: timer.1])
        }
        // A rekey asked for before the timer (its deadline goes with the old SA's cancelled timer).
        let old = try #require(lockstep.west.childSAs.first)
        let all = lockstep.pump(lockstep.westHandles(.rekeyChildSA(old.id)))
        let new = try #require(lockstep.west.childSAs.first)
        #expect(new.id != old.id, "\(all.logText)")
        let timer = try #require(all.timers.last { $0.0 == .rekeyChildSA(new.id) })
        #expect(lockstep.west.childRekeyAt == [new.id: timer.1], "the old Child SA's deadline went with it")
    }
}
