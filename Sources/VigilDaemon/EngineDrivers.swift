import VigilAddressing
import VigilAlgorithms
import VigilConfig
import VigilCrypto
import VigilIKE
import VigilIKEv1
import VigilIKEv2

/// The crypto-map entries of one IKE version as the engines configure them: what both versions share, and IKEv1's
/// rekey margin where the entry sets one.
enum EngineConnections {
    /// `forceEncapsulation` is set for the userspace data plane, which carries ESP in UDP 4500 only.
    static func all(_ configuration: VigilConfiguration, version: IKEVersion, forceEncapsulation: Bool)
        -> [(connection: ConnectionConfiguration, rekeyMargin: Duration?)] {
        configuration.cryptoMaps.flatMap { map in
            map.entries.filter { $0.ikeVersion == version }.map {
                connection(map: map.name, entry: $0, global: configuration.global, forceEncapsulation: forceEncapsulation)
            }
        }
    }

    /// One entry as its engine configures it (at start-up, and when a reload adds or replaces it).
    static func connection(map: String, entry: CryptoMapEntry, global: GlobalSettings, forceEncapsulation: Bool)
        -> (connection: ConnectionConfiguration, rekeyMargin: Duration?) {
        let peers = entry.peers.compactMap { peer -> PeerConfiguration? in
            guard let address = EntryRuntime.resolve(peer.address) else { return nil }
            return PeerConfiguration(address: address, identity: peer.expectedIdentity, preSharedKey: SecureBytes(peer.preSharedKey))
        }
        let family = peers.first?.address.family ?? .ipv4
        let local = global.listen.first { $0.family == family } ?? global.listen[0]
        return (ConnectionConfiguration(
            name: "\(map)/\(entry.sequence)", localAddress: local,
            localIdentity: entry.localIdentity ?? global.identity, peers: peers,
            ikeProposals: entry.ikeProposals, espProposals: entry.espProposals, pfsGroup: entry.pfsGroup,
            localTrafficSelectors: unique(entry.traffic.map(\.local)),
            remoteTrafficSelectors: unique(entry.traffic.map(\.remote)),
            ikeLifetime: entry.ikeLifetime, childLifetime: entry.childLifetime,
            forceUDPEncapsulation: forceEncapsulation || entry.encapsulation == .force,
            retransmission: entry.retransmit), entry.rekeyMargin)
    }

    private static func unique(_ prefixes: [IPPrefix]) -> [IPPrefix] {
        var seen = Set<IPPrefix>()
        return prefixes.filter { seen.insert($0).inserted }
    }
}

/// Runs an engine's timers on the event loop: one loop timer per engine timer id.
final class EngineTimers<ID: Hashable> {
    private var handles: [ID: EventLoop.TimerHandle] = [:]
    private let loop: any Scheduler

    init(loop: any Scheduler) { self.loop = loop }

    func schedule(_ id: ID, at deadline: Duration, _ fire: @escaping () -> Void) {
        if let old = handles[id] { loop.cancel(old) }
        handles[id] = loop.schedule(at: deadline) { [unowned self] in
            self.handles[id] = nil
            fire()
        }
    }

    func cancel(_ id: ID) {
        if let old = handles.removeValue(forKey: id) { loop.cancel(old) }
    }
}

/// What the daemon's driver needs of an IKE engine, either version: a pure value that takes events and returns
/// actions, and the few events and views the daemon asks for by their version's names.
protocol DrivenIKEEngine {
    associatedtype Event: DrivenIKEEvent where Event.TimerID == TimerID, Event.SAID == SAID
    associatedtype Action
    associatedtype TimerID: Hashable
    associatedtype SAID: Hashable & Sendable
    associatedtype SAView: DrivenIKESA where SAView.SAID == SAID

    static var version: IKEVersionTag { get }
    /// "IKEv2" / "IKEv1": the prefix of the engine's log lines.
    static var logName: String { get }
    static func makeEndpoint(_ configuration: VigilConfiguration, forceEncapsulation: Bool) -> Self

