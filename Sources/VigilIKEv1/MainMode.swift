import VigilAddressing
import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// RFC 2409 §5 Main Mode with pre-shared keys:
///   MM1 { SA, V... } -->   <-- MM2 { SA, V... }
///   MM3 { KE, Ni, NAT-D, NAT-D } -->   <-- MM4 { KE, Nr, NAT-D, NAT-D }
///   MM5 E{ IDii, HASH_I, N(INITIAL-CONTACT) } -->   <-- MM6 E{ IDir, HASH_R }
extension IKEv1Endpoint {
    static let nonceLength = 32
    static let natTraversalPort: UInt16 = 4500

    /// Vendor IDs Vigil advertises: RFC 3706 DPD, RFC 3947 NAT-T.
    static var vendorIDs: [ISAKMP.Payload] { [.vendorID(ISAKMP.VendorID.dpd), .vendorID(ISAKMP.VendorID.natTraversal)] }

    mutating func startMainMode(connection: ConnectionConfiguration, peer: PeerConfiguration, initiateChild: Bool,
                                replaces: IKEv1SAID?, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        var cookie: UInt64 = 0
        while cookie == 0 || sas[IKEv1SAID(cookie)] != nil { cookie = random.next() }
        let suites = ProposalMapping.phase1Suites(connection.ikeProposals, lifetimeSeconds: Self.seconds(connection.ikeLifetime))
        guard !suites.isEmpty else {
            context.actions.append(.negotiationFailed(connection: connection.name, peer: peer.address,
                                                      reason: .init(.noProposalChosen, "no IKEv1-capable IKE proposal configured (AEAD is IKEv2 only)")))
            return
        }
        let saPayload = ProposalMapping.phase1SA(suites)
        var sa = ISAKMPSA(id: IKEv1SAID(cookie), connection: connection, peer: peer, isInitiator: true,
                          initiatorCookie: cookie, responderCookie: 0,
                          local: Endpoint(connection.localAddress, 500), remote: Endpoint(peer.address, 500),
                          phase: .initiatorSentMM1(offered: suites),
                          initiatorSABody: ISAKMP.Payload.securityAssociation(saPayload).body,
                          initiateChildAfterMainMode: initiateChild, replaces: replaces)
        serials += 1
        sa.serial = serials
        let payloads: [ISAKMP.Payload] = [.securityAssociation(saPayload)] + Self.vendorIDs
        let message = ISAKMP.Message(header: .init(initiatorCookie: cookie, responderCookie: 0, nextPayload: 0,
                                                   exchangeType: .identityProtection, flags: [], messageID: 0), payloads: payloads)
        context.log(.info, "\(connection.name): initiating Main Mode with \(sa.remote), cookie \(sa.id)")
        context.log(.debug, "sending MM1 \(Self.payloadList(payloads)) to \(sa.remote), proposals \(suites.map { $0.proposal.description })")
        sendRequest(message.encode(), messageID: 0, purpose: "Main Mode 1", sa: &sa, &context)
        sas[sa.id] = sa
    }

    static func seconds(_ duration: Duration) -> UInt32 {
        UInt32(clamping: duration.components.seconds)
    }

