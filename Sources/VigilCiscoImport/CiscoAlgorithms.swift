import VigilAddressing
import VigilAlgorithms

/// Why a Cisco value has no Vigil equivalent.
struct Refusal: Error, Hashable, Sendable {
    var reason: String
}

/// Cisco's algorithm keywords onto Vigil's (strongSwan's) proposal vocabulary.
enum CiscoAlgorithms {
    static let groupsAllowed = "Vigil's DH groups are 14 (modp2048), 15 (modp3072), 19 (ecp256), 20 (ecp384), 31 (x25519)"

    /// `group 14` / `group14` / IKEv2 `group 19 14`: IANA numbers, as Vigil's `DHGroup` raw values.
    static func group(_ word: String) -> DHGroup? {
        UInt16(word).flatMap(DHGroup.init(rawValue:))
    }

    /// ISAKMP `hash sha|sha256|sha384|sha512`, IKEv2 `integrity sha1|sha256|...`.
    static func integrity(_ word: String) -> IntegrityAlgorithm? {
        switch word {
        case "sha", "sha1": .hmacSHA1_96
        case "sha256": .hmacSHA2_256_128
        case "sha384": .hmacSHA2_384_192
        case "sha512": .hmacSHA2_512_256
        default: nil
        }
    }

    /// ISAKMP `encryption aes [128|256]` (192, des, 3des have no Vigil equivalent).
    static func isakmpEncryption(_ words: [String]) -> EncryptionAlgorithm? {
        switch words.map({ $0.lowercased() }) {
        case ["aes"], ["aes", "128"]: .aes128cbc
        case ["aes", "256"]: .aes256cbc
        default: nil
        }
    }

    /// `crypto ipsec transform-set NAME T1 [T2]`: an ESP cipher and, unless it is GCM, an ESP HMAC.
    static func espTransforms(_ words: [String]) -> Result<ESPProposal, Refusal> {
        var encryption: EncryptionAlgorithm?
        var integrity: IntegrityAlgorithm?
        var rest = words.map { $0.lowercased() }[...]
        while let transform = rest.popFirst() {
            let bits = rest.first.flatMap(Int.init)
            if bits != nil { rest = rest.dropFirst() }
            switch (transform, bits ?? CiscoDefaults.aesKeyBits) {
            case ("esp-aes", 128): encryption = .aes128cbc
            case ("esp-aes", 256): encryption = .aes256cbc
            case ("esp-gcm", 128): encryption = .aes128gcm16
            case ("esp-gcm", 256): encryption = .aes256gcm16
            case ("esp-sha-hmac", _) where bits == nil: integrity = .hmacSHA1_96
            case ("esp-sha256-hmac", _) where bits == nil: integrity = .hmacSHA2_256_128
            case ("esp-sha384-hmac", _) where bits == nil: integrity = .hmacSHA2_384_192
            case ("esp-sha512-hmac", _) where bits == nil: integrity = .hmacSHA2_512_256
            default:
                return .failure(Refusal(reason: "transform '\(transform)\(bits.map { " \($0)" } ?? "")' has no Vigil equivalent; Vigil's are esp-aes [128|256], esp-gcm [128|256], esp-sha-hmac, esp-sha256-hmac, esp-sha384-hmac, esp-sha512-hmac"))
            }
        }
        guard let encryption else { return .failure(Refusal(reason: "no ESP cipher (esp-aes or esp-gcm); Vigil has no integrity-only ESP")) }
        if encryption.isAEAD {
            guard integrity == nil else { return .failure(Refusal(reason: "esp-gcm carries its own integrity; an HMAC beside it has no Vigil equivalent")) }
            return .success(ESPProposal(encryption: [encryption], integrity: [], dhGroups: []))
        }
        guard let integrity else { return .failure(Refusal(reason: "esp-aes without an HMAC (esp-sha256-hmac, ...) has no Vigil equivalent")) }
        return .success(ESPProposal(encryption: [encryption], integrity: [integrity], dhGroups: []))
    }

    /// `crypto ikev2 proposal NAME` with `encryption`, `integrity`, `prf`, `group` lines, each listing several values:
    /// one Vigil IKE proposal with lists (strongSwan notation: `aes256-aes128-sha256-ecp256-modp2048`).
    struct IKEv2Choice {
        var encryption: [EncryptionAlgorithm] = []
        var integrity: [IntegrityAlgorithm] = []
        var prf: [PseudorandomFunction] = []
        var groups: [DHGroup] = []

        /// nil when every value was taken; otherwise why not (the known values are kept).
        mutating func addEncryption(_ values: [String]) -> String? {
            var refused: [String] = []
            for value in values {
                switch value {
                case "aes-cbc-128": encryption.append(.aes128cbc)
                case "aes-cbc-256": encryption.append(.aes256cbc)
                case "aes-gcm-128": encryption.append(.aes128gcm16)
                case "aes-gcm-256": encryption.append(.aes256gcm16)
                default: refused.append(value)
                }
            }
            return refused.isEmpty ? nil : "\(refused.joined(separator: ", ")) left out: Vigil's IKEv2 ciphers are aes-cbc-128, aes-cbc-256, aes-gcm-128, aes-gcm-256"
        }

