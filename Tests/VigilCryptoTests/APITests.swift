import Synchronization
import Testing
import VigilAlgorithms
import VigilCrypto  // not @testable: this file sees only the public API the engines use

/// Pins the public API the IKEv2, IKEv1 and ESP engines are written against: a changed signature stops this file
/// compiling. Each test also checks the pinned call does what it says.
@Suite struct PublicAPITests {
    @Test func signaturesAreStable() throws {
        let prfCompute: (PseudorandomFunction, SecureBytes, [UInt8]) -> SecureBytes = PRF.compute(_:key:data:)
        let prfPlus: (PseudorandomFunction, SecureBytes, [UInt8], Int) -> SecureBytes = PRF.plus(_:key:seed:length:)
        let hmac: (HMAC.Hash, SecureBytes, [UInt8]) -> SecureBytes = HMAC.compute(_:key:data:)
        let digest: (HMAC.Hash, [UInt8]) -> [UInt8] = Hash.digest(_:_:)
        let random: (Int) -> [UInt8] = Random.bytes(_:)
        let integrity: (IntegrityAlgorithm, SecureBytes) throws(CryptoError) -> IntegrityContext = IntegrityContext.init(_:key:)
        let cbc: (EncryptionAlgorithm, SecureBytes) throws(CryptoError) -> CBCContext = CBCContext.init(_:key:)
        let gcm: (EncryptionAlgorithm, SecureBytes) throws(CryptoError) -> GCMContext = GCMContext.init(_:keyMaterial:)
        let exchange: (DHGroup) throws(CryptoError) -> KeyExchange = KeyExchange.init(group:)

        let key = SecureBytes(count: 32)
        #expect(prfCompute(.hmacSHA2_256, key, [1]) == hmac(.sha256, key, [1]))
        #expect(prfPlus(.hmacSHA2_256, key, [1], 40).count == 40)
        #expect(digest(.sha1, []).count == 20)
        #expect(random(5).count == 5)
        let mac = try integrity(.hmacSHA2_256_128, key)
        let macBytes: ([UInt8]) -> [UInt8] = mac.mac(_:)
        let verify: ([UInt8], [UInt8]) -> Bool = mac.verify(_:icv:)
        #expect(verify([1, 2], macBytes([1, 2])))
        let cipher = try cbc(.aes256cbc, key)
        let encrypt: ([UInt8], [UInt8]) throws(CryptoError) -> [UInt8] = cipher.encrypt(_:iv:)
        let decrypt: ([UInt8], [UInt8]) throws(CryptoError) -> [UInt8] = cipher.decrypt(_:iv:)
        #expect(try decrypt(try encrypt(repeated(3, 32), repeated(4, 16)), repeated(4, 16)) == repeated(3, 32))
        let aead = try gcm(.aes128gcm16, SecureBytes(count: 20))
        let seal: ([UInt8], [UInt8], [UInt8]) throws(CryptoError) -> [UInt8] = aead.seal(iv:aad:plaintext:)
        let open: ([UInt8], [UInt8], [UInt8]) throws(CryptoError) -> [UInt8] = aead.open(iv:aad:ciphertextAndTag:)
        #expect(try open(repeated(1, 8), [9], try seal(repeated(1, 8), [9], [5, 6])) == [5, 6])
        let ke = try exchange(.ecp256)
        let shared: ([UInt8]) throws(CryptoError) -> SecureBytes = ke.sharedSecret(peerPublicValue:)
        #expect(try shared(try exchange(.ecp256).publicValue).count == 32)
        #expect(ke.group == .ecp256)
    }

    @Test func secretDataOverloadsMatchArrayOverloads() {
        let key = SecureBytes(Array(0..<32))
        let secret = SecureBytes(repeated(0x77, 48))
        #expect(PRF.compute(.hmacSHA2_384, key: key, data: secret) == PRF.compute(.hmacSHA2_384, key: key, data: secret.bytes))
        #expect(HMAC.compute(.sha1, key: key, data: secret) == HMAC.compute(.sha1, key: key, data: secret.bytes))
        #expect(PRF.plus(.hmacSHA2_512, key: key, seed: secret, length: 130)
                == PRF.plus(.hmacSHA2_512, key: key, seed: secret.bytes, length: 130))
    }

    @Test func unsafeVerifyFastPath() throws {
        let context = try IntegrityContext(.hmacSHA2_512_256, key: SecureBytes(repeated(9, 64)))
        let data = repeated(0xab, 1400)
        var icv = context.mac(data)
        #expect(data.withUnsafeBytes { data in icv.withUnsafeBytes { context.verify(data, icv: $0) } })
        icv[31] ^= 0x40
        #expect(!data.withUnsafeBytes { data in icv.withUnsafeBytes { context.verify(data, icv: $0) } })
    }

    @Test func contextsAreSafeToShareAcrossTasks() async throws {
        // One SA's contexts used by many tasks at once (e.g. several ESP workers): every result stays correct.
        let integrity = try IntegrityContext(.hmacSHA2_256_128, key: SecureBytes(repeated(1, 32)))
        let gcm = try GCMContext(.aes256gcm16, keyMaterial: SecureBytes(repeated(2, 36)))
        let cbc = try CBCContext(.aes128cbc, key: SecureBytes(repeated(3, 16)))
        let packets = (0..<64).map { n in (0..<(16 * (n % 8 + 1))).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ n) } }
        let expectedICVs = packets.map { integrity.mac($0) }
        let expectedSealed = try packets.map { try gcm.seal(iv: repeated(UInt8($0.count), 8), aad: [1], plaintext: $0) }
        let expectedCBC = try packets.map { try cbc.encrypt($0, iv: repeated(UInt8($0.count), 16)) }
        let mismatches = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    var wrong = 0
                    for round in 0..<20 {
                        for index in packets.indices where (index + round + worker) % 3 == 0 {
                            let packet = packets[index]
                            if integrity.mac(packet) != expectedICVs[index] { wrong += 1 }
                            let iv = repeated(UInt8(packet.count), 8)
                            if try gcm.open(iv: iv, aad: [1], ciphertextAndTag: expectedSealed[index]) != packet { wrong += 1 }
                            if try gcm.seal(iv: iv, aad: [1], plaintext: packet) != expectedSealed[index] { wrong += 1 }
                            let cbcIV = repeated(UInt8(packet.count), 16)
                            if try cbc.decrypt(expectedCBC[index], iv: cbcIV) != packet { wrong += 1 }
                            if try cbc.encrypt(packet, iv: cbcIV) != expectedCBC[index] { wrong += 1 }
                        }
                    }
                    return wrong
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(mismatches == 0)
    }

    @Test func errorsCarryStableCodesAndOpenSSLText() {
        do {
            _ = try KeyExchange(group: .ecp384).sharedSecret(peerPublicValue: repeated(1, 96))
            Issue.record("an off-curve P-384 point was accepted")
        } catch {
            #expect(error.code == .invalidPeerPublicValue)
            #expect(!error.detail.isEmpty)
            #expect(error.description.contains("invalidPeerPublicValue"))
        }
    }
}
