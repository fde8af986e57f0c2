#if canImport(Glibc)
import Glibc
#endif

/// Records which 64 KiB chunks of a memory area were written, so that
/// checksums and copies can be limited to what changed.
public final class DirtyChunks: @unchecked Sendable {
    public static let chunkShift = 16
    public static let chunkSize = 1 << chunkShift
    public let chunkCount: Int
    private var bits: [UInt64]

    public init(bytes: Int) {
        chunkCount = (bytes + DirtyChunks.chunkSize - 1) >> DirtyChunks.chunkShift
        bits = [UInt64](repeating: 0, count: (chunkCount + 63) / 64)
    }

    @inline(__always)
    public func mark(_ offset: Int) {
        let c = offset >> DirtyChunks.chunkShift
        bits[c >> 6] |= 1 << UInt64(c & 63)
    }

    public func mark(_ offset: Int, length: Int) {
        guard length > 0 else { return }
        for c in (offset >> DirtyChunks.chunkShift)...((offset + length - 1) >> DirtyChunks.chunkShift) {
            bits[c >> 6] |= 1 << UInt64(c & 63)
        }
    }

    public func markAll() {
        for c in 0..<chunkCount { bits[c >> 6] |= 1 << UInt64(c & 63) }
    }

    public func isDirty(_ chunk: Int) -> Bool { bits[chunk >> 6] & (1 << UInt64(chunk & 63)) != 0 }

    /// The dirty chunk indices, ascending; clears the record.
    public func take() -> [Int] {
        var out: [Int] = []
        for (w, word) in bits.enumerated() where word != 0 {
            var x = word
            while x != 0 {
                out.append(w * 64 + x.trailingZeroBitCount)
                x &= x - 1
            }
            bits[w] = 0
        }
        return out
    }
}

/// The writer side shared by the IPv4 and IPv6 tables: a multibit trie with a
/// 24-bit first stride and 8-bit strides below it (DIR-24-8 for IPv4, 24 then
/// up to 13 levels of 8 for IPv6), kept in a caller's region.
///
/// Keys are left-aligned in a UInt128 (an IPv4 address is `UInt128(a) << 96`).
/// Next to the region the writer keeps what only it needs: the depth (prefix
/// length) that set each entry, the routes by length, and which group sits in
/// which slot. Depth decides what an insert may overwrite; the routes give the
/// covering route that a delete falls back to. None of it is read by lookups.
///
/// The region's bytes are a function of the set of routes alone, not of the
/// order of inserts and deletes that produced it: which groups exist follows
/// from the routes, and each group's slot in the pool is decided by ordered
/// linear probing (Amble and Knuth's ordered hash table: along a run, groups
/// sit in order of home slot, then key), which is history independent. So an
/// incrementally maintained table is byte-identical to one built from scratch.
///
/// This code is not on the packet path; it is written for clarity first.
struct TrieCore {
    let region: UnsafeMutableRawPointer
    let keyBits: Int
    /// Group slots in the pool, and how many may be used (7/8 of them, so
    /// probe runs stay short).
    let slots: Int
    let capacity: Int
    /// Root entries followed by the tbl8 groups: one index space.
    let entries: UnsafeMutablePointer<UInt32>
    /// Prefix length that set each entry (same indexing as `entries`).
    let depth: UnsafeMutablePointer<UInt8>
    /// Per slot: the group's key (path bits above it) and level (0 = empty;
    /// `orphan` set while a delete has detached the group but not yet freed it).
    var groupKey: [UInt128]
    var groupLevel: [UInt8]
    static let orphan: UInt8 = 0x80
    /// Routes by prefix length: left-aligned key -> next hop.
    var rules: [[UInt128: UInt32]]
    /// Where writes are recorded, and the region's offset in the tracked area.
    var dirty: DirtyChunks?
    var dirtyBase = 0

    static func usable(slots: Int) -> Int { slots - slots / 8 }

