import Foundation
import Testing
import VigilAddressing
import VigilKernel
import VigilLab
import VigilNetlink

/// `SocketPolicy.bypass` against the kernel: two namespaces joined by a veth pair; in the first, the fail-closed
/// guard of a full tunnel (block, 0.0.0.0/0 or ::/0 both ways, installed with the netlink kernel as vigild installs
/// it). The kernel does not read IP_XFRM_POLICY back (getsockopt has no such option), so the proof is behavioural:
/// a bypassed socket sends and receives through the block, a plain one beside it cannot.
@Suite("IKE sockets bypass IPsec policies", .serialized)
struct SocketBypassTests {
    struct Case: Sendable, CustomStringConvertible {
        let family: IPAddress.Family
        let guarded: String
        let other: String
        let everything: String
        let prefixLength: Int
        var description: String { family.description }
    }

    static let cases = [
        Case(family: .ipv4, guarded: "192.0.2.1", other: "192.0.2.2", everything: "0.0.0.0/0", prefixLength: 24),
        Case(family: .ipv6, guarded: "2001:db8::1", other: "2001:db8::2", everything: "::/0", prefixLength: 64),
    ]

    /// A bound, non-blocking UDP socket made in `namespace`, bypassing IPsec policies when asked.
    static func socket(in namespace: NetworkNamespace, _ local: Endpoint, bypass: Bool) throws -> Int32 {
        try namespace.perform { () throws -> Int32 in
            let fd = Glibc.socket(local.address.family == .ipv4 ? AF_INET : AF_INET6,
                                  Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw LabError("socket: errno \(errno)") }
            if bypass { try SocketPolicy.bypass(descriptor: fd, family: local.address.family) }
            guard SocketAddress(local).withPointer({ bind(fd, $0, $1) }) == 0 else {
                let error = errno
                close(fd)
                throw LabError("bind \(local): errno \(error)")
            }
            return fd
        }
    }

    /// Sends `text`; returns 0 or the errno of the refusal.
    static func send(_ fd: Int32, _ text: String, to remote: Endpoint) -> Int32 {
        let bytes = Array(text.utf8)
        let sent = bytes.withUnsafeBytes { buffer in
            SocketAddress(remote).withPointer { sendto(fd, buffer.baseAddress, buffer.count, 0, $0, $1) }
        }
        return sent == bytes.count ? 0 : errno
    }

