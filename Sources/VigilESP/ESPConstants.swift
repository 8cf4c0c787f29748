/// Numbers from the specifications, with their sections. Our own tunables live in `ESPDataPlane.Configuration`.
public enum ESPSpec {
    /// SPI (4) + Sequence Number (4) (RFC 4303 §2, §2.1, §2.2).
    public static let headerLength = 8
    /// SPI values 1-255 are reserved by IANA; 0 is for local use and never sent (RFC 4303 §2.1).
    public static let firstAssignableSPI: UInt32 = 256
    /// Pad Length (1) + Next Header (1) (RFC 4303 §2.4, §2.5).
    public static let trailerLength = 2
    /// The Padding field holds at most 255 bytes (RFC 4303 §2.4).
    public static let maximumPadLength = 255
    /// Next Header values for tunnel mode (RFC 4303 §2.6): IP-in-IP, IPv6, and the dummy-packet marker.
    public static let nextHeaderIPv4: UInt8 = 4
    public static let nextHeaderIPv6: UInt8 = 41
    public static let nextHeaderNoNext: UInt8 = 59
    /// The 32-bit counter must not cycle: after 2^32 - 1 packets the SA must be replaced (RFC 4303 §3.3.3).
    public static let lastSequenceNumber: UInt32 = .max

    /// AES-GCM in ESP (RFC 4106): 8-byte explicit IV (§3.1), 16-byte ICV for the "-16" variant (§6),
    /// 4-byte salt at the end of the keying material (§8.1); padding aligns to 4 bytes (§3.2).
    public static let gcmIVLength = 8
    public static let gcmICVLength = 16
    public static let gcmAlignment = 4
    /// AES-CBC in ESP (RFC 3602 §3): a 16-byte IV and ciphertext in whole 16-byte blocks.
    public static let cbcIVLength = 16
    public static let cbcBlockSize = 16

    /// UDP encapsulation (RFC 3948 §2.2, §2.3): IKE on port 4500 starts with a four-byte zero non-ESP marker; a
    /// NAT-keepalive is one byte 0xFF (§2.3).
    public static let natTraversalPort: UInt16 = 4500
    public static let nonESPMarkerLength = 4
    public static let natKeepalive: UInt8 = 0xFF

    /// IP header facts used to read selectors (RFC 791 §3.1, RFC 8200 §3).
    public static let ipv4MinimumHeaderLength = 20
    public static let ipv6HeaderLength = 40
}
