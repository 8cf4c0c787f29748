import VigilAlgorithms
import VigilCrypto
import VigilWire

/// The algorithms a Main Mode agreed on (one ISAKMP transform).
struct Phase1Suite: Sendable, Hashable {
    var encryption: EncryptionAlgorithm
    /// RFC 2409: the Hash Algorithm attribute names both the PRF (its HMAC) and the hash for IVs and NAT-D.
    var integrity: IntegrityAlgorithm
    var group: DHGroup
    var lifetimeSeconds: UInt32

    var hash: HMAC.Hash {
        switch integrity {
        case .hmacSHA1_96: .sha1
        case .hmacSHA2_256_128: .sha256
        case .hmacSHA2_384_192: .sha384
        case .hmacSHA2_512_256: .sha512
        }
    }

    var proposal: IKEProposal {
        IKEProposal(encryption: [encryption], integrity: [integrity], prf: [integrity.impliedPRF], dhGroups: [group])
    }
}

/// RFC 2409 §5 key material of one ISAKMP SA and the Appendix B IV chain. A reference type so copies of the SA value
/// share one set of secrets (they are wiped when the last owner drops them).
final class Phase1Keys: @unchecked Sendable {
    static let blockLength = 16
    let suite: Phase1Suite
    let skeyid: SecureBytes
    let skeyidD: SecureBytes
    let skeyidA: SecureBytes
    let skeyidE: SecureBytes
    let cipher: CBCContext
    /// The last ciphertext block of the last Phase 1 message (RFC 2409 Appendix B): the seed of every Phase 2 and
    /// informational IV.
    private(set) var phase1IV: [UInt8]

    /// SKEYID = prf(pre-shared-key, Ni_b | Nr_b); SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0);
    /// SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1); SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2).
    init(suite: Phase1Suite, preSharedKey: SecureBytes, initiatorNonce: [UInt8], responderNonce: [UInt8],
         sharedSecret: SecureBytes, initiatorCookie: UInt64, responderCookie: UInt64,
         initiatorPublic: [UInt8], responderPublic: [UInt8]) throws(CryptoError) {
        self.suite = suite
        let hash = suite.hash
        var cookies = WireWriter(capacity: 16)
        cookies.write(initiatorCookie)
        cookies.write(responderCookie)
        skeyid = HMAC.compute(hash, key: preSharedKey, data: initiatorNonce + responderNonce)
        let gxy = sharedSecret.bytes
        skeyidD = HMAC.compute(hash, key: skeyid, data: gxy + cookies.bytes + [0])
        skeyidA = HMAC.compute(hash, key: skeyid, data: skeyidD.bytes + gxy + cookies.bytes + [1])
        skeyidE = HMAC.compute(hash, key: skeyid, data: skeyidA.bytes + gxy + cookies.bytes + [2])
        // Appendix B: when SKEYID_e is too short, Ka = K1 | K2 | ..., K1 = prf(SKEYID_e, 0), Kn = prf(SKEYID_e, Kn-1).
        let keyLength = suite.encryption.keyBits / 8
        var key = skeyidE
        if key.count < keyLength {
            var block = HMAC.compute(hash, key: skeyidE, data: [0])
            key = block
            while key.count < keyLength {
                block = HMAC.compute(hash, key: skeyidE, data: block.bytes)
                key = key + block
            }
        }
        cipher = try CBCContext(suite.encryption, key: key[0..<keyLength])
        // Appendix B: the first Phase 1 IV is hash(g^xi | g^xr), truncated to the block size.
        phase1IV = Array(Hash.digest(hash, initiatorPublic + responderPublic).prefix(Self.blockLength))
    }

    func prf(_ key: SecureBytes, _ data: [UInt8]) -> [UInt8] { HMAC.compute(suite.hash, key: key, data: data).bytes }

    /// The first IV of a Quick Mode or informational exchange: hash(last Phase 1 block | M-ID).
    func exchangeIV(messageID: UInt32) -> [UInt8] {
        var writer = WireWriter(capacity: 4)
        writer.write(messageID)
        return Array(Hash.digest(suite.hash, phase1IV + writer.bytes).prefix(Self.blockLength))
    }

    /// Encrypts a Phase 1 body (Main Mode 5/6) with the running Phase 1 IV and advances it.
    func encryptPhase1(_ body: [UInt8]) throws(CryptoError) -> [UInt8] {
        let (ciphertext, next) = try encrypt(body, iv: phase1IV)
        phase1IV = next
        return ciphertext
    }

    /// Decrypts a Phase 1 body (Main Mode 5/6) with the running Phase 1 IV without advancing it: the chain moves on
    /// only once the message is verified (`advancePhase1IV`), so noise or a forgery cannot desynchronise it.
    func decryptPhase1(_ ciphertext: [UInt8]) throws(CryptoError) -> (plaintext: [UInt8], nextIV: [UInt8]) {
        try decrypt(ciphertext, iv: phase1IV)
    }

    /// Moves the Phase 1 IV chain to `iv` (after a verified message), returning the IV it replaced.
    @discardableResult
    func advancePhase1IV(_ iv: [UInt8]) -> [UInt8] {
        let previous = phase1IV
        phase1IV = iv
        return previous
    }

    /// Pads to the block size with zeros (RFC 2409 Appendix B leaves padding open; receivers parse by payload
    /// lengths) and encrypts; returns the ciphertext and the next IV (its last block).
    func encrypt(_ body: [UInt8], iv: [UInt8]) throws(CryptoError) -> (ciphertext: [UInt8], nextIV: [UInt8]) {
        var padded = body
        let remainder = padded.count % Self.blockLength
        if remainder != 0 { padded += [UInt8](repeating: 0, count: Self.blockLength - remainder) }
        let ciphertext = try cipher.encrypt(padded, iv: iv)
        return (ciphertext, Array(ciphertext.suffix(Self.blockLength)))
    }

    func decrypt(_ ciphertext: [UInt8], iv: [UInt8]) throws(CryptoError) -> (plaintext: [UInt8], nextIV: [UInt8]) {
        guard !ciphertext.isEmpty, ciphertext.count % Self.blockLength == 0 else {
            throw CryptoError(code: .invalidLength, operation: "ISAKMP decrypt",
                              detail: "\(ciphertext.count) encrypted bytes, not a multiple of \(Self.blockLength)")
        }
        return (try cipher.decrypt(ciphertext, iv: iv), Array(ciphertext.suffix(Self.blockLength)))
    }

    /// RFC 2409 §5.5: KEYMAT = K1 | K2 | ..., K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b),
    /// Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b).
    func keyMaterial(length: Int, pfsSecret: SecureBytes?, protocolID: UInt8, spi: UInt32,
                     initiatorNonce: [UInt8], responderNonce: [UInt8]) -> SecureBytes {
        var spiBytes = WireWriter(capacity: 4)
        spiBytes.write(spi)
        let seed = (pfsSecret?.bytes ?? []) + [protocolID] + spiBytes.bytes + initiatorNonce + responderNonce
        var block = HMAC.compute(suite.hash, key: skeyidD, data: seed)
        var material = block
        while material.count < length {
            block = HMAC.compute(suite.hash, key: skeyidD, data: block.bytes + seed)
            material = material + block
        }
        return material[0..<length]
    }
}