    init(region: UnsafeMutableRawPointer, size: Int, family: UInt32, keyBits: Int, groupSlots: Int) throws {
        let needed = LPMLayout.size(groupCapacity: groupSlots)
        guard size >= needed else { throw TableError.regionTooSmall(needed: needed, got: size) }
        precondition(groupSlots > 0 && groupSlots < 1 << 30)
        self.region = region
        self.keyBits = keyBits
        self.slots = groupSlots
        self.capacity = TrieCore.usable(slots: groupSlots)
        // Zero the whole region: a zeroed table routes nothing.
        memset(region, 0, needed)
        region.storeBytes(of: LPMLayout.magic, toByteOffset: LPMLayout.oMagic, as: UInt64.self)
        region.storeBytes(of: LPMLayout.version, toByteOffset: LPMLayout.oVersion, as: UInt32.self)
        region.storeBytes(of: family, toByteOffset: LPMLayout.oFamily, as: UInt32.self)
        region.storeBytes(of: UInt32(keyBits), toByteOffset: LPMLayout.oKeyBits, as: UInt32.self)
        region.storeBytes(of: UInt32(LPMLayout.rootBits), toByteOffset: LPMLayout.oRootBits, as: UInt32.self)
        region.storeBytes(of: UInt32(groupSlots), toByteOffset: LPMLayout.oCapacity, as: UInt32.self)
        region.storeBytes(of: UInt64(LPMLayout.headerSize), toByteOffset: LPMLayout.oRootOffset, as: UInt64.self)
        region.storeBytes(of: UInt64(needed), toByteOffset: LPMLayout.oTotalSize, as: UInt64.self)
        let entryCount = LPMLayout.rootEntries + groupSlots * LPMLayout.groupEntries
        entries = (region + LPMLayout.headerSize).bindMemory(to: UInt32.self, capacity: entryCount)
        depth = .allocate(capacity: entryCount)
        depth.initialize(repeating: 0, count: entryCount)
        groupKey = [UInt128](repeating: 0, count: groupSlots)
        groupLevel = [UInt8](repeating: 0, count: groupSlots)
        rules = Array(repeating: [:], count: keyBits + 1)
    }

    func deallocate() { depth.deallocate() }

    var entryCount: Int { LPMLayout.rootEntries + slots * LPMLayout.groupEntries }
    var shadowBytes: Int { entryCount + slots * 17 }

    // MARK: header counters and writes

    private func field(_ off: Int) -> UInt32 { region.load(fromByteOffset: off, as: UInt32.self) }
    private func setField(_ off: Int, _ v: UInt32) {
        region.storeBytes(of: v, toByteOffset: off, as: UInt32.self)
        dirty?.mark(dirtyBase + off)
    }

    var groupsInUse: Int { Int(field(LPMLayout.oGroupsInUse)) }
    var freeGroups: Int { capacity - groupsInUse }
    var routeCount: Int { Int(region.load(fromByteOffset: LPMLayout.oRouteCount, as: UInt64.self)) }
    private func setRouteCount(_ n: Int) {
        region.storeBytes(of: UInt64(n), toByteOffset: LPMLayout.oRouteCount, as: UInt64.self)
        dirty?.mark(dirtyBase + LPMLayout.oRouteCount)
    }

    @inline(__always)
    private func set(_ u: Int, _ value: UInt32, _ d: UInt8) {
        entries[u] = value
        depth[u] = d
        dirty?.mark(dirtyBase + LPMLayout.headerSize + u &* 4)
    }

    // MARK: index arithmetic

    private func rootIndex(_ key: UInt128) -> Int { Int(truncatingIfNeeded: key >> 104) }
    /// Byte of the key that indexes a group at `level` (level 1 is the first tbl8 level).
    private func byte(_ key: UInt128, level: Int) -> Int { Int(truncatingIfNeeded: (key >> UInt128(104 - 8 * level)) & 0xff) }
    private func bits(at level: Int) -> Int { LPMLayout.rootBits + 8 * level }
    private func groupBase(slot g: Int) -> Int { LPMLayout.rootEntries + g * LPMLayout.groupEntries }
    private func groupBase(_ e: UInt32) -> Int { groupBase(slot: Int(e >> 1)) }
    private func finalLevel(_ length: Int) -> Int { length <= 24 ? 0 : (length - 24 + 7) / 8 }
    private func mask(_ length: Int) -> UInt128 { length == 0 ? 0 : ~UInt128(0) << UInt128(128 - length) }

    // MARK: the group pool (ordered linear probing)

    /// Home slot of the group at `level` under the path `key` (masked to the
    /// parent's bits). A fixed hash: the layout must not depend on the process.
    private func home(_ key: UInt128, _ level: Int) -> Int {
        let h = Maglev.mix64(UInt64(truncatingIfNeeded: key >> 64) ^ Maglev.mix64(UInt64(truncatingIfNeeded: key) ^ UInt64(level)))
        return Int(h % UInt64(slots))
    }

    private func distance(_ slot: Int, _ home: Int) -> Int { slot >= home ? slot - home : slot + slots - home }

    /// Entry index of the entry that points at the group (key, level).
    private func parentEntry(_ key: UInt128, _ level: Int) -> Int {
        var u = rootIndex(key)
        var l = 1
        while l < level {
            u = groupBase(entries[u]) + byte(key, level: l)
            l += 1
        }
        return u
    }

