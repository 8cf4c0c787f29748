import Foundation
import Testing
import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilLab
@testable import VigilIKEv2

/// Vigil's IKEv2 engine (through `InteropDriver`) against strongSwan 5.9.8 in network namespaces.
final class SwanLab {
    static let vigilAddress = IPAddress("192.0.2.1")!
    static let swanAddress = IPAddress("192.0.2.2")!
    static let secret = "interop-secret-42"

    let vigilNamespace: NetworkNamespace
    let swanNamespace: NetworkNamespace
    let swan: StrongSwan
    let driver: InteropDriver

    struct SwanOptions {
        var ike = "aes256-sha256-modp2048"
        var esp = "aes256-sha256"
        var secret = SwanLab.secret
        var dpdDelay = "0"
        var ikeRekey = "0"
        var childRekey = "0"
    }

    init(
        _ swanOptions: SwanOptions, vigil: (inout IKEv2Endpoint.ConnectionConfiguration) -> Void = { _ in },
        endpoint: (inout IKEv2Endpoint.Configuration) -> Void = { _ in }
    ) throws {
        vigilNamespace = try NetworkNamespace(prefix: "v2v")
        swanNamespace = try NetworkNamespace(prefix: "v2s")
        do {
            try NetworkNamespace.link(vigilNamespace, "v0", "192.0.2.1/24", swanNamespace, "s0", "192.0.2.2/24")
            try swanNamespace.ip("addr", "add", "10.2.0.1/24", "dev", "lo")
            swan = try StrongSwan(namespace: swanNamespace, name: "swan")
            try swan.start(swanctlConf: Self.swanctl(swanOptions))
            var connection = IKEv2Endpoint.ConnectionConfiguration(
                name: "SWAN/10", localAddress: Self.vigilAddress, localIdentity: .fqdn("west"),
                peers: [.init(address: Self.swanAddress, identity: .fqdn("east"), preSharedKey: SecureBytes(Array(Self.secret.utf8)))],
                ikeProposals: [try IKEProposal.parse(swanOptions.ike)], espProposals: [try ESPProposal.parse(swanOptions.esp)],
                localTrafficSelectors: [try IPPrefix.parse("10.1.0.0/24")], remoteTrafficSelectors: [try IPPrefix.parse("10.2.0.0/24")],
                ikeLifetime: .seconds(14_400), forceUDPEncapsulation: true
            )
            vigil(&connection)
            var configuration = IKEv2Endpoint.Configuration(connections: [connection])
            endpoint(&configuration)
            driver = try InteropDriver(namespace: vigilNamespace, local: Self.vigilAddress, configuration: configuration)
        } catch {
            vigilNamespace.destroy()
            swanNamespace.destroy()
            throw error
        }
    }

    func tearDown() {
        swan.stop()
        swan.removeFiles()
        vigilNamespace.destroy()
        swanNamespace.destroy()
    }

    static func swanctl(_ o: SwanOptions) -> String {
        """
        connections {
            vigil {
                version = 2
                local_addrs = 192.0.2.2
                remote_addrs = 192.0.2.1
                proposals = \(o.ike)
                dpd_delay = \(o.dpdDelay)
                rekey_time = \(o.ikeRekey)
                over_time = 30s
                local { auth = psk
                        id = east }
                remote { auth = psk
                         id = west }
                children {
                    net {
                        local_ts = 10.2.0.0/24
                        remote_ts = 10.1.0.0/24
                        esp_proposals = \(o.esp)
                        rekey_time = \(o.childRekey)
                        life_time = 60s
                        rand_time = 0s
                    }
                }
            }
        }
        secrets {
            ike-vigil { secret = "\(o.secret)"
                        id-1 = east
                        id-2 = west }
        }
        """
    }

