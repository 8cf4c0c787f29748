import VigilCrypto
import Dispatch
import Foundation
import Logging
import ServiceLifecycle
import VigilConfig
import VigilKernel
import VigilESP
import VigilNetlink

/// Builds the daemon from a configuration and runs it until SIGTERM or SIGINT; SIGHUP reloads the configuration
/// (a configuration with errors is refused and the running one kept).
public enum DaemonRunner {
    /// Where Child SAs go. `recordedSAs` is for tests on kernels without ESP: SAs are recorded in memory while
    /// policies and routes go to the real kernel.
    public enum SAKernelChoice: String, Sendable, CaseIterable {
        case configured
        case recordedSAs = "recorded"
    }

    public struct Options: Sendable {
        public var configPath: String
        public var saKernel: SAKernelChoice
        public init(configPath: String, saKernel: SAKernelChoice = .configured) {
            self.configPath = configPath
            self.saKernel = saKernel
        }
    }

    public static func run(configuration: VigilConfiguration, options: Options, logger: Logger) async throws {
        let loop = EventLoop()
        let network = SocketNetwork(loop: loop)
        let kernel = try makeKernel(configuration: configuration, options: options, clock: loop.clock, logger: logger)
        let daemon = Daemon(configuration: configuration, loop: loop, network: network, kernel: kernel.daemonKernel, logger: logger)
        daemon.configurationPath = options.configPath
        daemon.echoNetwork = SocketEchoNetwork(loop: loop)
        daemon.registerEngines(forceEncapsulation: kernel.forcesEncapsulation)
        kernel.attach?(daemon, loop, network)
        try daemon.serveControl(on: loop)
        let metricsServer = try configuration.global.metrics.map { try Self.bindMetrics($0) }  // before anything is installed
        try daemon.start()
        if let metricsServer { Self.serveMetrics(metricsServer, daemon: daemon, logger: logger) }
        logger.notice("vigild running: \(configuration.cryptoMaps.count) crypto maps, data plane \(kernel.daemonKernel.dataplaneDescription)")
        let notifier = Self.systemdNotifier(logger: logger)
        if let notifier {
            Self.report(notifier.ready(status: daemon.status().systemdStatus), logger)
            Self.keepNotifying(notifier, daemon: daemon, loop: loop, logger: logger)
        }

        // SIGHUP reloads; SIGTERM and SIGINT are the service group's graceful shutdown.
        let signals = DispatchQueue(label: "vigild.signals")
        signal(SIGHUP, SIG_IGN)
        let reload = DispatchSource.makeSignalSource(signal: SIGHUP, queue: signals)
        reload.setEventHandler {
            loop.post {
                if let notifier { Self.report(notifier.reloading(), logger) }
                daemon.reload(path: options.configPath)
                if let notifier { Self.report(notifier.ready(status: daemon.status().systemdStatus), logger) }
            }
        }
        reload.resume()

        let service = VigildService(loop: loop, daemon: daemon, notifier: notifier, logger: logger)
        try await service.group().run()
        metricsServer?.stop()
        kernel.detach?()
        withExtendedLifetime(reload) {}
    }

    /// systemd's notification socket when vigild runs as a `Type=notify` service; an unusable NOTIFY_SOCKET is
    /// logged and vigild runs on without it.
    static func systemdNotifier(logger: Logger) -> SystemdNotifier? {
        do {
            return try SystemdNotifier(environment: ProcessInfo.processInfo.environment)
        } catch {
            logger.error("systemd notification off: \(error)")
            return nil
        }
    }

    static func report(_ result: Result<Void, SystemdNotifier.Failure>, _ logger: Logger) {
        if case .failure(let failure) = result { logger.warning("\(failure)") }
    }

    /// From the event loop itself: WATCHDOG=1 at half of WatchdogSec (a loop that stops turning stops the pings and
    /// systemd restarts vigild), and STATUS= when an entry's state line changes, checked as often.
    static func keepNotifying(_ notifier: SystemdNotifier, daemon: Daemon, loop: any Scheduler, logger: Logger) {
        let period = notifier.watchdogInterval.map { min($0, statusCheckInterval) } ?? statusCheckInterval
        var lastStatus = daemon.status().systemdStatus
        func tick() {
            if notifier.watchdogInterval != nil { report(notifier.watchdog(), logger) }
            let status = daemon.status().systemdStatus
            if status != lastStatus {
                lastStatus = status
                report(notifier.status(status), logger)
            }
            _ = loop.schedule(at: loop.now + period) { tick() }
        }
        _ = loop.schedule(at: loop.now + period) { tick() }
    }

    /// How often the STATUS= line is compared with the daemon's state (and at most the watchdog's period).
    static let statusCheckInterval: Duration = .seconds(1)

    struct KernelSetup {
        var daemonKernel: DaemonKernel
        var attach: ((Daemon, EventLoop, SocketNetwork) -> Void)?
        var detach: (() -> Void)?
        /// The userspace data plane carries ESP in UDP 4500 only, so every Child SA must be UDP-encapsulated.
        var forcesEncapsulation = false
    }

