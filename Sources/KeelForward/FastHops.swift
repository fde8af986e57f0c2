import KeelTables

/// A routing lcore's cache of whole rewrites for the common packet: per
/// (next-hop group, member) of a `forward` group whose members are all
/// gateways with known MACs, the Ethernet header to write (neighbor MAC,
/// out-port MAC), the out port, its MTU and the group's member count. With
/// it, an IPv4 TCP/UDP packet that passed `Parser.plainIPv4` is forwarded
/// with one LPM result, one 32-byte entry, a TTL decrement and two stores
/// (`Work.processBurst`); everything else takes the full path, which fills
/// the entries. Entries are valid while their tag equals the lcore's
/// neighbor-cache tag (neighbor table version and snapshot), so a MAC
/// change, a route change or a snapshot switch sends every packet back to
/// the full path once.
///
/// Entry layout (32 bytes): tag (8), Ethernet destination + source (12),
/// out port (2), MTU (2), member count (1).
public struct FastHops: @unchecked Sendable {
    public static let entrySize = 32
    @usableFromInline let entries: UnsafeMutableRawPointer
    /// Groups the cache holds (ids below this).
    public let groups: Int
    @usableFromInline let ways: Int

    public init(groups: Int, ways: Int) {
        self.groups = max(groups, 1)
        self.ways = max(ways, 1)
        let bytes = self.groups * self.ways * FastHops.entrySize
        entries = .allocate(byteCount: bytes, alignment: 64)
        entries.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    }

    public func deallocate() { entries.deallocate() }

    /// Member-major like `NeighborCache`: member 0 of every group together.
    @inlinable @inline(__always)
    public func entry(_ group: UInt32, _ member: Int) -> UnsafeMutableRawPointer {
        entries + (member &* groups &+ Int(group)) &* FastHops.entrySize
    }

    /// Fills the entries of `group` from the snapshot and the MACs `cache`
    /// holds under `tag`; leaves them invalid unless the group forwards, every
    /// member is a gateway and every gateway's MAC is cached. Called by the
    /// full path after it forwarded a packet by this group (so the MACs it
    /// needed were just cached). True when the entries are now valid.
    @discardableResult
    public func fill(_ group: UInt32, snapshot s: Snapshot, cache: NeighborCache) -> Bool {
        guard Int(group) < groups else { return false }
        let (kind, count) = s.nextHopGroup(group)
        guard kind == NextHopKind.forward.rawValue, count >= 1, count <= ways else { return false }
        for k in 0..<count {
            guard s.member(group, k).family != 0, cache.get(group, k) != 0 else { return false }
        }
        for k in 0..<count {
            let w = cache.get(group, k)
            let port = Int(s.member(group, k).port)
            let e = entry(group, k)
            e.storeBytes(of: UInt32(truncatingIfNeeded: w), toByteOffset: 8, as: UInt32.self)
            e.storeBytes(of: UInt16(truncatingIfNeeded: w >> 32), toByteOffset: 12, as: UInt16.self)
            s.copyPortMAC(port, to: e + 14)
            e.storeBytes(of: UInt16(port), toByteOffset: 20, as: UInt16.self)
            e.storeBytes(of: s.portMTU(port), toByteOffset: 22, as: UInt16.self)
            e.storeBytes(of: UInt8(count), toByteOffset: 24, as: UInt8.self)
            e.storeBytes(of: cache.tag, as: UInt64.self)
        }
        return true
    }
}