    /// `swanctl ARGS` in the background (an initiate blocks until the SA is up, which needs our loop running).
    func swanctlInBackground(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["swanctl"] + arguments + ["--uri", "unix://\(swan.viciSocket)"]
        process.environment = ProcessInfo.processInfo.environment.merging(
            ["STRONGSWAN_CONF": swan.directory.appendingPathComponent("strongswan.conf").path]) { _, new in new }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Vigil initiates; returns the time IKE_SA_INIT + IKE_AUTH took.
    @discardableResult
    func vigilInitiates() throws -> Duration {
        let start = driver.now
        driver.handle(.initiate(connection: "SWAN/10", peer: Self.swanAddress))
        let up = driver.run(seconds: 10) { !$0.established.isEmpty || !$0.failures.isEmpty }
        guard up, !driver.actions.established.isEmpty else {
            throw LabError("no Child SA: \(driver.actions.logText)\nstrongSwan:\n\(swan.log)")
        }
        return driver.now - start
    }

    var swanSAs: String { (try? swan.listSAs()) ?? "" }

    /// Runs Vigil until `condition` holds for strongSwan's SA listing (polled every 100 ms), at most `seconds`.
    @discardableResult
    func runUntilStrongSwan(seconds: Double = 15, _ condition: @escaping (String) -> Bool) -> Bool {
        let holds = swan.listingCondition(condition)
        return driver.run(seconds: seconds) { _ in holds() }
    }

    /// strongSwan's view agrees with ours: same SPIs (mirrored) and an installed Child SA.
    func expectSameSAs(_ child: IKEv2ChildSA, sourceLocation: SourceLocation = #_sourceLocation) {
        let sas = swanSAs
        #expect(sas.contains("state=ESTABLISHED"), "strongSwan: \(sas)", sourceLocation: sourceLocation)
        #expect(sas.contains("state=INSTALLED"), "strongSwan: \(sas)", sourceLocation: sourceLocation)
        #expect(sas.contains("spi-in=\(hex32(child.outboundSPI))"), "strongSwan: \(sas)", sourceLocation: sourceLocation)
        #expect(sas.contains("spi-out=\(hex32(child.inboundSPI))"), "strongSwan: \(sas)", sourceLocation: sourceLocation)
        #expect(sas.contains("local-ts=[10.2.0.0/24]") && sas.contains("remote-ts=[10.1.0.0/24]"), "strongSwan: \(sas)", sourceLocation: sourceLocation)
        #expect(sas.contains("encap=yes"), "strongSwan: \(sas)", sourceLocation: sourceLocation)
    }

    /// Runs the loop until both sides show exactly one established IKE SA and one installed Child SA (no rekey or
    /// delete half done), so checks that follow compare settled state.
    @discardableResult
    func settle(seconds: Double = 4) -> Bool {
        let deadline = driver.now + .milliseconds(Int(seconds * 1000))
        while driver.now < deadline {
            let sas = swanSAs
            // strongSwan lists Child SAs in state DELETED for a while after they are gone; those do not count.
            let ikeStates = sas.components(separatedBy: "version=2 state=").dropFirst().map { $0.prefix { $0 != " " } }
            let installed = sas.components(separatedBy: "state=INSTALLED").count - 1
            let childInFlux = ["state=INSTALLING", "state=REKEYING", "state=REKEYED", "state=DELETING", "state=CREATED"].contains { sas.contains($0) }
            if ikeStates == ["ESTABLISHED"], installed == 1, !childInFlux,
               driver.endpoint.ikeSAs.map(\.state) == [.established], driver.endpoint.childSAs.map(\.state) == [.installed] {
                return true
            }
            driver.run(seconds: 0.05)
        }
        return false
    }

    /// The Child SA with this inbound SPI and the keys handed out for it (at establishment or rekey).
    func child(inboundSPI: [UInt8]) -> (info: IKEv2ChildSA, keys: ChildSAKeys)? {
        for action in driver.actions.reversed() {
            switch action {
            case .childSAEstablished(let info) where bigEndian(info.inboundSPI) == inboundSPI: return (info, info.keys)
            case .childSARekeyed(_, let info) where bigEndian(info.inboundSPI) == inboundSPI: return (info, info.keys)
            default: continue
            }
        }
        return nil
    }

    /// A ping from strongSwan's protected subnet arrives as ESP in UDP 4500 on `child`; its ICV verifies with our
    /// inbound keys and it decrypts to the ICMP packet (RFC 4303, RFC 3948; GCM per RFC 4106).
    func expectESPOpens(_ expected: IKEv2ChildSA, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = driver.esp.count
        _ = try swanNamespace.run(["ping", "-c", "1", "-W", "1", "-I", "10.2.0.1", "10.1.0.1"])
        #expect(driver.run(seconds: 15) { _ in self.driver.esp.count > before }, sourceLocation: sourceLocation)
        let packet = try #require(driver.esp.dropFirst(before).first, sourceLocation: sourceLocation)
        // Normally `child`; a rekey may have completed in between, so the keys are looked up by the packet's SPI.
        let (child, childKeys) = try #require(self.child(inboundSPI: Array(packet[0..<4])), "ESP on an SPI we never negotiated",
                                              sourceLocation: sourceLocation)
        let plaintext: [UInt8]
        if child.encryption.isAEAD {
            let gcm = try GCMContext(child.encryption, keyMaterial: childKeys.encryptionIn)
            plaintext = try gcm.open(iv: Array(packet[8..<16]), aad: Array(packet[0..<8]), ciphertextAndTag: Array(packet[16...]))
        } else {
            let integrity = try IntegrityContext(try #require(child.integrity), key: try #require(childKeys.integrityIn))
            let icvLength = integrity.icvLength
            #expect(integrity.verify(Array(packet.dropLast(icvLength)), icv: Array(packet.suffix(icvLength))), sourceLocation: sourceLocation)
            let cbc = try CBCContext(child.encryption, key: childKeys.encryptionIn)
            plaintext = try cbc.decrypt(Array(packet[24..<packet.count - icvLength]), iv: Array(packet[8..<24]))
        }
        #expect(child.connection == expected.connection, sourceLocation: sourceLocation)
        // Trailer: Next Header 4 (IPv4 in tunnel mode); the inner packet is ICMP from 10.2.0.1 to 10.1.0.1.
        #expect(plaintext.last == 4, sourceLocation: sourceLocation)
        #expect(plaintext.count > 20 && plaintext[9] == 1, sourceLocation: sourceLocation)
        #expect(Array(plaintext.prefix(20).suffix(8)) == [10, 2, 0, 1, 10, 1, 0, 1], sourceLocation: sourceLocation)
    }
}

@Suite(.serialized) struct StrongSwanInteropTests {
    static let combinations: [(String, String)] = [
        ("aes256-sha256-modp2048", "aes256-sha256"), ("aes256-sha256-modp2048", "aes256gcm16"),
        ("aes128gcm16-prfsha256-x25519", "aes256-sha256"), ("aes128gcm16-prfsha256-x25519", "aes256gcm16"),
        ("aes256-sha384-ecp384", "aes256-sha256"), ("aes256-sha384-ecp384", "aes256gcm16"),
    ]

