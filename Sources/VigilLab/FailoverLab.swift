import Foundation

/// The failover lab: a host behind a Vigil gateway, and N strongSwan gateways that all protect the same remote
/// subnet (each holds the remote service address 10.2.0.1 on its loopback, like replicas of one site).
///
/// ```
///  host (10.1.0.100) --lan-- vigil gw (10.1.0.1 | 192.0.2.1) --wan bridge-- gw1 192.0.2.11, gw2 .12, gw3 .13
///                                                                           each with 10.2.0.1/24 on lo
/// ```
/// The WAN is a bridge in its own namespace, so a gateway's link can be cut there with nftables while its charon
/// keeps running. Everything is removed by `destroy()`.
public final class FailoverLab: @unchecked Sendable {
    public let host: NetworkNamespace
    public let vigil: NetworkNamespace
    public let wan: NetworkNamespace
    public let gateways: [NetworkNamespace]
    public private(set) var strongSwans: [StrongSwan?]

    public static let hostAddress = "10.1.0.100"
    public static let vigilLANAddress = "10.1.0.1"
    public static let vigilWANAddress = "192.0.2.1"
    public static let localSubnet = "10.1.0.0/24"
    public static let remoteSubnet = "10.2.0.0/24"
    public static let remoteServiceAddress = "10.2.0.1"
    public static func gatewayAddress(_ index: Int) -> String { "192.0.2.\(11 + index)" }

    public init(gatewayCount: Int = 3) throws {
        host = try NetworkNamespace(prefix: "host")
        vigil = try NetworkNamespace(prefix: "vgw")
        wan = try NetworkNamespace(prefix: "wan")
        var gateways: [NetworkNamespace] = []
        for index in 0..<gatewayCount { gateways.append(try NetworkNamespace(prefix: "gw\(index + 1)")) }
        self.gateways = gateways
        strongSwans = Array(repeating: nil, count: gatewayCount)
        do {
            try build()
        } catch {
            destroy()
            throw error
        }
    }

    private func build() throws {
        try NetworkNamespace.link(host, "eth0", "\(Self.hostAddress)/24", vigil, "lan0", "\(Self.vigilLANAddress)/24")
        try host.ip("route", "add", "default", "via", Self.vigilLANAddress)
        try vigil.enableForwarding()
        try wan.ip("link", "add", "br0", "type", "bridge")
        try wan.ip("link", "set", "br0", "up")
        try attachToWAN(vigil, interface: "wan0", address: "\(Self.vigilWANAddress)/24", bridgePort: "pv")
        for (index, gateway) in gateways.enumerated() {
            try attachToWAN(gateway, interface: "wan0", address: "\(Self.gatewayAddress(index))/24", bridgePort: "p\(index + 1)")
            try gateway.ip("addr", "add", "\(Self.remoteServiceAddress)/24", "dev", "lo")
        }
    }

    private func attachToWAN(_ namespace: NetworkNamespace, interface: String, address: String, bridgePort: String) throws {
        // A veth whose far end sits in the WAN namespace and is enslaved to the bridge.
        try NetworkNamespace.link(namespace, interface, address, wan, bridgePort, "169.254.0.\(bridgePortNumber(bridgePort))/32")
        try wan.ip("addr", "flush", "dev", bridgePort)
        try wan.ip("link", "set", bridgePort, "master", "br0")
    }

    private func bridgePortNumber(_ name: String) -> Int { name == "pv" ? 1 : 10 + (Int(name.dropFirst()) ?? 0) }

    /// Starts strongSwan on gateway `index` with the given swanctl.conf.
    @discardableResult
    public func startStrongSwan(_ index: Int, swanctlConf: String, settings: StrongSwan.Settings = StrongSwan.Settings()) throws -> StrongSwan {
        let instance = try StrongSwan(namespace: gateways[index], name: "gw\(index + 1)")
        try instance.start(swanctlConf: swanctlConf, settings: settings)
        strongSwans[index] = instance
        return instance
    }

