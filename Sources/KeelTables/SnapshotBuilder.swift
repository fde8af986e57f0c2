#if canImport(Glibc)
import Glibc
#endif

/// Writes one snapshot slot: formats it, applies changes, and seals it with
/// checksums. One builder per slot; only the writer process has them.
///
/// Every section's bytes are a function of the snapshot's content alone (LPM
/// groups by ordered probing, VIP hash by ordered probing, everything else at
/// the position of its stable index, unused space zero), so a slot kept up to
/// date change by change is byte-identical to one built from scratch.
public final class SnapshotBuilder {
    public let slot: UnsafeMutableRawPointer
    public let layout: SnapshotLayout
    let v4: IPv4LPM
    let v6: IPv6LPM
    /// Bytes changed since the last seal (offsets from the slot's start).
    let dirty: DirtyChunks
    /// Writer-side mirror of the VIP hash keys, for ordered probing.
    var vipKeys: [VIPKey?]
    var limits: SnapshotLimits { layout.limits }

    struct VIPKey: Comparable {
        var address: UInt128
        var proto: UInt8
        var port: UInt16
        static func < (a: VIPKey, b: VIPKey) -> Bool { (a.address, a.proto, a.port) < (b.address, b.proto, b.port) }
    }

    public init(formatting slot: UnsafeMutableRawPointer, layout: SnapshotLayout) throws {
        self.slot = slot
        self.layout = layout
        memset(slot, 0, layout.length)
        let l = layout.limits
        v4 = try IPv4LPM(region: slot + layout.offset(.ipv4), size: layout.lengths[.ipv4]!, tbl8Groups: l.ipv4Groups)
        v6 = try IPv6LPM(region: slot + layout.offset(.ipv6), size: layout.lengths[.ipv6]!, tbl8Groups: l.ipv6Groups)
        dirty = DirtyChunks(bytes: layout.length)
        dirty.markAll()
        v4.track(dirty, base: layout.offset(.ipv4))
        v6.track(dirty, base: layout.offset(.ipv6))
        vipKeys = Array(repeating: nil, count: layout.vipHashSlots)
        // Header constants; generation and checksums come with `seal`.
        slot.storeBytes(of: SnapshotLayout.magic, toByteOffset: SnapshotLayout.oMagic, as: UInt64.self)
        slot.storeBytes(of: SnapshotLayout.version, toByteOffset: SnapshotLayout.oVersion, as: UInt32.self)
        slot.storeBytes(of: UInt32(SnapshotLayout.headerSize), toByteOffset: SnapshotLayout.oHeaderSize, as: UInt32.self)
        slot.storeBytes(of: UInt64(layout.length), toByteOffset: SnapshotLayout.oLength, as: UInt64.self)
        slot.storeBytes(of: UInt32(DirtyChunks.chunkSize), toByteOffset: SnapshotLayout.oChunkSize, as: UInt32.self)
        slot.storeBytes(of: UInt32(dirty.chunkCount), toByteOffset: SnapshotLayout.oChunkCount, as: UInt32.self)
        let lim = SnapshotLayout.limitsArray(l)
        for (i, v) in lim.enumerated() {
            slot.storeBytes(of: UInt32(v), toByteOffset: SnapshotLayout.oLimits + 4 * i, as: UInt32.self)
        }
        let sections = SnapshotLayout.Section.allCases
        slot.storeBytes(of: UInt32(sections.count), toByteOffset: SnapshotLayout.oSectionCount, as: UInt32.self)
        for (i, s) in sections.enumerated() {
            let o = SnapshotLayout.oSections + 24 * i
            slot.storeBytes(of: s.rawValue, toByteOffset: o, as: UInt32.self)
            slot.storeBytes(of: UInt64(layout.offset(s)), toByteOffset: o + 8, as: UInt64.self)
            slot.storeBytes(of: UInt64(layout.lengths[s]!), toByteOffset: o + 16, as: UInt64.self)
        }
    }

    // MARK: raw writes (all marked dirty)

    func put<T>(_ v: T, _ off: Int) {
        slot.storeBytes(of: v, toByteOffset: off, as: T.self)
        dirty.mark(off, length: MemoryLayout<T>.size)
    }

    func putAddress(_ a: IPAddress, _ off: Int) {
        a.store(to: slot + off)
        dirty.mark(off, length: 16)
    }

    func zero(_ off: Int, _ n: Int) {
        guard n > 0 else { return }
        memset(slot + off, 0, n)
        dirty.mark(off, length: n)
    }

