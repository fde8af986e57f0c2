import XCTest
import KeelTables
import KeelTestData

/// The region's bytes depend on the set of routes only, so an incrementally
/// maintained table equals one built from scratch byte for byte, and every
/// byte a change touches is recorded as dirty.
final class CanonicalLayoutTests: XCTestCase {
    func bytes(_ r: MemoryRegion, _ n: Int) -> [UInt8] { Array(UnsafeRawBufferPointer(start: r.base, count: n)) }

    func testIPv4HistoryIndependent() throws {
        let slots = 256
        let size = IPv4LPM.regionSize(tbl8Groups: slots)
        let ra = try MemoryRegion(size: size), rb = try MemoryRegion(size: size)
        let a = try IPv4LPM(region: ra.base, size: size, tbl8Groups: slots)
        let b = try IPv4LPM(region: rb.base, size: size, tbl8Groups: slots)
        var rng = SplitMix64(seed: 99)
        var live: [IPv4Prefix: UInt32] = [:]
        // Many long routes in few /16s, so groups collide in the pool and shift.
        for step in 0..<5000 {
            let len = UInt8(16 + rng.next() % 17)
            let raw = UInt32(10) << 24 | UInt32(rng.next() % 4) << 16 | UInt32(truncatingIfNeeded: rng.next() & 0xFFFF)
            let pfx = try IPv4Prefix(address: raw & (len == 0 ? 0 : ~0 << (32 - UInt32(len))), length: len)
            if live[pfx] != nil && rng.next() % 2 == 0 {
                try a.delete(pfx)
                live[pfx] = nil
            } else {
                do {
                    try a.insert(pfx, nextHop: UInt32(step))
                    live[pfx] = UInt32(step)
                } catch TableError.capacityExceeded { continue }
            }
        }
        XCTAssertGreaterThan(a.tbl8GroupsInUse, slots / 3)
        try b.build(live.map { ($0.key, $0.value) })
        XCTAssertEqual(a.tbl8GroupsInUse, b.tbl8GroupsInUse)
        XCTAssertTrue(bytes(ra, size) == bytes(rb, size), "incremental and fresh tables differ")
    }

    func testIPv6HistoryIndependent() throws {
        let slots = 512
        let size = IPv6LPM.regionSize(tbl8Groups: slots)
        let ra = try MemoryRegion(size: size), rb = try MemoryRegion(size: size)
        let a = try IPv6LPM(region: ra.base, size: size, tbl8Groups: slots)
        let b = try IPv6LPM(region: rb.base, size: size, tbl8Groups: slots)
        var rng = SplitMix64(seed: 7)
        var live: [IPv6Prefix: UInt32] = [:]
        for step in 0..<3000 {
            let len = UInt8(28 + rng.next() % 40)
            let raw = UInt128(0x2001_0db8) << 96 | UInt128(rng.next() & 0x3) << 92 | UInt128(rng.next()) << 28
            let pfx = try IPv6Prefix(address: raw & (~UInt128(0) << (128 - UInt128(len))), length: len)
            if live[pfx] != nil && rng.next() % 2 == 0 {
                try a.delete(pfx)
                live[pfx] = nil
            } else {
                do {
                    try a.insert(pfx, nextHop: UInt32(step))
                    live[pfx] = UInt32(step)
                } catch TableError.capacityExceeded { continue }
            }
        }
        XCTAssertGreaterThan(a.tbl8GroupsInUse, slots / 3)
        try b.build(live.map { ($0.key, $0.value) })
        XCTAssertTrue(bytes(ra, size) == bytes(rb, size), "incremental and fresh tables differ")
        // And deleting everything gives back an empty, all-zero pool.
        for p in live.keys { try a.delete(p) }
        XCTAssertEqual(a.tbl8GroupsInUse, 0)
        let empty = try MemoryRegion(size: size)
        _ = try IPv6LPM(region: empty.base, size: size, tbl8Groups: slots)
        XCTAssertTrue(bytes(ra, size) == bytes(empty, size))
    }

    func testDirtyChunksCoverEveryChange() throws {
        let slots = 128
        let size = IPv4LPM.regionSize(tbl8Groups: slots)
        let r = try MemoryRegion(size: size)
        let lpm = try IPv4LPM(region: r.base, size: size, tbl8Groups: slots)
        var rng = SplitMix64(seed: 3)
        var live: [IPv4Prefix] = []
        for _ in 0..<300 {
            let len = UInt8(8 + rng.next() % 25)
            let raw = UInt32(truncatingIfNeeded: rng.next())
            let p = try IPv4Prefix(address: raw & ~0 << (32 - UInt32(len)), length: len)
            if (try? lpm.insert(p, nextHop: 1)) != nil { live.append(p) }
        }
        for round in 0..<40 {
            let before = bytes(r, size)
            let dirty = DirtyChunks(bytes: size)
            lpm.track(dirty, base: 0)
            if round % 2 == 0, let p = live.popLast() {
                try lpm.delete(p)
            } else {
                let p = try IPv4Prefix(address: UInt32(truncatingIfNeeded: rng.next()) & 0xFFFF_FFF0, length: 28)
                if (try? lpm.insert(p, nextHop: UInt32(round))) != nil { live.append(p) }
            }
            lpm.track(nil, base: 0)
            let after = bytes(r, size)
            let marked = Set(dirty.take())
            var chunk = 0
            while chunk * DirtyChunks.chunkSize < size {
                let lo = chunk * DirtyChunks.chunkSize, hi = min(size, lo + DirtyChunks.chunkSize)
                if before[lo..<hi] != after[lo..<hi] {
                    XCTAssertTrue(marked.contains(chunk), "round \(round): chunk \(chunk) changed but is not marked")
                }
                chunk += 1
            }
        }
    }
}
