import Foundation
import Testing
import VigilAddressing
@testable import VigilDaemon

/// Tunnel monitoring wired into the daemon, in process (`InProcessLab`): the gateway's echo requests go to an
/// in-memory echo network that answers through whichever peer the gateway's outbound SAs point at, unless that peer's
/// forwarding is broken. The peers' IKE daemons keep answering DPD throughout, so only the monitor can see the break.
@Suite struct TunnelMonitorWiringTests {
    static let peer1 = InProcessLab.peerAddresses[0], peer2 = InProcessLab.peerAddresses[1]
    static let monitor = "monitor: { address: 10.2.0.10, source: 10.1.0.1, interval: 500ms, threshold: 3 }"

    /// Echo replies come back after `latency` when the peer the traffic goes through forwards.
    final class SimulatedEchoNetwork: EchoNetwork {
        let scheduler: VirtualScheduler
        let route: () -> String?
        var brokenForwarding: Set<String> = []
        var latency: Duration = .milliseconds(10)
        /// Every request sent: through which peer, with which identifier and sequence.
        private(set) var sent: [(peer: String?, identifier: UInt16, sequence: UInt16)] = []
        private(set) var opened: [IPAddress] = []

        init(scheduler: VirtualScheduler, route: @escaping () -> String?) {
            self.scheduler = scheduler
            self.route = route
        }

        func open(_ source: IPAddress, reply: @escaping (IPAddress, UInt16, UInt16) -> Void) throws -> any EchoEndpoint {
            opened.append(source)
            return SimulatedEndpoint(network: self, reply: reply)
        }

        final class SimulatedEndpoint: EchoEndpoint {
            let network: SimulatedEchoNetwork
            let reply: (IPAddress, UInt16, UInt16) -> Void
            init(network: SimulatedEchoNetwork, reply: @escaping (IPAddress, UInt16, UInt16) -> Void) {
                self.network = network
                self.reply = reply
            }

            func sendEchoRequest(to address: IPAddress, identifier: UInt16, sequence: UInt16) -> String? {
                let peer = network.route()
                network.sent.append((peer, identifier, sequence))
                guard let peer, !network.brokenForwarding.contains(peer) else { return nil }
                network.scheduler.schedule(at: network.scheduler.now + network.latency) { [reply] in
                    reply(address, identifier, sequence)
                    reply(address, identifier, sequence)        // a duplicate: ignored
                    reply(address, identifier &+ 1, sequence)   // another pinger's: ignored
                }
                return nil
            }

            func close() {}
        }
    }

    private func lab(seed: UInt64, ikeVersion: Int = 2, monitor: Bool = true) throws -> (InProcessLab, SimulatedEchoNetwork) {
        var settings = InProcessLab.Settings()
        settings.ikeVersion = ikeVersion
        settings.peers = 2
        if monitor { settings.entryExtra = [Self.monitor] }
        let lab = try InProcessLab(seed: seed, settings)
        let echo = SimulatedEchoNetwork(scheduler: lab.scheduler) { [unowned lab] in lab.outboundPeers.first }
        lab.gateway.daemon.echoNetwork = echo
        try lab.start()
        return (lab, echo)
    }

