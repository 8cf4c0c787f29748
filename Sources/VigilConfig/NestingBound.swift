/// A bound on how deeply a YAML text nests, found before the YAML library composes it.
///
/// Composing costs the library work proportional to the text's size times its nesting depth (every mapping hashes
/// its keys whole to refuse duplicates, and a key may itself be a collection holding the rest of the document), so a
/// few kilobytes of nested complex keys (`? - ? - ...`) take seconds and a few more take minutes: a reload of such a
/// file would stall the event loop. A Vigil configuration nests about ten levels; anything past `limit` is refused
/// before the library sees it, which keeps the cost linear.
///
/// The bound overestimates, never underestimates: a node's block depth is at most the column it starts at
/// (each level costs an indentation column or an indicator, `- `, `? `, `: `), and its flow depth is the number of
/// `[` and `{` open around it. So the bound per line is its leading run of spaces, tabs and indicators plus the
/// flow depth at its start; quoted scalars and comments are skipped so brackets in them do not count.
enum NestingBound {
    static let limit = 64

    /// The first line whose bound exceeds `limit` (1-based) and that bound, or nil.
    static func firstViolation(in text: String, limit: Int = limit) -> (line: Int, depth: Int)? {
        var line = 1
        var flowDepth = 0
        var atLineStart = true
        var leading = 0
        var quote: UInt8? = nil
        var inComment = false
        // A quote, a comment or a bracket means something only where a token starts: after white space, after a
        // bracket that counted, after a comma or colon in a flow collection (`a[b` and `don't` are plain scalars).
        var tokenStart = true
        var bytes = text.utf8.makeIterator()
        var pendingEscape = false
        while let byte = bytes.next() {
            if byte == 0x0A {
                tokenStart = true
                line += 1
                atLineStart = quote == nil
                leading = 0
                inComment = false
                pendingEscape = false
                continue
            }
            if inComment { continue }
            if let open = quote {
                if open == UInt8(ascii: "\"") {
                    if pendingEscape { pendingEscape = false } else if byte == UInt8(ascii: "\\") { pendingEscape = true } else if byte == open { quote = nil }
                } else if byte == open {
                    quote = nil  // '' (an escaped quote) closes and reopens: the same for counting brackets
                }
                continue
            }
            if atLineStart {
                switch byte {
                case 0x20, 0x09, UInt8(ascii: "-"), UInt8(ascii: "?"), UInt8(ascii: ":"):
                    leading += 1
                    if leading + flowDepth > limit { return (line, leading + flowDepth) }
                    continue
                default:
                    atLineStart = false
                }
            }
            let boundary = tokenStart
            tokenStart = false
            switch byte {
            case 0x20, 0x09:
                tokenStart = true
            case UInt8(ascii: "#") where boundary:
                inComment = true
            case UInt8(ascii: "\""), UInt8(ascii: "'"):
                if boundary { quote = byte }
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                // Inside a flow collection a bracket always opens one (flow indicators end plain scalars there).
                if boundary || flowDepth > 0 {
                    flowDepth += 1
                    tokenStart = true
                    if leading + flowDepth > limit { return (line, leading + flowDepth) }
                }
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                if flowDepth > 0 {
                    flowDepth -= 1
                    tokenStart = true
                }
            case UInt8(ascii: ","), UInt8(ascii: ":"):
                tokenStart = flowDepth > 0
            default:
                break
            }
        }
        return nil
    }
}
