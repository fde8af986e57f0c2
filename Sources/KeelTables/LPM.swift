import CKeelIntrinsics

/// IPv4 longest-prefix-match table, DIR-24-8, in a caller-provided region.
///
/// The class is the writer: it formats the region, inserts and deletes routes,
/// and keeps the writer-only state (depths, routes) in its own memory. Readers
/// use `IPv4LPMView`, which needs only the region's bytes.
public final class IPv4LPM {
    var core: TrieCore

    /// Bytes a region needs for `tbl8Groups` group slots of 256 entries.
    public static func regionSize(tbl8Groups: Int) -> Int { LPMLayout.size(groupCapacity: tbl8Groups) }

    /// Groups usable out of `tbl8Groups` slots (7/8: the pool is a hash table).
    public static func usableGroups(tbl8Groups: Int) -> Int { TrieCore.usable(slots: tbl8Groups) }

    /// Formats `region` (zeroing it) as an empty table with `tbl8Groups` group slots.
    public init(region: UnsafeMutableRawPointer, size: Int, tbl8Groups: Int) throws {
        core = try TrieCore(region: region, size: size, family: 4, keyBits: 32, groupSlots: tbl8Groups)
    }

    /// Records every byte this writer changes from now on (offsets from `base`).
    public func track(_ dirty: DirtyChunks?, base: Int) {
        core.dirty = dirty
        core.dirtyBase = base
    }

    deinit { core.deallocate() }

    public func insert(_ prefix: IPv4Prefix, nextHop: UInt32) throws {
        try core.insert(key: UInt128(prefix.address) << 96, length: Int(prefix.length), nextHop: nextHop)
    }

    public func delete(_ prefix: IPv4Prefix) throws {
        try core.delete(key: UInt128(prefix.address) << 96, length: Int(prefix.length), describe: prefix.description)
    }

    /// Builds an empty table from a full route list (sorted here, shortest first,
    /// so every fill lands without overwriting checks failing). Atomic only per
    /// route: on a capacity error the routes before it are in.
    public func build(_ routes: [(prefix: IPv4Prefix, nextHop: UInt32)]) throws {
        guard core.routeCount == 0 else { throw TableError.tableNotEmpty }
        var counts = [Int](repeating: 0, count: 33)
        for r in routes { counts[Int(r.prefix.length)] += 1 }
        for l in 0...32 { core.rules[l].reserveCapacity(counts[l]) }
        let sorted = routes.sorted {
            $0.prefix.length != $1.prefix.length ? $0.prefix.length < $1.prefix.length : $0.prefix.address < $1.prefix.address
        }
        for r in sorted { try insert(r.prefix, nextHop: r.nextHop) }
    }

    public func lookup(_ address: UInt32) -> UInt32 { core.lookup(key: UInt128(address) << 96) }
    public func nextHop(of prefix: IPv4Prefix) -> UInt32? { core.route(key: UInt128(prefix.address) << 96, length: Int(prefix.length)) }

    public var routeCount: Int { core.routeCount }
    public var tbl8GroupsInUse: Int { core.groupsInUse }
    public var tbl8Capacity: Int { core.capacity }
    public var regionBytes: Int { LPMLayout.size(groupCapacity: core.slots) }
    /// Writer-side memory outside the region (the depth shadow); routes by length come on top.
    public var writerShadowBytes: Int { core.shadowBytes }
    public var view: IPv4LPMView { IPv4LPMView(unchecked: UnsafeRawPointer(core.region)) }
}

/// IPv6 longest-prefix-match table: multibit trie, 24-bit first stride then 8-bit levels.
public final class IPv6LPM {
    var core: TrieCore

    public static func regionSize(tbl8Groups: Int) -> Int { LPMLayout.size(groupCapacity: tbl8Groups) }
    public static func usableGroups(tbl8Groups: Int) -> Int { TrieCore.usable(slots: tbl8Groups) }

