import VigilAddressing
import VigilAlgorithms

/// Reads the line tree into `CiscoObjects`, reporting every line it does not take.
struct CiscoReader {
    private(set) var objects = CiscoObjects()
    private(set) var unrecognized: [Unrecognized] = []

    mutating func report(_ line: ConfigLine, _ kind: Unrecognized.Kind, _ reason: String) {
        unrecognized.append(Unrecognized(line: line.number, text: line.text, reason: reason, kind: kind))
    }

    /// The line and everything under it.
    mutating func reportAll(_ line: ConfigLine, _ kind: Unrecognized.Kind, _ reason: String) {
        for each in line.allLines { report(each, kind, reason) }
    }

    mutating func read(_ parsed: ConfigText.Parsed) {
        for banner in parsed.banners {
            unrecognized.append(Unrecognized(line: banner.line, text: banner.text, reason: "not an IPsec command (\(banner.lineCount) lines); not read", kind: .outsideIPsec))
        }
        for line in parsed.roots { readTop(line) }
    }

    private mutating func readTop(_ line: ConfigLine) {
        if line.starts(with: "hostname"), line.words.count == 2 {
            objects.hostname = line.words[1]
            reportChildren(line)
        } else if line.starts(with: "ip", "domain", "name") || line.starts(with: "ip", "domain-name") {
            guard let name = line.words.last, line.words.count == (line.keyword(1) == "domain" ? 4 : 3) else {
                return report(line, .malformed, "expected `ip domain name NAME`")
            }
            objects.domainName = name
        } else if line.starts(with: "crypto", "isakmp", "policy") {
            readISAKMPPolicy(line)
        } else if line.starts(with: "crypto", "isakmp", "key") {
            readISAKMPKey(line)
        } else if line.starts(with: "crypto", "isakmp", "keepalive") {
            objects.keepalive = readKeepalive(line, arguments: Array(line.words.dropFirst(3)))
        } else if line.starts(with: "crypto", "isakmp", "identity") {
            switch line.keyword(3) {
            case "address": objects.isakmpIdentityHostnameLine = nil
            case "hostname": objects.isakmpIdentityHostnameLine = line.number
            default: report(line, .unsupported, "only `crypto isakmp identity address` and `hostname` have a Vigil equivalent")
            }
        } else if line.starts(with: "crypto", "ipsec", "transform-set") {
            readTransformSet(line)
        } else if line.starts(with: "crypto", "ipsec", "security-association", "lifetime") {
            guard line.keyword(4) == "seconds" else {
                return report(line, .unsupported, "Vigil has no volume lifetime; only `lifetime seconds` is imported")
            }
            objects.globalChildLifetime = seconds(line, word: 5, in: CiscoDefaults.childLifetimeRange)
        } else if line.starts(with: "crypto", "ipsec", "security-association", "idle-time") {
            if let value = seconds(line, word: 4, in: CiscoDefaults.idleTimeRange) { objects.globalIdleTime = (value, line.number) }
        } else if line.starts(with: "crypto", "map"), line.keyword(3) == "local-address", line.words.count == 5 {
            objects.localAddressInterface[line.words[2]] = (line.words[4], line.number)
        } else if line.starts(with: "crypto", "map") {
            readMapEntry(line)
        } else if line.starts(with: "crypto", "ikev2", "proposal") {
            readIKEv2Proposal(line)
        } else if line.starts(with: "crypto", "ikev2", "policy") {
            readIKEv2Policy(line)
        } else if line.starts(with: "crypto", "ikev2", "keyring") {
            readKeyring(line)
        } else if line.starts(with: "crypto", "ikev2", "profile") {
            readProfile(line)
        } else if line.starts(with: "crypto", "ikev2", "dpd") {
            objects.ikev2DPD = readKeepalive(line, arguments: Array(line.words.dropFirst(3)))
        } else if line.starts(with: "ip", "access-list", "extended") {
            readNamedAccessList(line)
        } else if line.starts(with: "access-list") {
            readNumberedAccessList(line)
        } else if line.starts(with: "interface") {
            readInterface(line)
        } else if line.keyword(0) == "crypto" {
            reportAll(line, .unsupported, "this crypto command has no Vigil equivalent")
        } else if line.starts(with: "ipv6", "access-list") || line.starts(with: "crypto", "dynamic-map") {
            reportAll(line, .unsupported, "not imported")
        } else {
            reportAll(line, .outsideIPsec, "not an IPsec command; not read")
        }
    }

