/// How much an engine's log line matters; the daemon maps it onto its logger (syslog's notice included).
public enum LogLevel: Int, Hashable, Sendable, Comparable {
    case debug, info, notice, warning, error
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}
