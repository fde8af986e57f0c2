import CKeelIntrinsics
import KeelDPDK
import KeelForward
import KeelPacket
import KeelStats
import KeelTables

/// The short path's two loops (docs/dataplane.md, "The short path"), as leaf
/// functions: with no call inside them, every value they use stays in a
/// register. Written inside `Work.processBurst`, the same loops shared the
/// registers with the slow paths' calls and reloaded half their values from
/// the stack on every packet. Each runs from a packet index until the first
/// packet it cannot take, which the caller handles the full way, in order,
/// before calling it again: one call per burst in the common case.
enum ShortPath {
    /// What the scan needs to take VIP traffic: the snapshot's VIP filter
    /// (destinations' last bytes), the VIP cache (`VIPCache`), where to store
    /// each VIP packet's flow hash, and the connection table whose bucket it
    /// starts loading.
    struct VIPScan {
        var filter: UnsafePointer<UInt64>
        var cache: VIPCache
        var hashes: UnsafeMutableRawPointer
        /// The connection table's buckets and mask; without a table (I/O
        /// lcores) one line of the lcore's own and mask 0: the prefetch is
        /// then harmless, and the loop has no optional to test per packet.
        var buckets: UnsafeRawPointer
        var bucketMask: Int

        /// Starts loading the bucket of the flow with hash `h` (`ConnTable.prefetch`).
        @inline(__always)
        func prefetchBucket(_ h: UInt64) { keel_prefetch0(buckets + (Int(truncatingIfNeeded: h) & bucketMask) &* 64) }
    }

    /// Lanes (`Work.plain`, by packet): 0 not plain, 1 plain, 2 + v plain VIP
    /// traffic to VIP v. The VIP in the lane: the tunnel loop's test for "VIP
    /// traffic to the same VIP" is one compare of one array.
    @inline(__always)
    static func vipLane(_ v: Int32) -> UInt32 { 2 &+ UInt32(bitPattern: v) }
    /// The VIP of a `vipLane`.
    @inline(__always)
    static func laneVIP(_ lane: UInt32) -> Int { Int(lane &- 2) }

