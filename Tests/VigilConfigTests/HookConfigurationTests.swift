import Foundation
import Testing
@testable import VigilConfig

/// `global.hooks` and an entry's `hooks` (issue 15): `[{path, events, timeout}]`, the executable checked at load,
/// events from a fixed set (default all), the timeout bounded; each refusal names its field.
@Suite struct HookConfigurationTests {
    /// An executable in a fresh directory, with `mode`, owned by us (the tests run as root or as vigild's user).
    static func executable(mode: mode_t = 0o755, name: String = "updown") throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-hook-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(name).path
        try "#!/bin/sh\nexit 0\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(chmod(path, mode) == 0)
        return path
    }

    static func global(_ lines: String) -> String {
        changing("  secrets: secrets.yaml", to: "  secrets: secrets.yaml\n" + lines)
    }

    static func load(_ yaml: String) throws -> VigilConfiguration {
        try ConfigurationLoader.load(yaml: yaml, fileName: "test.yaml", secrets: validSecrets)
    }

    @Test func noHooksByDefault() throws {
        let configuration = try Self.load(validDocument)
        #expect(configuration.global.hooks.isEmpty)
        #expect(configuration.cryptoMaps[0].entries[0].hooks.isEmpty)
        #expect(!configuration.normalizedSummary.contains("hook"))
    }

    @Test func aHookWithDefaultsRunsOnEveryEventWithTenSeconds() throws {
        let path = try Self.executable()
        let configuration = try Self.load(Self.global("  hooks: [{path: \(path)}]"))
        #expect(configuration.global.hooks == [Hook(path: path, events: Hook.Event.allCases, timeout: .seconds(10))])
        #expect(configuration.normalizedSummary.contains("  hook: \(path) on established, down, dead-peer, failover, timeout 10s"))
    }

    @Test func eventsAndTimeoutAreRead() throws {
        let path = try Self.executable()
        let configuration = try Self.load(Self.global("  hooks:\n    - path: \(path)\n      events: [failover, dead-peer]\n      timeout: 30s"))
        // Kept in the fixed order whatever the written order.
        #expect(configuration.global.hooks == [Hook(path: path, events: [.deadPeer, .failover], timeout: .seconds(30))])
    }

    @Test func anEntryHasHooksOfItsOwn() throws {
        let global = try Self.executable(name: "global-updown")
        let own = try Self.executable(name: "entry-updown")
        var yaml = Self.global("  hooks: [{path: \(global), events: established}]")
        yaml = changing("        esp-proposals: [aes256gcm16]", to: "        esp-proposals: [aes256gcm16]\n        hooks: [{path: \(own), events: [down], timeout: 1s}]", in: yaml)
        let configuration = try Self.load(yaml)
        #expect(configuration.global.hooks.map(\.path) == [global])
        #expect(configuration.cryptoMaps[0].entries[0].hooks == [Hook(path: own, events: [.down], timeout: .seconds(1))])
        #expect(configuration.normalizedSummary.contains("      hook: \(own) on down, timeout 1s"))
    }

    @Test func anUnknownKeyGetsASuggestion() throws {
        let path = try Self.executable()
        let error = try singleError(Self.global("  hooks: [{path: \(path), event: [down]}]"))
        #expect(error.path == "global.hooks[0].event")
        #expect(error.message.contains("did you mean 'events'?"), "\(error)")
    }

    @Test(arguments: [
        ("events: [up]", "global.hooks[0].events[0]", "'up' is not allowed; allowed: established, down, dead-peer, failover"),
        ("events: []", "global.hooks[0].events", "the list is empty"),
        ("events: [down, down]", "global.hooks[0].events[1]", "listed twice"),
        ("timeout: 500ms", "global.hooks[0].timeout", "out of range; allowed: 1s to 5m"),
        ("timeout: 6m", "global.hooks[0].timeout", "out of range; allowed: 1s to 5m"),
        ("timeout: 10", "global.hooks[0].timeout", "has no unit"),
    ])
    func badEventsAndTimeoutsAreRefused(key: String, path: String, message: String) throws {
        let hook = try Self.executable()
        let error = try singleError(Self.global("  hooks: [{path: \(hook), \(key)}]"))
        #expect(error.path == path)
        #expect(error.message.contains(message), "\(error)")
    }

    @Test func theExecutableIsChecked() throws {
        let missing = "/nonexistent-vigil-hook/updown"
        let relative = "updown"
        let notExecutable = try Self.executable(mode: 0o644)
        let groupWritable = try Self.executable(mode: 0o775)
        let worldWritable = try Self.executable(mode: 0o757)
        let directory = (try Self.executable() as NSString).deletingLastPathComponent
        let cases: [(String, String)] = [
            (missing, "No such file or directory"),
            (relative, "is not an absolute path"),
            (notExecutable, "is not executable (mode 0644)"),
            (groupWritable, "lets group or others change it; allowed: writable by its owner only; fix: chmod go-w"),
            (worldWritable, "lets group or others change it"),
            (directory, "is not a regular file"),
        ]
        for (path, message) in cases {
            let error = try singleError(Self.global("  hooks: [{path: \"\(path)\"}]"))
            #expect(error.path == "global.hooks[0].path")
            #expect(error.message.contains(message), "\(error)")
        }
    }

    @Test func anExecutableOfAnotherUserIsRefused() throws {
        let path = try Self.executable()
        try #require(geteuid() == 0, "needs root to give the file away")
        #expect(chown(path, 65534, 65534) == 0)
        let error = try singleError(Self.global("  hooks: [{path: \(path)}]"))
        #expect(error.message.contains("is owned by uid 65534, not by root or by the user vigild runs as"), "\(error)")
    }

    @Test func aMissingPathIsNamed() throws {
        let error = try singleError(Self.global("  hooks: [{events: [down]}]"))
        #expect(error.path == "global.hooks[0].path")
        #expect(error.message.contains("required key 'path' is missing"))
    }

    @Test func theNumberOfHooksIsBounded() throws {
        let path = try Self.executable()
        let many = Array(repeating: "{path: \(path)}", count: ConfigurationLimits.hooksPerLevel.upperBound + 1).joined(separator: ", ")
        let error = try singleError(Self.global("  hooks: [\(many)]"))
        #expect(error.path == "global.hooks")
        #expect(error.message.contains("allowed: at most 16"))
    }
}
