// VigilCrypto: the only importer of OpenSSL. Every OpenSSL return is checked on the line after the call and the
// thread's error queue is drained into the thrown CryptoError.
import COpenSSL

/// A failure of a cryptographic operation: a stable `code` a caller can act on, the operation that failed, and the
/// text of OpenSSL's error queue (or our own reason) for the log.
public struct CryptoError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable {
        /// OpenSSL refused an operation; `detail` holds its error queue.
        case library
        /// A key, IV, nonce or tag had the wrong length for the algorithm.
        case invalidLength
        /// A peer's key exchange value is malformed or not a valid group element (RFC 6989, RFC 5903 §7).
        case invalidPeerPublicValue
        /// An AEAD ICV did not verify (RFC 4106 §3, RFC 5282 §5).
        case authenticationFailed
        /// The algorithm is not usable with this context (e.g. GCM handed to CBCContext).
        case unsupportedAlgorithm
    }

    public let code: Code
    public let operation: String
    public let detail: String

    public init(code: Code, operation: String, detail: String) {
        self.code = code
        self.operation = operation
        self.detail = detail
    }

    /// The one value every AEAD open throws on a bad ICV, so callers can `catch CryptoError.authenticationFailed`.
    public static let authenticationFailed = CryptoError(
        code: .authenticationFailed, operation: "AES-GCM open", detail: "integrity check value mismatch")

    public var description: String { "\(operation) failed (\(code.rawValue)): \(detail)" }
}

extension CryptoError {
    /// An OpenSSL call failed: drain the thread's error queue into the error.
    static func library(_ operation: String) -> CryptoError {
        CryptoError(code: .library, operation: operation, detail: OpenSSLErrorQueue.drain())
    }

    static func invalidLength(_ operation: String, _ detail: String) -> CryptoError {
        CryptoError(code: .invalidLength, operation: operation, detail: detail)
    }

    static func invalidPeerPublicValue(_ operation: String, _ detail: String) -> CryptoError {
        CryptoError(code: .invalidPeerPublicValue, operation: operation, detail: detail)
    }
}

enum OpenSSLErrorQueue {
    /// Empties this thread's OpenSSL error queue and returns its entries, oldest first.
    static func drain() -> String {
        var entries: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            entries.append(withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
                ERR_error_string_n(code, buffer.baseAddress, buffer.count)
                return String(cString: buffer.baseAddress!)
            })
        }
        return entries.isEmpty ? "no OpenSSL error queued" : entries.joined(separator: "; ")
    }

    /// For calls that cannot fail unless the process is broken (allocation, fetching a built-in algorithm):
    /// crash with OpenSSL's own words.
    static func crash(_ operation: String, file: StaticString = #file, line: UInt = #line) -> Never {
        preconditionFailure("\(operation) failed: \(drain())", file: file, line: line)
    }
}
