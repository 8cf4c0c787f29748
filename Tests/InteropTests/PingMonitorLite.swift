import Foundation
import VigilLab

/// Pings the remote service every 10 ms from a namespace and records each reply's time, to measure the blackout of a
/// failover: the longest gap between two consecutive replies.
final class PingMonitorLite: @unchecked Sendable {
    struct Report {
        var sent: Int
        var replies: Int
        /// Longest gap between consecutive replies, in seconds.
        var blackout: Double
        /// Replies after the longest gap (traffic flows again).
        var repliesAfterGap: Int
    }

    private let process = Process()
    private let pipe = Pipe()
    private let lock = NSLock()
    private var replyTimes: [Double] = []
    private var buffer = ""
    private var sent = 0

    static func start(in namespace: NetworkNamespace, destination: String = FailoverLab.remoteServiceAddress) throws -> PingMonitorLite {
        let monitor = PingMonitorLite()
        monitor.process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        monitor.process.arguments = ["ip", "netns", "exec", namespace.name, "ping", "-D", "-n", "-i", "0.01", "-W", "1", destination]
        monitor.process.standardOutput = monitor.pipe
        monitor.process.standardError = FileHandle.nullDevice
        monitor.pipe.fileHandleForReading.readabilityHandler = { [weak monitor] handle in
            monitor?.consume(handle.availableData)
        }
        try monitor.process.run()
        return monitor
    }

    private func consume(_ data: Data) {
        lock.lock()
        defer { lock.unlock() }
        buffer += String(decoding: data, as: UTF8.self)
        while let newline = buffer.firstIndex(of: "\n") {
            let line = String(buffer[..<newline])
            buffer.removeSubrange(...newline)
            // "[1764430000.123456] 64 bytes from 10.2.0.1: icmp_seq=12 ttl=63 time=0.5 ms"
            guard line.hasPrefix("["), line.contains("bytes from"), let close = line.firstIndex(of: "]"),
                  let stamp = Double(line[line.index(after: line.startIndex)..<close]) else { continue }
            replyTimes.append(stamp)
            if let seq = line.range(of: "icmp_seq=") {
                sent = max(sent, Int(line[seq.upperBound...].prefix { $0.isNumber }) ?? 0)
            }
        }
    }

    var replies: Int {
        lock.lock()
        defer { lock.unlock() }
        return replyTimes.count
    }

    /// Waits until `count` replies arrived after `after` (wall clock), or the timeout passes.
    func waitForReplies(_ count: Int, after: Date = .distantPast, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        let since = after.timeIntervalSince1970
        while Date() < deadline {
            lock.lock()
            let seen = replyTimes.filter { $0 > since }.count
            lock.unlock()
            if seen >= count { return true }
            usleep(10_000)
        }
        return false
    }

    func stop() -> Report {
        if process.isRunning { process.interrupt() }
        let deadline = Date().addingTimeInterval(2)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        pipe.fileHandleForReading.readabilityHandler = nil
        lock.lock()
        defer { lock.unlock() }
        var blackout = 0.0
        var gapIndex = replyTimes.count
        for index in replyTimes.indices.dropFirst() where replyTimes[index] - replyTimes[index - 1] > blackout {
            blackout = replyTimes[index] - replyTimes[index - 1]
            gapIndex = index
        }
        return Report(sent: sent, replies: replyTimes.count, blackout: blackout, repliesAfterGap: replyTimes.count - gapIndex)
    }
}