    /// A new MM1: find the connection by the addresses (Main Mode PSK is chosen by the peer's IP, RFC 2409 §5.4).
    mutating func mainMode1Received(header: ISAKMP.Header, body: [UInt8], raw: [UInt8], from: Endpoint, to: Endpoint,
                                    _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        let payloads: [ISAKMP.Payload]
        do {
            payloads = try ISAKMP.decodePayloads(firstPayload: header.nextPayload, body, allowPadding: false)
        } catch {
            context.count(.malformedDropped)
            context.log(.warning, "dropped malformed MM1 from \(from): \(error)")
            return
        }
        guard let connection = configuration.connections.first(where: { $0.localAddress == to.address && $0.peers.contains { $0.address == from.address } }),
              let peer = connection.peers.first(where: { $0.address == from.address }) else {
            context.count(.unknownPeer)
            context.log(.warning, "MM1 from \(from) to \(to): no connection has this peer")
            return
        }
        context.log(.debug, "received MM1 \(Self.payloadList(payloads)) from \(from)")
        guard case .securityAssociation(let offer)? = payloads.first(where: { $0.type == ISAKMP.PayloadType.securityAssociation.rawValue }) else {
            context.count(.malformedDropped)
            context.log(.warning, "MM1 from \(from) without an SA payload")
            return
        }
        let allowed = ProposalMapping.phase1Suites(connection.ikeProposals, lifetimeSeconds: Self.seconds(connection.ikeLifetime))
        guard let (transform, suite) = ProposalMapping.selectPhase1(offer, allowed: allowed) else {
            let offered = offer.proposals.flatMap(\.transforms).compactMap(ProposalMapping.phase1Suite).map(\.proposal.description)
            let reason = "no proposal chosen: peer offered \(offered.isEmpty ? "nothing Vigil supports" : offered.joined(separator: ", ")), "
                + "we allow \(allowed.map(\.proposal.description).joined(separator: ", "))"
            // Anyone can send an MM1 with this source address: a refusal is not this peer's failure (no
            // `.negotiationFailed`, which the daemon would count against the peer and which could end our own
            // attempt with it); it is unauthenticated junk, counted as such.
            context.count(.unauthenticatedRequestsRefused)
            context.log(.warning, "\(connection.name): MM1 from \(from) (unauthenticated): \(reason)")
            // RFC 2408 §5.4: tell the peer in a plaintext informational exchange.
            let notify = ISAKMP.Message(header: .init(initiatorCookie: header.initiatorCookie, responderCookie: 0, nextPayload: 0,
                                                      exchangeType: .informational, flags: [], messageID: 0),
                                        payloads: [.notification(.init(protocolID: .isakmp, notifyType: ISAKMP.NotifyType.noProposalChosen, spi: []))])
            context.actions.append(.send(bytes: notify.encode(), from: to, to: from))
            return
        }
        guard makeRoomForHalfOpen(from: from.address, &context) else { return }
        var cookie: UInt64 = 0
        while cookie == 0 || sas[IKEv1SAID(cookie)] != nil { cookie = random.next() }
        var sa = ISAKMPSA(id: IKEv1SAID(cookie), connection: connection, peer: peer, isInitiator: false,
                          initiatorCookie: header.initiatorCookie, responderCookie: cookie, local: to, remote: from,
                          phase: .responderSentMM2(suite: suite), initiatorSABody: ISAKMP.Payload.securityAssociation(offer).body,
                          initiateChildAfterMainMode: false, replaces: nil)
        serials += 1
        sa.serial = serials
        noteVendorIDs(payloads, sa: &sa)
        guard let chosenProposal = offer.proposals.first(where: {
            $0.protocolID == ISAKMP.ProtocolID.isakmp.rawValue && $0.transforms.contains(transform)
        }) else {
            preconditionFailure("selectPhase1 chose a transform outside the offer")
        }
        var chosen = chosenProposal
        chosen.transforms = [transform]
        var response: [ISAKMP.Payload] = [.securityAssociation(ISAKMP.SecurityAssociation(proposals: [chosen])), .vendorID(ISAKMP.VendorID.dpd)]
        if sa.peerSupportsNATT { response.append(.vendorID(ISAKMP.VendorID.natTraversal)) }
        context.log(.info, "\(connection.name): Main Mode from \(from) accepted, \(suite.proposal), cookie \(sa.id)")
        context.log(.debug, "sending MM2 \(Self.payloadList(response)) to \(from)")
        let bytes = ISAKMP.Message(header: .init(initiatorCookie: sa.initiatorCookie, responderCookie: cookie, nextPayload: 0,
                                                 exchangeType: .identityProtection, flags: [], messageID: 0), payloads: response).encode()
        sa.lastMainModeRequest = raw
        sa.lastMainModeResponse = bytes
        // Resent until MM3 comes: a lost MM2 would otherwise stall the peer until its own retransmission (4 s for
        // strongSwan), long enough for a reauthentication to race our fallback rekey.
        sendRequest(bytes, messageID: 0, purpose: "MM2", sa: &sa, &context)
        context.actions.append(.scheduleTimer(.halfOpenExpired(sa.id), at: context.now + configuration.halfOpenTimeout))
        sas[sa.id] = sa
    }

    /// Half-open limits (issue 13): at most `maximumHalfOpenPerSource` from one address, `maximumHalfOpen` in all.
    /// A source at its limit loses its own oldest half-open SA still at MM2 (one that never showed it receives at that
    /// address), never another source's; a full table refuses a new source. Returns whether the new one may come.
    mutating func makeRoomForHalfOpen(from address: IPAddress, _ context: inout Context) -> Bool {
        let halfOpen = sas.values.filter { !$0.isInitiator && $0.establishedAt == nil && !$0.isDead }
        let fromSource = halfOpen.filter { $0.remote.address == address }
        if fromSource.count >= configuration.maximumHalfOpenPerSource {
            let unproven = fromSource.filter { if case .responderSentMM2 = $0.phase { true } else { false } }
            guard var victim = unproven.min(by: { $0.serial < $1.serial }) else {
                context.count(.halfOpenPerSourceDropped)
                context.log(.warning, "MM1 from \(address) dropped: \(fromSource.count) half-open ISAKMP SAs from it already")
                return false
            }
            context.count(.halfOpenEvicted)
            context.log(.info, "MM1 from \(address): its oldest half-open ISAKMP SA \(victim.id) makes room "
                        + "(\(fromSource.count) from this address already)")
            victim.phase = .dead
            sas[victim.id] = victim
            return true
        }
        guard halfOpen.count < configuration.maximumHalfOpen else {
            context.count(.halfOpenLimitDropped)
            context.log(.warning, "MM1 from \(address) dropped: \(halfOpen.count) half-open ISAKMP SAs already")
            return false
        }
        return true
    }

    func noteVendorIDs(_ payloads: [ISAKMP.Payload], sa: inout ISAKMPSA) {
        for case .vendorID(let vid) in payloads {
            if vid == ISAKMP.VendorID.dpd { sa.peerSupportsDPD = true }
            if vid == ISAKMP.VendorID.natTraversal { sa.peerSupportsNATT = true }
        }
    }