    mutating func handle(_ event: Event, now: Duration, random: inout some RandomNumberGenerator) -> [Action]
    mutating func updatePeers(connection: String, peers: [PeerConfiguration])
    /// A reload added or changed an entry (one of the same name is replaced), or removed one.
    mutating func addConnection(_ connection: ConnectionConfiguration, rekeyMargin: Duration?)
    mutating func removeConnection(named name: String)
    var ikeSAs: [SAView] { get }
    var counters: [IKECounter: UInt64] { get }
    var exchangeOutcomes: [IKEExchangeOutcome: UInt64] { get }
    var childRekeyAt: [ChildSAID: Duration] { get }

    static func spi(of id: SAID) -> UInt64
    static func id(_ spi: UInt64) -> SAID
    /// IKEv2 sends (or retransmits) an empty INFORMATIONAL; IKEv1 an R-U-THERE with `sequence`.
    static func probe(_ id: SAID, sequence: UInt32) -> Event

    /// The version-specific part: what one of the engine's actions is in the daemon's vocabulary.
    static func step(_ action: Action) -> DriverStep<TimerID, SAID, SAView>
}

/// The events both engines name alike; their enums' cases are these.
protocol DrivenIKEEvent {
    associatedtype TimerID
    associatedtype SAID
    static func timerFired(_ id: TimerID) -> Self
    static func initiate(connection: String, peer: IPAddress) -> Self
    static func deleteIKESA(_ id: SAID) -> Self
    static func abandonIKESA(_ id: SAID) -> Self
    static func datagramReceived(bytes: [UInt8], from: Endpoint, to: Endpoint) -> Self
}

extension IKEv2Event: DrivenIKEEvent {}
extension IKEv1Event: DrivenIKEEvent {}

/// An engine action as the driver performs it.
enum DriverStep<TimerID, SAID: Hashable & Sendable, SAView> {
    case timer(TimerID, at: Duration)
    case cancelTimer(TimerID)
    case ikeUp(SAView)
    case childUp(NegotiatedChildSA<SAID>)
    case childRekeyed(old: ChildSAID, NegotiatedChildSA<SAID>)
    case ikeDown(SAView, IKESAEnd)
    /// Everything else, with the IKE SA named by the daemon's key.
    case output((_ key: (SAID) -> SessionKey) -> EngineOutput)
}

/// An IKE SA (ISAKMP SA) as the driver reports it, either version.
protocol DrivenIKESA {
    associatedtype SAID
    var id: SAID { get }
    var connection: String { get }
    var localEndpoint: Endpoint { get }
    var remoteEndpoint: Endpoint { get }
    var isInitiator: Bool { get }
    /// IKEv2 SPIs, IKEv1 cookies.
    var initiatorSPI: UInt64 { get }
    var responderSPI: UInt64 { get }
    var stateName: String { get }
    var proposalDescription: String? { get }
    var establishedAt: Duration? { get }
    /// When the engine's rekey timer for it is due.
    var rekeyAt: Duration? { get }
    /// Whether the peer may be probed (IKEv1: it advertised RFC 3706 DPD; IKEv2 always).
    var peerSupportsDPD: Bool { get }
    /// What the IKE-up line says of the SA's SPIs (cookies), and after our role of what the peer offered.
    var establishedDetail: String { get }
    var capabilities: String { get }
}

/// One IKE engine behind the daemon's vocabulary: owns the engine value, its timers on the event loop, and its
/// randomness, and hands everything the engine returns to `output`, on the event loop thread.
final class EngineDriver<Engine: DrivenIKEEngine>: IKEEngineDriver {
    var version: IKEVersionTag { Engine.version }
    var output: (EngineOutput) -> Void = { _ in }
    private var endpoint: Engine
    private let loop: any Scheduler
    private lazy var timers = EngineTimers<Engine.TimerID>(loop: loop)
    private var random: DaemonRandom
    private let forceEncapsulation: Bool

