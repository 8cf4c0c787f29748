import VigilAddressing

/// Where the daemon's IKE datagrams arrive and leave: UDP sockets in vigild (`SocketNetwork`), a simulated network in
/// the in-process runs (`SimulatedNetwork`). Everything that arrives is handed to the daemon as it came, hostile
/// until an engine authenticates it.
public protocol DatagramNetwork: AnyObject {
    /// Binds `local` (UDP 500 or 4500 of a listen address); `receive` runs on the daemon's thread for every datagram
    /// that arrives there.
    func bind(_ local: Endpoint, receive: @escaping (_ bytes: [UInt8], _ from: Endpoint) -> Void) throws
    /// The endpoints bound so far.
    var bound: [Endpoint] { get }
    /// Sends one datagram from a bound endpoint; returns why it could not be sent (logged and counted by the caller).
    func send(_ bytes: [UInt8], from: Endpoint, to: Endpoint) -> String?
}

/// vigild's network: one UDP socket per bound endpoint, read on the event loop, at most
/// `EventLoop.Limits.readsPerRound` datagrams per socket per round (the rest wait one round, level-triggered), so a
/// flood delays no timer by more than one bounded round.
public final class SocketNetwork: DatagramNetwork {
    private let loop: EventLoop
    private var sockets: [Endpoint: UDPSocket] = [:]
    private var order: [Endpoint] = []
    /// Set when a userspace data plane reads the (first) NAT-T socket itself; it hands IKE back to the daemon.
    public var natTraversalReader: ((UDPSocket) throws -> Void)?
    /// Whether the kernel carries ESP: then port 4500 sockets decapsulate ESP-in-UDP in the kernel (RFC 3948).
    /// False when a userspace data plane reads 4500 itself.
    public var kernelCarriesESP: Bool { natTraversalReader == nil && !handedOver }
    private var handedOver = false

    public init(loop: EventLoop) { self.loop = loop }

    public func bind(_ local: Endpoint, receive: @escaping ([UInt8], Endpoint) -> Void) throws {
        let socket = try UDPSocket(bindTo: local)
        sockets[socket.local] = socket
        order.append(socket.local)
        if local.port == 4500, let reader = natTraversalReader {
            try reader(socket)
            natTraversalReader = nil
            handedOver = true
            return
        }
        if local.port == 4500, kernelCarriesESP { try socket.enableKernelESPDecapsulation() }
        loop.watch(socket.fd) {
            socket.receive(atMost: EventLoop.Limits.readsPerRound) { bytes, from in receive(bytes, from) }
        }
    }

    public var bound: [Endpoint] { order }

    public func send(_ bytes: [UInt8], from: Endpoint, to: Endpoint) -> String? {
        guard let socket = sockets[from] else { return "no socket bound to \(from)" }
        return socket.send(bytes, to: to).map { "\($0)" }
    }
}

/// A network in memory for in-process runs: datagrams between bound endpoints are delivered through a
/// `VirtualScheduler` after `latency`, in the order sent; `filter` decides per datagram whether it is delivered
/// (a dead peer, a cut link, loss drawn from a seeded generator). Nothing leaves the process.
public final class SimulatedNetwork: @unchecked Sendable {
    public struct Datagram: Sendable, CustomStringConvertible {
        public var from: Endpoint
        public var to: Endpoint
        public var bytes: [UInt8]
        public var description: String { "\(from) → \(to) (\(bytes.count) bytes)" }
    }

    private let scheduler: VirtualScheduler
    public var latency: Duration
    /// Decides whether a datagram is delivered; all are, unless a test says otherwise.
    public var filter: (Datagram) -> Bool = { _ in true }
    private var receivers: [Endpoint: ([UInt8], Endpoint) -> Void] = [:]
    /// Every datagram sent, delivered or not, in order (for assertions).
    public private(set) var sent: [Datagram] = []
    public private(set) var dropped = 0

    public init(scheduler: VirtualScheduler, latency: Duration = .milliseconds(5)) {
        self.scheduler = scheduler
        self.latency = latency
    }

    /// A host's view: what it binds and sends goes through this network.
    public func attachment() -> DatagramNetwork { Attachment(network: self) }

    fileprivate func bind(_ local: Endpoint, receive: @escaping ([UInt8], Endpoint) -> Void) throws {
        guard receivers[local] == nil else { throw SimulatedNetworkError.addressInUse(local) }
        receivers[local] = receive
    }

    fileprivate func send(_ datagram: Datagram) -> String? {
        sent.append(datagram)
        guard filter(datagram) else {
            dropped += 1
            return nil
        }
        scheduler.schedule(at: scheduler.now + latency) { [weak self] in
            // An endpoint bound by nobody swallows the datagram, as a host with no listener would.
            self?.receivers[datagram.to]?(datagram.bytes, datagram.from)
        }
        return nil
    }

    /// Stops delivering to a host's endpoints (a host killed: its daemon's state is gone with it).
    public func unbindAll(of address: IPAddress) {
        for endpoint in receivers.keys where endpoint.address == address { receivers[endpoint] = nil }
    }

    private final class Attachment: DatagramNetwork {
        let network: SimulatedNetwork
        var bound: [Endpoint] = []
        init(network: SimulatedNetwork) { self.network = network }

        func bind(_ local: Endpoint, receive: @escaping ([UInt8], Endpoint) -> Void) throws {
            try network.bind(local, receive: receive)
            bound.append(local)
        }

        func send(_ bytes: [UInt8], from: Endpoint, to: Endpoint) -> String? {
            guard bound.contains(from) else { return "no socket bound to \(from)" }
            return network.send(Datagram(from: from, to: to, bytes: bytes))
        }
    }
}

public enum SimulatedNetworkError: Error, CustomStringConvertible {
    case addressInUse(Endpoint)
    public var description: String {
        switch self {
        case .addressInUse(let endpoint): "bind \(endpoint): address already in use"
        }
    }
}
