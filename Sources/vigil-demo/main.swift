// `make demo`: vigild (userspace data plane) in front of three strongSwan gateways listed in that order, a host
// pinging through the tunnel every 10 ms; the first gateway is killed, then the second, and the timeline of each
// failover is printed. Namespaces and charons are removed at the end, and on Ctrl-C.
import Foundation
import VigilDaemon
import VigilLab


guard getuid() == 0 else {
    FileHandle.standardError.write(Data("vigil-demo: run as root (it builds network namespaces)\n".utf8))
    exit(1)
}
let ikeVersion = CommandLine.arguments.contains("--ikev1") ? 1 : 2
NetworkNamespace.removeLeftovers()

var settings = VigildLab.Settings()
settings.ikeVersion = ikeVersion
let lab = try VigildLab(settings)

// Clean up on Ctrl-C / SIGTERM too.
nonisolated(unsafe) var labForSignals: VigildLab? = lab
for number in [SIGINT, SIGTERM] {
    signal(number) { _ in
        labForSignals?.destroy()
        _exit(130)
    }
}

func say(_ text: String) { FileHandle.standardOutput.write(Data((text + "\n").utf8)) }

do {
    say("Vigil demo: IKEv\(ikeVersion), DPD periodic, interval 1s, retry 200ms, 3 retries (death 1.6 s after the last proof of life)")
    say("  host \(FailoverLab.hostAddress) -> vigild \(FailoverLab.vigilWANAddress) -> strongSwan gateways "
        + (0..<3).map { FailoverLab.gatewayAddress($0) }.joined(separator: ", ") + " (each serving \(FailoverLab.remoteServiceAddress))")
    try lab.startGateways()
    try lab.startVigild()
    guard try lab.waitForEvent(timeout: 10, { $0.kind == "dataplane-programmed" }) != nil else {
        throw LabError("no tunnel with the first gateway:\n\(lab.diagnostics)")
    }
    if let status = try lab.request(ControlRequest(command: .status)).status, let entry = status.entries.first {
        say("\nTunnel up: \(entry.state); data plane \(status.dataplane)")
        for child in entry.childSAs {
            say("  Child SA with \(child.peer): in \(child.inboundSPI) out \(child.outboundSPI) \(child.algorithms) "
                + "\(child.localTS.joined(separator: ",")) === \(child.remoteTS.joined(separator: ","))")
        }
    }
    let ping = PingMonitor(namespace: lab.lab.host, destination: FailoverLab.remoteServiceAddress)
    try ping.start()
    Thread.sleep(forTimeInterval: 1)

    var summaries: [String] = []
    for (dead, next) in [(0, 1), (1, 2)] {
        let deadPeer = FailoverLab.gatewayAddress(dead)
        let nextPeer = FailoverLab.gatewayAddress(next)
        say("\n== Killing \(deadPeer) (SIGKILL: no DELETE, it just goes silent)")
        let killedAt = Date()
        lab.lab.kill(dead)
        guard try lab.waitForEvent(timeout: 15, { $0.kind == "dataplane-programmed" && $0.peer == nextPeer }) != nil else {
            throw LabError("no failover to \(nextPeer):\n\(lab.diagnostics)")
        }
        // Let traffic flow again before reading the ping report.
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline, !ping.repliesSoFar().contains(where: { $0.received > killedAt.addingTimeInterval(0.5) }) { usleep(20_000) }
        Thread.sleep(forTimeInterval: 0.5)
        let snapshot = PingReport(replies: ping.repliesSoFar(), transmitted: nil, started: killedAt.addingTimeInterval(-1),
                                  stopped: Date(), threshold: .milliseconds(50))
        let timeline = try lab.failoverTimeline(failedAt: killedAt, failure: "SIGKILL", dead: deadPeer, next: nextPeer, ping: snapshot)
        say(timeline.rendered(expected: FailoverTimeline.Event.allCases))
        let dead = timeline.interval(from: .killed, to: .declaredDead).map { PingOutput.milliseconds($0) } ?? "?"
        let reprogram = timeline.interval(from: .declaredDead, to: .dataPlaneReprogrammed).map { PingOutput.milliseconds($0) } ?? "?"
        let blackout = snapshot.gap(containing: killedAt).map { PingOutput.milliseconds($0.duration) } ?? "?"
        let line = "\(deadPeer) -> \(nextPeer): declared dead after \(dead), next peer's Child SA installed \(reprogram) later, ping blackout \(blackout)"
        say("   " + line)
        summaries.append(line)
    }
    let report = ping.stop()
    say("\nPing over the whole demo: \(report.summary)")
    say("Summary:\n" + summaries.map { "  " + $0 }.joined(separator: "\n"))
    labForSignals = nil
    lab.destroy()
} catch {
    labForSignals = nil
    lab.destroy()
    FileHandle.standardError.write(Data("vigil-demo: \(error)\n".utf8))
    exit(1)
}
