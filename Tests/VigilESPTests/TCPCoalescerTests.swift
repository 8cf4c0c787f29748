import Testing
import VigilAddressing
@testable import VigilESP

/// A TCP/IPv4 segment (RFC 793 header with a 12-byte timestamp option) with valid IP and TCP checksums.
func tcpSegment(sequence: UInt32, payload: [UInt8], flags: UInt8 = 0x10, sourcePort: UInt16 = 40000, timestamp: UInt32 = 7) -> [UInt8] {
    let tcpLength = 32 + payload.count
    var tcp: [UInt8] = [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xFF), 0x13, 0x89]
    tcp += withUnsafeBytes(of: sequence.bigEndian, Array.init)
    tcp += [0, 0, 0x30, 0x39]  // ack
    tcp += [0x80, flags, 0x01, 0xF5, 0, 0, 0, 0]  // data offset 8 words, flags, window, checksum, urgent
    tcp += [1, 1, 8, 10] + withUnsafeBytes(of: timestamp.bigEndian, Array.init) + [0, 0, 0, 9]
    tcp += payload
    var ip: [UInt8] = [0x45, 0, UInt8((20 + tcpLength) >> 8), UInt8((20 + tcpLength) & 0xFF), 0, 1, 0x40, 0, 64, 6, 0, 0]
    ip += [10, 1, 0, 5, 10, 2, 0, 7]
    let ipChecksum = ~ip.withUnsafeBytes { internetSum($0, initial: 0) }
    ip[10] = UInt8(ipChecksum >> 8)
    ip[11] = UInt8(ipChecksum & 0xFF)
    let tcpChecksum = ~checksumWithPseudoHeader(ip, tcp)
    tcp[16] = UInt8(tcpChecksum >> 8)
    tcp[17] = UInt8(tcpChecksum & 0xFF)
    return ip + tcp
}

func checksumWithPseudoHeader(_ ip: [UInt8], _ tcp: [UInt8]) -> UInt16 {
    let pseudo = Array(ip[12..<20]) + [0, 6, UInt8(tcp.count >> 8), UInt8(tcp.count & 0xFF)]
    return (pseudo + tcp + (tcp.count % 2 == 1 ? [0] : [])).withUnsafeBytes { internetSum($0, initial: 0) }
}

/// Feeds packets through a coalescer the way the inbound loop does and collects what it would write.
func coalesce(_ packets: [[UInt8]]) -> [[UInt8]] {
    let coalescer = TCPCoalescer()
    var written: [[UInt8]] = []
    let buffer = PacketBuffer()
    for packet in packets {
        coalescer.add(buffer.raw, buffer.load(packet, at: 64)) { written.append(Array($0)) }
    }
    coalescer.flush { written.append(Array($0)) }
    return written
}

@Suite struct TCPCoalescerTests {
    @Test func contiguousSegmentsBecomeOneGSOPacketTheKernelCanFinish() throws {
        let payloads = (0..<3).map { index in (0..<1000).map { UInt8(truncatingIfNeeded: $0 + index) } } + [[1, 2, 3]]
        var sequence: UInt32 = 1_000_000
        var packets: [[UInt8]] = []
        for payload in payloads {
            packets.append(tcpSegment(sequence: sequence, payload: payload))
            sequence &+= UInt32(payload.count)
        }
        let written = coalesce(packets)
        #expect(written.count == 1)
        let out = try #require(written.first)
        let header = Array(out[0..<10])
        #expect(header[0] == 1 && header[1] == 1)  // needs checksum, GSO TCPv4
        #expect(header[2] == 52 && header[3] == 0)  // hdr_len 20 + 32, little-endian
        #expect(header[4] == UInt8(1000 & 0xFF) && header[5] == UInt8(1000 >> 8))  // gso_size
        #expect(header[6] == 20 && header[8] == 16)  // csum_start, csum_offset
        let ip = Array(out[10...])
        #expect(ip.count == 52 + 3003)
        #expect(Int(ip[2]) << 8 | Int(ip[3]) == ip.count)
        #expect(ip.withUnsafeBytes { internetSum(UnsafeRawBufferPointer(rebasing: $0[0..<20]), initial: 0) } == 0xFFFF)
        #expect(Array(ip[52...]) == payloads.flatMap { $0 })
        // Finish the checksum as the kernel does (sum from csum_start with the seeded field, complemented), then
        // verify it the way a receiver does.
        var tcp = Array(ip[20...])
        let completed = ~tcp.withUnsafeBytes { internetSum($0, initial: 0) }
        tcp[16] = UInt8(completed >> 8)
        tcp[17] = UInt8(completed & 0xFF)
        #expect(checksumWithPseudoHeader(Array(ip[0..<20]), tcp) == 0xFFFF)
    }

    @Test func gapsOtherFlowsShortSegmentsAndPushEndAPacket() {
        let payload = [UInt8](repeating: 0xAB, count: 500)
        // A gap in sequence numbers.
        #expect(coalesce([tcpSegment(sequence: 0, payload: payload), tcpSegment(sequence: 501, payload: payload)]).count == 2)
        // Another flow in between.
        #expect(coalesce([
            tcpSegment(sequence: 0, payload: payload), tcpSegment(sequence: 0, payload: payload, sourcePort: 1234),
            tcpSegment(sequence: 500, payload: payload),
        ]).count == 3)
        // A short segment is the last of its packet.
        #expect(coalesce([
            tcpSegment(sequence: 0, payload: payload), tcpSegment(sequence: 500, payload: [1]),
            tcpSegment(sequence: 501, payload: payload),
        ]).count == 2)
        // PSH on the second: it closes the packet (and carries PSH).
        let pushed = coalesce([
            tcpSegment(sequence: 0, payload: payload), tcpSegment(sequence: 500, payload: payload, flags: 0x18),
            tcpSegment(sequence: 1000, payload: payload),
        ])
        #expect(pushed.count == 2)
        #expect(pushed.first.map { $0[10 + 33] } == 0x18)
        // Different TCP options (timestamps) are not merged.
        #expect(coalesce([tcpSegment(sequence: 0, payload: payload), tcpSegment(sequence: 500, payload: payload, timestamp: 8)]).count == 2)
    }

    @Test func otherPacketsPassThroughWithAPlainHeader() {
        let udp = ipv4Packet(from: "10.1.0.5", to: "10.2.0.7", payload: [1, 2, 3])
        let syn = tcpSegment(sequence: 0, payload: [], flags: 0x02)
        let single = tcpSegment(sequence: 0, payload: [9, 9])
        let written = coalesce([udp, syn, single])
        #expect(written == [[UInt8](repeating: 0, count: 10) + udp, [UInt8](repeating: 0, count: 10) + syn,
            [UInt8](repeating: 0, count: 10) + single])
    }
}
