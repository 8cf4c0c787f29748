import VigilAddressing

/// ESP that reached vigild's port-4500 socket while no userspace data plane runs: the kernel should have
/// decapsulated it (the socket carries UDP_ENCAP_ESPINUDP), so the inbound half of that Child SA is broken. Pure:
/// the daemon hands it each datagram's SPI with the time and the Child SA it names, and performs what it returns.
/// Bounded by the Child SAs alive: what it remembers of a Child SA that is gone is dropped at the next report.
struct UndeliveredESP {
    /// At most one log line per interval about undelivered ESP (the event is once per Child SA).
    static let logInterval: Duration = .seconds(10)
    /// RFC 4303 §2.1: the SPI is the first 4 octets of an ESP packet (after the UDP header in RFC 3948 §2.1).
    static let spiLength = 4

    /// Inbound SPI → the error shown in `status` for that Child SA.
    private(set) var errors: [UInt32: String] = [:]
    private var lastLog: Duration?
    private var sinceLastLog: UInt64 = 0

    struct Actions: Equatable {
        /// The first undelivered datagram of this Child SA: record an event, show the error in `status`.
        var reportChildSA: String?
        /// Log one line covering this many datagrams (rate-limited).
        var logDatagrams: UInt64?
    }

    /// The SPI of an ESP-in-UDP datagram, nil when it is too short to hold one.
    static func spi(of bytes: [UInt8]) -> UInt32? {
        guard bytes.count >= spiLength else { return nil }
        return bytes[0..<spiLength].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    }

    /// One datagram for the Child SA whose inbound SPI it names (`childSA`: nil when it names none of ours);
    /// `liveSPIs` are the inbound SPIs of every Child SA alive.
    mutating func observe(spi: UInt32?, childSA: String?, liveSPIs: Set<UInt32>, now: Duration) -> Actions {
        var actions = Actions()
        sinceLastLog += 1
        if lastLog.map({ now - $0 >= Self.logInterval }) ?? true {
            actions.logDatagrams = sinceLastLog
            sinceLastLog = 0
            lastLog = now
        }
        if let spi, let childSA, errors[spi] == nil {
            errors = errors.filter { liveSPIs.contains($0.key) }
            let error = "inbound ESP of \(childSA) (SPI \(hex(spi))) reaches vigild instead of the kernel: "
                + "the kernel does not decapsulate it and inbound traffic is lost"
            errors[spi] = error
            actions.reportChildSA = error
        }
        return actions
    }
}

extension Daemon {
    /// ESP on port 4500 with no userspace data plane to take it: counted, logged (rate-limited), and once per Child
    /// SA an event and an error in `status`, because traffic from that peer is lost while the tunnel looks up.
    func undeliverableESP(_ bytes: [UInt8], from: Endpoint) {
        metrics.increment("vigil_esp_without_dataplane_total", help: "ESP datagrams on 4500 with no userspace data plane")
        let spi = UndeliveredESP.spi(of: bytes)
        let owner = spi.flatMap { spi in
            entryOrder.lazy.compactMap { self.entries[$0] }.compactMap { entry in entry.children[spi].map { (entry: entry, peer: $0.peer) } }.first
        }
        let live = Set(entries.values.flatMap(\.children.keys))
        let actions = undeliveredESP.observe(
            spi: spi, childSA: owner.map { "\($0.entry.name) with \($0.peer)" }, liveSPIs: live, now: loop.now)
        if let count = actions.logDatagrams {
            let line = "\(count) ESP datagram\(count == 1 ? "" : "s") from \(from) reached vigild on port 4500, last SPI "
                + "\(spi.map { hex($0) } ?? "none"): the kernel data plane did not decapsulate \(count == 1 ? "it" : "them") (dropped)"
            logger.error("\(line)")
        }
        if let error = actions.reportChildSA, let owner {
            metrics.increment("vigil_child_sas_inbound_undelivered_total", help: "Child SAs whose inbound ESP reached vigild instead of the kernel")
            record(.espNotDecapsulated, owner.entry, peer: owner.peer, detail: error)
        }
    }

    /// The error `status` shows for a Child SA's inbound traffic, if any.
    func inboundError(_ inboundSPI: UInt32) -> String? { undeliveredESP.errors[inboundSPI] }
}