    /// Moves the group in slot `from` to the empty slot `to`, repointing its parent.
    private mutating func moveGroup(from: Int, to: Int) {
        let src = groupBase(slot: from), dst = groupBase(slot: to)
        (entries + dst).update(from: entries + src, count: LPMLayout.groupEntries)
        (depth + dst).update(from: depth + src, count: LPMLayout.groupEntries)
        (entries + src).update(repeating: 0, count: LPMLayout.groupEntries)
        (depth + src).update(repeating: 0, count: LPMLayout.groupEntries)
        dirty?.mark(dirtyBase + LPMLayout.headerSize + src * 4, length: LPMLayout.groupEntries * 4)
        dirty?.mark(dirtyBase + LPMLayout.headerSize + dst * 4, length: LPMLayout.groupEntries * 4)
        let key = groupKey[from], level = groupLevel[from]
        groupKey[to] = key
        groupLevel[to] = level
        groupLevel[from] = 0
        groupKey[from] = 0
        // A detached group has no parent pointing at it any more.
        if level & TrieCore.orphan == 0 {
            set(parentEntry(key, Int(level)), UInt32(to) << 1 | 1, 0)
        }
    }

    /// Takes a slot for the group (key, level), keeping every run ordered by
    /// (home, key); groups after it in the run shift one slot on.
    private mutating func allocateGroup(_ key: UInt128, _ level: Int) -> Int {
        let h = home(key, level)
        var p = h
        while groupLevel[p] != 0 {
            let rh = home(groupKey[p], Int(groupLevel[p] & ~TrieCore.orphan))
            let dNew = distance(p, h), dOld = distance(p, rh)
            if dOld < dNew || (dOld == dNew && (groupLevel[p], groupKey[p]) > (UInt8(level), key)) { break }
            p = p + 1 == slots ? 0 : p + 1
        }
        // Shift the rest of the run one slot on, last first.
        var e = p
        while groupLevel[e] != 0 { e = e + 1 == slots ? 0 : e + 1 }
        while e != p {
            let prev = e == 0 ? slots - 1 : e - 1
            moveGroup(from: prev, to: e)
            e = prev
        }
        groupKey[p] = key
        groupLevel[p] = UInt8(level)
        setField(LPMLayout.oGroupsInUse, UInt32(groupsInUse + 1))
        return p
    }

    /// Empties slot `g` and pulls the rest of its run back one slot.
    private mutating func freeGroup(_ g: Int) {
        let base = groupBase(slot: g)
        (entries + base).update(repeating: 0, count: LPMLayout.groupEntries)
        (depth + base).update(repeating: 0, count: LPMLayout.groupEntries)
        dirty?.mark(dirtyBase + LPMLayout.headerSize + base * 4, length: LPMLayout.groupEntries * 4)
        groupLevel[g] = 0
        groupKey[g] = 0
        setField(LPMLayout.oGroupsInUse, UInt32(groupsInUse - 1))
        var hole = g
        var i = g + 1 == slots ? 0 : g + 1
        while groupLevel[i] != 0 && distance(i, home(groupKey[i], Int(groupLevel[i] & ~TrieCore.orphan))) > 0 {
            moveGroup(from: i, to: hole)
            hole = i
            i = i + 1 == slots ? 0 : i + 1
        }
    }

    // MARK: insert

    mutating func insert(key: UInt128, length: Int, nextHop: UInt32) throws {
        guard nextHop <= LPMEntry.maxNextHop else { throw TableError.nextHopOutOfRange(nextHop) }
        let f = finalLevel(length)
        // Count the groups this route needs before touching anything, so a
        // capacity error leaves the table exactly as it was.
        var u = rootIndex(key)
        var needed = 0
        for level in 0..<f {
            if needed == 0 && LPMEntry.isExtended(entries[u]) {
                u = groupBase(entries[u]) + byte(key, level: level + 1)
            } else {
                needed += 1
            }
        }
        guard needed <= freeGroups else {
            throw TableError.capacityExceeded(needed: needed, free: freeGroups, capacity: capacity)
        }
        u = rootIndex(key)
        for level in 0..<f {
            if !LPMEntry.isExtended(entries[u]) {
                // Push the entry down: the new group starts as 256 copies of it.
                let value = entries[u], d = depth[u]
                let g = allocateGroup(key & mask(bits(at: level)), level + 1)
                // Making room may have moved the group that holds u.
                u = pathEntry(key, level: level)
                let base = groupBase(slot: g)
                (entries + base).update(repeating: value, count: LPMLayout.groupEntries)
                (depth + base).update(repeating: d, count: LPMLayout.groupEntries)
                dirty?.mark(dirtyBase + LPMLayout.headerSize + base * 4, length: LPMLayout.groupEntries * 4)
                set(u, UInt32(g) << 1 | 1, 0)
            }
            u = groupBase(entries[u]) + byte(key, level: level + 1)
        }
        let span = 1 << (bits(at: f) - length)
        let value = LPMEntry.leaf(nextHop)
        let d = UInt8(length)
        for i in u..<(u + span) { fill(i, value, d) }
        if rules[length].updateValue(nextHop, forKey: key) == nil { setRouteCount(routeCount + 1) }
    }

