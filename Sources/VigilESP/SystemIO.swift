#if canImport(Glibc)
import Glibc
#endif
import VigilAddressing

/// A refusal by the operating system while setting up or running the data plane: the call and its errno.
public struct ESPSystemError: Error, Hashable, Sendable, CustomStringConvertible {
    public let call: String
    public let errno: Int32

    public init(_ call: String, errno: Int32 = Glibc.errno) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// Linux ioctl numbers and flags not imported from the C headers (linux/if_tun.h, linux/sockios.h, linux/if.h).
enum LinuxIoctl {
    static let TUNSETIFF: UInt = 0x4004_54CA
    static let SIOCGIFFLAGS: UInt = 0x8913
    static let SIOCSIFFLAGS: UInt = 0x8914
    static let SIOCSIFMTU: UInt = 0x8922
    static let IFF_TUN: Int16 = 0x0001
    static let IFF_NO_PI: Int16 = 0x1000
    static let IFF_VNET_HDR: Int16 = 0x4000
    static let IFF_UP: Int16 = 0x0001
}

/// A layer-3 TUN device (IFF_TUN | IFF_NO_PI): every read is one IP packet, every write injects one.
/// Owns its descriptor; the interface disappears when the device is closed.
public final class TUNDevice: @unchecked Sendable {
    public let fileDescriptor: Int32
    /// The interface name the kernel gave (the template's `%d` filled in).
    public let name: String
    public let index: UInt32

    /// True when every read and write carries a virtio-net header (IFF_VNET_HDR), so writes may be GSO packets.
    public let virtioNetHeader: Bool

    /// Creates the device, sets its MTU and brings it up. `name` may contain `%d` (e.g. `vigil%d`).
    public init(name: String, mtu: Int, virtioNetHeader: Bool = false) throws(ESPSystemError) {
        precondition(name.utf8.count < Int(IFNAMSIZ), "interface name too long")
        let fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw ESPSystemError("open /dev/net/tun") }
        var request = ifreq()
        request.setName(name)
        request.ifr_ifru.ifru_flags = LinuxIoctl.IFF_TUN | LinuxIoctl.IFF_NO_PI | (virtioNetHeader ? LinuxIoctl.IFF_VNET_HDR : 0)
        guard ioctl(fd, LinuxIoctl.TUNSETIFF, &request) == 0 else {
            let error = ESPSystemError("TUNSETIFF \(name)")
            close(fd)
            throw error
        }
        fileDescriptor = fd
        self.virtioNetHeader = virtioNetHeader
        self.name = request.name
        index = if_nametoindex(self.name)
        try configure(mtu: mtu)
    }

    deinit { close(fileDescriptor) }

    private func configure(mtu: Int) throws(ESPSystemError) {
        let control = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard control >= 0 else { throw ESPSystemError("socket for interface ioctls") }
        defer { close(control) }
        var request = ifreq()
        request.setName(name)
        request.ifr_ifru.ifru_mtu = Int32(mtu)
        guard ioctl(control, LinuxIoctl.SIOCSIFMTU, &request) == 0 else { throw ESPSystemError("SIOCSIFMTU \(name)") }
        guard ioctl(control, LinuxIoctl.SIOCGIFFLAGS, &request) == 0 else { throw ESPSystemError("SIOCGIFFLAGS \(name)") }
        request.ifr_ifru.ifru_flags |= LinuxIoctl.IFF_UP
        guard ioctl(control, LinuxIoctl.SIOCSIFFLAGS, &request) == 0 else { throw ESPSystemError("SIOCSIFFLAGS \(name)") }
    }
}

extension ifreq {
    mutating func setName(_ name: String) {
        withUnsafeMutableBytes(of: &ifr_ifrn.ifrn_name) { raw in
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            for (index, byte) in name.utf8.prefix(raw.count - 1).enumerated() { raw[index] = byte }
        }
    }

    var name: String {
        var copy = ifr_ifrn.ifrn_name
        return withUnsafeBytes(of: &copy) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
    }
}


/// Sends `bytes` on a UDP socket; returns false (and leaves errno) when the kernel refused.
@discardableResult
func sendDatagram(_ socket: Int32, _ bytes: UnsafeRawBufferPointer, to endpoint: Endpoint) -> Bool {
    var address = SocketAddress(endpoint)
    let length = address.length
    let sent = withUnsafePointer(to: &address.storage) { storage in
        storage.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(socket, bytes.baseAddress, bytes.count, 0, $0, length) }
    }
    return sent == bytes.count
}
