#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import VigilAddressing
import VigilCrypto
import VigilKernel

/// Why the engine refused a packet. Stable names: they label the engine's drop counters.
public enum ESPDrop: String, Hashable, Sendable, CaseIterable {
    // Outbound (TUN → peer)
    /// Not an IPv4 or IPv6 packet.
    case malformedInner = "malformed-inner"
    /// No outbound policy matches: never sent, in clear or otherwise.
    case noPolicy = "no-policy"
    /// The matching policy blocks.
    case blocked
    /// The policy wants an SA that is not installed (peer dead, failover or rekey in progress): held back, never
    /// sent in clear (the kernel's behaviour for a policy without state).
    case noSA = "no-sa"
    // Inbound (peer → TUN)
    /// Too short to be ESP, or an ESP packet the transform finds malformed.
    case malformed
    /// No SA with this SPI.
    case unknownSPI = "unknown-spi"
    case replayed
    case authenticationFailed = "authentication-failed"
    case badPadding = "bad-padding"
    case selectorMismatch = "selector-mismatch"
    /// Next Header 59: a dummy packet (RFC 4303 §2.6), silently discarded.
    case dummy
    // Both
    /// Hard lifetime reached or sequence number would cycle.
    case expired
}

/// Engine-wide counters (per-SA ones are in `SACounters`).
public struct ESPEngineCounters: Hashable, Sendable {
    public var drops: [ESPDrop: UInt64] = [:]
    /// NAT-keepalives received (RFC 3948 §2.3), dropped.
    public var natKeepalives: UInt64 = 0
    /// IKE datagrams (non-ESP marker) handed to the daemon.
    public var ikeDatagrams: UInt64 = 0
    /// Outbound packets held while their SA was missing, and how many of them were released to an SA later.
    public var held: UInt64 = 0
    public var released: UInt64 = 0

    public init() {}
    public subscript(drop: ESPDrop) -> UInt64 { drops[drop, default: 0] }
}

/// What to do with a packet read from the TUN device.
public enum OutboundVerdict: Hashable, Sendable {
    /// Send `packet` (a range of the caller's buffer, now an ESP packet) to `peer` on the NAT-T socket.
    case send(packet: Range<Int>, peer: Endpoint)
    /// Kept (copied) until an SA for its policy is installed; `takeReleased` then hands it back.
    case held
    case drop(ESPDrop)
}

/// What to do with a datagram received on the NAT-T socket (RFC 3948 §2).
public enum InboundVerdict: Hashable, Sendable {
    /// Write `packet` (the decrypted inner packet, a range of the caller's buffer) to the TUN device.
    case deliver(packet: Range<Int>)
    /// An IKE message (the range excludes the non-ESP marker): hand it to the IKE engine.
    case ike(message: Range<Int>)
    case natKeepalive
    case drop(ESPDrop)
}

/// The userspace SA and policy databases and the per-packet ESP processing (RFC 4303 tunnel mode in RFC 3948 UDP
/// encapsulation), with no I/O: buffers in, verdicts out. It implements `IPsecKernel`, so the daemon installs SAs
/// and policies here exactly as it would in XFRM; `ESPDataPlane` adds the TUN device and the socket.
public final class ESPEngine: IPsecKernel, Sendable {
    public struct Configuration: Sendable, Hashable {
        /// Floor for inbound anti-replay windows in packets: a request's larger window wins; a request with 0
        /// disables the check (as XFRM does). RFC 4303 §3.4.3 asks for at least 32, recommends 64.
        public var replayWindow: Int = 1024
        /// Outbound packets kept per policy template while its SA is missing (then `no-sa` drops); 0 always drops.
        public var holdQueueLimit: Int = 16
        public init(replayWindow: Int = 1024, holdQueueLimit: Int = 16) {
            self.replayWindow = replayWindow
            self.holdQueueLimit = holdQueueLimit
        }
    }

    /// Bytes a caller must leave free before an inner packet (ESP header + the longest IV).
    public static let headroom = ESPSpec.headerLength + ESPSpec.cbcIVLength
    /// Bytes a caller must leave free after an inner packet (longest padding + trailer + longest ICV).
    public static let tailroom = ESPSpec.cbcBlockSize + ESPSpec.trailerLength + 32

