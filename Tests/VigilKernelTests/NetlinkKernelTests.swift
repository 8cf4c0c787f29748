import Foundation
import Testing
import VigilAddressing
import VigilAlgorithms
import VigilKernel
import VigilLab

/// The libnl kernel in a namespace, with `ip` as the independent witness.
@Suite("libnl kernel in a namespace, witnessed by ip")
struct NetlinkKernelTests {
    /// `ip -s xfrm policy` blocks, one per policy, keyed by their first line ("src X dst Y").
    func policyBlocks(_ lab: KernelLab) throws -> [String] {
        let text = try lab.ip("-s", "xfrm", "policy")
        var blocks: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("src ") { blocks.append(String(line)) } else if !blocks.isEmpty {
                blocks[blocks.count - 1] += "\n" + line
            }
        }
        return blocks
    }

    /// The kernel's policy index ("index N"): an update in place keeps it, delete-then-add would not.
    func index(of block: String) -> String? {
        let words = block.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        guard let position = words.firstIndex(of: "index"), position + 1 < words.count else { return nil }
        return String(words[position + 1])
    }

    @Test func establishFailoverAndDeleteAsIpSeesThem() throws {
        let lab = try KernelLab(.netlink)
        defer { lab.destroy() }
        let executor = KernelExecutor(ipsec: lab.ipsec, routes: lab.routes)
        var a = Lab.child(1, remote: Lab.peerA, reqid: 0x5649_0001)
        a.route?.gateway = Lab.ip("192.0.2.254")
        var b = Lab.child(1, remote: Lab.peerB, reqid: 0x5649_0002, spiBase: 0x2000)
        b.route?.gateway = Lab.ip("192.0.2.253")
        let table = String(VigilOwnership.defaultRouteTable)

        // Establish: SAs refused on a kernel without ESP (reported, not hidden); policies and route installed.
        let established = executor.apply(KernelPlanner.establish(a))
        let saRefusals = established.refused.filter { $0.step.operation == .addSA }
        #expect(established.refused.count == saRefusals.count)
        #expect(saRefusals.allSatisfy { $0.error.code == .protocolNotSupported })
        var blocks = try policyBlocks(lab)
        #expect(blocks.count == 3)
        #expect(blocks.allSatisfy { $0.contains("tmpl src") && $0.contains("reqid 1447624705") })
        #expect(blocks.filter { $0.contains("dir out") && $0.contains("tmpl src 192.0.2.1 dst 198.51.100.2") }.count == 1)
        #expect(blocks.filter { $0.contains("dir in") && $0.contains("tmpl src 198.51.100.2 dst 192.0.2.1") }.count == 1)
        #expect(blocks.filter { $0.contains("dir fwd") && $0.contains("tmpl src 198.51.100.2 dst 192.0.2.1") }.count == 1)
        let indicesBefore = blocks.compactMap(index(of:)).sorted()
        #expect(indicesBefore.count == 3)
        var routes = try lab.ip("route", "show", "table", table)
        #expect(routes.contains("10.2.1.0/24 via 192.0.2.254 dev wan0 proto 86 src 10.1.1.1"))

        // Failover A -> B: templates repointed in place (same policy indices), route replaced.
        let moved = executor.apply(KernelPlanner.failover(from: a, to: b))
        #expect(moved.refused.allSatisfy { $0.step.operation == .addSA || $0.step.operation == .deleteSA })
        #expect(moved.applied.filter { $0.operation == .updatePolicy }.count == 3)
        blocks = try policyBlocks(lab)
        #expect(blocks.count == 3)
        #expect(!blocks.joined().contains("198.51.100.2"))
        #expect(blocks.filter { $0.contains("dir out") && $0.contains("tmpl src 192.0.2.1 dst 203.0.113.2") }.count == 1)
        #expect(blocks.allSatisfy { $0.contains("reqid 1447624706") })
        #expect(blocks.compactMap(index(of:)).sorted() == indicesBefore)
        routes = try lab.ip("route", "show", "table", table)
        #expect(routes.contains("10.2.1.0/24 via 192.0.2.253 dev wan0 proto 86 src 10.1.1.1"))
        #expect(!routes.contains("192.0.2.254"))
        // The same through libnl's listing.
        let listed = try lab.ipsec.listPolicies()
        #expect(Set(listed) == Set(b.policies.map { InstalledPolicy(id: $0.0, request: $0.1) }))

        // Delete: policies and route gone.
        let deleted = executor.apply(KernelPlanner.delete(b))
        #expect(deleted.refused.allSatisfy { $0.step.operation == .deleteSA })
        #expect(try policyBlocks(lab).isEmpty)
        #expect(try lab.ip("route", "show", "table", table).isEmpty)
        #expect(try lab.ipsec.listPolicies().isEmpty)
    }

    @Test func holdKeepsTemplatesSoNothingLeavesInClear() throws {
        let lab = try KernelLab(.netlink)
        defer { lab.destroy() }
        let executor = KernelExecutor(ipsec: lab.ipsec, routes: lab.routes)
        let a = Lab.child(1, remote: Lab.peerA, reqid: 0x5649_0001)
        _ = executor.apply(KernelPlanner.establish(a))
        let before = try policyBlocks(lab)
        _ = executor.apply(KernelPlanner.hold(a))
        #expect(try policyBlocks(lab) == before)
        #expect(before.allSatisfy { $0.contains("tmpl src") })
    }

    /// This kernel has no ESP: the SA add must reach the kernel with valid algorithm names and key lengths and be
    /// refused with EPROTONOSUPPORT, reported as "kernel lacks ESP". Where the kernel has ESP, the SA must be in
    /// `ip xfrm state`.
    @Test(arguments: [
        (EncryptionAlgorithm.aes128cbc, IntegrityAlgorithm?.some(.hmacSHA2_256_128)),
        (.aes256cbc, .some(.hmacSHA1_96)),
        (.aes256cbc, .some(.hmacSHA2_512_256)),
    ])
    func saAddReachesTheKernel(encryption: EncryptionAlgorithm, integrity: IntegrityAlgorithm?) throws {
        let lab = try KernelLab(.netlink)
        defer { lab.destroy() }
        var child = Lab.child(1, remote: Lab.peerA, reqid: 0x5649_0001, encryption: encryption, integrity: integrity)
        child.encapsulation = UDPEncapsulation(sourcePort: 4500, destinationPort: 4500)
        let report = KernelExecutor(ipsec: lab.ipsec, routes: lab.routes)
            .apply(KernelPlan([.addSA(child.inboundSAID, child.inboundSARequest)]))
        let states = try lab.ip("xfrm", "state")
        if let refusal = report.refused.first {
            #expect(refusal.error.code == .protocolNotSupported)
            #expect(refusal.error.errno == 93)
            #expect(refusal.error.description.contains("kernel lacks ESP"))
            #expect(report.applied.isEmpty)
            #expect(states.isEmpty)
            #expect(try lab.ipsec.listSAs().isEmpty)
        } else {
            #expect(states.contains("spi 0x\(String(child.inbound.spi, radix: 16).leftPadded(to: 8))"))
            #expect(try lab.ipsec.querySA(child.inboundSAID).reqid == child.reqid)
        }
    }

    /// GCM: refused for lack of the gcm module (ENOSYS) or of ESP; never installed silently where either is missing.
    @Test func gcmSAIsInstalledOrRefusedClearly() throws {
        let lab = try KernelLab(.netlink)
        defer { lab.destroy() }
        let child = Lab.child(1, remote: Lab.peerA, reqid: 0x5649_0001, encryption: .aes128gcm16, integrity: nil)
        if let refusal = addSARefusal(lab.ipsec, child.outboundSAID, child.outboundSARequest) {
            #expect([.algorithmNotSupported, .protocolNotSupported].contains(refusal.code))
            #expect(try lab.ip("xfrm", "state").isEmpty)
        } else {
            #expect(try lab.ip("xfrm", "state").contains("rfc4106(gcm(aes))"))
        }
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
