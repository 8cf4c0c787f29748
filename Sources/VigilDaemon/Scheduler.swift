import Synchronization

/// Time and timers as the daemon's core sees them. In vigild it is the `EventLoop` (poll(2) and the monotonic
/// clock); in the in-process runs a `VirtualScheduler`, whose clock moves only from one deadline to the next, so a
/// whole failover replays the same way every time.
public protocol Scheduler: AnyObject {
    var now: Duration { get }
    /// Runs `handler` at `deadline` on the daemon's thread; returns a handle to cancel it.
    @discardableResult
    func schedule(at deadline: Duration, _ handler: @escaping () -> Void) -> EventLoop.TimerHandle
    func cancel(_ handle: EventLoop.TimerHandle)
    /// Thread-safe: runs `handler` on the daemon's thread soon (hooks' completions, signals).
    func post(_ handler: @escaping @Sendable () -> Void)
    /// Work handed over by other threads and refused because the queue was full (for metrics).
    var refusedPosts: UInt64 { get }
    /// New-exchange work shed because its lane was full (for metrics).
    var shedPosts: UInt64 { get }
    /// Timers waiting, cancelled ones included where the implementation keeps them (for metrics).
    var pendingTimerEntries: Int { get }
}

extension EventLoop: Scheduler {}

/// A discrete-event clock for in-process runs: timers fire in deadline order (ties in the order they were set), and
/// time jumps to each deadline, so a 30 s failover scenario runs in milliseconds and replays exactly. One virtual
/// scheduler can drive several daemons (a gateway and its peers), which then share one time line.
public final class VirtualScheduler: Scheduler, @unchecked Sendable {
    private struct Timer: Comparable {
        var deadline: Duration
        var sequence: UInt64
        static func < (a: Timer, b: Timer) -> Bool { (a.deadline, a.sequence) < (b.deadline, b.sequence) }
    }

    public private(set) var now: Duration
    private var heap = BinaryHeap<Timer>()
    private var handlers: [UInt64: () -> Void] = [:]
    private var nextSequence: UInt64 = 0
    private let posted = Mutex<[@Sendable () -> Void]>([])
    /// Timers and posts run so far.
    public private(set) var steps = 0

    public init(start: Duration = .seconds(1)) { now = start }

    @discardableResult
    public func schedule(at deadline: Duration, _ handler: @escaping () -> Void) -> EventLoop.TimerHandle {
        nextSequence += 1
        heap.push(Timer(deadline: max(deadline, now), sequence: nextSequence))
        handlers[nextSequence] = handler
        return EventLoop.TimerHandle(raw: nextSequence)
    }

    public func cancel(_ handle: EventLoop.TimerHandle) { handlers[handle.raw] = nil }

    public func post(_ handler: @escaping @Sendable () -> Void) {
        posted.withLock { $0.append(handler) }
    }

    public var refusedPosts: UInt64 { 0 }
    public var shedPosts: UInt64 { 0 }
    public var pendingTimerEntries: Int { handlers.count }

    /// The deadline of the next live timer.
    public var nextDeadline: Duration? {
        while let top = heap.peek(), handlers[top.sequence] == nil { _ = heap.pop() }
        return heap.peek()?.deadline
    }

    /// Runs posted work, then the next timer (moving the clock to its deadline) if it is due by `limit`.
    /// Returns false when nothing was left to run by then.
    @discardableResult
    public func step(until limit: Duration) -> Bool {
        let work = posted.withLock { queue -> [@Sendable () -> Void] in
            defer { queue.removeAll() }
            return queue
        }
        if !work.isEmpty {
            steps += work.count
            for handler in work { handler() }
            return true
        }
        guard let deadline = nextDeadline, deadline <= limit, let top = heap.pop(),
              let handler = handlers.removeValue(forKey: top.sequence) else { return false }
        now = deadline
        steps += 1
        handler()
        return true
    }

    /// Runs everything due up to `deadline`, then sets the clock to it.
    public func run(until deadline: Duration) {
        while step(until: deadline) {}
        now = max(now, deadline)
    }

    /// Runs until `condition` holds (checked after every step) or the clock passes `deadline`; true if it held.
    @discardableResult
    public func run(until condition: () -> Bool, deadline: Duration) -> Bool {
        if condition() { return true }
        while step(until: deadline) {
            if condition() { return true }
        }
        now = max(now, deadline)
        return condition()
    }
}

extension VirtualScheduler {
    /// One host's share of a virtual time line: when the host dies (`halt`), its timers stop firing and it posts
    /// nothing more, as a SIGKILLed process's would.
    public final class Lane: Scheduler, @unchecked Sendable {
        private let parent: VirtualScheduler
        public private(set) var halted = false

        init(parent: VirtualScheduler) { self.parent = parent }

        public var now: Duration { parent.now }

        @discardableResult
        public func schedule(at deadline: Duration, _ handler: @escaping () -> Void) -> EventLoop.TimerHandle {
            parent.schedule(at: deadline) { [weak self] in
                guard let self, !self.halted else { return }
                handler()
            }
        }

        public func cancel(_ handle: EventLoop.TimerHandle) { parent.cancel(handle) }

        public func post(_ handler: @escaping @Sendable () -> Void) {
            parent.post { [weak self] in
                guard let self, !self.halted else { return }
                handler()
            }
        }

        public var refusedPosts: UInt64 { 0 }
        public var shedPosts: UInt64 { 0 }
        public var pendingTimerEntries: Int { parent.pendingTimerEntries }

        /// The host is gone: nothing it scheduled runs any more.
        public func halt() { halted = true }
    }

    /// A lane for one host.
    public func lane() -> Lane { Lane(parent: self) }
}
