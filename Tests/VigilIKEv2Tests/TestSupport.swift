import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
@testable import VigilIKEv2

/// SplitMix64: a seeded generator so every run replays.
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

struct Datagram {
    var bytes: [UInt8]
    var from: Endpoint
    var to: Endpoint
}

extension [IKEv2Action] {
    var sent: [Datagram] {
        compactMap { if case .send(let bytes, let from, let to) = $0 { Datagram(bytes: bytes, from: from, to: to) } else { nil } }
    }
    var failures: [NegotiationFailure] {
        compactMap { if case .negotiationFailed(_, _, let reason) = $0 { reason } else { nil } }
    }
    var established: [IKEv2ChildSA] {
        compactMap { if case .childSAEstablished(let info) = $0 { info } else { nil } }
    }
    var childKeys: [ChildSAKeys] {
        compactMap {
            switch $0 {
            case .childSAEstablished(let info), .childSARekeyed(_, let info): info.keys
            default: nil
            }
        }
    }
    var rekeyed: [(old: ChildSAID, new: IKEv2ChildSA)] {
        compactMap { if case .childSARekeyed(let old, let new) = $0 { (old, new) } else { nil } }
    }
    var deletedChildren: [IKEv2ChildSA] {
        compactMap { if case .childSADeleted(let info, _) = $0 { info } else { nil } }
    }
    var deletedIKESAs: [IKESAInfo] {
        compactMap { if case .ikeSADeleted(let info, _) = $0 { info } else { nil } }
    }
    var ikeSAEnds: [IKESAEnd] {
        compactMap { if case .ikeSADeleted(_, let end) = $0 { end } else { nil } }
    }
    var timers: [(IKEv2TimerID, Duration)] {
        compactMap { if case .scheduleTimer(let id, let at) = $0 { (id, at) } else { nil } }
    }
    var logText: String {
        compactMap { if case .log(_, let text) = $0 { text } else { nil } }.joined(separator: "\n")
    }
    func contains(_ predicate: (IKEv2Action) -> Bool) -> Bool { contains(where: predicate) }
}

/// Two endpoints wired back to back, one event at a time.
struct Lockstep {
    static let westAddress = IPAddress("192.0.2.1")!
    static let eastAddress = IPAddress("192.0.2.2")!

    var west: IKEv2Endpoint
    var east: IKEv2Endpoint
    var random = SeededGenerator(seed: 7)
    var now: Duration = .zero
    /// Where east lives (datagrams to it go to `east`).
    var eastAddress = Lockstep.eastAddress

    init(west: IKEv2Endpoint.ConnectionConfiguration, east: IKEv2Endpoint.ConnectionConfiguration, eastCookieThreshold: Int = 10) {
        self.west = IKEv2Endpoint(configuration: .init(connections: [west]))
        self.east = IKEv2Endpoint(configuration: .init(connections: [east], cookieThreshold: eastCookieThreshold))
    }

    mutating func westHandles(_ event: IKEv2Event) -> [IKEv2Action] { west.handle(event, now: now, random: &random) }
    mutating func eastHandles(_ event: IKEv2Event) -> [IKEv2Action] { east.handle(event, now: now, random: &random) }

    /// Delivers one datagram to whichever side owns its destination address.
    mutating func deliver(_ datagram: Datagram) -> [IKEv2Action] {
        let event = IKEv2Event.datagramReceived(bytes: datagram.bytes, from: datagram.from, to: datagram.to)
        return datagram.to.address == eastAddress ? eastHandles(event) : westHandles(event)
    }

    /// Delivers every datagram until both sides are quiet; returns all actions of both sides.
    mutating func pump(_ first: [IKEv2Action], limit: Int = 50) -> [IKEv2Action] {
        var all = first
        var pending = first.sent
        var steps = 0
        while !pending.isEmpty, steps < limit {
            let next = pending.removeFirst()
            let produced = deliver(next)
            all += produced
            pending += produced.sent
            steps += 1
        }
        return all
    }
}

enum Fixtures {
    static let psk = SecureBytes(Array("lab-secret-123".utf8))

    static func connection(
        west: Bool, ike: String = "aes256-sha256-modp2048", esp: String = "aes256-sha256", psk: SecureBytes = Fixtures.psk,
        forceUDP: Bool = false, pfs: DHGroup? = nil
    ) -> IKEv2Endpoint.ConnectionConfiguration {
        let local = west ? Lockstep.westAddress : Lockstep.eastAddress
        let remote = west ? Lockstep.eastAddress : Lockstep.westAddress
        return IKEv2Endpoint.ConnectionConfiguration(
            name: west ? "EAST/10" : "WEST/10", localAddress: local, localIdentity: .fqdn(west ? "west" : "east"),
            peers: [.init(address: remote, identity: .fqdn(west ? "east" : "west"), preSharedKey: psk)],
            ikeProposals: [try! IKEProposal.parse(ike)], espProposals: [try! ESPProposal.parse(esp)], pfsGroup: pfs,
            localTrafficSelectors: [try! IPPrefix.parse(west ? "10.1.0.0/24" : "10.2.0.0/24")],
            remoteTrafficSelectors: [try! IPPrefix.parse(west ? "10.2.0.0/24" : "10.1.0.0/16")],
            ikeLifetime: .seconds(3600), childLifetime: .seconds(1200), forceUDPEncapsulation: forceUDP
        )
    }
}
