import ArgumentParser
import VigilConfig

/// `vigil`: the operator's command. Subcommands group by subject (`config`, `status`, `peers`, `clear`,
/// `initiate`, `failover`, `events`, `metrics`, `reload`, `show`).
@main
struct VigilCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigil",
        abstract: "Control and inspect Vigil, the IPsec failover controller.",
        version: VigilVersion.current,
        subcommands: [
            ConfigCommand.self, StatusCommand.self, PeersCommand.self, ClearCommand.self, InitiateCommand.self, FailoverCommand.self,
            EventsCommand.self, MetricsCommand.self, ReloadCommand.self, ShowCommand.self, ImportCommand.self,
        ]
    )
}

/// `vigil config ...`: work on configuration files without a running daemon.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check configuration files.",
        subcommands: [CheckCommand.self]
    )
}

/// `vigil config check FILE`: exit 0 and a normalized summary, or exit 1 and every error.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Load and validate a configuration and its secrets file; print a normalized summary or every error."
    )

    @Argument(help: "The crypto-map configuration (YAML).")
    var file: String

    func run() throws {
        do {
            let configuration = try ConfigurationLoader.load(path: file)
            print(configuration.normalizedSummary, terminator: "")
        } catch {
            StandardError.write(error.description + "\n")
            StandardError.write("\(file): \(error.errors.count) error\(error.errors.count == 1 ? "" : "s")\n")
            throw ExitCode.failure
        }
    }
}