    init(configuration: VigilConfiguration, loop: any Scheduler, random: DaemonRandom = .system, forceEncapsulation: Bool) {
        self.loop = loop
        self.random = random
        self.forceEncapsulation = forceEncapsulation
        endpoint = Engine.makeEndpoint(configuration, forceEncapsulation: forceEncapsulation)
    }

    private func run(_ event: Engine.Event) {
        for action in endpoint.handle(event, now: loop.now, random: &random) { perform(action) }
    }

    private func key(_ id: Engine.SAID) -> SessionKey { SessionKey(version: Engine.version, spi: Engine.spi(of: id)) }

    func perform(_ action: Engine.Action) {
        switch Engine.step(action) {
        case .timer(let id, let at): timers.schedule(id, at: at) { [unowned self] in self.run(.timerFired(id)) }
        case .cancelTimer(let id): timers.cancel(id)
        case .ikeUp(let sa):
            output(.ikeUp(key(sa.id), connection: sa.connection, peer: sa.remoteEndpoint.address,
                          detail: "\(sa.proposalDescription ?? "?") \(sa.localEndpoint) <=> \(sa.remoteEndpoint) "
                            + sa.establishedDetail + (sa.isInitiator ? " (initiator)" : " (responder)") + sa.capabilities,
                          peerSupportsDPD: sa.peerSupportsDPD))
        case .childUp(let child): output(.childUp(child.withIKESA(key)))
        case .childRekeyed(let old, let child): output(.childRekeyed(oldInboundSPI: old.inboundSPI, child.withIKESA(key)))
        case .ikeDown(let sa, let reason):
            output(.ikeDown(key(sa.id), connection: sa.connection, peer: sa.remoteEndpoint.address, reason: reason.description,
                            byPeer: reason.endedByPeer))
        case .output(let make): output(make(key))
        }
    }

    func initiate(connection: String, peer: IPAddress) { run(.initiate(connection: connection, peer: peer)) }
    func probe(_ session: SessionKey, sequence: UInt32) { run(Engine.probe(Engine.id(session.spi), sequence: sequence)) }
    func delete(_ session: SessionKey) { run(.deleteIKESA(Engine.id(session.spi))) }
    func abandon(_ session: SessionKey) { run(.abandonIKESA(Engine.id(session.spi))) }
    func received(_ bytes: [UInt8], from: Endpoint, to: Endpoint) { run(.datagramReceived(bytes: bytes, from: from, to: to)) }
    func updatePeers(connection: String, peers: [EnginePeer]) { endpoint.updatePeers(connection: connection, peers: peers) }
    func addConnection(map: String, entry: CryptoMapEntry, global: GlobalSettings) {
        let made = EngineConnections.connection(map: map, entry: entry, global: global, forceEncapsulation: forceEncapsulation)
        endpoint.addConnection(made.connection, rekeyMargin: made.rekeyMargin)
    }
    func removeConnection(_ name: String) { endpoint.removeConnection(named: name) }

    var sessions: [SessionView] {
        endpoint.ikeSAs.map { sa in
            SessionView(key: key(sa.id), connection: sa.connection, peer: sa.remoteEndpoint.address, state: sa.stateName,
                        localSPI: sa.isInitiator ? sa.initiatorSPI : sa.responderSPI,
                        remoteSPI: sa.isInitiator ? sa.responderSPI : sa.initiatorSPI,
                        algorithms: sa.proposalDescription ?? "", establishedAt: sa.establishedAt, rekeyAt: sa.rekeyAt)
        }
    }

    var counters: [String: UInt64] { endpoint.counters.byExportedName }
    var exchanges: [IKEExchangeOutcome: UInt64] { endpoint.exchangeOutcomes }
    var childRekeyAt: [ChildSAID: Duration] { endpoint.childRekeyAt }
}

/// IKEv2 (RFC 7296) behind the daemon's engine vocabulary.
typealias IKEv2Driver = EngineDriver<IKEv2Endpoint>