    public let configuration: Configuration
    private let clock: @Sendable () -> Duration
    private let wallSeconds: @Sendable () -> UInt64
    private let lifetimeEvents: @Sendable (SAID, LifetimeEvent) -> Void

    struct Tables {
        var sas: [SAID: SecurityAssociation] = [:]
        var policies: [PolicyID: PolicyRequest] = [:]
        var generation: UInt64 = 0
    }

    private let tables = Mutex(Tables())
    /// What the packet path reads: rebuilt under `tables`' lock after every change, swapped in whole.
    private let current = Mutex(Snapshot(Tables()))
    private let engineCounters = Mutex(ESPEngineCounters())
    private let holdQueue: Mutex<HoldQueue>
    /// Called (on the thread installing an SA) when held packets were released; the data plane wakes its sender.
    private let releaseSignal = Mutex<(@Sendable () -> Void)?>(nil)

    /// `clock` is monotonic time since an arbitrary origin (it stamps last-use times); `wallSeconds` the Unix time
    /// that `querySA` reports, as the kernel does. `lifetimeEvents` hears each SA's soft and hard lifetime once; it
    /// runs on a packet thread (or in `expireByTime`) and must not block.
    public init(
        configuration: Configuration = Configuration(),
        clock: @escaping @Sendable () -> Duration,
        wallSeconds: @escaping @Sendable () -> UInt64 = { UInt64(time(nil)) },
        lifetimeEvents: @escaping @Sendable (SAID, LifetimeEvent) -> Void = { _, _ in }
    ) {
        self.configuration = configuration
        self.clock = clock
        self.wallSeconds = wallSeconds
        self.lifetimeEvents = lifetimeEvents
        holdQueue = Mutex(HoldQueue(limit: configuration.holdQueueLimit))
    }

    /// The production monotonic clock: time since the first call.
    public static func systemClock() -> @Sendable () -> Duration {
        let origin = ContinuousClock.now
        return { ContinuousClock.now - origin }
    }

    // MARK: - Packet path

    /// Protects the inner packet at `payload` in `buffer` (which has `headroom` bytes free before it and `tailroom`
    /// after it) per the outbound policies (RFC 4301 §5.1).
    public func encapsulate(buffer: UnsafeMutableRawBufferPointer, payload: Range<Int>) -> OutboundVerdict {
        let verdict = encapsulateUncounted(buffer: buffer, payload: payload)
        switch verdict {
        case .send: break
        case .held: engineCounters.withLock { $0.held += 1 }
        case .drop(let reason): count(reason)
        }
        return verdict
    }

    private func encapsulateUncounted(buffer: UnsafeMutableRawBufferPointer, payload: Range<Int>) -> OutboundVerdict {
        guard let inner = InnerPacketSelectors(UnsafeRawBufferPointer(rebasing: buffer[payload])) else {
            return .drop(.malformedInner)
        }
        let snapshot = current.withLock { $0 }
        guard let policy = snapshot.outbound.first(where: { $0.selector.matches(inner) }) else { return .drop(.noPolicy) }
        switch policy.action {
        case .block:
            return .drop(.blocked)
        case .protect(let template):
            let key = TemplateKey(template)
            guard let sa = snapshot.outboundSA[key] else { return hold(UnsafeRawBufferPointer(rebasing: buffer[payload]), key, buffer, payload) }
            let now = clock()
            let (verdict, event) = sa.state.withLock { state -> (OutboundVerdict, LifetimeEvent?) in
                guard !state.counters.hardExpired else {
                    state.counters.expiredDrops += 1
                    return (.drop(.expired), nil)
                }
                let (carried, event) = state.counters.carry(bytes: payload.count, now: now, lifetime: sa.request.lifetime)
                guard carried else { return (.drop(.expired), event) }
                let sequenceNumber = state.nextSequenceNumber
                // After 2^32 - 1 the SA must be replaced before it sends again (RFC 4303 §3.3.3).
                let cycled = sequenceNumber == ESPSpec.lastSequenceNumber ? state.counters.reach(.hard) : nil
                state.nextSequenceNumber &+= 1
                do {
                    let packet = try state.transform.seal(
                        buffer: buffer, payload: payload, spi: sa.id.spi, sequenceNumber: sequenceNumber,
                        nextHeader: inner.nextHeader)
                    return (.send(packet: packet, peer: sa.peer), cycled ?? event)
                } catch {
                    preconditionFailure("sealing with a keyed context failed: \(error)")
                }
            }
            if let event { lifetimeEvents(sa.id, event) }
            return verdict
        }
    }