    public init(region: UnsafeMutableRawPointer, size: Int, tbl8Groups: Int) throws {
        core = try TrieCore(region: region, size: size, family: 6, keyBits: 128, groupSlots: tbl8Groups)
    }

    public func track(_ dirty: DirtyChunks?, base: Int) {
        core.dirty = dirty
        core.dirtyBase = base
    }

    deinit { core.deallocate() }

    public func insert(_ prefix: IPv6Prefix, nextHop: UInt32) throws {
        try core.insert(key: prefix.address, length: Int(prefix.length), nextHop: nextHop)
    }

    public func delete(_ prefix: IPv6Prefix) throws {
        try core.delete(key: prefix.address, length: Int(prefix.length), describe: prefix.description)
    }

    public func build(_ routes: [(prefix: IPv6Prefix, nextHop: UInt32)]) throws {
        guard core.routeCount == 0 else { throw TableError.tableNotEmpty }
        var counts = [Int](repeating: 0, count: 129)
        for r in routes { counts[Int(r.prefix.length)] += 1 }
        for l in 0...128 { core.rules[l].reserveCapacity(counts[l]) }
        let sorted = routes.sorted {
            $0.prefix.length != $1.prefix.length ? $0.prefix.length < $1.prefix.length : $0.prefix.address < $1.prefix.address
        }
        for r in sorted { try insert(r.prefix, nextHop: r.nextHop) }
    }

    public func lookup(_ address: UInt128) -> UInt32 { core.lookup(key: address) }
    public func nextHop(of prefix: IPv6Prefix) -> UInt32? { core.route(key: prefix.address, length: Int(prefix.length)) }

    public var routeCount: Int { core.routeCount }
    public var tbl8GroupsInUse: Int { core.groupsInUse }
    public var tbl8Capacity: Int { core.capacity }
    public var regionBytes: Int { LPMLayout.size(groupCapacity: core.slots) }
    public var writerShadowBytes: Int { core.shadowBytes }
    public var view: IPv6LPMView { IPv6LPMView(unchecked: UnsafeRawPointer(core.region)) }
}

/// Read side of an IPv4 table: a pointer into the region, nothing else. Safe to
/// copy into every lcore; holds no references, so using it retains nothing.
@frozen
public struct IPv4LPMView: @unchecked Sendable {
    /// Root entries, directly followed by the tbl8 groups.
    @usableFromInline let entries: UnsafePointer<UInt32>

    /// Checks the region's header (magic, version, family, sizes) before use.
    public init(region: UnsafeRawPointer, size: Int) throws {
        entries = try LPMHeader(validating: region, size: size, family: 4).entries
    }

    init(unchecked region: UnsafeRawPointer) {
        entries = (region + LPMLayout.headerSize).assumingMemoryBound(to: UInt32.self)
    }

    /// Starts loading the root entry of `address`, for a lookup a little later.
    @inlinable @inline(__always)
    public func prefetch(_ address: UInt32) { keel_prefetch0(entries + Int(address >> 8)) }

    /// Next hop for `address` (host byte order), or `LPMEntry.noRoute`.
    @inlinable @inline(__always)
    public func lookup(_ address: UInt32) -> UInt32 {
        var e = entries[Int(address >> 8)]
        if _slowPath(e & 1 != 0) {
            e = entries[LPMLayout.rootEntries &+ Int(e >> 1) &<< 8 &+ Int(address & 0xff)]
        }
        return LPMEntry.nextHop(e)
    }

