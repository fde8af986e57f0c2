import Atomics
import KeelPacket
import KeelTables

/// Link-layer addresses of next hops: fixed capacity, open addressing, in
/// memory given to it (the data plane puts it in the stats file so keelctl can
/// show it) or its own. One writer (the data plane's main lcore: static
/// neighbors, ARP/ND learning, expiry) and any number of concurrent readers
/// (the packet lcores), without locks:
///
/// - an entry is 32 bytes: address (16, IPv4 mapped), `used` (4), port (2),
///   and one 64-bit word holding the MAC and a valid bit;
/// - the writer fills the key, then sets `used` (release); keys never move or
///   change once used, so a reader that sees `used` (acquire) sees its key;
/// - the MAC word is written and read as one atomic 64-bit value, so a reader
///   sees the old MAC, the new one, or "no MAC" (then it asks the main lcore).
///
/// Entries are never deleted (expiry clears the MAC word only), so a probe
/// chain never breaks; the table holds at most half its capacity in keys.
///
/// Memory: a 64-byte header (a version word the writer bumps on every MAC
/// change, so readers may cache MACs and know when to look again), then the
/// entries: `NeighborTable.bytes(capacity:)` in all.
public struct NeighborTable: ~Copyable {
    public static let entrySize = 32, headerSize = 64
    public static func bytes(capacity: Int) -> Int { headerSize + capacity * entrySize }
    /// The entries (after the header).
    @usableFromInline let base: UnsafeMutableRawPointer
    @usableFromInline let versionWord: UnsafeAtomic<UInt64>
    @usableFromInline let mask: Int
    let owned: Bool
    /// Keys in use (the writer's count).
    public private(set) var count = 0
    public var capacity: Int { mask + 1 }

    /// Its own memory; `capacity` is rounded up to a power of two (keep it at least twice the neighbors).
    public init(capacity: Int) {
        let n = NeighborTable.roundUp(capacity)
        let m = UnsafeMutableRawPointer.allocate(byteCount: NeighborTable.bytes(capacity: n), alignment: 64)
        m.initializeMemory(as: UInt8.self, repeating: 0, count: NeighborTable.bytes(capacity: n))
        base = m + NeighborTable.headerSize
        versionWord = UnsafeAtomic(at: m.assumingMemoryBound(to: UInt64.AtomicRepresentation.self))
        mask = n - 1
        owned = true
    }

