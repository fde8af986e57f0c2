import XCTest
import KeelTables
import KeelDPDK
import KeelTestData

/// Keel's LPM against DPDK's own implementations, loaded with the full
/// Internet table from ../shared/data: every answer must be the same.
final class DifferentialTests: XCTestCase {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    nonisolated(unsafe) static var cachedTable: FullTable?

    static func table() throws -> FullTable {
        if let t = cachedTable { return t }
        let t = try FullTable.load(path: FullTable.defaultPath(repositoryRoot: repositoryRoot))
        cachedTable = t
        return t
    }

    override func setUpWithError() throws {
        try EAL.initialize(EAL.labArguments(hugePages: false, memoryMB: 3072))
    }

    static let randomCount = 10_000_000

    /// Random addresses, then first, last and +-1 around every prefix.
    static func probesV4(_ routes: [IPv4Prefix], seed: UInt64, random: Int = randomCount) -> [UInt32] {
        var a = AddressStream.uniformV4(count: random, seed: seed)
        a.reserveCapacity(random + routes.count * 4)
        for p in routes { a += [p.first, p.last, p.first &- 1, p.last &+ 1] }
        return a
    }

    static func probesV6(_ routes: [IPv6Prefix], seed: UInt64, random: Int = randomCount) -> [UInt8] {
        var a = AddressStream.uniformV6(count: random, seed: seed)
        a.reserveCapacity((random + routes.count * 4) * 16)
        var b = [UInt8](repeating: 0, count: 16)
        for p in routes {
            for x in [p.first, p.last, p.first &- 1, p.last &+ 1] {
                IPv6Prefix.store(x, to: &b)
                a += b
            }
        }
        return a
    }

    func compareV4(_ keel: IPv4LPM, _ fib: DPDKFib4, _ routes: [IPv4Prefix], seed: UInt64, _ label: String) {
        let probes = DifferentialTests.probesV4(routes, seed: seed)
        var ours = [UInt32](repeating: 0, count: probes.count)
        var theirs = [UInt64](repeating: 0, count: probes.count)
        var addrs = probes
        keel.view.lookupBulk(probes, &ours, count: probes.count)
        fib.lookupBulk(&addrs, &theirs, count: probes.count)
        var mismatches = 0
        for i in 0..<probes.count {
            let expected = theirs[i] == DPDKFib4.defaultNextHop ? LPMEntry.noRoute : UInt32(theirs[i])
            if ours[i] != expected {
                if mismatches < 5 { print("\(label): \(IPv4Prefix.format(probes[i])): keel \(ours[i]), rte_fib \(expected)") }
                mismatches += 1
            }
        }
        print("\(label): \(probes.count) IPv4 lookups compared with rte_fib, \(mismatches) mismatches")
        XCTAssertEqual(mismatches, 0, label)
        XCTAssertGreaterThan(probes.count, DifferentialTests.randomCount)
    }

    func compareV6(_ keel: IPv6LPM, _ fib: DPDKFib6, _ routes: [IPv6Prefix], seed: UInt64, _ label: String) {
        let probes = DifferentialTests.probesV6(routes, seed: seed)
        let n = probes.count / 16
        var ours = [UInt32](repeating: 0, count: n)
        var theirs = [UInt64](repeating: 0, count: n)
        keel.view.lookupBulk(probes, &ours, count: n)
        fib.lookupBulk(probes, &theirs, count: n)
        var mismatches = 0
        var hits = 0
        for i in 0..<n {
            let expected = theirs[i] == DPDKFib6.defaultNextHop ? LPMEntry.noRoute : UInt32(theirs[i])
            if expected != LPMEntry.noRoute { hits += 1 }
            if ours[i] != expected {
                if mismatches < 5 {
                    let a = probes[(i * 16)..<(i * 16 + 16)].reduce(UInt128(0)) { $0 << 8 | UInt128($1) }
                    print("\(label): \(IPv6Prefix.format(a)): keel \(ours[i]), rte_fib6 \(expected)")
                }
                mismatches += 1
            }
        }
        print("\(label): \(n) IPv6 lookups compared with rte_fib6 (\(hits) routed), \(mismatches) mismatches")
        XCTAssertEqual(mismatches, 0, label)
        XCTAssertGreaterThan(hits, routes.count, "the boundary probes must hit routes")
    }

    /// A random 10% of the routes, the same for both implementations.
    static func victims<T>(_ routes: [T], seed: UInt64) -> Set<Int> {
        var rng = SplitMix64(seed: seed)
        var idx = Array(routes.indices)
        idx.shuffle(using: &rng)
        return Set(idx.prefix(routes.count / 10))
    }

