import Testing
import VigilAddressing
import VigilAlgorithms
import VigilKernel
@testable import VigilESP

@Suite struct ESPEngineTests {
    static let suites: [(EncryptionAlgorithm, IntegrityAlgorithm?)] = [
        (.aes128gcm16, nil), (.aes256gcm16, nil),
        (.aes128cbc, .hmacSHA2_256_128), (.aes256cbc, .hmacSHA2_256_128), (.aes128cbc, .hmacSHA1_96),
    ]

    @Test(arguments: suites)
    func roundTripForEveryAlgorithmAndPacketSize(_ encryption: EncryptionAlgorithm, _ integrity: IntegrityAlgorithm?) throws {
        let tunnel = Tunnel()
        try tunnel.establish(encryption, integrity, spiAB: 0x1000, spiBA: 0x2000)
        for size in [0, 1, 2, 3, 13, 14, 15, 16, 17, 100, 1380, 9000] {
            let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let inner = ipv4Packet(from: "10.1.0.5", to: "10.2.0.7", payload: payload)
            let (datagram, peer) = try #require(tunnel.seal(tunnel.a, inner))
            #expect(peer == Endpoint(Tunnel.addressB, 4500))
            // SPI and sequence number in clear, the inner packet nowhere in clear (RFC 4303 §2).
            #expect(Array(datagram[0..<4]) == [0, 0, 0x10, 0x00])
            let iv = encryption.isAEAD ? ESPSpec.gcmIVLength : ESPSpec.cbcIVLength
            let icv = integrity?.icvLength ?? ESPSpec.gcmICVLength
            let encrypted = datagram.count - ESPSpec.headerLength - iv - icv
            #expect(encrypted % (encryption.isAEAD ? 4 : 16) == 0)
            #expect(encrypted >= inner.count + 2 && encrypted < inner.count + 2 + (encryption.isAEAD ? 4 : 16))
            #expect(Array(datagram[(ESPSpec.headerLength + iv)...].prefix(inner.count)) != inner)
            let (verdict, delivered) = tunnel.open(tunnel.b, datagram, from: Tunnel.addressA)
            guard case .deliver = verdict else {
                Issue.record("size \(size): \(verdict)")
                continue
            }
            #expect(delivered == inner)
        }
    }

    @Test func sequenceNumbersCountFromOne() throws {
        let tunnel = Tunnel()
        try tunnel.establish(.aes128gcm16, nil, spiAB: 0x1000, spiBA: 0x2000)
        for expected in UInt32(1)...3 {
            let (datagram, _) = try #require(tunnel.seal(tunnel.a, ipv4Packet(from: "10.1.0.5", to: "10.2.0.7", payload: [1])))
            #expect(Array(datagram[4..<8]) == [0, 0, 0, UInt8(expected)])
        }
    }

