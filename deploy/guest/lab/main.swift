// vigil-kernel-esp-lab [CASE...]: the kernel-ESP lab cases (all by default; `failover-figures` also prints the
// failover figures beside strongSwan's), meant to run inside the QEMU
// guest (deploy/guest/run-in-guest.sh) on a kernel with ESP. Prints each case as it ends and writes every result
// as JSON to $VIGIL_KERNEL_ESP_RESULTS (default /guest-out/kernel-esp-results.json). Exits 1 when a case failed.
import Foundation
import VigilLab

/// Unbuffered even into a file, so run-in-guest.sh streams progress as it comes.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

let names = CommandLine.arguments.count > 1 ? Array(CommandLine.arguments.dropFirst()) : KernelESPLab.caseNames
let path = ProcessInfo.processInfo.environment["VIGIL_KERNEL_ESP_RESULTS"] ?? "/guest-out/kernel-esp-results.json"
var results: [KernelESPCaseResult] = []
for name in names {
    say("kernel-esp-lab: \(name) ...")
    let result = KernelESPLab.run(name)
    results.append(result)
    say("kernel-esp-lab: \(name) \(result.passed ? "passed" : "FAILED") in \(String(format: "%.1f", result.seconds)) s")
    for note in result.notes { say("    \(note.replacingOccurrences(of: "\n", with: "\n    "))") }
    for failure in result.failures { say("  ✘ \(failure.replacingOccurrences(of: "\n", with: "\n    "))") }
    // Written after each case, so a guest that dies mid-run still leaves what it finished.
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try encoder.encode(results).write(to: URL(fileURLWithPath: path))
}
exit(results.allSatisfy(\.passed) ? 0 : 1)
