#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The daemon's single I/O thread: poll(2) over file descriptors, a timer heap on the monotonic clock, and a queue
/// other threads (the data plane, signal handling) post work into. Every state machine is driven from this thread
/// only, so none of them needs a lock.
public final class EventLoop: @unchecked Sendable {
    public typealias Handler = () -> Void

    private struct Watch {
        var fd: Int32
        var handler: Handler
    }

    private struct Timer: Comparable {
        var deadline: Duration
        var sequence: UInt64
        var id: TimerHandle
        static func < (a: Timer, b: Timer) -> Bool { (a.deadline, a.sequence) < (b.deadline, b.sequence) }
        static func == (a: Timer, b: Timer) -> Bool { a.sequence == b.sequence }
    }

    public struct TimerHandle: Hashable, Sendable { let raw: UInt64 }

    /// Our tunables (not protocol numbers): how much work one poll round may do before timers run again.
    public enum Limits {
        /// Datagrams one socket handler reads per poll round; poll(2) is level-triggered, so the rest waits one
        /// round while due timers (DPD probes, retransmissions) run on schedule.
        public static let readsPerRound = 64
        /// Work posted by other threads that may wait at once when it is droppable (network input handed over by
        /// the data plane thread); beyond it such work is refused and counted, never queued without bound.
        public static let droppablePosts = 4_096
        /// Cancelled timers left in the heap before it is rebuilt without them (and only if they are the majority).
        public static let cancelledTimersBeforeCompaction = 1_024
    }

    public let clock: MonotonicClock
    private var watches: [Int32: Watch] = [:]
    private var heap = BinaryHeap<Timer>()
    private var timerHandlers: [TimerHandle: Handler] = [:]
    private var cancelledInHeap = 0
    private var nextSequence: UInt64 = 0
    /// A self-pipe: posts and stop() write a byte to wake poll(2).
    private let wakeFD: Int32
    private let wakeWriteFD: Int32
    private let posted = Mutex<PostQueue>(PostQueue())
    private let stopRequested = Atomic<Bool>(false)

    private struct PostQueue {
        var work: [Handler] = []
        var droppable = 0
        var refused: UInt64 = 0
    }

