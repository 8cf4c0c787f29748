import Foundation
import VigilDaemon
import VigilLab

/// CPU and memory of one process, from /proc (proc(5)).
struct ProcessSample {
    /// utime + stime, seconds.
    var cpuSeconds: Double
    /// VmRSS and VmHWM, kB.
    var rssKB: Int
    var highWaterKB: Int

    static func read(pid: Int32) -> ProcessSample? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")"),
              let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        // Fields after "pid (comm)": state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        func kilobytes(_ key: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return 0 }
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        return ProcessSample(cpuSeconds: (utime + stime) / ticks, rssKB: kilobytes("VmRSS"), highWaterKB: kilobytes("VmHWM"))
    }
}

/// The whole machine's CPU time (/proc/stat "cpu" line), to tell how loaded the machine was during a measurement.
struct MachineSample {
    var busy: Double
    var total: Double

    static func read() -> MachineSample {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return MachineSample(busy: 0, total: 0) }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        let total = values.prefix(8).reduce(0, +)
        let idle = (values.count > 4 ? values[3] + values[4] : 0)
        return MachineSample(busy: total - idle, total: total)
    }

    static var loadAverage: String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
    }
}

/// Samples vigild's RSS every `period` and times a control request once a second (event-loop responsiveness).
final class Sampler: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true
    private var maximumRSS = 0
    private var controlLatencies: [Double] = []
    private var controlFailures = 0
    private let done = DispatchSemaphore(value: 0)

    init(pid: Int32, socketPath: String, period: Double = 0.2) {
        let thread = Thread { [self] in
            var lastControl = 0.0
            while isRunning {
                if let sample = ProcessSample.read(pid: pid) { record(rss: sample.rssKB) }
                let now = monotonicSeconds()
                if now - lastControl >= 1 {
                    lastControl = now
                    do {
                        _ = try ControlClient(path: socketPath).send(ControlRequest(command: .metrics))
                        record(latency: monotonicSeconds() - now)
                    } catch {
                        recordFailure()
                    }
                }
                Thread.sleep(forTimeInterval: period)
            }
            done.signal()
        }
        thread.start()
    }

    private var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        return running
    }

    private func record(rss: Int) {
        lock.lock()
        maximumRSS = max(maximumRSS, rss)
        lock.unlock()
    }

    private func record(latency: Double) {
        lock.lock()
        controlLatencies.append(latency)
        lock.unlock()
    }

    private func recordFailure() {
        lock.lock()
        controlFailures += 1
        lock.unlock()
    }

    /// Stops and returns the largest RSS seen (kB), the control request latencies (s) and failed requests.
    func finish() -> (maximumRSS: Int, latencies: [Double], failures: Int) {
        lock.lock()
        running = false
        lock.unlock()
        done.wait()
        lock.lock()
        defer { lock.unlock() }
        return (maximumRSS, controlLatencies, controlFailures)
    }
}

/// Follows vigild's event stream (`events --follow`) from start-up, so no event is lost to the bounded ring.
final class EventCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var collected: [DaemonEvent] = []
    private var ended = false
    /// Read by the collector thread only, once `init` has subscribed.
    private let client: ControlClient

    init(socketPath: String) throws {
        client = try ControlClient(path: socketPath)
        _ = try client.send(ControlRequest(command: .events, follow: true))
        let thread = Thread { [self] in
            while let event = try? client.nextEvent() { append(event) }
            lock.lock()
            ended = true
            lock.unlock()
        }
        thread.start()
    }

    private func append(_ event: DaemonEvent) {
        lock.lock()
        collected.append(event)
        lock.unlock()
    }

    var events: [DaemonEvent] {
        lock.lock()
        defer { lock.unlock() }
        return collected
    }

    /// The stream ended (vigild exited, or dropped this follower for falling behind).
    var streamEnded: Bool {
        lock.lock()
        defer { lock.unlock() }
        return ended
    }
}

/// Prometheus text (`vigil metrics`) to values by series name.
func parseMetrics(_ text: String) -> [String: Double] {
    var values: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        values[String(line[..<space])] = value
    }
    return values
}

/// vigild's log file: line counts, and the commonest line shapes (numbers and hex masked) of a range of it.
struct LogFile {
    let path: String

    var size: Int { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }

    func lines(from start: Int, to end: Int) -> [Substring] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        try? handle.seek(toOffset: UInt64(start))
        let data = handle.readData(ofLength: max(0, end - start))
        return String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true)
    }

    static func shape(_ line: Substring) -> String {
        // Drop the timestamp prefix swift-log writes, then mask numbers, addresses and hex so lines group by kind.
        var text = String(line)
        if let range = text.range(of: #"^\S+ \S+ "#, options: .regularExpression) { text.removeSubrange(range) }
        text = text.replacingOccurrences(of: #"[0-9a-f]{8,}"#, with: "#", options: .regularExpression)
        text = text.replacingOccurrences(of: #"[0-9]+"#, with: "#", options: .regularExpression)
        return String(text.prefix(150))
    }

    static func commonestShapes(_ lines: [Substring], count: Int) -> [(shape: String, count: Int)] {
        var counts: [String: Int] = [:]
        for line in lines { counts[shape(line), default: 0] += 1 }
        return counts.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.prefix(count).map { ($0.key, $0.value) }
    }
}

/// The kernel's UDP counters in vigild's namespace (/proc/PID/net/snmp, the `Udp:` lines) and the drops of its
/// sockets on 500 and 4500 (/proc/PID/net/udp, last column): what the flood cost before vigild read anything.
struct KernelUDP {
    var counters: [String: Double] = [:]
    var socketDrops: [UInt16: Double] = [:]

    static func read(pid: Int32) -> KernelUDP {
        var result = KernelUDP()
        if let snmp = try? String(contentsOfFile: "/proc/\(pid)/net/snmp", encoding: .utf8) {
            let udp = snmp.split(separator: "\n").filter { $0.hasPrefix("Udp:") }
            if udp.count >= 2 {
                let names = udp[0].split(separator: " ").dropFirst()
                let values = udp[1].split(separator: " ").dropFirst().compactMap { Double($0) }
                for (name, value) in zip(names, values) { result.counters[String(name)] = value }
            }
        }
        if let table = try? String(contentsOfFile: "/proc/\(pid)/net/udp", encoding: .utf8) {
            for line in table.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                guard fields.count > 12, let port = fields[1].split(separator: ":").last.flatMap({ UInt16($0, radix: 16) }),
                      port == 500 || port == 4500, let drops = Double(fields[fields.count - 1]) else { continue }
                result.socketDrops[port, default: 0] += drops
            }
        }
        return result
    }
}
