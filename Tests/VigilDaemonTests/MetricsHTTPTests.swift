#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import VigilAddressing
@testable import VigilDaemon
import VigilLiveness

/// The Prometheus text (histograms, HELP/TYPE once per family, label escaping), the HTTP request head parser and its
/// bounds (pure, on bytes), the failover phase clock, and the server on a loopback socket.
@Suite struct MetricsTextTests {
    @Test func aHistogramCountsCumulativelyWithInfSumAndCount() {
        var histogram = Histogram(upperBounds: [0.01, 0.1, 1])
        for value in [0.005, 0.01, 0.05, 0.5, 7] { histogram.observe(value) }
        // le is inclusive: 0.01 falls in the 0.01 bucket.
        #expect(histogram.cumulativeCounts == [2, 3, 4, 5])
        #expect(histogram.count == 5)
        #expect(abs(histogram.sum - 7.565) < 1e-9)
    }

    @Test func aHistogramFamilyIsWrittenAsPrometheusDoes() {
        var metrics = Metrics()
        metrics.observe("vigil_failover_phase1_seconds", ["map": "HQ", "sequence": "10"], 0.02, upperBounds: [0.01, 0.025, 60], help: "Phase 1")
        metrics.observe("vigil_failover_phase1_seconds", ["map": "HQ", "sequence": "10"], 75, upperBounds: [0.01, 0.025, 60])
        #expect(metrics.text == """
            # HELP vigil_failover_phase1_seconds Phase 1
            # TYPE vigil_failover_phase1_seconds histogram
            vigil_failover_phase1_seconds_bucket{map="HQ",sequence="10",le="0.01"} 0
            vigil_failover_phase1_seconds_bucket{map="HQ",sequence="10",le="0.025"} 1
            vigil_failover_phase1_seconds_bucket{map="HQ",sequence="10",le="60"} 1
            vigil_failover_phase1_seconds_bucket{map="HQ",sequence="10",le="+Inf"} 2
            vigil_failover_phase1_seconds_sum{map="HQ",sequence="10"} 75.02
            vigil_failover_phase1_seconds_count{map="HQ",sequence="10"} 2

            """)
        #expect(metrics.histogram("vigil_failover_phase1_seconds", ["map": "HQ", "sequence": "10"])?.count == 2)
    }

    @Test func helpAndTypeOncePerFamilyWithCountersAndGauges() {
        var metrics = Metrics()
        metrics.increment(Metrics.series("vigil_peer_dead_total", ["peer": "b"]), help: "dead")
        metrics.increment(Metrics.series("vigil_peer_dead_total", ["peer": "a"]), help: "dead")
        metrics.set("vigil_peer_up", 1, help: "up")
        metrics.set("vigil_ike_copied_total", 3)
        let lines = metrics.text.split(separator: "\n")
        #expect(lines == [
            "# TYPE vigil_ike_copied_total counter", "vigil_ike_copied_total 3",
            "# HELP vigil_peer_dead_total dead", "# TYPE vigil_peer_dead_total counter",
            "vigil_peer_dead_total{peer=\"a\"} 1", "vigil_peer_dead_total{peer=\"b\"} 1",
            "# HELP vigil_peer_up up", "# TYPE vigil_peer_up gauge", "vigil_peer_up 1",
        ])
    }

    @Test func labelValuesAndHelpAreEscaped() {
        #expect(Metrics.series("f", ["peer": "a\"b\\c\nd"]) == #"f{peer="a\"b\\c\nd"}"#)
        var metrics = Metrics()
        metrics.set("g", 0, help: "one\\two\nthree")
        #expect(metrics.text.hasPrefix(#"# HELP g one\\two\nthree"#))
    }
}

@Suite struct MetricsHTTPParserTests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func aScrapeIsParsedAndAnswered() {
        let result = MetricsHTTP.parse(Self.bytes("GET /metrics HTTP/1.1\r\nHost: 192.0.2.1:9464\r\nAccept: text/plain\r\n\r\n"))
        guard case .complete(let head) = result else { Issue.record("\(result)"); return }
        #expect(head == MetricsHTTP.RequestHead(method: "GET", target: "/metrics", version: "HTTP/1.1"))
        let response = MetricsHTTP.response(to: head) { "vigil_peer_up 1\n" }
        #expect(response.status == 200)
        let text = String(decoding: response.bytes, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(text.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
        #expect(text.contains("\r\nContent-Length: 16\r\nConnection: close\r\n\r\nvigil_peer_up 1\n"))
    }

    @Test func aQueryIsIgnoredAndLeadingEmptyLinesSkipped() {
        guard case .complete(let head) = MetricsHTTP.parse(Self.bytes("\r\nGET /metrics?x=1 HTTP/1.0\r\n\r\n")) else {
            Issue.record("not parsed"); return
        }
        #expect(MetricsHTTP.response(to: head) { "" }.status == 200)
    }

    @Test(arguments: [("GET /other HTTP/1.1", 404), ("GET / HTTP/1.1", 404), ("POST /metrics HTTP/1.1", 405),
                      ("HEAD /metrics HTTP/1.1", 405), ("DELETE /x HTTP/1.1", 404)])
    func otherTargetsAndMethods(line: String, status: Int) {
        guard case .complete(let head) = MetricsHTTP.parse(Self.bytes(line + "\r\n\r\n")) else { Issue.record("not parsed"); return }
        let response = MetricsHTTP.response(to: head) { "secret" }
        #expect(response.status == status)
        #expect(!response.body.isEmpty && response.body != Array("secret".utf8))
        if status == 405 { #expect(response.headers.contains { $0 == ("Allow", "GET") }) }
    }

    @Test(arguments: ["", "GET /metrics HTTP/1.1", "GET /metrics HTTP/1.1\r\nHost: x\r\n", "GET /met"])
    func anUnfinishedHeadWaits(text: String) {
        #expect(MetricsHTTP.parse(Self.bytes(text)) == .incomplete)
    }

    @Test(arguments: ["GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
                      "GET /metrics HTTP/2\r\n\r\n", "G(T /metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/1.1\r\nNo colon\r\n\r\n",
                      "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", "GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
                      "GET /metr\u{e9}cs HTTP/1.1\r\n\r\n", "GET /metrics HTTP/1.1\r\nA: \u{0}\r\n\r\n"])
    func aMalformedHeadIsRefused(text: String) {
        guard case .malformed = MetricsHTTP.parse(Self.bytes(text)) else { Issue.record("accepted: \(text.debugDescription)"); return }
        #expect(MetricsHTTP.badRequest.status == 400)
    }

    @Test func aHeadOfMoreThanEightKiBIsDropped() {
        let limit = MetricsHTTP.Limits.maximumRequestHead
        #expect(limit == 8 * 1024)
        let start = Self.bytes("GET /metrics HTTP/1.1\r\nX: ")
        // Exactly at the limit with its end inside: served.
        let fits = start + [UInt8](repeating: UInt8(ascii: "a"), count: limit - start.count - 4) + Self.bytes("\r\n\r\n")
        #expect(fits.count == limit)
        guard case .complete = MetricsHTTP.parse(fits) else { Issue.record("a head of exactly the limit refused"); return }
        // One byte more: the end lies beyond the limit.
        let over = start + [UInt8](repeating: UInt8(ascii: "a"), count: limit - start.count - 3) + Self.bytes("\r\n\r\n")
        #expect(MetricsHTTP.parse(over) == .tooLarge)
        // Endless header bytes: dropped as soon as the limit is reached, never buffered further.
        #expect(MetricsHTTP.parse(start + [UInt8](repeating: UInt8(ascii: "a"), count: limit)) == .tooLarge)
    }

    /// Random bytes never trap the parser and never make it accept more than the limit.
    @Test func randomBytesNeverTrap() {
        var random = SplitMix64(seed: 15)
        for _ in 0..<2_000 {
            let count = Int(random.next() % 10_000)
            let alphabet = Self.bytes("GET /metrics HTTP/1.1\r\n: ")
            let bytes = (0..<count).map { _ in random.next() % 3 == 0 ? UInt8(truncatingIfNeeded: random.next()) : alphabet[Int(random.next() % UInt64(alphabet.count))] }
            switch MetricsHTTP.parse(bytes) {
            case .incomplete: #expect(bytes.count < MetricsHTTP.Limits.maximumRequestHead)
            case .complete, .malformed, .tooLarge: break
            }
        }
    }
}

@Suite struct FailoverPhasesTests {
    @Test func aFailoverFromADeadPeerIsTimedPhaseByPhase() {
        var phases = FailoverPhases()
        let entry = "HQ/10"
        #expect(phases.handle(.phase1Up("a"), entry: entry, now: .seconds(1)) == nil)  // no episode: ignored
        #expect(phases.handle(.peerDead("a", .deadPeerDetection), entry: entry, now: .seconds(10)) == nil)
        // A second death report of the same outage keeps the first start.
        #expect(phases.handle(.peerDead("a", .retransmissionsExhausted), entry: entry, now: .seconds(11)) == nil)
        #expect(phases.handle(.phase1Up("b"), entry: entry, now: .milliseconds(12_000)) == nil)
        #expect(phases.handle(.phase2Up("b"), entry: entry, now: .milliseconds(12_030)) == nil)
        let failover = phases.handle(.dataplaneProgrammed("b", movedFrom: "a"), entry: entry, now: .milliseconds(12_031))
        #expect(failover == FailoverPhases.Failover(reason: .deadPeerDetection, phase1: .seconds(2), phase2: .milliseconds(30),
                                                    dataplane: .milliseconds(1)))
        // The episode is over: a later installation is not a failover.
        #expect(phases.handle(.dataplaneProgrammed("b", movedFrom: nil), entry: entry, now: .seconds(20)) == nil)
    }

    @Test func aMoveOffALivePeerIsCountedByReasonWithoutPhases() {
        var phases = FailoverPhases()
        _ = phases.handle(.moveStarted(.operatorFailover), entry: "m/1", now: .seconds(1))
        _ = phases.handle(.phase1Up("b"), entry: "m/1", now: .seconds(2))
        _ = phases.handle(.phase2Up("b"), entry: "m/1", now: .seconds(3))
        #expect(phases.handle(.dataplaneProgrammed("b", movedFrom: "a"), entry: "m/1", now: .seconds(4))
                == FailoverPhases.Failover(reason: .operatorFailover))
        // A move nobody started here.
        #expect(phases.handle(.dataplaneProgrammed("a", movedFrom: "b"), entry: "m/1", now: .seconds(5)) == FailoverPhases.Failover(reason: .other))
    }

    @Test func aClearedOrSamePeerRecoveryIsNoFailover() {
        var phases = FailoverPhases()
        _ = phases.handle(.peerDead("a", .deletedByPeer), entry: "m/1", now: .seconds(1))
        _ = phases.handle(.abandoned, entry: "m/1", now: .seconds(2))
        #expect(phases.handle(.dataplaneProgrammed("b", movedFrom: nil), entry: "m/1", now: .seconds(3)) == nil)
        _ = phases.handle(.peerDead("a", .deadPeerDetection), entry: "m/1", now: .seconds(4))
        _ = phases.handle(.phase1Up("a"), entry: "m/1", now: .seconds(5))
        #expect(phases.handle(.dataplaneProgrammed("a", movedFrom: "a"), entry: "m/1", now: .seconds(6)) == nil)
    }
}

/// The server on a loopback socket: a scrape is answered while another client holds a connection and sends nothing;
/// an oversized head is dropped; at most `maximumConnections` are served at once and the rest wait, not refused.
@Suite(.serialized) struct MetricsHTTPServerTests {
    static let deadline: Duration = .seconds(10)

    /// A blocking TCP client with a receive timeout (a generous deadline, not a synchronisation sleep).
    final class Client {
        let fd: Int32
        /// `receiveBuffer`: a fixed SO_RCVBUF (which turns the kernel's autotuning off), for a client that lags.
        init(_ endpoint: Endpoint, receiveBuffer: Int32? = nil) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            if var size = receiveBuffer { _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
            var timeout = timeval(tv_sec: Int(MetricsHTTPServerTests.deadline.components.seconds), tv_usec: 0)
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let status = SocketAddress(endpoint).withPointer { connect(fd, $0, $1) }
            guard status == 0 else { close(fd); throw MetricsHTTPServer.Failure(operation: "connect", errno: errno) }
        }
        deinit { close(fd) }

        func send(_ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        /// Everything until the server closes (or the receive timeout).
        func readAll() -> String {
            var all: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if count <= 0 { break }
                all += buffer[..<count]
            }
            return String(decoding: all, as: UTF8.self)
        }
    }

    static func server() throws -> MetricsHTTPServer {
        let server = try MetricsHTTPServer(listen: Endpoint(IPAddress("127.0.0.1")!, 0))
        server.publish("vigil_peer_up{map=\"HQ\",sequence=\"10\",peer=\"192.0.2.11\"} 1\n")
        server.start()
        return server
    }

    static func scrape(_ server: MetricsHTTPServer, _ target: String = "/metrics") throws -> String {
        let client = try Client(server.local)
        client.send(Array("GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        return client.readAll()
    }

    @Test func aScrapeIsServedWhileASlowClientSendsNothing() throws {
        let server = try Self.server()
        defer { server.stop() }
        let silent = try Client(server.local)
        let half = try Client(server.local)
        half.send(Array("GET /metr".utf8))
        let start = ContinuousClock.now
        let text = try Self.scrape(server)
        #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(text)")
        #expect(text.hasSuffix("\r\n\r\nvigil_peer_up{map=\"HQ\",sequence=\"10\",peer=\"192.0.2.11\"} 1\n"))
        #expect(ContinuousClock.now - start < .seconds(2), "the scrape waited for the slow clients")
        #expect(try Self.scrape(server, "/other").hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        withExtendedLifetime((silent, half)) {}
    }

    @Test func anOversizedHeadIsDroppedUnanswered() throws {
        let server = try Self.server()
        defer { server.stop() }
        let client = try Client(server.local)
        client.send(Array("GET /metrics HTTP/1.1\r\nX: ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: MetricsHTTP.Limits.maximumRequestHead))
        #expect(client.readAll() == "")
        #expect(server.currentStatistics.dropped[.requestTooLarge] == 1)
        #expect(try Self.scrape(server).hasPrefix("HTTP/1.1 200 OK\r\n"))
    }

    @Test func aClientThatDoesNotReadItsResponseIsDroppedAndHoldsUpNobody() throws {
        let server = try Self.server()
        defer { server.stop() }
        // Far more than the loopback socket buffers hold, so the write stops half way.
        server.publish(String(repeating: "vigil_padding 0\n", count: 2_000_000))
        let stuck = try Client(server.local, receiveBuffer: 4096)
        stuck.send(Array("GET /metrics HTTP/1.1\r\n\r\n".utf8))
        let deadline = ContinuousClock.now + Self.deadline
        while server.currentStatistics.responses[200] == nil, ContinuousClock.now < deadline {
            _ = poll(nil, 0, 10)  // condition waits with a generous deadline
        }
        let start = ContinuousClock.now
        server.publish("vigil_peer_up 1\n")
        let text = try Self.scrape(server)
        #expect(text.hasSuffix("\r\n\r\nvigil_peer_up 1\n"), "\(text.prefix(200))")
        #expect(ContinuousClock.now - start < .seconds(2), "the stuck response held up a scrape")
        // The stuck one is cut once its response timeout passes: reading now ends short of the whole body.
        while server.currentStatistics.dropped[.responseTimeout] == nil, ContinuousClock.now < deadline {
            _ = poll(nil, 0, 50)
        }
        #expect(server.currentStatistics.dropped[.responseTimeout] == 1)
        #expect(stuck.readAll().utf8.count < 2_000_000 * 16)
    }

    @Test func connectionsBeyondTheLimitWaitTheirTurn() throws {
        let server = try Self.server()
        defer { server.stop() }
        let holders = try (0..<MetricsHTTP.Limits.maximumConnections).map { _ in try Client(server.local) }
        // Every slot is held by a silent client; this one waits in the backlog until they time out, then is served.
        let start = ContinuousClock.now
        let text = try Self.scrape(server)
        let waited = ContinuousClock.now - start
        #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(text)")
        #expect(waited >= MetricsHTTP.Limits.requestHeadTimeout - .milliseconds(500), "served before a slot was free: \(waited)")
        #expect(server.currentStatistics.dropped[.requestTimeout] == UInt64(MetricsHTTP.Limits.maximumConnections))
        withExtendedLifetime(holders) {}
    }
}