    static let swanAlgorithmNames: [String: [String]] = [
        "aes256-sha256-modp2048": ["encr-alg=AES_CBC", "encr-keysize=256", "integ-alg=HMAC_SHA2_256_128", "prf-alg=PRF_HMAC_SHA2_256", "dh-group=MODP_2048"],
        "aes128gcm16-prfsha256-x25519": ["encr-alg=AES_GCM_16", "encr-keysize=128", "prf-alg=PRF_HMAC_SHA2_256", "dh-group=CURVE_25519"],
        "aes256-sha384-ecp384": ["encr-alg=AES_CBC", "integ-alg=HMAC_SHA2_384_192", "prf-alg=PRF_HMAC_SHA2_384", "dh-group=ECP_384"],
    ]

    @Test(arguments: combinations)
    func vigilInitiatesToStrongSwan(ike: String, esp: String) throws {
        let lab = try SwanLab(.init(ike: ike, esp: esp))
        defer { lab.tearDown() }
        let elapsed = try lab.vigilInitiates()
        let child = try #require(lab.driver.actions.established.first)
        lab.expectSameSAs(child)
        let sas = lab.swanSAs
        for name in Self.swanAlgorithmNames[ike] ?? [] { #expect(sas.contains(name), "\(name) missing: \(sas)") }
        #expect(sas.contains(esp == "aes256gcm16" ? "encr-alg=AES_GCM_16" : "integ-alg=HMAC_SHA2_256_128"))
        #expect(lab.driver.endpoint.ikeSAs.first?.proposal?.description == (try IKEProposal.parse(ike)).description
            || ike.contains("gcm"))
        #expect(elapsed < .seconds(2))
        if ProcessInfo.processInfo.environment["VIGIL_DUMP_IKE"] != nil {
            for bytes in lab.driver.received { print("captured:", bytes.map { String(format: "%02x", $0) }.joined()) }
        }
        print("interop: IKE_SA_INIT + IKE_AUTH with \(ike) / \(esp) took \(elapsed)")
    }

