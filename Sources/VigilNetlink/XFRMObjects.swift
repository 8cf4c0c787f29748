import CNetlink
import VigilAddressing
import VigilAlgorithms
import VigilKernel
#if canImport(Glibc)
import Glibc
#endif

/// Kernel names of Vigil's algorithms (crypto API names as `ip xfrm state` and strongSwan use them).
extension EncryptionAlgorithm {
    var kernelName: String {
        switch self {
        case .aes128cbc, .aes256cbc: "cbc(aes)"
        case .aes128gcm16, .aes256gcm16: "rfc4106(gcm(aes))"
        }
    }

    /// ICV length in bits for AEAD algorithms (RFC 4106 §6: 16-octet ICV).
    var icvBits: UInt32 {
        switch self {
        case .aes128cbc, .aes256cbc: 0
        case .aes128gcm16, .aes256gcm16: 128
        }
    }
}

extension IntegrityAlgorithm {
    var kernelName: String {
        switch self {
        case .hmacSHA1_96: "hmac(sha1)"
        case .hmacSHA2_256_128: "hmac(sha256)"
        case .hmacSHA2_384_192: "hmac(sha384)"
        case .hmacSHA2_512_256: "hmac(sha512)"
        }
    }
}

/// Linux constants that Swift imports poorly (macros with casts) or that live in headers libnl does not include.
enum XFRMConstants {
    /// XFRM_INF: no limit.
    static let infinite = UInt64.max
    /// UDP_ENCAP_ESPINUDP (linux/udp.h): RFC 3948 ESP in UDP.
    static let udpEncapESPInUDP: UInt32 = 2
    /// XFRM_POLICY_ALLOW / XFRM_POLICY_BLOCK (linux/xfrm.h `xfrm_userpolicy_info.action`).
    static let policyAllow: UInt32 = 0
    static let policyBlock: UInt32 = 1
    /// Templates accept any algorithm (all bits set), as iproute2 and strongSwan install them.
    static let anyAlgorithm: UInt32 = ~0

    /// A new `xfrmnl_ltime_cfg` (the caller puts it after handing it over): nil limits become XFRM_INF, nil
    /// seconds 0 ("no expiry").
    static func lifetimeConfig(_ limits: SALifetime) -> OpaquePointer {
        guard let lifetime = xfrmnl_ltime_cfg_alloc() else { preconditionFailure("xfrmnl_ltime_cfg_alloc failed") }
        xfrmnl_ltime_cfg_set_soft_bytelimit(lifetime, limits.softBytes ?? infinite)
        xfrmnl_ltime_cfg_set_hard_bytelimit(lifetime, limits.hardBytes ?? infinite)
        xfrmnl_ltime_cfg_set_soft_packetlimit(lifetime, limits.softPackets ?? infinite)
        xfrmnl_ltime_cfg_set_hard_packetlimit(lifetime, limits.hardPackets ?? infinite)
        xfrmnl_ltime_cfg_set_soft_addexpires(lifetime, limits.softSeconds ?? 0)
        xfrmnl_ltime_cfg_set_hard_addexpires(lifetime, limits.hardSeconds ?? 0)
        return lifetime
    }
}

/// An owned `xfrmnl_sa` built from Vigil's values.
final class SAObject {
    let pointer: OpaquePointer

    /// Just the identifier (for delete).
    init(_ id: SAID) {
        guard let sa = xfrmnl_sa_alloc() else { preconditionFailure("xfrmnl_sa_alloc failed (out of memory)") }
        pointer = sa
        let destination = NetlinkAddress(id.destination)
        xfrmnl_sa_set_family(sa, UInt32(id.destination.family.netlinkFamily))
        destination.lend { _ = xfrmnl_sa_set_daddr(sa, $0) }
        xfrmnl_sa_set_spi(sa, id.spi)
        xfrmnl_sa_set_proto(sa, UInt32(id.ipsecProtocol.rawValue))
    }

