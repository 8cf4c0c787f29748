import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The systemd service notification protocol (sd_notify(3)): newline-separated `KEY=VALUE` assignments in one
/// datagram to the AF_UNIX socket that `NOTIFY_SOCKET` names (a path, or an abstract name written with a leading
/// `@`). vigild says READY=1 once its guards are in and its sockets bound, STATUS= with each entry's active peer,
/// RELOADING=1 / READY=1 around a SIGHUP reload, STOPPING=1 on shutdown, and WATCHDOG=1 from its event loop, so a
/// loop that stops turning stops the pings and systemd restarts the service (`WatchdogSec=`).
///
/// Without `NOTIFY_SOCKET` (not started by systemd, or `Type=simple`) there is no notifier and nothing is sent.
public final class SystemdNotifier: @unchecked Sendable {
    /// sd_notify(3) caps nothing, but systemd reads at most one page per datagram; a STATUS= line is cut to fit.
    public static let maximumDatagram = 4096

    /// The socket as `NOTIFY_SOCKET` gave it.
    public let socketName: String
    /// How often to send WATCHDOG=1: half of `WATCHDOG_USEC` (as sd_watchdog_enabled(3) advises), nil when the
    /// watchdog is off or meant for another process (`WATCHDOG_PID`).
    public let watchdogInterval: Duration?

    private let descriptor: Int32
    private var address: sockaddr_un
    private let addressLength: socklen_t

    /// Why a notification could not be sent (reported by the caller, never fatal: the service runs on).
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// nil when `NOTIFY_SOCKET` is unset or empty. Throws when it is set but unusable (a relative path, a name too
    /// long for sockaddr_un, a socket that cannot be made), so a misconfigured unit is reported at start-up.
    public init?(environment: [String: String], processID: pid_t = getpid()) throws(Failure) {
        guard let name = environment["NOTIFY_SOCKET"], !name.isEmpty else { return nil }
        guard name.hasPrefix("/") || name.hasPrefix("@") else {
            throw Failure(description: "NOTIFY_SOCKET '\(name)': allowed: an absolute path or an abstract name starting with @")
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace: a leading NUL, no terminator
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else {
            throw Failure(description: "NOTIFY_SOCKET '\(name)' is longer than a socket address holds (\(capacity - 1) octets)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        // A path is sent with its terminating NUL; an abstract name is exactly its octets.
        addressLength = socklen_t(pathOffset + bytes.count + (bytes[0] == 0 ? 0 : 1))
        self.address = address
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else {
            throw Failure(description: "NOTIFY_SOCKET '\(name)': socket(AF_UNIX, SOCK_DGRAM) failed: \(String(cString: strerror(errno)))")
        }
        socketName = name
        watchdogInterval = Self.watchdogInterval(environment, processID: processID)
    }

    deinit { close(descriptor) }

    /// Half of `WATCHDOG_USEC` when it is a positive number and `WATCHDOG_PID` is absent or this process.
    static func watchdogInterval(_ environment: [String: String], processID: pid_t) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let microseconds = UInt64(text), microseconds > 0 else { return nil }
        if let owner = environment["WATCHDOG_PID"], pid_t(owner) != processID { return nil }
        return .microseconds(Int64(clamping: microseconds / 2))
    }

    /// Sends one notification: the assignments in order, one per line.
    @discardableResult
    public func notify(_ assignments: [(String, String)]) -> Result<Void, Failure> {
        let text = assignments.map { "\($0.0)=\($0.1)" }.joined(separator: "\n")
        let bytes = Array(text.utf8.prefix(Self.maximumDatagram))
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bytes.withUnsafeBytes { sendto(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), socketAddress, addressLength) }
            }
        }
        guard sent == bytes.count else {
            return .failure(Failure(description: "sd_notify to \(socketName) failed: \(sent < 0 ? String(cString: strerror(errno)) : "short write")"))
        }
        return .success(())
    }

    @discardableResult public func ready(status: String) -> Result<Void, Failure> {
        notify([("READY", "1"), ("STATUS", Self.oneLine(status)), ("MAINPID", String(getpid()))])
    }

    @discardableResult public func status(_ status: String) -> Result<Void, Failure> {
        notify([("STATUS", Self.oneLine(status))])
    }

    @discardableResult public func reloading() -> Result<Void, Failure> { notify([("RELOADING", "1")]) }

    @discardableResult public func stopping() -> Result<Void, Failure> { notify([("STOPPING", "1")]) }

    @discardableResult public func watchdog() -> Result<Void, Failure> { notify([("WATCHDOG", "1")]) }

    /// STATUS= is one line: newlines would start new assignments.
    static func oneLine(_ text: String) -> String {
        text.replacingOccurrences(of: "\n", with: "; ")
    }
}
