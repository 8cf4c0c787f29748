#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Serves the control API on a Unix stream socket from the event loop thread. Requests are handled one line at a
/// time; `events --follow` clients stay subscribed until they hang up or fall too far behind (then they are dropped
/// rather than let a slow reader stall the daemon).
public final class ControlServer: @unchecked Sendable {
    public typealias RequestHandler = (ControlRequest) -> ControlResponse

    private let loop: EventLoop
    private let path: String
    private let listenFD: Int32
    private var clients: [Int32: [UInt8]] = [:]
    private var subscribers: Set<Int32> = []
    private let handler: RequestHandler

    /// Who may connect besides root and our own user: members of this group (by the primary group SO_PEERCRED
    /// reports).
    private let group: gid_t?

    /// Binds the socket with mode 0600 from the start (umask set around bind(2): no window in which the path is
    /// more open than it should be), or 0660 owned by `group` when one is given.
    public init(path: String, loop: EventLoop, group: gid_t? = nil, handler: @escaping RequestHandler) throws {
        self.loop = loop
        self.path = path
        self.handler = handler
        self.group = group
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: group == nil ? 0o700 : 0o750])
        }
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw UDPSocket.Failure(operation: "control socket", errno: errno) }
        let previousMask = umask(0o177)
        let bound = UnixAddress.bind(fd, path: path)
        let bindError = errno
        umask(previousMask)
        guard bound == 0, listen(fd, 16) == 0 else {
            let error = bound == 0 ? errno : bindError
            close(fd)
            throw UDPSocket.Failure(operation: "bind control socket \(path)", errno: error)
        }
        if let group {
            // Narrowing is safe after bind: 0600 -> 0660 only adds the named group.
            guard chown(path, geteuid(), group) == 0, chmod(path, 0o660) == 0 else {
                let error = errno
                close(fd)
                throw UDPSocket.Failure(operation: "give control socket \(path) to group \(group)", errno: error)
            }
        }
        listenFD = fd
        loop.watch(fd) { [unowned self] in self.accept() }
    }

    /// SO_PEERCRED: root, the user vigild runs as, or (if configured) a member of the control group.
    static func peerAllowed(fd: Int32, group: gid_t?) -> (allowed: Bool, who: String) {
        var credentials = PeerCredentials()
        var length = socklen_t(MemoryLayout<PeerCredentials>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 else { return (false, "unknown peer") }
        let who = "pid \(credentials.pid) uid \(credentials.uid) gid \(credentials.gid)"
        let allowed = credentials.uid == 0 || credentials.uid == geteuid() || (group.map { credentials.gid == $0 } ?? false)
        return (allowed, who)
    }

    /// Connections refused by the SO_PEERCRED check.
    public private(set) var refusedConnections: UInt64 = 0

    deinit {
        for fd in clients.keys { close(fd) }
        close(listenFD)
        unlink(path)
    }

    /// Sends an event line to every `events --follow` subscriber.
    public func publish(_ event: DaemonEvent) {
        guard !subscribers.isEmpty else { return }
        let line = ControlCoding.encode(event)
        for fd in subscribers where !write(line, to: fd) { drop(fd) }
    }

    private func accept() {
        while true {
            let fd = Glibc.accept(listenFD, nil, nil)
            guard fd >= 0 else { return }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            let (allowed, who) = Self.peerAllowed(fd: fd, group: group)
            guard allowed else {
                refusedConnections += 1
                _ = write(ControlCoding.encode(ControlResponse.failure(ControlError(
                    .permissionDenied, "\(who) may not use the control API: root, uid \(geteuid())"
                        + (group.map { " or group \($0)" } ?? "") + " only"))), to: fd)
                close(fd)
                continue
            }
            clients[fd] = []
            loop.watch(fd) { [unowned self] in self.readable(fd) }
        }
    }

    private func readable(_ fd: Int32) {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let count = read(fd, &chunk, chunk.count)
        if count <= 0 {
            if count == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) { drop(fd) }
            return
        }
        clients[fd, default: []].append(contentsOf: chunk[0..<count])
        guard clients[fd]!.count <= 1 << 20 else { return drop(fd) }
        while let newline = clients[fd]?.firstIndex(of: 0x0A) {
            let line = Array(clients[fd]![..<newline])
            clients[fd]!.removeSubrange(...newline)
            respond(to: line, on: fd)
        }
    }

    private func respond(to line: [UInt8], on fd: Int32) {
        let response: ControlResponse
        let request: ControlRequest
        do {
            request = try ControlCoding.decode(ControlRequest.self, line: line)
        } catch {
            let known = ControlRequest.Command.allCases.map(\.rawValue).joined(separator: ", ")
            _ = write(ControlCoding.encode(ControlResponse.failure(ControlError(
                .badRequest, "cannot decode request (\(error)); commands: \(known)"))), to: fd)
            return
        }
        response = handler(request)
        guard write(ControlCoding.encode(response), to: fd) else { return drop(fd) }
        if request.command == .events, request.follow == true { subscribers.insert(fd) }
    }

    private func write(_ bytes: [UInt8], to fd: Int32) -> Bool {
        var offset = 0
        var spins = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent > 0 {
                offset += sent
            } else if sent < 0, errno == EAGAIN || errno == EWOULDBLOCK, spins < 100 {
                spins += 1
                usleep(1000)
            } else {
                return false
            }
        }
        return true
    }

    private func drop(_ fd: Int32) {
        loop.unwatch(fd)
        clients[fd] = nil
        subscribers.remove(fd)
        close(fd)
    }
}

/// `struct ucred` (socket(7), SO_PEERCRED): glibc declares it only under _GNU_SOURCE, which Swift does not import.
struct PeerCredentials {
    var pid: pid_t = 0
    var uid: uid_t = 0
    var gid: gid_t = 0
}

