/// The virtio-net header a TUN device with IFF_VNET_HDR puts before every packet (linux/virtio_net.h), in the
/// device's native little-endian order. Vigil writes GSO packets with it and reads plain ones.
enum VirtioNetHeader {
    static let length = 10
    static let flagNeedsChecksum: UInt8 = 1  // VIRTIO_NET_HDR_F_NEEDS_CSUM
    static let gsoNone: UInt8 = 0
    static let gsoTCPv4: UInt8 = 1  // VIRTIO_NET_HDR_GSO_TCPV4

    /// Writes a header saying "one ordinary packet, checksums complete".
    static func writePlain(_ buffer: UnsafeMutableRawBufferPointer, at offset: Int) {
        UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<offset + length]).initializeMemory(as: UInt8.self, repeating: 0)
    }

    /// The GSO type of a header read from the device.
    static func gsoType(_ buffer: UnsafeRawBufferPointer, at offset: Int) -> UInt8 { buffer[offset + 1] }
}

/// Receive-side TCP coalescing for the TUN device (what GRO does in a NIC driver): consecutive in-order segments of
/// one TCP/IPv4 flow become one large packet written with a virtio-net GSO header, so the kernel forwards and
/// delivers one packet instead of dozens. Anything else passes through unchanged. The kernel re-segments the large
/// packet if it has to leave on a link; the bytes on the wire are the same as without coalescing.
///
/// Coalesced only: IPv4 without options or fragmentation, TCP with only ACK (PSH allowed on the last segment), equal
/// TOS, TTL, addresses, ports, ack, window and TCP options, sequence numbers contiguous, every segment but the last
/// of the first segment's size.
final class TCPCoalescer {
    /// Room for the header and the largest IPv4 packet.
    private static let capacity = VirtioNetHeader.length + 65_535
    private static let maximumSegments = 64
    private let pending = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
    /// Bytes used in `pending` (header included); 0 when nothing is pending.
    private var used = 0
    private var segments = 0
    private var segmentSize = 0
    private var headerLength = 0
    private var nextSequence: UInt32 = 0
    private var closed = false

    deinit { pending.deallocate() }

    /// Offers the decrypted packet at `range` of `buffer` (which has at least `VirtioNetHeader.length` writable
    /// bytes before it). `write` receives, in order, every packet ready for the device, header included.
    func add(_ buffer: UnsafeMutableRawBufferPointer, _ range: Range<Int>, write: (UnsafeRawBufferPointer) -> Void) {
        let packet = UnsafeRawBufferPointer(rebasing: buffer[range])
        guard let segment = TCPSegment(packet) else {
            flush(write: write)
            let start = range.lowerBound - VirtioNetHeader.length
            VirtioNetHeader.writePlain(buffer, at: start)
            write(UnsafeRawBufferPointer(rebasing: buffer[start..<range.upperBound]))
            return
        }
        if used > 0 && !append(segment, packet) { flush(write: write) }
        if used == 0 { begin(segment, packet) }
        if segment.push || segments == Self.maximumSegments { flush(write: write) }
    }

    /// Writes what is pending.
    func flush(write: (UnsafeRawBufferPointer) -> Void) {
        guard used > 0 else { return }
        if segments > 1 { finishLargePacket() }
        write(UnsafeRawBufferPointer(rebasing: pending[0..<used]))
        used = 0
        segments = 0
    }

    private func begin(_ segment: TCPSegment, _ packet: UnsafeRawBufferPointer) {
        VirtioNetHeader.writePlain(pending, at: 0)
        UnsafeMutableRawBufferPointer(rebasing: pending[VirtioNetHeader.length..<VirtioNetHeader.length + packet.count])
            .copyMemory(from: packet)
        used = VirtioNetHeader.length + packet.count
        segments = 1
        segmentSize = segment.payloadLength
        headerLength = segment.headerLength
        nextSequence = segment.sequence &+ UInt32(segment.payloadLength)
    }

    /// Appends `segment`'s payload if it continues the pending packet; false if it does not fit.
    private func append(_ segment: TCPSegment, _ packet: UnsafeRawBufferPointer) -> Bool {
        let first = UnsafeRawBufferPointer(rebasing: pending[VirtioNetHeader.length..<VirtioNetHeader.length + headerLength])
        guard segment.headerLength == headerLength,
            segment.sequence == nextSequence,
            segment.payloadLength <= segmentSize,
            used - VirtioNetHeader.length + segment.payloadLength <= 65_535,
            TCPSegment.sameFlowAndHeaders(first, packet, headerLength: headerLength),
            // Only the last segment may be shorter: a shorter one before means the packet is complete.
            (used - VirtioNetHeader.length - headerLength) % segmentSize == 0
        else { return false }
        UnsafeMutableRawBufferPointer(rebasing: pending[used..<used + segment.payloadLength])
            .copyMemory(from: UnsafeRawBufferPointer(rebasing: packet[headerLength..<packet.count]))
        used += segment.payloadLength
        segments += 1
        nextSequence &+= UInt32(segment.payloadLength)
        if segment.push { pending[VirtioNetHeader.length + segment.ipHeaderLength + 13] |= TCPSegment.flagPSH }
        return true
    }