    private mutating func reportChildren(_ line: ConfigLine) {
        for child in line.children { reportAll(child, .malformed, "unexpected under `\(line.text)`") }
    }

    // MARK: numbers

    /// The word at `word` as seconds within Cisco's `range`; reported and nil otherwise.
    private mutating func seconds(_ line: ConfigLine, word: Int, in range: ClosedRange<Int>) -> Int? {
        guard word < line.words.count, let value = Int(line.words[word]) else {
            report(line, .malformed, "expected a number of seconds as word \(word + 1)")
            return nil
        }
        guard range.contains(value) else {
            report(line, .malformed, "\(value) s is outside Cisco's range \(range.lowerBound)-\(range.upperBound) s")
            return nil
        }
        return value
    }

    /// `SECONDS [RETRY] [periodic|on-demand]` (`crypto isakmp keepalive`, `crypto ikev2 dpd`, profile `dpd`).
    private mutating func readKeepalive(_ line: ConfigLine, arguments: [String]) -> Keepalive? {
        var rest = arguments[...]
        guard let first = rest.popFirst(), let interval = Int(first) else {
            report(line, .malformed, "expected `SECONDS [RETRY-SECONDS] [periodic|on-demand]`")
            return nil
        }
        var retry = CiscoDefaults.keepaliveRetrySeconds
        if let next = rest.first, let value = Int(next) {
            retry = value
            rest = rest.dropFirst()
        }
        var mode = Keepalive.Mode.onDemand
        if let word = rest.popFirst() {
            guard let chosen = Keepalive.Mode(rawValue: word.lowercased()) else {
                report(line, .malformed, "'\(word)' is not periodic or on-demand")
                return nil
            }
            mode = chosen
        }
        guard rest.isEmpty else {
            report(line, .malformed, "unexpected '\(rest.joined(separator: " "))'")
            return nil
        }
        guard CiscoDefaults.keepaliveSeconds.contains(interval), CiscoDefaults.keepaliveRetrySecondsRange.contains(retry) else {
            let (intervals, retries) = (CiscoDefaults.keepaliveSeconds, CiscoDefaults.keepaliveRetrySecondsRange)
            report(line, .malformed, "interval \(interval) s or retry \(retry) s is outside Cisco's ranges (\(intervals.lowerBound)-\(intervals.upperBound) s, \(retries.lowerBound)-\(retries.upperBound) s)")
            return nil
        }
        guard retry <= interval else {
            report(line, .unsupported, "Vigil needs the retry (\(retry) s) no longer than the interval (\(interval) s)")
            return nil
        }
        return Keepalive(line: line.number, interval: interval, retry: retry, mode: mode)
    }

    // MARK: ISAKMP (IKEv1)

    private mutating func readISAKMPPolicy(_ line: ConfigLine) {
        guard line.words.count == 4, let priority = Int(line.words[3]), CiscoDefaults.isakmpPriority.contains(priority) else {
            let range = CiscoDefaults.isakmpPriority
            return reportAll(line, .malformed, "expected `crypto isakmp policy PRIORITY` with a priority of \(range.lowerBound)-\(range.upperBound)")
        }
        var encryption: EncryptionAlgorithm?
        var hash: IntegrityAlgorithm? = .hmacSHA1_96   // Cisco's default hash: sha
        var group: DHGroup?
        var preShared = false
        var usable = true
        var policy = ISAKMPPolicy(priority: priority, line: line.number)
        for child in line.children {
            switch child.keyword(0) {
            case "encryption", "encr":
                if let algorithm = CiscoAlgorithms.isakmpEncryption(Array(child.words.dropFirst())) {
                    encryption = algorithm
                } else {
                    usable = false
                    report(child, .unsupported, "Vigil's IKEv1 ciphers are aes (128) and aes 256")
                }
            case "hash":
                if let algorithm = CiscoAlgorithms.integrity(child.keyword(1)), child.words.count == 2 {
                    hash = algorithm
                } else {
                    usable = false
                    report(child, .unsupported, "Vigil's hashes are sha, sha256, sha384, sha512")
                }
            case "group":
                if let chosen = CiscoAlgorithms.group(child.keyword(1)), child.words.count == 2 {
                    group = chosen
                } else {
                    usable = false
                    report(child, .unsupported, CiscoAlgorithms.groupsAllowed)
                }
            case "authentication":
                if child.keyword(1) == "pre-share", child.words.count == 2 {
                    preShared = true
                } else {
                    usable = false
                    report(child, .unsupported, "Vigil authenticates with pre-shared keys only (authentication pre-share)")
                }
            case "lifetime":
                if let value = seconds(child, word: 1, in: CiscoDefaults.ikeLifetimeRange) { policy.lifetime = (value, child.number) }
            default:
                report(child, .malformed, "not an ISAKMP policy setting the import knows")
            }
        }
        if encryption == nil, usable {
            usable = false
            report(line, .unsupported, "no `encryption` line: Cisco's default (des) has no Vigil equivalent")
        }
        if group == nil, usable {
            usable = false
            report(line, .unsupported, "no `group` line: Cisco's default (group 1) has no Vigil equivalent")
        }
        if !preShared, usable {
            usable = false
            report(line, .unsupported, "no `authentication pre-share`: Cisco's default (rsa-sig) has no Vigil equivalent")
        }
        if usable, let encryption, let hash, let group {
            policy.proposal = IKEProposal(encryption: [encryption], integrity: [hash], prf: [], dhGroups: [group])   // the PRF follows the hash
        }
        objects.isakmpPolicies.append(policy)
    }

