import Foundation
import VigilAddressing
import VigilLab
@testable import VigilIKEv2

#if canImport(Glibc)
import Glibc
#endif

/// A small synchronous runtime for interop tests: UDP sockets on 500 and 4500 inside the Vigil namespace, a loop
/// that feeds datagrams and due timers into `IKEv2Endpoint` and performs its sends (non-ESP marker on 4500).
final class InteropDriver {
    let local: IPAddress
    var endpoint: IKEv2Endpoint
    private var sockets: [UInt16: Int32] = [:]
    private var timers: [IKEv2TimerID: Duration] = [:]
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant
    private var random = SystemRandomNumberGenerator()
    private(set) var actions: [IKEv2Action] = []
    /// Every IKE datagram received (marker stripped), in order.
    private(set) var received: [[UInt8]] = []
    /// ESP packets received in UDP 4500 (RFC 3948), for checking Child SA keys.
    private(set) var esp: [[UInt8]] = []
    /// While set, datagrams are queued instead of sent (to make exchanges cross on the wire).
    var holding = false
    private var held: [(bytes: [UInt8], port: UInt16, to: Endpoint)] = []

    init(namespace: NetworkNamespace, local: IPAddress, configuration: IKEv2Endpoint.Configuration) throws {
        self.local = local
        self.endpoint = IKEv2Endpoint(configuration: configuration)
        origin = clock.now
        for port in [UInt16(500), 4500] {
            sockets[port] = try namespace.runInside { try Self.bindUDP(local, port) }
        }
    }

    deinit { for fd in sockets.values { close(fd) } }

    var now: Duration { clock.now - origin }

    static func bindUDP(_ address: IPAddress, _ port: UInt16) throws -> Int32 {
        guard case .v4(let value) = address else { throw LabError("IPv4 only") }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw LabError("socket: errno \(errno)") }
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = value.bigEndian
        let result = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { close(fd); throw LabError("bind \(address):\(port): errno \(errno)") }
        return fd
    }

    /// Feeds one event now and performs its actions.
    @discardableResult
    func handle(_ event: IKEv2Event) -> [IKEv2Action] {
        let produced = endpoint.handle(event, now: now, random: &random)
        perform(produced)
        return produced
    }

    private func perform(_ produced: [IKEv2Action]) {
        actions += produced
        for action in produced {
            switch action {
            case .send(let bytes, let from, let to):
                send(from.port == 4500 ? [0, 0, 0, 0] + bytes : bytes, from: from.port, to: to)
            case .sendNATKeepalive(let from, let to):
                send([0xFF], from: from.port, to: to)
            case .scheduleTimer(let id, let at):
                timers[id] = at
            case .cancelTimer(let id):
                timers[id] = nil
            default:
                continue
            }
        }
    }

    /// Sends everything held back, in order, and stops holding.
    func release() {
        holding = false
        let queued = held
        held = []
        for datagram in queued { send(datagram.bytes, from: datagram.port, to: datagram.to) }
    }

    private func send(_ bytes: [UInt8], from port: UInt16, to: Endpoint) {
        if holding {
            held.append((bytes, port, to))
            return
        }
        guard let fd = sockets[port], case .v4(let value) = to.address else { return }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = to.port.bigEndian
        addr.sin_addr.s_addr = value.bigEndian
        _ = bytes.withUnsafeBytes { raw in
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    /// Runs the loop until `done` holds for the actions so far or `seconds` pass; returns whether `done` held.
    @discardableResult
    func run(seconds: Double, until done: ([IKEv2Action]) -> Bool = { _ in false }) -> Bool {
        let deadline = now + .milliseconds(Int(seconds * 1000))
        while now < deadline {
            if done(actions) { return true }
            if let (id, _) = timers.filter({ $0.value <= now }).min(by: { $0.value < $1.value }) {
                timers[id] = nil
                handle(.timerFired(id))
                continue
            }
            let nextTimer = timers.values.min() ?? deadline
            let wait = max(Duration.zero, min(nextTimer, deadline) - now)
            let waitMilliseconds = Int32(min(100, wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000))
            var fds = [500, 4500].map { pollfd(fd: sockets[UInt16($0)]!, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, 2, max(1, waitMilliseconds)) > 0 else { continue }
            for (index, port) in [UInt16(500), 4500].enumerated() where fds[index].revents & Int16(POLLIN) != 0 {
                receive(port: port)
            }
        }
        return done(actions)
    }

    private func receive(port: UInt16) {
        guard let fd = sockets[port] else { return }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var addr = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let count = buffer.withUnsafeMutableBytes { raw in
            withUnsafeMutablePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, raw.baseAddress, raw.count, 0, $0, &length) }
            }
        }
        guard count > 0 else { return }
        var bytes = Array(buffer[0..<count])
        if port == 4500 {
            // RFC 3948: a keepalive is the single octet 0xFF; IKE carries the 4-octet non-ESP marker; else ESP.
            guard bytes.count > 4 else { return }
            guard bytes[0..<4] == [0, 0, 0, 0] else {
                esp.append(bytes)
                return
            }
            bytes.removeFirst(4)
        }
        let from = Endpoint(.v4(UInt32(bigEndian: addr.sin_addr.s_addr)), UInt16(bigEndian: addr.sin_port))
        received.append(bytes)
        handle(.datagramReceived(bytes: bytes, from: from, to: Endpoint(local, port)))
    }
}

extension [IKEv2Action] {
    func has(_ predicate: (IKEv2Action) -> Bool) -> Bool { contains(where: predicate) }
    var livenessAnswers: Int { filter { if case .livenessCheckAnswered = $0 { true } else { false } }.count }
    var unreachable: Bool { has { if case .peerUnreachable = $0 { true } else { false } } }
}
