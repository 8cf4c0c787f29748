import Foundation
import VigilControl
import VigilKernel

/// The kernel-ESP lab cases, run inside the QEMU guest (a stock kernel with ESP): vigild with `dataplane: kernel`
/// and its SAs in XFRM through libnl, strongSwan gateways with kernel-netlink, so both ends carry real kernel ESP.
/// Each case returns a `KernelESPCaseResult`; the host-side test reads them and expects each one separately.
public struct KernelESPCaseResult: Codable, Sendable {
    public var name: String
    public var failures: [String] = []
    public var notes: [String] = []
    public var seconds: Double = 0
    public var passed: Bool { failures.isEmpty }

    public init(name: String) { self.name = name }

    mutating func expect(_ condition: Bool, _ failure: @autoclosure () -> String) {
        if !condition { failures.append(failure()) }
    }

    mutating func note(_ line: String) { notes.append(line) }
}

public enum KernelESPLab {
    /// The cases `KernelESPTests` expects (correctness and order, never timing).
    public static let caseNames = [
        "tunnel-ikev2-esp", "tunnel-ikev2-udp", "tunnel-ikev1-esp", "tunnel-ikev1-udp",
        "failover-no-clear-text", "no-peer-up-hold", "no-peer-up-restart", "rekey-under-traffic", "restart-reconciles",
        "full-tunnel", "failover-figures",
    ]
    /// The case `make bench-kernel-esp` runs alone to print figures: Vigil's kernel-mode failover beside strongSwan's
    /// (tested for order and correctness; its times under emulation are reported, never asserted).
    public static let benchmarkNames = ["failover-figures"]

    /// Runs one case by name; a case that throws is a failure carrying the error and the daemon's log.
    public static func run(_ name: String) -> KernelESPCaseResult {
        var result = KernelESPCaseResult(name: name)
        let started = Date()
        do {
            switch name {
            case "tunnel-ikev2-esp": try tunnel(ikeVersion: 2, encapsulated: false, &result)
            case "tunnel-ikev2-udp": try tunnel(ikeVersion: 2, encapsulated: true, &result)
            case "tunnel-ikev1-esp": try tunnel(ikeVersion: 1, encapsulated: false, &result)
            case "tunnel-ikev1-udp": try tunnel(ikeVersion: 1, encapsulated: true, &result)
            case "failover-no-clear-text": try failover(&result)
            case "no-peer-up-hold": try noPeerUp(action: "hold", &result)
            case "no-peer-up-restart": try noPeerUp(action: "restart", &result)
            case "rekey-under-traffic": try rekey(&result)
            case "restart-reconciles": try restart(&result)
            case "full-tunnel": try fullTunnel(&result)
            case "failover-figures": try figures(&result)
            default: result.failures.append("no such case")
            }
        } catch {
            result.failures.append("\(error)")
        }
        result.seconds = Date().timeIntervalSince(started)
        return result
    }

    // MARK: The lab

    /// A vigild lab with real kernel ESP on both sides.
    static func kernelSettings(ikeVersion: Int, encapsulated: Bool, gateways: Int) -> VigildLab.Settings {
        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        settings.dataPlane = .kernel
        settings.kernelSAs = true
        settings.gatewayKernelESP = true
        settings.encapsulation = encapsulated ? "force" : "auto"
        settings.gatewayCount = gateways
        // Software-emulated CPUs: elliptic-curve DH (MODP-2048 in a debug build and in charon's gmp takes seconds
        // there) and a connect timeout that leaves the emulated peer time to answer.
        settings.ikeProposal = "aes256-sha256-ecp256"
        settings.connectTimeout = "10s"
        return settings
    }

    static func up(_ lab: VigildLab, peer: String = FailoverLab.gatewayAddress(0), timeout: Double = 30) throws {
        guard try lab.waitForEvent(timeout: timeout, { $0.kind == "dataplane-programmed" && $0.peer == peer }) != nil else {
            let charons = lab.lab.strongSwans.compactMap { $0 }.map { "charon in \($0.namespace.name):\n\($0.log.suffix(3000))" }
            throw LabError("the tunnel with \(peer) did not come up:\n\(String(lab.diagnostics.suffix(3000)))\n\(charons.joined(separator: "\n"))")
        }
    }

    static func status(_ lab: VigildLab) throws -> StatusReport {
        guard let status = try lab.request(ControlRequest(command: .status)).status else { throw LabError("status returned nothing") }
        return status
    }

