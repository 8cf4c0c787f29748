import Foundation
import Testing
import VigilDaemon
import VigilLab

/// vigild as responder: a listed peer that initiates becomes the entry's active peer; a peer it has no
/// configuration for is refused and logged.
@Suite(.serialized) struct VigildResponderTests {
    @Test(arguments: [2, 1])
    func aListedPeerInitiatesAndAStrangerIsRefused(ikeVersion: Int) throws {
        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        settings.start = false
        settings.listedPeers = 2
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let second = FailoverLab.gatewayAddress(1)

        // strongSwan on the second listed gateway initiates; Vigil answers and installs the tunnel.
        let initiated = try lab.lab.strongSwans[1]!.initiate(child: "site")
        #expect(initiated.succeeded, "strongSwan could not initiate to vigild: \(initiated.stdout.suffix(1500))\n\(lab.diagnostics)")
        let up = try lab.waitForEvent(timeout: 5) { $0.kind == "dataplane-programmed" && $0.peer == second }
        #expect(up != nil, "\(lab.diagnostics)")
        let status = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first)
        #expect(status.activePeer == second)
        #expect(status.ikeSAs.first?.id.isEmpty == false)
        let ping = try lab.lab.host.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", FailoverLab.remoteServiceAddress])
        #expect(ping.succeeded, "no traffic through the peer that initiated")

        // The third gateway is not in vigild's configuration: refused, and the log says why.
        let stranger = try lab.lab.strongSwans[2]!.initiate(child: "site", timeoutSeconds: 4)
        #expect(!stranger.succeeded, "an unlisted peer got an SA")
        #expect(!(try lab.lab.strongSwans[2]!.listSAs().contains("state=ESTABLISHED")))
        let stranger3 = FailoverLab.gatewayAddress(2)
        #expect(lab.vigild.waitForLog(timeout: 3) { $0.contains(stranger3) && ($0.lowercased().contains("unknown") || $0.contains("no connection")) },
                "vigild did not log the refused peer:\n\(lab.diagnostics)")
        let after = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first)
        #expect(after.activePeer == second, "the stranger displaced the active peer")
    }
}
