/// A Cisco IOS / IOS XE running-config as a tree of lines: a command at the left margin, the sub-mode commands
/// indented under it (`crypto map VPN 10 ipsec-isakmp` / ` set peer 198.51.100.1`, `crypto ikev2 keyring K` /
/// ` peer P` / `  address ...`). Comments (`!`), blank lines and the framing `show running-config` prints
/// (`Building configuration...`, `Current configuration : N bytes`, `end`) are understood and carry nothing.
struct ConfigLine: Hashable, Sendable {
    /// 1-based line number in the input.
    let number: Int
    /// The line as written, without its indentation.
    let text: String
    /// Words separated by spaces.
    let words: [String]
    var children: [ConfigLine]

    /// The `index`-th word lowercased (IOS keywords), or "" past the end.
    func keyword(_ index: Int) -> String { index < words.count ? words[index].lowercased() : "" }

    /// True when the line starts with these keywords (lowercase).
    func starts(with keywords: String...) -> Bool {
        keywords.indices.allSatisfy { keyword($0) == keywords[$0] }
    }

    /// This line and every line under it, depth first.
    var allLines: [ConfigLine] { [self] + children.flatMap(\.allLines) }
}

enum ConfigText {
    struct Parsed {
        var roots: [ConfigLine]
        /// Multi-line `banner` commands, read past so their text is not taken for commands.
        var banners: [(line: Int, text: String, lineCount: Int)]
    }

    private struct Flat {
        var number: Int
        var indent: Int
        var text: String
    }

    static func parse(_ input: String) -> Parsed {
        var flat: [Flat] = []
        var banners: [(line: Int, text: String, lineCount: Int)] = []
        let rawLines = input.split(separator: "\n", omittingEmptySubsequences: false)
        var index = 0
        while index < rawLines.count {
            let number = index + 1
            var raw = Substring(rawLines[index])
            index += 1
            if raw.hasSuffix("\r") { raw = raw.dropLast() }
            let indent = raw.prefix(while: { $0 == " " || $0 == "\t" }).count
            let text = raw.dropFirst(indent).trimmingTrailingSpaces
            if text.isEmpty || text.hasPrefix("!") || isFraming(text, indent: indent) { continue }
            let words = text.split(separator: " ")
            if indent == 0, words.first?.lowercased() == "banner", words.count >= 3 {
                // `banner motd ^C ... ^C`: the delimiter is the first character (or `^C`) after the type.
                let afterType = text.dropFirst(words[0].count).drop(while: { $0 == " " }).dropFirst(words[1].count)
                    .drop(while: { $0 == " " })
                let delimiter = afterType.hasPrefix("^C") ? "^C" : String(afterType.prefix(1))
                var rest = afterType.dropFirst(delimiter.count)
                var count = 1
                while !rest.contains(delimiter), index < rawLines.count {
                    rest = Substring(rawLines[index])
                    index += 1
                    count += 1
                }
                banners.append((number, "\(words[0]) \(words[1])", count))
                continue
            }
            flat.append(Flat(number: number, indent: indent, text: String(text)))
        }
        var position = 0
        return Parsed(roots: block(flat, &position, deeperThan: -1), banners: banners)
    }

    /// `show running-config` framing: nothing to import and nothing to report.
    private static func isFraming(_ text: Substring, indent: Int) -> Bool {
        guard indent == 0 else { return false }
        return text == "end" || text.hasPrefix("Building configuration") || text.hasPrefix("Current configuration")
    }

    private static func block(_ lines: [Flat], _ position: inout Int, deeperThan indent: Int) -> [ConfigLine] {
        var result: [ConfigLine] = []
        while position < lines.count, lines[position].indent > indent {
            let line = lines[position]
            position += 1
            let children = block(lines, &position, deeperThan: line.indent)
            result.append(ConfigLine(number: line.number, text: line.text,
                                     words: line.text.split(separator: " ").map(String.init), children: children))
        }
        return result
    }
}

extension Substring {
    var trimmingTrailingSpaces: Substring {
        var end = endIndex
        while end > startIndex, self[index(before: end)] == " " || self[index(before: end)] == "\t" { end = index(before: end) }
        return self[startIndex..<end]
    }
}
