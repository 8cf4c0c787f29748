#if canImport(Glibc)
import Glibc
#endif
import VigilAddressing
import VigilConfig

/// What happened to an entry, as an updown hook is told it: the values behind the `VIGIL_*` variables. Built by the
/// daemon from its own structured state (never from event text).
struct HookOccasion: Hashable, Sendable {
    var event: Hook.Event
    var map: String
    var sequence: Int
    var ikeVersion: IKEVersionTag
    /// The peer as configured (address or host name).
    var peer: String
    /// `failover`: the peer the traffic moved from.
    var previousPeer: String?
    var localSubnets: [IPPrefix]
    var remoteSubnets: [IPPrefix]
    /// Our inbound and outbound ESP SPIs, when a Child SA is involved.
    var spis: ChildSPIs?
    /// `down`, `dead-peer` (and `failover`): why.
    var reason: String?
    /// Wall-clock time of the event, in milliseconds since the Unix epoch.
    var unixMilliseconds: Int64
}

/// Our two ESP SPIs of one Child SA.
struct ChildSPIs: Hashable, Sendable {
    var inbound: UInt32
    var outbound: UInt32
}

/// The pure part of running updown hooks: which hooks an event runs, and the exact environment each is given.
enum HookPlan {
    /// The only variable besides the hook's own: a fixed search path (vigild's environment is never passed on).
    static let searchPath = "/usr/sbin:/usr/bin:/sbin:/bin"
    /// Reasons are text from our engines (and, through them, the peer's notify types): kept to one bounded line.
    static let maximumReasonLength = 256

    /// The global hooks, then the entry's own, that listen for `event` (a path listed at both levels runs once).
    static func hooks(for event: Hook.Event, global: [Hook], entry: [Hook]) -> [Hook] {
        var chosen: [Hook] = []
        for hook in global + entry where hook.events.contains(event) && !chosen.contains(where: { $0.path == hook.path }) {
            chosen.append(hook)
        }
        return chosen
    }

    /// The whole environment of one run: `PATH` and the `VIGIL_*` variables that apply to the occasion.
    static func environment(_ occasion: HookOccasion) -> [String: String] {
        var environment: [String: String] = [
            "PATH": searchPath,
            "VIGIL_EVENT": occasion.event.rawValue,
            "VIGIL_MAP": occasion.map,
            "VIGIL_SEQUENCE": String(occasion.sequence),
            "VIGIL_IKE_VERSION": occasion.ikeVersion == .v1 ? "1" : "2",
            "VIGIL_PEER": occasion.peer,
            "VIGIL_LOCAL_SUBNETS": occasion.localSubnets.map(\.description).joined(separator: " "),
            "VIGIL_REMOTE_SUBNETS": occasion.remoteSubnets.map(\.description).joined(separator: " "),
            "VIGIL_TIME": rfc3339(unixMilliseconds: occasion.unixMilliseconds),
        ]
        if let previous = occasion.previousPeer { environment["VIGIL_PREVIOUS_PEER"] = previous }
        if let spis = occasion.spis {
            environment["VIGIL_SPI_IN"] = hex(spis.inbound)
            environment["VIGIL_SPI_OUT"] = hex(spis.outbound)
        }
        if let reason = occasion.reason { environment["VIGIL_REASON"] = oneLine(reason) }
        return environment
    }

    /// `KEY=VALUE` strings in key order, as execve(2) takes them.
    static func environmentStrings(_ environment: [String: String]) -> [String] {
        environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }

    /// Control characters (a newline would forge a second line in a hook's own log) become spaces; NUL cannot
    /// cross execve(2) at all. Bounded in length.
    static func oneLine(_ text: String, limit: Int = maximumReasonLength) -> String {
        let cleaned = String(String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : $0 }))
        return cleaned.count > limit ? String(cleaned.prefix(limit)) : cleaned
    }

    /// RFC 3339 in UTC with milliseconds: `2026-12-07T15:00:30.123Z`.
    static func rfc3339(unixMilliseconds: Int64) -> String {
        let seconds = unixMilliseconds.quotientAndRemainderFloored(by: 1000)
        var time = time_t(seconds.quotient)
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(seconds.remainder), 3))Z"
    }
}

extension Int64 {
    /// Division rounding towards minus infinity, so times before 1970 still get a remainder in 0..<divisor.
    fileprivate func quotientAndRemainderFloored(by divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let (quotient, remainder) = quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? (quotient - 1, remainder + divisor) : (quotient, remainder)
    }
}

/// The bound on hooks running at once: a run beyond it is dropped (and counted), never queued, so a flapping
/// peer cannot pile up processes or memory.
struct HookAdmission: Sendable {
    /// Our limit: enough for every event of a failover on a few entries at once.
    static let maximumRunning = 8

    private(set) var running = 0

    /// True when a run may start (it then counts until `finished`).
    mutating func admit() -> Bool {
        guard running < Self.maximumRunning else { return false }
        running += 1
        return true
    }

    mutating func finished() {
        precondition(running > 0, "a hook run finished that was never admitted")
        running -= 1
    }
}

/// How one run ended, as logged and counted (`vigil_hook_runs_total{event,result}`).
enum HookOutcome: Hashable, Sendable {
    case exited(Int32)
    case signalled(Int32)
    /// Killed (SIGKILL to its process group) when its timeout passed.
    case timedOut
    /// posix_spawn(2) failed: errno.
    case spawnFailed(Int32)
    /// Not run: `HookAdmission.maximumRunning` runs were in progress.
    case dropped

    /// The metric's `result` label: a small fixed set.
    var label: String {
        switch self {
        case .exited(0): "success"
        case .exited: "failure"
        case .signalled: "signal"
        case .timedOut: "timeout"
        case .spawnFailed: "spawn-failed"
        case .dropped: "dropped"
        }
    }

    var description: String {
        switch self {
        case .exited(let status): "exited with status \(status)"
        case .signalled(let signal): "killed by signal \(signal)"
        case .timedOut: "timed out and was killed"
        case .spawnFailed(let error): "could not be started: \(String(cString: strerror(error)))"
        case .dropped: "dropped: \(HookAdmission.maximumRunning) hooks already running"
        }
    }
}
