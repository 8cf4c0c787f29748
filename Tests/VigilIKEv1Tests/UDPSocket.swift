import Foundation
import VigilAddressing
import VigilLab
#if canImport(Glibc)
import Glibc
#endif

/// A blocking IPv4 UDP socket for interop tests, created inside a lab namespace (it stays there for its life).
final class UDPSocket: @unchecked Sendable {
    let fd: Int32
    let local: Endpoint

    init(namespace: NetworkNamespace, address: IPAddress, port: UInt16) throws {
        let fd = try namespace.runInside { () throws -> Int32 in
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { throw LabError("socket: errno \(errno)") }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var sin = UDPSocket.socketAddress(Endpoint(address, port))
            let rc = withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else { close(fd); throw LabError("bind \(address):\(port): errno \(errno)") }
            return fd
        }
        self.fd = fd
        self.local = Endpoint(address, port)
    }

    deinit { close(fd) }

    static func socketAddress(_ endpoint: Endpoint) -> sockaddr_in {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = endpoint.port.bigEndian
        let b = endpoint.address.bytes
        sin.sin_addr.s_addr = (UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24)
        return sin
    }

    /// Send failures (errno), for diagnostics.
    var sendErrors: [Int32] = []

    func send(_ bytes: [UInt8], to endpoint: Endpoint) {
        var sin = UDPSocket.socketAddress(endpoint)
        let sent = bytes.withUnsafeBytes { buffer in
            withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) {
                    sendto(fd, buffer.baseAddress, buffer.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        if sent != bytes.count { sendErrors.append(errno) }
    }

    /// Waits up to `timeoutMilliseconds` for one datagram.
    func receive(timeoutMilliseconds: Int32) -> (bytes: [UInt8], from: Endpoint)? {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeoutMilliseconds) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var sin = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let n = buffer.withUnsafeMutableBytes { raw in
            withUnsafeMutablePointer(to: &sin) {
                $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { recvfrom(fd, raw.baseAddress, raw.count, 0, $0, &length) }
            }
        }
        guard n >= 0 else { return nil }
        let s = sin.sin_addr.s_addr
        let address = IPAddress(bytes: [UInt8(s & 0xFF), UInt8(s >> 8 & 0xFF), UInt8(s >> 16 & 0xFF), UInt8(s >> 24)])!
        return (Array(buffer[0..<n]), Endpoint(address, UInt16(bigEndian: sin.sin_port)))
    }
}