    /// `crypto isakmp key [0|6] KEY address ADDRESS [MASK] [no-xauth]` or `... hostname NAME [no-xauth]`.
    private mutating func readISAKMPKey(_ line: ConfigLine) {
        var words = Array(line.words.dropFirst(3))
        if words.last?.lowercased() == "no-xauth" { words.removeLast() }
        if let first = words.first, first == "0" || first == "6" {
            guard first == "0" else {
                return report(line, .unsupported, "an encrypted key (type 6) cannot be read back; write it in clear text (type 0)")
            }
            words.removeFirst()
        }
        guard words.count >= 3 else { return report(line, .malformed, "expected `crypto isakmp key KEY address ADDRESS [MASK]`") }
        let key = words[0]
        switch words[1].lowercased() {
        case "address":
            guard let prefix = CiscoAddresses.hostOrNetwork(Array(words[2...])) else {
                return report(line, .malformed, "expected `address ADDRESS [MASK]` with a contiguous mask")
            }
            objects.isakmpKeys.append(ISAKMPKey(line: line.number, key: key, match: .address(prefix)))
        case "hostname":
            guard words.count == 3 else { return report(line, .malformed, "expected `hostname NAME`") }
            objects.isakmpKeys.append(ISAKMPKey(line: line.number, key: key, match: .hostname(words[2])))
        default:
            report(line, .malformed, "expected `address` or `hostname` after the key")
        }
    }

    // MARK: IPsec

    private mutating func readTransformSet(_ line: ConfigLine) {
        guard line.words.count >= 5 else { return reportAll(line, .malformed, "expected `crypto ipsec transform-set NAME TRANSFORM...`") }
        let name = line.words[3]
        var set = TransformSet(name: name, line: line.number)
        switch CiscoAlgorithms.espTransforms(Array(line.words.dropFirst(4))) {
        case .success(let proposal): set.proposal = proposal
        case .failure(let refusal): report(line, .unsupported, refusal.reason)
        }
        for child in line.children {
            if child.starts(with: "mode", "tunnel") { continue }
            report(child, .unsupported, child.keyword(0) == "mode" ? "Vigil carries tunnel mode only" : "not a transform-set setting the import knows")
        }
        objects.transformSets[name] = set
    }

    private mutating func readMapEntry(_ line: ConfigLine) {
        guard line.words.count >= 4, let sequence = Int(line.words[3]), CiscoDefaults.mapSequence.contains(sequence) else {
            return reportAll(line, .malformed, "expected `crypto map NAME SEQ ipsec-isakmp`")
        }
        guard line.keyword(4) == "ipsec-isakmp", line.words.count == 5 else {
            return reportAll(line, .unsupported, "only `ipsec-isakmp` entries are imported (not manual keys, dynamic maps or GDOI)")
        }
        var entry = MapEntry(map: line.words[2], sequence: sequence, line: line.number)
        for child in line.children {
            readMapSetting(child, into: &entry)
        }
        objects.mapEntries.append(entry)
    }