    /// Fixes the IPv4 total length and checksum, seeds the TCP checksum with the pseudo-header sum, and fills the
    /// virtio-net header: TCPv4 GSO of `segmentSize`, checksum to be completed by the kernel.
    private func finishLargePacket() {
        let ip = UnsafeMutableRawBufferPointer(rebasing: pending[VirtioNetHeader.length..<used])
        let ipHeaderLength = Int(ip[0] & 0x0F) * 4
        let total = used - VirtioNetHeader.length
        ip.storeBytes(of: UInt16(total).bigEndian, toByteOffset: 2, as: UInt16.self)
        ip.storeBytes(of: 0, toByteOffset: 10, as: UInt16.self)
        let ipChecksum = ~internetSum(UnsafeRawBufferPointer(rebasing: ip[0..<ipHeaderLength]), initial: 0)
        ip.storeBytes(of: ipChecksum.bigEndian, toByteOffset: 10, as: UInt16.self)
        // Pseudo-header (RFC 793 §3.1): addresses, protocol, TCP length. Not complemented: the kernel adds the rest.
        var pseudo = internetSum(UnsafeRawBufferPointer(rebasing: ip[12..<20]), initial: 0)
        pseudo = fold(UInt32(pseudo) + 6 + UInt32(total - ipHeaderLength))
        ip.storeBytes(of: pseudo.bigEndian, toByteOffset: ipHeaderLength + 16, as: UInt16.self)

        pending[0] = VirtioNetHeader.flagNeedsChecksum
        pending[1] = VirtioNetHeader.gsoTCPv4
        pending.storeBytes(of: UInt16(headerLength).littleEndian, toByteOffset: 2, as: UInt16.self)
        pending.storeBytes(of: UInt16(segmentSize).littleEndian, toByteOffset: 4, as: UInt16.self)
        pending.storeBytes(of: UInt16(ipHeaderLength).littleEndian, toByteOffset: 6, as: UInt16.self)
        pending.storeBytes(of: UInt16(16).littleEndian, toByteOffset: 8, as: UInt16.self)
    }
}

/// The fields of a TCP/IPv4 packet that decide whether it can be coalesced; nil for anything that cannot.
struct TCPSegment {
    static let flagPSH: UInt8 = 0x08
    static let flagACK: UInt8 = 0x10

    let ipHeaderLength: Int
    /// IP + TCP header bytes.
    let headerLength: Int
    let payloadLength: Int
    let sequence: UInt32
    let push: Bool

    init?(_ packet: UnsafeRawBufferPointer) {
        guard packet.count >= 40, packet[0] == 0x45, packet[9] == 6 else { return nil }  // IPv4, no options, TCP
        let total = Int(packet.loadBigEndianUInt16(at: 2))
        let fragment = packet.loadBigEndianUInt16(at: 6)
        guard total == packet.count, fragment & 0x3FFF == 0 else { return nil }  // not MF, offset 0
        let tcpHeaderLength = Int(packet[20 + 12] >> 4) * 4
        let flags = packet[20 + 13]
        guard tcpHeaderLength >= 20, 20 + tcpHeaderLength < packet.count,
            flags & ~TCPSegment.flagPSH == TCPSegment.flagACK, packet[20 + 12] & 0x0F == 0
        else { return nil }
        ipHeaderLength = 20
        headerLength = 20 + tcpHeaderLength
        payloadLength = packet.count - headerLength
        sequence = packet.loadBigEndianUInt32(at: 24)
        push = flags & TCPSegment.flagPSH != 0
    }

    /// Same TOS, DF, TTL, addresses, ports, ack, window and options; the pending packet may carry PSH only if
    /// it was just set by its last segment (then it was flushed), so flags are compared without PSH.
    static func sameFlowAndHeaders(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, headerLength: Int) -> Bool {
        guard a[1] == b[1], a[6] & 0x40 == b[6] & 0x40, a[8] == b[8],
            a.loadUnaligned(fromByteOffset: 12, as: UInt64.self) == b.loadUnaligned(fromByteOffset: 12, as: UInt64.self),
            a.loadUnaligned(fromByteOffset: 20, as: UInt32.self) == b.loadUnaligned(fromByteOffset: 20, as: UInt32.self),
            a.loadUnaligned(fromByteOffset: 28, as: UInt32.self) == b.loadUnaligned(fromByteOffset: 28, as: UInt32.self),
            a[33] & ~flagPSH == b[33] & ~flagPSH, a[33] & flagPSH == 0,
            a.loadUnaligned(fromByteOffset: 34, as: UInt16.self) == b.loadUnaligned(fromByteOffset: 34, as: UInt16.self)
        else { return false }
        // Options (timestamps): identical bytes, as GRO requires.
        for offset in 40..<headerLength where a[offset] != b[offset] { return false }
        return true
    }
}

/// One's-complement sum of 16-bit big-endian words (RFC 1071), folded.
func internetSum(_ bytes: UnsafeRawBufferPointer, initial: UInt16) -> UInt16 {
    var sum = UInt32(initial)
    var index = 0
    while index + 1 < bytes.count {
        sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
        index += 2
    }
    if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
    return fold(sum)
}

func fold(_ sum: UInt32) -> UInt16 {
    var sum = sum
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    return UInt16(sum)
}

extension UnsafeRawBufferPointer {
    @inline(__always)
    func loadBigEndianUInt16(at offset: Int) -> UInt16 {
        UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
}
