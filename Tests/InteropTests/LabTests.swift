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