    mutating func mainModeReceived(header: ISAKMP.Header, body: [UInt8], raw: [UInt8], from: Endpoint, to: Endpoint,
                                   sa: inout ISAKMPSA, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        // A retransmitted request we already answered: answer again, byte for byte (RFC 2408 §5 retransmission).
        if !sa.isInitiator, raw == sa.lastMainModeRequest, let response = sa.lastMainModeResponse {
            context.count(.retransmittedRequestsAnswered)
            context.actions.append(.send(bytes: response, from: sa.local, to: sa.remote))
            return
        }
        // Anything that does not fit the step we are in is a duplicate, a late retransmission or noise: dropped
        // before it touches the IV chain, never fatal (an unauthenticated packet must not kill a negotiation).
        let encrypted = header.flags.contains(.encryption)
        guard let expectsEncryption = sa.nextMainModeMessageIsEncrypted, encrypted == expectsEncryption,
              raw != sa.lastMainModeMessageReceived else {
            context.count(.unexpectedDropped)
            context.log(.debug, "dropped a Main Mode message from \(from) that does not fit ISAKMP SA \(sa.id)'s step (duplicate?)")
            return
        }
        let plaintext: [UInt8]
        var nextIV: [UInt8]?
        if encrypted {
            guard let keys = sa.keys else {
                context.count(.malformedDropped)
                context.log(.warning, "encrypted Main Mode message from \(from) before keys exist")
                return
            }
            do {
                (plaintext, nextIV) = try keys.decryptPhase1(body)
            } catch {
                context.count(.malformedDropped)
                context.log(.warning, "Main Mode message from \(from) does not decrypt: \(error)")
                return
            }
        } else {
            plaintext = body
        }
        let payloads: [ISAKMP.Payload]
        do {
            payloads = try ISAKMP.decodePayloads(firstPayload: header.nextPayload, plaintext, allowPadding: encrypted)
        } catch {
            if encrypted {
                mainModeMessageRefused(sa: &sa, .init(.authenticationFailed, "\(sa.isInitiator ? "MM6" : "MM5") from \(from) "
                                                      + "decrypted to garbage (\(error)): pre-shared key mismatch?"), &context)
            } else {
                context.count(.malformedDropped)
                context.log(.warning, "dropped malformed Main Mode message from \(from): \(error)")
            }
            return
        }
        // The IV chain moves on with this message; it moves back if the message turns out not to verify.
        let previousIV = nextIV.map { sa.keys?.advancePhase1IV($0) } ?? nil
        do {
            switch sa.phase {
            case .initiatorSentMM1(let offered):
                try mainMode2Received(header: header, payloads: payloads, offered: offered, sa: &sa, &context, &random)
            case .initiatorSentMM3(let state):
                try mainMode4Received(payloads: payloads, state: state, sa: &sa, &context, &random)
            case .initiatorSentMM5(let state):
                try mainMode6Received(payloads: payloads, state: state, sa: &sa, &context, &random)
            case .responderSentMM2(let suite):
                try mainMode3Received(raw: raw, payloads: payloads, suite: suite, sa: &sa, &context, &random)
            case .responderSentMM4(let state):
                try mainMode5Received(raw: raw, payloads: payloads, state: state, from: from, to: to, sa: &sa, &context, &random)
            case .established, .dead:
                context.count(.unexpectedDropped)
                context.log(.debug, "dropped Main Mode message from \(from): ISAKMP SA \(sa.id) is past Main Mode")
            }
        } catch {
            if let previousIV { sa.keys?.advancePhase1IV(previousIV) }
            mainModeMessageRefused(sa: &sa, error, &context)
            return
        }
        sa.lastMainModeMessageReceived = raw
    }

    /// A Main Mode message that does not fit (no acceptable choice in MM2, a bad KE, an MM5/MM6 that does not
    /// verify): nothing in it is authenticated, so it changes nothing (issue 13). As initiator we keep
    /// retransmitting and the reason becomes the hint of the final failure; as responder the half-open SA waits
    /// for a valid message until it expires, and a bad MM3 is junk from a source that may be spoofed.
    func mainModeMessageRefused(sa: inout ISAKMPSA, _ failure: NegotiationFailure, _ context: inout Context) {
        if failure.code == .authenticationFailed { context.count(.authenticationFailures) }
        switch sa.phase {
        case .responderSentMM2:
            context.count(.unauthenticatedRequestsRefused)
            context.log(.warning, "\(sa.connection.name): MM3 from \(sa.remote) refused (unauthenticated): \(failure.message)")
        case .initiatorSentMM1, .initiatorSentMM3, .initiatorSentMM5, .responderSentMM4:
            unauthenticatedReply(sa: &sa, failure.code, failure.message, &context)
        case .established, .dead:
            context.count(.unexpectedDropped)
        }
    }

    func failMainMode(sa: inout ISAKMPSA, _ code: NegotiationFailure.Code, _ message: String, _ context: inout Context) {
        context.log(.error, "\(sa.connection.name): Main Mode with \(sa.remote) failed: \(message)")
        if code == .authenticationFailed { context.count(.authenticationFailures) }
        context.exchange(.mainMode, .init(initiator: sa.isInitiator), .failed)
        context.actions.append(.negotiationFailed(connection: sa.connection.name, peer: sa.peer.address, reason: .init(code, message)))
        sa.phase = .dead
    }

