#if canImport(Glibc)
import Glibc
#endif
import VigilAddressing
import VigilAlgorithms
import VigilIKE
import Yams

/// A value and the field it was read from, so later checks can point at it.
struct Setting<Value> {
    let value: Value
    let field: Field
}

/// Where an entry came from: for checks that span entries (overlaps) and for the secrets lookup.
struct EntrySite {
    let mapName: String
    let field: Field
    let trafficFields: [Field]
    /// Parallel to the entry's peers.
    let peerFields: [Field]
}

/// The document as far as it could be read; entries with errors are left out.
struct ParsedDocument {
    var global: GlobalSettings?
    var secretsField: Field?
    var maps: [(map: CryptoMap, sites: [EntrySite])] = []
    /// Every peer that could be read, also from entries with other errors, so missing keys are all reported.
    var allPeers: [Setting<Peer>] = []
}

/// DPD keys as written at one level (global or entry), before defaults are applied.
struct DPDOverride {
    var field: Field?
    var mode: Setting<DPDSettings.Mode>?
    var interval: Setting<Duration>?
    var retry: Setting<Duration>?
    var retries: Setting<Int>?
    var action: Setting<DPDSettings.Action>?
    /// A key was present but wrong (already reported): skip checks that would repeat it.
    var invalid = false
}

/// Retransmit keys as written at one level.
struct RetransmitOverride {
    var timeout: Duration?
    var base: Double?
    var tries: Int?
    var invalid = false

    func applied(to schedule: RetransmissionSchedule) -> RetransmissionSchedule {
        RetransmissionSchedule(timeout: timeout ?? schedule.timeout, base: base ?? schedule.base, tries: tries ?? schedule.tries)
    }
}

/// Walks the YAML tree of the main file into the model, reporting every problem with its place.
struct DocumentParser {
    static let topKeys = ["global", "crypto-maps"]
    static let globalKeys = ["identity", "listen", "dataplane", "secrets", "control-socket", "control-group", "state-file", "dpd", "ike-retransmit", "kernel",
                             "half-open-per-source", "half-open-total", "half-open-lifetime", "cookie-threshold", "hooks",
                             "metrics"]
    static let metricsKeys = ["listen"]
    static let dpdKeys = ["mode", "interval", "retry", "retries", "action"]
    static let retransmitKeys = ["timeout", "base", "tries"]
    static let kernelKeys = ["route-table", "install-routes"]
    static let mapKeys = ["entries"]
    static let entryKeys = [
        "sequence", "ike-version", "peers", "idle-time", "preemption", "traffic", "ike-proposals", "esp-proposals",
        "pfs-group", "ike-lifetime", "child-lifetime", "rekey-margin", "dpd", "start", "encapsulation",
        "connect-timeout", "backoff", "local-identity", "retransmit", "hooks", "monitor",
    ]
    static let monitorKeys = ["address", "source", "interval", "threshold"]
    static let peerKeys = ["address", "identity", "default"]
    static let trafficKeys = ["local", "remote"]
    static let preemptionKeys = ["hold-down", "max-flaps", "flap-window"]
    static let backoffKeys = ["initial", "maximum"]
    static let hookKeys = ["path", "events", "timeout"]

    let file: String
    var diagnostics = Diagnostics()
    private var globalDPD = DPDOverride()
    private var globalRetransmit = RetransmissionSchedule.vigilDefault
    private var allPeers: [Setting<Peer>] = []

    init(file: String) {
        self.file = file
    }

