import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilIKEv1
import VigilWire

/// SplitMix64: a seeded generator so a failing run replays exactly.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum Fixture {
    static let west = IPAddress("192.0.2.1")!
    static let east = IPAddress("192.0.2.2")!
    static let westNet = try! IPPrefix.parse("10.1.0.0/24")
    static let eastNet = try! IPPrefix.parse("10.2.0.0/24")

    static func connection(local: IPAddress, remote: IPAddress, localNet: IPPrefix, remoteNet: IPPrefix,
                           psk: String = "lab-secret-123", ike: String = "aes256-sha256-modp2048",
                           esp: String = "aes256-sha256", pfs: DHGroup? = .modp2048,
                           force: Bool = false) -> IKEv1Endpoint.ConnectionConfiguration {
        IKEv1Endpoint.ConnectionConfiguration(ConnectionConfiguration(
            name: "SITE/10", localAddress: local, localIdentity: .address(local),
            peers: [.init(address: remote, identity: .address(remote), preSharedKey: SecureBytes(Array(psk.utf8)))],
            ikeProposals: [try! IKEProposal.parse(ike)], espProposals: [try! ESPProposal.parse(esp)], pfsGroup: pfs,
            localTrafficSelectors: [localNet], remoteTrafficSelectors: [remoteNet], ikeLifetime: .seconds(28_800),
            forceUDPEncapsulation: force, retransmission: RetransmissionSchedule(timeout: .seconds(1), base: 1.5, tries: 3)))
    }

    static func westEndpoint(psk: String = "lab-secret-123", ike: String = "aes256-sha256-modp2048", esp: String = "aes256-sha256",
                             pfs: DHGroup? = .modp2048, force: Bool = false) -> IKEv1Endpoint {
        IKEv1Endpoint(configuration: .init(connections: [connection(local: west, remote: east, localNet: westNet, remoteNet: eastNet,
                                                                    psk: psk, ike: ike, esp: esp, pfs: pfs, force: force)]))
    }

    static func eastEndpoint(psk: String = "lab-secret-123", ike: String = "aes256-sha256-modp2048", esp: String = "aes256-sha256",
                             pfs: DHGroup? = .modp2048) -> IKEv1Endpoint {
        IKEv1Endpoint(configuration: .init(connections: [connection(local: east, remote: west, localNet: eastNet, remoteNet: westNet,
                                                                    psk: psk, ike: ike, esp: esp, pfs: pfs)]))
    }
}

/// Two engines wired back to back without sockets; datagrams wait in `wire` until delivered.
struct Lockstep {
    struct Datagram { var bytes: [UInt8]; var from: Endpoint; var to: Endpoint }
    var west: IKEv1Endpoint
    var east: IKEv1Endpoint
    var random = SeededGenerator(seed: 7)
    var now: Duration = .zero
    var wire: [Datagram] = []
    var westActions: [IKEv1Action] = []
    var eastActions: [IKEv1Action] = []
    var westTimers: [IKEv1TimerID: Duration] = [:]
    var eastTimers: [IKEv1TimerID: Duration] = [:]

    @discardableResult
    mutating func west(_ event: IKEv1Event) -> [IKEv1Action] {
        let actions = west.handle(event, now: now, random: &random)
        westActions += actions
        collect(actions)
        Self.track(actions, &westTimers)
        return actions
    }

    @discardableResult
    mutating func east(_ event: IKEv1Event) -> [IKEv1Action] {
        let actions = east.handle(event, now: now, random: &random)
        eastActions += actions
        collect(actions)
        Self.track(actions, &eastTimers)
        return actions
    }

    mutating func collect(_ actions: [IKEv1Action]) {
        for case .send(let bytes, let from, let to) in actions { wire.append(Datagram(bytes: bytes, from: from, to: to)) }
    }