    /// Holds a packet whose SA is missing. Under the queue's lock the snapshot is read again: an SA installed since
    /// the first look either is seen here (and the packet goes out now) or finds the packet queued and releases it.
    private func hold(
        _ packet: UnsafeRawBufferPointer, _ key: TemplateKey, _ buffer: UnsafeMutableRawBufferPointer, _ payload: Range<Int>
    ) -> OutboundVerdict {
        let outcome = holdQueue.withLock { queue -> Bool? in
            if current.withLock({ $0 }).outboundSA[key] != nil { return nil }
            return queue.hold(packet, for: key)
        }
        switch outcome {
        case nil: return encapsulateUncounted(buffer: buffer, payload: payload)
        case true?: return .held
        case false?: return .drop(.noSA)
        }
    }

    /// Packets held earlier whose SA has since been installed, oldest first; encapsulate each again.
    public func takeReleased() -> [[UInt8]] {
        let packets = holdQueue.withLock { $0.takeReleased() }
        if !packets.isEmpty { engineCounters.withLock { $0.released += UInt64(packets.count) } }
        return packets
    }

    /// Installs the data plane's wake-up for released packets.
    func setReleaseSignal(_ signal: @escaping @Sendable () -> Void) {
        releaseSignal.withLock { $0 = signal }
    }

    /// Packets held right now (all templates).
    public var heldCount: Int { holdQueue.withLock { $0.count } }

    /// Classifies and, for ESP, authenticates, replay-checks and decrypts a datagram received from `source` on the
    /// NAT-T socket (RFC 3948 §2, RFC 4303 §3.4). The inner packet is decrypted in place.
    public func decapsulate(buffer: UnsafeMutableRawBufferPointer, datagram: Range<Int>, source: Endpoint) -> InboundVerdict {
        let verdict = decapsulateUncounted(buffer: buffer, datagram: datagram, source: source)
        switch verdict {
        case .deliver: break
        case .ike: engineCounters.withLock { $0.ikeDatagrams += 1 }
        case .natKeepalive: engineCounters.withLock { $0.natKeepalives += 1 }
        case .drop(let reason): count(reason)
        }
        return verdict
    }

    private func decapsulateUncounted(
        buffer: UnsafeMutableRawBufferPointer, datagram: Range<Int>, source: Endpoint
    ) -> InboundVerdict {
        if datagram.count == 1, buffer[datagram.lowerBound] == ESPSpec.natKeepalive { return .natKeepalive }
        guard datagram.count >= ESPSpec.headerLength else { return .drop(.malformed) }
        let view = UnsafeRawBufferPointer(buffer)
        let spi = view.loadBigEndianUInt32(at: datagram.lowerBound)
        // A zero SPI field is the non-ESP marker: IKE follows (RFC 3948 §2.2).
        if spi == 0 { return .ike(message: datagram.lowerBound + ESPSpec.nonESPMarkerLength..<datagram.upperBound) }
        let sequenceNumber = view.loadBigEndianUInt32(at: datagram.lowerBound + 4)
        let snapshot = current.withLock { $0 }
        guard let sa = snapshot.inboundSA(spi: spi, from: source.address) else { return .drop(.unknownSPI) }
        let now = clock()
        var event: LifetimeEvent?
        defer { if let event { lifetimeEvents(sa.id, event) } }
        return sa.state.withLock { state -> InboundVerdict in
            // Cheap early replay reject before spending the ICV (RFC 4303 §3.4.3).
            if let verdict = state.window?.check(sequenceNumber), let drop = state.counters.countReplay(verdict) {
                return .drop(drop)
            }
            let opened: (payload: Range<Int>, nextHeader: UInt8)
            do throws(ESPDecodeError) {
                opened = try state.transform.open(buffer: buffer, packet: datagram)
            } catch {
                switch error {
                case .malformed: state.counters.malformed += 1; return .drop(.malformed)
                case .authenticationFailed: state.counters.authenticationFailures += 1; return .drop(.authenticationFailed)
                case .badPadding: state.counters.badPadding += 1; return .drop(.badPadding)
                }
            }
            // Only an authenticated packet moves the window.
            if let verdict = state.window?.accept(sequenceNumber), let drop = state.counters.countReplay(verdict) {
                return .drop(drop)
            }
            if opened.nextHeader == ESPSpec.nextHeaderNoNext { return .drop(.dummy) }
            guard let inner = InnerPacketSelectors(UnsafeRawBufferPointer(rebasing: buffer[opened.payload])),
                inner.nextHeader == opened.nextHeader,
                snapshot.inboundAllows(inner, reqid: sa.request.reqid)
            else {
                state.counters.selectorMismatches += 1
                return .drop(.selectorMismatch)
            }
            let carry = state.counters.carry(bytes: opened.payload.count, now: now, lifetime: sa.request.lifetime)
            event = carry.event
            return carry.carried ? .deliver(packet: opened.payload) : .drop(.expired)
        }
    }

