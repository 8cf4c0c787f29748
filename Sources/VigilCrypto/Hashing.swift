import COpenSSL
import VigilAlgorithms

/// Plain HMAC (RFC 2104) where the hash is named directly, as IKEv1 does (SKEYID, HASH_I, RFC 2409 §5).
public enum HMAC {
    public enum Hash: Hashable, Sendable, CaseIterable {
        case sha1, sha256, sha384, sha512

        /// Output length in bytes.
        public var outputLength: Int {
            switch self {
            case .sha1: 20
            case .sha256: 32
            case .sha384: 48
            case .sha512: 64
            }
        }

        /// OpenSSL's algorithm name, kept static because OSSL_PARAM keeps the pointer.
        var openSSLName: StaticString {
            switch self {
            case .sha1: "SHA1"
            case .sha256: "SHA256"
            case .sha384: "SHA384"
            case .sha512: "SHA512"
            }
        }

        /// The fetched EVP_MD, fetched once per process.
        var messageDigest: OpaquePointer {
            switch self {
            case .sha1: FetchedAlgorithms.sha1
            case .sha256: FetchedAlgorithms.sha256
            case .sha384: FetchedAlgorithms.sha384
            case .sha512: FetchedAlgorithms.sha512
            }
        }
    }

    public static func compute(_ hash: Hash, key: SecureBytes, data: [UInt8]) -> SecureBytes {
        data.withUnsafeBytes { compute(hash, key: key, data: $0) }
    }

    /// For secret data, e.g. g^xy in SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0) (RFC 2409 §5): build the input
    /// with `SecureBytes` concatenation so no unwiped copy is made.
    public static func compute(_ hash: Hash, key: SecureBytes, data: SecureBytes) -> SecureBytes {
        data.withUnsafeBytes { compute(hash, key: key, data: $0) }
    }

    static func compute(_ hash: Hash, key: SecureBytes, data: UnsafeRawBufferPointer) -> SecureBytes {
        let context = HMACContext(hash, key: key)
        context.update(data)
        return context.finish()
    }
}

/// Message digests (NAT-D hashes RFC 7296 §2.23, IKEv1 hashes).
public enum Hash {
    public static func digest(_ hash: HMAC.Hash, _ data: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: hash.outputLength)
        var length: UInt32 = 0
        let status = data.withUnsafeBytes { input in
            output.withUnsafeMutableBytes { out in
                EVP_Digest(input.baseAddress, input.count,
                           out.baseAddress!.assumingMemoryBound(to: UInt8.self), &length, hash.messageDigest, nil)
            }
        }
        guard status == 1, Int(length) == hash.outputLength else { OpenSSLErrorQueue.crash("EVP_Digest") }
        return output
    }
}

/// The PRFs of IKEv2 (RFC 7296 §2.13, RFC 4868): HMAC with the negotiated hash, and prf+.
public enum PRF {
    public static func compute(_ prf: PseudorandomFunction, key: SecureBytes, data: [UInt8]) -> SecureBytes {
        HMAC.compute(prf.hash, key: key, data: data)
    }

    /// For secret data, e.g. SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 §2.14).
    public static func compute(_ prf: PseudorandomFunction, key: SecureBytes, data: SecureBytes) -> SecureBytes {
        HMAC.compute(prf.hash, key: key, data: data)
    }

    /// prf+ over a secret seed, e.g. KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr) (RFC 7296 §2.17).
    public static func plus(_ prf: PseudorandomFunction, key: SecureBytes, seed: SecureBytes, length: Int) -> SecureBytes {
        seed.withUnsafeBytes { plus(prf, key: key, seed: $0, length: length) }
    }

    /// prf+ (RFC 7296 §2.13): T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02), ... truncated to length.
    /// At most 255 blocks can be produced; asking for more is a caller bug.
    public static func plus(_ prf: PseudorandomFunction, key: SecureBytes, seed: [UInt8], length: Int) -> SecureBytes {
        seed.withUnsafeBytes { plus(prf, key: key, seed: $0, length: length) }
    }

    static func plus(_ prf: PseudorandomFunction, key: SecureBytes, seed: UnsafeRawBufferPointer, length: Int) -> SecureBytes {
        let blockLength = prf.outputLength
        precondition(length >= 0 && length <= Limits.prfPlusMaximumBlocks * blockLength,
                     "prf+ length \(length) outside 0...\(Limits.prfPlusMaximumBlocks * blockLength)")
        let context = HMACContext(prf.hash, key: key)
        return SecureBytes(count: length) { output in
            var previous = SecureBytes(count: 0)
            var filled = 0
            var counter: UInt8 = 1
            while filled < length {
                context.reset()
                previous.withUnsafeBytes { context.update($0) }
                context.update(seed)
                withUnsafeBytes(of: counter) { context.update($0) }
                let block = context.finish()
                let take = min(blockLength, length - filled)
                block.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: output[filled..<filled + take]).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<take])) }
                filled += take
                previous = block
                counter &+= 1
            }
        }
    }
}