    @Test(arguments: combinations)
    func strongSwanInitiatesToVigil(ike: String, esp: String) throws {
        let lab = try SwanLab(.init(ike: ike, esp: esp))
        defer { lab.tearDown() }
        let initiate = try lab.swanctlInBackground(["--initiate", "--child", "net", "--timeout", "10"])
        let up = lab.driver.run(seconds: 10) { !$0.established.isEmpty }
        initiate.waitUntilExit()
        #expect(up, "\(lab.driver.actions.logText)\nstrongSwan:\n\(lab.swan.log)")
        let child = try #require(lab.driver.actions.established.first)
        #expect(lab.driver.endpoint.ikeSAs.first?.isInitiator == false)
        lab.expectSameSAs(child)
        let sas = lab.swanSAs
        for name in Self.swanAlgorithmNames[ike] ?? [] { #expect(sas.contains(name), "\(name) missing: \(sas)") }
    }

    /// The Child SA keys we derived open strongSwan's ESP: a ping from its protected subnet arrives in UDP 4500, its
    /// ICV verifies and it decrypts to the ICMP packet (RFC 4303, RFC 3948; GCM per RFC 4106).
    @Test(arguments: ["aes256-sha256", "aes256gcm16"], [true, false])
    func childSAKeysOpenStrongSwansESP(esp: String, vigilInitiates: Bool) throws {
        let lab = try SwanLab(.init(esp: esp))
        defer { lab.tearDown() }
        if vigilInitiates {
            try lab.vigilInitiates()
        } else {
            let initiate = try lab.swanctlInBackground(["--initiate", "--child", "net", "--timeout", "10"])
            lab.driver.run(seconds: 10) { !$0.established.isEmpty }
            initiate.waitUntilExit()
        }
        let child = try #require(lab.driver.actions.established.first)
        try lab.expectESPOpens(child)
    }

    /// Without forcing encapsulation ourselves we still follow strongSwan's faked NAT (kernel-libipsec) to UDP 4500.
    @Test func vigilFloatsWhenOnlyStrongSwanClaimsANAT() throws {
        let lab = try SwanLab(.init()) { $0.forceUDPEncapsulation = false }
        defer { lab.tearDown() }
        try lab.vigilInitiates()
        let sa = try #require(lab.driver.endpoint.ikeSAs.first)
        #expect(sa.remoteBehindNAT && !sa.localBehindNAT)
        #expect(sa.localEndpoint.port == 4500 && sa.remoteEndpoint.port == 4500)
        let child = try #require(lab.driver.actions.established.first)
        #expect(child.udpEncapsulated)
        lab.expectSameSAs(child)
        #expect(!lab.driver.actions.has { if case .scheduleTimer(.natKeepalive, _) = $0 { true } else { false } },
                "keepalives are the job of the side behind the NAT")
    }

    @Test func livenessChecksBothWays() throws {
        let lab = try SwanLab(.init(dpdDelay: "1s"))
        defer { lab.tearDown() }
        try lab.vigilInitiates()
        let id = try #require(lab.driver.endpoint.ikeSAs.first?.id)
        // Vigil asks: INFORMATIONAL { } -->  <-- INFORMATIONAL { }
        lab.driver.handle(.sendLivenessCheck(id))
        #expect(lab.driver.run(seconds: 15) { $0.livenessAnswers >= 1 })
        // strongSwan asks (dpd_delay = 1s, and only when idle): <-- INFORMATIONAL { }  INFORMATIONAL { } -->
        let before = lab.driver.actions.logText.components(separatedBy: "received INFORMATIONAL request").count
        lab.driver.run(seconds: 15) { $0.logText.components(separatedBy: "received INFORMATIONAL request").count > before }
        let after = lab.driver.actions.logText.components(separatedBy: "received INFORMATIONAL request").count
        #expect(after > before, "strongSwan sent no liveness check: \(lab.swan.log)")
        #expect(lab.swanSAs.contains("state=ESTABLISHED"))
        #expect(!lab.swan.log.contains("giving up"))
    }

