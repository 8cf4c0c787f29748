import Foundation
import Logging
import Synchronization

/// How vigild writes its log lines on standard error.
public enum LogFormat: String, CaseIterable, Sendable {
    /// `2026-12-07T15:28:27.123Z notice vigild[VigilDaemon]: message key=value`: millisecond UTC timestamps, the
    /// logger's label and the module that logged.
    case text
    /// `<5>message key=value`: sd-daemon(3) priority prefixes and no timestamp (journald stamps each line itself).
    case journal
    /// One JSON object per line: `time` (RFC 3339, milliseconds), `level`, `label`, `source`, `message`, `metadata`.
    case json

    /// `journal` when standard error is connected to the journal (systemd sets JOURNAL_STREAM), `text` otherwise.
    public static func automatic(environment: [String: String] = ProcessInfo.processInfo.environment) -> LogFormat {
        environment["JOURNAL_STREAM"] != nil ? .journal : .text
    }

    /// syslog(3) priority of a level, as sd-daemon(3) prefixes want it.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// One log line (without its newline). Pure: the clock comes in as `time`.
    public func line(time: Date, level: Logger.Level, label: String, source: String, message: String, metadata: Logger.Metadata) -> String {
        let pairs = metadata.sorted { $0.key < $1.key }
        // A line is one line: a newline inside a message (a peer's text, a path) must not forge a second one.
        let message = message.replacingOccurrences(of: "\n", with: "\\n")
        switch self {
        case .text:
            let extra = pairs.map { " \($0.key)=\($0.value)" }.joined()
            return "\(Self.timestamp(time)) \(level) \(label)[\(source)]: \(message)\(extra)"
        case .journal:
            let extra = pairs.map { " \($0.key)=\($0.value)" }.joined()
            return "<\(Self.priority(level))>\(message)\(extra)"
        case .json:
            var object: [String: Any] = ["time": Self.timestamp(time), "level": level.rawValue, "label": label, "source": source, "message": message]
            if !pairs.isEmpty { object["metadata"] = Dictionary(uniqueKeysWithValues: pairs.map { ($0.key, "\($0.value)") }) }
            guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
                return #"{"level":"error","message":"log line not encodable"}"#
            }
            return String(decoding: data, as: UTF8.self)
        }
    }

    /// RFC 3339 UTC with milliseconds.
    static func timestamp(_ time: Date) -> String {
        var seconds = time_t(time.timeIntervalSince1970.rounded(.down))
        let milliseconds = Int((time.timeIntervalSince1970 - Double(seconds)) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), min(milliseconds, 999))
    }
}

/// A swift-log handler writing `LogFormat` lines to standard error, each with one write(2).
public struct VigilLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let label: String
    let format: LogFormat
    private static let writing = Mutex(())

    public init(label: String, format: LogFormat, level: Logger.Level) {
        self.label = label
        self.format = format
        logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
                    file: String, function: String, line: UInt) {
        let all = metadata.merging(explicit ?? [:]) { $1 }
        let bytes = Array((format.line(time: Date(), level: level, label: label, source: source, message: message.description, metadata: all) + "\n").utf8)
        Self.writing.withLock { _ in
            var offset = 0
            while offset < bytes.count {
                let written = bytes[offset...].withUnsafeBytes { Foundation.write(STDERR_FILENO, $0.baseAddress, $0.count) }
                if written > 0 { offset += written } else if errno != EINTR { return }
            }
        }
    }
}
