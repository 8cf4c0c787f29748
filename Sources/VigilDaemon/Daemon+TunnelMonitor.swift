#if canImport(Glibc)
import Glibc
#endif
import Foundation
import VigilAddressing
import VigilConfig
import VigilLiveness

// Tunnel monitoring (an entry's `monitor` key): one `TunnelMonitor` per monitored entry, run while the entry is
// established with a peer whose data plane is programmed, restarted for each new active peer, stopped when the entry
// is down. Its echo requests leave through an `EchoNetwork` endpoint bound to the configured source, so they take the
// tunnel; its death is the coordinator's `.peerDead`, as a DPD death is.

/// Where the tunnel monitor's ICMP echo requests leave and their replies arrive: raw ICMP sockets in vigild
/// (`SocketEchoNetwork`). Everything that arrives is hostile: the monitor takes only a reply that matches a request it
/// has outstanding.
public protocol EchoNetwork: AnyObject {
    /// Opens an ICMP endpoint bound to `source`; `reply` runs on the daemon's thread for every echo reply that arrives
    /// there, with the address it came from.
    func open(_ source: IPAddress, reply: @escaping (_ from: IPAddress, _ identifier: UInt16, _ sequence: UInt16) -> Void) throws -> any EchoEndpoint
}

/// One open ICMP endpoint; closed when released or by `close`.
public protocol EchoEndpoint: AnyObject {
    /// Sends an echo request; returns why it could not be sent (counted and logged by the caller).
    func sendEchoRequest(to address: IPAddress, identifier: UInt16, sequence: UInt16) -> String?
    func close()
}

/// vigild's echo network: one raw IPv4 ICMP socket per monitored source, read on the event loop like the IKE sockets
/// (at most `EventLoop.Limits.readsPerRound` datagrams per round).
public final class SocketEchoNetwork: EchoNetwork {
    private let loop: EventLoop

    public init(loop: EventLoop) { self.loop = loop }

    public func open(_ source: IPAddress, reply: @escaping (IPAddress, UInt16, UInt16) -> Void) throws -> any EchoEndpoint {
        let socket = try ICMPSocket(bindTo: source)
        loop.watch(socket.fd) {
            for _ in 0..<EventLoop.Limits.readsPerRound {
                guard let (bytes, from) = socket.receive() else { break }
                if let (identifier, sequence) = ICMPEcho.reply(inIPv4Datagram: bytes) { reply(from, identifier, sequence) }
            }
        }
        return SocketEndpoint(socket: socket, loop: loop)
    }

    private final class SocketEndpoint: EchoEndpoint {
        let socket: ICMPSocket
        let loop: EventLoop
        private var closed = false
        init(socket: ICMPSocket, loop: EventLoop) {
            self.socket = socket
            self.loop = loop
        }
        deinit { close() }

        func sendEchoRequest(to address: IPAddress, identifier: UInt16, sequence: UInt16) -> String? {
            socket.send(ICMPEcho.request(identifier: identifier, sequence: sequence), to: address).map { "\($0)" }
        }

        func close() {
            guard !closed else { return }
            closed = true
            loop.unwatch(socket.fd)
        }
    }
}

/// A raw, non-blocking IPv4 ICMP socket (vigild runs with CAP_NET_RAW) bound to one local address, so that its echo
/// requests leave from it and only datagrams addressed to it are read. Unprivileged "ping sockets" (SOCK_DGRAM,
/// IPPROTO_ICMP) would need `net.ipv4.ping_group_range` to include vigild's group, which it does not by default.
/// Owns its descriptor.
final class ICMPSocket: @unchecked Sendable {
    let fd: Int32
    let local: IPAddress

    /// Linux `<linux/icmp.h>`: the raw socket option ICMP_FILTER (1) at level SOL_RAW (255); a set bit filters that
    /// ICMP type out before it is queued to the socket.
    static let rawLevel: Int32 = 255
    static let icmpFilterOption: Int32 = 1
    /// IPv4 header and ICMP message: far more than an echo reply to our requests needs; longer ones are truncated.
    static let maximumDatagram = 1500

