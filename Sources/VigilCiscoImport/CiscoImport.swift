import VigilAddressing
import VigilAlgorithms

/// What `vigil import cisco` writes: the configuration, its secrets file, and every line not imported.
public struct CiscoImportResult: Hashable, Sendable {
    /// The Vigil configuration (YAML); its `global.secrets` names `secretsFileName` beside it.
    public var yaml: String
    /// The secrets file (YAML, `pre-shared-keys:`): write it with mode 0600.
    public var secrets: String
    /// In line order.
    public var unrecognized: [Unrecognized]
    /// Crypto map entries written.
    public var entries: Int

    /// Lines whose absence may make Vigil behave differently from the router.
    public var behaviourChanges: [Unrecognized] { unrecognized.filter(\.kind.changesBehaviour) }
}

/// Cisco IOS / IOS XE running-config in, Vigil configuration out. Pure: text in, text out, no file I/O.
///
/// Read: `crypto map NAME SEQ ipsec-isakmp` (`set peer X [default]` in order, the default peer first;
/// `set transform-set`, `set pfs`, `set security-association lifetime seconds` and `idle-time`, `match address`,
/// `set ikev2-profile`), the crypto map's interface (`crypto map NAME` under an `interface` with an `ip address`, or
/// `crypto map NAME local-address INTERFACE`: the listen addresses), extended ACLs (`permit ip` lines become traffic
/// pairs, source local, destination remote), `crypto isakmp policy`, `key`, `keepalive`, `identity`, `crypto ipsec
/// transform-set`, and IKEv2 `crypto ikev2 proposal`, `policy`, `keyring`, `profile` (with `dpd`), `crypto ikev2 dpd`.
/// An entry with `set ikev2-profile` is IKEv2, the others IKEv1.
public enum CiscoImport {
    public static func convert(_ text: String, secretsFileName: String = CiscoImportNames.secretsFile)
        throws(CiscoImportError) -> CiscoImportResult {
        var reader = CiscoReader()
        reader.read(ConfigText.parse(text))
        var translation = Translation(objects: reader.objects, unrecognized: reader.unrecognized)
        return try translation.run(secretsFileName: secretsFileName)
    }
}

/// One entry as it will be written.
struct ImportedEntry {
    struct Peer {
        var address: String
        var isDefault: Bool
        /// The identity the peer must present when it is not its address (IKEv2 keyring `identity`).
        var identity: String? = nil
    }

    var map: String
    var sequence: Int
    var line: Int
    var description: String?
    var version: String
    var peers: [Peer]
    var traffic: [(local: IPPrefix, remote: IPPrefix)]
    var ikeProposals: [String]
    var espProposals: [String]
    var pfs: DHGroup?
    var ikeLifetime: Int
    var childLifetime: Int?
    var idleTime: Int?
    var dpd: EntryDPD
    var localIdentity: String?
}

/// An entry's `dpd`: `global.dpd` (IKEv1: `crypto isakmp keepalive`), its own (IKEv2 profile `dpd` or `crypto ikev2
/// dpd`), or off (IKEv2 without either: Cisco sends no liveness checks then).
enum EntryDPD {
    case global
    case own(Keepalive)
    case off
}

struct Translation {
    var objects: CiscoObjects
    var unrecognized: [Unrecognized]
    private var secrets: [(name: String, key: String, line: Int)] = []
    private var usedTransformSets: Set<String> = []
    private var usedAccessLists: Set<String> = []
    private var usedProfiles: Set<String> = []
    private var usedKeyrings: Set<String> = []
    private var usedProposals: Set<String> = []
    private var usedISAKMPKeys: Set<Int> = []
    private var anyIKEv1 = false

    init(objects: CiscoObjects, unrecognized: [Unrecognized]) {
        self.objects = objects
        self.unrecognized = unrecognized
    }

    private mutating func report(_ line: Int, _ text: String, _ kind: Unrecognized.Kind, _ reason: String) {
        unrecognized.append(Unrecognized(line: line, text: text, reason: reason, kind: kind))
    }

