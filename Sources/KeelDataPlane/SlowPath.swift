import CDPDK
import KeelDPDK
import KeelForward
import KeelPacket
import KeelStats
import KeelTables

/// The main lcore's share of packet work, off the fast path: it is the one
/// writer of the neighbor table. Workers send it packets whose next hop has
/// no MAC yet (it holds a few per neighbor, asks with ARP/NS, retries, gives
/// up with ICMP host unreachable) and the ARP replies / Neighbor
/// Advertisements addressed to the appliance (it learns them and passes them
/// on to the port's TAP, since the kernel may have asked). It also refreshes
/// learned entries: after `reachable_seconds` it asks again and forgets the
/// MAC when nobody answers.
final class SlowPath {
    struct Pending {
        var port: UInt16
        var held: [OpaquePointer] = []
        var tries = 0
        var nextAt: UInt64 = 0
    }
    struct Known {
        var learnedAt: UInt64
        var refreshTries = 0
        var nextAt: UInt64 = 0
        var isStatic = false
    }

    let f: Fabric
    let c: DataPlaneConfig
    let counters: UnsafeMutablePointer<UInt64>
    let pool: OpaquePointer
    var table: NeighborTable
    var pending: [Int: Pending] = [:]
    var known: [Int: Known] = [:]
    let forwarder = Forwarder()
    let nextHop = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 16)
    let learned = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 16)
    var info = PacketInfo()
    var icmpBucket: TokenBucket

    init(fabric: Fabric, config: DataPlaneConfig, counters: UnsafeMutablePointer<UInt64>, pool: OpaquePointer) {
        f = fabric; c = config; self.counters = counters; self.pool = pool
        table = NeighborTable(memory: fabric.neighborMemory, capacity: fabric.neighborCapacity, attach: true)
        icmpBucket = TokenBucket(rate: UInt64(config.icmp.rate), burst: UInt64(config.icmp.burst), now: monotonicNs())
    }

    var retryNs: UInt64 { UInt64(c.neighbors.retryMs) * 1_000_000 }

    func count(_ i: Int) { counters[i] &+= 1 }
    func drop(_ m: OpaquePointer, _ r: DropReason) { counters[Counter.drop(Int(r.rawValue))] &+= 1; mbufFree(m) }

    let one = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: 1)

    func send(_ m: OpaquePointer, port: Int) {
        one[0] = m
        if Ring(f.txRings[port]!).enqueue(one, count: 1) != 1 { drop(m, .ringFull) }
    }

    func toKernel(_ m: OpaquePointer, port: Int) {
        guard let r = f.tapRings[port] else { mbufFree(m); return }
        one[0] = m
        if Ring(r).enqueue(one, count: 1) != 1 { drop(m, .ringFull) }
    }

    func loadStaticNeighbors(_ s: Snapshot) {
        var now: Set<Int> = []
        for i in 0..<s.staticNeighborCount {
            let n = s.staticNeighbor(i)
            n.address.store(to: scratch)
            let idx = table.entryIndex(port: n.port, address: scratch)
            guard idx >= 0 else { count(Counter.neighborTableFull); continue }
            n.mac.withUnsafeBytes { table.setMAC(idx, $0.baseAddress!) }
            known[idx] = Known(learnedAt: monotonicNs(), isStatic: true)
            now.insert(idx)
            release(idx, s)
        }
        // Static entries that left the configuration are forgotten (learned again if still there).
        for (idx, k) in known where k.isStatic && !now.contains(idx) {
            table.clearMAC(idx)
            known[idx] = nil
        }
    }

    /// One packet from a worker.
    func handle(_ m: OpaquePointer, snapshot s: Snapshot) {
        let inPort = Int(f.indexOfDPDKPort[Int(mbufPort(m)) & (Fabric.maxDPDKPorts - 1)])
        let p = mbufData(m), len = mbufLength(m)
        guard inPort >= 0 else { drop(m, .unknownPort); return }
        guard Parser.parse(p, length: len, into: &info) == .none else { drop(m, .truncated); return }
        if info.l3 == PacketInfo.arp {
            let (_, shouldLearn) = NeighborDiscovery.arp(p, length: len, info, port: inPort, snapshot: s, learned: learned)
            if shouldLearn {
                // learned = MAC (6) then IPv4 (4); the table keys on the mapped address.
                scratch.storeBytes(of: UInt64(0), as: UInt64.self)
                scratch.storeBytes(of: UInt32(0xFFFF).bigEndian, toByteOffset: 8, as: UInt32.self)
                (scratch + 12).copyMemory(from: learned + 6, byteCount: 4)
                learn(port: UInt16(inPort), address: scratch, mac: learned, s)
            }
            toKernel(m, port: inPort)
            return
        }
        if info.l3 == PacketInfo.ipv6 && info.l4Proto == 58 && p.load(fromByteOffset: Int(info.l4Offset), as: UInt8.self) == 136 {
            if NeighborDiscovery.advertised(p, info, target: scratch, mac: learned) {
                learn(port: UInt16(inPort), address: scratch, mac: learned, s)
            }
            toKernel(m, port: inPort)
            return
        }
        route(m, snapshot: s, fresh: true)
    }

    /// Routes a packet that waited (or is about to wait) for a neighbor.
    func route(_ m: OpaquePointer, snapshot s: Snapshot, fresh: Bool) {
        let p = mbufData(m), len = mbufLength(m)
        guard Parser.parse(p, length: len, into: &info) == .none else { drop(m, .truncated); return }
        switch forwarder.route(p, length: len, info, hash: FlowHash.of(p, info), snapshot: s, neighbors: table, nextHop: nextHop) {
        case .forward(let out):
            if !fresh { count(Counter.heldReleased) }
            send(m, port: Int(out))
        case .resolve(let out):
            let idx = table.entryIndex(port: out, address: nextHop)
            guard idx >= 0 else { count(Counter.neighborTableFull); drop(m, .neighborUnresolved); return }
            var e = pending[idx] ?? Pending(port: out)
            if e.held.count < c.neighbors.holdPackets {
                e.held.append(m)
                count(Counter.held)
            } else { drop(m, .neighborUnresolved) }
            if e.tries == 0 {
                e.tries = 1
                e.nextAt = monotonicNs() + retryNs
                solicit(port: Int(out), address: nextHop, s)
            }
            pending[idx] = e
        default:
            // The snapshot changed while it waited: whatever it is now, it is not ours to finish here.
            drop(m, .neighborUnresolved)
        }
    }

    func learn(port: UInt16, address: UnsafeRawPointer, mac: UnsafeRawPointer, _ s: Snapshot) {
        let idx = table.entryIndex(port: port, address: address)
        guard idx >= 0 else { count(Counter.neighborTableFull); return }
        if known[idx]?.isStatic == true { return } // configuration wins
        table.setMAC(idx, mac)
        count(Counter.learned)
        let now = monotonicNs()
        known[idx] = Known(learnedAt: now, nextAt: now + UInt64(c.neighbors.reachableSeconds) * 1_000_000_000)
        release(idx, s)
    }

    /// Sends what waited for entry `idx`.
    func release(_ idx: Int, _ s: Snapshot) {
        guard let e = pending.removeValue(forKey: idx) else { return }
        for m in e.held { route(m, snapshot: s, fresh: false) }
    }

    /// An ARP request or Neighbor Solicitation for `address` (16 bytes, mapped) out of `port`.
    func solicit(port: Int, address: UnsafeRawPointer, _ s: Snapshot) {
        let v4 = address.loadUnaligned(as: UInt64.self) == 0 && address.loadUnaligned(fromByteOffset: 8, as: UInt32.self) == UInt32(0xFFFF).bigEndian
        guard s.firstPortAddress(port, family: v4 ? 4 : 6, into: scratch + 16) else { return }
        guard let q = rte_pktmbuf_alloc(pool) else { count(Counter.noMbuf); return }
        let n = v4
            ? NeighborDiscovery.arpRequest(port: port, snapshot: s,
                                           source: UInt32(bigEndian: (scratch + 16).loadUnaligned(fromByteOffset: 12, as: UInt32.self)),
                                           target: UInt32(bigEndian: address.loadUnaligned(fromByteOffset: 12, as: UInt32.self)), into: mbufData(q))
            : NeighborDiscovery.neighborSolicitation(port: port, snapshot: s, source: scratch + 16, target: address, into: mbufData(q))
        mbufSetLength(q, n)
        count(Counter.solicitations)
        send(q, port: port)
    }

    func timers(now: UInt64, snapshot s: Snapshot) {
        let addr = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
        let mac = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8)
        defer { addr.deallocate(); mac.deallocate() }
        for (idx, var e) in pending where now >= e.nextAt {
            let entry = table.read(idx, address: addr, mac: mac)
            if e.tries < c.neighbors.retries {
                e.tries += 1
                e.nextAt = now + retryNs
                pending[idx] = e
                solicit(port: Int(entry.port), address: addr, s)
                continue
            }
            // Nobody answered: destination host unreachable to each sender (RFC 1812 4.3.3.1).
            pending[idx] = nil
            for m in e.held { unreachable(m, s) }
        }
        for (idx, var k) in known where !k.isStatic && now >= k.nextAt {
            let entry = table.read(idx, address: addr, mac: mac)
            if k.refreshTries >= c.neighbors.retries {
                table.clearMAC(idx) // stale: the next packet asks afresh
                known[idx] = nil
                continue
            }
            k.refreshTries += 1
            k.nextAt = now + retryNs
            known[idx] = k
            solicit(port: Int(entry.port), address: addr, s)
        }
    }

    func unreachable(_ m: OpaquePointer, _ s: Snapshot) {
        count(Counter.heldExpired)
        defer { drop(m, .neighborUnresolved) }
        let p = mbufData(m)
        let inPort = Int(f.indexOfDPDKPort[Int(mbufPort(m)) & (Fabric.maxDPDKPorts - 1)])
        guard inPort >= 0, Parser.parse(p, length: mbufLength(m), into: &info) == .none, ICMP.mayReportError(p, info) else { return }
        guard icmpBucket.take(now: monotonicNs()) else { count(Counter.icmpRateLimited); return }
        let v4 = info.l3 == PacketInfo.ipv4
        guard s.firstPortAddress(inPort, family: v4 ? 4 : 6, into: scratch), let q = rte_pktmbuf_alloc(pool) else { return }
        // The frame is rewritten only once resolved, so its source MAC is still the sender's.
        s.copyPortMAC(inPort, to: scratch + 16)
        let n = ICMP.error(p, info, type: v4 ? 3 : 1, code: v4 ? 1 : 3, mtu: 0, source: scratch, srcMAC: scratch + 16, dstMAC: p + 6, into: mbufData(q))
        mbufSetLength(q, n)
        count(Counter.icmpErrorsSent)
        send(q, port: inPort)
    }

    /// Frees what is still held (at stop).
    func releaseAll() {
        for (_, e) in pending { for m in e.held { mbufFree(m) } }
        pending = [:]
    }
}