    /// Pass 1 from packet `start`: while packets are plain IPv4 TCP/UDP
    /// (`Parser.plainIPv4`) and unicast to their in-port's MAC, takes them:
    /// - a destination that passes the VIP filter and whose (destination,
    ///   protocol, port) the VIP cache knows as a VIP's: VIP traffic (lane
    ///   `vipLane`, its 5-tuple flow hash stored, its connection-table bucket
    ///   prefetched);
    /// - one the cache does not know yet: plain (1), its destination stored,
    ///   its bit set in the mask returned (for `vipCandidates`, which looks it
    ///   up and fills the cache);
    /// - every other: plain (1), its destination (host order) stored at its
    ///   index in `dst4`.
    /// Returns the first packet it did not take, the bytes of those it took,
    /// that mask (bit i: packet i; bursts are at most 64) and how many it
    /// took as VIP traffic. `portMACs` (by
    /// DPDK port id) nil: every packet came in on the port whose MAC is
    /// `fixedMAC`. `vip` nil: the snapshot has no VIP. `lpm` set: prefetch
    /// each plain packet's root entry (see `Work.prefetchInScan`).
    @inline(never)
    static func scan(_ mb: UnsafeMutablePointer<OpaquePointer>, from start: Int, _ n: Int, fixedMAC: UInt64,
                     portMACs: UnsafePointer<UInt64>?, vip: UnsafePointer<VIPScan>?,
                     plain: UnsafeMutablePointer<UInt32>, dst4: UnsafeMutablePointer<UInt32>, lpm: IPv4LPMView?) -> (Int, Int, UInt64, Int) {
        var i = start
        var candidates: UInt64 = 0
        let vipScan = vip?.pointee // read once: the stores below could alias it
        while i < n {
            if i &+ 4 < n { mbufPrefetch(mb[i &+ 4]) }
            let m = mb[i]
            let p = mbufData(m)
            let len = mbufLength(m)
            let mac = portMACs.map { $0[Int(mbufPort(m)) & (Fabric.maxDPDKPorts - 1)] } ?? fixedMAC
            guard Parser.plainIPv4(p, length: len), p.loadUnaligned(as: UInt64.self) & 0xFFFF_FFFF_FFFF == mac else { break }
            let d = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 30, as: UInt32.self))
            if let v = vipScan, case let last = Int(d & 0xFF), v.filter[last >> 6] & (1 &<< UInt64(last & 63)) != 0 {
                let k = VIPCache.key(p)
                let e = v.cache.entry(k)
                if e.load(as: UInt64.self) == k {
                    let vi = e.load(fromByteOffset: 8, as: Int32.self)
                    if vi >= 0 { // VIP traffic: FlowHash.v4 with the destination's part cached
                        let ports = UInt64(p.loadUnaligned(fromByteOffset: 34, as: UInt32.self).byteSwapped) // source port << 16 | destination port
                        let h = FlowHash.mix(UInt64(UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 26, as: UInt32.self))))
                            ^ e.load(fromByteOffset: 16, as: UInt64.self)
                            ^ FlowHash.mix(UInt64(p.load(fromByteOffset: 23, as: UInt8.self)) << 32 | ports)
                        plain[i] = vipLane(vi)
                        dst4[i] = 0
                        v.hashes.storeBytes(of: h, toByteOffset: i &* 8, as: UInt64.self)
                        v.prefetchBucket(h)
                        i &+= 1
                        continue
                    }
                } else {
                    candidates |= 1 &<< UInt64(i) // `vipCandidates` decides; no prefetch yet
                    plain[i] = 1
                    dst4[i] = d
                    i &+= 1
                    continue
                }
            }
            plain[i] = 1
            dst4[i] = d
            if let lpm { lpm.prefetch(d) }
            i &+= 1
        }
        // The bytes and the VIP count in a loop of their own: summed above,
        // they were two more values carried from packet to packet, which the
        // register allocator kept on the stack (a store-to-load chain per packet).
        var bytes = 0, taken = 0
        for j in start..<i {
            bytes &+= mbufLength(mb[j])
            taken &+= plain[j] > 1 ? 1 : 0 // VIP traffic
        }
        return (i, bytes, candidates, taken)
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
    static func forward(_ mb: UnsafeMutablePointer<OpaquePointer>, from start: Int, _ n: Int, plain: UnsafePointer<UInt32>,
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
            let k = Int(e.load(fromByteOffset: 20, as: UInt16.self))
            i &+= 1
            if stageOut(m, k, stage: stage, staged: staged, burst: burst) { return (i, k) }
        }
        return (i, -1)
    }

    /// Stages `m` for out slot `k` (`Work.emit` without the flush, which the
    /// leaf loops leave to their caller).
    /// Returns true when that slot's staging is full (the caller sends it).
    @inline(__always)
    static func stageOut(_ m: OpaquePointer, _ k: Int, stage: UnsafeMutablePointer<OpaquePointer?>, staged: UnsafeMutablePointer<Int>,
                         burst: Int) -> Bool {
        let c = staged[k]
        stage[k &* burst &+ c] = m
        staged[k] = c &+ 1
        return c &+ 1 == burst
    }

    /// Pass 1 for the plain packets whose (destination, protocol, port) the
    /// VIP cache did not know (bit i of `candidates`: packet i): looks each
    /// up in the snapshot and caches the answer; those addressed to a VIP
    /// become VIP traffic as in `scan`, the others stay plain (their root
    /// entry prefetched when `lpm` is set). Returns how many stayed plain.
    @inline(never)
    static func vipCandidates(_ mb: UnsafeMutablePointer<OpaquePointer>, _ candidates: UInt64, snapshot s: Snapshot, vip v: VIPScan,
                              plain: UnsafeMutablePointer<UInt32>, dst4: UnsafeMutablePointer<UInt32>, lpm: IPv4LPMView?) -> Int {
        var left = candidates, stayed = 0
        while left != 0 {
            let i = left.trailingZeroBitCount
            left &= left &- 1
            let p = mbufData(mb[i])
            let d = dst4[i]
            let proto = p.load(fromByteOffset: 23, as: UInt8.self)
            let dport = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 36, as: UInt16.self))
            let (hi, lo) = Snapshot.mappedWords(v4: d)
            let vi = s.vip(hi: hi, lo: lo, proto: proto, port: dport)
            v.cache.fill(p, vip: vi)
            guard vi >= 0 else {
                if let lpm { lpm.prefetch(d) }
                stayed &+= 1
                continue
            }
            let h = FlowHash.v4(src: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 26, as: UInt32.self)), dst: d, proto: proto,
                                srcPort: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 34, as: UInt16.self)), dstPort: dport)
            plain[i] = vipLane(vi)
            dst4[i] = 0
            v.hashes.storeBytes(of: h, toByteOffset: i &* 8, as: UInt64.self)
            v.prefetchBucket(h)
        }
        return stayed
    }

    /// Pass 3 for VIP traffic from packet `start` (Work.balance's common case
    /// in a loop without calls): while packets are plain VIP traffic to
    /// packet `start`'s VIP (the same lane; the caller calls again at the
    /// next VIP; the lane after the burst is 0), of an established flow
    /// whose tunnel is cached under `tag` for the flow's backend
    /// (`Work.tunnels`: IPv4 outer header routed by one next hop; a tunnel
    /// is cached only for a backend taking traffic, and the tag changes with
    /// the snapshot) and which fit the out port's MTU: refreshes the
    /// connection entry, encapsulates (IPIP or GUE) from the tunnel's
    /// template, writes the outer Ethernet header, counts the VIP and
    /// backend, stages for the out port. `lanes`: `Work.plain`, with the
    /// flow hashes and the refresh words at their `Work.Lanes` offsets. `lb`:
    /// the VIP counters, `backendCounters`: the backend counters that follow
    /// them. Returns the first packet it did not take and the staging slot it
    /// filled (-1: none), as `forward`. (Split in two loops, one matching the
    /// run's flows and one rewriting their packets, it ran 6% slower:
    /// measured 2026-12-04, docs/performance.md.)
    @inline(never)
    static func tunnel(_ mb: UnsafeMutablePointer<OpaquePointer>, from start: Int, lanes plain: UnsafePointer<UInt32>, conn: ConnTable,
                       tunnels: UnsafeRawPointer, tag: UInt64, lb: UnsafeMutablePointer<UInt64>,
                       backendCounters: UnsafeMutablePointer<UInt64>, backendSlots: Int,
                       stage: UnsafeMutablePointer<OpaquePointer?>, staged: UnsafeMutablePointer<Int>, burst: Int) -> (Int, Int) {
        // One VIP per call (a burst is mostly one): its tunnels and counters
        // are fixed for the loop, and its packet and byte counts are added
        // once at the end (every packet here is a connection-table hit).
        let lane = plain[start]
        let vi = laneVIP(lane)
        let vipTunnels = tunnels + vi &* backendSlots &* Work.tunnelSize
        let vipBackends = backendCounters + vi &* backendSlots &* LBCounter.perBackend
        let block = UnsafeRawPointer(plain)
        let words = (block + Work.Lanes.refreshWords).assumingMemoryBound(to: UInt64.self)
        let now = UInt32(truncatingIfNeeded: words[4])
        var i = start, filled = -1
        var bytes: UInt64 = 0
        while plain[i] == lane {
            let h = block.load(fromByteOffset: Work.Lanes.hashes &+ i &* 8, as: UInt64.self)
            guard let hit = conn.find(hash: h, fingerprint: LoadBalancer.fingerprint(h), now: now) else { break }
            let te = vipTunnels + hit.position &* Work.tunnelSize
            // The flow's backend where it was when the tunnel was cached in this snapshot (else the full path decides).
            guard te.load(as: UInt64.self) == tag, te.load(fromByteOffset: 60, as: UInt32.self) == hit.backendID else { break }
            let m = mb[i]
            let p = mbufData(m)
            let guePort = te.load(fromByteOffset: 28, as: UInt16.self) // 0: IPIP
            let overhead = guePort != 0 ? 32 : 20
            let innerLength = Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt16.self)))
            // The frame holds the inner packet whole (Parser.plainIPv4), so only the headroom can be short.
            guard innerLength &+ overhead <= Int(te.load(fromByteOffset: 22, as: UInt16.self)),
                  let np = mbufPushFront(m, delta: overhead, length: 14 &+ overhead &+ innerLength) else { break }
            // The entry has the UDP flag from its insertion (the hash covers the
            // protocol); only a TCP FIN or RST adds one. Without branches: for
            // UDP the byte read as TCP flags does not count (it is inside the
            // mbuf's buffer, whatever the frame's length).
            let tcp: UInt64 = p.load(fromByteOffset: 23, as: UInt8.self) == 6 ? 1 : 0
            let finOrRST: UInt64 = p.load(fromByteOffset: 47, as: UInt8.self) & 0x05 != 0 ? 1 : 0
            ConnTable.refresh(hit, words: words, flags: (tcp & finOrRST) * ConnTable.closing)
            writeOuterIPv4(np + 14, tunnel: te, tos: p.load(fromByteOffset: 15, as: UInt8.self), length: overhead &+ innerLength)
            if guePort != 0 {
                LoadBalancer.writeGUE(np + 34, length: 12 &+ innerLength, sourcePort: LoadBalancer.gueSourcePort(h), port: guePort, innerProto: 4)
            }
            writeOuterEthernet(np, tunnel: te)
            bytes &+= UInt64(innerLength)
            let bc = vipBackends + hit.position &* LBCounter.perBackend
            bc[LBCounter.backendPackets] &+= 1
            bc[LBCounter.backendBytes] &+= UInt64(innerLength)
            let k = Int(te.load(fromByteOffset: 20, as: UInt16.self))
            i &+= 1
            if stageOut(m, k, stage: stage, staged: staged, burst: burst) { filled = k; break }
        }
        addVIPHits(lb + vi &* LBCounter.perVIP, packets: UInt64(i &- start), bytes: bytes)
        return (i, filled)
    }

    /// `packets` connection-table hits of `bytes` in a VIP's counters (`c`).
    @inline(__always)
    static func addVIPHits(_ c: UnsafeMutablePointer<UInt64>, packets: UInt64, bytes: UInt64) {
        c[LBCounter.connHits] &+= packets
        c[LBCounter.packets] &+= packets
        c[LBCounter.bytes] &+= bytes
    }

    /// The outer IPv4 header of a tunnel (`Work.tunnels` entry `te`) from its
    /// template: only the first word (TOS, total `length`) and the checksum
    /// differ by packet. Outer TTL 64, DF, id 0.
    @inline(__always)
    static func writeOuterIPv4(_ outer: UnsafeMutableRawPointer, tunnel te: UnsafeRawPointer, tos: UInt8, length: Int) {
        let lengthWord = UInt32(UInt16(truncatingIfNeeded: length).bigEndian)
        let w0 = UInt32(0x45) | UInt32(tos) << 8 | lengthWord << 16
        // The template's sum (16 bits, with the 0x45) plus two 16-bit words:
        // below 2^18, so two folds give the ones' complement sum.
        let x = te.load(fromByteOffset: 24, as: UInt32.self) &+ UInt32(tos) << 8 &+ lengthWord
        let y = (x & 0xFFFF) &+ (x &>> 16)
        let sum = ~((y & 0xFFFF) &+ (y &>> 16)) & 0xFFFF
        outer.storeBytes(of: UInt64(w0) | UInt64(UInt16(0x4000).bigEndian) << 48, as: UInt64.self)
        outer.storeBytes(of: te.load(fromByteOffset: 48, as: UInt64.self) | UInt64(sum) << 16, toByteOffset: 8, as: UInt64.self)
        outer.storeBytes(of: te.load(fromByteOffset: 56, as: UInt32.self), toByteOffset: 16, as: UInt32.self)
    }

    /// The outer Ethernet header of a tunnel (MACs from entry `te`, IPv4).
    @inline(__always)
    static func writeOuterEthernet(_ np: UnsafeMutableRawPointer, tunnel te: UnsafeRawPointer) {
        np.storeBytes(of: te.load(fromByteOffset: 8, as: UInt64.self), as: UInt64.self)
        np.storeBytes(of: te.load(fromByteOffset: 16, as: UInt32.self), toByteOffset: 8, as: UInt32.self)
        np.storeBytes(of: UInt16(0x0800).bigEndian, toByteOffset: 12, as: UInt16.self)
    }
}

