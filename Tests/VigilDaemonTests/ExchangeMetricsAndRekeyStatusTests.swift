import Foundation
import Testing
import VigilAddressing
import VigilControl
@testable import VigilDaemon

/// The engines' exchange outcomes as vigild exports them (`vigil_ike_exchanges_total`, scraped over HTTP), and the
/// IKE SA rekey deadline in the status report, with the real engines of a gateway and a vigild peer in process.
@Suite struct ExchangeMetricsAndRekeyStatusTests {
    static func establishedLab(ikeVersion: Int) throws -> InProcessLab {
        var settings = InProcessLab.Settings()
        settings.ikeVersion = ikeVersion
        settings.peers = 1
        // No DPD: the liveness exchanges would make the counts depend on how long the run took.
        settings.dpd = "{ mode: off }"
        let lab = try InProcessLab(seed: 3, settings)
        try lab.start()
        // IKEv1's responder completes Quick Mode on QM3, a one-way trip after the initiator.
        let up = lab.run(within: .seconds(60)) {
            lab.firstEvent("dataplane-programmed") != nil && lab.childSAs(of: lab.peers[0]) == 1
        }
        try #require(up, "\(lab.narrative.joined(separator: "\n"))")
        return lab
    }

    @Test(arguments: [(2, ["IKE_SA_INIT", "IKE_AUTH"]), (1, ["main-mode", "quick-mode"])])
    func anEstablishmentIsScrapedByExchangeRoleAndResult(ikeVersion: Int, exchanges: [String]) throws {
        let lab = try Self.establishedLab(ikeVersion: ikeVersion)
        let server = try MetricsHTTPServer(listen: Endpoint(IPAddress("127.0.0.1")!, 0))
        defer { server.stop() }
        server.publish(lab.gateway.daemon.metricsText())
        server.start()
        let scraped = try MetricsHTTPServerTests.scrape(server)
        #expect(scraped.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(scraped)")
        #expect(scraped.contains("# HELP vigil_ike_exchanges_total IKE exchanges that ended, by exchange type, our role and result (ok, failed, timeout)\n"))
        #expect(scraped.contains("# TYPE vigil_ike_exchanges_total counter\n"))
        let gatewaySeries = scraped.split(separator: "\n").filter { $0.hasPrefix("vigil_ike_exchanges_total{") }
        #expect(gatewaySeries.sorted() == exchanges.sorted().map { "vigil_ike_exchanges_total{version=\"v\(ikeVersion)\",exchange=\"\($0)\",role=\"initiator\",result=\"ok\"} 1" },
                "\(scraped)")
        // The peer answered the same exchanges.
        let peerText = lab.peers[0].daemon.metricsText()
        let peerSeries = peerText.split(separator: "\n").filter { $0.hasPrefix("vigil_ike_exchanges_total{") }
        #expect(peerSeries.sorted() == exchanges.sorted().map { "vigil_ike_exchanges_total{version=\"v\(ikeVersion)\",exchange=\"\($0)\",role=\"responder\",result=\"ok\"} 1" },
                "\(peerText)")
    }

    @Test(arguments: [2, 1])
    func theStatusReportCarriesTheIKESAAndChildSARekeyDeadlines(ikeVersion: Int) throws {
        let lab = try Self.establishedLab(ikeVersion: ikeVersion)
        let daemon = lab.gateway.daemon
        let session = try #require(daemon.engines.values.flatMap(\.sessions).first)
        let rekeyAt = try #require(session.rekeyAt, "the engine exposes the scheduled rekey")
        let lifetime = try #require(daemon.entries["LAB/10"]).entry.ikeLifetime
        #expect(rekeyAt > daemon.loop.now && rekeyAt <= daemon.loop.now + lifetime)

        // --json: entries[].ikeSAs[].rekeyIn, seconds from now to the engine's rekey timer.
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(daemon.status())) as? [String: Any]
        let entries = try #require(json?["entries"] as? [[String: Any]])
        let ikeSAs = try #require(entries.first?["ikeSAs"] as? [[String: Any]])
        let rekeyIn = try #require(ikeSAs.first?["rekeyIn"] as? Double, "\(ikeSAs)")
        #expect(abs(rekeyIn - (rekeyAt - daemon.loop.now).seconds) < 0.001)

        // The Child SA's rekey, as the engine scheduled it (the gateway initiated it, so it rekeys it).
        let engine = try #require(daemon.engines[ikeVersion == 2 ? .v2 : .v1])
        let childRekeyAt = try #require(engine.childRekeyAt.values.first)
        let childSAs = try #require(entries.first?["childSAs"] as? [[String: Any]])
        let childRekeyIn = try #require(childSAs.first?["rekeyIn"] as? Double, "\(childSAs)")
        #expect(abs(childRekeyIn - (childRekeyAt - daemon.loop.now).seconds) < 0.001)
        let childExpiresIn = try #require(childSAs.first?["expiresIn"] as? Double)
        #expect(childRekeyIn <= childExpiresIn)

        // A minute on, the same deadline is a minute nearer.
        lab.run(for: .seconds(60))
        let later = try #require(daemon.status().entries.first?.ikeSAs.first?.rekeyIn)
        #expect(abs(later - (rekeyIn - 60)) < 0.001)
    }

    @Test func vigilStatusSaysTheTimeLeftInHoursAndMinutes() {
        #expect(StatusReport.spokenDuration(seconds: 2 * 3600 + 51 * 60 + 59.9) == "2h 51m")
        #expect(StatusReport.spokenDuration(seconds: 250) == "4m 10s")
        #expect(StatusReport.spokenDuration(seconds: 9.7) == "9s")
        #expect(StatusReport.spokenDuration(seconds: -1) == "0s")
    }
}
