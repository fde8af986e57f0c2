/// Read side of a snapshot: pointers into a slot, nothing else. Built once per
/// slot when a reader attaches; switching snapshots is choosing the other one.
@frozen
public struct Snapshot: @unchecked Sendable {
    public let base: UnsafeRawPointer
    public let ipv4: IPv4LPMView
    public let ipv6: IPv6LPMView
    @usableFromInline let nextHops: UnsafeRawPointer
    @usableFromInline let members: UnsafeRawPointer
    @usableFromInline let ports: UnsafeRawPointer
    @usableFromInline let neighbors: UnsafeRawPointer
    @usableFromInline let vipHash: UnsafeRawPointer
    @usableFromInline let vips: UnsafeRawPointer
    @usableFromInline let backends: UnsafeRawPointer
    @usableFromInline let maglev: UnsafeRawPointer
    @usableFromInline let ecmpWays: Int
    @usableFromInline let backendsPerVIP: Int
    @usableFromInline let maglevMaxSize: Int
    @usableFromInline let vipHashMask: Int

    /// Views a slot whose header has been verified (`SnapshotVerifier`).
    public init(verified base: UnsafeRawPointer, layout: SnapshotLayout) {
        self.base = base
        ipv4 = IPv4LPMView(unchecked: base + layout.offset(.ipv4))
        ipv6 = IPv6LPMView(unchecked: base + layout.offset(.ipv6))
        nextHops = base + layout.offset(.nextHops)
        members = base + layout.offset(.members)
        ports = base + layout.offset(.ports)
        neighbors = base + layout.offset(.neighbors)
        vipHash = base + layout.offset(.vipHash)
        vips = base + layout.offset(.vips)
        backends = base + layout.offset(.backends)
        maglev = base + layout.offset(.maglev)
        ecmpWays = layout.limits.ecmpWays
        backendsPerVIP = layout.limits.backendsPerVIP
        maglevMaxSize = layout.limits.maglevMaxSize
        vipHashMask = layout.vipHashSlots - 1
    }

    @inlinable public var generation: UInt64 { base.load(fromByteOffset: 16, as: UInt64.self) }

    // MARK: next hops

    /// Kind of next-hop group `id` (0: unused) and its member count.
    @inlinable @inline(__always)
    public func nextHopGroup(_ id: UInt32) -> (kind: UInt8, count: Int) {
        let r = nextHops + Int(id) &* SnapshotLayout.nextHopSize
        return (r.load(as: UInt8.self), Int(r.load(fromByteOffset: 1, as: UInt8.self)))
    }

    /// Member `k` of group `id`: out port and gateway (16 bytes, IPv4 mapped; family 0 = none).
    @inlinable @inline(__always)
    public func member(_ id: UInt32, _ k: Int) -> (port: UInt16, family: UInt8, gateway: UnsafeRawPointer) {
        let r = members + (Int(id) &* ecmpWays &+ k) &* SnapshotLayout.memberSize
        return (r.load(as: UInt16.self), r.load(fromByteOffset: 2, as: UInt8.self), r + 8)
    }

    // MARK: ports

    @inlinable
    public func portMTU(_ port: Int) -> UInt16 { ports.load(fromByteOffset: port &* SnapshotLayout.portSize &+ 2, as: UInt16.self) }

    @inlinable
    public func portPresent(_ port: Int) -> Bool { ports.load(fromByteOffset: port &* SnapshotLayout.portSize, as: UInt8.self) != 0 }

    /// Address `k` of a port: family (0 = none), prefix length, 16 bytes.
    public func portAddress(_ port: Int, _ k: Int) -> (family: UInt8, length: UInt8, address: IPAddress) {
        let r = ports + port * SnapshotLayout.portSize + 16 + 24 * k
        return (r.load(as: UInt8.self), r.load(fromByteOffset: 1, as: UInt8.self), IPAddress.load(from: r + 8))
    }

    /// The first address of `family` (4 or 6) on `port`, as 16 bytes (IPv4 mapped) into `out`; false if none.
    @inlinable
    public func firstPortAddress(_ port: Int, family: UInt8, into out: UnsafeMutableRawPointer) -> Bool {
        for k in 0..<4 {
            let r = ports + (port &* SnapshotLayout.portSize &+ 16 &+ 24 &* k)
            if r.load(as: UInt8.self) == family {
                out.copyMemory(from: r + 8, byteCount: 16)
                return true
            }
        }
        return false
    }

