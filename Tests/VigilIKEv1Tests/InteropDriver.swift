import Foundation
import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKEv1
import VigilLab
#if canImport(Glibc)
import Glibc
import VigilIKE
#endif

/// A tiny synchronous runtime around `IKEv1Endpoint` for interop tests: UDP 500 and 4500 in the Vigil namespace,
/// due timers, the RFC 3948 non-ESP marker on 4500. It records every action for assertions.
final class InteropDriver {
    static let nonESPMarker: [UInt8] = [0, 0, 0, 0]
    var endpoint: IKEv1Endpoint
    let ike: UDPSocket
    let natt: UDPSocket
    let origin = ContinuousClock.now
    var random = SystemRandomNumberGenerator()
    var timers: [IKEv1TimerID: Duration] = [:]
    var actions: [IKEv1Action] = []

    init(namespace: NetworkNamespace, address: IPAddress, configuration: IKEv1Endpoint.Configuration) throws {
        endpoint = IKEv1Endpoint(configuration: configuration)
        ike = try UDPSocket(namespace: namespace, address: address, port: 500)
        natt = try UDPSocket(namespace: namespace, address: address, port: 4500)
    }

    var now: Duration { ContinuousClock.now - origin }

    static func clock() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var t = time_t(tv.tv_sec)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%02d:%02d:%02d.%03d", parts.tm_hour, parts.tm_min, parts.tm_sec, Int(tv.tv_usec) / 1000)
    }

    func handle(_ event: IKEv1Event) {
        let produced = endpoint.handle(event, now: now, random: &random)
        actions += produced
        for action in produced {
            switch action {
            case .send(let bytes, let from, let to):
                if from.port == 4500 { natt.send(Self.nonESPMarker + bytes, to: to) } else { ike.send(bytes, to: to) }
            case .scheduleTimer(let id, let at):
                timers[id] = at
            case .cancelTimer(let id):
                timers[id] = nil
            case .log(let level, let text):
                timedLog.append("\(Self.clock()) \(text)")
                if ProcessInfo.processInfo.environment["VIGIL_IKEV1_TRACE"] != nil { print("[vigil \(level)] \(text)") }
            case .ikeSAEstablished, .childSAEstablished, .childSARekeyed, .childSADeleted, .ikeSADeleted,
                 .authenticatedMessageReceived, .dpdAcknowledged, .exchangeInFlight, .peerUnreachable, .peerAddressChanged, .negotiationFailed:
                break
            }
        }
    }

    /// Runs the loop until `done` holds or `seconds` pass; returns whether `done` held.
    @discardableResult
    func run(seconds: Double, until done: (InteropDriver) -> Bool = { _ in false }) -> Bool {
        let deadline = now + .milliseconds(Int64(seconds * 1000))
        while now < deadline {
            if done(self) { return true }
            let due = timers.filter { $0.value <= now }.sorted { $0.value < $1.value }
            for (id, _) in due {
                timers[id] = nil
                handle(.timerFired(id))
            }
            var fds = [pollfd(fd: ike.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: natt.fd, events: Int16(POLLIN), revents: 0)]
            let next = timers.values.min().map { max(.zero, $0 - now) } ?? .milliseconds(50)
            let wait = Int32(min(50, max(1, next.components.seconds * 1000 + next.components.attoseconds / 1_000_000_000_000_000)))
            guard poll(&fds, 2, wait) > 0 else { continue }
            if fds[0].revents & Int16(POLLIN) != 0, let datagram = ike.receive(timeoutMilliseconds: 0) {
                handle(.datagramReceived(bytes: datagram.bytes, from: datagram.from, to: ike.local))
            }
            if fds[1].revents & Int16(POLLIN) != 0, let datagram = natt.receive(timeoutMilliseconds: 0) {
                // RFC 3948 §2.2: IKE on 4500 starts with four zero octets; anything else is ESP (or a keepalive).
                if datagram.bytes.count > 4, Array(datagram.bytes.prefix(4)) == Self.nonESPMarker {
                    handle(.datagramReceived(bytes: Array(datagram.bytes.dropFirst(4)), from: datagram.from, to: natt.local))
                }
            }
        }
        return done(self)
    }

    var established: [IKEv1ChildSA] { actions.compactMap { if case .childSAEstablished(let info) = $0 { info } else { nil } } }
    var failures: [NegotiationFailure] { actions.compactMap { if case .negotiationFailed(_, _, let reason) = $0 { reason } else { nil } } }
    var acknowledged: [UInt32] { actions.compactMap { if case .dpdAcknowledged(_, let sequence) = $0 { sequence } else { nil } } }
    var log: String { actions.compactMap { if case .log(_, let text) = $0 { text } else { nil } }.joined(separator: "\n") }
    /// The log with wall-clock times, to line up with strongSwan's.
    var timedLog: [String] = []
    func count(_ predicate: (IKEv1Action) -> Bool) -> Int { actions.filter(predicate).count }
}

/// Vigil in one namespace, strongSwan in another, a veth between them; torn down by `close()`.
final class InteropLab {
    let vigilNS: NetworkNamespace
    let swanNS: NetworkNamespace
    let swan: StrongSwan
    let driver: InteropDriver

    static let vigilAddress = IPAddress("192.0.2.1")!
    static let swanAddress = IPAddress("192.0.2.2")!
    static let vigilNet = try! IPPrefix.parse("10.1.0.0/24")
    static let swanNet = try! IPPrefix.parse("10.2.0.0/24")

