/// The HTTP/1.1 that `GET /metrics` needs (RFC 9112), pure: a request head parsed from bytes, and the response to
/// it. No I/O here; `MetricsHTTPServer` reads and writes the sockets. Everything it parses comes from whoever can
/// reach the port, before any authentication: every length is bounded and nothing traps.
public enum MetricsHTTP {
    /// Our tunables (RFC 9112 leaves them to the server).
    public enum Limits {
        /// Request line and header fields together; a longer head is dropped unanswered (RFC 9112 §2.3 lets a server
        /// bound them; 8 KiB is what most servers allow).
        public static let maximumRequestHead = 8 * 1024
        /// A request head not complete this long after the connection was accepted is dropped (slow clients).
        public static let requestHeadTimeout: Duration = .seconds(5)
        /// A response the client has not read this long after its request was complete is dropped with the connection.
        public static let responseTimeout: Duration = .seconds(5)
        /// Connections served at once; more wait in the listen backlog until one of these ends.
        public static let maximumConnections = 8
        /// Connections the kernel completes and queues for `accept(2)` meanwhile.
        public static let listenBacklog: Int32 = 16
        /// How often the event loop renders the metrics into the snapshot the server answers with.
        public static let snapshotInterval: Duration = .seconds(1)
    }

    /// The Prometheus text exposition format's media type (version 0.0.4).
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
    /// The one resource served.
    public static let metricsPath = "/metrics"

    public struct RequestHead: Hashable, Sendable {
        public var method: String
        /// The origin-form target (RFC 9112 §3.2.1) as sent, query included.
        public var target: String
        public var version: String

        /// The target's path, without a query.
        public var path: Substring { target.prefix { $0 != "?" } }
    }

    public enum ParseResult: Hashable, Sendable {
        /// No end of the head yet (and fewer than `Limits.maximumRequestHead` bytes): read more.
        case incomplete
        case complete(RequestHead)
        /// Not an HTTP/1.x request head: answered with 400 and closed.
        case malformed(String)
        /// `Limits.maximumRequestHead` bytes without the head's end: dropped.
        case tooLarge
    }

    /// RFC 9112 §2.1: the head ends with an empty line (CRLF CRLF). Leading empty lines are skipped (§2.2).
    public static func parse(_ bytes: some Collection<UInt8>) -> ParseResult {
        let head = Array(bytes.prefix(Limits.maximumRequestHead))
        guard let end = endOfHead(head) else { return bytes.count >= Limits.maximumRequestHead ? .tooLarge : .incomplete }
        guard head[..<end].allSatisfy({ $0 == 0x09 || (0x20..<0x7F).contains($0) || $0 == 0x0D || $0 == 0x0A }) else {
            return .malformed("bytes outside printable ASCII in the request head")
        }
        var lines = String(decoding: head[..<end], as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)[...]
        while lines.first == "" { lines.removeFirst() }
        guard let requestLine = lines.popFirst() else { return .malformed("no request line") }
        // RFC 9112 §3: method SP request-target SP HTTP-version.
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .malformed("request line is not 'METHOD TARGET HTTP/1.1'") }
        let (method, target, version) = (parts[0], parts[1], parts[2])
        guard !method.isEmpty, method.utf8.allSatisfy(isTokenCharacter) else { return .malformed("method is not a token") }
        guard target.hasPrefix("/") else { return .malformed("request target is not an absolute path") }
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else { return .malformed("version is not HTTP/1.0 or HTTP/1.1") }
        for line in lines where !line.isEmpty {
            // RFC 9112 §5.1: field-name ":" field-value, no space before the colon; §5.2: obsolete folding refused.
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                  line[..<colon].utf8.allSatisfy(isTokenCharacter) else {
                return .malformed("header field line is not 'Name: value'")
            }
        }
        return .complete(RequestHead(method: String(method), target: String(target), version: String(version)))
    }

    /// The index of the CRLF CRLF that ends the head, if it is in `bytes`.
    static func endOfHead(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4)
        where bytes[index] == 0x0D && bytes[index + 1] == 0x0A && bytes[index + 2] == 0x0D && bytes[index + 3] == 0x0A {
            return index + 2
        }
        return nil
    }

    /// RFC 9110 §5.6.2 tchar.
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    public struct Response: Hashable, Sendable {
        public var status: Int
        public var reason: String
        public var headers: [(String, String)]
        public var body: [UInt8]

        public static func == (a: Response, b: Response) -> Bool {
            a.status == b.status && a.reason == b.reason && a.body == b.body
                && a.headers.map { $0.0 + ":" + $0.1 } == b.headers.map { $0.0 + ":" + $0.1 }
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(status)
            hasher.combine(body)
        }

        /// Status line, headers (with Content-Length and Connection: close, one request per connection), body.
        public var bytes: [UInt8] {
            var head = "HTTP/1.1 \(status) \(reason)\r\n"
            for (name, value) in headers { head += "\(name): \(value)\r\n" }
            head += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
            return Array(head.utf8) + body
        }
    }

    /// What a request gets: the metrics for `GET /metrics`, 405 for another method on it, 404 elsewhere.
    public static func response(to request: RequestHead, metrics: () -> String) -> Response {
        guard request.path == metricsPath else { return plain(404, "Not Found", "only \(metricsPath) is served") }
        guard request.method == "GET" else {
            var response = plain(405, "Method Not Allowed", "\(metricsPath) answers GET only")
            response.headers.append(("Allow", "GET"))
            return response
        }
        return Response(status: 200, reason: "OK", headers: [("Content-Type", contentType)], body: Array(metrics().utf8))
    }

    /// The answer to a malformed request head.
    public static let badRequest = plain(400, "Bad Request", "not an HTTP/1.1 request")

    static func plain(_ status: Int, _ reason: String, _ text: String) -> Response {
        Response(status: status, reason: reason, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array((text + "\n").utf8))
    }
}
