import Foundation

/// Peer lists changed at run time (`vigil peers set`), kept in `global.state-file` so they survive a restart.
/// Only the entries whose list differs from the configuration file's are held, each with the file's list it
/// overrides: when the file has changed since (a reload or an edit while vigild was down), the file is the
/// operator's newer word and the stored list is stale.
public struct PeerListState: Codable, Sendable, Equatable {
    /// The format written; another version is ignored (logged), never guessed at.
    public static let currentVersion = 1

    public struct Entry: Codable, Sendable, Equatable {
        public var map: String
        public var sequence: Int
        /// The run-time list, in order, and its preferred peer (first when set).
        public var peers: [String]
        public var preferred: String?
        /// The configuration file's list (and preferred peer) this one overrides.
        public var configuredPeers: [String]
        public var configuredPreferred: String?

        public init(map: String, sequence: Int, peers: [String], preferred: String?, configuredPeers: [String], configuredPreferred: String?) {
            self.map = map
            self.sequence = sequence
            self.peers = peers
            self.preferred = preferred
            self.configuredPeers = configuredPeers
            self.configuredPreferred = configuredPreferred
        }

        var name: String { "\(map)/\(sequence)" }
    }

    public var version: Int
    public var entries: [Entry]

    public init(entries: [Entry]) {
        version = Self.currentVersion
        self.entries = entries
    }

    /// What the configuration says about one entry at start-up: its file list.
    struct Configured: Equatable {
        var name: String
        var peers: [String]
        var preferred: String?
    }

    /// The stored lists to restore and why the others are ignored: an entry no longer configured, or one whose file
    /// list changed since the list was stored. Pure; whether the peers have keys is checked by the caller.
    func restorable(over configured: [Configured]) -> (restore: [Entry], ignored: [String]) {
        var restore: [Entry] = []
        var ignored: [String] = []
        var seen = Set<String>()
        for entry in entries {
            guard seen.insert(entry.name).inserted else {
                ignored.append("\(entry.name): stored twice; the first is used")
                continue
            }
            guard let current = configured.first(where: { $0.name == entry.name }) else {
                ignored.append("\(entry.name): no longer configured")
                continue
            }
            guard current.peers == entry.configuredPeers, current.preferred == entry.configuredPreferred else {
                ignored.append("\(entry.name): the configuration file's peer list changed since it was stored "
                    + "(\(entry.configuredPeers.joined(separator: ", ")) -> \(current.peers.joined(separator: ", "))); the file's list is used")
                continue
            }
            restore.append(entry)
        }
        return (restore, ignored)
    }
}

/// Reading and writing `PeerListState`: JSON, written atomically (a temporary file in the same directory, fsync,
/// rename, fsync of the directory) with mode 0600; read only from a regular file owned by root or by us that
/// nobody else may write.
enum StateFile {
    /// Our limit: the state is a few peer lists; a larger file is not ours.
    static let maximumSize = 1 << 20

    struct Failure: Error, Equatable, CustomStringConvertible {
        var message: String
        init(_ message: String) { self.message = message }
        var description: String { message }
    }

    static func encode(_ state: PeerListState) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(state) else { preconditionFailure("the peer-list state always encodes") }
        return Array(data) + [0x0A]
    }

    static func decode(_ bytes: [UInt8]) throws(Failure) -> PeerListState {
        guard bytes.count <= maximumSize else { throw Failure("larger than \(maximumSize) bytes") }
        let state: PeerListState
        do {
            state = try JSONDecoder().decode(PeerListState.self, from: Data(bytes))
        } catch {
            throw Failure("not a peer-list state: \(error)")
        }
        guard state.version == PeerListState.currentVersion else {
            throw Failure("version \(state.version); this vigild reads version \(PeerListState.currentVersion)")
        }
        return state
    }

    /// The stored state; nil when there is no file yet.
    static func read(path: String) throws(Failure) -> PeerListState? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw Failure("cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw Failure("cannot stat: \(String(cString: strerror(errno)))") }
        guard status.st_mode & S_IFMT == S_IFREG else { throw Failure("not a regular file") }
        guard status.st_uid == 0 || status.st_uid == geteuid() else { throw Failure("owned by uid \(status.st_uid), not by root or by us") }
        guard Int(status.st_mode) & 0o022 == 0 else { throw Failure("writable by group or others (mode \(String(Int(status.st_mode) & 0o7777, radix: 8)))") }
        guard Int(status.st_size) <= maximumSize else { throw Failure("larger than \(maximumSize) bytes") }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var total = 0
        while total < bytes.count {
            let count = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + total, $0.count - total) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            total += count
        }
        return try decode(Array(bytes[..<total]))
    }

    /// Replaces the file atomically; its directory is created (0750) if missing.
    static func write(_ state: PeerListState, to path: String) throws(Failure) {
        let directory = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        } catch {
            throw Failure("cannot create \(directory): \(error.localizedDescription)")
        }
        var template = Array("\(directory)/.\((path as NSString).lastPathComponent).XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }  // mode 0600
        guard fd >= 0 else { throw Failure("cannot create a temporary file in \(directory): \(String(cString: strerror(errno)))") }
        let temporary = String(cString: template)
        let bytes = encode(state)
        var written = 0
        var failure: String?
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { failure = "cannot write: \(String(cString: strerror(errno)))"; break }
            written += count
        }
        if failure == nil, fchmod(fd, 0o600) != 0 || fsync(fd) != 0 { failure = "cannot sync: \(String(cString: strerror(errno)))" }
        close(fd)
        if failure == nil, rename(temporary, path) != 0 { failure = "cannot rename into place: \(String(cString: strerror(errno)))" }
        if let failure {
            unlink(temporary)
            throw Failure(failure)
        }
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }
}
