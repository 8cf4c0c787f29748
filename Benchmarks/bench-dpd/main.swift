// bench-dpd: N crypto-map entries, each a FailoverCoordinator over two peers with one DeadPeerDetector on the active
// peer (periodic DPD every 10 s, retry 2 s, 5 probes), driven through simulated time by a timer wheel; 1% of the
// active peers die every simulated minute and fail over to their backup. Prints events per CPU second, CPU time per
// simulated hour and memory per monitored peer.
//
// Usage: bench-dpd [peers ...] [--hours H]      (default: 10000 100000, 1 simulated hour each)
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VigilFailover
import VigilLiveness

/// Simulated network and schedule.
let tick = Duration.milliseconds(10)
let roundTrip = Duration.milliseconds(20)
let negotiation = Duration.seconds(1)
let dpd = DeadPeerDetector.Configuration(mode: .periodic, interval: .seconds(10), retry: .seconds(2), retries: 5,
                                         flavour: .ikev1(firstSequence: 1))
let dyingPerMinute = 0.01

struct Entry {
    var coordinator: FailoverCoordinator<UInt32>
    var detector: DeadPeerDetector?
    /// Whether the active peer answers.
    var alive = true
    var armedTick: Int = -1
    /// The sequence of the R-U-THERE in flight, echoed by the peer's R-U-THERE-ACK.
    var sequence: UInt32 = 0
}

/// A hashed timer wheel of 10 ms slots spanning 81.92 s; an item is an entry index with its kind in the top bits.
struct TimerWheel {
    static let slots = 8192
    static let ack: UInt32 = 1 << 31
    static let established: UInt32 = 1 << 30
    static let indexMask: UInt32 = (1 << 30) - 1
    var buckets = [[UInt32]](repeating: [], count: slots)

    mutating func schedule(_ item: UInt32, atTick target: Int) { buckets[target & (Self.slots - 1)].append(item) }
}

func cpuSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

func residentBytes() -> Int {
    guard let file = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(file) }
    var size = 0, resident = 0
    withUnsafeMutablePointer(to: &size) { sizePointer in
        withUnsafeMutablePointer(to: &resident) { residentPointer in
            _ = withVaList([sizePointer, residentPointer]) { vfscanf(file, "%ld %ld", $0) }
        }
    }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func rounded(_ value: Double) -> Double { (value * 10_000).rounded() / 10_000 }

func ticks(_ duration: Duration) -> Int {
    let (seconds, attoseconds) = duration.components
    return Int(seconds) * 100 + Int((attoseconds + 9_999_999_999_999_999) / 10_000_000_000_000_000)
}