    @Test(arguments: [2, 1])
    func brokenForwardingIsDataPathDeadAndTheNextPeerIsMonitored(ikeVersion: Int) throws {
        let (lab, echo) = try lab(seed: 3, ikeVersion: ikeVersion)
        #expect(lab.run(within: .seconds(30)) { lab.firstEvent("dataplane-programmed", peer: Self.peer1) != nil })
        lab.run(for: .seconds(5))   // answered echo requests (and DPD): nothing declared
        #expect(lab.firstEvent("data-path-dead") == nil, "\(lab.narrative.joined(separator: "\n"))")
        #expect(lab.firstEvent("tunnel-monitor-started", peer: Self.peer1) != nil)
        #expect(lab.firstEvent("entry-loaded")?.detail.hasSuffix("; monitor echo 10.1.0.1 -> 10.2.0.10 every 500ms, dead after 3 unanswered") == true)
        #expect(echo.opened == [IPAddress("10.1.0.1")!])
        #expect(echo.sent.count >= 10 && echo.sent.allSatisfy { $0.peer == Self.peer1 })

        let brokenAt = lab.now
        echo.brokenForwarding = [Self.peer1]
        let moved = lab.run(within: .seconds(10)) { lab.firstEvent("dataplane-programmed", peer: Self.peer2) != nil }
        let story = lab.narrative.joined(separator: "\n")
        #expect(moved, "\(story)")
        let dead = try #require(lab.firstEvent("data-path-dead", peer: Self.peer1), "\(story)")
        #expect(dead.detail.hasPrefix("3 echo requests to 10.2.0.10 unanswered; last reply"), "\(dead.detail)")
        // The request in flight at the break was answered or not: three intervals, or a little more.
        let detection = dead.time - brokenAt.seconds
        #expect(detection >= 1.5 && detection <= 2.0, "data path dead \(detection) s after the break\n\(story)")
        #expect(lab.firstEvent("declared-dead") == nil, "DPD should not see the break\n\(story)")
        #expect(lab.activePeer == Self.peer2)
        #expect(lab.outboundPeers == [Self.peer2])

        // A new run with the new peer: another identifier, answered, no death.
        let started = try #require(lab.firstEvent("tunnel-monitor-started", peer: Self.peer2), "\(story)")
        #expect(started.time >= dead.time)
        lab.run(for: .seconds(5))
        #expect(lab.events.filter { $0.kind == "data-path-dead" }.count == 1, "\(lab.narrative.joined(separator: "\n"))")
        let throughSecond = echo.sent.filter { $0.peer == Self.peer2 }
        #expect(throughSecond.count >= 9)
        #expect(Set(throughSecond.map(\.identifier)).count == 1)
        #expect(!throughSecond.contains { $0.identifier == echo.sent.first?.identifier })
        let metrics = lab.gateway.daemon.metricsText()
        #expect(metrics.contains("vigil_failovers_total{map=\"LAB\",sequence=\"10\",reason=\"data-path-dead\"} 1"), "\(metrics)")
        #expect(metrics.contains("vigil_tunnel_monitor_data_path_dead_total{map=\"LAB\",sequence=\"10\",peer=\"\(Self.peer1)\"} 1"))
    }

    /// Down (cleared and held, and the peers' own attempts to bring it back up dropped): no echo requests. Up again
    /// (`vigil initiate`): a new run.
    @Test func monitoringStopsWhileTheEntryIsDownAndStartsAgainWithIt() throws {
        let (lab, echo) = try lab(seed: 5)
        #expect(lab.run(within: .seconds(30)) { lab.firstEvent("dataplane-programmed", peer: Self.peer1) != nil })
        lab.run(for: .seconds(2))
        let cleared = lab.gateway.daemon.handleControl(ControlRequest(command: .clear, map: "LAB", sequence: 10, hold: true))
        lab.gateway.daemon.drain()
        #expect(cleared.ok, "\(String(describing: cleared.error))")
        // The peers answer our DELETE by initiating again (their dead-peer action is restart): keep them out.
        let peers = Set(lab.peers.map(\.address))
        lab.drop = { peers.contains($0.from.address) }
        let sentAtClear = echo.sent.count
        lab.run(for: .seconds(5))
        let story = lab.narrative.joined(separator: "\n")
        #expect(sentAtClear >= 4)
        #expect(echo.sent.count == sentAtClear, "echo requests while the entry was down\n\(story)")

        #expect(lab.activePeer == nil, "\(story)")
        lab.drop = { _ in false }
        let initiatedAt = lab.now
        let initiated = lab.gateway.daemon.handleControl(ControlRequest(command: .initiate, map: "LAB", sequence: 10))
        lab.gateway.daemon.drain()
        #expect(initiated.ok, "\(String(describing: initiated.error))")
        #expect(lab.run(within: .seconds(10)) { lab.firstEvent("tunnel-monitor-started", after: initiatedAt) != nil }, "\(story)")
        lab.run(for: .seconds(3))
        #expect(echo.sent.count >= sentAtClear + 5)
        #expect(lab.firstEvent("data-path-dead") == nil)
    }

    @Test func withoutTheKeyNothingIsSent() throws {
        let (lab, echo) = try lab(seed: 6, monitor: false)
        #expect(lab.run(within: .seconds(30)) { lab.firstEvent("dataplane-programmed", peer: Self.peer1) != nil })
        echo.brokenForwarding = [Self.peer1]
        lab.run(for: .seconds(10))
        #expect(echo.opened.isEmpty && echo.sent.isEmpty)
        #expect(lab.activePeer == Self.peer1)
    }
}
