import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// systemd's notification socket, as tests stand it in for systemd (sd_notify(3)): a bound AF_UNIX datagram socket
/// whose name goes into NOTIFY_SOCKET; `receive` returns the next datagram's assignments.
public final class NotifySocket: @unchecked Sendable {
    public let descriptor: Int32
    /// As NOTIFY_SOCKET names it.
    public let name: String
    private let path: String?

    public init(abstract: Bool) throws {
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        let unique = "vigil-notify-\(getpid())-\(UUID().uuidString.prefix(8))"
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes: [UInt8] = abstract ? [0] + Array(unique.utf8) : Array((NSTemporaryDirectory() + unique).utf8)
        path = abstract ? nil : NSTemporaryDirectory() + unique
        name = abstract ? "@" + unique : path!
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (abstract ? 0 : 1))
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) } }
        guard bound == 0 else { throw LabError("bind \(name): \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(descriptor)
        if let path { unlink(path) }
    }

    /// The next datagram (waits up to 10 s), as its assignments.
    public func receive() -> [String: String]? {
        var buffer = [UInt8](repeating: 0, count: 8192)
        let count = recv(descriptor, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        var assignments: [String: String] = [:]
        for line in String(decoding: buffer[..<count], as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            assignments[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return assignments
    }
}