    /// Pings the remote service from the host (or from `namespace`, with `source` as the source address); returns
    /// replies received.
    static func ping(_ lab: VigildLab, count: Int, interval: String = "0.05", from namespace: NetworkNamespace? = nil,
                     source: String? = nil) throws -> Int {
        let result = try (namespace ?? lab.lab.host).run(["ping", "-n", "-q", "-c", "\(count)", "-i", interval, "-W", "2"]
            + (source.map { ["-I", $0] } ?? []) + [FailoverLab.remoteServiceAddress])
        let summary = result.stdout.split(separator: "\n").first { $0.contains("received") } ?? ""
        let parts = summary.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return parts.dropFirst().first.flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0
    }

    /// How long a TCP transfer may take to start and to finish, emulated CPU included.
    static let tcpDeadlineSeconds = 60.0
    static let tcpConnectTimeoutMilliseconds = 3000

    /// TCP from the host to an iperf3 server on the gateway: bytes the client reports sent, 0 when it failed.
    static func tcp(_ lab: VigildLab, gateway: Int = 0, bytes: Int) throws -> (sent: Bool, output: String) {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["ip", "netns", "exec", lab.lab.gateways[gateway].name, "iperf3", "-s", "-1", "-B", FailoverLab.remoteServiceAddress]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            if server.isRunning { server.terminate() }
            server.waitUntilExit()
        }
        var last = ""
        // Bounded: a tunnel that carries nothing fails the transfer within seconds instead of hanging the guest
        // (iperf3 otherwise waits for the kernel's TCP connect timeout, minutes, on every try).
        let deadline = Date().addingTimeInterval(tcpDeadlineSeconds)
        while Date() < deadline {
            let left = max(1, Int(deadline.timeIntervalSinceNow.rounded(.up)))
            let client = try lab.lab.host.run(["timeout", "-s", "KILL", "\(left)", "iperf3", "-c", FailoverLab.remoteServiceAddress,
                                               "-n", "\(bytes)", "-4", "--connect-timeout", "\(tcpConnectTimeoutMilliseconds)"])
            if client.succeeded { return (true, client.stdout) }
            last = client.stdout + client.stderr
            usleep(100_000)
        }
        return (false, last)
    }

    /// An nftables counter on the WAN bridge of packets whose addresses are protected ones: any such packet on the
    /// WAN is clear text (ESP carries the gateways' addresses outside).
    final class ClearTextWatch {
        let wan: NetworkNamespace
        static let table = "vigil_clear_text_watch"

        init(_ lab: FailoverLab) throws {
            wan = lab.wan
            let rules = """
            table bridge \(Self.table) {
                chain forward {
                    type filter hook forward priority -10; policy accept;
                    ip saddr \(FailoverLab.localSubnet) counter
                    ip daddr \(FailoverLab.localSubnet) counter
                }
            }
            """
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-watch-\(UUID().uuidString.prefix(8)).nft")
            try rules.write(to: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: file) }
            try wan.exec(["nft", "-f", file.path])
        }

        /// Packets counted so far.
        func packets() throws -> Int {
            let text = try wan.exec(["nft", "list", "table", "bridge", Self.table]).stdout
            var total = 0
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ")
                if let index = words.firstIndex(of: "packets"), index + 1 < words.count { total += Int(words[index + 1]) ?? 0 }
            }
            return total
        }
    }

    /// A default route on the Vigil gateway, as on any real gateway: a packet no policy protects leaves in clear
    /// (towards `via`) instead of failing for want of a route.
    static func addDefaultRoute(_ lab: VigildLab, via: String) throws {
        try lab.lab.vigil.ip("route", "add", "default", "via", via)
    }

    /// A tunnel with the first gateway, a default route on the Vigil gateway towards `defaultVia`, the clear-text
    /// watch on the WAN and pings every 20 ms from the host.
    static func watchedTunnel(_ settings: VigildLab.Settings, defaultVia: String) throws -> (VigildLab, ClearTextWatch, PingMonitor) {
        let lab = try VigildLab(settings)
        do {
            try addDefaultRoute(lab, via: defaultVia)
            let watch = try ClearTextWatch(lab.lab)
            try lab.startGateways()
            try lab.startVigild()
            try up(lab)
            let ping = PingMonitor(namespace: lab.lab.host, destination: FailoverLab.remoteServiceAddress, interval: .milliseconds(20))
            try ping.start()
            return (lab, watch, ping)
        } catch {
            lab.destroy()
            throw error
        }
    }

    /// Vigil's SAs in the Vigil gateway's kernel (reqid in Vigil's band).
    static func vigilStates(_ lab: VigildLab) throws -> [XFRMStateListing.State] {
        try XFRMStateListing.read(lab.lab.vigil).states.filter { (0x5649_0000...0x5649_FFFF).contains($0.reqid) }
    }

    /// Gateway 1's kernel state and charon's log, for a case whose traffic did not come back.
    static func gatewayEvidence(_ lab: VigildLab) throws -> String {
        let gateway = lab.lab.gateways[0]
        var text = "gateway 1's kernel and charon:\n"
        for command in [["ip", "-s", "xfrm", "state"], ["ip", "-s", "xfrm", "policy"], ["ip", "route"], ["nstat", "-az", "Xfrm*"]] {
            let output = try gateway.run(command)
            text += "$ \(command.joined(separator: " "))\n\(output.stdout)\(output.stderr)\n"
        }
        let ours = try lab.lab.vigil.run(["nstat", "-az", "Xfrm*"])
        text += "vigild's side: $ nstat -az Xfrm*\n\(ours.stdout)\(ours.stderr)\n"
        let log = lab.lab.strongSwans[0]?.log ?? ""
        return text + "charon's log (end):\n" + String(log.suffix(5000))
    }

    // MARK: Case 1: tunnels up, traffic through kernel ESP, SAs as negotiated

    static func tunnel(ikeVersion: Int, encapsulated: Bool, _ result: inout KernelESPCaseResult) throws {
        var settings = kernelSettings(ikeVersion: ikeVersion, encapsulated: encapsulated, gateways: 1)
        // AEAD for IKEv2's plain ESP; encrypt-then-MAC otherwise (Vigil's IKEv1 offers no AEAD ESP).
        let aead = ikeVersion == 2 && !encapsulated
        settings.espProposal = aead ? "aes256gcm16" : "aes256-sha256"
        let childLifetime: UInt64 = 3600
        settings.childLifetime = "\(childLifetime)s"
        let started = Date()
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        let gatewaysUp = Date()
        try lab.startVigild()
        let vigildUp = Date()
        try up(lab)
        result.note(String(format: "tunnel up %.1f s after the start (lab and gateways %.1f s, vigild start %.1f s); events: ",
                           Date().timeIntervalSince(started), gatewaysUp.timeIntervalSince(started), vigildUp.timeIntervalSince(gatewaysUp))
            + (try lab.events()).prefix(14).map { String(format: "%.2f %@", $0.time, $0.kind) }.joined(separator: ", "))
        for failed in try lab.events().filter({ $0.kind == "negotiation-failed" }).prefix(3) {
            result.note(String(format: "negotiation failed at %.2f s: %@", failed.time, failed.detail))
        }
        let gateway = FailoverLab.gatewayAddress(0)

        let status = try status(lab)
        result.expect(status.dataplane == "kernel (XFRM)", "vigild's data plane is \(status.dataplane), not the kernel's")
        let children = status.entries.flatMap(\.childSAs)
        result.expect(children.count == 1, "vigild shows \(children.count) Child SAs, not 1")
        guard let child = children.first else { return }
        result.note("vigild: Child SA in \(child.inboundSPI) out \(child.outboundSPI), \(child.algorithms)\(child.encapsulated ? ", UDP-encapsulated" : "")")
        result.expect(child.inboundSPI.count == 8 && child.outboundSPI.count == 8, "SPIs not printed with 8 digits: \(child.inboundSPI)/\(child.outboundSPI)")
        result.expect(child.encapsulated == encapsulated, "status says encapsulated \(child.encapsulated), expected \(encapsulated)")

        let before = try vigilStates(lab)
        result.expect(before.count == 2, "Vigil has \(before.count) SAs in the kernel, not 2:\n\(before)")
        let inbound = UInt32(child.inboundSPI, radix: 16).flatMap { spi in before.first { $0.spi == spi } }
        let outbound = UInt32(child.outboundSPI, radix: 16).flatMap { spi in before.first { $0.spi == spi } }
        result.expect(inbound?.destination == FailoverLab.vigilWANAddress && inbound?.source == gateway, "inbound SA \(String(describing: inbound)) is not \(gateway)->\(FailoverLab.vigilWANAddress)")
        result.expect(outbound?.destination == gateway && outbound?.source == FailoverLab.vigilWANAddress, "outbound SA \(String(describing: outbound)) is not \(FailoverLab.vigilWANAddress)->\(gateway)")
        if let inbound, let outbound {
            result.expect(inbound.reqid == outbound.reqid, "inbound reqid \(inbound.reqid) != outbound reqid \(outbound.reqid)")
            let policies = try lab.lab.vigil.exec(["ip", "xfrm", "policy"]).stdout
            result.expect(policies.contains("reqid \(outbound.reqid) "), "no policy template with reqid \(outbound.reqid):\n\(policies)")
            for state in [inbound, outbound] {
                let expected = aead ? ["aead rfc4106(gcm(aes)) (288 bits) 128"] : ["enc cbc(aes) (256 bits)", "auth-trunc hmac(sha256) (256 bits) 128"]
                result.expect(expected.allSatisfy { state.algorithms.contains($0) }, "SA \(state.spi) algorithms \(state.algorithms), expected \(expected)")
                result.expect((state.encapsulation != nil) == encapsulated, "SA \(state.spi) encapsulation \(state.encapsulation ?? "none"), expected \(encapsulated ? "espinudp 4500" : "none")")
                if encapsulated { result.expect(state.encapsulation?.hasPrefix("espinudp sport 4500 dport 4500") == true, "SA encap \(state.encapsulation ?? "")") }
                // The kernel's own expiry: a margin past the negotiated lifetime (IKEv1: past the longest a
                // responder may have accepted), a backstop for when vigild is gone.
                let negotiated = ikeVersion == 2 ? childLifetime : max(childLifetime, 86_400)
                let soft = negotiated + KernelLifetimeMargin.softSeconds, hard = negotiated + KernelLifetimeMargin.hardSeconds
                result.expect(state.softAddExpiry == soft && state.hardAddExpiry == hard,
                              "SA \(state.spi) kernel expiry soft \(state.softAddExpiry.map(String.init) ?? "?") s, hard \(state.hardAddExpiry.map(String.init) ?? "?") s; expected \(soft) s and \(hard) s")
            }
            // The gateway's kernel holds the same two SPIs (strongSwan installed them through kernel-netlink).
            let peerSPIs = Set(try XFRMStateListing.read(lab.lab.gateways[0]).states.map(\.spi))
            result.expect(peerSPIs.isSuperset(of: [inbound.spi, outbound.spi]), "the gateway's kernel lacks the SPIs: \(peerSPIs.map { String(format: "%08x", $0) })")
        }

        let pings = 40
        let received = try ping(lab, count: pings)
        result.expect(received >= pings - 1, "\(received) of \(pings) pings through the tunnel")
        if received < pings - 1 { result.note(try gatewayEvidence(lab)) }
        let afterPing = try vigilStates(lab)
        for (name, spi) in [("inbound", inbound?.spi), ("outbound", outbound?.spi)] {
            guard let spi, let old = before.first(where: { $0.spi == spi }), let new = afterPing.first(where: { $0.spi == spi }) else { continue }
            // Each echo (request out, reply in) is an 84-byte IPv4 packet; the kernel counts it with at most the
            // outer IPv4, UDP and ESP headers it adds (20 + 8 + 8 + IV 16).
            let packets = new.packets - old.packets
            let bytes = new.bytes - old.bytes
            result.expect(packets == UInt64(received) || (name == "outbound" && packets == UInt64(pings)),
                          "\(name) SA counted \(packets) packets for \(pings) pings (\(received) answered)")
            result.expect(packets > 0 && bytes >= packets * 84 && bytes <= packets * (84 + 52),
                          "\(name) SA counted \(bytes) bytes for \(packets) 84-byte packets")
            if packets > 0 { result.note("\(name) SA: \(bytes / packets) bytes counted per 84-byte echo packet") }
        }
        let tcpBytes = 1_000_000
        let tcpStarted = Date()
        let (tcpDone, tcpOutput) = try tcp(lab, bytes: tcpBytes)
        result.note(String(format: "TCP %d bytes in %.1f s", tcpBytes, Date().timeIntervalSince(tcpStarted)))
        result.expect(tcpDone, "TCP transfer through the tunnel failed: \(tcpOutput.suffix(600))")

        let after = try vigilStates(lab)
        for (name, spi) in [("inbound", inbound?.spi), ("outbound", outbound?.spi)] {
            guard let spi, let old = before.first(where: { $0.spi == spi }), let new = after.first(where: { $0.spi == spi }) else {
                result.failures.append("\(name) SA missing after the traffic")
                continue
            }
            let packets = new.packets - old.packets
            let bytes = new.bytes - old.bytes
            result.note("\(name) SA \(String(format: "%08x", spi)): +\(bytes) bytes, +\(packets) packets")
            result.expect(packets >= UInt64(pings - 1), "\(name) SA counted \(packets) packets for \(pings) pings and a TCP transfer")
            // The data flows host -> gateway: outbound carries the 4 MB, inbound the ACKs and echo replies.
            // TCP: the counters move (how much they count per GSO segment is reported, not asserted).
            if name == "outbound" {
                result.expect(bytes > 0, "outbound SA counted nothing for a \(tcpBytes)-byte TCP transfer")
                result.note(String(format: "outbound SA counted %.0f%% of the TCP payload in bytes", Double(bytes) * 100 / Double(tcpBytes)))
            }
        }
        let metrics = try lab.request(ControlRequest(command: .metrics)).metrics ?? ""
        let undelivered = metrics.split(separator: "\n").first { $0.hasPrefix("vigil_esp_without_dataplane_total ") }
        result.expect(undelivered == nil, "ESP reached vigild instead of the kernel: \(undelivered ?? "")")
        let errors = try lab.events().filter { $0.kind == "esp-not-decapsulated" }
        result.expect(errors.isEmpty, "esp-not-decapsulated events: \(errors.map(\.detail))")
    }

    // MARK: Case 2: failover after SIGKILL of the active peer, never a clear packet on the WAN

    static func failover(_ result: inout KernelESPCaseResult) throws {
        var settings = kernelSettings(ikeVersion: 2, encapsulated: false, gateways: 2)
        settings.espProposal = "aes256gcm16"
        let next = FailoverLab.gatewayAddress(1)
        let (lab, watch, ping) = try watchedTunnel(settings, defaultVia: next)
        defer { ping.stop(); lab.destroy() }
        usleep(1_000_000)
        let before = try vigilStates(lab)
        let killedAt = Date()
        lab.lab.kill(0)
        let moved = try lab.waitForEvent(timeout: 30) { $0.kind == "dataplane-programmed" && $0.peer == next && VigildLab.date(of: $0) > killedAt }
        result.expect(moved != nil, "vigild did not move to \(next) within 30 s")
        let movedAt = moved.map(VigildLab.date(of:)) ?? killedAt
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, !ping.repliesSoFar().contains(where: { $0.received > movedAt }) { usleep(20_000) }
        usleep(300_000)
        let report = ping.stop()
        let timeline = try lab.failoverTimeline(failedAt: killedAt, failure: "SIGKILL", dead: FailoverLab.gatewayAddress(0), next: next, ping: report)
        result.note(timeline.rendered(expected: [.killed, .declaredDead, .phase2Up, .dataPlaneReprogrammed, .firstPingThrough]))
        let gap = report.outage(after: killedAt)
        result.expect(gap?.recovered ?? report.replies.contains { $0.received > killedAt.addingTimeInterval(1) }, "traffic did not resume after the failover: \(report.summary)")
        if let moved { result.note("reprogrammed: \(moved.detail)") }

        let after = try vigilStates(lab)
        result.expect(!after.contains { $0.destination == FailoverLab.gatewayAddress(0) || $0.source == FailoverLab.gatewayAddress(0) },
                      "SAs with the dead gateway remain: \(after)")
        result.expect(after.contains { $0.destination == next } && after.contains { $0.source == next }, "no SA pair with \(next): \(after)")
        result.expect(Set(after.map(\.spi)).isDisjoint(with: before.map(\.spi)), "old SPIs still installed")
        let policies = try lab.lab.vigil.exec(["ip", "xfrm", "policy"]).stdout
        result.expect(policies.contains("dst \(next)") && !policies.contains("dst \(FailoverLab.gatewayAddress(0))"), "policy templates not repointed to \(next):\n\(policies)")
        let clear = try watch.packets()
        result.note("clear-text packets with protected addresses on the WAN: \(clear)")
        result.expect(clear == 0, "\(clear) protected packets crossed the WAN in clear during the failover")
    }

    /// The only peer dies and stays dead: with DPD action `action`, protected traffic waits (or is dropped) but never
    /// leaves in clear, though a default route would carry it.
    static func noPeerUp(action: String, _ result: inout KernelESPCaseResult) throws {
        var settings = kernelSettings(ikeVersion: 2, encapsulated: false, gateways: 1)
        settings.espProposal = "aes256gcm16"
        settings.action = action
        let (lab, watch, ping) = try watchedTunnel(settings, defaultVia: FailoverLab.gatewayAddress(0))
        defer { ping.stop(); lab.destroy() }
        usleep(500_000)
        let killedAt = Date()
        lab.lab.kill(0)
        let dead = try lab.waitForEvent(timeout: 20) { $0.kind == "declared-dead" && VigildLab.date(of: $0) > killedAt }
        result.expect(dead != nil, "the dead peer was not declared dead within 20 s")
        usleep(4_000_000)  // traffic keeps coming while no peer is up
        let report = ping.stop()
        result.note("ping while no peer is up: \(report.summary)")
        let policies = try lab.lab.vigil.exec(["ip", "xfrm", "policy"]).stdout
        result.note("policies while no peer is up:\n\(policies.split(separator: "\n").filter { $0.hasPrefix("src") || $0.contains("action") || $0.contains("tmpl") }.joined(separator: "\n"))")
        let clear = try watch.packets()
        result.note("clear-text packets with protected addresses on the WAN: \(clear)")
        result.expect(clear == 0, "\(clear) protected packets crossed the WAN in clear while no peer was up (action \(action))")
    }

    // MARK: Case 3: Child SA and IKE SA rekeys under traffic

    static func rekey(_ result: inout KernelESPCaseResult) throws {
        var settings = kernelSettings(ikeVersion: 2, encapsulated: false, gateways: 1)
        settings.espProposal = "aes256gcm16"
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways(rekeyTime: "14s", childRekeyTime: "6s")
        try lab.startVigild()
        try up(lab)
        let first = try vigilStates(lab)
        let ping = PingMonitor(namespace: lab.lab.host, destination: FailoverLab.remoteServiceAddress, interval: .milliseconds(20))
        try ping.start()
        let started = Date()
        var rekeys: [DaemonEvent] = []
        while Date().timeIntervalSince(started) < 40 {
            rekeys = try lab.events().filter { $0.kind == "phase2-rekeyed" || $0.kind == "phase1-rekeyed" }
            if rekeys.filter({ $0.kind == "phase2-rekeyed" }).count >= 2 && rekeys.contains(where: { $0.kind == "phase1-rekeyed" }) { break }
            usleep(200_000)
        }
        usleep(1_000_000)
        let report = ping.stop()
        let childRekeys = rekeys.filter { $0.kind == "phase2-rekeyed" }.count
        let ikeRekeys = rekeys.filter { $0.kind == "phase1-rekeyed" }.count
        result.note("\(childRekeys) Child SA rekeys, \(ikeRekeys) IKE SA rekeys in \(String(format: "%.1f", Date().timeIntervalSince(started))) s; ping \(report.summary)")
        result.expect(childRekeys >= 2, "\(childRekeys) Child SA rekeys seen, expected 2")
        result.expect(ikeRekeys >= 1, "no IKE SA rekey seen")
        result.expect(report.lost <= 5, "\(report.lost) of \(report.sent) pings lost across the rekeys")
        let last = try vigilStates(lab)
        result.expect(Set(last.map(\.spi)).isDisjoint(with: first.map(\.spi)), "the first Child SA's SPIs are still installed: \(last)")
        result.expect(last.count == 2, "\(last.count) Vigil SAs after the rekeys, expected 2:\n\(last)")
        let status = try status(lab)
        let inbound = status.entries.flatMap(\.childSAs).compactMap { UInt32($0.inboundSPI, radix: 16) }
        result.expect(inbound.count == 1 && last.contains { $0.spi == inbound[0] }, "status Child SA \(inbound) is not what the kernel holds")
    }

    // MARK: Case: a full tunnel whose policies cover vigild's own IKE

    /// vigild's selectors 192.0.2.0/24 (its WAN address) to 0.0.0.0/0, the gateway's the mirror: the block guard at
    /// start and then the tunnel's own policies cover vigild's IKE packets to the gateway. Pings from vigild's
    /// address go through kernel ESP, and IKE keeps working under the tunnel (a Child SA rekey, DPD rounds) only
    /// because the IKE sockets bypass IPsec policies.
    static func fullTunnel(_ result: inout KernelESPCaseResult) throws {
        var settings = kernelSettings(ikeVersion: 2, encapsulated: false, gateways: 1)
        settings.espProposal = "aes256gcm16"
        settings.traffic = ("192.0.2.0/24", "0.0.0.0/0")
        settings.gatewayTraffic = ("0.0.0.0/0", "192.0.2.0/24")
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways(childRekeyTime: "8s")
        try lab.startVigild()
        let reconciled = try lab.waitForEvent(timeout: 10) { $0.kind == "kernel-reconciled" }
        result.expect(reconciled?.detail.contains("1 block and 0 hold guards for 1 selector pairs") == true,
                      "the full tunnel was not guarded at start: \(reconciled?.detail ?? "no kernel-reconciled event")")
        result.expect(reconciled?.detail.lowercased().contains("not guarded") == false, "reported unguarded: \(reconciled?.detail ?? "")")
        try up(lab)
        let programmed = try lab.events().first { $0.kind == "dataplane-programmed" }
        let policies = try lab.lab.vigil.exec(["ip", "xfrm", "policy", "list", "dir", "out"]).stdout
        result.expect(policies.contains("src 192.0.2.0/24 dst 0.0.0.0/0") && !policies.contains("action block"),
                      "the tunnel's outbound policy is not in place of the guard:\n\(policies)")

        let before = try ping(lab, count: 20, from: lab.lab.vigil, source: FailoverLab.vigilWANAddress)
        result.expect(before >= 18, "\(before) of 20 pings through the full tunnel came back")
        let carried = try vigilStates(lab).map(\.packets).reduce(0, +)
        result.expect(carried >= 36, "Vigil's SAs counted \(carried) packets for \(before) pings")

        // IKE under the tunnel's own policies: a CREATE_CHILD_SA rekey (strongSwan's, every 8 s) and DPD rounds.
        let started = Date()
        var rekeyed = false, answered = 0
        while Date().timeIntervalSince(started) < 60 {
            let events = try lab.events()
            rekeyed = events.contains { $0.kind == "phase2-rekeyed" }
            answered = events.filter { $0.kind == "liveness-answered" && $0.time > (programmed?.time ?? 0) }.count
            if rekeyed && answered >= 3 { break }
            usleep(200_000)
        }
        result.expect(rekeyed, "no Child SA rekey within 60 s under the full tunnel:\n\(String(lab.diagnostics.suffix(3000)))")
        result.expect(answered >= 3, "\(answered) DPD rounds answered under the full tunnel, expected 3")
        let after = try ping(lab, count: 20, from: lab.lab.vigil, source: FailoverLab.vigilWANAddress)
        result.expect(after >= 18, "\(after) of 20 pings came back after the rekey")
        result.expect(try lab.events().allSatisfy { $0.kind != "declared-dead" }, "the gateway was declared dead under the full tunnel")
        result.note("full tunnel 192.0.2.0/24 <-> 0.0.0.0/0: guarded at start, \(before)/20 and \(after)/20 pings, "
            + "Child SA rekeyed, \(answered) DPD rounds answered, \(carried) packets on Vigil's SAs")
    }

    // MARK: Case 4: SIGKILL of vigild, restart, reconciliation

    static func restart(_ result: inout KernelESPCaseResult) throws {
        var settings = kernelSettings(ikeVersion: 2, encapsulated: false, gateways: 1)
        settings.espProposal = "aes256gcm16"
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try addDefaultRoute(lab, via: FailoverLab.gatewayAddress(0))
        try lab.startGateways()
        try lab.startVigild()
        try up(lab)
        // Another IKE daemon's SA and policy (reqid and priority outside Vigil's bands).
        let vigil = lab.lab.vigil
        try vigil.exec(["ip", "xfrm", "state", "add", "src", FailoverLab.vigilWANAddress, "dst", "198.51.100.7", "proto", "esp",
                        "spi", "0x00c0ffee", "reqid", "4242", "mode", "tunnel", "aead", "rfc4106(gcm(aes))",
                        "0x" + String(repeating: "ab", count: 36), "128"])
        try vigil.exec(["ip", "xfrm", "policy", "add", "src", "10.7.0.0/24", "dst", "10.8.0.0/24", "dir", "out", "priority", "1000",
                        "tmpl", "src", FailoverLab.vigilWANAddress, "dst", "198.51.100.7", "proto", "esp", "reqid", "4242", "mode", "tunnel"])
        let old = try vigilStates(lab)
        let ping = PingMonitor(namespace: lab.lab.host, destination: FailoverLab.remoteServiceAddress, interval: .milliseconds(20))
        try ping.start()
        defer { ping.stop() }
        usleep(500_000)
        let watch = try ClearTextWatch(lab.lab)
        let killedAt = Date()
        lab.vigild.signal(SIGKILL)
        lab.vigild.stop()
        let restarted = Date()
        try lab.startVigild()
        let reconciled = try lab.waitForEvent(timeout: 10) { $0.kind == "kernel-reconciled" }
        result.note("reconciled: \(reconciled?.detail ?? "no event")")
        result.expect(reconciled?.detail.contains("removed ") == true, "no reconciliation event: \(reconciled?.detail ?? "none")")
        try up(lab)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, !ping.repliesSoFar().contains(where: { $0.received > restarted.addingTimeInterval(0.2) }) { usleep(20_000) }
        usleep(300_000)
        let report = ping.stop()
        if let gap = report.outage(after: killedAt) { result.note("ping silence around the restart: \(PingOutput.milliseconds(gap.duration))") }
        result.expect(report.replies.contains { $0.received > restarted }, "traffic did not come back after the restart: \(report.summary)")

        let states = try XFRMStateListing.read(vigil)
        result.expect(states.state(spi: 0x00c0_ffee) != nil, "the foreign SA (reqid 4242) was removed")
        let policies = try vigil.exec(["ip", "xfrm", "policy"]).stdout
        result.expect(policies.contains("src 10.7.0.0/24 dst 10.8.0.0/24"), "the foreign policy was removed:\n\(policies)")
        let now = try vigilStates(lab)
        result.expect(Set(now.map(\.spi)).isDisjoint(with: old.map(\.spi)), "the killed run's SAs are still installed: \(old.filter { s in now.contains { $0.spi == s.spi } })")
        result.expect(now.count == 2, "\(now.count) Vigil SAs after the restart, expected 2")
        let clear = try watch.packets()
        result.note("clear-text packets with protected addresses on the WAN across the restart: \(clear)")
        result.expect(clear == 0, "\(clear) protected packets crossed the WAN in clear across vigild's SIGKILL and restart")
    }

    // MARK: Case 5: failover figures, Vigil against strongSwan, kernel ESP everywhere

    static func figures(_ result: inout KernelESPCaseResult) throws {
        let settings = kernelSettings(ikeVersion: 2, encapsulated: false, gateways: 3)
        let vigil = try VigildLab.measureFailover(ikeVersion: 2, bound: .seconds(30), settings: settings)
        var baseline = StrongSwanBaseline.Configuration(ikeVersion: 2)
        baseline.kernelESP = true
        baseline.ikeProposal = settings.ikeProposal
        baseline.recoveryBound = .seconds(60)
        baseline.handover = .updownHook
        let strongSwan = try StrongSwanBaseline.run(baseline)
        result.note("strongSwan's handover: \(baseline.handover.rawValue) (two connections, the second initiated by an updown hook)")
        if vigil.sinceKill(.declaredDead) == nil || vigil.sinceKill(.phase2Up) == nil {
            result.note("vigild after the kill: \(vigil.evidence.suffix(6000))")
        }
        if strongSwan.recoveredVia == nil {
            result.note("strongSwan after the kill: initiations \(strongSwan.initiations), gateway 2 alone works: \(strongSwan.nextGatewayWorks); "
                + "charon's log:\n\(strongSwan.logAfterKill.suffix(4000))")
        }
        for measurement in [vigil, strongSwan.measurement] {
            let dead = measurement.sinceKill(.declaredDead)
            let phase2 = measurement.sinceKill(.phase2Up)
            result.note("\(measurement.implementation): declared dead \(StrongSwanBaseline.describe(dead)), Child SA with the next gateway "
                + "\(StrongSwanBaseline.describe(phase2)), blackout \(measurement.blackout.map { PingOutput.milliseconds($0.duration) } ?? "none")")
            result.expect(measurement.recoveredVia != nil, "\(measurement.implementation) did not recover within its bound")
            result.expect(dead != nil, "\(measurement.implementation): the peer was never declared dead")
            result.expect(phase2 != nil, "\(measurement.implementation): no Child SA with the next gateway")
            if let dead, let phase2 { result.expect(dead <= phase2, "\(measurement.implementation): Child SA before the peer was declared dead") }
        }
        if let ours = vigil.sinceKill(.phase2Up), let theirs = strongSwan.timeToChildSAWithNextGateway {
            let ratio = StrongSwanBaseline.seconds(theirs) / max(StrongSwanBaseline.seconds(ours), 0.001)
            result.note(String(format: "strongSwan / Vigil time to a Child SA with the next gateway: %.1fx", ratio))
        }
    }
}
