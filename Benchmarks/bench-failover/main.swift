// bench-failover: kills gateway 1 of 3 while a host pings the remote service every 10 ms, N times per IKE version,
// and prints the medians. One column per implementation; strongSwan 5.9.8 is the baseline (vigild joins later).
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

/// A measured value per run; nil when the step was not reached within the bound.
struct Series {
    var values: [Double?] = []

    /// Median of the reached values, or "not reached" / "> bound" when some runs never got there.
    func median(unit: String, scale: Double, bound: Double) -> String {
        let reached = values.compactMap { $0 }.sorted()
        let missing = values.count - reached.count
        if reached.isEmpty { return String(format: "> %.0f s (%d/%d not reached)", bound, missing, values.count) }
        let middle = reached.count / 2
        let median = reached.count % 2 == 1 ? reached[middle] : (reached[middle - 1] + reached[middle]) / 2
        let text = String(format: "%.1f %@", median * scale, unit)
        return missing == 0 ? text : text + " (\(missing)/\(values.count) not reached)"
    }
}

/// Unbuffered, so progress lines appear as runs finish also when stdout is a file.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

func seconds(_ duration: Duration) -> Double {
    let (whole, attoseconds) = duration.components
    return Double(whole) + Double(attoseconds) / 1e18
}

let options = Options(CommandLine.arguments)
var rows: [(String, String)] = []
for version in options.versions {
    var probe = Series(), dead = Series(), childSA = Series(), blackout = Series(), negotiation = Series()
    var recoveredVia: [String] = []
    var initiations: [String] = []
    var controls: [String] = []
    for run in 1...options.runs {
        var configuration = StrongSwanBaseline.Configuration(ikeVersion: version)
        configuration.recoveryBound = .seconds(options.boundSeconds)
        // A lab that fails to come up (or loses a namespace mid-run) is retried, never counted.
        var outcome: StrongSwanBaseline.Result?
        for attempt in 1...3 where outcome == nil {
            do {
                outcome = try StrongSwanBaseline.run(configuration)
            } catch {
                FileHandle.standardError.write(Data("IKEv\(version) run \(run) attempt \(attempt) discarded: \(error)\n".utf8))
            }
        }
        guard let result = outcome else { exit(1) }
        probe.values.append(result.timeline.time(of: .firstProbe).map { $0.timeIntervalSince(result.killedAt) })
        dead.values.append(result.timeToDeclaredDead.map(seconds))
        negotiation.values.append(seconds(result.initialNegotiation))
        childSA.values.append(result.timeToChildSAWithNextGateway.map(seconds))
        blackout.values.append(result.blackout.flatMap { $0.recovered ? seconds($0.duration) : nil })
        recoveredVia.append(result.recoveredVia ?? "none")
        controls.append(result.nextGatewayWorks ? "up" : "FAILED")
        let toDead = result.initiations.filter { $0 == FailoverLab.gatewayAddress(0) }.count
        initiations.append("\(toDead)/\(result.initiations.count)")
        say("IKEv\(version) run \(run): \(result.report.split(separator: "\n").dropFirst().filter { $0.hasPrefix("declared") || $0.hasPrefix("Child") || $0.hasPrefix("blackout") || $0.hasPrefix("initiations") }.joined(separator: "; "))")
        if options.verbose { say(result.report + "\n" + result.logAfterKill + "\n") }
    }
    let bound = Double(options.boundSeconds)
    rows.append(("IKEv\(version) first probe after kill", probe.median(unit: "ms", scale: 1000, bound: bound)))
    rows.append(("IKEv\(version) declared dead after kill", dead.median(unit: "ms", scale: 1000, bound: bound)))
    rows.append(("IKEv\(version) Child SA with next gateway", childSA.median(unit: "ms", scale: 1000, bound: bound)))
    rows.append(("IKEv\(version) ping blackout", blackout.median(unit: "ms", scale: 1000, bound: bound)))
    rows.append(("IKEv\(version) recovered via", recoveredVia.joined(separator: ",")))
    rows.append(("IKEv\(version) Phase 1+2 with a live gateway", negotiation.median(unit: "ms", scale: 1000, bound: bound)))
    rows.append(("IKEv\(version) initiations to dead gw1", initiations.joined(separator: ",")))
    rows.append(("IKEv\(version) control: only gw2 configured", controls.joined(separator: ",")))
}

say("")
say("failover after SIGKILL of gateway 1 of 3; host pings 10.2.0.1 every 10 ms; DPD periodic 1 s, retry 200 ms x 3")
say("(strongSwan: dpd_delay 1s, retransmit_timeout 0.2 base 1.0 tries 3, IKEv1 dpd_timeout 2s; keyingtries 0)")
say("median of \(options.runs) run(s), bound \(options.boundSeconds) s")
let width = max(40, (rows.map(\.0.count).max() ?? 0) + 2)
say("metric".padding(toLength: width, withPad: " ", startingAt: 0) + "strongSwan 5.9.8")
for (name, value) in rows {
    say(name.padding(toLength: width, withPad: " ", startingAt: 0) + value)
}
