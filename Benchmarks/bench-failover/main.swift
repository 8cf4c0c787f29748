// bench-failover: kills gateway 1 of 3 while a host pings the remote service every 10 ms, N times per IKE version
// and implementation, and prints the medians: one column per implementation. strongSwan 5.9.8 is the baseline;
//
//   swift run bench-failover [--runs N] [--ike 1|2|both] [--bound SECONDS] [--verbose]
import Foundation
import VigilLab

struct Options {
    var runs = 3
    var versions = [2, 1]
    var boundSeconds = 60
    var verbose = false

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--runs":
                guard let value = iterator.next().flatMap(Int.init), value > 0 else { Self.usage() }
                runs = value
            case "--bound":
                guard let value = iterator.next().flatMap(Int.init), value > 0 else { Self.usage() }
                boundSeconds = value
            case "--verbose": verbose = true
            case "--ike":
                switch iterator.next() {
                case "1": versions = [1]
                case "2": versions = [2]
                case "both": versions = [2, 1]
                default: Self.usage()
                }
            default: Self.usage()
            }
        }
    }

    static func usage() -> Never {
        FileHandle.standardError.write(Data("usage: bench-failover [--runs N] [--ike 1|2|both] [--bound SECONDS] [--verbose]\n".utf8))
        exit(2)
    }
}

/// One column: runs one failover and returns the neutral measurement plus lines worth printing under the table.
struct Implementation {
    let name: String
    let run: (_ ikeVersion: Int, _ bound: Duration, _ verbose: Bool) throws -> (FailoverMeasurement, notes: [String])
}

let implementations = [
    Implementation(name: "vigild") { version, bound, verbose in
        let measurement = try VigildLab.measureFailover(ikeVersion: version, bound: bound)
        if verbose { say(measurement.timeline.rendered(expected: FailoverTimeline.Event.allCases) + "\n") }
        return (measurement, ["recovered via: \(measurement.recoveredVia ?? "none")"])
    },
    Implementation(name: "strongSwan 5.9.8") { version, bound, verbose in
        var configuration = StrongSwanBaseline.Configuration(ikeVersion: version)
        configuration.recoveryBound = bound
        let result = try StrongSwanBaseline.run(configuration)
        if verbose { say(result.report + "\n" + result.logAfterKill + "\n") }
        let toDead = result.initiations.filter { $0 == FailoverLab.gatewayAddress(0) }.count
        return (result.measurement, [
            "initiations after kill, to dead gw1 / all: \(toDead)/\(result.initiations.count)",
            "Phase 1+2 with a live gateway (swanctl --initiate): \(milliseconds(result.initialNegotiation))",
            "control, same config with only gw2: \(result.nextGatewayWorks ? "up, ping passes" : "FAILED")",
        ])
    },
]

/// The metrics of the table, each a function of one run (nil: not reached within the bound).
let metrics: [(name: String, value: (FailoverMeasurement) -> Duration?)] = [
    ("first probe after kill", { $0.sinceKill(.firstProbe) }),
    ("declared dead after kill", { $0.sinceKill(.declaredDead) }),
    ("Phase 2 up with next gateway", { $0.sinceKill(.phase2Up) }),
    ("first ping through after kill", { $0.sinceKill(.firstPingThrough) }),
    ("ping blackout", { $0.blackout.flatMap { $0.recovered ? $0.duration : nil } }),
]

/// Median of the reached values; "> bound" and a count when some runs never got there.
func median(_ values: [Duration?], bound: Duration) -> String {
    let reached = values.compactMap { $0 }.sorted()
    let missing = values.count - reached.count
    if reached.isEmpty { return "> \(Int(seconds(bound))) s (\(missing)/\(values.count) not reached)" }
    let middle = reached.count / 2
    let median = reached.count % 2 == 1 ? reached[middle] : (reached[middle - 1] + reached[middle]) / 2
    return missing == 0 ? milliseconds(median) : milliseconds(median) + " (\(missing)/\(values.count) not reached)"
}

/// Unbuffered, so progress lines appear as runs finish also when stdout is a file.
func say(_ line: String) {
    let trimmed = line.replacingOccurrences(of: " +$", with: "", options: .regularExpression)
    FileHandle.standardOutput.write(Data((trimmed + "\n").utf8))
}

func seconds(_ duration: Duration) -> Double {
    let (whole, attoseconds) = duration.components
    return Double(whole) + Double(attoseconds) / 1e18
}

func milliseconds(_ duration: Duration) -> String { String(format: "%.1f ms", seconds(duration) * 1000) }

let options = Options(CommandLine.arguments)
let bound = Duration.seconds(options.boundSeconds)
var cells: [String: String] = [:]  // "row|column"
var rowNames: [String] = []
var notes: [String] = []
for version in options.versions {
    for metric in metrics { rowNames.append("IKEv\(version) \(metric.name)") }
    rowNames.append("IKEv\(version) recovered via")
    for implementation in implementations {
        var measurements: [FailoverMeasurement] = []
        for run in 1...options.runs {
            // A lab that fails to come up (or loses a namespace mid-run) is retried, never counted.
            var outcome: (FailoverMeasurement, notes: [String])?
            for attempt in 1...3 where outcome == nil {
                do {
                    outcome = try implementation.run(version, bound, options.verbose)
                } catch {
                    FileHandle.standardError.write(Data("\(implementation.name) IKEv\(version) run \(run) attempt \(attempt) discarded: \(error)\n".utf8))
                }
            }
            guard let (measurement, runNotes) = outcome else { exit(1) }
            measurements.append(measurement)
            var values = metrics.map { "\($0.name) \($0.value(measurement).map(milliseconds) ?? "not reached")" }
            if let blackout = measurement.blackout, !blackout.recovered {
                values.append("silent for \(milliseconds(blackout.duration)) until the run stopped")
            }
            say("\(implementation.name) IKEv\(version) run \(run): " + values.joined(separator: "; "))
            notes += runNotes.map { "\(implementation.name) IKEv\(version) run \(run): \($0)" }
        }
        for metric in metrics {
            cells["IKEv\(version) \(metric.name)|\(implementation.name)"] = median(measurements.map(metric.value), bound: bound)
        }
        cells["IKEv\(version) recovered via|\(implementation.name)"] = measurements.map { $0.recoveredVia ?? "none" }.joined(separator: ",")
    }
}

say("")
say("failover after SIGKILL of gateway 1 of 3; host pings 10.2.0.1 every 10 ms; DPD periodic 1 s, retry 200 ms x 3")
say("(strongSwan: dpd_delay 1s, retransmit_timeout 0.2 base 1.0 tries 3, IKEv1 dpd_timeout 2s, keyingtries 0)")
say("median of \(options.runs) run(s), bound \(options.boundSeconds) s")
let width = (rowNames.map(\.count).max() ?? 0) + 2
let columnWidth = max(36, implementations.map(\.name.count).max() ?? 0)
say("metric".padding(toLength: width, withPad: " ", startingAt: 0)
    + implementations.map { $0.name.padding(toLength: columnWidth, withPad: " ", startingAt: 0) }.joined())
for row in rowNames {
    say(row.padding(toLength: width, withPad: " ", startingAt: 0)
        + implementations.map { (cells["\(row)|\($0.name)"] ?? "").padding(toLength: columnWidth, withPad: " ", startingAt: 0) }.joined())
}
say("")
for note in notes { say(note) }