    /// Whether the 6 bytes at `p` are `port`'s MAC.
    @inlinable @inline(__always)
    public func isPortMAC(_ port: Int, _ p: UnsafeRawPointer) -> Bool {
        let m = ports + (port &* SnapshotLayout.portSize &+ 4)
        return m.loadUnaligned(as: UInt32.self) == p.loadUnaligned(as: UInt32.self)
            && m.loadUnaligned(fromByteOffset: 4, as: UInt16.self) == p.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
    }

    /// Port `port`'s MAC as the low 6 bytes of a word (memory order, as a
    /// little-endian load of a frame's first 8 bytes masked to 48 bits reads it).
    @inlinable
    public func portMACWord(_ port: Int) -> UInt64 {
        let m = ports + (port &* SnapshotLayout.portSize &+ 4)
        return UInt64(m.loadUnaligned(as: UInt32.self)) | UInt64(m.loadUnaligned(fromByteOffset: 4, as: UInt16.self)) << 32
    }

    @inlinable @inline(__always)
    public func copyPortMAC(_ port: Int, to p: UnsafeMutableRawPointer) {
        p.copyMemory(from: ports + (port &* SnapshotLayout.portSize &+ 4), byteCount: 6)
    }

    public func portMAC(_ port: Int) -> [UInt8] {
        (0..<6).map { ports.load(fromByteOffset: port * SnapshotLayout.portSize + 4 + $0, as: UInt8.self) }
    }

    // MARK: neighbors

    public var staticNeighborCount: Int { Int(neighbors.load(as: UInt32.self)) }

    public func staticNeighbor(_ i: Int) -> NeighborSpec {
        let r = neighbors + 64 + i * SnapshotLayout.neighborSize
        return NeighborSpec(port: r.load(as: UInt16.self), address: IPAddress.load(from: r + 16),
                            mac: (0..<6).map { r.load(fromByteOffset: 4 + $0, as: UInt8.self) })
    }

    // MARK: VIPs

    /// VIP index for (address, protocol, port), trying the port and then "all ports" (0).
    /// `address` is 16 bytes in network order (IPv4 mapped).
    @inlinable
    public func vip(address: UnsafeRawPointer, proto: UInt8, port: UInt16) -> Int32 {
        vip(hi: address.loadUnaligned(as: UInt64.self), lo: (address + 8).loadUnaligned(as: UInt64.self), proto: proto, port: port)
    }

    /// The same for an address given as its two 8-byte halves as they lie in
    /// memory (network order), e.g. built in registers from an IPv4 address.
    @inlinable @inline(__always)
    public func vip(hi: UInt64, lo: UInt64, proto: UInt8, port: UInt16) -> Int32 {
        let r = vipLookup(hi, lo, proto, port)
        return r >= 0 ? r : vipLookup(hi, lo, proto, 0)
    }

    /// The VIP hash's key words of an IPv4 address (host order): ::ffff:a.b.c.d as two raw 8-byte halves.
    @inlinable @inline(__always)
    public static func mappedWords(v4 a: UInt32) -> (hi: UInt64, lo: UInt64) {
        (0, UInt64(UInt32(0xFFFF).bigEndian) | UInt64(a.bigEndian) << 32)
    }

    @inlinable @inline(__always)
    func vipLookup(_ hiRaw: UInt64, _ loRaw: UInt64, _ proto: UInt8, _ port: UInt16) -> Int32 {
        let hi = UInt64(bigEndian: hiRaw), lo = UInt64(bigEndian: loRaw)
        let h = Maglev.mix64(hi ^ Maglev.mix64(lo ^ UInt64(proto) << 16 ^ UInt64(port)))
        var p = Int(truncatingIfNeeded: h) & vipHashMask
        var d = 0
        while true {
            let r = vipHash + p &* SnapshotLayout.vipHashSize
            if r.load(fromByteOffset: 17, as: UInt8.self) == 0 { return -1 }
            if r.loadUnaligned(as: UInt64.self) == hiRaw, r.loadUnaligned(fromByteOffset: 8, as: UInt64.self) == loRaw,
               r.load(fromByteOffset: 16, as: UInt8.self) == proto, r.load(fromByteOffset: 18, as: UInt16.self) == port {
                return Int32(r.load(fromByteOffset: 20, as: UInt32.self))
            }
            // Ordered probing: past the run's longest distance nothing can match.
            d &+= 1
            if d > vipHashMask { return -1 }
            p = (p &+ 1) & vipHashMask
        }
    }