    @Test func vigilDeletesChildThenIKESA() throws {
        let lab = try SwanLab(.init())
        defer { lab.tearDown() }
        try lab.vigilInitiates()
        let child = try #require(lab.driver.endpoint.childSAs.first)
        lab.driver.handle(.deleteChildSA(child.id))
        #expect(lab.driver.run(seconds: 15) { !$0.deletedChildren.isEmpty })
        #expect(!lab.swanSAs.contains("state=INSTALLED"), "\(lab.swanSAs)")
        #expect(lab.swanSAs.contains("state=ESTABLISHED"))
        let id = try #require(lab.driver.endpoint.ikeSAs.first?.id)
        lab.driver.handle(.deleteIKESA(id))
        lab.runUntilStrongSwan { lab.driver.endpoint.ikeSAs.isEmpty && !$0.contains("state=ESTABLISHED") }
        #expect(!lab.swanSAs.contains("state=ESTABLISHED"), "\(lab.swanSAs)")
        #expect(lab.driver.endpoint.ikeSAs.isEmpty)
    }

    @Test func strongSwanDeletesChildThenIKESA() throws {
        let lab = try SwanLab(.init())
        defer { lab.tearDown() }
        try lab.vigilInitiates()
        let terminateChild = try lab.swanctlInBackground(["--terminate", "--child", "net", "--timeout", "5"])
        #expect(lab.driver.run(seconds: 5) { !$0.deletedChildren.isEmpty })
        terminateChild.waitUntilExit()
        #expect(lab.driver.endpoint.childSAs.isEmpty)
        #expect(lab.driver.endpoint.ikeSAs.count == 1)
        let terminateIKE = try lab.swanctlInBackground(["--terminate", "--ike", "vigil", "--timeout", "5"])
        #expect(lab.driver.run(seconds: 5) { !$0.deletedIKESAs.isEmpty })
        terminateIKE.waitUntilExit()
        #expect(lab.driver.endpoint.ikeSAs.isEmpty)
        #expect(lab.driver.actions.deletedIKESAs.first.map { _ in true } == true)
    }

    @Test func strongSwanRekeysChildAndIKESAOverSeveralGenerations() throws {
        let lab = try SwanLab(.init(ikeRekey: "5s", childRekey: "3s"))
        defer { lab.tearDown() }
        try lab.vigilInitiates()
        // Child rekeys every 3 s, IKE SA rekeys every 5 s; check right after a Child SA generation is complete, far
        // from the next rekey.
        lab.driver.run(seconds: 15) { actions in
            actions.rekeyed.count >= 3 && actions.deletedChildren.count >= 3
                && actions.has { if case .ikeSARekeyed = $0 { true } else { false } }
        }
        #expect(lab.settle(), "\(lab.swanSAs)\n\(lab.driver.endpoint.ikeSAs.map(\.state)) \(lab.driver.endpoint.childSAs.map(\.state))")
        let actions = lab.driver.actions
        #expect(actions.rekeyed.count >= 3, "\(actions.logText)\n\(lab.swan.log)")
        #expect(actions.has { if case .ikeSARekeyed = $0 { true } else { false } }, "\(actions.logText)")
        #expect(actions.deletedIKESAs.isEmpty, "\(actions.logText)\n\(lab.swan.log)")
        #expect(lab.driver.endpoint.ikeSAs.count == 1)
        let child = try #require(lab.driver.endpoint.childSAs.last?.childSA)
        #expect(lab.driver.endpoint.childSAs.count == 1, "\(lab.driver.endpoint.childSAs)")
        lab.expectSameSAs(child)
        try lab.expectESPOpens(child)
        // The current IKE SA still works.
        let id = try #require(lab.driver.endpoint.ikeSAs.first?.id)
        let answered = lab.driver.actions.livenessAnswers
        lab.driver.handle(.sendLivenessCheck(id))
        #expect(lab.driver.run(seconds: 15) { $0.livenessAnswers > answered })
    }

