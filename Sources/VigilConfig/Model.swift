#if canImport(Glibc)
import Glibc
#endif
@_exported import VigilAddressing
import VigilCrypto
import VigilAlgorithms
import VigilIKE

/// The whole configuration: what the rest of the daemon uses. Values only; built by `ConfigurationLoader`.
public struct VigilConfiguration: Hashable, Sendable {
    public var global: GlobalSettings
    /// Sorted by name.
    public var cryptoMaps: [CryptoMap]

    public init(global: GlobalSettings, cryptoMaps: [CryptoMap]) {
        self.global = global
        self.cryptoMaps = cryptoMaps
    }
}

/// The `global:` section.
public struct GlobalSettings: Hashable, Sendable {
    /// Our IKE identity (IDi / IDr) unless an entry overrides it.
    public var identity: Identity
    /// Addresses the IKE sockets bind to (UDP 500 and 4500).
    public var listen: [IPAddress]
    public var dataplane: DataPlaneChoice
    /// Absolute path of the secrets file (resolved against the main file's directory).
    public var secretsPath: String?
    public var controlSocket: String
    /// Besides root (and the user vigild runs as), members of this group (by their primary group, as
    /// SO_PEERCRED reports it) may use the control API; the socket is then mode 0660 and owned by it.
    public var controlGroup: String? = nil
    /// Where vigild keeps peer lists changed at run time (`vigil peers set`), so they survive a restart.
    public var stateFile: String = ConfigurationLimits.defaultStateFile
    /// DPD defaults; each entry may override key by key.
    public var dpd: DPDSettings
    public var ikeRetransmit: RetransmissionSchedule
    public var kernel: KernelSettings
    /// Responder half-open limits; unset ones are each engine's default.
    public var halfOpen = HalfOpenSettings()
    /// Updown hooks run for every entry (each entry's own `hooks` run after these).
    public var hooks: [Hook] = []
    /// The Prometheus endpoint (`global.metrics`); nil, the default, serves none.
    public var metrics: MetricsSettings? = nil

    public init(
        identity: Identity, listen: [IPAddress], dataplane: DataPlaneChoice, secretsPath: String?,
        controlSocket: String, dpd: DPDSettings, ikeRetransmit: RetransmissionSchedule, kernel: KernelSettings
    ) {
        self.identity = identity
        self.listen = listen
        self.dataplane = dataplane
        self.secretsPath = secretsPath
        self.controlSocket = controlSocket
        self.dpd = dpd
        self.ikeRetransmit = ikeRetransmit
        self.kernel = kernel
    }
}

/// `global.metrics`: where vigild serves its metrics over HTTP (`GET /metrics`, the Prometheus text format).
public struct MetricsSettings: Hashable, Sendable {
    /// The TCP address and port to listen on (`192.0.2.1:9464`, `[2001:db8::1]:9464`).
    public var listen: Endpoint

    public init(listen: Endpoint) { self.listen = listen }
}

/// `global.half-open-per-source`, `half-open-total`, `half-open-lifetime`, `cookie-threshold`: nil is "the
/// engine's default" (they differ: IKEv2 can demand a COOKIE, IKEv1 cannot).
public struct HalfOpenSettings: Hashable, Sendable {
    /// Half-open SAs one source address may hold (both engines).
    public var perSource: Int?
    /// Half-open ISAKMP SAs in all (IKEv1; IKEv2 demands a COOKIE instead, see `cookieThreshold`).
    public var total: Int?
    /// A half-open SA expires after this (both engines).
    public var lifetime: Duration?
    /// Half-open IKE SAs before a COOKIE is demanded (IKEv2, RFC 7296 §2.6).
    public var cookieThreshold: Int?

    public init(perSource: Int? = nil, total: Int? = nil, lifetime: Duration? = nil, cookieThreshold: Int? = nil) {
        self.perSource = perSource
        self.total = total
        self.lifetime = lifetime
        self.cookieThreshold = cookieThreshold
    }
}

/// Where ESP packets are processed.
public enum DataPlaneChoice: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// XFRM states and policies in the kernel.
    case kernel
    /// Vigil's own ESP over a TUN device.
    case userspace
    /// Kernel when it has ESP, else userspace.
    case auto

    public var description: String { rawValue }
}

// `Identity` (the IKE identity) is the shared type from VigilAddressing.

