/// Deterministic pieces of the simulation: a seeded generator and a priority queue of virtual times.

import VigilLiveness

typealias SeededGenerator = SplitMix64

extension SplitMix64 {
    mutating func chance(_ probability: Double) -> Bool { Double.random(in: 0 ..< 1, using: &self) < probability }

    mutating func milliseconds(_ range: ClosedRange<Int>) -> Duration { .milliseconds(Int.random(in: range, using: &self)) }
}

/// A binary min-heap of events keyed by virtual time; ties run in insertion order so a run is a pure function of its seed.
struct EventQueue<Element> {
    private var heap: [(time: Duration, order: UInt64, element: Element)] = []
    private var inserted: UInt64 = 0

    var isEmpty: Bool { heap.isEmpty }

    mutating func push(_ element: Element, at time: Duration) {
        heap.append((time, inserted, element))
        inserted += 1
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard precedes(child, parent) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (time: Duration, element: Element)? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var first = parent
            if left < heap.count, precedes(left, first) { first = left }
            if right < heap.count, precedes(right, first) { first = right }
            if first == parent { break }
            heap.swapAt(parent, first)
            parent = first
        }
        return (top.time, top.element)
    }

    private func precedes(_ a: Int, _ b: Int) -> Bool {
        (heap[a].time, heap[a].order) < (heap[b].time, heap[b].order)
    }
}
