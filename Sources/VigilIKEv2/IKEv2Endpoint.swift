import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// Every IKEv2 SA of the daemon, as one pure value: feed events, perform the returned actions in order.
/// Never does I/O; time comes in as `now`, randomness (SPIs, nonces, IVs) from `random`.
///
/// What the runtime around it does:
/// - Receives on UDP 500 and 4500 of each local address; strips the 4-octet non-ESP marker on 4500 (drops 0xFF
///   keepalives, hands ESP to the data plane) and passes `to` with the real local address (IP_PKTINFO), because
///   connections are chosen by local and peer address.
/// - Performs `.send` from `from` to `to`, prepending the non-ESP marker when `from.port` is 4500;
///   `.sendNATKeepalive` is the single octet 0xFF from 4500, without marker.
/// - Keeps one timer per `IKEv2TimerID` (a new `.scheduleTimer` for the same id replaces it) and feeds
///   `.timerFired` when due.
/// - Installs `.childSAEstablished` / `.childSARekeyed` keys; removes a Child SA on `.childSADeleted` (after a
///   rekey the old one stays until its own `.childSADeleted`, so no packet is lost in between).
/// - `.ikeSARekeyed` moves everything the daemon keeps per IKE SA (liveness state) to the new id.
/// - `.peerAddressChanged` (a peer behind a NAT got a new mapping, RFC 7296 §2.23) moves the IKE SA's Child SAs
///   (their UDP-encapsulated ESP) to the new endpoint as a planned change; Child SA infos handed out afterwards
///   already carry it.
public struct IKEv2Endpoint: Sendable {
    /// New negotiations use the configuration as it is then; existing SAs keep the connection they were made with.
    public var configuration: Configuration
    var sas: [IKESAID: IKESA] = [:]
    var counterValues: [IKECounter: UInt64] = [:]
    var exchangeValues: [IKEExchangeOutcome: UInt64] = [:]
    /// When each IKE SA's rekey timer is due, read off the timers as the engine schedules and cancels them.
    var ikeRekeyDeadlines: [IKESAID: Duration] = [:]
    /// The same for each Child SA's rekey timer.
    var childRekeyDeadlines: [ChildSAID: Duration] = [:]
    /// When each Child SA's rekey timer (`IKEv2TimerID.rekeyChildSA`) is due, as last scheduled.
    public var childRekeyAt: [ChildSAID: Duration] { childRekeyDeadlines }
    /// §2.6: the secrets behind stateless cookies, drawn from `random` when first needed and rotated on a timer.
    var cookieSecrets = CookieSecrets()

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    public var ikeSAs: [IKESAInfo] {
        sas.values.map { sa in
            var info = sa.info
            info.rekeyAt = ikeRekeyDeadlines[sa.id]
            return info
        }.sorted { $0.id < $1.id }
    }
    public var childSAs: [ChildSAStatus] {
        sas.values.flatMap { sa in sa.children.map { ChildSAStatus(childSA: $0.info, state: $0.state) } }.sorted { $0.id < $1.id }
    }
    /// What the engine counted (`IKECounter` names and exports them).
    public var counters: [IKECounter: UInt64] { counterValues }
    /// The exchanges that ended, by type, our role and result.
    public var exchangeOutcomes: [IKEExchangeOutcome: UInt64] { exchangeValues }

    public mutating func handle(_ event: IKEv2Event, now: Duration, random: inout some RandomNumberGenerator) -> [IKEv2Action] {
        if case .timerFired(.rekeyIKESA(let id)) = event { ikeRekeyDeadlines[id] = nil }
        if case .timerFired(.rekeyChildSA(let id)) = event { childRekeyDeadlines[id] = nil }
        let actions = dispatch(event, now: now, random: &random)
        noteRekeyTimers(actions)
        return actions
    }