    private mutating func readMapSetting(_ child: ConfigLine, into entry: inout MapEntry) {
        if child.starts(with: "set", "peer") {
            guard (3...4).contains(child.words.count), child.words.count == 3 || child.keyword(3) == "default" else {
                return report(child, .malformed, "expected `set peer ADDRESS [default]`")
            }
            entry.peers.append(.init(address: child.words[2], line: child.number, isDefault: child.words.count == 4))
        } else if child.starts(with: "set", "transform-set") {
            guard child.words.count >= 3 else { return report(child, .malformed, "expected `set transform-set NAME...`") }
            entry.transformSets = child.words.dropFirst(2).map { ($0, child.number) }
        } else if child.starts(with: "set", "pfs") {
            guard child.words.count <= 3 else { return report(child, .malformed, "expected `set pfs [groupN]`") }
            let word = child.words.count == 3 ? child.keyword(2) : "group1"   // `set pfs` alone is group 1
            guard word.hasPrefix("group"), let group = CiscoAlgorithms.group(String(word.dropFirst("group".count))) else {
                entry.pfs = (nil, child.number)
                return report(child, .unsupported, CiscoAlgorithms.groupsAllowed)
            }
            entry.pfs = (group, child.number)
        } else if child.starts(with: "set", "security-association", "lifetime") {
            guard child.keyword(3) == "seconds" else {
                return report(child, .unsupported, "Vigil has no volume lifetime; only `lifetime seconds` is imported")
            }
            entry.lifetime = seconds(child, word: 4, in: CiscoDefaults.childLifetimeRange)
        } else if child.starts(with: "set", "security-association", "idle-time") {
            guard child.words.count == 4 || (child.words.count == 5 && child.keyword(4) == "default") else {
                return report(child, .malformed, "expected `set security-association idle-time SECONDS [default]`")
            }
            if let value = seconds(child, word: 3, in: CiscoDefaults.idleTimeRange) { entry.idleTime = (value, child.number) }
        } else if child.starts(with: "match", "address") {
            guard child.words.count == 3 else { return report(child, .malformed, "expected `match address ACL`") }
            entry.accessList = (child.words[2], child.number)
        } else if child.starts(with: "set", "ikev2-profile") {
            guard child.words.count == 3 else { return report(child, .malformed, "expected `set ikev2-profile NAME`") }
            entry.ikev2Profile = (child.words[2], child.number)
        } else if child.starts(with: "description") {
            entry.description = String(child.text.dropFirst("description".count).drop(while: { $0 == " " }))
        } else {
            reportAll(child, .unsupported, "this crypto map setting has no Vigil equivalent")
        }
    }

    // MARK: access lists

    private mutating func readNamedAccessList(_ line: ConfigLine) {
        guard line.words.count == 4 else { return reportAll(line, .malformed, "expected `ip access-list extended NAME`") }
        var list = AccessList(name: line.words[3], line: line.number)
        for child in line.children {
            var words = child.words[...]
            if let first = words.first, Int(first) != nil { words = words.dropFirst() }   // a sequence number
            readAccessListEntry(child, Array(words), into: &list)
        }
        objects.accessLists[list.name] = list
    }

    /// `access-list NUMBER permit|deny|remark ...`: one line each, gathered by number.
    private mutating func readNumberedAccessList(_ line: ConfigLine) {
        guard line.words.count >= 3, let number = Int(line.words[1]) else {
            return reportAll(line, .malformed, "expected `access-list NUMBER permit ...`")
        }
        guard CiscoDefaults.extendedACLNumbers.contains(where: { $0.contains(number) }) else {
            return reportAll(line, .unsupported, "a standard access list (1-99, 1300-1999) cannot be a crypto ACL; use an extended one")
        }
        let name = line.words[1]
        var list = objects.accessLists[name] ?? AccessList(name: name, line: line.number)
        readAccessListEntry(line, Array(line.words.dropFirst(2)), into: &list)
        objects.accessLists[name] = list
        reportChildren(line)
    }

