/// The writer side shared by the IPv4 and IPv6 tables: a multibit trie with a
/// 24-bit first stride and 8-bit strides below it (DIR-24-8 for IPv4, 24 then
/// up to 13 levels of 8 for IPv6), kept in a caller's region.
///
/// Keys are left-aligned in a UInt128 (an IPv4 address is `UInt128(a) << 96`).
/// Next to the region the writer keeps what only it needs: the depth (prefix
/// length) that set each entry, and the routes by length. Depth decides what an
/// insert may overwrite; the routes give the covering route that a delete
/// falls back to. Neither is read by lookups.
///
/// This code is not on the packet path; it is written for clarity first.
struct TrieCore {
    let region: UnsafeMutableRawPointer
    let keyBits: Int
    let capacity: Int
    /// Root entries followed by the tbl8 groups: one index space.
    let entries: UnsafeMutablePointer<UInt32>
    let freeStack: UnsafeMutablePointer<UInt32>
    /// Prefix length that set each entry (same indexing as `entries`).
    let depth: UnsafeMutablePointer<UInt8>
    /// Routes by prefix length: left-aligned key -> next hop.
    var rules: [[UInt128: UInt32]]

    init(region: UnsafeMutableRawPointer, size: Int, family: UInt32, keyBits: Int, groupCapacity: Int) throws {
        let needed = LPMLayout.size(groupCapacity: groupCapacity)
        guard size >= needed else { throw TableError.regionTooSmall(needed: needed, got: size) }
        precondition(groupCapacity > 0 && groupCapacity < 1 << 30)
        self.region = region
        self.keyBits = keyBits
        self.capacity = groupCapacity
        // Zero the whole region: a zeroed table routes nothing.
        region.initializeMemory(as: UInt8.self, repeating: 0, count: needed)
        region.storeBytes(of: LPMLayout.magic, toByteOffset: LPMLayout.oMagic, as: UInt64.self)
        region.storeBytes(of: LPMLayout.version, toByteOffset: LPMLayout.oVersion, as: UInt32.self)
        region.storeBytes(of: family, toByteOffset: LPMLayout.oFamily, as: UInt32.self)
        region.storeBytes(of: UInt32(keyBits), toByteOffset: LPMLayout.oKeyBits, as: UInt32.self)
        region.storeBytes(of: UInt32(LPMLayout.rootBits), toByteOffset: LPMLayout.oRootBits, as: UInt32.self)
        region.storeBytes(of: UInt32(groupCapacity), toByteOffset: LPMLayout.oCapacity, as: UInt32.self)
        region.storeBytes(of: UInt64(LPMLayout.headerSize), toByteOffset: LPMLayout.oRootOffset, as: UInt64.self)
        let entryCount = LPMLayout.rootEntries + groupCapacity * LPMLayout.groupEntries
        let freeOffset = LPMLayout.headerSize + entryCount * 4
        region.storeBytes(of: UInt64(freeOffset), toByteOffset: LPMLayout.oFreeStackOffset, as: UInt64.self)
        region.storeBytes(of: UInt64(needed), toByteOffset: LPMLayout.oTotalSize, as: UInt64.self)
        entries = (region + LPMLayout.headerSize).bindMemory(to: UInt32.self, capacity: entryCount)
        freeStack = (region + freeOffset).bindMemory(to: UInt32.self, capacity: groupCapacity)
        depth = .allocate(capacity: entryCount)
        depth.initialize(repeating: 0, count: entryCount)
        rules = Array(repeating: [:], count: keyBits + 1)
    }

    func deallocate() { depth.deallocate() }

    var entryCount: Int { LPMLayout.rootEntries + capacity * LPMLayout.groupEntries }
    var shadowBytes: Int { entryCount }

    // MARK: header counters

    private func field(_ off: Int) -> UInt32 { region.load(fromByteOffset: off, as: UInt32.self) }
    private func setField(_ off: Int, _ v: UInt32) { region.storeBytes(of: v, toByteOffset: off, as: UInt32.self) }

    var groupsInUse: Int { Int(field(LPMLayout.oGroupsInUse)) }
    var freeGroups: Int { capacity - groupsInUse }
    var routeCount: Int { Int(region.load(fromByteOffset: LPMLayout.oRouteCount, as: UInt64.self)) }
    private func setRouteCount(_ n: Int) {
        region.storeBytes(of: UInt64(n), toByteOffset: LPMLayout.oRouteCount, as: UInt64.self)
    }