    mutating func run(secretsFileName: String) throws(CiscoImportError) -> CiscoImportResult {
        let (listenByMap, listen) = listenAddresses()
        var entries: [ImportedEntry] = []
        for entry in objects.mapEntries.sorted(by: { ($0.map, $0.sequence) < ($1.map, $1.sequence) }) {
            guard let local = listenByMap[entry.map] else {
                report(entry.line, "crypto map \(entry.map) \(entry.sequence) ipsec-isakmp", .unused,
                       "crypto map \(entry.map) is applied to no interface with an address; the entry and its settings are not imported")
                continue
            }
            if let built = build(entry, local: local) { entries.append(built) }
        }
        reportUnused()
        guard !entries.isEmpty, let firstListen = listen.first else {
            throw CiscoImportError(
                message: listen.isEmpty
                    ? "no crypto map is applied to an interface with an IP address (`interface ...` / ` ip address A M` / ` crypto map NAME`), so there is nothing to listen on"
                    : "no crypto map entry could be imported",
                unrecognized: sorted(unrecognized))
        }
        let yaml = render(entries, listen: listen, identity: identity(firstListen), secretsFileName: secretsFileName)
        return CiscoImportResult(yaml: yaml, secrets: renderSecrets(), unrecognized: sorted(unrecognized), entries: entries.count)
    }

    private func sorted(_ list: [Unrecognized]) -> [Unrecognized] {
        list.enumerated().sorted { ($0.element.line, $0.offset) < ($1.element.line, $1.offset) }.map(\.element)
    }

    /// Each applied map's local address, and every listen address once in order of appearance.
    private mutating func listenAddresses() -> ([String: IPAddress], [IPAddress]) {
        var byMap: [String: IPAddress] = [:]
        var listen: [IPAddress] = []
        for interface in objects.interfaces {
            guard let map = interface.cryptoMap else { continue }
            var address = interface.address
            if let local = objects.localAddressInterface[map.name] {
                address = objects.interfaces.first(where: { $0.name.lowercased() == local.interface.lowercased() })?.address
                if address == nil {
                    report(local.line, "crypto map \(map.name) local-address \(local.interface)", .malformed,
                           "interface \(local.interface) has no `ip address A M`")
                }
            }
            guard let address else {
                report(map.line, "crypto map \(map.name)", .unsupported,
                       "interface \(interface.name) has no static `ip address`: Vigil needs an address to listen on")
                continue
            }
            if byMap[map.name] == nil { byMap[map.name] = address }
            if !listen.contains(address) { listen.append(address) }
        }
        return (byMap, listen)
    }

    /// Cisco's `crypto isakmp identity address` (the default) or `hostname` (the FQDN of `hostname` and
    /// `ip domain name`).
    private mutating func identity(_ address: IPAddress) -> String {
        guard let line = objects.isakmpIdentityHostnameLine else { return address.description }
        guard let host = objects.hostname, let domain = objects.domainName else {
            report(line, "crypto isakmp identity hostname", .malformed,
                   "needs `hostname` and `ip domain name` to make an FQDN; the address \(address) is used")
            return address.description
        }
        return "@\(host).\(domain)"
    }

    // MARK: one entry

    private mutating func build(_ entry: MapEntry, local: IPAddress) -> ImportedEntry? {
        let header = "crypto map \(entry.map) \(entry.sequence) ipsec-isakmp"
        func refuse(_ reason: String) -> ImportedEntry? {
            report(entry.line, header, .unsupported, reason + "; the entry is not imported")
            return nil
        }
        guard entry.map.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
            return refuse("Vigil's crypto map names are letters, digits, '-', '_' and '.'")
        }
        let peers = orderedPeers(entry)
        guard !peers.isEmpty else { return refuse("no `set peer`") }
        guard let acl = entry.accessList else { return refuse("no `match address`") }
        usedAccessLists.insert(acl.name)
        guard let list = objects.accessLists[acl.name] else {
            return refuse("access list \(acl.name) (line \(acl.line)) is not defined")
        }
        guard !list.permits.isEmpty else { return refuse("access list \(acl.name) has no `permit ip` line Vigil can take") }

        var esp: [String] = []
        for (name, line) in entry.transformSets {
            usedTransformSets.insert(name)
            guard let set = objects.transformSets[name] else {
                report(line, "set transform-set \(name)", .malformed, "transform set \(name) is not defined")
                continue
            }
            if let proposal = set.proposal { esp.append(proposal.description) }
        }
        guard !esp.isEmpty else { return refuse("no transform set Vigil can take (`set transform-set`; Cisco's default sets are not imported)") }