    func byte(_ off: Int) -> UInt8 { slot.load(fromByteOffset: off, as: UInt8.self) }

    // MARK: changes

    public func apply(_ change: SnapshotChange) throws {
        switch change {
        case .ports(let ports): try setPorts(ports)
        case .nextHopGroup(let id, let spec): try setNextHopGroup(id, spec)
        case .route4(let p, let nh):
            if let nh {
                try checkGroup(nh, "route \(p)")
                try v4.insert(p, nextHop: nh)
            } else {
                try v4.delete(p)
            }
        case .route6(let p, let nh):
            if let nh {
                try checkGroup(nh, "route \(p)")
                try v6.insert(p, nextHop: nh)
            } else {
                try v6.delete(p)
            }
        case .neighbors(let list): try setNeighbors(list)
        case .vip(let index, let spec): try setVIP(index, spec)
        }
    }

    func checkGroup(_ id: UInt32, _ what: String) throws {
        guard Int(id) < limits.nextHopGroups, byte(layout.offset(.nextHops) + Int(id) * SnapshotLayout.nextHopSize) != 0 else {
            throw SnapshotError.invalid("\(what) uses next-hop group \(id), which does not exist")
        }
    }

    func setPorts(_ ports: [PortSpec]) throws {
        guard ports.count <= limits.ports else { throw SnapshotError.invalid("\(ports.count) ports, at most \(limits.ports)") }
        for (i, p) in ports.enumerated() {
            guard p.mac.count == 6 else { throw SnapshotError.invalid("port \(i): MAC must be 6 bytes") }
            guard p.addresses.count <= 4 else { throw SnapshotError.invalid("port \(i): at most 4 addresses") }
        }
        let base = layout.offset(.ports)
        zero(base, layout.lengths[.ports]!)
        for (i, p) in ports.enumerated() {
            let r = base + i * SnapshotLayout.portSize
            put(UInt8(1), r)
            put(UInt8(p.addresses.count), r + 1)
            put(p.mtu, r + 2)
            for (k, b) in p.mac.enumerated() { put(b, r + 4 + k) }
            for (k, (a, len)) in p.addresses.enumerated() {
                let ar = r + 16 + 24 * k
                put(a.family, ar)
                put(len, ar + 1)
                putAddress(a, ar + 8)
            }
        }
    }

    func setNextHopGroup(_ id: UInt32, _ spec: NextHopGroupSpec?) throws {
        guard Int(id) < limits.nextHopGroups else {
            throw SnapshotError.invalid("next-hop group \(id) is beyond the limit of \(limits.nextHopGroups)")
        }
        if let spec {
            guard !spec.members.isEmpty || spec.kind == .drop else { throw SnapshotError.invalid("next-hop group \(id) has no members") }
            guard spec.members.count <= limits.ecmpWays else {
                throw SnapshotError.invalid("next-hop group \(id) has \(spec.members.count) members, at most \(limits.ecmpWays)")
            }
            for m in spec.members where Int(m.port) >= limits.ports {
                throw SnapshotError.invalid("next-hop group \(id): port \(m.port) is beyond the limit of \(limits.ports)")
            }
        }
        let r = layout.offset(.nextHops) + Int(id) * SnapshotLayout.nextHopSize
        let mbase = layout.offset(.members) + Int(id) * limits.ecmpWays * SnapshotLayout.memberSize
        zero(r, SnapshotLayout.nextHopSize)
        zero(mbase, limits.ecmpWays * SnapshotLayout.memberSize)
        guard let spec else { return }
        put(spec.kind.rawValue, r)
        put(UInt8(spec.members.count), r + 1)
        for (k, m) in spec.members.enumerated() {
            let mr = mbase + k * SnapshotLayout.memberSize
            put(m.port, mr)
            if let g = m.gateway {
                put(g.family, mr + 2)
                putAddress(g, mr + 8)
            }
        }
    }

    func setNeighbors(_ list: [NeighborSpec]) throws {
        guard list.count <= limits.neighbors else { throw SnapshotError.invalid("\(list.count) static neighbors, at most \(limits.neighbors)") }
        let sorted = list.sorted()
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.port == b.port && a.address == b.address {
            throw SnapshotError.invalid("static neighbor \(a.address) on port \(a.port) appears twice")
        }
        let base = layout.offset(.neighbors)
        zero(base, layout.lengths[.neighbors]!)
        put(UInt32(sorted.count), base)
        for (i, n) in sorted.enumerated() {
            guard n.mac.count == 6 else { throw SnapshotError.invalid("static neighbor \(n.address): MAC must be 6 bytes") }
            let r = base + 64 + i * SnapshotLayout.neighborSize
            put(n.port, r)
            put(n.address.family, r + 2)
            for (k, b) in n.mac.enumerated() { put(b, r + 4 + k) }
            putAddress(n.address, r + 16)
        }
    }

