/// ICMP echo messages for the tunnel monitor (RFC 792, "Echo or Echo Reply Message"): building a request and
/// reading a reply. Values only; the socket is the daemon's. Nothing read from the network is trusted: every length
/// is checked before a byte is read.
public enum ICMPEcho {
    // MARK: RFC 792 and RFC 791 numbers

    /// RFC 792: type 8 is an echo request, type 0 an echo reply; code 0 for both.
    public static let echoRequestType: UInt8 = 8
    public static let echoReplyType: UInt8 = 0
    /// Type, code, checksum, identifier, sequence number.
    public static let headerLength = 8
    /// RFC 791 §3.1: the IPv4 header's IHL is its length in 32-bit words, at least 5; the protocol is at offset 9.
    static let minimumIPv4HeaderLength = 20
    static let ipv4ProtocolOffset = 9
    /// RFC 790 / IANA: ICMP's protocol number.
    static let icmpProtocol: UInt8 = 1

    // MARK: Vigil's choices

    /// What our echo requests carry after the header (RFC 792: "the data received in the echo message must be
    /// returned in the echo reply message"); it names the sender to whoever captures one.
    public static let payload: [UInt8] = Array("vigil tunnel monitor".utf8)

    /// An echo request with its checksum (the kernel adds the IPv4 header on a raw ICMP socket).
    public static func request(identifier: UInt16, sequence: UInt16, payload: [UInt8] = payload) -> [UInt8] {
        var message: [UInt8] = [echoRequestType, 0, 0, 0,
                                UInt8(identifier >> 8), UInt8(identifier & 0xFF), UInt8(sequence >> 8), UInt8(sequence & 0xFF)]
        message += payload
        let sum = checksum(message)
        message[2] = UInt8(sum >> 8)
        message[3] = UInt8(sum & 0xFF)
        return message
    }

    /// The identifier and sequence number of an echo reply as a raw IPv4 ICMP socket reads it (the IPv4 header
    /// first); nil for anything else: another ICMP type, a truncated datagram, a bad checksum.
    public static func reply(inIPv4Datagram datagram: [UInt8]) -> (identifier: UInt16, sequence: UInt16)? {
        guard datagram.count >= minimumIPv4HeaderLength, datagram[0] >> 4 == 4 else { return nil }
        let headerLength = Int(datagram[0] & 0x0F) * 4
        guard headerLength >= minimumIPv4HeaderLength, datagram.count >= headerLength + Self.headerLength,
              datagram[ipv4ProtocolOffset] == icmpProtocol
        else { return nil }
        let message = Array(datagram[headerLength...])
        guard message[0] == echoReplyType, message[1] == 0, checksum(message) == 0 else { return nil }
        return (UInt16(message[4]) << 8 | UInt16(message[5]), UInt16(message[6]) << 8 | UInt16(message[7]))
    }

    /// RFC 1071: the 16-bit one's complement of the one's complement sum (zero over a message with a valid checksum).
    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var index = 0
        while index + 1 < bytes.count {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }
}