    // MM2 { SA, V... } <--
    mutating func mainMode2Received(header: ISAKMP.Header, payloads: [ISAKMP.Payload], offered: [Phase1Suite], sa: inout ISAKMPSA,
                                    _ context: inout Context, _ random: inout some RandomNumberGenerator) throws(NegotiationFailure) {
        context.log(.debug, "received MM2 \(Self.payloadList(payloads)) from \(sa.remote)")
        guard case .securityAssociation(let chosen)? = payloads.first(where: { $0.type == ISAKMP.PayloadType.securityAssociation.rawValue }),
              chosen.proposals.count == 1, chosen.proposals[0].transforms.count == 1,
              let suite = ProposalMapping.phase1Suite(chosen.proposals[0].transforms[0]),
              offered.contains(where: { $0.encryption == suite.encryption && $0.integrity == suite.integrity && $0.group == suite.group })
        else { throw .init(.noProposalChosen, "MM2 does not choose exactly one of the transforms we offered") }
        answered(messageID: 0, sa: &sa, &context)
        sa.responderCookie = header.responderCookie
        noteVendorIDs(payloads, sa: &sa)
        context.log(.info, "\(sa.connection.name): peer chose \(suite.proposal), DPD \(sa.peerSupportsDPD ? "supported" : "not supported"), NAT-T \(sa.peerSupportsNATT)")
        let state = ISAKMPSA.KeyExchangeSent(suite: suite, keyExchange: try Self.keyExchange(suite.group),
                                             localNonce: Self.randomBytes(Self.nonceLength, &random))
        var reply: [ISAKMP.Payload] = [.keyExchange(state.keyExchange.publicValue), .nonce(state.localNonce)]
        if sa.peerSupportsNATT { reply += natDiscoveryPayloads(sa: sa, suite: suite, &random) }
        context.log(.debug, "sending MM3 \(Self.payloadList(reply)) to \(sa.remote)")
        let bytes = ISAKMP.Message(header: .init(initiatorCookie: sa.initiatorCookie, responderCookie: sa.responderCookie, nextPayload: 0,
                                                 exchangeType: .identityProtection, flags: [], messageID: 0), payloads: reply).encode()
        sa.phase = .initiatorSentMM3(state)
        sendRequest(bytes, messageID: 0, purpose: "Main Mode 3", sa: &sa, &context)
    }

    static func keyExchange(_ group: DHGroup) throws(NegotiationFailure) -> KeyExchange {
        do {
            return try KeyExchange(group: group)
        } catch {
            throw .init(.invalidKEPayload, "Diffie-Hellman \(group) unavailable: \(error)")
        }
    }

    /// RFC 3947 §3.2: NAT-D = HASH(CKY-I | CKY-R | IP | Port); first the peer's address, then ours. With forced
    /// encapsulation our own hash is deliberately wrong so the peer sees us behind NAT.
    func natDiscoveryPayloads(sa: ISAKMPSA, suite: Phase1Suite, _ random: inout some RandomNumberGenerator) -> [ISAKMP.Payload] {
        let remote = natHash(sa: sa, suite: suite, sa.remote)
        let local = sa.connection.forceUDPEncapsulation
            ? Self.randomBytes(remote.count, &random)
            : natHash(sa: sa, suite: suite, sa.local)
        return [.natDiscovery(remote), .natDiscovery(local)]
    }

    func natHash(sa: ISAKMPSA, suite: Phase1Suite, _ endpoint: Endpoint) -> [UInt8] {
        var writer = WireWriter(capacity: 40)
        writer.write(sa.initiatorCookie)
        writer.write(sa.responderCookie)
        writer.write(bytes: endpoint.address.bytes)
        writer.write(endpoint.port)
        return Hash.digest(suite.hash, writer.bytes)
    }

    /// Reads the peer's NAT-D payloads: NAT is present when its hash of our address or of its own differs from ours.
    func detectNAT(_ payloads: [ISAKMP.Payload], suite: Phase1Suite, sa: inout ISAKMPSA, _ context: inout Context) {
        guard sa.peerSupportsNATT else { return }
        let hashes = payloads.compactMap { payload -> [UInt8]? in
            if case .natDiscovery(let hash) = payload { return hash }
            return nil
        }
        guard let first = hashes.first else { return }
        let weAreBehindNAT = first != natHash(sa: sa, suite: suite, sa.local)
        let peerIsBehindNAT = !hashes.dropFirst().contains(natHash(sa: sa, suite: suite, sa.remote))
        sa.udpEncapsulated = weAreBehindNAT || peerIsBehindNAT || sa.connection.forceUDPEncapsulation
        sa.localBehindNAT = weAreBehindNAT || sa.connection.forceUDPEncapsulation
        sa.peerBehindNAT = peerIsBehindNAT
        context.log(.info, "NAT detection with \(sa.remote): local \(weAreBehindNAT ? "behind NAT" : "direct"), "
                    + "peer \(peerIsBehindNAT ? "behind NAT" : "direct")\(sa.connection.forceUDPEncapsulation ? ", encapsulation forced" : "")")
    }