/// RFC 3706 DPD / RFC 7296 §2.4 liveness settings, in Cisco's words (`crypto isakmp keepalive`).
public struct DPDSettings: Hashable, Sendable {
    public enum Mode: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
        /// R-U-THERE once nothing was received for `interval`, whatever we send (Cisco `periodic`).
        case periodic
        /// R-U-THERE only when traffic is sent and nothing was received for `interval` (Cisco's default).
        case onDemand = "on-demand"
        /// R-U-THERE once nothing was received for `interval`, whether or not we send (FortiGate `on-idle`,
        /// strongSwan's `dpd_delay`); scheduled as `periodic` is.
        case onIdle = "on-idle"
        /// No liveness checks.
        case off
        public var description: String { rawValue }
    }

    /// What to do with the SAs of a peer declared dead.
    public enum Action: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
        /// Delete the SAs and stay down.
        case clear
        /// Delete the SAs, keep the policies (traffic is held) until the peer is reachable again.
        case hold
        /// Delete the SAs and negotiate again, failing over to the next listed peer.
        case restart
        public var description: String { rawValue }
    }

    public var mode: Mode
    /// Silence from the peer (on-demand with traffic to send, on-idle, periodic) before an R-U-THERE; nil only when `mode` is `.off`.
    public var interval: Duration?
    /// Time between R-U-THERE retransmissions once one went unanswered.
    public var retry: Duration
    /// Unanswered retransmissions after which the peer is declared dead.
    public var retries: Int
    public var action: Action

    public init(mode: Mode, interval: Duration?, retry: Duration, retries: Int, action: Action) {
        self.mode = mode
        self.interval = interval
        self.retry = retry
        self.retries = retries
        self.action = action
    }

    /// Cisco's defaults: on-demand, retry 2 s, 5 retries; no interval (one must be configured unless mode is off).
    public static let defaults = DPDSettings(
        mode: .onDemand, interval: nil, retry: ConfigurationLimits.defaultDPDRetry,
        retries: ConfigurationLimits.defaultDPDRetries, action: .restart)
}

extension RetransmissionSchedule {
    /// Vigil's default when the configuration names none: 1 s, 1.8, 4 tries (a failover controller gives up on an
    /// unanswered peer sooner than strongSwan's 4 s, 1.8, 5).
    public static let vigilDefault = RetransmissionSchedule(timeout: .seconds(1), base: 1.8, tries: 4)
}

/// How routes to protected subnets are installed.
public struct KernelSettings: Hashable, Sendable {
    public enum RouteTable: Hashable, Sendable, CustomStringConvertible {
        /// The main table (254).
        case main
        /// A table of its own, selected by a policy rule (`from all lookup N`).
        case number(UInt32)

        public var description: String {
            switch self {
            case .main: "main"
            case .number(let number): String(number)
            }
        }
    }

    public var routeTable: RouteTable
    public var installRoutes: Bool

    public init(routeTable: RouteTable, installRoutes: Bool) {
        self.routeTable = routeTable
        self.installRoutes = installRoutes
    }

    /// Table 86 ("V") with a rule: Vigil's own, so it never collides with strongSwan's table 220 on one host.
    public static let defaults = KernelSettings(routeTable: .number(86), installRoutes: true)
}

/// A named crypto map (Cisco `crypto map NAME SEQ ipsec-isakmp`).
public struct CryptoMap: Hashable, Sendable {
    public var name: String
    /// Sorted by sequence number; lower numbers are matched first.
    public var entries: [CryptoMapEntry]

    public init(name: String, entries: [CryptoMapEntry]) {
        self.name = name
        self.entries = entries
    }
}

public enum IKEVersion: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case v1
    case v2
    public var description: String { rawValue }
}

/// UDP encapsulation of ESP (RFC 3948).
public enum Encapsulation: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Only when NAT is detected.
    case auto
    /// Always (fake NAT detection, as strongSwan's `encap = yes`).
    case force
    public var description: String { rawValue }
}

/// Going back to the preferred peer once it is reachable again, with damping so a flapping peer is left alone.
public struct Preemption: Hashable, Sendable {
    /// The preferred peer must answer for this long before traffic moves back to it.
    public var holdDown: Duration
    /// At most this many moves back within `flapWindow`; further ones are suppressed until the window passes.
    public var maxFlaps: Int
    public var flapWindow: Duration

