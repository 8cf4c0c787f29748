import VigilAddressing
import VigilAlgorithms

/// IPsec protocol of an SA or template. Vigil programs ESP only (IP protocol 50, RFC 4303).
public enum IPsecProtocol: UInt8, Hashable, Sendable, CustomStringConvertible {
    case esp = 50
    public var description: String { "esp" }
}

/// XFRM mode. Vigil's crypto maps are site-to-site: tunnel mode (RFC 4301 §4.1).
public enum IPsecMode: UInt8, Hashable, Sendable, CustomStringConvertible {
    case transport = 0
    case tunnel = 1
    public var description: String { self == .tunnel ? "tunnel" : "transport" }
}

/// How the kernel names an SA: destination address, SPI and protocol (RFC 4301 §4.1, XFRM `xfrm_usersa_id`).
public struct SAID: Hashable, Sendable, CustomStringConvertible {
    public var destination: IPAddress
    public var spi: UInt32
    public var ipsecProtocol: IPsecProtocol

    public init(destination: IPAddress, spi: UInt32, ipsecProtocol: IPsecProtocol = .esp) {
        self.destination = destination
        self.spi = spi
        self.ipsecProtocol = ipsecProtocol
    }

    public var description: String {
        "SA \(ipsecProtocol) spi 0x\(spiHex(spi)) dst \(destination)"
    }
}

/// An SPI in hex with its leading zeros (8 digits).
func spiHex(_ spi: UInt32) -> String {
    let digits = String(spi, radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
}

/// ESP in UDP (RFC 3948): the kernel's UDP_ENCAP_ESPINUDP with the outer ports.
public struct UDPEncapsulation: Hashable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16

    public init(sourcePort: UInt16, destinationPort: UInt16) {
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
    }
}

/// SA lifetimes; nil is "no limit" (the kernel's XFRM_INF). Seconds count from the SA's installation.
public struct SALifetime: Hashable, Sendable {
    public var softBytes: UInt64?
    public var hardBytes: UInt64?
    public var softPackets: UInt64?
    public var hardPackets: UInt64?
    public var softSeconds: UInt64?
    public var hardSeconds: UInt64?

    public init(
        softBytes: UInt64? = nil, hardBytes: UInt64? = nil, softPackets: UInt64? = nil, hardPackets: UInt64? = nil,
        softSeconds: UInt64? = nil, hardSeconds: UInt64? = nil
    ) {
        self.softBytes = softBytes
        self.hardBytes = hardBytes
        self.softPackets = softPackets
        self.hardPackets = hardPackets
        self.softSeconds = softSeconds
        self.hardSeconds = hardSeconds
    }

    /// No limits: rekeying is driven by the IKE engine's own timers.
    public static let unlimited = SALifetime()
}

/// Everything needed to install one direction of a Child SA. Keys are secret: `description` never prints them.
public struct SARequest: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// Outer (tunnel) source and destination addresses.
    public var source: IPAddress
    public var destination: IPAddress
    public var mode: IPsecMode
    /// Ties the SA to the policies' templates; unique per Child SA and inside `VigilOwnership.reqids`.
    public var reqid: UInt32
    public var encryption: EncryptionAlgorithm
    /// `encryption.keyMaterialLength` bytes: for GCM the key followed by the 4-byte salt (RFC 4106 §8.1).
    public var encryptionKey: [UInt8]
    /// nil for AEAD algorithms.
    public var integrity: IntegrityAlgorithm?
    public var integrityKey: [UInt8]
    public var encapsulation: UDPEncapsulation?
    /// Anti-replay window in packets (RFC 4303 §3.4.3); 0 disables the check (outbound SAs).
    public var replayWindow: UInt8
    public var lifetime: SALifetime

    public init(
        source: IPAddress, destination: IPAddress, mode: IPsecMode = .tunnel, reqid: UInt32,
        encryption: EncryptionAlgorithm, encryptionKey: [UInt8],
        integrity: IntegrityAlgorithm?, integrityKey: [UInt8] = [],
        encapsulation: UDPEncapsulation? = nil, replayWindow: UInt8 = 32, lifetime: SALifetime = .unlimited
    ) {
        self.source = source
        self.destination = destination
        self.mode = mode
        self.reqid = reqid
        self.encryption = encryption
        self.encryptionKey = encryptionKey
        self.integrity = integrity
        self.integrityKey = integrityKey
        self.encapsulation = encapsulation
        self.replayWindow = replayWindow
        self.lifetime = lifetime
    }

    public var description: String {
        "\(source) -> \(destination) \(mode) reqid \(reqid) \(encryption)\(integrity.map { "-\($0)" } ?? "")"
            + (encapsulation.map { " udp \($0.sourcePort)->\($0.destinationPort)" } ?? "")
    }

    public var debugDescription: String { description }
}

extension SARequest {
    /// Why the kernel would refuse this request as malformed (EINVAL), or nil. Both kernels check it before
    /// anything else: a kernel without ESP validates algorithm names but never key lengths, so a wrong length must
    /// not hide behind "kernel lacks ESP".
    public func malformation(for id: SAID) -> String? {
        if encryptionKey.count != encryption.keyMaterialLength {
            return "\(encryption) needs a \(encryption.keyMaterialLength)-byte key, got \(encryptionKey.count)"
        }
        if encryption.isAEAD, integrity != nil { return "\(encryption) is AEAD and takes no integrity algorithm" }
        if !encryption.isAEAD, integrity == nil { return "\(encryption) needs an integrity algorithm" }
        if let integrity, integrityKey.count != integrity.keyLength {
            return "\(integrity) needs a \(integrity.keyLength)-byte key, got \(integrityKey.count)"
        }
        if integrity == nil, !integrityKey.isEmpty { return "integrity key given without an integrity algorithm" }
        if destination != id.destination { return "destination \(destination) differs from the SA id's" }
        if source.family != destination.family { return "source and destination differ in family" }
        return nil
    }