    private func count(_ drop: ESPDrop) {
        engineCounters.withLock { $0.drops[drop, default: 0] += 1 }
    }

    /// Applies the seconds lifetimes (soft and hard, counted from installation) to every SA; the daemon calls this
    /// from its timer, about once a second. Reports newly reached lifetimes through `lifetimeEvents`.
    public func expireByTime() {
        let now = clock()
        for sa in tables.withLock({ Array($0.sas.values) }) {
            let age = now - sa.installedAt
            let lifetime = sa.request.lifetime
            let events = sa.state.withLock { state -> [LifetimeEvent] in
                var events: [LifetimeEvent] = []
                if let soft = lifetime.softSeconds, age >= .seconds(soft), let event = state.counters.reach(.soft) {
                    events.append(event)
                }
                if let hard = lifetime.hardSeconds, age >= .seconds(hard), let event = state.counters.reach(.hard) {
                    events.append(event)
                }
                return events
            }
            for event in events { lifetimeEvents(sa.id, event) }
        }
    }

    // MARK: - Observation

    public var counters: ESPEngineCounters { engineCounters.withLock { $0 } }

    /// Counters of one SA; nil if not installed.
    public func counters(_ id: SAID) -> SACounters? {
        tables.withLock { $0.sas[id] }?.counters
    }

    /// Counters of the SA with this SPI (any destination); nil if none.
    public func counters(spi: UInt32) -> SACounters? {
        tables.withLock { tables in tables.sas.first { $0.key.spi == spi }?.value }?.counters
    }

    /// Test hook: the installed SA object.
    func securityAssociation(_ id: SAID) -> SecurityAssociation? {
        tables.withLock { $0.sas[id] }
    }

    // MARK: - IPsecKernel

    public func addSA(_ id: SAID, _ request: SARequest) throws(KernelError) {
        let transform = try makeTransform(id, request, operation: .addSA)
        try tables.withLock { tables throws(KernelError) in
            guard tables.sas[id] == nil else { throw .alreadyExists(context(.addSA, id)) }
            tables.generation += 1
            tables.sas[id] = SecurityAssociation(
                id: id, request: request, transform: transform, replayWindow: replayWindow(for: request),
                addedAtSeconds: wallSeconds(), installedAt: clock(), generation: tables.generation)
            publish(tables)
        }
        releaseHeld(for: request)
    }

    private func releaseHeld(for request: SARequest) {
        let key = TemplateKey(source: request.source, destination: request.destination, reqid: request.reqid)
        guard holdQueue.withLock({ $0.release(key) }) else { return }
        // Called under the lock so that `setReleaseSignal` (the data plane stopping) waits for it.
        releaseSignal.withLock { $0?() }
    }

