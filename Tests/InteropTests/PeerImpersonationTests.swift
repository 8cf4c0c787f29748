import Foundation
import Testing
import VigilAddressing
import VigilDaemon
import VigilLab

#if canImport(Glibc)
import Glibc
#endif

/// Issue 13's end-to-end cases: only the peer's authenticated, fresh word moves a failover decision.
/// vigild against strongSwan gateways (periodic DPD: interval 1 s, retry 200 ms, 3 retries → dead 1.6 s after the
/// last proof of life); what stands on the dead peer's address afterwards is hostile.
@Suite(.serialized) struct PeerImpersonationTests {
    static let versions = [2]
    static let deathSchedule = 1.0 + 3 * 0.2
    static let retry = 0.2

    // MARK: A reflector on the dead peer's address

    /// Every datagram vigild sends to the dead peer's address comes straight back (a looping middlebox, or an
    /// attacker): vigild's own probes must never read as the peer's answer.
    @Test(arguments: versions)
    func aReflectorOnTheDeadPeersAddressDoesNotKeepItAlive(ikeVersion: Int) throws {
        try deadPeerImpersonated(ikeVersion: ikeVersion) { lab in
            try DatagramImpostor.start(in: lab.lab.gateways[0], address: FailoverLab.gatewayAddress(0), mode: .reflect)
        }
    }

    // MARK: Replayed answers from the dead peer's address

