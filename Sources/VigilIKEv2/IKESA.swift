import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// What handling one event produced, besides the SA's own new state.
struct Effects {
    var actions: [IKEv2Action] = []
    /// IKE SAs born from this one (an IKE SA rekey).
    var spawned: [IKESA] = []
    /// Forget this SA once the actions are out.
    var closed = false
    var counters: [IKECounter: UInt64] = [:]
    /// Exchanges that ended while handling this event.
    var exchanges: [IKEExchangeOutcome: UInt64] = [:]
    /// The peer sent INITIAL_CONTACT in an authenticated IKE_AUTH: other SAs with it are stale (§2.4).
    var initialContact: (address: IPAddress, identity: Identity)?
    /// The peer authenticated a new IKE SA of this connection: its older IKE SAs without a Child SA are orphans and
    /// are deleted.
    var supersedesChildless: (connection: String, identity: Identity)?

    mutating func log(_ level: LogLevel, _ text: String) { actions.append(.log(level, text)) }
    mutating func count(_ name: IKECounter) { counters[name, default: 0] += 1 }
    mutating func exchange(_ exchange: IKEExchangeOutcome.Exchange, _ role: IKEExchangeOutcome.Role, _ result: IKEExchangeOutcome.Result) {
        exchanges[IKEExchangeOutcome(exchange, role, result), default: 0] += 1
    }
}

/// Facts about the endpoint an SA needs while handling an event.
struct SAContext {
    let now: Duration
    let configuration: IKEv2Endpoint.Configuration
    /// Child SA SPIs already in use (inbound), so a new one is unique.
    let usedChildSPIs: Set<UInt32>
    let usedIKESPIs: Set<UInt64>
    /// Peers we already have an established IKE SA with (INITIAL_CONTACT is sent only to others).
    let establishedPeers: Set<IPAddress>
}

/// A Child SA as the IKE SA that owns it sees it.
struct ChildSA: Sendable {
    typealias State = ChildSAStatus.State
    var info: IKEv2ChildSA
    var state: State
    /// The selectors as negotiated (kept for rekeys: TSi/TSr from our point of view).
    var localSelectors: [IKEv2.TrafficSelector]
    var remoteSelectors: [IKEv2.TrafficSelector]
    /// §2.25.1: the peer rekeyed this SA while our own rekey of it was in flight.
    var collision: Collision?
    /// Our rekeys of it that failed in a row; bounded by `IKEv2Tunables.maximumChildRekeyAttempts`.
    var failedRekeys = 0

    struct Collision: Sendable {
        var newChild: ChildSAID
        var lowestNonce: [UInt8]
    }
}

/// A request we will send when the window of one (§2.3) is free.
enum RequestIntent: Sendable, Equatable {
    case liveness
    case deleteChild(ChildSAID)
    case rekeyChild(ChildSAID)
    case rekeyIKE
}

/// Our request in flight (§2.1): its bytes are retransmitted unchanged.
struct OutstandingRequest: Sendable {
    enum Kind: Sendable {
        case ikeSAInit
        case ikeAuth
        case liveness
        case deleteChild(ChildSAID)
        case deleteIKE
        case rekeyChild(RekeyChildRequest)
        case rekeyIKE(RekeyIKERequest)

        /// The exchange this request starts (§1.2-1.4).
        var exchange: IKEExchangeOutcome.Exchange {
            switch self {
            case .ikeSAInit: .ikeSAInit
            case .ikeAuth: .ikeAuth
            case .liveness, .deleteChild, .deleteIKE: .informational
            case .rekeyChild, .rekeyIKE: .createChildSA
            }
        }
    }

    var messageID: UInt32
    var datagram: [UInt8]
    var kind: Kind
    /// Transmissions so far (1 = the original).
    var transmissions: Int
    /// Retransmitted on the schedule by the engine. Liveness checks are not (the dead peer detector drives them)
    /// until another request has to wait behind one.
    var onSchedule: Bool

