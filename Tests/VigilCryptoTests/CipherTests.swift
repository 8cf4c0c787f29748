import Testing
import VigilAlgorithms
@testable import VigilCrypto

@Suite struct CBCTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        let name: String
        let algorithm: EncryptionAlgorithm
        let key: [UInt8]
        let iv: [UInt8]
        let plaintext: [UInt8]
        let ciphertext: [UInt8]
        var testDescription: String { name }
    }

    static let vectors: [Vector] = [
        // RFC 3602 §4 case #1 and #2 (AES-128-CBC).
        Vector(name: "RFC 3602 case 1", algorithm: .aes128cbc, key: hex("06a9214036b8a15b512e03d534120006"),
               iv: hex("3dafba429d9eb430b422da802c9fac41"), plaintext: bytes("Single block msg"),
               ciphertext: hex("e353779c1079aeb82708942dbe77181a")),
        Vector(name: "RFC 3602 case 2", algorithm: .aes128cbc, key: hex("c286696d887c9aa0611bbb3e2025a45a"),
               iv: hex("562e17996d093d28ddb3ba695a2e6f58"), plaintext: (0..<32).map { UInt8($0) },
               ciphertext: hex("d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1")),
        // NIST SP 800-38A F.2.5 CBC-AES256.Encrypt, first block (RFC 3602 has no 256-bit case).
        Vector(name: "SP 800-38A F.2.5", algorithm: .aes256cbc,
               key: hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"),
               iv: hex("000102030405060708090a0b0c0d0e0f"), plaintext: hex("6bc1bee22e409f96e93d7e117393172a"),
               ciphertext: hex("f58c4c04d6e5f1ba779eabfb5f7bfbd6")),
    ]

    @Test(arguments: vectors)
    func knownAnswer(_ vector: Vector) throws {
        let context = try CBCContext(vector.algorithm, key: SecureBytes(vector.key))
        #expect(try context.encrypt(vector.plaintext, iv: vector.iv) == vector.ciphertext)
        #expect(try context.decrypt(vector.ciphertext, iv: vector.iv) == vector.plaintext)
        // Interleaved directions on one context keep their own key schedules and fresh IVs.
        #expect(try context.encrypt(vector.plaintext, iv: vector.iv) == vector.ciphertext)
    }

    @Test(arguments: vectors)
    func inPlace(_ vector: Vector) throws {
        let context = try CBCContext(vector.algorithm, key: SecureBytes(vector.key))
        var buffer = vector.plaintext
        try buffer.withUnsafeMutableBytes { buffer in
            try vector.iv.withUnsafeBytes { try context.encrypt(inPlace: buffer, iv: $0) }
        }
        #expect(buffer == vector.ciphertext)
        try buffer.withUnsafeMutableBytes { buffer in
            try vector.iv.withUnsafeBytes { try context.decrypt(inPlace: buffer, iv: $0) }
        }
        #expect(buffer == vector.plaintext)
    }

    @Test func rejectsBadLengths() throws {
        let context = try CBCContext(.aes128cbc, key: SecureBytes(repeated(7, 16)))
        #expect(throws: CryptoError.self) { try context.encrypt(repeated(0, 15), iv: repeated(0, 16)) }
        #expect(throws: CryptoError.self) { try context.encrypt(repeated(0, 16), iv: repeated(0, 8)) }
        #expect(throws: CryptoError.self) { try CBCContext(.aes256cbc, key: SecureBytes(repeated(7, 16))) }
        #expect(throws: CryptoError.self) { try CBCContext(.aes128gcm16, key: SecureBytes(repeated(7, 20))) }
        #expect(try context.encrypt([], iv: repeated(0, 16)) == [])
    }
}