    /// Eight lookups whose root loads are all issued before any result is used,
    /// so their cache misses overlap.
    @inlinable @inline(__always)
    public func lookup8(_ a: UnsafePointer<UInt32>, _ out: UnsafeMutablePointer<UInt32>) {
        let e0 = entries[Int(a[0] >> 8)], e1 = entries[Int(a[1] >> 8)]
        let e2 = entries[Int(a[2] >> 8)], e3 = entries[Int(a[3] >> 8)]
        let e4 = entries[Int(a[4] >> 8)], e5 = entries[Int(a[5] >> 8)]
        let e6 = entries[Int(a[6] >> 8)], e7 = entries[Int(a[7] >> 8)]
        if _fastPath((e0 | e1 | e2 | e3 | e4 | e5 | e6 | e7) & 1 == 0) {
            out[0] = LPMEntry.nextHop(e0); out[1] = LPMEntry.nextHop(e1)
            out[2] = LPMEntry.nextHop(e2); out[3] = LPMEntry.nextHop(e3)
            out[4] = LPMEntry.nextHop(e4); out[5] = LPMEntry.nextHop(e5)
            out[6] = LPMEntry.nextHop(e6); out[7] = LPMEntry.nextHop(e7)
        } else {
            for i in 0..<8 { out[i] = lookup(a[i]) }
        }
    }

    /// Hints the root entries of eight addresses into cache.
    @inlinable @inline(__always)
    public func prefetch8(_ a: UnsafePointer<UInt32>) {
        for i in 0..<8 { keel_prefetch0(entries + Int(a[i] >> 8)) }
    }

    /// How many addresses ahead `lookupBulk` prefetches root entries. Far enough
    /// to cover a TLB miss plus a cache miss at ~8 ns per lookup (measured with
    /// keel-bench lpm: 32 to 64 are equally good, 8 is clearly worse).
    public static let prefetchDistance = 32

    /// Looks up `count` addresses in batches of 8, prefetching root entries
    /// `prefetchDistance` addresses ahead.
    @inlinable
    public func lookupBulk(_ a: UnsafePointer<UInt32>, _ out: UnsafeMutablePointer<UInt32>, count: Int) {
        let d = IPv4LPMView.prefetchDistance
        var i = 0
        while i < min(d, count) { keel_prefetch0(entries + Int(a[i] >> 8)); i &+= 1 }
        i = 0
        while i &+ d &+ 8 <= count {
            prefetch8(a + (i &+ d))
            lookup8(a + i, out + i)
            i &+= 8
        }
        while i &+ 8 <= count {
            lookup8(a + i, out + i)
            i &+= 8
        }
        while i < count {
            out[i] = lookup(a[i])
            i &+= 1
        }
    }
}

/// Read side of an IPv6 table. Addresses are 16 bytes in network byte order,
/// as they sit in a packet.
@frozen
public struct IPv6LPMView: @unchecked Sendable {
    @usableFromInline let entries: UnsafePointer<UInt32>

    public init(region: UnsafeRawPointer, size: Int) throws {
        entries = try LPMHeader(validating: region, size: size, family: 6).entries
    }

    init(unchecked region: UnsafeRawPointer) {
        entries = (region + LPMLayout.headerSize).assumingMemoryBound(to: UInt32.self)
    }

    /// Top 24 bits of the address: one unaligned big-endian load.
    @inlinable @inline(__always)
    static func rootIndex(_ p: UnsafePointer<UInt8>) -> Int {
        Int(UInt32(bigEndian: UnsafeRawPointer(p).loadUnaligned(as: UInt32.self)) >> 8)
    }

    /// One level down for an extended entry; a leaf stays as it is. The load
    /// for a leaf reads entry 0 instead (always mapped) so the step has no
    /// data-dependent branch and eight lookups can step together.
    @inlinable @inline(__always)
    func step(_ e: UInt32, _ p: UnsafePointer<UInt8>, _ level: Int) -> UInt32 {
        // All ones for an extended entry, else zero: selects without branching.
        let mask = 0 &- (e & 1)
        let index = (LPMLayout.rootEntries &+ Int(e >> 1) &<< 8 &+ Int(p[level])) & Int(Int32(bitPattern: mask))
        return (entries[index] & mask) | (e & ~mask)
    }