    var isLiveness: Bool {
        if case .liveness = kind { return true }
        return false
    }
}

struct RekeyChildRequest: @unchecked Sendable {  // KeyExchange is an immutable OpenSSL owner
    var old: ChildSAID
    var newInboundSPI: UInt32
    var nonce: [UInt8]
    var keyExchange: KeyExchange?
}

struct RekeyIKERequest: @unchecked Sendable {
    var newSPI: UInt64
    var nonce: [UInt8]
    var keyExchange: KeyExchange
}

/// The successor the peer created by rekeying while our own rekey was in flight (an array only to let a struct
/// hold a value of its own type).
struct IKERekeyCollision: Sendable {
    var successor: [IKESA]
    var lowestNonce: [UInt8]
}

/// One IKE SA: its phase, its Child SAs, its message-ID window.
struct IKESA: @unchecked Sendable {
    enum Phase {
        /// IKE_SA_INIT sent, waiting for the response.
        case initiatorInit(InitiatorInit)
        /// IKE_AUTH sent, waiting for the response.
        case initiatorAuth(InitiatorAuth)
        /// IKE_SA_INIT answered, waiting for IKE_AUTH.
        case responderHalfOpen(ResponderHalfOpen)
        case established(Established)
    }

    struct InitiatorInit {
        var keyExchange: KeyExchange
        var nonce: [UInt8]
        var cookie: [UInt8]?
        /// COOKIE retries so far (bounded, §2.6) and whether INVALID_KE_PAYLOAD already changed the group (once, §1.2).
        var cookieRetries = 0
        var changedGroup = false
    }

    struct InitiatorAuth {
        let keys: IKESAKeys
        let protection: MessageProtection
        let ni: [UInt8]
        let nr: [UInt8]
        let message2: [UInt8]
        let childSPI: UInt32
        let localSelectors: [IKEv2.TrafficSelector]
        let remoteSelectors: [IKEv2.TrafficSelector]
    }

    struct ResponderHalfOpen {
        let keys: IKESAKeys
        let protection: MessageProtection
        let ni: [UInt8]
        let nr: [UInt8]
        let message1: [UInt8]
        let message2: [UInt8]
        let startedAt: Duration
        /// Connections that may own this SA (same addresses, an acceptable IKE proposal); chosen in IKE_AUTH.
        let candidates: [IKEv2Endpoint.ConnectionConfiguration]
    }

    struct Established {
        let keys: IKESAKeys
        let protection: MessageProtection
    }

    let id: IKESAID
    var connection: IKEv2Endpoint.ConnectionConfiguration
    var peer: IKEv2Endpoint.PeerConfiguration
    let isOriginalInitiator: Bool
    var initiatorSPI: UInt64
    var responderSPI: UInt64
    var local: Endpoint
    var remote: Endpoint
    var localBehindNAT = false
    var remoteBehindNAT = false
    /// NAT_DETECTION_DESTINATION_IP showed a real NAT in front of us (not one faked to force UDP encapsulation).
    var localNATDetected = false
    /// §2.21.1: the last unauthenticated answer (an error notify in an IKE_SA_INIT response, ...) we ignored while
    /// waiting for a valid one; the reason given when the retransmissions run out.
    var unauthenticatedHint: NegotiationFailure?
    /// While a request is handled: where it came from and arrived; the response goes back there (§2.11).
    var requestPath: (local: Endpoint, remote: Endpoint)?
    /// Set by `close`: nothing more is sent for this SA.
    var isClosed = false
    var phase: Phase
    var children: [ChildSA] = []
    var remoteIdentity: Identity?
    var establishedAt: Duration?
    var rekeyedAway = false
    /// Our IKE_AUTH went unanswered: the SA is only deleting itself at the peer, which may have completed it.
    var withdrawn = false
    /// §2.25.2: the peer's IKE SA rekey we answered while ours was in flight.
    var collision: IKERekeyCollision?
    var schedule: RetransmissionSchedule