    @Test func vigilRekeysChildAndIKESAOverSeveralGenerations() throws {
        let lab = try SwanLab(.init()) { connection in
            connection.childLifetime = .seconds(2)
            connection.ikeLifetime = .seconds(5)
            connection.pfsGroup = .curve25519
            connection.espProposals = [try! ESPProposal.parse("aes256-sha256-x25519")]
        }
        defer { lab.tearDown() }
        try lab.swan.reconfigure(swanctlConf: SwanLab.swanctl(.init(esp: "aes256-sha256-x25519")))
        try lab.vigilInitiates()
        // Our Child SA rekeys every ~2 s, the IKE SA every ~5 s; check right after a Child SA generation completes.
        lab.driver.run(seconds: 15) { actions in
            actions.rekeyed.count >= 4 && actions.deletedChildren.count >= 4
                && actions.has { if case .ikeSARekeyed = $0 { true } else { false } }
        }
        #expect(lab.settle(), "\(lab.swanSAs)\n\(lab.driver.endpoint.ikeSAs.map(\.state)) \(lab.driver.endpoint.childSAs.map(\.state))")
        let actions = lab.driver.actions
        #expect(actions.rekeyed.count >= 3, "\(actions.logText)\n\(lab.swan.log)")
        #expect(actions.has { if case .ikeSARekeyed = $0 { true } else { false } }, "\(actions.logText)")
        #expect(actions.deletedIKESAs.isEmpty)
        #expect(lab.driver.endpoint.ikeSAs.count == 1)
        let child = try #require(lab.driver.endpoint.childSAs.last?.childSA)
        #expect(child.dhGroup == .curve25519)
        lab.expectSameSAs(child)
        try lab.expectESPOpens(child)
        #expect(lab.swanSAs.components(separatedBy: "state=INSTALLED").count == 2, "\(lab.swanSAs)")
    }

    /// §2.25: both ends rekey the same SA at once (our request and answer are held back until strongSwan's request
    /// has arrived, so the exchanges cross); afterwards both agree on exactly one surviving SA.
    @Test(arguments: ["ike", "child"])
    func simultaneousRekeysWithStrongSwanAgreeOnOneSurvivor(kind: String) throws {
        let lab = try SwanLab(.init())
        defer { lab.tearDown() }
        try lab.vigilInitiates()
        let id = try #require(lab.driver.endpoint.ikeSAs.first?.id)
        let child = try #require(lab.driver.endpoint.childSAs.first)
        lab.driver.holding = true
        lab.driver.handle(kind == "ike" ? .rekeyIKESA(id) : .rekeyChildSA(child.id))
        let rekey = try lab.swanctlInBackground(["--rekey", kind == "ike" ? "--ike" : "--child", kind == "ike" ? "vigil" : "net"])
        let crossed = lab.driver.run(seconds: 15) { $0.logText.contains("received CREATE_CHILD_SA request") }
        lab.driver.release()
        // Both rekeys and the collision's DELETE settle: one IKE SA and one Child SA on each side.
        lab.runUntilStrongSwan { sas in
            !rekey.isRunning
                && lab.driver.endpoint.ikeSAs.filter { $0.state == .established }.count == 1
                && lab.driver.endpoint.childSAs.count == 1
                && sas.components(separatedBy: "state=ESTABLISHED").count == 2
                && sas.components(separatedBy: "state=INSTALLED").count == 2
        }
        rekey.waitUntilExit()
        #expect(crossed, "strongSwan's rekey request never came: \(lab.swan.log)")
        let log = lab.driver.actions.logText
        // Two resolutions are RFC 7296's, and which one strongSwan takes depends on the order its threads handle the
        // crossed messages: both rekeys complete and the one with the lowest nonce goes (§2.25.1, "collision"), or
        // strongSwan answers ours with TEMPORARY_FAILURE because it is rekeying that SA itself (§2.25), deletes the
        // old SA after its own rekey, and ours finds it gone. Either way exactly one survivor, checked below.
        let resolvedByNonces = log.contains("collision")
        let refusedAsBusy = log.contains("N(TEMPORARY_FAILURE)") && log.contains("went away while we rekeyed it")
        #expect(resolvedByNonces || refusedAsBusy, "\(log)")
        #expect(lab.driver.actions.deletedIKESAs.isEmpty, "\(log)")
        let live = lab.driver.endpoint.ikeSAs.filter { $0.state == .established }
        #expect(live.count == 1, "\(lab.driver.endpoint.ikeSAs)\n\(log)\n\(lab.swan.log)")
        #expect(lab.driver.endpoint.childSAs.count == 1, "\(lab.driver.endpoint.childSAs)\n\(log)")
        let sas = lab.swanSAs
        #expect(sas.components(separatedBy: "state=ESTABLISHED").count == 2, "\(sas)")
        #expect(sas.components(separatedBy: "state=INSTALLED").count == 2, "\(sas)")
        if let current = live.first {
            #expect(sas.contains("initiator-spi=\(hex64(current.initiatorSPI))"), "\(sas)")
        }
        if let child = lab.driver.endpoint.childSAs.first?.childSA { lab.expectSameSAs(child) }
        // The survivor carries traffic.
        let answered = lab.driver.actions.livenessAnswers
        if let current = live.first {
            lab.driver.handle(.sendLivenessCheck(current.id))
            #expect(lab.driver.run(seconds: 15) { $0.livenessAnswers > answered })
        }
    }

