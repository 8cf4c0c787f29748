#if canImport(Glibc)
import Glibc
#endif

/// What every fuzz target shares: the input as bytes, a replayable generator, and the replay entry point that
/// stands in for libFuzzer's `main` in ordinary builds (see Fuzz/run.sh).

/// The fuzzer's input as an array (empty for a null pointer).
public func fuzzBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// Octets from hexadecimal text (constants in the targets: keys, captured packets).
public func octets(hex text: String) -> [UInt8] {
    let digits = Array(text.utf8)
    precondition(digits.count % 2 == 0, "odd number of hex digits")
    return stride(from: 0, to: digits.count, by: 2).map { index in
        guard let pair = UInt8(String(decoding: digits[index...index + 1], as: UTF8.self), radix: 16) else {
            preconditionFailure("not hexadecimal: \(text)")
        }
        return pair
    }
}

/// Reads the input's leading control octets; missing ones read as 0 so every input is usable.
public struct FuzzCursor {
    public private(set) var rest: ArraySlice<UInt8>
    public init(_ bytes: [UInt8]) { rest = bytes[...] }

    public mutating func byte() -> UInt8 {
        guard let first = rest.first else { return 0 }
        rest = rest.dropFirst()
        return first
    }

    public mutating func uint32() -> UInt32 {
        (0..<4).reduce(UInt32(0)) { value, _ in value << 8 | UInt32(byte()) }
    }

    public var remaining: [UInt8] { Array(rest) }
}

/// Ordinary (non-fuzzer) builds of a target get this as `main`: each argument is a file run once through the
/// target's entry point (`report` prints what it did), so a crash file replays under the debugger without
/// libFuzzer. `--seeds DIR` writes the target's generated seed inputs to DIR instead.
public func replayFiles(
    _ arguments: [String], seeds: () -> [(name: String, bytes: [UInt8])] = { [] }, _ body: ([UInt8]) -> String
) {
    if arguments.first == "--seeds", arguments.count == 2 {
        for seed in seeds() {
            let path = arguments[1] + "/" + seed.name
            guard let file = fopen(path, "wb") else {
                print("cannot write \(path)")
                continue
            }
            _ = seed.bytes.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, file) }
            fclose(file)
            print("\(path): \(seed.bytes.count) octets")
        }
        return
    }
    for path in arguments {
        guard let file = fopen(path, "rb") else {
            print("cannot open \(path)")
            continue
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count <= 0 { break }
            bytes += chunk[0..<count]
        }
        fclose(file)
        let report = body(bytes)
        print("\(path): \(bytes.count) octets, no crash\(report.isEmpty ? "" : "\n" + report)")
    }
}