    struct Options {
        var ike = "aes256-sha256-modp2048"
        var esp = "aes256-sha256"
        var pfs: DHGroup? = .modp2048
        var vigilPSK = "lab-secret-123"
        var swanPSK = "lab-secret-123"
        var swanIKE: String?
        var swanESP: String?
        var forceUDPEncapsulation = false
        var dpdDelay: String?
        var swanExtra = ""
        var swanChildExtra = ""
        var vigilIKELifetime: Duration = .seconds(28_800)
        var vigilChildLifetime: Duration = .seconds(3_600)
        var rekeyMargin: Duration = .seconds(60)
        var halfOpenTimeout: Duration = IKEv1Endpoint.Configuration.defaultHalfOpenTimeout
    }

    init(_ options: Options) throws {
        vigilNS = try NetworkNamespace(prefix: "v1v")
        swanNS = try NetworkNamespace(prefix: "v1s")
        do {
            try NetworkNamespace.link(vigilNS, "v0", "192.0.2.1/24", swanNS, "s0", "192.0.2.2/24")
            try swanNS.ip("addr", "add", "10.2.0.1/24", "dev", "lo")
            swan = try StrongSwan(namespace: swanNS, name: "swan")
            let espProposal = (options.swanESP ?? options.esp) + (options.pfs.map { "-\($0.keyword)" } ?? "")
            try swan.start(swanctlConf: """
            connections {
                lab {
                    version = 1
                    local_addrs = 192.0.2.2
                    remote_addrs = 192.0.2.1
                    proposals = \(options.swanIKE ?? options.ike)
                    \(options.dpdDelay.map { "dpd_delay = \($0)" } ?? "")
                    \(options.swanExtra)
                    local { auth = psk
                            id = 192.0.2.2 }
                    remote { auth = psk
                             id = 192.0.2.1 }
                    children {
                        net {
                            local_ts = 10.2.0.0/24
                            remote_ts = 10.1.0.0/24
                            esp_proposals = \(espProposal)
                            \(options.swanChildExtra)
                        }
                    }
                }
            }
            secrets {
                ike-lab { secret = "\(options.swanPSK)"
                          id-a = 192.0.2.2
                          id-b = 192.0.2.1 }
            }
            """)
            let connection = IKEv1Endpoint.ConnectionConfiguration(ConnectionConfiguration(
                name: "lab", localAddress: Self.vigilAddress, localIdentity: .address(Self.vigilAddress),
                peers: [.init(address: Self.swanAddress, identity: .address(Self.swanAddress),
                              preSharedKey: SecureBytes(Array(options.vigilPSK.utf8)))],
                ikeProposals: [try IKEProposal.parse(options.ike)], espProposals: [try ESPProposal.parse(options.esp)],
                pfsGroup: options.pfs, localTrafficSelectors: [Self.vigilNet], remoteTrafficSelectors: [Self.swanNet],
                ikeLifetime: options.vigilIKELifetime, childLifetime: options.vigilChildLifetime,
                forceUDPEncapsulation: options.forceUDPEncapsulation,
                retransmission: RetransmissionSchedule(timeout: .seconds(1), base: 1.5, tries: 3)), rekeyMargin: options.rekeyMargin)
            driver = try InteropDriver(namespace: vigilNS, address: Self.vigilAddress,
                                       configuration: .init(connections: [connection], halfOpenTimeout: options.halfOpenTimeout))
        } catch {
            vigilNS.destroy()
            swanNS.destroy()
            throw error
        }
    }

    func close() {
        swan.stop()
        swan.removeFiles()
        vigilNS.destroy()
        swanNS.destroy()
    }

    /// Runs `swanctl` in the background while the driver loop answers strongSwan.
    func whileRunning<T: Sendable>(_ body: @escaping @Sendable () throws -> T, seconds: Double) throws -> T {
        let box = ResultBox<T>()
        let thread = Thread { box.set(Result { try body() }) }
        thread.start()
        driver.run(seconds: seconds) { _ in box.isSet }
        return try box.wait().get()
    }

    /// Vigil initiates Main Mode and Quick Mode; fails the test unless an IPsec SA comes up on both sides.
    func establish() throws {
        driver.handle(.initiate(connection: "lab", peer: Self.swanAddress))
        guard driver.run(seconds: 10, until: { !$0.established.isEmpty }) else {
            throw LabError("no IPsec SA; Vigil:\n\(driver.log)\nstrongSwan:\n\(swan.log)")
        }
        // Quick Mode ends with Vigil's QM3 and no answer: strongSwan installs its IPsec SA when it has processed it.
        // Until then a DELETE can overtake QM3 inside charon (two jobs on one IKE SA) and delete nothing.
        try awaitStrongSwanInstalled()
    }

    /// Runs Vigil until strongSwan lists an installed IPsec SA.
    func awaitStrongSwanInstalled() throws {
        guard runUntilStrongSwan({ $0.contains("state=INSTALLED") }) else {
            throw LabError("strongSwan never installed the IPsec SA; strongSwan:\n\(swan.log)")
        }
    }

    /// Runs Vigil until strongSwan's SA listing (polled every 100 ms) satisfies `condition`, at most `seconds`.
    @discardableResult
    func runUntilStrongSwan(seconds: Double = 15, _ condition: @escaping (String) -> Bool) -> Bool {
        let holds = swan.listingCondition(condition)
        return driver.run(seconds: seconds) { _ in holds() }
    }

    /// strongSwan's raw SA listing, one field per `key=value` word.
    func swanSAs() throws -> String { try swan.listSAs() }
}