    /// SIGKILLs gateway `index`'s charon: a dead peer that sends no DELETE. A charon that left ESP to the kernel
    /// leaves its SAs and policies there; they are flushed too, so the gateway is dead as a crashed box is.
    public func kill(_ index: Int) {
        guard let instance = strongSwans[index] else { return }
        instance.kill(signal: SIGKILL)
        if instance.kernelESP {
            _ = try? gateways[index].run(["ip", "xfrm", "state", "flush"])
            _ = try? gateways[index].run(["ip", "xfrm", "policy", "flush"])
        }
    }

    /// Drops every packet to and from gateway `index` on the WAN bridge (nftables), leaving its charon running.
    public func cutLink(_ index: Int) throws {
        let port = "p\(index + 1)"
        let rules = """
        table bridge vigil_lab_cut_\(index) {
            chain forward {
                type filter hook forward priority 0; policy accept;
                iifname "\(port)" drop
                oifname "\(port)" drop
            }
        }
        """
        try runNft(rules, in: wan)
    }

    /// Breaks forwarding on gateway `index` while its charon keeps answering IKE (DPD included): nftables in the
    /// gateway's namespace drops what comes out of the tunnel, the decrypted packets kernel-libipsec hands to the
    /// `ipsec0` TUN device, whether for the gateway itself (the service address on its loopback: input) or for a
    /// host behind it (forward). ESP and IKE on `wan0` are untouched.
    public func breakForwarding(_ index: Int) throws {
        let rules = """
        table inet vigil_lab_blackhole {
            chain input {
                type filter hook input priority 0; policy accept;
                iifname "ipsec0" drop
            }
            chain forward {
                type filter hook forward priority 0; policy accept;
                iifname "ipsec0" drop
            }
        }
        """
        try runNft(rules, in: gateways[index])
    }

    /// Undoes `cutLink`.
    public func restoreLink(_ index: Int) throws {
        try wan.exec(["nft", "delete", "table", "bridge", "vigil_lab_cut_\(index)"])
    }

    private func runNft(_ rules: String, in namespace: NetworkNamespace) throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-nft-\(UUID().uuidString.prefix(8)).nft")
        try rules.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        try namespace.exec(["nft", "-f", file.path])
    }

    /// Kills every charon and deletes every namespace.
    public func destroy() {
        for instance in strongSwans {
            instance?.stop()
            instance?.removeFiles()
        }
        for namespace in [host, vigil, wan] + gateways { namespace.destroy() }
    }

    /// A swanctl.conf for remote gateway `index` (responder side of Vigil's crypto-map entry).
    public static func remoteGatewayConfig(
        index: Int, ikeVersion: Int, ikeProposal: String, espProposal: String, psk: String,
        vigilIdentity: String = vigilWANAddress, dpdDelay: String? = nil, dpdAction: String = "clear",
        rekeyTime: String? = nil, childRekeyTime: String? = nil, startAction: String = "none", forceEncapsulation: Bool = true,
        localTS: String = remoteSubnet, remoteTS: String = localSubnet
    ) -> String {
        let gatewayID = gatewayAddress(index)
        var ike = """
                version = \(ikeVersion)
                local_addrs = \(gatewayID)
                remote_addrs = \(vigilWANAddress)
                proposals = \(ikeProposal)
                encap = \(forceEncapsulation ? "yes" : "no")
        """
        if let dpdDelay { ike += "\n        dpd_delay = \(dpdDelay)" }
        if let rekeyTime { ike += "\n        rekey_time = \(rekeyTime)" }
        return """
        connections {
            vigil {
        \(ike)
                local { auth = psk
                        id = \(gatewayID) }
                remote { auth = psk
                         id = \(vigilIdentity) }
                children {
                    site {
                        local_ts = \(localTS)
                        remote_ts = \(remoteTS)
                        esp_proposals = \(espProposal)
                        dpd_action = \(dpdAction)
                        start_action = \(startAction)
        \(childRekeyTime.map { "                rekey_time = \($0)\n                life_time = 60s\n                rand_time = 0s" } ?? "")
                    }
                }
            }
        }
        secrets {
            ike-vigil { secret = "\(psk)"
                        id-gw = \(gatewayID)
                        id-vigil = \(vigilIdentity) }
        }
        """
    }
}
