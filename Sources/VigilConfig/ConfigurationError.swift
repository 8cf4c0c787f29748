/// One problem found in a configuration or secrets file, placed so a person can go and fix it.
public struct ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The file as it was named to the loader (main or secrets file).
    public var file: String
    /// 1-based; 0 when the problem is the file as a whole.
    public var line: Int
    /// 1-based; 0 when the problem is the file as a whole.
    public var column: Int
    /// The field, e.g. `crypto-maps.SITE-A.entries[10].dpd.retry`; empty for the whole document.
    public var path: String
    /// What was found and what is allowed.
    public var message: String

    public init(file: String, line: Int, column: Int, path: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.message = message
    }

    /// `FILE:LINE:COL: PATH: MESSAGE`.
    public var description: String {
        let place = line > 0 ? "\(file):\(line):\(column)" : file
        return path.isEmpty ? "\(place): \(message)" : "\(place): \(path): \(message)"
    }
}

/// Every problem found in one run, in file order (main file first, then the secrets file).
public struct ConfigurationErrors: Error, Hashable, Sendable, CustomStringConvertible {
    public var errors: [ConfigurationError]

    public init(_ errors: [ConfigurationError]) {
        self.errors = errors
    }

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
