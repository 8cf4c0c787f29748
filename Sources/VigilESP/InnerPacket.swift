import VigilAddressing

/// The selector fields of an inner IP packet (RFC 4301 §4.4.1.1), read in place without copying.
public struct InnerPacketSelectors: Hashable, Sendable {
    public var source: IPAddress
    public var destination: IPAddress
    public var ipProtocol: UInt8
    /// ESP Next Header for this packet in tunnel mode (4 or 41).
    public var nextHeader: UInt8

    /// Reads an IPv4 (RFC 791) or IPv6 (RFC 8200) header at the start of `packet`; nil if it is neither or too short
    /// for its own header. Extension headers are not followed: Vigil's selectors use no ports.
    public init?(_ packet: UnsafeRawBufferPointer) {
        guard let first = packet.first else { return nil }
        switch first >> 4 {
        case 4:
            let headerLength = Int(first & 0x0F) * 4
            guard headerLength >= ESPSpec.ipv4MinimumHeaderLength, packet.count >= headerLength else { return nil }
            source = .v4(packet.loadBigEndianUInt32(at: 12))
            destination = .v4(packet.loadBigEndianUInt32(at: 16))
            ipProtocol = packet[9]
            nextHeader = ESPSpec.nextHeaderIPv4
        case 6:
            guard packet.count >= ESPSpec.ipv6HeaderLength else { return nil }
            source = .v6(high: packet.loadBigEndianUInt64(at: 8), low: packet.loadBigEndianUInt64(at: 16))
            destination = .v6(high: packet.loadBigEndianUInt64(at: 24), low: packet.loadBigEndianUInt64(at: 32))
            ipProtocol = packet[6]
            nextHeader = ESPSpec.nextHeaderIPv6
        default:
            return nil
        }
    }
}

extension UnsafeRawBufferPointer {
    @inline(__always)
    func loadBigEndianUInt32(at offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always)
    func loadBigEndianUInt64(at offset: Int) -> UInt64 {
        UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always)
    func storeBigEndian(_ value: UInt32, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }

    @inline(__always)
    func storeBigEndian(_ value: UInt64, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt64.self)
    }
}
