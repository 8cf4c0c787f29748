import VigilAddressing

/// Routing tables by number (`/etc/iproute2/rt_tables`).
public enum RoutingTable {
    public static let main: UInt32 = 254
    /// strongSwan's default table; Vigil's default is its own (see `VigilOwnership.defaultRouteTable`).
    public static let strongSwan: UInt32 = 220
}

/// What a route does with a packet (rtnetlink `rtm_type`). Vigil installs unicast routes to its tunnels and, for the
/// userspace data plane, blackhole routes that drop protected traffic while no tunnel route exists (fail closed).
public enum RouteType: UInt8, Hashable, Sendable, CustomStringConvertible {
    /// RTN_UNICAST: out of a device (optionally via a gateway).
    case unicast = 1
    /// RTN_BLACKHOLE: dropped silently, as XFRM drops a packet whose policy has no SA.
    case blackhole = 6

    public var description: String {
        switch self {
        case .unicast: "unicast"
        case .blackhole: "blackhole"
        }
    }
}

/// How the kernel names a route Vigil installs: its table, destination prefix and type. The type fixes the metric
/// (`metric`), so a tunnel route and the fail-closed blackhole route to the same prefix live side by side in one
/// table, the tunnel route preferred (lower metric) while it exists. TOS is never used.
public struct RouteID: Hashable, Sendable, CustomStringConvertible {
    public var table: UInt32
    public var destination: IPPrefix
    public var type: RouteType

    public init(table: UInt32, destination: IPPrefix, type: RouteType = .unicast) {
        self.table = table
        self.destination = destination
        self.type = type
    }

    /// The route's priority (`RTA_PRIORITY`, lower preferred), always sent so a delete names exactly this route:
    /// unicast routes get the kernel's own default (0 for IPv4, 1024 for IPv6, `ip route`'s), blackhole routes
    /// `VigilOwnership.dropRouteMetric`.
    public var metric: UInt32 {
        switch type {
        case .unicast: destination.family == .ipv6 ? RouteMetric.ipv6Default : RouteMetric.ipv4Default
        case .blackhole: VigilOwnership.dropRouteMetric
        }
    }

    public var description: String {
        (type == .unicast ? "" : "\(type) ") + "route \(destination) table \(table)"
    }
}

/// Kernel defaults for a route's priority when none is given (net/ipv6/route.c IP6_RT_PRIO_USER; IPv4 keeps 0).
public enum RouteMetric {
    public static let ipv4Default: UInt32 = 0
    public static let ipv6Default: UInt32 = 1024
}

/// Where a route sends packets: out of `device`, optionally via `gateway`, with `preferredSource` (the local
/// protected address) as the source hint so locally originated packets match the policy's selector.
public struct RouteRequest: Hashable, Sendable, CustomStringConvertible {
    public var device: String
    public var gateway: IPAddress?
    public var preferredSource: IPAddress?

    public init(device: String, gateway: IPAddress? = nil, preferredSource: IPAddress? = nil) {
        self.device = device
        self.gateway = gateway
        self.preferredSource = preferredSource
    }

    /// What a blackhole route (`RouteType.blackhole`) is given: no device, no gateway.
    public static let drop = RouteRequest(device: "")

    public var description: String {
        guard !device.isEmpty else { return "drop" }
        return "dev \(device)" + (gateway.map { " via \($0)" } ?? "") + (preferredSource.map { " src \($0)" } ?? "")
    }
}

/// A route as listed from the kernel, with the routing protocol that owns it (`VigilOwnership.routeProtocol`).
public struct InstalledRoute: Hashable, Sendable, CustomStringConvertible {
    public var id: RouteID
    public var request: RouteRequest
    public var routingProtocol: UInt8

    public init(id: RouteID, request: RouteRequest, routingProtocol: UInt8) {
        self.id = id
        self.request = request
        self.routingProtocol = routingProtocol
    }

    public var description: String { "\(id) \(request) proto \(routingProtocol)" }
}

/// A policy routing rule `priority: from all lookup table` (for one address family), so a table other than main is
/// consulted. Installed with `VigilOwnership.routeProtocol` as its protocol.
public struct RoutingRule: Hashable, Sendable, CustomStringConvertible {
    public var family: IPAddress.Family
    public var priority: UInt32
    public var table: UInt32

    public init(family: IPAddress.Family, priority: UInt32, table: UInt32) {
        self.family = family
        self.priority = priority
        self.table = table
    }

    public var description: String { "rule \(family) \(priority): from all lookup \(table)" }
}
