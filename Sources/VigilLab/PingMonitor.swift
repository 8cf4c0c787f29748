import Foundation

/// One echo reply as `ping -D` printed it: `[1732880000.123456] 64 bytes from 10.2.0.1: icmp_seq=7 ttl=63 time=0.3 ms`.
public struct PingReply: Equatable, Sendable {
    /// icmp_seq (iputils counts from 1).
    public let sequence: Int
    /// Wall-clock time the reply was received (ping's `-D` epoch timestamp, microseconds).
    public let received: Date

    public init(sequence: Int, received: Date) {
        self.sequence = sequence
        self.received = received
    }
}

/// An interval with no echo reply. Its ends are replies, or the monitor's start and stop when the silence was
/// already there at the start or still there at the end (an unrecovered outage is reported, never hidden).
public struct PingGap: Equatable, Sendable {
    public enum Bound: Equatable, Sendable {
        /// The monitor started (no reply seen before this gap).
        case monitorStarted
        /// A reply with this icmp_seq.
        case reply(sequence: Int)
        /// The monitor stopped with no reply after this gap: the outage had not ended.
        case monitorStopped
    }

    public let start: Date
    public let startBound: Bound
    public let end: Date
    public let endBound: Bound

    public init(start: Date, startBound: Bound, end: Date, endBound: Bound) {
        self.start = start
        self.startBound = startBound
        self.end = end
        self.endBound = endBound
    }

    public var duration: Duration { .seconds(end.timeIntervalSince(start)) }

    /// Whether traffic came back after this gap (it ended at a reply, not at the monitor's stop).
    public var recovered: Bool {
        switch endBound {
        case .reply: true
        case .monitorStarted, .monitorStopped: false
        }
    }
}

/// What a ping run saw: counts, the blackout (longest silence) and every silence above the threshold.
public struct PingReport: Sendable {
    public let started: Date
    public let stopped: Date
    /// Echo requests sent (ping's own summary line; the highest icmp_seq seen if ping printed none).
    public let sent: Int
    /// Distinct sequence numbers answered (duplicates counted once).
    public let received: Int
    public var lost: Int { max(0, sent - received) }
    /// The longest interval without a reply, including the silences before the first and after the last reply.
    public let blackout: PingGap?
    /// Every silence longer than `threshold`, in time order.
    public let gaps: [PingGap]
    public let threshold: Duration
    public let replies: [PingReply]
    private let allGaps: [PingGap]

    /// Builds the report from parsed replies. `transmitted` is ping's summary count when it printed one.
    public init(replies: [PingReply], transmitted: Int?, started: Date, stopped: Date, threshold: Duration) {
        var seen = Set<Int>()
        let unique = replies.filter { seen.insert($0.sequence).inserted }.sorted { $0.received < $1.received }
        self.replies = unique
        self.started = started
        self.stopped = stopped
        self.threshold = threshold
        received = unique.count
        sent = max(transmitted ?? 0, unique.map(\.sequence).max() ?? 0)

        var all: [PingGap] = []
        var previous: (Date, PingGap.Bound) = (started, .monitorStarted)
        for reply in unique {
            all.append(PingGap(start: previous.0, startBound: previous.1, end: reply.received, endBound: .reply(sequence: reply.sequence)))
            previous = (reply.received, .reply(sequence: reply.sequence))
        }
        all.append(PingGap(start: previous.0, startBound: previous.1, end: max(stopped, previous.0), endBound: .monitorStopped))
        allGaps = all
        blackout = all.max { $0.duration < $1.duration }
        gaps = all.filter { $0.duration > threshold }
    }

    /// The silence in progress at `date` (e.g. the outage a kill caused): the gap with start <= date < end, or nil
    /// when a reply arrived exactly then.
    public func gap(containing date: Date) -> PingGap? {
        allGaps.first { $0.start <= date && date < $0.end }
    }

    /// The outage a failure at `date` caused: the silence in progress then, or else the longest one beginning within
    /// `lag` after it (a gateway whose kernel still answers for a moment after its daemon is killed).
    public func outage(after date: Date, lag: Duration = .seconds(1)) -> PingGap? {
        if let gap = gap(containing: date), gap.duration > threshold { return gap }
        let (seconds, attoseconds) = lag.components
        let latest = date.addingTimeInterval(Double(seconds) + Double(attoseconds) / 1e18)
        return allGaps.filter { $0.start >= date && $0.start <= latest }.max { $0.duration < $1.duration }
            ?? gap(containing: date)
    }

