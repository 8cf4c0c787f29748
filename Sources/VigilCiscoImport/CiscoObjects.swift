import VigilAddressing
import VigilAlgorithms

/// The IPsec objects of a Cisco configuration, read with their line numbers; values only.
struct CiscoObjects: Sendable {
    var hostname: String?
    var domainName: String?
    /// The line of `crypto isakmp identity hostname` (instead of the default `address`), if written.
    var isakmpIdentityHostnameLine: Int?
    var isakmpPolicies: [ISAKMPPolicy] = []
    var isakmpKeys: [ISAKMPKey] = []
    var keepalive: Keepalive?
    var ikev2DPD: Keepalive?
    var transformSets: [String: TransformSet] = [:]
    var accessLists: [String: AccessList] = [:]
    var mapEntries: [MapEntry] = []
    /// `crypto map NAME local-address INTERFACE`.
    var localAddressInterface: [String: (interface: String, line: Int)] = [:]
    var interfaces: [Interface] = []
    var ikev2Proposals: [String: IKEv2Proposal] = [:]
    var ikev2Policies: [IKEv2Policy] = []
    var keyrings: [String: Keyring] = [:]
    var profiles: [String: IKEv2Profile] = [:]
    /// `crypto ipsec security-association lifetime seconds N` / `idle-time N`: the defaults for every map entry.
    var globalChildLifetime: Int?
    var globalIdleTime: (seconds: Int, line: Int)?
}

struct ISAKMPPolicy: Sendable {
    var priority: Int
    var line: Int
    /// nil when a value has no Vigil equivalent (reported at its line).
    var proposal: IKEProposal?
    var lifetime: (seconds: Int, line: Int)?
}

struct ISAKMPKey: Sendable {
    enum Match: Sendable {
        case address(IPPrefix)
        case hostname(String)
    }

    var line: Int
    var key: String
    var match: Match
}

/// `crypto isakmp keepalive` or IKEv2 `dpd`: Cisco's DPD words.
struct Keepalive: Sendable {
    enum Mode: String, Sendable {
        case periodic
        case onDemand = "on-demand"
    }

    var line: Int
    var interval: Int
    var retry: Int
    var mode: Mode
}

struct TransformSet: Sendable {
    var name: String
    var line: Int
    var proposal: ESPProposal?
}

struct AccessList: Sendable {
    struct Permit: Sendable {
        var line: Int
        var local: IPPrefix
        var remote: IPPrefix
    }

    var name: String
    var line: Int
    var permits: [Permit] = []
    /// Lines that could not become a traffic pair (already reported).
    var refusedLines = 0
}

struct MapEntry: Sendable {
    struct Peer: Sendable {
        var address: String
        var line: Int
        var isDefault: Bool
    }

    var map: String
    var sequence: Int
    var line: Int
    var peers: [Peer] = []
    var transformSets: [(name: String, line: Int)] = []
    var pfs: (group: DHGroup?, line: Int)?
    var lifetime: Int?
    var idleTime: (seconds: Int, line: Int)?
    var accessList: (name: String, line: Int)?
    var ikev2Profile: (name: String, line: Int)?
    var description: String?
}

struct Interface: Sendable {
    var name: String
    var line: Int
    var address: IPAddress?
    var cryptoMap: (name: String, line: Int)?
}

struct IKEv2Proposal: Sendable {
    var name: String
    var line: Int
    var proposal: IKEProposal?
}

struct IKEv2Policy: Sendable {
    var name: String
    var line: Int
    var proposals: [(name: String, line: Int)] = []
    var localAddresses: [IPAddress] = []
}

struct Keyring: Sendable {
    struct Peer: Sendable {
        var line: Int
        var addresses: [IPPrefix] = []
        var hostname: String?
        var key: String?
        /// `identity address|fqdn|email`: what the peer presents (IDi/IDr), in Vigil's identity text.
        var identity: String?
    }

    var name: String
    var line: Int
    var peers: [Peer] = []
}

struct IKEv2Profile: Sendable {
    var name: String
    var line: Int
    var keyring: (name: String, line: Int)?
    var lifetime: Int?
    var dpd: Keepalive?
    var localIdentity: String?
}
