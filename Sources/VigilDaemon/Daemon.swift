import Foundation
import Logging
import VigilAddressing
import VigilAlgorithms
import VigilConfig
import VigilCrypto
import VigilFailover
import VigilKernel
import VigilLiveness

/// vigild's core: it owns every state machine (one failover coordinator per crypto-map entry, one dead peer detector
/// per IKE SA, the IKE engines) and carries out what they return: datagrams, timers, kernel plans, events. It runs on
/// the event loop thread only. Machines never call each other: outputs are queued and drained in order, so a machine
/// is never re-entered while it is handling an event.
/// `@unchecked Sendable`: every member is touched on the event loop thread only; other threads reach it through
/// `EventLoop.post`.
public final class Daemon: @unchecked Sendable {
    /// The running configuration: its global settings as started (a reload that changes them needs a restart), its
    /// crypto maps as last loaded.
    public internal(set) var configuration: VigilConfiguration
    /// Time and timers: the event loop in vigild, a virtual clock in process.
    public let loop: any Scheduler
    /// The IKE sockets: UDP in vigild, a simulated network in process.
    let network: any DatagramNetwork
    public let events: EventLog
    let logger: Logger
    var metrics = Metrics()
    var failoverPhases = FailoverPhases()
    var logLimiter = LogRateLimiter()
    /// The system's in vigild; seeded in process, so a failing scenario replays.
    var random: DaemonRandom

    var engines: [IKEVersionTag: any IKEEngineDriver] = [:]
    /// Set for the userspace data plane (ESP in UDP 4500 only): the engines a reload registers get it too.
    var forceEncapsulation = false
    var entries: [String: EntryRuntime] = [:]
    var entryOrder: [String] = []
    var sessions: [SessionKey: SessionRecord] = [:]
    /// Phase 1 probes of a preferred peer (preemption): answered, then deleted; never installed.
    var probeSessions: Set<SessionKey> = []
    let kernel: DaemonKernel
    var control: ControlServer?
    /// The configuration file a reload (SIGHUP, `vigil reload`) reads again.
    public var configurationPath: String?
    /// The userspace data plane's counters, for metrics.
    var dataPlaneCounters: (() -> [String: UInt64])?
    /// Packets held because their policy has no SA (a peer down, an entry idle): traffic waiting (Cisco's
    /// "interesting traffic"), which restarts an idle entry.
    var heldPackets: (() -> UInt64)?
    var lastHeldPackets: UInt64 = 0
    /// ESP that reached vigild although the kernel carries it: reported once per Child SA (KernelESPInUDP.swift).
    var undeliveredESP = UndeliveredESP()
    /// Updown hooks (HookDispatch.swift).
    /// The selector pairs that use each installed SA (a Child SA's pairs share its SAs).
    var saUsers = SAUsers()
    lazy var hooks = DaemonHooks(global: configuration.global.hooks)
    /// Tunnel monitoring (Daemon+TunnelMonitor.swift): its ICMP sockets (raw sockets in vigild; none in process
    /// unless a test sets one), and the monitor of each monitored entry.
    public var echoNetwork: (any EchoNetwork)?
    var tunnelMonitors: [String: TunnelMonitorRecord] = [:]

    private var queue: [() -> Void] = []
    private var draining = false
    var samplerTimer: EventLoop.TimerHandle?
    private var stopped = false

    public init(configuration: VigilConfiguration, loop: any Scheduler, network: any DatagramNetwork,
                random: DaemonRandom = .system, kernel: DaemonKernel, logger: Logger) {
        self.configuration = configuration
        self.loop = loop
        self.network = network
        self.random = random
        self.kernel = kernel
        self.logger = logger
        events = EventLog()
        let logger = logger
        events.addSink { event in
            let subject = [event.map, event.sequence.map(String.init), event.peer].compactMap { $0 }.joined(separator: " ")
            logger.notice("event \(event.kind) \(subject): \(event.detail)")
        }
        for map in configuration.cryptoMaps {
            for entry in map.entries {
                let runtime = EntryRuntime(map: map.name, entry: entry, global: configuration.global)
                entries[runtime.name] = runtime
                entryOrder.append(runtime.name)
            }
        }
    }

    // MARK: Start and stop

    /// Plugs in an IKE engine; its outputs come back through the daemon's queue.
    public func register(_ engine: any IKEEngineDriver) {
        engine.output = { [unowned self] output in self.enqueue { self.handle(output, from: engine.version) } }
        engines[engine.version] = engine
    }

