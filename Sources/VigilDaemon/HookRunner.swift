#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import VigilConfig

/// The I/O part of updown hooks: spawns each run with posix_spawn(2) in a process group of its own, a clean
/// environment (`HookPlan.environment`), stdin from /dev/null and stdout/stderr into a pipe; a thread of its own
/// waits for it, keeps the first `captureLimit` bytes of its output and SIGKILLs the group when the timeout passes.
/// Nothing here runs on, or waits on, the event loop: `run` returns at once and `completion` is called from the
/// run's thread. At most `HookAdmission.maximumRunning` runs at once; more are dropped.
final class HookRunner: Sendable {
    /// Our limit: the output of one run kept for the log (the rest is read and discarded so the hook never blocks).
    static let captureLimit = 4096
    /// How often the waiting thread looks at the process between reads of its output (and at its deadline).
    static let pollInterval: Duration = .milliseconds(20)
    /// Spawns tried while the executable is busy (ETXTBSY), `busyDelay` apart.
    static let busyAttempts = 5
    static let busyDelay: Duration = .milliseconds(50)

    private let admission = Mutex(HookAdmission())
    /// Held while a pipe is made and a run spawned (see `execute`).
    private static let spawning = Mutex(())

    var running: Int { admission.withLock { $0.running } }

    /// Starts `hook` unless too many runs are in progress (then `.dropped` comes back at once and `completion` is
    /// not called). `completion` gets how the run ended and what it printed.
    func run(_ hook: Hook, environment: [String: String],
             completion: @escaping @Sendable (_ outcome: HookOutcome, _ output: String) -> Void) -> HookOutcome? {
        guard admission.withLock({ $0.admit() }) else { return .dropped }
        let strings = HookPlan.environmentStrings(environment)
        Thread.detachNewThread { [self] in
            let (outcome, output) = Self.execute(path: hook.path, environment: strings, timeout: hook.timeout)
            admission.withLock { $0.finished() }
            completion(outcome, output)
        }
        return nil
    }

    /// Spawns, captures, waits; on the calling thread (never the event loop's).
    static func execute(path: String, environment: [String], timeout: Duration) -> (HookOutcome, String) {
        var attempt = 1
        var (reader, spawned) = pipeAndSpawn(path: path, environment: environment)
        // ETXTBSY: the file is open for writing somewhere (being replaced, or a descriptor a forked process of
        // ours inherited while it was written): a moment later it runs.
        while case .failure(let error) = spawned, error.code == ETXTBSY, attempt < busyAttempts {
            usleep(UInt32(busyDelay / .microseconds(1)))
            attempt += 1
            (reader, spawned) = pipeAndSpawn(path: path, environment: environment)
        }
        let pid: pid_t
        switch spawned {
        case .failure(let error):
            return (.spawnFailed(error.code), "")
        case .success(let child):
            pid = child
        }
        let deadline = ContinuousClock.now + timeout
        var captured: [UInt8] = []
        var outputOpen = true
        var killed = false
        var status: Int32 = 0
        var chunk = [UInt8](repeating: 0, count: 4096)
        func drain() {
            while outputOpen {
                let count = read(reader, &chunk, chunk.count)
                if count > 0 {
                    captured += chunk[0..<min(count, max(0, captureLimit - captured.count))]
                } else if count == 0 {
                    outputOpen = false
                } else if errno != EINTR {
                    return  // EAGAIN: nothing more for now
                }
            }
        }
        while true {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid || (reaped < 0 && errno != EINTR) {
                // What it wrote before it exited is in the pipe; a background child still holding the pipe is
                // not waited for.
                drain()
                break
            }
            let now = ContinuousClock.now
            if now >= deadline, !killed {
                kill(-pid, SIGKILL)
                killed = true
            }
            let wait = min(pollInterval, max(.milliseconds(1), deadline - now))
            var poller = pollfd(fd: outputOpen ? reader : -1, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, Int32(wait / .milliseconds(1)))
            if outputOpen, poller.revents != 0 { drain() }
        }
        close(reader)
        let text = HookPlan.oneLine(String(decoding: captured, as: UTF8.self), limit: captureLimit)
        if killed { return (.timedOut, text) }
        // <sys/wait.h> macros: WIFEXITED / WEXITSTATUS / WTERMSIG, written out (Swift does not import them).
        let signal = status & 0x7F
        return (signal == 0 ? .exited((status >> 8) & 0xFF) : .signalled(signal), text)
    }

    /// The pipe's read end (-1 when the spawn failed) and the child. pipe(2) then FD_CLOEXEC is not atomic (Swift
    /// does not see pipe2): pipes are made and spawned under one lock so no other run's child inherits this pipe.
    static func pipeAndSpawn(path: String, environment: [String]) -> (Int32, Result<pid_t, SpawnError>) {
        spawning.withLock { _ in
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else { return (-1, .failure(SpawnError(code: errno))) }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
            let spawned = spawn(path: path, environment: environment, output: fds[1])
            close(fds[1])
            guard case .success = spawned else {
                close(fds[0])
                return (-1, spawned)
            }
            return (fds[0], spawned)
        }
    }

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34 and later), which Swift's Glibc module does not
    /// declare: looked up once.
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    struct SpawnError: Error {
        let code: Int32
    }

    /// posix_spawn(2) of `path` with no arguments but its name: its own process group (so the timeout kills what it
    /// started too), every signal at its default and none blocked (vigild ignores SIGHUP/SIGTERM/SIGINT and an
    /// ignored signal stays ignored across exec), stdin /dev/null, stdout and stderr to `output`, every other
    /// descriptor closed.
    static func spawn(path: String, environment: [String], output: Int32) -> Result<pid_t, SpawnError> {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output, 1)
        posix_spawn_file_actions_adddup2(&actions, output, 2)
        // Nothing else of vigild's reaches the hook, also a descriptor some library opened without close-on-exec:
        // an inherited socket would be the hook's to use, and an inherited writer of an executable makes execve(2)
        // of it fail with ETXTBSY for as long as the hook (or what it left running) lives.
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)

        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        return result == 0 ? .success(pid) : .failure(SpawnError(code: result))
    }
}
