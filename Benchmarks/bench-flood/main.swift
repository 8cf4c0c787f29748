// bench-flood: vigild holds N established IKEv2 tunnels (DPD periodic 1 s, retry 200 ms x 3) while an attacker
// namespace sends forged IKE_SA_INIT requests and garbage datagrams at it; halfway through, the first peer of one
// extra entry is SIGKILLed. Prints false deaths, the killed peer's detection delay, CPU, RSS, log lines, cookies.
//
//   swift build --product vigild && swift build --product bench-flood && .build/debug/bench-flood
//   [--seconds 60] [--init-rate 10000] [--garbage-rate 10000] [--tunnels 50] [--spoof-percent 50]
//   [--kill-at SECONDS] [--init-port 500|4500|both] [--log-level info|debug|...] [--seed N] [--keep-log PATH]
import Foundation
import VigilDaemon
import VigilLab

struct Options {
    var seconds = 60.0
    var initRate = 10_000
    var garbageRate = 10_000
    var tunnels = 50
    var spoofPercent = 50
    var killAt: Double?
    var logLevel = "info"
    var seed = UInt64(0x000F_100D)
    var keepLog: String?
    var upTimeout = 120.0
    var initPorts: [UInt16] = [500]

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        func number(_ range: ClosedRange<Double>) -> Double {
            guard let value = iterator.next().flatMap(Double.init), range.contains(value) else { Self.usage() }
            return value
        }
        while let argument = iterator.next() {
            switch argument {
            case "--seconds": seconds = number(1...3600)
            case "--init-rate": initRate = Int(number(0...1_000_000))
            case "--garbage-rate": garbageRate = Int(number(0...1_000_000))
            case "--tunnels": tunnels = Int(number(1...Double(FloodLab.maximumTunnels)))
            case "--spoof-percent": spoofPercent = Int(number(0...100))
            case "--kill-at": killAt = number(0...3600)
            case "--up-timeout": upTimeout = number(1...3600)
            case "--seed": seed = UInt64(number(0...Double(UInt32.max)))
            case "--init-port":
                switch iterator.next() {
                case "500": initPorts = [500]
                case "4500": initPorts = [4500]
                case "both": initPorts = [500, 4500]
                default: Self.usage()
                }
            case "--log-level":
                guard let level = iterator.next() else { Self.usage() }
                logLevel = level
            case "--keep-log":
                guard let path = iterator.next() else { Self.usage() }
                keepLog = path
            default: Self.usage()
            }
        }
        if let killAt, killAt >= seconds { Self.usage() }
    }

    static func usage() -> Never {
        FileHandle.standardError.write(Data("""
        usage: bench-flood [--seconds S] [--init-rate N/s] [--garbage-rate N/s] [--tunnels N] [--spoof-percent P]
                           [--init-port 500|4500|both (where forged IKE_SA_INITs go; default 500)]
                           [--kill-at S (< --seconds; default half)] [--log-level LEVEL] [--seed N] [--up-timeout S]
                           [--keep-log PATH]

        """.utf8))
        exit(2)
    }
}

/// Unbuffered, so progress appears as it happens also when stdout is a file.
func say(_ line: String = "") { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("bench-flood: \(message)\n".utf8))
    cleanUp()
    exit(1)
}

// MARK: Clean-up on every path, SIGINT and SIGTERM included

final class Active: @unchecked Sendable {
    private let lock = NSLock()
    private var lab: FloodLab?
    private var flooder: Flooder?
    func set(lab: FloodLab?) { lock.lock(); self.lab = lab; lock.unlock() }
    func set(flooder: Flooder?) { lock.lock(); self.flooder = flooder; lock.unlock() }
    func take() -> (FloodLab?, Flooder?) {
        lock.lock()
        defer { lab = nil; flooder = nil; lock.unlock() }
        return (lab, flooder)
    }
}

let active = Active()
func cleanUp() {
    let (lab, flooder) = active.take()
    flooder?.stop()
    lab?.destroy()
}