    /// Replaces an SA's parameters (keys, endpoints, encapsulation) keeping its counters, sequence number and window.
    public func updateSA(_ id: SAID, _ request: SARequest) throws(KernelError) {
        let transform = try makeTransform(id, request, operation: .updateSA)
        try tables.withLock { tables throws(KernelError) in
            guard let old = tables.sas[id] else { throw .notFound(context(.updateSA, id)) }
            let replacement = SecurityAssociation(
                id: id, request: request, transform: transform, replayWindow: replayWindow(for: request),
                addedAtSeconds: old.addedAtSeconds, installedAt: old.installedAt, generation: old.generation)
            old.state.withLock { oldState in
                replacement.state.withLock { newState in
                    newState.nextSequenceNumber = oldState.nextSequenceNumber
                    newState.counters = oldState.counters
                    if let window = oldState.window, newState.window?.size == window.size { newState.window = window }
                }
            }
            tables.sas[id] = replacement
            publish(tables)
        }
        releaseHeld(for: request)
    }

    public func deleteSA(_ id: SAID) throws(KernelError) {
        try tables.withLock { tables throws(KernelError) in
            guard tables.sas.removeValue(forKey: id) != nil else { throw .notFound(context(.deleteSA, id)) }
            publish(tables)
        }
    }

    public func querySA(_ id: SAID) throws(KernelError) -> SAState {
        guard let sa = tables.withLock({ $0.sas[id] }) else { throw .notFound(context(.querySA, id)) }
        return sa.kernelState(now: clock(), wallSeconds: wallSeconds())
    }

    public func listSAs() throws(KernelError) -> [SAState] {
        let now = clock()
        let wall = wallSeconds()
        return tables.withLock { Array($0.sas.values) }.map { $0.kernelState(now: now, wallSeconds: wall) }
    }

    public func addPolicy(_ id: PolicyID, _ request: PolicyRequest) throws(KernelError) {
        try tables.withLock { tables throws(KernelError) in
            guard tables.policies[id] == nil else { throw .alreadyExists(context(.addPolicy, id)) }
            tables.policies[id] = request
            publish(tables)
        }
    }

    public func updatePolicy(_ id: PolicyID, _ request: PolicyRequest) throws(KernelError) {
        try tables.withLock { tables throws(KernelError) in
            guard tables.policies[id] != nil else { throw .notFound(context(.updatePolicy, id)) }
            tables.policies[id] = request
            publish(tables)
        }
    }

    public func deletePolicy(_ id: PolicyID) throws(KernelError) {
        try tables.withLock { tables throws(KernelError) in
            guard tables.policies.removeValue(forKey: id) != nil else { throw .notFound(context(.deletePolicy, id)) }
            publish(tables)
        }
    }

    public func listPolicies() throws(KernelError) -> [InstalledPolicy] {
        tables.withLock { $0.policies.map { InstalledPolicy(id: $0.key, request: $0.value) } }
    }

    /// Replaces every policy at once (one snapshot swap: no packet sees a half-applied set).
    public func setPolicies(_ policies: [PolicyID: PolicyRequest]) {
        tables.withLock { tables in
            tables.policies = policies
            publish(tables)
        }
    }

    // MARK: - Helpers

    private func publish(_ tables: Tables) {
        let snapshot = Snapshot(tables)
        current.withLock { $0 = snapshot }
        var templates = Set<TemplateKey>()
        for policy in snapshot.outbound {
            switch policy.action {
            case .protect(let template): templates.insert(TemplateKey(template))
            case .block: continue
            }
        }
        holdQueue.withLock { $0.keepOnly(templates) }
    }

    private func replayWindow(for request: SARequest) -> Int {
        request.replayWindow == 0 ? 0 : max(Int(request.replayWindow), configuration.replayWindow)
    }

    private func makeTransform(_ id: SAID, _ request: SARequest, operation: KernelOperation) throws(KernelError) -> ESPTransform {
        let invalid = KernelError.other(KernelError.Context(operation: operation, subject: id.description, errno: KernelError.Errno.EINVAL))
        guard request.mode == .tunnel, request.encryptionKey.count == request.encryption.keyMaterialLength else { throw invalid }
        if !request.encryption.isAEAD {
            guard let integrity = request.integrity, request.integrityKey.count == integrity.keyLength else { throw invalid }
        }
        do {
            return try ESPTransform(
                encryption: request.encryption, encryptionKey: request.encryptionKey,
                integrity: request.encryption.isAEAD ? nil : request.integrity, integrityKey: request.integrityKey)
        } catch {
            throw .algorithmNotSupported(KernelError.Context(operation: operation, subject: "\(id): \(error)", errno: 0))
        }
    }