    public init(holdDown: Duration, maxFlaps: Int, flapWindow: Duration) {
        self.holdDown = holdDown
        self.maxFlaps = maxFlaps
        self.flapWindow = flapWindow
    }

    public static let defaults = Preemption(holdDown: .seconds(30), maxFlaps: 3, flapWindow: .seconds(600))
}

/// Delays between attempts when every listed peer failed: doubling from `initial` up to `maximum`.
public struct Backoff: Hashable, Sendable {
    public var initial: Duration
    public var maximum: Duration

    public init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = maximum
    }

    public static let defaults = Backoff(initial: .seconds(1), maximum: .seconds(60))
}

/// One protected-traffic pair (Cisco's crypto ACL line; IKEv2 TSi/TSr). Both sides are of one address family.
public struct TrafficSelectorPair: Hashable, Sendable, CustomStringConvertible {
    public var local: IPPrefix
    public var remote: IPPrefix

    public init(local: IPPrefix, remote: IPPrefix) {
        self.local = local
        self.remote = remote
    }

    /// True when some packet would match both pairs.
    public func overlaps(_ other: TrafficSelectorPair) -> Bool {
        local.overlaps(other.local) && remote.overlaps(other.remote)
    }

    public var description: String { "\(local) <=> \(remote)" }
}

/// One entry of a crypto map (Cisco `crypto map NAME SEQ`).
public struct CryptoMapEntry: Hashable, Sendable {
    public var sequence: Int
    public var ikeVersion: IKEVersion
    /// The ordered peer list; the first is tried first, failover goes down the list.
    public var peers: [Peer]
    /// Cisco `set peer X default`: always `peers[0]` when set.
    public var preferredPeer: Peer?
    /// Cisco `set security-association idle-time`: after this long idle on a backup peer, the preferred peer is tried again.
    public var idleTime: Duration?
    public var preemption: Preemption?
    public var traffic: [TrafficSelectorPair]
    public var ikeProposals: [IKEProposal]
    public var espProposals: [ESPProposal]
    /// Cisco `set pfs`: the DH group of CREATE_CHILD_SA / Quick Mode KE; nil means no PFS.
    public var pfsGroup: DHGroup?
    public var ikeLifetime: Duration
    public var childLifetime: Duration
    /// Rekey this long before a lifetime ends; nil lets the IKE engine choose.
    public var rekeyMargin: Duration?
    /// Global DPD settings merged with this entry's overrides.
    public var dpd: DPDSettings
    /// Initiate at start-up (else wait for the peer or for traffic).
    public var start: Bool
    public var encapsulation: Encapsulation
    /// Time one negotiation attempt with one peer may take before the next peer is tried.
    public var connectTimeout: Duration
    public var backoff: Backoff
    /// This entry's own updown hooks, run after `global.hooks`.
    public var hooks: [Hook] = []
    /// Tunnel monitoring (`monitor`): ICMP echo through the tunnel; nil, the default, monitors nothing.
    public var monitor: TunnelMonitorSettings? = nil
    /// Overrides `global.identity` for this entry.
    public var localIdentity: Identity?
    /// Global schedule merged with this entry's overrides.
    public var retransmit: RetransmissionSchedule

    public init(
        sequence: Int, ikeVersion: IKEVersion, peers: [Peer], preferredPeer: Peer?, idleTime: Duration?,
        preemption: Preemption?, traffic: [TrafficSelectorPair], ikeProposals: [IKEProposal],
        espProposals: [ESPProposal], pfsGroup: DHGroup?, ikeLifetime: Duration, childLifetime: Duration,
        rekeyMargin: Duration?, dpd: DPDSettings, start: Bool, encapsulation: Encapsulation,
        connectTimeout: Duration, backoff: Backoff, localIdentity: Identity?, retransmit: RetransmissionSchedule
    ) {
        self.sequence = sequence
        self.ikeVersion = ikeVersion
        self.peers = peers
        self.preferredPeer = preferredPeer
        self.idleTime = idleTime
        self.preemption = preemption
        self.traffic = traffic
        self.ikeProposals = ikeProposals
        self.espProposals = espProposals
        self.pfsGroup = pfsGroup
        self.ikeLifetime = ikeLifetime
        self.childLifetime = childLifetime
        self.rekeyMargin = rekeyMargin
        self.dpd = dpd
        self.start = start
        self.encapsulation = encapsulation
        self.connectTimeout = connectTimeout
        self.backoff = backoff
        self.localIdentity = localIdentity
        self.retransmit = retransmit
    }
}

