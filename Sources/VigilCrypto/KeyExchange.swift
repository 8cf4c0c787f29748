import COpenSSL
import VigilAlgorithms

/// One Diffie-Hellman key exchange (RFC 7296 §1.2, §3.4). The private key never leaves OpenSSL; the object is
/// immutable after init and each derivation uses its own EVP_PKEY_CTX, so it is safe to share.
public final class KeyExchange: @unchecked Sendable {
    public let group: DHGroup
    /// The public value as IKE carries it: MODP big-endian left-padded to the group length (RFC 7296 §3.4);
    /// ECP x || y without the 0x04 prefix (RFC 5903 §7); X25519 the 32 raw bytes (RFC 8031 §2).
    public let publicValue: [UInt8]
    private let key: PrivateKey

    public init(group: DHGroup) throws(CryptoError) {
        self.group = group
        key = try PrivateKey(generating: group)
        publicValue = try key.publicValue(group)
    }

    /// A fixed private key, for known-answer tests only (RFC 5903 §8, RFC 7748 §6.1): ECP and X25519. `publicValue`
    /// is required for ECP (OpenSSL 3.0 does not derive it on import) and checked against the private key.
    init(group: DHGroup, privateKey: [UInt8], publicValue: [UInt8]?) throws(CryptoError) {
        self.group = group
        key = try PrivateKey(importing: group, privateKey: privateKey, publicValue: publicValue)
        self.publicValue = try key.publicValue(group)
    }

    /// Shared secret g^ir: MODP left-padded to the group length; ECP the x coordinate (RFC 5903 §7); X25519 32 bytes.
    /// Throws `.invalidPeerPublicValue` on a malformed or invalid peer value (wrong length, 0, 1 or p-1 for MODP,
    /// point not on the curve, all-zero X25519 result).
    public func sharedSecret(peerPublicValue: [UInt8]) throws(CryptoError) -> SecureBytes {
        guard peerPublicValue.count == group.publicValueLength else {
            throw .invalidPeerPublicValue("\(group) key exchange",
                                          "\(peerPublicValue.count) bytes, expected \(group.publicValueLength)")
        }
        let peer = try PublicKey(group, peerPublicValue)
        return try key.derive(group, peer: peer)
    }
}

extension DHGroup {
    /// OpenSSL's key type and group name. The MODP groups are RFC 3526's primes ("modp_2048"), not RFC 7919's
    /// ffdhe groups.
    fileprivate var keyType: String {
        switch self {
        case .modp2048, .modp3072: "DH"
        case .ecp256, .ecp384: "EC"
        case .curve25519: "X25519"
        }
    }

    fileprivate var groupName: StaticString? {
        switch self {
        case .modp2048: "modp_2048"
        case .modp3072: "modp_3072"
        case .ecp256: "P-256"
        case .ecp384: "P-384"
        case .curve25519: nil
        }
    }

    /// Length of the shared secret (RFC 7296 §2.14 pads MODP; RFC 5903 §7 takes x only).
    var sharedSecretLength: Int {
        switch self {
        case .modp2048, .modp3072, .curve25519: publicValueLength
        case .ecp256, .ecp384: publicValueLength / 2
        }
    }
}

/// SEC1 §2.3.3 uncompressed point prefix, which IKE omits (RFC 5903 §7).
private let uncompressedPointPrefix: UInt8 = 0x04

/// Owns an EVP_PKEY.
private final class PKey {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { EVP_PKEY_free(pointer) }
}

/// Owns an EVP_PKEY_CTX.
private final class PKeyContext {
    let pointer: OpaquePointer

    init(_ operation: String, _ make: () -> OpaquePointer?) throws(CryptoError) {
        guard let pointer = make() else { throw .library(operation) }
        self.pointer = pointer
    }

    deinit { EVP_PKEY_CTX_free(pointer) }
}

/// Owns a BIGNUM (cleared on free: it may hold a private key).
private final class BigNumber {
    let pointer: OpaquePointer

    init(_ bytes: [UInt8]) throws(CryptoError) {
        guard let pointer = BN_bin2bn(bytes, Int32(bytes.count), nil) else { throw .library("BN_bin2bn") }
        self.pointer = pointer
    }

    deinit { BN_clear_free(pointer) }
}

/// Builds an OSSL_PARAM array for EVP_PKEY_fromdata. Keys are static C strings (OSSL_PARAM keeps them); values are
/// copied when the array is built, but the BIGNUMs and buffers pushed must live until then, so the builder keeps them.
private final class KeyParameters {
    private let builder: OpaquePointer
    private var bigNumbers: [BigNumber] = []
    private var buffers: [SecureBytes] = []

    init() {
        guard let builder = OSSL_PARAM_BLD_new() else { OpenSSLErrorQueue.crash("OSSL_PARAM_BLD_new") }
        self.builder = builder
    }

