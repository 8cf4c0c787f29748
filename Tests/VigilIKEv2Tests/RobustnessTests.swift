import Testing
import VigilAddressing
import VigilWire
@testable import VigilIKEv2

/// Mutated datagrams from a real conversation: the engine must never crash, no tampered protected message may
/// count as authenticated, and no tampered datagram may end a negotiation.
@Suite struct RobustnessTests {
    /// Every datagram of IKE_SA_INIT, IKE_AUTH, a liveness check and a Child SA rekey, with the endpoint states
    /// just before each was delivered.
    static func conversation() throws -> [(datagram: Datagram, receiver: IKEv2Endpoint)] {
        var lockstep = Lockstep(
            west: Fixtures.connection(west: true, ike: "aes128gcm16-prfsha256-x25519"),
            east: Fixtures.connection(west: false, ike: "aes128gcm16-prfsha256-x25519"))
        var recorded: [(Datagram, IKEv2Endpoint)] = []
        var pending = lockstep.westHandles(.initiate(connection: "EAST/10", peer: Lockstep.eastAddress)).sent
        func drain() {
            while !pending.isEmpty {
                let next = pending.removeFirst()
                recorded.append((next, next.to.address == Lockstep.eastAddress ? lockstep.east : lockstep.west))
                pending += lockstep.deliver(next).sent
            }
        }
        drain()
        let id = try #require(lockstep.west.ikeSAs.first?.id)
        pending = lockstep.westHandles(.sendLivenessCheck(id)).sent
        drain()
        let child = try #require(lockstep.east.childSAs.first)
        pending = lockstep.eastHandles(.rekeyChildSA(child.id)).sent
        drain()
        return recorded
    }

    @Test func mutatedDatagramsNeverCrashAndNeverAuthenticate() throws {
        let conversation = try Self.conversation()
        #expect(conversation.count >= 8)
        var random = SeededGenerator(seed: 2026)
        var rejected = 0
        for (datagram, receiver) in conversation {
            let isProtected = (try? IKEv2.Message.parse(datagram.bytes))?.header.exchangeType != .ikeSAInit
            for round in 0..<150 {
                var bytes = datagram.bytes
                switch round % 3 {
                case 0:
                    let index = Int(random.next() % UInt64(bytes.count))
                    bytes[index] ^= UInt8(1 << (random.next() % 8))
                case 1:
                    bytes = Array(bytes.prefix(Int(random.next() % UInt64(bytes.count))))
                default:
                    let index = Int(random.next() % UInt64(bytes.count))
                    bytes[index] = UInt8(truncatingIfNeeded: random.next())
                }
                guard bytes != datagram.bytes else { continue }
                var endpoint = receiver
                var rng = SeededGenerator(seed: UInt64(round))
                let actions = endpoint.handle(.datagramReceived(bytes: bytes, from: datagram.from, to: datagram.to), now: .seconds(1), random: &rng)
                if isProtected {
                    #expect(!actions.contains { if case .authenticatedMessageReceived = $0 { true } else { false } },
                            "a tampered protected message was accepted")
                }
                // Nothing a forger can produce ends a negotiation or counts as a peer's failure (RFC 7296 §2.21.1).
                #expect(actions.failures.isEmpty, "a tampered datagram ended a negotiation: \(actions.failures)")
                if actions.sent.isEmpty { rejected += 1 }
            }
        }
        #expect(rejected > 0)
    }
}
