import KeelPacket
import KeelTables

/// The load balancer's per-packet pieces: which VIP a frame is for, the
/// Maglev hash of its flow, the flow a quoted ICMP error belongs to, and the
/// IPIP/GUE encapsulation. Pure functions on frames and a snapshot (the
/// worker in KeelDataPlane strings them together with the connection table).
public enum LoadBalancer {
    public static let ipip: UInt8 = 1, gue: UInt8 = 2

    /// The frame's destination as the VIP hash's key: its two 8-byte halves as
    /// they lie in memory (IPv4 mapped), read straight from the header.
    @inlinable @inline(__always)
    public static func destinationWords(_ p: UnsafeRawPointer, _ info: PacketInfo) -> (hi: UInt64, lo: UInt64) {
        let l3 = Int(info.l3Offset)
        return info.l3 == PacketInfo.ipv4
            ? Snapshot.mappedWords(v4: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: l3 &+ 16, as: UInt32.self)))
            : (p.loadUnaligned(fromByteOffset: l3 &+ 24, as: UInt64.self), p.loadUnaligned(fromByteOffset: l3 &+ 32, as: UInt64.self))
    }

    /// The VIP (index) a TCP/UDP frame is addressed to, or -1. Fragments
    /// match "all ports" VIPs only (later fragments carry no port).
    @inlinable @inline(__always)
    public static func vip(_ p: UnsafeRawPointer, _ info: PacketInfo, _ s: Snapshot) -> Int32 {
        guard info.l4Proto == 6 || info.l4Proto == 17 else { return -1 }
        let (hi, lo) = destinationWords(p, info)
        return s.vip(hi: hi, lo: lo, proto: info.l4Proto, port: info.fragment ? 0 : info.dstPort)
    }

    /// The hash that indexes a VIP's Maglev table, from the fields the VIP
    /// asks for (5: 5-tuple, 3: addresses and protocol, 1: source only).
    /// Fragments hash at most the 3-tuple, so all fragments of a datagram
    /// go to the same backend. A fixed function: every appliance agrees.
    /// `src`/`dst` point at the addresses (4 or 16 bytes, network order).
    @inlinable @inline(__always)
    public static func maglevHash(v4: Bool, src: UnsafeRawPointer, dst: UnsafeRawPointer, proto: UInt8, srcPort: UInt16,
                                  dstPort: UInt16, fields: UInt8, scratch: UnsafeMutableRawPointer) -> UInt64 {
        let ports = fields == 5
        let sp = ports ? srcPort : 0, dp = ports ? dstPort : 0
        if v4 {
            let s = UInt32(bigEndian: src.loadUnaligned(as: UInt32.self))
            if fields == 1 { return FlowHash.v4(src: s, dst: 0, proto: 0, srcPort: 0, dstPort: 0) }
            return FlowHash.v4(src: s, dst: UInt32(bigEndian: dst.loadUnaligned(as: UInt32.self)), proto: proto, srcPort: sp, dstPort: dp)
        }
        scratch.copyMemory(from: src, byteCount: 16)
        if fields == 1 {
            (scratch + 16).initializeMemory(as: UInt8.self, repeating: 0, count: 16)
            return FlowHash.v6(addresses: scratch, proto: 0, srcPort: 0, dstPort: 0)
        }
        (scratch + 16).copyMemory(from: dst, byteCount: 16)
        return FlowHash.v6(addresses: scratch, proto: proto, srcPort: sp, dstPort: dp)
    }

    /// `maglevHash` of a parsed frame. `scratch`: 32 bytes.
    @inlinable @inline(__always)
    public static func maglevHash(_ p: UnsafeRawPointer, _ info: PacketInfo, fields: UInt8, scratch: UnsafeMutableRawPointer) -> UInt64 {
        let l3 = Int(info.l3Offset), v4 = info.l3 == PacketInfo.ipv4
        return maglevHash(v4: v4, src: p + (l3 &+ (v4 ? 12 : 8)), dst: p + (l3 &+ (v4 ? 16 : 24)), proto: info.l4Proto,
                          srcPort: info.srcPort, dstPort: info.dstPort, fields: info.fragment ? min(fields, 3) : fields, scratch: scratch)
    }

    /// The connection table's fingerprint of a flow hash: the hash itself
    /// (the table keeps its upper 48 bits; the bucket index is its low bits).
    /// A second mix of the hash would tell flows apart no better: it is a
    /// bijection of the same 64 bits, and cost two multiplications a packet.
    @inlinable @inline(__always)
    public static func fingerprint(_ hash: UInt64) -> UInt64 { hash }

    /// A flow quoted by an ICMP/ICMPv6 error addressed to a VIP (for example
    /// "fragmentation needed" from a router on the client's path, about a
    /// backend's reply). The quoted packet went VIP → client (`quote.src` is
    /// the VIP, `quote.dst` the client); the flow is the other way round.
    public struct QuotedFlow {
        public var vip: Int32
        /// The flow's 5-tuple hash as the client's packets have it (conntrack bucket).
        public var hash: UInt64
        public var quote: Quote

        @inlinable
        public init(vip: Int32, hash: UInt64, quote: Quote) {
            self.vip = vip; self.hash = hash; self.quote = quote
        }
    }

    /// The packet an ICMP/ICMPv6 error quotes, when it is TCP or UDP from the
    /// address the error is sent to: offsets of its source and destination
    /// addresses, its protocol and ports. Nil for anything else.
    public struct Quote {
        public var v4: Bool, proto: UInt8, src: Int, dst: Int, srcPort: UInt16, dstPort: UInt16
        @inlinable
        public init(v4: Bool, proto: UInt8, src: Int, dst: Int, srcPort: UInt16, dstPort: UInt16) {
            self.v4 = v4; self.proto = proto; self.src = src; self.dst = dst; self.srcPort = srcPort; self.dstPort = dstPort
        }
        /// The hash of the quoted flow the other way round (as the peer that got the error's subject sends it).
        @inlinable @inline(__always)
        public func reversedHash(_ p: UnsafeRawPointer) -> UInt64 {
            v4 ? FlowHash.v4(src: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: dst, as: UInt32.self)),
                             dst: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: src, as: UInt32.self)),
                             proto: proto, srcPort: dstPort, dstPort: srcPort)
               : FlowHash.v6(src: p + dst, dst: p + src, proto: proto, srcPort: dstPort, dstPort: srcPort)
        }
    }

    @inlinable
    public static func quote(_ p: UnsafeRawPointer, length: Int, _ info: PacketInfo) -> Quote? {
        guard !info.fragment else { return nil }
        let l4 = Int(info.l4Offset), l3 = Int(info.l3Offset)
        let q = l4 &+ 8
        let v4 = info.l3 == PacketInfo.ipv4
        var proto: UInt8 = 0, quotedL4 = 0, qsrc = 0, qdst = 0
        if v4 {
            guard info.l4Proto == 1, length >= q &+ 20 else { return nil }
            let t = p.load(fromByteOffset: l4, as: UInt8.self)
            guard t == 3 || t == 11 || t == 12 else { return nil }
            let vihl = p.load(fromByteOffset: q, as: UInt8.self)
            guard vihl >> 4 == 4 else { return nil }
            quotedL4 = q &+ Int(vihl & 0xF) &* 4
            proto = p.load(fromByteOffset: q &+ 9, as: UInt8.self)
            qsrc = q &+ 12; qdst = q &+ 16
            // The quoted source must be the address the error was sent to.
            guard p.loadUnaligned(fromByteOffset: qsrc, as: UInt32.self) == p.loadUnaligned(fromByteOffset: l3 &+ 16, as: UInt32.self) else { return nil }
        } else {
            guard info.l4Proto == 58, length >= q &+ 40 else { return nil }
            let t = p.load(fromByteOffset: l4, as: UInt8.self)
            guard t >= 1 && t <= 4 else { return nil }
            guard p.load(fromByteOffset: q, as: UInt8.self) >> 4 == 6 else { return nil }
            quotedL4 = q &+ 40
            proto = p.load(fromByteOffset: q &+ 6, as: UInt8.self)
            qsrc = q &+ 8; qdst = q &+ 24
            guard p.loadUnaligned(fromByteOffset: qsrc, as: UInt64.self) == p.loadUnaligned(fromByteOffset: l3 &+ 24, as: UInt64.self),
                  p.loadUnaligned(fromByteOffset: qsrc &+ 8, as: UInt64.self) == p.loadUnaligned(fromByteOffset: l3 &+ 32, as: UInt64.self)
            else { return nil }
        }
        guard proto == 6 || proto == 17, length >= quotedL4 &+ 4 else { return nil }
        return Quote(v4: v4, proto: proto, src: qsrc, dst: qdst,
                     srcPort: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: quotedL4, as: UInt16.self)),
                     dstPort: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: quotedL4 &+ 2, as: UInt16.self)))
    }

    /// Whether the frame is an ICMP error quoting a flow to a VIP, and which.
    @inlinable
    public static func quotedFlow(_ p: UnsafeRawPointer, length: Int, _ info: PacketInfo, _ s: Snapshot) -> QuotedFlow? {
        guard let q = quote(p, length: length, info) else { return nil }
        let (hi, lo) = destinationWords(p, info)
        let vi = s.vip(hi: hi, lo: lo, proto: q.proto, port: q.srcPort)
        if vi < 0 { return nil }
        return QuotedFlow(vip: vi, hash: q.reversedHash(p), quote: q)
    }

    /// What an I/O lcore steers a packet by: its flow hash, but for an ICMP
    /// error about a TCP/UDP flow the hash of that flow as its peer sends it,
    /// so the error reaches the worker that holds the flow's connection entry.
    @inlinable @inline(__always)
    public static func steeringHash(_ p: UnsafeRawPointer, length: Int, _ info: PacketInfo) -> UInt64 {
        if (info.l4Proto == 1 || info.l4Proto == 58), let q = quote(p, length: length, info) { return q.reversedHash(p) }
        return FlowHash.of(p, info)
    }

    /// Which backend (position in the VIP's list) a packet of VIP `vi` goes to.
    public struct Choice {
        /// -1: none (the VIP has no backend taking new flows).
        public var position = -1
        /// A new flow for the backend (a miss, or its old backend left).
        public var fresh = false
        public var hit = false, evicted = false
        @inlinable public init() {}
    }

    /// The backend for a flow: the connection table first (a flow keeps its
    /// backend across snapshot swaps while the backend is in the VIP and not
    /// down; a drained one keeps its flows), else the Maglev table, and the
    /// choice is recorded when `record` (not for fragments or ICMP errors).
    /// `maglevHash` is called only when the table must be consulted.
    @inlinable @inline(__always)
    public static func choose(vip vi: Int, snapshot s: Snapshot, conn: ConnTable?, flowHash: UInt64, flags: UInt64, record: Bool,
                              now: UInt32, maglevHash: () -> UInt64) -> Choice {
        let rec = s.vipRaw(vi)
        let count = Int(rec.load(fromByteOffset: 12, as: UInt32.self))
        var c = Choice()
        @inline(__always) func maglev() -> Int {
            let e = s.maglevEntry(vi, Int(maglevHash() % UInt64(rec.load(fromByteOffset: 8, as: UInt32.self))))
            return e == Maglev.noBackend ? -1 : Int(e)
        }
        guard let conn else { c.position = maglev(); return c }
        let fp = fingerprint(flowHash)
        if let h = conn.find(hash: flowHash, fingerprint: fp, now: now) {
            var k = h.position < count && s.backendRaw(vi, h.position).load(as: UInt32.self) == h.backendID ? h.position : -1
            if k < 0 { // the list changed: where did the backend go?
                for j in 0..<count where s.backendRaw(vi, j).load(as: UInt32.self) == h.backendID { k = j; break }
            }
            if k >= 0 && s.backendRaw(vi, k).load(fromByteOffset: 8, as: UInt8.self) == BackendState.down.rawValue { k = -1 }
            if k >= 0 {
                c.hit = true
            } else {
                k = maglev()
                c.fresh = k >= 0
            }
            if k >= 0 { conn.touch(h, position: k, backendID: s.backendRaw(vi, k).load(as: UInt32.self), flags: flags, now: now) }
            c.position = k
            return c
        }
        let k = maglev()
        c.position = k
        if k >= 0 && record {
            c.fresh = true
            c.evicted = conn.insert(hash: flowHash, fingerprint: fp, position: k, backendID: s.backendRaw(vi, k).load(as: UInt32.self),
                                    flags: flags, now: now)
        }
        return c
    }

    /// TTL / hop limit of the outer header on the wire. `encapsulate` writes
    /// one more: the packet then goes through the routing step, which takes
    /// one off like for every forwarded packet.
    public static let outerTTL: UInt8 = 64

    /// Bytes the encapsulation puts in front of the inner packet.
    @inlinable @inline(__always)
    public static func overhead(encap: UInt8, outerV4: Bool) -> Int {
        (outerV4 ? 20 : 40) &+ (encap == gue ? 12 : 0)
    }

    /// The UDP source port of a GUE packet: from the flow hash, in the
    /// ephemeral range, so the backend's NIC spreads flows over its queues.
    @inlinable @inline(__always)
    public static func gueSourcePort(_ hash: UInt64) -> UInt16 { 0xC000 | UInt16(truncatingIfNeeded: hash >> 20) & 0x3FFF }

    /// Writes the outer headers (IPv4 or IPv6, then for GUE a UDP header and
    /// the 4-byte GUE header, version 0) at `outer`, directly in front of the
    /// inner IP packet of `innerLength` bytes. `source`/`destination`: 16
    /// bytes, IPv4 mapped. Outer IPv4 carries DF and TTL 64; IPv6 hop limit 64
    /// and the flow label from the hash; the inner TOS / traffic class is
    /// copied. The IPv6 UDP checksum is computed (RFC 8200 forbids zero for
    /// ordinary UDP); IPv4's is zero (RFC 768 allows it).
    @inlinable
    public static func encapsulate(outer: UnsafeMutableRawPointer, innerLength: Int, innerV4: Bool, outerV4: Bool,
                                   encap: UInt8, guePort: UInt16, hash: UInt64,
                                   source: UnsafeRawPointer, destination: UnsafeRawPointer) {
        let inner = outer + overhead(encap: encap, outerV4: outerV4)
        let innerProto: UInt8 = innerV4 ? 4 : 41
        let tos: UInt8 = innerV4 ? inner.load(fromByteOffset: 1, as: UInt8.self)
            : UInt8(truncatingIfNeeded: UInt16(bigEndian: inner.loadUnaligned(as: UInt16.self)) >> 4)
        let ipLength = outerV4 ? 20 : 40
        let total = overhead(encap: encap, outerV4: outerV4) &+ innerLength
        if outerV4 {
            encapsulateIPv4(outer: outer, total: total, tos: tos, proto: encap == gue ? 17 : innerProto, ttl: outerTTL &+ 1,
                            source: source.loadUnaligned(fromByteOffset: 12, as: UInt32.self),
                            destination: destination.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        } else {
            let label = UInt32(truncatingIfNeeded: hash) & 0xF_FFFF
            outer.storeBytes(of: (0x6000_0000 | UInt32(tos) << 20 | label).bigEndian, as: UInt32.self)
            outer.storeBytes(of: UInt16(total &- 40).bigEndian, toByteOffset: 4, as: UInt16.self)
            outer.storeBytes(of: encap == gue ? 17 : innerProto, toByteOffset: 6, as: UInt8.self)
            outer.storeBytes(of: outerTTL &+ 1, toByteOffset: 7, as: UInt8.self)
            (outer + 8).copyMemory(from: source, byteCount: 16)
            (outer + 24).copyMemory(from: destination, byteCount: 16)
        }
        guard encap == gue else { return }
        let udp = outer + ipLength
        let udpLength = total &- ipLength
        writeGUE(udp, length: udpLength, sourcePort: gueSourcePort(hash), port: guePort, innerProto: innerProto)
        if !outerV4 {
            let sum = Checksum.sum(udp, udpLength, initial: Checksum.pseudoHeader6(addresses: outer + 8, proto: 17, length: udpLength))
            let c = Checksum.finish(sum)
            udp.storeBytes(of: (c == 0 ? 0xFFFF : c).bigEndian, toByteOffset: 6, as: UInt16.self)
        }
    }

    /// The outer IPv4 header of `encapsulate`: `total` bytes in all, DF,
    /// `ttl`, the checksum. `source`/`destination`: the addresses as they lie
    /// in memory. Whole words built in registers and summed there: storing
    /// bytes and reloading them as words for the checksum stalled store forwarding.
    @inlinable @inline(__always)
    public static func encapsulateIPv4(outer: UnsafeMutableRawPointer, total: Int, tos: UInt8, proto: UInt8, ttl: UInt8,
                                       source w3: UInt32, destination w4: UInt32) {
        let w0 = UInt32(0x45) | UInt32(tos) << 8 | UInt32(UInt16(truncatingIfNeeded: total).bigEndian) << 16
        let w1 = UInt32(UInt16(0x4000).bigEndian) << 16                       // id 0, DF
        let w2 = UInt32(ttl) | UInt32(proto) << 8                               // checksum 0 for now
        let sum = UInt64(w0) &+ UInt64(w1) &+ UInt64(w2) &+ UInt64(w3) &+ UInt64(w4)
        // Native-order words: the folded complement is stored as it is.
        outer.storeBytes(of: UInt64(w0) | UInt64(w1) << 32, as: UInt64.self)
        outer.storeBytes(of: UInt64(w2 | UInt32(Checksum.finish(sum)) << 16) | UInt64(w3) << 32, toByteOffset: 8, as: UInt64.self)
        outer.storeBytes(of: w4, toByteOffset: 16, as: UInt32.self)
    }

    /// The UDP header (checksum 0) and the 4-byte GUE header (version 0, no
    /// options, the inner protocol) of a GUE packet, at `udp`.
    @inlinable @inline(__always)
    public static func writeGUE(_ udp: UnsafeMutableRawPointer, length: Int, sourcePort: UInt16, port: UInt16, innerProto: UInt8) {
        // Two words: source and destination port, length and checksum 0; then GUE's version 0, no options, the inner protocol, no flags.
        udp.storeBytes(of: UInt64(sourcePort.bigEndian) | UInt64(port.bigEndian) << 16 | UInt64(UInt16(truncatingIfNeeded: length).bigEndian) << 32,
                       as: UInt64.self)
        udp.storeBytes(of: UInt32(innerProto) << 8, toByteOffset: 8, as: UInt32.self)
    }
}
