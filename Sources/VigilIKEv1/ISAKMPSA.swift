import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// One ISAKMP SA (Phase 1) and the Phase 2 exchanges running over it.
struct ISAKMPSA: Sendable {
    /// RFC 2409 §5 Main Mode steps, named by the last message we sent; each carries what the next step needs and is
    /// built from the one before it, so a step cannot run without its inputs.
    enum Phase: Sendable {
        /// MM1 sent: waiting for the responder's choice among `offered`.
        case initiatorSentMM1(offered: [Phase1Suite])
        /// MM3 sent: our KE and nonce are out, waiting for the responder's.
        case initiatorSentMM3(KeyExchangeSent)
        /// MM5 sent: keys derived, waiting for HASH_R.
        case initiatorSentMM5(Authenticating)
        /// MM2 sent: the suite is chosen, waiting for the initiator's KE and nonce.
        case responderSentMM2(suite: Phase1Suite)
        /// MM4 sent: keys derived, waiting for HASH_I.
        case responderSentMM4(Authenticating)
        case established(Phase1Keys)
        /// Removed at the end of the current event.
        case dead
    }

    /// Built from MM2 (initiator): the chosen suite, our DH exchange and nonce.
    struct KeyExchangeSent: Sendable {
        let suite: Phase1Suite
        let keyExchange: KeyExchange
        let localNonce: [UInt8]
    }

    /// Built once both KE and nonces are known: the keys, and g^xi, g^xr for HASH_I / HASH_R.
    struct Authenticating: Sendable {
        let keys: Phase1Keys
        let initiatorPublic: [UInt8]
        let responderPublic: [UInt8]
    }

    let id: IKEv1SAID
    let connection: IKEv1Endpoint.ConnectionConfiguration
    let peer: IKEv1Endpoint.PeerConfiguration
    let isInitiator: Bool
    let initiatorCookie: UInt64
    var responderCookie: UInt64
    var local: Endpoint
    var remote: Endpoint
    var phase: Phase
    /// The body of the initiator's SA payload (RFC 2409 §5: SAi_b, hashed into HASH_I and HASH_R).
    let initiatorSABody: [UInt8]
    var peerSupportsDPD = false
    var peerSupportsNATT = false
    var udpEncapsulated = false
    var localBehindNAT = false
    /// NAT-D showed the peer behind a NAT (or faking one): only then may its address change (RFC 3947 §5).
    var peerBehindNAT = false
    var remoteIdentity: Identity?
    var establishedAt: Duration?
    /// Start Quick Mode for the connection's proxy identities once Main Mode is done.
    var initiateChildAfterMainMode: Bool
    /// A Phase 1 rekey: the SA this one replaces (its Child SAs move here, then it is deleted).
    var replaces: IKEv1SAID?
    var quickModes: [UInt32: QuickMode] = [:]
    /// Message IDs and DPD sequence numbers seen and sent: what tells the peer's fresh word from replays and
    /// reflections of our own messages.
    var freshness = FreshnessLedger()
    /// The last reason an unauthenticated message gave for refusing or breaking this negotiation (a plaintext
    /// notify, an MM6 that does not decrypt...). It changes nothing by itself; when the negotiation finally fails for
    /// want of a valid answer, the failure carries it so the operator still learns the likely cause.
    var lastUnauthenticatedReason: NegotiationFailure?
    /// Order of creation among the endpoint's SAs: a source over its half-open limit loses its oldest first.
    var serial: UInt64 = 0
    /// Our requests awaiting a reply, by message ID (0: Main Mode; as responder, our MM2 or MM4 until the next
    /// message of the peer's Main Mode comes).
    var pending: [UInt32: PendingRequest] = [:]
    /// The responder's fallback rekey was held once for a Main Mode from the same peer in progress.
    var fallbackRekeyHeld = false
    /// The last Main Mode request we answered and our answer, to resend on a retransmitted request.
    var lastMainModeRequest: [UInt8] = []
    var lastMainModeResponse: [UInt8]?
    /// The last Main Mode message we processed, so a duplicate of it is dropped rather than taken for the next step.
    var lastMainModeMessageReceived: [UInt8] = []
    /// Quick Modes we finished, the last few: as initiator the peer's QM2 and our QM3, to resend QM3 if the peer
    /// retransmits QM2 (its QM3 was lost); as responder just the message ID, so late duplicates are dropped.
    var finishedQuickModes: [FinishedQuickMode] = []
    static let finishedQuickModesKept = 16

    mutating func rememberFinishedQuickMode(_ finished: FinishedQuickMode) {
        finishedQuickModes.append(finished)
        if finishedQuickModes.count > Self.finishedQuickModesKept { finishedQuickModes.removeFirst() }
    }
    /// Why the SA is going away (reported in `.ikeSADeleted`).
    var deathReason: IKESAEnd = .local("ISAKMP SA removed")

    var localCookie: UInt64 { isInitiator ? initiatorCookie : responderCookie }

    /// The Phase 1 keys, once derived (MM4 on).
    var keys: Phase1Keys? {
        switch phase {
        case .initiatorSentMM5(let state), .responderSentMM4(let state): state.keys
        case .established(let keys): keys
        case .initiatorSentMM1, .initiatorSentMM3, .responderSentMM2, .dead: nil
        }
    }

