import VigilAddressing

/// Parsing of the small text forms the configuration uses: peer addresses, identities, host names.
enum TextForms {
    static let identityForms = "an IP address, @fqdn or fqdn, user@fqdn"

    /// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, at most 253 characters, and a
    /// last label that is not all digits (so a mistyped IPv4 address is not taken for a name).
    static func isHostName(_ text: String) -> Bool {
        let name = text.hasSuffix(".") ? String(text.dropLast()) : text
        guard !name.isEmpty, name.count <= 253 else { return false }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard (1...63).contains(label.count), label.first != "-", label.last != "-",
                  label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") })
            else { return false }
        }
        return labels.last.map { !$0.allSatisfy(\.isASCIIDigit) } ?? false
    }

    static func peerAddress(_ text: String) -> Result<PeerAddress, TextFormError> {
        if let address = IPAddress(text) { return .success(.ip(address)) }
        if isHostName(text) { return .success(.host(text.lowercased())) }
        return .failure(TextFormError(message: "'\(text)' is not an IPv4 or IPv6 address or a host name; allowed: an address such as "
            + "198.51.100.1 or 2001:db8::1, or a host name such as vpn.example.net"))
    }

    /// strongSwan-like identity text: an IP address, `@fqdn` (always an FQDN), `user@fqdn`, or a bare fqdn.
    static func identity(_ text: String) -> Result<Identity, TextFormError> {
        if let address = IPAddress(text) { return .success(.address(address)) }
        if text.hasPrefix("@"), isHostName(String(text.dropFirst())) {
            return .success(.fqdn(String(text.dropFirst()).lowercased()))
        }
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        if parts.count == 2, !parts[0].isEmpty, !parts[0].contains(where: \.isWhitespace), isHostName(String(parts[1])) {
            return .success(.email(String(parts[0]) + "@" + parts[1].lowercased()))
        }
        if parts.count == 1, isHostName(text) { return .success(.fqdn(text.lowercased())) }
        return .failure(TextFormError(message: "'\(text)' is not an identity; allowed: \(identityForms)"))
    }
}

/// A message for a text form that was refused.
struct TextFormError: Error {
    let message: String
}