    /// One line: `sent 812, received 601, lost 211, blackout 2101.4 ms (seq 93 -> seq 304)`.
    public var summary: String {
        var text = "sent \(sent), received \(received), lost \(lost)"
        if let blackout {
            text += ", blackout \(PingOutput.milliseconds(blackout.duration)) (\(Self.describe(blackout.startBound)) -> \(Self.describe(blackout.endBound)))"
        }
        return text
    }

    static func describe(_ bound: PingGap.Bound) -> String {
        switch bound {
        case .monitorStarted: "start"
        case .reply(let sequence): "seq \(sequence)"
        case .monitorStopped: "stop, not recovered"
        }
    }
}

/// Parsing of iputils `ping -D -n` output (pure; unit-tested on captured text).
public enum PingOutput {
    /// Parses a reply line; nil for anything else (header, `From ... Destination Host Unreachable`, summary).
    public static func reply(_ line: Substring) -> PingReply? {
        guard line.hasPrefix("["), let close = line.firstIndex(of: "]"),
              let epoch = Double(line[line.index(after: line.startIndex)..<close]),
              line.contains(" bytes from "),
              let sequenceRange = line.range(of: "icmp_seq=")
        else { return nil }
        let digits = line[sequenceRange.upperBound...].prefix { $0.isNumber }
        guard let sequence = Int(digits) else { return nil }
        return PingReply(sequence: sequence, received: Date(timeIntervalSince1970: epoch))
    }

    /// `812 packets transmitted, 601 received, ...` → 812.
    public static func transmitted(_ text: Substring) -> Int? {
        for line in text.split(separator: "\n") where line.contains(" packets transmitted") {
            return Int(line.prefix { $0.isNumber })
        }
        return nil
    }

    /// Every reply in `text`, in the order printed.
    public static func replies(_ text: Substring) -> [PingReply] {
        text.split(separator: "\n").compactMap(reply)
    }

    public static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let ms = Double(seconds) * 1000 + Double(attoseconds) / 1e15
        return String(format: "%.1f ms", ms)
    }
}

/// Runs `ping -D -n -i 0.01 -W 1 DEST` inside a namespace in the background (root may ping every 10 ms), with its
/// output in a temporary file so replies can be read while it runs; `stop()` interrupts it and returns the report.
public final class PingMonitor: @unchecked Sendable {
    public let namespace: NetworkNamespace
    public let destination: String
    public let interval: Duration
    public let threshold: Duration
    private let outputFile: URL
    private let lock = NSLock()
    private var process: Process?
    private var startedAt: Date?
    private var report: PingReport?

    /// `threshold`: silences longer than this are listed in the report (default 5 intervals).
    public init(namespace: NetworkNamespace, destination: String, interval: Duration = .milliseconds(10), threshold: Duration? = nil) {
        self.namespace = namespace
        self.destination = destination
        self.interval = interval
        self.threshold = threshold ?? interval * 5
        outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-ping-\(UUID().uuidString.prefix(8)).txt")
    }

    deinit {
        _ = stop()
        try? FileManager.default.removeItem(at: outputFile)
    }

    public func start() throws {
        lock.lock()
        defer { lock.unlock() }
        precondition(process == nil && report == nil, "PingMonitor started twice")
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        let output = try FileHandle(forWritingTo: outputFile)
        defer { try? output.close() }
        let (seconds, attoseconds) = interval.components
        let intervalText = String(format: "%.3f", Double(seconds) + Double(attoseconds) / 1e18)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // `ip netns exec` execs ping, so this process is ping itself and SIGINT reaches it.
        process.arguments = ["ip", "netns", "exec", namespace.name, "ping", "-D", "-n", "-i", intervalText, "-W", "1", destination]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = output
        startedAt = Date()
        try process.run()
        self.process = process
    }

    /// Replies received so far (ping flushes each line).
    public func repliesSoFar() -> [PingReply] {
        PingOutput.replies(Substring(output))
    }

    /// The raw output so far.
    public var output: String { (try? String(contentsOf: outputFile, encoding: .utf8)) ?? "" }

    /// Interrupts ping (SIGINT, so it prints its summary) and returns the report; later calls return the same one.
    @discardableResult
    public func stop() -> PingReport {
        lock.lock()
        defer { lock.unlock() }
        if let report { return report }
        let stopped = Date()
        if let process, process.isRunning {
            kill(process.processIdentifier, SIGINT)
            let deadline = Date().addingTimeInterval(2)
            while process.isRunning && Date() < deadline { usleep(5_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        process = nil
        let text = Substring(output)
        let report = PingReport(
            replies: PingOutput.replies(text), transmitted: PingOutput.transmitted(text),
            started: startedAt ?? stopped, stopped: stopped, threshold: threshold)
        self.report = report
        return report
    }
}