    deinit { OSSL_PARAM_BLD_free(builder) }

    func group(_ name: StaticString) throws(CryptoError) {
        let value = UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self)
        let status = OSSL_PARAM_BLD_push_utf8_string(builder, vigil_param_group_name(), value, 0)
        guard status == 1 else { throw .library("OSSL_PARAM_BLD_push_utf8_string group") }
    }

    func bigNumber(_ key: UnsafePointer<CChar>, _ bytes: [UInt8]) throws(CryptoError) {
        let number = try BigNumber(bytes)
        bigNumbers.append(number)
        let status = OSSL_PARAM_BLD_push_BN(builder, key, number.pointer)
        guard status == 1 else { throw .library("OSSL_PARAM_BLD_push_BN") }
    }

    func octets(_ key: UnsafePointer<CChar>, _ bytes: SecureBytes) throws(CryptoError) {
        buffers.append(bytes)
        let status = bytes.withUnsafeBytes { OSSL_PARAM_BLD_push_octet_string(builder, key, $0.baseAddress, $0.count) }
        guard status == 1 else { throw .library("OSSL_PARAM_BLD_push_octet_string") }
    }

    /// EVP_PKEY_fromdata over the collected parameters.
    func makeKey(_ group: DHGroup, selection: Int32) throws(CryptoError) -> PKey {
        guard let parameters = OSSL_PARAM_BLD_to_param(builder) else { throw .library("OSSL_PARAM_BLD_to_param") }
        defer { OSSL_PARAM_free(parameters) }  // only test imports ever carry a private key here
        let context = try PKeyContext("EVP_PKEY_CTX_new_from_name \(group.keyType)") {
            EVP_PKEY_CTX_new_from_name(nil, group.keyType, nil)
        }
        let initialized = EVP_PKEY_fromdata_init(context.pointer)
        guard initialized == 1 else { throw .library("EVP_PKEY_fromdata_init") }
        var key: OpaquePointer?
        let status = EVP_PKEY_fromdata(context.pointer, &key, selection, parameters)
        guard status == 1, let key else {
            throw .invalidPeerPublicValue("EVP_PKEY_fromdata \(group)", OpenSSLErrorQueue.drain())
        }
        return PKey(key)
    }
}

/// Our side of the exchange.
private struct PrivateKey {
    let key: PKey