    // MARK: index arithmetic

    private func rootIndex(_ key: UInt128) -> Int { Int(truncatingIfNeeded: key >> 104) }
    /// Byte of the key that indexes a group at `level` (level 1 is the first tbl8 level).
    private func byte(_ key: UInt128, level: Int) -> Int { Int(truncatingIfNeeded: (key >> UInt128(104 - 8 * level)) & 0xff) }
    private func bits(at level: Int) -> Int { LPMLayout.rootBits + 8 * level }
    private func groupBase(_ e: UInt32) -> Int { LPMLayout.rootEntries + Int(e >> 1) * LPMLayout.groupEntries }
    private func finalLevel(_ length: Int) -> Int { length <= 24 ? 0 : (length - 24 + 7) / 8 }
    private func mask(_ length: Int) -> UInt128 { length == 0 ? 0 : ~UInt128(0) << UInt128(128 - length) }

    // MARK: groups

    private mutating func allocateGroup() -> Int {
        let free = Int(field(LPMLayout.oFreeCount))
        let g: Int
        if free > 0 {
            g = Int(freeStack[free - 1])
            setField(LPMLayout.oFreeCount, UInt32(free - 1))
        } else {
            g = Int(field(LPMLayout.oNextFresh))
            precondition(g < capacity, "capacity was checked before mutating")
            setField(LPMLayout.oNextFresh, UInt32(g + 1))
        }
        setField(LPMLayout.oGroupsInUse, UInt32(groupsInUse + 1))
        return g
    }

    private mutating func freeGroup(_ g: Int) {
        let base = LPMLayout.rootEntries + g * LPMLayout.groupEntries
        (entries + base).update(repeating: 0, count: LPMLayout.groupEntries)
        (depth + base).update(repeating: 0, count: LPMLayout.groupEntries)
        let free = Int(field(LPMLayout.oFreeCount))
        freeStack[free] = UInt32(g)
        setField(LPMLayout.oFreeCount, UInt32(free + 1))
        setField(LPMLayout.oGroupsInUse, UInt32(groupsInUse - 1))
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
                let g = allocateGroup()
                let base = LPMLayout.rootEntries + g * LPMLayout.groupEntries
                (entries + base).update(repeating: entries[u], count: LPMLayout.groupEntries)
                (depth + base).update(repeating: depth[u], count: LPMLayout.groupEntries)
                entries[u] = UInt32(g) << 1 | 1
                depth[u] = 0
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
        } else if depth[u] <= d {
            entries[u] = value
            depth[u] = d
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
        var path = [Int]()
        path.reserveCapacity(f)
        var u = rootIndex(key)
        for level in 0..<f {
            // A live route longer than a level's bits keeps its groups from collapsing.
            precondition(LPMEntry.isExtended(entries[u]), "trie path of a live route is missing a group")
            path.append(u)
            u = groupBase(entries[u]) + byte(key, level: level + 1)
        }
        let span = 1 << (bits(at: f) - length)
        for i in u..<(u + span) {
            replace(i, level: f, old: UInt8(length), value: replacement, d: replacementDepth)
        }
        for level in stride(from: f - 1, through: 0, by: -1) {
            collapse(path[level], level: level)
        }
    }

    private mutating func replace(_ u: Int, level: Int, old: UInt8, value: UInt32, d: UInt8) {
        let e = entries[u]
        if LPMEntry.isExtended(e) {
            let base = groupBase(e)
            for j in base..<(base + LPMLayout.groupEntries) {
                replace(j, level: level + 1, old: old, value: value, d: d)
            }
            collapse(u, level: level)
        } else if depth[u] == old {
            entries[u] = value
            depth[u] = d
        }
    }

    /// Folds the group under entry `u` (at `level`) back into `u` when all its
    /// entries are the same leaf set by a route no longer than `u` covers.
    private mutating func collapse(_ u: Int, level: Int) {
        let e = entries[u]
        guard LPMEntry.isExtended(e) else { return }
        let base = groupBase(e)
        let v = entries[base], d = depth[base]
        guard !LPMEntry.isExtended(v), Int(d) <= bits(at: level) else { return }
        for j in (base + 1)..<(base + LPMLayout.groupEntries) where entries[j] != v || depth[j] != d {
            return
        }
        entries[u] = v
        depth[u] = d
        freeGroup(Int(e >> 1))
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
