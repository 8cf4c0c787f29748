import Foundation
import Synchronization
import Testing
import VigilKernel
import VigilLab
import VigilNetlink

/// vigild itself, killed and restarted, in a namespace: its guards and blackhole routes as the kernel shows them.
/// The entry does not start (`start: false`), so nothing but fail closed is at work.
@Suite("vigild fails closed across SIGKILL", .serialized)
struct FailClosedDaemonTests {
    struct Run {
        let lab: KernelLab
        let namespace: NetworkNamespace
        let directory: URL
        let binary: String

        init(dataplane: String) throws {
            binary = try #require(productPath("vigild"), "build vigild first (swift build --build-tests)")
            lab = try KernelLab(.netlink)
            namespace = try #require(lab.namespace)
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-failclosed-\(namespace.name)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let config = """
            global:
              identity: 192.0.2.1
              listen: [192.0.2.1]
              dataplane: \(dataplane)
              secrets: vigil.secrets.yaml
              control-socket: \(directory.appendingPathComponent("vigil.sock").path)
              dpd: { mode: periodic, interval: 1s, retry: 200ms, retries: 3, action: restart }
            crypto-maps:
              LAB:
                entries:
                  - sequence: 10
                    ike-version: v2
                    start: false
                    peers: [198.51.100.2]
                    traffic:
                      - local: 10.1.1.0/24
                        remote: 10.2.1.0/24
                    ike-proposals: [aes256-sha256-x25519]
                    esp-proposals: [aes256-sha256]
            """
            try config.write(to: directory.appendingPathComponent("vigil.yaml"), atomically: true, encoding: .utf8)
            let secrets = directory.appendingPathComponent("vigil.secrets.yaml")
            try "pre-shared-keys:\n  198.51.100.2: \"fail closed\"\n".write(to: secrets, atomically: true, encoding: .utf8)
            chmod(secrets.path, 0o600)
        }

        func vigild(_ name: String) -> VigildProcess {
            VigildProcess(namespace: namespace, binary: binary, configPath: directory.appendingPathComponent("vigil.yaml").path,
                          logPath: directory.appendingPathComponent("\(name).log").path)
        }

        func start(_ name: String, extra: [String] = []) throws -> VigildProcess {
            let process = vigild(name)
            try process.start(extraArguments: extra)
            guard process.waitForLog(timeout: 15, { $0.contains("event kernel-reconciled") }) else {
                throw LabError("vigild did not reconcile:\n\(process.log)")
            }
            return process
        }

        func destroy() {
            lab.destroy()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// Polls `predicate` until it holds or `timeout` seconds pass.
    func eventually(_ timeout: Double, _ predicate: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try predicate() { return true }
            usleep(20_000)
        }
        return try predicate()
    }

