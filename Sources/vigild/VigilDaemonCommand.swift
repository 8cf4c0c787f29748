import ArgumentParser
import VigilConfig

@main
struct VigilDaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigild",
        abstract: "Vigil IPsec failover daemon.",
        version: "0.1.0"
    )

    @Option(name: .long, help: "Path to the crypto-map configuration (YAML).")
    var config: String

    func run() throws {
        print("vigild: configuration \(config) (daemon not built yet)")
    }
}