    /// The rekey deadlines follow the timers exactly as the runtime is asked to run them.
    mutating func noteRekeyTimers(_ actions: [IKEv2Action]) {
        for action in actions {
            if case .scheduleTimer(.rekeyIKESA(let id), let at) = action {
                ikeRekeyDeadlines[id] = at
            } else if case .cancelTimer(.rekeyIKESA(let id)) = action {
                ikeRekeyDeadlines[id] = nil
            } else if case .scheduleTimer(.rekeyChildSA(let id), let at) = action {
                childRekeyDeadlines[id] = at
            } else if case .cancelTimer(.rekeyChildSA(let id)) = action {
                childRekeyDeadlines[id] = nil
            }
        }
    }

    mutating func dispatch(_ event: IKEv2Event, now: Duration, random: inout some RandomNumberGenerator) -> [IKEv2Action] {
        switch event {
        case .datagramReceived(let bytes, let from, let to):
            return receive(bytes, from: from, to: to, now: now, random: &random)
        case .timerFired(let timer):
            return timerFired(timer, now: now, random: &random)
        case .initiate(let name, let peerAddress):
            return initiate(name, peerAddress, now: now, random: &random)
        case .sendLivenessCheck(let id):
            return withSA(id, now: now, random: &random) { sa, context, effects, random in sa.livenessCheck(context: context, random: &random, effects: &effects) }
        case .deleteChildSA(let childID):
            guard let id = owner(of: childID) else { return [] }
            return withSA(id, now: now, random: &random) { sa, context, effects, random in sa.request(.deleteChild(childID), context: context, random: &random, effects: &effects) }
        case .deleteIKESA(let id):
            return withSA(id, now: now, random: &random) { sa, context, effects, random in sa.deleteIKESA(context: context, random: &random, effects: &effects) }
        case .abandonIKESA(let id):
            return withSA(id, now: now, random: &random) { sa, _, effects, _ in
                effects.log(.notice, "\(sa.label): abandoned (peer considered dead); nothing sent")
                if let request = sa.outstanding { effects.exchange(request.kind.exchange, .initiator, .timeout) }
                sa.close(reason: .abandonedAsDead, effects: &effects)
            }
        case .rekeyChildSA(let childID):
            guard let id = owner(of: childID) else { return [] }
            return withSA(id, now: now, random: &random) { sa, context, effects, random in sa.request(.rekeyChild(childID), context: context, random: &random, effects: &effects) }
        case .rekeyIKESA(let id):
            return withSA(id, now: now, random: &random) { sa, context, effects, random in sa.request(.rekeyIKE, context: context, random: &random, effects: &effects) }
        }
    }

    // MARK: - Plumbing

    func context(now: Duration) -> SAContext {
        SAContext(
            now: now, configuration: configuration,
            usedChildSPIs: Set(sas.values.flatMap { $0.children.map(\.info.inboundSPI) }),
            usedIKESPIs: Set(sas.keys.map(\.spi)),
            establishedPeers: Set(sas.values.filter(\.isEstablished).map(\.peer.address))
        )
    }

    func owner(of child: ChildSAID) -> IKESAID? {
        sas.values.first { $0.children.contains { $0.info.id == child } }?.id
    }

    /// Runs `body` on one SA and applies what it produced.
    mutating func withSA<Random: RandomNumberGenerator>(
        _ id: IKESAID, now: Duration, random: inout Random, _ body: (inout IKESA, SAContext, inout Effects, inout Random) -> Void
    ) -> [IKEv2Action] {
        guard var sa = sas[id] else { return [] }
        var effects = Effects()
        body(&sa, context(now: now), &effects, &random)
        return apply(sa, effects, now: now, random: &random)
    }

