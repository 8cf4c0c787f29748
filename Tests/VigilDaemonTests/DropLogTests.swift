import Foundation
import Logging
import Testing
import VigilAddressing
import VigilConfig
@testable import VigilDaemon
import VigilKernel

/// Issue 13, bench-flood: a datagram the daemon drops before any engine sees it was logged straight to the logger,
/// one line per packet. It goes through the engines' rate limiter: a bounded number of lines per interval, a counter,
/// and the summary line.
@Suite struct DropLogTests {
    /// Keeps what was written, for counting.
    struct CapturingLogHandler: LogHandler {
        let lines: LockedLog
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { lines.append("\(event.level) \(event.message)") }
    }

    @Test func datagramsOfAVersionNotServedAreLoggedAtARateAndCounted() throws {
        let configuration = try ConfigurationLoader.load(
            yaml: FailClosedWiringTests.yaml, fileName: "/nonexistent/vigil.yaml",
            secrets: "pre-shared-keys:\n  198.51.100.2: \"a\"\n  203.0.113.2: \"b\"\n")
        let kernel = RecordingKernel()
        let lines = LockedLog()
        let daemon = Daemon(
            configuration: configuration, loop: EventLoop(),
            kernel: DaemonKernel(ipsec: kernel, routes: kernel, dataplaneDescription: "recorded",
                                 settings: configuration.global.kernel, tunnelDevice: nil),
            logger: Logger(label: "test") { _ in CapturingLogHandler(lines: lines) })
        daemon.register(FailClosedWiringTests.StubEngine())   // IKEv2 only

        // A flood of ISAKMP (IKEv1) headers from forged sources: no engine serves version 1 here.
        var datagram = [UInt8](repeating: 0, count: 28)
        datagram[17] = 0x10
        let flood = 10_000
        for index in 0..<flood {
            let from = Endpoint(IPAddress("203.0.113.\(index % 250 + 1)")!, 500)
            daemon.dispatch(datagram, from: from, to: Endpoint(FailClosedWiringTests.local, 500))
        }
        let dropped = lines.lines.filter { $0.contains("not served") }
        #expect(dropped.count == LogRateLimiter.Limits.burst)
        #expect(daemon.metrics.all["vigil_unsupported_ike_version_total"] == UInt64(flood))
    }
}