    /// The IKE engines the configuration needs (one per IKE version in use), each with its own generator drawn from
    /// the daemon's. `forceEncapsulation` is set for the userspace data plane, which carries ESP in UDP 4500 only.
    public func registerEngines(forceEncapsulation: Bool) {
        self.forceEncapsulation = forceEncapsulation
        for version in Set(configuration.cryptoMaps.flatMap(\.entries).map(\.ikeVersion)) { registerEngine(version) }
    }

    /// The engine of one IKE version, configured with the running configuration's entries of that version (at
    /// start-up, or when a reload adds the first entry of a version not used before).
    func registerEngine(_ version: IKEVersion) {
        switch version {
        case .v2: register(IKEv2Driver(configuration: configuration, loop: loop, random: random.split(), forceEncapsulation: forceEncapsulation))
        case .v1: register(IKEv1Driver(configuration: configuration, loop: loop, random: random.split(), forceEncapsulation: forceEncapsulation))
        }
    }

    /// Serves the control API on the configured Unix socket (vigild; the in-process runs call `handleControl`).
    public func serveControl(on eventLoop: EventLoop) throws {
        let controlGroup = try configuration.global.controlGroup.map { name -> gid_t in
            guard let group = getgrnam(name) else { throw ControlError(.internalError, "control-group: no group named '\(name)'") }
            return group.pointee.gr_gid
        }
        control = try ControlServer(path: configuration.global.controlSocket, loop: eventLoop, group: controlGroup) { [unowned self] request in
            let response = self.handleControl(request)
            self.drain()
            return response
        }
        events.addSink { [unowned self] event in self.control?.publish(event) }
    }

    /// Binds the IKE endpoints, reconciles the kernel, and starts the entries marked `start`.
    public func start() throws {
        for address in configuration.global.listen {
            for port: UInt16 in [500, 4500] {
                let local = Endpoint(address, port)
                try network.bind(local) { [unowned self] bytes, from in
                    self.dispatch(bytes, from: from, to: local)
                    self.drain()
                }
            }
        }

        let report = reconcileFailClosed()  // guards every entry's selectors before any negotiation
        record(.kernelReconciled, detail: report)
        restorePeerLists()
        for name in entryOrder { loaded(entries[name]!) }
        scheduleSampler()
        drain()
    }

    /// Graceful shutdown: DELETE every IKE SA we hold (best effort), remove everything installed in the kernel.
    public func shutdown() {
        guard !stopped else { return }
        stopped = true
        for (key, record) in sessions {
            engines[key.version]?.delete(key)
            if let timer = record.detectorTimer { loop.cancel(timer) }
        }
        stopTunnelMonitors()
        // Let the DELETE requests leave before the sockets close.
        drainQueueOnly()
        for name in entryOrder {
            let entry = entries[name]!
            for child in entry.installed.values { applyPlan(KernelPlanner.delete(child), entry, what: "shutdown") }
            entry.installed.removeAll()
        }
        record(.shutdown, detail: kernel.removeRule())
    }

    /// An entry is in place (its guards installed): recorded, and started when it starts by itself.
    func loaded(_ entry: EntryRuntime) {
        record(.entryLoaded, entry, detail: "peers \(entry.peerNames.joined(separator: ", ")); dpd \(entry.dpdSummary)"
            + (entry.entry.monitor.map { "; monitor \($0.summary)" } ?? ""))
        if entry.entry.start { enqueue { self.coordinate(entry, .start) } }
    }

    // MARK: The queue

    func enqueue(_ work: @escaping () -> Void) {
        queue.append(work)
    }

    /// Runs queued work until the queue is empty. Called at the end of every entry point (socket, timer, control).
    func drain() {
        guard !draining else { return }
        draining = true
        defer { draining = false }
        while !queue.isEmpty {
            let work = queue.removeFirst()
            work()
        }
    }

    private func drainQueueOnly() {
        draining = false
        drain()
    }

    // MARK: Datagrams

