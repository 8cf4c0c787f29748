/// What a reload (SIGHUP or `vigil reload`) did: the entries it added, removed and replaced, what else it applied,
/// what it kept, what needs a restart, or, when refused, every error (and nothing changed).
public struct ReloadReport: Codable, Sendable, Equatable {
    /// The configuration file read.
    public var path: String
    public var refused: Bool
    /// On refusal: every error, `FILE:LINE:COLUMN: PATH: MESSAGE` as `vigil config check` prints them.
    public var errors: [String]
    /// Entries (`MAP/SEQUENCE`) new in the file: loaded, and started if they start by themselves.
    public var added: [String]
    /// Entries no longer in the file: their SAs deleted, their kernel state removed.
    public var removed: [String]
    /// Entries whose settings changed, with the settings (`MAP/SEQUENCE (esp-proposals, ...)`): they renegotiate.
    public var replaced: [String]
    /// Changes made in place: peer lists, keys, hooks.
    public var applied: [String]
    /// Run-time peer lists (`vigil peers set`) kept because the file did not change those entries' lists.
    public var kept: [String]
    public var needsRestart: [String]

    public init(path: String, refused: Bool, errors: [String] = [], added: [String] = [], removed: [String] = [], replaced: [String] = [],
                applied: [String] = [], kept: [String] = [], needsRestart: [String] = []) {
        self.path = path
        self.refused = refused
        self.errors = errors
        self.added = added
        self.removed = removed
        self.replaced = replaced
        self.applied = applied
        self.kept = kept
        self.needsRestart = needsRestart
    }

    /// One line for the event log and the CLI's first line.
    public var summary: String {
        if refused {
            return "\(errors.count) error\(errors.count == 1 ? "" : "s") in \(path); nothing changed, running configuration kept"
        }
        var text = "applied: \(applied.isEmpty ? "nothing" : applied.joined(separator: ", "))"
        if !added.isEmpty { text += "; added: \(added.joined(separator: ", "))" }
        if !removed.isEmpty { text += "; removed: \(removed.joined(separator: ", "))" }
        if !replaced.isEmpty { text += "; replaced: \(replaced.joined(separator: ", "))" }
        if !kept.isEmpty { text += "; kept: \(kept.joined(separator: ", "))" }
        if !needsRestart.isEmpty { text += "; needs a restart: \(needsRestart.joined(separator: ", "))" }
        return text
    }

    private enum CodingKeys: String, CodingKey {
        case path, refused, errors, added, removed, replaced, applied, kept, needsRestart
    }

    /// A daemon older than the entry diff sends no `added`, `removed`, `replaced`: they read as empty.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        path = try container.decode(String.self, forKey: .path)
        refused = try container.decode(Bool.self, forKey: .refused)
        errors = try container.decode([String].self, forKey: .errors)
        added = try container.decodeIfPresent([String].self, forKey: .added) ?? []
        removed = try container.decodeIfPresent([String].self, forKey: .removed) ?? []
        replaced = try container.decodeIfPresent([String].self, forKey: .replaced) ?? []
        applied = try container.decode([String].self, forKey: .applied)
        kept = try container.decode([String].self, forKey: .kept)
        needsRestart = try container.decode([String].self, forKey: .needsRestart)
    }
}