    /// A 256-bit filter of the VIP addresses' last bytes (`filter` = 4 words):
    /// a packet whose destination's last byte is not in it is no VIP's, and
    /// skips the hash probe. Built per lcore when the snapshot changes (a scan
    /// of the VIP hash: 2 x the VIP limit slots).
    public func vipAddressFilter(into filter: UnsafeMutablePointer<UInt64>) {
        for w in 0..<4 { filter[w] = 0 }
        for slot in 0...vipHashMask {
            let r = vipHash + slot * SnapshotLayout.vipHashSize
            guard r.load(fromByteOffset: 17, as: UInt8.self) != 0 else { continue }
            let b = Int(r.load(fromByteOffset: 15, as: UInt8.self))
            filter[b >> 6] |= 1 << UInt64(b & 63)
        }
    }

    public struct VIPRecord: Sendable {
        public let proto: UInt8, encap: UInt8, hash: UInt8, port: UInt16, guePort: UInt16
        public let tableSize: Int, backendCount: Int
        public let address: IPAddress, source: IPAddress?
    }

    public func vipRecord(_ index: Int) -> VIPRecord? {
        let r = vips + index * SnapshotLayout.vipSize
        guard r.load(as: UInt8.self) != 0 else { return nil }
        return VIPRecord(proto: r.load(fromByteOffset: 1, as: UInt8.self), encap: r.load(fromByteOffset: 2, as: UInt8.self),
                         hash: r.load(fromByteOffset: 3, as: UInt8.self), port: r.load(fromByteOffset: 4, as: UInt16.self),
                         guePort: r.load(fromByteOffset: 6, as: UInt16.self),
                         tableSize: Int(r.load(fromByteOffset: 8, as: UInt32.self)),
                         backendCount: Int(r.load(fromByteOffset: 12, as: UInt32.self)),
                         address: IPAddress.load(from: r + 16),
                         source: r.load(fromByteOffset: 48, as: UInt8.self) != 0 ? IPAddress.load(from: r + 32) : nil)
    }

    /// VIP `index`'s record, raw, for the fast path. Offsets: 0 present, 1 protocol,
    /// 2 encap (1 IPIP, 2 GUE), 3 hash fields (5, 3, 1), 4 port, 6 GUE port,
    /// 8 Maglev table size (UInt32), 12 backend count (UInt32), 16 address,
    /// 32 outer source, 48 outer source present, 49 family (addresses: 16 bytes, IPv4 mapped).
    @inlinable @inline(__always)
    public func vipRaw(_ index: Int) -> UnsafeRawPointer { vips + index &* SnapshotLayout.vipSize }

    /// Backend `k` of VIP `index`, raw (sorted by id): 0 id (UInt32), 4 weight, 8 state (BackendState), 9 family, 16 address.
    @inlinable @inline(__always)
    public func backendRaw(_ index: Int, _ k: Int) -> UnsafeRawPointer {
        backends + (index &* backendsPerVIP &+ k) &* SnapshotLayout.backendSize
    }

    /// Maglev entry `i` of VIP `index`: a position in its backend list (0xFFFF: none).
    @inlinable @inline(__always)
    public func maglevEntry(_ index: Int, _ i: Int) -> UInt16 {
        maglev.load(fromByteOffset: (index &* maglevMaxSize &+ i) &* 2, as: UInt16.self)
    }

    public func backend(_ vipIndex: Int, _ k: Int) -> BackendSpec {
        let r = backends + (vipIndex * backendsPerVIP + k) * SnapshotLayout.backendSize
        return BackendSpec(id: r.load(as: UInt32.self), address: IPAddress.load(from: r + 16),
                           weight: r.load(fromByteOffset: 4, as: UInt32.self),
                           state: BackendState(rawValue: r.load(fromByteOffset: 8, as: UInt8.self)) ?? .down)
    }
}