var signalSources: [DispatchSourceSignal] = []
for number in [SIGINT, SIGTERM] {
    signal(number, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
    source.setEventHandler {
        FileHandle.standardError.write(Data("bench-flood: signal \(number): removing the lab\n".utf8))
        cleanUp()
        exit(130)
    }
    source.resume()
    signalSources.append(source)
}

// MARK: Lab

let options = Options(CommandLine.arguments)
guard getuid() == 0 else { fail("run as root (network namespaces, raw sockets)") }
NetworkNamespace.removeLeftovers()

let intervalMs = 1000, retryMs = 200, retries = 3
var settings = FloodLab.Settings()
settings.interval = "\(intervalMs)ms"
settings.retry = "\(retryMs)ms"
settings.retries = retries
settings.logLevel = options.logLevel
let schedule = Double(intervalMs + retries * retryMs) / 1000
let retrySeconds = Double(retryMs) / 1000

let lab: FloodLab
do {
    lab = try FloodLab(tunnels: options.tunnels, settings: settings)
} catch {
    fail("cannot build the lab: \(error)")
}
active.set(lab: lab)
let killedPeer = FailoverLab.gatewayAddress(FloodLab.killedGateway)
let failoverPeer = FailoverLab.gatewayAddress(FloodLab.failoverGateway)
let tunnelPeer = FailoverLab.gatewayAddress(FloodLab.tunnelGateway)
let listedPeers = [tunnelPeer, killedPeer, failoverPeer]

say("bench-flood: building the lab: \(options.tunnels) tunnels to \(tunnelPeer) (one charon), entry \(FloodLab.extraSequence) "
    + "with \(killedPeer) then \(failoverPeer), attacker namespace \(lab.attacker.name)")
let events: EventCollector
do {
    try lab.startGateways()
    try lab.startVigild()
    events = try EventCollector(socketPath: lab.socketPath)
} catch {
    fail("cannot start the lab: \(error)\n\(lab.vigild?.log.suffix(4000) ?? "")")
}
guard let pid = lab.vigild?.pid, let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8),
      comm.hasPrefix("vigild") else { fail("cannot find vigild's process") }

func status() throws -> StatusReport {
    guard let status = try lab.request(ControlRequest(command: .status)).status else { throw FloodError("status: no report") }
    return status
}

func metrics() -> [String: Double] {
    parseMetrics((try? lab.request(ControlRequest(command: .metrics)).metrics) ?? "")
}

/// Entries with a Child SA up, by sequence number.
func entriesUp(_ report: StatusReport) -> Set<Int> {
    Set(report.entries.filter { !$0.childSAs.isEmpty }.map(\.sequence))
}

let startedUp = Date()
var report = try? status()
while Date().timeIntervalSince(startedUp) < options.upTimeout {
    report = try? status()
    if let report, entriesUp(report).count == options.tunnels + 1 { break }
    Thread.sleep(forTimeInterval: 0.5)
}
guard let upReport = report, entriesUp(upReport).count == options.tunnels + 1 else {
    let up = report.map(entriesUp)?.count ?? 0
    let charon = lab.lab.strongSwans[FloodLab.tunnelGateway]?.log.suffix(6000) ?? ""
    fail("only \(up) of \(options.tunnels + 1) entries came up within \(Int(options.upTimeout)) s\nvigild:\n\(lab.vigild?.log.suffix(6000) ?? "")\ncharon of \(tunnelPeer):\n\(charon)")
}
say(String(format: "bench-flood: %d entries up in %.1f s", options.tunnels + 1, Date().timeIntervalSince(startedUp)))

// A quiet window before the flood: the log and event rates with liveness checks alone, and no death allowed.
let quietSeconds = 5.0
let log = LogFile(path: lab.logPath)
let quietStartSize = log.size
Thread.sleep(forTimeInterval: quietSeconds)
let quietLines = log.lines(from: quietStartSize, to: log.size).count

// MARK: Flood