        var imported = ImportedEntry(
            map: entry.map, sequence: entry.sequence, line: entry.line, description: entry.description, version: "v1",
            peers: peers, traffic: list.permits.map { ($0.local, $0.remote) }, ikeProposals: [], espProposals: esp.uniqued,
            pfs: entry.pfs?.group, ikeLifetime: CiscoDefaults.ikeLifetimeSeconds,
            childLifetime: entry.lifetime ?? objects.globalChildLifetime, idleTime: nil, dpd: .global, localIdentity: nil)
        if let idle = entry.idleTime ?? objects.globalIdleTime {
            if peers.first?.isDefault == true {
                imported.idleTime = idle.seconds
            } else {
                report(idle.line, "idle-time \(idle.seconds)", .unsupported,
                       "without `set peer X default` Cisco's idle-time deletes idle SAs, which Vigil does not do; Vigil's idle-time returns to the default peer")
            }
        }
        if let profileName = entry.ikev2Profile {
            guard fillIKEv2(&imported, profile: profileName, local: local, entry: entry) else { return nil }
        } else {
            guard fillIKEv1(&imported, entry: entry) else { return nil }
        }
        return imported
    }

    /// `set peer X default` first, then the others in the order written.
    private mutating func orderedPeers(_ entry: MapEntry) -> [ImportedEntry.Peer] {
        var result: [ImportedEntry.Peer] = []
        var defaultPeer: ImportedEntry.Peer?
        for peer in entry.peers {
            if result.contains(where: { $0.address == peer.address }) || defaultPeer?.address == peer.address {
                report(peer.line, "set peer \(peer.address)", .malformed, "peer \(peer.address) is listed twice in this entry")
                continue
            }
            if peer.isDefault {
                if let earlier = defaultPeer {
                    report(peer.line, "set peer \(peer.address) default", .malformed,
                           "a second default peer (\(earlier.address) is the default); listed as an ordinary peer")
                    result.append(.init(address: peer.address, isDefault: false))
                } else {
                    defaultPeer = .init(address: peer.address, isDefault: true)
                }
                continue
            }
            result.append(.init(address: peer.address, isDefault: false))
        }
        return (defaultPeer.map { [$0] } ?? []) + result
    }

    private mutating func fillIKEv1(_ entry: inout ImportedEntry, entry source: MapEntry) -> Bool {
        anyIKEv1 = true
        let policies = objects.isakmpPolicies.sorted { $0.priority < $1.priority }.filter { $0.proposal != nil }
        entry.ikeProposals = policies.compactMap { $0.proposal?.description }.uniqued
        guard !entry.ikeProposals.isEmpty else {
            report(source.line, "crypto map \(source.map) \(source.sequence) ipsec-isakmp", .unsupported,
                   "IKEv1 needs a `crypto isakmp policy` Vigil can take; the entry is not imported")
            return false
        }
        if let first = policies.first {
            entry.ikeLifetime = first.lifetime?.seconds ?? CiscoDefaults.ikeLifetimeSeconds
        }
        for peer in source.peers {
            guard let key = isakmpKey(for: peer.address) else {
                report(peer.line, "set peer \(peer.address)", .malformed,
                       "no `crypto isakmp key KEY address \(peer.address)` for this IKEv1 peer: add its key to the secrets file")
                continue
            }
            addSecret(peer.address, key.key, line: key.line)
        }
        return true
    }

    /// The most specific `crypto isakmp key` for a peer: its host name, or the longest address prefix holding it.
    private mutating func isakmpKey(for peer: String) -> ISAKMPKey? {
        let address = IPAddress(peer)
        var best: (key: ISAKMPKey, length: Int)?
        for key in objects.isakmpKeys {
            switch key.match {
            case .hostname(let name) where address == nil && name.lowercased() == peer.lowercased():
                best = (key, Int.max)
            case .address(let prefix) where address.map(prefix.contains) == true:
                if prefix.length > best?.length ?? -1 { best = (key, prefix.length) }
            case .hostname, .address:
                continue
            }
        }
        if let best { usedISAKMPKeys.insert(best.key.line) }
        return best?.key
    }

    private mutating func fillIKEv2(_ entry: inout ImportedEntry, profile name: (name: String, line: Int), local: IPAddress,
                                    entry source: MapEntry) -> Bool {
        entry.version = "v2"
        usedProfiles.insert(name.name)
        let header = "crypto map \(source.map) \(source.sequence) ipsec-isakmp"
        guard let profile = objects.profiles[name.name] else {
            report(name.line, "set ikev2-profile \(name.name)", .malformed, "IKEv2 profile \(name.name) is not defined")
            report(source.line, header, .unsupported, "its IKEv2 profile is missing; the entry is not imported")
            return false
        }
        var proposals: [String] = []
        for policy in objects.ikev2Policies where policy.localAddresses.isEmpty || policy.localAddresses.contains(local) {
            for (proposalName, line) in policy.proposals {
                usedProposals.insert(policy.name)
                usedProposals.insert("proposal " + proposalName)
                guard let proposal = objects.ikev2Proposals[proposalName] else {
                    report(line, "proposal \(proposalName)", .malformed, "IKEv2 proposal \(proposalName) is not defined")
                    continue
                }
                if let built = proposal.proposal { proposals.append(built.description) }
            }
        }
        entry.ikeProposals = proposals.uniqued
        guard !entry.ikeProposals.isEmpty else {
            report(source.line, header, .unsupported,
                   "no `crypto ikev2 policy` for \(local) names a proposal Vigil can take (Cisco's default proposal is not imported); the entry is not imported")
            return false
        }
        entry.ikeLifetime = profile.lifetime ?? CiscoDefaults.ikeLifetimeSeconds
        entry.localIdentity = profile.localIdentity
        entry.dpd = (profile.dpd ?? objects.ikev2DPD).map(EntryDPD.own) ?? .off
        let keyring = profile.keyring.flatMap { objects.keyrings[$0.name] }
        if let named = profile.keyring {
            usedKeyrings.insert(named.name)
            if keyring == nil { report(named.line, "keyring local \(named.name)", .malformed, "keyring \(named.name) is not defined") }
        }
        for peer in source.peers {
            let address = IPAddress(peer.address)
            let match = keyring?.peers
                .filter { candidate in
                    if let address { return candidate.addresses.contains { $0.contains(address) } }
                    return candidate.hostname?.lowercased() == peer.address.lowercased()
                }
                .max { ($0.addresses.map(\.length).max() ?? 0) < ($1.addresses.map(\.length).max() ?? 0) }
            guard let match, let key = match.key else {
                report(peer.line, "set peer \(peer.address)", .malformed,
                       "no `pre-shared-key` for this peer in the profile's keyring: add its key to the secrets file")
                continue
            }
            // Vigil looks a peer's key up by its identity when it has one of its own.
            addSecret(match.identity ?? peer.address, key, line: match.line)
            if let identity = match.identity, let index = entry.peers.firstIndex(where: { $0.address == peer.address }) {
                entry.peers[index].identity = identity
            }
        }
        return true
    }

    private mutating func addSecret(_ name: String, _ key: String, line: Int) {
        if let existing = secrets.first(where: { $0.name == name }) {
            if existing.key != key {
                report(line, "pre-shared key for \(name)", .unsupported,
                       "a different key for \(name) than at line \(existing.line); Vigil holds one key per peer, the first is used")
            }
            return
        }
        secrets.append((name, key, line))
    }

    private mutating func reportUnused() {
        for set in objects.transformSets.values.sorted(by: { $0.line < $1.line }) where !usedTransformSets.contains(set.name) {
            report(set.line, "crypto ipsec transform-set \(set.name)", .unused, "no imported crypto map entry sets it")
        }
        for list in objects.accessLists.values.sorted(by: { $0.line < $1.line }) where !usedAccessLists.contains(list.name) {
            report(list.line, "access list \(list.name)", .unused, "no crypto map matches it (not a crypto ACL); not read")
        }
        for profile in objects.profiles.values.sorted(by: { $0.line < $1.line }) where !usedProfiles.contains(profile.name) {
            report(profile.line, "crypto ikev2 profile \(profile.name)", .unused, "no imported crypto map entry sets it")
        }
        for keyring in objects.keyrings.values.sorted(by: { $0.line < $1.line }) where !usedKeyrings.contains(keyring.name) {
            report(keyring.line, "crypto ikev2 keyring \(keyring.name)", .unused, "no imported IKEv2 profile uses it")
        }
        for policy in objects.ikev2Policies where !usedProposals.contains(policy.name) {
            report(policy.line, "crypto ikev2 policy \(policy.name)", .unused, "no imported IKEv2 entry's address matches it")
        }
        for proposal in objects.ikev2Proposals.values.sorted(by: { $0.line < $1.line }) where !usedProposals.contains("proposal " + proposal.name) {
            report(proposal.line, "crypto ikev2 proposal \(proposal.name)", .unused, "no imported IKEv2 policy names it")
        }
        for key in objects.isakmpKeys where !usedISAKMPKeys.contains(key.line) {
            report(key.line, "crypto isakmp key", .unused, "no imported IKEv1 peer takes this key; it is not written")
        }
        if !anyIKEv1 {
            for policy in objects.isakmpPolicies {
                report(policy.line, "crypto isakmp policy \(policy.priority)", .unused, "no IKEv1 crypto map entry was imported")
            }
            if let keepalive = objects.keepalive {
                report(keepalive.line, "crypto isakmp keepalive", .unused, "no IKEv1 crypto map entry was imported")
            }
        } else {
            let policies = objects.isakmpPolicies.sorted { $0.priority < $1.priority }.filter { $0.proposal != nil }
            let chosen = policies.first?.lifetime?.seconds ?? CiscoDefaults.ikeLifetimeSeconds
            for policy in policies.dropFirst() where (policy.lifetime?.seconds ?? CiscoDefaults.ikeLifetimeSeconds) != chosen {
                let line = policy.lifetime?.line ?? policy.line
                report(line, "crypto isakmp policy \(policy.priority) lifetime", .unsupported,
                       "Vigil has one IKE lifetime per entry: the first policy's \(chosen) s is used")
            }
        }
    }

    // MARK: rendering

    private func render(_ entries: [ImportedEntry], listen: [IPAddress], identity: String, secretsFileName: String) -> String {
        var out: [String] = []
        let changes = unrecognized.filter(\.kind.changesBehaviour).count
        out.append("# Imported from a Cisco IOS configuration by `vigil import cisco`.")
        if changes > 0 {
            out.append("# \(changes) line\(changes == 1 ? "" : "s") of it had no Vigil equivalent (the import listed them): check before use.")
        }
        out.append("global:")
        out.append("  identity: \(YAMLText.scalar(identity))")
        out.append("  listen: \(YAMLText.list(listen.map(\.description)))")
        out.append("  secrets: \(YAMLText.scalar(secretsFileName))")
        out.append("  dpd: \(dpdText(entries.contains { $0.version == "v1" } ? objects.keepalive : nil))")
        out.append("crypto-maps:")
        var currentMap: String?
        for entry in entries {
            if entry.map != currentMap {
                out.append("  \(YAMLText.scalar(entry.map)):")
                out.append("    entries:")
                currentMap = entry.map
            }
            out.append("      # crypto map \(entry.map) \(entry.sequence) (line \(entry.line))"
                       + (entry.description.map { ": " + YAMLText.comment($0) } ?? ""))
            out.append("      - sequence: \(entry.sequence)")
            out.append("        ike-version: \(entry.version)")
            out.append("        peers:")
            for peer in entry.peers {
                if peer.isDefault || peer.identity != nil {
                    out.append("          - address: \(YAMLText.scalar(peer.address))")
                    if let identity = peer.identity { out.append("            identity: \(YAMLText.scalar(identity))") }
                    if peer.isDefault { out.append("            default: true") }
                } else {
                    out.append("          - \(YAMLText.scalar(peer.address))")
                }
            }
            out.append("        traffic:")
            for pair in entry.traffic {
                out.append("          - { local: \(YAMLText.scalar(pair.local.description)), remote: \(YAMLText.scalar(pair.remote.description)) }")
            }
            out.append("        ike-proposals: \(YAMLText.list(entry.ikeProposals))")
            out.append("        esp-proposals: \(YAMLText.list(entry.espProposals))")
            if let pfs = entry.pfs { out.append("        pfs-group: \(pfs.keyword)") }
            out.append("        ike-lifetime: \(YAMLText.duration(seconds: entry.ikeLifetime))")
            if let lifetime = entry.childLifetime { out.append("        child-lifetime: \(YAMLText.duration(seconds: lifetime))") }
            if let idle = entry.idleTime { out.append("        idle-time: \(YAMLText.duration(seconds: idle))") }
            switch entry.dpd {
            case .global: break
            case .own(let keepalive): out.append("        dpd: \(dpdText(keepalive))")
            case .off: out.append("        dpd: \(dpdText(nil))")
            }
            if let identity = entry.localIdentity { out.append("        local-identity: \(YAMLText.scalar(identity))") }
        }
        return out.joined(separator: "\n") + "\n"
    }

    /// Cisco keepalive words as a Vigil DPD mapping; none is `off` (Cisco sends no DPD without keepalive or dpd).
    private func dpdText(_ keepalive: Keepalive?) -> String {
        guard let keepalive else { return "{ mode: off }" }
        return "{ mode: \(keepalive.mode.rawValue), interval: \(YAMLText.duration(seconds: keepalive.interval)), retry: \(YAMLText.duration(seconds: keepalive.retry)) }"
    }

    private func renderSecrets() -> String {
        var out = ["# Pre-shared keys imported from a Cisco IOS configuration by `vigil import cisco`. Keep this file mode 0600.",
                   "pre-shared-keys:"]
        if secrets.isEmpty { out[1] = "pre-shared-keys: {}" }
        for secret in secrets {
            out.append("  \(YAMLText.quoted(secret.name)): \(YAMLText.quoted(secret.key))")
        }
        return out.joined(separator: "\n") + "\n"
    }
}

extension Array where Element: Hashable {
    var uniqued: [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
