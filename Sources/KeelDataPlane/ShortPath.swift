import KeelDPDK
import KeelForward
import KeelPacket
import KeelTables

/// The short path's two loops (docs/dataplane.md, "The short path"), as leaf
/// functions: with no call inside them, every value they use stays in a
/// register. Written inside `Work.processBurst`, the same loops shared the
/// registers with the slow paths' calls and reloaded half their values from
/// the stack on every packet. Each runs from a packet index until the first
/// packet it cannot take, which the caller handles the full way, in order,
/// before calling it again: one call per burst in the common case.
enum ShortPath {
    /// Pass 1 from packet `start`: while packets are plain IPv4 TCP/UDP
    /// (`Parser.plainIPv4`) and unicast to their in-port's MAC, marks them
    /// plain (1) and stores their destinations (host order) at their index in
    /// `dst4`; when a destination passes the VIP filter, also sets the
    /// packet's bit in the mask returned (for `Work.plainVIP`). Returns
    /// the first packet it did not take, the bytes of those it took, and that
    /// mask (bit i: packet i; bursts are at most 64). `portMACs` (by DPDK port
    /// id) nil: every packet came in on the port whose MAC is `fixedMAC`.
    /// `vipFilter` nil: the snapshot has no VIP. `lpm` set: prefetch each
    /// plain packet's root entry (see `Work.prefetchInScan`).
    @inline(never)
    static func scan(_ mb: UnsafeMutablePointer<OpaquePointer>, from start: Int, _ n: Int, fixedMAC: UInt64,
                     portMACs: UnsafePointer<UInt64>?, vipFilter: UnsafePointer<UInt64>?,
                     plain: UnsafeMutablePointer<UInt8>, dst4: UnsafeMutablePointer<UInt32>, lpm: IPv4LPMView?) -> (Int, Int, UInt64) {
        var i = start, bytes = 0
        var candidates: UInt64 = 0
        while i < n {
            if i &+ 4 < n { mbufPrefetch(mb[i &+ 4]) }
            let m = mb[i]
            let p = mbufData(m)
            let len = mbufLength(m)
            let mac = portMACs.map { $0[Int(mbufPort(m)) & (Fabric.maxDPDKPorts - 1)] } ?? fixedMAC
            guard Parser.plainIPv4(p, length: len), p.loadUnaligned(as: UInt64.self) & 0xFFFF_FFFF_FFFF == mac else { break }
            bytes &+= len
            plain[i] = 1
            let d = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 30, as: UInt32.self))
            dst4[i] = d
            if let vipFilter, case let last = Int(d & 0xFF), vipFilter[last >> 6] & (1 &<< UInt64(last & 63)) != 0 {
                candidates |= 1 &<< UInt64(i) // `Work.plainVIP` decides; no prefetch yet
            } else if let lpm {
                lpm.prefetch(d)
            }
            i &+= 1
        }
        return (i, bytes, candidates)
    }

    /// Pass 3 from packet `start`: while packets are plain, their group's
    /// rewrite is cached under `tag` (`FastHops`) and they fit the out port's
    /// MTU, forwards them: LPM lookup (its root entry prefetched in pass 2),
    /// TTL, Ethernet header, staged for the out port. The lookup is here
    /// rather than in a loop of its own so that the wait for each root entry
    /// overlaps the rewrites of the packets before it. Returns the first
    /// packet it did not take, and the staging slot it filled (-1: none),
    /// which the caller sends before calling it again.
    @inline(never)
    static func forward(_ mb: UnsafeMutablePointer<OpaquePointer>, from start: Int, _ n: Int, plain: UnsafePointer<UInt8>,
                        dst4: UnsafePointer<UInt32>, lpm: IPv4LPMView, hops: FastHops, tag: UInt64,
                        stage: UnsafeMutablePointer<OpaquePointer?>, staged: UnsafeMutablePointer<Int>, burst: Int) -> (Int, Int) {
        let limit = UInt32(truncatingIfNeeded: hops.groups)
        var i = start
        while i < n, plain[i] == 1 {
            let g = lpm.lookup(dst4[i])
            guard g < limit else { break } // noRoute, or a group the cache cannot hold
            let m = mb[i]
            let p = mbufData(m)
            var e = hops.entry(g, 0)
            guard e.load(as: UInt64.self) == tag else { break }
            let count = e.load(fromByteOffset: 24, as: UInt8.self)
            if count > 1 {
                // ECMP: the member `route` would pick, by the same 5-tuple hash.
                let h = FlowHash.v4(src: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 26, as: UInt32.self)),
                                    dst: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 30, as: UInt32.self)),
                                    proto: p.load(fromByteOffset: 23, as: UInt8.self),
                                    srcPort: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 34, as: UInt16.self)),
                                    dstPort: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 36, as: UInt16.self)))
                e = hops.entry(g, Int(truncatingIfNeeded: h % UInt64(count)))
                guard e.load(as: UInt64.self) == tag else { break }
            }
            // Not above the out port's MTU (the full path sends the ICMP error).
            guard UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt16.self)) <= e.load(fromByteOffset: 22, as: UInt16.self) else { break }
            decrementTTLFast(ipv4: p + 14)
            p.storeBytes(of: e.load(fromByteOffset: 8, as: UInt64.self), as: UInt64.self)
            p.storeBytes(of: e.load(fromByteOffset: 16, as: UInt32.self), toByteOffset: 8, as: UInt32.self)
            // Work.emit(m, port).
            let k = Int(e.load(fromByteOffset: 20, as: UInt16.self))
            let c = staged[k]
            stage[k &* burst &+ c] = m
            staged[k] = c &+ 1
            i &+= 1
            if c &+ 1 == burst { return (i, k) }
        }
        return (i, -1)
    }
}