    @Test func strongSwanEchoesTheCookieWeDemand() throws {
        let lab = try SwanLab(.init(), endpoint: { $0.cookieThreshold = 0 })
        defer { lab.tearDown() }
        let initiate = try lab.swanctlInBackground(["--initiate", "--child", "net", "--timeout", "10"])
        let up = lab.driver.run(seconds: 10) { !$0.established.isEmpty }
        initiate.waitUntilExit()
        #expect(up, "\(lab.driver.actions.logText)\n\(lab.swan.log)")
        #expect(lab.driver.endpoint.counters[.cookiesSent] == 1)
        #expect(lab.driver.actions.logText.contains("received IKE_SA_INIT request 0 { N(COOKIE), SA, KE"))
        if let child = lab.driver.actions.established.first { lab.expectSameSAs(child) }
    }

    @Test func invalidKEPayloadBothWays() throws {
        // strongSwan sends KE for ecp256 first; Vigil accepts only modp2048 and asks for it.
        let lab = try SwanLab(.init(ike: "aes256-sha256-ecp256-modp2048"), vigil: { connection in
            connection.ikeProposals = [try! IKEProposal.parse("aes256-sha256-modp2048")]
        })
        defer { lab.tearDown() }
        let initiate = try lab.swanctlInBackground(["--initiate", "--child", "net", "--timeout", "10"])
        let up = lab.driver.run(seconds: 10) { !$0.established.isEmpty }
        initiate.waitUntilExit()
        #expect(up, "\(lab.driver.actions.logText)\n\(lab.swan.log)")
        #expect(lab.driver.actions.logText.contains("asking for modp2048 (INVALID_KE_PAYLOAD)"))
        // Vigil sends KE for x25519 first; strongSwan accepts only modp2048 and asks for it.
        let id = try #require(lab.driver.endpoint.ikeSAs.first?.id)
        lab.driver.handle(.deleteIKESA(id))
        lab.driver.run(seconds: 15) { _ in lab.driver.endpoint.ikeSAs.isEmpty }
        try lab.swan.reconfigure(swanctlConf: SwanLab.swanctl(.init(ike: "aes256-sha256-modp2048")))
        var configuration = lab.driver.endpoint.configuration
        configuration.connections[0].ikeProposals = [try IKEProposal.parse("aes256-sha256-x25519-modp2048")]
        lab.driver.endpoint.configuration = configuration
        let established = lab.driver.actions.established.count
        lab.driver.handle(.initiate(connection: "SWAN/10", peer: SwanLab.swanAddress))
        #expect(lab.driver.run(seconds: 10) { $0.established.count > established }, "\(lab.driver.actions.logText)\n\(lab.swan.log)")
        #expect(lab.driver.actions.logText.contains("responder wants DH group modp2048 (INVALID_KE_PAYLOAD)"))
        #expect(lab.driver.endpoint.ikeSAs.first?.proposal?.dhGroup == .modp2048)
    }