@Suite struct GCMTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        let name: String
        let algorithm: EncryptionAlgorithm
        let key: [UInt8]
        let nonce: [UInt8]  // salt (4) || IV (8)
        let aad: [UInt8]
        let plaintext: [UInt8]
        let ciphertext: [UInt8]
        let tag: [UInt8]
        var testDescription: String { name }
    }

    // McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", test cases 3, 4, 15 and 16 (the 96-bit-IV cases
    // RFC 4106 §8 points to); the 12-byte IV splits as RFC 4106's salt || explicit IV.
    static let key128 = hex("feffe9928665731c6d6a8f9467308308")
    static let key256 = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    static let nonce = hex("cafebabefacedbaddecaf888")
    static let plaintext = hex("""
        d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525\
        b16aedf5aa0de657ba637b391aafd255
        """)
    static let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    static let vectors: [Vector] = [
        Vector(name: "GCM test case 3", algorithm: .aes128gcm16, key: key128, nonce: nonce, aad: [], plaintext: plaintext,
               ciphertext: hex("""
                   42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa05\
                   1ba30b396a0aac973d58e091473f5985
                   """), tag: hex("4d5c2af327cd64a62cf35abd2ba6fab4")),
        Vector(name: "GCM test case 4", algorithm: .aes128gcm16, key: key128, nonce: nonce, aad: aad,
               plaintext: Array(plaintext.dropLast(4)),
               ciphertext: hex("""
                   42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa05\
                   1ba30b396a0aac973d58e091
                   """), tag: hex("5bc94fbc3221a5db94fae95ae7121a47")),
        Vector(name: "GCM test case 15", algorithm: .aes256gcm16, key: key256, nonce: nonce, aad: [], plaintext: plaintext,
               ciphertext: hex("""
                   522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838\
                   c5f61e6393ba7a0abcc9f662898015ad
                   """), tag: hex("b094dac5d93471bdec1a502270e3cc6c")),
        Vector(name: "GCM test case 16", algorithm: .aes256gcm16, key: key256, nonce: nonce, aad: aad,
               plaintext: Array(plaintext.dropLast(4)),
               ciphertext: hex("""
                   522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838\
                   c5f61e6393ba7a0abcc9f662
                   """), tag: hex("76fc6ece0f4e1768cddf8853bb2d551b")),
    ]

    static func context(_ vector: Vector) throws -> GCMContext {
        try GCMContext(vector.algorithm, keyMaterial: SecureBytes(vector.key + vector.nonce[0..<4]))
    }

    @Test(arguments: vectors)
    func knownAnswer(_ vector: Vector) throws {
        let context = try Self.context(vector)
        let iv = Array(vector.nonce[4...])
        let sealed = try context.seal(iv: iv, aad: vector.aad, plaintext: vector.plaintext)
        #expect(sealed == vector.ciphertext + vector.tag)
        #expect(try context.open(iv: iv, aad: vector.aad, ciphertextAndTag: sealed) == vector.plaintext)
    }

    @Test(arguments: vectors)
    func inPlace(_ vector: Vector) throws {
        let context = try Self.context(vector)
        let iv = Array(vector.nonce[4...])
        var buffer = vector.plaintext
        var tag = repeated(0, 16)
        try buffer.withUnsafeMutableBytes { buffer in
            try tag.withUnsafeMutableBytes { tag in
                try iv.withUnsafeBytes { iv in
                    try vector.aad.withUnsafeBytes { try context.seal(iv: iv, aad: $0, inPlace: buffer, tag: tag) }
                }
            }
        }
        #expect(buffer == vector.ciphertext)
        #expect(tag == vector.tag)
        try buffer.withUnsafeMutableBytes { buffer in
            try tag.withUnsafeBytes { tag in
                try iv.withUnsafeBytes { iv in
                    try vector.aad.withUnsafeBytes { try context.open(iv: iv, aad: $0, inPlace: buffer, tag: tag) }
                }
            }
        }
        #expect(buffer == vector.plaintext)
    }

    @Test(arguments: vectors)
    func rejectsTampering(_ vector: Vector) throws {
        let context = try Self.context(vector)
        let iv = Array(vector.nonce[4...])
        let sealed = vector.ciphertext + vector.tag
        for position in [0, vector.ciphertext.count - 1, sealed.count - 1] {
            var tampered = sealed
            tampered[position] ^= 0x01
            #expect(throws: CryptoError.authenticationFailed) {
                try context.open(iv: iv, aad: vector.aad, ciphertextAndTag: tampered)
            }
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try context.open(iv: iv, aad: vector.aad + [0], ciphertextAndTag: sealed)
        }
        var otherIV = iv
        otherIV[7] ^= 1
        #expect(throws: CryptoError.authenticationFailed) {
            try context.open(iv: otherIV, aad: vector.aad, ciphertextAndTag: sealed)
        }
        // The context still opens good packets after failures.
        #expect(try context.open(iv: iv, aad: vector.aad, ciphertextAndTag: sealed) == vector.plaintext)
    }

    @Test func inPlaceOpenWipesBufferOnBadTag() throws {
        let vector = Self.vectors[1]
        let context = try Self.context(vector)
        let iv = Array(vector.nonce[4...])
        var buffer = vector.ciphertext
        var tag = vector.tag
        tag[0] ^= 0xff
        do {
            try buffer.withUnsafeMutableBytes { buffer in
                try tag.withUnsafeBytes { tag in
                    try iv.withUnsafeBytes { iv in
                        try vector.aad.withUnsafeBytes { try context.open(iv: iv, aad: $0, inPlace: buffer, tag: tag) }
                    }
                }
            }
            Issue.record("a bad tag opened")
        } catch {
            #expect(error as? CryptoError == .authenticationFailed)
        }
        #expect(buffer == repeated(0, buffer.count))
    }

    @Test func rejectsBadLengths() throws {
        #expect(throws: CryptoError.self) { try GCMContext(.aes128gcm16, keyMaterial: SecureBytes(repeated(1, 16))) }
        #expect(throws: CryptoError.self) { try GCMContext(.aes256cbc, keyMaterial: SecureBytes(repeated(1, 32))) }
        let context = try GCMContext(.aes256gcm16, keyMaterial: SecureBytes(repeated(1, 36)))
        #expect(throws: CryptoError.self) { try context.seal(iv: repeated(0, 12), aad: [], plaintext: [1]) }
        #expect(throws: CryptoError.self) { try context.open(iv: repeated(0, 8), aad: [], ciphertextAndTag: repeated(0, 15)) }
        // Empty plaintext still authenticates the AAD (IKEv2 messages with only an SK header).
        let sealed = try context.seal(iv: repeated(0, 8), aad: [1, 2, 3], plaintext: [])
        #expect(sealed.count == 16)
        #expect(try context.open(iv: repeated(0, 8), aad: [1, 2, 3], ciphertextAndTag: sealed) == [])
        #expect(throws: CryptoError.authenticationFailed) {
            try context.open(iv: repeated(0, 8), aad: [1, 2, 4], ciphertextAndTag: sealed)
        }
    }
}
