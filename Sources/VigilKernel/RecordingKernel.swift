import Synchronization
import VigilAddressing

/// One mutating kernel operation: a step of a `KernelPlan`, and what `RecordingKernel` records.
public enum KernelStep: Hashable, Sendable, CustomStringConvertible {
    case addSA(SAID, SARequest)
    case updateSA(SAID, SARequest)
    case deleteSA(SAID)
    case addPolicy(PolicyID, PolicyRequest)
    case updatePolicy(PolicyID, PolicyRequest)
    case deletePolicy(PolicyID)
    case addRoute(RouteID, RouteRequest)
    case replaceRoute(RouteID, RouteRequest)
    case deleteRoute(RouteID)
    case addRule(RoutingRule)
    case deleteRule(RoutingRule)

    public var operation: KernelOperation {
        switch self {
        case .addSA: .addSA
        case .updateSA: .updateSA
        case .deleteSA: .deleteSA
        case .addPolicy: .addPolicy
        case .updatePolicy: .updatePolicy
        case .deletePolicy: .deletePolicy
        case .addRoute: .addRoute
        case .replaceRoute: .replaceRoute
        case .deleteRoute: .deleteRoute
        case .addRule: .addRule
        case .deleteRule: .deleteRule
        }
    }

    public var description: String {
        switch self {
        case .addSA(let id, let request), .updateSA(let id, let request): "\(operation) \(id) \(request)"
        case .deleteSA(let id): "\(operation) \(id)"
        case .addPolicy(let id, let request), .updatePolicy(let id, let request): "\(operation) \(id) \(request)"
        case .deletePolicy(let id): "\(operation) \(id)"
        case .addRoute(let id, let request), .replaceRoute(let id, let request): "\(operation) \(id) \(request)"
        case .deleteRoute(let id): "\(operation) \(id)"
        case .addRule(let rule), .deleteRule(let rule): "\(operation) \(rule)"
        }
    }
}

/// The in-memory kernel: holds state like the kernel, refuses like the kernel (add twice → `.alreadyExists`,
/// delete missing → `.notFound`, errno 0) and records every operation it accepted, in order.
/// `espSupported: false` imitates a kernel without ESP: SA adds are refused with `.protocolNotSupported`.
public final class RecordingKernel: IPsecKernel, RouteKernel, Sendable {
    private struct State {
        var sas: [SAID: SAState] = [:]
        var policies: [PolicyID: PolicyRequest] = [:]
        var routes: [RouteID: RouteRequest] = [:]
        var rules: [RoutingRule] = []
        var steps: [KernelStep] = []
        /// Test hook: SA adds to these destinations are refused (EPERM), as a kernel or an LSM might.
        var refusedDestinations: Set<IPAddress> = []
    }

    private let state = Mutex(State())
    public let espSupported: Bool

    public init(espSupported: Bool = true) {
        self.espSupported = espSupported
    }

    /// Every accepted mutating operation, oldest first.
    public var recordedSteps: [KernelStep] { state.withLock { $0.steps } }

    /// Forgets the recorded steps (state stays).
    public func clearRecordedSteps() { state.withLock { $0.steps.removeAll() } }

    /// Test hook: from now on refuse (EPERM) every SA add towards `destination`, or stop refusing.
    public func refuseSAs(to destination: IPAddress, _ refuse: Bool = true) {
        state.withLock {
            if refuse { $0.refusedDestinations.insert(destination) } else { $0.refusedDestinations.remove(destination) }
        }
    }

    /// Test hook: traffic through an SA, as the kernel's counters would show it.
    public func recordTraffic(on id: SAID, bytes: UInt64, packets: UInt64, atSeconds: UInt64) {
        state.withLock {
            guard var sa = $0.sas[id] else { preconditionFailure("recordTraffic on \(id), which is not installed") }
            sa.bytes += bytes
            sa.packets += packets
            sa.lastUsedAtSeconds = atSeconds
            $0.sas[id] = sa
        }
    }

    private func refusal(_ operation: KernelOperation, _ subject: CustomStringConvertible, _ code: KernelError.Code)
        -> KernelError
    {
        let context = KernelError.Context(operation: operation, subject: subject.description, errno: 0)
        switch code {
        case .alreadyExists: return .alreadyExists(context)
        case .notFound: return .notFound(context)
        case .permissionDenied: return .permissionDenied(context)
        case .protocolNotSupported: return .protocolNotSupported(context)
        case .algorithmNotSupported: return .algorithmNotSupported(context)
        case .other: return .other(context)
        }
    }

    private func validate(_ request: SARequest, _ operation: KernelOperation, _ id: SAID) throws(KernelError) {
        try request.validate(for: id, operation)
        guard espSupported else { throw refusal(operation, id, .protocolNotSupported) }
    }

    // MARK: SAs