/// A worker's cache of VIP lookups for plain IPv4 traffic, so the scan can
/// take VIP packets itself: 16 entries, direct-mapped by destination, port
/// and protocol. An entry (32 bytes): key (`key(_:)`), the VIP index (-1:
/// no VIP's), and the destination's part of `FlowHash.v4` (the same for
/// every flow to the VIP). Filled by `ShortPath.vipCandidates`, emptied when
/// the snapshot changes.
struct VIPCache {
    static let entries = 16, entrySize = 32
    let base: UnsafeMutableRawPointer

    init() {
        base = .allocate(byteCount: VIPCache.entries * VIPCache.entrySize, alignment: 64)
        clear()
    }

    func deallocate() { base.deallocate() }

    func clear() { base.initializeMemory(as: UInt8.self, repeating: 0, count: VIPCache.entries * VIPCache.entrySize) }

    /// The key of the plain IPv4 TCP/UDP frame at `p`: its destination
    /// address and port as on the wire (bytes 30-33 and 36-37, one load, no
    /// byte swaps; the source port between them masked off), the protocol,
    /// and bit 40 so that no key is 0 (an empty entry).
    @inline(__always)
    static func key(_ p: UnsafeRawPointer) -> UInt64 {
        p.loadUnaligned(fromByteOffset: 30, as: UInt64.self) & 0xFFFF_0000_FFFF_FFFF
            | UInt64(p.load(fromByteOffset: 23, as: UInt8.self)) &<< 32 | 1 &<< 40
    }

    /// The entry for key `k`: by the destination's last byte, the protocol and the port's low byte.
    @inline(__always)
    func entry(_ k: UInt64) -> UnsafeMutableRawPointer {
        base + Int(truncatingIfNeeded: (k &>> 24 ^ k &>> 32 ^ k &>> 56) & UInt64(VIPCache.entries - 1)) &* VIPCache.entrySize
    }

    /// Records the answer of the snapshot's VIP lookup for the (destination, protocol, port) of the frame at `p`.
    @inline(__always)
    func fill(_ p: UnsafeRawPointer, vip: Int32) {
        let k = VIPCache.key(p)
        let e = entry(k)
        let b = FlowHash.mix(UInt64(UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 30, as: UInt32.self))))
        e.storeBytes(of: k, as: UInt64.self)
        e.storeBytes(of: vip, toByteOffset: 8, as: Int32.self)
        e.storeBytes(of: b &<< 17 | b &>> 47, toByteOffset: 16, as: UInt64.self)
    }
}