    mutating func parse(_ root: Node?) -> ParsedDocument {
        var document = ParsedDocument()
        guard let root else {
            diagnostics.report(file, nil, "", "the file is empty; allowed: a mapping with keys \(Self.topKeys.joined(separator: ", "))")
            return document
        }
        guard let top = Section(Field(file: file, path: "", node: root), allowed: Self.topKeys, &diagnostics) else {
            return document
        }
        if let global = top.required("global", &diagnostics, allowed: "a mapping with keys \(Self.globalKeys.joined(separator: ", "))") {
            document.global = parseGlobal(global)
            document.secretsField = Section(global, allowed: [], &diagnostics.discarding)?["secrets"]
        }
        guard let mapsField = top.required("crypto-maps", &diagnostics, allowed: "a mapping of crypto map names to their entries"),
              let maps = Section(mapsField, allowed: [], &diagnostics)
        else { return document }
        if maps.all.isEmpty { diagnostics.report(mapsField, "no crypto maps; allowed: at least one crypto map") }
        for (name, keyNode, field) in maps.all {
            guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
                diagnostics.report(file, keyNode.mark, field.path, "crypto map name '\(name)' has characters outside letters, digits, '-', '_', '.'")
                continue
            }
            if let parsed = parseMap(name: name, field) { document.maps.append(parsed) }
        }
        document.maps.sort { $0.map.name < $1.map.name }
        document.allPeers = allPeers
        return document
    }

    // MARK: global

    private mutating func parseGlobal(_ field: Field) -> GlobalSettings? {
        guard let section = Section(field, allowed: Self.globalKeys, &diagnostics) else { return nil }
        var identity: Identity?
        if let value = section.required("identity", &diagnostics, allowed: TextForms.identityForms) {
            identity = parseIdentity(value)
        }
        var listen: [IPAddress]?
        if let value = section.required("listen", &diagnostics, allowed: "a list of local IP addresses") {
            listen = parseListen(value)
        }
        let dataplane = section["dataplane"].map { $0.choice(&diagnostics, of: DataPlaneChoice.self) } ?? .auto
        var secretsPath: String?
        if let value = section["secrets"], let text = value.scalar(&diagnostics, expecting: "a file path") {
            if text.isEmpty { diagnostics.report(value, "the secrets path is empty; allowed: a file path") } else { secretsPath = text }
        }
        var controlSocket: String? = ConfigurationLimits.defaultControlSocket
        if let value = section["control-socket"] {
            controlSocket = value.scalar(&diagnostics, expecting: "an absolute path")
            if let path = controlSocket, !path.hasPrefix("/") {
                diagnostics.report(value, "'\(path)' is not an absolute path; allowed: an absolute path such as \(ConfigurationLimits.defaultControlSocket)")
                controlSocket = nil
            }
        }
        var stateFile: String? = ConfigurationLimits.defaultStateFile
        if let value = section["state-file"] {
            stateFile = value.scalar(&diagnostics, expecting: "an absolute path")
            if let path = stateFile, !path.hasPrefix("/") || path.hasSuffix("/") {
                diagnostics.report(value, "'\(path)' is not an absolute file path; allowed: an absolute path such as \(ConfigurationLimits.defaultStateFile)")
                stateFile = nil
            }
        }
        var controlGroup: String?
        var controlGroupInvalid = false
        if let value = section["control-group"], let name = value.scalar(&diagnostics, expecting: "a group name") {
            // useradd(8)'s rule; whether the group exists is checked when vigild starts (it is a fact of the host).
            let first = name.unicodeScalars.first.map { ("a"..."z").contains($0) || $0 == "_" } ?? false
            let rest = name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }
            if !first || !rest || name.count > 32 {
                diagnostics.report(value, "'\(name)' is not a group name; allowed: lower-case letters, digits, '_' and '-', "
                                   + "starting with a letter or '_', at most 32 characters (such as vigil)")
                controlGroupInvalid = true
            } else {
                controlGroup = name
            }
        }
        globalDPD = section["dpd"].map { parseDPD($0) } ?? DPDOverride()
        let retransmit = section["ike-retransmit"].map { parseRetransmit($0) } ?? RetransmitOverride()
        globalRetransmit = retransmit.applied(to: .vigilDefault)
        let kernel = section["kernel"].map { parseKernel($0) } ?? KernelSettings.defaults
        let halfOpen = parseHalfOpen(section)
        let hooks = section["hooks"].map { parseHooks($0) } ?? []
        let metrics: MetricsSettings?? = section["metrics"].map { parseMetrics($0) }
        let dpdDefaults = DPDSettings(
            mode: globalDPD.mode?.value ?? DPDSettings.defaults.mode, interval: globalDPD.interval?.value,
            retry: globalDPD.retry?.value ?? DPDSettings.defaults.retry,
            retries: globalDPD.retries?.value ?? DPDSettings.defaults.retries,
            action: globalDPD.action?.value ?? DPDSettings.defaults.action)
        guard let identity, let listen, let dataplane, let controlSocket, let stateFile, let kernel, !globalDPD.invalid, !retransmit.invalid,
              !controlGroupInvalid, let halfOpen, let hooks, metrics != .some(nil)
        else { return nil }
        var settings = GlobalSettings(
            identity: identity, listen: listen, dataplane: dataplane, secretsPath: secretsPath,
            controlSocket: controlSocket, dpd: dpdDefaults, ikeRetransmit: globalRetransmit, kernel: kernel)
        settings.controlGroup = controlGroup
        settings.stateFile = stateFile
        settings.halfOpen = halfOpen
        settings.hooks = hooks
        settings.metrics = metrics ?? nil
        return settings
    }

    /// `metrics: { listen: ADDRESS:PORT }`; nil (each error reported) when it is not usable.
    private mutating func parseMetrics(_ field: Field) -> MetricsSettings? {
        guard let section = Section(field, allowed: Self.metricsKeys, &diagnostics) else { return nil }
        guard let value = section.required("listen", &diagnostics, allowed: TextForms.metricsListenForms),
              let text = value.scalar(&diagnostics, expecting: TextForms.metricsListenForms) else { return nil }
        switch TextForms.metricsListen(text) {
        case .success(let endpoint):
            return MetricsSettings(listen: endpoint)
        case .failure(let problem):
            diagnostics.report(value, problem.message)
            return nil
        }
    }

    /// The half-open limits; nil when one is given but invalid (each bad key is reported by name).
    private mutating func parseHalfOpen(_ section: Section) -> HalfOpenSettings? {
        var settings = HalfOpenSettings()
        var invalid = false
        func read<T>(_ key: String, _ parse: (Field) -> T?) -> T? {
            guard let field = section[key] else { return nil }
            guard let value = parse(field) else { invalid = true; return nil }
            return value
        }
        settings.perSource = read("half-open-per-source") { $0.integer(&diagnostics, in: ConfigurationLimits.halfOpenPerSource) }
        settings.total = read("half-open-total") { $0.integer(&diagnostics, in: ConfigurationLimits.halfOpenTotal) }
        settings.lifetime = read("half-open-lifetime") { $0.duration(&diagnostics, in: ConfigurationLimits.halfOpenLifetime) }
        settings.cookieThreshold = read("cookie-threshold") { $0.integer(&diagnostics, in: ConfigurationLimits.cookieThreshold) }
        if let perSource = settings.perSource, let total = settings.total, perSource > total, let field = section["half-open-per-source"] {
            diagnostics.report(field, "\(perSource) is more than half-open-total (\(total)); allowed: 1 to \(total)")
            invalid = true
        }
        return invalid ? nil : settings
    }

    private mutating func parseListen(_ field: Field) -> [IPAddress]? {
        guard let items = field.list(&diagnostics, expecting: "local IP addresses", scalarAllowed: true) else { return nil }
        if items.isEmpty { diagnostics.report(field, "the list is empty; allowed: at least one local IP address") }
        var addresses: [IPAddress] = []
        var ok = !items.isEmpty
        for item in items {
            guard let text = item.scalar(&diagnostics, expecting: "an IP address") else { ok = false; continue }
            guard let address = IPAddress(text) else {
                diagnostics.report(item, "'\(text)' is not an IPv4 or IPv6 address; allowed: a local address such as 192.0.2.1 or 2001:db8::1")
                ok = false
                continue
            }
            if addresses.contains(address) {
                diagnostics.report(item, "\(address) is listed twice; allowed: each address once")
                ok = false
            }
            addresses.append(address)
        }
        return ok ? addresses : nil
    }

    private mutating func parseKernel(_ field: Field) -> KernelSettings? {
        guard let section = Section(field, allowed: Self.kernelKeys, &diagnostics) else { return nil }
        var settings = KernelSettings.defaults
        var ok = true
        if let value = section["route-table"], let text = value.scalar(&diagnostics, expecting: "main or a table number") {
            // 0 is unspecified, 253-255 are the kernel's default, main and local tables.
            if text == "main" {
                settings.routeTable = .main
            } else if let number = UInt32(text), number != 0, !(253...255).contains(number) {
                settings.routeTable = .number(number)
            } else {
                diagnostics.report(value, "'\(text)' is not a usable routing table; allowed: main, or a number from 1 to 4294967295 other than 253, 254, 255")
                ok = false
            }
        } else if section["route-table"] != nil {
            ok = false
        }
        if let value = section["install-routes"] {
            if let flag = value.bool(&diagnostics) { settings.installRoutes = flag } else { ok = false }
        }
        return ok ? settings : nil
    }

    private mutating func parseDPD(_ field: Field) -> DPDOverride {
        var result = DPDOverride(field: field)
        guard let section = Section(field, allowed: Self.dpdKeys, &diagnostics) else {
            result.invalid = true
            return result
        }
        func setting<T>(_ key: String, _ read: (Field, inout Diagnostics) -> T?) -> Setting<T>? {
            guard let value = section[key] else { return nil }
            guard let parsed = read(value, &diagnostics) else {
                result.invalid = true
                return nil
            }
            return Setting(value: parsed, field: value)
        }
        let cisco = " (Cisco: 10s to 1h; Vigil allows sub-second detection)"
        result.mode = setting("mode") { $0.choice(&$1, of: DPDSettings.Mode.self) }
        result.interval = setting("interval") { $0.duration(&$1, in: ConfigurationLimits.dpdInterval, note: cisco) }
        result.retry = setting("retry") {
            $0.duration(&$1, in: ConfigurationLimits.dpdRetry, note: " (Cisco: 2s to 60s; Vigil allows sub-second retries)")
        }
        result.retries = setting("retries") { $0.integer(&$1, in: ConfigurationLimits.dpdRetries) }
        result.action = setting("action") { $0.choice(&$1, of: DPDSettings.Action.self) }
        return result
    }

    private mutating func parseRetransmit(_ field: Field) -> RetransmitOverride {
        var result = RetransmitOverride()
        guard let section = Section(field, allowed: Self.retransmitKeys, &diagnostics) else {
            result.invalid = true
            return result
        }
        // Absent keys stay nil so the global schedule (or the defaults) fills them in.
        let ok = [
            read(section["timeout"], into: &result.timeout) { $0.duration(&$1, in: ConfigurationLimits.retransmitTimeout).map(Optional.some) },
            read(section["base"], into: &result.base) { $0.number(&$1, in: ConfigurationLimits.retransmitBase).map(Optional.some) },
            read(section["tries"], into: &result.tries) { $0.integer(&$1, in: ConfigurationLimits.retransmitTries).map(Optional.some) },
        ].allSatisfy { $0 }
        result.invalid = !ok
        return result
    }

    private mutating func parseIdentity(_ field: Field) -> Identity? {
        guard let text = field.scalar(&diagnostics, expecting: TextForms.identityForms) else { return nil }
        switch TextForms.identity(text) {
        case .success(let identity): return identity
        case .failure(let error):
            diagnostics.report(field, error.message)
            return nil
        }
    }

    // MARK: crypto maps

    private mutating func parseMap(name: String, _ field: Field) -> (map: CryptoMap, sites: [EntrySite])? {
        guard let section = Section(field, allowed: Self.mapKeys, &diagnostics),
              let entriesField = section.required("entries", &diagnostics, allowed: "a list of crypto map entries"),
              let items = entriesField.list(&diagnostics, expecting: "crypto map entries")
        else { return nil }
        if items.isEmpty { diagnostics.report(entriesField, "the crypto map has no entries; allowed: at least one entry") }
        var parsed: [(entry: CryptoMapEntry, site: EntrySite)] = []
        var sequences: [Int: Field] = [:]
        for (index, item) in items.enumerated() {
            let sequenceNode = item.node["sequence"]
            var label = "#\(index)"
            if let text = sequenceNode?.scalar?.string, let number = Int(text) { label = String(number) }
            let entryField = entriesField.element(label, item.node)
            if let number = Int(label) {
                let sequenceField = entryField.child("sequence", sequenceNode ?? item.node)
                if let first = sequences[number] {
                    diagnostics.report(sequenceField, "sequence number \(number) is already used by the entry at line \(first.mark?.line ?? 0); allowed: each sequence number once per crypto map")
                    _ = parseEntry(entryField)
                    continue
                }
                sequences[number] = sequenceField
            }
            if let result = parseEntry(entryField) { parsed.append(result) }
        }
        parsed.sort { $0.entry.sequence < $1.entry.sequence }
        let map = CryptoMap(name: name, entries: parsed.map(\.entry))
        return (map, parsed.map(\.site))
    }

    private mutating func parseEntry(_ field: Field) -> (entry: CryptoMapEntry, site: EntrySite)? {
        guard let section = Section(field, allowed: Self.entryKeys, &diagnostics) else { return nil }
        var ok = true
        func need<T>(_ value: T?) -> T? {
            if value == nil { ok = false }
            return value
        }
        let sequence = need(section.required("sequence", &diagnostics, allowed: "a number from 1 to 65535")
            .flatMap { $0.integer(&diagnostics, in: ConfigurationLimits.sequence) })
        let version = need(section.required("ike-version", &diagnostics, allowed: "v1 or v2")
            .flatMap { $0.choice(&diagnostics, of: IKEVersion.self) })
        let peerList = need(section.required("peers", &diagnostics, allowed: "an ordered list of peer addresses or host names")
            .flatMap { parsePeers($0) })
        let idleTime = section["idle-time"].map { need($0.duration(&diagnostics, in: ConfigurationLimits.idleTime)) }
        let preemption = section["preemption"].map { need(parsePreemption($0)) }
        if let peerList, peerList.preferred == nil {
            for key in ["idle-time", "preemption"] {
                guard let value = section[key] else { continue }
                diagnostics.report(file, section.all.first { $0.key == key }?.keyNode.mark, value.path,
                    "\(key) returns traffic to the preferred peer, but no peer is marked default; allowed: mark the first peer with default: true (Cisco `set peer X default`) or remove \(key)")
                ok = false
            }
        }
        let traffic = need(section.required("traffic", &diagnostics, allowed: "a list of {local, remote} subnet pairs")
            .flatMap { parseTraffic($0) })
        let ikeProposals = need(section.required("ike-proposals", &diagnostics, allowed: "a list of IKE proposals such as aes256-sha256-x25519")
            .flatMap { parseProposals($0, IKEProposal.parse) })
        if version == .v1, let ikeProposals, let items = section["ike-proposals"]?.list(&diagnostics.discarding, expecting: "", scalarAllowed: true) {
            for (proposal, item) in zip(ikeProposals, items) where proposal.encryption.contains(where: \.isAEAD) {
                diagnostics.report(item, "'\(proposal)' uses an AEAD cipher, which IKEv1 Phase 1 does not have (RFC 5282 is IKEv2 only); allowed for v1: aes128, aes256 with sha1, sha256, sha384, sha512")
                ok = false
            }
        }
        let espProposals = need(section.required("esp-proposals", &diagnostics, allowed: "a list of ESP proposals such as aes256gcm16 or aes256-sha256")
            .flatMap { parseProposals($0, ESPProposal.parse) })
        var pfsGroup: DHGroup?
        if let value = section["pfs-group"], let text = value.scalar(&diagnostics, expecting: "a DH group") {
            let known = ["none"] + DHGroup.allCases.map(\.keyword)
            if text != "none" {
                pfsGroup = DHGroup.allCases.first { $0.keyword == text }
                if pfsGroup == nil {
                    diagnostics.report(value, "unknown DH group '\(text)'; known: \(known.joined(separator: ", "))")
                    ok = false
                }
            }
        } else if section["pfs-group"] != nil {
            ok = false
        }
        if let pfsGroup, let espProposals, let items = section["esp-proposals"]?.list(&diagnostics.discarding, expecting: "", scalarAllowed: true) {
            for (proposal, item) in zip(espProposals, items) where !proposal.dhGroups.isEmpty && !proposal.dhGroups.contains(pfsGroup) {
                diagnostics.report(item, "ESP proposal '\(proposal)' names DH group \(proposal.dhGroups.map(\.keyword).joined(separator: ", ")) but pfs-group is \(pfsGroup.keyword); allowed: the same group in both, or the group in only one of them")
                ok = false
            }
        }
        let ikeLifetime = need(section["ike-lifetime"].map { $0.duration(&diagnostics, in: ConfigurationLimits.ikeLifetime, note: " (Cisco's range)") }
            ?? ConfigurationLimits.defaultIKELifetime)
        let childLifetime = need(section["child-lifetime"].map { $0.duration(&diagnostics, in: ConfigurationLimits.childLifetime, note: " (Cisco's range)") }
            ?? ConfigurationLimits.defaultChildLifetime)
        var rekeyMargin: Duration?
        if let value = section["rekey-margin"] {
            rekeyMargin = need(value.duration(&diagnostics, in: .seconds(1) ... .seconds(86400)))
            if let margin = rekeyMargin, let ikeLifetime, let childLifetime, margin >= min(ikeLifetime, childLifetime) {
                diagnostics.report(value, "rekey-margin \(margin.configurationText) is not shorter than the lifetimes (ike-lifetime \(ikeLifetime.configurationText), child-lifetime \(childLifetime.configurationText)); allowed: less than both")
                ok = false
            }
        }
        let entryDPD = section["dpd"].map { parseDPD($0) } ?? DPDOverride()
        let dpd = need(resolveDPD(entryDPD, entryField: field))
        let start = need(section["start"].map { $0.bool(&diagnostics) } ?? true)
        let encapsulation = need(section["encapsulation"].map { $0.choice(&diagnostics, of: Encapsulation.self) } ?? .auto)
        let connectTimeout = need(section["connect-timeout"].map { $0.duration(&diagnostics, in: ConfigurationLimits.connectTimeout) }
            ?? ConfigurationLimits.defaultConnectTimeout)
        let backoff = need(section["backoff"].map { parseBackoff($0) } ?? Backoff.defaults)
        let localIdentity = section["local-identity"].map { need(parseIdentity($0)) }
        let retransmitOverride = section["retransmit"].map { parseRetransmit($0) } ?? RetransmitOverride()
        if retransmitOverride.invalid { ok = false }
        let hooks = need(section["hooks"].map { parseHooks($0) } ?? [])
        let monitor = section["monitor"].map { need(parseMonitor($0, traffic: traffic?.map(\.value))) }

        guard ok, let sequence, let version, let peerList, let traffic, let ikeProposals, let espProposals,
              let ikeLifetime, let childLifetime, let dpd, let start, let encapsulation, let connectTimeout, let backoff, let hooks
        else { return nil }
        var entry = CryptoMapEntry(
            sequence: sequence, ikeVersion: version, peers: peerList.peers.map(\.value), preferredPeer: peerList.preferred,
            idleTime: idleTime ?? nil, preemption: preemption ?? nil, traffic: traffic.map(\.value),
            ikeProposals: ikeProposals, espProposals: espProposals, pfsGroup: pfsGroup, ikeLifetime: ikeLifetime,
            childLifetime: childLifetime, rekeyMargin: rekeyMargin, dpd: dpd, start: start, encapsulation: encapsulation,
            connectTimeout: connectTimeout, backoff: backoff, localIdentity: localIdentity ?? nil,
            retransmit: retransmitOverride.applied(to: globalRetransmit))
        entry.hooks = hooks
        entry.monitor = monitor ?? nil
        let site = EntrySite(
            mapName: field.path, field: field, trafficFields: traffic.map(\.field), peerFields: peerList.peers.map(\.field))
        return (entry, site)
    }

    /// Global DPD defaults with the entry's keys on top, then the checks that need both levels.
    private mutating func resolveDPD(_ entry: DPDOverride, entryField: Field) -> DPDSettings? {
        guard !entry.invalid, !globalDPD.invalid else { return nil }
        let mode = entry.mode ?? globalDPD.mode
        let interval = entry.interval ?? globalDPD.interval
        let retry = entry.retry ?? globalDPD.retry
        let settings = DPDSettings(
            mode: mode?.value ?? DPDSettings.defaults.mode, interval: interval?.value,
            retry: retry?.value ?? DPDSettings.defaults.retry,
            retries: (entry.retries ?? globalDPD.retries)?.value ?? DPDSettings.defaults.retries,
            action: (entry.action ?? globalDPD.action)?.value ?? DPDSettings.defaults.action)
        let range = ConfigurationLimits.dpdInterval
        guard settings.mode != .off else { return settings }
        guard let interval else {
            let modeOrigin = mode.map { "mode \(settings.mode) (set at \($0.field.path))" } ?? "the default mode \(settings.mode)"
            let place = entry.field ?? entryField
            diagnostics.report(file, place.mark, "\(entryField.path).dpd.interval",
                "DPD is enabled by \(modeOrigin) but no interval is set here or in global.dpd (Cisco refuses keepalive without one too); allowed: an interval from \(range.lowerBound.configurationText) to \(range.upperBound.configurationText), or mode: off")
            return nil
        }
        if settings.retry > interval.value {
            if let retry {
                diagnostics.report(retry.field, "retry \(settings.retry.configurationText) is longer than the interval \(interval.value.configurationText) (set at \(interval.field.path)); allowed: a retry no longer than the interval")
            } else {
                diagnostics.report(interval.field, "interval \(interval.value.configurationText) is shorter than the default retry \(settings.retry.configurationText); allowed: an interval of at least the retry, or set a shorter retry (from \(ConfigurationLimits.dpdRetry.lowerBound.configurationText))")
            }
            return nil
        }
        return settings
    }

    private mutating func parsePreemption(_ field: Field) -> Preemption? {
        guard let section = Section(field, allowed: Self.preemptionKeys, &diagnostics) else { return nil }
        var result = Preemption.defaults
        let ok = [
            read(section["hold-down"], into: &result.holdDown) { $0.duration(&$1, in: ConfigurationLimits.holdDown) },
            read(section["max-flaps"], into: &result.maxFlaps) { $0.integer(&$1, in: ConfigurationLimits.maxFlaps) },
            read(section["flap-window"], into: &result.flapWindow) { $0.duration(&$1, in: ConfigurationLimits.flapWindow) },
        ].allSatisfy { $0 }
        return ok ? result : nil
    }

    private mutating func parseBackoff(_ field: Field) -> Backoff? {
        guard let section = Section(field, allowed: Self.backoffKeys, &diagnostics) else { return nil }
        var result = Backoff.defaults
        var ok = [
            read(section["initial"], into: &result.initial) { $0.duration(&$1, in: ConfigurationLimits.backoff) },
            read(section["maximum"], into: &result.maximum) { $0.duration(&$1, in: ConfigurationLimits.backoff) },
        ].allSatisfy { $0 }
        if ok, result.initial > result.maximum {
            diagnostics.report(section["maximum"] ?? section["initial"] ?? field,
                "backoff maximum \(result.maximum.configurationText) is shorter than initial \(result.initial.configurationText); allowed: maximum at least initial")
            ok = false
        }
        return ok ? result : nil
    }

    /// `monitor: {address, source, interval, threshold}`; nil when anything is wrong (each problem reported). The
    /// addresses are checked against the entry's selectors when those could be read.
    private mutating func parseMonitor(_ field: Field, traffic: [TrafficSelectorPair]?) -> TunnelMonitorSettings? {
        guard let section = Section(field, allowed: Self.monitorKeys, &diagnostics) else { return nil }
        let address = section.required("address", &diagnostics, allowed: "the IPv4 address to ping through the tunnel, inside a remote traffic selector")
            .flatMap { parseMonitorAddress($0) }
        let source = section.required("source", &diagnostics, allowed: "this host's IPv4 address to ping from, inside a local traffic selector")
            .flatMap { parseMonitorAddress($0) }
        var interval = ConfigurationLimits.defaultMonitorInterval
        var threshold = ConfigurationLimits.defaultMonitorThreshold
        var ok = [
            read(section["interval"], into: &interval) { $0.duration(&$1, in: ConfigurationLimits.monitorInterval) },
            read(section["threshold"], into: &threshold) { $0.integer(&$1, in: ConfigurationLimits.monitorThreshold) },
        ].allSatisfy { $0 }
        guard let address, let source else { return nil }
        if let traffic, !traffic.contains(where: { $0.local.contains(source.value) && $0.remote.contains(address.value) }) {
            let selectors = traffic.map(\.description).joined(separator: ", ")
            if !traffic.contains(where: { $0.local.contains(source.value) }) {
                diagnostics.report(source.field, "source \(source.value) is not inside a local traffic selector of this entry (\(selectors)), so its echo requests would not enter the tunnel; allowed: an address of this host inside a local prefix")
            } else if !traffic.contains(where: { $0.remote.contains(address.value) }) {
                diagnostics.report(address.field, "address \(address.value) is not inside a remote traffic selector of this entry (\(selectors)), so the echo requests would not go through the tunnel; allowed: an address inside a remote prefix")
            } else {
                diagnostics.report(address.field, "source \(source.value) and address \(address.value) are not in one traffic selector pair of this entry (\(selectors)); allowed: source inside the local and address inside the remote prefix of the same pair")
            }
            ok = false
        }
        return ok ? TunnelMonitorSettings(address: address.value, source: source.value, interval: interval, threshold: threshold) : nil
    }

    private mutating func parseMonitorAddress(_ field: Field) -> Setting<IPAddress>? {
        guard let text = field.scalar(&diagnostics, expecting: "an IPv4 address such as 10.2.0.10") else { return nil }
        guard let address = IPAddress(text) else {
            diagnostics.report(field, "'\(text)' is not an IP address; allowed: an IPv4 address such as 10.2.0.10")
            return nil
        }
        guard address.family == .ipv4 else {
            diagnostics.report(field, "\(address) is IPv6; tunnel monitoring sends ICMP (IPv4) echo requests only; allowed: an IPv4 address (monitor an IPv4 selector pair of the entry)")
            return nil
        }
        return Setting(value: address, field: field)
    }

    /// Reads an optional key into `target` (left at its default when absent); false when present but wrong.
    private mutating func read<T>(_ field: Field?, into target: inout T, _ parse: (Field, inout Diagnostics) -> T?) -> Bool {
        guard let field else { return true }
        guard let value = parse(field, &diagnostics) else { return false }
        target = value
        return true
    }

    // MARK: hooks

    /// `hooks: [{path, events, timeout}]` at one level; nil when any hook is wrong (each problem reported).
    private mutating func parseHooks(_ field: Field) -> [Hook]? {
        guard let items = field.list(&diagnostics, expecting: "hooks, each {path, events, timeout}") else { return nil }
        let bound = ConfigurationLimits.hooksPerLevel
        guard bound.contains(items.count) else {
            diagnostics.report(field, "\(items.count) hooks; allowed: at most \(bound.upperBound)")
            return nil
        }
        var hooks: [Hook] = []
        var ok = true
        for item in items {
            guard let section = Section(item, allowed: Self.hookKeys, &diagnostics) else { ok = false; continue }
            var path: String?
            if let value = section.required("path", &diagnostics, allowed: "the absolute path of an executable"),
               let text = value.scalar(&diagnostics, expecting: "the absolute path of an executable") {
                if !text.hasPrefix("/") {
                    diagnostics.report(value, "'\(text)' is not an absolute path; allowed: the absolute path of an executable such as /etc/vigil/updown")
                } else if let refusal = HookExecutable.refusal(path: text) {
                    diagnostics.report(value, refusal)
                } else {
                    path = text
                }
            }
            var events: [Hook.Event]? = Hook.Event.allCases
            if let value = section["events"] {
                events = parseHookEvents(value)
            }
            var timeout: Duration? = ConfigurationLimits.defaultHookTimeout
            if let value = section["timeout"] {
                timeout = value.duration(&diagnostics, in: ConfigurationLimits.hookTimeout)
            }
            guard let path, let events, let timeout else { ok = false; continue }
            hooks.append(Hook(path: path, events: events, timeout: timeout))
        }
        return ok ? hooks : nil
    }

    private mutating func parseHookEvents(_ field: Field) -> [Hook.Event]? {
        let names = Field.names(Hook.Event.self)
        guard let items = field.list(&diagnostics, expecting: "events (\(names))", scalarAllowed: true) else { return nil }
        guard !items.isEmpty else {
            diagnostics.report(field, "the list is empty; allowed: one or more of \(names), or leave the key out for all of them")
            return nil
        }
        var events: [Hook.Event] = []
        var ok = true
        for item in items {
            guard let event = item.choice(&diagnostics, of: Hook.Event.self) else { ok = false; continue }
            if events.contains(event) {
                diagnostics.report(item, "event \(event) is listed twice; allowed: each event once")
                ok = false
            }
            events.append(event)
        }
        return ok ? events : nil
    }

    // MARK: peers, traffic, proposals

    private mutating func parsePeers(_ field: Field) -> (peers: [Setting<Peer>], preferred: Peer?)? {
        guard let items = field.list(&diagnostics, expecting: "peer addresses or host names") else { return nil }
        guard !items.isEmpty else {
            diagnostics.report(field, "the peer list is empty; allowed: one or more peers (address or host name), in order of preference")
            return nil
        }
        var ok = true
        var peers: [Setting<Peer>] = []
        var preferred: Peer?
        var positions: [PeerAddress: (position: Int, field: Field)] = [:]
        for (position, item) in items.enumerated() {
            var addressField = item
            var identity: Identity?
            var isDefault = false
            if case .mapping = item.node {
                guard let section = Section(item, allowed: Self.peerKeys, &diagnostics),
                      let address = section.required("address", &diagnostics, allowed: "an IP address or host name")
                else { ok = false; continue }
                addressField = address
                if let value = section["identity"] {
                    identity = parseIdentity(value)
                    if identity == nil { ok = false }
                }
                if let value = section["default"] {
                    guard let flag = value.bool(&diagnostics) else { ok = false; continue }
                    isDefault = flag
                    if flag, position != 0 {
                        diagnostics.report(value, "peer \(addressField.node.scalar?.string ?? "?") is marked default (the preferred peer) but is listed at position \(position + 1); allowed: only the first listed peer may be the default (Cisco `set peer X default`): move it to the top")
                        ok = false
                    }
                }
            }
            guard let text = addressField.scalar(&diagnostics, expecting: "an IP address or host name") else { ok = false; continue }
            let address: PeerAddress
            switch TextForms.peerAddress(text) {
            case .success(let parsed): address = parsed
            case .failure(let error):
                diagnostics.report(addressField, error.message)
                ok = false
                continue
            }
            if let first = positions[address] {
                diagnostics.report(addressField, "peer \(address) is listed twice (first at line \(first.field.mark?.line ?? 0), position \(first.position + 1)); allowed: each peer once per list")
                ok = false
                continue
            }
            positions[address] = (position, addressField)
            let peer = Peer(address: address, identity: identity, preSharedKey: Secret(bytes: []))
            peers.append(Setting(value: peer, field: addressField))
            allPeers.append(Setting(value: peer, field: addressField))
            if isDefault, position == 0 { preferred = peer }
        }
        return ok ? (peers, preferred) : nil
    }

    private mutating func parseTraffic(_ field: Field) -> [Setting<TrafficSelectorPair>]? {
        guard let items = field.list(&diagnostics, expecting: "{local, remote} subnet pairs") else { return nil }
        guard !items.isEmpty else {
            diagnostics.report(field, "no protected traffic; allowed: one or more {local: PREFIX, remote: PREFIX} pairs")
            return nil
        }
        var ok = true
        var pairs: [Setting<TrafficSelectorPair>] = []
        for item in items {
            guard let section = Section(item, allowed: Self.trafficKeys, &diagnostics) else { ok = false; continue }
            let local = section.required("local", &diagnostics, allowed: "a prefix such as 10.1.0.0/16").flatMap { parsePrefix($0) }
            let remote = section.required("remote", &diagnostics, allowed: "a prefix such as 10.2.0.0/16").flatMap { parsePrefix($0) }
            guard let local, let remote else { ok = false; continue }
            guard local.value.family == remote.value.family else {
                diagnostics.report(remote.field, "local \(local.value) is \(local.value.family) but remote \(remote.value) is \(remote.value.family); allowed: both sides of one selector in the same family (write a second pair for the other family)")
                ok = false
                continue
            }
            pairs.append(Setting(value: TrafficSelectorPair(local: local.value, remote: remote.value), field: item))
        }
        return ok ? pairs : nil
    }

    private mutating func parsePrefix(_ field: Field) -> Setting<IPPrefix>? {
        guard let text = field.scalar(&diagnostics, expecting: "a prefix such as 10.1.0.0/16") else { return nil }
        do {
            return Setting(value: try IPPrefix.parse(text), field: field)
        } catch {
            diagnostics.report(field, "\(error); allowed: ADDRESS/LENGTH with no host bits set, e.g. 10.1.0.0/16 or 2001:db8:1::/48")
            return nil
        }
    }

    private mutating func parseProposals<P>(_ field: Field, _ parse: (String) throws(ProposalError) -> P) -> [P]? {
        guard let items = field.list(&diagnostics, expecting: "proposals", scalarAllowed: true) else { return nil }
        guard !items.isEmpty else {
            diagnostics.report(field, "no proposals; allowed: one or more proposals in strongSwan notation")
            return nil
        }
        var ok = true
        var proposals: [P] = []
        for item in items {
            guard let text = item.scalar(&diagnostics, expecting: "a proposal such as aes256-sha256-x25519") else { ok = false; continue }
            do {
                proposals.append(try parse(text))
            } catch {
                diagnostics.report(item, error.description)
                ok = false
            }
        }
        return ok ? proposals : nil
    }
}