func run(peers count: Int, hours: Int) {
    var random = SplitMix64(seed: 42)
    let before = residentBytes()
    var entries: [Entry] = []
    entries.reserveCapacity(count)
    var wheel = TimerWheel()
    var events = 0
    for index in 0 ..< count {
        let peers = [UInt32(2 * index), UInt32(2 * index + 1)]
        var coordinator = FailoverCoordinator(configuration: .init(
            peers: peers, deadPeerAction: .restart, attemptTimeout: .seconds(30),
            backoff: .init(initial: .seconds(1), maximum: .seconds(60))))
        _ = coordinator.handle(.start, now: .zero, random: &random)
        // Spread the establishments over the first interval so the load is steady.
        let start = Int.random(in: 1 ... ticks(dpd.interval), using: &random)
        entries.append(Entry(coordinator: coordinator))
        wheel.schedule(UInt32(index) | TimerWheel.established, atTick: start)
    }
    let after = residentBytes()

    let endTick = hours * 3600 * 100
    let ticksPerMinute = 6000
    var deaths = 0, failovers = 0
    let cpuStart = cpuSeconds()
    for current in 1 ... endTick {
        let now = tick * current
        if current % ticksPerMinute == 0 {
            for _ in 0 ..< Int(Double(count) * dyingPerMinute) {
                entries[Int.random(in: 0 ..< count, using: &random)].alive = false
            }
        }
        let slot = current & (TimerWheel.slots - 1)
        var bucket: [UInt32] = []
        swap(&bucket, &wheel.buckets[slot])
        for item in bucket {
            let index = Int(item & TimerWheel.indexMask)
            var action: DeadPeerDetector.Action?
            if item & TimerWheel.established != 0 {
                events += 1
                for step in entries[index].coordinator.handle(.childEstablished(entries[index].coordinator.negotiatingPeer!),
                                                             now: now, random: &random) {
                    if case .programKernel = step {
                        entries[index].detector = DeadPeerDetector(configuration: dpd, establishedAt: now)
                        entries[index].alive = true
                    }
                }
            } else if item & TimerWheel.ack != 0 {
                guard entries[index].detector != nil, entries[index].alive else { continue }
                events += 1
                action = entries[index].detector!.handle(.probeAcknowledged(sequence: entries[index].sequence), now: now)
            } else {
                guard entries[index].armedTick == current, entries[index].detector != nil else { continue }
                events += 1
                action = entries[index].detector!.handle(.timerFired, now: now)
            }
            switch action {
            case nil:
                break
            case .sendProbe(let sequence, _)?:
                entries[index].sequence = sequence
                if entries[index].alive { wheel.schedule(UInt32(index) | TimerWheel.ack, atTick: current + ticks(roundTrip)) }
            case .peerDead?:
                deaths += 1
                events += 1
                let dead = entries[index].coordinator.activePeer!
                for step in entries[index].coordinator.handle(.peerDead(dead), now: now, random: &random) {
                    switch step {
                    case .deleteSAs: entries[index].detector = nil
                    case .initiate:
                        failovers += 1
                        wheel.schedule(UInt32(index) | TimerWheel.established, atTick: current + ticks(negotiation))
                    case .abandonAttempt, .programKernel, .holdTraffic, .clearProtection, .probePhase1, .scheduleTimer, .emit:
                        break   // the attempt always completes within its timeout here
                    }
                }
            }
            if let wake = entries[index].detector?.nextWakeup {
                let target = max(ticks(wake), current + 1)
                if target != entries[index].armedTick {
                    entries[index].armedTick = target
                    wheel.schedule(UInt32(index), atTick: target)
                }
            }
        }
        bucket.removeAll(keepingCapacity: true)
        swap(&bucket, &wheel.buckets[slot])
        if wheel.buckets[slot].isEmpty { swap(&bucket, &wheel.buckets[slot]) }
    }
    let cpu = cpuSeconds() - cpuStart
    let simulated = Double(hours) * 3600
    let perHour = cpu / Double(hours)
    print("peers \(count): \(hours) simulated h, \(events) events, \(deaths) deaths, \(failovers) failovers")
    print("  events per CPU second  \(Int(Double(events) / cpu))")
    print("  CPU per simulated hour \(rounded(perHour)) s (simulated time runs \(Int(simulated / cpu))x faster than real time;"
        + " load at real time \(rounded(perHour / 36)) % of one core)")
    print("  memory per peer        \((after - before) / count) bytes resident (Entry stride \(MemoryLayout<Entry>.stride), "
        + "DeadPeerDetector \(MemoryLayout<DeadPeerDetector>.stride), FailoverCoordinator \(MemoryLayout<FailoverCoordinator<UInt32>>.stride))")
    withExtendedLifetime(entries) {}
}

#if canImport(Glibc)
/// glibc's malloc_trim (malloc.h is not part of the Glibc module).
@_silgen_name("malloc_trim") func mallocTrim(_ pad: Int) -> Int32
#endif

var arguments = Array(CommandLine.arguments.dropFirst())
var hours = 1
if let flag = arguments.firstIndex(of: "--hours"), flag + 1 < arguments.count {
    hours = Int(arguments[flag + 1]) ?? 1
    arguments.removeSubrange(flag ... flag + 1)
}
let counts = arguments.isEmpty ? [10_000, 100_000] : arguments.compactMap { Int($0) }
for count in counts {
    run(peers: count, hours: hours)
    #if canImport(Glibc)
    _ = mallocTrim(0)   // hand freed pages back so the next run's resident-set delta is its own
    #endif
}