    // §2.2 message IDs, window of one.
    var nextRequestID: UInt32 = 0
    var outstanding: OutstandingRequest?
    var queue: [RequestIntent] = []
    var nextPeerRequestID: UInt32 = 0
    var cachedResponse: (messageID: UInt32, datagram: [UInt8])?
    /// The IKE_SA_INIT request as sent last (RealMessage1 of the initiator's AUTH).
    var message1: [UInt8] = []

    var udpEncapsulated: Bool { localBehindNAT || remoteBehindNAT }

    var protection: MessageProtection? {
        switch phase {
        case .initiatorInit: nil
        case .initiatorAuth(let state): state.protection
        case .responderHalfOpen(let state): state.protection
        case .established(let state): state.protection
        }
    }

    var algorithms: IKEAlgorithms? {
        switch phase {
        case .initiatorInit: nil
        case .initiatorAuth(let state): state.keys.algorithms
        case .responderHalfOpen(let state): state.keys.algorithms
        case .established(let state): state.keys.algorithms
        }
    }

    var isHalfOpen: Bool {
        if case .responderHalfOpen = phase { return true }
        return false
    }

    /// When a responder half-open SA answered IKE_SA_INIT (zero in any other phase).
    var halfOpenSince: Duration {
        if case .responderHalfOpen(let state) = phase { return state.startedAt }
        return .zero
    }

    var isEstablished: Bool {
        if case .established = phase { return true }
        return false
    }

    var info: IKESAInfo {
        let state: IKESAInfo.State
        switch phase {
        case .initiatorInit, .initiatorAuth, .responderHalfOpen: state = withdrawn ? .deleting : .connecting
        case .established:
            if rekeyedAway {
                state = .deleting
            } else if case .rekeyIKE = outstanding?.kind {
                state = .rekeying
            } else {
                state = .established
            }
        }
        return IKESAInfo(
            id: id, connection: connection.name, localEndpoint: local, remoteEndpoint: remote,
            localIdentity: connection.localIdentity, remoteIdentity: remoteIdentity, initiatorSPI: initiatorSPI,
            responderSPI: responderSPI, isInitiator: isOriginalInitiator, state: state, proposal: algorithms,
            establishedAt: establishedAt, rekeyAt: nil, localBehindNAT: localBehindNAT, remoteBehindNAT: remoteBehindNAT
        )
    }

    var label: String { "IKE SA \(connection.name)[\(hex64(initiatorSPI))_i \(hex64(responderSPI))_r]" }

    init(
        id: IKESAID, connection: IKEv2Endpoint.ConnectionConfiguration, peer: IKEv2Endpoint.PeerConfiguration,
        isOriginalInitiator: Bool, initiatorSPI: UInt64, responderSPI: UInt64, local: Endpoint, remote: Endpoint,
        phase: Phase, schedule: RetransmissionSchedule
    ) {
        self.id = id
        self.connection = connection
        self.peer = peer
        self.isOriginalInitiator = isOriginalInitiator
        self.initiatorSPI = initiatorSPI
        self.responderSPI = responderSPI
        self.local = local
        self.remote = remote
        self.phase = phase
        self.schedule = schedule
    }

    // MARK: - Sending

    func header(_ exchange: IKEv2.ExchangeType, messageID: UInt32, response: Bool) -> IKEv2.Header {
        var flags: IKEv2.Header.Flags = isOriginalInitiator ? .initiator : []
        if response { flags.insert(.response) }
        return IKEv2.Header(initiatorSPI: initiatorSPI, responderSPI: responderSPI, exchangeType: exchange, flags: flags, messageID: messageID)
    }

    func transmit(_ datagram: [UInt8], _ effects: inout Effects) {
        effects.actions.append(.send(bytes: datagram, from: local, to: remote))
    }

