import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// Every IKEv1 (ISAKMP) SA of the daemon: a pure multiplexer over Main Mode, Quick Mode and informational exchanges.
/// Feed it events, perform the actions it returns, in order. It never does I/O.
///
/// The runtime's side of the contract:
/// - `.send` from or to port 4500 gets the 4-byte non-ESP marker prepended; datagrams received on 4500 have it
///   stripped before `.datagramReceived` (and datagrams without it are ESP, not for this engine).
/// - `.scheduleTimer` with an ID already scheduled replaces it; `.cancelTimer` of an unknown ID is a no-op.
/// - `.exchangeInFlight(sa, true/false)` come in pairs, one pair per Phase 1 rekey (several may overlap): count them.
///   Quick Modes are not reported: DPD keeps probing while one is in flight (IKEv1 informationals run beside it).
/// - DPD: `.sendDPDProbe` always sends a fresh R-U-THERE; an ACK with a sequence still outstanding (the last
///   `IKEv1Limits.outstandingProbesKept`) becomes `.dpdAcknowledged`.
/// - Proof of life (`.authenticatedMessageReceived`) is only the peer's authenticated, fresh word: never our own
///   message reflected back (recognised by its message ID or R-U-THERE sequence), never a replay (a message ID the
///   peer already used, an R-U-THERE sequence not above the last).
/// - Unauthenticated input (plaintext notifies, MM2/MM4/MM6 that do not fit or verify, a refused MM1 or MM3) never
///   ends a negotiation; an initiator fails when its retransmissions run out, with the last such reason as a hint.
/// - `.peerAddressChanged`: a peer behind NAT moved; the runtime moves the kernel SAs.
///   A probe aimed at an ISAKMP SA that a rekey or reauthentication replaced goes out on its successor, and the
///   acknowledgement names the successor.
/// - `IKEv1SAInfo.localBehindNAT`: the runtime sends RFC 3948 keepalives (one 0xFF byte, no marker) on 4500.
/// - Informational exchanges (DELETE, notifies, DPD) are not retransmitted (RFC 2408 §4.8: best effort).
/// - IPsec SAs belong to one ISAKMP SA. Our Phase 1 rekey re-runs Quick Mode for each of them on the new ISAKMP SA,
///   then deletes the old one (make before break). When the peer reauthenticates (a new Main Mode without
///   INITIAL-CONTACT), its new ISAKMP SA adopts the IPsec SAs, as strongSwan does.
public struct IKEv1Endpoint: Sendable {
    /// Replaceable (configuration reload): existing SAs keep the connection they were negotiated for.
    public var configuration: Configuration
    var sas: [IKEv1SAID: ISAKMPSA] = [:]
    var children: [ChildSAID: ChildSA] = [:]
    /// ISAKMP SAs replaced by a rekey or reauthentication -> their replacement, so a DPD probe the detector aims at
    /// the old SA goes out on the new one instead of vanishing (a probe must never race a rekey into a false death).
    var successors: [IKEv1SAID: IKEv1SAID] = [:]
    static let successorsKept = 256
    /// Numbers SAs in creation order (`ISAKMPSA.serial`).
    var serials: UInt64 = 0
    public private(set) var counters: [IKECounter: UInt64] = [:]
    /// The exchanges that ended, by type, our role and result.
    public private(set) var exchangeOutcomes: [IKEExchangeOutcome: UInt64] = [:]
    /// When each ISAKMP SA's rekey timer is due, read off the timers as the engine schedules and cancels them.
    var ikeRekeyDeadlines: [IKEv1SAID: Duration] = [:]
    /// The same for each IPsec SA's rekey timer (only the Quick Mode initiator rekeys).
    var childRekeyDeadlines: [ChildSAID: Duration] = [:]
    /// When each IPsec SA's rekey timer (`IKEv1TimerID.rekeyChildSA`) is due, as last scheduled.
    public var childRekeyAt: [ChildSAID: Duration] { childRekeyDeadlines }

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    public var ikeSAs: [IKEv1SAInfo] {
        sas.values.map { sa in
            var info = sa.info
            info.rekeyAt = ikeRekeyDeadlines[sa.id]
            return info
        }.sorted { $0.id.cookie < $1.id.cookie }
    }
    public var childSAs: [IKEv1ChildSA] { children.values.map(\.info).sorted { $0.id.inboundSPI < $1.id.inboundSPI } }

