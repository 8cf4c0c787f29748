import COpenSSL
import Synchronization
import VigilAlgorithms

/// AES-CBC with a fixed key and no padding (IKE, RFC 7296 §3.14, and ESP, RFC 3602, add their own). Keyed once per
/// direction; each call sets a fresh IV. Safe to share: calls in one direction are serialized.
public final class CBCContext: @unchecked Sendable {
    /// AES block and IV length (RFC 3602 §2.1, §3).
    public static let blockLength = 16

    public let algorithm: EncryptionAlgorithm
    private let encryptor: CipherContext
    private let decryptor: CipherContext
    private let encryptLock = Mutex(())
    private let decryptLock = Mutex(())

    public init(_ algorithm: EncryptionAlgorithm, key: SecureBytes) throws(CryptoError) {
        try algorithm.check(aead: false, keyMaterial: key, for: "CBCContext")
        self.algorithm = algorithm
        encryptor = try CipherContext(algorithm.cipher, key: key, encrypt: true, padding: false)
        decryptor = try CipherContext(algorithm.cipher, key: key, encrypt: false, padding: false)
    }

    public func encrypt(_ plaintext: [UInt8], iv: [UInt8]) throws(CryptoError) -> [UInt8] {
        var buffer = plaintext
        try withMutableBytes(&buffer) { (buffer) throws(CryptoError) in
            try withBytes(iv) { (iv) throws(CryptoError) in try encrypt(inPlace: buffer, iv: iv) }
        }
        return buffer
    }

    public func decrypt(_ ciphertext: [UInt8], iv: [UInt8]) throws(CryptoError) -> [UInt8] {
        var buffer = ciphertext
        try withMutableBytes(&buffer) { (buffer) throws(CryptoError) in
            try withBytes(iv) { (iv) throws(CryptoError) in try decrypt(inPlace: buffer, iv: iv) }
        }
        return buffer
    }

    /// Encrypts `buffer` in place; its length must be a multiple of 16 and `iv` exactly 16 bytes.
    public func encrypt(inPlace buffer: UnsafeMutableRawBufferPointer, iv: UnsafeRawBufferPointer) throws(CryptoError) {
        try encryptLock.withLock { (_) throws(CryptoError) in try encryptor.cbc(buffer, iv: iv) }
    }

    public func decrypt(inPlace buffer: UnsafeMutableRawBufferPointer, iv: UnsafeRawBufferPointer) throws(CryptoError) {
        try decryptLock.withLock { (_) throws(CryptoError) in try decryptor.cbc(buffer, iv: iv) }
    }
}

/// AES-GCM with a 16-byte ICV (ENCR_AES_GCM_16, RFC 4106 for ESP, RFC 5282 for IKEv2). Key material is
/// key || 4-byte salt; the 12-byte nonce is salt || the 8-byte IV carried in each packet. Safe to share.
public final class GCMContext: @unchecked Sendable {
    /// RFC 4106 §3.1 / RFC 5282 §3: 8-byte explicit IV, 4-byte salt, 16-byte ICV (the "_16" variant).
    public static let ivLength = 8
    public static let saltLength = 4
    public static let icvLength = 16

    public let algorithm: EncryptionAlgorithm
    private let salt: SecureBytes
    private let sealer: CipherContext
    private let opener: CipherContext
    private let sealLock = Mutex(())
    private let openLock = Mutex(())

    public init(_ algorithm: EncryptionAlgorithm, keyMaterial: SecureBytes) throws(CryptoError) {
        try algorithm.check(aead: true, keyMaterial: keyMaterial, for: "GCMContext")
        let keyLength = algorithm.keyMaterialLength - Self.saltLength
        let key = keyMaterial[0..<keyLength]
        self.algorithm = algorithm
        salt = keyMaterial[keyLength...]
        sealer = try CipherContext(algorithm.cipher, key: key, encrypt: true, padding: true)
        opener = try CipherContext(algorithm.cipher, key: key, encrypt: false, padding: true)
    }

    /// Returns ciphertext || ICV(16).
    public func seal(iv: [UInt8], aad: [UInt8], plaintext: [UInt8]) throws(CryptoError) -> [UInt8] {
        var output = plaintext + [UInt8](repeating: 0, count: Self.icvLength)
        let count = plaintext.count
        try withMutableBytes(&output) { (output) throws(CryptoError) in
            try withBytes(iv) { (iv) throws(CryptoError) in
                try withBytes(aad) { (aad) throws(CryptoError) in
                    try seal(iv: iv, aad: aad, inPlace: UnsafeMutableRawBufferPointer(rebasing: output[0..<count]),
                             tag: UnsafeMutableRawBufferPointer(rebasing: output[count...]))
                }
            }
        }
        return output
    }