    /// A response goes where its request came from (§2.11), even when the SA's address did not move (§2.23).
    func transmitResponse(_ datagram: [UInt8], _ effects: inout Effects) {
        let path = requestPath ?? (local, remote)
        effects.actions.append(.send(bytes: datagram, from: path.local, to: path.remote))
    }

    /// Starts a protected request; the window must be free.
    mutating func startRequest(
        _ exchange: IKEv2.ExchangeType, _ payloads: [IKEv2.Payload], kind: OutstandingRequest.Kind,
        now: Duration, random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        precondition(outstanding == nil, "a second request while one is outstanding (window of one)")
        guard let protection else { preconditionFailure("protected request before keys exist") }
        let messageID = nextRequestID
        nextRequestID &+= 1
        let message = IKEv2.Message(header: header(exchange, messageID: messageID, response: false), payloads: payloads)
        let datagram = protection.seal(header: message.header, payloads: payloads, random: &random)
        startRequest(message, datagram: datagram, kind: kind, now: now, effects: &effects)
    }

    /// Records and sends a request whose bytes are built (IKE_SA_INIT is not protected).
    mutating func startRequest(_ message: IKEv2.Message, datagram: [UInt8], kind: OutstandingRequest.Kind, now: Duration, effects: inout Effects) {
        var request = OutstandingRequest(messageID: message.header.messageID, datagram: datagram, kind: kind, transmissions: 1, onSchedule: false)
        request.onSchedule = !request.isLiveness
        outstanding = request
        effects.log(.info, "\(label): sending \(message.summary) to \(remote)")
        transmit(datagram, &effects)
        if request.onSchedule {
            effects.actions.append(.scheduleTimer(.retransmit(id, messageID: request.messageID), at: now + schedule.delay(afterAttempt: 0)))
        }
        if !request.isLiveness {
            effects.actions.append(.exchangeInFlight(id, true))
        }
    }

    /// Ends the outstanding request (response received).
    mutating func finishRequest(_ effects: inout Effects) {
        guard let request = outstanding else { return }
        outstanding = nil
        if request.onSchedule {
            effects.actions.append(.cancelTimer(.retransmit(id, messageID: request.messageID)))
        }
        if !request.isLiveness {
            effects.actions.append(.exchangeInFlight(id, false))
        }
    }

    /// Sends a protected response to the peer's request and caches it for retransmitted requests (§2.1).
    mutating func respond(
        _ exchange: IKEv2.ExchangeType, messageID: UInt32, _ payloads: [IKEv2.Payload],
        random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        guard let protection else { preconditionFailure("protected response before keys exist") }
        let message = IKEv2.Message(header: header(exchange, messageID: messageID, response: true), payloads: payloads)
        let datagram = protection.seal(header: message.header, payloads: payloads, random: &random)
        cachedResponse = (messageID, datagram)
        effects.exchange(IKEExchangeOutcome.Exchange(exchange), .responder, payloads.errorNotify == nil ? .ok : .failed)
        effects.log(.info, "\(label): sending \(message.summary) to \(requestPath?.remote ?? remote)")
        transmitResponse(datagram, &effects)
    }

    // MARK: - Timers

