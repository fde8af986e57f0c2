import XCTest
import KeelTables
import KeelTestData

final class IPv4LPMTests: XCTestCase {
    var region: MemoryRegion!
    var lpm: IPv4LPM!

    override func setUpWithError() throws {
        let size = IPv4LPM.regionSize(tbl8Groups: 8)
        region = try MemoryRegion(size: size)
        lpm = try IPv4LPM(region: region.base, size: size, tbl8Groups: 8)
    }

    func p(_ s: String) -> IPv4Prefix { try! IPv4Prefix(s) }
    func a(_ s: String) -> UInt32 { IPv4Prefix.parseAddress(s)! }
    func look(_ s: String) -> UInt32 {
        let viaView = lpm.view.lookup(a(s))
        XCTAssertEqual(viaView, lpm.lookup(a(s)), "view and writer disagree on \(s)")
        return viaView
    }

    func testEmptyTableRoutesNothing() {
        XCTAssertEqual(look("0.0.0.0"), LPMEntry.noRoute)
        XCTAssertEqual(look("255.255.255.255"), LPMEntry.noRoute)
        XCTAssertEqual(lpm.routeCount, 0)
    }

    func testDefaultRouteCoversEverything() throws {
        try lpm.insert(p("0.0.0.0/0"), nextHop: 7)
        XCTAssertEqual(look("0.0.0.0"), 7)
        XCTAssertEqual(look("203.0.113.9"), 7)
        XCTAssertEqual(look("255.255.255.255"), 7)
        try lpm.delete(p("0.0.0.0/0"))
        XCTAssertEqual(look("203.0.113.9"), LPMEntry.noRoute)
    }

    func testHostRouteInsideDefault() throws {
        try lpm.insert(p("0.0.0.0/0"), nextHop: 1)
        try lpm.insert(p("192.0.2.77/32"), nextHop: 2)
        XCTAssertEqual(look("192.0.2.77"), 2)
        XCTAssertEqual(look("192.0.2.76"), 1)
        XCTAssertEqual(look("192.0.2.78"), 1)
        XCTAssertEqual(lpm.tbl8GroupsInUse, 1)
        try lpm.delete(p("192.0.2.77/32"))
        XCTAssertEqual(look("192.0.2.77"), 1)
        XCTAssertEqual(lpm.tbl8GroupsInUse, 0, "the group folds back once uniform")
    }

    func testOverlappingPrefixesLongestWinsInAnyInsertOrder() throws {
        let routes: [(String, UInt32)] = [("10.0.0.0/8", 1), ("10.1.0.0/16", 2), ("10.1.2.0/24", 3),
                                          ("10.1.2.128/25", 4), ("10.1.2.192/26", 5)]
        for order in [routes, routes.reversed(), [routes[2], routes[0], routes[4], routes[1], routes[3]]] {
            try setUpWithError()
            for (r, nh) in order { try lpm.insert(p(r), nextHop: nh) }
            XCTAssertEqual(look("10.200.0.1"), 1)
            XCTAssertEqual(look("10.1.200.1"), 2)
            XCTAssertEqual(look("10.1.2.1"), 3)
            XCTAssertEqual(look("10.1.2.129"), 4)
            XCTAssertEqual(look("10.1.2.200"), 5)
            XCTAssertEqual(look("10.1.2.255"), 5)
            XCTAssertEqual(look("11.0.0.0"), LPMEntry.noRoute)
        }
    }

    func testDeleteCoveringPrefixKeepsMoreSpecifics() throws {
        try lpm.insert(p("10.0.0.0/8"), nextHop: 1)
        try lpm.insert(p("10.1.0.0/16"), nextHop: 2)
        try lpm.insert(p("10.1.2.0/25"), nextHop: 3)
        try lpm.delete(p("10.0.0.0/8"))
        XCTAssertEqual(look("10.2.0.0"), LPMEntry.noRoute)
        XCTAssertEqual(look("10.1.9.9"), 2)
        XCTAssertEqual(look("10.1.2.5"), 3)
        XCTAssertEqual(look("10.1.2.200"), 2)
        try lpm.delete(p("10.1.0.0/16"))
        XCTAssertEqual(look("10.1.2.200"), LPMEntry.noRoute)
        XCTAssertEqual(look("10.1.2.5"), 3)
    }

