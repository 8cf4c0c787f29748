import Foundation
import Testing
import VigilLab

/// `ping -D` output parsing and the blackout arithmetic, on captured text (no network), plus one real run.
@Suite struct PingMonitorTests {
    /// Captured from iputils 20221126 (`ping -D -n -i 0.01 -W 1 10.2.0.1`), trimmed: replies 1-3, an outage while
    /// seq 4-8 went unanswered, an unreachable report, a duplicate, then replies 9-10 and the summary.
    static let captured = """
    PING 10.2.0.1 (10.2.0.1) 56(84) bytes of data.
    [1795968940.100000] 64 bytes from 10.2.0.1: icmp_seq=1 ttl=63 time=0.412 ms
    [1795968940.110250] 64 bytes from 10.2.0.1: icmp_seq=2 ttl=63 time=0.398 ms
    [1795968940.120500] 64 bytes from 10.2.0.1: icmp_seq=3 ttl=63 time=0.401 ms
    [1795968940.160000] From 10.1.0.1 icmp_seq=6 Destination Net Unreachable
    [1795968942.320500] 64 bytes from 10.2.0.1: icmp_seq=9 ttl=63 time=0.390 ms
    [1795968942.320900] 64 bytes from 10.2.0.1: icmp_seq=9 ttl=63 time=0.790 ms (DUP!)
    [1795968942.330750] 64 bytes from 10.2.0.1: icmp_seq=10 ttl=63 time=0.380 ms

    --- 10.2.0.1 ping statistics ---
    11 packets transmitted, 5 received, +1 duplicates, +1 errors, 54.5455% packet loss, time 2230ms
    rtt min/avg/max/mdev = 0.380/0.462/0.790/0.150 ms, pipe 3
    """

    static func date(_ epoch: Double) -> Date { Date(timeIntervalSince1970: epoch) }

    @Test func parsesReplyLinesAndIgnoresEverythingElse() throws {
        let replies = PingOutput.replies(Substring(Self.captured))
        #expect(replies.map(\.sequence) == [1, 2, 3, 9, 9, 10])
        let first = try #require(replies.first)
        #expect(abs(first.received.timeIntervalSince1970 - 1795968940.1) < 1e-6)
        #expect(PingOutput.reply("[1795968940.160000] From 10.1.0.1 icmp_seq=6 Destination Net Unreachable") == nil)
        #expect(PingOutput.reply("PING 10.2.0.1 (10.2.0.1) 56(84) bytes of data.") == nil)
        #expect(PingOutput.reply("[garbage] 64 bytes from 10.2.0.1: icmp_seq=1") == nil)
        #expect(PingOutput.transmitted(Substring(Self.captured)) == 11)
        #expect(PingOutput.transmitted("no summary here") == nil)
    }

    @Test func reportFindsTheBlackoutBetweenReplies() throws {
        let text = Substring(Self.captured)
        let report = PingReport(
            replies: PingOutput.replies(text), transmitted: PingOutput.transmitted(text),
            started: Self.date(1795968940.095), stopped: Self.date(1795968942.335), threshold: .milliseconds(50))
        #expect(report.sent == 11)
        #expect(report.received == 5, "the duplicate of seq 9 counts once")
        #expect(report.lost == 6)
        let blackout = try #require(report.blackout)
        #expect(blackout.startBound == .reply(sequence: 3))
        #expect(blackout.endBound == .reply(sequence: 9))
        #expect(blackout.recovered)
        #expect(abs(blackout.start.timeIntervalSince1970 - 1795968940.1205) < 1e-6)
        #expect(abs(blackout.end.timeIntervalSince1970 - 1795968942.3205) < 1e-6)
        #expect(near(blackout.duration, .milliseconds(2200), within: .microseconds(10)))
        #expect(report.gaps == [blackout], "only the outage exceeds 50 ms")
        #expect(report.gap(containing: Self.date(1795968941.0)) == blackout)
        #expect(report.summary.contains("blackout 2200.0 ms (seq 3 -> seq 9)"), "\(report.summary)")
    }

    @Test func anOutageThatNeverEndsIsReportedAsNotRecovered() throws {
        let replies = [
            PingReply(sequence: 1, received: Self.date(100.00)),
            PingReply(sequence: 2, received: Self.date(100.01)),
        ]
        let report = PingReport(replies: replies, transmitted: nil, started: Self.date(99.995), stopped: Self.date(160.0), threshold: .milliseconds(50))
        #expect(report.sent == 2, "without ping's summary the highest sequence stands in")
        let blackout = try #require(report.blackout)
        #expect(blackout.startBound == .reply(sequence: 2))
        #expect(blackout.endBound == .monitorStopped)
        #expect(!blackout.recovered)
        #expect(near(blackout.duration, .milliseconds(59_990), within: .microseconds(10)))
        #expect(report.summary.contains("stop, not recovered"))
    }

