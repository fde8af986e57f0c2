import KeelTables

/// The flow hash: which worker a packet goes to, which ECMP member, which
/// Maglev entry. A fixed function (no per-process seed), so every process and
/// every appliance of a fleet hashes a flow the same way.
///
///     h = mix(src) ^ rotl(mix(dst), 17) ^ mix(proto << 32 | sport << 16 | dport)
///
/// with mix = MurmurHash3's 64-bit finaliser (`Maglev.mix64`, one definition
/// for every hash that must agree across a fleet) over each 64-bit half. Fields
/// not hashed (ports for 3-tuple, fragments; everything but the source for
/// source hashing) are zero.
public enum FlowHash {
    @inlinable @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 { Maglev.mix64(x) }

    @inlinable @inline(__always)
    public static func address(_ hi: UInt64, _ lo: UInt64) -> UInt64 { mix(hi ^ mix(lo)) }

    /// IPv4 5-tuple.
    @inlinable @inline(__always)
    public static func v4(src: UInt32, dst: UInt32, proto: UInt8, srcPort: UInt16, dstPort: UInt16) -> UInt64 {
        let a = mix(UInt64(src)), b = mix(UInt64(dst))
        return a ^ (b << 17 | b >> 47) ^ mix(UInt64(proto) << 32 | UInt64(srcPort) << 16 | UInt64(dstPort))
    }

    /// IPv6 5-tuple; `addresses` points at the source, the destination follows (as in the header).
    @inlinable @inline(__always)
    public static func v6(addresses p: UnsafeRawPointer, proto: UInt8, srcPort: UInt16, dstPort: UInt16) -> UInt64 {
        let a = address(p.loadUnaligned(as: UInt64.self), p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let b = address(p.loadUnaligned(fromByteOffset: 16, as: UInt64.self), p.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        return a ^ (b << 17 | b >> 47) ^ mix(UInt64(proto) << 32 | UInt64(srcPort) << 16 | UInt64(dstPort))
    }

    /// IPv6 5-tuple with the two addresses anywhere (16 bytes each); same value as `v6(addresses:)`.
    @inlinable @inline(__always)
    public static func v6(src: UnsafeRawPointer, dst: UnsafeRawPointer, proto: UInt8, srcPort: UInt16, dstPort: UInt16) -> UInt64 {
        let a = address(src.loadUnaligned(as: UInt64.self), src.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let b = address(dst.loadUnaligned(as: UInt64.self), dst.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        return a ^ (b << 17 | b >> 47) ^ mix(UInt64(proto) << 32 | UInt64(srcPort) << 16 | UInt64(dstPort))
    }

    /// The hash of a parsed frame: 5-tuple, or 3-tuple for fragments (all
    /// fragments of a datagram land together).
    @inlinable
    public static func of(_ p: UnsafeRawPointer, _ info: PacketInfo) -> UInt64 {
        let l3 = Int(info.l3Offset)
        let sp = info.fragment ? 0 : info.srcPort, dp = info.fragment ? 0 : info.dstPort
        if info.l3 == PacketInfo.ipv4 {
            return v4(src: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 12, as: UInt32.self)),
                      dst: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 16, as: UInt32.self)),
                      proto: info.l4Proto, srcPort: sp, dstPort: dp)
        }
        return v6(addresses: p + l3 + 8, proto: info.l4Proto, srcPort: sp, dstPort: dp)
    }
}
