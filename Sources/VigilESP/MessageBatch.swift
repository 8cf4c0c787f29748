#if canImport(Glibc)
import Glibc
#endif
import VigilAddressing

/// `struct mmsghdr` (sys/socket.h): hidden from Swift with the rest of _GNU_SOURCE. A `msghdr` followed by the byte
/// count the kernel fills in; Swift's stride (64 on LP64) matches C's array layout.
struct MultipleMessageHeader {
    var header = msghdr()
    var length: UInt32 = 0
}

/// recvmmsg(2) and sendmmsg(2), looked up once at run time (hidden behind _GNU_SOURCE in the Glibc module).
enum MultipleMessages {
    private typealias Receive = @convention(c) (Int32, UnsafeMutableRawPointer, UInt32, Int32, UnsafeMutableRawPointer?) -> Int32
    private typealias Send = @convention(c) (Int32, UnsafeMutableRawPointer, UInt32, Int32) -> Int32

    private static let receiveFunction = unsafeBitCast(symbol("recvmmsg"), to: Receive.self)
    private static let sendFunction = unsafeBitCast(symbol("sendmmsg"), to: Send.self)

    static func receive(_ socket: Int32, _ headers: UnsafeMutablePointer<MultipleMessageHeader>, _ count: Int, flags: Int32) -> Int {
        Int(receiveFunction(socket, UnsafeMutableRawPointer(headers), UInt32(count), flags, nil))
    }

    static func send(_ socket: Int32, _ headers: UnsafeMutablePointer<MultipleMessageHeader>, _ count: Int) -> Int {
        Int(sendFunction(socket, UnsafeMutableRawPointer(headers), UInt32(count), 0))
    }

    private static func symbol(_ name: String) -> UnsafeMutableRawPointer {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { preconditionFailure("libc has no \(name)") }
        return symbol
    }
}

/// UDP segmentation offload (linux/udp.h): one `sendmsg` carries many equal-sized datagrams (UDP_SEGMENT), and
/// the receiver gets a train of them in one `recvmsg` (UDP_GRO). Both cut the per-datagram cost of the kernel's UDP
/// path, which dominates a userspace data plane.
enum UDPOffload {
    static let level: Int32 = 17  // SOL_UDP
    static let segment: Int32 = 103  // UDP_SEGMENT
    static let gro: Int32 = 104  // UDP_GRO
    /// UDP_MAX_SEGMENTS in the kernel.
    static let maximumSegments = 64
    /// A GSO send carries at most one UDP datagram's worth of payload.
    static let maximumBytes = 65_000

    /// Asks the kernel to coalesce received datagrams (or stops asking); false if this kernel cannot.
    @discardableResult
    static func setReceiveOffload(_ socket: Int32, _ enabled: Bool) -> Bool {
        var value: Int32 = enabled ? 1 : 0
        return setsockopt(socket, level, gro, &value, socklen_t(MemoryLayout<Int32>.size)) == 0
    }
}

/// A fixed set of packet buffers with their iovecs, socket addresses, control buffers and message headers, laid out
/// once so that receiving or sending a batch of datagrams is one system call and no allocation. Owned by one thread.
final class MessageBatch {
    let capacity: Int
    let slotSize: Int
    private let storage: UnsafeMutableRawBufferPointer
    private let vectors: UnsafeMutablePointer<iovec>
    private let addresses: UnsafeMutablePointer<sockaddr_storage>
    private let headers: UnsafeMutablePointer<MultipleMessageHeader>
    /// One control buffer per header: UDP_SEGMENT out, UDP_GRO in.
    private static let controlSize = 64
    private let controls: UnsafeMutableRawBufferPointer
    /// Segment sizes of the prepared sends (for UDP_SEGMENT) and the lengths of the slots.
    private let lengths: UnsafeMutablePointer<Int>
    private let peers: UnsafeMutablePointer<Endpoint?>

    init(capacity: Int, slotSize: Int) {
        self.capacity = capacity
        self.slotSize = slotSize
        storage = .allocate(byteCount: capacity * slotSize, alignment: 16)
        vectors = .allocate(capacity: capacity)
        addresses = .allocate(capacity: capacity)
        headers = .allocate(capacity: capacity)
        controls = .allocate(byteCount: capacity * Self.controlSize, alignment: 16)
        controls.initializeMemory(as: UInt8.self, repeating: 0)
        lengths = .allocate(capacity: capacity)
        lengths.initialize(repeating: 0, count: capacity)
        peers = .allocate(capacity: capacity)
        peers.initialize(repeating: nil, count: capacity)
        for index in 0..<capacity {
            vectors[index] = iovec(iov_base: storage.baseAddress! + index * slotSize, iov_len: slotSize)
            addresses[index] = sockaddr_storage()
            headers[index] = MultipleMessageHeader()
        }
    }

    deinit {
        storage.deallocate()
        vectors.deallocate()
        addresses.deallocate()
        headers.deallocate()
        controls.deallocate()
        lengths.deallocate()
        peers.deinitialize(count: capacity)
        peers.deallocate()
    }

