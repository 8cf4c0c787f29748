/// Cisco IOS's documented defaults and limits, apart from the import's own choices.
enum CiscoDefaults {
    /// `crypto isakmp keepalive SECONDS [RETRY]`: retry defaults to 2 s; Cisco's ranges are 10-3600 s and 2-60 s.
    static let keepaliveRetrySeconds = 2
    static let keepaliveSeconds: ClosedRange<Int> = 10 ... 3600
    static let keepaliveRetrySecondsRange: ClosedRange<Int> = 2 ... 60
    /// `crypto isakmp policy` / `crypto ikev2 profile` `lifetime`: 86400 s by default, 60-86400 s (IKEv2: 120-86400).
    static let ikeLifetimeSeconds = 86_400
    static let ikeLifetimeRange: ClosedRange<Int> = 60 ... 86_400
    /// `set security-association lifetime seconds`: 3600 s by default, 120-86400 s.
    static let childLifetimeRange: ClosedRange<Int> = 120 ... 86_400
    /// `set security-association idle-time`: 60-86400 s.
    static let idleTimeRange: ClosedRange<Int> = 60 ... 86_400
    /// `crypto isakmp policy PRIORITY`: 1-10000.
    static let isakmpPriority: ClosedRange<Int> = 1 ... 10_000
    /// `crypto map NAME SEQ`: 1-65535.
    static let mapSequence: ClosedRange<Int> = 1 ... 65_535
    /// Numbered extended IP access lists: 100-199 and the expanded range 2000-2699.
    static let extendedACLNumbers: [ClosedRange<Int>] = [100 ... 199, 2000 ... 2699]
    /// `esp-aes` and `encryption aes` without a key size are 128-bit; `esp-gcm` without one is 128-bit too.
    static let aesKeyBits = 128
}

/// Vigil's names for what the import writes (the secrets file's name beside the YAML, the package's layout).
public enum CiscoImportNames {
    public static let configurationFile = "vigil.yaml"
    public static let secretsFile = "vigil.secrets.yaml"
}