    @Test func duplicatedReorderedAndOldPacketsAreHandledAndCounted() throws {
        let tunnel = Tunnel(replayWindow: 64)
        let child = try tunnel.establish(.aes256gcm16, nil, spiAB: 0x1000, spiBA: 0x2000)
        let inner = ipv4Packet(from: "10.1.0.5", to: "10.2.0.7", payload: [9, 9, 9])
        let datagrams = try (0..<100).map { _ in try #require(tunnel.seal(tunnel.a, inner)).datagram }

        // Reordered: 2 before 1 — both delivered.
        #expect(tunnel.open(tunnel.b, datagrams[1], from: Tunnel.addressA).1 == inner)
        #expect(tunnel.open(tunnel.b, datagrams[0], from: Tunnel.addressA).1 == inner)
        // Duplicated: 1 again — refused.
        #expect(tunnel.open(tunnel.b, datagrams[0], from: Tunnel.addressA).0 == .drop(.replayed))
        // Jump to 100, then 30 (inside the 64-packet window) is fine, 20 (outside) is too old.
        #expect(tunnel.open(tunnel.b, datagrams[99], from: Tunnel.addressA).1 == inner)
        #expect(tunnel.open(tunnel.b, datagrams[49], from: Tunnel.addressA).1 == inner)
        #expect(tunnel.open(tunnel.b, datagrams[19], from: Tunnel.addressA).0 == .drop(.replayed))

        let counters = try #require(tunnel.b.counters(child.outboundOfA))
        #expect(counters.replayedDuplicates == 1)
        #expect(counters.replayedTooOld == 1)
        #expect(counters.packets == 4)
        #expect(tunnel.b.counters[.replayed] == 2)
    }

    @Test(arguments: [(EncryptionAlgorithm.aes128gcm16, IntegrityAlgorithm?.none), (.aes128cbc, .hmacSHA2_256_128)])
    func forgedPacketsNeverMoveTheWindow(_ encryption: EncryptionAlgorithm, _ integrity: IntegrityAlgorithm?) throws {
        let tunnel = Tunnel()
        let child = try tunnel.establish(encryption, integrity, spiAB: 0x1000, spiBA: 0x2000)
        let inner = ipv4Packet(from: "10.1.0.5", to: "10.2.0.7", payload: Array(repeating: 7, count: 40))
        let (genuine, _) = try #require(tunnel.seal(tunnel.a, inner))
        for index in [8, 20, genuine.count - 1] {
            var forged = genuine
            forged[index] ^= 0x01
            #expect(tunnel.open(tunnel.b, forged, from: Tunnel.addressA).0 == .drop(.authenticationFailed))
        }
        // A forged packet with a far-ahead sequence number: refused, and the window did not slide.
        var ahead = genuine
        ahead[4] = 0x7F
        #expect(tunnel.open(tunnel.b, ahead, from: Tunnel.addressA).0 == .drop(.authenticationFailed))
        #expect(tunnel.open(tunnel.b, genuine, from: Tunnel.addressA).1 == inner)
        #expect(tunnel.b.counters(child.outboundOfA)?.authenticationFailures == 4)
        #expect(tunnel.b.counters(child.outboundOfA)?.packets == 1)
    }

    @Test func withoutAPolicyOrWithoutAnSANothingIsSent() throws {
        let tunnel = Tunnel(holdQueueLimit: 0)
        // Policies but no SA yet (peer dead, or failover in progress): never sent in clear.
        try tunnel.establish(.aes128gcm16, nil, spiAB: 0x1000, spiBA: 0x2000)
        let child = try #require(try tunnel.a.listSAs().first { $0.id.spi == 0x1000 }?.id)
        try tunnel.a.deleteSA(child)
        let inner = ipv4Packet(from: "10.1.0.5", to: "10.2.0.7", payload: [1, 2, 3])
        let buffer = PacketBuffer()
        #expect(tunnel.a.encapsulate(buffer: buffer.raw, payload: buffer.load(inner)) == .drop(.noSA))
        // A packet no policy covers.
        let stray = ipv4Packet(from: "10.9.0.5", to: "10.2.0.7", payload: [1])
        #expect(tunnel.a.encapsulate(buffer: buffer.raw, payload: buffer.load(stray)) == .drop(.noPolicy))
        // Not IP at all.
        #expect(tunnel.a.encapsulate(buffer: buffer.raw, payload: buffer.load([0x00, 1, 2])) == .drop(.malformedInner))
        // A block policy in front of the protect policy.
        try tunnel.a.addPolicy(
            PolicyID(selector: PolicySelector(source: Tunnel.subnetA, destination: try IPPrefix.parse("10.2.0.7/32")), direction: .outbound),
            PolicyRequest(action: .block, priority: 10))
        #expect(tunnel.a.encapsulate(buffer: buffer.raw, payload: buffer.load(inner)) == .drop(.blocked))
        let counters = tunnel.a.counters
        #expect(counters[.noSA] == 1 && counters[.noPolicy] == 1 && counters[.malformedInner] == 1 && counters[.blocked] == 1)
    }

    @Test func packetsWithoutAnSAAreHeldBoundedAndReleasedToTheNextSA() throws {
        let tunnel = Tunnel(holdQueueLimit: 2)
        let signals = EventLog()
        tunnel.a.setReleaseSignal { signals.append(SAID(destination: Tunnel.addressB, spi: 0), .soft) }
        let old = try tunnel.establish(.aes128gcm16, nil, spiAB: 0x1000, spiBA: 0x2000)
        for engine in [tunnel.a, tunnel.b] {
            try engine.deleteSA(old.outboundOfA)
            try engine.deleteSA(old.outboundOfB)
        }
        let packets = (1...3).map { ipv4Packet(from: "10.1.0.5", to: "10.2.0.7", payload: [UInt8($0)]) }
        let buffer = PacketBuffer()
        #expect(tunnel.a.encapsulate(buffer: buffer.raw, payload: buffer.load(packets[0])) == .held)
        #expect(tunnel.a.encapsulate(buffer: buffer.raw, payload: buffer.load(packets[1])) == .held)
        #expect(tunnel.a.encapsulate(buffer: buffer.raw, payload: buffer.load(packets[2])) == .drop(.noSA))
        #expect(tunnel.a.takeReleased().isEmpty && tunnel.a.heldCount == 2)

        // The next peer's (here: new) SAs arrive: the held packets are released, in order, and go out under them.
        try tunnel.establish(.aes128gcm16, nil, spiAB: 0x3000, spiBA: 0x4000, policies: false)
        #expect(signals.all.count == 1)
        let released = tunnel.a.takeReleased()
        #expect(released == Array(packets[0...1]))
        for packet in released {
            let (datagram, _) = try #require(tunnel.seal(tunnel.a, packet))
            #expect(tunnel.open(tunnel.b, datagram, from: Tunnel.addressA).1 == packet)
        }
        #expect(tunnel.a.counters.held == 2 && tunnel.a.counters.released == 2 && tunnel.a.heldCount == 0)
    }

    @Test func heldPacketsAreForgottenWhenTheirPolicyGoes() throws {
        let tunnel = Tunnel(holdQueueLimit: 4)
        let child = try tunnel.establish(.aes128gcm16, nil, spiAB: 0x1000, spiBA: 0x2000)
        try tunnel.a.deleteSA(child.outboundOfA)
        let buffer = PacketBuffer()
        let inner = ipv4Packet(from: "10.1.0.5", to: "10.2.0.7", payload: [1])
        #expect(tunnel.a.encapsulate(buffer: buffer.raw, payload: buffer.load(inner)) == .held)
        tunnel.a.setPolicies([:])
        #expect(tunnel.a.heldCount == 0)
    }

    @Test func innerPacketsOutsideTheInboundSelectorsAreDropped() throws {
        let tunnel = Tunnel()
        let child = try tunnel.establish(.aes128gcm16, nil, spiAB: 0x1000, spiBA: 0x2000)
        // A sends for a wider range than B accepts (a peer bug or a hostile peer): B refuses after decrypting.
        try tunnel.a.addPolicy(
            PolicyID(selector: PolicySelector(source: try IPPrefix.parse("10.9.0.0/24"), destination: Tunnel.subnetB), direction: .outbound),
            PolicyRequest(action: .protect(PolicyTemplate(source: Tunnel.addressA, destination: Tunnel.addressB, reqid: 1)), priority: 100))
        let (datagram, _) = try #require(tunnel.seal(tunnel.a, ipv4Packet(from: "10.9.0.5", to: "10.2.0.7", payload: [1])))
        #expect(tunnel.open(tunnel.b, datagram, from: Tunnel.addressA).0 == .drop(.selectorMismatch))
        #expect(tunnel.b.counters(child.outboundOfA)?.selectorMismatches == 1)
        #expect(tunnel.b.counters(child.outboundOfA)?.packets == 0)
    }

    @Test func ikeMarkerKeepaliveAndUnknownSPIAreClassified() throws {
        let tunnel = Tunnel()
        try tunnel.establish(.aes128gcm16, nil, spiAB: 0x1000, spiBA: 0x2000)
        #expect(tunnel.open(tunnel.b, [0xFF], from: Tunnel.addressA).0 == .natKeepalive)
        let ike: [UInt8] = [0, 0, 0, 0] + Array(repeating: 0x11, count: 28)
        #expect(tunnel.open(tunnel.b, ike, from: Tunnel.addressA).0 == .ike(message: 4..<32))
        #expect(tunnel.open(tunnel.b, [0, 0, 0x99, 0x99] + Array(repeating: 0, count: 40), from: Tunnel.addressA).0
            == .drop(.unknownSPI))
        #expect(tunnel.open(tunnel.b, [1, 2, 3], from: Tunnel.addressA).0 == .drop(.malformed))
        let counters = tunnel.b.counters
        #expect(counters.natKeepalives == 1 && counters.ikeDatagrams == 1 && counters[.unknownSPI] == 1)
    }

