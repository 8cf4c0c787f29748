#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import VigilAddressing
import VigilKernel

/// The userspace ESP data plane: an `ESPEngine` between a TUN device and the daemon's NAT-T (UDP 4500) socket.
///
/// Two threads: outbound reads the TUN device, encapsulates per the policies and sends to the peer; inbound owns the
/// socket's receive loop, hands IKE datagrams (non-ESP marker) to the daemon, drops NAT-keepalives and writes
/// decrypted packets to the TUN device. SAs and policies go to `engine`, which is an `IPsecKernel`; routes to the
/// remote subnets point at `interfaceName`/`interfaceIndex` (the daemon installs them). Failover swaps SAs and
/// policies in the engine; the TUN device and the threads keep running.
public final class ESPDataPlane: Sendable {
    public struct Configuration: Sendable, Hashable {
        /// TUN interface name; `%d` lets the kernel number it.
        public var interfaceName: String = "vigil%d"
        /// Inner MTU of the TUN device: 1500 minus outer IPv4 (20), UDP (8), ESP header and CBC IV (24), worst CBC
        /// padding and trailer (17), ICV (up to 16 for the suites carried), rounded down.
        public var mtu: Int = 1400
        /// Datagrams sent or received per system call (sendmmsg/recvmmsg), and packets read from the TUN device
        /// between two sends.
        public var batchLimit: Int = 32
        /// UDP segmentation offload on the NAT-T socket: equal-sized ESP packets to one peer leave in one sendmsg
        /// (UDP_SEGMENT) and arrive coalesced (UDP_GRO, enabled on the socket by `start`). Falls back by itself
        /// when the kernel refuses.
        public var udpOffload = true
        /// TCP coalescing towards the TUN device: in-order segments of a flow decrypted from one batch are written
        /// as one GSO packet (IFF_VNET_HDR), so the kernel forwards one packet instead of dozens.
        public var tunOffload = true
        public var engine = ESPEngine.Configuration()
        public init() {}
    }

    /// Counters of the I/O edges (the engine counts protocol drops).
    public struct IOCounters: Hashable, Sendable {
        public var sendErrors: UInt64
        public var tunWriteErrors: UInt64
    }

    public let engine: ESPEngine
    public let tun: TUNDevice
    public var interfaceName: String { tun.name }
    public var interfaceIndex: UInt32 { tun.index }

    private let configuration: Configuration
    private let sendErrors = Atomic<UInt64>(0)
    private let tunWriteErrors = Atomic<UInt64>(0)

    private struct Running {
        var socket: Int32
        var stopRead: Int32
        var stopWrite: Int32
        var wakeRead: Int32
        var wakeWrite: Int32
        var threads: [pthread_t]
    }

    private let running = Mutex<Running?>(nil)

    /// Creates the TUN device (up, with its MTU). Packets flow after `start`. `clock` and `lifetimeEvents` are the
    /// engine's (see `ESPEngine.init`).
    public init(
        configuration: Configuration = Configuration(),
        clock: @escaping @Sendable () -> Duration,
        lifetimeEvents: @escaping @Sendable (SAID, LifetimeEvent) -> Void = { _, _ in }
    ) throws(ESPSystemError) {
        self.configuration = configuration
        engine = ESPEngine(configuration: configuration.engine, clock: clock, lifetimeEvents: lifetimeEvents)
        tun = try TUNDevice(name: configuration.interfaceName, mtu: configuration.mtu, virtioNetHeader: configuration.tunOffload)
    }

    deinit { stop() }

    public var ioCounters: IOCounters {
        IOCounters(sendErrors: sendErrors.load(ordering: .relaxed), tunWriteErrors: tunWriteErrors.load(ordering: .relaxed))
    }

