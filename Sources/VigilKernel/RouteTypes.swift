import VigilAddressing

/// Routing tables by number (`/etc/iproute2/rt_tables`).
public enum RoutingTable {
    public static let main: UInt32 = 254
    /// strongSwan's default table; Vigil's default is its own (see `VigilOwnership.defaultRouteTable`).
    public static let strongSwan: UInt32 = 220
}

/// How the kernel names a route Vigil installs: its table and destination prefix (Vigil never uses TOS or metric to
/// tell its routes apart).
public struct RouteID: Hashable, Sendable, CustomStringConvertible {
    public var table: UInt32
    public var destination: IPPrefix

    public init(table: UInt32, destination: IPPrefix) {
        self.table = table
        self.destination = destination
    }

    public var description: String { "route \(destination) table \(table)" }
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

    public var description: String {
        "dev \(device)" + (gateway.map { " via \($0)" } ?? "") + (preferredSource.map { " src \($0)" } ?? "")
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
