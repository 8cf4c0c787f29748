import Foundation
import Testing
import VigilAddressing
import VigilConfig
@testable import VigilDaemon
import VigilIKEv1

/// The IKEv1 driver hands the engine's NAT move to the daemon as a planned peer move, as the IKEv2 driver does.
@Suite struct IKEv1DriverWiringTests {
    /// The fail-closed lab's document with its entry made IKEv1.
    static let yaml = FailClosedWiringTests.yaml
        .replacingOccurrences(of: "ike-version: v2", with: "ike-version: v1")
        .replacingOccurrences(of: "aes256-sha256-x25519", with: "aes256-sha256-modp2048")

    @Test func natMoveBecomesPeerMoved() throws {
        let configuration = try ConfigurationLoader.load(
            yaml: Self.yaml, fileName: "/nonexistent/vigil.yaml", secrets: "pre-shared-keys:\n  198.51.100.2: \"a\"\n  203.0.113.2: \"b\"\n")
        let driver = IKEv1Driver(configuration: configuration, loop: EventLoop(), forceEncapsulation: false)
        var outputs: [EngineOutput] = []
        driver.output = { outputs.append($0) }
        let old = Endpoint(IPAddress("198.51.100.2")!, 4500)
        let new = Endpoint(IPAddress("198.51.100.20")!, 31_000)
        driver.perform(.peerAddressChanged(IKEv1SAID(0x1234), old: old, new: new))
        #expect(outputs.count == 1)
        guard case .peerMoved(let session, let from, let to)? = outputs.first else {
            Issue.record("expected .peerMoved, got \(outputs)")
            return
        }
        #expect(session == SessionKey(version: .v1, spi: 0x1234))
        #expect(from == old && to == new)
    }
}
