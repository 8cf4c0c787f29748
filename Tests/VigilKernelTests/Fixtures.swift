import VigilAddressing
import VigilAlgorithms
import VigilKernel

/// Shared values for the kernel tests: a gateway 192.0.2.1 protecting 10.1.0.0/16, peers A (198.51.100.2) and
/// B (203.0.113.2) each protecting 10.2.0.0/16.
enum Lab {
    static func ip(_ text: String) -> IPAddress {
        guard let address = IPAddress(text) else { preconditionFailure("bad test address \(text)") }
        return address
    }

    static func prefix(_ text: String) -> IPPrefix {
        do { return try IPPrefix.parse(text) } catch { preconditionFailure("bad test prefix \(text)") }
    }

    static let local = ip("192.0.2.1")
    static let peerA = ip("198.51.100.2")
    static let peerB = ip("203.0.113.2")

    /// A Child SA number `n` (1...250) between 10.1.n.0/24 and 10.2.n.0/24 with peer `remote`.
    static func child(_ n: Int, remote: IPAddress, reqid: UInt32, spiBase: UInt32 = 0x1000,
                      device: String = "wan0", table: UInt32 = VigilOwnership.defaultRouteTable,
                      encryption: EncryptionAlgorithm = .aes128cbc,
                      integrity: IntegrityAlgorithm? = .hmacSHA2_256_128) -> KernelChildSA {
        let third = n % 256, second = n / 256
        return KernelChildSA(
            reqid: reqid, localTunnelEndpoint: local, remoteTunnelEndpoint: remote,
            localSubnet: prefix("10.\(1 + 2 * second).\(third).0/24"),
            remoteSubnet: prefix("10.\(2 + 2 * second).\(third).0/24"),
            inbound: SAKeys(spi: spiBase + UInt32(2 * n), encryptionKey: key(encryption.keyMaterialLength, seed: 1),
                            integrityKey: key(integrity?.keyLength ?? 0, seed: 2)),
            outbound: SAKeys(spi: spiBase + UInt32(2 * n + 1), encryptionKey: key(encryption.keyMaterialLength, seed: 3),
                             integrityKey: key(integrity?.keyLength ?? 0, seed: 4)),
            encryption: encryption, integrity: integrity,
            route: ChildSARoute(table: table, device: device, source: ip(localAddress(n))))
    }

    /// The local protected address of Child SA `n` (the route's source hint).
    static func localAddress(_ n: Int) -> String { "10.\(1 + 2 * (n / 256)).\(n % 256).1" }

    static func key(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) }
    }
}
