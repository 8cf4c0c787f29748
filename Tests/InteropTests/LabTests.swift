import Foundation
import Testing
import VigilLab

/// The lab itself: two strongSwan gateways in namespaces negotiate IKEv2 with PSK over a veth link, proving that the
/// namespace, charon and swanctl plumbing every interop test relies on works on this machine.
@Suite struct LabTests {
    static func swanctl(local: String, remote: String, localID: String, remoteID: String, initiator: Bool) -> String {
        """
        connections {
            lab {
                version = 2
                local_addrs = \(local)
                remote_addrs = \(remote)
                proposals = aes256-sha256-modp2048
                local { auth = psk
                        id = \(localID) }
                remote { auth = psk
                         id = \(remoteID) }
                children {
                    net {
                        local_ts = \(initiator ? "10.1.0.0/24" : "10.2.0.0/24")
                        remote_ts = \(initiator ? "10.2.0.0/24" : "10.1.0.0/24")
                        esp_proposals = aes256-sha256
                    }
                }
            }
        }
        secrets {
            ike-lab { secret = "lab-secret-123"
                      id-a = \(localID)
                      id-b = \(remoteID) }
        }
        """
    }

    @Test func twoStrongSwansNegotiateInNamespaces() throws {
        let west = try NetworkNamespace(prefix: "labw")
        defer { west.destroy() }
        let east = try NetworkNamespace(prefix: "labe")
        defer { east.destroy() }
        try NetworkNamespace.link(west, "w0", "192.0.2.1/24", east, "e0", "192.0.2.2/24")
        // Each gateway owns an address in its protected subnet (charon's route install needs a source there).
        try west.ip("addr", "add", "10.1.0.1/24", "dev", "lo")
        try east.ip("addr", "add", "10.2.0.1/24", "dev", "lo")

        let a = try StrongSwan(namespace: west, name: "west")
        defer { a.stop(); a.removeFiles() }
        let b = try StrongSwan(namespace: east, name: "east")
        defer { b.stop(); b.removeFiles() }
        try a.start(swanctlConf: Self.swanctl(local: "192.0.2.1", remote: "192.0.2.2", localID: "west", remoteID: "east", initiator: true))
        try b.start(swanctlConf: Self.swanctl(local: "192.0.2.2", remote: "192.0.2.1", localID: "east", remoteID: "west", initiator: false))

        let result = try a.initiate(child: "net")
        #expect(result.succeeded, "initiate failed: \(result.stderr)\nresponder log:\n\(b.log)")
        let sas = try b.listSAs()
        #expect(sas.contains("state=ESTABLISHED"), "responder shows no IKE SA: \(sas)")
        #expect(sas.contains("state=INSTALLED"), "responder shows no Child SA: \(sas)")
        // Traffic flows through both charons' userspace ESP (kernel-libipsec over ipsec0).
        let ping = try west.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "10.1.0.1", "10.2.0.1"])
        #expect(ping.succeeded, "ping through the tunnel failed: \(ping.stdout)\(ping.stderr)")
    }
}

/// The failover lab's plumbing, driven by a strongSwan on the local gateway (the baseline Vigil is compared with).
@Suite struct FailoverLabTests {
    static func localGatewayConfig(peers: [String]) -> String {
        """
        connections {
            site {
                version = 2
                local_addrs = \(FailoverLab.vigilWANAddress)
                remote_addrs = \(peers.joined(separator: ","))
                proposals = aes256-sha256-modp2048
                encap = yes
                local { auth = psk
                        id = \(FailoverLab.vigilWANAddress) }
                remote { auth = psk }
                children {
                    site {
                        local_ts = \(FailoverLab.localSubnet)
                        remote_ts = \(FailoverLab.remoteSubnet)
                        esp_proposals = aes256-sha256
                    }
                }
            }
        }
        secrets {
            ike-any { secret = "lab-secret-123" }
        }
        """
    }

    @Test func hostReachesTheRemoteServiceThroughTheFirstGateway() throws {
        let lab = try FailoverLab(gatewayCount: 2)
        defer { lab.destroy() }
        for index in 0..<2 {
            try lab.startStrongSwan(index, swanctlConf: FailoverLab.remoteGatewayConfig(
                index: index, ikeVersion: 2, ikeProposal: "aes256-sha256-modp2048", espProposal: "aes256-sha256",
                psk: "lab-secret-123"))
        }
        let local = try StrongSwan(namespace: lab.vigil, name: "local")
        defer { local.stop(); local.removeFiles() }
        try local.start(swanctlConf: Self.localGatewayConfig(peers: [FailoverLab.gatewayAddress(0), FailoverLab.gatewayAddress(1)]))
        let result = try local.initiate(child: "site")
        #expect(result.succeeded, "\(result.stderr)\(result.stdout)")
        let ping = try lab.host.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", FailoverLab.remoteServiceAddress])
        #expect(ping.succeeded, "ping from the host through the tunnel failed: \(ping.stdout)")
        #expect(try lab.strongSwans[0]!.listSAs().contains("state=INSTALLED"))
        #expect(!(try lab.strongSwans[1]!.listSAs().contains("state=INSTALLED")))

        // Cutting gateway 1's link stops the traffic (nothing else carries it).
        try lab.cutLink(0)
        let cut = try lab.host.run(["ping", "-c", "2", "-i", "0.2", "-W", "1", FailoverLab.remoteServiceAddress])
        #expect(!cut.succeeded)
        try lab.restoreLink(0)
        let restored = try lab.host.run(["ping", "-c", "2", "-i", "0.2", "-W", "1", FailoverLab.remoteServiceAddress])
        #expect(restored.succeeded)
    }
}
