import VigilAlgorithms
import VigilCrypto
import VigilWire

/// Encrypts and authenticates the SK payload of one IKE SA (RFC 7296 §3.14; AES-GCM per RFC 5282).
struct MessageProtection: @unchecked Sendable {  // the contexts are keyed once and only read afterwards
    enum Cipher {
        case cbc(CBCContext, IntegrityContext)
        case gcm(GCMContext)
    }

    let outbound: Cipher
    let inbound: Cipher

    /// Keys for our direction are SK_ei/SK_ai when we are the original initiator of the SA, SK_er/SK_ar otherwise.
    init(keys: IKESAKeys, weAreOriginalInitiator: Bool) throws(CryptoError) {
        let algorithms = keys.algorithms
        func cipher(encryption: SecureBytes, integrity: SecureBytes) throws(CryptoError) -> Cipher {
            if algorithms.encryption.isAEAD {
                return .gcm(try GCMContext(algorithms.encryption, keyMaterial: encryption))
            }
            guard let integrityAlgorithm = algorithms.integrity else {
                preconditionFailure("a non-AEAD IKE SA was negotiated without integrity")
            }
            return .cbc(try CBCContext(algorithms.encryption, key: encryption), try IntegrityContext(integrityAlgorithm, key: integrity))
        }
        let initiatorCipher = try cipher(encryption: keys.skEi, integrity: keys.skAi)
        let responderCipher = try cipher(encryption: keys.skEr, integrity: keys.skAr)
        outbound = weAreOriginalInitiator ? initiatorCipher : responderCipher
        inbound = weAreOriginalInitiator ? responderCipher : initiatorCipher
    }

    /// A complete protected message: header, SK { payloads }.
    func seal(header: IKEv2.Header, payloads: [IKEv2.Payload], random: inout some RandomNumberGenerator) -> [UInt8] {
        let inner = IKEv2.Payloads.write(payloads)
        switch outbound {
        case .cbc(let cbc, let integrity):
            let block = 16
            // §3.14: Pad Length octet last; the padded plaintext is a multiple of the block size.
            let padLength = (block - (inner.bytes.count + 1) % block) % block
            let plaintext = inner.bytes + [UInt8](repeating: 0, count: padLength) + [UInt8(padLength)]
            let iv = randomBytes(block, &random)
            let ciphertext: [UInt8]
            do {
                ciphertext = try cbc.encrypt(plaintext, iv: iv)
            } catch {
                preconditionFailure("AES-CBC encryption of a block-aligned buffer failed: \(error)")
            }
            let bodyLength = iv.count + ciphertext.count + integrity.icvLength
            let prefix = IKEv2.Message.encryptedPrefix(header: header, firstInnerPayload: inner.first, bodyLength: bodyLength)
            let protected = prefix + iv + ciphertext
            return protected + integrity.mac(protected)
        case .gcm(let gcm):
            let plaintext = inner.bytes + [0]  // Pad Length 0: GCM needs no block alignment (RFC 5282 §3)
            let iv = randomBytes(GCMContext.ivLength, &random)
            let bodyLength = iv.count + plaintext.count + GCMContext.icvLength
            let prefix = IKEv2.Message.encryptedPrefix(header: header, firstInnerPayload: inner.first, bodyLength: bodyLength)
            let sealed: [UInt8]
            do {
                sealed = try gcm.seal(iv: iv, aad: prefix, plaintext: plaintext)
            } catch {
                preconditionFailure("AES-GCM sealing failed: \(error)")
            }
            return prefix + iv + sealed
        }
    }

    enum OpenError: Error {
        case malformed(String)
        case integrity
        /// §2.5: authentic, but carries an unknown payload marked critical (its type).
        case unsupportedCriticalPayload(UInt8)
    }

    /// Checks and decrypts the SK payload of a received message; returns the inner payloads.
    func open(datagram: [UInt8], firstPayload: UInt8, body: [UInt8]) throws(OpenError) -> [IKEv2.Payload] {
        let prefixLength = datagram.count - body.count
        let prefix = Array(datagram[0..<prefixLength])
        let plaintext: [UInt8]
        switch inbound {
        case .cbc(let cbc, let integrity):
            let ivLength = 16
            let icvLength = integrity.icvLength
            guard body.count >= ivLength + 16 + icvLength, (body.count - ivLength - icvLength) % 16 == 0 else {
                throw .malformed("SK payload of \(body.count) octets does not hold IV, whole blocks and ICV")
            }
            let protected = Array(datagram[0..<datagram.count - icvLength])
            guard integrity.verify(protected, icv: Array(datagram.suffix(icvLength))) else { throw .integrity }
            let iv = Array(body[0..<ivLength])
            do {
                plaintext = try cbc.decrypt(Array(body[ivLength..<body.count - icvLength]), iv: iv)
            } catch {
                throw .malformed("AES-CBC decryption failed: \(error)")
            }
        case .gcm(let gcm):
            guard body.count >= GCMContext.ivLength + GCMContext.icvLength + 1 else {
                throw .malformed("SK payload of \(body.count) octets is too short for AES-GCM")
            }
            let iv = Array(body[0..<GCMContext.ivLength])
            do {
                plaintext = try gcm.open(iv: iv, aad: prefix, ciphertextAndTag: Array(body[GCMContext.ivLength...]))
            } catch {
                throw .integrity
            }
        }
        guard let padLength = plaintext.last, Int(padLength) + 1 <= plaintext.count else {
            throw .malformed("SK Pad Length exceeds the plaintext")
        }
        let inner = Array(plaintext[0..<plaintext.count - 1 - Int(padLength)])
        do {
            return try IKEv2.Payloads.read(inner, first: firstPayload)
        } catch {
            if error.code == .unsupportedCriticalPayload, let type = IKEv2.Payloads.firstUnsupportedCriticalPayload(inner, first: firstPayload) {
                throw .unsupportedCriticalPayload(type)
            }
            throw .malformed("inner payloads: \(error)")
        }
    }
}

func randomBytes(_ count: Int, _ random: inout some RandomNumberGenerator) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(count + 8)
    while bytes.count < count {
        let word = random.next()
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
    }
    return Array(bytes.prefix(count))
}
