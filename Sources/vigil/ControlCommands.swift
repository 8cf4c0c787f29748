import ArgumentParser
import Foundation
import VigilControl

/// Options every command that talks to a running vigild shares.
struct DaemonOptions: ParsableArguments {
    @Option(name: .long, help: "vigild's control socket.")
    var socket: String = "/run/vigil/vigil.sock"

    @Flag(name: .long, help: "Print JSON instead of text (every command; the schema is in the README).")
    var json = false

    /// Sends one request; prints an error with its stable code (with --json also as `{"ok": false, "error": ...}` on
    /// standard output) and exits 1 when the daemon refuses, 3 when it cannot be reached.
    func send(_ request: ControlRequest) throws -> ControlResponse {
        let response: ControlResponse
        do {
            response = try ControlClient(path: socket).send(request)
        } catch let error as ControlError {
            fail(error)
            throw ExitCode(3)
        }
        if let error = response.error {
            // A refused reload: every error first, one per line, as `vigil config check` prints them.
            for line in response.reload?.errors ?? [] { StandardError.write(line + "\n") }
            fail(error, response: response)
            throw ExitCode.failure
        }
        return response
    }

    /// With --json the daemon's whole answer is printed (its `error`, and a refused reload's `reload` report).
    private func fail(_ error: ControlError, response: ControlResponse? = nil) {
        StandardError.write("vigil: \(error.code.rawValue): \(error.message)\n")
        if json { printJSON(response ?? ControlResponse.failure(error)) }
    }

    /// Sends a request that only answers with a message, and prints it (with --json: `{"ok": true, "message": ...}`).
    func perform(_ request: ControlRequest) throws {
        let response = try send(request)
        if json { return printJSON(ControlResponse.success(message: response.message ?? "ok")) }
        print(response.message ?? "ok")
    }

    func printJSON<T: Encodable>(_ value: T, lines: Bool = false) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = lines ? [.sortedKeys, .withoutEscapingSlashes] : [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        if let data = try? encoder.encode(value) { print(String(decoding: data, as: UTF8.self)) }
    }
}

/// `vigil status`: every crypto-map entry, its ordered peers, the active one and its SAs.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show crypto maps, peers and SAs.")
    @OptionGroup var daemon: DaemonOptions

    func run() throws {
        let response = try daemon.send(ControlRequest(command: .status))
        guard let status = response.status else { return }
        if daemon.json { return daemon.printJSON(status) }
        print(String(format: "uptime %.1fs, data plane %@", status.uptime, status.dataplane))
        for entry in status.entries {
            print("crypto map \(entry.map) \(entry.sequence) (IKE\(entry.ikeVersion)): \(entry.state)")
            for (index, peer) in entry.peers.enumerated() {
                let marks = [peer == entry.activePeer ? "active" : nil, peer == entry.preferredPeer ? "default" : nil]
                    .compactMap { $0 }
                print("  \(index + 1). \(peer)\(marks.isEmpty ? "" : " [\(marks.joined(separator: ", "))]")")
            }
            print("  dpd: \(entry.dpd)")
            for sa in entry.ikeSAs {
                print("  IKE SA \(sa.id) with \(sa.peer): \(sa.state), SPIs \(sa.localSPI)/\(sa.remoteSPI), \(sa.algorithms)")
                if let rekeyIn = sa.rekeyIn { print("    IKE SA rekey in \(StatusReport.spokenDuration(seconds: rekeyIn))") }
            }
            for child in entry.childSAs {
                print("  Child SA with \(child.peer): in \(child.inboundSPI) out \(child.outboundSPI), \(child.algorithms), "
                    + "\(child.localTS.joined(separator: ",")) === \(child.remoteTS.joined(separator: ","))"
                    + (child.encapsulated ? ", UDP-encapsulated" : ""))
                if let bytesIn = child.bytesIn, let packetsIn = child.packetsIn, let bytesOut = child.bytesOut, let packetsOut = child.packetsOut {
                    print("    \(bytesIn) bytes / \(packetsIn) packets in, \(bytesOut) bytes / \(packetsOut) packets out")
                }
                if let age = child.age, let expiresIn = child.expiresIn {
                    print(String(format: "    established %.0f s ago, lifetime ends in %.0f s", age, expiresIn)
                        + (child.rekeyIn.map { ", rekey in \(StatusReport.spokenDuration(seconds: $0))" } ?? ""))
                }
                if let error = child.inboundError { print("    ERROR: \(error)") }
            }
        }
    }
}

