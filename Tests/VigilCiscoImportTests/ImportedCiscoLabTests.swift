import Foundation
import Testing
import VigilCiscoImport
import VigilConfig
import VigilDaemon
import VigilLab

/// Issue 19's acceptance: a Cisco configuration imported, loaded, and run by vigild in the failover lab against three
/// strongSwan gateways; the default peer is killed and the traffic moves to the next peer the crypto map lists.
/// DPD comes from the Cisco text (`dpd 10 2 periodic` / `crypto isakmp keepalive 10 2 periodic`, Cisco's minimum
/// interval): dead 10 + 5 × 2 = 20 s after the last proof of life.
@Suite(.serialized) struct ImportedCiscoLabTests {
    /// The gateways in the crypto map's order: the default peer written second, so the import must put it first.
    static let defaultPeer = FailoverLab.gatewayAddress(0)
    static let nextPeer = FailoverLab.gatewayAddress(1)

    static func ciscoConfiguration(ikeVersion: Int) -> String {
        let wan = FailoverLab.vigilWANAddress
        let ike = ikeVersion == 2 ? """
        crypto ikev2 proposal LAB
         encryption aes-cbc-256
         integrity sha256
         group 14
        crypto ikev2 policy LAB
         match address local \(wan)
         proposal LAB
        crypto ikev2 keyring LAB
         peer gateways
          address 192.0.2.0 255.255.255.0
          pre-shared-key \(VigildLab.psk)
        crypto ikev2 profile LAB
         match identity remote address 192.0.2.0 255.255.255.0
         identity local address \(wan)
         authentication remote pre-share
         authentication local pre-share
         keyring local LAB
         dpd 10 2 periodic
        """ : """
        crypto isakmp policy 10
         encr aes 256
         hash sha256
         authentication pre-share
         group 14
        crypto isakmp key \(VigildLab.psk) address 0.0.0.0 0.0.0.0
        crypto isakmp keepalive 10 2 periodic
        """
        return """
        hostname vigil-lab
        !
        \(ike)
        !
        crypto ipsec transform-set LAB esp-aes 256 esp-sha256-hmac
         mode tunnel
        !
        crypto map LAB 10 ipsec-isakmp
         set peer \(nextPeer)
         set peer \(defaultPeer) default
         set peer \(FailoverLab.gatewayAddress(2))
         set transform-set LAB
        \(ikeVersion == 2 ? " set ikev2-profile LAB\n" : "") match address LAB-TRAFFIC
        !
        ip access-list extended LAB-TRAFFIC
         permit ip 10.1.0.0 0.0.0.255 10.2.0.0 0.0.0.255
        !
        interface eth0
         ip address \(wan) 255.255.255.0
         crypto map LAB
        end
        """
    }

    @Test(arguments: [2, 1])
    func anImportedCryptoMapFailsOverToItsNextPeer(ikeVersion: Int) throws {
        let imported = try CiscoImport.convert(Self.ciscoConfiguration(ikeVersion: ikeVersion))
        #expect(imported.unrecognized.filter { $0.kind != .outsideIPsec }.isEmpty, "\(imported.unrecognized)")

        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        let lab = try VigildLab(settings)
        var vigild: VigildProcess?
        defer {
            vigild?.stop()
            lab.destroy()
        }
        // What the lab needs beyond the router's words: its own control socket and state file, the userspace data
        // plane (this kernel has no ESP), and UDP encapsulation (strongSwan's kernel-libipsec fakes a NAT).
        let yaml = imported.yaml
            .replacingOccurrences(of: "global:\n", with: """
            global:
              dataplane: userspace
              control-socket: \(lab.socketPath)
              state-file: \(lab.stateFilePath)

            """)
            .replacingOccurrences(of: "        ike-version: v\(ikeVersion)\n", with: "        ike-version: v\(ikeVersion)\n        encapsulation: force\n")
        let configPath = lab.directory.appendingPathComponent(CiscoImportNames.configurationFile)
        let secretsPath = lab.directory.appendingPathComponent(CiscoImportNames.secretsFile)
        try yaml.write(to: configPath, atomically: true, encoding: .utf8)
        try imported.secrets.write(to: secretsPath, atomically: true, encoding: .utf8)
        chmod(secretsPath.path, 0o600)

        // The file loads as `vigil config check` loads it, with the Cisco order and DPD.
        let configuration = try ConfigurationLoader.load(path: configPath.path)
        let entry = try #require(configuration.cryptoMaps.first?.entries.first)
        #expect(entry.peers.map(\.address.description) == [Self.defaultPeer, Self.nextPeer, FailoverLab.gatewayAddress(2)])
        #expect(entry.dpd.mode == .periodic && entry.dpd.interval == .seconds(10) && entry.dpd.retry == .seconds(2))

        try lab.startGateways()
        let binary = try #require(VigildProcess.productPath("vigild"), "vigild is not built next to the tests")
        let process = VigildProcess(namespace: lab.lab.vigil, binary: binary, configPath: configPath.path,
                                    logPath: lab.directory.appendingPathComponent("vigild.log").path)
        vigild = process
        try process.start(extraArguments: ["--log-level", "debug"])
        try #require(process.waitForLog(timeout: 10, { $0.contains("vigild running") }), "vigild did not start:\n\(process.log)")
        let log = { "vigild log:\n\(process.log.suffix(6000))" }

        try #require(try lab.waitForEvent(timeout: 15) { $0.kind == "dataplane-programmed" && $0.peer == Self.defaultPeer } != nil,
                     "no tunnel with the default peer:\n\(log())")
        try #require(try lab.lab.host.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", FailoverLab.remoteServiceAddress]).succeeded,
                     "no ping through the imported tunnel:\n\(log())")

        lab.lab.kill(0)
        // 20 s of DPD schedule, then Phase 1 and 2 with the next peer: generous for a loaded machine.
        let moved = try lab.waitForEvent(timeout: 60) { $0.kind == "dataplane-programmed" && $0.peer == Self.nextPeer }
        try #require(moved != nil, "no failover to the next listed peer:\n\(log())")
        let events = try lab.events()
        #expect(events.contains { $0.kind == "declared-dead" && $0.peer == Self.defaultPeer })
        #expect(try lab.lab.host.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", FailoverLab.remoteServiceAddress]).succeeded,
                "no ping through the next peer:\n\(log())")
    }
}