    /// The whole SA (for add and update).
    convenience init(_ id: SAID, _ request: SARequest) {
        self.init(id)
        let sa = pointer
        let source = NetlinkAddress(request.source)
        source.lend { _ = xfrmnl_sa_set_saddr(sa, $0) }
        xfrmnl_sa_set_mode(sa, UInt32(request.mode.rawValue))
        xfrmnl_sa_set_reqid(sa, request.reqid)
        xfrmnl_sa_set_replay_window(sa, UInt32(request.replayWindow))

        let encryptionBits = UInt32(request.encryptionKey.count * 8)
        request.encryptionKey.withUnsafeBufferPointer { key in
            key.withMemoryRebound(to: CChar.self) { key in
                if request.encryption.isAEAD {
                    _ = xfrmnl_sa_set_aead_params(sa, request.encryption.kernelName, encryptionBits,
                                                  request.encryption.icvBits, key.baseAddress)
                } else {
                    _ = xfrmnl_sa_set_crypto_params(sa, request.encryption.kernelName, encryptionBits, key.baseAddress)
                }
            }
        }
        if let integrity = request.integrity {
            request.integrityKey.withUnsafeBufferPointer { key in
                key.withMemoryRebound(to: CChar.self) { key in
                    _ = xfrmnl_sa_set_auth_params(sa, integrity.kernelName, UInt32(request.integrityKey.count * 8),
                                                  UInt32(integrity.icvLength * 8), key.baseAddress)
                }
            }
        }
        if let encapsulation = request.encapsulation {
            let originalAddress = NetlinkAddress(.any(request.source.family))
            originalAddress.lend {
                _ = xfrmnl_sa_set_encap_tmpl(sa, XFRMConstants.udpEncapESPInUDP, UInt32(encapsulation.sourcePort),
                                             UInt32(encapsulation.destinationPort), $0)
            }
        }
        let lifetime = XFRMConstants.lifetimeConfig(request.lifetime)
        xfrmnl_sa_set_lifetime_cfg(sa, lifetime)
        xfrmnl_ltime_cfg_put(lifetime)
    }

    deinit { xfrmnl_sa_put(pointer) }

    /// Reads a borrowed `xfrmnl_sa` (from a cache or a get); nil for SAs Vigil's types cannot describe (not ESP).
    static func state(of sa: OpaquePointer) -> SAState? {
        guard xfrmnl_sa_get_proto(sa) == Int32(IPsecProtocol.esp.rawValue),
              let destination = NetlinkAddress.ipAddress(xfrmnl_sa_get_daddr(sa)),
              let source = NetlinkAddress.ipAddress(xfrmnl_sa_get_saddr(sa))
        else { return nil }
        var bytes: UInt64 = 0, packets: UInt64 = 0, added: UInt64 = 0, used: UInt64 = 0
        _ = xfrmnl_sa_get_curlifetime(sa, &bytes, &packets, &added, &used)
        var encapType: UInt32 = 0, sport: UInt32 = 0, dport: UInt32 = 0
        var originalAddress: OpaquePointer?
        let hasEncap = xfrmnl_sa_get_encap_tmpl(sa, &encapType, &sport, &dport, &originalAddress) == 0
        let encapsulation = hasEncap && encapType == XFRMConstants.udpEncapESPInUDP
            ? UDPEncapsulation(sourcePort: UInt16(truncatingIfNeeded: sport), destinationPort: UInt16(truncatingIfNeeded: dport))
            : nil
        return SAState(
            id: SAID(destination: destination, spi: UInt32(bitPattern: xfrmnl_sa_get_spi(sa))),
            source: source,
            mode: IPsecMode(rawValue: UInt8(truncatingIfNeeded: xfrmnl_sa_get_mode(sa))) ?? .tunnel,
            reqid: UInt32(bitPattern: xfrmnl_sa_get_reqid(sa)),
            encapsulation: encapsulation, bytes: bytes, packets: packets, addedAtSeconds: added,
            lastUsedAtSeconds: used == 0 ? nil : used)
    }
}

/// An owned `xfrmnl_sp` built from Vigil's values.
final class PolicyObject {
    let pointer: OpaquePointer

