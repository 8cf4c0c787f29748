import COpenSSL
import Synchronization
import VigilAlgorithms

/// Integrity (truncated HMAC: RFC 2404 HMAC-SHA1-96, RFC 4868 HMAC-SHA2-256-128/384-192/512-256), keyed once and
/// reused for every packet of an SA. `mac` returns the truncated ICV. Safe to share: calls are serialized.
public final class IntegrityContext: @unchecked Sendable {
    public let algorithm: IntegrityAlgorithm
    private let hmac: HMACContext
    private let lock = Mutex(())

    public init(_ algorithm: IntegrityAlgorithm, key: SecureBytes) throws(CryptoError) {
        // RFC 4868 §2.1.1 / RFC 2404 §3: the key is exactly the hash output length.
        guard key.count == algorithm.keyLength else {
            throw .invalidLength("\(algorithm) key", "\(key.count) bytes, expected \(algorithm.keyLength)")
        }
        self.algorithm = algorithm
        self.hmac = HMACContext(algorithm.hash, key: key)
    }

    public var icvLength: Int { algorithm.icvLength }

    /// The fast path for ESP: writes the ICV into `icv` (exactly `icvLength` bytes), no heap allocation.
    public func mac(_ data: UnsafeRawBufferPointer, into icv: UnsafeMutableRawBufferPointer) {
        precondition(icv.count == algorithm.icvLength, "ICV buffer of \(icv.count) bytes for \(algorithm)")
        let fullLength = algorithm.hash.outputLength
        withUnsafeTemporaryAllocation(byteCount: fullLength, alignment: 16) { full in
            lock.withLock { _ in
                hmac.reset()
                hmac.update(data)
                hmac.finish(into: full)
            }
            icv.copyMemory(from: UnsafeRawBufferPointer(rebasing: full[0..<icv.count]))
        }
    }

    public func mac(_ data: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: algorithm.icvLength) { icv, initialized in
            mac(data, into: UnsafeMutableRawBufferPointer(icv))
            initialized = icv.count
        }
    }

    public func mac(_ data: [UInt8]) -> [UInt8] {
        data.withUnsafeBytes { mac($0) }
    }

    /// Recomputes the ICV and compares in constant time; a wrong-length `icv` is simply false.
    public func verify(_ data: [UInt8], icv: [UInt8]) -> Bool {
        data.withUnsafeBytes { data in icv.withUnsafeBytes { verify(data, icv: $0) } }
    }

    /// The ESP fast path: no heap allocation.
    public func verify(_ data: UnsafeRawBufferPointer, icv: UnsafeRawBufferPointer) -> Bool {
        guard icv.count == algorithm.icvLength else { return false }
        return withUnsafeTemporaryAllocation(byteCount: icv.count, alignment: 16) { expected in
            mac(data, into: expected)
            return constantTimeEquals(UnsafeRawBufferPointer(expected), icv)
        }
    }
}

extension IntegrityAlgorithm {
    var hash: HMAC.Hash {
        switch self {
        case .hmacSHA1_96: .sha1
        case .hmacSHA2_256_128: .sha256
        case .hmacSHA2_384_192: .sha384
        case .hmacSHA2_512_256: .sha512
        }
    }
}