    var suite: Phase1Suite? {
        switch phase {
        case .initiatorSentMM3(let state): state.suite
        case .responderSentMM2(let suite): suite
        case .initiatorSentMM5, .responderSentMM4, .established: keys?.suite
        case .initiatorSentMM1, .dead: nil
        }
    }

    var isEstablished: Bool {
        if case .established = phase { true } else { false }
    }

    /// Whether the Main Mode message we wait for is encrypted (MM5, MM6); nil once Main Mode is over.
    var nextMainModeMessageIsEncrypted: Bool? {
        switch phase {
        case .initiatorSentMM1, .initiatorSentMM3, .responderSentMM2: false
        case .initiatorSentMM5, .responderSentMM4: true
        case .established, .dead: nil
        }
    }

    /// We sent MM5 and wait for MM6: a peer that cannot verify HASH_I answers with noise here.
    var awaitsMainMode6: Bool {
        if case .initiatorSentMM5 = phase { true } else { false }
    }

    var isDead: Bool {
        if case .dead = phase { true } else { false }
    }
    var cookies: [UInt8] {
        var writer = WireWriter(capacity: 16)
        writer.write(initiatorCookie)
        writer.write(responderCookie)
        return writer.bytes
    }

    var info: IKEv1SAInfo {
        IKEv1SAInfo(
            id: id, connection: connection.name, localEndpoint: local, remoteEndpoint: remote,
            localIdentity: connection.localIdentity, remoteIdentity: remoteIdentity ?? peer.identity,
            initiatorCookie: initiatorCookie, responderCookie: responderCookie, isInitiator: isInitiator,
            state: isEstablished ? .established : isDead ? .deleting : .mainMode,
            proposal: suite?.proposal, establishedAt: establishedAt, rekeyAt: nil, peerSupportsDPD: peerSupportsDPD,
            udpEncapsulated: udpEncapsulated, localBehindNAT: localBehindNAT)
    }

    func retransmission(default schedule: RetransmissionSchedule) -> RetransmissionSchedule {
        connection.connection.retransmission(for: peer, default: schedule)
    }
}

struct PendingRequest: Sendable {
    var bytes: [UInt8]
    var attempts: Int
    /// What the request was for, to report when retransmissions run out.
    var purpose: String
}

/// One Quick Mode exchange (RFC 2409 §5.5) in progress, one value per step: each case carries what that step has.
enum QuickMode: Sendable {
    /// QM1 E{ HASH(1), SA, Ni, [KE], IDci, IDcr } sent; waiting for QM2.
    case initiatorSentQM1(InitiatorSentQM1)
    /// QM2 sent in answer to the peer's QM1; waiting for QM3. Everything is agreed.
    case responderSentQM2(ResponderSentQM2)

    struct InitiatorSentQM1: Sendable {
        let messageID: UInt32
        /// The running IV of this exchange (RFC 2409 Appendix B) after QM1.
        let iv: [UInt8]
        /// Ni.
        let localNonce: [UInt8]
        /// Our PFS key exchange, when the connection asks for PFS.
        let keyExchange: KeyExchange?
        let inboundSPI: UInt32
        let offered: [Phase2Suite]
        let localTrafficSelector: IPPrefix
        let remoteTrafficSelector: IPPrefix
        /// Phase 2 rekey: the Child SA this one replaces.
        let rekeyOf: ChildSAID?
    }

    struct ResponderSentQM2: Sendable {
        let agreed: AgreedQuickMode
        /// The running IV of this exchange after QM2.
        let iv: [UInt8]
        /// The QM1 we answered and our QM2, to resend on a retransmitted QM1.
        let lastRequest: [UInt8]
        let lastResponse: [UInt8]
    }

    var messageID: UInt32 {
        switch self {
        case .initiatorSentQM1(let sent): sent.messageID
        case .responderSentQM2(let sent): sent.agreed.messageID
        }
    }

    var iv: [UInt8] {
        switch self {
        case .initiatorSentQM1(let sent): sent.iv
        case .responderSentQM2(let sent): sent.iv
        }
    }

    /// We started it (our QM1).
    var weInitiated: Bool {
        switch self {
        case .initiatorSentQM1: true
        case .responderSentQM2: false
        }
    }

    var rekeyOf: ChildSAID? {
        switch self {
        case .initiatorSentQM1(let sent): sent.rekeyOf
        case .responderSentQM2(let sent): sent.agreed.rekeyOf
        }
    }
}

/// What a Quick Mode agreed on, from either side: enough to derive KEYMAT (RFC 2409 §5.5) and install the IPsec SAs.
struct AgreedQuickMode: Sendable {
    let messageID: UInt32
    let suite: Phase2Suite
    let inboundSPI: UInt32
    let outboundSPI: UInt32
    /// Ni_b and Nr_b.
    let initiatorNonce: [UInt8]
    let responderNonce: [UInt8]
    /// g(qm)^xy when the suite has a PFS group.
    let pfsSecret: SecureBytes?
    let localTrafficSelector: IPPrefix
    let remoteTrafficSelector: IPPrefix
    /// Phase 2 rekey we started: the Child SA this one replaces.
    let rekeyOf: ChildSAID?
}

/// An established IPsec SA pair.
struct ChildSA: Sendable {
    var info: IKEv1ChildSA
    /// We ran the Quick Mode that made it: we rekey it before it expires.
    var weInitiated: Bool
}

struct FinishedQuickMode: Sendable {
    var messageID: UInt32
    var request: [UInt8]
    var response: [UInt8]
}
