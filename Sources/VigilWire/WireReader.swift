/// A bounds-checked reader over a received datagram. Parsing never trusts a length field: every read checks what is
/// left and throws `WireError.truncated` naming the field, so a malformed packet becomes an error value, not a crash.
public struct WireReader: Sendable {
    public let bytes: [UInt8]
    /// Index of the next unread byte.
    public private(set) var offset: Int
    /// One past the last byte this reader may read (a sub-reader sees only its own payload).
    public let end: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.offset = 0
        self.end = bytes.count
    }

    init(bytes: [UInt8], offset: Int, end: Int) {
        self.bytes = bytes
        self.offset = offset
        self.end = end
    }

    public var remaining: Int { end - offset }
    public var isAtEnd: Bool { offset == end }

    public mutating func readUInt8(_ field: StaticString) throws(WireError) -> UInt8 {
        try need(1, field)
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readUInt16(_ field: StaticString) throws(WireError) -> UInt16 {
        try need(2, field)
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    public mutating func readUInt32(_ field: StaticString) throws(WireError) -> UInt32 {
        try need(4, field)
        var value: UInt32 = 0
        for i in 0..<4 { value = value << 8 | UInt32(bytes[offset + i]) }
        offset += 4
        return value
    }

    public mutating func readUInt64(_ field: StaticString) throws(WireError) -> UInt64 {
        try need(8, field)
        var value: UInt64 = 0
        for i in 0..<8 { value = value << 8 | UInt64(bytes[offset + i]) }
        offset += 8
        return value
    }

    public mutating func readBytes(_ count: Int, _ field: StaticString) throws(WireError) -> [UInt8] {
        guard count >= 0 else { throw WireError(.invalidLength, "\(field): negative length \(count)") }
        try need(count, field)
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    /// Everything left in this reader.
    public mutating func readRest() -> [UInt8] {
        defer { offset = end }
        return Array(bytes[offset..<end])
    }

    /// A reader over the next `count` bytes (one payload's body); this reader moves past them.
    public mutating func subReader(_ count: Int, _ field: StaticString) throws(WireError) -> WireReader {
        guard count >= 0 else { throw WireError(.invalidLength, "\(field): negative length \(count)") }
        try need(count, field)
        defer { offset += count }
        return WireReader(bytes: bytes, offset: offset, end: offset + count)
    }

    public mutating func skip(_ count: Int, _ field: StaticString) throws(WireError) {
        try need(count, field)
        offset += count
    }

    private func need(_ count: Int, _ field: StaticString) throws(WireError) {
        if remaining < count {
            throw WireError(.truncated, "\(field): needs \(count) bytes, \(remaining) left at offset \(offset)")
        }
    }
}

/// Builds a message in network byte order. Lengths that are known only at the end are patched in place.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    public mutating func write(_ value: UInt8) { bytes.append(value) }

    public mutating func write(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    public mutating func write(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    public mutating func write(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    public mutating func write<C: Collection>(bytes more: C) where C.Element == UInt8 { bytes.append(contentsOf: more) }

    /// Overwrites two bytes at `offset` (a length field written as a placeholder earlier).
    public mutating func patch(_ value: UInt16, at offset: Int) {
        precondition(offset + 2 <= bytes.count, "patch outside the message")
        bytes[offset] = UInt8(truncatingIfNeeded: value >> 8)
        bytes[offset + 1] = UInt8(truncatingIfNeeded: value)
    }

    public mutating func patch(_ value: UInt32, at offset: Int) {
        precondition(offset + 4 <= bytes.count, "patch outside the message")
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> UInt32(24 - 8 * i)) }
    }

    public mutating func patch(_ value: UInt8, at offset: Int) {
        precondition(offset < bytes.count, "patch outside the message")
        bytes[offset] = value
    }
}

/// A peer's malformed packet, as a value with a stable code (never a crash).
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable {
        case truncated
        case invalidLength
        case unsupportedVersion
        case unsupportedCriticalPayload
        case invalidValue
        case trailingBytes
    }

    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(detail)" }
}