    /// `permit ip SOURCE DESTINATION`: SOURCE is the local side, DESTINATION the remote one.
    private mutating func readAccessListEntry(_ line: ConfigLine, _ words: [String], into list: inout AccessList) {
        switch words.first?.lowercased() {
        case "remark":
            return
        case "permit":
            break
        case "deny":
            list.refusedLines += 1
            return report(line, .unsupported, "a deny in a crypto ACL (traffic left out of the tunnel) has no Vigil equivalent")
        default:
            list.refusedLines += 1
            return report(line, .malformed, "expected permit, deny or remark")
        }
        guard words.count >= 2, words[1].lowercased() == "ip" else {
            list.refusedLines += 1
            return report(line, .unsupported, "Vigil protects whole subnets (`permit ip`); a protocol or port selector has no equivalent")
        }
        var rest = Array(words.dropFirst(2))[...]
        switch (CiscoAddresses.aclOperand(&rest), CiscoAddresses.aclOperand(&rest)) {
        case (.success(let local), .success(let remote)):
            guard rest.isEmpty else {
                list.refusedLines += 1
                return report(line, .unsupported, "'\(rest.joined(separator: " "))' after the addresses has no Vigil equivalent")
            }
            guard local.family == remote.family else {
                list.refusedLines += 1
                return report(line, .malformed, "the two addresses are of different families")
            }
            list.permits.append(.init(line: line.number, local: local, remote: remote))
        case (.failure(let reason), _), (_, .failure(let reason)):
            list.refusedLines += 1
            report(line, .unsupported, reason.reason)
        }
    }

    // MARK: interfaces

    private mutating func readInterface(_ line: ConfigLine) {
        var interface = Interface(name: line.words.dropFirst().joined(separator: " "), line: line.number)
        var outside: [ConfigLine] = []
        for child in line.children {
            if child.starts(with: "ip", "address") {
                if child.words.count == 4, let address = IPAddress(child.words[2]), IPAddress(child.words[3]) != nil {
                    interface.address = address
                } else if child.keyword(4) == "secondary" {
                    report(child, .unused, "a secondary address is not an IKE listen address")
                } else {
                    report(child, .unsupported, "Vigil listens on static addresses; `\(child.text)` gives none")
                }
            } else if child.starts(with: "crypto", "map"), child.words.count == 3 {
                interface.cryptoMap = (child.words[2], child.number)
            } else {
                outside.append(child)
            }
        }
        // Kept without a crypto map too: `crypto map NAME local-address INTERFACE` may name it.
        objects.interfaces.append(interface)
        if interface.cryptoMap == nil {
            reportAll(line, .outsideIPsec, "an interface without a crypto map; not read")
            return
        }
        for child in outside { reportAll(child, .outsideIPsec, "not an IPsec setting; not read") }
    }

    // MARK: IKEv2

    private mutating func readIKEv2Proposal(_ line: ConfigLine) {
        guard line.words.count == 4 else { return reportAll(line, .malformed, "expected `crypto ikev2 proposal NAME`") }
        var choice = CiscoAlgorithms.IKEv2Choice()
        for child in line.children {
            let values = Array(child.words.dropFirst()).map { $0.lowercased() }
            let problem: String?
            switch child.keyword(0) {
            case "encryption": problem = choice.addEncryption(values)
            case "integrity": problem = choice.addIntegrity(values)
            case "prf": problem = choice.addPRF(values)
            case "group": problem = choice.addGroups(values)
            default: problem = "not an IKEv2 proposal setting the import knows"
            }
            if let problem { report(child, .unsupported, problem) }
        }
        var proposal = IKEv2Proposal(name: line.words[3], line: line.number)
        switch choice.proposal {
        case .success(let built): proposal.proposal = built
        case .failure(let refusal): report(line, .unsupported, refusal.reason)
        }
        objects.ikev2Proposals[proposal.name] = proposal
    }

    private mutating func readIKEv2Policy(_ line: ConfigLine) {
        guard line.words.count == 4 else { return reportAll(line, .malformed, "expected `crypto ikev2 policy NAME`") }
        var policy = IKEv2Policy(name: line.words[3], line: line.number)
        for child in line.children {
            if child.starts(with: "proposal"), child.words.count == 2 {
                policy.proposals.append((child.words[1], child.number))
            } else if child.starts(with: "match", "address", "local"), child.words.count == 4, let address = IPAddress(child.words[3]) {
                policy.localAddresses.append(address)
            } else if child.starts(with: "match", "fvrf", "any") {
                continue
            } else {
                report(child, .unsupported, "not an IKEv2 policy setting the import knows")
            }
        }
        objects.ikev2Policies.append(policy)
    }

