import Foundation
import Testing
import VigilAddressing
import VigilAlgorithms
import VigilIKEv1
import VigilLab

private func hex(_ value: UInt32) -> String { String(value, radix: 16).leftPad(8) }
private func hex(_ value: UInt64) -> String { String(value, radix: 16).leftPad(16) }
extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}

/// Interop with strongSwan 5.9.8 (`version = 1`, kernel-libipsec faking NAT so ESP rides UDP 4500).
@Suite(.serialized) struct StrongSwanInteropTests {
    static func expectSameSAs(_ lab: InteropLab, encryption: String, keySize: Int, integrity: String) throws {
        let child = try #require(lab.driver.endpoint.childSAs.first)
        let ike = try #require(lab.driver.endpoint.ikeSAs.first)
        let listing = try lab.swanSAs()
        #expect(listing.contains("state=ESTABLISHED"), "\(listing)")
        #expect(listing.contains("initiator-spi=\(hex(ike.initiatorCookie))"), "\(listing)")
        #expect(listing.contains("responder-spi=\(hex(ike.responderCookie))"), "\(listing)")
        #expect(listing.contains("state=INSTALLED"), "\(listing)")
        // strongSwan's inbound SPI is our outbound one and vice versa.
        #expect(listing.contains("spi-in=\(hex(child.outboundSPI))"), "\(listing)")
        #expect(listing.contains("spi-out=\(hex(child.inboundSPI))"), "\(listing)")
        #expect(listing.contains("encr-alg=\(encryption)") && listing.contains("encr-keysize=\(keySize)"), "\(listing)")
        #expect(listing.contains("integ-alg=\(integrity)"), "\(listing)")
        #expect(listing.contains("dh-group=MODP_2048"), "\(listing)")
        #expect(listing.contains("local-ts=[10.2.0.0/24]") && listing.contains("remote-ts=[10.1.0.0/24]"), "\(listing)")
        #expect(child.localTrafficSelectors == [InteropLab.vigilNet] && child.remoteTrafficSelectors == [InteropLab.swanNet])
        #expect(child.udpEncapsulated, "kernel-libipsec fakes NAT: ESP must go in UDP 4500")
        #expect(ike.peerSupportsDPD)
    }

    @Test(arguments: [("aes256-sha256-modp2048", "aes256-sha256", 256, "HMAC_SHA2_256_128"),
                      ("aes128-sha1-modp2048", "aes128-sha1", 128, "HMAC_SHA1_96")])
    func vigilInitiates(ike: String, esp: String, keySize: Int, integrity: String) throws {
        var options = InteropLab.Options()
        options.ike = ike
        options.esp = esp
        let lab = try InteropLab(options)
        defer { lab.close() }
        lab.driver.handle(.initiate(connection: "lab", peer: InteropLab.swanAddress))
        let done = lab.driver.run(seconds: 10) { !$0.established.isEmpty }
        #expect(done, "no IPsec SA; Vigil:\n\(lab.driver.log)\nstrongSwan:\n\(lab.swan.log)")
        guard done else { return }
        try lab.awaitStrongSwanInstalled()
        try Self.expectSameSAs(lab, encryption: "AES_CBC", keySize: keySize, integrity: integrity)
    }

    @Test(arguments: [("aes256-sha256-modp2048", "aes256-sha256", 256, "HMAC_SHA2_256_128"),
                      ("aes128-sha1-modp2048", "aes128-sha1", 128, "HMAC_SHA1_96")])
    func strongSwanInitiates(ike: String, esp: String, keySize: Int, integrity: String) throws {
        var options = InteropLab.Options()
        options.ike = ike
        options.esp = esp
        let lab = try InteropLab(options)
        defer { lab.close() }
        let swan = lab.swan
        let result = try lab.whileRunning({ try swan.initiate(child: "net", timeoutSeconds: 8) }, seconds: 10)
        #expect(result.succeeded, "swanctl --initiate: \(result.stdout)\(result.stderr)\nVigil:\n\(lab.driver.log)")
        lab.driver.run(seconds: 10) { !$0.established.isEmpty }
        #expect(lab.driver.established.count == 1, "Vigil:\n\(lab.driver.log)")
        guard lab.driver.established.count == 1 else { return }
        try Self.expectSameSAs(lab, encryption: "AES_CBC", keySize: keySize, integrity: integrity)
    }

    /// Vigil fakes NAT too (a false NAT-D for its own address): strongSwan must see both ends behind NAT and still
    /// agree on UDP-encapsulated tunnel mode on 4500.
    @Test func forcedEncapsulationIsAcceptedByStrongSwan() throws {
        var options = InteropLab.Options()
        options.forceUDPEncapsulation = true
        let lab = try InteropLab(options)
        defer { lab.close() }
        try lab.establish()
        try Self.expectSameSAs(lab, encryption: "AES_CBC", keySize: 256, integrity: "HMAC_SHA2_256_128")
        #expect(lab.swan.log.contains("remote host is behind NAT"), "\(lab.swan.log)")
        let listing = try lab.swanSAs()
        #expect(listing.contains("encap=yes"), "\(listing)")
    }
}