    /// Userspace data plane: while vigild runs, its TUN route wins over the blackhole; once it is killed the TUN
    /// device and its routes vanish and the blackhole keeps protected traffic from leaving wan0 by the default route.
    @Test func userspaceDataPlaneKilledLeavesABlackholeAndNothingLeavesInClear() throws {
        let run = try Run(dataplane: "userspace")
        defer { run.destroy() }
        let kernelTests = FailClosedKernelTests()
        try kernelTests.gatewayWithDefaultRoute(run.namespace)
        let vigild = try run.start("first")
        defer { vigild.stop() }
        let table = String(VigilOwnership.defaultRouteTable)
        let routes = try run.lab.ip("route", "show", "table", table)
        #expect(routes.hasBlackhole("10.2.1.0/24"), "\(routes)\n\(vigild.log)")
        #expect(try run.lab.ip("rule", "show").contains("lookup \(table)"))
        let tun = try #require(try run.lab.ip("-o", "link", "show", "type", "tun").split(separator: ":").dropFirst().first)
            .trimmingCharacters(in: .whitespaces)

        // A Child SA's route through the TUN device (as vigild installs it) takes precedence while vigild runs.
        try run.lab.routes.addRoute(RouteID(table: VigilOwnership.defaultRouteTable, destination: Lab.prefix("10.2.1.0/24")),
                                    RouteRequest(device: tun))
        #expect(try run.lab.ip("route", "get", "10.2.1.5", "from", "10.1.1.1").contains("dev \(tun)"))
        try run.namespace.sendProbe()
        #expect(try kernelTests.clearPackets(run.namespace) == 0)

        vigild.signal(SIGKILL)
        #expect(eventually(10) { ((try? run.lab.ip("link", "show", tun)) ?? "").isEmpty }, "the TUN device outlived vigild")
        let after = try run.lab.ip("route", "show", "table", table)
        #expect(after.contains("blackhole 10.2.1.0/24") && !after.contains(tun), "\(after)")
        try run.namespace.sendProbe()
        #expect(try kernelTests.clearPackets(run.namespace) == 0, "a protected packet left wan0 in clear after vigild died")

        // Control: without the blackhole the same packet follows the default route out of wan0 in clear.
        try run.lab.ip("route", "del", "blackhole", "10.2.1.0/24", "table", table, "metric", String(VigilOwnership.dropRouteMetric))
        try run.namespace.sendProbe()
        let leaked = try kernelTests.clearPackets(run.namespace)
        #expect(leaked > 0, "the witness cannot see clear-text traffic")
        print("[fail-closed] userspace data plane, vigild SIGKILLed: 0 protected packets left wan0 with the blackhole route, \(leaked) without it (control)")
    }

    /// Kernel data plane: the guards stay through SIGKILL, and while the next vigild reconciles, `ip xfrm policy`
    /// shows the guarded selector's policy at every sample; SIGTERM removes them.
    @Test func kernelDataPlaneGuardsStayThroughARestart() throws {
        let run = try Run(dataplane: "kernel")
        defer { run.destroy() }
        let first = try run.start("first", extra: ["--sa-kernel", "recorded"])
        let selector = "src 10.1.1.0/24 dst 10.2.1.0/24"
        let policies = try run.lab.ip("xfrm", "policy")
        #expect(policies.components(separatedBy: "action block").count - 1 == 3, "\(policies)\n\(first.log)")
        first.signal(SIGKILL)
        #expect(eventually(5) { !first.isRunning })
        #expect(try run.lab.ip("xfrm", "policy").components(separatedBy: "action block").count - 1 == 3)

        // Sample the kernel continuously while the second vigild starts and reconciles.
        let samples = Mutex<(count: Int, missing: Int)>((0, 0))
        let stop = Atomic<Bool>(false)
        let name = run.namespace.name
        let sampler = Thread {
            while !stop.load(ordering: .relaxed) {
                let out = (try? Command.run(["ip", "-n", name, "xfrm", "policy", "list", "dir", "out"]).stdout) ?? ""
                samples.withLock {
                    $0.count += 1
                    if !out.contains(selector) { $0.missing += 1 }
                }
            }
        }
        sampler.start()
        let second = try run.start("second", extra: ["--sa-kernel", "recorded"])
        stop.store(true, ordering: .relaxed)
        while !sampler.isFinished { usleep(5_000) }
        let (count, missing) = samples.withLock { ($0.count, $0.missing) }
        #expect(count > 0 && missing == 0, "\(missing) of \(count) samples without the guarded policy")
        print("[fail-closed] kernel data plane restart after SIGKILL: \(count) samples of `ip xfrm policy` while the next vigild started, \(missing) without the guarded selector's policy")
        #expect(second.log.contains("policies adopted in place"), "\(second.log)")
        #expect(try run.lab.ip("xfrm", "policy").components(separatedBy: "action block").count - 1 == 3)

        second.stop()
        #expect(!(try run.lab.ip("xfrm", "policy")).contains(selector), "a clean stop left the guards")
        // Kernel data plane, entry never started: no route was installed, so the table may not even exist.
        #expect(((try? run.lab.ip("route", "show", "table", String(VigilOwnership.defaultRouteTable))) ?? "").isEmpty)
    }
}