    init(bindTo local: IPAddress) throws {
        precondition(local.family == .ipv4, "the configuration admits IPv4 monitor sources only")
        let fd = socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_ICMP))
        guard fd >= 0 else { throw UDPSocket.Failure(operation: "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)", errno: errno) }
        var filter: UInt32 = ~(UInt32(1) << UInt32(ICMPEcho.echoReplyType))
        _ = setsockopt(fd, Self.rawLevel, Self.icmpFilterOption, &filter, socklen_t(MemoryLayout<UInt32>.size))
        let status = SocketAddress(Endpoint(local, 0)).withPointer { bind(fd, $0, $1) }
        guard status == 0 else {
            let error = errno
            Glibc.close(fd)
            throw UDPSocket.Failure(operation: "bind ICMP socket to \(local)", errno: error)
        }
        self.fd = fd
        self.local = local
    }

    deinit { Glibc.close(fd) }

    func send(_ message: [UInt8], to address: IPAddress) -> UDPSocket.Failure? {
        let sent = message.withUnsafeBytes { buffer in
            SocketAddress(Endpoint(address, 0)).withPointer { sendto(fd, buffer.baseAddress, buffer.count, 0, $0, $1) }
        }
        return sent < 0 ? UDPSocket.Failure(operation: "sendto \(address)", errno: errno) : nil
    }

    private var receiveBuffer = [UInt8](repeating: 0, count: ICMPSocket.maximumDatagram)

    /// One waiting datagram (IPv4 header included, as raw sockets deliver it) and where it came from.
    func receive() -> (bytes: [UInt8], from: IPAddress)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let count = receiveBuffer.withUnsafeMutableBytes { raw in
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, raw.baseAddress, raw.count, 0, $0, &length) }
            }
        }
        guard count >= 0, let from = SocketAddress.endpoint(from: storage) else { return nil }
        return (Array(receiveBuffer[0..<count]), from.address)
    }
}

/// The monitor of one entry, its timer, and the peer whose data path it watches.
final class TunnelMonitorRecord {
    let settings: TunnelMonitorSettings
    var monitor: TunnelMonitor
    /// The active peer of the current run; nil while stopped.
    var peer: String?
    var timer: EventLoop.TimerHandle?
    var endpoint: (any EchoEndpoint)?

    init(settings: TunnelMonitorSettings) {
        self.settings = settings
        monitor = TunnelMonitor(configuration: .init(interval: settings.interval, threshold: settings.threshold))
    }
}

extension Daemon {
    /// The peer whose data path the entry's traffic takes now: the established peer once its data plane is
    /// programmed, or the peer kept during a make-before-break move; nil when the entry is down.
    private func monitoredPeer(_ entry: EntryRuntime) -> String? {
        switch entry.coordinator.state {
        case .established(let established): established.programmed ? established.peer : nil
        case .connecting(let connecting): connecting.retained
        case .idle, .backingOff: nil
        }
    }

    /// Called after every coordinator step: starts, restarts or stops the entry's monitor as its active peer changes.
    func updateTunnelMonitor(_ entry: EntryRuntime) {
        guard let settings = entry.entry.monitor else {
            if let tunnel = tunnelMonitors.removeValue(forKey: entry.name) { stop(tunnel, closing: true) }
            return
        }
        let tunnel: TunnelMonitorRecord
        if let existing = tunnelMonitors[entry.name], existing.settings == settings {
            tunnel = existing
        } else {
            if let old = tunnelMonitors[entry.name] { stop(old, closing: true) }
            tunnel = TunnelMonitorRecord(settings: settings)
            tunnelMonitors[entry.name] = tunnel
        }
        let peer = monitoredPeer(entry)
        guard peer != tunnel.peer else { return }
        stop(tunnel, closing: false)
        guard let peer, openEndpoint(tunnel, entry) else { return }
        tunnel.peer = peer
        record(.tunnelMonitorStarted, entry, peer: peer,
               detail: "echo requests from \(settings.source) to \(settings.address) every \(settings.interval.configurationText), "
                   + "data path dead after \(settings.threshold) unanswered")
        let start = TunnelMonitor.Event.start(identifier: UInt16.random(in: .min ... .max, using: &random),
                                              firstSequence: UInt16.random(in: .min ... .max, using: &random))
        monitorTunnel(entry.name, start)
    }

    /// Opens the entry's ICMP endpoint unless it is open; false (and recorded) when it cannot be.
    private func openEndpoint(_ tunnel: TunnelMonitorRecord, _ entry: EntryRuntime) -> Bool {
        if tunnel.endpoint != nil { return true }
        let name = entry.name
        guard let echoNetwork else {
            record(.tunnelMonitorUnavailable, entry, detail: "this daemon has no ICMP network; the entry is not monitored")
            return false
        }
        do {
            tunnel.endpoint = try echoNetwork.open(tunnel.settings.source) { [unowned self] from, identifier, sequence in
                guard let current = self.tunnelMonitors[name], from == current.settings.address else { return }
                self.enqueue { self.monitorTunnel(name, .echoReplyReceived(identifier: identifier, sequence: sequence)) }
                self.drain()
            }
            return true
        } catch {
            record(.tunnelMonitorUnavailable, entry, detail: "cannot open the ICMP socket at \(tunnel.settings.source): \(error); "
                + "the entry is not monitored until its next peer comes up")
            return false
        }
    }