extension Diagnostics {
    /// A scratch collector for re-reading a node already checked (its errors are reported once, elsewhere).
    var discarding: Diagnostics {
        get { Diagnostics() }
        set {}
    }
}

/// The check a hook's executable passes at load time (stat(2), following a symbolic link to the file that runs):
/// a regular file, executable, owned by root or by the user vigild runs as, and writable by nobody else, so that
/// only whoever could replace vigild itself decides what runs as it.
enum HookExecutable {
    /// Nil when the file may be run; else what is wrong, with the fix.
    static func refusal(path: String) -> String? {
        var status = stat()
        guard stat(path, &status) == 0 else {
            return "cannot use the hook '\(path)': \(String(cString: strerror(errno))); allowed: an existing executable file"
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            return "the hook '\(path)' is not a regular file; allowed: an executable file"
        }
        let mode = Int(status.st_mode) & 0o7777
        guard mode & 0o111 != 0, access(path, X_OK) == 0 else {
            return "the hook '\(path)' is not executable (mode \(SecretsFileReader.octal(mode))); allowed: an executable file; fix: chmod 755 \(path)"
        }
        let owner = status.st_uid
        let us = geteuid()
        guard owner == 0 || owner == us else {
            return "the hook '\(path)' is owned by uid \(owner), not by root or by the user vigild runs as (uid \(us)); "
                + "allowed: owned by root or uid \(us); fix: chown \(us == 0 ? "root" : String(us)) \(path)"
        }
        guard mode & 0o022 == 0 else {
            return "the hook '\(path)' has mode \(SecretsFileReader.octal(mode)), which lets group or others change it; "
                + "allowed: writable by its owner only; fix: chmod go-w \(path)"
        }
        return nil
    }
}

