/// The engine's own limits (tunables, not RFC numbers), each sized for what one ISAKMP SA or one gateway sees.
enum IKEv1Limits {
    /// Message IDs remembered per ISAKMP SA and direction: every message we sent (to recognise our own messages
    /// reflected back) and every exchange the peer started other than DPD (to recognise a replay). DPD is judged by
    /// its sequence numbers instead (RFC 3706 §7), so what fills the peer's window is Quick Modes, DELETEs and
    /// notifies: an 8 h ISAKMP SA with hourly Phase 2 rekeys of 16 selector pairs uses a few hundred. Our own window
    /// also holds our R-U-THEREs and ACKs: 4096 is more than 11 h of 10 s probing.
    static let messageIDsRemembered = 4096
    /// R-U-THERE sequence numbers we keep waiting for an ACK (the dead peer detector's run is five probes; older
    /// ones are forgotten, so a late ACK to them is ignored).
    static let outstandingProbesKept = 32
    /// R-U-THERE sequence numbers we sent, acknowledged or not: one of them inside an R-U-THERE is our own probe.
    static let sentProbesRemembered = 256
    /// Quick Modes in flight on one ISAKMP SA (ours and the peer's): more are refused, so an authenticated but
    /// misbehaving peer cannot make us hold unbounded Phase 2 state.
    static let quickModesInFlight = 32
    /// IPsec SAs one ISAKMP SA may carry (a crypto map entry makes one per pair of protected subnets, twice during a
    /// rekey): a peer's QM1 beyond that is refused.
    static let ipsecSAsPerISAKMPSA = 512
}

/// The most recent `capacity` distinct values; inserting into a full set forgets the oldest.
struct RecentSet<Value: Hashable & Sendable>: Sendable {
    let capacity: Int
    private(set) var members: Set<Value> = []
    /// Insertion order, a ring of `capacity` slots; a removed value leaves a nil.
    private var ring: [Value?]
    private var next = 0

    init(capacity: Int) {
        precondition(capacity > 0, "a RecentSet holds at least one value")
        self.capacity = capacity
        ring = []
    }

    var count: Int { members.count }

    func contains(_ value: Value) -> Bool { members.contains(value) }

    /// Adds `value`; false when it was already there (it then keeps its place).
    @discardableResult
    mutating func insert(_ value: Value) -> Bool {
        guard !members.contains(value) else { return false }
        if ring.count < capacity {
            ring.append(value)
        } else {
            if let oldest = ring[next] { members.remove(oldest) }
            ring[next] = value
            next = (next + 1) % capacity
        }
        members.insert(value)
        return true
    }

    /// Removes `value`; false when it was not there.
    @discardableResult
    mutating func remove(_ value: Value) -> Bool {
        guard members.remove(value) != nil else { return false }
        if let index = ring.firstIndex(of: value) { ring[index] = nil }
        return true
    }
}

/// What an ISAKMP SA remembers so that only the peer's authenticated, fresh word counts as proof of life (issue 13):
/// HASH(1) of an informational is the same in both directions, so a valid HASH alone proves nothing; our own
/// messages reflected back and old messages replayed must be told apart from the peer's new ones.
struct FreshnessLedger: Sendable {
    /// Message IDs we chose (informationals, Quick Modes we started).
    var ownMessageIDs = RecentSet<UInt32>(capacity: IKEv1Limits.messageIDsRemembered)
    /// Message IDs of exchanges the peer started and we took, DPD aside.
    var peerMessageIDs = RecentSet<UInt32>(capacity: IKEv1Limits.messageIDsRemembered)
    /// R-U-THEREs sent and not yet acknowledged.
    var outstandingDPD = RecentSet<UInt32>(capacity: IKEv1Limits.outstandingProbesKept)
    /// R-U-THEREs sent, acknowledged or not.
    var sentDPD = RecentSet<UInt32>(capacity: IKEv1Limits.sentProbesRemembered)
    /// The first and the highest R-U-THERE sequence number we sent: the dead peer detector counts up by one from a
    /// random start (RFC 3706 §6.2), so every number in between is ours too, however long ago.
    var ownSequences: (first: UInt32, highest: UInt32)?
    /// RFC 3706 §7: the last R-U-THERE sequence number the peer sent; each new one must be above it.
    var lastPeerSequence: UInt32?

    mutating func rUThereSent(_ sequence: UInt32) {
        outstandingDPD.insert(sequence)
        sentDPD.insert(sequence)
        guard let range = ownSequences else {
            ownSequences = (sequence, sequence)
            return
        }
        if sequence &- range.first > range.highest &- range.first, sequence &- range.first < Self.halfSequenceSpace {
            ownSequences = (range.first, sequence)
        }
    }

    /// Whether an R-U-THERE with this sequence number could be one of ours.
    func isOwnSequence(_ sequence: UInt32) -> Bool {
        if sentDPD.contains(sequence) { return true }
        guard let range = ownSequences else { return false }
        return sequence &- range.first <= range.highest &- range.first
    }

    /// Whether a message ID is free for a new exchange of ours (RFC 2408 §3.1: unique per SA, never 0).
    func isUnused(_ messageID: UInt32) -> Bool {
        messageID != 0 && !ownMessageIDs.contains(messageID) && !peerMessageIDs.contains(messageID)
    }

    /// RFC 3706 §7 with serial-number arithmetic (RFC 1982), so the peer's counter may wrap: `sequence` is above the
    /// last one when it is ahead by less than half the number space.
    func isAboveLastPeerSequence(_ sequence: UInt32) -> Bool {
        guard let last = lastPeerSequence else { return true }
        let ahead = sequence &- last
        return ahead != 0 && ahead < Self.halfSequenceSpace
    }

    static let halfSequenceSpace: UInt32 = 0x8000_0000
}
