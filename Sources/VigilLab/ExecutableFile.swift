#if canImport(Glibc)
import Glibc
#endif

/// Writes a script the tests then execute (hooks): created with O_CLOEXEC and closed before anyone runs it.
///
/// A descriptor open for writing on an executable makes execve(2) of it fail with ETXTBSY, and a child forked by
/// another test in the same process at the wrong moment inherits every descriptor not marked close-on-exec; with a
/// long-lived child (a hook that starts `sleep 600`) the script stays busy for as long. Foundation's
/// `write(toFile:atomically:)` opens without O_CLOEXEC, so a parallel test run turned that into spawn failures.
public enum ExecutableFile {
    public struct Failure: Error, CustomStringConvertible {
        public let path: String
        public let operation: String
        public let errno: Int32
        public var description: String { "\(operation) \(path): \(String(cString: strerror(errno)))" }
    }

    public static func write(_ contents: String, to path: String, mode: mode_t = 0o755) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw Failure(path: path, operation: "open", errno: errno) }
        var bytes = Array(contents.utf8)
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if result < 0, errno == EINTR { continue }
            guard result > 0 else {
                let error = errno
                close(fd)
                throw Failure(path: path, operation: "write", errno: error)
            }
            written += result
        }
        guard fchmod(fd, mode) == 0 else {
            let error = errno
            close(fd)
            throw Failure(path: path, operation: "fchmod", errno: error)
        }
        guard close(fd) == 0 else { throw Failure(path: path, operation: "close", errno: errno) }
        bytes.removeAll()
    }
}
