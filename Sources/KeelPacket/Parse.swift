/// Why a packet was dropped: one enumerated list, one counter each (VPP's
/// foreach_lb_error style). Raw values are stable: they index the stats file.
public enum DropReason: UInt8, CaseIterable, Sendable {
    case none = 0
    case truncated = 1
    case unknownEtherType = 2
    case ipv4BadVersion = 3
    case ipv4BadIHL = 4
    case ipv4BadChecksum = 5
    case ipv4BadLength = 6
    case ipv4MartianSource = 7
    case ipv4MartianDestination = 8
    case ipv6BadVersion = 9
    case ipv6BadLength = 10
    case ipv6MartianSource = 11
    case ipv6MartianDestination = 12
    case ipv6TooManyExtensions = 13
    case l4Truncated = 14
    case ttlExpired = 15
    case noRoute = 16
    case neighborUnresolved = 17
    case tooBig = 18
    case blackhole = 19
    case ringFull = 20
    case oversizeFrame = 21
    case txFull = 22
    case unknownPort = 23
    case notForUs = 24
    case noExceptionPath = 25
    case multicast = 26
    case otherMAC = 27
    case noBackend = 28
    case noTunnelSource = 29

    public var description: String {
        switch self {
        case .none: return "not dropped"
        case .truncated: return "frame shorter than its headers"
        case .unknownEtherType: return "EtherType not IPv4, IPv6 or ARP"
        case .ipv4BadVersion: return "IPv4: version is not 4"
        case .ipv4BadIHL: return "IPv4: header length below 20 bytes or beyond the packet"
        case .ipv4BadChecksum: return "IPv4: header checksum wrong"
        case .ipv4BadLength: return "IPv4: total length below the header or beyond the frame"
        case .ipv4MartianSource: return "IPv4: source is 0/8, 127/8, multicast, reserved or broadcast"
        case .ipv4MartianDestination: return "IPv4: destination is 0/8, 127/8 or limited broadcast"
        case .ipv6BadVersion: return "IPv6: version is not 6"
        case .ipv6BadLength: return "IPv6: payload length beyond the frame"
        case .ipv6MartianSource: return "IPv6: source is unspecified, loopback or multicast"
        case .ipv6MartianDestination: return "IPv6: destination is unspecified or loopback"
        case .ipv6TooManyExtensions: return "IPv6: extension header chain too long or cut short"
        case .l4Truncated: return "TCP/UDP/ICMP header cut short"
        case .ttlExpired: return "TTL or hop limit expired"
        case .noRoute: return "no route to the destination"
        case .neighborUnresolved: return "next hop's link-layer address unresolved"
        case .tooBig: return "larger than the out port's MTU"
        case .blackhole: return "blackhole route"
        case .ringFull: return "worker or TX ring full"
        case .oversizeFrame: return "frame larger than the port's MTU allows"
        case .txFull: return "port's TX queue full"
        case .unknownPort: return "arrived on a port the snapshot does not know"
        case .notForUs: return "ARP/ND message not for the appliance"
        case .noExceptionPath: return "for the appliance, but the port has no TAP"
        case .otherMAC: return "unicast frame for another MAC address (the port listens promiscuously)"
        case .noBackend: return "VIP with no backend that takes new flows"
        case .noTunnelSource: return "VIP traffic: no outer source address (none configured, none on the out port)"
        case .multicast: return "multicast destination (not routed; the kernel gets it when the port has a TAP)"
        }
    }
}

/// What the parser found, as offsets into the frame. A plain struct of
/// integers: the per-lcore burst keeps an array of these, filled in place.
public struct PacketInfo: Sendable {
    public static let ipv4: UInt8 = 4, ipv6: UInt8 = 6, arp: UInt8 = 1

    public var l3: UInt8 = 0           // ipv4, ipv6, arp (0: none)
    public var vlan: UInt16 = 0        // 802.1Q VLAN id (0: untagged)
    public var l3Offset: UInt16 = 0
    public var l4Offset: UInt16 = 0
    public var l4Proto: UInt8 = 0      // TCP 6, UDP 17, ICMP 1, ICMPv6 58, ...
    public var fragment: Bool = false  // any fragment
    public var laterFragment: Bool = false // not the first: no L4 header
    public var hopByHop: Bool = false  // IPv6 hop-by-hop options present
    public var l3Length: UInt16 = 0    // IPv4 total length / IPv6 40 + payload length
    public var srcPort: UInt16 = 0
    public var dstPort: UInt16 = 0