/// `vigil peers set MAP SEQ PEER...`: replace an entry's ordered peer list atomically.
struct PeersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peers", abstract: "Change an entry's peer list at run time.", subcommands: [SetPeers.self])

    struct SetPeers: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Replace the ordered peer list; SAs with a peer that stays listed stay up.")
        @OptionGroup var daemon: DaemonOptions
        @Argument(help: "Crypto map name.") var map: String
        @Argument(help: "Entry sequence number.") var sequence: Int
        @Argument(help: "The new peer list, in order (addresses or host names).") var peers: [String]
        @Option(name: .long, help: "The preferred (default) peer; must be the first listed.") var preferred: String?

        func run() throws {
            try daemon.perform(ControlRequest(command: .setPeers, map: map, sequence: sequence, peers: peers, preferred: preferred))
        }
    }
}

/// `vigil clear [MAP [SEQ]]`: delete SAs (Cisco `clear crypto session`).
struct ClearCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clear",
        abstract: "Clear the SAs of an entry, a map, or everything; they renegotiate as configured.",
        discussion: "As Cisco's `clear crypto session`: the SAs are deleted with the peer and the entry renegotiates "
            + "from its first usable peer (at once when it starts by itself, on traffic otherwise). With --hold the "
            + "entries stay down, traffic blocked, until `vigil initiate`.")
    @OptionGroup var daemon: DaemonOptions
    @Argument(help: "Crypto map name (all maps if omitted).") var map: String?
    @Argument(help: "Entry sequence number (all entries of the map if omitted).") var sequence: Int?
    @Flag(name: .long, help: "Keep the entries down until `vigil initiate`.") var hold = false

    func run() throws {
        try daemon.perform(ControlRequest(command: .clear, map: map, sequence: sequence, hold: hold ? true : nil))
    }
}

/// `vigil initiate MAP SEQ` (swanctl --initiate): bring an idle entry up now, from its first usable peer.
struct InitiateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "initiate", abstract: "Bring an idle entry up now.")
    @OptionGroup var daemon: DaemonOptions
    @OptionGroup var entry: EntryArguments

    func run() throws {
        try daemon.perform(ControlRequest(command: .initiate, map: entry.map, sequence: entry.sequence))
    }
}

/// MAP SEQ: the crypto-map entry a command addresses.
struct EntryArguments: ParsableArguments {
    @Argument(help: "Crypto map name.") var map: String
    @Argument(help: "Entry sequence number.") var sequence: Int
}

/// `vigil failover MAP SEQ [--to PEER]`: leave the active peer for the next listed (or a named) peer.
struct FailoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "failover", abstract: "Force a failover now.")
    @OptionGroup var daemon: DaemonOptions
    @OptionGroup var entry: EntryArguments
    @Option(name: .long, help: "Move to this listed peer instead of the next one.") var to: String?

    func run() throws {
        try daemon.perform(ControlRequest(command: .failover, map: entry.map, sequence: entry.sequence, to: to))
    }
}