    @Test func killedStrongSwanLeavesLivenessChecksUnanswered() throws {
        let lab = try SwanLab(.init()) { connection in
            connection.retransmission = RetransmissionSchedule(timeout: .milliseconds(200), base: 1.5, tries: 3)
        }
        defer { lab.tearDown() }
        try lab.vigilInitiates()
        let id = try #require(lab.driver.endpoint.ikeSAs.first?.id)
        lab.swan.kill()
        // The detector asks three times (a request, then two retransmissions of it); a dead peer answers none, in
        // the half second it is given each time.
        for _ in 0..<3 {
            lab.driver.handle(.sendLivenessCheck(id))
            lab.driver.run(seconds: 0.5)
        }
        #expect(lab.driver.actions.livenessAnswers == 0)
        #expect(lab.driver.endpoint.counters[.livenessRetransmissions] == 2)
        // A request on the retransmission schedule declares the peer unreachable.
        lab.driver.handle(.abandonIKESA(id))
        #expect(lab.driver.endpoint.ikeSAs.isEmpty)
        try lab.vigilInitiates2Unreachable()
    }

    @Test func wrongPreSharedKeyIsRefusedBothWays() throws {
        let lab = try SwanLab(.init(secret: "not-the-same-secret"))
        defer { lab.tearDown() }
        lab.driver.handle(.initiate(connection: "SWAN/10", peer: SwanLab.swanAddress))
        lab.driver.run(seconds: 5) { !$0.failures.isEmpty }
        #expect(lab.driver.actions.failures.map(\.code) == [.authenticationFailed], "\(lab.driver.actions.logText)")
        #expect(lab.driver.actions.logText.contains("AUTHENTICATION_FAILED"))
        #expect(!lab.swanSAs.contains("state=ESTABLISHED"))
        // strongSwan initiates: we refuse its AUTH.
        let initiate = try lab.swanctlInBackground(["--initiate", "--child", "net", "--timeout", "5"])
        let refused = lab.driver.run(seconds: 5) { $0.failures.count >= 2 }
        initiate.waitUntilExit()
        #expect(refused)
        #expect(lab.driver.actions.failures.map(\.code) == [.authenticationFailed, .authenticationFailed])
        #expect(lab.driver.actions.logText.contains("pre-shared keys differ"))
        #expect(lab.driver.endpoint.ikeSAs.isEmpty)
    }

    /// strongSwan's NO_PROPOSAL_CHOSEN is unauthenticated (RFC 7296 §2.21.1): we keep retransmitting and fail when
    /// the schedule runs out, with its hint as the reason. Our refusal of strongSwan's IKE_SA_INIT is spoofable, so
    /// it is counted, logged, and never reported as the peer's failure.
    @Test func noCommonProposalIsRefusedBothWays() throws {
        let lab = try SwanLab(.init(ike: "aes128-sha1-modp3072")) { connection in
            connection.ikeProposals = [try! IKEProposal.parse("aes256-sha256-modp2048")]
            connection.retransmission = RetransmissionSchedule(timeout: .milliseconds(200), base: 1.5, tries: 3)
        }
        defer { lab.tearDown() }
        lab.driver.handle(.initiate(connection: "SWAN/10", peer: SwanLab.swanAddress))
        lab.driver.run(seconds: 10) { !$0.failures.isEmpty }
        #expect(lab.driver.actions.failures.map(\.code) == [.noProposalChosen], "\(lab.driver.actions.logText)")
        #expect(lab.driver.actions.failures.first?.message.contains("NO_PROPOSAL_CHOSEN") == true)
        #expect((lab.driver.endpoint.counters[.unauthenticatedNotifies] ?? 0) >= 2, "every retransmission is answered and ignored")
        let initiate = try lab.swanctlInBackground(["--initiate", "--child", "net", "--timeout", "5"])
        let refused = lab.driver.run(seconds: 5) { _ in (lab.driver.endpoint.counters[.unauthenticatedRefusals] ?? 0) >= 1 }
        initiate.waitUntilExit()
        #expect(refused)
        #expect(lab.driver.actions.failures.map(\.code) == [.noProposalChosen], "no failure for an unauthenticated request")
        #expect(lab.driver.actions.logText.contains("no common IKE proposal"))
    }
}

extension SwanLab {
    /// With strongSwan dead, a new negotiation retransmits on the schedule and ends in peerUnreachable.
    func vigilInitiates2Unreachable() throws {
        driver.handle(.initiate(connection: "SWAN/10", peer: Self.swanAddress))
        let gaveUp = driver.run(seconds: 5) { $0.unreachable }
        #expect(gaveUp, "\(driver.actions.logText)")
        #expect(driver.actions.failures.last?.code == .timeout)
    }
}