    /// What the peer sent while it was alive (R-U-THERE-ACKs, liveness responses, ESP) is captured on its link and
    /// replayed from its address after it died, again and again: old words are no proof of life.
    @Test(arguments: versions)
    func replayedAnswersFromTheDeadPeerDoNotKeepItAlive(ikeVersion: Int) throws {
        var capture: PacketCapture?
        try deadPeerImpersonated(ikeVersion: ikeVersion, beforeKill: { lab in
            capture = try PacketCapture.start(in: lab.lab.gateways[0], interface: "wan0",
                                              filter: "udp and src host \(FailoverLab.gatewayAddress(0))")
            // At least two liveness exchanges answered by the live peer (interval 1 s).
            let answered = ikeVersion == 1 ? "r-u-there-ack" : "liveness-answered"
            let before = try lab.events().filter { $0.kind == answered }.count
            try #require(try lab.waitForEvents(timeout: 10) { events in
                events.filter { $0.kind == answered }.count >= before + 2
            } != nil, "the live peer answered no probes:\n\(lab.diagnostics)")
        }) { lab in
            let datagrams = try #require(capture).stop()
            try #require(datagrams.contains { $0.sourcePort == 500 || $0.sourcePort == 4500 }, "nothing captured from the peer")
            return try DatagramImpostor.start(in: lab.lab.gateways[0], address: FailoverLab.gatewayAddress(0),
                                              mode: .replay(datagrams))
        }
    }

    /// The common case: establish with gateway 1, optionally observe it (`beforeKill`), SIGKILL its charon, put an
    /// impostor on its address, and require death on schedule and the move to gateway 2.
    private func deadPeerImpersonated(ikeVersion: Int, beforeKill: (VigildLab) throws -> Void = { _ in },
                                      impostor: (VigildLab) throws -> DatagramImpostor) throws {
        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        try lab.startGateways()
        try lab.startVigild()
        let first = FailoverLab.gatewayAddress(0)
        let second = FailoverLab.gatewayAddress(1)
        try lab.requireTunnel(with: first)
        try beforeKill(lab)

        let failedAt = Date()
        lab.lab.kill(0)
        try lab.lab.gateways[0].waitUntilUDPPortsAreFree([500, 4500], address: first)
        let fake = try impostor(lab)
        defer { fake.stop() }

        let moved = try lab.waitForEvent(timeout: 15) { $0.kind == "dataplane-programmed" && $0.peer == second }
        let events = try lab.events()
        let timeline = VigildFailoverTests.timeline(events, failedAt: failedAt)
        #expect(fake.datagramsSent > 0, "the impostor sent nothing: the case tests nothing\n\(timeline)")
        try #require(moved != nil, "no failover to the second peer while an impostor held the dead peer's address (\(fake.datagramsSent) datagrams sent):\n\(timeline)\n\(lab.diagnostics)")
        let dead = try #require(events.first { $0.kind == "declared-dead" && $0.peer == first }, "\(timeline)")
        let deadAfter = VigildFailoverTests.date(dead).timeIntervalSince(failedAt)
        #expect(deadAfter <= Self.deathSchedule + Self.retry + 0.3, "declared dead \(deadAfter) s after the failure\n\(timeline)")
        #expect(lab.vigild.isRunning)
        let entry = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first)
        #expect(entry.activePeer == second, "\(timeline)")
    }

    // MARK: Spoofed error notifies from the next peer's address during a failover

    /// While vigild negotiates with the next listed peer, a forged, unauthenticated NO_PROPOSAL_CHOSEN answers its
    /// first request from that peer's address (as an on-path attacker can). vigild must keep waiting for a valid
    /// answer: the real peer answers the retransmission and the failover completes there, with no failure recorded
    /// against that peer.
    @Test(arguments: versions)
    func aSpoofedErrorNotifyDoesNotDerailTheFailover(ikeVersion: Int) throws {
        var settings = VigildLab.Settings()
        settings.ikeVersion = ikeVersion
        // Room for the retransmissions (1 s, then 1.8 s later, ...) to reach the real charon, which starts only
        // once the forger let go of the port.
        settings.connectTimeout = "15s"
        let lab = try VigildLab(settings)
        defer { lab.destroy() }
        let first = FailoverLab.gatewayAddress(0)
        let second = FailoverLab.gatewayAddress(1)
        // Gateway 2's charon is not running yet: the forger holds its address and port first.
        try lab.startGateways([0, 2])
        try lab.startVigild()
        try lab.requireTunnel(with: first)
        let forger = try DatagramImpostor.start(in: lab.lab.gateways[1], address: second, mode: .refuseFirstRequest)
        let failedAt = Date()
        lab.lab.kill(0)
        // The forger answers vigild's first request to gateway 2, then lets go of the port for the real charon.
        let forged = forger.waitForFirstForgery(timeout: 15)
        forger.stop()
        try #require(forged, "vigild never asked gateway 2:\n\(lab.diagnostics)")
        let charon = try lab.lab.startStrongSwan(1, swanctlConf: lab.gatewayConfig(1))

        let moved = try lab.waitForEvent(timeout: 20) { $0.kind == "dataplane-programmed" && $0.peer == second }
        let events = try lab.events()
        let timeline = VigildFailoverTests.timeline(events, failedAt: failedAt)
        try #require(moved != nil, "the failover did not complete with gateway 2 after a forged notify:\n\(timeline)\n\(lab.diagnostics)\ncharon on gateway 2:\n\(charon.log.suffix(4000))")
        #expect(!events.contains { $0.kind == "negotiation-failed" && $0.peer == second },
                "an unauthenticated notify was recorded as gateway 2's failure:\n\(timeline)")
        let entry = try #require(try lab.request(ControlRequest(command: .status)).status?.entries.first)
        #expect(entry.activePeer == second, "\(timeline)")
    }
}

// MARK: - Test tools: an impostor on a peer's address, a packet capture

/// Binds UDP 500 and 4500 on a peer's address inside its namespace and misbehaves there until stopped.
final class DatagramImpostor: @unchecked Sendable {
    enum Mode: Sendable {
        /// Send every datagram back to its sender, from the port it arrived on.
        case reflect
        /// Send these (captured) datagrams to their original destinations, from their original ports, every 100 ms.
        case replay([CapturedDatagram])
        /// Answer the first IKE request with a forged, unauthenticated NO_PROPOSAL_CHOSEN, then go quiet.
        case refuseFirstRequest
    }

    private var sockets: [UInt16: UDPSocket]
    private let mode: Mode
    private let lock = NSLock()
    private var stopped = false
    private var sent = 0
    private var forged = false
    private let finished = NSCondition()
    private var done = false

    private init(sockets: [UInt16: UDPSocket], mode: Mode) {
        self.sockets = sockets
        self.mode = mode
    }

