import KeelPacket
import KeelTables

/// What to do with a frame after `Forwarder.route`.
public enum Verdict: Equatable, Sendable {
    /// Rewritten in place; transmit on `port`.
    case forward(port: UInt16)
    /// Addressed to the appliance: answer it here (ICMP echo) or hand it to the port's TAP.
    case local(port: UInt16, echoRequest: Bool)
    /// The next hop's MAC is unknown: hold the packet, resolve `nextHop` on `port` (ARP/ND).
    case resolve(port: UInt16)
    /// Send an ICMP/ICMPv6 error (type, code, and for "too big" the MTU) back to the source.
    case icmpError(type: UInt8, code: UInt8, mtu: UInt16)
    case drop(DropReason)
}

/// The routing decision for one frame, against one snapshot, with the frame
/// rewritten in place when it is forwarded (TTL/hop limit, checksum, MACs).
/// Pure: no allocation, no locks, no system calls; the DPDK loop calls it per
/// packet with mbuf data pointers.
public struct Forwarder {
    public init() {}

    /// Pass as `hash` to have `route` compute the flow hash itself, only for ECMP groups.
    public static let lazyHash: UInt64 = .max

    /// The next-hop group for `address` (16 bytes, IPv4 mapped), or `LPMEntry.noRoute`.
    @inlinable @inline(__always)
    public func group(_ address: UnsafeRawPointer, v4: Bool, snapshot s: Snapshot) -> UInt32 {
        v4 ? s.ipv4.lookup(UInt32(bigEndian: address.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
           : s.ipv6.lookup(address.assumingMemoryBound(to: UInt8.self))
    }

    /// The out port of next-hop `group` for a flow with `hash` (the ECMP member
    /// `route` would pick), or -1 when the group is none, local or a
    /// blackhole. The load balancer asks before it encapsulates, to check the
    /// out port's MTU, then finishes with `route(..., group:)`.
    @inlinable @inline(__always)
    public func outPort(group: UInt32, hash: UInt64, snapshot s: Snapshot) -> Int {
        if group == LPMEntry.noRoute { return -1 }
        let (kind, count) = s.nextHopGroup(group)
        if kind == NextHopKind.local.rawValue || kind == NextHopKind.drop.rawValue || count == 0 { return -1 }
        return Int(s.member(group, count > 1 ? Int(hash % UInt64(count)) : 0).port)
    }

    /// Routes the frame at `p` (`length` bytes) parsed into `info`. `hash` is its flow hash.
    /// `onLink`/`onLinkSlot`: a cache for the MAC of an on-link destination that
    /// the caller knows is fixed for the slot (the load balancer's backends).
    @inlinable
    public func route(_ p: UnsafeMutableRawPointer, length: Int, _ info: PacketInfo, hash: UInt64,
                      snapshot s: Snapshot, neighbors: borrowing NeighborTable, nextHop: UnsafeMutableRawPointer,
                      cache: NeighborCache? = nil, group known: UInt32? = nil,
                      onLink: NeighborCache? = nil, onLinkSlot: Int = -1) -> Verdict {
        let l3 = Int(info.l3Offset)
        let group: UInt32
        let v4 = info.l3 == PacketInfo.ipv4
        if let known {
            group = known // the caller looked the destination up already
        } else if v4 {
            group = s.ipv4.lookup(UInt32(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 16, as: UInt32.self)))
        } else {
            group = s.ipv6.lookup((p + l3 + 24).assumingMemoryBound(to: UInt8.self))
        }
        if group == LPMEntry.noRoute {
            // ICMP destination unreachable: net (v4 type 3 code 0) / no route (v6 type 1 code 0).
            return .icmpError(type: v4 ? 3 : 1, code: 0, mtu: 0)
        }
        let (kind, count) = s.nextHopGroup(group)
        switch kind {
        case NextHopKind.local.rawValue:
            let m = s.member(group, 0)
            let echo = v4 ? (info.l4Proto == 1 && p.load(fromByteOffset: Int(info.l4Offset), as: UInt8.self) == 8)
                          : (info.l4Proto == 58 && p.load(fromByteOffset: Int(info.l4Offset), as: UInt8.self) == 128)
            return .local(port: m.port, echoRequest: echo && !info.fragment)
        case NextHopKind.drop.rawValue:
            return .drop(.blackhole)
        default:
            break
        }
        // TTL / hop limit: a router must not forward with 1 or less (RFC 1812 5.3.1).
        let ttl = p.load(fromByteOffset: l3 + (v4 ? 8 : 7), as: UInt8.self)
        if ttl <= 1 { return .icmpError(type: v4 ? 11 : 3, code: 0, mtu: 0) }
        // ECMP: the flow hash picks the member (computed here, only when there is a choice).
        let k = count > 1 ? Int((hash == Forwarder.lazyHash ? FlowHash.of(p, info) : hash) % UInt64(count)) : 0
        let member = s.member(group, k)
        let port = member.port
        // The neighbor: the gateway, or on-link the destination itself (IPv4 mapped).
        if member.family != 0 {
            nextHop.copyMemory(from: member.gateway, byteCount: 16)
        } else if v4 {
            // IPv4 mapped, as two whole words: the neighbor lookup reads it back
            // as two words at once, and a word assembled from narrower stores
            // cannot be forwarded from the store buffer (a stall per packet). Little-endian.
            let raw = p.loadUnaligned(fromByteOffset: l3 + 16, as: UInt32.self)
            nextHop.storeBytes(of: 0, as: UInt64.self)
            nextHop.storeBytes(of: (UInt64(raw) << 32 | UInt64(UInt32(0xFFFF).bigEndian)), toByteOffset: 8, as: UInt64.self)
        } else {
            nextHop.copyMemory(from: p + l3 + 24, byteCount: 16)
        }
        let mtu = Int(s.portMTU(Int(port)))
        if Int(info.l3Length) > mtu {
            // Keel does not fragment: DF set (or IPv6) -> ICMP with the MTU; else drop and count.
            if !v4 { return .icmpError(type: 2, code: 0, mtu: UInt16(mtu)) }
            let df = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: l3 + 6, as: UInt16.self)) & 0x4000 != 0
            return df ? .icmpError(type: 3, code: 4, mtu: UInt16(mtu)) : .drop(.tooBig)
        }
        // The neighbor's MAC: from the lcore's cache for gateways, else from the table.
        var w: UInt64 = 0
        if let cache, member.family != 0 {
            w = cache.get(group, k)
            if w == 0 {
                w = neighbors.lookupWord(port: port, address: nextHop)
                if w != 0 { cache.put(group, k, w) }
            }
        } else if let onLink, onLinkSlot >= 0, count == 1 {
            // A destination on the link the caller keys by slot (a VIP's backend):
            // its MAC cached like a gateway's, under the same tag.
            w = onLink.get(UInt32(truncatingIfNeeded: onLinkSlot), 0)
            if w == 0 {
                w = neighbors.lookupWord(port: port, address: nextHop)
                if w != 0 { onLink.put(UInt32(truncatingIfNeeded: onLinkSlot), 0, w) }
            }
        } else {
            w = neighbors.lookupWord(port: port, address: nextHop)
        }
        guard w != 0 else { return .resolve(port: port) }
        if v4 {
            decrementTTL(ipv4: p + l3)
        } else {
            p.storeBytes(of: ttl &- 1, toByteOffset: l3 + 7, as: UInt8.self)
        }
        // Ethernet: destination = neighbor, source = out port.
        p.storeBytes(of: UInt32(truncatingIfNeeded: w), as: UInt32.self)
        p.storeBytes(of: UInt16(truncatingIfNeeded: w >> 32), toByteOffset: 4, as: UInt16.self)
        s.copyPortMAC(Int(port), to: p + 6)
        return .forward(port: port)
    }
}