extension IKEv2Endpoint: DrivenIKEEngine {
    static var version: IKEVersionTag { .v2 }
    static var logName: String { "IKEv2" }

    static func makeEndpoint(_ configuration: VigilConfiguration, forceEncapsulation: Bool) -> IKEv2Endpoint {
        let connections = EngineConnections.all(configuration, version: .v2, forceEncapsulation: forceEncapsulation).map(\.connection)
        let halfOpen = configuration.global.halfOpen
        typealias Defaults = IKEv2Endpoint.Configuration
        return IKEv2Endpoint(configuration: .init(
            connections: connections, retransmission: configuration.global.ikeRetransmit,
            halfOpenTimeout: halfOpen.lifetime ?? Defaults.defaultHalfOpenTimeout,
            cookieThreshold: halfOpen.cookieThreshold ?? Defaults.defaultCookieThreshold,
            halfOpenLimitPerSource: halfOpen.perSource ?? Defaults.defaultHalfOpenLimitPerSource))
    }

    mutating func addConnection(_ connection: VigilIKE.ConnectionConfiguration, rekeyMargin: Duration?) { addConnection(connection) }

    static func spi(of id: IKESAID) -> UInt64 { id.spi }
    static func id(_ spi: UInt64) -> IKESAID { IKESAID(spi) }
    static func probe(_ id: IKESAID, sequence: UInt32) -> IKEv2Event { .sendLivenessCheck(id) }

    static func step(_ action: IKEv2Action) -> DriverStep<IKEv2TimerID, IKESAID, IKESAInfo> {
        switch action {
        case .send(let bytes, let from, let to): .output { _ in .send(bytes: bytes, from: from, to: to) }
        case .sendNATKeepalive(let from, let to): .output { _ in .sendRaw(bytes: [0xFF], from: from, to: to) }
        case .scheduleTimer(let id, let at): .timer(id, at: at)
        case .cancelTimer(let id): .cancelTimer(id)
        case .ikeSAEstablished(let info): .ikeUp(info)
        case .childSAEstablished(let child): .childUp(child)
        case .childSARekeyed(let old, let child): .childRekeyed(old: old, child)
        case .childSADeleted(let child, let reason): .output { _ in .childDown(connection: child.connection, inboundSPI: child.inboundSPI, reason: reason) }
        case .ikeSADeleted(let info, let reason): .ikeDown(info, reason)
        case .ikeSARekeyed(let old, let new): .output { key in .ikeRekeyed(old: key(old), new: key(new.id)) }
        case .authenticatedMessageReceived(let id): .output { key in .proofOfLife(key(id)) }
        case .peerAddressChanged(let id, let old, let new): .output { key in .peerMoved(key(id), old: old, new: new) }
        case .livenessCheckAnswered(let id): .output { key in .probeAnswered(key(id), sequence: nil) }
        case .exchangeInFlight(let id, let inFlight): .output { key in .exchangeInFlight(key(id), inFlight) }
        case .peerUnreachable(let id): .output { key in .unreachable(key(id)) }
        case .negotiationFailed(let connection, let peer, let reason): .output { _ in .negotiationFailed(connection: connection, peer: peer, reason) }
        case .log(let level, let text): .output { _ in .log(level, "\(logName): \(text)") }
        }
    }
}

extension IKESAInfo: DrivenIKESA {
    var stateName: String { state.rawValue }
    var proposalDescription: String? { proposal?.description }
    /// RFC 7296 §2.4: any IKEv2 peer answers an empty INFORMATIONAL.
    var peerSupportsDPD: Bool { true }
    var establishedDetail: String { "SPIs \(hex(initiatorSPI))/\(hex(responderSPI))" }
    var capabilities: String { "" }
}

/// IKEv1 (RFC 2409 Main Mode + Quick Mode, RFC 3706 DPD) behind the daemon's engine vocabulary.
typealias IKEv1Driver = EngineDriver<IKEv1Endpoint>