    mutating func apply(_ sa: IKESA, _ effects: Effects, now: Duration, random: inout some RandomNumberGenerator) -> [IKEv2Action] {
        var actions = effects.actions
        for (name, value) in effects.counters { counterValues[name, default: 0] += value }
        for (outcome, value) in effects.exchanges { exchangeValues[outcome, default: 0] += value }
        sas[sa.id] = effects.closed ? nil : sa
        for spawned in effects.spawned { sas[spawned.id] = spawned }
        if !effects.spawned.isEmpty { actions += forgetExcessReplacedSAs(of: sa, random: &random) }
        if let contact = effects.initialContact {
            // §2.4: INITIAL_CONTACT: every other SA with this identity is stale (the peer kept none of them), wherever
            // its NAT put it.
            for stale in sas.values where stale.id != sa.id && stale.remoteIdentity == contact.identity && stale.peer.address == sa.peer.address {
                actions += end(stale, .notice, "replaced (INITIAL_CONTACT from \(contact.identity) at \(contact.address))",
                               reason: .peerRestarted, random: &random)
            }
        }
        if let superseding = effects.supersedesChildless {
            // A new IKE SA of the same peer and connection: older ones it left without a Child SA are deleted, not
            // kept as orphans at both ends.
            for orphan in sas.values where orphan.id != sa.id && orphan.isEstablished && !orphan.rekeyedAway && orphan.children.isEmpty
                && orphan.connection.name == superseding.connection && orphan.remoteIdentity == superseding.identity {
                actions += end(orphan, .notice, "superseded by \(sa.label) and without a Child SA; deleting it", reason: .replaced("superseded"),
                               sendingDelete: true, random: &random)
            }
        }
        return actions
    }

    mutating func count(_ name: IKECounter) { counterValues[name, default: 0] += 1 }

    /// IKE SAs replaced by rekeys wait for the peer's DELETE (or their expiry timer). A peer that rekeys again and
    /// again without deleting cannot grow the table: beyond `IKEv2Tunables.maximumReplacedIKESAs` per peer the
    /// oldest are forgotten (quietly: their successors speak for the peer).
    mutating func forgetExcessReplacedSAs(of sa: IKESA, random: inout some RandomNumberGenerator) -> [IKEv2Action] {
        let replaced = sas.values
            .filter { $0.rekeyedAway && $0.connection.name == sa.connection.name && $0.peer.address == sa.peer.address }
            .sorted { ($0.establishedAt ?? .zero, $0.id) < ($1.establishedAt ?? .zero, $1.id) }
        var actions: [IKEv2Action] = []
        for excess in replaced.dropLast(IKEv2Tunables.maximumReplacedIKESAs) {
            count(.replacedIKESAsForgotten)
            actions += end(excess, .info, "replaced long ago and never deleted by the peer; forgotten", reason: .replaced("rekeyed"), random: &random)
        }
        return actions
    }

    /// Ends an SA other than the one an event is for: logs why, sends its DELETE if asked, forgets it.
    mutating func end(
        _ sa: IKESA, _ level: LogLevel, _ why: String, reason: IKESAEnd, sendingDelete: Bool = false, random: inout some RandomNumberGenerator
    ) -> [IKEv2Action] {
        var closing = sa
        var effects = Effects()
        effects.log(level, "\(sa.label): \(why)")
        if sendingDelete { closing.sendDelete(random: &random, effects: &effects) }
        closing.close(reason: reason, effects: &effects)
        sas[sa.id] = nil
        return effects.actions
    }

    // MARK: - Initiating

    mutating func initiate(_ name: String, _ peerAddress: IPAddress, now: Duration, random: inout some RandomNumberGenerator) -> [IKEv2Action] {
        guard let connection = configuration.connections.first(where: { $0.name == name }),
              let peer = connection.peers.first(where: { $0.address == peerAddress })
        else {
            let reason = NegotiationFailure(.unknownPeer, "no connection \(name) with peer \(peerAddress)")
            return [.log(.error, reason.message), .negotiationFailed(connection: name, peer: peerAddress, reason: reason)]
        }
        var effects = Effects()
        let schedule = connection.retransmission(for: peer, default: configuration.retransmission)
        do {
            let sa = try IKESA.initiator(id: newIKESAID(&random), connection: connection, peer: peer, schedule: schedule,
                                         context: context(now: now), random: &random, effects: &effects)
            return apply(sa, effects, now: now, random: &random)
        } catch {
            let reason = NegotiationFailure(.internalError, "key exchange: \(error)")
            return [.log(.error, reason.message), .negotiationFailed(connection: name, peer: peerAddress, reason: reason)]
        }
    }

