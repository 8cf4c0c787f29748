import COpenSSL

/// Secret bytes (keys, shared secrets, SKEYSEED, PSKs) whose storage is wiped with `OPENSSL_cleanse` when the last
/// copy is dropped. Immutable; copies share one storage. `description` never prints the contents.
public struct SecureBytes: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    final class Storage: @unchecked Sendable {  // immutable after the initializer that filled it returns
        let buffer: UnsafeMutableRawBufferPointer

        init(count: Int) {
            precondition(count >= 0, "negative SecureBytes count \(count)")
            buffer = .allocate(byteCount: count, alignment: 16)
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
        }

        deinit {
            if let base = buffer.baseAddress { OPENSSL_cleanse(base, buffer.count) }
            #if DEBUG
            SecureBytes.wipeObserver?(Array(buffer))
            #endif
            buffer.deallocate()
        }
    }

    let storage: Storage

    /// Copies `bytes` into wiped storage. The caller's array itself is not wiped.
    public init(_ bytes: [UInt8]) {
        storage = Storage(count: bytes.count)
        bytes.withUnsafeBytes { storage.buffer.copyMemory(from: $0) }
    }

    /// Copies `buffer` into wiped storage, with no intermediate array.
    public init(copying buffer: UnsafeRawBufferPointer) {
        storage = Storage(count: buffer.count)
        storage.buffer.copyMemory(from: buffer)
    }

    /// `count` zero bytes.
    public init(count: Int) {
        storage = Storage(count: count)
    }

    /// Fresh storage filled by `initializer`, the only place a SecureBytes is ever written.
    init<E: Error>(count: Int, initializingWith initializer: (UnsafeMutableRawBufferPointer) throws(E) -> Void) throws(E) {
        storage = Storage(count: count)
        try initializer(storage.buffer)
    }

    public var count: Int { storage.buffer.count }
    public var isEmpty: Bool { count == 0 }

    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(storage.buffer))
    }

    /// A copy of a range, in its own wiped storage (e.g. SK_d, SK_ai, ... cut out of prf+ output).
    public subscript(range: Range<Int>) -> SecureBytes {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "range \(range) outside 0..<\(count)")
        return SecureBytes(count: range.count) { target in
            target.copyMemory(from: UnsafeRawBufferPointer(rebasing: storage.buffer[range]))
        }
    }

    public subscript<R: RangeExpression<Int>>(range: R) -> SecureBytes {
        self[range.relative(to: 0..<count)]
    }

    public static func + (lhs: SecureBytes, rhs: SecureBytes) -> SecureBytes {
        SecureBytes(count: lhs.count + rhs.count) { target in
            target.copyMemory(from: UnsafeRawBufferPointer(lhs.storage.buffer))
            UnsafeMutableRawBufferPointer(rebasing: target[lhs.count...])
                .copyMemory(from: UnsafeRawBufferPointer(rhs.storage.buffer))
        }
    }

    /// An ordinary array copy of the secret. It leaves the wiping regime: use it only where a value must go on the
    /// wire or into an API that takes `[UInt8]` (the kernel, a payload), never to keep a key around.
    public var bytes: [UInt8] { Array(storage.buffer) }

    /// Constant-time comparison of the contents.
    public static func == (lhs: SecureBytes, rhs: SecureBytes) -> Bool {
        lhs.withUnsafeBytes { a in rhs.withUnsafeBytes { b in constantTimeEquals(a, b) } }
    }

    /// Hashes only the length, so a hash table never mixes secret bytes into its state.
    public func hash(into hasher: inout Hasher) { hasher.combine(count) }

    public var description: String { "SecureBytes(\(count) bytes)" }
    public var debugDescription: String { description }
}

#if DEBUG
extension SecureBytes {
    /// Sees each storage's bytes after they were cleansed, just before they are freed (tests only).
    @TaskLocal static var wipeObserver: (@Sendable ([UInt8]) -> Void)?

    /// Runs `body` with `observer` called for every SecureBytes storage freed inside it on this task.
    static func withWipeObserver<R>(_ observer: @escaping @Sendable ([UInt8]) -> Void, _ body: () throws -> R) rethrows -> R {
        try $wipeObserver.withValue(observer, operation: body)
    }
}
#endif

/// Compares two byte sequences in time that depends only on their lengths (CRYPTO_memcmp). Lengths are not secret:
/// different lengths return false at once. Use for AUTH payloads, ICVs, hashes.
public func constantTimeEquals(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
    guard a.count == b.count else { return false }
    guard !a.isEmpty else { return true }
    return withContiguousBytes(a) { pa in
        withContiguousBytes(b) { pb in CRYPTO_memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0 }
    }
}

private func withContiguousBytes<C: Collection<UInt8>, R>(_ bytes: C, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    if let result = bytes.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) { return result }
    return Array(bytes).withUnsafeBytes(body)
}

/// OpenSSL's CSPRNG for production callers (nonces, SPIs, IVs). Pure code takes an injected generator instead.
public enum Random {
    public static func bytes(_ count: Int) -> [UInt8] {
        precondition(count >= 0, "negative random byte count \(count)")
        var result = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return result }
        let status = result.withUnsafeMutableBytes { RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(count)) }
        guard status == 1 else { OpenSSLErrorQueue.crash("RAND_bytes") }
        return result
    }
}

/// A `RandomNumberGenerator` over OpenSSL's CSPRNG, to inject where pure code takes `inout some RandomNumberGenerator`.
public struct OpenSSLRandomNumberGenerator: RandomNumberGenerator, Sendable {
    public init() {}

    public mutating func next() -> UInt64 {
        var value: UInt64 = 0
        let status = withUnsafeMutableBytes(of: &value) { RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), 8) }
        guard status == 1 else { OpenSSLErrorQueue.crash("RAND_bytes") }
        return value
    }
}