    func testDeleteMoreSpecificFallsBackToCovering() throws {
        try lpm.insert(p("10.0.0.0/8"), nextHop: 1)
        try lpm.insert(p("10.1.2.0/24"), nextHop: 3)
        try lpm.delete(p("10.1.2.0/24"))
        XCTAssertEqual(look("10.1.2.3"), 1)
    }

    func testReinsertReplacesNextHop() throws {
        try lpm.insert(p("10.1.2.0/24"), nextHop: 3)
        try lpm.insert(p("10.1.2.0/24"), nextHop: 4)
        XCTAssertEqual(look("10.1.2.3"), 4)
        XCTAssertEqual(lpm.routeCount, 1)
    }

    func testLargestNextHopAndOutOfRange() throws {
        try lpm.insert(p("10.0.0.0/8"), nextHop: LPMEntry.maxNextHop)
        XCTAssertEqual(look("10.0.0.1"), LPMEntry.maxNextHop)
        XCTAssertThrowsError(try lpm.insert(p("11.0.0.0/8"), nextHop: LPMEntry.maxNextHop + 1)) {
            XCTAssertEqual($0 as? TableError, .nextHopOutOfRange(LPMEntry.maxNextHop + 1))
        }
    }

    func testCapacityExceededLeavesTableUnchanged() throws {
        // 8 slots, 7 usable.
        for i in 0..<7 { try lpm.insert(p("10.0.\(i).1/32"), nextHop: UInt32(i)) }
        XCTAssertEqual(lpm.tbl8GroupsInUse, 7)
        let before = Array(UnsafeRawBufferPointer(start: region.base, count: IPv4LPM.regionSize(tbl8Groups: 8)))
        XCTAssertThrowsError(try lpm.insert(p("10.0.99.0/25"), nextHop: 9)) { error in
            guard case .capacityExceeded(let needed, let free, let capacity)? = error as? TableError else {
                return XCTFail("wrong error \(error)")
            }
            XCTAssertEqual([needed, free, capacity], [1, 0, 7])
            XCTAssertTrue("\(error)".contains("capacity exceeded"))
        }
        let after = Array(UnsafeRawBufferPointer(start: region.base, count: IPv4LPM.regionSize(tbl8Groups: 8)))
        XCTAssertTrue(before == after, "a refused insert must not change a byte")
        XCTAssertEqual(lpm.routeCount, 7)
        // A /24 needs no group and still fits.
        try lpm.insert(p("10.0.99.0/24"), nextHop: 9)
        XCTAssertEqual(look("10.0.99.7"), 9)
    }

    func testErrors() throws {
        XCTAssertThrowsError(try IPv4Prefix("10.0.0.1/24")) { XCTAssertEqual($0 as? TableError, .hostBitsSet("10.0.0.1/24")) }
        XCTAssertThrowsError(try IPv4Prefix("10.0.0.0/33")) { XCTAssertEqual($0 as? TableError, .malformedPrefix("10.0.0.0/33")) }
        XCTAssertThrowsError(try IPv4Prefix("10.0.0/8"))
        XCTAssertThrowsError(try lpm.delete(p("10.0.0.0/8"))) { XCTAssertEqual($0 as? TableError, .routeNotFound("10.0.0.0/8")) }
        XCTAssertThrowsError(try IPv4LPM(region: region.base, size: 100, tbl8Groups: 8))
    }

    func testViewValidatesRegion() throws {
        XCTAssertNoThrow(try IPv4LPMView(region: region.base, size: region.size))
        XCTAssertThrowsError(try IPv6LPMView(region: region.base, size: region.size)) {
            XCTAssertTrue("\($0)".contains("address family 4, expected 6"), "\($0)")
        }
        XCTAssertThrowsError(try IPv4LPMView(region: region.base, size: 4096 * 2)) {
            XCTAssertTrue("\($0)".contains("does not fit"), "\($0)")
        }
        region.base.storeBytes(of: 0, as: UInt64.self)
        XCTAssertThrowsError(try IPv4LPMView(region: region.base, size: region.size)) {
            XCTAssertTrue("\($0)".contains("bad magic"), "\($0)")
        }
    }

