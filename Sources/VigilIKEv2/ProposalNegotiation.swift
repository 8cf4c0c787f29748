import VigilAlgorithms
import VigilIKE
import VigilWire

/// SA payloads from configured proposals, and the choice among a peer's proposals (RFC 7296 §2.7, §3.3).
enum ProposalNegotiation {
    /// §3.3.5: ESN transform ID 0 means "no extended sequence numbers".
    static let noESN: UInt16 = 0
    /// RFC 4303 §2.1: ESP SPI values 0 (local use) to 255 (reserved by IANA) never name an SA on the wire.
    static let reservedSPIs: ClosedRange<UInt32> = 0...255

    static func offer(_ proposals: [IKEProposal], spi: [UInt8] = []) -> IKEv2.SecurityAssociation {
        IKEv2.SecurityAssociation(proposals: proposals.enumerated().map { index, proposal in
            var transforms = proposal.encryption.map(encryptionTransform)
            transforms += proposal.prf.map { IKEv2.Transform(type: .pseudorandomFunction, id: $0.ikev2TransformID) }
            transforms += proposal.integrity.map { IKEv2.Transform(type: .integrity, id: $0.ikev2TransformID) }
            transforms += proposal.dhGroups.map { IKEv2.Transform(type: .keyExchange, id: $0.rawValue) }
            return IKEv2.Proposal(number: UInt8(index + 1), protocolID: .ike, spi: spi, transforms: transforms)
        })
    }

    /// An ESP offer; `dhGroups` are the PFS groups (CREATE_CHILD_SA only; IKE_AUTH carries none).
    static func offer(_ proposals: [ESPProposal], dhGroups: (ESPProposal) -> [DHGroup], spi: UInt32) -> IKEv2.SecurityAssociation {
        IKEv2.SecurityAssociation(proposals: proposals.enumerated().map { index, proposal in
            var transforms = proposal.encryption.map(encryptionTransform)
            transforms += proposal.integrity.map { IKEv2.Transform(type: .integrity, id: $0.ikev2TransformID) }
            transforms += dhGroups(proposal).map { IKEv2.Transform(type: .keyExchange, id: $0.rawValue) }
            transforms.append(IKEv2.Transform(type: .extendedSequenceNumbers, id: noESN))
            return IKEv2.Proposal(number: UInt8(index + 1), protocolID: .esp, spi: bigEndian(spi), transforms: transforms)
        })
    }

    private static func encryptionTransform(_ algorithm: EncryptionAlgorithm) -> IKEv2.Transform {
        IKEv2.Transform(type: .encryption, id: algorithm.ikev2TransformID, keyLength: UInt16(algorithm.keyBits))
    }

    private static func offered(_ proposal: IKEv2.Proposal, _ type: IKEv2.TransformType) -> [IKEv2.Transform] {
        proposal.transforms.filter { $0.type == type.rawValue }
    }

    private static func firstEncryption(_ ours: [EncryptionAlgorithm], in proposal: IKEv2.Proposal) -> EncryptionAlgorithm? {
        let theirs = offered(proposal, .encryption)
        return ours.first { algorithm in
            theirs.contains { $0.id == algorithm.ikev2TransformID && $0.keyLength.map(Int.init) == algorithm.keyBits }
        }
    }

    private static func first<T>(_ ours: [T], _ type: IKEv2.TransformType, in proposal: IKEv2.Proposal, id: (T) -> UInt16) -> T? {
        let theirs = offered(proposal, type)
        return ours.first { algorithm in theirs.contains { $0.id == id(algorithm) } }
    }

    /// Responder: the first of the peer's IKE proposals that one of ours accepts, as our single-transform answer.
    static func select(_ sa: IKEv2.SecurityAssociation, from configured: [IKEProposal]) -> (IKEv2.Proposal, IKEAlgorithms)? {
        for theirs in sa.proposals where theirs.protocolID == .ike {
            for ours in configured {
                guard let algorithms = match(theirs, ours) else { continue }
                return (answer(theirs.number, .ike, spi: theirs.spi, algorithms), algorithms)
            }
        }
        return nil
    }

    private static func match(_ theirs: IKEv2.Proposal, _ ours: IKEProposal) -> IKEAlgorithms? {
        guard let encryption = firstEncryption(ours.encryption, in: theirs),
              let prf = first(ours.prf, .pseudorandomFunction, in: theirs, id: \.ikev2TransformID),
              let group = first(ours.dhGroups, .keyExchange, in: theirs, id: \.rawValue)
        else { return nil }
        var integrity: IntegrityAlgorithm?
        if !encryption.isAEAD {
            guard let chosen = first(ours.integrity, .integrity, in: theirs, id: \.ikev2TransformID) else { return nil }
            integrity = chosen
        }
        return IKEAlgorithms(encryption: encryption, integrity: integrity, prf: prf, dhGroup: group)
    }

