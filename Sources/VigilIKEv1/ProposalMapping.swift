import VigilAddressing
import VigilAlgorithms
import VigilWire

typealias P1 = ISAKMP.Phase1Attribute
typealias P2 = ISAKMP.Phase2Attribute

/// The algorithms a Quick Mode agreed on (one ESP transform).
struct Phase2Suite: Sendable, Hashable {
    var encryption: EncryptionAlgorithm
    var integrity: IntegrityAlgorithm
    var group: DHGroup?
    var lifetimeSeconds: UInt32
    var udpEncapsulated: Bool

    /// Encryption key, then integrity key (RFC 2409 §5.5: taken from KEYMAT in that order).
    var keyMaterialLength: Int { encryption.keyBits / 8 + integrity.keyLength }
}

enum ProposalMapping {
    static func hashAttribute(_ integrity: IntegrityAlgorithm) -> UInt16 {
        switch integrity {
        case .hmacSHA1_96: P1.sha1
        case .hmacSHA2_256_128: P1.sha2_256
        case .hmacSHA2_384_192: P1.sha2_384
        case .hmacSHA2_512_256: P1.sha2_512
        }
    }

    static func authenticationAttribute(_ integrity: IntegrityAlgorithm) -> UInt16 {
        switch integrity {
        case .hmacSHA1_96: P2.hmacSHA1
        case .hmacSHA2_256_128: P2.hmacSHA2_256
        case .hmacSHA2_384_192: P2.hmacSHA2_384
        case .hmacSHA2_512_256: P2.hmacSHA2_512
        }
    }

    /// Every Phase 1 suite the configuration allows, in order of preference (IKEv1 has no AEAD for ISAKMP).
    static func phase1Suites(_ proposals: [IKEProposal], lifetimeSeconds: UInt32) -> [Phase1Suite] {
        proposals.flatMap { proposal in
            proposal.encryption.filter { !$0.isAEAD }.flatMap { encryption in
                proposal.integrity.flatMap { integrity in
                    proposal.dhGroups.map { Phase1Suite(encryption: encryption, integrity: integrity, group: $0, lifetimeSeconds: lifetimeSeconds) }
                }
            }
        }
    }

    static func phase1Transform(_ suite: Phase1Suite, number: UInt8) -> ISAKMP.Transform {
        ISAKMP.Transform(number: number, transformID: P1.keyIKE, attributes: [
            .basic(P1.encryptionAlgorithm, P1.aesCBC),
            .basic(P1.keyLength, UInt16(suite.encryption.keyBits)),
            .basic(P1.hashAlgorithm, hashAttribute(suite.integrity)),
            .basic(P1.groupDescription, suite.group.rawValue),
            .basic(P1.authenticationMethod, P1.preSharedKey),
            .basic(P1.lifeType, P1.lifeTypeSeconds),
            .number(P1.lifeDuration, suite.lifetimeSeconds),
        ])
    }

    /// RFC 2408 §3.5: a proposal's transform count and each transform's number are one octet.
    static let maximumTransformsPerProposal = 255

    static func phase1SA(_ suites: [Phase1Suite]) -> ISAKMP.SecurityAssociation {
        ISAKMP.SecurityAssociation(proposals: [ISAKMP.Proposal(
            number: 1, protocolID: .isakmp, spi: [],
            transforms: suites.prefix(maximumTransformsPerProposal).enumerated().map { phase1Transform($1, number: UInt8($0 + 1)) })])
    }

    /// Reads a peer's ISAKMP transform; nil if it names anything Vigil does not do (it is then skipped).
    static func phase1Suite(_ transform: ISAKMP.Transform) -> Phase1Suite? {
        guard transform.transformID == P1.keyIKE,
              transform.attribute(P1.encryptionAlgorithm)?.numericValue == UInt64(P1.aesCBC),
              transform.attribute(P1.authenticationMethod)?.numericValue == UInt64(P1.preSharedKey),
              let bits = transform.attribute(P1.keyLength)?.numericValue,
              let encryption = EncryptionAlgorithm.allCases.first(where: { !$0.isAEAD && UInt64($0.keyBits) == bits }),
              let hash = transform.attribute(P1.hashAlgorithm)?.numericValue,
              let integrity = IntegrityAlgorithm.allCases.first(where: { UInt64(hashAttribute($0)) == hash }),
              let groupNumber = transform.attribute(P1.groupDescription)?.numericValue,
              let group = DHGroup(rawValue: UInt16(truncatingIfNeeded: groupNumber)), groupNumber <= UInt64(UInt16.max)
        else { return nil }
        let lifetime = lifetimeSeconds(transform, lifeType: P1.lifeType, lifeDuration: P1.lifeDuration) ?? 28_800
        return Phase1Suite(encryption: encryption, integrity: integrity, group: group, lifetimeSeconds: lifetime)
    }

