/// An IKE identity (IKEv2 IDi/IDr, RFC 7296 §3.5; IKEv1 ID payload, RFC 2407 §4.6.2).
public enum Identity: Hashable, Sendable, CustomStringConvertible {
    case address(IPAddress)
    case fqdn(String)
    case email(String)
    case keyID([UInt8])

    /// strongSwan-like text: an IP address, `@fqdn` or `fqdn`, `user@fqdn`, `@#hex` for a key ID.
    public init?(_ text: String) {
        guard !text.isEmpty else { return nil }
        if let address = IPAddress(text) {
            self = .address(address)
        } else if text.hasPrefix("@#") {
            var bytes: [UInt8] = []
            var digits = Substring(text.dropFirst(2))
            guard !digits.isEmpty, digits.count % 2 == 0 else { return nil }
            while !digits.isEmpty {
                guard let byte = UInt8(digits.prefix(2), radix: 16) else { return nil }
                bytes.append(byte)
                digits = digits.dropFirst(2)
            }
            self = .keyID(bytes)
        } else if text.hasPrefix("@") {
            let name = String(text.dropFirst())
            guard !name.isEmpty else { return nil }
            self = .fqdn(name)
        } else if text.contains("@") {
            self = .email(text)
        } else {
            self = .fqdn(text)
        }
    }

    /// IKEv2 ID Type (RFC 7296 §3.5); IKEv1 uses the same numbers for these (RFC 2407 §4.6.2.1).
    public var idType: UInt8 {
        switch self {
        case .address(.v4): 1    // ID_IPV4_ADDR
        case .fqdn: 2            // ID_FQDN
        case .email: 3           // ID_RFC822_ADDR
        case .address(.v6): 5    // ID_IPV6_ADDR
        case .keyID: 11          // ID_KEY_ID
        }
    }

    /// The identification data as carried on the wire.
    public var data: [UInt8] {
        switch self {
        case .address(let address): address.bytes
        case .fqdn(let name), .email(let name): Array(name.utf8)
        case .keyID(let bytes): bytes
        }
    }

    /// Decodes an ID payload's type and data; nil for types Vigil does not support.
    public init?(idType: UInt8, data: [UInt8]) {
        switch idType {
        case 1, 5:
            guard let address = IPAddress(bytes: data), address.family == (idType == 1 ? .ipv4 : .ipv6) else { return nil }
            self = .address(address)
        case 2: self = .fqdn(String(decoding: data, as: UTF8.self))
        case 3: self = .email(String(decoding: data, as: UTF8.self))
        case 11: self = .keyID(data)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .address(let address): address.description
        case .fqdn(let name): name
        case .email(let name): name
        case .keyID(let bytes): "@#" + bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