        mutating func addIntegrity(_ values: [String]) -> String? {
            var refused: [String] = []
            for value in values {
                if let algorithm = CiscoAlgorithms.integrity(value) { integrity.append(algorithm) } else { refused.append(value) }
            }
            return refused.isEmpty ? nil : "\(refused.joined(separator: ", ")) left out: Vigil's integrity algorithms are sha1, sha256, sha384, sha512"
        }

        mutating func addPRF(_ values: [String]) -> String? {
            var refused: [String] = []
            for value in values {
                if let algorithm = CiscoAlgorithms.integrity(value) { prf.append(algorithm.impliedPRF) } else { refused.append(value) }
            }
            return refused.isEmpty ? nil : "\(refused.joined(separator: ", ")) left out: Vigil's PRFs are sha1, sha256, sha384, sha512"
        }

        mutating func addGroups(_ values: [String]) -> String? {
            var refused: [String] = []
            for value in values {
                if let group = CiscoAlgorithms.group(value) { groups.append(group) } else { refused.append("group \(value)") }
            }
            return refused.isEmpty ? nil : "\(refused.joined(separator: ", ")) left out: \(CiscoAlgorithms.groupsAllowed)"
        }

        var proposal: Result<IKEProposal, Refusal> {
            guard !encryption.isEmpty else { return .failure(Refusal(reason: "no cipher Vigil knows: the proposal is left out")) }
            guard !groups.isEmpty else { return .failure(Refusal(reason: "no DH group Vigil knows: the proposal is left out")) }
            let aead = encryption.allSatisfy(\.isAEAD)
            guard aead || encryption.allSatisfy({ !$0.isAEAD }) else {
                return .failure(Refusal(reason: "mixes GCM and CBC ciphers, which Cisco refuses too: the proposal is left out"))
            }
            if aead {
                guard integrity.isEmpty else { return .failure(Refusal(reason: "a GCM proposal with integrity algorithms: the proposal is left out")) }
                guard !prf.isEmpty else { return .failure(Refusal(reason: "a GCM proposal needs a `prf` line: the proposal is left out")) }
                return .success(IKEProposal(encryption: encryption, integrity: [], prf: prf, dhGroups: groups))
            }
            guard !integrity.isEmpty else { return .failure(Refusal(reason: "no integrity algorithm Vigil knows: the proposal is left out")) }
            return .success(IKEProposal(encryption: encryption, integrity: integrity, prf: prf, dhGroups: groups))
        }
    }
}

/// Cisco's address forms: `host A`, `any`, `A WILDCARD` (ACLs), `A [MASK]` (keys, keyrings).
enum CiscoAddresses {
    /// One ACL operand from the front of `words`: `any`, `host A`, or `A WILDCARD` with a contiguous wildcard.
    static func aclOperand(_ words: inout ArraySlice<String>) -> Result<IPPrefix, Refusal> {
        guard let first = words.popFirst() else { return .failure(Refusal(reason: "an address is missing")) }
        switch first.lowercased() {
        case "any":
            return .success(IPPrefix(address: .v4(0), length: 0))
        case "host":
            guard let text = words.popFirst(), let address = IPAddress(text) else {
                return .failure(Refusal(reason: "`host` needs an address"))
            }
            return .success(IPPrefix(address: address, length: address.family.bitWidth))
        case "object-group", "addrgroup", "interface":
            return .failure(Refusal(reason: "`\(first)` in a crypto ACL has no Vigil equivalent; write the subnets out"))
        default:
            guard let address = IPAddress(first), case .v4 = address else {
                return .failure(Refusal(reason: "'\(first)' is not an IPv4 address, host or any"))
            }
            guard let text = words.popFirst(), case .v4(let wildcard)? = IPAddress(text) else {
                return .failure(Refusal(reason: "'\(first)' needs a wildcard mask"))
            }
            guard let length = prefixLength(wildcard: wildcard) else {
                return .failure(Refusal(reason: "wildcard mask \(text) is not contiguous, so it is no subnet; Vigil protects subnets (write each subnet as its own line)"))
            }
            return .success(IPPrefix(address: address, length: length))
        }
    }

    /// `A` alone (a host) or `A MASK` with a contiguous network mask (`0.0.0.0 0.0.0.0` is every address).
    static func hostOrNetwork(_ words: [String]) -> IPPrefix? {
        guard let first = words.first, let address = IPAddress(first) else { return nil }
        switch words.count {
        case 1:
            return IPPrefix(address: address, length: address.family.bitWidth)
        case 2:
            guard case .v4(let mask)? = IPAddress(words[1]), let length = prefixLength(wildcard: ~mask) else { return nil }
            return IPPrefix(address: address, length: length)
        default:
            return nil
        }
    }

    /// A wildcard (inverse) mask's prefix length: its set bits must be the low ones (`0.0.255.255` is /16).
    static func prefixLength(wildcard: UInt32) -> Int? {
        let network = ~wildcard
        guard network == 0 || (network | (network - 1)) == UInt32.max else { return nil }
        return network.nonzeroBitCount
    }
}