    func newIKESAID(_ random: inout some RandomNumberGenerator) -> IKESAID {
        while true {
            let spi = random.next()
            if spi != 0, sas[IKESAID(spi)] == nil { return IKESAID(spi) }
        }
    }

    // MARK: - Receiving

    mutating func receive(_ bytes: [UInt8], from: Endpoint, to: Endpoint, now: Duration, random: inout some RandomNumberGenerator) -> [IKEv2Action] {
        let message: IKEv2.Message
        do {
            message = try IKEv2.Message.parse(bytes)
        } catch {
            count(.malformedDatagrams)
            return [.log(.warning, "dropping malformed IKEv2 datagram from \(from): \(error)")]
        }
        let header = message.header
        // §3.1: the Initiator flag names the original initiator. A message whose sender SPI is ours and whose I flag
        // is our own role's is one we sent, reflected back (a looping middlebox, an attacker): never life, never a
        // request to answer.
        let senderSPI = header.isFromInitiator ? header.initiatorSPI : header.responderSPI
        if senderSPI != 0, let own = sas[IKESAID(senderSPI)], own.isOriginalInitiator == header.isFromInitiator {
            count(.reflectedMessages)
            return [.log(.debug, "\(header.exchangeType) \(header.isResponse ? "response" : "request") \(header.messageID) from \(from) is our own (\(own.label)), reflected; dropped")]
        }
        if header.exchangeType == .ikeSAInit, !header.isResponse, header.isFromInitiator, header.responderSPI == 0 {
            return handleInitRequest(message, datagram: bytes, from: from, to: to, now: now, random: &random)
        }
        let ours = IKESAID(header.isFromInitiator ? header.responderSPI : header.initiatorSPI)
        guard let sa = sas[ours] else {
            count(.unknownSPIs)
            return [.log(.debug, "\(header.exchangeType) from \(from) for unknown IKE SA \(hex64(header.initiatorSPI))_i \(hex64(header.responderSPI))_r; dropped")]
        }
        let peerSPIMatches = header.isFromInitiator
            ? sa.initiatorSPI == header.initiatorSPI && !sa.isOriginalInitiator
            : sa.isOriginalInitiator && (sa.responderSPI == 0 || sa.responderSPI == header.responderSPI)
        guard peerSPIMatches else {
            count(.unknownSPIs)
            return [.log(.debug, "\(header.exchangeType) from \(from) with SPIs not matching \(sa.label); dropped")]
        }
        return withSA(ours, now: now, random: &random) { sa, context, effects, random in
            sa.receive(message, datagram: bytes, from: from, to: to, context: context, random: &random, effects: &effects)
        }
    }