    init(_ id: PolicyID, _ request: PolicyRequest) {
        guard let sp = xfrmnl_sp_alloc(), let selector = xfrmnl_sel_alloc() else {
            preconditionFailure("xfrmnl_sp_alloc failed (out of memory)")
        }
        pointer = sp
        let source = NetlinkAddress(id.selector.source)
        let destination = NetlinkAddress(id.selector.destination)
        xfrmnl_sel_set_family(selector, UInt32(id.selector.source.family.netlinkFamily))
        source.lend { _ = xfrmnl_sel_set_saddr(selector, $0) }
        destination.lend { _ = xfrmnl_sel_set_daddr(selector, $0) }
        xfrmnl_sel_set_prefixlen_s(selector, UInt32(id.selector.source.length))
        xfrmnl_sel_set_prefixlen_d(selector, UInt32(id.selector.destination.length))
        xfrmnl_sel_set_proto(selector, UInt32(id.selector.ipProtocol))
        xfrmnl_sp_set_sel(sp, selector)
        xfrmnl_sel_put(selector)
        // Policies never expire (XFRM_INF limits, as iproute2 installs them; zero would read as "limit 0").
        let lifetime = XFRMConstants.lifetimeConfig(.unlimited)
        xfrmnl_sp_set_lifetime_cfg(sp, lifetime)
        xfrmnl_ltime_cfg_put(lifetime)
        xfrmnl_sp_set_dir(sp, UInt32(id.direction.rawValue))
        xfrmnl_sp_set_priority(sp, request.priority)
        switch request.action {
        case .block:
            xfrmnl_sp_set_action(sp, XFRMConstants.policyBlock)
        case .protect(let template):
            xfrmnl_sp_set_action(sp, XFRMConstants.policyAllow)
            guard let userTemplate = xfrmnl_user_tmpl_alloc() else { preconditionFailure("xfrmnl_user_tmpl_alloc failed") }
            let templateSource = NetlinkAddress(template.source)
            let templateDestination = NetlinkAddress(template.destination)
            xfrmnl_user_tmpl_set_family(userTemplate, UInt32(template.destination.family.netlinkFamily))
            templateSource.lend { _ = xfrmnl_user_tmpl_set_saddr(userTemplate, $0) }
            templateDestination.lend { _ = xfrmnl_user_tmpl_set_daddr(userTemplate, $0) }
            xfrmnl_user_tmpl_set_proto(userTemplate, UInt32(template.ipsecProtocol.rawValue))
            xfrmnl_user_tmpl_set_mode(userTemplate, UInt32(template.mode.rawValue))
            xfrmnl_user_tmpl_set_reqid(userTemplate, template.reqid)
            xfrmnl_user_tmpl_set_aalgos(userTemplate, XFRMConstants.anyAlgorithm)
            xfrmnl_user_tmpl_set_ealgos(userTemplate, XFRMConstants.anyAlgorithm)
            xfrmnl_user_tmpl_set_calgos(userTemplate, XFRMConstants.anyAlgorithm)
            // The policy owns its templates from here on and frees them with itself.
            xfrmnl_sp_add_usertemplate(sp, userTemplate)
        }
    }

    deinit { xfrmnl_sp_put(pointer) }

