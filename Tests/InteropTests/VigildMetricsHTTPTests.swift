#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import VigilDaemon
import VigilLab

/// Issue 15's metrics scrape during a failover: vigild serves `GET /metrics` on its WAN address, curl scrapes it in
/// vigild's namespace before and after the first gateway is SIGKILLed; the counters and the phase histograms move,
/// `/other` is a 404, and a client that connects and sends nothing does not hold up a concurrent scrape.
@Suite(.serialized) struct VigildMetricsHTTPTests {
    static let port = 9464
    static var url: String { "http://\(FailoverLab.vigilWANAddress):\(port)" }

    /// `curl` in vigild's namespace: the status code on the last line, the body before it.
    static func curl(_ lab: VigildLab, _ path: String) throws -> (status: Int, body: String, headers: String) {
        let headers = lab.directory.appendingPathComponent("headers-\(UUID().uuidString.prefix(6))").path
        let result = try lab.lab.vigil.run(["curl", "-sS", "--max-time", "3", "-D", headers, "-w", "\n%{http_code}", "\(url)\(path)"])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.last ?? "") ?? 0
        return (status, lines.dropLast().joined(separator: "\n"), (try? String(contentsOfFile: headers, encoding: .utf8)) ?? result.stderr)
    }

    /// The value of the sample `series` (family and labels exactly as written), if present.
    static func value(_ text: String, _ series: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.dropFirst(series.count + 1)) }
    }

    @Test func theScrapeShowsAFailover() throws {
        var settings = VigildLab.Settings()
        settings.extraGlobal = "  metrics: { listen: \(FailoverLab.vigilWANAddress):\(Self.port) }"
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let first = FailoverLab.gatewayAddress(0)
        let second = FailoverLab.gatewayAddress(1)
        try lab.requireTunnel(with: first)
        let entry = "map=\"LAB\",sequence=\"10\""
        let firstUp = "vigil_peer_up{\(entry),peer=\"\(first)\"}"
        let secondUp = "vigil_peer_up{\(entry),peer=\"\(second)\"}"

        // Before: the first peer is up (the snapshot is at most one interval old: poll for it).
        var before = try Self.curl(lab, "/metrics")
        let deadline = Date().addingTimeInterval(5)
        while Self.value(before.body, firstUp) != 1, Date() < deadline { before = try Self.curl(lab, "/metrics") }
        try #require(before.status == 200, "\(before)\n\(lab.diagnostics)")
        #expect(before.headers.lowercased().contains("content-type: text/plain; version=0.0.4"), "\(before.headers)")
        #expect(before.headers.lowercased().contains("connection: close"), "\(before.headers)")
        #expect(Self.value(before.body, firstUp) == 1, "\(before.body)")
        #expect(Self.value(before.body, secondUp) == 0, "\(before.body)")
        #expect(before.body.contains("# TYPE vigil_peer_up gauge"))
        #expect(before.body.components(separatedBy: "# TYPE vigil_peer_up ").count == 2, "TYPE once per family")
        #expect(Self.value(before.body, "vigil_failover_detection_seconds_count{\(entry)}") == nil)
        #expect(Self.value(before.body, "vigil_child_sas_installed{\(entry)}") == 1, "\(before.body)")
        let sentBefore = Self.value(before.body, "vigil_peer_probes_sent_total{\(entry),peer=\"\(first)\"}") ?? 0

        // Not served: another path.
        let other = try Self.curl(lab, "/other")
        #expect(other.status == 404, "\(other)")

        // A slow client: connected, sends nothing. A concurrent scrape is answered at once anyway.
        let silent = try lab.lab.vigil.runInside { () -> Int32 in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(Self.port).bigEndian
            address.sin_addr.s_addr = inet_addr(FailoverLab.vigilWANAddress)
            let status = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            return status == 0 ? fd : -1
        }
        try #require(silent >= 0, "the silent client could not connect")
        defer { close(silent) }
        let started = Date()
        let during = try Self.curl(lab, "/metrics")
        #expect(during.status == 200, "\(during)")
        #expect(Date().timeIntervalSince(started) < 2, "a silent client held up the scrape")

        // The failover.
        lab.lab.kill(0)
        try #require(try lab.waitForEvent(timeout: 15) { $0.kind == "dataplane-programmed" && $0.peer == second } != nil,
                     "no failover to the second peer:\n\(lab.diagnostics)")
        var after = try Self.curl(lab, "/metrics")
        let afterDeadline = Date().addingTimeInterval(5)
        while Self.value(after.body, "vigil_failover_dataplane_seconds_count{\(entry)}") == nil, Date() < afterDeadline {
            after = try Self.curl(lab, "/metrics")
        }
        try #require(after.status == 200, "\(after)")
        #expect(Self.value(after.body, firstUp) == 0, "\(after.body)")
        #expect(Self.value(after.body, secondUp) == 1, "\(after.body)")
        #expect(Self.value(after.body, "vigil_peer_active{\(entry),peer=\"\(second)\"}") == 1)
        #expect(Self.value(after.body, "vigil_failovers_total{\(entry),reason=\"dpd\"}") == 1, "\(after.body)")
        #expect(Self.value(after.body, "vigil_peer_dead_total{\(entry),peer=\"\(first)\",cause=\"dpd\"}") == 1)
        #expect((Self.value(after.body, "vigil_peer_probes_sent_total{\(entry),peer=\"\(first)\"}") ?? 0) >= sentBefore + 3)
        #expect((Self.value(after.body, "vigil_peer_probes_missed_total{\(entry),peer=\"\(first)\"}") ?? 0) >= 3)
        for phase in ["detection", "phase1", "phase2", "dataplane"] {
            let family = "vigil_failover_\(phase)_seconds"
            #expect(Self.value(after.body, "\(family)_count{\(entry)}") == 1, "\(family)\n\(after.body)")
            #expect(Self.value(after.body, "\(family)_bucket{\(entry),le=\"+Inf\"}") == 1, "\(family)")
            #expect(after.body.contains("# TYPE \(family) histogram"))
        }
        // Detection took interval + retries × retry = 1.6 s: in the 2.5 s bucket, not in the 1 s one.
        #expect(Self.value(after.body, "vigil_failover_detection_seconds_bucket{\(entry),le=\"1\"}") == 0)
        #expect(Self.value(after.body, "vigil_failover_detection_seconds_bucket{\(entry),le=\"2.5\"}") == 1)
        #expect((Self.value(after.body, "vigil_metrics_http_responses_total{code=\"404\"}") ?? 0) >= 1)
        // `vigil metrics` (the control API) renders the same families.
        let control = try #require(try lab.request(ControlRequest(command: .metrics)).metrics)
        #expect(Self.value(control, "vigil_failover_phase1_seconds_count{\(entry)}") == 1)
    }
}