extension IKEv1Endpoint: DrivenIKEEngine {
    static var version: IKEVersionTag { .v1 }
    static var logName: String { "IKEv1" }

    static func makeEndpoint(_ configuration: VigilConfiguration, forceEncapsulation: Bool) -> IKEv1Endpoint {
        let connections = EngineConnections.all(configuration, version: .v1, forceEncapsulation: forceEncapsulation).map {
            IKEv1Endpoint.ConnectionConfiguration($0.connection, rekeyMargin: $0.rekeyMargin ?? IKEv1Endpoint.ConnectionConfiguration.defaultRekeyMargin)
        }
        let halfOpen = configuration.global.halfOpen
        typealias Defaults = IKEv1Endpoint.Configuration
        return IKEv1Endpoint(configuration: .init(
            connections: connections, retransmission: configuration.global.ikeRetransmit,
            halfOpenTimeout: halfOpen.lifetime ?? Defaults.defaultHalfOpenTimeout,
            maximumHalfOpen: halfOpen.total ?? Defaults.defaultMaximumHalfOpen,
            maximumHalfOpenPerSource: halfOpen.perSource ?? Defaults.defaultMaximumHalfOpenPerSource))
    }

    mutating func addConnection(_ connection: VigilIKE.ConnectionConfiguration, rekeyMargin: Duration?) {
        addConnection(IKEv1Endpoint.ConnectionConfiguration(connection, rekeyMargin: rekeyMargin ?? IKEv1Endpoint.ConnectionConfiguration.defaultRekeyMargin))
    }

    static func spi(of id: IKEv1SAID) -> UInt64 { id.cookie }
    static func id(_ spi: UInt64) -> IKEv1SAID { IKEv1SAID(spi) }
    static func probe(_ id: IKEv1SAID, sequence: UInt32) -> IKEv1Event { .sendDPDProbe(id, sequence: sequence) }

    static func step(_ action: IKEv1Action) -> DriverStep<IKEv1TimerID, IKEv1SAID, IKEv1SAInfo> {
        switch action {
        case .send(let bytes, let from, let to): .output { _ in .send(bytes: bytes, from: from, to: to) }
        case .scheduleTimer(let id, let at): .timer(id, at: at)
        case .cancelTimer(let id): .cancelTimer(id)
        case .ikeSAEstablished(let info): .ikeUp(info)
        case .childSAEstablished(let child): .childUp(child)
        case .childSARekeyed(let old, let child): .childRekeyed(old: old, child)
        case .childSADeleted(let child, let reason): .output { _ in .childDown(connection: child.connection, inboundSPI: child.inboundSPI, reason: reason) }
        case .ikeSADeleted(let info, let reason): .ikeDown(info, reason)
        case .authenticatedMessageReceived(let id): .output { key in .proofOfLife(key(id)) }
        case .dpdAcknowledged(let id, let sequence): .output { key in .probeAnswered(key(id), sequence: sequence) }
        case .exchangeInFlight(let id, let inFlight): .output { key in .exchangeInFlight(key(id), inFlight) }
        case .peerUnreachable(let id): .output { key in .unreachable(key(id)) }
        case .peerAddressChanged(let id, let old, let new): .output { key in .peerMoved(key(id), old: old, new: new) }
        case .negotiationFailed(let connection, let peer, let reason): .output { _ in .negotiationFailed(connection: connection, peer: peer, reason) }
        case .log(let level, let text): .output { _ in .log(level, "\(logName): \(text)") }
        }
    }
}

extension IKEv1SAInfo: DrivenIKESA {
    var initiatorSPI: UInt64 { initiatorCookie }
    var responderSPI: UInt64 { responderCookie }
    var stateName: String { state.rawValue }
    var proposalDescription: String? { proposal?.description }
    var establishedDetail: String { "cookies \(hex(initiatorCookie))/\(hex(responderCookie))" }
    var capabilities: String { peerSupportsDPD ? ", peer supports DPD" : "" }
}