    private mutating func readKeyring(_ line: ConfigLine) {
        guard line.words.count == 4 else { return reportAll(line, .malformed, "expected `crypto ikev2 keyring NAME`") }
        var keyring = Keyring(name: line.words[3], line: line.number)
        for child in line.children {
            guard child.starts(with: "peer"), child.words.count == 2 else {
                reportAll(child, .unsupported, "not a keyring setting the import knows")
                continue
            }
            var peer = Keyring.Peer(line: child.number)
            for setting in child.children {
                readKeyringPeerSetting(setting, into: &peer)
            }
            keyring.peers.append(peer)
        }
        objects.keyrings[keyring.name] = keyring
    }

    private mutating func readKeyringPeerSetting(_ setting: ConfigLine, into peer: inout Keyring.Peer) {
        switch setting.keyword(0) {
        case "address":
            guard let prefix = CiscoAddresses.hostOrNetwork(Array(setting.words.dropFirst())) else {
                return report(setting, .malformed, "expected `address ADDRESS [MASK]` with a contiguous mask")
            }
            peer.addresses.append(prefix)
        case "hostname":
            guard setting.words.count == 2 else { return report(setting, .malformed, "expected `hostname NAME`") }
            peer.hostname = setting.words[1]
        case "pre-shared-key":
            var words = Array(setting.words.dropFirst())
            if let side = words.first?.lowercased(), side == "local" || side == "remote" {
                return report(setting, .unsupported, "Vigil uses one key in both directions; asymmetric `pre-shared-key \(side)` has no equivalent")
            }
            if let type = words.first, type == "0" || type == "6" || type == "7" {
                guard type == "0" else {
                    return report(setting, .unsupported, "an encrypted key (type \(type)) cannot be read back; write it in clear text (type 0)")
                }
                words.removeFirst()
            }
            guard words.count == 1 else { return report(setting, .malformed, "expected `pre-shared-key KEY`") }
            peer.key = words[0]
        case "identity":
            switch (setting.keyword(1), setting.words.count) {
            case ("address", 3) where IPAddress(setting.words[2]) != nil: peer.identity = setting.words[2]
            case ("fqdn", 3): peer.identity = "@" + setting.words[2]
            case ("email", 3): peer.identity = setting.words[2]
            default: report(setting, .unsupported, "only `identity address|fqdn|email NAME` have a Vigil equivalent")
            }
        case "description":
            return
        default:
            report(setting, .unsupported, "not a keyring peer setting the import knows")
        }
    }

    private mutating func readProfile(_ line: ConfigLine) {
        guard line.words.count == 4 else { return reportAll(line, .malformed, "expected `crypto ikev2 profile NAME`") }
        var profile = IKEv2Profile(name: line.words[3], line: line.number)
        for child in line.children {
            if child.starts(with: "match", "identity", "remote", "address") {
                // Peers authenticate as their address: Vigil's default identity for an address peer.
                if CiscoAddresses.hostOrNetwork(Array(child.words.dropFirst(4))) == nil {
                    report(child, .malformed, "expected `match identity remote address ADDRESS [MASK]`")
                }
            } else if child.starts(with: "match", "fvrf", "any") || child.starts(with: "description") {
                continue
            } else if child.starts(with: "identity", "local") {
                switch (child.keyword(2), child.words.count) {
                case ("address", 4) where IPAddress(child.words[3]) != nil: profile.localIdentity = child.words[3]
                case ("fqdn", 4): profile.localIdentity = "@" + child.words[3]
                case ("email", 4): profile.localIdentity = child.words[3]
                default: report(child, .unsupported, "only `identity local address|fqdn|email` have a Vigil equivalent")
                }
            } else if child.starts(with: "authentication") {
                if child.keyword(2) != "pre-share" || child.words.count != 3 {
                    report(child, .unsupported, "Vigil authenticates with pre-shared keys only (authentication local|remote pre-share)")
                }
            } else if child.starts(with: "keyring", "local"), child.words.count == 3 {
                profile.keyring = (child.words[2], child.number)
            } else if child.starts(with: "lifetime") {
                profile.lifetime = seconds(child, word: 1, in: CiscoDefaults.ikeLifetimeRange)
            } else if child.starts(with: "dpd") {
                profile.dpd = readKeepalive(child, arguments: Array(child.words.dropFirst()))
            } else {
                reportAll(child, .unsupported, "this IKEv2 profile setting has no Vigil equivalent (peers are matched by the crypto map's peer list)")
            }
        }
        objects.profiles[profile.name] = profile
    }
}
