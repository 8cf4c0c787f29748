/// The kernel's IPsec databases: the SA database (XFRM states) and the security policy database (XFRM policies).
/// Synchronous: one netlink round trip is tens of microseconds, so the daemon calls these from its executor.
/// Every operation takes an identifier and a request value, and refuses with a stable `KernelError`.
public protocol IPsecKernel: AnyObject, Sendable {
    /// Installs an SA; `.alreadyExists` if one with that id is installed.
    func addSA(_ id: SAID, _ request: SARequest) throws(KernelError)
    /// Replaces an installed SA; `.notFound` if none.
    func updateSA(_ id: SAID, _ request: SARequest) throws(KernelError)
    func deleteSA(_ id: SAID) throws(KernelError)
    /// Counters and last-use time of one SA (for traffic-based DPD).
    func querySA(_ id: SAID) throws(KernelError) -> SAState
    /// Every SA in the kernel, Vigil's or not.
    func listSAs() throws(KernelError) -> [SAState]

    /// Installs a policy; `.alreadyExists` if one with that selector and direction is installed.
    func addPolicy(_ id: PolicyID, _ request: PolicyRequest) throws(KernelError)
    /// Changes a policy in place (XFRM_MSG_UPDPOLICY): the kernel swaps it under its policy lock, keeping its index,
    /// so there is no instant without a policy and no packet leaks in clear while templates move from one peer to
    /// another. As in the kernel, a policy that is not installed is installed (one round trip; a failover then also
    /// restores a policy someone removed).
    func updatePolicy(_ id: PolicyID, _ request: PolicyRequest) throws(KernelError)
    func deletePolicy(_ id: PolicyID) throws(KernelError)
    /// Every policy in the kernel, Vigil's or not.
    func listPolicies() throws(KernelError) -> [InstalledPolicy]
}

/// The kernel's routing: routes to remote protected subnets and the rule that makes a table count.
public protocol RouteKernel: AnyObject, Sendable {
    /// Installs a route; `.alreadyExists` if that table has a route to that prefix.
    func addRoute(_ id: RouteID, _ request: RouteRequest) throws(KernelError)
    /// Installs or replaces a route in one step (NLM_F_REPLACE): no instant without a route.
    func replaceRoute(_ id: RouteID, _ request: RouteRequest) throws(KernelError)
    func deleteRoute(_ id: RouteID) throws(KernelError)
    /// Every unicast route in `table`, Vigil's or not.
    func listRoutes(table: UInt32) throws(KernelError) -> [InstalledRoute]

    func addRule(_ rule: RoutingRule) throws(KernelError)
    func deleteRule(_ rule: RoutingRule) throws(KernelError)
    /// Rules installed with Vigil's routing protocol.
    func listRules() throws(KernelError) -> [RoutingRule]
}
