import Foundation

/// One strongSwan charon (Debian 5.9.8) running in a lab namespace with its own configuration, VICI socket, /run and
/// log, so several can run side by side. Uses kernel-libipsec (userspace ESP over a TUN device) because the test
/// kernel lacks ESP; kernel-libipsec forces UDP encapsulation (ESP in UDP 4500).
public final class StrongSwan: @unchecked Sendable {
    public let namespace: NetworkNamespace
    public let directory: URL
    public var viciSocket: String { directory.appendingPathComponent("charon.vici").path }
    public var logPath: String { directory.appendingPathComponent("charon.log").path }
    private var process: Process?
    /// Whether this charon leaves ESP to the kernel (its SAs stay in XFRM when it is SIGKILLed).
    public private(set) var kernelESP = false

    /// Plugins for PSK IKEv1/IKEv2 with the proposals Vigil's tests use. `kdf` is required by 5.9.8's prf+;
    /// kernel-libipsec must come before kernel-netlink or SAs go to XFRM and fail on a kernel without ESP.
    public static let plugins = [
        "random", "nonce", "aes", "sha1", "sha2", "hmac", "kdf", "gmp", "openssl", "curve25519", "gcm", "pem",
        "pkcs1", "pubkey", "x509", "kernel-libipsec", "kernel-netlink", "socket-default", "vici", "updown",
    ]

    public struct Settings: Sendable {
        /// IKE retransmission (charon.retransmit_*): strongSwan's one global schedule.
        public var retransmitTimeout: Double = 4.0
        public var retransmitBase: Double = 1.8
        public var retransmitTries: Int = 5
        /// Whether to carry ESP in userspace (kernel-libipsec) or leave SAs to XFRM (fails on this kernel).
        public var userspaceESP = true
        /// kernel-libipsec's `allow_peer_ts`: also route a remote traffic selector that holds the IKE peer into the
        /// TUN device. Off for a full tunnel, where that route would carry charon's own IKE into the tunnel.
        public var allowPeerTrafficSelectors = true
        public init() {}
    }

    public init(namespace: NetworkNamespace, name: String) throws {
        self.namespace = namespace
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("vigil-lab-\(namespace.name)-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("run"), withIntermediateDirectories: true)
    }

    deinit { stop() }

    /// Writes strongswan.conf and swanctl.conf and starts charon; returns once the VICI socket answers.
    public func start(swanctlConf: String, settings: Settings = Settings()) throws {
        let plugins = settings.userspaceESP ? Self.plugins : Self.plugins.filter { $0 != "kernel-libipsec" }
        kernelESP = !settings.userspaceESP
        let conf = """
        charon {
            load_modular = no
            load = \(plugins.joined(separator: " "))
            install_routes = yes
            retransmit_timeout = \(settings.retransmitTimeout)
            retransmit_base = \(settings.retransmitBase)
            retransmit_tries = \(settings.retransmitTries)
            plugins {
                vici { socket = unix://\(viciSocket) }
                kernel-libipsec { allow_peer_ts = \(settings.allowPeerTrafficSelectors ? "yes" : "no") }
            }
            filelog {
                lab {
                    path = \(logPath)
                    time_format = %T
                    default = 1
                    ike = 2
                    net = 1
                    cfg = 2
                    knl = 1
                    flush_line = yes
                }
            }
        }
        swanctl { socket = unix://\(viciSocket) }
        """
        try conf.write(to: directory.appendingPathComponent("strongswan.conf"), atomically: true, encoding: .utf8)
        try swanctlConf.write(to: directory.appendingPathComponent("swanctl.conf"), atomically: true, encoding: .utf8)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let run = directory.appendingPathComponent("run").path
        process.arguments = [
            "ip", "netns", "exec", namespace.name, "sh", "-c",
            "mount --bind \(run) /run && exec env STRONGSWAN_CONF=\(directory.path)/strongswan.conf /usr/lib/ipsec/charon",
        ]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process

        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if FileManager.default.fileExists(atPath: viciSocket),
               let result = try? swanctl(["--stats"]), result.succeeded {
                try load()
                return
            }
            guard process.isRunning else { throw LabError("charon exited at start-up; log:\n\(log)") }
            usleep(20_000)
        }
        throw LabError("charon's VICI socket did not answer within 10 s; log:\n\(log)")
    }

    /// Reloads swanctl.conf (connections and secrets).
    public func load() throws {
        try check(["--load-all", "--noprompt", "--file", directory.appendingPathComponent("swanctl.conf").path])
    }

    /// Replaces swanctl.conf and reloads it.
    public func reconfigure(swanctlConf: String) throws {
        try swanctlConf.write(to: directory.appendingPathComponent("swanctl.conf"), atomically: true, encoding: .utf8)
        try load()
    }

    @discardableResult
    public func swanctl(_ arguments: [String]) throws -> Command.Result {
        try Command.run(
            ["swanctl"] + arguments + ["--uri", "unix://\(viciSocket)"],
            environment: ["STRONGSWAN_CONF": directory.appendingPathComponent("strongswan.conf").path]
        )
    }

    @discardableResult
    public func check(_ arguments: [String]) throws -> Command.Result {
        let result = try swanctl(arguments)
        guard result.succeeded else { throw LabError("swanctl \(arguments.joined(separator: " ")) failed: \(result.stderr)\(result.stdout)") }
        return result
    }

    /// `swanctl --list-sas --raw`: machine-readable view of charon's IKE and Child SAs.
    public func listSAs() throws -> String { try check(["--list-sas", "--raw"]).stdout }

    /// `condition` on the SA listing, read at most every `interval` (a driver loop asks far more often); false
    /// between reads and when swanctl fails.
    public func listingCondition(every interval: Double = 0.1, _ condition: @escaping (String) -> Bool) -> () -> Bool {
        var read = Date.distantPast
        return { [self] in
            guard Date().timeIntervalSince(read) >= interval else { return false }
            read = Date()
            return condition((try? self.listSAs()) ?? "")
        }
    }

    public func initiate(child: String, timeoutSeconds: Int = 10) throws -> Command.Result {
        try swanctl(["--initiate", "--child", child, "--timeout", "\(timeoutSeconds)"])
    }

    public var isRunning: Bool { process?.isRunning ?? false }

    /// The charon's log so far.
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Kills charon with `signal` (SIGKILL to simulate a dead gateway: no DELETE is sent). A charon that has not
    /// exited 3 s after a gentler signal (its shutdown can stall on a peer, or the signal can be blocked in a mask
    /// inherited from the test runner) is SIGKILLed, so a test's teardown never hangs.
    public func kill(signal: Int32 = SIGKILL) {
        guard let process, process.isRunning else { return }
        // The process we started is `ip netns exec ... sh -c 'exec charon'`, which became charon itself.
        Foundation.kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(3)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Stops charon (SIGTERM) and removes its files.
    public func stop() {
        kill(signal: SIGTERM)
        process = nil
    }

    /// Removes the instance's directory (log included); call after a test has read what it needs.
    public func removeFiles() {
        try? FileManager.default.removeItem(at: directory)
    }
}

public struct LabError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
