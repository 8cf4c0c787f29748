import CNetlink
import VigilAddressing
import VigilKernel
#if canImport(Glibc)
import Glibc
#endif

/// Routes and policy routing rules over NETLINK_ROUTE, through libnl-route. Everything it installs carries
/// `VigilOwnership.routeProtocol`. Create it in the network namespace it should program.
public final class NetlinkRouteKernel: RouteKernel {
    private let owner: SocketOwner

    /// rtnetlink constants (linux/rtnetlink.h, linux/fib_rules.h) that Swift does not import as typed values.
    private enum RT {
        static let scopeNowhere: UInt8 = 255   // RT_SCOPE_NOWHERE: "any scope" when deleting
        static let scopeUniverse: UInt8 = 0    // RT_SCOPE_UNIVERSE
        static let typeUnicast: UInt8 = 1      // RTN_UNICAST
        static let typeBlackhole: UInt8 = 6    // RTN_BLACKHOLE
        static let actionToTable: UInt8 = 1    // FR_ACT_TO_TBL
    }

    public init() throws(KernelError) {
        owner = try SocketOwner(protocol: NETLINK_ROUTE)
    }

    public func addRoute(_ id: RouteID, _ request: RouteRequest) throws(KernelError) {
        try writeRoute(.addRoute, id, request, flags: NLM_F_EXCL)
    }

    public func replaceRoute(_ id: RouteID, _ request: RouteRequest) throws(KernelError) {
        try writeRoute(.replaceRoute, id, request, flags: NLM_F_REPLACE)
    }

    public func deleteRoute(_ id: RouteID) throws(KernelError) {
        let route = RouteObject(id)
        route.lend { rtnl_route_set_scope($0, RT.scopeNowhere) }
        try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) in
            try socket.call(.deleteRoute, id.description) { socket in route.lend { rtnl_route_delete(socket, $0, 0) } }
        }
    }

    public func listRoutes(table: UInt32) throws(KernelError) -> [InstalledRoute] {
        try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) -> [InstalledRoute] in
            var cache: OpaquePointer?
            try socket.call(.listRoutes, "routes") { rtnl_route_alloc_cache($0, AF_UNSPEC, 0, &cache) }
            defer { nl_cache_free(cache) }
            var routes: [InstalledRoute] = []
            var names: [Int32: String] = [:]  // one link lookup per interface, not per route
            for route in NetlinkIPsecKernel.objects(in: cache) where rtnl_route_get_table(route) == table {
                guard let family = IPAddress.Family(netlinkFamily: Int32(rtnl_route_get_family(route))),
                      let destination = NetlinkAddress.prefix(rtnl_route_get_dst(route), family: family)
                else { continue }
                if rtnl_route_get_type(route) == RT.typeBlackhole {
                    routes.append(InstalledRoute(
                        id: RouteID(table: table, destination: destination, type: .blackhole), request: .drop,
                        routingProtocol: rtnl_route_get_protocol(route)))
                    continue
                }
                guard rtnl_route_get_type(route) == RT.typeUnicast,
                      rtnl_route_get_nnexthops(route) >= 1, let nexthop = rtnl_route_nexthop_n(route, 0)
                else { continue }
                let index = rtnl_route_nh_get_ifindex(nexthop)
                let device: String
                if let known = names[index] {
                    device = known
                } else {
                    device = try Self.interfaceName(socket, index: index)
                    names[index] = device
                }
                routes.append(InstalledRoute(
                    id: RouteID(table: table, destination: destination),
                    request: RouteRequest(
                        device: device,
                        gateway: NetlinkAddress.ipAddress(rtnl_route_nh_get_gateway(nexthop)),
                        preferredSource: NetlinkAddress.ipAddress(rtnl_route_get_pref_src(route))),
                    routingProtocol: rtnl_route_get_protocol(route)))
            }
            return routes
        }
    }

    private func writeRoute(_ operation: KernelOperation, _ id: RouteID, _ request: RouteRequest, flags: Int32)
        throws(KernelError)
    {
        try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) in
            let route = RouteObject(id)
            switch id.type {
            case .blackhole:
                // No next hop: the kernel drops what the route matches. Universe scope, as `ip route add blackhole`.
                route.lend { rtnl_route_set_scope($0, RT.scopeUniverse) }
                try socket.call(operation, "\(id)") { socket in route.lend { rtnl_route_add(socket, $0, flags) } }
                return
            case .unicast:
                break
            }
            let index = try Self.interfaceIndex(socket, name: request.device, operation: operation)
            guard let nexthop = rtnl_route_nh_alloc() else { preconditionFailure("rtnl_route_nh_alloc failed") }
            rtnl_route_nh_set_ifindex(nexthop, index)
            if let gateway = request.gateway {
                NetlinkAddress(gateway).lend { rtnl_route_nh_set_gateway(nexthop, $0) }
            }
            // The route owns the next hop from here on.
            route.lend { rtnl_route_add_nexthop($0, nexthop) }
            if let source = request.preferredSource {
                route.lend { route in NetlinkAddress(source).lend { _ = rtnl_route_set_pref_src(route, $0) } }
            }
            try socket.call(operation, "\(id) \(request)") { socket in route.lend { rtnl_route_add(socket, $0, flags) } }
        }
    }

    // MARK: Rules

    public func addRule(_ rule: RoutingRule) throws(KernelError) {
        let object = RuleObject(rule)
        try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) in
            try socket.call(.addRule, rule.description) { socket in object.lend { rtnl_rule_add(socket, $0, NLM_F_EXCL) } }
        }
    }

    public func deleteRule(_ rule: RoutingRule) throws(KernelError) {
        let object = RuleObject(rule)
        try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) in
            try socket.call(.deleteRule, rule.description) { socket in object.lend { rtnl_rule_delete(socket, $0, 0) } }
        }
    }

    public func listRules() throws(KernelError) -> [RoutingRule] {
        try owner.withSocket { (socket: NetlinkSocket) throws(KernelError) -> [RoutingRule] in
            var cache: OpaquePointer?
            try socket.call(.listRules, "rules") { rtnl_rule_alloc_cache($0, AF_UNSPEC, &cache) }
            defer { nl_cache_free(cache) }
            return NetlinkIPsecKernel.objects(in: cache).compactMap { rule -> RoutingRule? in
                var routingProtocol: UInt8 = 0
                guard rtnl_rule_get_protocol(rule, &routingProtocol) == 0,
                      routingProtocol == VigilOwnership.routeProtocol,
                      let family = IPAddress.Family(netlinkFamily: rtnl_rule_get_family(rule))
                else { return nil }
                return RoutingRule(family: family, priority: rtnl_rule_get_prio(rule), table: rtnl_rule_get_table(rule))
            }
        }
    }

    // MARK: Interfaces (looked up through this socket, so in its namespace)

    private static func interfaceIndex(_ socket: NetlinkSocket, name: String, operation: KernelOperation)
        throws(KernelError) -> Int32
    {
        var link: OpaquePointer?
        try socket.call(operation, "device \(name)") { rtnl_link_get_kernel($0, 0, name, &link) }
        guard let link else { preconditionFailure("rtnl_link_get_kernel succeeded without a link") }
        defer { rtnl_link_put(link) }
        return rtnl_link_get_ifindex(link)
    }

    private static func interfaceName(_ socket: NetlinkSocket, index: Int32) throws(KernelError) -> String {
        var link: OpaquePointer?
        try socket.call(.listRoutes, "device #\(index)") { rtnl_link_get_kernel($0, index, nil, &link) }
        guard let link else { preconditionFailure("rtnl_link_get_kernel succeeded without a link") }
        defer { rtnl_link_put(link) }
        return rtnl_link_get_name(link).map { String(cString: $0) } ?? "#\(index)"
    }
}