    @Test func afterARekeyTrafficContinuesWithoutLoss() throws {
        let tunnel = Tunnel()
        let old = try tunnel.establish(.aes128cbc, .hmacSHA2_256_128, spiAB: 0x1000, spiBA: 0x2000)
        var inFlight: [[UInt8]] = []
        for index in 0..<10 {
            let inner = ipv4Packet(from: "10.1.0.5", to: "10.2.0.7", payload: [UInt8(index)])
            inFlight.append(try #require(tunnel.seal(tunnel.a, inner)).datagram)
        }
        // CREATE_CHILD_SA installs the new pair next to the old (RFC 7296 §2.8): new outbound wins at once.
        let new = try tunnel.establish(.aes128cbc, .hmacSHA2_256_128, spiAB: 0x3000, spiBA: 0x4000, policies: false)
        var delivered = 0
        for index in 10..<20 {
            let inner = ipv4Packet(from: "10.1.0.5", to: "10.2.0.7", payload: [UInt8(index)])
            let (datagram, _) = try #require(tunnel.seal(tunnel.a, inner))
            #expect(Array(datagram[0..<4]) == [0, 0, 0x30, 0x00])
            if tunnel.open(tunnel.b, datagram, from: Tunnel.addressA).1 == inner { delivered += 1 }
        }
        // Packets sealed under the old SA that arrive late are still accepted until the old SA is deleted.
        for datagram in inFlight where tunnel.open(tunnel.b, datagram, from: Tunnel.addressA).1 != nil { delivered += 1 }
        #expect(delivered == 20)
        for engine in [tunnel.a, tunnel.b] {
            try engine.deleteSA(old.outboundOfA)
            try engine.deleteSA(old.outboundOfB)
        }
        #expect(tunnel.sendAToB([42]) != nil)
        #expect(tunnel.b.counters(new.outboundOfA)?.packets == 11)
    }

    @Test func countersAndLastInboundAdvanceWithTrafficAndNotWithout() throws {
        let tunnel = Tunnel()
        let child = try tunnel.establish(.aes128gcm16, nil, spiAB: 0x1000, spiBA: 0x2000)
        let before = try #require(tunnel.b.counters(child.outboundOfA))
        #expect(before.packets == 0 && before.bytes == 0 && before.lastUsed == nil)
        #expect(try tunnel.b.querySA(child.outboundOfA).lastUsedAtSeconds == nil)

        tunnel.clock.advance(.seconds(5))
        #expect(tunnel.sendAToB(Array(repeating: 1, count: 80)) != nil)
        let first = try #require(tunnel.b.counters(child.outboundOfA))
        #expect(first.packets == 1 && first.bytes == 100 && first.lastUsed == tunnel.clock.now)
        let state = try tunnel.b.querySA(child.outboundOfA)
        #expect(state.packets == 1 && state.bytes == 100 && state.lastUsedAtSeconds == 1_700_000_000)

        // Time passes without traffic: nothing moves (what on-demand DPD relies on).
        tunnel.clock.advance(.seconds(30))
        #expect(tunnel.b.counters(child.outboundOfA) == first)
        // A replayed or forged packet is not traffic either.
        let (datagram, _) = try #require(tunnel.seal(tunnel.a, ipv4Packet(from: "10.1.0.5", to: "10.2.0.7", payload: [1])))
        #expect(tunnel.open(tunnel.b, datagram, from: Tunnel.addressA).1 != nil)
        let second = try #require(tunnel.b.counters(child.outboundOfA))
        #expect(second.packets == 2 && second.lastUsed == tunnel.clock.now)
        tunnel.clock.advance(.seconds(1))
        _ = tunnel.open(tunnel.b, datagram, from: Tunnel.addressA)
        #expect(tunnel.b.counters(child.outboundOfA)?.lastUsed == second.lastUsed)
        #expect(tunnel.b.counters(child.outboundOfA)?.packets == 2)
        // The sender's outbound SA counts too.
        #expect(tunnel.a.counters(child.outboundOfA)?.packets == 2)
    }

    @Test func packetLifetimesExpireTheSA() throws {
        let tunnel = Tunnel()
        let child = try tunnel.establish(
            .aes128gcm16, nil, spiAB: 0x1000, spiBA: 0x2000, lifetime: SALifetime(softPackets: 2, hardPackets: 3))
        #expect(tunnel.sendAToB([1]) != nil)
        #expect(tunnel.a.counters(child.outboundOfA)?.softExpired == false)
        #expect(tunnel.eventsOfA.all.isEmpty)
        #expect(tunnel.sendAToB([2]) != nil)
        #expect(tunnel.a.counters(child.outboundOfA)?.softExpired == true)
        #expect(tunnel.eventsOfA.all == [.soft])
        #expect(tunnel.sendAToB([3]) != nil)
        #expect(tunnel.sendAToB([4]) == nil)
        #expect(tunnel.sendAToB([5]) == nil)
        let counters = try #require(tunnel.a.counters(child.outboundOfA))
        #expect(counters.hardExpired && counters.expiredDrops == 2 && counters.packets == 3)
        #expect(tunnel.eventsOfA.all == [.soft, .hard])
    }

    @Test func secondsLifetimesExpireOnTheInjectedClock() throws {
        let tunnel = Tunnel()
        let child = try tunnel.establish(
            .aes128gcm16, nil, spiAB: 0x1000, spiBA: 0x2000, lifetime: SALifetime(softSeconds: 60, hardSeconds: 90))
        tunnel.a.expireByTime()
        #expect(tunnel.eventsOfA.all.isEmpty)
        tunnel.clock.advance(.seconds(60))
        tunnel.a.expireByTime()
        tunnel.a.expireByTime()
        #expect(tunnel.eventsOfA.all == [.soft, .soft])  // once for each of A's two SAs
        #expect(tunnel.sendAToB([1]) != nil)
        tunnel.clock.advance(.seconds(30))
        tunnel.a.expireByTime()
        #expect(tunnel.eventsOfA.all == [.soft, .soft, .hard, .hard])
        #expect(tunnel.sendAToB([2]) == nil)
        #expect(tunnel.a.counters(child.outboundOfA)?.expiredDrops == 1)
    }

    @Test func theSequenceNumberNeverCycles() throws {
        let tunnel = Tunnel()
        let child = try tunnel.establish(.aes128gcm16, nil, spiAB: 0x1000, spiBA: 0x2000)
        let sa = try #require(tunnel.a.securityAssociation(child.outboundOfA))
        sa.state.withLock { $0.nextSequenceNumber = .max - 1 }
        let inner = ipv4Packet(from: "10.1.0.5", to: "10.2.0.7", payload: [1])
        let (first, _) = try #require(tunnel.seal(tunnel.a, inner))
        let (last, _) = try #require(tunnel.seal(tunnel.a, inner))
        #expect(Array(first[4..<8]) == [0xFF, 0xFF, 0xFF, 0xFE])
        #expect(Array(last[4..<8]) == [0xFF, 0xFF, 0xFF, 0xFF])
        // RFC 4303 §3.3.3: no packet with sequence number 0 (or any reused number) ever leaves.
        #expect(tunnel.seal(tunnel.a, inner) == nil)
        #expect(tunnel.eventsOfA.all == [.hard])
        #expect(tunnel.a.counters[.expired] == 1)
    }

    @Test func kernelProtocolRefusesLikeTheKernel() throws {
        let tunnel = Tunnel()
        let child = try tunnel.establish(.aes128gcm16, nil, spiAB: 0x1000, spiBA: 0x2000)
        let request = SARequest(
            source: Tunnel.addressA, destination: Tunnel.addressB, reqid: 1, encryption: .aes128gcm16,
            encryptionKey: Array(repeating: 1, count: 20), integrity: nil)
        #expect(throws: KernelError.self) { try tunnel.a.addSA(child.outboundOfA, request) }
        do {
            try tunnel.a.addSA(child.outboundOfA, request)
        } catch {
            #expect(error.code == .alreadyExists)
        }
        let missing = SAID(destination: Tunnel.addressB, spi: 0x7777)
        do {
            try tunnel.a.deleteSA(missing)
            Issue.record("deleting a missing SA succeeded")
        } catch {
            #expect(error.code == .notFound)
        }
        var short = request
        short.encryptionKey = [1, 2, 3]
        do {
            try tunnel.a.addSA(missing, short)
            Issue.record("a short key was accepted")
        } catch {
            #expect(error.code == .other && error.errno == KernelError.Errno.EINVAL)
        }
        #expect(try tunnel.a.listSAs().count == 2)
        #expect(try tunnel.a.listPolicies().count == 3)
    }

    @Test func ipv6InnerPacketsOverIPv6OuterAddresses() throws {
        let clock = ManualClock()
        let a = ESPEngine(clock: clock.function)
        let b = ESPEngine(clock: clock.function)
        let outerA = try #require(IPAddress("2001:db8::1"))
        let outerB = try #require(IPAddress("2001:db8::2"))
        let local = try IPPrefix.parse("fd00:1::/64")
        let remote = try IPPrefix.parse("fd00:2::/64")
        let id = SAID(destination: outerB, spi: 0x5000)
        let key = keys(.aes256gcm16, nil, label: 5).enc
        for engine in [a, b] {
            try engine.addSA(id, SARequest(
                source: outerA, destination: outerB, reqid: 7, encryption: .aes256gcm16, encryptionKey: key, integrity: nil))
        }
        try a.addPolicy(
            PolicyID(selector: PolicySelector(source: local, destination: remote), direction: .outbound),
            PolicyRequest(action: .protect(PolicyTemplate(source: outerA, destination: outerB, reqid: 7)), priority: 1))
        try b.addPolicy(
            PolicyID(selector: PolicySelector(source: local, destination: remote), direction: .forward),
            PolicyRequest(action: .protect(PolicyTemplate(source: outerA, destination: outerB, reqid: 7)), priority: 1))
        // RFC 8200 header: version 6, payload length 4, next header 59, hop limit 64, fd00:1::5 → fd00:2::7.
        let inner: [UInt8] = [0x60, 0, 0, 0, 0, 4, 59, 64] + IPAddress("fd00:1::5")!.bytes + IPAddress("fd00:2::7")!.bytes
            + [1, 2, 3, 4]
        let buffer = PacketBuffer()
        guard case .send(let packet, let peer) = a.encapsulate(buffer: buffer.raw, payload: buffer.load(inner)) else {
            Issue.record("not sent")
            return
        }
        #expect(peer == Endpoint(outerB, 4500))
        let datagram = buffer[packet]
        let receive = PacketBuffer()
        let verdict = b.decapsulate(buffer: receive.raw, datagram: receive.load(datagram, at: 0), source: Endpoint(outerA, 4500))
        guard case .deliver(let range) = verdict else {
            Issue.record("\(verdict)")
            return
        }
        #expect(receive[range] == inner)
        // Delivery also proves the trailer said IPv6 (Next Header 41, RFC 4303 §2.6): the engine checks it.
        #expect(b.counters(id)?.packets == 1)
    }
}