let childSPIs = upReport.entries.flatMap { entry in
    entry.childSAs.compactMap { child in UInt32(child.inboundSPI, radix: 16).map { (spi: $0, peer: child.peer) } }
}
let plan = Flooder.Plan(
    initRate: options.initRate, garbageRate: options.garbageRate, seconds: options.seconds, spoofPercent: options.spoofPercent,
    initPorts: options.initPorts,
    target: FailoverLab.vigilWANAddress,
    attackerAddresses: (0..<FloodLab.attackerAddressCount).map(FloodLab.attackerAddress),
    spoofedAddresses: listedPeers, childSPIs: childSPIs)
let rawSocket: Int32
do {
    rawSocket = try lab.attacker.perform { socket(AF_INET, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_RAW)) }
} catch {
    fail("cannot open a raw socket in the attacker namespace: \(error)")
}
guard rawSocket >= 0 else { fail("raw socket: \(String(cString: strerror(errno)))") }
var sendBuffer: Int32 = 4 << 20
setsockopt(rawSocket, SOL_SOCKET, SO_SNDBUF, &sendBuffer, socklen_t(MemoryLayout<Int32>.size))
let flooder: Flooder
do {
    flooder = try Flooder(fd: rawSocket, plan: plan, seed: options.seed)
} catch {
    fail("cannot build the flood: \(error)")
}
active.set(flooder: flooder)

let before = metrics()
let kernelBefore = KernelUDP.read(pid: pid)
guard let startSample = ProcessSample.read(pid: pid) else { fail("cannot read /proc/\(pid)") }
let machineStart = MachineSample.read()
let benchStart = ProcessSample.read(pid: getpid())
let loadBefore = MachineSample.loadAverage
let floodStartSize = log.size
let sampler = Sampler(pid: pid, socketPath: lab.socketPath)
let killAt = options.killAt ?? options.seconds / 2

say(String(format: "bench-flood: flooding for %.0f s (%d forged IKE_SA_INIT/s + %d garbage/s); killing %@ at +%.1f s",
           options.seconds, options.initRate, options.garbageRate, killedPeer, killAt))
let floodStart = Date()
let floodResult = ResultBox<Flooder.Counts>()
Thread { floodResult.set(.success(flooder.run())) }.start()
Thread.sleep(until: floodStart.addingTimeInterval(killAt))
let killedAt = Date()
lab.lab.kill(FloodLab.killedGateway)
guard case .success(let counts) = floodResult.wait() else { fail("the flood thread failed") }
let floodEnd = Date()
let afterFloodSample = ProcessSample.read(pid: pid)
let kernelAfter = KernelUDP.read(pid: pid)
let machineEnd = MachineSample.read()
let benchEnd = ProcessSample.read(pid: getpid())
let loadAfter = MachineSample.loadAverage
let floodEndSize = log.size
let (maximumRSS, latencies, controlFailures) = sampler.finish()
close(rawSocket)

// Let the failover finish if the flood ended before it did, then read the state.
let settleDeadline = Date().addingTimeInterval(10)
while Date() < settleDeadline,
      !events.events.contains(where: { $0.kind == "phase2-up" && $0.peer == failoverPeer && VigildLab.date(of: $0) >= killedAt }) {
    Thread.sleep(forTimeInterval: 0.1)
}
Thread.sleep(forTimeInterval: 1)
let vigildRunning = lab.vigild?.isRunning ?? false
let after = vigildRunning ? metrics() : [:]
let endReport = vigildRunning ? try? status() : nil
let endSample = ProcessSample.read(pid: pid)

// MARK: Results

let floodEvents = events.events.filter { VigildLab.date(of: $0) >= floodStart }
let quietDeaths = events.events.filter { $0.kind == "declared-dead" && VigildLab.date(of: $0) < floodStart }
let deaths = floodEvents.filter { $0.kind == "declared-dead" }
let falseDeaths = deaths.filter { $0.peer != killedPeer }
let killedDeath = deaths.first { $0.peer == killedPeer && VigildLab.date(of: $0) >= killedAt }
let failoverUp = floodEvents.first { $0.kind == "phase2-up" && $0.peer == failoverPeer && VigildLab.date(of: $0) >= killedAt }
let disruptionKinds: Set = ["phase1-down", "phase2-down", "negotiation-failed", "peer-unreachable"]
let disruptions = floodEvents.filter { disruptionKinds.contains($0.kind) && $0.peer != killedPeer }
let earlyDeath = deaths.first { $0.peer == killedPeer && VigildLab.date(of: $0) < killedAt }