    init(generating group: DHGroup) throws(CryptoError) {
        let context = try PKeyContext("EVP_PKEY_CTX_new_from_name \(group.keyType)") {
            EVP_PKEY_CTX_new_from_name(nil, group.keyType, nil)
        }
        let initialized = EVP_PKEY_keygen_init(context.pointer)
        guard initialized == 1 else { throw .library("EVP_PKEY_keygen_init") }
        if let name = group.groupName {
            let status = EVP_PKEY_CTX_set_group_name(context.pointer, UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self))
            guard status == 1 else { throw .library("EVP_PKEY_CTX_set_group_name \(name)") }
        }
        var key: OpaquePointer?
        let status = EVP_PKEY_generate(context.pointer, &key)
        guard status == 1, let key else { throw .library("EVP_PKEY_generate \(group)") }
        self.key = PKey(key)
    }

    init(importing group: DHGroup, privateKey: [UInt8], publicValue: [UInt8]?) throws(CryptoError) {
        switch group {
        case .curve25519:
            guard let key = EVP_PKEY_new_raw_private_key_ex(nil, "X25519", nil, privateKey, privateKey.count) else {
                throw .library("EVP_PKEY_new_raw_private_key_ex X25519")
            }
            self.key = PKey(key)
        case .modp2048, .modp3072:
            preconditionFailure("no known-answer vectors exist for \(group); import is not supported")
        case .ecp256, .ecp384:
            guard let publicValue else { preconditionFailure("importing a \(group) private key needs its public value") }
            let parameters = KeyParameters()
            try parameters.group(group.groupName!)
            try parameters.bigNumber(vigil_param_private_key(), privateKey)
            try PublicKey.push(group, publicValue, into: parameters)
            self.key = try parameters.makeKey(group, selection: vigil_selection_keypair())
            let context = try PKeyContext("EVP_PKEY_CTX_new_from_pkey") { EVP_PKEY_CTX_new_from_pkey(nil, key.pointer, nil) }
            let status = EVP_PKEY_pairwise_check(context.pointer)
            guard status == 1 else { throw .library("EVP_PKEY_pairwise_check \(group)") }
        }
    }

    func publicValue(_ group: DHGroup) throws(CryptoError) -> [UInt8] {
        switch group {
        case .modp2048, .modp3072:
            var number: OpaquePointer?
            let status = EVP_PKEY_get_bn_param(key.pointer, vigil_param_public_key(), &number)
            guard status == 1, let number else { throw .library("EVP_PKEY_get_bn_param pub") }
            defer { BN_free(number) }
            var value = [UInt8](repeating: 0, count: group.publicValueLength)
            let written = BN_bn2binpad(number, &value, Int32(value.count))
            guard written == Int32(value.count) else { throw .library("BN_bn2binpad") }
            return value
        case .ecp256, .ecp384:
            var encoded = [UInt8](repeating: 0, count: 1 + group.publicValueLength)
            var written = 0
            let status = EVP_PKEY_get_octet_string_param(key.pointer, vigil_param_encoded_public_key(), &encoded, encoded.count, &written)
            guard status == 1 else { throw .library("EVP_PKEY_get_octet_string_param encoded-pub-key") }
            guard written == encoded.count, encoded[0] == uncompressedPointPrefix else {
                preconditionFailure("\(group) public key exported as \(written) bytes starting \(encoded[0])")
            }
            return Array(encoded[1...])
        case .curve25519:
            var value = [UInt8](repeating: 0, count: group.publicValueLength)
            var written = value.count
            let status = EVP_PKEY_get_raw_public_key(key.pointer, &value, &written)
            guard status == 1, written == value.count else { throw .library("EVP_PKEY_get_raw_public_key X25519") }
            return value
        }
    }

    func derive(_ group: DHGroup, peer: PublicKey) throws(CryptoError) -> SecureBytes {
        let context = try PKeyContext("EVP_PKEY_CTX_new_from_pkey") { EVP_PKEY_CTX_new_from_pkey(nil, key.pointer, nil) }
        let initialized = EVP_PKEY_derive_init(context.pointer)
        guard initialized == 1 else { throw .library("EVP_PKEY_derive_init") }
        switch group {
        case .modp2048, .modp3072:
            // Without padding about 1 in 256 secrets would come out a byte short (RFC 7296 §2.14 wants the full length).
            let status = EVP_PKEY_CTX_set_dh_pad(context.pointer, 1)
            guard status == 1 else { throw .library("EVP_PKEY_CTX_set_dh_pad") }
        case .ecp256, .ecp384, .curve25519:
            break
        }
        let peerAccepted = EVP_PKEY_derive_set_peer_ex(context.pointer, peer.key.pointer, 1)
        guard peerAccepted == 1 else {
            throw .invalidPeerPublicValue("EVP_PKEY_derive_set_peer \(group)", OpenSSLErrorQueue.drain())
        }
        var length = 0
        let sized = EVP_PKEY_derive(context.pointer, nil, &length)
        guard sized == 1 else { throw .library("EVP_PKEY_derive (size)") }
        guard length == group.sharedSecretLength else {
            preconditionFailure("\(group) shared secret of \(length) bytes, expected \(group.sharedSecretLength)")
        }
        return try SecureBytes(count: length) { (secret) throws(CryptoError) in
            let status = EVP_PKEY_derive(context.pointer, secret.baseAddress!.assumingMemoryBound(to: UInt8.self), &length)
            guard status == 1 else {
                // X25519 refuses an all-zero result (RFC 7748 §6.1); DH refuses 1 < y < p-1 failures here too.
                throw .invalidPeerPublicValue("EVP_PKEY_derive \(group)", OpenSSLErrorQueue.drain())
            }
            guard length == group.sharedSecretLength else {
                preconditionFailure("\(group) shared secret of \(length) bytes, expected \(group.sharedSecretLength)")
            }
        }
    }
}

/// The peer's side, built from the IKE encoding.
private struct PublicKey {
    let key: PKey

    init(_ group: DHGroup, _ value: [UInt8]) throws(CryptoError) {
        switch group {
        case .curve25519:
            guard let key = EVP_PKEY_new_raw_public_key_ex(nil, "X25519", nil, value, value.count) else {
                throw .invalidPeerPublicValue("EVP_PKEY_new_raw_public_key_ex X25519", OpenSSLErrorQueue.drain())
            }
            self.key = PKey(key)
        case .modp2048, .modp3072, .ecp256, .ecp384:
            let parameters = KeyParameters()
            try parameters.group(group.groupName!)
            try Self.push(group, value, into: parameters)
            key = try parameters.makeKey(group, selection: vigil_selection_public_key())
        }
    }

    /// The public value as OpenSSL's "pub" parameter: a BIGNUM for MODP, an uncompressed SEC1 point for ECP.
    static func push(_ group: DHGroup, _ value: [UInt8], into parameters: KeyParameters) throws(CryptoError) {
        switch group {
        case .modp2048, .modp3072:
            try parameters.bigNumber(vigil_param_public_key(), value)
        case .ecp256, .ecp384:
            try parameters.octets(vigil_param_public_key(), SecureBytes([uncompressedPointPrefix] + value))
        case .curve25519:
            preconditionFailure("X25519 public keys are raw, not OSSL_PARAM")
        }
    }
}
