import Foundation
import Logging
import ServiceLifecycle

/// vigild as a service of a swift-service-lifecycle `ServiceGroup`: the event loop runs on a thread of its own (it
/// is a blocking poll(2) loop, every machine lives on it); on the group's graceful shutdown (SIGTERM, SIGINT) the
/// loop sends a DELETE for every IKE SA, removes what Vigil installed in the kernel and stops, within
/// `VigildService.Limits.gracefulShutdown`; past it the group cancels and vigild exits regardless (what is left in
/// the kernel is reconciled, fail closed, at the next start).
struct VigildService: Service {
    enum Limits {
        /// Time for the DELETEs to leave and the kernel state to go.
        static let gracefulShutdown: Duration = .seconds(10)
        /// Time after that before the group gives up on a loop that does not stop.
        static let cancellation: Duration = .seconds(2)
    }

    let loop: EventLoop
    let daemon: Daemon
    let notifier: SystemdNotifier?
    let logger: Logger

    func run() async throws {
        let (stopped, stop) = AsyncStream<Void>.makeStream()
        let thread = Thread { [loop] in
            loop.run()
            stop.finish()
        }
        thread.name = "vigild.loop"
        thread.start()
        let loop = self.loop, daemon = self.daemon, notifier = self.notifier, logger = self.logger
        await withGracefulShutdownHandler {
            for await _ in stopped {}   // the loop ran until stopped (or the task was cancelled)
        } onGracefulShutdown: {
            loop.post {
                logger.notice("vigild: shutting down")
                if let notifier { DaemonRunner.report(notifier.stopping(), logger) }
                daemon.shutdown()
                loop.stop()
            }
        }
    }
}

extension VigildService {
    /// The group vigild runs: this service alone, a graceful shutdown on SIGTERM and SIGINT (unless a test triggers
    /// it itself), bounded (`Limits`). Its `run` returns once the service has stopped, or once the bounds cut a
    /// shutdown short.
    func group(onSignals: Bool = true) -> ServiceGroup {
        ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: self)], gracefulShutdownSignals: onSignals ? [.sigterm, .sigint] : [], logger: logger)
            .withShutdownBounds())
    }
}

extension ServiceGroupConfiguration {
    /// Graceful shutdown bounded in time, then cancellation, then the group ends (`VigildService.Limits`).
    func withShutdownBounds() -> ServiceGroupConfiguration {
        var configuration = self
        configuration.maximumGracefulShutdownDuration = VigildService.Limits.gracefulShutdown
        configuration.maximumCancellationDuration = VigildService.Limits.cancellation
        return configuration
    }
}