    /// Responder's choice: the first transform of the peer's (in its order) that our configuration allows.
    static func selectPhase1(_ sa: ISAKMP.SecurityAssociation, allowed: [Phase1Suite]) -> (ISAKMP.Transform, Phase1Suite)? {
        for proposal in sa.proposals where proposal.protocolID == ISAKMP.ProtocolID.isakmp.rawValue {
            for transform in proposal.transforms {
                guard let suite = phase1Suite(transform) else { continue }
                if allowed.contains(where: { $0.encryption == suite.encryption && $0.integrity == suite.integrity && $0.group == suite.group }) {
                    return (transform, suite)
                }
            }
        }
        return nil
    }

    static func phase2Suites(_ proposals: [ESPProposal], group: DHGroup?, lifetimeSeconds: UInt32, udpEncapsulated: Bool) -> [Phase2Suite] {
        proposals.flatMap { proposal in
            proposal.encryption.filter { !$0.isAEAD }.flatMap { encryption in
                proposal.integrity.map {
                    Phase2Suite(encryption: encryption, integrity: $0, group: group, lifetimeSeconds: lifetimeSeconds, udpEncapsulated: udpEncapsulated)
                }
            }
        }
    }

    static func phase2Transform(_ suite: Phase2Suite, number: UInt8) -> ISAKMP.Transform {
        var attributes: [ISAKMP.Attribute] = [
            .basic(P2.lifeType, P2.lifeTypeSeconds),
            .number(P2.lifeDuration, suite.lifetimeSeconds),
        ]
        if let group = suite.group { attributes.append(.basic(P2.groupDescription, group.rawValue)) }
        attributes += [
            .basic(P2.encapsulationMode, suite.udpEncapsulated ? P2.udpEncapsulatedTunnel : P2.tunnel),
            .basic(P2.authenticationAlgorithm, authenticationAttribute(suite.integrity)),
            .basic(P2.keyLength, UInt16(suite.encryption.keyBits)),
        ]
        return ISAKMP.Transform(number: number, transformID: P2.espAES, attributes: attributes)
    }

    static func phase2SA(_ suites: [Phase2Suite], spi: UInt32) -> ISAKMP.SecurityAssociation {
        ISAKMP.SecurityAssociation(proposals: [ISAKMP.Proposal(
            number: 1, protocolID: .esp, spi: spiBytes(spi),
            transforms: suites.prefix(maximumTransformsPerProposal).enumerated().map { phase2Transform($1, number: UInt8($0 + 1)) })])
    }

    /// RFC 3947 §5.1 mode 3, and the draft value strongSwan also understands (61443).
    static let draftUDPEncapsulatedTunnel: UInt64 = 61443

    static func phase2Suite(_ transform: ISAKMP.Transform) -> Phase2Suite? {
        guard transform.transformID == P2.espAES,
              let bits = transform.attribute(P2.keyLength)?.numericValue,
              let encryption = EncryptionAlgorithm.allCases.first(where: { !$0.isAEAD && UInt64($0.keyBits) == bits }),
              let auth = transform.attribute(P2.authenticationAlgorithm)?.numericValue,
              let integrity = IntegrityAlgorithm.allCases.first(where: { UInt64(authenticationAttribute($0)) == auth }),
              let mode = transform.attribute(P2.encapsulationMode)?.numericValue
        else { return nil }
        let udp: Bool
        switch mode {
        case UInt64(P2.tunnel): udp = false
        case UInt64(P2.udpEncapsulatedTunnel), draftUDPEncapsulatedTunnel: udp = true
        default: return nil   // transport mode: Vigil protects subnets, tunnel mode only
        }
        var group: DHGroup?
        if let number = transform.attribute(P2.groupDescription)?.numericValue {
            guard number <= UInt64(UInt16.max), let known = DHGroup(rawValue: UInt16(number)) else { return nil }
            group = known
        }
        let lifetime = lifetimeSeconds(transform, lifeType: P2.lifeType, lifeDuration: P2.lifeDuration) ?? 3_600
        return Phase2Suite(encryption: encryption, integrity: integrity, group: group, lifetimeSeconds: lifetime, udpEncapsulated: udp)
    }