/// `vigil events [--follow]`: recent events, or a live stream of JSON lines; with --json the recent ones are JSON
/// lines too (one object per line, as --follow streams them).
struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "Show recent events; --follow streams them.")
    @OptionGroup var daemon: DaemonOptions
    @Flag(name: .long, help: "Keep streaming new events (one JSON object per line).") var follow = false

    func run() throws {
        if follow {
            let client: ControlClient
            do {
                client = try ControlClient(path: daemon.socket)
            } catch let error as ControlError {
                StandardError.write("vigil: \(error.code.rawValue): \(error.message)\n")
                throw ExitCode(3)
            }
            _ = try client.send(ControlRequest(command: .events, follow: true))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            while let event = try client.nextEvent() {
                // Unbuffered, so a script reading the pipe sees each event as it happens.
                FileHandle.standardOutput.write(try encoder.encode(event) + Data([0x0A]))
            }
            return
        }
        let response = try daemon.send(ControlRequest(command: .events))
        for event in response.events ?? [] {
            if daemon.json {
                daemon.printJSON(event, lines: true)
            } else {
                let subject = [event.map.map { "\($0)" }, event.sequence.map { "\($0)" }, event.peer].compactMap { $0 }
                print(String(format: "%10.3f  %@  %-22@ %@  %@", event.time, event.wallClock, event.kind,
                             subject.joined(separator: " "), event.detail))
            }
        }
    }
}

/// `vigil metrics`: counters in the Prometheus text format.
struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "metrics", abstract: "Print metrics (Prometheus text format).")
    @OptionGroup var daemon: DaemonOptions

    func run() throws {
        let response = try daemon.send(ControlRequest(command: .metrics))
        let text = response.metrics ?? ""
        if daemon.json { return daemon.printJSON(MetricSample.parse(text)) }
        print(text, terminator: "")
    }
}

/// One sample of the Prometheus text format, for `vigil metrics --json`: `[{"name", "labels", "value"}]`.
struct MetricSample: Encodable, Equatable {
    var name: String
    var labels: [String: String]
    var value: Double

    /// The samples of `text` (comment lines skipped). Label values are Vigil's own (no escaped quotes in them).
    static func parse(_ text: String) -> [MetricSample] {
        text.split(separator: "\n").compactMap { line -> MetricSample? in
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { return nil }
            let series = line[..<space]
            guard let open = series.firstIndex(of: "{"), series.hasSuffix("}") else {
                return MetricSample(name: String(series), labels: [:], value: value)
            }
            var labels: [String: String] = [:]
            for pair in series[series.index(after: open)..<series.index(before: series.endIndex)].split(separator: ",") {
                guard let equals = pair.firstIndex(of: "=") else { continue }
                labels[String(pair[..<equals])] = String(pair[pair.index(after: equals)...]).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
            return MetricSample(name: String(series[..<open]), labels: labels, value: value)
        }
    }
}

/// `vigil reload`: vigild loads its configuration file again (as SIGHUP) and says which entries it added, removed
/// and replaced, what else it applied, what it kept, what needs a restart; with errors it prints every one, changes
/// nothing, and exits 1 (`reload-refused`).
struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload", abstract: "Reload vigild's configuration file; errors are printed and nothing changes.")
    @OptionGroup var daemon: DaemonOptions

    func run() throws {
        let response = try daemon.send(ControlRequest(command: .reload))
        guard let report = response.reload else { return print(response.message ?? "reloaded") }
        if daemon.json { return daemon.printJSON(report) }
        print("reloaded \(report.path)")
        for added in report.added { print("  added: \(added)") }
        for removed in report.removed { print("  removed: \(removed)") }
        for replaced in report.replaced { print("  replaced: \(replaced)") }
        print("  applied: \(report.applied.isEmpty ? "nothing" : report.applied.joined(separator: ", "))")
        for kept in report.kept { print("  kept: \(kept)") }
        for restart in report.needsRestart { print("  needs a restart: \(restart)") }
    }
}

/// `vigil show ...`: Cisco's `show crypto ...` views.
struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show the running configuration.", subcommands: [Maps.self])

    /// `vigil show maps [MAP]` (Cisco `show crypto map`): each entry's settings and ordered peers with their health.
    struct Maps: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "maps",
            abstract: "Show crypto-map entries: settings, ordered peers (active, last answer, probes missed, failovers), backoff.")
        @OptionGroup var daemon: DaemonOptions
        @Argument(help: "Crypto map name (all maps if omitted).") var map: String?

        func run() throws {
            let response = try daemon.send(ControlRequest(command: .maps, map: map))
            guard let maps = response.maps else { return }
            if daemon.json { return daemon.printJSON(maps) }
            print(maps.text, terminator: "")
        }
    }
}
