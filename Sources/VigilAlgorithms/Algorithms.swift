/// The algorithm vocabulary shared by configuration, both IKE engines, the crypto target and the data plane.
/// Names follow strongSwan's proposal keywords; numbers are IANA's IKEv2 transform IDs (RFC 7296 §3.3.2 and the
/// "Internet Key Exchange Version 2 (IKEv2) Parameters" registry). IKEv1 maps these to its own attribute values.

/// Transform type 1: encryption (and AEAD) algorithms.
public enum EncryptionAlgorithm: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    case aes128cbc = "aes128"
    case aes256cbc = "aes256"
    case aes128gcm16 = "aes128gcm16"
    case aes256gcm16 = "aes256gcm16"

    /// IKEv2 transform ID: ENCR_AES_CBC = 12, ENCR_AES_GCM_16 = 20 (RFC 5282, RFC 4106).
    public var ikev2TransformID: UInt16 {
        switch self {
        case .aes128cbc, .aes256cbc: 12
        case .aes128gcm16, .aes256gcm16: 20
        }
    }

    /// Key length in bits, sent as the Key Length attribute (type 14).
    public var keyBits: Int {
        switch self {
        case .aes128cbc, .aes128gcm16: 128
        case .aes256cbc, .aes256gcm16: 256
        }
    }

    /// AEAD algorithms carry their own integrity; no integrity transform is negotiated with them.
    public var isAEAD: Bool {
        switch self {
        case .aes128cbc, .aes256cbc: false
        case .aes128gcm16, .aes256gcm16: true
        }
    }

    /// Bytes of keying material: the key, plus the 4-byte salt for GCM (RFC 5282 §7.1, RFC 4106 §8.1).
    public var keyMaterialLength: Int { keyBits / 8 + (isAEAD ? 4 : 0) }

    public init?(ikev2TransformID: UInt16, keyBits: Int) {
        guard let match = Self.allCases.first(where: { $0.ikev2TransformID == ikev2TransformID && $0.keyBits == keyBits })
        else { return nil }
        self = match
    }

    public var description: String { rawValue }
}

/// Transform type 3: integrity algorithms.
public enum IntegrityAlgorithm: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    case hmacSHA1_96 = "sha1"
    case hmacSHA2_256_128 = "sha256"
    case hmacSHA2_384_192 = "sha384"
    case hmacSHA2_512_256 = "sha512"

    /// AUTH_HMAC_SHA1_96 = 2, AUTH_HMAC_SHA2_256_128 = 12, _384_192 = 13, _512_256 = 14 (RFC 4868).
    public var ikev2TransformID: UInt16 {
        switch self {
        case .hmacSHA1_96: 2
        case .hmacSHA2_256_128: 12
        case .hmacSHA2_384_192: 13
        case .hmacSHA2_512_256: 14
        }
    }

    /// Key length in bytes (the hash's output length).
    public var keyLength: Int {
        switch self {
        case .hmacSHA1_96: 20
        case .hmacSHA2_256_128: 32
        case .hmacSHA2_384_192: 48
        case .hmacSHA2_512_256: 64
        }
    }

    /// Length of the truncated ICV in bytes.
    public var icvLength: Int {
        switch self {
        case .hmacSHA1_96: 12
        case .hmacSHA2_256_128: 16
        case .hmacSHA2_384_192: 24
        case .hmacSHA2_512_256: 32
        }
    }

    /// The PRF strongSwan pairs with this integrity algorithm when a proposal names none.
    public var impliedPRF: PseudorandomFunction {
        switch self {
        case .hmacSHA1_96: .hmacSHA1
        case .hmacSHA2_256_128: .hmacSHA2_256
        case .hmacSHA2_384_192: .hmacSHA2_384
        case .hmacSHA2_512_256: .hmacSHA2_512
        }
    }

    public init?(ikev2TransformID: UInt16) {
        guard let match = Self.allCases.first(where: { $0.ikev2TransformID == ikev2TransformID }) else { return nil }
        self = match
    }

    public var description: String { rawValue }
}

/// Transform type 2: pseudorandom functions.
public enum PseudorandomFunction: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    case hmacSHA1 = "prfsha1"
    case hmacSHA2_256 = "prfsha256"
    case hmacSHA2_384 = "prfsha384"
    case hmacSHA2_512 = "prfsha512"

    /// PRF_HMAC_SHA1 = 2, PRF_HMAC_SHA2_256 = 5, _384 = 6, _512 = 7 (RFC 4868).
    public var ikev2TransformID: UInt16 {
        switch self {
        case .hmacSHA1: 2
        case .hmacSHA2_256: 5
        case .hmacSHA2_384: 6
        case .hmacSHA2_512: 7
        }
    }

    /// Output length in bytes; also the preferred key length (RFC 7296 §2.13).
    public var outputLength: Int {
        switch self {
        case .hmacSHA1: 20
        case .hmacSHA2_256: 32
        case .hmacSHA2_384: 48
        case .hmacSHA2_512: 64
        }
    }

    public init?(ikev2TransformID: UInt16) {
        guard let match = Self.allCases.first(where: { $0.ikev2TransformID == ikev2TransformID }) else { return nil }
        self = match
    }

    public var description: String { rawValue }
}

/// Transform type 4: Diffie-Hellman groups. Raw values are the IANA group numbers (shared by IKEv1 and IKEv2).
public enum DHGroup: UInt16, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    case modp2048 = 14
    case modp3072 = 15
    case ecp256 = 19
    case ecp384 = 20
    case curve25519 = 31

    /// strongSwan's keyword for the group.
    public var keyword: String {
        switch self {
        case .modp2048: "modp2048"
        case .modp3072: "modp3072"
        case .ecp256: "ecp256"
        case .ecp384: "ecp384"
        case .curve25519: "x25519"
        }
    }

    /// Length in bytes of a public value in a KE payload (RFC 7296 §3.4, RFC 5903 §7, RFC 8031 §2).
    public var publicValueLength: Int {
        switch self {
        case .modp2048: 256
        case .modp3072: 384
        case .ecp256: 64
        case .ecp384: 96
        case .curve25519: 32
        }
    }

    public var description: String { keyword }
}