/// An owned `rtnl_route` with table, destination, type and Vigil's protocol set.
private final class RouteObject: OwnedNetlinkObject {
    let pointer: OpaquePointer

    init(_ id: RouteID) {
        guard let route = rtnl_route_alloc() else { preconditionFailure("rtnl_route_alloc failed (out of memory)") }
        pointer = route
        rtnl_route_set_family(route, UInt8(id.destination.family.netlinkFamily))
        rtnl_route_set_table(route, id.table)
        _ = NetlinkAddress(id.destination).lend { rtnl_route_set_dst(route, $0) }
        rtnl_route_set_type(route, id.type.rawValue)
        // Always explicit, so a delete names this route and never its blackhole twin (or the other way round).
        rtnl_route_set_priority(route, id.metric)
        rtnl_route_set_protocol(route, VigilOwnership.routeProtocol)
    }

    deinit { rtnl_route_put(pointer) }
}

/// An owned `rtnl_rule`: `from all lookup TABLE` at a priority, with Vigil's protocol.
private final class RuleObject: OwnedNetlinkObject {
    let pointer: OpaquePointer

    init(_ rule: RoutingRule) {
        guard let object = rtnl_rule_alloc() else { preconditionFailure("rtnl_rule_alloc failed (out of memory)") }
        pointer = object
        rtnl_rule_set_family(object, rule.family.netlinkFamily)
        rtnl_rule_set_prio(object, rule.priority)
        rtnl_rule_set_table(object, rule.table)
        rtnl_rule_set_action(object, 1)  // FR_ACT_TO_TBL
        _ = rtnl_rule_set_protocol(object, VigilOwnership.routeProtocol)
    }

    deinit { rtnl_rule_put(pointer) }
}
