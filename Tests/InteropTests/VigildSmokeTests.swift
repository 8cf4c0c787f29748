import Foundation
import Testing
import VigilDaemon
import VigilLab

@Suite(.serialized) struct VigildSmokeTests {
    @Test func establishesWithTheFirstPeerAndCarriesTraffic() throws {
        let lab = try VigildLab()
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let up = try lab.waitForEvent(timeout: 10) { $0.kind == "dataplane-programmed" }
        #expect(up != nil, "no Child SA installed:\n\(lab.diagnostics)")
        let sas = try lab.lab.strongSwans[0]!.listSAs()
        #expect(sas.contains("state=INSTALLED"), "gateway 1 shows no Child SA: \(sas)")
        let ping = try lab.lab.host.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", FailoverLab.remoteServiceAddress])
        #expect(ping.succeeded, "ping through Vigil failed: \(ping.stdout)\n\(lab.diagnostics)")
    }
}