/// An entry's `monitor` key (Palo Alto's tunnel monitor, Juniper's VPN monitor): ICMP echo requests from `source` to
/// `address` every `interval`, through the tunnel; `threshold` unanswered in a row while the entry is established
/// declare the data path dead, and the entry fails over as from a dead peer. Checked at load: both addresses IPv4,
/// `source` inside the local and `address` inside the remote prefix of one of the entry's traffic selector pairs.
public struct TunnelMonitorSettings: Hashable, Sendable {
    /// The address behind the peers that is pinged (inside a remote traffic selector).
    public var address: IPAddress
    /// Our address the echo requests are sent from (inside a local traffic selector, configured on this host).
    public var source: IPAddress
    public var interval: Duration
    public var threshold: Int

    public init(address: IPAddress, source: IPAddress, interval: Duration = ConfigurationLimits.defaultMonitorInterval,
                threshold: Int = ConfigurationLimits.defaultMonitorThreshold) {
        self.address = address
        self.source = source
        self.interval = interval
        self.threshold = threshold
    }
}

/// An updown hook (strongSwan's `updown`): an executable run, off the event loop, when one of `events` happens to
/// an entry, with the details in `VIGIL_*` environment variables.
public struct Hook: Hashable, Sendable {
    /// What a hook can be run for.
    public enum Event: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
        /// A Child SA with a peer is up and its data plane programmed.
        case established
        /// A Child SA (the tunnel with a peer) went down.
        case down
        /// A peer was declared dead (DPD, or retransmissions exhausted on an established IKE SA).
        case deadPeer = "dead-peer"
        /// The entry's traffic moved from one peer to another.
        case failover
        public var description: String { rawValue }
    }

    /// Absolute path of the executable (checked at load: owner root or vigild's user, not group/world-writable).
    public var path: String
    /// In `Event.allCases` order, each once.
    public var events: [Event]
    /// The process group is killed (SIGKILL) when a run lasts longer.
    public var timeout: Duration

    public init(path: String, events: [Event] = Event.allCases, timeout: Duration = ConfigurationLimits.defaultHookTimeout) {
        self.path = path
        self.events = Event.allCases.filter(events.contains)
        self.timeout = timeout
    }
}

/// Where a peer is: an address, or a host name resolved when it is tried.
public enum PeerAddress: Hashable, Sendable, CustomStringConvertible {
    case ip(IPAddress)
    /// Lower-cased host name.
    case host(String)

    public var description: String {
        switch self {
        case .ip(let address): address.description
        case .host(let name): name
        }
    }
}

/// One listed peer.
public struct Peer: Hashable, Sendable, CustomStringConvertible {
    public var address: PeerAddress
    /// The identity the peer must authenticate as; nil means its address (or host name as an FQDN).
    public var identity: Identity?
    public var preSharedKey: Secret

    public init(address: PeerAddress, identity: Identity?, preSharedKey: Secret) {
        self.address = address
        self.identity = identity
        self.preSharedKey = preSharedKey
    }

    /// The identity the peer is expected to present.
    public var expectedIdentity: Identity { identity ?? addressIdentity }

    /// The identity its address (or host name) stands for: a secrets key by address.
    public var addressIdentity: Identity {
        switch address {
        case .ip(let address): .address(address)
        case .host(let name): .fqdn(name)
        }
    }

    public var description: String { address.description }
}

/// Key material that never prints: `description`, `debugDescription` and mirrors show `<secret>`. Kept in
/// `SecureBytes`, the one wiped storage of the project (cleansed when the last copy is released).
public struct Secret: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The key in wiped storage, as the engines take it (no intermediate array).
    public let secureBytes: SecureBytes

    public init(bytes: [UInt8]) {
        secureBytes = SecureBytes(bytes)
    }

    /// A copy of the key (the caller's copy is not wiped: prefer `withUnsafeBytes`).
    public var bytes: [UInt8] { secureBytes.bytes }
    public var count: Int { secureBytes.count }

    /// Lends the key without copying it.
    public func withUnsafeBytes<T, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> T) throws(E) -> T {
        try secureBytes.withUnsafeBytes(body)
    }

    public var description: String { "<secret>" }
    public var debugDescription: String { "<secret>" }
    public var customMirror: Mirror { Mirror(self, children: []) }
}
