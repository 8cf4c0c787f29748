#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Client side, used by the `vigil` CLI and tests.
public final class ControlClient {
    private let fd: Int32
    private var buffer: [UInt8] = []

    public init(path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlError(.internalError, "socket: errno \(errno)") }
        guard UnixAddress.connect(fd, path: path) == 0 else {
            let error = String(cString: strerror(errno))
            close(fd)
            throw ControlError(.daemonUnreachable, "cannot connect to vigild at \(path): \(error) (is vigild running?)")
        }
        self.fd = fd
    }

    deinit { close(fd) }

    public func send(_ request: ControlRequest) throws -> ControlResponse {
        let bytes = ControlCoding.encode(request)
        let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == bytes.count else { throw ControlError(.daemonUnreachable, "vigild closed the control connection") }
        guard let line = readLine() else { throw ControlError(.daemonUnreachable, "vigild closed the control connection") }
        return try ControlCoding.decode(ControlResponse.self, line: line)
    }

    /// The next streamed event line, or nil when the daemon hangs up.
    public func nextEvent() throws -> DaemonEvent? {
        guard let line = readLine() else { return nil }
        return try ControlCoding.decode(DaemonEvent.self, line: line)
    }

    private func readLine() -> [UInt8]? {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let count = read(fd, &chunk, chunk.count)
            guard count > 0 else { return nil }
            buffer.append(contentsOf: chunk[0..<count])
        }
    }
}

/// sockaddr_un for a path (bind and connect), ENAMETOOLONG when it does not fit.
public enum UnixAddress {
    public static func bind(_ fd: Int32, path: String) -> Int32 {
        withAddress(path) { Glibc.bind(fd, $0, $1) }
    }

    public static func connect(_ fd: Int32, path: String) -> Int32 {
        withAddress(path) { Glibc.connect(fd, $0, $1) }
    }

    private static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else {
            errno = ENAMETOOLONG
            return -1
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