    // MARK: VIPs

    func vipRecord(_ index: Int) -> Int { layout.offset(.vips) + index * SnapshotLayout.vipSize }

    func setVIP(_ index: UInt32, _ spec: VIPSpec?) throws {
        let i = Int(index)
        guard i < limits.vips else { throw SnapshotError.invalid("VIP index \(index) is beyond the limit of \(limits.vips)") }
        var table: [UInt16] = []
        var backends: [BackendSpec] = []
        if let spec {
            guard spec.backends.count <= limits.backendsPerVIP else {
                throw SnapshotError.invalid("VIP \(spec.address): \(spec.backends.count) backends, at most \(limits.backendsPerVIP)")
            }
            guard Int(spec.tableSize) <= limits.maglevMaxSize else {
                throw SnapshotError.invalid("VIP \(spec.address): Maglev table size \(spec.tableSize) is above the limit of \(limits.maglevMaxSize)")
            }
            backends = spec.backends.sorted { $0.id < $1.id }
            // Drained and down backends get no new flows: weight 0 in the table.
            let maglev = backends.map { Maglev.Backend(id: UInt64($0.id), weight: $0.state == .up ? $0.weight : 0) }
            table = [UInt16](repeating: Maglev.noBackend, count: Int(spec.tableSize))
            do {
                try table.withUnsafeMutableBufferPointer { try Maglev.populate(maglev, into: $0) }
            } catch {
                throw SnapshotError.invalid("VIP \(spec.address): \(error)")
            }
            let key = VIPKey(address: spec.address.mapped, proto: spec.proto, port: spec.port)
            if let other = findVIP(key), other != i {
                throw SnapshotError.invalid("VIP \(spec.address) proto \(spec.proto) port \(spec.port) is already VIP \(other)")
            }
        }
        // Clear the old one: record, hash entry, backends, table.
        let r = vipRecord(i)
        if byte(r) != 0 {
            let old = VIPKey(address: IPAddress.load(from: slot + r + 16).mapped, proto: byte(r + 1),
                             port: slot.load(fromByteOffset: r + 4, as: UInt16.self))
            removeVIPKey(old)
            zero(r, SnapshotLayout.vipSize)
        }
        let bbase = layout.offset(.backends) + i * limits.backendsPerVIP * SnapshotLayout.backendSize
        let mbase = layout.offset(.maglev) + i * limits.maglevMaxSize * 2
        zero(bbase, limits.backendsPerVIP * SnapshotLayout.backendSize)
        zero(mbase, limits.maglevMaxSize * 2)
        guard let spec else { return }
        put(UInt8(1), r)
        put(spec.proto, r + 1)
        put(spec.encap.rawValue, r + 2)
        put(spec.hash.rawValue, r + 3)
        put(spec.port, r + 4)
        put(spec.guePort, r + 6)
        put(spec.tableSize, r + 8)
        put(UInt32(backends.count), r + 12)
        putAddress(spec.address, r + 16)
        if let s = spec.source {
            putAddress(s, r + 32)
            put(UInt8(1), r + 48)
        }
        put(spec.address.family, r + 49)
        for (k, b) in backends.enumerated() {
            let br = bbase + k * SnapshotLayout.backendSize
            put(b.id, br)
            put(b.weight, br + 4)
            put(b.state.rawValue, br + 8)
            put(b.address.family, br + 9)
            putAddress(b.address, br + 16)
        }
        table.withUnsafeBytes { t in
            (slot + mbase).copyMemory(from: t.baseAddress!, byteCount: t.count)
            dirty.mark(mbase, length: t.count)
        }
        insertVIPKey(VIPKey(address: spec.address.mapped, proto: spec.proto, port: spec.port), index: UInt32(i))
    }

    static func vipHome(address: UInt128, proto: UInt8, port: UInt16, mask: Int) -> Int {
        let h = Maglev.mix64(UInt64(truncatingIfNeeded: address >> 64) ^ Maglev.mix64(UInt64(truncatingIfNeeded: address) ^ UInt64(proto) << 16 ^ UInt64(port)))
        return Int(truncatingIfNeeded: h) & mask
    }