extension TextForms {
    static let metricsListenForms = "ADDRESS:PORT, an IPv4 address or a bracketed IPv6 address and a port from "
        + "\(ConfigurationLimits.metricsPort.lowerBound) to \(ConfigurationLimits.metricsPort.upperBound), such as "
        + "192.0.2.1:9464 or [2001:db8::1]:9464"

    /// `192.0.2.1:9464` or `[2001:db8::1]:9464` (RFC 3986 §3.2.2 brackets an IPv6 literal before its port).
    static func metricsListen(_ text: String) -> Result<Endpoint, TextFormError> {
        func refused(_ why: String) -> Result<Endpoint, TextFormError> {
            .failure(TextFormError(message: "'\(text)' \(why); allowed: \(metricsListenForms)"))
        }
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return refused("has no ']' after its IPv6 address") }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return refused("has no ':PORT' after its address") }
            port = rest.dropFirst()
            guard let address = IPAddress(String(host)), address.family == .ipv6 else {
                return refused("has '\(host)' in brackets, which is not an IPv6 address")
            }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return refused("has no ':PORT'") }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
            if host.contains(":") { return refused("is an IPv6 address without brackets") }
        }
        guard let address = IPAddress(String(host)) else { return refused("has '\(host)', which is not an IP address") }
        guard port.allSatisfy(\.isASCIIDigit), let number = Int(port), ConfigurationLimits.metricsPort.contains(number) else {
            return refused("has port '\(port)', which is not a number from \(ConfigurationLimits.metricsPort.lowerBound) to "
                + "\(ConfigurationLimits.metricsPort.upperBound)")
        }
        return .success(Endpoint(address, UInt16(number)))
    }
}
