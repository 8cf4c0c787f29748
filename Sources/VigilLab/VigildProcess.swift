import Foundation

/// A `vigild` process started in a lab namespace, with its output captured to a file.
public final class VigildProcess: @unchecked Sendable {
    public let namespace: NetworkNamespace
    public let binary: String
    public let configPath: String
    public let logPath: String
    private var process: Process?

    /// Finds a product (`vigild`, `vigil`) built next to the running test bundle or executable.
    public static func productPath(_ name: String) -> String? {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = directory.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return nil
    }

    public init(namespace: NetworkNamespace, binary: String, configPath: String, logPath: String) {
        self.namespace = namespace
        self.binary = binary
        self.configPath = configPath
        self.logPath = logPath
    }

    deinit { stop() }

    /// Starts vigild; `environment` is added to this process's own (e.g. NOTIFY_SOCKET for a systemd stand-in).
    public func start(extraArguments: [String] = [], environment: [String: String] = [:]) throws {
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ip", "netns", "exec", namespace.name, binary, "--config", configPath] + extraArguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
    }

    public var isRunning: Bool { process?.isRunning ?? false }
    public var pid: Int32? { process?.processIdentifier }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until `predicate(log)` holds or the timeout passes; returns whether it held.
    public func waitForLog(timeout: Double, _ predicate: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if predicate(log) { return true }
            usleep(20_000)
        }
        return predicate(log)
    }

    public func signal(_ signal: Int32) {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, signal)
    }

    /// Waits until the process has exited or `timeout` seconds passed; returns whether it exited.
    public func waitForExit(timeout: Double) -> Bool {
        guard let process else { return true }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        return !process.isRunning
    }

    /// How the process ended, once it has: its exit status, or the signal that ended it.
    public var termination: (status: Int32, bySignal: Bool)? {
        guard let process, !process.isRunning else { return nil }
        return (process.terminationStatus, process.terminationReason == .uncaughtSignal)
    }

    /// SIGTERM, then wait up to 5 s, then SIGKILL.
    public func stop() {
        guard let process else { return }
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        self.process = nil
    }
}
