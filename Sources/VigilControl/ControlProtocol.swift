import Foundation

/// The control API between `vigil` (or any script) and `vigild`: a Unix stream socket carrying one JSON object per
/// line. Each request gets one response line, except `events` with `follow`, which streams event lines until the
/// client hangs up. Errors carry a stable `code` a script can act on (like wireguard's errno-valued ipc errors).
public struct ControlRequest: Codable, Sendable, Equatable {
    public enum Command: String, Codable, Sendable, CaseIterable {
        case status
        case setPeers = "peers.set"
        case clear
        case initiate
        case failover
        case events
        case metrics
        /// Load the configuration file again (as SIGHUP); answers with a `ReloadReport`.
        case reload
        /// The running configuration per entry with its peers' health (`vigil show maps [MAP]`); `map` narrows it.
        case maps
    }

    public var command: Command
    /// Crypto map name and entry sequence number, for commands that address an entry.
    public var map: String?
    public var sequence: Int?
    /// peers.set: the new ordered peer list (addresses or host names); preferred: the new preferred peer (first).
    public var peers: [String]?
    public var preferred: String?
    /// failover: move to this listed peer instead of the next one.
    public var to: String?
    /// events: keep the connection open and stream new events.
    public var follow: Bool?
    /// clear: keep the entries down until `initiate` (Cisco's clear renegotiates; this does not).
    public var hold: Bool?

    public init(
        command: Command, map: String? = nil, sequence: Int? = nil, peers: [String]? = nil,
        preferred: String? = nil, to: String? = nil, follow: Bool? = nil, hold: Bool? = nil
    ) {
        self.command = command
        self.map = map
        self.sequence = sequence
        self.peers = peers
        self.preferred = preferred
        self.to = to
        self.follow = follow
        self.hold = hold
    }
}

/// Stable error codes of the control API.
public enum ControlErrorCode: String, Codable, Sendable, CaseIterable {
    case badRequest = "bad-request"
    case unknownMap = "unknown-map"
    case unknownEntry = "unknown-entry"
    case invalidPeerList = "invalid-peer-list"
    case unknownPeer = "unknown-peer"
    /// The entry has no active peer (the daemon answered).
    case notConnected = "not-connected"
    /// The client could not reach vigild, or vigild hung up (never sent by the daemon).
    case daemonUnreachable = "daemon-unreachable"
    case alreadyUp = "already-up"
    case permissionDenied = "permission-denied"
    /// The configuration file has errors (every one in the answer's `reload.errors`); nothing changed.
    case reloadRefused = "reload-refused"
    case internalError = "internal-error"
}

public struct ControlError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    public var code: ControlErrorCode
    public var message: String
    public init(_ code: ControlErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code.rawValue): \(message)" }
}