    /// Every datagram waiting on `fd` now (non-blocking).
    static func drain(_ fd: Int32) -> [String] {
        var received: [String] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count >= 0 else { return received }
            received.append(String(decoding: buffer[0..<count], as: UTF8.self))
        }
    }

    /// Waits (generous deadline) until `fd` has received `text`, keeping everything else it received.
    static func await(_ text: String, on fd: Int32, also seen: inout [String]) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            seen += drain(fd)
            if seen.contains(text) { return true }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, 100)
        }
        return false
    }

    /// The namespace's XFRM counter `name` (/proc/net/xfrm_stat), e.g. XfrmInPolBlock.
    static func xfrmStat(_ namespace: NetworkNamespace, _ name: String) throws -> Int {
        let text = try namespace.exec(["cat", "/proc/net/xfrm_stat"]).stdout
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix(name) }, "\(text)")
        return try #require(Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).last ?? ""), "\(line)")
    }

    @Test(arguments: cases)
    func aBypassedSocketCrossesAFullTunnelBlockAndAPlainOneDoesNot(_ lab: Case) throws {
        let guarded = try NetworkNamespace(prefix: "byps")
        defer { guarded.destroy() }
        let other = try NetworkNamespace(prefix: "bypo")
        defer { other.destroy() }
        try NetworkNamespace.link(guarded, "wan0", "198.51.100.1/24", other, "wan0", "198.51.100.2/24")
        // The addresses under test beside the link's own; IPv6 without duplicate address detection (usable at once).
        for (namespace, address) in [(guarded, lab.guarded), (other, lab.other)] {
            try Command.check(["ip", "-n", namespace.name, "addr", "add", "\(address)/\(lab.prefixLength)", "dev", "wan0"]
                + (lab.family == .ipv6 ? ["nodad"] : []))
        }
        if lab.family == .ipv6 {
            // The ::/0 block also covers Neighbor Discovery (ICMPv6 between the same addresses): static neighbours.
            let macs = try [guarded, other].map { namespace in
                try #require(try namespace.ip("-o", "link", "show", "wan0").stdout
                    .components(separatedBy: "link/ether ").dropFirst().first?.split(separator: " ").first.map(String.init))
            }
            try guarded.ip("neigh", "add", lab.other, "lladdr", macs[1], "dev", "wan0", "nud", "permanent")
            try other.ip("neigh", "add", lab.guarded, "lladdr", macs[0], "dev", "wan0", "nud", "permanent")
        }
        let here = try #require(IPAddress(lab.guarded))
        let there = try #require(IPAddress(lab.other))

        // The fail-closed guard of a full tunnel, as vigild installs it: block out, in and fwd.
        let everything = try IPPrefix.parse(lab.everything)
        let block = try SelectorGuard(localSubnet: everything, remoteSubnet: everything, form: .block)
        let kernel = try guarded.perform { try NetlinkIPsecKernel() }
        for (id, request) in block.policies { try kernel.addPolicy(id, request) }
        let listed = try guarded.ip("xfrm", "policy").stdout
        #expect(listed.components(separatedBy: "action block").count - 1 == 3, "\(listed)")

        let bypassed = try Self.socket(in: guarded, Endpoint(here, 4500), bypass: true)
        defer { close(bypassed) }
        let plain = try Self.socket(in: guarded, Endpoint(here, 5500), bypass: false)
        defer { close(plain) }
        let peer = try Self.socket(in: other, Endpoint(there, 4500), bypass: false)
        defer { close(peer) }

        // Outbound: the block policy refuses the plain socket's datagram at sendto (EPERM); the bypassed one leaves.
        #expect(Self.send(plain, "plain out", to: Endpoint(there, 4500)) == EPERM)
        #expect(Self.send(bypassed, "bypassed out", to: Endpoint(there, 4500)) == 0)
        var atPeer: [String] = []
        #expect(Self.await("bypassed out", on: peer, also: &atPeer), "\(atPeer)")
        #expect(!atPeer.contains("plain out"))

        // Inbound: the plain socket's datagram is dropped by the in-policy (XfrmInPolBlock counts it), the bypassed
        // socket's arrives.
        let blockedBefore = try Self.xfrmStat(guarded, "XfrmInPolBlock")
        #expect(Self.send(peer, "to plain", to: Endpoint(here, 5500)) == 0)
        let deadline = Date().addingTimeInterval(10)
        while try Self.xfrmStat(guarded, "XfrmInPolBlock") == blockedBefore, Date() < deadline {
            var poller = pollfd(fd: plain, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, 50)
        }
        #expect(try Self.xfrmStat(guarded, "XfrmInPolBlock") > blockedBefore, "the in-policy never dropped anything")
        #expect(Self.send(peer, "to bypassed", to: Endpoint(here, 4500)) == 0)
        var atBypassed: [String] = []
        #expect(Self.await("to bypassed", on: bypassed, also: &atBypassed), "\(atBypassed)")
        #expect(Self.drain(plain).isEmpty, "the plain socket received through the block policy")

        // Control: with the guard gone, the plain socket sends again (the refusal above was the policy's).
        for (id, _) in block.policies { try kernel.deletePolicy(id) }
        #expect(Self.send(plain, "plain after", to: Endpoint(there, 4500)) == 0)
        print("[socket-bypass] \(lab.family): through a \(lab.everything) block guard, the bypassed socket sent and received; the plain one was refused (EPERM) and dropped (XfrmInPolBlock)")
    }

    /// A refusal names the option, the direction, the socket and the errno (an IPv6 option on an IPv4 socket).
    @Test func aRefusedBypassIsReportedWithItsSocketAndErrno() throws {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        let refusal = try #require(throws: SocketPolicy.Refusal.self) {
            try SocketPolicy.bypass(descriptor: fd, family: .ipv6)
        }
        #expect(refusal.descriptor == fd && refusal.direction == "in" && refusal.errno != 0)
        #expect(refusal.description.contains("IPV6_XFRM_POLICY (allow in) on socket \(fd)"), "\(refusal)")
    }
}
