import Foundation
import VigilFailover

/// The daemon's event record: every failover-relevant happening with monotonic and wall-clock time, kept in a
/// bounded ring for `vigil events`, streamed to followers, and written to the log as one line each.
public final class EventLog: @unchecked Sendable {
    public typealias Sink = (DaemonEvent) -> Void

    private var ring: [DaemonEvent] = []
    private let capacity: Int
    private var sinks: [Sink] = []
    private let formatter: DateFormatter

    public init(capacity: Int = 4096) {
        self.capacity = capacity
        formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
    }

    public func addSink(_ sink: @escaping Sink) { sinks.append(sink) }

    public var recent: [DaemonEvent] { ring }

    public func record(kind: String, now: Duration, map: String? = nil, sequence: Int? = nil, peer: String? = nil, detail: String) {
        let event = DaemonEvent(
            time: now.seconds, wallClock: formatter.string(from: Date()), kind: kind,
            map: map, sequence: sequence, peer: peer, detail: detail
        )
        if ring.count == capacity { ring.removeFirst(capacity / 4) }
        ring.append(event)
        for sink in sinks { sink(event) }
    }
}

extension Duration {
    /// Seconds as a Double, for logs and the control API.
    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

extension EventKind {
    /// The coordinator's notice as an event.
    init(_ notice: FailoverCoordinator<String>.Notice.Kind) {
        switch notice {
        case .attemptStarted: self = .attemptStarted
        case .phase1Established: self = .phase1Established
        case .established: self = .established
        case .attemptFailed: self = .attemptFailed
        case .attemptTimedOut: self = .attemptTimedOut
        case .peerDead: self = .peerDead
        case .cycleFailed: self = .cycleFailed
        case .backoffEnded: self = .backoffEnded
        case .cleared: self = .cleared
        case .held: self = .held
        case .idleTimeout: self = .idleTimeout
        case .preempting: self = .preempting
        case .preemptionAbandoned: self = .preemptionAbandoned
        case .listUpdated: self = .listUpdated
        case .operatorFailover: self = .operatorFailover
        case .rejected: self = .rejected
        case .kernelRefused: self = .kernelRefused
        }
    }
}
