#if canImport(Glibc)
import Glibc
#endif

/// An `Endpoint` as the socket calls take it (`sockaddr_in` / `sockaddr_in6` in a `sockaddr_storage`), and back. One
/// conversion for every socket Vigil opens: the daemon's IKE and metrics sockets, the userspace data plane's.
public struct SocketAddress {
    public var storage = sockaddr_storage()

    /// Empty storage, for `recvfrom` / `recvmmsg` to fill.
    public init() {}

    public init(_ endpoint: Endpoint) {
        switch endpoint.address {
        case .v4(let value):
            withUnsafeMutableBytes(of: &storage) { raw in
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = endpoint.port.bigEndian
                address.sin_addr.s_addr = value.bigEndian
                raw.storeBytes(of: address, as: sockaddr_in.self)
            }
        case .v6:
            withUnsafeMutableBytes(of: &storage) { raw in
                var address = sockaddr_in6()
                address.sin6_family = sa_family_t(AF_INET6)
                address.sin6_port = endpoint.port.bigEndian
                let bytes = endpoint.address.bytes
                withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: bytes) }
                raw.storeBytes(of: address, as: sockaddr_in6.self)
            }
        }
    }

    /// The length the socket calls want for this family.
    public var length: socklen_t {
        Int32(storage.ss_family) == AF_INET6
            ? socklen_t(MemoryLayout<sockaddr_in6>.size) : socklen_t(MemoryLayout<sockaddr_in>.size)
    }

    /// The endpoint stored, nil for a family other than IPv4 and IPv6.
    public var endpoint: Endpoint? { Self.endpoint(from: storage) }

    public func withPointer<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        withUnsafeBytes(of: storage) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
        }
    }

    public static func endpoint(from storage: sockaddr_storage) -> Endpoint? {
        withUnsafeBytes(of: storage) { raw in
            switch Int32(storage.ss_family) {
            case AF_INET:
                let address = raw.loadUnaligned(as: sockaddr_in.self)
                return Endpoint(.v4(UInt32(bigEndian: address.sin_addr.s_addr)), UInt16(bigEndian: address.sin_port))
            case AF_INET6:
                let address = raw.loadUnaligned(as: sockaddr_in6.self)
                let ip = withUnsafeBytes(of: address.sin6_addr) { IPAddress(bytes: $0) }
                return ip.map { Endpoint($0, UInt16(bigEndian: address.sin6_port)) }
            default:
                return nil
            }
        }
    }
}
