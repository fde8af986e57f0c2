import KeelPacket
import KeelTables
#if canImport(Glibc)
import Glibc
#endif

/// ARP (RFC 826) and IPv6 Neighbor Discovery (RFC 4861) messages: answering
/// for the appliance's own addresses, asking for next hops, learning from
/// answers. Frames are read and written in place or into caller memory.
public enum NeighborDiscovery {
    /// Whether port `port` of the snapshot has `address` (16 bytes, IPv4 mapped).
    @inlinable
    public static func isLocal(_ s: Snapshot, port: Int, address p: UnsafeRawPointer) -> Bool {
        for k in 0..<4 {
            let a = s.portAddress(port, k)
            if a.family == 0 { continue }
            var b = (UInt64(0), UInt64(0))
            let same = withUnsafeMutableBytes(of: &b) { m -> Bool in
                a.address.store(to: m.baseAddress!)
                return memcmp16(m.baseAddress!, p)
            }
            if same { return true }
        }
        return false
    }

    @inlinable @inline(__always)
    static func memcmp16(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer) -> Bool {
        a.loadUnaligned(as: UInt64.self) == b.loadUnaligned(as: UInt64.self)
            && a.loadUnaligned(fromByteOffset: 8, as: UInt64.self) == b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
    }

    // MARK: ARP

    public enum ARPResult: Equatable {
        /// Turned into the reply in place: transmit it on the port it came from.
        case replied
        /// Not for us (or not a well-formed IPv4-over-Ethernet ARP); `learned` still applies.
        case ignored
    }