/// Checks a slot before anyone reads it: header, sizes, checksums.
public enum SnapshotVerifier {
    /// The header alone: magic, version, header checksum, sizes against
    /// what the mapping holds, and a layout that matches the section table.
    public static func header(_ slot: UnsafeRawPointer, available: Int) throws -> (generation: UInt64, layout: SnapshotLayout) {
        guard available >= SnapshotLayout.headerSize else { throw SnapshotError.corrupt("slot of \(available) bytes is smaller than a header") }
        let magic = slot.load(fromByteOffset: SnapshotLayout.oMagic, as: UInt64.self)
        guard magic == SnapshotLayout.magic else { throw SnapshotError.corrupt("bad magic 0x\(String(magic, radix: 16))") }
        let version = slot.load(fromByteOffset: SnapshotLayout.oVersion, as: UInt32.self)
        guard version == SnapshotLayout.version else {
            throw SnapshotError.corrupt("layout version \(version), this build reads version \(SnapshotLayout.version)")
        }
        let crc = slot.load(fromByteOffset: SnapshotLayout.oHeaderCRC, as: UInt32.self)
        guard crc == crc32c(slot, SnapshotLayout.oHeaderCRC) else { throw SnapshotError.corrupt("header checksum mismatch") }
        let limits = SnapshotLayout.limits(from: (0..<9).map {
            Int(slot.load(fromByteOffset: SnapshotLayout.oLimits + 4 * $0, as: UInt32.self))
        })
        guard limits.ipv4Groups > 0, limits.ipv6Groups > 0, limits.ipv4Groups < 1 << 24, limits.ipv6Groups < 1 << 24,
              limits.nextHopGroups < 1 << 24, limits.ecmpWays < 256, limits.ports < 4096, limits.neighbors < 1 << 24,
              limits.vips < 1 << 20, limits.backendsPerVIP <= 65535, limits.maglevMaxSize < 1 << 25 else {
            throw SnapshotError.corrupt("limits out of range")
        }
        guard SnapshotLayout.fits(limits) else { throw SnapshotError.corrupt("limits need a slot over \(SnapshotLayout.maxLength >> 30) GiB") }
        let layout = SnapshotLayout(limits)
        // Compared as stored (UInt64): converting a corrupt value to Int first would trap.
        let stored = slot.load(fromByteOffset: SnapshotLayout.oLength, as: UInt64.self)
        let length = Int(truncatingIfNeeded: stored)
        guard stored == UInt64(layout.length) else { throw SnapshotError.corrupt("length \(length) does not match the limits' layout (\(layout.length))") }
        guard length <= available else { throw SnapshotError.corrupt("snapshot of \(length) bytes exceeds its slot (\(available) bytes): truncated file?") }
        let count = Int(slot.load(fromByteOffset: SnapshotLayout.oSectionCount, as: UInt32.self))
        guard count == SnapshotLayout.Section.allCases.count else { throw SnapshotError.corrupt("\(count) sections") }
        for (i, s) in SnapshotLayout.Section.allCases.enumerated() {
            let o = SnapshotLayout.oSections + 24 * i
            guard slot.load(fromByteOffset: o, as: UInt32.self) == s.rawValue,
                  slot.load(fromByteOffset: o + 8, as: UInt64.self) == UInt64(layout.offset(s)),
                  slot.load(fromByteOffset: o + 16, as: UInt64.self) == UInt64(layout.lengths[s]!) else {
                throw SnapshotError.corrupt("section table entry \(i) does not match the layout")
            }
        }
        guard Int(slot.load(fromByteOffset: SnapshotLayout.oChunkCount, as: UInt32.self)) == layout.chunkCount,
              Int(slot.load(fromByteOffset: SnapshotLayout.oChunkSize, as: UInt32.self)) == DirtyChunks.chunkSize else {
            throw SnapshotError.corrupt("chunk geometry does not match the layout")
        }
        return (slot.load(fromByteOffset: SnapshotLayout.oGeneration, as: UInt64.self), layout)
    }

    /// The whole snapshot: header, chunk table, and the data chunks, all of
    /// them or (given the table this slot had when last verified) only those
    /// whose checksum changed since. Returns the chunk table to pass next time.
    public static func verify(_ slot: UnsafeRawPointer, available: Int, previous: [UInt32]? = nil) throws -> (generation: UInt64, layout: SnapshotLayout, table: [UInt32]) {
        let (generation, layout) = try header(slot, available: available)
        let tableOff = layout.offset(.chunkTable)
        let n = layout.chunkCount
        let sum = slot.load(fromByteOffset: SnapshotLayout.oChecksum, as: UInt32.self)
        guard sum == crc32c(slot + tableOff, 4 * n) else { throw SnapshotError.corrupt("chunk table checksum mismatch") }
        let table = (0..<n).map { slot.load(fromByteOffset: tableOff + 4 * $0, as: UInt32.self) }
        let tableEnd = tableOff + layout.lengths[.chunkTable]!
        for c in 0..<n {
            if let previous, previous.count == n, previous[c] == table[c] { continue }
            let lo = c << DirtyChunks.chunkShift, hi = min(layout.length, lo + DirtyChunks.chunkSize)
            guard lo >= SnapshotLayout.headerSize, hi <= tableOff || lo >= tableEnd else { continue }
            guard crc32c(slot + lo, hi - lo) == table[c] else {
                throw SnapshotError.corrupt("checksum mismatch in bytes \(lo)..<\(hi) of generation \(generation)")
            }
        }
        return (generation, layout, table)
    }
}
