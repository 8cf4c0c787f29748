/// Durations as written in the configuration: one or more `NUMBER UNIT` groups, `500ms`, `10s`, `5m`, `1h`, `1d`,
/// `1m30s`. A bare number is refused because `10` could mean seconds or milliseconds.
enum DurationText {
    static let units: [(suffix: String, milliseconds: Int64)] = [
        ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1),
    ]
    static let unitList = "ms, s, m, h, d"

    enum ParseError: Error, Equatable {
        case bareNumber(String)
        case malformed(String)

        var message: String {
            switch self {
            case .bareNumber(let text):
                "'\(text)' has no unit; write it with one, e.g. \(text)s or \(text)ms (units: \(DurationText.unitList))"
            case .malformed(let text):
                "'\(text)' is not a duration; allowed: a number with a unit such as 500ms, 10s, 5m, 1h, 1d (units: \(DurationText.unitList))"
            }
        }
    }

    static func parse(_ text: String) -> Result<Duration, ParseError> {
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty else { return .failure(.malformed(text)) }
        if trimmed.allSatisfy(\.isASCIIDigit) { return .failure(.bareNumber(trimmed)) }
        var total: Int64 = 0
        var rest = Substring(trimmed)
        while !rest.isEmpty {
            let digits = rest.prefix(while: \.isASCIIDigit)
            guard !digits.isEmpty, digits.count <= 12, let number = Int64(digits) else { return .failure(.malformed(text)) }
            rest = rest.dropFirst(digits.count)
            let unitText = rest.prefix(while: { $0.isLetter })
            guard let unit = units.first(where: { $0.suffix == unitText.lowercased() }) else {
                return .failure(.malformed(text))
            }
            rest = rest.dropFirst(unitText.count)
            let (product, overflow) = number.multipliedReportingOverflow(by: unit.milliseconds)
            guard !overflow else { return .failure(.malformed(text)) }
            total += product
        }
        return .success(.milliseconds(total))
    }

    /// The shortest exact text: `1h30m`, `2s500ms`, `0s`.
    static func format(_ duration: Duration) -> String {
        var milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        guard milliseconds > 0 else { return "0s" }
        var text = ""
        for unit in units where milliseconds >= unit.milliseconds {
            text += "\(milliseconds / unit.milliseconds)\(unit.suffix)"
            milliseconds %= unit.milliseconds
        }
        return text
    }
}

extension Duration {
    /// Configuration notation: `1h30m`, `500ms`.
    public var configurationText: String { DurationText.format(self) }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

extension String {
    var trimmingSpaces: String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