    static func makeKernel(configuration: VigilConfiguration, options: Options, clock: MonotonicClock, logger: Logger) throws -> KernelSetup {
        let routes = try NetlinkRouteKernel()
        let policies = try NetlinkIPsecKernel()
        let settings = configuration.global.kernel
        switch (options.saKernel, configuration.global.dataplane) {
        case (.recordedSAs, _):
            let split = SplitIPsecKernel(sas: RecordingKernel(espSupported: true), policies: policies)
            return KernelSetup(daemonKernel: DaemonKernel(
                ipsec: split, routes: routes, dataplaneDescription: "kernel policies and routes, SAs recorded in memory (test)",
                settings: settings, tunnelDevice: nil))
        case (.configured, .kernel):
            return KernelSetup(daemonKernel: DaemonKernel(
                ipsec: policies, routes: routes, dataplaneDescription: "kernel (XFRM)", settings: settings, tunnelDevice: nil))
        case (.configured, .userspace), (.configured, .auto):
            if configuration.global.dataplane == .auto, kernelHasESP(policies) {
                return KernelSetup(daemonKernel: DaemonKernel(
                    ipsec: policies, routes: routes, dataplaneDescription: "kernel (XFRM)", settings: settings, tunnelDevice: nil))
            }
            return try makeUserspaceDataPlane(configuration: configuration, routes: routes, clock: clock, logger: logger)
        }
    }

    /// Asks the kernel whether it has ESP: an SA add with valid algorithms is refused with EPROTONOSUPPORT when it
    /// lacks it. The probe SA (loopback, a reserved SPI, outside Vigil's reqid band) is removed at once.
    static func kernelHasESP(_ kernel: NetlinkIPsecKernel) -> Bool {
        let id = SAID(destination: .v4(0x7F00_0001), spi: 0x0000_0101)
        let request = SARequest(
            source: .v4(0x7F00_0001), destination: .v4(0x7F00_0001), reqid: 1, encryption: .aes128cbc,
            encryptionKey: [UInt8](repeating: 1, count: 16), integrity: .hmacSHA2_256_128,
            integrityKey: [UInt8](repeating: 2, count: 32), encapsulation: nil, replayWindow: 0, lifetime: .unlimited)
        do {
            try kernel.addSA(id, request)
            try? kernel.deleteSA(id)
            return true
        } catch {
            return false
        }
    }
}

extension DaemonRunner {
    /// Offset and length of the responder's SPI (IKEv2, RFC 7296 §3.1) or cookie (ISAKMP, RFC 2408 §3.1) in the header.
    static let responderSPIRange = 8..<16
    /// The fixed IKE header (RFC 7296 §3.1, RFC 2408 §3.1): shorter is garbage.
    static let ikeHeaderLength = 28

    /// How an IKE message (non-ESP marker removed) the data plane read is queued for the event loop: a responder
    /// SPI (cookie) of zero is an IKE_SA_INIT or Main/Aggressive Mode message 1 starting a new exchange, which anybody
    /// can send and which is shed first under load; a message too short for a header is garbage and sheddable too.
    /// Read on the data plane thread before any authentication: it only decides an order of dropping.
    static func postKind(ofIKE message: [UInt8]) -> EventLoop.PostKind {
        guard message.count >= ikeHeaderLength else { return .newExchange }
        return message[responderSPIRange].allSatisfy { $0 == 0 } ? .newExchange : .established
    }

    /// The userspace data plane: a TUN device whose packets `ESPEngine` protects, carried in UDP 4500 on the
    /// daemon's NAT-T socket (the data plane reads that socket and hands IKE messages back to the daemon).
    static func makeUserspaceDataPlane(configuration: VigilConfiguration, routes: NetlinkRouteKernel, clock: MonotonicClock,
                                       logger: Logger) throws -> KernelSetup {
        let dataPlane: ESPDataPlane
        do {
            dataPlane = try ESPDataPlane(configuration: .init(), clock: { clock.now })
        } catch {
            throw ControlError(.internalError, "cannot create the userspace data plane's TUN device: \(error)")
        }
        let kernel = DaemonKernel(
            ipsec: dataPlane.engine, routes: routes,
            dataplaneDescription: "userspace ESP over TUN \(dataPlane.interfaceName)",
            settings: configuration.global.kernel, tunnelDevice: dataPlane.interfaceName)
        var setup = KernelSetup(daemonKernel: kernel)
        setup.forcesEncapsulation = true
        setup.attach = { daemon, loop, network in
            network.natTraversalReader = { socket in
                let local = socket.local
                do {
                    try dataPlane.start(socket: socket.fd) { message, from in
                        // Network input: refused (and counted) rather than queued without bound under a flood; new
                        // exchanges wait behind established SAs' messages (liveness, DPD) and are shed first.
                        loop.postDroppable(kind: postKind(ofIKE: message)) { daemon.receivedIKE(message, from: from, to: local) }
                    }
                } catch {
                    throw ControlError(.internalError, "cannot start the userspace data plane on \(local): \(error)")
                }
                logger.notice("userspace data plane on \(dataPlane.interfaceName) carries ESP on \(local)")
            }
            daemon.heldPackets = { dataPlane.engine.counters[.noSA] }
            daemon.dataPlaneCounters = {
                let counters = dataPlane.engine.counters
                var all: [String: UInt64] = ["nat_keepalives": counters.natKeepalives, "ike_datagrams": counters.ikeDatagrams,
                                             "send_errors": dataPlane.ioCounters.sendErrors, "tun_write_errors": dataPlane.ioCounters.tunWriteErrors]
                for (drop, value) in counters.drops { all["drops_\(drop.rawValue)"] = value }
                // IKE messages the data plane read and the event loop shed (new exchanges, near full) or refused (full).
                all["ike_new_exchanges_shed"] = loop.shedPosts
                all["ike_refused"] = loop.refusedPosts
                return all
            }
        }
        setup.detach = { dataPlane.stop() }
        return setup
    }
}