    static func track(_ actions: [IKEv1Action], _ timers: inout [IKEv1TimerID: Duration]) {
        for action in actions {
            if case .scheduleTimer(let id, let at) = action { timers[id] = at }
            if case .cancelTimer(let id) = action { timers[id] = nil }
        }
    }

    /// Moves the clock on, firing each side's timers as they fall due before `horizon` (earliest first) and
    /// delivering what they send, like a runtime whose wire is quiet otherwise.
    mutating func advance(to horizon: Duration, deliverSends: Bool = true) {
        while true {
            let next = (westTimers.map { ($0.key, $0.value, true) } + eastTimers.map { ($0.key, $0.value, false) })
                .filter { $0.1 <= horizon }.min { $0.1 < $1.1 }
            guard let (id, at, isWest) = next else { break }
            now = max(now, at)
            if isWest {
                westTimers[id] = nil
                west(.timerFired(id))
            } else {
                eastTimers[id] = nil
                east(.timerFired(id))
            }
            if deliverSends { settle() } else { wire.removeAll() }
        }
        now = max(now, horizon)
    }

    /// Takes the oldest datagram off the wire without delivering it.
    mutating func intercept() -> Datagram? {
        wire.isEmpty ? nil : wire.removeFirst()
    }

    /// Hands `datagram` to whichever side it is addressed to, as if it came from `from` (a spoofed or reflected copy).
    @discardableResult
    mutating func inject(_ datagram: Datagram, from: Endpoint? = nil, to: Endpoint? = nil) -> [IKEv1Action] {
        let target = to ?? datagram.to
        let event = IKEv1Event.datagramReceived(bytes: datagram.bytes, from: from ?? datagram.from, to: target)
        return target.address == Fixture.west ? west(event) : east(event)
    }

    /// Delivers the oldest datagram in flight to its addressee; returns what it was (header) and the receiver's actions.
    @discardableResult
    mutating func deliver() -> (header: ISAKMP.Header, actions: [IKEv1Action])? {
        guard !wire.isEmpty else { return nil }
        let datagram = wire.removeFirst()
        let header = try! ISAKMP.Message.decodeHeader(datagram.bytes).header
        let event = IKEv1Event.datagramReceived(bytes: datagram.bytes, from: datagram.from, to: datagram.to)
        let actions = datagram.to.address == Fixture.west ? west(event) : east(event)
        return (header, actions)
    }

    /// Delivers until the wire is quiet.
    mutating func settle(limit: Int = 50) {
        var count = 0
        while deliver() != nil, count < limit { count += 1 }
    }
}

extension [IKEv1Action] {
    var established: [IKEv1ChildSA] {
        compactMap { if case .childSAEstablished(let info) = $0 { info } else { nil } }
    }
    var keys: [ChildSAKeys] {
        compactMap { if case .childSAEstablished(let info) = $0 { info.keys } else { nil } }
    }
    var ikeEstablished: [IKEv1SAInfo] {
        compactMap { if case .ikeSAEstablished(let info) = $0 { info } else { nil } }
    }
    var failures: [NegotiationFailure] {
        compactMap { if case .negotiationFailed(_, _, let reason) = $0 { reason } else { nil } }
    }
    var logText: String {
        compactMap { if case .log(_, let text) = $0 { text } else { nil } }.joined(separator: "\n")
    }
    var sends: Int { filter { if case .send = $0 { true } else { false } }.count }
    var proofsOfLife: Int { filter { if case .authenticatedMessageReceived = $0 { true } else { false } }.count }
    var unreachable: Int { filter { if case .peerUnreachable = $0 { true } else { false } }.count }
    var acknowledged: [UInt32] { compactMap { if case .dpdAcknowledged(_, let sequence) = $0 { sequence } else { nil } } }
    var deletedIKESAs: [(IKEv1SAInfo, IKESAEnd)] { compactMap { if case .ikeSADeleted(let info, let reason) = $0 { (info, reason) } else { nil } } }
}
