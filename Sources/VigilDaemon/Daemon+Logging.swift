import Logging
import VigilIKE

/// Engine log lines go through one rate limiter: the engines log what a peer (or anybody spoofing one) makes them
/// drop, and a flood must not become a flood of log lines.
extension Daemon {
    func engineLog(_ level: LogLevel, _ text: String) {
        let swiftLevel = Self.loggerLevel(level)
        guard swiftLevel >= logger.logLevel else { return }
        let (write, summary) = logLimiter.admit(now: loop.now, isError: level == .error, counters: { self.dropCounters() })
        if let summary { logger.notice("\(summary)") }
        if write { logger.log(level: swiftLevel, "\(text)") }
    }

    /// Called from the sampler: writes the summary of an interval that ended with no further line to carry it.
    func flushLogSummary() {
        guard logLimiter.intervalEnded(now: loop.now),
              let summary = logLimiter.flush(now: loop.now, counters: dropCounters()) else { return }
        logger.notice("\(summary)")
    }

    /// Every counter the engines and the daemon keep, by name: the summary names those that moved.
    func dropCounters() -> [String: UInt64] {
        var all: [String: UInt64] = [:]
        for (version, engine) in engines {
            for (name, value) in engine.counters { all["ike\(version).\(name)"] = value }
        }
        for (name, value) in metrics.all { all[name] = value }
        all["event_loop.newExchangesShed"] = loop.shedPosts
        all["event_loop.refusedPosts"] = loop.refusedPosts
        return all
    }

    static func loggerLevel(_ level: LogLevel) -> Logger.Level {
        switch level {
        case .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        }
    }
}
