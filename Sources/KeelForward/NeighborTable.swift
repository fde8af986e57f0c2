import KeelPacket
import KeelTables

/// Link-layer addresses of next hops, per lcore: fixed capacity, open
/// addressing, allocated once. Static neighbors come from the snapshot;
/// learned ones from ARP/ND replies (the data plane's main lcore fills them).
public struct NeighborTable: ~Copyable {
    @usableFromInline struct Entry {
        @usableFromInline var used: UInt8 = 0
        @usableFromInline var port: UInt16 = 0
        @usableFromInline var mac: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0)
        @usableFromInline var hi: UInt64 = 0
        @usableFromInline var lo: UInt64 = 0
        @usableFromInline init(used: UInt8 = 0, port: UInt16 = 0, mac: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0),
                               hi: UInt64 = 0, lo: UInt64 = 0) {
            self.used = used; self.port = port; self.mac = mac; self.hi = hi; self.lo = lo
        }
    }

    @usableFromInline let entries: UnsafeMutablePointer<Entry>
    @usableFromInline let mask: Int
    public private(set) var count = 0

    /// `capacity` is rounded up to a power of two; keep it at least twice the neighbors.
    public init(capacity: Int) {
        var n = 16
        while n < capacity { n <<= 1 }
        entries = .allocate(capacity: n)
        entries.initialize(repeating: Entry(), count: n)
        mask = n - 1
    }

    deinit { entries.deallocate() }

    @inlinable @inline(__always)
    static func slot(_ port: UInt16, _ hi: UInt64, _ lo: UInt64, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: FlowHash.mix(hi ^ FlowHash.mix(lo ^ UInt64(port)))) & mask
    }

    /// MAC for (port, address as 16 mapped bytes), or nil.
    @inlinable
    public func lookup(port: UInt16, address p: UnsafeRawPointer) -> (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)? {
        let hi = p.loadUnaligned(as: UInt64.self), lo = p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        var i = NeighborTable.slot(port, hi, lo, mask)
        while entries[i].used != 0 {
            if entries[i].hi == hi && entries[i].lo == lo && entries[i].port == port { return entries[i].mac }
            i = (i &+ 1) & mask
        }
        return nil
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

    /// The same from raw bytes (16-byte mapped address, 6-byte MAC): no
    /// allocation, for learning inside the packet loop.
    @discardableResult
    public mutating func set(port: UInt16, address p: UnsafeRawPointer, mac: UnsafeRawPointer) -> Bool {
        let hi = p.loadUnaligned(as: UInt64.self), lo = p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        var i = NeighborTable.slot(port, hi, lo, mask)
        while entries[i].used != 0 && !(entries[i].hi == hi && entries[i].lo == lo && entries[i].port == port) {
            i = (i + 1) & mask
        }
        if entries[i].used == 0 {
            guard count < (mask + 1) / 2 else { return false }
            count += 1
        }
        let m = (mac.load(as: UInt8.self), mac.load(fromByteOffset: 1, as: UInt8.self), mac.load(fromByteOffset: 2, as: UInt8.self),
                 mac.load(fromByteOffset: 3, as: UInt8.self), mac.load(fromByteOffset: 4, as: UInt8.self), mac.load(fromByteOffset: 5, as: UInt8.self))
        entries[i] = Entry(used: 1, port: port, mac: m, hi: hi, lo: lo)
        return true
    }
}