    /// Throws `.other` (EINVAL) when `malformation(for:)` finds a problem.
    public func validate(for id: SAID, _ operation: KernelOperation) throws(KernelError) {
        guard let problem = malformation(for: id) else { return }
        throw .other(.init(operation: operation, subject: "\(id): \(problem)", errno: KernelError.Errno.EINVAL))
    }
}

/// An installed SA as the kernel reports it, with the counters traffic-based DPD reads.
public struct SAState: Hashable, Sendable {
    public var id: SAID
    public var source: IPAddress
    public var mode: IPsecMode
    public var reqid: UInt32
    public var encapsulation: UDPEncapsulation?
    /// Bytes and packets processed by this SA since installation (`xfrm_lifetime_cur`).
    public var bytes: UInt64
    public var packets: UInt64
    /// Kernel wall-clock seconds since the Unix epoch: when the SA was installed and when it last carried a packet
    /// (nil if never). DPD should compare `packets` between two looks rather than trust a wall clock.
    public var addedAtSeconds: UInt64
    public var lastUsedAtSeconds: UInt64?

    public init(
        id: SAID, source: IPAddress, mode: IPsecMode, reqid: UInt32, encapsulation: UDPEncapsulation?,
        bytes: UInt64, packets: UInt64, addedAtSeconds: UInt64, lastUsedAtSeconds: UInt64?
    ) {
        self.id = id
        self.source = source
        self.mode = mode
        self.reqid = reqid
        self.encapsulation = encapsulation
        self.bytes = bytes
        self.packets = packets
        self.addedAtSeconds = addedAtSeconds
        self.lastUsedAtSeconds = lastUsedAtSeconds
    }
}

/// Direction of an XFRM policy. `forward` is needed on a tunnel gateway for traffic it routes through.
public enum PolicyDirection: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case inbound = 0   // XFRM_POLICY_IN
    case outbound = 1  // XFRM_POLICY_OUT
    case forward = 2   // XFRM_POLICY_FWD

    public var description: String {
        switch self {
        case .inbound: "in"
        case .outbound: "out"
        case .forward: "fwd"
        }
    }
}

/// The packets a policy matches (RFC 4301 §4.4.1 selectors, as XFRM holds them): inner source and destination
/// prefixes, and an upper-layer protocol (0 = any). Ports are not used by Vigil's crypto maps.
public struct PolicySelector: Hashable, Sendable, CustomStringConvertible {
    public var source: IPPrefix
    public var destination: IPPrefix
    public var ipProtocol: UInt8

    public init(source: IPPrefix, destination: IPPrefix, ipProtocol: UInt8 = 0) {
        precondition(source.family == destination.family, "a selector's prefixes must share a family")
        self.source = source
        self.destination = destination
        self.ipProtocol = ipProtocol
    }

    public var description: String {
        "src \(source) dst \(destination)" + (ipProtocol == 0 ? "" : " proto \(ipProtocol)")
    }
}

/// How the kernel names a policy: its selector and direction (mark and interface id are never used by Vigil).
public struct PolicyID: Hashable, Sendable, CustomStringConvertible {
    public var selector: PolicySelector
    public var direction: PolicyDirection

    public init(selector: PolicySelector, direction: PolicyDirection) {
        self.selector = selector
        self.direction = direction
    }

    public var description: String { "policy \(selector) dir \(direction)" }
}

/// A policy's template (`xfrm_user_tmpl`): which SA must protect the matching packets. In tunnel mode the endpoints
/// are the peers' outer addresses; repointing a policy to another peer changes them in place.
public struct PolicyTemplate: Hashable, Sendable, CustomStringConvertible {
    public var source: IPAddress
    public var destination: IPAddress
    public var reqid: UInt32
    public var ipsecProtocol: IPsecProtocol
    public var mode: IPsecMode

    public init(
        source: IPAddress, destination: IPAddress, reqid: UInt32, ipsecProtocol: IPsecProtocol = .esp,
        mode: IPsecMode = .tunnel
    ) {
        self.source = source
        self.destination = destination
        self.reqid = reqid
        self.ipsecProtocol = ipsecProtocol
        self.mode = mode
    }

    public var description: String { "tmpl src \(source) dst \(destination) \(ipsecProtocol) \(mode) reqid \(reqid)" }
}

/// What the kernel does with a matching packet.
public enum PolicyAction: Hashable, Sendable, CustomStringConvertible {
    /// Protect with an SA matching the template. With no such SA the kernel drops the packet (and raises an
    /// acquire): it is never sent in clear.
    case protect(PolicyTemplate)
    /// Drop (XFRM_POLICY_BLOCK).
    case block

    public var description: String {
        switch self {
        case .protect(let template): "protect \(template)"
        case .block: "block"
        }
    }
}

public struct PolicyRequest: Hashable, Sendable, CustomStringConvertible {
    public var action: PolicyAction
    /// Lower is preferred. Vigil's are inside `VigilOwnership.policyPriorities`.
    public var priority: UInt32

    public init(action: PolicyAction, priority: UInt32) {
        self.action = action
        self.priority = priority
    }

    public var description: String { "\(action) priority \(priority)" }
}

/// A policy as listed from the kernel.
public struct InstalledPolicy: Hashable, Sendable, CustomStringConvertible {
    public var id: PolicyID
    public var request: PolicyRequest

    public init(id: PolicyID, request: PolicyRequest) {
        self.id = id
        self.request = request
    }

    public var description: String { "\(id) \(request)" }
}