    /// Derives the Phase 1 keys from our exchange and nonce and the peer's KE and nonce (MM3 or MM4).
    func authenticating(suite: Phase1Suite, keyExchange: KeyExchange, localNonce: [UInt8], peerPayloads: [ISAKMP.Payload],
                        sa: ISAKMPSA, message: String) throws(NegotiationFailure) -> ISAKMPSA.Authenticating {
        var peerPublic: [UInt8]?
        var peerNonce: [UInt8]?
        for payload in peerPayloads {
            if case .keyExchange(let value) = payload { peerPublic = value }
            if case .nonce(let value) = payload { peerNonce = value }
        }
        guard let peerPublic, let peerNonce else { throw .init(.malformed, "\(message) lacks KE or nonce") }
        guard peerPublic.count == suite.group.publicValueLength else {
            throw .init(.invalidKEPayload, "KE of \(peerPublic.count) bytes for \(suite.group), expected \(suite.group.publicValueLength)")
        }
        let ours = keyExchange.publicValue
        let (initiatorPublic, responderPublic) = sa.isInitiator ? (ours, peerPublic) : (peerPublic, ours)
        do {
            let keys = try Phase1Keys(
                suite: suite, preSharedKey: sa.peer.preSharedKey,
                initiatorNonce: sa.isInitiator ? localNonce : peerNonce, responderNonce: sa.isInitiator ? peerNonce : localNonce,
                sharedSecret: try keyExchange.sharedSecret(peerPublicValue: peerPublic),
                initiatorCookie: sa.initiatorCookie, responderCookie: sa.responderCookie,
                initiatorPublic: initiatorPublic, responderPublic: responderPublic)
            return ISAKMPSA.Authenticating(keys: keys, initiatorPublic: initiatorPublic, responderPublic: responderPublic)
        } catch {
            throw .init(.invalidKEPayload, "key exchange failed: \(error)")
        }
    }

    /// Switches an SA to UDP 4500 (RFC 3947 §4: the initiator floats once NAT is detected).
    func float(sa: inout ISAKMPSA) {
        guard sa.udpEncapsulated, sa.local.port != Self.natTraversalPort else { return }
        sa.local.port = Self.natTraversalPort
        sa.remote.port = Self.natTraversalPort
    }

    // MM4 { KE, Nr, NAT-D, NAT-D } <--
    mutating func mainMode4Received(payloads: [ISAKMP.Payload], state: ISAKMPSA.KeyExchangeSent, sa: inout ISAKMPSA,
                                    _ context: inout Context, _ random: inout some RandomNumberGenerator) throws(NegotiationFailure) {
        context.log(.debug, "received MM4 \(Self.payloadList(payloads)) from \(sa.remote)")
        let authenticating = try authenticating(suite: state.suite, keyExchange: state.keyExchange, localNonce: state.localNonce,
                                                peerPayloads: payloads, sa: sa, message: "MM4")
        answered(messageID: 0, sa: &sa, &context)
        detectNAT(payloads, suite: state.suite, sa: &sa, &context)
        float(sa: &sa)
        let identity = identificationPayload(sa.connection.localIdentity)
        let hash = authenticationHash(sa: sa, authenticating, ofInitiator: true, identityBody: ISAKMP.Payload.identification(identity).body)
        var reply: [ISAKMP.Payload] = [.identification(identity), .hash(hash)]
        if sa.replaces == nil {
            reply.append(.notification(.init(protocolID: .isakmp, notifyType: ISAKMP.NotifyType.initialContact, spi: sa.cookies)))
        }
        context.log(.debug, "sending MM5 \(Self.payloadList(reply)) to \(sa.remote)")
        let bytes = encryptPhase1(sa: sa, keys: authenticating.keys, reply)
        sa.phase = .initiatorSentMM5(authenticating)
        sendRequest(bytes, messageID: 0, purpose: "Main Mode 5", sa: &sa, &context)
    }

    func encryptPhase1(sa: ISAKMPSA, keys: Phase1Keys, _ payloads: [ISAKMP.Payload]) -> [UInt8] {
        do {
            return try Self.encryptedMessage(sa: sa, keys: keys, exchange: .identityProtection, messageID: 0, payloads: payloads, iv: nil).bytes
        } catch {
            preconditionFailure("AES-CBC with a key we derived failed: \(error)")
        }
    }

    func identificationPayload(_ identity: Identity) -> ISAKMP.Identification {
        ISAKMP.Identification(idType: identity.idType, data: identity.data)
    }

    /// HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b);
    /// HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b) (RFC 2409 §5).
    func authenticationHash(sa: ISAKMPSA, _ state: ISAKMPSA.Authenticating, ofInitiator: Bool, identityBody: [UInt8]) -> [UInt8] {
        let keys = state.keys
        let gxi = state.initiatorPublic
        let gxr = state.responderPublic
        var cookies = WireWriter(capacity: 16)
        if ofInitiator {
            cookies.write(sa.initiatorCookie)
            cookies.write(sa.responderCookie)
        } else {
            cookies.write(sa.responderCookie)
            cookies.write(sa.initiatorCookie)
        }
        let data = (ofInitiator ? gxi + gxr : gxr + gxi) + cookies.bytes + sa.initiatorSABody + identityBody
        return keys.prf(keys.skeyid, data)
    }

