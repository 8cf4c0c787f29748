// swift-tools-version:6.1
// Vigil — IPsec failover controller. Pure targets at the bottom, I/O at the top; one target per C library.
import PackageDescription

let package = Package(
    name: "Vigil",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "vigild", targets: ["vigild"]),
        .executable(name: "vigil", targets: ["vigil"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    ],
    targets: [
        // C libraries: one system-library target each; shims only for what Swift cannot import.
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "libcrypto"),
        .systemLibrary(name: "CNetlink", path: "Sources/CNetlink", pkgConfig: "libnl-route-3.0 libnl-xfrm-3.0"),

        // Pure values and state machines: no I/O, clock and randomness injected.
        .target(name: "VigilAddressing"),
        .target(name: "VigilAlgorithms"),
        .target(name: "VigilWire", dependencies: ["VigilAddressing"]),
        .target(name: "VigilConfig", dependencies: ["VigilAddressing", "VigilAlgorithms", "VigilCrypto", "VigilIKE", .product(name: "Yams", package: "Yams")]),
        .target(name: "VigilLiveness"),
        // `vigil import cisco`: an IOS running-config in, Vigil YAML and secrets out (text only, no file I/O).
        .target(name: "VigilCiscoImport", dependencies: ["VigilAddressing", "VigilAlgorithms"]),
        .target(name: "VigilFailover", dependencies: ["VigilAddressing"]),
        .target(name: "VigilKernel", dependencies: ["VigilAddressing", "VigilAlgorithms"]),

        // The only importer of OpenSSL.
        .target(name: "VigilCrypto", dependencies: ["COpenSSL", "VigilAlgorithms"]),
        // IKE engines (pure state machines over the codec and crypto).
        // The vocabulary both IKE engines and the daemon share.
        .target(name: "VigilIKE", dependencies: ["VigilAddressing", "VigilAlgorithms", "VigilCrypto"]),
        .target(name: "VigilIKEv2", dependencies: ["VigilIKE", "VigilWire", "VigilCrypto", "VigilAlgorithms", "VigilAddressing"]),
        .target(name: "VigilIKEv1", dependencies: ["VigilIKE", "VigilWire", "VigilCrypto", "VigilAlgorithms", "VigilAddressing"]),
        // The only importer of libnl.
        .target(name: "VigilNetlink", dependencies: ["VigilKernel", "CNetlink"]),
        // Userspace ESP data plane over TUN (RFC 4303 / RFC 3948).
        .target(name: "VigilESP", dependencies: ["VigilCrypto", "VigilAlgorithms", "VigilAddressing", "VigilKernel", "VigilNetlink"]),

        // The control API's protocol and client: what `vigil` and the lab speak to vigild, without linking it.
        .target(name: "VigilControl"),

        // The event loop: sockets, timers, running what the machines return, control API.
        .target(name: "VigilDaemon", dependencies: [
            "VigilControl",
            "VigilAddressing", "VigilAlgorithms", "VigilConfig", "VigilLiveness", "VigilFailover", "VigilKernel", "VigilNetlink",
            "VigilWire", "VigilCrypto", "VigilIKE", "VigilIKEv2", "VigilIKEv1", "VigilESP",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "vigild", dependencies: [
            "VigilDaemon", "VigilConfig",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "vigil", dependencies: [
            "VigilConfig", "VigilControl", "VigilCiscoImport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Test lab: network namespaces, veth links, strongSwan instances. Used by tests, demo and benchmarks.
        .target(name: "VigilLab", dependencies: ["VigilControl", "VigilAddressing", "VigilKernel"]),

        // `make demo`: the failover lab with a timeline.
        .executableTarget(name: "vigil-demo", dependencies: ["VigilLab", "VigilDaemon"]),

        // Benchmarks (print numbers; never timed unit tests).
        .executableTarget(name: "bench-dpd", dependencies: ["VigilLiveness", "VigilFailover"], path: "Benchmarks/bench-dpd"),
        // Kernel reconciliation test fixture: installs state, then waits for SIGKILL.
        .executableTarget(name: "vigil-kernel-fixture", dependencies: ["VigilKernel", "VigilNetlink", "VigilAddressing"]),
        .executableTarget(name: "bench-kernel", dependencies: ["VigilKernel", "VigilNetlink", "VigilLab"], path: "Benchmarks/bench-kernel"),
        .executableTarget(name: "bench-esp", dependencies: ["VigilESP", "VigilCrypto", "VigilLab"], path: "Benchmarks/bench-esp"),
        .executableTarget(name: "bench-failover", dependencies: ["VigilLab"], path: "Benchmarks/bench-failover"),

        .testTarget(name: "VigilAddressingTests", dependencies: ["VigilAddressing"]),
        .testTarget(name: "VigilAlgorithmsTests", dependencies: ["VigilAlgorithms"]),
        .testTarget(name: "VigilWireTests", dependencies: ["VigilWire"]),
        .testTarget(name: "VigilConfigTests", dependencies: ["VigilConfig", "VigilIKE", "VigilCrypto"]),
        .testTarget(name: "VigilIKETests", dependencies: ["VigilIKE", "VigilAddressing", "VigilAlgorithms", "VigilCrypto"]),
        .testTarget(name: "VigilLivenessTests", dependencies: ["VigilLiveness"]),
        .testTarget(name: "VigilCiscoImportTests", dependencies: ["VigilCiscoImport", "VigilConfig", "VigilLab", "VigilDaemon"]),
        .testTarget(name: "VigilFailoverTests", dependencies: ["VigilFailover", "VigilLiveness"]),
        .testTarget(name: "VigilCryptoTests", dependencies: ["VigilCrypto"]),
        .testTarget(name: "VigilIKEv2Tests", dependencies: ["VigilIKE", "VigilIKEv2", "VigilWire", "VigilCrypto", "VigilLab"]),
        .testTarget(name: "VigilIKEv1Tests", dependencies: ["VigilIKE", "VigilIKEv1", "VigilWire", "VigilCrypto", "VigilLab"]),
        .testTarget(name: "VigilKernelTests", dependencies: ["VigilKernel", "VigilNetlink", "VigilLab"]),
        .testTarget(name: "VigilESPTests", dependencies: ["VigilESP", "VigilCrypto", "VigilKernel", "VigilLab"]),
        .testTarget(name: "VigilDaemonTests", dependencies: [
            "VigilDaemon", "VigilConfig", "VigilLab", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .testTarget(name: "InteropTests", dependencies: ["VigilDaemon", "VigilConfig", "VigilLab"]),
        .executableTarget(name: "bench-flood", dependencies: ["VigilLab", "VigilDaemon", "VigilWire", "VigilAlgorithms", "VigilLiveness"], path: "Benchmarks/bench-flood"),

        // libFuzzer targets (`make fuzz`, Fuzz/run.sh): one file each, no top-level code; built with
        // `--sanitize=fuzzer --sanitize=address -Xswiftc -DVIGIL_LIBFUZZER`. Without the define each is a replayer
        // of crash files.
        .target(name: "VigilFuzzSupport", path: "Fuzz/Support"),
        .executableTarget(name: "fuzz-ikev2-message", dependencies: ["VigilWire", "VigilIKEv2", "VigilCrypto", "VigilAlgorithms", "VigilAddressing", "VigilLiveness", "VigilFuzzSupport"], path: "Fuzz/Targets/fuzz-ikev2-message"),
        .executableTarget(name: "fuzz-isakmp-message", dependencies: ["VigilWire", "VigilIKEv1", "VigilCrypto", "VigilAlgorithms", "VigilAddressing", "VigilLiveness", "VigilFuzzSupport"], path: "Fuzz/Targets/fuzz-isakmp-message"),
        .executableTarget(name: "fuzz-ikev2-sk", dependencies: ["VigilWire", "VigilIKEv2", "VigilCrypto", "VigilAlgorithms", "VigilAddressing", "VigilLiveness", "VigilFuzzSupport"], path: "Fuzz/Targets/fuzz-ikev2-sk"),
        .executableTarget(name: "fuzz-ikev1-encrypted", dependencies: ["VigilWire", "VigilIKEv1", "VigilCrypto", "VigilAlgorithms", "VigilAddressing", "VigilLiveness", "VigilFuzzSupport"], path: "Fuzz/Targets/fuzz-ikev1-encrypted"),
        .executableTarget(name: "fuzz-esp", dependencies: ["VigilESP", "VigilKernel", "VigilCrypto", "VigilAlgorithms", "VigilAddressing", "VigilFuzzSupport"], path: "Fuzz/Targets/fuzz-esp"),
        .executableTarget(name: "fuzz-config", dependencies: ["VigilConfig", "VigilFuzzSupport"], path: "Fuzz/Targets/fuzz-config"),
    ]
)

// Kernel-ESP tests: unit tests of the kernel data plane's NAT-T socket, and the lab cases run in a QEMU guest on a
// stock kernel with ESP (deploy/guest/run-in-guest.sh).
package.targets.append(.testTarget(name: "KernelESPTests", dependencies: ["VigilDaemon", "VigilLab"]))
// The guest side of the kernel-ESP tests: the lab cases, run inside the guest by KernelESPTests.
package.targets.append(.executableTarget(name: "vigil-kernel-esp-lab", dependencies: ["VigilLab"], path: "deploy/guest/lab"))
