import ArgumentParser
import VigilConfig

import Foundation

/// `vigild --config FILE [--check]`. For now it loads and validates the configuration only; the event loop
/// (VigilDaemon) is started here once it exists.
@main
struct VigilDaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigild",
        abstract: "Vigil IPsec failover daemon.",
        version: VigilVersion.current
    )

    @Option(name: .long, help: "Path to the crypto-map configuration (YAML).")
    var config: String

    @Flag(name: .long, help: "Validate the configuration and exit.")
    var check = false

    func run() throws {
        let configuration: VigilConfiguration
        do {
            configuration = try ConfigurationLoader.load(path: config)
        } catch {
            let summary = "vigild: \(config): \(error.errors.count) configuration error\(error.errors.count == 1 ? "" : "s"); not starting"
            FileHandle.standardError.write(Data((error.description + "\n" + summary + "\n").utf8))
            throw ExitCode.failure
        }
        let entries = configuration.cryptoMaps.reduce(0) { $0 + $1.entries.count }
        print("vigild: \(config): configuration valid (\(configuration.cryptoMaps.count) crypto maps, \(entries) entries)")
        if !check {
            print("vigild: the daemon event loop is not built yet; exiting after validation")
        }
    }
}
