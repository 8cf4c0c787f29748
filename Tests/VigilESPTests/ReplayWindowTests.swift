import Testing
@testable import VigilESP

@Suite struct ReplayWindowTests {
    @Test func inOrderPacketsAreFreshAndRepeatsAreDuplicates() {
        var window = ReplayWindow(size: 64)
        for number in UInt32(1)...200 {
            #expect(window.check(number) == .fresh)
            #expect(window.accept(number) == .fresh)
            #expect(window.check(number) == .duplicate)
        }
        #expect(window.highest == 200)
    }

    @Test func reorderedPacketsInsideTheWindowAreAccepted() {
        var window = ReplayWindow(size: 64)
        window.accept(100)
        for number in UInt32(37)..<100 { #expect(window.accept(number) == .fresh, "seq \(number)") }
        for number in UInt32(37)...100 { #expect(window.check(number) == .duplicate) }
        // 100 - 36 = 64: just below the window.
        #expect(window.check(36) == .tooOld)
    }

    @Test func sizeRoundsUpToWholeWordsAndBoundsAge() {
        var window = ReplayWindow(size: 100)
        #expect(window.size == 128)
        window.accept(1000)
        #expect(window.check(1000 - 127) == .fresh)
        #expect(window.check(1000 - 128) == .tooOld)
    }

    @Test func sequenceNumberZeroIsNeverAccepted() {
        var window = ReplayWindow(size: 64)
        #expect(window.check(0) == .tooOld)
        #expect(window.accept(0) == .tooOld)
        #expect(window.highest == 0)
    }

    @Test func largeJumpsClearStaleBitsWithoutForgettingNewOnes() {
        var window = ReplayWindow(size: 128)
        for number in UInt32(1)...128 { window.accept(number) }
        window.accept(10_000)
        // Bits that once marked 1...128 share ring slots with numbers now inside the window: they must read fresh.
        for number in UInt32(10_000 - 127)..<10_000 { #expect(window.check(number) == .fresh, "seq \(number)") }
        #expect(window.check(10_000) == .duplicate)
        window.accept(10_001)
        #expect(window.check(10_000) == .duplicate)
    }

    @Test func randomOrderMatchesASetModel() {
        var generator = SplitMix64(seed: 7)
        var window = ReplayWindow(size: 256)
        var seen = Set<UInt32>()
        var highest: UInt32 = 0
        for _ in 0..<20_000 {
            let number = UInt32.random(in: 1...5_000, using: &generator)
            let expected: ReplayWindow.Verdict =
                if number > highest { .fresh } else if highest - number >= 256 { .tooOld } else if seen.contains(number) {
                    .duplicate
                } else { .fresh }
            #expect(window.accept(number) == expected)
            if expected == .fresh {
                seen.insert(number)
                highest = max(highest, number)
            }
        }
    }
}

/// A seeded generator so a failing run replays exactly.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
