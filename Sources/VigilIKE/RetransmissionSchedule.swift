/// How requests are retransmitted, in both IKE versions: after `timeout`, then `timeout * base^n`, `tries`
/// retransmissions in all (strongSwan's retransmit_timeout / retransmit_base / retransmit_tries; RFC 7296 §2.1,
/// RFC 2408 leaves IKEv1's to the implementation).
public struct RetransmissionSchedule: Hashable, Sendable {
    public var timeout: Duration
    public var base: Double
    public var tries: Int

    public init(timeout: Duration, base: Double, tries: Int) {
        self.timeout = timeout
        self.base = base
        self.tries = tries
    }

    /// strongSwan's defaults: 4 s, 1.8, 5 tries.
    public static let strongSwanDefault = RetransmissionSchedule(timeout: .seconds(4), base: 1.8, tries: 5)

    /// The growth of the wait stops here, so that however often a request goes out the delay stays a finite
    /// Duration (`Duration * Double` traps beyond its range).
    public static let maximumBackoffFactor = 1_000.0

    /// The wait after the `attempt`-th transmission (0 = the original).
    public func delay(afterAttempt attempt: Int) -> Duration {
        var factor = 1.0
        for _ in 0..<max(attempt, 0) where factor < Self.maximumBackoffFactor { factor *= base }
        return timeout * min(factor, Self.maximumBackoffFactor)
    }
}