    /// Reads a borrowed `xfrmnl_sp` from a cache; nil for what Vigil's types cannot describe (sub-policies,
    /// several templates, non-ESP templates, other directions).
    static func installed(from sp: OpaquePointer) -> InstalledPolicy? {
        guard let selector = xfrmnl_sp_get_sel(sp),
              let family = IPAddress.Family(netlinkFamily: xfrmnl_sel_get_family(selector)),
              let direction = PolicyDirection(rawValue: UInt8(truncatingIfNeeded: xfrmnl_sp_get_dir(sp))),
              let source = NetlinkAddress.prefix(xfrmnl_sel_get_saddr(selector), family: family,
                                                 length: Int(xfrmnl_sel_get_prefixlen_s(selector))),
              let destination = NetlinkAddress.prefix(xfrmnl_sel_get_daddr(selector), family: family,
                                                      length: Int(xfrmnl_sel_get_prefixlen_d(selector)))
        else { return nil }
        let selectorValue = PolicySelector(source: source, destination: destination,
                                           ipProtocol: UInt8(truncatingIfNeeded: xfrmnl_sel_get_proto(selector)))
        let action: PolicyAction
        if UInt32(bitPattern: xfrmnl_sp_get_action(sp)) == XFRMConstants.policyBlock {
            action = .block
        } else {
            guard xfrmnl_sp_get_nusertemplates(sp) == 1, let template = xfrmnl_sp_usertemplate_n(sp, 0),
                  xfrmnl_user_tmpl_get_proto(template) == Int32(IPsecProtocol.esp.rawValue),
                  let templateSource = NetlinkAddress.ipAddress(xfrmnl_user_tmpl_get_saddr(template)),
                  let templateDestination = NetlinkAddress.ipAddress(xfrmnl_user_tmpl_get_daddr(template)),
                  let mode = IPsecMode(rawValue: UInt8(truncatingIfNeeded: xfrmnl_user_tmpl_get_mode(template)))
            else { return nil }
            action = .protect(PolicyTemplate(
                source: templateSource, destination: templateDestination,
                reqid: UInt32(bitPattern: xfrmnl_user_tmpl_get_reqid(template)), mode: mode))
        }
        return InstalledPolicy(
            id: PolicyID(selector: selectorValue, direction: direction),
            request: PolicyRequest(action: action, priority: UInt32(bitPattern: xfrmnl_sp_get_priority(sp))))
    }

    /// XFRM_MSG_DELPOLICY by selector and direction (libnl-xfrm's delete requires the kernel's index).
    static func delete(_ socket: OpaquePointer, _ id: PolicyID) -> Int32 {
        var policyID = xfrm_userpolicy_id()
        policyID.dir = id.direction.rawValue
        policyID.sel.family = UInt16(id.selector.source.family.netlinkFamily)
        policyID.sel.prefixlen_s = UInt8(id.selector.source.length)
        policyID.sel.prefixlen_d = UInt8(id.selector.destination.length)
        policyID.sel.proto = id.selector.ipProtocol
        withUnsafeMutableBytes(of: &policyID.sel.saddr) { $0.copyBytes(from: id.selector.source.address.bytes) }
        withUnsafeMutableBytes(of: &policyID.sel.daddr) { $0.copyBytes(from: id.selector.destination.address.bytes) }
        guard let message = nlmsg_alloc_simple(Int32(XFRM_MSG_DELPOLICY), 0) else { return -Int32(NLE_NOMEM) }
        defer { nlmsg_free(message) }
        let appended = nlmsg_append(message, &policyID, MemoryLayout<xfrm_userpolicy_id>.size, Int32(NLMSG_ALIGNTO))
        guard appended == 0 else { return appended }
        let sent = nl_send_auto(socket, message)
        guard sent >= 0 else { return sent }
        return nl_wait_for_ack(socket)
    }
}

extension SAObject {
    /// The lifetimes as they stand in the XFRM_MSG_NEWSA message libnl builds from this SA (`xfrm_usersa_info.lft`):
    /// what the kernel is told, read back for tests on a kernel that refuses the SA itself (no ESP). XFRM_INF limits
    /// and zero seconds read as nil ("no limit"), as `SALifetime` writes them.
    func lifetimeInAddRequest() -> SALifetime? {
        var message: OpaquePointer?
        guard xfrmnl_sa_build_add_request(pointer, 0, &message) == 0, let message else { return nil }
        defer { nlmsg_free(message) }
        guard let data = nlmsg_data(nlmsg_hdr(message)) else { return nil }
        let lifetime = data.assumingMemoryBound(to: xfrm_usersa_info.self).pointee.lft
        func limit(_ value: UInt64) -> UInt64? { value == XFRMConstants.infinite ? nil : value }
        func seconds(_ value: UInt64) -> UInt64? { value == 0 ? nil : value }
        return SALifetime(
            softBytes: limit(lifetime.soft_byte_limit), hardBytes: limit(lifetime.hard_byte_limit),
            softPackets: limit(lifetime.soft_packet_limit), hardPackets: limit(lifetime.hard_packet_limit),
            softSeconds: seconds(lifetime.soft_add_expires_seconds), hardSeconds: seconds(lifetime.hard_add_expires_seconds))
    }
}