    static func start(in namespace: NetworkNamespace, address: String, mode: Mode) throws -> DatagramImpostor {
        let sockets = try namespace.runInside { () -> [UInt16: UDPSocket] in
            var sockets: [UInt16: UDPSocket] = [:]
            for port: UInt16 in [500, 4500] { sockets[port] = try UDPSocket(bindTo: Endpoint(IPAddress(address)!, port)) }
            return sockets
        }
        let impostor = DatagramImpostor(sockets: sockets, mode: mode)
        Thread { impostor.run() }.start()
        return impostor
    }

    var datagramsSent: Int { lock.withLock { sent } }
    private var isStopped: Bool { lock.withLock { stopped } }

    /// Stops the thread and closes the sockets (the port is free for a real charon afterwards).
    func stop() {
        lock.withLock { stopped = true }
        finished.lock()
        while !done { finished.wait() }
        finished.unlock()
        sockets.removeAll()
    }

    func waitForFirstForgery(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if lock.withLock({ forged }) { return true }
            usleep(5_000)
        }
        return lock.withLock { forged }
    }

    private func run() {
        defer {
            finished.lock()
            done = true
            finished.signal()
            finished.unlock()
        }
        var nextReplay = Date()
        let sockets = self.sockets
        while !isStopped {
            var fds = sockets.values.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            _ = poll(&fds, nfds_t(fds.count), 10)
            for (port, socket) in sockets {
                while let (bytes, from) = socket.receive() { received(bytes, from: from, on: port, socket) }
            }
            if case .replay(let datagrams) = mode, Date() >= nextReplay {
                nextReplay = Date().addingTimeInterval(0.1)
                for datagram in datagrams {
                    guard let socket = sockets[datagram.sourcePort],
                          let address = IPAddress(datagram.destination) else { continue }
                    if socket.send(datagram.payload, to: Endpoint(address, datagram.destinationPort)) == nil { count() }
                }
            }
        }
    }

    private func count() { lock.withLock { sent += 1 } }

    private func received(_ bytes: [UInt8], from: Endpoint, on port: UInt16, _ socket: UDPSocket) {
        switch mode {
        case .reflect:
            if socket.send(bytes, to: from) == nil { count() }
        case .replay:
            break
        case .refuseFirstRequest:
            guard !lock.withLock({ forged }) else { return }
            // On 4500 an IKE message follows the 4-byte non-ESP marker (RFC 3948 §2.2).
            let marker = port == 4500 ? 4 : 0
            guard bytes.count >= marker + 28, let reply = Self.forgedRefusal(Array(bytes[marker...])) else { return }
            if socket.send(Array(bytes[..<marker]) + reply, to: from) == nil {
                count()
                lock.withLock { forged = true }
            }
        }
    }

    /// An unauthenticated NO_PROPOSAL_CHOSEN answer to an IKEv2 IKE_SA_INIT or an ISAKMP Main Mode MM1.
    static func forgedRefusal(_ request: [UInt8]) -> [UInt8]? {
        let initiatorSPI = Array(request[0..<8])
        let major = request[17] >> 4
        func length(_ total: Int) -> [UInt8] { [UInt8(total >> 24), UInt8(total >> 16 & 0xFF), UInt8(total >> 8 & 0xFF), UInt8(total & 0xFF)] }
        if major == 2 {
            guard request[18] == 34 else { return nil }  // IKE_SA_INIT
            // RFC 7296 §3.1 header (next payload N = 41, Response flag) + §3.10 Notify NO_PROPOSAL_CHOSEN (14).
            let notify: [UInt8] = [0, 0, 0, 8, 0, 0, 0, 14]
            return initiatorSPI + [UInt8](repeating: 0, count: 8) + [41, 0x20, 34, 0x20] + [0, 0, 0, 0] + length(28 + notify.count) + notify
        }
        if major == 1 {
            guard request[18] == 2 else { return nil }  // Identity Protection (Main Mode)
            // RFC 2408 §3.1 header (next payload N = 11, Informational = 5) + §3.14 Notification, DOI 1,
            // protocol ISAKMP, NO-PROPOSAL-CHOSEN (14).
            let notification: [UInt8] = [0, 0, 0, 12, 0, 0, 0, 1, 1, 0, 0, 14]
            return initiatorSPI + [UInt8](repeating: 0, count: 8) + [11, 0x10, 5, 0] + [0, 0, 0, 0]
                + length(28 + notification.count) + notification
        }
        return nil
    }
}

