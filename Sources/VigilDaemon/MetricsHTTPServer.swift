#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import Synchronization
import VigilAddressing

/// `GET /metrics` over HTTP/1.1 on `global.metrics.listen`: one listening TCP socket, one request per connection.
///
/// Why a thread of its own and not the event loop: the loop's watches are for readability only, and a response
/// (tens of KiB of text) may not fit a socket's send buffer, so answering on the loop would need write readiness
/// and per-connection buffers threaded through it; a client that reads slowly could then hold the loop's attention.
/// Here the loop only renders the text once per `MetricsHTTP.Limits.snapshotInterval` (`publish`) into a mutex the
/// server thread reads; the thread polls its own non-blocking sockets, so nothing a client does (or fails to do)
/// reaches the event loop. The thread never touches the daemon's state.
public final class MetricsHTTPServer: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let operation: String
        public let errno: Int32
        public var description: String { "\(operation): \(String(cString: strerror(errno))) (errno \(errno))" }
    }

    /// What the server did, for the daemon's own metrics.
    public struct Statistics: Hashable, Sendable {
        /// Responses by status code.
        public var responses: [Int: UInt64] = [:]
        /// Connections closed unanswered, by why.
        public var dropped: [DropReason: UInt64] = [:]
    }

    public enum DropReason: String, Hashable, Sendable {
        /// More than `MetricsHTTP.Limits.maximumRequestHead` bytes without the head's end.
        case requestTooLarge = "request-too-large"
        /// The head not complete within `MetricsHTTP.Limits.requestHeadTimeout`.
        case requestTimeout = "request-timeout"
        /// The response not read within `MetricsHTTP.Limits.responseTimeout`.
        case responseTimeout = "response-timeout"
    }

    public let local: Endpoint
    private let listener: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let snapshot = Mutex<String>("")
    private let statistics = Mutex(Statistics())
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private var started = false

    /// Binds and listens (errors name the address); serving starts with `start()`.
    public init(listen local: Endpoint) throws {
        let family = local.address.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(operation: "metrics socket", errno: errno) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if family == AF_INET6 { _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size)) }
        guard SocketAddress(local).withPointer({ bind(fd, $0, $1) }) == 0, listen(fd, MetricsHTTP.Limits.listenBacklog) == 0 else {
            let error = errno
            close(fd)
            throw Failure(operation: "metrics.listen \(local)", errno: error)
        }
        var pair: [Int32] = [0, 0]
        guard pipe(&pair) == 0 else {
            let error = errno
            close(fd)
            throw Failure(operation: "metrics wake pipe", errno: error)
        }
        for end in pair { Self.makeNonBlocking(end) }
        listener = fd
        wakeRead = pair[0]
        wakeWrite = pair[1]
        self.local = Endpoint(local.address, local.port == 0 ? Self.boundPort(fd) : local.port)
    }

    /// The port the kernel chose for a bind to port 0 (tests).
    private static func boundPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return withUnsafeBytes(of: storage) { raw in UInt16(raw[2]) << 8 | UInt16(raw[3]) }  // sin_port / sin6_port, network order
    }

    deinit {
        precondition(!started || stopping.load(ordering: .sequentiallyConsistent), "a started metrics server is stopped before it goes")
        close(listener)
        close(wakeRead)
        close(wakeWrite)
    }

    /// From the event loop: the text every following `GET /metrics` answers with.
    public func publish(_ text: String) { snapshot.withLock { $0 = text } }

    public var currentStatistics: Statistics { statistics.withLock { $0 } }

    public func start() {
        precondition(!started, "the metrics server starts once")
        started = true
        Thread.detachNewThread { [self] in
            serve()
            finished.signal()
        }
    }

    /// Stops serving and waits for the thread (at most one poll round: the wake pipe ends its wait).
    public func stop() {
        guard started, !stopping.exchange(true, ordering: .sequentiallyConsistent) else { return }
        var one: UInt8 = 1
        _ = write(wakeWrite, &one, 1)
        finished.wait()
    }

    // MARK: The server thread

    private final class Connection {
        let fd: Int32
        var received: [UInt8] = []
        var outgoing: [UInt8]?
        var sent = 0
        var deadline: Duration

        init(fd: Int32, deadline: Duration) {
            self.fd = fd
            self.deadline = deadline
        }
    }

    private func serve() {
        let clock = MonotonicClock()
        var connections: [Connection] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !stopping.load(ordering: .sequentiallyConsistent) {
            let accepting = connections.count < MetricsHTTP.Limits.maximumConnections
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: accepting ? listener : -1, events: Int16(POLLIN), revents: 0)]
            for connection in connections {
                fds.append(pollfd(fd: connection.fd, events: Int16(connection.outgoing == nil ? POLLIN : POLLOUT), revents: 0))
            }
            let now = clock.now
            let wait = connections.map { max(.zero, $0.deadline - now) }.min() ?? .seconds(60)
            let (seconds, attoseconds) = wait.components
            let milliseconds = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            if poll(&fds, nfds_t(fds.count), milliseconds) < 0, errno != EINTR { break }

            var ended = Set<Int32>()
            for (connection, entry) in zip(connections, fds.dropFirst(2)) where entry.revents != 0 {
                if connection.outgoing == nil {
                    readRequest(connection, &buffer, now: clock.now, ended: &ended)
                } else {
                    writeResponse(connection, ended: &ended)
                }
            }
            let later = clock.now
            for connection in connections where !ended.contains(connection.fd) && connection.deadline <= later {
                count(dropped: connection.outgoing == nil ? .requestTimeout : .responseTimeout)
                ended.insert(connection.fd)
            }
            for fd in ended { close(fd) }
            connections.removeAll { ended.contains($0.fd) }
            if accepting, fds[1].revents != 0 {
                while connections.count < MetricsHTTP.Limits.maximumConnections {
                    let fd = accept(listener, nil, nil)
                    guard fd >= 0 else { break }
                    Self.makeNonBlocking(fd)
                    connections.append(Connection(fd: fd, deadline: clock.now + MetricsHTTP.Limits.requestHeadTimeout))
                }
            }
        }
        for connection in connections { close(connection.fd) }
    }

    private func readRequest(_ connection: Connection, _ buffer: inout [UInt8], now: Duration, ended: inout Set<Int32>) {
        let count = buffer.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, 0) }
        if count < 0 {
            if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { ended.insert(connection.fd) }
            return
        }
        guard count > 0 else { ended.insert(connection.fd); return }  // the client closed before a whole head
        // Never more than the limit plus one read is kept.
        connection.received += buffer[..<count]
        let response: MetricsHTTP.Response
        switch MetricsHTTP.parse(connection.received) {
        case .incomplete:
            return
        case .tooLarge:
            self.count(dropped: .requestTooLarge)
            ended.insert(connection.fd)
            return
        case .malformed:
            response = MetricsHTTP.badRequest
        case .complete(let head):
            response = MetricsHTTP.response(to: head) { snapshot.withLock { $0 } }
        }
        statistics.withLock { $0.responses[response.status, default: 0] += 1 }
        connection.received = []
        connection.outgoing = response.bytes
        connection.deadline = now + MetricsHTTP.Limits.responseTimeout
        writeResponse(connection, ended: &ended)
    }

    private func writeResponse(_ connection: Connection, ended: inout Set<Int32>) {
        guard let outgoing = connection.outgoing else { return }
        while connection.sent < outgoing.count {
            let count = outgoing.withUnsafeBytes { raw in
                send(connection.fd, raw.baseAddress! + connection.sent, raw.count - connection.sent, Int32(MSG_NOSIGNAL))
            }
            if count < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
                ended.insert(connection.fd)
                return
            }
            connection.sent += count
        }
        _ = shutdown(connection.fd, Int32(SHUT_WR))
        ended.insert(connection.fd)
    }

    /// Glibc's module does not export pipe2(2) or accept4(2): the flags are set after.
    private static func makeNonBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    }

    private func count(dropped reason: DropReason) {
        statistics.withLock { $0.dropped[reason, default: 0] += 1 }
    }
}
