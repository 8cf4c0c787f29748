import Foundation
import VigilAddressing
import VigilConfig
import VigilFailover
import VigilKernel
import VigilLiveness

/// One crypto-map entry at run time: its failover coordinator over the ordered peer list, the IKE SA per peer, the
/// Child SAs negotiated, and what is installed in the kernel for each protected selector pair.
final class EntryRuntime {
    let map: String
    var entry: CryptoMapEntry
    let name: String
    let version: IKEVersionTag
    var coordinator: FailoverCoordinator<String>
    var coordinatorTimer: EventLoop.TimerHandle?
    var coordinatorWakeup: Duration?
    /// Peer name (as configured: address or host name) → resolved address.
    var addresses: [String: IPAddress] = [:]
    /// Addresses a listed peer was seen at behind a NAT after an authenticated move (RFC 7296 §2.23); the
    /// configured address stays the one initiated to. Bounded by the number of listed peers.
    var movedAddresses: [IPAddress: String] = [:] {
        didSet { if movedAddresses.count > 4 * max(1, addresses.count) { movedAddresses.removeAll() } }
    }
    /// Peer name → its current IKE SA.
    var sessions: [String: SessionKey] = [:]
    /// Peers probed for preemption (a Phase 1 that is torn down once it answers).
    var probing: Set<String> = []
    /// Child SAs by our inbound SPI, with the peer they belong to and their kernel form (one per selector pair).
    var children: [UInt32: ChildRecord] = [:]
    /// What the kernel holds per selector pair ("local=remote"): policies point at this Child SA's peer.
    var installed: [String: KernelChildSA] = [:]
    var reqids: ReqidAllocator
    /// Traffic counters seen at the last sample, per inbound SPI.
    var lastInboundPackets: [UInt32: UInt64] = [:]
    var lastOutboundPackets: [UInt32: UInt64] = [:]
    /// The configuration file's peer list and preferred peer as last loaded (start-up or reload): a run-time list
    /// (`vigil peers set`) differs from it until the file changes the list.
    var configuredPeers: [Peer]
    var configuredPreferred: Peer?
    /// What the daemon last learnt of each listed peer (`vigil show maps`); only listed peers are kept.
    var health: [String: PeerHealth] = [:]

    struct ChildRecord {
        var child: NegotiatedChild
        var peer: String
        var kernel: [KernelChildSA]
        /// The old Child SA (its inbound SPI) whose deletion installs this one's outbound SAs; nil once they are in.
        var outboundAfterDeletionOf: UInt32? = nil
        /// The event loop's clock when it was established or rekeyed into being.
        var since: Duration? = nil
    }

    init(map: String, entry: CryptoMapEntry, global: GlobalSettings) {
        self.map = map
        self.entry = entry
        name = "\(map)/\(entry.sequence)"
        version = entry.ikeVersion == .v1 ? .v1 : .v2
        coordinator = FailoverCoordinator(configuration: Self.coordinatorConfiguration(entry))
        reqids = ReqidAllocator()
        configuredPeers = entry.peers
        configuredPreferred = entry.preferredPeer
        for peer in entry.peers { addresses[peer.description] = Self.resolve(peer.address) }
    }

    var peerNames: [String] { entry.peers.map(\.description) }

    /// True when the running list is one set at run time, not the configuration file's.
    var listSetAtRunTime: Bool {
        peerNames != configuredPeers.map(\.description) || entry.preferredPeer?.description != configuredPreferred?.description
    }

    /// Records what was learnt of a listed peer; anything else (an unlisted address) is not kept.
    func noteHealth(of peer: String, _ change: (inout PeerHealth) -> Void) {
        guard peerNames.contains(peer) else { return }
        change(&health[peer, default: PeerHealth()])
    }

    /// After a list change: the health of peers no longer listed goes.
    func forgetUnlistedHealth() {
        let listed = Set(peerNames)
        health = health.filter { listed.contains($0.key) }
    }

    func peerName(for address: IPAddress) -> String? {
        addresses.first(where: { $0.value == address })?.key ?? movedAddresses[address]
    }

