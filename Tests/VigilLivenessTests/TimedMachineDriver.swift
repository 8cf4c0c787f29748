import VigilLiveness

/// A liveness machine with one timer: events in with the time, at most one action out, `.timerFired` due at
/// `nextWakeup`. The tests drive `DeadPeerDetector` and `TunnelMonitor` the same way.
protocol TimedMachine {
    associatedtype Event
    associatedtype Action
    var nextWakeup: Duration? { get }
    mutating func handle(_ event: Event, now: Duration) -> Action?
    static var timerFired: Event { get }
}

extension DeadPeerDetector: TimedMachine {
    static var timerFired: Event { .timerFired }
}

extension TunnelMonitor: TimedMachine {
    static var timerFired: Event { .timerFired }
}

/// Drives a machine by following its own wakeups until `end`, with `inputs` delivered at their times (before a timer
/// due at the same time), recording what it did and when.
func run<Machine: TimedMachine>(_ machine: inout Machine, until end: Duration,
                                inputs: [(Duration, Machine.Event)] = []) -> [(Duration, Machine.Action)] {
    var pending = inputs.sorted { $0.0 < $1.0 }[...]
    var log: [(Duration, Machine.Action)] = []
    while true {
        let wake = machine.nextWakeup
        let at: Duration
        let event: Machine.Event
        if let input = pending.first, wake.map({ input.0 <= $0 }) ?? true {
            (at, event) = pending.removeFirst()
        } else if let wake {
            (at, event) = (wake, Machine.timerFired)
        } else {
            break
        }
        if at > end { break }
        if let action = machine.handle(event, now: at) { log.append((at, action)) }
    }
    return log
}