/// One UDP datagram seen on a link.
struct CapturedDatagram: Sendable {
    var source: String
    var sourcePort: UInt16
    var destination: String
    var destinationPort: UInt16
    var payload: [UInt8]
}

/// tcpdump on an interface inside a namespace, writing a pcap file that `stop()` reads back as UDP datagrams.
final class PacketCapture: @unchecked Sendable {
    private let process: Process
    private let file: String

    private init(process: Process, file: String) {
        self.process = process
        self.file = file
    }

    static func start(in namespace: NetworkNamespace, interface: String, filter: String) throws -> PacketCapture {
        let file = "/tmp/vigil-capture-\(UUID().uuidString.prefix(8)).pcap"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ip")
        process.arguments = ["netns", "exec", namespace.name, "tcpdump", "-i", interface, "-U", "-n", "-w", file] + filter.split(separator: " ").map(String.init)
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // tcpdump says "listening on" once the capture runs.
        let deadline = Date().addingTimeInterval(10)
        var said = Data()
        while Date() < deadline, !String(decoding: said, as: UTF8.self).contains("listening on") {
            said += errors.fileHandleForReading.availableData
        }
        return PacketCapture(process: process, file: file)
    }

    /// SIGKILL, not SIGINT: a child of the test runner inherits its blocked signal mask (SIGINT and SIGTERM never
    /// arrive), and `-U` has written every packet out as it came. Waits for the exit with a deadline.
    func stop() throws -> [CapturedDatagram] {
        kill(process.processIdentifier, SIGKILL)
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        defer { try? FileManager.default.removeItem(atPath: file) }
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        return Self.udpDatagrams(pcap: bytes)
    }

    /// Reads a classic pcap file (Ethernet, IPv4) and returns its UDP datagrams.
    static func udpDatagrams(pcap bytes: [UInt8]) -> [CapturedDatagram] {
        guard bytes.count >= 24 else { return [] }
        func u32(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24 }
        func be16(_ at: Int) -> Int { Int(bytes[at]) << 8 | Int(bytes[at + 1]) }
        let linkHeader = u32(20) == 1 ? 14 : (u32(20) == 113 ? 16 : 20)
        var datagrams: [CapturedDatagram] = []
        var offset = 24
        while offset + 16 <= bytes.count {
            let captured = u32(offset + 8)
            let start = offset + 16
            offset = start + captured
            guard offset <= bytes.count else { break }
            let ip = start + linkHeader
            guard ip + 20 <= offset, bytes[ip] >> 4 == 4, bytes[ip + 9] == 17 else { continue }
            let udp = ip + Int(bytes[ip] & 0x0F) * 4
            guard udp + 8 <= offset else { continue }
            let address = { (at: Int) in (0..<4).map { String(bytes[at + $0]) }.joined(separator: ".") }
            datagrams.append(CapturedDatagram(
                source: address(ip + 12), sourcePort: UInt16(be16(udp)), destination: address(ip + 16),
                destinationPort: UInt16(be16(udp + 2)), payload: Array(bytes[(udp + 8)..<min(offset, udp + be16(udp + 4))])))
        }
        return datagrams
    }
}

extension NetworkNamespace {
    /// Waits until nothing is bound to `address` on these UDP ports (a killed charon's sockets are gone).
    func waitUntilUDPPortsAreFree(_ ports: [UInt16], address: String, timeout: Double = 10) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let listing = try run(["ss", "-Huan"]).stdout
            if !ports.contains(where: { listing.contains(":\($0) ") }) { return }
            usleep(20_000)
        }
        throw LabError("UDP ports \(ports) on \(address) still bound after \(timeout) s")
    }
}