    func testIPv4FullTableAgainstRteFib() throws {
        let routes = try DifferentialTests.table().v4
        XCTAssertEqual(routes.count, 901_899)
        let groups = 1 << 12
        let region = try MemoryRegion(size: IPv4LPM.regionSize(tbl8Groups: groups))
        let keel = try IPv4LPM(region: region.base, size: region.size, tbl8Groups: groups)
        try keel.build(routes)
        let fib = try DPDKFib4(name: "diff4", maxRoutes: 1 << 21, tbl8Groups: groups)
        for r in routes { try fib.add(r.prefix.address, r.prefix.length, nextHop: r.nextHop) }
        compareV4(keel, fib, routes.map(\.prefix), seed: 1, "IPv4 full table")

        let gone = DifferentialTests.victims(routes, seed: 2)
        for i in gone {
            try keel.delete(routes[i].prefix)
            try fib.delete(routes[i].prefix.address, routes[i].prefix.length)
        }
        XCTAssertEqual(keel.routeCount, routes.count - gone.count)
        // Probe around the deleted prefixes as well as the remaining ones.
        compareV4(keel, fib, routes.map(\.prefix), seed: 3, "IPv4 after deleting 10%")
    }

    func testIPv6FullTableAgainstRteFib6() throws {
        let routes = try DifferentialTests.table().v6
        XCTAssertEqual(routes.count, 160_147)
        let groups = 1 << 16
        let region = try MemoryRegion(size: IPv6LPM.regionSize(tbl8Groups: groups))
        let keel = try IPv6LPM(region: region.base, size: region.size, tbl8Groups: groups)
        try keel.build(routes)
        print("Keel IPv6: \(keel.tbl8GroupsInUse) tbl8 groups in use")
        // rte_fib6's trie reserves the worst case, one group per 8 bits past /24, for every route.
        let fib = try DPDKFib6(name: "diff6", maxRoutes: 1 << 18, tbl8Groups: DPDKFib6.reservedGroups(routes.map(\.prefix.length)))
        var b = [UInt8](repeating: 0, count: 16)
        for r in routes {
            IPv6Prefix.store(r.prefix.address, to: &b)
            try fib.add(b, r.prefix.length, nextHop: r.nextHop)
        }
        compareV6(keel, fib, routes.map(\.prefix), seed: 4, "IPv6 full table")

        let gone = DifferentialTests.victims(routes, seed: 5)
        for i in gone {
            try keel.delete(routes[i].prefix)
            IPv6Prefix.store(routes[i].prefix.address, to: &b)
            try fib.delete(b, routes[i].prefix.length)
        }
        XCTAssertEqual(keel.routeCount, routes.count - gone.count)
        compareV6(keel, fib, routes.map(\.prefix), seed: 6, "IPv6 after deleting 10%")
    }

    /// rte_lpm's add is far too slow for a full table; every 18th route of it
    /// (about 50,000) still nests and overlaps.
    func testIPv4SubsetAgainstRteLpm() throws {
        let all = try DifferentialTests.table().v4
        let routes = stride(from: 0, to: all.count, by: 18).map { all[$0] }
        let groups = 1 << 12
        let region = try MemoryRegion(size: IPv4LPM.regionSize(tbl8Groups: groups))
        let keel = try IPv4LPM(region: region.base, size: region.size, tbl8Groups: groups)
        try keel.build(routes)
        let lpm = try DPDKLpm4(name: "diff-lpm", maxRules: 1 << 17, tbl8Groups: groups)
        for r in routes { try lpm.add(r.prefix.address, r.prefix.length, nextHop: r.nextHop) }

        func compare(_ label: String, seed: UInt64) {
            let probes = DifferentialTests.probesV4(routes.map(\.prefix), seed: seed, random: 2_000_000)
            var ours = [UInt32](repeating: 0, count: probes.count)
            var theirs = [UInt32](repeating: 0, count: probes.count)
            keel.view.lookupBulk(probes, &ours, count: probes.count)
            lpm.lookupBulk(probes, &theirs, count: probes.count)
            var mismatches = 0
            for i in 0..<probes.count where ours[i] != theirs[i] || (i % 97 == 0 && keel.view.lookup(probes[i]) != lpm.lookup(probes[i])) {
                if mismatches < 5 { print("\(label): \(IPv4Prefix.format(probes[i])): keel \(ours[i]), rte_lpm \(theirs[i])") }
                mismatches += 1
            }
            print("\(label): \(probes.count) lookups compared with rte_lpm, \(mismatches) mismatches")
            XCTAssertEqual(mismatches, 0, label)
        }
        compare("IPv4 subset of \(routes.count)", seed: 7)
        for i in DifferentialTests.victims(routes, seed: 8) {
            try keel.delete(routes[i].prefix)
            try lpm.delete(routes[i].prefix.address, routes[i].prefix.length)
        }
        compare("IPv4 subset after deleting 10%", seed: 9)
    }
}