    var dpdSummary: String {
        let dpd = entry.dpd
        guard let interval = dpd.interval, dpd.mode != .off else { return "off" }
        return "\(dpd.mode), interval \(interval.configurationText), retry \(dpd.retry.configurationText), "
            + "retries \(dpd.retries), action \(dpd.action)"
    }

    static func coordinatorConfiguration(_ entry: CryptoMapEntry) -> FailoverCoordinator<String>.Configuration {
        let action: FailoverCoordinator<String>.DeadPeerAction
        switch entry.dpd.action {
        case .restart: action = .restart
        case .clear: action = .clear
        case .hold: action = .hold
        }
        let preemption = entry.preemption.map {
            FailoverCoordinator<String>.Preemption(
                probeInterval: max(.seconds(1), $0.holdDown / 4), holdDown: $0.holdDown,
                maximumHoldDown: $0.holdDown * max(1, $0.maxFlaps * 4))
        }
        return FailoverCoordinator<String>.Configuration(
            peers: entry.peers.map(\.description),
            preferred: entry.preferredPeer?.description,
            deadPeerAction: action,
            attemptTimeout: entry.connectTimeout,
            backoff: .init(initial: entry.backoff.initial, maximum: entry.backoff.maximum),
            idleTime: entry.idleTime,
            preemption: preemption)
    }

    /// Dead peer detector settings for an IKE SA of this entry (nil when DPD is off).
    func detectorConfiguration(firstSequence: UInt32) -> DeadPeerDetector.Configuration? {
        let dpd = entry.dpd
        guard let interval = dpd.interval else { return nil }
        let mode: DeadPeerDetector.Configuration.Mode
        switch dpd.mode {
        case .periodic: mode = .periodic
        case .onDemand: mode = .onDemand
        case .onIdle: mode = .onIdle
        case .off: return nil
        }
        let flavour: DeadPeerDetector.Configuration.ProbeFlavour = version == .v1 ? .ikev1(firstSequence: firstSequence) : .ikev2
        return DeadPeerDetector.Configuration(mode: mode, interval: interval, retry: dpd.retry, retries: dpd.retries, flavour: flavour)
    }

    /// Host names are resolved with the system resolver; addresses stay as they are.
    static func resolve(_ address: PeerAddress) -> IPAddress? {
        switch address {
        case .ip(let ip):
            return ip
        case .host(let name):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(name, nil, &hints, &result) == 0, let first = result else { return nil }
            defer { freeaddrinfo(result) }
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
            }
            return SocketAddress.endpoint(from: storage)?.address
        }
    }
}

/// The last known health of one listed peer, named by the events that change it.
struct PeerHealth: Equatable {
    /// When it last answered: an IKE SA established with it, or a DPD answer.
    var lastAnswer: Duration?
    /// DPD probes it left unanswered in a row (reset by an answer).
    var probesMissed = 0
    /// Times the entry's traffic moved away from it.
    var failoversAway = 0
    var lastFailure: String?
    var lastFailureAt: Duration?

    mutating func answered(at now: Duration) {
        lastAnswer = now
        probesMissed = 0
    }

    /// A retransmitted probe: the `retry` before it went unanswered.
    mutating func probeUnanswered(retry: Int) {
        probesMissed = max(probesMissed, retry)
    }

    mutating func declaredDead(probesMissed missed: Int, at now: Duration) {
        probesMissed = missed
        failed("declared dead: no answer to \(missed) probes", at: now)
    }

    /// Our limit on a kept failure reason (parts of it may come from the peer).
    static let maximumReasonLength = 256

    mutating func failed(_ reason: String, at now: Duration) {
        lastFailure = String(reason.prefix(Self.maximumReasonLength))
        lastFailureAt = now
    }

    mutating func failedOver() {
        failoversAway += 1
    }
}

extension KernelChildSA {
    /// The selector pair this Child SA protects, as the key of `EntryRuntime.installed`.
    var selectorKey: String { "\(localSubnet)=\(remoteSubnet)" }
}
