import Foundation

/// The kernel's SAs and policies as `ip -s xfrm state` / `ip xfrm policy` print them, for lab assertions on a
/// kernel with ESP: what was installed (algorithms, SPIs, reqids, encapsulation) and what it carried (counters).
public struct XFRMStateListing: Sendable {
    public struct State: Sendable, CustomStringConvertible {
        public var source = ""
        public var destination = ""
        public var spi: UInt32 = 0
        public var reqid: UInt32 = 0
        /// `aead rfc4106(gcm(aes)) (288 bits) 128`, `enc cbc(aes) (256 bits)`, `auth-trunc hmac(sha256) (256 bits) 128`.
        public var algorithms: [String] = []
        /// `espinudp sport 4500 dport 4500` when UDP-encapsulated.
        public var encapsulation: String?
        public var bytes: UInt64 = 0
        public var packets: UInt64 = 0
        /// `expire add: soft N(sec), hard M(sec)`: seconds after installation of the kernel's soft and hard expiry
        /// (0 is none).
        public var softAddExpiry: UInt64?
        public var hardAddExpiry: UInt64?
        public var description: String {
            "\(source)->\(destination) spi \(String(format: "%08x", spi)) reqid \(reqid) \(algorithms.joined(separator: "; "))"
                + (encapsulation.map { "; encap \($0)" } ?? "") + "; \(bytes) bytes \(packets) packets"
        }
    }

    public let states: [State]
    public let text: String

    public init(_ text: String) {
        self.text = text
        var states: [State] = []
        var current: State?
        var lifetimeCurrent = false
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            let words = line.split(separator: " ").map(String.init)
            if line.hasPrefix("src "), words.count >= 4 {
                if let current { states.append(current) }
                current = State(source: words[1], destination: words[3])
                lifetimeCurrent = false
                continue
            }
            guard var state = current else { continue }
            if line.hasPrefix("proto ") {
                if let index = words.firstIndex(of: "spi"), index + 1 < words.count {
                    let hex = words[index + 1].split(separator: "(").first.map { $0.dropFirst(2) } ?? ""
                    state.spi = UInt32(hex, radix: 16) ?? 0
                }
                if let index = words.firstIndex(of: "reqid"), index + 1 < words.count {
                    state.reqid = UInt32(words[index + 1].split(separator: "(").first ?? "") ?? 0
                }
            } else if ["aead", "enc", "auth", "auth-trunc"].contains(words.first ?? "") {
                // Drop the key (0x...) and keep the name, size and ICV length.
                state.algorithms.append(words.filter { !$0.hasPrefix("0x") }.joined(separator: " "))
            } else if line.hasPrefix("encap type ") {
                state.encapsulation = words.dropFirst(2).prefix(5).joined(separator: " ")
            } else if line.hasPrefix("expire add:") {
                // "expire add: soft 3630(sec), hard 3660(sec)"
                func seconds(after word: String) -> UInt64? {
                    guard let index = words.firstIndex(of: word), index + 1 < words.count else { return nil }
                    return UInt64(words[index + 1].split(separator: "(").first ?? "")
                }
                state.softAddExpiry = seconds(after: "soft")
                state.hardAddExpiry = seconds(after: "hard")
            } else if line.hasPrefix("lifetime current:") {
                lifetimeCurrent = true
            } else if lifetimeCurrent, line.contains("(bytes)") {
                // "1234(bytes), 12(packets)"
                let parts = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                state.bytes = UInt64(parts.first?.split(separator: "(").first ?? "") ?? 0
                state.packets = UInt64(parts.dropFirst().first?.split(separator: "(").first ?? "") ?? 0
                lifetimeCurrent = false
            }
            current = state
        }
        if let current { states.append(current) }
        self.states = states
    }

    /// `ip -s xfrm state` in `namespace`.
    public static func read(_ namespace: NetworkNamespace) throws -> XFRMStateListing {
        XFRMStateListing(try namespace.exec(["ip", "-s", "xfrm", "state"]).stdout)
    }

    public func state(spi: UInt32) -> State? { states.first { $0.spi == spi } }
    public func states(to destination: String) -> [State] { states.filter { $0.destination == destination } }
}