    mutating func retransmitTimerFired(
        messageID: UInt32, context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects
    ) {
        guard var request = outstanding, request.messageID == messageID, request.onSchedule else { return }
        guard request.transmissions <= schedule.tries else {
            effects.exchange(request.kind.exchange, .initiator, .timeout)
            if rekeyedAway {
                // A replaced SA whose DELETE goes unanswered: its successor speaks for the peer.
                outstanding = nil
                close(reason: .replaced("rekeyed"), effects: &effects)
                return
            }
            if withdrawn {
                effects.log(.info, "\(label): DELETE of the withdrawn SA unanswered; forgotten")
                close(reason: .peerUnreachable, effects: &effects)
                return
            }
            effects.log(.warning, "\(label): giving up after \(schedule.tries) retransmissions of message \(messageID); peer \(remote) unreachable")
            effects.actions.append(.peerUnreachable(id))
            if !isEstablished {
                // §2.21.1: an unauthenticated answer did not end the wait, but it is the best diagnosis there is.
                let reason = unauthenticatedHint.map {
                    NegotiationFailure($0.code, "no valid answer from \(remote) after \(schedule.tries) retransmissions; last unauthenticated answer: \($0.message)")
                } ?? NegotiationFailure(.timeout, "no answer from \(remote) after \(schedule.tries) retransmissions")
                effects.log(.error, "\(label): \(reason.message)")
                effects.actions.append(.negotiationFailed(connection: connection.name, peer: peer.address, reason: reason))
            }
            if !request.isLiveness { effects.actions.append(.exchangeInFlight(id, false)) }
            outstanding = nil
            if case .ikeAuth = request.kind, protection != nil {
                withdraw(context: context, random: &random, effects: &effects)
            } else {
                close(reason: .peerUnreachable, effects: &effects)
            }
            return
        }
        effects.count(.retransmissions)
        effects.log(.info, "\(label): retransmit \(request.transmissions) of request \(messageID) to \(remote)")
        transmit(request.datagram, &effects)
        effects.actions.append(.scheduleTimer(.retransmit(id, messageID: messageID), at: context.now + schedule.delay(afterAttempt: request.transmissions)))
        request.transmissions += 1
        outstanding = request
    }

    /// An IKE_AUTH request whose retransmissions ran out may still have been answered: the response lost, or the
    /// responder slow (charon answers a request once it has installed the Child SA, and ignores retransmissions of
    /// it meanwhile). The responder would then keep an IKE SA and a Child SA we never had, and send its traffic
    /// into them. So the SA is not forgotten silently: it sends INFORMATIONAL { D(IKE) } under its keys, as an
    /// ordinary request retransmitted on the schedule (a responder still busy with message 1 takes message 2 only
    /// after answering it), and is forgotten when that is answered or its retransmissions run out. The failure is
    /// already reported; the late IKE_AUTH response, if it comes, is not the outstanding request and is dropped.
    mutating func withdraw(context: SAContext, random: inout some RandomNumberGenerator, effects: inout Effects) {
        withdrawn = true
        effects.log(.notice, "\(label): withdrawing after the unanswered IKE_AUTH: deleting the SA at \(remote) in case it completed there")
        let delete: [IKEv2.Payload] = [.delete(IKEv2.Delete(protocolID: .ike, spis: []))]
        startRequest(.informational, delete, kind: .deleteIKE, now: context.now, random: &random, effects: &effects)
    }

    /// Forgets the SA: its Child SAs and itself are reported deleted, its timers cancelled.
    mutating func close(reason: IKESAEnd, effects: inout Effects) {
        if let request = outstanding {
            if request.onSchedule { effects.actions.append(.cancelTimer(.retransmit(id, messageID: request.messageID))) }
            if !request.isLiveness { effects.actions.append(.exchangeInFlight(id, false)) }
        }
        outstanding = nil
        for child in children {
            effects.actions.append(.cancelTimer(.rekeyChildSA(child.info.id)))
            effects.actions.append(.childSADeleted(child.info, reason: reason.description))
        }
        children = []
        effects.actions.append(.cancelTimer(.rekeyIKESA(id)))
        effects.actions.append(.cancelTimer(.halfOpenExpiry(id)))
        effects.actions.append(.cancelTimer(.natKeepalive(id)))
        if rekeyedAway { effects.actions.append(.cancelTimer(.expireReplacedIKESA(id))) }
        // An SA never established, or one whose role passed to its rekeyed successor, is not reported.
        if establishedAt != nil, !rekeyedAway {
            effects.actions.append(.ikeSADeleted(info, reason: reason))
        }
        isClosed = true
        effects.closed = true
    }