    /// Checks the peer's ID and HASH in MM5/MM6: throws when the message is not authenticated (anyone could have
    /// sent it), returns the refusal when it is and names an identity other than the one configured.
    func verifyPeerAuthentication(_ payloads: [ISAKMP.Payload], _ state: ISAKMPSA.Authenticating, sa: inout ISAKMPSA,
                                  peerIsInitiator: Bool) throws(NegotiationFailure) -> NegotiationFailure? {
        var identification: ISAKMP.Identification?
        var hash: [UInt8]?
        for payload in payloads {
            if case .identification(let value) = payload { identification = value }
            if case .hash(let value) = payload { hash = value }
        }
        guard let identification, let hash else { throw .init(.malformed, "\(peerIsInitiator ? "MM5" : "MM6") lacks ID or HASH") }
        let expected = authenticationHash(sa: sa, state, ofInitiator: peerIsInitiator, identityBody: ISAKMP.Payload.identification(identification).body)
        guard constantTimeEquals(expected, hash) else {
            throw .init(.authenticationFailed, "HASH_\(peerIsInitiator ? "I" : "R") from \(sa.remote) does not verify: pre-shared key mismatch")
        }
        let identity = Identity(idType: identification.idType, data: identification.data)
        guard identity == sa.peer.identity else {
            return .init(.authenticationFailed, "peer \(sa.remote) authenticated as \(identity.map(\.description) ?? "an unsupported ID type"), expected \(sa.peer.identity)")
        }
        sa.remoteIdentity = identity
        return nil
    }

    // MM6 E{ IDir, HASH_R } <--
    mutating func mainMode6Received(payloads: [ISAKMP.Payload], state: ISAKMPSA.Authenticating, sa: inout ISAKMPSA,
                                    _ context: inout Context, _ random: inout some RandomNumberGenerator) throws(NegotiationFailure) {
        context.log(.debug, "received MM6 \(Self.payloadList(payloads)) from \(sa.remote)")
        if let refusal = try verifyPeerAuthentication(payloads, state, sa: &sa, peerIsInitiator: false) {
            failMainMode(sa: &sa, refusal.code, refusal.message, &context)
            return
        }
        answered(messageID: 0, sa: &sa, &context)
        mainModeEstablished(sa: &sa, keys: state.keys, &context)
        if let old = sa.replaces, let partner = sas.values.first(where: { $0.id != old && $0.id != sa.id && !$0.isInitiator && $0.isEstablished
                                                                           && !$0.isDead && $0.connection.name == sa.connection.name
                                                                           && $0.peer.address == sa.peer.address }),
           Self.survives(partner, over: sa) {
            // Rekey collision, lost: the peer's new ISAKMP SA holds the IPsec SAs; ours is deleted.
            context.log(.info, "\(sa.connection.name): rekey collision: the peer's ISAKMP SA \(partner.id) stays, ours \(sa.id) goes")
            context.actions.append(.exchangeInFlight(old, false))
            recordSuccessor(of: sa.id, partner.id)
            sendISAKMPDelete(sa: &sa, reason: .replaced("rekey collision, replaced by ISAKMP SA \(partner.id)"), &context, &random)
            return
        }
        if let old = sa.replaces, sas[old] != nil {
            // Phase 1 rekey, make before break as strongSwan reauthenticates: every IPsec SA of the old ISAKMP SA is
            // rekeyed with a Quick Mode on the new one; once the last is replaced, the old ISAKMP SA is deleted
            // (strongSwan deletes an ISAKMP SA's IPsec SAs with it, so they cannot simply move over).
            let inherited = children.values.filter { $0.info.ikeSA == old }.map(\.info.id).sorted { $0.inboundSPI < $1.inboundSPI }
            for child in inherited { startQuickMode(sa: &sa, rekeyOf: child, &context, &random) }
            sas[sa.id] = sa
            recordSuccessor(of: old, sa.id)
            context.actions.append(.exchangeInFlight(old, false))
            retireIfReplaced(old, &context, &random)
        }
        if sa.initiateChildAfterMainMode {
            startQuickModes(sa: &sa, &context, &random)
        }
    }

    // MM3 { KE, Ni, NAT-D, NAT-D } -->
    mutating func mainMode3Received(raw: [UInt8], payloads: [ISAKMP.Payload], suite: Phase1Suite, sa: inout ISAKMPSA,
                                    _ context: inout Context, _ random: inout some RandomNumberGenerator) throws(NegotiationFailure) {
        context.log(.debug, "received MM3 \(Self.payloadList(payloads)) from \(sa.remote)")
        let keyExchange = try Self.keyExchange(suite.group)
        let localNonce = Self.randomBytes(Self.nonceLength, &random)
        let authenticating = try authenticating(suite: suite, keyExchange: keyExchange, localNonce: localNonce,
                                                peerPayloads: payloads, sa: sa, message: "MM3")
        answered(messageID: 0, sa: &sa, &context)
        detectNAT(payloads, suite: suite, sa: &sa, &context)
        var reply: [ISAKMP.Payload] = [.keyExchange(keyExchange.publicValue), .nonce(localNonce)]
        if sa.peerSupportsNATT, payloads.contains(where: { $0.type == ISAKMP.PayloadType.natDiscovery.rawValue }) {
            reply += natDiscoveryPayloads(sa: sa, suite: suite, &random)
        }
        context.log(.debug, "sending MM4 \(Self.payloadList(reply)) to \(sa.remote)")
        let bytes = ISAKMP.Message(header: .init(initiatorCookie: sa.initiatorCookie, responderCookie: sa.responderCookie, nextPayload: 0,
                                                 exchangeType: .identityProtection, flags: [], messageID: 0), payloads: reply).encode()
        sa.lastMainModeRequest = raw
        sa.lastMainModeResponse = bytes
        sa.phase = .responderSentMM4(authenticating)
        sendRequest(bytes, messageID: 0, purpose: "MM4", sa: &sa, &context)
    }