    /// Random inserts and deletes checked against the reference on random and
    /// boundary addresses; deleting everything must give every group back.
    func testRandomAgainstReference() throws {
        let groups = 4096
        let size = IPv4LPM.regionSize(tbl8Groups: groups)
        let r = try MemoryRegion(size: size)
        let lpm = try IPv4LPM(region: r.base, size: size, tbl8Groups: groups)
        var ref = ReferenceLPM(bits: 32)
        var rng = SplitMix64(seed: 42)
        var live: [IPv4Prefix] = []
        // Clustered under a few /8s so routes nest and share groups.
        for step in 0..<6000 {
            if !live.isEmpty && rng.next() % 3 == 0 {
                let i = Int(rng.next() % UInt64(live.count))
                live.swapAt(i, live.count - 1)
                let victim = live.removeLast()
                try lpm.delete(victim)
                ref.delete(UInt128(victim.address), Int(victim.length))
            } else {
                let len = UInt8(8 + rng.next() % 25) // shorter ones are covered by hand-written cases; each fills 2^(24-len) entries
                let raw = UInt32(10 + rng.next() % 3) << 24 | UInt32(truncatingIfNeeded: rng.next() & 0x00FF_FFFF)
                let mask: UInt32 = len == 0 ? 0 : ~0 << (32 - UInt32(len))
                let pfx = try IPv4Prefix(address: raw & mask, length: len)
                let nh = UInt32(step)
                if lpm.nextHop(of: pfx) == nil { live.append(pfx) }
                try lpm.insert(pfx, nextHop: nh)
                ref.insert(UInt128(pfx.address), Int(pfx.length), nh)
            }
            if step % 500 == 499 {
                var probes: [UInt32] = (0..<2000).map { _ in UInt32(10 + rng.next() % 3) << 24 | UInt32(truncatingIfNeeded: rng.next() & 0xFFFFFF) }
                for q in live.prefix(500) { probes += [q.first, q.last, q.first &- 1, q.last &+ 1] }
                var out = [UInt32](repeating: 0, count: probes.count)
                lpm.view.lookupBulk(probes, &out, count: probes.count)
                for (i, q) in probes.enumerated() where out[i] != ref.lookup(UInt128(q)) {
                    XCTFail("step \(step): \(IPv4Prefix.format(q)) -> \(out[i]), reference \(ref.lookup(UInt128(q)))")
                    return
                }
            }
        }
        XCTAssertGreaterThan(lpm.tbl8GroupsInUse, 0)
        for pfx in live { try lpm.delete(pfx) }
        XCTAssertEqual(lpm.routeCount, 0)
        XCTAssertEqual(lpm.tbl8GroupsInUse, 0, "every tbl8 group is freed when its routes are gone")
    }
}

final class IPv6LPMTests: XCTestCase {
    var region: MemoryRegion!
    var lpm: IPv6LPM!

    override func setUpWithError() throws {
        let size = IPv6LPM.regionSize(tbl8Groups: 64)
        region = try MemoryRegion(size: size)
        lpm = try IPv6LPM(region: region.base, size: size, tbl8Groups: 64)
    }

    func p(_ s: String) -> IPv6Prefix { try! IPv6Prefix(s) }
    func look(_ s: String) -> UInt32 {
        let a = IPv6Prefix.parseAddress(s)!
        var bytes = [UInt8](repeating: 0, count: 16)
        IPv6Prefix.store(a, to: &bytes)
        let viaView = lpm.view.lookup(bytes)
        XCTAssertEqual(viaView, lpm.lookup(a), "view and writer disagree on \(s)")
        return viaView
    }

    func testDefaultAndHostRoutes() throws {
        XCTAssertEqual(look("2001:db8::1"), LPMEntry.noRoute)
        try lpm.insert(p("::/0"), nextHop: 1)
        try lpm.insert(p("2001:db8::1/128"), nextHop: 2)
        XCTAssertEqual(look("2001:db8::1"), 2)
        XCTAssertEqual(look("2001:db8::2"), 1)
        XCTAssertEqual(look("ffff::"), 1)
        XCTAssertEqual(lpm.tbl8GroupsInUse, 13, "a /128 needs a group at each of the 13 levels below the root")
        try lpm.delete(p("2001:db8::1/128"))
        XCTAssertEqual(look("2001:db8::1"), 1)
        XCTAssertEqual(lpm.tbl8GroupsInUse, 0)
    }