    /// Responder IKE_SA_INIT (§1.2, §2.6): stateless answers (COOKIE, NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD) keep no
    /// state; an acceptable request creates a half-open SA that expires unless IKE_AUTH follows.
    mutating func handleInitRequest(
        _ message: IKEv2.Message, datagram: [UInt8], from: Endpoint, to: Endpoint, now: Duration, random: inout some RandomNumberGenerator
    ) -> [IKEv2Action] {
        let header = message.header
        let payloads = message.payloads
        if let existing = sas.values.first(where: { !$0.isOriginalInitiator && $0.initiatorSPI == header.initiatorSPI && $0.remote.address == from.address }) {
            guard case .responderHalfOpen = existing.phase, let cached = existing.cachedResponse, cached.messageID == 0 else { return [] }
            count(.retransmittedRequests)
            return [.log(.info, "\(existing.label): retransmitted IKE_SA_INIT; sending the cached response"), .send(bytes: cached.datagram, from: to, to: from)]
        }
        var actions: [IKEv2Action] = [.log(.info, "received \(message.summary) from \(from)")]
        let candidates = configuration.connections.filter { connection in
            connection.localAddress == to.address && connection.peers.contains { $0.address == from.address }
        }
        guard !candidates.isEmpty else {
            count(.unknownPeers)
            return actions + [.log(.warning, "IKE_SA_INIT from \(from): no connection has this peer; ignored")]
        }
        guard let sa = payloads.securityAssociation, let ke = payloads.keyExchange, let ni = payloads.nonce else {
            count(.malformedDatagrams)
            return actions + [.log(.warning, "IKE_SA_INIT from \(from) lacks SA, KE or Ni; dropped")]
        }
        func reply(_ notify: IKEv2.Notify) -> IKEv2Action {
            let response = IKEv2.Message(
                header: IKEv2.Header(initiatorSPI: header.initiatorSPI, responderSPI: 0, exchangeType: .ikeSAInit, flags: .response, messageID: 0),
                payloads: [.notify(notify)])
            actions.append(.log(.info, "sending \(response.summary) to \(from)"))
            return .send(bytes: response.serialize(), from: to, to: from)
        }

        // §2.6: under load, or when this source already holds its share of half-open SAs, demand proof that the
        // initiator receives at its address.
        let halfOpen = sas.values.filter(\.isHalfOpen)
        let fromSource = halfOpen.filter { $0.remote.address == from.address }
        if halfOpen.count >= configuration.cookieThreshold || fromSource.count >= configuration.halfOpenLimitPerSource {
            if cookieSecrets.current.isEmpty {
                cookieSecrets.rotate(&random)
                actions.append(.scheduleTimer(.rotateCookieSecret, at: now + configuration.effectiveCookieSecretLifetime))
            }
            let offered = payloads.first.flatMap { payload -> [UInt8]? in
                if case .notify(let n) = payload, n.type == .cookie { n.data } else { nil }
            }
            guard let offered, cookieSecrets.verify(offered, ni: ni, address: from.address, spi: header.initiatorSPI) else {
                count(.cookiesSent)
                actions.append(reply(IKEv2.Notify(type: .cookie, data: cookieSecrets.cookie(ni: ni, address: from.address, spi: header.initiatorSPI))))
                return actions
            }
            // The source proved it receives at its address: its oldest half-open SA makes room.
            let excess = fromSource.count - configuration.halfOpenLimitPerSource + 1
            if excess > 0 {
                for evicted in fromSource.sorted(by: { $0.halfOpenSince < $1.halfOpenSince }).prefix(excess) {
                    count(.halfOpenEvicted)
                    actions += end(evicted, .info, "half-open SA evicted for a new IKE_SA_INIT from \(from) with a valid COOKIE",
                                   reason: .local("half-open SA evicted"), random: &random)
                }
            }
        }

        var selection: (IKEv2.Proposal, IKEAlgorithms)?
        var owners: [ConnectionConfiguration] = []
        for candidate in candidates {
            guard let selected = ProposalNegotiation.select(sa, from: candidate.ikeProposals) else { continue }
            if selection == nil { selection = selected }
            if selected.1 == selection?.1 { owners.append(candidate) }
        }
        guard let (answer, algorithms) = selection, let connection = owners.first,
              let peer = connection.peers.first(where: { $0.address == from.address })
        else {
            // Anyone can send this from a listed peer's address: it is refused and counted, never reported as that
            // peer's failure, and it touches none of our own negotiations with the peer.
            let message = "no common IKE proposal with \(from): peer offered \(ProposalNegotiation.describe(sa)), we accept \(candidates[0].ikeProposals.map(\.description).joined(separator: ", ")) (unauthenticated IKE_SA_INIT; refused)"
            count(.unauthenticatedRefusals)
            exchangeValues[IKEExchangeOutcome(.ikeSAInit, .responder, .failed), default: 0] += 1
            actions.append(reply(IKEv2.Notify(type: .noProposalChosen)))
            actions.append(.log(.warning, message))
            return actions
        }
        guard ke.group == algorithms.dhGroup.rawValue else {
            actions.append(.log(.info, "IKE_SA_INIT from \(from) has KE of group \(ke.group); asking for \(algorithms.dhGroup) (INVALID_KE_PAYLOAD)"))
            actions.append(reply(IKEv2.Notify(type: .invalidKEPayload, data: bigEndianGroup(algorithms.dhGroup))))
            return actions
        }
        let id = newIKESAID(&random)
        let ours: KeyExchange
        let keys: IKESAKeys
        let protection: MessageProtection
        let nr = randomBytes(IKEv2Tunables.nonceLength, &random)
        do {
            ours = try KeyExchange(group: algorithms.dhGroup)
            let shared = try ours.sharedSecret(peerPublicValue: ke.data)
            keys = IKESAKeys.initial(algorithms, sharedSecret: shared, ni: ni, nr: nr, spiI: header.initiatorSPI, spiR: id.spi)
            protection = try MessageProtection(keys: keys, weAreOriginalInitiator: false)
        } catch {
            count(.unauthenticatedRefusals)
            return actions + [.log(.warning, "IKE_SA_INIT from \(from): unusable KE: \(error)")]
        }
        var effects = Effects()
        var state = IKESA(
            id: id, connection: connection, peer: peer, isOriginalInitiator: false, initiatorSPI: header.initiatorSPI,
            responderSPI: id.spi, local: to, remote: from,
            phase: .initiatorInit(IKESA.InitiatorInit(keyExchange: ours, nonce: nr, cookie: nil)),  // replaced below
            schedule: connection.retransmission(for: peer, default: configuration.retransmission)
        )
        state.evaluateNAT(payloads, header: header, effects: &effects)
        var answerWithSPI = answer
        answerWithSPI.spi = []
        let response = IKEv2.Message(
            header: state.header(.ikeSAInit, messageID: 0, response: true),
            payloads: [.securityAssociation(IKEv2.SecurityAssociation(proposals: [answerWithSPI])),
                       .keyExchange(IKEv2.KeyExchange(group: algorithms.dhGroup.rawValue, data: ours.publicValue)), .nonce(nr)]
                + state.natDetectionPayloads(random: &random))
        let bytes = response.serialize()
        state.phase = .responderHalfOpen(IKESA.ResponderHalfOpen(
            keys: keys, protection: protection, ni: ni, nr: nr, message1: datagram, message2: bytes, startedAt: now, candidates: owners))
        state.cachedResponse = (0, bytes)
        state.nextPeerRequestID = 1
        effects.log(.info, "\(state.label): selected proposal \(algorithms)")
        effects.log(.info, "\(state.label): sending \(response.summary) to \(from)")
        effects.actions.append(.send(bytes: bytes, from: to, to: from))
        effects.exchange(.ikeSAInit, .responder, .ok)
        effects.actions.append(.scheduleTimer(.halfOpenExpiry(id), at: now + configuration.halfOpenTimeout))
        return actions + apply(state, effects, now: now, random: &random)
    }

