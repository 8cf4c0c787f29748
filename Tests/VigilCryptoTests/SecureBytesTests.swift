import Synchronization
import Testing
@testable import VigilCrypto

/// Collects what the wipe observer saw on this task.
final class WipeLog: Sendable {
    private let seen = Mutex<[[UInt8]]>([])
    func record(_ bytes: [UInt8]) { seen.withLock { $0.append(bytes) } }
    var buffers: [[UInt8]] { seen.withLock { $0 } }
}

@Suite struct SecureBytesTests {
    @Test func storageIsZeroedWhenLastCopyIsDropped() {
        let log = WipeLog()
        SecureBytes.withWipeObserver(log.record) {
            var secret: SecureBytes? = SecureBytes([0xde, 0xad, 0xbe, 0xef])
            let copy = secret
            secret = nil
            #expect(log.buffers.isEmpty, "storage freed while a copy was alive")
            #expect(copy?.bytes == [0xde, 0xad, 0xbe, 0xef])
        }
        #expect(log.buffers == [[0, 0, 0, 0]])
    }

    @Test func derivedSecretsAndIntermediatesAreWiped() throws {
        let log = WipeLog()
        try SecureBytes.withWipeObserver(log.record) {
            let a = try KeyExchange(group: .curve25519)
            let b = try KeyExchange(group: .curve25519)
            let shared = try a.sharedSecret(peerPublicValue: b.publicValue)
            let keyMaterial = PRF.plus(.hmacSHA2_256, key: shared, seed: [1, 2, 3], length: 100)
            _ = keyMaterial[0..<32] + keyMaterial[32..<64]
        }
        // shared (32), prf+ output (100), the four prf+ blocks, the two slices and their concatenation, the empty
        // "previous" block: every one zero, none lost.
        #expect(log.buffers.contains { $0.count == 32 })
        #expect(log.buffers.contains { $0.count == 100 })
        #expect(log.buffers.contains { $0.count == 64 })
        #expect(log.buffers.count >= 9)
        #expect(log.buffers.allSatisfy { $0.allSatisfy { $0 == 0 } })
    }

    @Test func slicingAndConcatenation() {
        let secret = SecureBytes(Array(0..<10))
        #expect(secret.count == 10)
        #expect(secret[2..<5].bytes == [2, 3, 4])
        #expect(secret[7...].bytes == [7, 8, 9])
        #expect(secret[..<2].bytes == [0, 1])
        #expect((secret[0..<3] + secret[8..<10]).bytes == [0, 1, 2, 8, 9])
        #expect(SecureBytes(count: 3).bytes == [0, 0, 0])
        #expect(secret.withUnsafeBytes { $0.reduce(0) { $0 + Int($1) } } == 45)
    }

    @Test func equalityAndDescriptionNeverShowContents() {
        let a = SecureBytes([1, 2, 3])
        #expect(a == SecureBytes([1, 2, 3]))
        #expect(a != SecureBytes([1, 2, 4]))
        #expect(a != SecureBytes([1, 2]))
        #expect(a.hashValue == SecureBytes([9, 9, 9]).hashValue)
        #expect(String(describing: SecureBytes([0x41, 0x42])) == "SecureBytes(2 bytes)")
    }

    @Test func constantTimeEqualsComparesContentsAndLength() {
        #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(constantTimeEquals([UInt8](), [UInt8]()))
        // Non-contiguous collections too.
        #expect(constantTimeEquals([1, 2, 3][1...], (2...3).map { UInt8($0) }.reversed().reversed()))
    }

    @Test func randomBytesAreFreshAndSized() {
        let a = Random.bytes(32)
        let b = Random.bytes(32)
        #expect(a.count == 32)
        #expect(a != b)
        #expect(Random.bytes(0).isEmpty)
        var generator = OpenSSLRandomNumberGenerator()
        #expect(generator.next() != generator.next())
    }
}