    /// Verifies the trailing 16-byte ICV and returns the plaintext; throws `CryptoError.authenticationFailed`.
    public func open(iv: [UInt8], aad: [UInt8], ciphertextAndTag: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard ciphertextAndTag.count >= Self.icvLength else {
            throw .invalidLength("AES-GCM open", "\(ciphertextAndTag.count) bytes cannot hold a \(Self.icvLength)-byte ICV")
        }
        let count = ciphertextAndTag.count - Self.icvLength
        var buffer = Array(ciphertextAndTag[0..<count])
        try withMutableBytes(&buffer) { (buffer) throws(CryptoError) in
            try withBytes(iv) { (iv) throws(CryptoError) in
                try withBytes(aad) { (aad) throws(CryptoError) in
                    try withBytes(ciphertextAndTag) { (all) throws(CryptoError) in
                        try open(iv: iv, aad: aad, inPlace: buffer, tag: UnsafeRawBufferPointer(rebasing: all[count...]))
                    }
                }
            }
        }
        return buffer
    }

    /// ESP fast path: `buffer` holds the plaintext and receives the ciphertext; the 16-byte ICV goes to `tag`.
    public func seal(iv: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer, inPlace buffer: UnsafeMutableRawBufferPointer,
                     tag: UnsafeMutableRawBufferPointer) throws(CryptoError) {
        try withNonce(iv) { (nonce) throws(CryptoError) in
            try sealLock.withLock { (_) throws(CryptoError) in
                try sealer.gcm(nonce: nonce, aad: aad, buffer: buffer, tag: tag, encrypt: true)
            }
        }
    }

    /// ESP fast path: decrypts `buffer` in place after checking `tag`; on a bad ICV the buffer is wiped and
    /// `CryptoError.authenticationFailed` thrown.
    public func open(iv: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer, inPlace buffer: UnsafeMutableRawBufferPointer,
                     tag: UnsafeRawBufferPointer) throws(CryptoError) {
        try withNonce(iv) { (nonce) throws(CryptoError) in
            try openLock.withLock { (_) throws(CryptoError) in
                try opener.gcm(nonce: nonce, aad: aad, buffer: buffer, tag: UnsafeMutableRawBufferPointer(mutating: tag), encrypt: false)
            }
        }
    }

    /// nonce = salt || IV (RFC 4106 §4, RFC 5282 §4).
    private func withNonce(_ iv: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws(CryptoError) -> Void) throws(CryptoError) {
        guard iv.count == Self.ivLength else {
            throw .invalidLength("AES-GCM IV", "\(iv.count) bytes, expected \(Self.ivLength)")
        }
        var nonce: (UInt64, UInt32) = (0, 0)  // 12 bytes on the stack
        try withUnsafeMutableBytes(of: &nonce) { (nonce) throws(CryptoError) in
            salt.withUnsafeBytes { nonce.copyMemory(from: $0) }
            UnsafeMutableRawBufferPointer(rebasing: nonce[Self.saltLength..<Self.saltLength + Self.ivLength]).copyMemory(from: iv)
            try body(UnsafeRawBufferPointer(rebasing: nonce[0..<Self.saltLength + Self.ivLength]))
            OPENSSL_cleanse(nonce.baseAddress, nonce.count)
        }
    }
}

extension EncryptionAlgorithm {
    var cipher: OpaquePointer {
        switch self {
        case .aes128cbc: FetchedAlgorithms.aes128cbc
        case .aes256cbc: FetchedAlgorithms.aes256cbc
        case .aes128gcm16: FetchedAlgorithms.aes128gcm
        case .aes256gcm16: FetchedAlgorithms.aes256gcm
        }
    }

    /// A context takes only its own mode, with exactly `keyMaterialLength` bytes (GCM: key || 4-byte salt).
    fileprivate func check(aead: Bool, keyMaterial: SecureBytes, for context: String) throws(CryptoError) {
        guard isAEAD == aead else {
            throw CryptoError(code: .unsupportedAlgorithm, operation: context, detail: "\(self) does not belong in \(context)")
        }
        guard keyMaterial.count == keyMaterialLength else {
            throw .invalidLength("\(self) key material", "\(keyMaterial.count) bytes, expected \(keyMaterialLength)")
        }
    }
}

/// One EVP_CIPHER_CTX keyed for one direction. Not for concurrent use; public owners lock around it.
final class CipherContext {
    private let context: OpaquePointer

    init(_ cipher: OpaquePointer, key: SecureBytes, encrypt: Bool, padding: Bool) throws(CryptoError) {
        guard let context = EVP_CIPHER_CTX_new() else { OpenSSLErrorQueue.crash("EVP_CIPHER_CTX_new") }
        self.context = context
        let status = key.withUnsafeBytes { key in
            EVP_CipherInit_ex2(context, cipher, key.baseAddress?.assumingMemoryBound(to: UInt8.self), nil, encrypt ? 1 : 0, nil)
        }
        guard status == 1 else { throw .library("EVP_CipherInit_ex2") }
        if !padding {
            let status = EVP_CIPHER_CTX_set_padding(context, 0)
            guard status == 1 else { throw .library("EVP_CIPHER_CTX_set_padding") }
        }
    }