    public mutating func handle(_ event: IKEv1Event, now: Duration, random: inout some RandomNumberGenerator) -> [IKEv1Action] {
        var context = Context(now: now)
        if case .timerFired(.rekeyIKESA(let id)) = event { ikeRekeyDeadlines[id] = nil }
        if case .timerFired(.rekeyChildSA(let id)) = event { childRekeyDeadlines[id] = nil }
        switch event {
        case .datagramReceived(let bytes, let from, let to):
            datagramReceived(bytes, from: from, to: to, &context, &random)
        case .timerFired(let timer):
            timerFired(timer, &context, &random)
        case .initiate(let name, let peerAddress):
            guard let connection = configuration.connections.first(where: { $0.name == name }) else {
                context.log(.error, "initiate: no connection named \(name)")
                context.actions.append(.negotiationFailed(connection: name, peer: peerAddress,
                                                          reason: .init(.unknownPeer, "no connection named \(name)")))
                break
            }
            guard let peer = connection.peers.first(where: { $0.address == peerAddress }) else {
                context.actions.append(.negotiationFailed(connection: name, peer: peerAddress,
                                                          reason: .init(.unknownPeer, "\(peerAddress) is not a peer of \(name)")))
                break
            }
            startMainMode(connection: connection, peer: peer, initiateChild: true, replaces: nil, &context, &random)
        case .sendDPDProbe(let id, let sequence):
            sendDPDProbe(id, sequence: sequence, &context, &random)
        case .deleteChildSA(let id):
            deleteChildSA(id, reason: "deleted locally", &context, &random)
        case .deleteIKESA(let id):
            deleteIKESA(id, &context, &random)
        case .abandonIKESA(let id):
            if var sa = sas[id] {
                context.log(.notice, "abandoning ISAKMP SA \(id) with \(sa.remote) (peer considered dead)")
                // The detector gave up on R-U-THEREs still unanswered.
                if !sa.freshness.outstandingDPD.members.isEmpty { context.exchange(.isakmpInformational, .initiator, .timeout) }
                sa.phase = .dead
                sas[id] = sa
                childrenDeleted(by: id, reason: "ISAKMP SA abandoned (dead peer)", &context)
            }
        case .rekeyChildSA(let id):
            rekeyChildSA(id, &context, &random)
        case .rekeyIKESA(let id):
            rekeyIKESA(id, &context, &random)
        }
        removeDeadSAs(&context)
        for (key, value) in context.counters { counters[key, default: 0] += value }
        for (outcome, value) in context.exchanges { exchangeOutcomes[outcome, default: 0] += value }
        // The rekey deadlines follow the timers exactly as the runtime is asked to run them.
        for action in context.actions {
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
        return context.actions
    }

    // MARK: - Plumbing shared by the exchanges

    /// What one event produced.
    struct Context {
        let now: Duration
        var actions: [IKEv1Action] = []
        var counters: [IKECounter: UInt64] = [:]
        var exchanges: [IKEExchangeOutcome: UInt64] = [:]

        mutating func log(_ level: LogLevel, _ text: String) { actions.append(.log(level, text)) }
        mutating func count(_ name: IKECounter) { counters[name, default: 0] += 1 }
        mutating func exchange(_ exchange: IKEExchangeOutcome.Exchange, _ role: IKEExchangeOutcome.Role, _ result: IKEExchangeOutcome.Result) {
            exchanges[IKEExchangeOutcome(exchange, role, result), default: 0] += 1
        }
    }

    func schedule(for sa: ISAKMPSA) -> RetransmissionSchedule {
        sa.retransmission(default: configuration.retransmission)
    }

    /// Sends a request that expects an answer and arms its retransmission timer.
    func sendRequest(_ bytes: [UInt8], messageID: UInt32, purpose: String, sa: inout ISAKMPSA, _ context: inout Context) {
        context.actions.append(.send(bytes: bytes, from: sa.local, to: sa.remote))
        sa.pending[messageID] = PendingRequest(bytes: bytes, attempts: 0, purpose: purpose)
        context.actions.append(.scheduleTimer(.retransmit(sa.id, messageID: messageID),
                                              at: context.now + schedule(for: sa).delay(afterAttempt: 0)))
    }

    func answered(messageID: UInt32, sa: inout ISAKMPSA, _ context: inout Context) {
        if sa.pending.removeValue(forKey: messageID) != nil {
            context.actions.append(.cancelTimer(.retransmit(sa.id, messageID: messageID)))
        }
    }

    static func randomBytes(_ count: Int, _ random: inout some RandomNumberGenerator) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count + 8)
        while bytes.count < count {
            let word = random.next()
            for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        return Array(bytes.prefix(count))
    }

