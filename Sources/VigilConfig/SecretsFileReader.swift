#if canImport(Glibc)
import Glibc
#endif

/// The one place the secrets file is read from disk. The checks are made on the descriptor that is then read
/// (fstat(2) on the open file, never stat-then-open, so the file cannot be swapped between check and read):
/// a regular file, owned by root or by the user vigild runs as, with no group or other permission bits.
public enum SecretsFileReader {
    /// Our limit: a secrets file is a few keys; a larger "file" is a mistake (a device, a log).
    static let maximumSize = 1 << 20

    public struct Refusal: Error, Sendable {
        public let message: String
    }

    public static func read(path: String) -> Result<String, Refusal> {
        // open(2) follows a symbolic link to the file whose owner and bits matter; O_NONBLOCK so that a FIFO put in
        // the file's place cannot hang the daemon in open(2) (a regular file ignores the flag).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { return .failure(Refusal(message: "cannot read the secrets file '\(path)': \(String(cString: strerror(errno)))")) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            return .failure(Refusal(message: "cannot read the secrets file '\(path)': \(String(cString: strerror(errno)))"))
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            return .failure(Refusal(message: "the secrets file '\(path)' is not a regular file; allowed: a regular file"))
        }
        let owner = status.st_uid
        let us = geteuid()
        guard owner == 0 || owner == us else {
            return .failure(Refusal(message: "the secrets file '\(path)' is owned by uid \(owner), not by root or by the user vigild runs as (uid \(us)); "
                + "allowed: owned by root or uid \(us); fix: chown \(us == 0 ? "root" : String(us)) \(path)"))
        }
        let mode = Int(status.st_mode) & 0o7777
        guard mode & 0o077 == 0 else {
            return .failure(Refusal(message: "the secrets file '\(path)' has mode \(octal(mode)), which lets group or others access it; "
                + "allowed: no group or other permission bits; fix: chmod 600 \(path)"))
        }
        guard Int(status.st_size) <= maximumSize else {
            return .failure(Refusal(message: "the secrets file '\(path)' is \(status.st_size) bytes; allowed: at most \(maximumSize) bytes"))
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let count = Glibc.read(fd, &chunk, chunk.count)
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(Refusal(message: "cannot read the secrets file '\(path)': \(String(cString: strerror(errno)))"))
            }
            if count == 0 { break }
            bytes += chunk[0..<count]
            guard bytes.count <= maximumSize else {
                return .failure(Refusal(message: "the secrets file '\(path)' grew past \(maximumSize) bytes while read"))
            }
        }
        wipe(&chunk)
        defer { wipe(&bytes) }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return .failure(Refusal(message: "the secrets file '\(path)' is not UTF-8 text"))
        }
        return .success(text)
    }

    static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { if let base = $0.baseAddress { explicit_bzero(base, $0.count) } }
    }

    static func octal(_ mode: Int) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