    @inlinable @inline(__always)
    func descend(_ first: UInt32, _ p: UnsafePointer<UInt8>) -> UInt32 {
        var e = first
        var i = 3
        while e & 1 != 0 {
            e = entries[LPMLayout.rootEntries &+ Int(e >> 1) &<< 8 &+ Int(p[i])]
            i &+= 1
        }
        return LPMEntry.nextHop(e)
    }

    /// Starts loading the root entry of the address at `p`.
    @inlinable @inline(__always)
    public func prefetch(_ p: UnsafePointer<UInt8>) { keel_prefetch0(entries + IPv6LPMView.rootIndex(p)) }

    @inlinable @inline(__always)
    public func lookup(_ p: UnsafePointer<UInt8>) -> UInt32 {
        descend(entries[IPv6LPMView.rootIndex(p)], p)
    }

    /// Eight lookups, `a` pointing at 8 consecutive 16-byte addresses. All eight
    /// walk the trie level by level together, so their dependent loads overlap.
    @inlinable @inline(__always)
    public func lookup8(_ a: UnsafePointer<UInt8>, _ out: UnsafeMutablePointer<UInt32>) {
        var e0 = entries[IPv6LPMView.rootIndex(a)], e1 = entries[IPv6LPMView.rootIndex(a + 16)]
        var e2 = entries[IPv6LPMView.rootIndex(a + 32)], e3 = entries[IPv6LPMView.rootIndex(a + 48)]
        var e4 = entries[IPv6LPMView.rootIndex(a + 64)], e5 = entries[IPv6LPMView.rootIndex(a + 80)]
        var e6 = entries[IPv6LPMView.rootIndex(a + 96)], e7 = entries[IPv6LPMView.rootIndex(a + 112)]
        var level = 3
        // A level is 8 bits; an extended entry always has a byte left to index with.
        while (e0 | e1 | e2 | e3 | e4 | e5 | e6 | e7) & 1 != 0 {
            e0 = step(e0, a, level); e1 = step(e1, a + 16, level)
            e2 = step(e2, a + 32, level); e3 = step(e3, a + 48, level)
            e4 = step(e4, a + 64, level); e5 = step(e5, a + 80, level)
            e6 = step(e6, a + 96, level); e7 = step(e7, a + 112, level)
            level &+= 1
        }
        out[0] = LPMEntry.nextHop(e0); out[1] = LPMEntry.nextHop(e1)
        out[2] = LPMEntry.nextHop(e2); out[3] = LPMEntry.nextHop(e3)
        out[4] = LPMEntry.nextHop(e4); out[5] = LPMEntry.nextHop(e5)
        out[6] = LPMEntry.nextHop(e6); out[7] = LPMEntry.nextHop(e7)
    }

    @inlinable @inline(__always)
    public func prefetch8(_ a: UnsafePointer<UInt8>) {
        for i in 0..<8 { keel_prefetch0(entries + IPv6LPMView.rootIndex(a + 16 &* i)) }
    }

    /// Looks up `count` addresses (packed, 16 bytes each) in batches of 8,
    /// prefetching root entries `IPv4LPMView.prefetchDistance` addresses ahead.
    @inlinable
    public func lookupBulk(_ a: UnsafePointer<UInt8>, _ out: UnsafeMutablePointer<UInt32>, count: Int) {
        let d = IPv4LPMView.prefetchDistance
        var i = 0
        while i < min(d, count) { keel_prefetch0(entries + IPv6LPMView.rootIndex(a + i &* 16)); i &+= 1 }
        i = 0
        while i &+ d &+ 8 <= count {
            prefetch8(a + (i &+ d) &* 16)
            lookup8(a + i &* 16, out + i)
            i &+= 8
        }
        while i &+ 8 <= count {
            lookup8(a + i &* 16, out + i)
            i &+= 8
        }
        while i < count {
            out[i] = lookup(a + i &* 16)
            i &+= 1
        }
    }
}