    // MARK: - Timers

    mutating func timerFired(_ timer: IKEv2TimerID, now: Duration, random: inout some RandomNumberGenerator) -> [IKEv2Action] {
        switch timer {
        case .retransmit(let id, let messageID):
            return withSA(id, now: now, random: &random) { sa, context, effects, random in sa.retransmitTimerFired(messageID: messageID, context: context, random: &random, effects: &effects) }
        case .halfOpenExpiry(let id):
            return withSA(id, now: now, random: &random) { sa, _, effects, _ in
                guard case .responderHalfOpen = sa.phase else { return }
                effects.count(.halfOpenExpired)
                effects.log(.info, "\(sa.label): half-open SA expired (no IKE_AUTH from \(sa.remote))")
                sa.close(reason: .local("half-open timeout"), effects: &effects)
            }
        case .rekeyIKESA(let id):
            return withSA(id, now: now, random: &random) { sa, context, effects, random in sa.request(.rekeyIKE, context: context, random: &random, effects: &effects) }
        case .rekeyChildSA(let childID):
            guard let id = owner(of: childID) else { return [] }
            return withSA(id, now: now, random: &random) { sa, context, effects, random in sa.request(.rekeyChild(childID), context: context, random: &random, effects: &effects) }
        case .expireReplacedIKESA(let id):
            return withSA(id, now: now, random: &random) { sa, _, effects, _ in
                guard sa.rekeyedAway else { return }
                effects.log(.info, "\(sa.label): replaced by a rekey and never deleted by the peer; forgotten")
                sa.close(reason: .replaced("rekeyed"), effects: &effects)
            }
        case .rotateCookieSecret:
            // §2.6: a new secret; cookies made with the one before stay valid until the next rotation.
            cookieSecrets.rotate(&random)
            return [.scheduleTimer(.rotateCookieSecret, at: now + configuration.effectiveCookieSecretLifetime)]
        case .natKeepalive(let id):
            return withSA(id, now: now, random: &random) { sa, context, effects, random in
                guard sa.isEstablished, sa.localBehindNAT, !sa.rekeyedAway else { return }
                effects.actions.append(.sendNATKeepalive(from: sa.local, to: sa.remote))
                effects.actions.append(.scheduleTimer(.natKeepalive(id), at: context.now + context.configuration.natKeepaliveInterval))
            }
        }
    }
}

