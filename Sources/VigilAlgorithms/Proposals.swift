/// An IKE SA proposal (Phase 1): every algorithm list is in order of preference.
public struct IKEProposal: Hashable, Sendable, CustomStringConvertible {
    public var encryption: [EncryptionAlgorithm]
    public var integrity: [IntegrityAlgorithm]
    public var prf: [PseudorandomFunction]
    public var dhGroups: [DHGroup]

    public init(
        encryption: [EncryptionAlgorithm], integrity: [IntegrityAlgorithm],
        prf: [PseudorandomFunction], dhGroups: [DHGroup]
    ) {
        self.encryption = encryption
        self.integrity = integrity
        self.prf = prf
        self.dhGroups = dhGroups
    }

    /// strongSwan notation, e.g. `aes256-sha256-modp2048`.
    public var description: String {
        (encryption.map(\.rawValue) + integrity.map(\.rawValue) + prf.map(\.rawValue) + dhGroups.map(\.keyword))
            .joined(separator: "-")
    }

    /// Parses strongSwan's notation: `aes256-sha256-modp2048`, `aes128gcm16-prfsha256-x25519`,
    /// `aes256-sha384-ecp384`. An integrity algorithm without an explicit PRF implies the matching PRF, as in
    /// strongSwan. AEAD proposals need an explicit `prfXXX` and take no integrity algorithm.
    public static func parse(_ text: String) throws(ProposalError) -> IKEProposal {
        let tokens = try ProposalTokens(text, kind: .ike)
        guard !tokens.encryption.isEmpty else { throw .missing(proposal: text, what: "an encryption algorithm") }
        guard !tokens.dhGroups.isEmpty else { throw .missing(proposal: text, what: "a Diffie-Hellman group") }
        let aead = tokens.encryption.allSatisfy(\.isAEAD)
        let classic = tokens.encryption.allSatisfy { !$0.isAEAD }
        guard aead || classic else { throw .mixedAEAD(proposal: text) }
        var prf = tokens.prf
        if aead {
            guard tokens.integrity.isEmpty else { throw .integrityWithAEAD(proposal: text) }
            guard !prf.isEmpty else { throw .missing(proposal: text, what: "a PRF (prfsha256, ...) for an AEAD cipher") }
        } else {
            guard !tokens.integrity.isEmpty else { throw .missing(proposal: text, what: "an integrity algorithm") }
            if prf.isEmpty { prf = tokens.integrity.map(\.impliedPRF).uniqued() }
        }
        return IKEProposal(encryption: tokens.encryption, integrity: tokens.integrity, prf: prf, dhGroups: tokens.dhGroups)
    }
}

/// An ESP (Child SA, Phase 2) proposal. A DH group in it means PFS with that group.
public struct ESPProposal: Hashable, Sendable, CustomStringConvertible {
    public var encryption: [EncryptionAlgorithm]
    public var integrity: [IntegrityAlgorithm]
    public var dhGroups: [DHGroup]

    public init(encryption: [EncryptionAlgorithm], integrity: [IntegrityAlgorithm], dhGroups: [DHGroup]) {
        self.encryption = encryption
        self.integrity = integrity
        self.dhGroups = dhGroups
    }

    public var description: String {
        (encryption.map(\.rawValue) + integrity.map(\.rawValue) + dhGroups.map(\.keyword)).joined(separator: "-")
    }

    /// Parses strongSwan's notation: `aes256-sha256`, `aes256gcm16`, `aes128-sha1-modp2048` (PFS).
    public static func parse(_ text: String) throws(ProposalError) -> ESPProposal {
        let tokens = try ProposalTokens(text, kind: .esp)
        guard !tokens.encryption.isEmpty else { throw .missing(proposal: text, what: "an encryption algorithm") }
        let aead = tokens.encryption.allSatisfy(\.isAEAD)
        let classic = tokens.encryption.allSatisfy { !$0.isAEAD }
        guard aead || classic else { throw .mixedAEAD(proposal: text) }
        if aead {
            guard tokens.integrity.isEmpty else { throw .integrityWithAEAD(proposal: text) }
        } else {
            guard !tokens.integrity.isEmpty else { throw .missing(proposal: text, what: "an integrity algorithm") }
        }
        return ESPProposal(encryption: tokens.encryption, integrity: tokens.integrity, dhGroups: tokens.dhGroups)
    }
}

/// Why a proposal string was refused; the message names the token and lists what is known.
public enum ProposalError: Error, Hashable, Sendable, CustomStringConvertible {
    case unknownAlgorithm(proposal: String, token: String, known: [String])
    case missing(proposal: String, what: String)
    case integrityWithAEAD(proposal: String)
    case mixedAEAD(proposal: String)
    case notAllowedHere(proposal: String, token: String, reason: String)

    public var description: String {
        switch self {
        case .unknownAlgorithm(let proposal, let token, let known):
            "unknown algorithm '\(token)' in proposal '\(proposal)'; known: \(known.joined(separator: ", "))"
        case .missing(let proposal, let what):
            "proposal '\(proposal)' has no \(what)"
        case .integrityWithAEAD(let proposal):
            "proposal '\(proposal)' combines an AEAD cipher with an integrity algorithm; AEAD carries its own"
        case .mixedAEAD(let proposal):
            "proposal '\(proposal)' mixes AEAD and non-AEAD ciphers; split it into two proposals"
        case .notAllowedHere(let proposal, let token, let reason):
            "'\(token)' in proposal '\(proposal)': \(reason)"
        }
    }

    /// Every keyword a proposal may contain, for error messages and documentation.
    public static var knownKeywords: [String] {
        EncryptionAlgorithm.allCases.map(\.rawValue) + IntegrityAlgorithm.allCases.map(\.rawValue)
            + PseudorandomFunction.allCases.map(\.rawValue) + DHGroup.allCases.map(\.keyword)
    }
}

private struct ProposalTokens {
    enum Kind { case ike, esp }
    var encryption: [EncryptionAlgorithm] = []
    var integrity: [IntegrityAlgorithm] = []
    var prf: [PseudorandomFunction] = []
    var dhGroups: [DHGroup] = []

    init(_ text: String, kind: Kind) throws(ProposalError) {
        let trimmed = text.lowercased()
        guard !trimmed.isEmpty else { throw .missing(proposal: text, what: "algorithms (it is empty)") }
        for token in trimmed.split(separator: "-", omittingEmptySubsequences: false).map(String.init) {
            if let value = EncryptionAlgorithm(rawValue: token) {
                encryption.append(value)
            } else if let value = IntegrityAlgorithm(rawValue: token) {
                integrity.append(value)
            } else if let value = PseudorandomFunction(rawValue: token) {
                guard kind == .ike else {
                    throw .notAllowedHere(proposal: text, token: token, reason: "a PRF belongs to IKE proposals, not ESP")
                }
                prf.append(value)
            } else if let value = DHGroup.allCases.first(where: { $0.keyword == token || (token == "curve25519" && $0 == .curve25519) }) {
                dhGroups.append(value)
            } else {
                throw .unknownAlgorithm(proposal: text, token: token, known: ProposalError.knownKeywords)
            }
        }
    }
}

extension Array where Element: Hashable {
    fileprivate func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