    deinit { EVP_CIPHER_CTX_free(context) }  // cleanses the key schedule

    /// CBC over whole blocks, in place (OpenSSL allows in == out).
    func cbc(_ buffer: UnsafeMutableRawBufferPointer, iv: UnsafeRawBufferPointer) throws(CryptoError) {
        guard iv.count == CBCContext.blockLength else {
            throw .invalidLength("AES-CBC IV", "\(iv.count) bytes, expected \(CBCContext.blockLength)")
        }
        guard buffer.count % CBCContext.blockLength == 0, buffer.count <= Int(Int32.max) else {
            throw .invalidLength("AES-CBC", "\(buffer.count) bytes is not a whole number of 16-byte blocks")
        }
        let status = EVP_CipherInit_ex2(context, nil, nil, iv.baseAddress!.assumingMemoryBound(to: UInt8.self), -1, nil)
        guard status == 1 else { throw .library("EVP_CipherInit_ex2 (IV)") }
        guard let base = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        try update(output: base, input: base, count: buffer.count)
        try finish()
    }

    /// GCM over `buffer` in place. Encrypting writes the ICV into `tag`; decrypting checks `tag` and wipes the
    /// buffer when it does not match.
    func gcm(nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer, buffer: UnsafeMutableRawBufferPointer,
             tag: UnsafeMutableRawBufferPointer, encrypt: Bool) throws(CryptoError) {
        guard tag.count == GCMContext.icvLength else {
            throw .invalidLength("AES-GCM ICV", "\(tag.count) bytes, expected \(GCMContext.icvLength)")
        }
        guard buffer.count <= Int(Int32.max), aad.count <= Int(Int32.max) else {
            throw .invalidLength("AES-GCM", "buffer of \(buffer.count) bytes, AAD of \(aad.count) bytes")
        }
        let status = EVP_CipherInit_ex2(context, nil, nil, nonce.baseAddress!.assumingMemoryBound(to: UInt8.self), -1, nil)
        guard status == 1 else { throw .library("EVP_CipherInit_ex2 (nonce)") }
        if let aadBase = aad.baseAddress, aad.count > 0 {
            try update(output: nil, input: aadBase.assumingMemoryBound(to: UInt8.self), count: aad.count)
        }
        if let base = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self), buffer.count > 0 {
            try update(output: base, input: base, count: buffer.count)
        }
        if encrypt {
            try finish()
            let status = EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, Int32(tag.count), tag.baseAddress)
            guard status == 1 else { throw .library("EVP_CTRL_AEAD_GET_TAG") }
        } else {
            let status = EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_TAG, Int32(tag.count), tag.baseAddress)
            guard status == 1 else { throw .library("EVP_CTRL_AEAD_SET_TAG") }
            var written: Int32 = 0
            let verified = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16) { scratch in
                EVP_CipherFinal_ex(context, scratch.baseAddress, &written)
            }
            guard verified == 1, written == 0 else {
                if let base = buffer.baseAddress { OPENSSL_cleanse(base, buffer.count) }
                ERR_clear_error()
                throw CryptoError.authenticationFailed
            }
        }
    }

    private func update(output: UnsafeMutablePointer<UInt8>?, input: UnsafePointer<UInt8>, count: Int) throws(CryptoError) {
        var written: Int32 = 0
        let status = EVP_CipherUpdate(context, output, &written, input, Int32(count))
        guard status == 1 else { throw .library("EVP_CipherUpdate") }
        guard Int(written) == count else {
            preconditionFailure("EVP_CipherUpdate wrote \(written) of \(count) bytes with padding off")
        }
    }

    /// With padding off (CBC) or a stream mode (GCM) the final call writes nothing.
    private func finish() throws(CryptoError) {
        var written: Int32 = 0
        let status = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16) { scratch in
            EVP_CipherFinal_ex(context, scratch.baseAddress, &written)
        }
        guard status == 1 else { throw .library("EVP_CipherFinal_ex") }
        guard written == 0 else { preconditionFailure("EVP_CipherFinal_ex wrote \(written) bytes with padding off") }
    }
}

// Array's `withUnsafe...Bytes` rethrow untyped errors; these keep `CryptoError` typed through the closure.
private func withBytes<R>(_ array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(CryptoError) -> R) throws(CryptoError) -> R {
    try array.withUnsafeBytes { bytes in Result { () throws(CryptoError) in try body(bytes) } }.get()
}

private func withMutableBytes<R>(_ array: inout [UInt8], _ body: (UnsafeMutableRawBufferPointer) throws(CryptoError) -> R) throws(CryptoError) -> R {
    try array.withUnsafeMutableBytes { bytes in Result { () throws(CryptoError) in try body(bytes) } }.get()
}