    public init() {}
}

public enum Parser {
    public static let ethernetHeader = 14

    /// Parses a frame of `length` bytes. Returns `.none` and fills `info`, or the drop reason.
    @inlinable
    public static func parse(_ p: UnsafeRawPointer, length: Int, into info: inout PacketInfo) -> DropReason {
        info = PacketInfo()
        guard length >= ethernetHeader else { return .truncated }
        var off = 12
        var type = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: off, as: UInt16.self))
        if type == 0x8100 {
            guard length >= ethernetHeader + 4 else { return .truncated }
            info.vlan = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 14, as: UInt16.self)) & 0x0FFF
            off = 16
            type = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: off, as: UInt16.self))
        }
        let l3 = off + 2
        info.l3Offset = UInt16(l3)
        switch type {
        case 0x0800: return parseIPv4(p, l3, length, &info)
        case 0x86DD: return parseIPv6(p, l3, length, &info)
        case 0x0806:
            guard length >= l3 + 28 else { return .truncated }
            info.l3 = PacketInfo.arp
            return .none
        default: return .unknownEtherType
        }
    }

    @inlinable
    static func parseIPv4(_ p: UnsafeRawPointer, _ l3: Int, _ length: Int, _ info: inout PacketInfo) -> DropReason {
        guard length >= l3 + 20 else { return .truncated }
        let vihl = p.load(fromByteOffset: l3, as: UInt8.self)
        guard vihl >> 4 == 4 else { return .ipv4BadVersion }
        let ihl = Int(vihl & 0xF) * 4
        guard ihl >= 20, l3 + ihl <= length else { return .ipv4BadIHL }
        let total = Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 2, as: UInt16.self)))
        guard total >= ihl, l3 + total <= length else { return .ipv4BadLength }
        guard Checksum.fold(ihl == 20 ? Checksum.sum20(p + l3) : Checksum.sum(p + l3, ihl)) == 0xFFFF else { return .ipv4BadChecksum }
        let src = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 12, as: UInt32.self))
        let dst = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 16, as: UInt32.self))
        // RFC 1812 5.3.7: never forward these.
        let s8 = src >> 24
        guard s8 != 0, s8 != 127, src >> 28 != 0xE, src >> 28 != 0xF else { return .ipv4MartianSource }
        let d8 = dst >> 24
        guard d8 != 0, d8 != 127, dst != 0xFFFF_FFFF else { return .ipv4MartianDestination }
        info.l3 = PacketInfo.ipv4
        info.l3Length = UInt16(total)
        let frag = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 6, as: UInt16.self))
        info.fragment = frag & 0x3FFF != 0 // MF or an offset
        info.laterFragment = frag & 0x1FFF != 0
        info.l4Proto = p.load(fromByteOffset: l3 + 9, as: UInt8.self)
        info.l4Offset = UInt16(l3 + ihl)
        return parseL4(p, l3 + ihl, l3 + total, &info)
    }

    @inlinable
    static func parseIPv6(_ p: UnsafeRawPointer, _ l3: Int, _ length: Int, _ info: inout PacketInfo) -> DropReason {
        guard length >= l3 + 40 else { return .truncated }
        guard p.load(fromByteOffset: l3, as: UInt8.self) >> 4 == 6 else { return .ipv6BadVersion }
        let payload = Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 4, as: UInt16.self)))
        guard l3 + 40 + payload <= length else { return .ipv6BadLength }
        let sHi = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 8, as: UInt64.self))
        let sLo = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 16, as: UInt64.self))
        let dHi = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 24, as: UInt64.self))
        let dLo = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 32, as: UInt64.self))
        guard !(sHi == 0 && sLo <= 1), sHi >> 56 != 0xFF else { return .ipv6MartianSource }
        guard !(dHi == 0 && dLo <= 1) else { return .ipv6MartianDestination }
        info.l3 = PacketInfo.ipv6
        info.l3Length = UInt16(40 + payload)
        let end = l3 + 40 + payload
        var next = p.load(fromByteOffset: l3 + 6, as: UInt8.self)
        var off = l3 + 40
        // Walk extension headers (hop-by-hop, routing, fragment, destination options; AH) to the L4 header.
        var hops = 0
        while true {
            switch next {
            case 0, 43, 60, 51:
                guard hops < 8, off + 8 <= end else { return .ipv6TooManyExtensions }
                if next == 0 { info.hopByHop = true }
                let len = next == 51
                    ? (Int(p.load(fromByteOffset: off + 1, as: UInt8.self)) + 2) * 4
                    : (Int(p.load(fromByteOffset: off + 1, as: UInt8.self)) + 1) * 8
                next = p.load(fromByteOffset: off, as: UInt8.self)
                off += len
                hops += 1
                guard off <= end else { return .ipv6TooManyExtensions }
            case 44:
                guard hops < 8, off + 8 <= end else { return .ipv6TooManyExtensions }
                let fo = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: off + 2, as: UInt16.self))
                info.fragment = true
                info.laterFragment = fo & 0xFFF8 != 0
                next = p.load(fromByteOffset: off, as: UInt8.self)
                off += 8
                hops += 1
            default:
                info.l4Proto = next
                info.l4Offset = UInt16(off)
                return parseL4(p, off, end, &info)
            }
        }
    }

    @inlinable
    static func parseL4(_ p: UnsafeRawPointer, _ off: Int, _ end: Int, _ info: inout PacketInfo) -> DropReason {
        if info.laterFragment { return .none }
        switch info.l4Proto {
        case 6:
            guard off + 20 <= end else { return .l4Truncated }
        case 17:
            guard off + 8 <= end else { return .l4Truncated }
        case 1, 58:
            guard off + 8 <= end else { return .l4Truncated }
            return .none
        default:
            return .none
        }
        info.srcPort = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: off, as: UInt16.self))
        info.dstPort = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: off + 2, as: UInt16.self))
        return .none
    }
}