    static func nonzero32(_ random: inout some RandomNumberGenerator) -> UInt32 {
        while true {
            let value = UInt32(truncatingIfNeeded: random.next())
            if value >= 0x100 { return value }   // SPIs 1-255 are reserved by IANA (RFC 4303 §2.1)
        }
    }

    static func payloadList(_ payloads: [ISAKMP.Payload]) -> String {
        "{ " + payloads.map(\.name).joined(separator: ", ") + " }"
    }

    /// Builds an encrypted message: header in the clear, payloads encrypted with `iv`; returns the bytes and the IV
    /// that follows (the last ciphertext block).
    static func encryptedMessage(sa: ISAKMPSA, keys: Phase1Keys, exchange: ISAKMP.ExchangeType, messageID: UInt32,
                                 payloads: [ISAKMP.Payload], iv: [UInt8]?) throws(CryptoError) -> (bytes: [UInt8], nextIV: [UInt8]) {
        let (first, body) = ISAKMP.encodePayloads(payloads)
        let ciphertext: [UInt8]
        let nextIV: [UInt8]
        if let iv {
            (ciphertext, nextIV) = try keys.encrypt(body, iv: iv)
        } else {
            ciphertext = try keys.encryptPhase1(body)
            nextIV = []
        }
        let header = ISAKMP.Header(initiatorCookie: sa.initiatorCookie, responderCookie: sa.responderCookie,
                                   nextPayload: first, exchangeType: exchange, flags: .encryption, messageID: messageID)
        var writer = WireWriter(capacity: ISAKMP.headerLength + ciphertext.count)
        header.encode(into: &writer, length: ISAKMP.headerLength + ciphertext.count)
        writer.write(bytes: ciphertext)
        return (writer.bytes, nextIV)
    }

    /// The bytes a HASH(1)/HASH(2) covers: every payload after the leading HASH, generic headers included.
    static func bytesAfterHash(_ payloads: [ISAKMP.Payload]) -> [UInt8] {
        ISAKMP.encodePayloads(Array(payloads.dropFirst())).bytes
    }

    static func messageIDBytes(_ messageID: UInt32) -> [UInt8] {
        var writer = WireWriter(capacity: 4)
        writer.write(messageID)
        return writer.bytes
    }

    // MARK: - Dispatch

    mutating func datagramReceived(_ bytes: [UInt8], from: Endpoint, to: Endpoint, _ context: inout Context,
                                   _ random: inout some RandomNumberGenerator) {
        let header: ISAKMP.Header
        let body: [UInt8]
        do {
            (header, body) = try ISAKMP.Message.decodeHeader(bytes)
        } catch {
            context.count(.malformedDropped)
            context.log(.warning, "dropped malformed datagram from \(from): \(error)")
            return
        }
        guard let exchange = ISAKMP.ExchangeType(rawValue: header.exchangeType) else {
            context.count(.unsupportedExchangeDropped)
            context.log(.warning, "dropped exchange type \(header.exchangeType) from \(from)")
            return
        }
        if exchange == .identityProtection, header.responderCookie == 0 {
            if let existing = sas.values.first(where: { !$0.isInitiator && $0.initiatorCookie == header.initiatorCookie && $0.remote.address == from.address }) {
                var sa = existing
                mainModeReceived(header: header, body: body, raw: bytes, from: from, to: to, sa: &sa, &context, &random)
                sas[sa.id] = sa
            } else {
                mainMode1Received(header: header, body: body, raw: bytes, from: from, to: to, &context, &random)
            }
            return
        }
        guard var sa = sa(for: header) else {
            context.count(.unknownSPIDropped)
            context.log(.debug, "dropped \(exchange) from \(from): no ISAKMP SA with cookies "
                        + "\(String(header.initiatorCookie, radix: 16))/\(String(header.responderCookie, radix: 16))")
            return
        }
        switch exchange {
        case .identityProtection:
            mainModeReceived(header: header, body: body, raw: bytes, from: from, to: to, sa: &sa, &context, &random)
        case .quickMode:
            quickModeReceived(header: header, body: body, raw: bytes, from: from, to: to, sa: &sa, &context, &random)
        case .informational:
            informationalReceived(header: header, body: body, from: from, to: to, sa: &sa, &context, &random)
        case .base, .authenticationOnly, .aggressive:
            context.count(.unsupportedExchangeDropped)
            context.log(.warning, "dropped \(exchange) from \(from): Vigil speaks Main Mode and Quick Mode only")
        }
        sas[sa.id] = sa
    }

