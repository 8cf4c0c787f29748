import CNetlink
import VigilAddressing
#if canImport(Glibc)
import Glibc
#endif

/// Per-socket XFRM policies (ip(7) IP_XFRM_POLICY, ipv6(7) IPV6_XFRM_POLICY): a policy attached to one socket is
/// looked up before the kernel's policy database for every packet that socket sends or receives.
///
/// vigild's IKE sockets (UDP 500 and 4500, which also carries ESP-in-UDP) get an `allow` policy in both directions,
/// so neither a fail-closed block guard nor a Child SA whose selectors cover the tunnel endpoints themselves (a full
/// tunnel, 0.0.0.0/0 or ::/0) captures IKE or the outer ESP-in-UDP packets. strongSwan's kernel-netlink
/// `bypass_socket` does the same. The option needs CAP_NET_ADMIN.
public enum SocketPolicy {
    /// A kernel's refusal to attach a socket policy: which socket, which direction, and the errno.
    public struct Refusal: Error, Hashable, Sendable, CustomStringConvertible {
        public let descriptor: Int32
        public let family: IPAddress.Family
        /// `in` or `out`.
        public let direction: String
        public let errno: Int32

        /// The call refused, e.g. `setsockopt IP_XFRM_POLICY (allow out)`.
        public var call: String {
            "setsockopt \(family == .ipv4 ? "IP_XFRM_POLICY" : "IPV6_XFRM_POLICY") (allow \(direction))"
        }

        public var description: String {
            "\(call) on socket \(descriptor): \(String(cString: strerror(errno))) (errno \(errno))"
        }
    }

    /// Attaches an `allow` policy for both directions to the socket `descriptor` of address family `family`: a zero
    /// selector (every packet of the socket), priority 0, no template, infinite lifetimes. Throws the first refusal;
    /// a socket that could not get both directions must not carry IKE under a policy that covers its peer.
    public static func bypass(descriptor: Int32, family: IPAddress.Family) throws(Refusal) {
        for (direction, name) in [(XFRM_POLICY_IN, "in"), (XFRM_POLICY_OUT, "out")] {
            var policy = xfrm_userpolicy_info()
            policy.sel.family = UInt16(family == .ipv4 ? AF_INET : AF_INET6)
            policy.lft.soft_byte_limit = infinite
            policy.lft.hard_byte_limit = infinite
            policy.lft.soft_packet_limit = infinite
            policy.lft.hard_packet_limit = infinite
            policy.action = UInt8(XFRM_POLICY_ALLOW)
            policy.dir = UInt8(direction)
            let (level, option) = family == .ipv4
                ? (Int32(IPPROTO_IP), Int32(IP_XFRM_POLICY))
                : (Int32(IPPROTO_IPV6), Int32(IPV6_XFRM_POLICY))
            let status = setsockopt(descriptor, level, option, &policy, socklen_t(MemoryLayout<xfrm_userpolicy_info>.size))
            guard status == 0 else {
                throw Refusal(descriptor: descriptor, family: family, direction: name, errno: Glibc.errno)
            }
        }
    }

    /// linux/xfrm.h XFRM_INF (`~(__u64)0`, a function-like cast Swift does not import): no limit.
    static let infinite = UInt64.max
}
