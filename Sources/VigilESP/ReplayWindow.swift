/// The receiver's anti-replay window (RFC 4303 §3.4.3), a sliding bitmap over the highest sequence number seen.
///
/// Two steps, as the RFC orders them: `check` before the ICV is verified (a cheap early reject), `accept` only after
/// the packet was authenticated, so a forged packet can never move the window. 32-bit sequence numbers (no ESN).
public struct ReplayWindow: Sendable, Hashable {
    public enum Verdict: Hashable, Sendable {
        /// Above the window or inside it and not seen: process the packet.
        case fresh
        /// Inside the window and already received.
        case duplicate
        /// Below the window (or the never-sent number 0): too old to tell, so dropped.
        case tooOld
    }

    /// Packets the window covers below the highest number seen (rounded up to a multiple of 64).
    public let size: Int
    /// Highest authenticated sequence number so far (0 before the first packet).
    public private(set) var highest: UInt64 = 0
    /// A ring of bits indexed by sequence number; one word more than `size` so advancing never clears a live bit.
    private var ring: [UInt64]

    public init(size: Int) {
        precondition(size > 0, "a replay window covers at least one packet")
        let words = (size + 63) / 64
        self.size = words * 64
        ring = Array(repeating: 0, count: words + 1)
    }

    public func check(_ sequenceNumber: UInt32) -> Verdict {
        let number = UInt64(sequenceNumber)
        guard number != 0 else { return .tooOld }
        if number > highest { return .fresh }
        if highest - number >= UInt64(size) { return .tooOld }
        let (word, bit) = position(number)
        return ring[word] & bit == 0 ? .fresh : .duplicate
    }

    /// Records an authenticated packet. Returns the verdict again so a race between two checks cannot accept twice.
    @discardableResult
    public mutating func accept(_ sequenceNumber: UInt32) -> Verdict {
        let verdict = check(sequenceNumber)
        guard verdict == .fresh else { return verdict }
        let number = UInt64(sequenceNumber)
        if number > highest {
            let oldWord = Int(highest / 64)
            let newWord = Int(number / 64)
            let steps = min(newWord - oldWord, ring.count)
            for step in 0..<steps { ring[(oldWord + 1 + step) % ring.count] = 0 }
            highest = number
        }
        let (word, bit) = position(number)
        ring[word] |= bit
        return .fresh
    }

    private func position(_ number: UInt64) -> (word: Int, bit: UInt64) {
        (Int((number / 64) % UInt64(ring.count)), 1 << (number % 64))
    }
}