extension PseudorandomFunction {
    /// The hash under this PRF's HMAC.
    var hash: HMAC.Hash {
        switch self {
        case .hmacSHA1: .sha1
        case .hmacSHA2_256: .sha256
        case .hmacSHA2_384: .sha384
        case .hmacSHA2_512: .sha512
        }
    }
}

/// Spec limits (RFC numbers), apart from our own tunables.
enum Limits {
    /// prf+ counts its blocks in one octet (RFC 7296 §2.13: "prf+ ... is only defined for up to 255 iterations").
    static let prfPlusMaximumBlocks = 255
}

/// Algorithms fetched from the default provider once per process (an implicit fetch on every call costs more
/// than the operation itself for short inputs).
enum FetchedAlgorithms {
    nonisolated(unsafe) static let sha1 = fetchDigest("SHA1")
    nonisolated(unsafe) static let sha256 = fetchDigest("SHA256")
    nonisolated(unsafe) static let sha384 = fetchDigest("SHA384")
    nonisolated(unsafe) static let sha512 = fetchDigest("SHA512")
    nonisolated(unsafe) static let hmac: OpaquePointer = {
        guard let mac = EVP_MAC_fetch(nil, "HMAC", nil) else { OpenSSLErrorQueue.crash("EVP_MAC_fetch HMAC") }
        return mac
    }()
    nonisolated(unsafe) static let aes128cbc = fetchCipher("AES-128-CBC")
    nonisolated(unsafe) static let aes256cbc = fetchCipher("AES-256-CBC")
    nonisolated(unsafe) static let aes128gcm = fetchCipher("AES-128-GCM")
    nonisolated(unsafe) static let aes256gcm = fetchCipher("AES-256-GCM")

    private static func fetchDigest(_ name: String) -> OpaquePointer {
        guard let md = EVP_MD_fetch(nil, name, nil) else { OpenSSLErrorQueue.crash("EVP_MD_fetch \(name)") }
        return md
    }

    private static func fetchCipher(_ name: String) -> OpaquePointer {
        guard let cipher = EVP_CIPHER_fetch(nil, name, nil) else { OpenSSLErrorQueue.crash("EVP_CIPHER_fetch \(name)") }
        return cipher
    }
}

/// One keyed EVP_MAC_CTX for HMAC. Keyed once; `reset` restarts it with the same key (cheap: OpenSSL keeps the
/// inner and outer pad states). Not for concurrent use; public owners lock around it.
final class HMACContext {
    private let context: OpaquePointer
    let hash: HMAC.Hash

    init(_ hash: HMAC.Hash, key: SecureBytes) {
        self.hash = hash
        guard let context = EVP_MAC_CTX_new(FetchedAlgorithms.hmac) else { OpenSSLErrorQueue.crash("EVP_MAC_CTX_new") }
        self.context = context
        let digestName = UnsafeMutableRawPointer(mutating: hash.openSSLName.utf8Start).assumingMemoryBound(to: CChar.self)
        var parameters = [
            OSSL_PARAM_construct_utf8_string(vigil_param_mac_digest(), digestName, 0),
            OSSL_PARAM_construct_end(),
        ]
        // An empty key must still be a non-NULL pointer: NULL means "keep the previous key" to EVP_MAC_init.
        let emptyKey: UInt8 = 0
        let status = key.withUnsafeBytes { key in
            withUnsafePointer(to: emptyKey) { empty in
                EVP_MAC_init(context, key.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? empty, key.count, &parameters)
            }
        }
        guard status == 1 else { OpenSSLErrorQueue.crash("EVP_MAC_init HMAC-\(hash)") }
    }

    deinit { EVP_MAC_CTX_free(context) }

    func reset() {
        let status = EVP_MAC_init(context, nil, 0, nil)
        guard status == 1 else { OpenSSLErrorQueue.crash("EVP_MAC_init (rekey)") }
    }

    func update(_ data: UnsafeRawBufferPointer) {
        guard let base = data.baseAddress, data.count > 0 else { return }
        let status = EVP_MAC_update(context, base.assumingMemoryBound(to: UInt8.self), data.count)
        guard status == 1 else { OpenSSLErrorQueue.crash("EVP_MAC_update") }
    }

    /// Writes the full-length MAC into `output` (exactly `hash.outputLength` bytes).
    func finish(into output: UnsafeMutableRawBufferPointer) {
        precondition(output.count == hash.outputLength, "HMAC output buffer of \(output.count) bytes")
        var written = 0
        let status = EVP_MAC_final(context, output.baseAddress!.assumingMemoryBound(to: UInt8.self), &written, output.count)
        guard status == 1, written == hash.outputLength else { OpenSSLErrorQueue.crash("EVP_MAC_final") }
    }

    func finish() -> SecureBytes {
        SecureBytes(count: hash.outputLength) { finish(into: $0) }
    }
}