/// "no answer to 3 probes; last proof of life 1.601 s before" -> 1.601
func sinceProofOfLife(_ event: DaemonEvent) -> Double? {
    guard let range = event.detail.range(of: #"last proof of life [0-9.]+"#, options: .regularExpression) else { return nil }
    return Double(event.detail[range].split(separator: " ").last ?? "")
}

/// "no answer to 3 probes; ..." -> 3
func probesSent(_ event: DaemonEvent) -> Int? {
    guard let range = event.detail.range(of: #"no answer to [0-9]+ probes"#, options: .regularExpression) else { return nil }
    return Int(event.detail[range].split(separator: " ")[3])
}

let floodSeconds = floodEnd.timeIntervalSince(floodStart)
let cpu = (afterFloodSample?.cpuSeconds ?? .nan) - startSample.cpuSeconds
let benchCPU = (benchEnd?.cpuSeconds ?? .nan) - (benchStart?.cpuSeconds ?? .nan)
let machineBusy = machineEnd.total > machineStart.total
    ? (machineEnd.busy - machineStart.busy) / (machineEnd.total - machineStart.total) : .nan
let cpuCount = ProcessInfo.processInfo.activeProcessorCount
let rssGrowthMB = Double((endSample?.rssKB ?? maximumRSS) - startSample.rssKB) / 1024
let floodLines = log.lines(from: floodStartSize, to: floodEndSize)
let rssLimitMB = 32.0

func mb(_ kilobytes: Int) -> String { String(format: "%.1f MB", Double(kilobytes) / 1024) }
func verdict(_ ok: Bool) -> String { ok ? "ok" : "MISSED" }
func delta(_ name: String) -> Double { (after[name] ?? 0) - (before[name] ?? 0) }
func series(_ family: String) -> Double { after.keys.filter { $0.hasPrefix(family) }.map(delta).reduce(0, +) }

var rows: [(String, String, String)] = []
let shortRuns = falseDeaths.filter { (probesSent($0) ?? retries) < retries }.count
rows.append(("false deaths (declared dead, peer not killed)",
             falseDeaths.isEmpty ? "0" : "\(falseDeaths.count) (\(shortRuns) after fewer than \(retries) probes)", "0  \(verdict(falseDeaths.isEmpty))"))
if !quietDeaths.isEmpty { rows.append(("deaths BEFORE the flood (lab not steady)", "\(quietDeaths.count)", "0  MISSED")) }
rows.append(("other disruptions of live peers (down, failed)", "\(disruptions.count)", "0  \(verdict(disruptions.isEmpty))"))
if let killedDeath {
    let delay = VigildLab.date(of: killedDeath).timeIntervalSince(killedAt)
    let gap = sinceProofOfLife(killedDeath)
    let onSchedule = gap.map { abs($0 - schedule) <= retrySeconds } ?? false
    rows.append(("killed peer declared dead after SIGKILL", String(format: "%.3f s", delay),
                 String(format: "<= %.1f s (kill lands between checks)", schedule + retrySeconds)))
    rows.append(("  ... after its last proof of life", gap.map { String(format: "%.3f s", $0) } ?? "?",
                 String(format: "%.1f s ± %.1f s  %@", schedule, retrySeconds, verdict(onSchedule))))
    let sent = probesSent(killedDeath)
    rows.append(("  ... unanswered liveness checks sent before", sent.map(String.init) ?? "?", "\(retries)  \(verdict(sent == retries))"))
} else {
    rows.append(("killed peer declared dead after SIGKILL", "NOT declared dead", "MISSED"))
}
if let earlyDeath { rows.append(("killed peer declared dead BEFORE the kill", earlyDeath.wallClock, "MISSED")) }
rows.append(("failover: Phase 2 up with the next peer", failoverUp.map { String(format: "%.3f s after SIGKILL", VigildLab.date(of: $0).timeIntervalSince(killedAt)) } ?? "not reached", ""))
rows.append(("vigild CPU during the flood", String(format: "%.1f s (%.0f%% of one core)", cpu, 100 * cpu / floodSeconds), ""))
rows.append(("vigild RSS start / end / max sampled", "\(mb(startSample.rssKB)) / \(mb(endSample?.rssKB ?? 0)) / \(mb(maximumRSS))", ""))
rows.append(("vigild RSS growth (end - start)", String(format: "%.1f MB", rssGrowthMB), String(format: "<= %.0f MB  %@", rssLimitMB, verdict(rssGrowthMB <= rssLimitMB))))
rows.append(("vigild VmHWM start / end", "\(mb(startSample.highWaterKB)) / \(mb(endSample?.highWaterKB ?? 0))", ""))
rows.append(("log lines written during the flood", String(format: "%d (%.1f/s; %.1f/s before the flood)", floodLines.count,
                                                             Double(floodLines.count) / floodSeconds, Double(quietLines) / quietSeconds), "bounded"))
rows.append(("log bytes written during the flood", "\(floodEndSize - floodStartSize)", ""))
rows.append(("cookie responses sent (vigil_ike_cookiesSent)", String(format: "%.0f", series("vigil_ike_cookiesSent")), ""))
rows.append(("IKE on 4500 shed (new exchanges) / refused (queue full)", String(format: "%.0f / %.0f",
             series("vigil_dataplane_ike_new_exchanges_shed"), series("vigil_dataplane_ike_refused")), ""))
rows.append(("forged IKE_SA_INIT sent", String(format: "%d (%.0f/s achieved of %d/s)", counts.forgedInits, Double(counts.forgedInits) / counts.elapsed, options.initRate), ""))
rows.append(("garbage datagrams sent", String(format: "%d (%.0f/s achieved of %d/s)", counts.garbage, Double(counts.garbage) / counts.elapsed, options.garbageRate), ""))
rows.append(("  spoofed from a listed peer's address", "\(counts.spoofed)", ""))
rows.append(("  sender errors / skipped (sender behind)", "\(counts.sendErrors)\(counts.firstError.map { " (\($0))" } ?? "") / \(counts.skipped)", ""))
func kernelDelta(_ name: String) -> Double { (kernelAfter.counters[name] ?? 0) - (kernelBefore.counters[name] ?? 0) }
func socketDrops(_ port: UInt16) -> Double { (kernelAfter.socketDrops[port] ?? 0) - (kernelBefore.socketDrops[port] ?? 0) }
rows.append(("kernel: UDP datagrams delivered to vigild's namespace", String(format: "%.0f", kernelDelta("InDatagrams")), ""))
rows.append(("kernel: dropped, vigild's receive buffer full", String(format: "%.0f (port 500: %.0f, 4500: %.0f)",
                                                                   kernelDelta("RcvbufErrors"), socketDrops(500), socketDrops(4500)), ""))
let sortedLatencies = latencies.sorted()
rows.append(("control API latency during the flood (max, median)",
             sortedLatencies.isEmpty ? "none answered" : String(format: "%.0f ms, %.0f ms", 1000 * sortedLatencies.last!, 1000 * sortedLatencies[sortedLatencies.count / 2]),
             controlFailures == 0 ? "" : "\(controlFailures) requests FAILED"))
rows.append(("vigild running after the flood", vigildRunning ? "yes" : "NO (crashed or exited)", verdict(vigildRunning)))
if let endReport {
    let up = entriesUp(endReport)
    let tunnelsUp = (0..<options.tunnels).filter { up.contains(FloodLab.sequence($0)) }.count
    rows.append(("tunnels to \(tunnelPeer) up after the flood", "\(tunnelsUp)/\(options.tunnels)", verdict(tunnelsUp == options.tunnels)))
    let extra = endReport.entries.first { $0.sequence == FloodLab.extraSequence }
    rows.append(("entry \(FloodLab.extraSequence) active peer after the flood", extra?.activePeer ?? "none", verdict(extra?.activePeer == failoverPeer)))
}
rows.append(("events stream followed to the end", events.streamEnded ? "NO (stream ended)" : "yes", ""))

say()
say("bench-flood: vigild \(lab.vigild?.binary.contains("/release/") == true ? "release" : "debug") build, userspace data plane, "
    + "\(options.tunnels) IKEv2 tunnels to one charon + entry \(FloodLab.extraSequence) (\(killedPeer) then \(failoverPeer)); "
    + "DPD periodic \(intervalMs)ms, retry \(retryMs)ms x \(retries) (dead \(schedule) s after the last proof of life); log level \(options.logLevel)")
say(String(format: "flood: %.1f s from namespace %@ (%d own addresses; %d%% spoofing %@), %d forged IKE_SA_INIT/s to %@ + %d garbage/s to 500 and 4500; SIGKILL of %@ at +%.1f s",
           floodSeconds, lab.attacker.name, FloodLab.attackerAddressCount, options.spoofPercent, listedPeers.joined(separator: ","),
           options.initRate, options.initPorts.map(String.init).joined(separator: "+"), options.garbageRate, killedPeer,
           killedAt.timeIntervalSince(floodStart)))
say("(forged ESP always comes from the address of the peer whose SPI it carries; every other datagram from a random port)")
say(String(format: "machine: %d CPUs; load average before %@, after %@; machine CPU busy during the flood %.0f%%; the bench itself (flooder) used %.1f s CPU",
           cpuCount, loadBefore, loadAfter, 100 * machineBusy, benchCPU))
say()
let width = rows.map(\.0.count).max()! + 2
let valueWidth = rows.map(\.1.count).max()! + 2
say("metric".padding(toLength: width, withPad: " ", startingAt: 0) + "value".padding(toLength: valueWidth, withPad: " ", startingAt: 0) + "target")
for (name, value, target) in rows {
    say(name.padding(toLength: width, withPad: " ", startingAt: 0) + value.padding(toLength: valueWidth, withPad: " ", startingAt: 0) + target)
}

say()
say("datagrams by kind:")
for kind in Flooder.Kind.allCases { say("  \(kind.label): \(counts.sent[kind.rawValue])") }
say()
say("vigild counters that moved during the flood (metrics after - before):")
for name in after.keys.sorted() where delta(name) != 0 && !name.hasPrefix("vigil_dpd_probes") {
    say(String(format: "  %@ +%.0f", name, delta(name)))
}
say(String(format: "  vigil_dpd_probes_sent_total +%.0f (liveness checks, all entries)", delta("vigil_dpd_probes_sent_total")))
say()
say("commonest log lines during the flood (numbers masked):")
for (shape, count) in LogFile.commonestShapes(floodLines, count: 10) { say(String(format: "  %7d  %@", count, shape)) }
if !falseDeaths.isEmpty || !disruptions.isEmpty {
    say()
    say("events of live peers that should not have happened:")
    for event in (falseDeaths + disruptions).prefix(30) {
        say("  \(event.wallClock) \(event.kind) seq \(event.sequence ?? 0) \(event.peer ?? "-"): \(event.detail)")
    }
}
if let killedDeath {
    say()
    say("killed peer \(killedPeer): events from the kill to its declared death:")
    for event in events.events where event.peer == killedPeer
        && VigildLab.date(of: event) >= killedAt.addingTimeInterval(-1.5) && VigildLab.date(of: event) <= VigildLab.date(of: killedDeath) {
        say(String(format: "  %+.3f s  %@  %@", VigildLab.date(of: event).timeIntervalSince(killedAt), event.kind, event.detail))
    }
}
if !vigildRunning {
    say()
    say("vigild exited; the end of its log:")
    say(String(lab.vigild?.log.suffix(6000) ?? ""))
}
if let keep = options.keepLog {
    try? FileManager.default.removeItem(atPath: keep)
    try? FileManager.default.copyItem(atPath: lab.logPath, toPath: keep)
    say()
    say("vigild's log kept at \(keep)")
}
cleanUp()