    /// Responder: the first of the peer's ESP proposals one of ours accepts. `pfs` is the group both must use (nil in
    /// IKE_AUTH, where DH transforms are ignored).
    static func select(
        _ sa: IKEv2.SecurityAssociation, from configured: [ESPProposal], pfs: (ESPProposal) -> [DHGroup]?
    ) -> (answer: IKEv2.Proposal, algorithms: ChildAlgorithms, peerSPI: UInt32)? {
        for theirs in sa.proposals where theirs.protocolID == .esp {
            // RFC 4303 §2.1: SPI 0 is never sent and 1-255 are reserved; such a proposal is not one we can install.
            guard let peerSPI = uint32(theirs.spi), peerSPI > reservedSPIs.upperBound else { continue }
            for ours in configured {
                guard let encryption = firstEncryption(ours.encryption, in: theirs) else { continue }
                var integrity: IntegrityAlgorithm?
                if !encryption.isAEAD {
                    guard let chosen = first(ours.integrity, .integrity, in: theirs, id: \.ikev2TransformID) else { continue }
                    integrity = chosen
                }
                let esn = offered(theirs, .extendedSequenceNumbers)
                guard esn.isEmpty || esn.contains(where: { $0.id == noESN }) else { continue }
                var group: DHGroup?
                if let groups = pfs(ours) {
                    let theirGroups = offered(theirs, .keyExchange)
                    if groups.isEmpty {
                        guard theirGroups.isEmpty else { continue }
                    } else {
                        guard let chosen = groups.first(where: { g in theirGroups.contains { $0.id == g.rawValue } }) else { continue }
                        group = chosen
                    }
                }
                let algorithms = ChildAlgorithms(encryption: encryption, integrity: integrity, dhGroup: group)
                return (answer(theirs.number, .esp, spi: [], algorithms), algorithms, peerSPI)
            }
        }
        return nil
    }

    private static func answer(_ number: UInt8, _ protocolID: IKEv2.ProtocolID, spi: [UInt8], _ algorithms: IKEAlgorithms) -> IKEv2.Proposal {
        var transforms = [encryptionTransform(algorithms.encryption), IKEv2.Transform(type: .pseudorandomFunction, id: algorithms.prf.ikev2TransformID)]
        if let integrity = algorithms.integrity { transforms.append(IKEv2.Transform(type: .integrity, id: integrity.ikev2TransformID)) }
        transforms.append(IKEv2.Transform(type: .keyExchange, id: algorithms.dhGroup.rawValue))
        return IKEv2.Proposal(number: number, protocolID: protocolID, spi: spi, transforms: transforms)
    }

    private static func answer(_ number: UInt8, _ protocolID: IKEv2.ProtocolID, spi: [UInt8], _ algorithms: ChildAlgorithms) -> IKEv2.Proposal {
        var transforms = [encryptionTransform(algorithms.encryption)]
        if let integrity = algorithms.integrity { transforms.append(IKEv2.Transform(type: .integrity, id: integrity.ikev2TransformID)) }
        if let group = algorithms.dhGroup { transforms.append(IKEv2.Transform(type: .keyExchange, id: group.rawValue)) }
        transforms.append(IKEv2.Transform(type: .extendedSequenceNumbers, id: noESN))
        return IKEv2.Proposal(number: number, protocolID: protocolID, spi: spi, transforms: transforms)
    }

    /// Initiator: reads the responder's single chosen IKE proposal; nil unless it is one we offered.
    static func accepted(_ sa: IKEv2.SecurityAssociation, offered configured: [IKEProposal]) -> IKEAlgorithms? {
        guard sa.proposals.count == 1, let chosen = sa.proposals.first, chosen.protocolID == .ike,
              chosen.transforms.count == Set(chosen.transforms.map(\.type)).count
        else { return nil }
        return configured.lazy.compactMap { match(chosen, $0) }.first
    }

    /// Initiator: reads the responder's chosen ESP proposal; nil unless it is one we offered.
    static func accepted(
        _ sa: IKEv2.SecurityAssociation, offered configured: [ESPProposal], pfs: (ESPProposal) -> [DHGroup]?
    ) -> (algorithms: ChildAlgorithms, peerSPI: UInt32)? {
        // §3.3.6: the answer holds exactly one proposal with one transform of each type.
        guard sa.proposals.count == 1, let chosen = sa.proposals.first,
              chosen.transforms.count == Set(chosen.transforms.map(\.type)).count,
              let selection = select(sa, from: configured, pfs: pfs)
        else { return nil }
        return (selection.algorithms, selection.peerSPI)
    }

    /// A peer's proposal in strongSwan's notation where the algorithms are known (`aes128-sha1-prfsha1-modp3072`),
    /// IANA numbers otherwise (`ENCR_3`, `DH_2`), for operator logs.
    static func describe(_ proposal: IKEv2.Proposal) -> String {
        // Same order as `IKEProposal.description`: encryption, integrity, PRF, DH, ESN.
        let rank: [UInt8: Int] = [1: 0, 3: 1, 2: 2, 4: 3, 5: 4]
        return proposal.transforms.sorted { rank[$0.type, default: 9] < rank[$1.type, default: 9] }.map { transform -> String in
            switch transform.transformType {
            case .encryption:
                EncryptionAlgorithm(ikev2TransformID: transform.id, keyBits: Int(transform.keyLength ?? 0))?.rawValue
                    ?? "ENCR_\(transform.id)" + (transform.keyLength.map { "_\($0)" } ?? "")
            case .pseudorandomFunction: PseudorandomFunction(ikev2TransformID: transform.id)?.rawValue ?? "PRF_\(transform.id)"
            case .integrity: IntegrityAlgorithm(ikev2TransformID: transform.id)?.rawValue ?? "INTEG_\(transform.id)"
            case .keyExchange: DHGroup(rawValue: transform.id)?.keyword ?? "DH_\(transform.id)"
            case .extendedSequenceNumbers: transform.id == noESN ? "noesn" : "esn"
            case nil: "TRANSFORM_\(transform.type)_\(transform.id)"
            }
        }.joined(separator: "-")
    }

    static func describe(_ sa: IKEv2.SecurityAssociation) -> String {
        sa.proposals.map(describe).joined(separator: ", ")
    }
}