    public init(clock: MonotonicClock = MonotonicClock()) {
        self.clock = clock
        var pair: [Int32] = [0, 0]
        precondition(pipe(&pair) == 0, "pipe failed: errno \(errno)")
        for fd in pair {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeFD = pair[0]
        wakeWriteFD = pair[1]
    }

    deinit {
        close(wakeFD)
        close(wakeWriteFD)
    }

    public var now: Duration { clock.now }

    /// Calls `handler` on the loop thread whenever `fd` is readable.
    public func watch(_ fd: Int32, _ handler: @escaping Handler) {
        watches[fd] = Watch(fd: fd, handler: handler)
    }

    public func unwatch(_ fd: Int32) { watches[fd] = nil }

    /// Runs `handler` at `deadline` (monotonic time); returns a handle to cancel it.
    @discardableResult
    public func schedule(at deadline: Duration, _ handler: @escaping Handler) -> TimerHandle {
        nextSequence += 1
        let handle = TimerHandle(raw: nextSequence)
        heap.push(Timer(deadline: deadline, sequence: nextSequence, id: handle))
        timerHandlers[handle] = handler
        return handle
    }

    public func cancel(_ handle: TimerHandle) {
        guard timerHandlers.removeValue(forKey: handle) != nil else { return }
        cancelledInHeap += 1
        if cancelledInHeap >= Limits.cancelledTimersBeforeCompaction, cancelledInHeap * 2 > heap.count {
            heap = BinaryHeap(heap.elements.filter { timerHandlers[$0.id] != nil })
            cancelledInHeap = 0
        }
    }

    /// Timers waiting in the heap, cancelled ones included (for tests and metrics).
    public var pendingTimerEntries: Int { heap.count }

    /// Thread-safe: runs `handler` on the loop thread soon. Work that must never be lost (signals, shutdown).
    public func post(_ handler: @escaping @Sendable () -> Void) {
        posted.withLock { $0.work.append(handler) }
        wake()
    }

    /// Thread-safe: like `post`, for work driven by network input. Refused (returns false, counted in
    /// `refusedPosts`) while `Limits.droppablePosts` such items already wait, so a flood cannot grow the queue.
    @discardableResult
    public func postDroppable(_ handler: @escaping @Sendable () -> Void) -> Bool {
        let accepted = posted.withLock { queue -> Bool in
            guard queue.droppable < Limits.droppablePosts else {
                queue.refused += 1
                return false
            }
            queue.droppable += 1
            queue.work.append(handler)
            return true
        }
        if accepted { wake() }
        return accepted
    }

    /// Droppable work refused because the queue was full.
    public var refusedPosts: UInt64 { posted.withLock { $0.refused } }

    private func wake() {
        var one: UInt8 = 1
        _ = write(wakeWriteFD, &one, 1)
    }

    /// Thread-safe: makes `run()` return after the current iteration.
    public func stop() {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        wake()
    }

    /// Runs until `stop()`.
    public func run() {
        while !stopRequested.load(ordering: .sequentiallyConsistent) {
            runOnce(maximumWait: .seconds(1))
        }
    }

    /// One poll round: waits at most until the next timer (or `maximumWait`), then runs due timers, posted work, ready
    /// handlers (each reads at most `Limits.readsPerRound`), and due timers again, so input never delays a timer by
    /// more than one bounded round.
    public func runOnce(maximumWait: Duration) {
        var fds = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
        for fd in watches.keys.sorted() { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        var wait = maximumWait
        if let next = heap.peek() { wait = min(wait, max(.zero, next.deadline - clock.now)) }
        let (seconds, attoseconds) = wait.components
        let milliseconds = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + (attoseconds % 1_000_000_000_000_000 > 0 ? 1 : 0))
        let ready = poll(&fds, nfds_t(fds.count), milliseconds)
        if ready < 0 && errno != EINTR { preconditionFailure("poll failed: errno \(errno)") }

        if fds[0].revents != 0 {
            var drain = [UInt8](repeating: 0, count: 256)
            while read(wakeFD, &drain, drain.count) > 0 {}
        }
        runDueTimers()
        let work = posted.withLock { queue -> [Handler] in
            defer {
                queue.work.removeAll()
                queue.droppable = 0
            }
            return queue.work
        }
        for handler in work { handler() }
        for entry in fds.dropFirst() where entry.revents != 0 {
            watches[entry.fd]?.handler()
        }
        runDueTimers()
    }

    private func runDueTimers() {
        let now = clock.now
        while let next = heap.peek(), next.deadline <= now {
            _ = heap.pop()
            if let handler = timerHandlers.removeValue(forKey: next.id) {
                handler()
            } else {
                cancelledInHeap = max(0, cancelledInHeap - 1)
            }
        }
    }
}

/// Monotonic time as a `Duration` since the clock was made: the time base every pure machine takes as `now`.
public struct MonotonicClock: Sendable {
    private let origin: ContinuousClock.Instant
    public init() { origin = ContinuousClock.now }
    public var now: Duration { ContinuousClock.now - origin }
}

/// A minimal binary min-heap.
struct BinaryHeap<Element: Comparable> {
    private var storage: [Element] = []

    init() {}

    /// A heap of `elements` in any order (Floyd's bottom-up construction).
    init(_ elements: [Element]) {
        storage = elements
        var index = storage.count / 2
        while index > 0 {
            index -= 1
            siftDown(from: index)
        }
    }

    var elements: [Element] { storage }
    var isEmpty: Bool { storage.isEmpty }
    var count: Int { storage.count }
    func peek() -> Element? { storage.first }

    mutating func push(_ element: Element) {
        storage.append(element)
        var child = storage.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard storage[child] < storage[parent] else { break }
            storage.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Element? {
        guard !storage.isEmpty else { return nil }
        storage.swapAt(0, storage.count - 1)
        let top = storage.removeLast()
        siftDown(from: 0)
        return top
    }

    private mutating func siftDown(from start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < storage.count, storage[left] < storage[smallest] { smallest = left }
            if right < storage.count, storage[right] < storage[smallest] { smallest = right }
            guard smallest != parent else { break }
            storage.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
