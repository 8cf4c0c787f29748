import ArgumentParser
import Foundation
import Logging
import VigilConfig
import VigilDaemon

/// `vigild --config FILE [--check]`: validates the configuration, then runs the daemon until SIGTERM/SIGINT
/// (SIGHUP reloads the configuration; one with errors is refused and the running one kept).
@main
struct VigilDaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigild",
        abstract: "Vigil IPsec failover daemon.",
        version: VigilVersion.current
    )

    @Option(name: .long, help: "Path to the crypto-map configuration (YAML).")
    var config: String

    @Flag(name: .long, help: "Validate the configuration and exit.")
    var check = false

    @Option(name: .long, help: "Log level: debug, info, notice, warning, error.")
    var logLevel: String = "info"

    @Option(name: .long, help: "Log format: text (millisecond timestamps), journal (priority prefixes; the default under systemd), json.")
    var logFormat: String?

    @Option(name: .long, help: ArgumentHelp(
        "Where Child SAs go: configured (by `dataplane`), or recorded (tests on kernels without ESP: SAs are kept in "
            + "memory while policies and routes go to the kernel).", visibility: .hidden))
    var saKernel: String = DaemonRunner.SAKernelChoice.configured.rawValue

    func run() async throws {
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
        if check { return }
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown log level '\(logLevel)'; allowed: trace, debug, info, notice, warning, error, critical")
        }
        guard let choice = DaemonRunner.SAKernelChoice(rawValue: saKernel) else {
            throw ValidationError("unknown --sa-kernel '\(saKernel)'; allowed: \(DaemonRunner.SAKernelChoice.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let format: LogFormat
        if let logFormat {
            guard let chosen = LogFormat(rawValue: logFormat) else {
                throw ValidationError("unknown log format '\(logFormat)'; allowed: \(LogFormat.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            format = chosen
        } else {
            format = .automatic()
        }
        LoggingSystem.bootstrap { label in VigilLogHandler(label: label, format: format, level: level) }
        let logger = Logger(label: "vigild")
        do {
            try await DaemonRunner.run(configuration: configuration, options: .init(configPath: config, saKernel: choice), logger: logger)
        } catch {
            logger.critical("vigild cannot run: \(error)")
            throw ExitCode.failure
        }
    }
}