    /// Responder's choice in Quick Mode: the peer's first ESP transform we allow (PFS group must match ours).
    static func selectPhase2(_ sa: ISAKMP.SecurityAssociation, allowed: [Phase2Suite]) -> (proposal: ISAKMP.Proposal, transform: ISAKMP.Transform, suite: Phase2Suite)? {
        for proposal in sa.proposals where proposal.protocolID == ISAKMP.ProtocolID.esp.rawValue && proposal.spi.count == 4 {
            for transform in proposal.transforms {
                guard let suite = phase2Suite(transform) else { continue }
                if allowed.contains(where: { $0.encryption == suite.encryption && $0.integrity == suite.integrity && $0.group == suite.group }) {
                    return (proposal, transform, suite)
                }
            }
        }
        return nil
    }

    /// RFC 2409 Appendix A / RFC 2407 §4.5: each Life Duration applies to the Life Type before it; only seconds
    /// matter here (a kilobyte lifetime is the data plane's business). nil when no seconds lifetime is given.
    static func lifetimeSeconds(_ transform: ISAKMP.Transform, lifeType: UInt16, lifeDuration: UInt16) -> UInt32? {
        var currentType: UInt64?
        for attribute in transform.attributes {
            if attribute.type == lifeType {
                currentType = attribute.numericValue
            } else if attribute.type == lifeDuration, currentType == UInt64(P1.lifeTypeSeconds), let value = attribute.numericValue, value > 0 {
                return UInt32(clamping: value)
            }
        }
        return nil
    }

    static func spiBytes(_ spi: UInt32) -> [UInt8] {
        [UInt8(spi >> 24), UInt8(spi >> 16 & 0xFF), UInt8(spi >> 8 & 0xFF), UInt8(spi & 0xFF)]
    }

    static func spiValue(_ bytes: [UInt8]) -> UInt32? {
        guard bytes.count == 4 else { return nil }
        return bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// Phase 2 proxy identity (RFC 2407 §4.6.2): a subnet, or a single address for a host prefix.
    static func proxyIdentity(_ prefix: IPPrefix) -> ISAKMP.Identification {
        let full = prefix.family.bitWidth
        if prefix.length == full {
            return ISAKMP.Identification(idType: prefix.family == .ipv4 ? ISAKMP.IDType.ipv4Address : ISAKMP.IDType.ipv6Address,
                                         data: prefix.address.bytes)
        }
        let mask = IPAddress.any(prefix.family).bytes.indices.map { index -> UInt8 in
            let bits = max(0, min(8, prefix.length - index * 8))
            return bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
        }
        return ISAKMP.Identification(idType: prefix.family == .ipv4 ? ISAKMP.IDType.ipv4Subnet : ISAKMP.IDType.ipv6Subnet,
                                     data: prefix.address.bytes + mask)
    }

    static func prefix(_ id: ISAKMP.Identification) -> IPPrefix? {
        switch id.idType {
        case ISAKMP.IDType.ipv4Address, ISAKMP.IDType.ipv6Address:
            guard let address = IPAddress(bytes: id.data) else { return nil }
            return IPPrefix(address: address, length: address.family.bitWidth)
        case ISAKMP.IDType.ipv4Subnet, ISAKMP.IDType.ipv6Subnet:
            let half = id.data.count / 2
            guard id.data.count % 2 == 0, let address = IPAddress(bytes: id.data[0..<half]) else { return nil }
            let mask = id.data[half...]
            let length = mask.reduce(0) { $0 + $1.nonzeroBitCount }
            return IPPrefix(address: address.masked(to: length), length: length)
        default:
            return nil
        }
    }
}
