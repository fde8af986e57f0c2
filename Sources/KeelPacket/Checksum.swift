/// Internet checksums (RFC 1071) and their incremental update (RFC 1624).
/// Everything works on raw bytes in network order; nothing allocates.
public enum Checksum {
    /// One's-complement sum of `length` bytes at `p`, added to `initial`,
    /// not yet folded. Bytes are taken as big-endian 16-bit words.
    @inlinable
    public static func sum(_ p: UnsafeRawPointer, _ length: Int, initial: UInt64 = 0) -> UInt64 {
        var s = initial
        var i = 0
        // 4 bytes at a time into a 64-bit accumulator: carries cannot overflow
        // before 2^32 additions.
        while i &+ 4 <= length {
            s &+= UInt64(UInt32(bigEndian: (p + i).loadUnaligned(as: UInt32.self)))
            i &+= 4
        }
        if i &+ 2 <= length {
            s &+= UInt64(UInt16(bigEndian: (p + i).loadUnaligned(as: UInt16.self)))
            i &+= 2
        }
        if i < length { s &+= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << 8 }
        return s
    }

    /// The sum of a 20-byte IPv4 header (no options), straight-line. Native
    /// byte order: the one's-complement sum is the same in either order up to
    /// a byte swap, so "folds to 0xFFFF" is order-independent.
    @inlinable @inline(__always)
    public static func sum20(_ p: UnsafeRawPointer) -> UInt64 {
        UInt64(p.loadUnaligned(as: UInt32.self)) &+ UInt64(p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            &+ UInt64(p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) &+ UInt64(p.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
            &+ UInt64(p.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
    }

    /// Folds a sum to 16 bits (end-around carry).
    @inlinable @inline(__always)
    public static func fold(_ s: UInt64) -> UInt16 {
        var x = s
        x = (x & 0xFFFF_FFFF) &+ (x >> 32)
        x = (x & 0xFFFF) &+ (x >> 16)
        x = (x & 0xFFFF) &+ (x >> 16)
        x = (x & 0xFFFF) &+ (x >> 16)
        return UInt16(truncatingIfNeeded: x)
    }

    /// The checksum field value for data summing to `s` (one's complement of the fold).
    @inlinable @inline(__always)
    public static func finish(_ s: UInt64) -> UInt16 { ~fold(s) }

    /// IPv4 header checksum over `headerLength` bytes (with the field as it is).
    /// A correct header gives 0 here... as `verify`, or the value to store when
    /// the checksum field was zeroed first.
    @inlinable
    public static func ipv4Header(_ p: UnsafeRawPointer, headerLength: Int) -> UInt16 {
        finish(sum(p, headerLength))
    }

    /// RFC 1624 eqn. 3: the new checksum when one 16-bit word changes from `old` to `new`.
    ///     HC' = ~(~HC + ~m + m')
    @inlinable @inline(__always)
    public static func update(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        ~fold(UInt64(~checksum) &+ UInt64(~old) &+ UInt64(new))
    }

    /// Same for a 32-bit field (two words), e.g. an IPv4 address.
    @inlinable @inline(__always)
    public static func update32(_ checksum: UInt16, old: UInt32, new: UInt32) -> UInt16 {
        ~fold(UInt64(~checksum) &+ UInt64(~UInt16(truncatingIfNeeded: old >> 16)) &+ UInt64(~UInt16(truncatingIfNeeded: old))
              &+ UInt64(new >> 16) &+ UInt64(new & 0xFFFF))
    }

    /// Pseudo-header sum for TCP/UDP/ICMPv6 over IPv4.
    @inlinable
    public static func pseudoHeader4(src: UInt32, dst: UInt32, proto: UInt8, length: Int) -> UInt64 {
        UInt64(src >> 16) &+ UInt64(src & 0xFFFF) &+ UInt64(dst >> 16) &+ UInt64(dst & 0xFFFF) &+ UInt64(proto) &+ UInt64(length)
    }

    /// Pseudo-header sum over IPv6: `addresses` points at the source address
    /// (the destination follows it, as in the IPv6 header).
    @inlinable
    public static func pseudoHeader6(addresses: UnsafeRawPointer, proto: UInt8, length: Int) -> UInt64 {
        sum(addresses, 32) &+ UInt64(proto) &+ UInt64(length)
    }
}

/// IPv4 TTL decrement with the checksum updated incrementally (RFC 1624):
/// TTL and protocol share one 16-bit word, so the word drops by 0x0100.
@inlinable @inline(__always)
public func decrementTTL(ipv4 p: UnsafeMutableRawPointer) {
    let ttl = p.load(fromByteOffset: 8, as: UInt8.self)
    let proto = p.load(fromByteOffset: 9, as: UInt8.self)
    let old = UInt16(ttl) << 8 | UInt16(proto)
    let new = old &- 0x0100
    let c = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 10, as: UInt16.self))
    p.storeBytes(of: ttl &- 1, toByteOffset: 8, as: UInt8.self)
    p.storeBytes(of: Checksum.update(c, old: old, new: new).bigEndian, toByteOffset: 10, as: UInt16.self)
}

/// `decrementTTL` for a header known to have TTL > 1, with the RFC 1624
/// update specialised: the TTL/protocol word always drops by 0x0100, so
/// ~m + m' is the constant 0xFEFF and one fold is enough. Same result as
/// `decrementTTL` (a unit test compares them for every checksum value).
@inlinable @inline(__always)
public func decrementTTLFast(ipv4 p: UnsafeMutableRawPointer) {
    p.storeBytes(of: p.load(fromByteOffset: 8, as: UInt8.self) &- 1, toByteOffset: 8, as: UInt8.self)
    let c = UInt32(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 10, as: UInt16.self)))
    let x = (~c & 0xFFFF) &+ 0xFEFF
    p.storeBytes(of: (~UInt16(truncatingIfNeeded: (x & 0xFFFF) &+ (x >> 16))).bigEndian, toByteOffset: 10, as: UInt16.self)
}
