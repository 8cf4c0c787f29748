import CNetlink
import VigilAddressing
import VigilKernel
#if canImport(Glibc)
import Glibc
#endif

/// An owned `nl_addr` (reference counted by libnl; the owner drops its reference in deinit).
final class NetlinkAddress {
    let pointer: OpaquePointer

    init(_ address: IPAddress, prefixLength: Int? = nil) {
        let bytes = address.bytes
        let family = address.family.netlinkFamily
        guard let built = bytes.withUnsafeBytes({ nl_addr_build(family, $0.baseAddress, $0.count) }) else {
            preconditionFailure("nl_addr_build failed (out of memory)")
        }
        pointer = built
        nl_addr_set_prefixlen(pointer, Int32(prefixLength ?? address.family.bitWidth))
    }

    convenience init(_ prefix: IPPrefix) {
        self.init(prefix.address, prefixLength: prefix.length)
    }

    deinit { nl_addr_put(pointer) }

    /// The address inside a borrowed `nl_addr`; nil for a null pointer or another family's bytes.
    static func ipAddress(_ borrowed: OpaquePointer?) -> IPAddress? {
        guard let borrowed, let data = nl_addr_get_binary_addr(borrowed) else { return nil }
        let length = Int(nl_addr_get_len(borrowed))
        return IPAddress(bytes: UnsafeRawBufferPointer(start: data, count: length))
    }

    /// The prefix in a borrowed `nl_addr` (its own prefix length unless `length` is given); an absent or empty
    /// address is the whole family (`0.0.0.0/0`). Nil when the kernel's data does not fit `family` (another daemon's
    /// odd entry is skipped, never a crash).
    static func prefix(_ borrowed: OpaquePointer?, family: IPAddress.Family, length: Int? = nil) -> IPPrefix? {
        let address = ipAddress(borrowed) ?? .any(family)
        let bits = length ?? borrowed.map { Int(nl_addr_get_prefixlen($0)) } ?? 0
        guard address.family == family, (0...family.bitWidth).contains(bits) else { return nil }
        return IPPrefix(address: address, length: bits)
    }
}

extension IPAddress.Family {
    var netlinkFamily: Int32 {
        switch self {
        case .ipv4: AF_INET
        case .ipv6: AF_INET6
        }
    }

    init?(netlinkFamily: Int32) {
        switch netlinkFamily {
        case AF_INET: self = .ipv4
        case AF_INET6: self = .ipv6
        default: return nil
        }
    }
}

/// A Swift object that owns one libnl object and frees it in `deinit`.
protocol OwnedNetlinkObject: AnyObject {
    var pointer: OpaquePointer { get }
}

extension OwnedNetlinkObject {
    /// Lends the C pointer for the duration of `body` only; the owner is kept alive until `body` returns (Swift may
    /// otherwise release it right after the pointer is read).
    func lend<R>(_ body: (OpaquePointer) throws(KernelError) -> R) throws(KernelError) -> R {
        defer { withExtendedLifetime(self) {} }
        return try body(pointer)
    }

    func lend<R>(_ body: (OpaquePointer) -> R) -> R {
        defer { withExtendedLifetime(self) {} }
        return body(pointer)
    }
}

extension NetlinkAddress: OwnedNetlinkObject {}
extension SAObject: OwnedNetlinkObject {}
extension PolicyObject: OwnedNetlinkObject {}
