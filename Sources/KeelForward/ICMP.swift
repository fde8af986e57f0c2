import KeelPacket
import KeelTables

/// ICMP and ICMPv6 messages built by the data plane: echo replies (in place)
/// and errors (into a fresh buffer). No allocation: the caller passes memory.
public enum ICMP {
    /// RFC 1812 4.3.2.7 / RFC 4443 2.4(e): no error about an ICMP error, a
    /// later fragment, a packet sent to a broadcast or multicast address, or
    /// from a source that does not name one host.
    @inlinable
    public static func mayReportError(_ p: UnsafeRawPointer, _ info: PacketInfo) -> Bool {
        if info.laterFragment { return false }
        let l3 = Int(info.l3Offset)
        if info.l3 == PacketInfo.ipv4 {
            let dst = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 16, as: UInt32.self))
            if dst >> 28 == 0xE || dst == 0xFFFF_FFFF { return false }
            if info.l4Proto == 1 {
                let t = p.load(fromByteOffset: Int(info.l4Offset), as: UInt8.self)
                // Only queries (echo, timestamp, ...) may provoke an error; not errors.
                if t == 3 || t == 4 || t == 5 || t == 11 || t == 12 { return false }
            }
            return p.load(fromByteOffset: 0, as: UInt8.self) & 1 == 0 // not to a link broadcast/multicast frame
        }
        if p.load(fromByteOffset: l3 + 24, as: UInt8.self) == 0xFF { return false }
        if info.l4Proto == 58 && p.load(fromByteOffset: Int(info.l4Offset), as: UInt8.self) < 128 { return false }
        return true
    }

    /// Turns an ICMP/ICMPv6 echo request addressed to us into the reply, in
    /// place: addresses and MACs swapped, type changed, checksums updated.
    @inlinable
    public static func echoReply(_ p: UnsafeMutableRawPointer, _ info: PacketInfo) {
        let l3 = Int(info.l3Offset), l4 = Int(info.l4Offset)
        // MACs: reply to the sender from the address it sent to.
        for i in 0..<6 {
            let a = p.load(fromByteOffset: i, as: UInt8.self)
            p.storeBytes(of: p.load(fromByteOffset: 6 + i, as: UInt8.self), toByteOffset: i, as: UInt8.self)
            p.storeBytes(of: a, toByteOffset: 6 + i, as: UInt8.self)
        }
        let oldType = UInt16(p.load(fromByteOffset: l4, as: UInt8.self)) << 8 | UInt16(p.load(fromByteOffset: l4 + 1, as: UInt8.self))
        let c = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: l4 + 2, as: UInt16.self))
        if info.l3 == PacketInfo.ipv4 {
            let s = p.loadUnaligned(fromByteOffset: l3 + 12, as: UInt32.self)
            p.storeBytes(of: p.loadUnaligned(fromByteOffset: l3 + 16, as: UInt32.self), toByteOffset: l3 + 12, as: UInt32.self)
            p.storeBytes(of: s, toByteOffset: l3 + 16, as: UInt32.self)
            // A fresh TTL; the header checksum is recomputed (20-60 bytes).
            p.storeBytes(of: UInt8(64), toByteOffset: l3 + 8, as: UInt8.self)
            p.storeBytes(of: UInt16(0), toByteOffset: l3 + 10, as: UInt16.self)
            let ihl = Int(p.load(fromByteOffset: l3, as: UInt8.self) & 0xF) * 4
            p.storeBytes(of: Checksum.ipv4Header(p + l3, headerLength: ihl).bigEndian, toByteOffset: l3 + 10, as: UInt16.self)
            p.storeBytes(of: UInt8(0), toByteOffset: l4, as: UInt8.self)
            p.storeBytes(of: Checksum.update(c, old: oldType, new: oldType & 0x00FF).bigEndian, toByteOffset: l4 + 2, as: UInt16.self)
        } else {
            for i in 0..<16 {
                let a = p.load(fromByteOffset: l3 + 8 + i, as: UInt8.self)
                p.storeBytes(of: p.load(fromByteOffset: l3 + 24 + i, as: UInt8.self), toByteOffset: l3 + 8 + i, as: UInt8.self)
                p.storeBytes(of: a, toByteOffset: l3 + 24 + i, as: UInt8.self)
            }
            p.storeBytes(of: UInt8(64), toByteOffset: l3 + 7, as: UInt8.self)
            // Swapping the addresses leaves the pseudo-header sum as it was.
            p.storeBytes(of: UInt8(129), toByteOffset: l4, as: UInt8.self)
            p.storeBytes(of: Checksum.update(c, old: oldType, new: 129 << 8 | (oldType & 0x00FF)).bigEndian, toByteOffset: l4 + 2, as: UInt16.self)
        }
    }

    /// Builds an ICMP (IPv4) or ICMPv6 error about the frame at `p` into `out`
    /// (at least 1280 + 18 bytes), from `source` (16 bytes, IPv4 mapped: an
    /// address of the port the packet came in on) and with the given MACs.
    /// The message quotes as much of the offending packet as fits in 576 bytes
    /// (IPv4, RFC 1812 4.3.2.3) or 1280 bytes (IPv6, RFC 4443 2.4(c)).
    /// Returns the frame's length.
    @inlinable
    public static func error(_ p: UnsafeRawPointer, _ info: PacketInfo, type: UInt8, code: UInt8, mtu: UInt16,
                             source: UnsafeRawPointer, srcMAC: UnsafeRawPointer, dstMAC: UnsafeRawPointer,
                             into out: UnsafeMutableRawPointer) -> Int {
        let l3 = Int(info.l3Offset)
        out.copyMemory(from: dstMAC, byteCount: 6)
        (out + 6).copyMemory(from: srcMAC, byteCount: 6)
        let ip = out + 14
        if info.l3 == PacketInfo.ipv4 {
            out.storeBytes(of: UInt16(0x0800).bigEndian, toByteOffset: 12, as: UInt16.self)
            let quoted = min(Int(info.l3Length), 576 - 20 - 8)
            let total = 20 + 8 + quoted
            ip.storeBytes(of: UInt8(0x45), as: UInt8.self)
            ip.storeBytes(of: UInt8(0xC0), toByteOffset: 1, as: UInt8.self) // precedence: internetwork control
            ip.storeBytes(of: UInt16(total).bigEndian, toByteOffset: 2, as: UInt16.self)
            ip.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
            ip.storeBytes(of: UInt8(64), toByteOffset: 8, as: UInt8.self)
            ip.storeBytes(of: UInt8(1), toByteOffset: 9, as: UInt8.self)
            ip.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
            (ip + 12).copyMemory(from: source + 12, byteCount: 4)
            (ip + 16).copyMemory(from: p + l3 + 12, byteCount: 4)
            ip.storeBytes(of: Checksum.ipv4Header(ip, headerLength: 20).bigEndian, toByteOffset: 10, as: UInt16.self)
            let icmp = ip + 20
            icmp.storeBytes(of: type, as: UInt8.self)
            icmp.storeBytes(of: code, toByteOffset: 1, as: UInt8.self)
            icmp.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
            icmp.storeBytes(of: UInt16(0), toByteOffset: 4, as: UInt16.self)
            icmp.storeBytes(of: (type == 3 && code == 4 ? mtu : 0).bigEndian, toByteOffset: 6, as: UInt16.self)
            (icmp + 8).copyMemory(from: p + l3, byteCount: quoted)
            icmp.storeBytes(of: Checksum.finish(Checksum.sum(icmp, 8 + quoted)).bigEndian, toByteOffset: 2, as: UInt16.self)
            return 14 + total
        }
        out.storeBytes(of: UInt16(0x86DD).bigEndian, toByteOffset: 12, as: UInt16.self)
        let quoted = min(Int(info.l3Length), 1280 - 40 - 8)
        let payload = 8 + quoted
        ip.storeBytes(of: UInt32(0x6000_0000).bigEndian, as: UInt32.self)
        ip.storeBytes(of: UInt16(payload).bigEndian, toByteOffset: 4, as: UInt16.self)
        ip.storeBytes(of: UInt8(58), toByteOffset: 6, as: UInt8.self)
        ip.storeBytes(of: UInt8(64), toByteOffset: 7, as: UInt8.self)
        (ip + 8).copyMemory(from: source, byteCount: 16)
        (ip + 24).copyMemory(from: p + l3 + 8, byteCount: 16)
        let icmp = ip + 40
        icmp.storeBytes(of: type, as: UInt8.self)
        icmp.storeBytes(of: code, toByteOffset: 1, as: UInt8.self)
        icmp.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
        icmp.storeBytes(of: (type == 2 ? UInt32(mtu) : 0).bigEndian, toByteOffset: 4, as: UInt32.self)
        (icmp + 8).copyMemory(from: p + l3, byteCount: quoted)
        let sum = Checksum.sum(icmp, payload, initial: Checksum.pseudoHeader6(addresses: ip + 8, proto: 58, length: payload))
        icmp.storeBytes(of: Checksum.finish(sum).bigEndian, toByteOffset: 2, as: UInt16.self)
        return 14 + 40 + payload
    }
}

/// A token bucket per lcore for ICMP errors: `rate` per second, bursts of
/// `burst`. Time comes from the caller (the loop's clock), so no system call.
public struct TokenBucket: Sendable {
    public let rate: UInt64
    public let burst: UInt64
    @usableFromInline var tokens: UInt64
    @usableFromInline var last: UInt64

    public init(rate: UInt64, burst: UInt64, now: UInt64) {
        self.rate = rate
        self.burst = burst
        tokens = burst
        last = now
    }

    /// Takes one token if there is one; `now` in nanoseconds.
    @inlinable
    public mutating func take(now: UInt64) -> Bool {
        if now > last {
            let add = (now - last) * rate / 1_000_000_000
            if add > 0 {
                tokens = min(burst, tokens + add)
                last = now
            }
        }
        guard tokens > 0 else { return false }
        tokens -= 1
        return true
    }
}