    /// INFORMATIONAL { D(IKE) } (§1.4.1), not awaited: the SA is forgotten right after. Needs keys, not an
    /// established phase (an authenticated SA that could not get its Child SA is deleted this way too).
    mutating func sendDelete(random: inout some RandomNumberGenerator, effects: inout Effects) {
        guard let protection else { return }
        let messageID = nextRequestID
        nextRequestID &+= 1
        let payloads: [IKEv2.Payload] = [.delete(IKEv2.Delete(protocolID: .ike, spis: []))]
        let message = IKEv2.Message(header: header(.informational, messageID: messageID, response: false), payloads: payloads)
        effects.log(.info, "\(label): sending \(message.summary) to \(remote)")
        transmit(protection.seal(header: message.header, payloads: payloads, random: &random), &effects)
    }

    /// Schedules the rekey of the IKE SA (lifetime minus up to 10 % jitter).
    func scheduleRekey(_ timer: IKEv2TimerID, lifetime: Duration, now: Duration, random: inout some RandomNumberGenerator, effects: inout Effects) {
        let jitterPercent = Double(random.next() % 100) / 1000
        effects.actions.append(.scheduleTimer(timer, at: now + lifetime * (1 - jitterPercent)))
    }

    func newChildSPI(_ context: SAContext, _ random: inout some RandomNumberGenerator) -> UInt32 {
        while true {
            let spi = UInt32(truncatingIfNeeded: random.next())
            // SPIs 1-255 are reserved by IANA (RFC 4303 §2.1); 0 means none.
            if spi > 255, !context.usedChildSPIs.contains(spi), !children.contains(where: { $0.info.inboundSPI == spi }) { return spi }
        }
    }

    func newNonce(_ random: inout some RandomNumberGenerator) -> [UInt8] { randomBytes(IKEv2Tunables.nonceLength, &random) }
}

extension IKEExchangeOutcome.Exchange {
    init(_ type: IKEv2.ExchangeType) {
        switch type {
        case .ikeSAInit: self = .ikeSAInit
        case .ikeAuth: self = .ikeAuth
        case .createChildSA: self = .createChildSA
        case .informational: self = .informational
        }
    }
}

/// Our implementation choices (spec constants live in `IKEv2.Spec`).
enum IKEv2Tunables {
    /// Nonce length: at least half the PRF key size and at least 16 octets (§2.10); 32 suits every PRF we offer.
    static let nonceLength = 32
    /// After a refused or failed rekey, try again this much later.
    static let rekeyRetryDelay: Duration = .seconds(10)
    /// Failed rekeys of one Child SA in a row before the IKE SA is deleted (INFORMATIONAL DELETE) instead of
    /// keeping it on a Child SA that cannot be renewed.
    static let maximumChildRekeyAttempts = 5
    /// IKE SAs replaced by a rekey but not yet deleted by the peer, kept per peer and connection.
    static let maximumReplacedIKESAs = 4
    /// Child SAs one IKE SA may carry; a CREATE_CHILD_SA for more is refused with NO_ADDITIONAL_SAS (§1.3).
    static let maximumChildSAsPerIKESA = 16
    /// §3.13: Number of TSs is one octet, so one TS payload holds at most 255 selectors.
    static let maximumTrafficSelectorsOnWire = 255
    /// Selectors we keep per TS payload after narrowing (§2.9 lets the responder narrow to a subset); below the wire
    /// limit, and more than any crypto map entry needs.
    static let maximumNarrowedTrafficSelectors = 64
    /// §3.10.1: COOKIE data is 1 to 64 octets.
    static let cookieLengths = 1...64
    /// COOKIE demands we follow for one IKE_SA_INIT (§2.6): a spoofed stream of them cannot keep us restarting.
    static let maximumCookieRetries = 3
}
