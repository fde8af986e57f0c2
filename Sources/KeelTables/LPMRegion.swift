/// The byte layout shared by the IPv4 and IPv6 LPM tables (see docs/table-format.md).
///
/// Everything inside a region is found by offset from its start, never by pointer,
/// so the same bytes can be mapped by two processes at different addresses.
///
///     offset 0      header (4 KiB, fields below)
///     offset 4096   root table: 2^24 entries of UInt32 (64 MiB)
///     then          tbl8 group slots: slots x 256 entries of UInt32, directly after
///                   the root, so one index space covers both (group g, entry j is
///                   entry 2^24 + g*256 + j)
///
/// Entry encoding (UInt32, native byte order):
///     0                   no route
///     bit 0 == 0          leaf: next hop + 1 in bits 1...31
///     bit 0 == 1          extended: tbl8 group index in bits 1...31
public enum LPMEntry {
    /// Returned by lookups when no route covers the address.
    public static let noRoute: UInt32 = .max
    /// Largest next hop a table can hold (31 bits minus the "no route" code).
    public static let maxNextHop: UInt32 = (1 << 31) - 2

    @inlinable @inline(__always)
    static func leaf(_ nextHop: UInt32) -> UInt32 { (nextHop &+ 1) << 1 }

    @inlinable @inline(__always)
    static func isExtended(_ e: UInt32) -> Bool { e & 1 != 0 }

    /// Decodes a leaf: 0 (no route) wraps to `noRoute`.
    @inlinable @inline(__always)
    public static func nextHop(_ e: UInt32) -> UInt32 { (e >> 1) &- 1 }
}

@usableFromInline
enum LPMLayout {
    static let magic: UInt64 = 0x4B45_454C_4C50_4D31 // "KEELLPM1"
    static let version: UInt32 = 1
    static let headerSize = 4096
    @usableFromInline static let rootBits = 24
    @usableFromInline static let rootEntries = 1 << 24
    static let groupEntries = 256

    // Header field offsets.
    static let oMagic = 0, oVersion = 8, oFamily = 12, oKeyBits = 16, oRootBits = 20
    static let oCapacity = 24, oGroupsInUse = 28
    static let oRouteCount = 40, oRootOffset = 48, oTotalSize = 64

    static func size(groupCapacity slots: Int) -> Int {
        headerSize + (rootEntries + slots * groupEntries) * 4
    }
}

/// A validated, read-only look at a region's header.
struct LPMHeader {
    let base: UnsafeRawPointer

    init(validating base: UnsafeRawPointer, size: Int, family: UInt32) throws {
        guard size >= LPMLayout.headerSize else {
            throw TableError.badRegion("\(size) bytes is smaller than the header")
        }
        self.base = base
        guard base.load(fromByteOffset: LPMLayout.oMagic, as: UInt64.self) == LPMLayout.magic else {
            throw TableError.badRegion("bad magic")
        }
        let v = base.load(fromByteOffset: LPMLayout.oVersion, as: UInt32.self)
        guard v == LPMLayout.version else {
            throw TableError.badRegion("layout version \(v), expected \(LPMLayout.version)")
        }
        let f = base.load(fromByteOffset: LPMLayout.oFamily, as: UInt32.self)
        guard f == family else { throw TableError.badRegion("address family \(f), expected \(family)") }
        let cap = Int(base.load(fromByteOffset: LPMLayout.oCapacity, as: UInt32.self))
        let total = Int(base.load(fromByteOffset: LPMLayout.oTotalSize, as: UInt64.self))
        guard total == LPMLayout.size(groupCapacity: cap), total <= size else {
            throw TableError.badRegion("declared size \(total) does not fit capacity \(cap) in \(size) bytes")
        }
        guard Int(base.load(fromByteOffset: LPMLayout.oRootOffset, as: UInt64.self)) == LPMLayout.headerSize else {
            throw TableError.badRegion("unexpected root offset")
        }
    }

    var entries: UnsafePointer<UInt32> {
        (base + LPMLayout.headerSize).assumingMemoryBound(to: UInt32.self)
    }
}