extension Parser {
    /// The common case, checked in one go: true only for a frame that
    /// `parse` accepts as an untagged IPv4 packet without options, not a
    /// fragment, TCP or UDP with its header present, whose destination is
    /// unicast and whose TTL lets a router forward it (> 1). The data path
    /// forwards such frames on a short path (`FastHops`); anything else, and
    /// any frame this says false for, goes through `parse`. The checks are
    /// `parse`'s own (RFC 1812 5.2.2 and 5.3.7) on whole words; each is a
    /// branch the common case always takes the same way.
    @inlinable @inline(__always)
    public static func plainIPv4(_ p: UnsafeRawPointer, length: Int) -> Bool {
        guard length >= 34 else { return false } // the L4 header: total length against the frame, below
        // Memory order, little-endian words: bytes 12-19 are EtherType, version/IHL,
        // TOS, total length, id; bytes 20-23 flags/offset, TTL, protocol.
        let w0 = p.loadUnaligned(fromByteOffset: 12, as: UInt64.self)
        let w1 = p.loadUnaligned(fromByteOffset: 20, as: UInt32.self)
        guard w0 & 0xFF_FFFF == 0x45_0008, w1 & 0xFF3F == 0, w1 & 0xFE_0000 != 0 else { return false } // no fragment, TTL > 1
        let total = Int(UInt16(truncatingIfNeeded: w0 >> 32).byteSwapped)
        let proto = w1 >> 24
        guard 14 &+ total <= length, proto == 6 ? total >= 40 : (proto == 17 && total >= 28) else { return false }
        // First octets: 0/8, 127/8 and 224/3 are martian sources (RFC 1812 5.3.7); as
        // destinations 0/8 and 127/8 are martian, 224/4 multicast and 240/4 not for here.
        let s8 = p.load(fromByteOffset: 26, as: UInt8.self), d8 = p.load(fromByteOffset: 30, as: UInt8.self)
        guard s8 &- 1 < 223, d8 &- 1 < 223, s8 != 127, d8 != 127 else { return false }
        // The header checksum: the 20 bytes' one's-complement sum is 0xFFFF exactly when
        // their plain sum is a non-zero multiple of 0xFFFF (2^16 = 1 mod 0xFFFF).
        return Checksum.sum20(p + 14) % 0xFFFF == 0
    }
}
