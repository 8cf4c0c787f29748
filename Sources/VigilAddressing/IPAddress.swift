#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address as a value. Shared by configuration, IKE (traffic selectors, NAT-D), kernel and data plane.
public enum IPAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    case v4(UInt32)
    case v6(high: UInt64, low: UInt64)

    public enum Family: String, Hashable, Sendable, CustomStringConvertible {
        case ipv4 = "IPv4"
        case ipv6 = "IPv6"
        public var description: String { rawValue }
        /// Bits in an address of this family.
        public var bitWidth: Int { self == .ipv4 ? 32 : 128 }
    }

    public var family: Family {
        switch self {
        case .v4: .ipv4
        case .v6: .ipv6
        }
    }

    /// Parses dotted-quad IPv4 or RFC 4291 text IPv6; nil for anything else (host names are not addresses).
    public init?(_ text: String) {
        if text.contains(":") {
            var storage = in6_addr()
            guard inet_pton(AF_INET6, text, &storage) == 1 else { return nil }
            let bytes = withUnsafeBytes(of: &storage) { Array($0) }
            self.init(bytes: bytes)
        } else {
            var storage = in_addr()
            guard inet_pton(AF_INET, text, &storage) == 1 else { return nil }
            let bytes = withUnsafeBytes(of: &storage) { Array($0) }
            self.init(bytes: bytes)
        }
    }

    /// From 4 or 16 bytes in network order; nil for any other count.
    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        let array = Array(bytes)
        switch array.count {
        case 4:
            self = .v4(array.reduce(0) { $0 << 8 | UInt32($1) })
        case 16:
            let high = array[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let low = array[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            self = .v6(high: high, low: low)
        default:
            return nil
        }
    }

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let value):
            return (0..<4).map { UInt8(truncatingIfNeeded: value >> UInt32(24 - 8 * $0)) }
        case .v6(let high, let low):
            return (0..<8).map { UInt8(truncatingIfNeeded: high >> UInt64(56 - 8 * $0)) }
                + (0..<8).map { UInt8(truncatingIfNeeded: low >> UInt64(56 - 8 * $0)) }
        }
    }

    public var description: String {
        var bytes = self.bytes
        var buffer = [CChar](repeating: 0, count: 64)
        let family = self.family == .ipv4 ? AF_INET : AF_INET6
        let ok = bytes.withUnsafeMutableBytes { raw in
            inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) != nil
        }
        precondition(ok, "inet_ntop failed on a well-formed address")
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        switch (lhs, rhs) {
        case (.v4(let a), .v4(let b)): a < b
        case (.v6(let ah, let al), .v6(let bh, let bl)): (ah, al) < (bh, bl)
        case (.v4, .v6): true
        case (.v6, .v4): false
        }
    }

    /// The unspecified address of a family (0.0.0.0 or ::).
    public static func any(_ family: Family) -> IPAddress {
        family == .ipv4 ? .v4(0) : .v6(high: 0, low: 0)
    }

    /// This address with every bit after the first `length` cleared.
    public func masked(to length: Int) -> IPAddress {
        switch self {
        case .v4(let value):
            precondition((0...32).contains(length), "IPv4 prefix length out of range")
            let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
            return .v4(value & mask)
        case .v6(let high, let low):
            precondition((0...128).contains(length), "IPv6 prefix length out of range")
            let highMask: UInt64 = length >= 64 ? ~0 : (length == 0 ? 0 : ~UInt64(0) << UInt64(64 - length))
            let lowMask: UInt64 = length <= 64 ? 0 : (length == 128 ? ~0 : ~UInt64(0) << UInt64(128 - length))
            return .v6(high: high & highMask, low: low & lowMask)
        }
    }

    /// The last address of the prefix of `length` bits that holds this address (all host bits set).
    public func lastInPrefix(of length: Int) -> IPAddress {
        switch self {
        case .v4(let value):
            let hostMask: UInt32 = length == 32 ? 0 : (length == 0 ? ~0 : ~UInt32(0) >> UInt32(length))
            return .v4(value | hostMask)
        case .v6(let high, let low):
            let highHost: UInt64 = length >= 64 ? 0 : (length == 0 ? ~0 : ~UInt64(0) >> UInt64(length))
            let lowHost: UInt64 = length <= 64 ? ~0 : (length == 128 ? 0 : ~UInt64(0) >> UInt64(length - 64))
            return .v6(high: high | highHost, low: low | lowHost)
        }
    }
}

/// An address prefix such as `10.1.0.0/16` (a protected subnet). Always stored with host bits cleared.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    public enum ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        case malformedAddress(String)
        case malformedLength(String)
        case lengthOutOfRange(Int, family: IPAddress.Family)
        case hostBitsSet(String, network: String)

        public var description: String {
            switch self {
            case .malformedAddress(let text): "'\(text)' is not an IPv4 or IPv6 address"
            case .malformedLength(let text): "'\(text)' is not a prefix length"
            case .lengthOutOfRange(let length, let family):
                "prefix length \(length) is out of range for \(family) (0-\(family.bitWidth))"
            case .hostBitsSet(let text, let network): "'\(text)' has host bits set; did you mean \(network)?"
            }
        }
    }

    /// A prefix from an address and a length; host bits are cleared.
    public init(address: IPAddress, length: Int) {
        precondition((0...address.family.bitWidth).contains(length), "prefix length out of range")
        self.address = address.masked(to: length)
        self.length = length
    }

    /// Parses `ADDRESS/LENGTH` or a bare address (a host prefix). Host bits set are an error, as in most gateways,
    /// because `10.1.2.3/16` is almost always a typo.
    public static func parse(_ text: String) throws(ParseError) -> IPPrefix {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let addressText = String(parts[0])
        guard let address = IPAddress(addressText) else { throw .malformedAddress(addressText) }
        var length = address.family.bitWidth
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), !parts[1].isEmpty, parts[1].allSatisfy(\.isNumber) else {
                throw .malformedLength(String(parts[1]))
            }
            guard (0...address.family.bitWidth).contains(parsed) else {
                throw .lengthOutOfRange(parsed, family: address.family)
            }
            length = parsed
        }
        let prefix = IPPrefix(address: address, length: length)
        guard prefix.address == address else { throw .hostBitsSet(text, network: prefix.description) }
        return prefix
    }

    public var family: IPAddress.Family { address.family }
    public var first: IPAddress { address }
    public var last: IPAddress { address.lastInPrefix(of: length) }

    public func contains(_ other: IPAddress) -> Bool {
        other.family == family && other.masked(to: length) == address
    }

    /// True when the two prefixes share at least one address.
    public func overlaps(_ other: IPPrefix) -> Bool {
        guard other.family == family else { return false }
        let shorter = min(length, other.length)
        return address.masked(to: shorter) == other.address.masked(to: shorter)
    }

    public var description: String { "\(address)/\(length)" }
}

/// A UDP endpoint: an address and a port.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(_ address: IPAddress, _ port: UInt16) {
        self.address = address
        self.port = port
    }

    public var description: String {
        address.family == .ipv6 ? "[\(address)]:\(port)" : "\(address):\(port)"
    }
}