    func home(_ k: VIPKey) -> Int {
        SnapshotBuilder.vipHome(address: k.address, proto: k.proto, port: k.port, mask: layout.vipHashSlots - 1)
    }

    func distance(_ slotIndex: Int, _ home: Int) -> Int { (slotIndex - home) & (layout.vipHashSlots - 1) }

    func findVIP(_ key: VIPKey) -> Int? {
        var p = home(key)
        while let k = vipKeys[p] {
            if k == key { return Int(slot.load(fromByteOffset: layout.offset(.vipHash) + p * SnapshotLayout.vipHashSize + 20, as: UInt32.self)) }
            p = (p + 1) & (layout.vipHashSlots - 1)
        }
        return nil
    }

    func writeHashSlot(_ p: Int, _ key: VIPKey?, _ index: UInt32) {
        let r = layout.offset(.vipHash) + p * SnapshotLayout.vipHashSize
        zero(r, SnapshotLayout.vipHashSize)
        vipKeys[p] = key
        guard let key else { return }
        IPv6Prefix.store(key.address, to: slot + r)
        put(key.proto, r + 16)
        put(UInt8(1), r + 17)
        put(key.port, r + 18)
        put(index, r + 20)
    }

    func hashIndex(_ p: Int) -> UInt32 {
        slot.load(fromByteOffset: layout.offset(.vipHash) + p * SnapshotLayout.vipHashSize + 20, as: UInt32.self)
    }

    /// Ordered linear probing, as for LPM groups: runs sorted by (home, key).
    func insertVIPKey(_ key: VIPKey, index: UInt32) {
        let mask = layout.vipHashSlots - 1
        let h = home(key)
        var p = h
        while let k = vipKeys[p] {
            let dOld = distance(p, home(k)), dNew = distance(p, h)
            if dOld < dNew || (dOld == dNew && k > key) { break }
            p = (p + 1) & mask
        }
        var e = p
        while vipKeys[e] != nil { e = (e + 1) & mask }
        while e != p {
            let prev = (e - 1) & mask
            writeHashSlot(e, vipKeys[prev], hashIndex(prev))
            e = prev
        }
        writeHashSlot(p, key, index)
    }

    func removeVIPKey(_ key: VIPKey) {
        let mask = layout.vipHashSlots - 1
        var p = home(key)
        while let k = vipKeys[p], k != key { p = (p + 1) & mask }
        guard vipKeys[p] != nil else { return }
        var hole = p
        var i = (p + 1) & mask
        while let k = vipKeys[i], distance(i, home(k)) > 0 {
            writeHashSlot(hole, k, hashIndex(i))
            hole = i
            i = (i + 1) & mask
        }
        writeHashSlot(hole, nil, 0)
    }

    // MARK: sealing

    /// Writes the generation and the checksums of everything changed since the
    /// last seal. Returns the number of chunks checksummed.
    @discardableResult
    public func seal(generation: UInt64) -> Int {
        slot.storeBytes(of: generation, toByteOffset: SnapshotLayout.oGeneration, as: UInt64.self)
        let table = layout.offset(.chunkTable)
        let tableEnd = table + layout.lengths[.chunkTable]!
        var n = 0
        for c in dirty.take() {
            let lo = c << DirtyChunks.chunkShift
            let hi = min(layout.length, lo + DirtyChunks.chunkSize)
            // The header and the chunk table have checksums of their own.
            guard lo >= SnapshotLayout.headerSize, hi <= table || lo >= tableEnd else { continue }
            slot.storeBytes(of: crc32c(slot + lo, hi - lo), toByteOffset: table + 4 * c, as: UInt32.self)
            n += 1
        }
        let sum = crc32c(slot + table, 4 * layout.chunkCount)
        slot.storeBytes(of: sum, toByteOffset: SnapshotLayout.oChecksum, as: UInt32.self)
        slot.storeBytes(of: crc32c(slot, SnapshotLayout.oHeaderCRC), toByteOffset: SnapshotLayout.oHeaderCRC, as: UInt32.self)
        return n
    }

    /// Routes and groups, for tests and tools.
    public var ipv4: IPv4LPM { v4 }
    public var ipv6: IPv6LPM { v6 }
}

public enum SnapshotError: Error, Equatable, CustomStringConvertible {
    case invalid(String)
    case corrupt(String)

    public var description: String {
        switch self {
        case .invalid(let s): return s
        case .corrupt(let s): return "snapshot refused: \(s)"
        }
    }
}
