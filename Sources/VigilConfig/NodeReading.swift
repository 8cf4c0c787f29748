import Yams

/// Collects errors while the YAML tree is walked; never stops at the first.
struct Diagnostics {
    private(set) var errors: [ConfigurationError] = []

    mutating func report(_ file: String, _ mark: Mark?, _ path: String, _ message: String) {
        errors.append(ConfigurationError(
            file: file, line: mark?.line ?? 0, column: mark?.column ?? 0, path: path, message: message))
    }

    /// A problem found before the YAML tree exists: a line, no node.
    mutating func report(_ file: String, line: Int, _ message: String) {
        errors.append(ConfigurationError(file: file, line: line, column: 1, path: "", message: message))
    }

    mutating func report(_ field: Field, _ message: String) {
        report(field.file, field.node.mark, field.path, message)
    }

    mutating func append(contentsOf other: Diagnostics) {
        errors.append(contentsOf: other.errors)
    }

    var sorted: [ConfigurationError] {
        errors.enumerated().sorted { lhs, rhs in
            let l = lhs.element, r = rhs.element
            return (l.file, l.line, l.column, lhs.offset) < (r.file, r.line, r.column, rhs.offset)
        }.map(\.element)
    }
}

/// A node of the document together with where it is: file and field path.
struct Field {
    let file: String
    let path: String
    let node: Node

    var mark: Mark? { node.mark }

    func child(_ key: String, _ node: Node) -> Field {
        Field(file: file, path: path.isEmpty ? key : "\(path).\(key)", node: node)
    }

    func element(_ label: String, _ node: Node) -> Field {
        Field(file: file, path: "\(path)[\(label)]", node: node)
    }

    /// What kind of node this is, for messages.
    var kind: String {
        switch node {
        case .scalar: "a scalar"
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    /// The scalar text; reports and returns nil for a mapping or list.
    func scalar(_ diagnostics: inout Diagnostics, expecting: String) -> String? {
        if case .scalar(let scalar) = node { return scalar.string }
        diagnostics.report(self, "found \(kind); allowed: \(expecting)")
        return nil
    }

    /// The items of a list; a single scalar counts as a list of one when `scalarAllowed`.
    func list(_ diagnostics: inout Diagnostics, expecting: String, scalarAllowed: Bool = false) -> [Field]? {
        switch node {
        case .sequence(let sequence):
            return sequence.enumerated().map { element(String($0.offset), $0.element) }
        case .scalar where scalarAllowed:
            return [element("0", node)]
        case .scalar, .mapping, .alias:
            diagnostics.report(self, "found \(kind); allowed: a list of \(expecting)")
            return nil
        }
    }

    func duration(_ diagnostics: inout Diagnostics, in range: ClosedRange<Duration>, note: String = "") -> Duration? {
        guard let text = scalar(&diagnostics, expecting: "a duration such as 10s") else { return nil }
        switch DurationText.parse(text) {
        case .failure(let error):
            diagnostics.report(self, error.message)
            return nil
        case .success(let value):
            guard range.contains(value) else {
                diagnostics.report(self, "\(text) is out of range; allowed: "
                    + "\(range.lowerBound.configurationText) to \(range.upperBound.configurationText)\(note)")
                return nil
            }
            return value
        }
    }

    func integer(_ diagnostics: inout Diagnostics, in range: ClosedRange<Int>) -> Int? {
        numeric(&diagnostics, in: range, kind: "an integer") { Int($0) }
    }

    func number(_ diagnostics: inout Diagnostics, in range: ClosedRange<Double>) -> Double? {
        numeric(&diagnostics, in: range, kind: "a number") { Double($0).flatMap { $0.isFinite ? $0 : nil } }
    }

    private func numeric<T: Comparable>(
        _ diagnostics: inout Diagnostics, in range: ClosedRange<T>, kind: String, _ parse: (String) -> T?
    ) -> T? {
        guard let text = scalar(&diagnostics, expecting: kind) else { return nil }
        guard let value = parse(text) else {
            diagnostics.report(self, "'\(text)' is not \(kind); allowed: \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        guard range.contains(value) else {
            diagnostics.report(self, "\(text) is out of range; allowed: \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        return value
    }

    func bool(_ diagnostics: inout Diagnostics) -> Bool? {
        guard let text = scalar(&diagnostics, expecting: "true or false") else { return nil }
        switch text {
        case "true": return true
        case "false": return false
        default:
            diagnostics.report(self, "'\(text)' is not a boolean; allowed: true, false")
            return nil
        }
    }

    /// One of the raw values of `T`.
    func choice<T: RawRepresentable & CaseIterable>(_ diagnostics: inout Diagnostics, of type: T.Type) -> T?
    where T.RawValue == String {
        guard let text = scalar(&diagnostics, expecting: "one of \(Self.names(T.self))") else { return nil }
        guard let value = T(rawValue: text) else {
            diagnostics.report(self, "'\(text)' is not allowed; allowed: \(Self.names(T.self))")
            return nil
        }
        return value
    }

    static func names<T: RawRepresentable & CaseIterable>(_ type: T.Type) -> String where T.RawValue == String {
        T.allCases.map(\.rawValue).joined(separator: ", ")
    }
}

/// A mapping whose keys were checked against the allowed ones; unknown keys are reported with a suggestion.
struct Section {
    let field: Field
    private let entries: [(key: String, keyNode: Node, value: Node)]

    /// Nil (after reporting) when the node is not a mapping. Unknown and non-scalar keys are reported.
    init?(_ field: Field, allowed: [String], _ diagnostics: inout Diagnostics) {
        guard case .mapping(let mapping) = field.node else {
            let expected = allowed.isEmpty ? "a mapping" : "a mapping with keys \(allowed.joined(separator: ", "))"
            diagnostics.report(field, "found \(field.kind); allowed: \(expected)")
            return nil
        }
        self.field = field
        var entries: [(key: String, keyNode: Node, value: Node)] = []
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                diagnostics.report(field.file, keyNode.mark, field.path, "a key must be a plain word; found \(Field(file: field.file, path: "", node: keyNode).kind)")
                continue
            }
            let key = scalar.string
            if !allowed.isEmpty, !allowed.contains(key) {
                var message = "unknown key '\(key)'"
                if let suggestion = Self.closest(to: key, in: allowed) { message += " (did you mean '\(suggestion)'?)" }
                message += "; allowed: \(allowed.joined(separator: ", "))"
                diagnostics.report(field.file, keyNode.mark, field.child(key, value).path, message)
                continue
            }
            entries.append((key, keyNode, value))
        }
        self.entries = entries
    }

    /// Every key in order, for mappings whose keys are names (crypto maps, secrets).
    var all: [(key: String, keyNode: Node, field: Field)] {
        entries.map { ($0.key, $0.keyNode, field.child($0.key, $0.value)) }
    }

    subscript(_ key: String) -> Field? {
        entries.first { $0.key == key }.map { field.child(key, $0.value) }
    }

    /// The field, or a report that it is missing.
    func required(_ key: String, _ diagnostics: inout Diagnostics, allowed: String) -> Field? {
        if let value = self[key] { return value }
        diagnostics.report(field.file, field.mark, field.child(key, field.node).path, "required key '\(key)' is missing; allowed: \(allowed)")
        return nil
    }

    static func closest(to word: String, in candidates: [String]) -> String? {
        let scored = candidates.map { ($0, editDistance(word.lowercased(), $0)) }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(2, word.count / 3) else { return nil }
        return best.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