    /// Our cookie is the SA's key: the responder cookie when we responded, the initiator cookie when we initiated
    /// (whose responder cookie is still 0 until MM2 arrives).
    func sa(for header: ISAKMP.Header) -> ISAKMPSA? {
        if let sa = sas[IKEv1SAID(header.responderCookie)], !sa.isInitiator, sa.initiatorCookie == header.initiatorCookie {
            return sa
        }
        if let sa = sas[IKEv1SAID(header.initiatorCookie)], sa.isInitiator,
           sa.responderCookie == header.responderCookie || sa.responderCookie == 0 {
            return sa
        }
        return nil
    }

    mutating func timerFired(_ timer: IKEv1TimerID, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        switch timer {
        case .retransmit(let id, let messageID):
            guard var sa = sas[id], var request = sa.pending[messageID] else { return }
            let schedule = schedule(for: sa)
            request.attempts += 1
            if request.attempts > schedule.tries {
                sa.pending[messageID] = nil
                if messageID == 0, !sa.isInitiator, !sa.isEstablished {
                    // Our MM2 or MM4 in the peer's Main Mode: nothing more came (the MM1 may have been spoofed).
                    // The half-open SA waits out its lifetime as before; the peer's reachability is not in question.
                    context.count(.mainModeResponseUnanswered)
                    // With an unverifiable MM5 seen, the half-open expiry reports the exchange failed instead.
                    if sa.lastUnauthenticatedReason == nil { context.exchange(.mainMode, .responder, .timeout) }
                    context.log(.info, "\(request.purpose) to \(sa.remote): no next Main Mode message after \(schedule.tries) retransmissions")
                    sas[id] = sa
                    return
                }
                if case .responderSentQM2? = sa.quickModes[messageID] {
                    // The peer's own exchange: it never confirmed our QM2 with QM3 (it may have given up, or its QM3
                    // was lost). That says nothing about whether the peer is reachable, so no `.peerUnreachable`.
                    sa.quickModes[messageID] = nil
                    context.count(.quickMode3Missing)
                    context.exchange(.quickMode, .responder, .timeout)
                    context.log(.warning, "\(request.purpose): \(sa.remote) never sent QM3 after \(schedule.tries) "
                                + "retransmissions; its Quick Mode is dropped")
                    sas[id] = sa
                    return
                }
                context.log(.warning, "\(request.purpose) to \(sa.remote): no answer after \(schedule.tries) retransmissions")
                context.actions.append(.peerUnreachable(id))
                if !sa.isEstablished {
                    context.exchange(.mainMode, .initiator, .timeout)
                    let reason: NegotiationFailure
                    if let hint = sa.lastUnauthenticatedReason {
                        reason = .init(hint.code, "\(request.purpose): no valid answer after \(schedule.tries) retransmissions; \(hint.message)")
                    } else {
                        let hint = sa.awaitsMainMode6 ? " (a pre-shared key mismatch makes the peer drop MM5)" : ""
                        reason = .init(.timeout, "\(request.purpose) unanswered\(hint)")
                    }
                    context.actions.append(.negotiationFailed(connection: sa.connection.name, peer: sa.peer.address, reason: reason))
                    sa.phase = .dead
                } else if let quickMode = sa.quickModes.removeValue(forKey: messageID) {
                    context.exchange(.quickMode, .initiator, .timeout)
                    context.actions.append(.negotiationFailed(connection: sa.connection.name, peer: sa.peer.address,
                                                              reason: .init(.timeout, "Quick Mode \(String(quickMode.messageID, radix: 16)) unanswered")))
                    quickModeFailed(sa: &sa, reason: "Quick Mode unanswered", &context, &random)
                }
                sas[id] = sa
                return
            }
            context.count(.retransmissions)
            context.log(.info, "retransmit \(request.attempts) of \(request.purpose) to \(sa.remote)")
            context.actions.append(.send(bytes: request.bytes, from: sa.local, to: sa.remote))
            context.actions.append(.scheduleTimer(timer, at: context.now + schedule.delay(afterAttempt: request.attempts)))
            sa.pending[messageID] = request
            sas[id] = sa
        case .halfOpenExpired(let id):
            guard var sa = sas[id], !sa.isEstablished else { return }
            context.log(.info, "half-open ISAKMP SA \(id) with \(sa.remote) expired")
            context.count(.halfOpenExpired)
            // The peer reached MM5 (it received our cookie at its address twice, so it is no blind spoof) but never
            // sent one that verified: report it with the reason we saw. Earlier steps anyone could have started.
            if case .responderSentMM4 = sa.phase, let hint = sa.lastUnauthenticatedReason {
                context.exchange(.mainMode, .responder, .failed)
                context.log(.error, "\(sa.connection.name): Main Mode from \(sa.remote) failed: \(hint.message)")
                context.actions.append(.negotiationFailed(connection: sa.connection.name, peer: sa.peer.address,
                                                          reason: .init(hint.code, "no valid MM5 within the half-open lifetime; \(hint.message)")))
            }
            sa.phase = .dead
            sas[id] = sa
        case .rekeyIKESA(let id):
            rekeyIKESA(id, &context, &random)
        case .expireIKESA(let id):
            guard sas[id] != nil else { return }
            context.log(.info, "ISAKMP SA \(id) reached its lifetime")
            deleteIKESA(id, &context, &random)
        case .rekeyChildSA(let id):
            rekeyChildSA(id, &context, &random)
        case .expireChildSA(let id):
            guard children[id] != nil else { return }
            deleteChildSA(id, reason: "lifetime expired", &context, &random)
        }
    }

