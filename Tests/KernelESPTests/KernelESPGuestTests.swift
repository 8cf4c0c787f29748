import Foundation
import Testing
import VigilLab

/// The kernel data plane on a kernel with ESP: one QEMU guest on Debian's stock kernel (deploy/guest/run-in-guest.sh)
/// runs every case of `KernelESPLab` (vigil-kernel-esp-lab, built with the tests), and each case is expected here on
/// its own so a failure names it. Nothing is skipped: a guest that cannot be prepared or booted fails every case
/// with the reason.
enum KernelESPGuest {
    struct Run: Sendable {
        var results: [String: KernelESPCaseResult] = [:]
        /// Why the guest gave no result, with its output.
        var problem: String?
        var output = ""
        var seconds = 0.0
    }

    /// Booted once, on first use, for every case.
    static let run: Run = boot()

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func boot() -> Run {
        let started = Date()
        var run = bootGuest()
        run.seconds = Date().timeIntervalSince(started)
        return run
    }

    static func bootGuest() -> Run {
        var run = Run()
        guard let lab = VigildProcess.productPath("vigil-kernel-esp-lab") else {
            run.problem = "vigil-kernel-esp-lab is not built next to the tests (swift build --build-tests)"
            return run
        }
        let results = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-kernel-esp-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: results) }
        let script = repository.appendingPathComponent("deploy/guest/run-in-guest.sh").path
        do {
            let outcome = try Command.run([script, lab], environment: ["VIGIL_GUEST_RESULTS": results.path])
            run.output = outcome.stdout + outcome.stderr
            let file = results.appendingPathComponent("kernel-esp-results.json")
            guard let data = FileManager.default.contents(atPath: file.path) else {
                run.problem = "the guest left no results (run-in-guest.sh exited \(outcome.status))"
                return run
            }
            for result in try JSONDecoder().decode([KernelESPCaseResult].self, from: data) { run.results[result.name] = result }
            if run.results.count < KernelESPLab.caseNames.count {
                run.problem = "the guest stopped after \(run.results.count) of \(KernelESPLab.caseNames.count) cases (exit \(outcome.status))"
            }
        } catch {
            run.problem = "could not run the guest: \(error)"
        }
        return run
    }
}

@Suite struct KernelESPGuestTests {
    @Test(arguments: KernelESPLab.caseNames)
    func kernelESP(_ name: String) {
        let run = KernelESPGuest.run
        guard let result = run.results[name] else {
            Issue.record("\(name): no result. \(run.problem ?? "")\n\(run.output.suffix(6000))")
            return
        }
        print("kernel-esp \(name): \(result.passed ? "passed" : "failed") in \(String(format: "%.1f", result.seconds)) s "
            + "(guest run \(String(format: "%.1f", run.seconds)) s)")
        for note in result.notes { print("    \(note)") }
        for failure in result.failures { Issue.record("\(name): \(failure)") }
    }
}