    /// Routes one datagram: on port 4500 the non-ESP marker means IKE (RFC 3948 §2.2), a lone 0xFF is a NAT keepalive
    /// (§2.3), anything else is ESP for the data plane.
    func dispatch(_ bytes: [UInt8], from: Endpoint, to: Endpoint) {
        var ike = bytes
        if to.port == 4500 {
            if bytes == [0xFF] {
                metrics.increment("vigil_nat_keepalives_received_total", help: "NAT keepalives received")
                return
            }
            guard bytes.count >= 4, bytes[0..<4].allSatisfy({ $0 == 0 }) else {
                undeliverableESP(bytes, from: from)
                return
            }
            ike.removeFirst(4)
        }
        guard ike.count >= 28 else {
            metrics.increment("vigil_malformed_datagrams_total", help: "datagrams too short to be IKE, dropped")
            return
        }
        // IKE header: version at offset 17 (major in the high nibble): 2 for IKEv2, 1 for ISAKMP.
        let major = ike[17] >> 4
        let version: IKEVersionTag? = major == 2 ? .v2 : (major == 1 ? .v1 : nil)
        guard let version, let engine = engines[version] else {
            metrics.increment("vigil_unsupported_ike_version_total", help: "IKE datagrams of a version with no engine")
            engineLog(.info, "dropped IKE datagram from \(from): version \(major) not served")
            return
        }
        engine.received(ike, from: from, to: to)
    }

    /// An IKE message (marker already removed) that the userspace data plane read from the NAT-T socket.
    func receivedIKE(_ bytes: [UInt8], from: Endpoint, to: Endpoint) {
        dispatch(UDPSocket.nonESPMarker + bytes, from: from, to: to)
        drain()
    }

    func send(_ bytes: [UInt8], from: Endpoint, to: Endpoint, marker: Bool) {
        let bound = network.bound
        guard let local = bound.contains(from) ? from : bound.first(where: { $0.port == from.port && $0.address.family == to.address.family }) else {
            metrics.increment("vigil_send_errors_total", help: "datagrams that could not be sent")
            engineLog(.error, "no socket bound to \(from) for a datagram to \(to)")
            return
        }
        let datagram = marker && from.port == 4500 ? UDPSocket.nonESPMarker + bytes : bytes
        if let failure = network.send(datagram, from: local, to: to) {
            metrics.increment("vigil_send_errors_total", help: "datagrams that could not be sent")
            // Answers to spoofed sources fail per datagram under a flood (a full buffer, an unreachable net).
            engineLog(.warning, "send to \(to) failed: \(failure)")
        }
    }

    // MARK: Events

    func record(_ kind: EventKind, _ entry: EntryRuntime? = nil, peer: String? = nil, detail: String) {
        events.record(kind: kind.rawValue, now: loop.now, map: entry?.map, sequence: entry?.entry.sequence, peer: peer, detail: detail)
    }

    func entry(forConnection connection: String) -> EntryRuntime? { entries[connection] }
}

/// One IKE SA the daemon tracks, with its dead peer detector.
final class SessionRecord {
    let key: SessionKey
    let entryName: String
    let peer: String
    let peerAddress: IPAddress
    var detector: DeadPeerDetector?
    var detectorTimer: EventLoop.TimerHandle?
    var lastProbeSequence: UInt32 = 0
    var established: Bool

    init(key: SessionKey, entryName: String, peer: String, peerAddress: IPAddress, established: Bool) {
        self.key = key
        self.entryName = entryName
        self.peer = peer
        self.peerAddress = peerAddress
        self.established = established
    }
}

extension Daemon {
    /// vigild's daemon: UDP sockets read on `loop`, the system's randomness.
    public convenience init(configuration: VigilConfiguration, loop: EventLoop, kernel: DaemonKernel, logger: Logger) {
        self.init(configuration: configuration, loop: loop, network: SocketNetwork(loop: loop), kernel: kernel, logger: logger)
    }
}

/// The daemon's randomness (DPD sequence numbers, coordinator back-off jitter, the engines' SPIs and nonces): the
/// system's generator in vigild; a seeded one in the in-process runs, so a failing scenario replays from its seed.
public struct DaemonRandom: RandomNumberGenerator, Sendable {
    private var seeded: SplitMix64?
    private var system = SystemRandomNumberGenerator()

    public static var system: DaemonRandom { DaemonRandom(seeded: nil) }
    /// Replayable, never for a real gateway: SplitMix64 is not a cryptographic generator.
    public static func seeded(_ seed: UInt64) -> DaemonRandom { DaemonRandom(seeded: SplitMix64(seed: seed)) }

    public mutating func next() -> UInt64 {
        guard var generator = seeded else { return system.next() }
        defer { seeded = generator }
        return generator.next()
    }

    /// An independent generator for a part of the daemon (an engine): seeded from this one when this one is seeded.
    public mutating func split() -> DaemonRandom {
        seeded == nil ? .system : .seeded(next())
    }
}