    func testOverlapsAndCoveringDelete() throws {
        try lpm.insert(p("2001:db8::/32"), nextHop: 1)
        try lpm.insert(p("2001:db8:1::/48"), nextHop: 2)
        try lpm.insert(p("2001:db8:1:2::/64"), nextHop: 3)
        try lpm.insert(p("2001:db8:1:2::/63"), nextHop: 4)
        XCTAssertEqual(look("2001:db8:ffff::1"), 1)
        XCTAssertEqual(look("2001:db8:1:5::1"), 2)
        XCTAssertEqual(look("2001:db8:1:2::1"), 3)
        XCTAssertEqual(look("2001:db8:1:3::1"), 4)
        try lpm.delete(p("2001:db8::/32"))
        XCTAssertEqual(look("2001:db8:ffff::1"), LPMEntry.noRoute)
        XCTAssertEqual(look("2001:db8:1:3::1"), 4)
        try lpm.delete(p("2001:db8:1:2::/63"))
        XCTAssertEqual(look("2001:db8:1:3::1"), 2)
        XCTAssertEqual(look("2001:db8:1:2::1"), 3)
        XCTAssertThrowsError(try lpm.delete(p("2001:db8:1:2::/63"))) {
            XCTAssertEqual($0 as? TableError, .routeNotFound("2001:db8:1:2::/63"))
        }
        XCTAssertThrowsError(try IPv6Prefix("2001:db8::1/64")) { XCTAssertEqual($0 as? TableError, .hostBitsSet("2001:db8::1/64")) }
    }

    func testCapacityExceededLeavesTableUnchanged() throws {
        // 13 groups per /128 under a root entry of its own: 4 of them use 52 of 56 usable groups.
        for i in 1...4 { try lpm.insert(p("200\(i)::1/128"), nextHop: UInt32(i)) }
        XCTAssertEqual(lpm.tbl8GroupsInUse, 52)
        let before = Array(UnsafeRawBufferPointer(start: region.base, count: IPv6LPM.regionSize(tbl8Groups: 64)))
        XCTAssertThrowsError(try lpm.insert(p("2009::1/128"), nextHop: 9)) {
            XCTAssertEqual($0 as? TableError, .capacityExceeded(needed: 13, free: 4, capacity: 56))
        }
        let after = Array(UnsafeRawBufferPointer(start: region.base, count: IPv6LPM.regionSize(tbl8Groups: 64)))
        XCTAssertTrue(before == after)
        // Sharing the first levels with an existing route needs fewer groups.
        try lpm.insert(p("2001::2/128"), nextHop: 9)
        XCTAssertEqual(look("2001::2"), 9)
        XCTAssertEqual(lpm.tbl8GroupsInUse, 52)
    }

    func testRandomAgainstReference() throws {
        let groups = 1 << 14
        let size = IPv6LPM.regionSize(tbl8Groups: groups)
        let r = try MemoryRegion(size: size)
        let lpm = try IPv6LPM(region: r.base, size: size, tbl8Groups: groups)
        var ref = ReferenceLPM(bits: 128)
        var rng = SplitMix64(seed: 6)
        var live: [IPv6Prefix] = []
        func randomAddress() -> UInt128 {
            // 2001:db8:XXXX:: with random low bits, so routes nest at every level.
            UInt128(0x2001_0db8) << 96 | UInt128(rng.next() & 0x3) << 94 | UInt128(rng.next()) << 30 | UInt128(rng.next() & 0x3FFF_FFFF)
        }
        for step in 0..<4000 {
            if !live.isEmpty && rng.next() % 3 == 0 {
                let i = Int(rng.next() % UInt64(live.count))
                live.swapAt(i, live.count - 1)
                let victim = live.removeLast()
                try lpm.delete(victim)
                ref.delete(victim.address, Int(victim.length))
            } else {
                let len = UInt8(20 + rng.next() % 109)
                let mask: UInt128 = ~UInt128(0) << (128 - UInt128(len))
                let pfx = try IPv6Prefix(address: randomAddress() & mask, length: len)
                if lpm.nextHop(of: pfx) == nil { live.append(pfx) }
                try lpm.insert(pfx, nextHop: UInt32(step))
                ref.insert(pfx.address, Int(pfx.length), UInt32(step))
            }
            if step % 500 == 499 {
                var probes: [UInt128] = (0..<1000).map { _ in randomAddress() }
                for q in live.prefix(300) { probes += [q.first, q.last, q.first &- 1, q.last &+ 1] }
                var bytes = [UInt8](repeating: 0, count: probes.count * 16)
                bytes.withUnsafeMutableBytes { b in for (i, q) in probes.enumerated() { IPv6Prefix.store(q, to: b.baseAddress! + i * 16) } }
                var out = [UInt32](repeating: 0, count: probes.count)
                lpm.view.lookupBulk(bytes, &out, count: probes.count)
                for (i, q) in probes.enumerated() where out[i] != ref.lookup(q) {
                    XCTFail("step \(step): \(IPv6Prefix.format(q)) -> \(out[i]), reference \(ref.lookup(q))")
                    return
                }
            }
        }
        for pfx in live { try lpm.delete(pfx) }
        XCTAssertEqual(lpm.routeCount, 0)
        XCTAssertEqual(lpm.tbl8GroupsInUse, 0)
    }
}

