/// Vigil's accepted ranges and defaults, with the Cisco value each one follows or departs from.
public enum ConfigurationLimits {
    // Cisco `crypto isakmp keepalive SECONDS RETRY-SECONDS`: interval 10-3600 s, retry 2-60 s, default retry 2 s.
    // Vigil goes lower (sub-second detection is one of its reasons to exist) and keeps Cisco's maxima.
    public static let dpdInterval: ClosedRange<Duration> = .milliseconds(100) ... .seconds(3600)
    public static let dpdRetry: ClosedRange<Duration> = .milliseconds(50) ... .seconds(60)
    public static let defaultDPDRetry: Duration = .seconds(2)
    /// Cisco sends 5 retransmissions before declaring the peer dead.
    public static let defaultDPDRetries = 5
    public static let dpdRetries: ClosedRange<Int> = 1 ... 100

    /// Cisco `crypto map NAME SEQ`: 1-65535.
    public static let sequence: ClosedRange<Int> = 1 ... 65535
    /// Cisco `set security-association idle-time`: 60-86400 s; Vigil accepts from 1 s.
    public static let idleTime: ClosedRange<Duration> = .seconds(1) ... .seconds(86400)
    /// Cisco `lifetime` (ISAKMP policy): 60-86400 s, default 86400 s.
    public static let ikeLifetime: ClosedRange<Duration> = .seconds(60) ... .seconds(86400)
    public static let defaultIKELifetime: Duration = .seconds(86400)
    /// Cisco `set security-association lifetime seconds`: 120-86400 s, default 3600 s.
    public static let childLifetime: ClosedRange<Duration> = .seconds(120) ... .seconds(86400)
    public static let defaultChildLifetime: Duration = .seconds(3600)

    public static let connectTimeout: ClosedRange<Duration> = .milliseconds(100) ... .seconds(300)
    public static let defaultConnectTimeout: Duration = .seconds(10)
    public static let backoff: ClosedRange<Duration> = .milliseconds(10) ... .seconds(3600)
    public static let holdDown: ClosedRange<Duration> = .zero ... .seconds(86400)
    public static let flapWindow: ClosedRange<Duration> = .seconds(1) ... .seconds(86400)
    public static let maxFlaps: ClosedRange<Int> = 1 ... 1000

    public static let retransmitTimeout: ClosedRange<Duration> = .milliseconds(50) ... .seconds(60)
    public static let retransmitBase: ClosedRange<Double> = 1.0 ... 4.0
    public static let retransmitTries: ClosedRange<Int> = 1 ... 20

    public static let defaultControlSocket = "/run/vigil/vigil.sock"
    /// Run-time peer lists (`global.state-file`); systemd's `StateDirectory=vigil` makes its directory.
    public static let defaultStateFile = "/var/lib/vigil/peers.json"

    /// Responder half-open IKE / ISAKMP SAs (issue 13). Unset keys leave each engine's own default (IKEv2: RFC 7296
    /// §2.6 leaves the numbers to us, strongSwan's where it has one; IKEv1: RFC 2408 has no cookie challenge, so a
    /// total bounds the state and Diffie-Hellman work a flood of MM1s can cause).
    public static let halfOpenPerSource: ClosedRange<Int> = 1 ... 1024
    public static let halfOpenTotal: ClosedRange<Int> = 1 ... 65536
    public static let halfOpenLifetime: ClosedRange<Duration> = .seconds(1) ... .seconds(300)
    /// RFC 7296 §2.6: half-open IKE SAs before a COOKIE is demanded.
    public static let cookieThreshold: ClosedRange<Int> = 1 ... 65536

    /// Updown hooks: a run is killed (its process group) after its timeout, so a stuck hook cannot pile up.
    public static let hookTimeout: ClosedRange<Duration> = .seconds(1) ... .seconds(300)
    public static let defaultHookTimeout: Duration = .seconds(10)
    /// Hooks listed at one level (global or one entry).
    public static let hooksPerLevel: ClosedRange<Int> = 0 ... 16

    /// An entry's `monitor` (tunnel monitoring). Palo Alto's tunnel monitor defaults to an interval of 3 s and a
    /// threshold of 5 (Juniper's VPN monitor to 10 s and 10); Vigil takes Palo Alto's and allows sub-second intervals,
    /// as it does for DPD.
    public static let monitorInterval: ClosedRange<Duration> = .milliseconds(100) ... .seconds(3600)
    public static let defaultMonitorInterval: Duration = .seconds(3)
    public static let monitorThreshold: ClosedRange<Int> = 1 ... 100
    public static let defaultMonitorThreshold = 5

    /// `global.metrics.listen`: a TCP port (RFC 793; 0 would be "any port", which Prometheus could not find).
    /// Prometheus's own exporters take theirs from 9100 up; nothing is chosen by default (the endpoint is off).
    public static let metricsPort: ClosedRange<Int> = 1 ... 65535
}