    /// Sets entry `u` (and everything below it) to `value` where no longer prefix owns it.
    private func fill(_ u: Int, _ value: UInt32, _ d: UInt8) {
        let e = entries[u]
        if LPMEntry.isExtended(e) {
            let base = groupBase(e)
            for j in base..<(base + LPMLayout.groupEntries) { fill(j, value, d) }
        } else if depth[u] <= d && (e != value || depth[u] != d) {
            set(u, value, d)
        }
    }

    // MARK: delete

    mutating func delete(key: UInt128, length: Int, describe: @autoclosure () -> String) throws {
        guard rules[length].removeValue(forKey: key) != nil else { throw TableError.routeNotFound(describe()) }
        setRouteCount(routeCount - 1)
        // The entries fall back to the longest remaining route that covers this one.
        var replacement: UInt32 = 0
        var replacementDepth: UInt8 = 0
        var l = length - 1
        while l >= 0 {
            if let nh = rules[l][key & mask(l)] {
                replacement = LPMEntry.leaf(nh)
                replacementDepth = UInt8(l)
                break
            }
            l -= 1
        }
        let f = finalLevel(length)
        var u = rootIndex(key)
        for level in 0..<f {
            // A live route longer than a level's bits keeps its groups from collapsing.
            precondition(LPMEntry.isExtended(entries[u]), "trie path of a live route is missing a group")
            u = groupBase(entries[u]) + byte(key, level: level + 1)
        }
        let span = 1 << (bits(at: f) - length)
        // Nothing moves in the pool until every entry is rewritten: folded
        // groups are only detached here, and freed (which shifts slots) after.
        var orphans: [(UInt128, UInt8)] = []
        for i in u..<(u + span) {
            replace(i, level: f, old: UInt8(length), value: replacement, d: replacementDepth, &orphans)
        }
        for level in stride(from: f - 1, through: 0, by: -1) {
            collapse(pathEntry(key, level: level), level: level, &orphans)
        }
        for (k, l) in orphans { freeGroup(findSlot(k, l)) }
    }

    /// Index of the entry at `level` on the path of `key` (all groups above exist).
    private func pathEntry(_ key: UInt128, level: Int) -> Int {
        var u = rootIndex(key)
        for l in 0..<level {
            guard LPMEntry.isExtended(entries[u]) else { return -1 }
            u = groupBase(entries[u]) + byte(key, level: l + 1)
        }
        return u
    }

    /// Slot of a group by key, probing from its home.
    private func findSlot(_ key: UInt128, _ level: UInt8) -> Int {
        var p = home(key, Int(level & ~TrieCore.orphan))
        while groupLevel[p] != level || groupKey[p] != key {
            precondition(groupLevel[p] != 0, "group not in its run")
            p = p + 1 == slots ? 0 : p + 1
        }
        return p
    }

    /// Rewrites the entries of the deleted route (depth `old`) under entry `u`.
    private mutating func replace(_ u: Int, level: Int, old: UInt8, value: UInt32, d: UInt8, _ orphans: inout [(UInt128, UInt8)]) {
        let e = entries[u]
        if LPMEntry.isExtended(e) {
            let base = groupBase(e)
            for j in base..<(base + LPMLayout.groupEntries) {
                replace(j, level: level + 1, old: old, value: value, d: d, &orphans)
            }
            collapse(u, level: level, &orphans)
        } else if depth[u] == old {
            set(u, value, d)
        }
    }

    /// Folds the group under entry `u` (at `level`) back into `u` when all its
    /// entries are the same leaf set by a route no longer than `u` covers. The
    /// group is detached and listed; the caller frees it.
    private mutating func collapse(_ u: Int, level: Int, _ orphans: inout [(UInt128, UInt8)]) {
        guard u >= 0 else { return }
        let e = entries[u]
        guard LPMEntry.isExtended(e) else { return }
        let g = Int(e >> 1)
        let base = groupBase(slot: g)
        let v = entries[base], d = depth[base]
        guard !LPMEntry.isExtended(v), Int(d) <= bits(at: level) else { return }
        for j in (base + 1)..<(base + LPMLayout.groupEntries) where entries[j] != v || depth[j] != d {
            return
        }
        set(u, v, d)
        groupLevel[g] |= TrieCore.orphan
        orphans.append((groupKey[g], groupLevel[g]))
    }

    // MARK: lookup (writer side, for tests and tools)

    func lookup(key: UInt128) -> UInt32 {
        var e = entries[rootIndex(key)]
        var level = 1
        while LPMEntry.isExtended(e) {
            e = entries[groupBase(e) + byte(key, level: level)]
            level += 1
        }
        return LPMEntry.nextHop(e)
    }

    func route(key: UInt128, length: Int) -> UInt32? { rules[length][key] }
}
