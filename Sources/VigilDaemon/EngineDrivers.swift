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
        var connections: [(connection: ConnectionConfiguration, rekeyMargin: Duration?)] = []
        for map in configuration.cryptoMaps {
            for entry in map.entries where entry.ikeVersion == version {
                let peers = entry.peers.compactMap { peer -> PeerConfiguration? in
                    guard let address = EntryRuntime.resolve(peer.address) else { return nil }
                    return PeerConfiguration(address: address, identity: peer.expectedIdentity, preSharedKey: SecureBytes(peer.preSharedKey))
                }
                let family = peers.first?.address.family ?? .ipv4
                let local = configuration.global.listen.first { $0.family == family } ?? configuration.global.listen[0]
                connections.append((ConnectionConfiguration(
                    name: "\(map.name)/\(entry.sequence)", localAddress: local,
                    localIdentity: entry.localIdentity ?? configuration.global.identity, peers: peers,
                    ikeProposals: entry.ikeProposals, espProposals: entry.espProposals, pfsGroup: entry.pfsGroup,
                    localTrafficSelectors: unique(entry.traffic.map(\.local)),
                    remoteTrafficSelectors: unique(entry.traffic.map(\.remote)),
                    ikeLifetime: entry.ikeLifetime, childLifetime: entry.childLifetime,
                    forceUDPEncapsulation: forceEncapsulation || entry.encapsulation == .force,
                    retransmission: entry.retransmit), entry.rekeyMargin))
            }
        }
        return connections
    }

    private static func unique(_ prefixes: [IPPrefix]) -> [IPPrefix] {
        var seen = Set<IPPrefix>()
        return prefixes.filter { seen.insert($0).inserted }
    }
}

/// Runs an engine's timers on the event loop: one loop timer per engine timer id.
final class EngineTimers<ID: Hashable> {
    private var handles: [ID: EventLoop.TimerHandle] = [:]
    private let loop: EventLoop

    init(loop: EventLoop) { self.loop = loop }

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

/// IKEv2 (RFC 7296) behind the daemon's engine vocabulary.
final class IKEv2Driver: IKEEngineDriver {
    let version = IKEVersionTag.v2
    var output: (EngineOutput) -> Void = { _ in }
    private var endpoint: IKEv2Endpoint
    private let loop: EventLoop
    private lazy var timers = EngineTimers<IKEv2TimerID>(loop: loop)
    private var random = SystemRandomNumberGenerator()

    init(configuration: VigilConfiguration, loop: EventLoop, forceEncapsulation: Bool) {
        self.loop = loop
        let connections = EngineConnections.all(configuration, version: .v2, forceEncapsulation: forceEncapsulation).map(\.connection)
        let halfOpen = configuration.global.halfOpen
        typealias Defaults = IKEv2Endpoint.Configuration
        endpoint = IKEv2Endpoint(configuration: .init(
            connections: connections, retransmission: configuration.global.ikeRetransmit,
            halfOpenTimeout: halfOpen.lifetime ?? Defaults.defaultHalfOpenTimeout,
            cookieThreshold: halfOpen.cookieThreshold ?? Defaults.defaultCookieThreshold,
            halfOpenLimitPerSource: halfOpen.perSource ?? Defaults.defaultHalfOpenLimitPerSource))
    }

    private func run(_ event: IKEv2Event) {
        for action in endpoint.handle(event, now: loop.now, random: &random) { perform(action) }
    }

    private func key(_ id: IKESAID) -> SessionKey { SessionKey(version: .v2, spi: id.spi) }