    /// Over `memory` (`bytes(capacity:)`, capacity a power of two), zeroed
    /// unless `attach` (a reader attaching to a writer's table).
    public init(memory: UnsafeMutableRawPointer, capacity: Int, attach: Bool = false) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "neighbor table capacity must be a power of two")
        base = memory + NeighborTable.headerSize
        versionWord = UnsafeAtomic(at: memory.assumingMemoryBound(to: UInt64.AtomicRepresentation.self))
        mask = capacity - 1
        owned = false
        if !attach { memory.initializeMemory(as: UInt8.self, repeating: 0, count: NeighborTable.bytes(capacity: capacity)) }
        else { for i in 0..<capacity where used(i) { count += 1 } }
    }

    deinit { if owned { (base - NeighborTable.headerSize).deallocate() } }

    /// Bumped by the writer after every MAC change.
    @inlinable @inline(__always)
    public var version: UInt64 { versionWord.load(ordering: .acquiring) }

    public static func roundUp(_ capacity: Int) -> Int {
        var n = 16
        while n < capacity { n <<= 1 }
        return n
    }

    @inlinable @inline(__always)
    func entry(_ i: Int) -> UnsafeMutableRawPointer { base + i &* NeighborTable.entrySize }

    @inlinable @inline(__always)
    func usedWord(_ i: Int) -> UnsafeAtomic<UInt32> {
        UnsafeAtomic(at: (entry(i) + 16).assumingMemoryBound(to: UInt32.AtomicRepresentation.self))
    }

    @inlinable @inline(__always)
    func macWord(_ i: Int) -> UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: (entry(i) + 24).assumingMemoryBound(to: UInt64.AtomicRepresentation.self))
    }

    @inlinable @inline(__always)
    func used(_ i: Int) -> Bool { usedWord(i).load(ordering: .acquiring) != 0 }

    @inlinable @inline(__always)
    static func slot(_ port: UInt16, _ hi: UInt64, _ lo: UInt64, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: FlowHash.mix(hi ^ FlowHash.mix(lo ^ UInt64(port)))) & mask
    }

    /// Where (port, address) is, or the free slot where it would go: (index, found).
    @inlinable @inline(__always)
    func probe(_ port: UInt16, _ hi: UInt64, _ lo: UInt64) -> (Int, Bool) {
        var i = NeighborTable.slot(port, hi, lo, mask)
        while used(i) {
            let e = entry(i)
            if e.load(as: UInt64.self) == hi && e.load(fromByteOffset: 8, as: UInt64.self) == lo
                && e.load(fromByteOffset: 20, as: UInt16.self) == port { return (i, true) }
            i = (i &+ 1) & mask
        }
        return (i, false)
    }

    /// The entry index for (port, 16 mapped address bytes), or -1.
    @inlinable @inline(__always)
    public func find(port: UInt16, address p: UnsafeRawPointer) -> Int {
        let (i, found) = probe(port, p.loadUnaligned(as: UInt64.self), p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        return found ? i : -1
    }

    static let valid: UInt64 = 1 << 63

    /// The MAC word for (port, address): the MAC in the low 6 bytes (memory
    /// order) and bit 63 set, or 0 when unknown or unresolved.
    @inlinable @inline(__always)
    public func lookupWord(port: UInt16, address p: UnsafeRawPointer) -> UInt64 {
        let i = find(port: port, address: p)
        return i >= 0 ? macWord(i).load(ordering: .relaxed) : 0
    }

    // MARK: writer (one thread only)

    /// The entry for (port, address), created without a MAC if new; -1 when full.
    public mutating func entryIndex(port: UInt16, address p: UnsafeRawPointer) -> Int {
        let hi = p.loadUnaligned(as: UInt64.self), lo = p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        let (i, found) = probe(port, hi, lo)
        if found { return i }
        guard count < (mask + 1) / 2 else { return -1 }
        let e = entry(i)
        e.storeBytes(of: hi, as: UInt64.self)
        e.storeBytes(of: lo, toByteOffset: 8, as: UInt64.self)
        e.storeBytes(of: port, toByteOffset: 20, as: UInt16.self)
        macWord(i).store(0, ordering: .relaxed)
        usedWord(i).store(1, ordering: .releasing)
        count += 1
        return i
    }

    /// Sets entry `i`'s MAC (6 bytes).
    public func setMAC(_ i: Int, _ mac: UnsafeRawPointer) {
        var w = NeighborTable.valid
        for k in 0..<6 { w |= UInt64(mac.load(fromByteOffset: k, as: UInt8.self)) << (8 * k) }
        macWord(i).store(w, ordering: .releasing)
        versionWord.wrappingIncrement(ordering: .releasing)
    }

    /// Forgets entry `i`'s MAC (expired or failed): readers ask again.
    public func clearMAC(_ i: Int) {
        macWord(i).store(0, ordering: .releasing)
        versionWord.wrappingIncrement(ordering: .releasing)
    }

    public func hasMAC(_ i: Int) -> Bool { macWord(i).load(ordering: .relaxed) & NeighborTable.valid != 0 }

    /// Entry `i`: port, 16 address bytes into `address`, MAC bytes into `mac` (6); false when unused.
    public func read(_ i: Int, address: UnsafeMutableRawPointer, mac: UnsafeMutableRawPointer) -> (used: Bool, port: UInt16, resolved: Bool) {
        guard used(i) else { return (false, 0, false) }
        let e = entry(i)
        address.copyMemory(from: e, byteCount: 16)
        let w = macWord(i).load(ordering: .acquiring)
        for k in 0..<6 { mac.storeBytes(of: UInt8(truncatingIfNeeded: w >> (8 * k)), toByteOffset: k, as: UInt8.self) }
        return (true, e.load(fromByteOffset: 20, as: UInt16.self), w & NeighborTable.valid != 0)
    }

    /// Adds or updates; false when full (the caller counts it).
    @discardableResult
    public mutating func set(port: UInt16, address: IPAddress, mac: [UInt8]) -> Bool {
        var b = (UInt64(0), UInt64(0))
        return withUnsafeMutableBytes(of: &b) { a in
            address.store(to: a.baseAddress!)
            return mac.withUnsafeBytes { set(port: port, address: UnsafeRawPointer(a.baseAddress!), mac: $0.baseAddress!) }
        }
    }

    /// The same from raw bytes (16-byte mapped address, 6-byte MAC): no allocation.
    @discardableResult
    public mutating func set(port: UInt16, address p: UnsafeRawPointer, mac: UnsafeRawPointer) -> Bool {
        let i = entryIndex(port: port, address: p)
        guard i >= 0 else { return false }
        setMAC(i, mac)
        return true
    }
}

/// A routing lcore's cache of next-hop MACs, indexed by (next-hop group,
/// member): a dense array that stays in L1 where the neighbor table's
/// hashed entries would not. An entry is valid while its tag equals `tag`,
/// which the lcore sets once per burst from the neighbor table's version
/// and the snapshot it runs on, so any MAC change or snapshot switch sends
/// every lookup back to the table once.
public struct NeighborCache: @unchecked Sendable {
    @usableFromInline let tags: UnsafeMutablePointer<UInt64>
    @usableFromInline let macs: UnsafeMutablePointer<UInt64>
    @usableFromInline let groups: Int
    @usableFromInline let ways: Int
    public var tag: UInt64 = 1

    public init(groups: Int, ways: Int) {
        self.groups = groups
        self.ways = ways
        tags = .allocate(capacity: groups * ways)
        tags.initialize(repeating: 0, count: groups * ways)
        macs = .allocate(capacity: groups * ways)
        macs.initialize(repeating: 0, count: groups * ways)
    }

    /// Member-major: the first members of all groups sit together.
    /// Frees the cache (its copies share the storage: call once).
    public func deallocate() { tags.deallocate(); macs.deallocate() }

    @inlinable @inline(__always)
    func slot(_ group: UInt32, _ member: Int) -> Int { member &* groups &+ Int(group) }

    @inlinable @inline(__always)
    public func get(_ group: UInt32, _ member: Int) -> UInt64 {
        let i = slot(group, member)
        return tags[i] == tag ? macs[i] : 0
    }

    @inlinable @inline(__always)
    public func put(_ group: UInt32, _ member: Int, _ word: UInt64) {
        let i = slot(group, member)
        tags[i] = tag
        macs[i] = word
    }
}

