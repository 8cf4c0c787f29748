/// The little YAML the import writes: plain scalars where YAML reads them back unchanged, double quotes otherwise.
enum YAMLText {
    /// Characters a plain scalar may hold here (names, addresses, prefixes, proposals, durations).
    private static func isPlain(_ character: Character) -> Bool {
        character.isASCII && (character.isLetter || character.isNumber || "._/-".contains(character))
    }

    static func scalar(_ text: String) -> String {
        let reserved = ["true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"]
        if !text.isEmpty, text.allSatisfy(isPlain), !reserved.contains(text.lowercased()), text.first != "-" { return text }
        return quoted(text)
    }

    static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    result += "\\x" + String(scalar.value, radix: 16).leftPadded(to: 2)
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }

    static func list(_ items: [String]) -> String { "[" + items.map(scalar).joined(separator: ", ") + "]" }

    /// Whole seconds in Vigil's duration text, the largest unit that divides them: `1d`, `1h`, `10m`, `90s`.
    static func duration(seconds: Int) -> String {
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] where seconds > 0 && seconds % size == 0 {
            return "\(seconds / size)\(unit)"
        }
        return "\(seconds)s"
    }

    /// A comment line's text: one line, no control characters.
    static func comment(_ text: String) -> String {
        String(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.map(Character.init))
    }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