    private func perform(_ action: IKEv2Action) {
        switch action {
        case .send(let bytes, let from, let to): output(.send(bytes: bytes, from: from, to: to))
        case .sendNATKeepalive(let from, let to): output(.sendRaw(bytes: [0xFF], from: from, to: to))
        case .scheduleTimer(let id, let at): timers.schedule(id, at: at) { [unowned self] in self.run(.timerFired(id)) }
        case .cancelTimer(let id): timers.cancel(id)
        case .ikeSAEstablished(let info):
            output(.ikeUp(key(info.id), connection: info.connection, peer: info.remoteEndpoint.address,
                          detail: "\(info.proposal?.description ?? "?") \(info.localEndpoint) <=> \(info.remoteEndpoint) "
                            + "SPIs \(hex(info.initiatorSPI))/\(hex(info.responderSPI))"
                            + (info.isInitiator ? " (initiator)" : " (responder)"),
                          peerSupportsDPD: true))
        case .childSAEstablished(let info): output(.childUp(info.withIKESA(key)))
        case .childSARekeyed(let old, let info): output(.childRekeyed(oldInboundSPI: old.inboundSPI, info.withIKESA(key)))
        case .childSADeleted(let info, let reason): output(.childDown(connection: info.connection, inboundSPI: info.inboundSPI, reason: reason))
        case .ikeSADeleted(let info, let reason):
            output(.ikeDown(key(info.id), connection: info.connection, peer: info.remoteEndpoint.address, reason: reason.description,
                            byPeer: reason.endedByPeer))
        case .ikeSARekeyed(let old, let new): output(.ikeRekeyed(old: key(old), new: key(new.id)))
        case .authenticatedMessageReceived(let id): output(.proofOfLife(key(id)))
        case .peerAddressChanged(let id, let old, let new): output(.peerMoved(key(id), old: old, new: new))
        case .livenessCheckAnswered(let id): output(.probeAnswered(key(id), sequence: nil))
        case .exchangeInFlight(let id, let inFlight): output(.exchangeInFlight(key(id), inFlight))
        case .peerUnreachable(let id): output(.unreachable(key(id)))
        case .negotiationFailed(let connection, let peer, let reason):
            output(.negotiationFailed(connection: connection, peer: peer, reason))
        case .log(let level, let text):
            output(.log(level, "IKEv2: \(text)"))
        }
    }

    func initiate(connection: String, peer: IPAddress) { run(.initiate(connection: connection, peer: peer)) }
    func probe(_ session: SessionKey, sequence: UInt32) { run(.sendLivenessCheck(IKESAID(session.spi))) }
    func delete(_ session: SessionKey) { run(.deleteIKESA(IKESAID(session.spi))) }
    func abandon(_ session: SessionKey) { run(.abandonIKESA(IKESAID(session.spi))) }
    func received(_ bytes: [UInt8], from: Endpoint, to: Endpoint) { run(.datagramReceived(bytes: bytes, from: from, to: to)) }

    func updatePeers(connection: String, peers: [EnginePeer]) {
        endpoint.updatePeers(connection: connection, peers: peers)
    }

    var sessions: [SessionView] {
        endpoint.ikeSAs.map { info in
            SessionView(key: key(info.id), connection: info.connection, peer: info.remoteEndpoint.address, state: info.state.rawValue,
                        localSPI: info.isInitiator ? info.initiatorSPI : info.responderSPI,
                        remoteSPI: info.isInitiator ? info.responderSPI : info.initiatorSPI,
                        algorithms: info.proposal?.description ?? "", establishedAt: info.establishedAt)
        }
    }

    var counters: [String: UInt64] { endpoint.counters.byExportedName }
}

/// IKEv1 (RFC 2409 Main Mode + Quick Mode, RFC 3706 DPD) behind the daemon's engine vocabulary.
final class IKEv1Driver: IKEEngineDriver {
    let version = IKEVersionTag.v1
    var output: (EngineOutput) -> Void = { _ in }
    private var endpoint: IKEv1Endpoint
    private let loop: EventLoop
    private lazy var timers = EngineTimers<IKEv1TimerID>(loop: loop)
    private var random = SystemRandomNumberGenerator()

    init(configuration: VigilConfiguration, loop: EventLoop, forceEncapsulation: Bool) {
        self.loop = loop
        let connections = EngineConnections.all(configuration, version: .v1, forceEncapsulation: forceEncapsulation).map {
            IKEv1Endpoint.ConnectionConfiguration($0.connection, rekeyMargin: $0.rekeyMargin ?? IKEv1Endpoint.ConnectionConfiguration.defaultRekeyMargin)
        }
        let halfOpen = configuration.global.halfOpen
        typealias Defaults = IKEv1Endpoint.Configuration
        endpoint = IKEv1Endpoint(configuration: .init(
            connections: connections, retransmission: configuration.global.ikeRetransmit,
            halfOpenTimeout: halfOpen.lifetime ?? Defaults.defaultHalfOpenTimeout,
            maximumHalfOpen: halfOpen.total ?? Defaults.defaultMaximumHalfOpen,
            maximumHalfOpenPerSource: halfOpen.perSource ?? Defaults.defaultMaximumHalfOpenPerSource))
    }

