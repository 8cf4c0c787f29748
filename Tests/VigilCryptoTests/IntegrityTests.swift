import Testing
import VigilAlgorithms
@testable import VigilCrypto

@Suite struct IntegrityTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        let algorithm: IntegrityAlgorithm
        let key: [UInt8]
        let data: [UInt8]
        let icv: [UInt8]
        var testDescription: String { algorithm.description }
    }

    static let vectors: [Vector] = [
        // RFC 2404 HMAC-SHA1-96 = RFC 2202 case 1 truncated to 96 bits.
        Vector(algorithm: .hmacSHA1_96, key: repeated(0x0b, 20), data: bytes("Hi There"),
               icv: hex("b617318655057264e28bc0b6")),
        // RFC 4868 §2.7.2.1-3 test case 1 (key 0x0b × hash length, "Hi There"), truncated to half.
        Vector(algorithm: .hmacSHA2_256_128, key: repeated(0x0b, 32), data: bytes("Hi There"),
               icv: hex("198a607eb44bfbc69903a0f1cf2bbdc5")),
        Vector(algorithm: .hmacSHA2_384_192, key: repeated(0x0b, 48), data: bytes("Hi There"),
               icv: hex("b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973")),
        Vector(algorithm: .hmacSHA2_512_256, key: repeated(0x0b, 64), data: bytes("Hi There"),
               icv: hex("637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8")),
    ]

    @Test(arguments: vectors)
    func knownAnswer(_ vector: Vector) throws {
        let context = try IntegrityContext(vector.algorithm, key: SecureBytes(vector.key))
        #expect(context.mac(vector.data) == vector.icv)
        // Reused context: the second packet gives the same answer.
        #expect(context.mac(vector.data) == vector.icv)
        #expect(context.verify(vector.data, icv: vector.icv))
        var tampered = vector.icv
        tampered[tampered.count - 1] ^= 1
        #expect(!context.verify(vector.data, icv: tampered))
        #expect(!context.verify(vector.data, icv: Array(vector.icv.dropLast())))
        var flipped = vector.data
        flipped[0] ^= 0x80
        #expect(!context.verify(flipped, icv: vector.icv))
    }

    @Test(arguments: vectors)
    func fastPathWritesIntoCallerBuffer(_ vector: Vector) throws {
        let context = try IntegrityContext(vector.algorithm, key: SecureBytes(vector.key))
        var icv = [UInt8](repeating: 0xee, count: vector.icv.count)
        vector.data.withUnsafeBytes { data in icv.withUnsafeMutableBytes { context.mac(data, into: $0) } }
        #expect(icv == vector.icv)
    }

    @Test func rejectsWrongKeyLength() {
        #expect(throws: CryptoError.self) { try IntegrityContext(.hmacSHA2_256_128, key: SecureBytes(repeated(1, 20))) }
        do {
            _ = try IntegrityContext(.hmacSHA1_96, key: SecureBytes(repeated(1, 32)))
            Issue.record("a 32-byte key was accepted for HMAC-SHA1-96")
        } catch {
            #expect(error.code == .invalidLength)
        }
    }
}
