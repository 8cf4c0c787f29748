import Foundation

/// Runs lab commands (ip, nft, swanctl, charon). Lab code only: the daemon never shells out.
public enum Command {
    public struct Result: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
        public var succeeded: Bool { status == 0 }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let command: [String]
        public let result: Result
        public var description: String {
            "`\(command.joined(separator: " "))` exited \(result.status): \(result.stderr)\(result.stdout)"
        }
    }

    /// Runs `arguments` (first element is the program, looked up in PATH) and waits for it.
    @discardableResult
    public static func run(_ arguments: [String], environment: [String: String]? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read both pipes before waiting so a chatty command cannot block on a full pipe.
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self)
        )
    }

    /// Runs and throws `Failure` unless the command exits 0.
    @discardableResult
    public static func check(_ arguments: [String], environment: [String: String]? = nil) throws -> Result {
        let result = try run(arguments, environment: environment)
        guard result.succeeded else { throw Failure(command: arguments, result: result) }
        return result
    }
}
