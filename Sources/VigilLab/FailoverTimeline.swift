import Foundation

/// Named, timestamped marks of one failover (killed, first probe, declared dead, Phase 1 up, Phase 2 up, data plane
/// reprogrammed, first ping through), printed as an aligned text timeline with offsets from the first mark.
public struct FailoverTimeline: Sendable {
    /// The marks every failover measurement uses, in the order they are expected to happen.
    public enum Event: String, CaseIterable, Sendable {
        case killed = "killed"
        case firstProbe = "first probe"
        case declaredDead = "declared dead"
        case phase1Up = "Phase 1 up"
        case phase2Up = "Phase 2 up"
        case dataPlaneReprogrammed = "data plane reprogrammed"
        case firstPingThrough = "first ping through"
    }

    public struct Mark: Equatable, Sendable {
        public let name: String
        public let time: Date
        /// Free text shown after the name (e.g. the peer a Phase 1 came up with).
        public let detail: String?
    }

    /// Marks in the order they were added.
    public private(set) var marks: [Mark] = []

    public init() {}

    /// Adds a mark. A name may appear more than once (e.g. several probes); `time(of:)` finds the first.
    public mutating func mark(_ name: String, at time: Date, detail: String? = nil) {
        marks.append(Mark(name: name, time: time, detail: detail))
    }

    public mutating func mark(_ event: Event, at time: Date, detail: String? = nil) {
        mark(event.rawValue, at: time, detail: detail)
    }

    /// The earliest time of a mark with this name.
    public func time(of name: String) -> Date? {
        marks.filter { $0.name == name }.map(\.time).min()
    }

    public func time(of event: Event) -> Date? { time(of: event.rawValue) }

    /// The earliest mark of all: offsets are counted from it.
    public var origin: Date? { marks.map(\.time).min() }

    /// Time from `from` to `to`, when both were marked.
    public func interval(from: Event, to: Event) -> Duration? {
        guard let start = time(of: from), let end = time(of: to) else { return nil }
        return .seconds(end.timeIntervalSince(start))
    }

    /// The timeline, one mark per line in time order, offsets from the first mark aligned on the decimal point:
    /// ```
    ///      +0.000 s  killed
    ///      +1.204 s  first probe
    ///     +12.031 s  Phase 1 up  (192.0.2.12)
    ///           —    Phase 2 up  (not reached)
    /// ```
    /// `expected` names that were never marked are listed last as "not reached", so a missing step is visible.
    public func rendered(expected: [String] = []) -> String {
        guard let origin else {
            return expected.map { "\(Self.pad("—", to: Self.offsetWidth))    \($0)  (not reached)" }.joined(separator: "\n")
        }
        // A stable sort keeps insertion order for marks at the same instant.
        let ordered = marks.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map(\.element)
        var lines = ordered.map { mark in
            let offset = String(format: "%+.3f s", mark.time.timeIntervalSince(origin))
            return "\(Self.pad(offset, to: Self.offsetWidth + 2))  \(mark.name)\(mark.detail.map { "  (\($0))" } ?? "")"
        }
        for name in expected where !marks.contains(where: { $0.name == name }) {
            lines.append("\(Self.pad("—", to: Self.offsetWidth))    \(name)  (not reached)")
        }
        return lines.joined(separator: "\n")
    }

    public func rendered(expected: [Event]) -> String { rendered(expected: expected.map(\.rawValue)) }

    /// Width of the offset number without its " s" unit: "+9999.999".
    static let offsetWidth = 9

    static func pad(_ text: String, to width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }
}

/// One failover run of any implementation (strongSwan baseline, vigild) in the failover lab, in the terms the
/// benchmark compares: times from the kill to each mark, and the blackout the host saw.
public struct FailoverMeasurement: Sendable {
    /// Column name, e.g. "strongSwan 5.9.8" or "vigild".
    public let implementation: String
    public let ikeVersion: Int
    /// Must contain `.killed`; the other marks when reached.
    public let timeline: FailoverTimeline
    public let ping: PingReport
    /// How long the run waited for recovery after the kill.
    public let bound: Duration
    /// The peer the new Phase 1 came up with, if any.
    public let recoveredVia: String?
    /// What the implementation reported after the kill (vigild's events, charon's log), for a run whose marks
    /// are missing.
    public var evidence = ""

    public init(implementation: String, ikeVersion: Int, timeline: FailoverTimeline, ping: PingReport, bound: Duration, recoveredVia: String?) {
        precondition(timeline.time(of: .killed) != nil, "a failover measurement starts at the kill")
        self.implementation = implementation
        self.ikeVersion = ikeVersion
        self.timeline = timeline
        self.ping = ping
        self.bound = bound
        self.recoveredVia = recoveredVia
    }

    public var killedAt: Date { timeline.time(of: .killed)! }

    /// Kill → `event`, when it was marked.
    public func sinceKill(_ event: FailoverTimeline.Event) -> Duration? { timeline.interval(from: .killed, to: event) }

    /// The silence in progress at the kill; `recovered` false if it lasted to the end of the run.
    public var blackout: PingGap? { ping.outage(after: killedAt) }
}