    /// The whole buffer of slot `index`.
    func slot(_ index: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: storage[index * slotSize..<(index + 1) * slotSize])
    }

    // MARK: - Receiving

    /// Receives up to `capacity` datagrams (or GRO trains of them) without blocking; returns how many messages.
    func receive(on socket: Int32) -> Int {
        for index in 0..<capacity {
            vectors[index].iov_base = storage.baseAddress! + index * slotSize
            vectors[index].iov_len = slotSize
            headers[index].header.msg_iov = vectors + index
            headers[index].header.msg_iovlen = 1
            headers[index].header.msg_name = UnsafeMutableRawPointer(addresses + index)
            headers[index].header.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            headers[index].header.msg_control = controls.baseAddress! + index * Self.controlSize
            headers[index].header.msg_controllen = Self.controlSize
            headers[index].length = 0
        }
        return MultipleMessages.receive(socket, headers, capacity, flags: Int32(MSG_DONTWAIT))
    }

    /// Calls `body` for every datagram of received message `index`: one, or a GRO train cut at its segment size.
    func forEachDatagram(_ index: Int, _ body: (UnsafeMutableRawBufferPointer, Range<Int>, Endpoint) -> Void) {
        var address = SocketAddress()
        address.storage = addresses[index]
        guard let source = address.endpoint else { return }
        let count = Int(headers[index].length)
        let segment = receivedSegmentSize(index) ?? count
        let buffer = slot(index)
        var start = 0
        while start < count {
            let end = min(start + max(segment, 1), count)
            body(buffer, start..<end, source)
            start = end
        }
    }

    /// The UDP_GRO control message's segment size, if the kernel coalesced.
    private func receivedSegmentSize(_ index: Int) -> Int? {
        let header = headers[index].header
        let control = UnsafeRawBufferPointer(start: header.msg_control, count: Int(header.msg_controllen))
        var offset = 0
        let headerSize = MemoryLayout<cmsghdr>.size
        while offset + headerSize <= control.count {
            let message = control.loadUnaligned(fromByteOffset: offset, as: cmsghdr.self)
            guard message.cmsg_len >= headerSize else { return nil }
            if message.cmsg_level == UDPOffload.level && message.cmsg_type == UDPOffload.gro {
                return Int(control.loadUnaligned(fromByteOffset: offset + headerSize, as: Int32.self))
            }
            offset += (Int(message.cmsg_len) + 7) & ~7
        }
        return nil
    }

    // MARK: - Sending

    /// Records that slot `index` holds a datagram at `range` of its buffer for `peer`.
    func prepareToSend(_ index: Int, _ range: Range<Int>, to peer: Endpoint) {
        vectors[index].iov_base = storage.baseAddress! + index * slotSize + range.lowerBound
        vectors[index].iov_len = range.count
        lengths[index] = range.count
        peers[index] = peer
    }

    /// Sends the first `count` prepared slots in as few system calls as the kernel allows. With `segmentation`,
    /// runs of equal-sized datagrams to one peer become one UDP_SEGMENT message each. Returns the datagrams refused
    /// and whether segmentation should stay on (false once the kernel refused it).
    func send(_ count: Int, on socket: Int32, segmentation: Bool) -> (refused: Int, segmentation: Bool) {
        var messages = 0
        var start = 0
        while start < count {
            var end = start + 1
            if segmentation {
                var bytes = lengths[start]
                while end < count, end - start < UDPOffload.maximumSegments, peers[end] == peers[start],
                    lengths[end] <= lengths[start], bytes + lengths[end] <= UDPOffload.maximumBytes
                {
                    bytes += lengths[end]
                    end += 1
                    if lengths[end - 1] < lengths[start] { break }  // only the last segment may be shorter
                }
            }
            prepareMessage(messages, slots: start..<end)
            messages += 1
            start = end
        }
        var done = 0
        var refused = 0
        var keepSegmentation = segmentation
        while done < messages {
            let result = MultipleMessages.send(socket, headers + done, messages - done)
            if result > 0 {
                done += result
            } else if result < 0 && errno == EINTR {
                continue
            } else {
                let failed = headers[done].header
                // EIO / EINVAL on a segmented message: this kernel or route cannot segment; stop asking.
                if failed.msg_controllen > 0 && (errno == EIO || errno == EINVAL) { keepSegmentation = false }
                refused += Int(failed.msg_iovlen)
                done += 1
            }
        }
        return (refused, keepSegmentation)
    }

    /// Builds header `message` for slots `slots` (consecutive iovecs), with UDP_SEGMENT if more than one.
    private func prepareMessage(_ message: Int, slots: Range<Int>) {
        let address = SocketAddress(peers[slots.lowerBound]!)
        addresses[message] = address.storage
        headers[message].header.msg_name = UnsafeMutableRawPointer(addresses + message)
        headers[message].header.msg_namelen = address.length
        headers[message].header.msg_iov = vectors + slots.lowerBound
        headers[message].header.msg_iovlen = slots.count
        headers[message].length = 0
        if slots.count > 1 {
            let control = controls.baseAddress! + message * Self.controlSize
            let headerSize = MemoryLayout<cmsghdr>.size
            var cmsg = cmsghdr()
            cmsg.cmsg_len = headerSize + MemoryLayout<UInt16>.size
            cmsg.cmsg_level = UDPOffload.level
            cmsg.cmsg_type = UDPOffload.segment
            control.storeBytes(of: cmsg, as: cmsghdr.self)
            control.storeBytes(of: UInt16(lengths[slots.lowerBound]), toByteOffset: headerSize, as: UInt16.self)
            headers[message].header.msg_control = control
            headers[message].header.msg_controllen = (headerSize + MemoryLayout<UInt16>.size + 7) & ~7
        } else {
            headers[message].header.msg_control = nil
            headers[message].header.msg_controllen = 0
        }
    }
}
