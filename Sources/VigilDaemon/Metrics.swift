import Foundation

/// Counters, gauges and histograms, exported by `vigil metrics` and `GET /metrics` in the Prometheus text format
/// (version 0.0.4): per family one `# HELP` and one `# TYPE` line, then its samples, families in name order.
///
/// A series is named by its family and its labels, written as Prometheus writes them (`name{a="x",b="y"}`);
/// build label sets with `Metrics.series(_:_:)`, which escapes label values.
public struct Metrics: Sendable {
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    private var samples: [String: UInt64] = [:]
    private var help: [String: String] = [:]
    private var kinds: [String: Kind] = [:]
    /// Family → label text (`a="x",b="y"`, or empty) → histogram.
    private var histograms: [String: [String: Histogram]] = [:]

    public init() {}

    /// Adds to a counter.
    public mutating func increment(_ name: String, by amount: UInt64 = 1, help text: String? = nil) {
        samples[name, default: 0] &+= amount
        describe(Self.family(of: name), .counter, text)
    }

    /// Sets a sample: a gauge, or a counter kept elsewhere (a family named `..._total`, as Prometheus names counters),
    /// unless `kind` says otherwise.
    public mutating func set(_ name: String, _ value: UInt64, help text: String? = nil, kind: Kind? = nil) {
        samples[name] = value
        let family = Self.family(of: name)
        describe(family, kind ?? (family.hasSuffix("_total") ? .counter : .gauge), text)
    }

    /// Records one observation in the histogram `family{labels}` (created with `upperBounds` on first use).
    public mutating func observe(_ family: String, _ labels: KeyValuePairs<String, String> = [:], _ value: Double,
                                 upperBounds: [Double], help text: String? = nil) {
        let key = Self.labelText(labels)
        histograms[family, default: [:]][key, default: Histogram(upperBounds: upperBounds)].observe(value)
        describe(family, .histogram, text)
    }

    public func value(_ name: String) -> UInt64 { samples[name] ?? 0 }

    /// Forgets every series whose labels begin with `labels` (a crypto-map entry a reload removed: `map`, `sequence`).
    public mutating func removeSeries(labelledFirst labels: KeyValuePairs<String, String>) {
        let prefix = Self.labelText(labels)
        let matches = { (text: Substring) in text == prefix || text.hasPrefix(prefix + ",") }
        samples = samples.filter { name, _ in
            guard let open = name.firstIndex(of: "{"), name.hasSuffix("}") else { return true }
            return !matches(name[name.index(after: open)..<name.index(before: name.endIndex)])
        }
        histograms = histograms.mapValues { series in series.filter { !matches(Substring($0.key)) } }
    }

    /// The histogram `family{labels}`, if anything was observed in it.
    public func histogram(_ family: String, _ labels: KeyValuePairs<String, String> = [:]) -> Histogram? {
        histograms[family]?[Self.labelText(labels)]
    }

    /// Every counter and gauge sample by series name (histograms apart).
    public var all: [String: UInt64] { samples }

    private mutating func describe(_ family: String, _ kind: Kind, _ text: String?) {
        if kinds[family] == nil { kinds[family] = kind }
        if let text { help[family] = text }
    }

    /// Prometheus exposition text, sorted for stable output.
    public var text: String {
        var byFamily: [String: [String]] = [:]
        for name in samples.keys { byFamily[Self.family(of: name), default: []].append(name) }
        for family in histograms.keys where byFamily[family] == nil { byFamily[family] = [] }
        var lines: [String] = []
        for family in byFamily.keys.sorted() {
            if let text = help[family] { lines.append("# HELP \(family) \(Self.escapeHelp(text))") }
            lines.append("# TYPE \(family) \((kinds[family] ?? .gauge).rawValue)")
            for name in byFamily[family]!.sorted() { lines.append("\(name) \(samples[name]!)") }
            for (labels, histogram) in (histograms[family] ?? [:]).sorted(by: { $0.key < $1.key }) {
                lines += histogram.lines(family: family, labels: labels)
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `family{name="value",...}` with each value escaped; just `family` without labels.
    public static func series(_ family: String, _ labels: KeyValuePairs<String, String>) -> String {
        let text = labelText(labels)
        return text.isEmpty ? family : "\(family){\(text)}"
    }

    static func labelText(_ labels: KeyValuePairs<String, String>) -> String {
        labels.map { "\($0.key)=\"\(escapeLabelValue($0.value))\"" }.joined(separator: ",")
    }

    /// The text format's label value escapes: backslash, double quote and line feed.
    static func escapeLabelValue(_ value: String) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }

    /// `# HELP` text escapes backslash and line feed.
    static func escapeHelp(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    private static func family(of name: String) -> String {
        String(name.prefix { $0 != "{" })
    }
}

/// A Prometheus histogram: counts of observations at or below each upper bound (cumulative when written, with the
/// implicit `+Inf` bucket), their sum and count. Pure value; the daemon observes seconds from the loop's clock.
public struct Histogram: Hashable, Sendable {
    /// Strictly increasing finite upper bounds (`le`), without `+Inf`.
    public let upperBounds: [Double]
    /// Observations per bucket, not cumulative: `counts[i]` for `(upperBounds[i-1], upperBounds[i]]`, the last one
    /// above every bound.
    private var counts: [UInt64]
    public private(set) var sum: Double = 0
    public private(set) var count: UInt64 = 0

    public init(upperBounds: [Double]) {
        precondition(!upperBounds.isEmpty && upperBounds.allSatisfy(\.isFinite)
                     && zip(upperBounds, upperBounds.dropFirst()).allSatisfy { $0 < $1 },
                     "histogram bounds are finite and strictly increasing")
        self.upperBounds = upperBounds
        counts = Array(repeating: 0, count: upperBounds.count + 1)
    }

    /// `value` is a duration or a size we measured: never negative, never NaN (a broken clock is our bug).
    public mutating func observe(_ value: Double) {
        precondition(value.isFinite && value >= 0, "histogram observation \(value) is not a finite non-negative number")
        let index = upperBounds.firstIndex { value <= $0 } ?? upperBounds.count
        counts[index] &+= 1
        count &+= 1
        sum += value
    }

    /// Cumulative counts per upper bound, `+Inf` last (equal to `count`).
    public var cumulativeCounts: [UInt64] {
        var running: UInt64 = 0
        return counts.map { running &+= $0; return running }
    }

    func lines(family: String, labels: String) -> [String] {
        let prefix = labels.isEmpty ? "" : labels + ","
        let suffix = labels.isEmpty ? "" : "{\(labels)}"
        var lines: [String] = []
        let bounds = upperBounds.map(Self.format) + ["+Inf"]
        for (bound, cumulative) in zip(bounds, cumulativeCounts) {
            lines.append("\(family)_bucket{\(prefix)le=\"\(bound)\"} \(cumulative)")
        }
        lines.append("\(family)_sum\(suffix) \(Self.format(sum))")
        lines.append("\(family)_count\(suffix) \(count)")
        return lines
    }

    /// A float as Prometheus clients write it: integers without a fraction (`1`, `60`), others shortest (`0.025`).
    static func format(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
