/// A line of the Cisco configuration the import did not turn into Vigil configuration, and why. Nothing is dropped
/// without one of these.
public struct Unrecognized: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
        /// An IPsec feature or value Vigil has no equivalent for (`esp-3des`, `set pfs group5`, a `deny` in a crypto
        /// ACL, a non-contiguous wildcard mask): the imported configuration differs from the router's here.
        case unsupported
        /// An IPsec command the import could not read (a missing argument, a number out of range, an unknown word).
        case malformed
        /// An IPsec object no imported crypto map uses (a transform set never set, a crypto map on no interface).
        case unused
        /// Not an IPsec command (routing, `line vty`, `snmp-server`, ...): not read.
        case outsideIPsec = "outside-ipsec"

        public var description: String { rawValue }

        /// Whether the imported configuration may behave differently from the router because of this line.
        public var changesBehaviour: Bool {
            switch self {
            case .unsupported, .malformed: true
            case .unused, .outsideIPsec: false
            }
        }
    }

    /// 1-based line number in the Cisco configuration.
    public var line: Int
    /// The line as written (without indentation).
    public var text: String
    public var reason: String
    public var kind: Kind

    public init(line: Int, text: String, reason: String, kind: Kind) {
        self.line = line
        self.text = text
        self.reason = reason
        self.kind = kind
    }

    /// `LINE: TEXT: KIND: REASON`, as `vigil import cisco` prints it.
    public var description: String { "\(line): \(text): \(kind): \(reason)" }
}

/// A Cisco configuration from which no Vigil configuration can be made at all.
public struct CiscoImportError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    /// Every line that was not imported, as far as the import got.
    public var unrecognized: [Unrecognized]

    public init(message: String, unrecognized: [Unrecognized]) {
        self.message = message
        self.unrecognized = unrecognized
    }

    public var description: String { message }
}