    /// Forgets SAs marked dead during this event, cancelling their timers and reporting them.
    mutating func removeDeadSAs(_ context: inout Context) {
        for sa in sas.values where sa.isDead {
            childrenDeleted(by: sa.id, reason: sa.deathReason.description, &context)
            if let old = sa.replaces, sa.establishedAt == nil { context.actions.append(.exchangeInFlight(old, false)) }
            for messageID in sa.pending.keys { context.actions.append(.cancelTimer(.retransmit(sa.id, messageID: messageID))) }
            context.actions.append(.cancelTimer(.rekeyIKESA(sa.id)))
            context.actions.append(.cancelTimer(.expireIKESA(sa.id)))
            context.actions.append(.cancelTimer(.halfOpenExpired(sa.id)))
            if sa.establishedAt != nil {
                context.actions.append(.ikeSADeleted(sa.info, reason: sa.deathReason))
            }
            sas[sa.id] = nil
        }
    }

    mutating func recordSuccessor(of old: IKEv1SAID, _ new: IKEv1SAID) {
        successors[old] = new
        if successors.count > Self.successorsKept {
            successors = successors.filter { sas[$0.value] != nil }
        }
    }

    /// The established SA a probe for `id` should use: `id` itself, or the newest SA that replaced it.
    func liveSuccessor(of id: IKEv1SAID) -> IKEv1SAID? {
        var current = id
        for _ in 0..<Self.successorsKept {
            if let sa = sas[current], sa.isEstablished { return current }
            guard let next = successors[current] else { return nil }
            current = next
        }
        return nil
    }

    /// Child SAs whose ISAKMP SA went away are deleted with it, as strongSwan does (RFC 2408 would let them live
    /// on, but then nobody could delete or rekey them in step with the peer).
    mutating func childrenDeleted(by id: IKEv1SAID, reason: String, _ context: inout Context) {
        for (childID, child) in children where child.info.ikeSA == id {
            children[childID] = nil
            context.actions.append(.cancelTimer(.rekeyChildSA(childID)))
            context.actions.append(.cancelTimer(.expireChildSA(childID)))
            context.actions.append(.childSADeleted(child.info, reason: reason))
        }
    }
}

extension IKEv1Endpoint {
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
