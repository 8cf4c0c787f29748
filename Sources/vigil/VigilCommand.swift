import ArgumentParser
import VigilConfig

@main
struct VigilCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigil",
        abstract: "Control and inspect Vigil, the IPsec failover controller.",
        version: "0.1.0"
    )
}