/// What `status` returns: every crypto-map entry, its peer list, the active peer and its SAs.
public struct StatusReport: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var map: String
        public var sequence: Int
        public var ikeVersion: String
        public var peers: [String]
        public var preferredPeer: String?
        public var state: String
        public var activePeer: String?
        public var ikeSAs: [IKESAStatus]
        public var childSAs: [ChildSAStatus]
        public var dpd: String

        public init(map: String, sequence: Int, ikeVersion: String, peers: [String], preferredPeer: String? = nil, state: String, activePeer: String? = nil, ikeSAs: [IKESAStatus], childSAs: [ChildSAStatus], dpd: String) {
            self.map = map
            self.sequence = sequence
            self.ikeVersion = ikeVersion
            self.peers = peers
            self.preferredPeer = preferredPeer
            self.state = state
            self.activePeer = activePeer
            self.ikeSAs = ikeSAs
            self.childSAs = childSAs
            self.dpd = dpd
        }
    }

    public struct IKESAStatus: Codable, Sendable, Equatable {
        public var id: String
        public var peer: String
        public var state: String
        public var localSPI: String
        public var remoteSPI: String
        public var algorithms: String
        public var established: Double?
        /// Seconds until the IKE SA's scheduled rekey (absent while none is scheduled).
        public var rekeyIn: Double?

        public init(id: String, peer: String, state: String, localSPI: String, remoteSPI: String, algorithms: String, established: Double? = nil,
                    rekeyIn: Double? = nil) {
            self.id = id
            self.peer = peer
            self.state = state
            self.localSPI = localSPI
            self.remoteSPI = remoteSPI
            self.algorithms = algorithms
            self.established = established
            self.rekeyIn = rekeyIn
        }
    }

    public struct ChildSAStatus: Codable, Sendable, Equatable {
        public var peer: String
        public var inboundSPI: String
        public var outboundSPI: String
        public var algorithms: String
        public var localTS: [String]
        public var remoteTS: [String]
        public var encapsulated: Bool
        /// Set when this Child SA's inbound traffic cannot be delivered (ESP the kernel should have decapsulated
        /// reached vigild).
        public var inboundError: String? = nil
        /// Traffic counted by the data plane (the kernel's XFRM statistics or the userspace engine); nil when the
        /// SA could not be read.
        public var bytesIn: UInt64? = nil
        public var packetsIn: UInt64? = nil
        public var bytesOut: UInt64? = nil
        public var packetsOut: UInt64? = nil
        /// Seconds since it was established (or rekeyed into being), and until its negotiated lifetime ends.
        public var age: Double? = nil
        public var expiresIn: Double? = nil
        /// Seconds until the engine's scheduled rekey of it (absent while none is: an IKEv1 responder leaves the
        /// rekey to the initiator).
        public var rekeyIn: Double? = nil

        public init(peer: String, inboundSPI: String, outboundSPI: String, algorithms: String, localTS: [String], remoteTS: [String], encapsulated: Bool, inboundError: String? = nil, bytesIn: UInt64? = nil, packetsIn: UInt64? = nil, bytesOut: UInt64? = nil, packetsOut: UInt64? = nil, age: Double? = nil, expiresIn: Double? = nil) {
            self.peer = peer
            self.inboundSPI = inboundSPI
            self.outboundSPI = outboundSPI
            self.algorithms = algorithms
            self.localTS = localTS
            self.remoteTS = remoteTS
            self.encapsulated = encapsulated
            self.inboundError = inboundError
            self.bytesIn = bytesIn
            self.packetsIn = packetsIn
            self.bytesOut = bytesOut
            self.packetsOut = packetsOut
            self.age = age
            self.expiresIn = expiresIn
        }
    }

    public var uptime: Double
    public var dataplane: String
    public var entries: [Entry]

    public init(uptime: Double, dataplane: String, entries: [Entry]) {
        self.uptime = uptime
        self.dataplane = dataplane
        self.entries = entries
    }
}

/// One line of the event stream (and of the daemon's log): what happened, to which entry and peer, when.
public struct DaemonEvent: Codable, Sendable, Equatable {
    /// Seconds since the daemon started (monotonic) and the wall-clock time for humans.
    public var time: Double
    public var wallClock: String
    public var kind: String
    public var map: String?
    public var sequence: Int?
    public var peer: String?
    public var detail: String

    public init(time: Double, wallClock: String, kind: String, map: String?, sequence: Int?, peer: String?, detail: String) {
        self.time = time
        self.wallClock = wallClock
        self.kind = kind
        self.map = map
        self.sequence = sequence
        self.peer = peer
        self.detail = detail
    }
}

public struct ControlResponse: Codable, Sendable {
    public var ok: Bool
    public var error: ControlError?
    public var status: StatusReport?
    public var events: [DaemonEvent]?
    public var metrics: String?
    public var message: String?
    public var reload: ReloadReport? = nil
    public var maps: MapsReport? = nil

    public static func success(message: String) -> ControlResponse {
        ControlResponse(ok: true, error: nil, status: nil, events: nil, metrics: nil, message: message)
    }

    public static func failure(_ error: ControlError) -> ControlResponse {
        ControlResponse(ok: false, error: error, status: nil, events: nil, metrics: nil, message: nil)
    }

    public init(ok: Bool, error: ControlError?, status: StatusReport?, events: [DaemonEvent]?, metrics: String?, message: String?) {
        self.ok = ok
        self.error = error
        self.status = status
        self.events = events
        self.metrics = metrics
        self.message = message
    }
}

/// One JSON object per line, both ways.
public enum ControlCoding {
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { preconditionFailure("control types always encode") }
        return Array(data) + [0x0A]
    }

    public static func decode<T: Decodable>(_ type: T.Type, line: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(line))
    }
}

extension StatusReport {
    /// A time left as `vigil status` says it: "2h 51m", "4m 10s", "9s" (rounded down to the unit shown last).
    public static func spokenDuration(seconds: Double) -> String {
        let total = Int(max(seconds, 0).rounded(.down))
        let hours = total / 3600, minutes = total % 3600 / 60, rest = total % 60
        if hours > 0 { return "\(hours)h \(minutes)m" }
        if minutes > 0 { return "\(minutes)m \(rest)s" }
        return "\(rest)s"
    }
}