    @Test func noReplyAtAllIsOneSilenceFromStartToStop() throws {
        let report = PingReport(replies: [], transmitted: 300, started: Self.date(10), stopped: Self.date(13), threshold: .milliseconds(50))
        #expect(report.sent == 300)
        #expect(report.received == 0)
        #expect(report.lost == 300)
        let blackout = try #require(report.blackout)
        #expect(blackout.startBound == .monitorStarted)
        #expect(blackout.endBound == .monitorStopped)
        #expect(near(blackout.duration, .seconds(3), within: .microseconds(10)))
    }

    /// Real ping every 10 ms across a veth pair until 50 replies are in: counts agree and nothing goes silent.
    @Test func pingsAcrossAVethPairForASecond() throws {
        let a = try NetworkNamespace(prefix: "pinga")
        defer { a.destroy() }
        let b = try NetworkNamespace(prefix: "pingb")
        defer { b.destroy() }
        try NetworkNamespace.link(a, "p0", "198.51.100.1/24", b, "p0", "198.51.100.2/24")
        let monitor = PingMonitor(namespace: a, destination: "198.51.100.2")
        try monitor.start()
        // A condition, not a delay: stop once 50 replies are in (about half a second unloaded), whatever the load.
        let deadline = Date().addingTimeInterval(20)
        while monitor.output.components(separatedBy: "icmp_seq=").count <= 50, Date() < deadline { usleep(10_000) }
        let report = monitor.stop()
        #expect(report.sent >= 50, "50 replies within 20 s: \(report.summary)\n\(monitor.output.prefix(500))")
        #expect(report.received >= report.sent - 2, "a veth loses nothing but the request in flight at SIGINT: \(report.summary)")
        #expect(report.lost <= 2)
        #expect(report.replies.map(\.sequence) == Array(1...report.received), "replies in order, none missing")
        let blackout = try #require(report.blackout)
        #expect(blackout.duration < .milliseconds(300), "\(report.summary)")
        #expect(monitor.stop().sent == report.sent, "stop() is idempotent")
    }
}

@Suite struct FailoverTimelineTests {
    static let origin = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func rendersOffsetsFromTheFirstMarkAlignedAndInTimeOrder() {
        var timeline = FailoverTimeline()
        timeline.mark(.declaredDead, at: Self.origin.addingTimeInterval(1.398))
        timeline.mark(.killed, at: Self.origin, detail: "gw1")
        timeline.mark(.firstProbe, at: Self.origin.addingTimeInterval(0.6))
        timeline.mark(.phase1Up, at: Self.origin.addingTimeInterval(12.0316), detail: "192.0.2.12")
        let text = timeline.rendered(expected: [.phase2Up])
        let expected = """
           +0.000 s  killed  (gw1)
           +0.600 s  first probe
           +1.398 s  declared dead
          +12.032 s  Phase 1 up  (192.0.2.12)
                —    Phase 2 up  (not reached)
        """
        #expect(text == expected, "\n\(text)")
        // The names start in one column whatever the offset's width.
        let names = ["killed", "first probe", "declared dead", "Phase 1 up", "Phase 2 up"]
        let columns = Set(zip(text.split(separator: "\n"), names).map { line, name in
            line.distance(from: line.startIndex, to: line.range(of: name)!.lowerBound)
        })
        #expect(columns == [13], "\n\(text)")
    }

    @Test func intervalsAndFirstTimesOfMarks() throws {
        var timeline = FailoverTimeline()
        timeline.mark(.killed, at: Self.origin)
        timeline.mark("probe", at: Self.origin.addingTimeInterval(2))
        timeline.mark("probe", at: Self.origin.addingTimeInterval(1))
        timeline.mark(.phase2Up, at: Self.origin.addingTimeInterval(3.25))
        #expect(timeline.time(of: "probe") == Self.origin.addingTimeInterval(1), "the earliest of repeated marks")
        let interval = try #require(timeline.interval(from: .killed, to: .phase2Up))
        #expect(near(interval, .milliseconds(3250), within: .microseconds(1)))
        #expect(timeline.interval(from: .killed, to: .firstPingThrough) == nil)
        #expect(timeline.origin == Self.origin)
    }

    @Test func anEmptyTimelineListsWhatWasExpected() {
        let timeline = FailoverTimeline()
        #expect(timeline.rendered(expected: [.killed]) == "        —    killed  (not reached)")
        #expect(timeline.rendered() == "")
    }
}

/// |a - b| <= tolerance (Duration has no abs).
func near(_ a: Duration, _ b: Duration, within tolerance: Duration) -> Bool {
    a - b <= tolerance && b - a <= tolerance
}
