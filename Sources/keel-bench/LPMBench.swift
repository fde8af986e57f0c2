import ArgumentParser
import CDPDK
import Foundation
import KeelDPDK
import KeelTables
import KeelTestData

struct LPMBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lpm",
        abstract: "Keel's IPv4/IPv6 LPM against rte_fib, rte_fib6 and rte_lpm: lookups per second, build time, memory."
    )

    enum MemoryMode: String, ExpressibleByArgument, CaseIterable { case both, normal, huge }

    @Option(help: "The full table (gzip, one CIDR a line).") var table = FullTable.defaultPath()
    @Option(help: "Addresses per stream.") var lookups = 8_000_000
    @Option(help: "Runs per figure; the fastest counts.") var repeats = 3
    @Option(help: "Memory for the tables: normal pages, 2 MiB huge pages, or both (two child processes, as the EAL starts once per process).")
    var memory: MemoryMode = .both
    @Option(help: "IPv4 routes for the rte_lpm comparison (its add is too slow for the full table).") var lpmSubset = 50_000
    @Flag(help: "Print one JSON object instead of tables.") var json = false

    func run() throws {
        var runs: [[String: Any]] = []
        if memory == .both {
            for mode in [MemoryMode.normal, .huge] { runs.append(try child(mode)) }
        } else {
            runs.append(try measure(huge: memory == .huge))
        }
        if json {
            print(jsonString(["command": "lpm", "runs": runs]))
        } else {
            for r in runs { print(render(r)) }
        }
    }

    /// One run per memory mode in a child process of this same binary.
    func child(_ mode: MemoryMode) throws -> [String: Any] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        p.arguments = ["lpm", "--memory", mode.rawValue, "--json", "--table", table, "--lookups", "\(lookups)",
                       "--repeats", "\(repeats)", "--lpm-subset", "\(lpmSubset)"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0,
              let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let runs = obj["runs"] as? [[String: Any]], let r = runs.first else {
            throw BenchFailure("the \(mode.rawValue)-memory run failed (exit \(p.terminationStatus))")
        }
        return r
    }

    // MARK: measuring

    struct Recorder {
        var lookups: [[String: Any]] = []
        var builds: [[String: Any]] = []
        let tscHz: Double

        mutating func lookup(_ family: String, _ stream: String, _ impl: String, ns: UInt64, count: Int, reference: String?, referenceNs: UInt64?) {
            let perLookup = Double(ns) / Double(count)
            var row: [String: Any] = ["family": family, "stream": stream, "implementation": impl,
                                      "mlookups_per_s": Double(count) / Double(ns) * 1e3,
                                      "ns_per_lookup": perLookup, "cycles_per_lookup": perLookup * tscHz / 1e9]
            if let reference, let referenceNs {
                row["reference"] = reference
                row["speedup_vs_reference"] = Double(referenceNs) / Double(ns)
            }
            lookups.append(row)
        }

        mutating func build(_ family: String, _ impl: String, routes: Int, ns: UInt64, bytes: Int, tableBytes: Int?) {
            var row: [String: Any] = ["family": family, "implementation": impl, "routes": routes,
                                      "build_ms": Double(ns) / 1e6, "bytes": bytes]
            if let tableBytes { row["lookup_table_bytes"] = tableBytes }
            builds.append(row)
        }
    }

    func measure(huge: Bool) throws -> [String: Any] {
        if huge && freeHugePages() < 512 {
            throw BenchFailure("--memory huge needs at least 512 free 2 MiB huge pages (have \(freeHugePages())): echo 1536 > /proc/sys/vm/nr_hugepages; mount -t hugetlbfs nodev /dev/hugepages")
        }
        var args = EAL.labArguments(hugePages: huge, memoryMB: huge ? 1024 : 3072)
        args.append("--force-max-simd-bitwidth=512") // lets rte_fib use its AVX-512 lookup where the CPU has it
        try EAL.initialize(args)
        let data = try FullTable.load(path: table)
        var rec = Recorder(tscHz: Double(EAL.tscHz))
        try measureV4(data.v4, huge: huge, &rec)
        try measureLpmSubset(data.v4, huge: huge, &rec)
        try measureV6(data.v6, huge: huge, &rec)
        return ["memory": huge ? "huge" : "normal", "lookups_per_stream": lookups, "repeats": repeats,
                "tsc_hz": EAL.tscHz, "lookups": rec.lookups, "builds": rec.builds]
    }

    func measureV4(_ routes: [(prefix: IPv4Prefix, nextHop: UInt32)], huge: Bool, _ rec: inout Recorder) throws {
        let groups = 1 << 12
        var keel: IPv4LPM!
        var region: MemoryRegion!
        let heap0 = heapInUse()
        let keelNs = try fastest(1) {
            region = try MemoryRegion(size: IPv4LPM.regionSize(tbl8Groups: groups), hugePages: huge)
            keel = try IPv4LPM(region: region.base, size: region.size, tbl8Groups: groups)
            try keel.build(routes)
        }
        rec.build("ipv4", "keel", routes: routes.count, ns: keelNs, bytes: region.size + heapInUse() - heap0, tableBytes: region.size)

        let dpdk0 = EAL.heapAllocatedBytes()
        var fib: DPDKFib4!
        let fibNs = try fastest(1) {
            // max_routes sizes rte_fib's RIB node pool: just enough for the table.
            fib = try DPDKFib4(name: "bench4", maxRoutes: routes.count, tbl8Groups: groups)
            for r in routes { try fib.add(r.prefix.address, r.prefix.length, nextHop: r.nextHop) }
        }
        rec.build("ipv4", "rte_fib", routes: routes.count, ns: fibNs, bytes: EAL.heapAllocatedBytes() - dpdk0, tableBytes: nil)

        let view = keel.view
        let streams: [(String, [UInt32])] = [
            ("uniform", AddressStream.uniformV4(count: lookups, seed: 11)),
            ("skewed", AddressStream.skewedV4(count: lookups, prefixes: routes.map(\.prefix), seed: 12)),
        ]
        var out = [UInt32](repeating: 0, count: lookups)
        var out64 = [UInt64](repeating: 0, count: lookups)
        for (name, addrs) in streams {
            var a = addrs
            guard fib.selectLookup(RTE_FIB_LOOKUP_DIR24_8_SCALAR_MACRO) else { throw BenchFailure("rte_fib scalar lookup unavailable") }
            let fibNs = fastest(repeats) { fib.lookupBulk(&a, &out64, count: lookups) }
            var avxNs: UInt64?
            if fib.selectLookup(RTE_FIB_LOOKUP_DIR24_8_VECTOR_AVX512) {
                avxNs = fastest(repeats) { fib.lookupBulk(&a, &out64, count: lookups) }
            }
            let batchNs = fastest(repeats) { view.lookupBulk(addrs, &out, count: lookups) }
            try check(out, out64, "ipv4 \(name)")
            let singleNs = fastest(repeats) {
                addrs.withUnsafeBufferPointer { ab in
                    out.withUnsafeMutableBufferPointer { ob in
                        for i in 0..<ab.count { ob[i] = view.lookup(ab[i]) }
                    }
                }
            }
            try check(out, out64, "ipv4 \(name) single")
            rec.lookup("ipv4", name, "rte_fib_lookup_bulk (scalar)", ns: fibNs, count: lookups, reference: nil, referenceNs: nil)
            if let avxNs { rec.lookup("ipv4", name, "rte_fib_lookup_bulk (avx512)", ns: avxNs, count: lookups, reference: nil, referenceNs: nil) }
            rec.lookup("ipv4", name, "keel single", ns: singleNs, count: lookups, reference: "rte_fib_lookup_bulk (scalar)", referenceNs: fibNs)
            rec.lookup("ipv4", name, "keel batch", ns: batchNs, count: lookups, reference: "rte_fib_lookup_bulk (scalar)", referenceNs: fibNs)
            if let avxNs {
                rec.lookup("ipv4", name, "keel batch", ns: batchNs, count: lookups, reference: "rte_fib_lookup_bulk (avx512)", referenceNs: avxNs)
            }
        }
    }

    func measureLpmSubset(_ all: [(prefix: IPv4Prefix, nextHop: UInt32)], huge: Bool, _ rec: inout Recorder) throws {
        let step = max(1, all.count / lpmSubset)
        let routes = stride(from: 0, to: all.count, by: step).map { all[$0] }
        let groups = 1 << 12
        let region = try MemoryRegion(size: IPv4LPM.regionSize(tbl8Groups: groups), hugePages: huge)
        let keel = try IPv4LPM(region: region.base, size: region.size, tbl8Groups: groups)
        let keelNs = try fastest(1) { try keel.build(routes) }
        rec.build("ipv4-subset", "keel", routes: routes.count, ns: keelNs, bytes: region.size, tableBytes: region.size)
        var lpm: DPDKLpm4!
        let dpdk0 = EAL.heapAllocatedBytes()
        let lpmNs = try fastest(1) {
            lpm = try DPDKLpm4(name: "bench-lpm", maxRules: routes.count * 2, tbl8Groups: groups)
            for r in routes { try lpm.add(r.prefix.address, r.prefix.length, nextHop: r.nextHop) }
        }
        rec.build("ipv4-subset", "rte_lpm", routes: routes.count, ns: lpmNs, bytes: EAL.heapAllocatedBytes() - dpdk0, tableBytes: nil)
        let view = keel.view
        var out = [UInt32](repeating: 0, count: lookups)
        var raw = [UInt32](repeating: 0, count: lookups)
        for (name, addrs) in [("uniform", AddressStream.uniformV4(count: lookups, seed: 13)),
                              ("skewed", AddressStream.skewedV4(count: lookups, prefixes: routes.map(\.prefix), seed: 14))] {
            let lpmNs = fastest(repeats) { lpm.lookupBulkRaw(addrs, &raw, count: lookups) }
            let batchNs = fastest(repeats) { view.lookupBulk(addrs, &out, count: lookups) }
            for i in stride(from: 0, to: lookups, by: 101) {
                let theirs = raw[i] & 0x0100_0000 != 0 ? raw[i] & 0x00FF_FFFF : LPMEntry.noRoute
                guard theirs == out[i] else { throw BenchFailure("ipv4-subset \(name): Keel and rte_lpm disagree at \(i)") }
            }
            rec.lookup("ipv4-subset", name, "rte_lpm_lookup_bulk", ns: lpmNs, count: lookups, reference: nil, referenceNs: nil)
            rec.lookup("ipv4-subset", name, "keel batch", ns: batchNs, count: lookups, reference: "rte_lpm_lookup_bulk", referenceNs: lpmNs)
        }
    }

    func measureV6(_ routes: [(prefix: IPv6Prefix, nextHop: UInt32)], huge: Bool, _ rec: inout Recorder) throws {
        let groups = 1 << 16
        var keel: IPv6LPM!
        var region: MemoryRegion!
        let heap0 = heapInUse()
        let keelNs = try fastest(1) {
            region = try MemoryRegion(size: IPv6LPM.regionSize(tbl8Groups: groups), hugePages: huge)
            keel = try IPv6LPM(region: region.base, size: region.size, tbl8Groups: groups)
            try keel.build(routes)
        }
        rec.build("ipv6", "keel", routes: routes.count, ns: keelNs, bytes: region.size + heapInUse() - heap0, tableBytes: region.size)

        let dpdk0 = EAL.heapAllocatedBytes()
        var fib: DPDKFib6!
        let fibNs = try fastest(1) {
            fib = try DPDKFib6(name: "bench6", maxRoutes: routes.count, tbl8Groups: DPDKFib6.reservedGroups(routes.map(\.prefix.length)))
            var b = [UInt8](repeating: 0, count: 16)
            for r in routes {
                IPv6Prefix.store(r.prefix.address, to: &b)
                try fib.add(b, r.prefix.length, nextHop: r.nextHop)
            }
        }
        rec.build("ipv6", "rte_fib6", routes: routes.count, ns: fibNs, bytes: EAL.heapAllocatedBytes() - dpdk0, tableBytes: nil)

        let view = keel.view
        var out = [UInt32](repeating: 0, count: lookups)
        var out64 = [UInt64](repeating: 0, count: lookups)
        for (name, addrs) in [("uniform", AddressStream.uniformV6(count: lookups, seed: 15)),
                              ("skewed", AddressStream.skewedV6(count: lookups, prefixes: routes.map(\.prefix), seed: 16))] {
            guard fib.selectLookup(RTE_FIB6_LOOKUP_TRIE_SCALAR) else { throw BenchFailure("rte_fib6 scalar lookup unavailable") }
            let fibNs = fastest(repeats) { fib.lookupBulk(addrs, &out64, count: lookups) }
            var avxNs: UInt64?
            if fib.selectLookup(RTE_FIB6_LOOKUP_TRIE_VECTOR_AVX512) {
                avxNs = fastest(repeats) { fib.lookupBulk(addrs, &out64, count: lookups) }
            }
            let batchNs = fastest(repeats) { view.lookupBulk(addrs, &out, count: lookups) }
            try check(out, out64, "ipv6 \(name)")
            let singleNs = fastest(repeats) {
                addrs.withUnsafeBufferPointer { ab in
                    out.withUnsafeMutableBufferPointer { ob in
                        for i in 0..<ob.count { ob[i] = view.lookup(ab.baseAddress! + i &* 16) }
                    }
                }
            }
            try check(out, out64, "ipv6 \(name) single")
            rec.lookup("ipv6", name, "rte_fib6_lookup_bulk (scalar)", ns: fibNs, count: lookups, reference: nil, referenceNs: nil)
            if let avxNs { rec.lookup("ipv6", name, "rte_fib6_lookup_bulk (avx512)", ns: avxNs, count: lookups, reference: nil, referenceNs: nil) }
            rec.lookup("ipv6", name, "keel single", ns: singleNs, count: lookups, reference: "rte_fib6_lookup_bulk (scalar)", referenceNs: fibNs)
            rec.lookup("ipv6", name, "keel batch", ns: batchNs, count: lookups, reference: "rte_fib6_lookup_bulk (scalar)", referenceNs: fibNs)
            if let avxNs {
                rec.lookup("ipv6", name, "keel batch", ns: batchNs, count: lookups, reference: "rte_fib6_lookup_bulk (avx512)", referenceNs: avxNs)
            }
        }
    }

    /// The benchmark only counts if both sides gave the same answers.
    func check(_ ours: [UInt32], _ theirs: [UInt64], _ what: String) throws {
        for i in stride(from: 0, to: ours.count, by: 7) {
            let t = theirs[i] == DPDKFib4.defaultNextHop ? LPMEntry.noRoute : UInt32(theirs[i])
            guard t == ours[i] else { throw BenchFailure("\(what): Keel and DPDK disagree at lookup \(i)") }
        }
    }

    // MARK: output

    func render(_ run: [String: Any]) -> String {
        let mode = run["memory"] as? String ?? "?"
        var lt = TextTable(header: ["family", "stream", "implementation", "Mlookups/s", "ns/lookup", "cycles/lookup", "vs reference"])
        for r in run["lookups"] as? [[String: Any]] ?? [] {
            let ratio = (r["speedup_vs_reference"] as? Double).map { "\(fmt($0))x \(r["reference"] as? String ?? "")" } ?? "reference"
            lt.add([r["family"] as? String ?? "", r["stream"] as? String ?? "", r["implementation"] as? String ?? "",
                    fmt(r["mlookups_per_s"] as? Double ?? 0, 1), fmt(r["ns_per_lookup"] as? Double ?? 0),
                    fmt(r["cycles_per_lookup"] as? Double ?? 0, 1), ratio])
        }
        var bt = TextTable(header: ["family", "implementation", "routes", "build ms", "MiB", "lookup table MiB"])
        for r in run["builds"] as? [[String: Any]] ?? [] {
            bt.add([r["family"] as? String ?? "", r["implementation"] as? String ?? "", "\(r["routes"] ?? 0)",
                    fmt(r["build_ms"] as? Double ?? 0, 1), fmt(Double(r["bytes"] as? Int ?? 0) / 1048576, 1),
                    (r["lookup_table_bytes"] as? Int).map { fmt(Double($0) / 1048576, 1) } ?? "-"])
        }
        return "LPM lookups, \(mode) pages (fastest of \(run["repeats"] ?? 0) runs of \(run["lookups_per_stream"] ?? 0) lookups)\n"
            + lt.render() + "\n\nBuild time and memory, \(mode) pages\n" + bt.render() + "\n"
    }
}