    private func stop(_ tunnel: TunnelMonitorRecord, closing: Bool) {
        if let timer = tunnel.timer { loop.cancel(timer) }
        tunnel.timer = nil
        tunnel.peer = nil
        _ = tunnel.monitor.handle(.stop, now: loop.now)
        if closing {
            tunnel.endpoint?.close()
            tunnel.endpoint = nil
        }
    }

    /// The entry's monitor stops and its socket closes (a reload removed the entry).
    func stopTunnelMonitor(of entry: String) {
        if let tunnel = tunnelMonitors.removeValue(forKey: entry) { stop(tunnel, closing: true) }
    }

    /// Every monitor stops and its socket closes (shutdown).
    func stopTunnelMonitors() {
        for tunnel in tunnelMonitors.values { stop(tunnel, closing: true) }
        tunnelMonitors.removeAll()
    }

    private func monitorTunnel(_ name: String, _ event: TunnelMonitor.Event) {
        guard let tunnel = tunnelMonitors[name], let entry = entries[name] else { return }
        if case .echoReplyReceived = event {
            metrics.increment(Metrics.series("vigil_tunnel_monitor_echo_replies_total", ["map": entry.map, "sequence": "\(entry.entry.sequence)"]),
                              help: "ICMP echo replies from the monitored address (matching or not)")
        }
        let action = tunnel.monitor.handle(event, now: loop.now)
        if let timer = tunnel.timer { loop.cancel(timer) }
        tunnel.timer = tunnel.monitor.nextWakeup.map { wakeup in
            loop.schedule(at: wakeup) { [unowned self] in
                self.tunnelMonitors[name]?.timer = nil
                self.enqueue { self.monitorTunnel(name, .timerFired) }
                self.drain()
            }
        }
        switch action {
        case nil:
            break
        case .sendEchoRequest(let identifier, let sequence)?:
            metrics.increment(Metrics.series("vigil_tunnel_monitor_echo_requests_total", ["map": entry.map, "sequence": "\(entry.entry.sequence)"]),
                              help: "ICMP echo requests sent through the tunnel by tunnel monitoring")
            if let failure = tunnel.endpoint?.sendEchoRequest(to: tunnel.settings.address, identifier: identifier, sequence: sequence) {
                // Counted as unanswered by the monitor; a send that fails every interval is a data path that is down.
                metrics.increment("vigil_send_errors_total", help: "datagrams that could not be sent")
                engineLog(.warning, "tunnel monitor of \(name): echo request to \(tunnel.settings.address) not sent: \(failure)")
            }
        case .dataPathDead(let death)?:
            guard let peer = tunnel.peer else { return }
            dataPathDead(peer, death, tunnel.settings, entry)
        }
    }

    /// The data path through `peer` is dead: recorded, then the entry fails over exactly as from a dead peer.
    private func dataPathDead(_ peer: String, _ death: TunnelMonitor.Death, _ settings: TunnelMonitorSettings, _ entry: EntryRuntime) {
        let since = death.lastReply.map { "last reply \(seconds(death.declaredAt - $0)) s before" }
            ?? "none answered since the peer became active \(seconds(death.declaredAt - death.startedAt)) s before"
        let detail = "\(death.unanswered) echo requests to \(settings.address) unanswered; \(since)"
        metrics.increment(Metrics.series("vigil_tunnel_monitor_data_path_dead_total", ["map": entry.map, "sequence": "\(entry.entry.sequence)", "peer": peer]),
                          help: "tunnel monitoring declared the data path through a peer dead")
        entry.noteHealth(of: peer) { $0.failed("data path dead: \(detail)", at: loop.now) }
        record(.dataPathDead, entry, peer: peer, detail: detail)
        deadPeer(peer, entry, .dataPathDead)
        runHooks(.deadPeer, entry, peer: peer, child: activeChild(of: peer, entry), reason: "data path dead: \(detail)")
        coordinate(entry, .peerDead(peer))
    }

    private func seconds(_ duration: Duration) -> String { String(format: "%.3f", duration.seconds) }
}