    private func run(_ event: IKEv1Event) {
        for action in endpoint.handle(event, now: loop.now, random: &random) { perform(action) }
    }

    private func key(_ id: IKEv1SAID) -> SessionKey { SessionKey(version: .v1, spi: id.cookie) }

    func perform(_ action: IKEv1Action) {
        switch action {
        case .send(let bytes, let from, let to): output(.send(bytes: bytes, from: from, to: to))
        case .scheduleTimer(let id, let at): timers.schedule(id, at: at) { [unowned self] in self.run(.timerFired(id)) }
        case .cancelTimer(let id): timers.cancel(id)
        case .ikeSAEstablished(let info):
            output(.ikeUp(key(info.id), connection: info.connection, peer: info.remoteEndpoint.address,
                          detail: "\(info.proposal?.description ?? "?") \(info.localEndpoint) <=> \(info.remoteEndpoint) cookies "
                            + "\(hex(info.initiatorCookie))/\(hex(info.responderCookie))"
                            + (info.isInitiator ? " (initiator)" : " (responder)") + (info.peerSupportsDPD ? ", peer supports DPD" : ""),
                          peerSupportsDPD: info.peerSupportsDPD))
        case .childSAEstablished(let info): output(.childUp(info.withIKESA(key)))
        case .childSARekeyed(let old, let info): output(.childRekeyed(oldInboundSPI: old.inboundSPI, info.withIKESA(key)))
        case .childSADeleted(let info, let reason): output(.childDown(connection: info.connection, inboundSPI: info.inboundSPI, reason: reason))
        case .ikeSADeleted(let info, let reason):
            output(.ikeDown(key(info.id), connection: info.connection, peer: info.remoteEndpoint.address, reason: reason.description,
                            byPeer: reason.endedByPeer))
        case .authenticatedMessageReceived(let id): output(.proofOfLife(key(id)))
        case .dpdAcknowledged(let id, let sequence): output(.probeAnswered(key(id), sequence: sequence))
        case .exchangeInFlight(let id, let inFlight): output(.exchangeInFlight(key(id), inFlight))
        case .peerUnreachable(let id): output(.unreachable(key(id)))
        case .peerAddressChanged(let id, let old, let new): output(.peerMoved(key(id), old: old, new: new))
        case .negotiationFailed(let connection, let peer, let reason):
            output(.negotiationFailed(connection: connection, peer: peer, reason))
        case .log(let level, let text):
            output(.log(level, "IKEv1: \(text)"))
        }
    }

    func initiate(connection: String, peer: IPAddress) { run(.initiate(connection: connection, peer: peer)) }
    func probe(_ session: SessionKey, sequence: UInt32) { run(.sendDPDProbe(IKEv1SAID(session.spi), sequence: sequence)) }
    func delete(_ session: SessionKey) { run(.deleteIKESA(IKEv1SAID(session.spi))) }
    func abandon(_ session: SessionKey) { run(.abandonIKESA(IKEv1SAID(session.spi))) }
    func received(_ bytes: [UInt8], from: Endpoint, to: Endpoint) { run(.datagramReceived(bytes: bytes, from: from, to: to)) }

    func updatePeers(connection: String, peers: [EnginePeer]) {
        endpoint.updatePeers(connection: connection, peers: peers)
    }

    var sessions: [SessionView] {
        endpoint.ikeSAs.map { info in
            SessionView(key: key(info.id), connection: info.connection, peer: info.remoteEndpoint.address, state: info.state.rawValue,
                        localSPI: info.isInitiator ? info.initiatorCookie : info.responderCookie,
                        remoteSPI: info.isInitiator ? info.responderCookie : info.initiatorCookie,
                        algorithms: info.proposal?.description ?? "", establishedAt: info.establishedAt)
        }
    }

    var counters: [String: UInt64] { endpoint.counters.byExportedName }
}
