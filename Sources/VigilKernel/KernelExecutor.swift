/// A step the kernel refused, with its stable error.
public struct RefusedStep: Hashable, Sendable, CustomStringConvertible {
    public var step: KernelStep
    public var error: KernelError
    public var description: String { "\(error)" }
}

/// What applying a plan did. A refused SA is never among `applied`: the daemon must not believe it is installed.
public struct KernelPlanReport: Hashable, Sendable, CustomStringConvertible {
    /// Steps the kernel accepted (or that were already in the state they asked for), in order.
    public var applied: [KernelStep] = []
    /// Steps the kernel refused, in order.
    public var refused: [RefusedStep] = []
    /// Steps not attempted because an earlier one was refused (`stopAtFirstRefusal`).
    public var skipped: [KernelStep] = []

    public var succeeded: Bool { refused.isEmpty && skipped.isEmpty }

    public var description: String {
        "\(applied.count) applied, \(refused.count) refused, \(skipped.count) skipped"
            + refused.map { "\n  refused: \($0)" }.joined()
    }
}

/// Applies a `KernelPlan` through the two protocols, step by step, and reports each refusal.
///
/// Repeating a step is harmless: an add that finds the object already there becomes an update/replace (so the
/// kernel ends up holding what the plan asked for; for an SA with the same SPI, XFRM_MSG_UPDSA refreshes its
/// lifetimes and encapsulation but keeps its keys), and a delete that finds nothing is counted as done.
public struct KernelExecutor: Sendable {
    public enum OnRefusal: Sendable {
        /// Try every step (the plans are ordered so a refused step never makes a later one leak clear text).
        case continueWithNextStep
        /// Stop; the rest is reported as skipped.
        case stop
    }

    public let ipsec: any IPsecKernel
    public let routes: any RouteKernel

    public init(ipsec: any IPsecKernel, routes: any RouteKernel) {
        self.ipsec = ipsec
        self.routes = routes
    }

    public func apply(_ plan: KernelPlan, onRefusal: OnRefusal = .continueWithNextStep) -> KernelPlanReport {
        var report = KernelPlanReport()
        for (index, step) in plan.steps.enumerated() {
            do {
                try perform(step)
                report.applied.append(step)
            } catch {
                report.refused.append(RefusedStep(step: step, error: error))
                switch onRefusal {
                case .continueWithNextStep: continue
                case .stop:
                    report.skipped = Array(plan.steps[(index + 1)...])
                    return report
                }
            }
        }
        return report
    }

    /// One step, with "already done" folded into success.
    public func perform(_ step: KernelStep) throws(KernelError) {
        do throws(KernelError) {
            try performOnce(step)
        } catch .alreadyExists(let context) {
            switch step {
            case .addSA(let id, let request): try ipsec.updateSA(id, request)
            case .addPolicy(let id, let request): try ipsec.updatePolicy(id, request)
            case .addRoute(let id, let request): try routes.replaceRoute(id, request)
            case .addRule: return
            case .updateSA, .deleteSA, .updatePolicy, .deletePolicy, .replaceRoute, .deleteRoute, .deleteRule:
                throw KernelError.alreadyExists(context)
            }
        } catch .notFound(let context) {
            switch step {
            case .deleteSA, .deletePolicy, .deleteRoute, .deleteRule: return
            case .addSA, .updateSA, .addPolicy, .updatePolicy, .addRoute, .replaceRoute, .addRule:
                throw KernelError.notFound(context)
            }
        }
    }

    private func performOnce(_ step: KernelStep) throws(KernelError) {
        switch step {
        case .addSA(let id, let request): try ipsec.addSA(id, request)
        case .updateSA(let id, let request): try ipsec.updateSA(id, request)
        case .deleteSA(let id): try ipsec.deleteSA(id)
        case .addPolicy(let id, let request): try ipsec.addPolicy(id, request)
        case .updatePolicy(let id, let request): try ipsec.updatePolicy(id, request)
        case .deletePolicy(let id): try ipsec.deletePolicy(id)
        case .addRoute(let id, let request): try routes.addRoute(id, request)
        case .replaceRoute(let id, let request): try routes.replaceRoute(id, request)
        case .deleteRoute(let id): try routes.deleteRoute(id)
        case .addRule(let rule): try routes.addRule(rule)
        case .deleteRule(let rule): try routes.deleteRule(rule)
        }
    }

    /// Start-up reconciliation / clean shutdown: lists the kernel and deletes Vigil's own SAs, policies, routes in
    /// `tables` and rules, nothing else. A refused listing throws.
    public func removeOwnedState(tables: [UInt32]) throws(KernelError) -> KernelPlanReport {
        let sas = try ipsec.listSAs()
        let policies = try ipsec.listPolicies()
        var installedRoutes: [InstalledRoute] = []
        for table in Set(tables).sorted() { installedRoutes += try routes.listRoutes(table: table) }
        let rules = try routes.listRules()
        return apply(KernelPlanner.removeOwned(sas: sas, policies: policies, routes: installedRoutes, rules: rules))
    }
}