    /// Handles an ARP frame received on `port`: answers requests for our
    /// addresses; returns the sender (IPv4, MAC) to learn when the message was
    /// a reply to us or a request for us (RFC 826's merge rule, simplified).
    @inlinable
    public static func arp(_ p: UnsafeMutableRawPointer, length: Int, _ info: PacketInfo, port: Int, snapshot s: Snapshot,
                           learned: UnsafeMutableRawPointer) -> (ARPResult, learn: Bool) {
        let a = Int(info.l3Offset)
        guard length >= a + 28,
              UInt16(bigEndian: p.loadUnaligned(fromByteOffset: a, as: UInt16.self)) == 1,
              UInt16(bigEndian: p.loadUnaligned(fromByteOffset: a + 2, as: UInt16.self)) == 0x0800,
              p.load(fromByteOffset: a + 4, as: UInt8.self) == 6, p.load(fromByteOffset: a + 5, as: UInt8.self) == 4 else {
            return (.ignored, false)
        }
        let op = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: a + 6, as: UInt16.self))
        // Target protocol address, IPv4 mapped, to compare with the port's addresses.
        var target = (UInt64(0), UInt64(0))
        let ours = withUnsafeMutableBytes(of: &target) { t -> Bool in
            t.storeBytes(of: UInt32(0xFFFF).bigEndian, toByteOffset: 8, as: UInt32.self)
            (t.baseAddress! + 12).copyMemory(from: p + a + 24, byteCount: 4)
            return isLocal(s, port: port, address: t.baseAddress!)
        }
        guard ours else { return (.ignored, false) }
        // Learn the sender: 6 bytes MAC then 4 bytes IPv4.
        learned.copyMemory(from: p + a + 8, byteCount: 10)
        guard op == 1 else { return (.ignored, true) }
        // Reply: target = the sender, sender = us.
        (p + a + 18).copyMemory(from: p + a + 8, byteCount: 10) // tha, tpa <- sha, spa (sha..spa are contiguous)
        s.copyPortMAC(port, to: p + a + 8)
        withUnsafeBytes(of: target) { (p + a + 14).copyMemory(from: $0.baseAddress! + 12, byteCount: 4) }
        p.storeBytes(of: UInt16(2).bigEndian, toByteOffset: a + 6, as: UInt16.self)
        p.copyMemory(from: p + a + 18, byteCount: 6)
        s.copyPortMAC(port, to: p + 6)
        return (.replied, true)
    }

    /// An ARP request for `target` (IPv4, host order) from the port's `source` address. Returns the length (42).
    @inlinable
    public static func arpRequest(port: Int, snapshot s: Snapshot, source: UInt32, target: UInt32, into out: UnsafeMutableRawPointer) -> Int {
        for i in 0..<6 { out.storeBytes(of: UInt8(0xFF), toByteOffset: i, as: UInt8.self) }
        s.copyPortMAC(port, to: out + 6)
        out.storeBytes(of: UInt16(0x0806).bigEndian, toByteOffset: 12, as: UInt16.self)
        let a = out + 14
        a.storeBytes(of: UInt16(1).bigEndian, as: UInt16.self)
        a.storeBytes(of: UInt16(0x0800).bigEndian, toByteOffset: 2, as: UInt16.self)
        a.storeBytes(of: UInt8(6), toByteOffset: 4, as: UInt8.self)
        a.storeBytes(of: UInt8(4), toByteOffset: 5, as: UInt8.self)
        a.storeBytes(of: UInt16(1).bigEndian, toByteOffset: 6, as: UInt16.self)
        s.copyPortMAC(port, to: a + 8)
        a.storeBytes(of: source.bigEndian, toByteOffset: 14, as: UInt32.self)
        for i in 0..<6 { a.storeBytes(of: UInt8(0), toByteOffset: 18 + i, as: UInt8.self) }
        a.storeBytes(of: target.bigEndian, toByteOffset: 24, as: UInt32.self)
        return 42
    }

    // MARK: IPv6 Neighbor Discovery

    /// Answers a Neighbor Solicitation (ICMPv6 135) for one of the port's
    /// addresses with a Neighbor Advertisement, in place (router, solicited and
    /// override flags; target link-layer address option). Returns the new
    /// frame length, or 0 if the message is not a valid solicitation for us.
    /// The solicitation's source link-layer option, if any, is copied to `learnedMAC`.
    @inlinable
    public static func neighborAdvertisement(_ p: UnsafeMutableRawPointer, length: Int, _ info: PacketInfo, port: Int,
                                             snapshot s: Snapshot, learnedMAC: UnsafeMutableRawPointer) -> Int {
        let l3 = Int(info.l3Offset), l4 = Int(info.l4Offset)
        let end = l3 + Int(info.l3Length)
        // RFC 4861 7.1.1: hop limit 255, code 0, at least 24 bytes.
        guard info.l4Proto == 58, end - l4 >= 24, p.load(fromByteOffset: l4, as: UInt8.self) == 135,
              p.load(fromByteOffset: l4 + 1, as: UInt8.self) == 0, p.load(fromByteOffset: l3 + 7, as: UInt8.self) == 255,
              isLocal(s, port: port, address: p + l4 + 8) else { return 0 }
        var off = l4 + 24
        while off + 8 <= end {
            let t = p.load(fromByteOffset: off, as: UInt8.self), n = Int(p.load(fromByteOffset: off + 1, as: UInt8.self)) * 8
            guard n > 0, off + n <= end else { return 0 }
            if t == 1 && n >= 8 { learnedMAC.copyMemory(from: p + off + 2, byteCount: 6) }
            off += n
        }
        // Reply to the solicitation's source (unicast); addresses: we are the target.
        (p + l3 + 24).copyMemory(from: p + l3 + 8, byteCount: 16)
        (p + l3 + 8).copyMemory(from: p + l4 + 8, byteCount: 16)
        p.storeBytes(of: UInt8(255), toByteOffset: l3 + 7, as: UInt8.self)
        let payload = 32
        p.storeBytes(of: UInt16(payload).bigEndian, toByteOffset: l3 + 4, as: UInt16.self)
        p.storeBytes(of: UInt8(136), toByteOffset: l4, as: UInt8.self)
        p.storeBytes(of: UInt8(0), toByteOffset: l4 + 1, as: UInt8.self)
        p.storeBytes(of: UInt16(0), toByteOffset: l4 + 2, as: UInt16.self)
        p.storeBytes(of: UInt32(0xE000_0000).bigEndian, toByteOffset: l4 + 4, as: UInt32.self) // R, S, O
        p.storeBytes(of: UInt8(2), toByteOffset: l4 + 24, as: UInt8.self)
        p.storeBytes(of: UInt8(1), toByteOffset: l4 + 25, as: UInt8.self)
        s.copyPortMAC(port, to: p + l4 + 26)
        let sum = Checksum.sum(p + l4, payload, initial: Checksum.pseudoHeader6(addresses: p + l3 + 8, proto: 58, length: payload))
        p.storeBytes(of: Checksum.finish(sum).bigEndian, toByteOffset: l4 + 2, as: UInt16.self)
        // Ethernet back to the sender.
        p.copyMemory(from: p + 6, byteCount: 6)
        s.copyPortMAC(port, to: p + 6)
        return l4 + payload
    }

    /// A Neighbor Solicitation for `target` (16 bytes) from `source` (16
    /// bytes, the port's address), to the solicited-node multicast group.
    @inlinable
    public static func neighborSolicitation(port: Int, snapshot s: Snapshot, source: UnsafeRawPointer, target: UnsafeRawPointer,
                                            into out: UnsafeMutableRawPointer) -> Int {
        // 33:33:ff + the target's low 24 bits; ff02::1:ffXX:XXXX.
        out.storeBytes(of: UInt8(0x33), as: UInt8.self)
        out.storeBytes(of: UInt8(0x33), toByteOffset: 1, as: UInt8.self)
        out.storeBytes(of: UInt8(0xFF), toByteOffset: 2, as: UInt8.self)
        (out + 3).copyMemory(from: target + 13, byteCount: 3)
        s.copyPortMAC(port, to: out + 6)
        out.storeBytes(of: UInt16(0x86DD).bigEndian, toByteOffset: 12, as: UInt16.self)
        let ip = out + 14, payload = 32
        ip.storeBytes(of: UInt32(0x6000_0000).bigEndian, as: UInt32.self)
        ip.storeBytes(of: UInt16(payload).bigEndian, toByteOffset: 4, as: UInt16.self)
        ip.storeBytes(of: UInt8(58), toByteOffset: 6, as: UInt8.self)
        ip.storeBytes(of: UInt8(255), toByteOffset: 7, as: UInt8.self)
        (ip + 8).copyMemory(from: source, byteCount: 16)
        ip.storeBytes(of: UInt64(0xFF02_0000_0000_0000).bigEndian, toByteOffset: 24, as: UInt64.self)
        ip.storeBytes(of: UInt32(1).bigEndian, toByteOffset: 32, as: UInt32.self)
        ip.storeBytes(of: UInt8(0xFF), toByteOffset: 36, as: UInt8.self)
        (ip + 37).copyMemory(from: target + 13, byteCount: 3)
        let icmp = ip + 40
        icmp.storeBytes(of: UInt32(0x8700_0000).bigEndian, as: UInt32.self) // type 135, code 0, checksum 0
        icmp.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
        (icmp + 8).copyMemory(from: target, byteCount: 16)
        icmp.storeBytes(of: UInt8(1), toByteOffset: 24, as: UInt8.self)
        icmp.storeBytes(of: UInt8(1), toByteOffset: 25, as: UInt8.self)
        s.copyPortMAC(port, to: icmp + 26)
        let sum = Checksum.sum(icmp, payload, initial: Checksum.pseudoHeader6(addresses: ip + 8, proto: 58, length: payload))
        icmp.storeBytes(of: Checksum.finish(sum).bigEndian, toByteOffset: 2, as: UInt16.self)
        return 14 + 40 + payload
    }

    /// From a Neighbor Advertisement: the target and its link-layer address
    /// (option 2), to learn. False if the message is not a valid advertisement.
    @inlinable
    public static func advertised(_ p: UnsafeRawPointer, _ info: PacketInfo, target: UnsafeMutableRawPointer, mac: UnsafeMutableRawPointer) -> Bool {
        let l3 = Int(info.l3Offset), l4 = Int(info.l4Offset)
        let end = l3 + Int(info.l3Length)
        guard info.l4Proto == 58, end - l4 >= 24, p.load(fromByteOffset: l4, as: UInt8.self) == 136,
              p.load(fromByteOffset: l3 + 7, as: UInt8.self) == 255 else { return false }
        var off = l4 + 24
        while off + 8 <= end {
            let t = p.load(fromByteOffset: off, as: UInt8.self), n = Int(p.load(fromByteOffset: off + 1, as: UInt8.self)) * 8
            guard n > 0, off + n <= end else { return false }
            if t == 2 {
                target.copyMemory(from: p + l4 + 8, byteCount: 16)
                mac.copyMemory(from: p + off + 2, byteCount: 6)
                return true
            }
            off += n
        }
        return false
    }
}
