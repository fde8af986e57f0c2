// swift-tools-version:6.1
import Foundation
import PackageDescription

// Debian's DPDK 22.11. SwiftPM cannot parse libdpdk.pc (its Description spans
// lines), so the flags are spelled out here. rte_config.h is included by the
// shim header itself; -march=corei7 because DPDK's inline headers use SSE4.2.
let dpdkCFlags = ["-I/usr/include/dpdk", "-I/usr/include/x86_64-linux-gnu/dpdk", "-march=corei7"]
let dpdkSwiftFlags = dpdkCFlags.flatMap { ["-Xcc", $0] }
let dpdkLibs = ["rte_eal", "rte_ethdev", "rte_mbuf", "rte_mempool", "rte_ring",
                "rte_lpm", "rte_fib", "rte_rib", "rte_hash", "rte_net", "rte_kvargs",
                "rte_telemetry", "numa"]

// Tests/fuzz.sh sets KEEL_LIBFUZZER to build the fuzz targets with libFuzzer:
// their main then hands over to libFuzzer's driver instead of replaying a corpus.
let libFuzzer = ProcessInfo.processInfo.environment["KEEL_LIBFUZZER"] != nil

let package = Package(
    name: "Keel",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "keel-bench", targets: ["keel-bench"]),
        .executable(name: "keel-dataplane", targets: ["keel-dataplane"]),
        .executable(name: "keel-control", targets: ["keel-control"]),
        .executable(name: "keelctl", targets: ["keelctl"]),
        .library(name: "KeelTables", targets: ["KeelTables"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // Header-only C helpers Swift has no spelling for (prefetch hints, mallinfo2).
        .target(name: "CKeelIntrinsics"),
        // Lookup tables: LPM (IPv4, IPv6), Maglev. Pure Swift, no DPDK.
        .target(
            name: "KeelTables",
            dependencies: ["CKeelIntrinsics", .product(name: "Atomics", package: "swift-atomics")]
        ),
        // Packets: header parsing and checks, checksums, the flow hash. No DPDK.
        .target(name: "KeelPacket", dependencies: ["KeelTables"]),
        // The per-packet routing decision and rewrite, over a snapshot. No DPDK.
        .target(
            name: "KeelForward",
            dependencies: ["KeelPacket", "KeelTables", "CKeelIntrinsics", .product(name: "Atomics", package: "swift-atomics")]
        ),
        // The stats file: per-lcore counters, heartbeat, neighbor table region. No DPDK (keel-control reads it).
        .target(name: "KeelStats", dependencies: ["KeelPacket", .product(name: "Atomics", package: "swift-atomics")]),
        // Strict YAML settings files: keel-dataplane's and keel-control's own, and the appliance's keel.yaml (both).
        .target(name: "KeelConfigFile", dependencies: ["KeelTables", .product(name: "Yams", package: "Yams")]),
        // The configuration model (Codable), shared by the control plane, keelctl and tests.
        .target(name: "KeelAPI"),
        // Configuration -> snapshot content, validated; incremental.
        .target(
            name: "KeelCompiler",
            dependencies: ["KeelAPI", "KeelTables"]
        ),
        // The C shim over DPDK: only what Swift cannot import.
        .target(
            name: "CDPDK",
            cSettings: [.unsafeFlags(dpdkCFlags)],
            linkerSettings: dpdkLibs.map { .linkedLibrary($0) }
        ),
        // Swift wrappers over DPDK (EAL, rte_fib, rte_fib6, rte_lpm); every call into C goes through here.
        .target(
            name: "KeelDPDK",
            dependencies: ["CDPDK"],
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags)]
        ),
        // Test and benchmark inputs: the full routing table, address streams, a seeded RNG.
        .target(
            name: "KeelTestData",
            dependencies: ["KeelTables", "KeelPacket", "KeelAPI"]
        ),
        // The C reference of `keel-bench forward` (an l3fwd-shaped loop over rte_fib).
        .target(
            name: "CKeelBenchRef",
            dependencies: ["CDPDK"],
            cSettings: [.unsafeFlags(dpdkCFlags + ["-O3"])]
        ),
        .executableTarget(
            name: "keel-bench",
            dependencies: [
                "KeelTables", "KeelDPDK", "KeelTestData", "CKeelIntrinsics", "KeelAPI", "KeelCompiler",
                "KeelDataPlane", "KeelStats", "KeelPacket", "KeelForward", "CKeelBenchRef",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags)]
        ),
        // The data plane: configuration, ports, rings, lcore loops, slow path, stats.
        .target(
            name: "KeelDataPlane",
            dependencies: ["KeelDPDK", "KeelForward", "KeelPacket", "KeelTables", "KeelStats", "CDPDK", "CKeelIntrinsics", "KeelConfigFile",
                           .product(name: "Yams", package: "Yams"), .product(name: "Atomics", package: "swift-atomics")],
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags), .swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "keel-dataplane",
            dependencies: ["KeelDataPlane", "KeelStats"],
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags), .swiftLanguageMode(.v5)]
        ),
        // The control plane's library: store (SQLite through GRDB), the one writer,
        // the admin API (Hummingbird), tokens, status and stats readers.
        .target(
            name: "KeelControl",
            dependencies: ["KeelAPI", "KeelCompiler", "KeelTables", "KeelStats", "KeelConfigFile", "KeelPacket", "KeelForward",
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "Yams", package: "Yams")]
        ),
        .executableTarget(
            name: "keel-control",
            dependencies: ["KeelAPI", "KeelCompiler", "KeelTables", "KeelControl",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "Yams", package: "Yams")]
        ),
        // The command-line tool over the admin API (no DPDK, no database).
        .executableTarget(
            name: "keelctl",
            dependencies: ["KeelAPI",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Yams", package: "Yams")]
        ),
        // Test helper: counts allocator calls (interposes malloc); linked only into keel-alloccheck.
        .target(name: "CMallocCounter"),
        .executableTarget(
            name: "keel-alloccheck",
            dependencies: ["CMallocCounter", "KeelAPI", "KeelCompiler", "KeelForward", "KeelPacket", "KeelTables", "KeelTestData",
                           "KeelDataPlane", "KeelStats"],
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags), .swiftLanguageMode(.v5)] // a test script in Swift: plain globals
        ),
        // Fuzz targets (Tests/fuzz.sh builds them with libFuzzer and the address
        // sanitizer; built normally, CKeelFuzzMain's main replays a corpus).
        .target(name: "CKeelFuzzMain", cSettings: libFuzzer ? [.define("KEEL_LIBFUZZER")] : []),
        .executableTarget(
            name: "keel-fuzz-packet",
            dependencies: ["CKeelFuzzMain", "KeelAPI", "KeelCompiler", "KeelDataPlane", "KeelStats", "KeelTables", "KeelTestData"],
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags), .swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "keel-fuzz-tables",
            dependencies: ["CKeelFuzzMain", "KeelAPI", "KeelCompiler", "KeelTables"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // Test helper: epoch-swap writer and readers as processes or threads.
        .executableTarget(
            name: "keel-swaptest",
            dependencies: ["KeelTables", .product(name: "Atomics", package: "swift-atomics")],
            swiftSettings: [.swiftLanguageMode(.v5)] // a test script in Swift: plain globals and threads
        ),
        .testTarget(
            name: "KeelSnapshotTests",
            dependencies: ["KeelTables", "KeelAPI", "KeelCompiler", "KeelTestData", "KeelPacket", "KeelDataPlane", "keel-swaptest", "keel-dataplane"],
            // (Not the fuzz targets: their entry points would clash in the test bundle;
            // `swift build --build-tests` builds them anyway, and FuzzCorpusTests runs them.)
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags)]
        ),
        .testTarget(
            name: "KeelPacketTests",
            dependencies: ["KeelPacket", "KeelForward", "KeelTables", "KeelAPI", "KeelCompiler", "KeelTestData", "keel-alloccheck"]
        ),
        .testTarget(
            name: "KeelLabTests",
            dependencies: ["KeelTables", "keel-dataplane", "keel-control"]
        ),
        .testTarget(
            name: "KeelTablesTests",
            dependencies: ["KeelTables", "KeelTestData"]
        ),
        .testTarget(
            name: "KeelControlTests",
            dependencies: ["KeelControl", "KeelAPI", "KeelCompiler", "KeelTables", "KeelStats", "keel-control", "keelctl",
                           .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "Yams", package: "Yams"),
                           .product(name: "HummingbirdTesting", package: "hummingbird")]
        ),
        // Boots the appliance image under qemu (Appliance/image/boot-test.sh) and checks it serves.
        .testTarget(
            name: "KeelApplianceTests",
            dependencies: ["keelctl"]
        ),
        .testTarget(
            name: "KeelBenchTests",
            dependencies: ["keel-bench"],
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags)] // InterleavedTests imports keel-bench, which imports CDPDK
        ),
        .testTarget(
            name: "KeelDPDKTests",
            dependencies: ["KeelTables", "KeelDPDK", "KeelTestData"],
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags)]
        ),
    ]
)
