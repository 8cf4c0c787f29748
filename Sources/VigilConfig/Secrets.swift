import VigilAddressing
import Yams

/// The secrets file: pre-shared keys by peer address or identity, kept out of the main file.
///
/// ```yaml
/// pre-shared-keys:
///   198.51.100.1: "a long random string"
///   "@vpn.example.net": 0x6b6579      # 0x... is hexadecimal
/// ```
enum SecretsFile {
    static let topKeys = ["pre-shared-keys"]

    /// Keys by identity (an address key is an `.address` identity, a host name an `.fqdn` one).
    static func parse(_ root: Node?, file: String, _ diagnostics: inout Diagnostics) -> [Identity: Secret]? {
        guard let root else {
            diagnostics.report(file, nil, "", "the secrets file is empty; allowed: a mapping with key pre-shared-keys")
            return nil
        }
        guard let top = Section(Field(file: file, path: "", node: root), allowed: topKeys, &diagnostics),
              let keysField = top.required("pre-shared-keys", &diagnostics, allowed: "a mapping of peer address or identity to key"),
              let keys = Section(keysField, allowed: [], &diagnostics)
        else { return nil }
        var secrets: [Identity: Secret] = [:]
        var places: [Identity: Field] = [:]
        var ok = true
        for (name, keyNode, field) in keys.all {
            let identity: Identity
            switch TextForms.identity(name) {
            case .success(let parsed): identity = parsed
            case .failure(let error):
                diagnostics.report(file, keyNode.mark, field.path, error.message)
                ok = false
                continue
            }
            if let first = places[identity] {
                diagnostics.report(file, keyNode.mark, field.path, "a key for \(identity) is already given at line \(first.mark?.line ?? 0); allowed: one key per peer")
                ok = false
                continue
            }
            guard let text = field.scalar(&diagnostics, expecting: "a key as text, or 0x followed by hexadecimal") else { ok = false; continue }
            guard let secret = secret(from: text) else {
                diagnostics.report(field, text.isEmpty
                    ? "the key is empty; allowed: a non-empty text or 0x followed by hexadecimal digits"
                    : "the key starts with 0x but is not hexadecimal; allowed: 0x followed by an even number of hexadecimal digits")
                ok = false
                continue
            }
            secrets[identity] = secret
            places[identity] = field
        }
        return ok ? secrets : nil
    }

    /// Text as its UTF-8 bytes, or `0x` followed by hexadecimal digits (strongSwan's convention).
    static func secret(from text: String) -> Secret? {
        guard !text.isEmpty else { return nil }
        guard text.hasPrefix("0x") else { return Secret(bytes: Array(text.utf8)) }
        let digits = Array(text.dropFirst(2))
        guard !digits.isEmpty, digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(digits[index...index + 1]), radix: 16) else { return nil }
            bytes.append(byte)
        }
        return Secret(bytes: bytes)
    }
}
