import Testing

/// Seeded scenarios, in chunks so Swift Testing can spread them over the cores. A failure prints the seed;
/// replay one with `VIGIL_SIM_SEED=<seed> swift test --filter replaySeed`.
@Suite struct RandomizedScenarioTests {
    /// 10,000 in the normal run; `VIGIL_SIM_SCENARIOS=100000` for a longer soak.
    static let scenarios = ProcessInfoLite.environment("VIGIL_SIM_SCENARIOS").flatMap { Int($0) } ?? 10_000
    static let chunks = 8

    @Test(arguments: 0 ..< chunks)
    func invariantsHoldInSeededScenarios(chunk: Int) {
        let perChunk = Self.scenarios / Self.chunks
        var deaths = 0, established = 0
        for index in chunk * perChunk ..< (chunk + 1) * perChunk {
            let simulation = Simulation.run(.random(seed: UInt64(index)))
            #expect(simulation.violations.isEmpty, "\(simulation.violations.first ?? "")")
            if !simulation.violations.isEmpty { return }
            deaths += simulation.deaths.count
            established += simulation.established.count
        }
        // The scenarios must exercise what they check.
        #expect(deaths > perChunk / 10)
        #expect(established > perChunk)
    }

    @Test func replaySeed() throws {
        let seed = UInt64(ProcessInfoLite.environment("VIGIL_SIM_SEED") ?? "4242") ?? 4242
        let first = Simulation.run(.random(seed: seed))
        let second = Simulation.run(.random(seed: seed))
        #expect(first.violations.isEmpty, "\(first.violations)\n\(first.narrative())")
        // A seed replays exactly.
        #expect(first.initiates.map(\.at) == second.initiates.map(\.at))
        #expect(first.notices == second.notices)
        #expect(first.probes == second.probes)
    }
}

/// getenv without Foundation.
enum ProcessInfoLite {
    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