    // MM5 E{ IDii, HASH_I, N(INITIAL-CONTACT) } -->
    mutating func mainMode5Received(raw: [UInt8], payloads: [ISAKMP.Payload], state: ISAKMPSA.Authenticating, from: Endpoint,
                                    to: Endpoint, sa: inout ISAKMPSA, _ context: inout Context,
                                    _ random: inout some RandomNumberGenerator) throws(NegotiationFailure) {
        context.log(.debug, "received MM5 \(Self.payloadList(payloads)) from \(from)")
        if let refusal = try verifyPeerAuthentication(payloads, state, sa: &sa, peerIsInitiator: true) {
            failMainMode(sa: &sa, refusal.code, refusal.message, &context)
            return
        }
        answered(messageID: 0, sa: &sa, &context)
        // The initiator floated to 4500 (RFC 3947 §4): follow it. Another address or port only behind a NAT that
        // NAT-D showed (the mapping for 4500 differs from the one for 500); else the address stays.
        let floated = from.address == sa.remote.address && from.port == Self.natTraversalPort
        if from == sa.remote || floated || sa.peerBehindNAT {
            sa.local = to
            sa.remote = from
        } else {
            context.count(.addressChangeIgnored)
            context.log(.warning, "MM5 for ISAKMP SA \(sa.id) came from \(from), not \(sa.remote), with no NAT detected: the address stays")
        }
        if sa.local.port == Self.natTraversalPort { sa.udpEncapsulated = true }
        let identity = identificationPayload(sa.connection.localIdentity)
        let hash = authenticationHash(sa: sa, state, ofInitiator: false, identityBody: ISAKMP.Payload.identification(identity).body)
        let reply: [ISAKMP.Payload] = [.identification(identity), .hash(hash)]
        context.log(.debug, "sending MM6 \(Self.payloadList(reply)) to \(sa.remote)")
        let bytes = encryptPhase1(sa: sa, keys: state.keys, reply)
        sa.lastMainModeRequest = raw
        sa.lastMainModeResponse = bytes
        context.actions.append(.send(bytes: bytes, from: sa.local, to: sa.remote))
        context.actions.append(.cancelTimer(.halfOpenExpired(sa.id)))
        let initialContact = payloads.contains {
            if case .notification(let n) = $0 { return n.notifyType == ISAKMP.NotifyType.initialContact }
            return false
        }
        mainModeEstablished(sa: &sa, keys: state.keys, &context)
        if initialContact {
            initialContactReceived(sa: sa, &context)
        } else if let rekey = ownRekey(besides: sa), Self.survives(rekey, over: sa) {
            context.log(.info, "\(sa.connection.name): rekey collision: our ISAKMP SA \(rekey.id) stays, the peer deletes its \(sa.id)")
        } else {
            adoptChildren(into: sa, &context, &random)
        }
    }

    /// RFC 2407 §4.6.3.3 INITIAL-CONTACT: the peer rebooted; our older SAs with it are stale.
    mutating func initialContactReceived(sa: ISAKMPSA, _ context: inout Context) {
        for old in sas.values where old.id != sa.id && old.peer.address == sa.peer.address && old.connection.name == sa.connection.name {
            context.log(.info, "INITIAL-CONTACT from \(sa.remote): removing stale ISAKMP SA \(old.id)")
            var stale = old
            stale.phase = .dead
            stale.deathReason = .peerRestarted
            sas[old.id] = stale
            childrenDeleted(by: old.id, reason: "peer sent INITIAL-CONTACT", &context)
        }
    }

    /// A second Main Mode from the same peer without INITIAL-CONTACT is a reauthentication: the new ISAKMP SA takes
    /// over the IPsec SAs of the older ones (strongSwan does the same, "detected reauth of existing IKE_SA, adopting
    /// children"), so the peer's later DELETEs and rekeys on the new SA find them.
    mutating func adoptChildren(into sa: ISAKMPSA, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        let older = Set(sas.values.filter { $0.id != sa.id && $0.isEstablished && $0.connection.name == sa.connection.name
            && $0.peer.address == sa.peer.address }.map(\.id))
        for (id, child) in children where older.contains(child.info.ikeSA) {
            context.log(.info, "reauthentication by \(sa.remote): IPsec SA \(id) moves from ISAKMP SA \(child.info.ikeSA) to \(sa.id)")
            children[id]?.info.ikeSA = sa.id
        }
        // The replaced ISAKMP SAs end here rather than linger (in `ikeSAs`, in the daemon's status) until their
        // lifetime: reported deleted, no DELETE sent, because the peer that reauthenticated deletes its old SA
        // itself (strongSwan after `over_time`) and a DELETE of ours could race its hand-over of the IPsec SAs.
        // Our own rekey that lost a collision to this SA is ours to delete, with a DELETE.
        for old in older {
            recordSuccessor(of: old, sa.id)
            guard var retired = sas[old] else { continue }
            if retired.isInitiator, retired.replaces != nil {
                context.log(.info, "\(sa.connection.name): rekey collision: the peer's ISAKMP SA \(sa.id) stays, ours \(old) goes")
                sendISAKMPDelete(sa: &retired, reason: .replaced("rekey collision, replaced by ISAKMP SA \(sa.id)"), &context, &random)
            } else {
                context.log(.info, "ISAKMP SA \(old) replaced by \(sa.id) (reauthentication): forgotten")
                retired.phase = .dead
                retired.deathReason = .replaced("replaced by ISAKMP SA \(sa.id) (reauthentication)")
            }
            sas[old] = retired
        }
    }

