#if canImport(Glibc)
import Glibc
#endif
import VigilAddressing
import VigilNetlink

/// A bound, non-blocking UDP socket for IKE (port 500) or IKE + ESP-in-UDP (port 4500). Owns its descriptor.
/// Every one bypasses IPsec policies (`SocketPolicy.bypass`): a fail-closed guard or a Child SA whose selectors
/// cover the tunnel endpoints (a full tunnel) never captures IKE or the outer ESP-in-UDP packets.
public final class UDPSocket: @unchecked Sendable {
    public let fd: Int32
    public let local: Endpoint

    public struct Failure: Error, CustomStringConvertible {
        public let operation: String
        public let errno: Int32
        public var description: String { "\(operation): \(String(cString: strerror(errno))) (errno \(errno))" }
    }

    /// RFC 3948 §2.2: the 4-byte non-ESP marker that precedes IKE messages on port 4500.
    public static let nonESPMarker: [UInt8] = [0, 0, 0, 0]

    public init(bindTo local: Endpoint) throws {
        let family = local.address.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(operation: "socket", errno: errno) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if family == AF_INET6 {
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        do {
            try SocketPolicy.bypass(descriptor: fd, family: local.address.family)
        } catch {
            close(fd)
            throw Failure(operation: "IPsec policy bypass for \(local), \(error.call)", errno: error.errno)
        }
        let status = SocketAddress(local).withPointer { bind(fd, $0, $1) }
        guard status == 0 else {
            let error = errno
            close(fd)
            throw Failure(operation: "bind \(local)", errno: error)
        }
        self.fd = fd
        self.local = local
    }

    deinit { close(fd) }

    /// Linux `<linux/udp.h>`: the socket option that turns a UDP socket into an RFC 3948 encapsulation socket
    /// (level SOL_UDP = IPPROTO_UDP = 17, option UDP_ENCAP = 100, type UDP_ENCAP_ESPINUDP = 2).
    public static let udpEncapsulationOption: Int32 = 100
    public static let espInUDPEncapsulation: Int32 = 2

    /// Hands ESP-in-UDP (RFC 3948 §2.1: a datagram that does not start with the non-ESP marker) arriving on this
    /// socket to the kernel's XFRM input, which decapsulates it with the SA installed for it; IKE messages (after the
    /// marker) and NAT keepalives still reach the socket. Needed on port 4500 whenever the kernel carries ESP:
    /// without it the kernel delivers the peer's ESP to this socket and the inbound half of every UDP-encapsulated
    /// Child SA is lost.
    public func enableKernelESPDecapsulation() throws {
        var type = Self.espInUDPEncapsulation
        guard setsockopt(fd, Int32(IPPROTO_UDP), Self.udpEncapsulationOption, &type, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw Failure(operation: "setsockopt UDP_ENCAP_ESPINUDP on \(local)", errno: errno)
        }
    }

    /// The socket's UDP encapsulation type (0 when none), read back from the kernel.
    public func encapsulationType() throws -> Int32 {
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, Int32(IPPROTO_UDP), Self.udpEncapsulationOption, &type, &length) == 0 else {
            throw Failure(operation: "getsockopt UDP_ENCAP on \(local)", errno: errno)
        }
        return type
    }

    /// Sends one datagram; returns the error instead of throwing so the caller can log and count it.
    @discardableResult
    public func send(_ bytes: [UInt8], to remote: Endpoint) -> Failure? {
        let sent = bytes.withUnsafeBytes { buffer in
            SocketAddress(remote).withPointer { sendto(fd, buffer.baseAddress, buffer.count, 0, $0, $1) }
        }
        return sent < 0 ? Failure(operation: "sendto \(remote)", errno: errno) : nil
    }

    /// RFC 768: the largest UDP payload; the receive buffer is this big once per socket, never per datagram.
    public static let maximumDatagram = 65_535
    private var receiveBuffer = [UInt8](repeating: 0, count: UDPSocket.maximumDatagram)

    /// Receives one datagram if one is waiting, copied out at its own size (a queued datagram never pins 64 KiB).
    /// Datagrams longer than `maximumSize` are truncated by the kernel and dropped here (returns an empty array).
    public func receive(maximumSize: Int = UDPSocket.maximumDatagram) -> (bytes: [UInt8], from: Endpoint)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let limit = min(maximumSize, receiveBuffer.count)
        let count = receiveBuffer.withUnsafeMutableBytes { raw in
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(fd, raw.baseAddress, limit, 0, $0, &length)
                }
            }
        }
        guard count >= 0, let from = SocketAddress.endpoint(from: storage) else { return nil }
        return (Array(receiveBuffer[0..<count]), from)
    }

    /// Receives and hands to `body` at most `limit` waiting datagrams; returns how many it handled.
    @discardableResult
    public func receive(atMost limit: Int, _ body: (_ bytes: [UInt8], _ from: Endpoint) -> Void) -> Int {
        var handled = 0
        while handled < limit, let (bytes, from) = receive() {
            body(bytes, from)
            handled += 1
        }
        return handled
    }
}

