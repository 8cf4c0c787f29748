/// Packets that matched a protecting policy while its SA was missing (the peer is dead, failover or rekey is in
/// progress), kept in a bounded queue per policy template instead of being dropped, and released when an SA for
/// that template is installed. Never sent in clear: they are only ever encapsulated again.
struct HoldQueue {
    /// Packets kept per template; 0 drops instead (the kernel's behaviour).
    let limit: Int
    private var waiting: [TemplateKey: [[UInt8]]] = [:]
    private var released: [[UInt8]] = []

    init(limit: Int) { self.limit = limit }

    /// Keeps a copy of `packet`; false when the template's queue is full (the packet is dropped).
    mutating func hold(_ packet: UnsafeRawBufferPointer, for key: TemplateKey) -> Bool {
        guard waiting[key, default: []].count < limit else { return false }
        waiting[key, default: []].append(Array(packet))
        return true
    }

    /// Moves the template's packets to the released list; true if there were any.
    mutating func release(_ key: TemplateKey) -> Bool {
        guard let packets = waiting.removeValue(forKey: key) else { return false }
        released += packets
        return true
    }

    /// Forgets packets held for templates no policy names any more.
    mutating func keepOnly(_ keys: Set<TemplateKey>) {
        waiting = waiting.filter { keys.contains($0.key) }
    }

    mutating func takeReleased() -> [[UInt8]] {
        defer { released = [] }
        return released
    }

    var count: Int { waiting.values.reduce(0) { $0 + $1.count } }
}
