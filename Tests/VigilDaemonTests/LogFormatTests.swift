import Foundation
import Logging
import Testing
@testable import VigilDaemon

/// vigild's log lines: millisecond timestamps, journald priorities, JSON, one line per message.
@Suite struct LogFormatTests {
    static let time = Date(timeIntervalSince1970: 1_796_657_307.123_9)   // 2026-12-07T15:28:27.123Z

    @Test func textHasMillisecondUTCTimestampsLabelAndSource() {
        let line = LogFormat.text.line(time: Self.time, level: .notice, label: "vigild", source: "VigilDaemon",
                                       message: "event dataplane-programmed", metadata: ["peer": "192.0.2.11"])
        #expect(line == "2026-12-07T15:28:27.123Z notice vigild[VigilDaemon]: event dataplane-programmed peer=192.0.2.11")
    }

    @Test func journalLinesCarryTheSyslogPriorityAndNoTimestamp() {
        let levels: [Logger.Level] = [.trace, .debug, .info, .notice, .warning, .error, .critical]
        let prefixes = levels.map { LogFormat.journal.line(time: Self.time, level: $0, label: "vigild", source: "x", message: "m", metadata: [:]) }
        #expect(prefixes == ["<7>m", "<7>m", "<6>m", "<5>m", "<4>m", "<3>m", "<2>m"])
        #expect(LogFormat.automatic(environment: ["JOURNAL_STREAM": "8:12345"]) == .journal)
        #expect(LogFormat.automatic(environment: [:]) == .text)
    }

    @Test func jsonIsOneObjectPerLine() throws {
        let line = LogFormat.json.line(time: Self.time, level: .warning, label: "vigild", source: "VigilDaemon",
                                       message: "two\nlines \"quoted\"", metadata: ["map": "HQ"])
        #expect(!line.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["time"] as? String == "2026-12-07T15:28:27.123Z")
        #expect(object["level"] as? String == "warning" && object["source"] as? String == "VigilDaemon")
        #expect(object["message"] as? String == "two\\nlines \"quoted\"")
        #expect((object["metadata"] as? [String: String])?["map"] == "HQ")
    }

    @Test func aNewlineInAMessageCannotForgeASecondLine() {
        for format in LogFormat.allCases {
            let line = format.line(time: Self.time, level: .info, label: "vigild", source: "s",
                                   message: "peer said\n2026-12-07T00:00:00.000Z error vigild[VigilDaemon]: forged", metadata: [:])
            #expect(!line.contains("\n"), "\(format)")
        }
    }
}
