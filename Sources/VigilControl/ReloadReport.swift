/// What a reload (SIGHUP or `vigil reload`) did: what was applied, what was kept, what needs a restart, or, when
/// refused, every error (and nothing changed).
public struct ReloadReport: Codable, Sendable, Equatable {
    /// The configuration file read.
    public var path: String
    public var refused: Bool
    /// On refusal: every error, `FILE:LINE:COLUMN: PATH: MESSAGE` as `vigil config check` prints them.
    public var errors: [String]
    public var applied: [String]
    /// Run-time peer lists (`vigil peers set`) kept because the file did not change those entries' lists.
    public var kept: [String]
    public var needsRestart: [String]

    public init(path: String, refused: Bool, errors: [String] = [], applied: [String] = [], kept: [String] = [], needsRestart: [String] = []) {
        self.path = path
        self.refused = refused
        self.errors = errors
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
        if !kept.isEmpty { text += "; kept: \(kept.joined(separator: ", "))" }
        if !needsRestart.isEmpty { text += "; needs a restart: \(needsRestart.joined(separator: ", "))" }
        return text
    }
}
