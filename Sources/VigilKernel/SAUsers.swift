/// How many selector pairs use each installed SA. A Child SA protecting several selector pairs (traffic selectors
/// with more than one subnet, RFC 7296 §2.9) is one pair of SAs and one reqid, with policies per selector pair; the
/// daemon plans per pair, so every pair's plan carries the same SA steps. The first add installs an SA and the last
/// delete removes it; the repeats in between are counted and dropped. Make-before-break holds per pair: a failover
/// deletes the old SAs only with the last pair's plan, after every pair's policies point at the new ones.
public struct SAUsers: Sendable {
    private var users: [SAID: Int] = [:]

    public init() {}

    /// Pairs using `id` now.
    public func count(_ id: SAID) -> Int { users[id, default: 0] }

    /// `plan` without the SA steps another pair already did (an add of an SA in use) or still needs undone (a delete
    /// of an SA another pair uses); those are counted here. Call `record` with the report of what remains.
    public mutating func admit(_ plan: KernelPlan) -> KernelPlan {
        KernelPlan(plan.steps.filter { step in
            switch step {
            case .addSA(let id, _):
                guard let current = users[id], current > 0 else { return true }
                users[id] = current + 1
                return false
            case .deleteSA(let id):
                guard let current = users[id], current > 1 else { return true }
                users[id] = current - 1
                return false
            case .updateSA, .addPolicy, .updatePolicy, .deletePolicy, .addRoute, .replaceRoute, .deleteRoute, .addRule, .deleteRule:
                return true
            }
        })
    }

    /// What the kernel did with an admitted plan: an installed SA has its first user, a deleted one none (a refused
    /// delete too: the SA is gone or no longer Vigil's to count).
    public mutating func record(_ report: KernelPlanReport) {
        for step in report.applied {
            switch step {
            case .addSA(let id, _): users[id] = 1
            case .deleteSA(let id): users[id] = nil
            case .updateSA, .addPolicy, .updatePolicy, .deletePolicy, .addRoute, .replaceRoute, .deleteRoute, .addRule, .deleteRule: continue
            }
        }
        for refused in report.refused {
            if case .deleteSA(let id) = refused.step { users[id] = nil }
        }
    }
}
