import CKeelIntrinsics

/// Where each section of a snapshot sits in its slot (see docs/table-format.md).
/// Everything is an offset from the slot's start and follows from the limits,
/// so a reader needs only the header to find its way.
public struct SnapshotLayout: Hashable, Sendable {
    public enum Section: UInt32, CaseIterable, Sendable {
        case chunkTable = 1, ipv4 = 2, ipv6 = 3, nextHops = 4, members = 5, ports = 6
        case neighbors = 7, vipHash = 8, vips = 9, backends = 10, maglev = 11
    }

    public static let magic: UInt64 = 0x4B45_454C_534E_4150 // "KEELSNAP"
    public static let version: UInt32 = 1
    public static let headerSize = 4096

    // Header fields.
    static let oMagic = 0, oVersion = 8, oHeaderSize = 12, oGeneration = 16, oLength = 24
    static let oChecksum = 32, oChunkSize = 36, oChunkCount = 40, oSectionCount = 44
    static let oLimits = 64 // 9 x u32
    static let oSections = 128 // 16 x (u32 kind, u32 pad, u64 offset, u64 length)
    static let oHeaderCRC = headerSize - 4

    // Record sizes.
    public static let nextHopSize = 16, memberSize = 32, portSize = 128, neighborSize = 32
    public static let vipHashSize = 32, vipSize = 64, backendSize = 32

    public let limits: SnapshotLimits
    public let offsets: [Section: Int]
    public let lengths: [Section: Int]
    public let length: Int
    public let vipHashSlots: Int

    /// 64 KiB chunks covering the whole slot (the header's and the table's own have entry 0).
    public var chunkCount: Int { (length + DirtyChunks.chunkSize - 1) >> DirtyChunks.chunkShift }

    /// (section, bytes, alignment) in slot order; the chunk table's size is set by init.
    static func sections(_ limits: SnapshotLimits, vipHashSlots slots: Int) -> [(Section, Int, Int)] {
        [
            // (section, bytes, alignment): LPM roots on 2 MiB for huge pages, the rest on chunk boundaries.
            (.chunkTable, 0, 1 << 16), // sized below
            (.ipv4, IPv4LPM.regionSize(tbl8Groups: limits.ipv4Groups), 2 << 20),
            (.ipv6, IPv6LPM.regionSize(tbl8Groups: limits.ipv6Groups), 2 << 20),
            (.nextHops, limits.nextHopGroups * SnapshotLayout.nextHopSize, 1 << 16),
            (.members, limits.nextHopGroups * limits.ecmpWays * SnapshotLayout.memberSize, 1 << 16),
            (.ports, limits.ports * SnapshotLayout.portSize, 1 << 16),
            (.neighbors, 64 + limits.neighbors * SnapshotLayout.neighborSize, 1 << 16),
            (.vipHash, slots * SnapshotLayout.vipHashSize, 1 << 16),
            (.vips, limits.vips * SnapshotLayout.vipSize, 1 << 16),
            (.backends, limits.vips * limits.backendsPerVIP * SnapshotLayout.backendSize, 1 << 16),
            (.maglev, limits.vips * limits.maglevMaxSize * 2, 1 << 16),
        ]
    }

    /// The largest slot a layout may have: far above any real table (the full
    /// Internet table needs 214 MiB), and below where the chunk table's sizing
    /// holds. A header whose limits need more is corrupt.
    public static let maxLength = 16 << 30

    /// Whether `limits` give a slot of at most `maxLength` bytes (checked
    /// before a layout is made from a header that may be corrupt).
    public static func fits(_ limits: SnapshotLimits) -> Bool {
        guard limits.vips >= 0, limits.vips < 1 << 24 else { return false }
        var total = headerSize
        for (_, size, align) in sections(limits, vipHashSlots: hashSlots(limits)) {
            total = (total + align - 1) / align * align + size
            if size < 0 || total > maxLength { return false }
        }
        return true
    }

    static func hashSlots(_ limits: SnapshotLimits) -> Int {
        var slots = 1
        while slots < limits.vips * 2 { slots <<= 1 }
        return slots
    }

    public init(_ limits: SnapshotLimits) {
        self.limits = limits
        let slots = SnapshotLayout.hashSlots(limits)
        vipHashSlots = slots
        let sizes = SnapshotLayout.sections(limits, vipHashSlots: slots)
        // The chunk table needs one u32 per 64 KiB of everything after the header.
        var approx = SnapshotLayout.headerSize
        for (_, size, align) in sizes { approx = (approx + align - 1) / align * align + size }
        // Generous: the table itself and the final rounding to 2 MiB add a little.
        let tableBytes = ((approx + (4 << 20)) >> DirtyChunks.chunkShift) * 4
        var off = SnapshotLayout.headerSize
        var o: [Section: Int] = [:], l: [Section: Int] = [:]
        for (s, size0, align) in sizes {
            let size = s == .chunkTable ? tableBytes : size0
            off = (off + align - 1) / align * align
            o[s] = off
            l[s] = size
            off += size
        }
        offsets = o
        lengths = l
        length = (off + (2 << 20) - 1) / (2 << 20) * (2 << 20)
        precondition(chunkCount * 4 <= tableBytes)
    }

    /// The limits as stored in a header (9 x u32), in this order.
    static func limitsArray(_ l: SnapshotLimits) -> [Int] {
        [l.ipv4Groups, l.ipv6Groups, l.nextHopGroups, l.ecmpWays, l.ports, l.neighbors, l.vips, l.backendsPerVIP, l.maglevMaxSize]
    }

    static func limits(from a: [Int]) -> SnapshotLimits {
        SnapshotLimits(ipv4Groups: a[0], ipv6Groups: a[1], nextHopGroups: a[2], ecmpWays: a[3], ports: a[4],
                       neighbors: a[5], vips: a[6], backendsPerVIP: a[7], maglevMaxSize: a[8])
    }

    public func offset(_ s: Section) -> Int { offsets[s]! }
}

/// CRC32C (Castagnoli), hardware-accelerated.
@inlinable
public func crc32c(_ p: UnsafeRawPointer, _ n: Int, seed: UInt32 = 0) -> UInt32 {
    keel_crc32c(seed, p, n)
}