    private func context(_ operation: KernelOperation, _ subject: some CustomStringConvertible) -> KernelError.Context {
        KernelError.Context(operation: operation, subject: subject.description, errno: 0)
    }
}

extension SACounters {
    /// Counts a replay refusal; nil when the packet is fresh.
    mutating func countReplay(_ verdict: ReplayWindow.Verdict) -> ESPDrop? {
        switch verdict {
        case .fresh: return nil
        case .duplicate: replayedDuplicates += 1
        case .tooOld: replayedTooOld += 1
        }
        return .replayed
    }
}

extension PolicySelector {
    func matches(_ packet: InnerPacketSelectors) -> Bool {
        source.contains(packet.source) && destination.contains(packet.destination)
            && (ipProtocol == 0 || ipProtocol == packet.ipProtocol)
    }
}

/// A policy template's SA key: the outer endpoints and reqid (how XFRM resolves a template to a state).
struct TemplateKey: Hashable {
    var source: IPAddress
    var destination: IPAddress
    var reqid: UInt32

    init(_ template: PolicyTemplate) {
        self.init(source: template.source, destination: template.destination, reqid: template.reqid)
    }

    init(source: IPAddress, destination: IPAddress, reqid: UInt32) {
        self.source = source
        self.destination = destination
        self.reqid = reqid
    }
}

/// An immutable view of the databases, shaped for the packet path.
final class Snapshot: Sendable {
    struct OutboundPolicy {
        let selector: PolicySelector
        let action: PolicyAction
    }

    /// Outbound policies, most preferred (lowest priority value) first.
    let outbound: [OutboundPolicy]
    /// Inbound and forward selectors by the reqid of their template.
    let inbound: [UInt32: [PolicySelector]]
    /// The newest SA for each template key.
    let outboundSA: [TemplateKey: SecurityAssociation]
    let bySPI: [UInt32: [SecurityAssociation]]

    init(_ tables: ESPEngine.Tables) {
        outbound = tables.policies
            .filter { $0.key.direction == .outbound }
            .sorted { ($0.value.priority, $0.key.selector.description) < ($1.value.priority, $1.key.selector.description) }
            .map { OutboundPolicy(selector: $0.key.selector, action: $0.value.action) }
        var inbound: [UInt32: [PolicySelector]] = [:]
        for (id, request) in tables.policies where id.direction != .outbound {
            switch request.action {
            case .protect(let template): inbound[template.reqid, default: []].append(id.selector)
            case .block: continue
            }
        }
        self.inbound = inbound
        var outboundSA: [TemplateKey: SecurityAssociation] = [:]
        var bySPI: [UInt32: [SecurityAssociation]] = [:]
        for sa in tables.sas.values.sorted(by: { $0.generation < $1.generation }) {
            outboundSA[TemplateKey(source: sa.request.source, destination: sa.request.destination, reqid: sa.request.reqid)] = sa
            bySPI[sa.id.spi, default: []].append(sa)
        }
        self.outboundSA = outboundSA
        self.bySPI = bySPI
    }

    /// The SA for an inbound SPI. SPIs are chosen by the receiver, so an outbound SA may share one with an inbound
    /// SA: prefer the SA whose peer sent the packet, else the only candidate (NAT may have changed the source).
    func inboundSA(spi: UInt32, from source: IPAddress) -> SecurityAssociation? {
        guard let candidates = bySPI[spi] else { return nil }
        if candidates.count == 1 { return candidates[0] }
        return candidates.last { $0.request.source == source } ?? candidates.last
    }

    func inboundAllows(_ packet: InnerPacketSelectors, reqid: UInt32) -> Bool {
        inbound[reqid]?.contains { $0.matches(packet) } ?? false
    }
}