    /// Starts both loops on `socket`, a UDP socket the daemon bound to port 4500 (it keeps owning it; this data
    /// plane only receives and sends on it). `ike` receives IKE messages without the non-ESP marker, on the inbound
    /// thread: it must not block.
    public func start(socket: Int32, ike: @escaping @Sendable (_ message: [UInt8], _ from: Endpoint) -> Void) throws(ESPSystemError) {
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { throw ESPSystemError("pipe") }
        let stopRead = pipeEnds[0]
        var wakeEnds: [Int32] = [0, 0]
        guard pipe(&wakeEnds) == 0 else { throw ESPSystemError("pipe") }
        let wakeRead = wakeEnds[0]
        let wakeWrite = wakeEnds[1]
        for fd in wakeEnds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        engine.setReleaseSignal {
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
        let engine = engine
        let tunFD = tun.fileDescriptor
        let batchLimit = configuration.batchLimit
        let segmentation = configuration.udpOffload
        if configuration.udpOffload { UDPOffload.setReceiveOffload(socket, true) }
        let outbound = { [self] in
            outboundLoop(
                engine: engine, tunFD: tunFD, socket: socket, stop: stopRead, wake: wakeRead, batchLimit: batchLimit,
                useSegmentation: segmentation)
        }
        let inbound = { [self] in
            inboundLoop(engine: engine, tunFD: tunFD, socket: socket, stop: stopRead, batchLimit: batchLimit, ike: ike)
        }
        let threads = [try spawn(outbound), try spawn(inbound)]
        running.withLock { state in
            precondition(state == nil, "data plane started twice")
            state = Running(
                socket: socket, stopRead: pipeEnds[0], stopWrite: pipeEnds[1], wakeRead: wakeRead, wakeWrite: wakeWrite,
                threads: threads)
        }
    }

    /// Stops both loops and waits for them. The TUN device stays (routes through it keep pointing at it).
    public func stop() {
        guard let state = running.withLock({ state in defer { state = nil }; return state }) else { return }
        var byte: UInt8 = 1
        _ = write(state.stopWrite, &byte, 1)
        for thread in state.threads { pthread_join(thread, nil) }
        engine.setReleaseSignal {}
        for fd in [state.stopRead, state.stopWrite, state.wakeRead, state.wakeWrite] { close(fd) }
        // The socket goes back to the daemon as it came: one datagram per read.
        if configuration.udpOffload { UDPOffload.setReceiveOffload(state.socket, false) }
    }

    /// Sends an IKE message on the NAT-T socket with the non-ESP marker (RFC 3948 §2.2).
    public func sendIKE(_ message: [UInt8], to peer: Endpoint) throws(ESPSystemError) {
        guard let socket = running.withLock({ $0?.socket }) else { throw ESPSystemError("sendIKE before start", errno: EBADF) }
        let datagram = [UInt8](repeating: 0, count: ESPSpec.nonESPMarkerLength) + message
        let sent = datagram.withUnsafeBytes { sendDatagram(socket, $0, to: peer) }
        guard sent else { throw ESPSystemError("sendto \(peer)") }
    }

    /// Sends a NAT-keepalive, the single byte 0xFF (RFC 3948 §2.3, §4), which the side behind a NAT sends every
    /// 20 seconds or so to keep its mapping.
    public func sendNATKeepalive(to peer: Endpoint) throws(ESPSystemError) {
        guard let socket = running.withLock({ $0?.socket }) else { throw ESPSystemError("keepalive before start", errno: EBADF) }
        let sent = [ESPSpec.natKeepalive].withUnsafeBytes { sendDatagram(socket, $0, to: peer) }
        guard sent else { throw ESPSystemError("sendto \(peer)") }
    }

    // MARK: - Loops

    /// The largest inner packet a TUN read can return, and the largest UDP payload (or GRO train).
    private static let maximumPacket = 65_536

    private func outboundLoop(
        engine: ESPEngine, tunFD: Int32, socket: Int32, stop: Int32, wake: Int32, batchLimit: Int, useSegmentation: Bool
    ) {
        let batch = MessageBatch(capacity: batchLimit, slotSize: ESPEngine.headroom + Self.maximumPacket + ESPEngine.tailroom)
        let payloadStart = ESPEngine.headroom
        // With IFF_VNET_HDR every read starts with a virtio-net header: read it into the headroom, where the ESP
        // header will overwrite it. No offloads are enabled for reads, so packets arrive whole with checksums done.
        let virtioHeader = tun.virtioNetHeader ? VirtioNetHeader.length : 0
        var segmentation = useSegmentation
        while let ready = wait(for: tunFD, wake: wake, stop: stop) {
            if ready.wake { sendReleased(engine: engine, wake: wake, slot: batch.slot(0), socket: socket) }
            var filled = 0
            repeat {
                // Read until the device is empty or the batch is full; encrypt each packet in its own slot.
                filled = 0
                while filled < batch.capacity {
                    let slot = batch.slot(filled)
                    let count = read(tunFD, slot.baseAddress! + payloadStart - virtioHeader, Self.maximumPacket + virtioHeader)
                    guard count > virtioHeader else { break }
                    if virtioHeader > 0 && VirtioNetHeader.gsoType(UnsafeRawBufferPointer(slot), at: payloadStart - virtioHeader) != VirtioNetHeader.gsoNone {
                        continue  // never offered: TUNSETOFFLOAD is not used
                    }
                    switch engine.encapsulate(buffer: slot, payload: payloadStart..<payloadStart + count - virtioHeader) {
                    case .send(let packet, let peer):
                        batch.prepareToSend(filled, packet, to: peer)
                        filled += 1
                    case .held, .drop:
                        continue
                    }
                }
                if filled > 0 {
                    let (refused, keep) = batch.send(filled, on: socket, segmentation: segmentation)
                    segmentation = keep
                    if refused > 0 { sendErrors.add(UInt64(refused), ordering: .relaxed) }
                }
            } while filled == batch.capacity
        }
    }

    /// Encapsulates and sends packets the engine held while their SA was missing and has now released.
    private func sendReleased(engine: ESPEngine, wake: Int32, slot: UnsafeMutableRawBufferPointer, socket: Int32) {
        var drain = [UInt8](repeating: 0, count: 64)
        while read(wake, &drain, drain.count) > 0 {}
        for packet in engine.takeReleased() {
            let payload = ESPEngine.headroom..<ESPEngine.headroom + packet.count
            UnsafeMutableRawBufferPointer(rebasing: slot[payload]).copyBytes(from: packet)
            switch engine.encapsulate(buffer: slot, payload: payload) {
            case .send(let datagram, let peer):
                if !sendDatagram(socket, UnsafeRawBufferPointer(rebasing: slot[datagram]), to: peer) {
                    sendErrors.add(1, ordering: .relaxed)
                }
            case .held, .drop:
                continue
            }
        }
    }

    private func inboundLoop(
        engine: ESPEngine, tunFD: Int32, socket: Int32, stop: Int32, batchLimit: Int,
        ike: @Sendable ([UInt8], Endpoint) -> Void
    ) {
        let batch = MessageBatch(capacity: batchLimit, slotSize: Self.maximumPacket)
        let coalescer = tun.virtioNetHeader ? TCPCoalescer() : nil
        let writeToTUN = { (packet: UnsafeRawBufferPointer) in
            if write(tunFD, packet.baseAddress, packet.count) != packet.count { self.tunWriteErrors.add(1, ordering: .relaxed) }
        }
        while wait(for: socket, stop: stop) != nil {
            var received = 0
            repeat {
                received = batch.receive(on: socket)
                for index in 0..<max(received, 0) {
                    batch.forEachDatagram(index) { buffer, datagram, source in
                        switch engine.decapsulate(buffer: buffer, datagram: datagram, source: source) {
                        case .deliver(let packet):
                            if let coalescer {
                                coalescer.add(buffer, packet, write: writeToTUN)
                            } else {
                                writeToTUN(UnsafeRawBufferPointer(rebasing: buffer[packet]))
                            }
                        case .ike(let message):
                            ike(Array(buffer[message]), source)
                        case .natKeepalive, .drop:
                            break
                        }
                    }
                }
                // Nothing may wait in the coalescer while this thread sleeps.
                coalescer?.flush(write: writeToTUN)
            } while received == batch.capacity
        }
    }

    /// Blocks until `fd` or `wake` is readable (returns which) or the stop pipe is (returns nil).
    private func wait(for fd: Int32, wake: Int32 = -1, stop: Int32) -> (data: Bool, wake: Bool)? {
        withUnsafeTemporaryAllocation(of: pollfd.self, capacity: 3) { fds in
            fds[0] = pollfd(fd: stop, events: Int16(POLLIN), revents: 0)
            fds[1] = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            fds[2] = pollfd(fd: wake, events: Int16(POLLIN), revents: 0)  // a negative fd is ignored by poll
            while true {
                let ready = poll(fds.baseAddress, 3, -1)
                if ready < 0 && errno == EINTR { continue }
                guard ready > 0, fds[0].revents == 0 else { return nil }
                return (fds[1].revents != 0, fds[2].revents != 0)
            }
        }
    }
}

/// Starts a joinable thread running `body`.
private func spawn(_ body: @escaping () -> Void) throws(ESPSystemError) -> pthread_t {
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let status = pthread_create(&thread, nil, { raw in
        let box = Unmanaged<AnyObject>.fromOpaque(raw!).takeRetainedValue() as! ThreadBody
        box.body()
        return nil
    }, context)
    guard status == 0 else {
        Unmanaged<AnyObject>.fromOpaque(context).release()
        throw ESPSystemError("pthread_create", errno: status)
    }
    return thread
}

private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}