/// Tables in 2 MiB huge pages (what the tables file uses when hugetlbfs is
/// mounted). CI reserves huge pages in Tests/run.sh, so this runs there.
final class HugePageRegionTests: XCTestCase {
    func testTableInHugePages() throws {
        let size = IPv4LPM.regionSize(tbl8Groups: 64)
        let region: MemoryRegion
        do {
            region = try MemoryRegion(size: size, hugePages: true)
        } catch {
            return XCTFail("\(error) — reserve them: echo 512 > /proc/sys/vm/nr_hugepages")
        }
        XCTAssertTrue(region.hugePages)
        XCTAssertEqual(region.size % (2 << 20), 0)
        let lpm = try IPv4LPM(region: region.base, size: region.size, tbl8Groups: 64)
        try lpm.insert(IPv4Prefix("198.51.100.0/24"), nextHop: 5)
        try lpm.insert(IPv4Prefix("198.51.100.128/25"), nextHop: 6)
        XCTAssertEqual(lpm.view.lookup(IPv4Prefix.parseAddress("198.51.100.1")!), 5)
        XCTAssertEqual(lpm.view.lookup(IPv4Prefix.parseAddress("198.51.100.200")!), 6)
    }
}

final class PrefixParseTests: XCTestCase {
    /// The byte parser of IPv4 prefixes accepts exactly what inet_pton + a length accept.
    func testIPv4PrefixParserMatchesInetPton() {
        func reference(_ s: String) -> IPv4Prefix? {
            let parts = s.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), parts[1].count <= 3,
                  let len = UInt8(parts[1]), len <= 32, let a = IPv4Prefix.parseAddress(parts[0]) else { return nil }
            return try? IPv4Prefix(address: a, length: len)
        }
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789./ a:x-")
        var cases = ["0.0.0.0/0", "10.0.0.0/8", "255.255.255.255/32", "1.2.3.4/32", "01.2.3.0/24", "1.2.3.0/024", "1.2.3.0/", "/8",
                     "1.2.3/24", "1.2.3.4.5/32", "256.0.0.0/8", "1..2.3/8", "1.2.3.0/33", "1.2.3.0/8/", " 1.2.3.0/24", "1.2.3.0/24 ",
                     "1.2.3.0/2a", "0.0.0.0/00", "10.0.0.0/8x", "1.2.3.00/32"]
        for _ in 0..<20000 {
            if Bool.random(using: &rng) {
                let len = Int.random(in: 0...32, using: &rng)
                let a = UInt32.random(in: 0...UInt32.max, using: &rng) & (len == 0 ? 0 : ~UInt32(0) << (32 - len))
                var s = IPv4Prefix.format(a) + "/\(len)"
                if Bool.random(using: &rng) { // one random edit
                    var chars = Array(s)
                    let i = Int.random(in: 0..<chars.count, using: &rng)
                    switch Int.random(in: 0...2, using: &rng) {
                    case 0: chars[i] = alphabet.randomElement(using: &rng)!
                    case 1: chars.remove(at: i)
                    default: chars.insert(alphabet.randomElement(using: &rng)!, at: i)
                    }
                    s = String(chars)
                }
                cases.append(s)
            } else {
                cases.append(String((0..<Int.random(in: 0...18, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }))
            }
        }
        var accepted = 0
        for s in cases {
            let mine = try? IPv4Prefix(s)
            XCTAssertEqual(mine, reference(s), "\"\(s)\"")
            if mine != nil { accepted += 1 }
        }
        XCTAssertGreaterThan(accepted, 5000)
    }
}