    /// Our Phase 1 rekey with the same peer and connection, still under way or done, other than `sa`.
    func ownRekey(besides sa: ISAKMPSA) -> ISAKMPSA? {
        sas.values.first { $0.id != sa.id && $0.isInitiator && $0.replaces != nil && !$0.isDead
            && $0.connection.name == sa.connection.name && $0.peer.address == sa.peer.address }
    }

    /// RFC 2409 has no rule for two ISAKMP SAs made at once by both ends (a rekey collision). Vigil keeps, on both
    /// sides, the one with the lower initiator cookie (as RFC 7296 §2.8.1 keeps the lower nonce); the side that
    /// initiated the other deletes it with a DELETE, whose arrival hands its IPsec SAs to the survivor.
    static func survives(_ a: ISAKMPSA, over b: ISAKMPSA) -> Bool { a.initiatorCookie < b.initiatorCookie }

    mutating func mainModeEstablished(sa: inout ISAKMPSA, keys: Phase1Keys, _ context: inout Context) {
        sa.phase = .established(keys)
        sa.establishedAt = context.now
        context.exchange(.mainMode, .init(initiator: sa.isInitiator), .ok)
        context.log(.notice, "\(sa.connection.name): ISAKMP SA \(sa.id) established with \(sa.remote) (\(sa.remoteIdentity.map(\.description) ?? "?")), "
                    + "\(keys.suite.proposal), cookies \(String(sa.initiatorCookie, radix: 16))/\(String(sa.responderCookie, radix: 16))"
                    + "\(sa.udpEncapsulated ? ", UDP-encapsulated" : "")")
        context.actions.append(.ikeSAEstablished(sa.info))
        let lifetime = Duration.seconds(Int64(keys.suite.lifetimeSeconds))
        context.actions.append(.scheduleTimer(.expireIKESA(sa.id), at: context.now + lifetime))
        // The initiator rekeys `rekeyMargin` before the end; the responder only half as early, so normally the
        // initiator goes first and the responder's rekey is the fallback (IKEv1 has no rekey collision handling).
        let margin = min(sa.connection.rekeyMargin, lifetime / 2) / (sa.isInitiator ? 1 : 2)
        context.actions.append(.scheduleTimer(.rekeyIKESA(sa.id), at: context.now + lifetime - margin))
    }

    /// Deletes an ISAKMP SA that a newer one replaced once it carries no IPsec SA any more.
    mutating func retireIfReplaced(_ old: IKEv1SAID, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard let retiring = sas[old], retiring.isEstablished,
              sas.values.contains(where: { $0.replaces == old && $0.isEstablished }),
              !children.values.contains(where: { $0.info.ikeSA == old }) else { return }
        sendISAKMPDelete(old, &context, &random)
    }

    /// Phase 1 rekey: a fresh Main Mode with the same peer; once it is up, the old ISAKMP SA is deleted.
    /// The responder's fallback rekey waits, once, while the peer's own Main Mode from the same address is half
    /// open (most likely its reauthentication, whose MM2 or MM4 we are resending): both together would leave two
    /// new ISAKMP SAs racing for the IPsec SAs. Bounded so that a spoofed MM1 cannot hold it off: at most once per
    /// SA, for half the time left before the SA's lifetime ends, and then the rekey goes ahead regardless.
    func holdsFallbackRekey(_ sa: inout ISAKMPSA, _ context: inout Context) -> Bool {
        guard !sa.isInitiator, !sa.fallbackRekeyHeld, let establishedAt = sa.establishedAt, let keys = sa.keys else { return false }
        let peersMainMode = sas.values.contains {
            !$0.isInitiator && !$0.isDead && $0.establishedAt == nil && $0.remote.address == sa.remote.address
                && $0.connection.name == sa.connection.name
        }
        guard peersMainMode else { return false }
        let expiry = establishedAt + .seconds(Int64(keys.suite.lifetimeSeconds))
        guard expiry > context.now else { return false }
        sa.fallbackRekeyHeld = true
        let at = context.now + (expiry - context.now) / 2
        context.count(.fallbackRekeyHeld)
        context.log(.info, "\(sa.connection.name): rekey of ISAKMP SA \(sa.id) held: a Main Mode from \(sa.remote.address) is in progress")
        context.actions.append(.scheduleTimer(.rekeyIKESA(sa.id), at: at))
        return true
    }

    mutating func rekeyIKESA(_ id: IKEv1SAID, _ context: inout Context, _ random: inout some RandomNumberGenerator) {
        guard var sa = sas[id], sa.isEstablished else { return }
        guard !sas.values.contains(where: { $0.replaces == id }) else { return }
        if holdsFallbackRekey(&sa, &context) {
            sas[id] = sa
            return
        }
        context.log(.info, "\(sa.connection.name): rekeying ISAKMP SA \(id)")
        // The rekey is an exchange in flight for the old SA: the detector must not read its silence as death.
        context.actions.append(.exchangeInFlight(id, true))
        startMainMode(connection: sa.connection, peer: sa.peer, initiateChild: false, replaces: id, &context, &random)
    }
}