extension IKEv2Endpoint {
    /// A run-time peer-list update: the connection's peers (addresses, identities, keys) are replaced. SAs already
    /// up with peers that stay listed are untouched; new negotiations and responders use the new list.
    public mutating func updatePeers(connection: String, peers: [PeerConfiguration]) {
        guard let index = configuration.connections.firstIndex(where: { $0.name == connection }) else { return }
        configuration.connections[index].peers = peers
    }

    /// A reload added the connection (or changed it: one of the same name is replaced). New negotiations and
    /// responders use it; SAs already up keep the connection they were made with.
    public mutating func addConnection(_ connection: ConnectionConfiguration) {
        configuration.connections.removeAll { $0.name == connection.name }
        configuration.connections.append(connection)
    }

    /// A reload removed the connection: nothing new is negotiated or answered for it. The daemon deletes its SAs
    /// first; those already up keep their own copy of it until they are gone.
    public mutating func removeConnection(named name: String) {
        configuration.connections.removeAll { $0.name == name }
    }
}

/// The secrets behind stateless cookies (RFC 7296 §2.6): Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>).
/// A cookie made with the current or the previous secret is accepted.
struct CookieSecrets: Sendable {
    var current: [UInt8] = []
    var previous: [UInt8] = []
    /// VersionIDofSecret of `current`; `previous` has the one before.
    var version: UInt8 = 0

    static let secretLength = 32

    mutating func rotate(_ random: inout some RandomNumberGenerator) {
        previous = current
        current = randomBytes(Self.secretLength, &random)
        version &+= 1
    }

    func cookie(ni: [UInt8], address: IPAddress, spi: UInt64) -> [UInt8] {
        [version] + Self.hash(ni: ni, address: address, spi: spi, secret: current)
    }

    func verify(_ cookie: [UInt8], ni: [UInt8], address: IPAddress, spi: UInt64) -> Bool {
        guard let offeredVersion = cookie.first else { return false }
        let secret: [UInt8]
        if offeredVersion == version {
            secret = current
        } else if offeredVersion == version &- 1, !previous.isEmpty {
            secret = previous
        } else {
            return false
        }
        return constantTimeEquals(Array(cookie.dropFirst()), Self.hash(ni: ni, address: address, spi: spi, secret: secret))
    }

    private static func hash(ni: [UInt8], address: IPAddress, spi: UInt64, secret: [UInt8]) -> [UInt8] {
        Hash.digest(.sha256, ni + address.bytes + bigEndian(spi) + secret)
    }
}
