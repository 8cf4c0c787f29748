import Testing
import VigilAlgorithms
@testable import VigilCrypto

@Suite struct HMACTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        let name: String
        let hash: HMAC.Hash
        let key: [UInt8]
        let data: [UInt8]
        let expected: [UInt8]
        var testDescription: String { name }
    }

    static let vectors: [Vector] = [
        // RFC 2202 §3 test cases 1 and 2 (HMAC-SHA-1).
        Vector(name: "RFC 2202 case 1", hash: .sha1, key: repeated(0x0b, 20), data: bytes("Hi There"),
               expected: hex("b617318655057264e28bc0b6fb378c8ef146be00")),
        Vector(name: "RFC 2202 case 2", hash: .sha1, key: bytes("Jefe"), data: bytes("what do ya want for nothing?"),
               expected: hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")),
        // RFC 4231 §4.2 test case 1.
        Vector(name: "RFC 4231 case 1 SHA-256", hash: .sha256, key: repeated(0x0b, 20), data: bytes("Hi There"),
               expected: hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")),
        Vector(name: "RFC 4231 case 1 SHA-384", hash: .sha384, key: repeated(0x0b, 20), data: bytes("Hi There"),
               expected: hex("afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6")),
        Vector(name: "RFC 4231 case 1 SHA-512", hash: .sha512, key: repeated(0x0b, 20), data: bytes("Hi There"),
               expected: hex("87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854")),
        // RFC 4231 §4.3 test case 2 (key shorter than the output).
        Vector(name: "RFC 4231 case 2 SHA-256", hash: .sha256, key: bytes("Jefe"), data: bytes("what do ya want for nothing?"),
               expected: hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")),
        Vector(name: "RFC 4231 case 2 SHA-384", hash: .sha384, key: bytes("Jefe"), data: bytes("what do ya want for nothing?"),
               expected: hex("af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649")),
        Vector(name: "RFC 4231 case 2 SHA-512", hash: .sha512, key: bytes("Jefe"), data: bytes("what do ya want for nothing?"),
               expected: hex("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737")),
        // RFC 4231 §4.7 test case 6 (key longer than the block: hashed first).
        Vector(name: "RFC 4231 case 6 SHA-256", hash: .sha256, key: repeated(0xaa, 131),
               data: bytes("Test Using Larger Than Block-Size Key - Hash Key First"),
               expected: hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")),
    ]

    @Test(arguments: vectors)
    func knownAnswer(_ vector: Vector) {
        #expect(HMAC.compute(vector.hash, key: SecureBytes(vector.key), data: vector.data).bytes == vector.expected)
    }

    @Test func prfComputeIsHMACWithTheNegotiatedHash() {
        // RFC 4868 §2.7.1: PRF_HMAC_SHA2_256 is plain HMAC-SHA-256 (its test 1, key 0x0b × 32).
        let out = PRF.compute(.hmacSHA2_256, key: SecureBytes(repeated(0x0b, 32)), data: bytes("Hi There"))
        #expect(out.bytes == hex("198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"))
        for prf in PseudorandomFunction.allCases {
            #expect(PRF.compute(prf, key: SecureBytes(bytes("Jefe")), data: []).count == prf.outputLength)
        }
    }

    @Test func emptyKeyIsAValidHMACKey() {
        // HMAC pads any key to the block size; an empty key equals an all-zero block-size key.
        let empty = HMAC.compute(.sha256, key: SecureBytes([]), data: bytes("x"))
        let zeros = HMAC.compute(.sha256, key: SecureBytes(repeated(0, 64)), data: bytes("x"))
        #expect(empty == zeros)
        #expect(empty != HMAC.compute(.sha256, key: SecureBytes([1]), data: bytes("x")))
    }
}

@Suite struct PRFPlusTests {
    @Test(arguments: PseudorandomFunction.allCases)
    func followsRFC7296Construction(_ prf: PseudorandomFunction) {
        // RFC 7296 §2.13: T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02), T3 = prf(K, T2 | S | 0x03).
        let key = SecureBytes(hex("000102030405060708090a0b0c0d0e0f"))
        let seed = bytes("Ni | Nr | SPIi | SPIr")
        let t1 = PRF.compute(prf, key: key, data: seed + [1])
        let t2 = PRF.compute(prf, key: key, data: t1.bytes + seed + [2])
        let t3 = PRF.compute(prf, key: key, data: t2.bytes + seed + [3])
        let length = 2 * prf.outputLength + 7
        let out = PRF.plus(prf, key: key, seed: seed, length: length)
        #expect(out.bytes == Array((t1 + t2 + t3).bytes[0..<length]))
    }

    @Test func truncatesAndPrefixesConsistently() {
        let key = SecureBytes(repeated(0x42, 32))
        let long = PRF.plus(.hmacSHA2_256, key: key, seed: [9, 9], length: 100)
        let short = PRF.plus(.hmacSHA2_256, key: key, seed: [9, 9], length: 33)
        #expect(long.count == 100)
        #expect(short.bytes == Array(long.bytes[0..<33]))
        #expect(PRF.plus(.hmacSHA2_256, key: key, seed: [9, 9], length: 0).isEmpty)
    }

    @Test func producesUpTo255Blocks() {
        let out = PRF.plus(.hmacSHA1, key: SecureBytes([1]), seed: [], length: 255 * 20)
        #expect(out.count == 255 * 20)
        // The last block differs from the first: the counter went all the way to 0xff.
        #expect(out[0..<20] != out[(254 * 20)...])
    }
}

@Suite struct HashTests {
    @Test func fips180Abc() {
        // FIPS 180-2 appendix examples, message "abc".
        #expect(Hash.digest(.sha1, bytes("abc")) == hex("a9993e364706816aba3e25717850c26c9cd0d89d"))
        #expect(Hash.digest(.sha256, bytes("abc")) == hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
        #expect(Hash.digest(.sha384, bytes("abc")) == hex("cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"))
        #expect(Hash.digest(.sha512, bytes("abc")) == hex("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"))
    }

    @Test func emptyMessage() {
        #expect(Hash.digest(.sha256, []) == hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
    }
}