    public func addSA(_ id: SAID, _ request: SARequest) throws(KernelError) {
        try validate(request, .addSA, id)
        try state.withLock { (s: inout State) throws(KernelError) in
            guard s.sas[id] == nil else { throw refusal(.addSA, id, .alreadyExists) }
            guard !s.refusedDestinations.contains(id.destination) else { throw refusal(.addSA, id, .permissionDenied) }
            s.sas[id] = SAState(
                id: id, source: request.source, mode: request.mode, reqid: request.reqid,
                encapsulation: request.encapsulation, bytes: 0, packets: 0, addedAtSeconds: 0, lastUsedAtSeconds: nil)
            s.steps.append(.addSA(id, request))
        }
    }

    public func updateSA(_ id: SAID, _ request: SARequest) throws(KernelError) {
        try validate(request, .updateSA, id)
        try state.withLock { (s: inout State) throws(KernelError) in
            guard var sa = s.sas[id] else { throw refusal(.updateSA, id, .notFound) }
            sa.source = request.source
            sa.mode = request.mode
            sa.reqid = request.reqid
            sa.encapsulation = request.encapsulation
            s.sas[id] = sa
            s.steps.append(.updateSA(id, request))
        }
    }

    public func deleteSA(_ id: SAID) throws(KernelError) {
        try state.withLock { (s: inout State) throws(KernelError) in
            guard s.sas.removeValue(forKey: id) != nil else { throw refusal(.deleteSA, id, .notFound) }
            s.steps.append(.deleteSA(id))
        }
    }

    public func querySA(_ id: SAID) throws(KernelError) -> SAState {
        try state.withLock { (s: inout State) throws(KernelError) -> SAState in
            guard let sa = s.sas[id] else { throw refusal(.querySA, id, .notFound) }
            return sa
        }
    }

    public func listSAs() throws(KernelError) -> [SAState] {
        state.withLock { Array($0.sas.values) }
    }

    // MARK: Policies

    public func addPolicy(_ id: PolicyID, _ request: PolicyRequest) throws(KernelError) {
        try state.withLock { (s: inout State) throws(KernelError) in
            guard s.policies[id] == nil else { throw refusal(.addPolicy, id, .alreadyExists) }
            s.policies[id] = request
            s.steps.append(.addPolicy(id, request))
        }
    }

    public func updatePolicy(_ id: PolicyID, _ request: PolicyRequest) throws(KernelError) {
        state.withLock {
            $0.policies[id] = request
            $0.steps.append(.updatePolicy(id, request))
        }
    }

    public func deletePolicy(_ id: PolicyID) throws(KernelError) {
        try state.withLock { (s: inout State) throws(KernelError) in
            guard s.policies.removeValue(forKey: id) != nil else { throw refusal(.deletePolicy, id, .notFound) }
            s.steps.append(.deletePolicy(id))
        }
    }

    public func listPolicies() throws(KernelError) -> [InstalledPolicy] {
        state.withLock { $0.policies.map { InstalledPolicy(id: $0.key, request: $0.value) } }
    }

    /// Test hook: a policy installed by someone else (another IKE daemon, `ip xfrm policy add`); not recorded.
    public func installForeignPolicy(_ id: PolicyID, _ request: PolicyRequest) {
        state.withLock { $0.policies[id] = request }
    }

    // MARK: Routes

    public func addRoute(_ id: RouteID, _ request: RouteRequest) throws(KernelError) {
        try state.withLock { (s: inout State) throws(KernelError) in
            guard s.routes[id] == nil else { throw refusal(.addRoute, id, .alreadyExists) }
            s.routes[id] = request
            s.steps.append(.addRoute(id, request))
        }
    }

    public func replaceRoute(_ id: RouteID, _ request: RouteRequest) throws(KernelError) {
        state.withLock {
            $0.routes[id] = request
            $0.steps.append(.replaceRoute(id, request))
        }
    }

    public func deleteRoute(_ id: RouteID) throws(KernelError) {
        try state.withLock { (s: inout State) throws(KernelError) in
            guard s.routes.removeValue(forKey: id) != nil else { throw refusal(.deleteRoute, id, .notFound) }
            s.steps.append(.deleteRoute(id))
        }
    }

    public func listRoutes(table: UInt32) throws(KernelError) -> [InstalledRoute] {
        state.withLock {
            $0.routes.filter { $0.key.table == table }.map {
                InstalledRoute(id: $0.key, request: $0.value, routingProtocol: VigilOwnership.routeProtocol)
            }
        }
    }

    public func addRule(_ rule: RoutingRule) throws(KernelError) {
        try state.withLock { (s: inout State) throws(KernelError) in
            guard !s.rules.contains(rule) else { throw refusal(.addRule, rule, .alreadyExists) }
            s.rules.append(rule)
            s.steps.append(.addRule(rule))
        }
    }

    public func deleteRule(_ rule: RoutingRule) throws(KernelError) {
        try state.withLock { (s: inout State) throws(KernelError) in
            guard let index = s.rules.firstIndex(of: rule) else { throw refusal(.deleteRule, rule, .notFound) }
            s.rules.remove(at: index)
            s.steps.append(.deleteRule(rule))
        }
    }

    public func listRules() throws(KernelError) -> [RoutingRule] {
        state.withLock { $0.rules }
    }
}
