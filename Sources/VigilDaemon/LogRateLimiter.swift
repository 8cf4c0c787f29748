import Foundation

/// Bounds the log lines that network input can cause. Engines log what they drop (a malformed datagram, a wrong
/// HASH, a spoofed notify); under a flood that would be one line per packet. Each interval admits a burst of lines;
/// the rest are suppressed and counted, and when the interval ends one summary line says how many were suppressed
/// and what was dropped meanwhile, by reason (the engines' and the daemon's drop counters, as deltas).
/// Pure: the caller passes the time, and the counters to summarize.
struct LogRateLimiter {
    /// Our tunables.
    enum Limits {
        static let interval: Duration = .seconds(5)
        /// Lines admitted per interval; errors count too, but are admitted beyond it (see `admit`).
        static let burst = 100
        /// Reasons named in one summary line (the largest deltas first).
        static let reasonsInSummary = 12
    }

    private var windowStart: Duration?
    private var admitted = 0
    private var suppressed = 0
    private var baseline: [String: UInt64] = [:]

    /// Whether a line may be written now. Errors always are (they are rare and not peer-driven), but still use up
    /// the burst. `summary` is a line to write first when an interval with suppressed lines has ended.
    mutating func admit(now: Duration, isError: Bool, counters: () -> [String: UInt64]) -> (write: Bool, summary: String?) {
        var summary: String?
        if let start = windowStart, now - start >= Limits.interval {
            summary = closeWindow(now: now, counters: counters())
        }
        if windowStart == nil {
            windowStart = now
            baseline = counters()
        }
        admitted += 1
        if admitted <= Limits.burst || isError { return (true, summary) }
        suppressed += 1
        return (false, summary)
    }

    func intervalEnded(now: Duration) -> Bool {
        guard let start = windowStart else { return false }
        return now - start >= Limits.interval
    }

    /// Ends the current interval: the summary line if something was suppressed in it.
    mutating func flush(now: Duration, counters: [String: UInt64]) -> String? {
        guard windowStart != nil else { return nil }
        return closeWindow(now: now, counters: counters)
    }

    private mutating func closeWindow(now: Duration, counters: [String: UInt64]) -> String? {
        defer {
            windowStart = nil
            admitted = 0
            suppressed = 0
        }
        guard suppressed > 0, let start = windowStart else { return nil }
        let deltas = counters.compactMap { name, value -> (String, UInt64)? in
            let delta = value &- (baseline[name] ?? 0)
            return delta > 0 && value >= (baseline[name] ?? 0) ? (name, delta) : nil
        }
        .sorted { ($0.1, $1.0) > ($1.1, $0.0) }
        let reasons = deltas.prefix(Limits.reasonsInSummary).map { "\($0.0)=\($0.1)" }.joined(separator: " ")
        let seconds = Double((now - start).components.seconds) + Double((now - start).components.attoseconds) / 1e18
        return "suppressed \(suppressed) log line\(suppressed == 1 ? "" : "s") in the last \(String(format: "%.1f", seconds)) s"
            + (reasons.isEmpty ? "" : "; meanwhile counted: \(reasons)")
    }
}
