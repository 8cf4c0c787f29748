import Testing
import VigilAddressing
@testable import VigilConfig

/// One test per invalid case of the issue: the message content, the line and column, and the field path.
@Suite struct ValidationTests {
    @Test func theFixtureIsValid() {
        #expect(errors(validDocument) == [])
    }

    @Test func dpdEnabledWithoutAnInterval() throws {
        let yaml = changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {mode: periodic}")
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps.A.entries[10].dpd.interval")
        #expect((error.line, error.column) == (9, 9))
        #expect(error.message.contains("DPD is enabled by mode periodic (set at global.dpd.mode) but no interval is set"))
        #expect(error.message.contains("allowed: an interval from 100ms to 1h, or mode: off"))
    }

    @Test func dpdDefaultModeIsOnDemandAndNeedsAnInterval() throws {
        let yaml = changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {retries: 3}")
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps.A.entries[10].dpd.interval")
        #expect(error.message.contains("the default mode on-demand"))
    }

    @Test func dpdIntervalBelowAndAboveRange() throws {
        let low = try singleError(changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {mode: periodic, interval: 99ms, retry: 50ms}"))
        #expect(low.path == "global.dpd.interval")
        #expect((low.line, low.column) == (5, 35))
        #expect(low.message == "99ms is out of range; allowed: 100ms to 1h (Cisco: 10s to 1h; Vigil allows sub-second detection)")

        let high = try singleError(changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {mode: periodic, interval: 2h}"))
        #expect(high.path == "global.dpd.interval")
        #expect(high.message.hasPrefix("2h is out of range; allowed: 100ms to 1h"))
    }

    @Test func dpdRetryOutOfRange() throws {
        let yaml = changing("        esp-proposals: [aes256gcm16]", to: """
                    esp-proposals: [aes256gcm16]
                    dpd:
                      interval: 2m
                      retry: 61s
            """)
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps.A.entries[10].dpd.retry")
        #expect((error.line, error.column) == (17, 18))
        #expect(error.message == "61s is out of range; allowed: 50ms to 1m (Cisco: 2s to 60s; Vigil allows sub-second retries)")

        let low = try singleError(changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {mode: periodic, interval: 1s, retry: 10ms}"))
        #expect(low.path == "global.dpd.retry")
        #expect(low.message.hasPrefix("10ms is out of range; allowed: 50ms to 1m"))
    }

    @Test func dpdRetryLongerThanInterval() throws {
        let yaml = changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {mode: periodic, interval: 1s, retry: 1500ms}")
        let error = try singleError(yaml)
        #expect(error.path == "global.dpd.retry")
        #expect((error.line, error.column) == (5, 46))
        #expect(error.message == "retry 1s500ms is longer than the interval 1s (set at global.dpd.interval); allowed: a retry no longer than the interval")
    }

    @Test func dpdIntervalShorterThanTheDefaultRetry() throws {
        let yaml = changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {mode: periodic, interval: 500ms}")
        let error = try singleError(yaml)
        #expect(error.path == "global.dpd.interval")
        #expect(error.message.contains("interval 500ms is shorter than the default retry 2s"))
    }

    @Test func unknownAlgorithmListsTheKnownOnes() throws {
        let yaml = changing("        ike-proposals: [aes256-sha256-x25519]", to: "        ike-proposals: [aes256-sha256-x25519, aes256-sha265-x25519]")
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps.A.entries[10].ike-proposals[1]")
        #expect((error.line, error.column) == (13, 47))
        #expect(error.message.contains("unknown algorithm 'sha265' in proposal 'aes256-sha265-x25519'"))
        #expect(error.message.contains("known: aes128, aes256, aes128gcm16, aes256gcm16, sha1, sha256"))
        #expect(error.message.contains("x25519"))

        let esp = try singleError(changing("        esp-proposals: [aes256gcm16]", to: "        esp-proposals: [chacha20poly1305]"))
        #expect(esp.path == "crypto-maps.A.entries[10].esp-proposals[0]")
        #expect(esp.message.contains("unknown algorithm 'chacha20poly1305'"))

        let pfs = try singleError(changing("        esp-proposals: [aes256gcm16]", to: "        esp-proposals: [aes256gcm16]\n        pfs-group: modp1024"))
        #expect(pfs.path == "crypto-maps.A.entries[10].pfs-group")
        #expect(pfs.message == "unknown DH group 'modp1024'; known: none, modp2048, modp3072, ecp256, ecp384, x25519")
    }

    @Test func preferredPeerThatIsNotFirst() throws {
        let yaml = changing("        peers: [198.51.100.1, 198.51.100.2]", to: """
                    peers:
                      - 198.51.100.1
                      - address: 198.51.100.2
                        default: true
            """)
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps.A.entries[10].peers[1].default")
        #expect((error.line, error.column) == (14, 22))
        #expect(error.message.contains("peer 198.51.100.2 is marked default (the preferred peer) but is listed at position 2"))
        #expect(error.message.contains("allowed: only the first listed peer may be the default"))
    }

    @Test func preferredPeerFirstIsAccepted() throws {
        let yaml = changing("        peers: [198.51.100.1, 198.51.100.2]", to: """
                    peers:
                      - {address: 198.51.100.1, default: true}
                      - 198.51.100.2
                    idle-time: 5m
            """)
        let configuration = try ConfigurationLoader.load(yaml: yaml, fileName: "test.yaml", secrets: validSecrets)
        let entry = try #require(configuration.cryptoMaps.first?.entries.first)
        #expect(entry.preferredPeer?.address == .ip(try #require(IPAddress("198.51.100.1"))))
        #expect(entry.idleTime == .seconds(300))
        #expect(entry.preferredPeer?.preSharedKey.bytes == Array("example-key-1".utf8))
    }

    @Test func idleTimeWithoutAPreferredPeer() throws {
        let yaml = changing("        esp-proposals: [aes256gcm16]", to: "        esp-proposals: [aes256gcm16]\n        idle-time: 10m")
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps.A.entries[10].idle-time")
        #expect((error.line, error.column) == (15, 9))
        #expect(error.message.contains("no peer is marked default"))
    }

    @Test func duplicatePeersInAList() throws {
        let yaml = changing("        peers: [198.51.100.1, 198.51.100.2]", to: "        peers: [198.51.100.1, 198.51.100.2, 198.51.100.1]")
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps.A.entries[10].peers[2]")
        #expect((error.line, error.column) == (11, 45))
        #expect(error.message == "peer 198.51.100.1 is listed twice (first at line 11, position 1); allowed: each peer once per list")
    }

    @Test func duplicateHostNamesDifferOnlyInCase() throws {
        let yaml = changing("        peers: [198.51.100.1, 198.51.100.2]", to: "        peers: [vpn.example.net, VPN.Example.NET]")
        let found = errors(yaml, secrets: "pre-shared-keys:\n  vpn.example.net: k\n")
        #expect(found.map(\.path) == ["crypto-maps.A.entries[10].peers[1]"])
        #expect(found.first?.message.contains("peer vpn.example.net is listed twice") == true)
    }

    @Test func duplicateSequenceNumbers() throws {
        let yaml = validDocument + """
                  - sequence: 10
                    ike-version: v2
                    peers: [198.51.100.3]
                    traffic: [{local: 10.1.0.0/16, remote: 10.3.0.0/16}]
                    ike-proposals: [aes256-sha256-x25519]
                    esp-proposals: [aes256gcm16]

            """
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps.A.entries[10].sequence")
        #expect((error.line, error.column) == (15, 19))
        #expect(error.message == "sequence number 10 is already used by the entry at line 9; allowed: each sequence number once per crypto map")
    }

    @Test func emptyPeerList() throws {
        let error = try singleError(changing("        peers: [198.51.100.1, 198.51.100.2]", to: "        peers: []"))
        #expect(error.path == "crypto-maps.A.entries[10].peers")
        #expect((error.line, error.column) == (11, 16))
        #expect(error.message.contains("the peer list is empty; allowed: one or more peers"))
    }

    @Test func overlappingProtectedSubnetsBetweenMaps() throws {
        let yaml = validDocument + """
              B:
                entries:
                  - sequence: 10
                    ike-version: v2
                    peers: [198.51.100.3]
                    traffic: [{local: 10.1.2.0/24, remote: 10.0.0.0/8}]
                    ike-proposals: [aes256-sha256-x25519]
                    esp-proposals: [aes256gcm16]

            """
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps.B.entries[10].traffic[0]")
        #expect((error.line, error.column) == (20, 19))
        #expect(error.message.contains("protected traffic 10.1.2.0/24 <=> 10.0.0.0/8 overlaps 10.1.0.0/16 <=> 10.2.0.0/16 of crypto-maps.A.entries[10].traffic[0] (line 12) in crypto map A"))
    }

    @Test func overlapWithinOneMapIsOrderedBySequenceAndAllowed() throws {
        let yaml = validDocument + """
                  - sequence: 20
                    ike-version: v2
                    peers: [198.51.100.3]
                    traffic: [{local: 10.1.0.0/16, remote: 10.0.0.0/8}]
                    ike-proposals: [aes256-sha256-x25519]
                    esp-proposals: [aes256gcm16]

            """
        #expect(errors(yaml) == [])
    }

    @Test func malformedAddressesAndPrefixes() throws {
        let peer = try singleError(changing("        peers: [198.51.100.1, 198.51.100.2]", to: "        peers: [198.51.100.1, 198.51.100.256]"))
        #expect(peer.path == "crypto-maps.A.entries[10].peers[1]")
        #expect((peer.line, peer.column) == (11, 31))
        #expect(peer.message.hasPrefix("'198.51.100.256' is not an IPv4 or IPv6 address or a host name"))

        let hostBits = try singleError(changing("        traffic: [{local: 10.1.0.0/16, remote: 10.2.0.0/16}]", to: "        traffic: [{local: 10.1.2.3/16, remote: 10.2.0.0/16}]"))
        #expect(hostBits.path == "crypto-maps.A.entries[10].traffic[0].local")
        #expect((hostBits.line, hostBits.column) == (12, 27))
        #expect(hostBits.message.hasPrefix("'10.1.2.3/16' has host bits set; did you mean 10.1.0.0/16?"))

        let length = try singleError(changing("        traffic: [{local: 10.1.0.0/16, remote: 10.2.0.0/16}]", to: "        traffic: [{local: 10.1.0.0/16, remote: 10.2.0.0/33}]"))
        #expect(length.path == "crypto-maps.A.entries[10].traffic[0].remote")
        #expect(length.message.hasPrefix("prefix length 33 is out of range for IPv4 (0-32)"))

        let listen = try singleError(changing("  listen: [192.0.2.1]", to: "  listen: [192.0.2.1, 2001:db8::g]"))
        #expect(listen.path == "global.listen[1]")
        #expect((listen.line, listen.column) == (3, 23))
        #expect(listen.message.hasPrefix("'2001:db8::g' is not an IPv4 or IPv6 address"))
    }

    @Test func mixingIPv4AndIPv6InOneSelector() throws {
        let yaml = changing("        traffic: [{local: 10.1.0.0/16, remote: 10.2.0.0/16}]", to: """
                    traffic:
                      - local: 10.1.0.0/16
                        remote: 2001:db8:2::/48
            """)
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps.A.entries[10].traffic[0].remote")
        #expect((error.line, error.column) == (14, 21))
        #expect(error.message.contains("local 10.1.0.0/16 is IPv4 but remote 2001:db8:2::/48 is IPv6"))
    }

    @Test func unknownKeysAreNotIgnored() throws {
        let yaml = changing("        ike-version: v2", to: "        ike-version: v2\n        peer-timout: 5s")
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps.A.entries[10].peer-timout")
        #expect((error.line, error.column) == (11, 9))
        #expect(error.message.hasPrefix("unknown key 'peer-timout'; allowed: sequence, ike-version, peers"))

        let typo = try singleError(changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {mode: periodic, interval: 5s, retyr: 200ms}"))
        #expect(typo.path == "global.dpd.retyr")
        #expect((typo.line, typo.column) == (5, 39))
        #expect(typo.message == "unknown key 'retyr' (did you mean 'retry'?); allowed: mode, interval, retry, retries, action")
    }

    @Test func peerWithoutAKey() throws {
        let yaml = changing("        peers: [198.51.100.1, 198.51.100.2]", to: "        peers: [198.51.100.1, 198.51.100.4]")
        let error = try singleError(yaml)
        #expect(error.file == "test.yaml")
        #expect(error.path == "crypto-maps.A.entries[10].peers[1]")
        #expect((error.line, error.column) == (11, 31))
        #expect(error.message == "peer 198.51.100.4 has no pre-shared key in the secrets file; allowed: add one under pre-shared-keys as '198.51.100.4'")
    }

    @Test func ikev1HasNoAEADInPhase1() throws {
        let yaml = changing("        ike-version: v2", to: "        ike-version: v1")
        let error = try singleError(changing("        ike-proposals: [aes256-sha256-x25519]", to: "        ike-proposals: [aes256gcm16-prfsha256-x25519]", in: yaml))
        #expect(error.path == "crypto-maps.A.entries[10].ike-proposals[0]")
        #expect(error.message.contains("IKEv1 Phase 1 does not have"))
    }

    @Test func durationsNeedUnits() throws {
        let error = try singleError(changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {mode: periodic, interval: 10}"))
        #expect(error.path == "global.dpd.interval")
        #expect(error.message == "'10' has no unit; write it with one, e.g. 10s or 10ms (units: ms, s, m, h, d)")
    }

    @Test func severalErrorsComeBackFromOneFile() throws {
        var yaml = changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {mode: periodic, interval: 1s, retry: 2s}")
        yaml = changing("        peers: [198.51.100.1, 198.51.100.2]", to: "        peers: [198.51.100.1, 198.51.100.1]", in: yaml)
        yaml = changing("        esp-proposals: [aes256gcm16]", to: "        esp-proposals: [aes256gcm17]\n        colour: blue", in: yaml)
        let found = errors(yaml)
        #expect(found.map(\.path) == [
            "global.dpd.retry",
            "crypto-maps.A.entries[10].peers[1]",
            "crypto-maps.A.entries[10].esp-proposals[0]",
            "crypto-maps.A.entries[10].colour",
        ])
        #expect(found.map(\.line) == [5, 11, 14, 15])
    }

    @Test func yamlSyntaxErrorsArePlaced() throws {
        let error = try singleError(changing("  listen: [192.0.2.1]", to: "  listen: [192.0.2.1"))
        #expect(error.path == "")
        #expect(error.line >= 3)
        #expect(error.message.hasPrefix("not valid YAML"))
        #expect(error.description.hasPrefix("test.yaml:\(error.line):\(error.column): not valid YAML"))
    }

    @Test func errorDescriptionIsFileLineColumnPathMessage() {
        let error = ConfigurationError(file: "vigil.yaml", line: 12, column: 7, path: "crypto-maps.A.entries[10].dpd.retry", message: "m")
        #expect(error.description == "vigil.yaml:12:7: crypto-maps.A.entries[10].dpd.retry: m")
    }
}

/// The remaining keys' checks: required keys, enumerations, ranges that relate two keys.
@Suite struct MoreValidationTests {
    @Test func missingRequiredKeyIsPlacedAtItsMapping() throws {
        let error = try singleError(changing("        ike-version: v2", to: ""))
        #expect(error.path == "crypto-maps.A.entries[10].ike-version")
        #expect((error.line, error.column) == (9, 9))
        #expect(error.message == "required key 'ike-version' is missing; allowed: v1 or v2")
    }

    @Test func unknownTopLevelKey() throws {
        let error = try singleError(validDocument + "crypto-map: {}\n")
        #expect(error.path == "crypto-map")
        #expect((error.line, error.column) == (15, 1))
        #expect(error.message.hasPrefix("unknown key 'crypto-map' (did you mean 'crypto-maps'?)"))
    }

    @Test func enumerationsListTheirValues() throws {
        let dataplane = try singleError(changing("  secrets: secrets.yaml", to: "  secrets: secrets.yaml\n  dataplane: ebpf"))
        #expect(dataplane.path == "global.dataplane")
        #expect(dataplane.message == "'ebpf' is not allowed; allowed: kernel, userspace, auto")

        let action = try singleError(changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {mode: periodic, interval: 1s, retry: 200ms, action: reset}"))
        #expect(action.path == "global.dpd.action")
        #expect(action.message == "'reset' is not allowed; allowed: clear, hold, restart")

        let mode = try singleError(changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {mode: always, interval: 1s, retry: 200ms}"))
        #expect(mode.message == "'always' is not allowed; allowed: periodic, on-demand, on-idle, off")
    }

    @Test func onIdleNeedsAnIntervalAsTheOtherProbingModesDo() throws {
        let error = try singleError(changing("  dpd: {mode: periodic, interval: 1s, retry: 200ms}", to: "  dpd: {mode: on-idle}"))
        #expect(error.path == "crypto-maps.A.entries[10].dpd.interval")
        #expect(error.message.contains("DPD is enabled by mode on-idle (set at global.dpd.mode) but no interval is set"))
    }

    @Test func rekeyMarginMustBeShorterThanTheLifetimes() throws {
        let yaml = changing("        esp-proposals: [aes256gcm16]", to: "        esp-proposals: [aes256gcm16]\n        child-lifetime: 10m\n        rekey-margin: 10m")
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps.A.entries[10].rekey-margin")
        #expect((error.line, error.column) == (16, 23))
        #expect(error.message.hasPrefix("rekey-margin 10m is not shorter than the lifetimes (ike-lifetime 1d, child-lifetime 10m)"))
    }

    @Test func lifetimesFollowCiscoRanges() throws {
        let error = try singleError(changing("        esp-proposals: [aes256gcm16]", to: "        esp-proposals: [aes256gcm16]\n        child-lifetime: 60s"))
        #expect(error.path == "crypto-maps.A.entries[10].child-lifetime")
        #expect(error.message == "60s is out of range; allowed: 2m to 1d (Cisco's range)")
    }

    @Test func routeTableAndControlSocket() throws {
        let table = try singleError(changing("  secrets: secrets.yaml", to: "  secrets: secrets.yaml\n  kernel: {route-table: 254}"))
        #expect(table.path == "global.kernel.route-table")
        #expect(table.message.hasPrefix("'254' is not a usable routing table; allowed: main, or a number"))

        let socket = try singleError(changing("  secrets: secrets.yaml", to: "  secrets: secrets.yaml\n  control-socket: vigil.sock"))
        #expect(socket.path == "global.control-socket")
        #expect(socket.message.hasPrefix("'vigil.sock' is not an absolute path"))
    }

    @Test func backoffMaximumBelowInitial() throws {
        let error = try singleError(changing("        esp-proposals: [aes256gcm16]", to: "        esp-proposals: [aes256gcm16]\n        backoff: {initial: 10s, maximum: 5s}"))
        #expect(error.path == "crypto-maps.A.entries[10].backoff.maximum")
        #expect(error.message == "backoff maximum 5s is shorter than initial 10s; allowed: maximum at least initial")
    }

    @Test func missingSecretsKeyWithPeers() throws {
        let error = try singleError(changing("  secrets: secrets.yaml", to: ""))
        #expect(error.path == "global.secrets")
        #expect(error.message.hasPrefix("required key 'secrets' is missing"))
    }

    @Test func badIdentity() throws {
        let error = try singleError(changing("  identity: 192.0.2.1", to: "  identity: \"C=CH, O=Example\""))
        #expect(error.path == "global.identity")
        #expect((error.line, error.column) == (2, 13))
        #expect(error.message == "'C=CH, O=Example' is not an identity; allowed: an IP address, @fqdn or fqdn, user@fqdn")
    }

    @Test func aLongPeerListKeepsItsOrder() throws {
        let addresses = (1...40).map { "198.51.100.\($0)" }
        let yaml = changing("        peers: [198.51.100.1, 198.51.100.2]", to: "        peers: [\(addresses.joined(separator: ", "))]")
        let secrets = "pre-shared-keys:\n" + addresses.map { "  \($0): key-\($0)\n" }.joined()
        let configuration = try ConfigurationLoader.load(yaml: yaml, fileName: "test.yaml", secrets: secrets)
        #expect(configuration.cryptoMaps[0].entries[0].peers.map(\.address.description) == addresses)
    }
}

@Suite struct ShapeTests {
    @Test func aScalarWhereAMappingBelongs() throws {
        // The global section (lines 1-5) and nothing usable after it.
        let yaml = validDocument.split(separator: "\n").prefix(5).joined(separator: "\n") + "\ncrypto-maps: none\n"
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps")
        #expect((error.line, error.column) == (6, 14))
        #expect(error.message == "found a scalar; allowed: a mapping")
    }

    @Test func aMappingWhereAListBelongs() throws {
        let error = try singleError(changing("        peers: [198.51.100.1, 198.51.100.2]", to: "        peers: {first: 198.51.100.1}"))
        #expect(error.path == "crypto-maps.A.entries[10].peers")
        #expect(error.message == "found a mapping; allowed: a list of peer addresses or host names")
    }
}

@Suite struct ConsistencyTests {
    @Test func pfsGroupDisagreesWithAnESPProposal() throws {
        let yaml = changing("        esp-proposals: [aes256gcm16]", to: "        esp-proposals: [aes256gcm16-modp2048]\n        pfs-group: x25519")
        let error = try singleError(yaml)
        #expect(error.path == "crypto-maps.A.entries[10].esp-proposals[0]")
        #expect((error.line, error.column) == (14, 25))
        #expect(error.message.hasPrefix("ESP proposal 'aes256gcm16-modp2048' names DH group modp2048 but pfs-group is x25519"))
    }

    @Test func duplicateKeysAreReportedByYAML() throws {
        let error = try singleError(changing("        ike-version: v2", to: "        ike-version: v2\n        ike-version: v1"))
        #expect(error.path == "")
        #expect((error.line, error.column) == (10, 9))
        #expect(error.message == "duplicate key 'ike-version' in one mapping; allowed: each key once")
    }
}
