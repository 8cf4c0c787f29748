import Dispatch
import Logging
import ServiceLifecycle
import Synchronization
import Testing
@testable import VigilDaemon

/// The bound on vigild's graceful shutdown (`VigildService.Limits`): the group vigild runs gives a shutdown 10 s,
/// then cancels, and its `run` returns even though the event loop never got to the shutdown. What this guards
/// against is a stuck loop: the shutdown itself sends its DELETEs without awaiting them, so a silent peer cannot
/// hold it (the namespace test `VigildShutdownTests` shows that against strongSwan).
@Suite struct VigildShutdownBoundTests {
    @Test func aStuckEventLoopCannotHoldTheShutdownPastItsBound() async throws {
        let (daemon, _, _) = try FailClosedWiringTests.daemonWithStubEngine()
        let loop = try #require(daemon.loop as? EventLoop)
        let service = VigildService(loop: loop, daemon: daemon, notifier: nil, logger: Logger(label: "test"))
        // No signals: the test triggers the shutdown itself (and the test runner's signal handling stays its own).
        let group = service.group(onSignals: false)
        // The injected fault: a step that does not return until the test lets it, so the loop turns no more and the
        // shutdown posted behind it cannot run.
        // Nothing here blocks a thread of the test's executor (a semaphore wait in async code can starve the
        // cooperative pool on 2 cores, and then the group never starts): the loop's own thread is held, the test
        // polls for it with a deadline.
        let release = DispatchSemaphore(value: 0)
        final class Flag: Sendable { let raised = Atomic<Bool>(false) }
        let entered = Flag()
        loop.post {
            entered.raised.store(true, ordering: .releasing)
            _ = release.wait(timeout: .now() + 120)
        }
        defer { release.signal() }
        let running = Task { try await group.run() }
        let deadline = ContinuousClock.now + .seconds(60)
        while !entered.raised.load(ordering: .acquiring), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        let ran = entered.raised.load(ordering: .acquiring)
        try #require(ran, "the event loop never ran")

        let start = ContinuousClock.now
        await group.triggerGracefulShutdown()
        try await running.value
        let took = ContinuousClock.now - start
        let bound = VigildService.Limits.gracefulShutdown + VigildService.Limits.cancellation
        // The group waited out the graceful period (the loop could not finish sooner), and no longer than the bound
        // with a generous margin for a loaded machine.
        #expect(took >= VigildService.Limits.gracefulShutdown - .milliseconds(100), "\(took)")
        #expect(took < bound + .seconds(8), "\(took)")
        // The loop is still held: the shutdown never ran, so nothing recorded it.
        #expect(!daemon.events.recent.contains { $0.kind == "shutdown" })

        // The deferred release lets the loop run the posted shutdown and stop; its thread ends.
    }
}
