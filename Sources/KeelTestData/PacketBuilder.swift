import KeelPacket
import KeelTables

/// Builds test frames byte by byte, checksums included: the input side of
/// table-driven packet fixtures.
public enum PacketBuilder {
    public static let macA: [UInt8] = [0x02, 0, 0, 0, 0, 0x0A], macB: [UInt8] = [0x02, 0, 0, 0, 0, 0x0B]

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    public static func ethernet(type: UInt16, vlan: UInt16? = nil, dst: [UInt8] = macB, src: [UInt8] = macA) -> [UInt8] {
        var f = dst + src
        if let vlan { f += be16(0x8100) + be16(vlan) }
        return f + be16(type)
    }

    /// TCP (20 bytes, no options) or UDP header with a correct checksum over the pseudo-header.
    public static func l4(proto: UInt8, srcPort: UInt16, dstPort: UInt16, payload: [UInt8], pseudo: UInt64) -> [UInt8] {
        var h: [UInt8]
        if proto == 6 {
            h = be16(srcPort) + be16(dstPort) + be32(1) + be32(0) + [0x50, 0x02] + be16(65535) + [0, 0, 0, 0]
        } else if proto == 17 {
            h = be16(srcPort) + be16(dstPort) + be16(UInt16(8 + payload.count)) + [0, 0]
        } else {
            // ICMP / ICMPv6 echo request
            h = [proto == 58 ? 128 : 8, 0, 0, 0] + be16(srcPort) + be16(1)
        }
        var seg = h + payload
        let withPseudo = proto == 1 ? 0 : pseudo &+ UInt64(seg.count)
        let c = seg.withUnsafeBytes { Checksum.finish(Checksum.sum($0.baseAddress!, $0.count, initial: withPseudo)) }
        let at = proto == 6 ? 16 : (proto == 17 ? 6 : 2)
        seg[at] = UInt8(c >> 8)
        seg[at + 1] = UInt8(c & 0xFF)
        return seg
    }

    public static func ipv4(src: String, dst: String, proto: UInt8 = 17, ttl: UInt8 = 64, srcPort: UInt16 = 1234,
                            dstPort: UInt16 = 80, payload: [UInt8] = Array(repeating: 0x61, count: 16),
                            fragment: UInt16 = 0, df: Bool = false, vlan: UInt16? = nil) -> [UInt8] {
        let s = IPv4Prefix.parseAddress(src)!, d = IPv4Prefix.parseAddress(dst)!
        let seg = fragment & 0x1FFF != 0 ? payload
            : l4(proto: proto, srcPort: srcPort, dstPort: dstPort, payload: payload,
                 pseudo: Checksum.pseudoHeader4(src: s, dst: d, proto: proto, length: 0))
        var ip: [UInt8] = [0x45, 0] + be16(UInt16(20 + seg.count)) + be16(0x1234) + be16(fragment | (df ? 0x4000 : 0))
            + [ttl, proto, 0, 0] + be32(s) + be32(d)
        let c = ip.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress!, headerLength: 20) }
        ip[10] = UInt8(c >> 8)
        ip[11] = UInt8(c & 0xFF)
        return ethernet(type: 0x0800, vlan: vlan) + ip + seg
    }

    /// IPv6 with optional extension headers given as (type, bytes) in order.
    public static func ipv6(src: String, dst: String, proto: UInt8 = 17, hopLimit: UInt8 = 64, srcPort: UInt16 = 1234,
                            dstPort: UInt16 = 80, payload: [UInt8] = Array(repeating: 0x61, count: 16),
                            extensions: [(UInt8, [UInt8])] = []) -> [UInt8] {
        let s = IPv6Prefix.parseAddress(src)!, d = IPv6Prefix.parseAddress(dst)!
        var addrs = [UInt8](repeating: 0, count: 32)
        addrs.withUnsafeMutableBytes { IPv6Prefix.store(s, to: $0.baseAddress!); IPv6Prefix.store(d, to: $0.baseAddress! + 16) }
        let pseudo = addrs.withUnsafeBytes { Checksum.pseudoHeader6(addresses: $0.baseAddress!, proto: proto, length: 0) }
        let seg = l4(proto: proto, srcPort: srcPort, dstPort: dstPort, payload: payload, pseudo: pseudo)
        var ext: [UInt8] = []
        var first = proto
        for (i, e) in extensions.enumerated().reversed() {
            var h = e.1
            h[0] = i == extensions.count - 1 ? proto : extensions[i + 1].0
            ext = h + ext
            first = e.0
        }
        let ip: [UInt8] = [0x60, 0, 0, 0] + be16(UInt16(ext.count + seg.count)) + [first, hopLimit] + addrs
        return ethernet(type: 0x86DD) + ip + ext + seg
    }
}
