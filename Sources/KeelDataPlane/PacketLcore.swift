import CKeelIntrinsics
import Atomics
import CDPDK
import KeelDPDK
import KeelForward
import KeelPacket
import KeelStats
import KeelTables

/// What every lcore shares: port and ring handles, fixed at start. Plain
/// pointers and integers only, so reading it in the loop retains nothing.
public struct Fabric: @unchecked Sendable {
    public var portCount = 0
    /// DPDK port id of data port i (snapshot port i).
    public var portIds: UnsafeMutablePointer<UInt16>
    /// DPDK port id of data port i's TAP, or -1.
    public var tapIds: UnsafeMutablePointer<Int32>
    /// Snapshot port index of each DPDK port id (-1 for TAPs and unknown ids).
    public var indexOfDPDKPort: UnsafeMutablePointer<Int16>
    /// Per data port: packets to transmit on it (any producer, its I/O lcore consumes).
    public var txRings: UnsafeMutablePointer<OpaquePointer?>
    /// Per data port: packets for its TAP (the kernel), or nil.
    public var tapRings: UnsafeMutablePointer<OpaquePointer?>
    /// One ring per worker (pipeline mode).
    public var workerRings: UnsafeMutablePointer<OpaquePointer?>
    public var workerCount = 0
    /// To the main lcore: packets waiting for a neighbor, ARP replies and NAs to learn from.
    public var slowRing: OpaquePointer
    /// Mempool for packets the data plane makes (ICMP errors).
    public var pool: OpaquePointer
    public var neighborMemory: UnsafeMutableRawPointer
    public var neighborCapacity = 0
    /// 0 running, 1 draining (no more RX), 2 stop.
    public var stage: UnsafeAtomic<Int>
    public var burst = 32
    public var icmpRate: UInt64 = 1000, icmpBurst: UInt64 = 100
    /// Snapshot limits, for the per-lcore next-hop MAC cache.
    public var nextHopGroups = 1, ecmpWays = 1
    /// Load balancing: VIP and backend slots of the stats file's LB blocks,
    /// and each routing lcore's connection table.
    public var vipSlots = 0, backendSlots = 0
    public var conntrack = DataPlaneConfig.ConnTrack()

    public static let maxDPDKPorts = 64
}

/// One packet lcore: an I/O lcore (polls its ports' RX, steers to workers,
/// drains its ports' TX rings), a worker (routes bursts from its ring), or
/// both at once (run to completion, the one-lcore mode).
public struct PacketLcore: @unchecked Sendable {
    public enum Kind: Sendable { case io, worker, single }
    let kind: Kind
    let f: Fabric
    let counters: UnsafeMutablePointer<UInt64>
    /// This lcore's load-balancer counters (stats file LB block).
    let lbCounters: UnsafeMutablePointer<UInt64>
    /// Ports whose queue 0 this lcore owns (I/O and single): indices of data ports.
    let owned: [Int]
    let ownsPort: UnsafeMutablePointer<Bool>
    let workerIndex: Int
    let file: TablesFile?
    let line: Int
    let source: UnsafeAtomic<UInt64>?

    public init(kind: Kind, fabric: Fabric, counters: UnsafeMutablePointer<UInt64>, lbCounters: UnsafeMutablePointer<UInt64>,
                ownedPorts: [Int], workerIndex: Int, file: TablesFile?, line: Int, source: UnsafeAtomic<UInt64>?) {
        self.kind = kind; f = fabric; self.counters = counters; self.lbCounters = lbCounters; owned = ownedPorts; self.workerIndex = workerIndex
        self.file = file; self.line = line; self.source = source
        ownsPort = .allocate(capacity: max(fabric.portCount, 1))
        ownsPort.initialize(repeating: false, count: max(fabric.portCount, 1))
        for p in ownedPorts { ownsPort[p] = true }
    }

    /// Test and profiling entry: runs `bursts` bursts through this lcore's real
    /// routing code on the calling thread. Each burst is `count` frames copied
    /// from `frames` (`stride` bytes apart, lengths in `lengths`) into mbufs
    /// from the fabric's pool, as if received on data port 0; output goes to
    /// the ports like in `run`. `between(true/false)` is called after the
    /// warm-up half and at the end (keel-alloccheck counts allocations there).
    /// Everything per burst is preallocated, as in `run`.
    public func drive(bursts: Int, frames: UnsafeRawPointer, stride: Int, lengths: UnsafePointer<Int>, count: Int,
                      between: (Bool) -> Void) {
        let rx = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: f.burst)
        let slots = 2 * f.portCount + 1
        let stage = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: f.burst * slots)
        let staged = UnsafeMutablePointer<Int>.allocate(capacity: slots)
        staged.initialize(repeating: 0, count: slots)
        var w = Work(f: f, counters: counters, lb: lbCounters, stage: stage, staged: staged, ownsPort: ownsPort, conntrack: true)
        w.prefetchInScan = file?.onHugePages ?? false
        defer { w.release() }
        var reader = LcoreReader(file: file!, line: line, source: source!)
        reader.online()
        let neighbors = NeighborTable(memory: f.neighborMemory, capacity: f.neighborCapacity, attach: true)
        let n = min(count, f.burst)
        for b in 0..<(2 * bursts) {
            if b == bursts { between(true) }
            _ = reader.refresh()
            var got = 0
            while got < n, let m = rte_pktmbuf_alloc(f.pool) {
                mbufData(m).copyMemory(from: frames + got * stride, byteCount: lengths[got])
                mbufSetLength(m, lengths[got])
                keel_mbuf_set_port(m, f.portIds[0])
                rx[got] = m
                got += 1
            }
            w.processBurst(rx, got, snapshot: reader.snapshot, seen: reader.seen, neighbors: neighbors, rxPort: 0)
            w.flushAll()
        }
        between(false)
        reader.offline()
        rx.deallocate(); stage.deallocate(); staged.deallocate()
    }

    /// Test entry: transmits what other lcores (or the main lcore's slow path)
    /// queued for the ports this lcore owns, as `run`'s loop does each turn.
    public func drainQueued() {
        let rx = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: f.burst)
        defer { rx.deallocate() }
        drainOwned(rx, f.burst)
    }

    /// The lcore's loop; returns when `stage` says stop.
    public func run() {
        let burst = f.burst
        let rx = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: burst)
        // Staging: per data port then per TAP, `burst` each; per worker for steering.
        let slots = 2 * f.portCount + 1
        let stage = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: burst * slots)
        let staged = UnsafeMutablePointer<Int>.allocate(capacity: slots)
        staged.initialize(repeating: 0, count: slots)
        let steer = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: burst * max(f.workerCount, 1))
        let steered = UnsafeMutablePointer<Int>.allocate(capacity: max(f.workerCount, 1))
        steered.initialize(repeating: 0, count: max(f.workerCount, 1))
        var w = Work(f: f, counters: counters, lb: lbCounters, stage: stage, staged: staged, ownsPort: ownsPort, conntrack: kind != .io)
        w.prefetchInScan = file?.onHugePages ?? false
        defer { w.release() }
        var reader: LcoreReader? = nil
        if kind != .io, let file, let source {
            reader = LcoreReader(file: file, line: line, source: source)
            reader!.online()
        }
        let neighbors = NeighborTable(memory: f.neighborMemory, capacity: f.neighborCapacity, attach: true)
        var info = PacketInfo()
        var turns: UInt64 = 0
        while true {
            let st = f.stage.load(ordering: .relaxed)
            if st == 2 { break }
            turns &+= 1
            if turns & 63 == 0 { w.clock = monotonicNs(); counters[Counter.turns] = turns; w.countFlowsStep() }
            if reader != nil, reader!.refresh() { counters[Counter.snapshotSwitches] &+= 1 }
            switch kind {
            case .worker:
                let n = Ring(f.workerRings[workerIndex]!).dequeue(rx, max: burst)
                if n > 0 { w.processBurst(rx, n, snapshot: reader!.snapshot, seen: reader!.seen, neighbors: neighbors) }
                w.flushAll()
            case .single:
                if st == 0 {
                    for p in owned {
                        // Counted in the burst's first pass, not in a loop of its own.
                        let n = EthPort(existing: f.portIds[p]).receive(queue: 0, rx, max: UInt16(burst))
                        if n > 0 { w.processBurst(rx, n, snapshot: reader!.snapshot, seen: reader!.seen, neighbors: neighbors, rxPort: p) }
                    }
                }
                w.flushAll()
                drainOwned(rx, burst)
                if st == 0 { pollTaps(rx, burst) }
            case .io:
                if st == 0 {
                    for p in owned {
                        let n = receive(p, rx)
                        if n > 0 { steerBurst(rx, n, steer, steered, &info) }
                    }
                    pollTaps(rx, burst)
                }
                drainOwned(rx, burst)
            }
        }
        reader?.offline()
        counters[Counter.turns] = turns
    }

    /// One rx_burst on data port `p`, counted.
    @inline(__always)
    func receive(_ p: Int, _ rx: UnsafeMutablePointer<OpaquePointer?>) -> Int {
        let n = EthPort(existing: f.portIds[p]).receive(queue: 0, rx, max: UInt16(f.burst))
        if n > 0 { countRX(p, rx, n) }
        return n
    }

    @inline(__always)
    func countRX(_ p: Int, _ rx: UnsafeMutablePointer<OpaquePointer?>, _ n: Int) {
        var bytes = 0
        for i in 0..<n { bytes &+= mbufLength(rx[i]!) }
        counters[Counter.rxPackets(p)] &+= UInt64(n)
        counters[Counter.rxBytes(p)] &+= UInt64(bytes)
    }

    /// Pipeline I/O: hash each packet (the NIC's RSS hash, else the software
    /// flow hash: 5-tuple, 3-tuple for fragments; for ICMP errors the quoted
    /// flow's) and put it on that worker's ring.
    @inline(__always)
    func steerBurst(_ rx: UnsafeMutablePointer<OpaquePointer?>, _ n: Int, _ steer: UnsafeMutablePointer<OpaquePointer?>,
                    _ steered: UnsafeMutablePointer<Int>, _ info: inout PacketInfo) {
        let workers = f.workerCount, burst = f.burst
        for i in 0..<n {
            let m = rx[i]!
            let h: UInt64
            if let rss = mbufRSS(m) { h = FlowHash.mix(UInt64(rss)) } else {
                let p = mbufData(m)
                let len = mbufLength(m)
                h = Parser.parse(p, length: len, into: &info) == .none ? LoadBalancer.steeringHash(p, length: len, info) : 0
            }
            let k = Int(truncatingIfNeeded: h % UInt64(workers))
            steer[k * burst + steered[k]] = m
            steered[k] += 1
        }
        for k in 0..<workers where steered[k] > 0 {
            let c = steered[k]
            let sent = Ring(f.workerRings[k]!).enqueue(steer + k * burst, count: c)
            if sent < c {
                counters[Counter.ringFull] &+= UInt64(c - sent)
                counters[Counter.drop(Int(DropReason.ringFull.rawValue))] &+= UInt64(c - sent)
                for j in sent..<c { mbufFree(steer[k * burst + j]!) }
            }
            steered[k] = 0
        }
    }

    /// What the kernel sends out of a TAP goes out of its port, as it is.
    @inline(__always)
    func pollTaps(_ rx: UnsafeMutablePointer<OpaquePointer?>, _ burst: Int) {
        for p in owned where f.tapIds[p] >= 0 {
            let n = EthPort(existing: UInt16(f.tapIds[p])).receive(queue: 0, rx, max: UInt16(burst))
            guard n > 0 else { continue }
            counters[Counter.fromKernel] &+= UInt64(n)
            transmit(port: p, rx, n)
        }
    }

    /// Ports this lcore owns: what other lcores queued for them (TX rings, TAP rings).
    @inline(__always)
    func drainOwned(_ rx: UnsafeMutablePointer<OpaquePointer?>, _ burst: Int) {
        for p in owned {
            let n = Ring(f.txRings[p]!).dequeue(rx, max: burst)
            if n > 0 { transmit(port: p, rx, n) }
            if let tr = f.tapRings[p] {
                let k = Ring(tr).dequeue(rx, max: burst)
                if k > 0 { transmitTap(port: p, rx, k) }
            }
        }
    }

    @inline(__always)
    func transmit(port p: Int, _ b: UnsafeMutablePointer<OpaquePointer?>, _ n: Int) {
        transmitOnQueue(f, counters, port: p, b, n)
    }

    @inline(__always)
    func transmitTap(port p: Int, _ b: UnsafeMutablePointer<OpaquePointer?>, _ n: Int) {
        transmitOnTap(f, counters, port: p, b, n)
    }
}

/// Sends `n` packets on data port `p`'s queue 0 (the caller owns it), frees
/// what the queue did not take, counts packets and bytes sent and the rest.
@inline(__always)
func transmitOnQueue(_ f: Fabric, _ counters: UnsafeMutablePointer<UInt64>, port p: Int, _ b: UnsafeMutablePointer<OpaquePointer?>, _ n: Int) {
    var bytes = 0
    for i in 0..<n { bytes &+= mbufLength(b[i]!) }
    let sent = EthPort(existing: f.portIds[p]).send(queue: 0, b, count: n)
    var unsent = 0
    for i in sent..<n { unsent &+= mbufLength(b[i]!); mbufFree(b[i]!) }
    counters[Counter.txPackets(p)] &+= UInt64(sent)
    counters[Counter.txBytes(p)] &+= UInt64(bytes - unsent)
    if sent < n { counters[Counter.drop(Int(DropReason.txFull.rawValue))] &+= UInt64(n - sent) }
}

/// Hands `n` packets to data port `p`'s TAP (the caller owns its queue), frees the rest.
@inline(__always)
func transmitOnTap(_ f: Fabric, _ counters: UnsafeMutablePointer<UInt64>, port p: Int, _ b: UnsafeMutablePointer<OpaquePointer?>, _ n: Int) {
    let sent = EthPort(existing: UInt16(f.tapIds[p])).send(queue: 0, b, count: n)
    for i in sent..<n { mbufFree(b[i]!) }
    counters[Counter.toKernel] &+= UInt64(sent)
    if sent < n { counters[Counter.drop(Int(DropReason.txFull.rawValue))] &+= UInt64(n - sent) }
}

/// The per-packet work of a worker (or single) lcore over one burst, and
/// its output staging. Everything it touches is preallocated.
struct Work {
    let f: Fabric
    let counters: UnsafeMutablePointer<UInt64>
    let stage: UnsafeMutablePointer<OpaquePointer?>
    let staged: UnsafeMutablePointer<Int>
    let ownsPort: UnsafeMutablePointer<Bool>
    let nextHop = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 16)
    let learned = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 16)
    let forwarder = Forwarder()
    var cache: NeighborCache
    /// Whole rewrites for plain IPv4 packets by (group, member), under `cache.tag`.
    let fastHops: FastHops
    /// Per burst, the lanes (`ShortPath.vipLane`): 1 where pass 1 found a
    /// plain IPv4 packet for the short path, 2 + v for a plain IPv4 packet to
    /// VIP v, 0 for the rest.
    /// Lane `n` (after the burst's last packet) is 0, so `ShortPath.tunnel`
    /// stops at the burst's end by its lane test alone. `plain`, `hashes` and
    /// `refreshWords` share one block (`Lanes`).
    let plain: UnsafeMutablePointer<UInt32>
    /// Each backend's MAC when it is on a link of the appliance, by VIP slot and backend position.
    var backendMACs: NeighborCache
    /// Each backend's tunnel, by VIP slot and backend position (`tunnelSize`
    /// bytes each): tag (under `cache.tag`), outer Ethernet addresses (12),
    /// out port, its MTU; at 24 the sum of the outer IPv4 header's words
    /// but the first, plus that word's 0x45 (folded to 16 bits), at 28 the GUE port (0: IPIP); outer source
    /// (16, IPv4 mapped, at 32); at 48 the header's third and fourth words
    /// (TTL 64, protocol, checksum 0, source), at 56 its destination; at 60
    /// the backend's id.
    let tunnels: UnsafeMutableRawPointer
    static let tunnelSize = 64
    /// The per-burst block of `plain` (65 lanes: 64 packets and the 0 after
    /// the last), `hashes` and `refreshWords`, at fixed offsets: the tunnel
    /// loop reaches all three from one register. Passed each as a pointer of
    /// its own, they were part of 16 values live in that loop, which the
    /// register allocator could only keep by reloading half of them from the
    /// stack on every packet.
    enum Lanes {
        static let hashes = 512, refreshWords = 1024, bytes = refreshWords + ConnTable.refreshWordCount * 8
    }
    let lb: UnsafeMutablePointer<UInt64>
    /// The connection table (routing lcores; nil on I/O lcores).
    let conn: ConnTable?
    let lbScratch = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)
    /// Per burst: each packet's parse result and headers (pass 1 → pass 2).
    let infos: UnsafeMutablePointer<PacketInfo>
    let results: UnsafeMutablePointer<DropReason>
    /// Per burst: each packet's VIP (-1: none) and, for VIP traffic, its flow hash.
    let vips: UnsafeMutablePointer<Int32>
    let hashes: UnsafeMutablePointer<UInt64>
    /// Once a tick: a refreshed connection entry's expiry by its flags, and
    /// the tick (`ConnTable.refreshWords`), for `ShortPath.tunnel`.
    let refreshWords: UnsafeMutablePointer<UInt64>
    /// Per burst: each packet's next-hop group (pass 2; meaningful for the
    /// packets routed as IPv4 or IPv6), and the destinations looked up
    /// together: IPv4 (host order) by packet index, IPv6 (16 bytes each) with
    /// the packet each came from, and their results.
    let groups: UnsafeMutablePointer<UInt32>
    let dst4: UnsafeMutablePointer<UInt32>
    let dst6: UnsafeMutableRawPointer
    let at6: UnsafeMutablePointer<UInt8>
    /// Per burst: the VIP packets whose connection-table bucket pass 2 prefetches.
    let atV: UnsafeMutablePointer<UInt8>
    let found: UnsafeMutablePointer<UInt32>
    /// VIP destinations' last bytes (Snapshot.vipAddressFilter), for the snapshot `filterSeen`.
    let vipFilter = UnsafeMutablePointer<UInt64>.allocate(capacity: 4)
    /// Whether the snapshot `filterSeen` has any VIP (else pass 1 skips the filter).
    var anyVIP = true
    /// VIP lookups of plain IPv4 traffic for the snapshot `filterSeen`, and
    /// what the scan needs to take VIP packets (`ShortPath.VIPScan`).
    let vipCache = VIPCache()
    let vipScan = UnsafeMutablePointer<ShortPath.VIPScan>.allocate(capacity: 1)
    /// Prefetch each plain packet's LPM root entry in pass 1, among the
    /// checks, rather than in a loop of their own after it. Only with the
    /// tables on huge pages: with 4 KiB pages each prefetch needs a page walk,
    /// which held up the checks (keel-bench forward: a few percent better
    /// with huge pages, up to 20% worse without).
    var prefetchInScan = false
    /// Each DPDK port's data-port MAC as a 48-bit word (`.max` for TAPs and
    /// unknown ports), for the snapshot `filterSeen`.
    let portMACs = UnsafeMutablePointer<UInt64>.allocate(capacity: Fabric.maxDPDKPorts)
    var filterSeen: UInt64 = .max
    /// The tick `refreshWords` were computed for (ticks are 24 bits: .max is none).
    var refreshTick: UInt32 = .max
    var clock: UInt64
    var icmpBucket: TokenBucket
    var slowStage: Int { 2 * f.portCount }

    init(f: Fabric, counters: UnsafeMutablePointer<UInt64>, lb: UnsafeMutablePointer<UInt64>, stage: UnsafeMutablePointer<OpaquePointer?>,
         staged: UnsafeMutablePointer<Int>, ownsPort: UnsafeMutablePointer<Bool>, conntrack: Bool) {
        self.f = f; self.counters = counters; self.lb = lb; self.stage = stage; self.staged = staged; self.ownsPort = ownsPort
        let ct = f.conntrack
        conn = conntrack ? ConnTable(flows: ct.flows, tcpTimeout: Double(ct.tcpTimeout), closingTimeout: Double(ct.tcpClosingTimeout),
                                     udpTimeout: Double(ct.udpTimeout)) : nil
        precondition(f.burst <= 64, "bursts are at most 64 packets (pass 1 keeps a bit per packet)")
        infos = .allocate(capacity: f.burst)
        infos.initialize(repeating: PacketInfo(), count: f.burst)
        results = .allocate(capacity: f.burst)
        vips = .allocate(capacity: f.burst)
        vips.initialize(repeating: -1, count: f.burst)
        let lanes = UnsafeMutableRawPointer.allocate(byteCount: Lanes.bytes, alignment: 64)
        lanes.initializeMemory(as: UInt8.self, repeating: 0, count: Lanes.bytes)
        plain = lanes.assumingMemoryBound(to: UInt32.self)
        hashes = (lanes + Lanes.hashes).assumingMemoryBound(to: UInt64.self)
        refreshWords = (lanes + Lanes.refreshWords).assumingMemoryBound(to: UInt64.self)
        groups = .allocate(capacity: f.burst)
        groups.initialize(repeating: LPMEntry.noRoute, count: f.burst)
        dst4 = .allocate(capacity: f.burst)
        dst4.initialize(repeating: 0, count: f.burst)
        dst6 = .allocate(byteCount: 16 * f.burst, alignment: 16)
        dst6.initializeMemory(as: UInt8.self, repeating: 0, count: 16 * f.burst)
        at6 = .allocate(capacity: f.burst)
        at6.initialize(repeating: 0, count: f.burst)
        atV = .allocate(capacity: f.burst)
        atV.initialize(repeating: 0, count: f.burst)
        found = .allocate(capacity: f.burst)
        found.initialize(repeating: 0, count: f.burst)
        cache = NeighborCache(groups: f.nextHopGroups, ways: f.ecmpWays)
        fastHops = FastHops(groups: f.nextHopGroups, ways: f.ecmpWays)
        backendMACs = NeighborCache(groups: max(f.vipSlots * f.backendSlots, 1), ways: 1)
        let tunnelBytes = max(f.vipSlots * f.backendSlots, 1) * Work.tunnelSize
        tunnels = .allocate(byteCount: tunnelBytes, alignment: 64)
        tunnels.initializeMemory(as: UInt8.self, repeating: 0, count: tunnelBytes)
        clock = monotonicNs()
        icmpBucket = TokenBucket(rate: f.icmpRate, burst: f.icmpBurst, now: clock)
        vipScan.initialize(to: ShortPath.VIPScan(filter: UnsafePointer(vipFilter), cache: vipCache, hashes: UnsafeMutableRawPointer(hashes),
                                                 buckets: UnsafeRawPointer(conn?.buckets ?? lbScratch), bucketMask: conn?.bucketMask ?? 0))
    }

    /// Frees what init allocated (an lcore's Work lives as long as its loop;
    /// `drive` makes one per call, so it must not leak).
    func release() {
        conn?.deallocate()
        cache.deallocate()
        fastHops.deallocate()
        UnsafeMutableRawPointer(plain).deallocate() // the `Lanes` block
        backendMACs.deallocate()
        for p in [nextHop, scratch, learned, lbScratch, dst6, tunnels] { p.deallocate() }
        vipCache.deallocate(); vipScan.deallocate()
        vipFilter.deallocate(); portMACs.deallocate(); infos.deallocate(); results.deallocate(); vips.deallocate()
        groups.deallocate(); dst4.deallocate(); at6.deallocate(); atV.deallocate(); found.deallocate()
    }

    /// Where the live-flow count of the connection table is (it walks the table
    /// a slice every 64 loop turns, so the loop never stalls on a whole scan).
    var scanBucket = 0, scanFlows = 0
    static let scanSlice = 64

    /// One slice of the count; at the end of a pass, the lcore's live-flow gauge.
    mutating func countFlowsStep() {
        guard let conn else { return }
        scanFlows &+= conn.count(buckets: scanBucket, Work.scanSlice, now: ConnTable.tick(clock))
        scanBucket &+= Work.scanSlice
        if scanBucket > conn.bucketMask {
            counters[Counter.liveFlows] = UInt64(scanFlows)
            scanBucket = 0
            scanFlows = 0
        }
    }

    @inline(__always)
    mutating func drop(_ m: OpaquePointer, _ r: DropReason) {
        counters[Counter.drop(Int(r.rawValue))] &+= 1
        mbufFree(m)
    }

    /// Stages `m` for output slot `k` (data port, TAP port + portCount, or the slow ring).
    @inline(__always)
    mutating func emit(_ m: OpaquePointer, _ k: Int) {
        if ShortPath.stageOut(m, k, stage: stage, staged: staged, burst: f.burst) { flush(k) }
    }

    mutating func flushAll() {
        for k in 0...(2 * f.portCount) where staged[k] > 0 { flush(k) }
    }

    /// Sends a staged slot: on the port's queue when this lcore owns it, else onto its ring.
    mutating func flush(_ k: Int) {
        let n = staged[k]
        staged[k] = 0
        let b = stage + k * f.burst
        let pc = f.portCount
        if k < pc && ownsPort[k] {
            transmitOnQueue(f, counters, port: k, b, n)
            return
        }
        if k >= pc && k < 2 * pc && ownsPort[k - pc] && f.tapIds[k - pc] >= 0 {
            transmitOnTap(f, counters, port: k - pc, b, n)
            return
        }
        let ring = k < pc ? f.txRings[k] : k < 2 * pc ? f.tapRings[k - pc] : f.slowRing
        // Counted as sent (TX, to_kernel) by the lcore that hands it to the device.
        let sent = ring.map { Ring($0).enqueue(b, count: n) } ?? 0
        if sent < n {
            counters[Counter.ringFull] &+= UInt64(n - sent)
            counters[Counter.drop(Int(DropReason.ringFull.rawValue))] &+= UInt64(n - sent)
            for i in sent..<n { mbufFree(b[i]!) }
        }
    }

    /// Routes one burst in three passes. 1 (`classify`): check each packet
    /// (its mbuf prefetched a few ahead): plain IPv4 packets keep only their
    /// destination; the others are parsed, VIP traffic found (its
    /// connection-table bucket pass 2 prefetches) and their destinations
    /// collected. 2: prefetch those buckets and look all the destinations up
    /// at once, in a tight loop whose root loads overlap (the table is far
    /// larger than the caches and TLB; a prefetch issued between two packets'
    /// worth of work blocked retirement on its page walk, so the work could
    /// not hide it). 3: forward plain packets whose group's rewrite is cached
    /// (`FastHops`) in a few instructions; route every other packet the full
    /// way, with its next-hop group known.
    @inline(__always)
    mutating func processBurst(_ rx: UnsafeMutablePointer<OpaquePointer?>, _ n: Int, snapshot s: Snapshot, seen: UInt64,
                               neighbors: borrowing NeighborTable, rxPort: Int = -1) {
        // Cached MACs hold while neither the neighbor table nor the snapshot changed.
        cache.tag = (neighbors.version &<< 24 ^ seen) | 1
        backendMACs.tag = cache.tag
        if seen != filterSeen {
            s.vipAddressFilter(into: vipFilter)
            anyVIP = (0..<4).contains { vipFilter[$0] != 0 }
            vipCache.clear()
            for d in 0..<Fabric.maxDPDKPorts {
                let k = Int(f.indexOfDPDKPort[d])
                portMACs[d] = k >= 0 ? s.portMACWord(k) : .max // .max: no frame's masked word matches
            }
            filterSeen = seen
        }
        // The burst's mbufs, not optional (rx_burst filled the first n).
        let mb = UnsafeMutableRawPointer(rx).assumingMemoryBound(to: OpaquePointer.self)
        let (plainCount, other4, n6, nV, bytes) = classify(mb, n, snapshot: s, rxPort: rxPort)
        if rxPort >= 0 { // run to completion: the RX counts of the burst just received
            counters[Counter.rxPackets(rxPort)] &+= UInt64(n)
            counters[Counter.rxBytes(rxPort)] &+= UInt64(bytes)
        }
        // Connection-table buckets of VIP flows: also far larger than the TLB reaches.
        if let conn { for j in 0..<nV { conn.prefetch(hashes[Int(atV[j])]) } }
        // IPv4 destinations sit at their packet's index (0.0.0.0 for packets not
        // routed as IPv4). Plain packets are looked up in pass 3, their root
        // entries loading meanwhile; other IPv4 packets all at once, into `groups`.
        if other4 > 0 {
            s.ipv4.lookupBulk(dst4, groups, count: n)
        } else if plainCount > 0 && !prefetchInScan {
            for i in 0..<n { s.ipv4.prefetch(dst4[i]) }
        }
        if n6 > 0 {
            s.ipv6.lookupBulk(UnsafePointer(dst6.assumingMemoryBound(to: UInt8.self)), found, count: n6)
            for j in 0..<n6 { groups[Int(at6[j])] = found[j] }
        }
        counters[Counter.fastForwarded] &+= UInt64(forwardBurst(mb, n, snapshot: s, neighbors: neighbors))
    }

    /// Pass 3 of `processBurst`: the short path (`ShortPath.forward`) for as
    /// many packets as it takes, then the next packet the full way, in order.
    /// Returns how many packets took the short path.
    @inline(__always)
    mutating func forwardBurst(_ mb: UnsafeMutablePointer<OpaquePointer>, _ n: Int, snapshot s: Snapshot,
                               neighbors: borrowing NeighborTable) -> Int {
        var fast = 0
        var i = 0
        if let conn, case let now = ConnTable.tick(clock), now != refreshTick {
            conn.refreshWords(now: now, into: refreshWords)
            refreshTick = now
        }
        while i < n {
            let m = mb[i]
            switch plain[i] {
            case 1:
                let (next, filled) = ShortPath.forward(mb, from: i, n, plain: plain, dst4: dst4, lpm: s.ipv4, hops: fastHops, tag: cache.tag,
                                                       stage: stage, staged: staged, burst: f.burst)
                fast &+= next &- i
                if filled >= 0 { flush(filled) }
                if next > i { i = next; continue }
                // The loop stopped at once: the full way for this one.
                fullPath(m, mbufData(m), i, group: s.ipv4.lookup(dst4[i]), snapshot: s, neighbors: neighbors)
            case 0:
                process(m, parsed: results[i], info: infos + i, vip: vips[i], hash: hashes[i], group: groups[i], snapshot: s, neighbors: neighbors)
            default: // plain VIP traffic: unicast to the in-port's MAC, not ARP/ND, not multicast
                if let conn {
                    let (next, filled) = ShortPath.tunnel(mb, from: i, lanes: plain, conn: conn,
                                                          tunnels: tunnels, tag: cache.tag, lb: lb, backendCounters: lb + f.vipSlots &* LBCounter.perVIP,
                                                          backendSlots: f.backendSlots,
                                                          stage: stage, staged: staged, burst: f.burst)
                    fast &+= next &- i
                    if filled >= 0 { flush(filled) }
                    if next > i { i = next; continue }
                }
                let p = mbufData(m)
                infos[i] = Work.plainInfo(p)
                let inPort = Int(f.indexOfDPDKPort[Int(mbufPort(m)) & (Fabric.maxDPDKPorts - 1)])
                balance(m, p, infos + i, vip: ShortPath.laneVIP(plain[i]), quoted: nil, hash: hashes[i], inPort: inPort, snapshot: s, neighbors: neighbors)
            }
            i &+= 1
        }
        return fast
    }

    /// A plain packet the short path could not take (no cached rewrite, over
    /// the MTU): parsed and routed the full way, which also fills its group's
    /// entries for the next packets. Out of line, so the short path's loop
    /// keeps its registers.
    @inline(never)
    mutating func fullPath(_ m: OpaquePointer, _ p: UnsafeMutableRawPointer, _ i: Int, group g: UInt32, snapshot s: Snapshot,
                           neighbors: borrowing NeighborTable) {
        let r = Parser.parse(p, length: mbufLength(m), into: &infos[i])
        process(m, parsed: r, info: infos + i, vip: -1, hash: 0, group: g, snapshot: s, neighbors: neighbors)
        if g < UInt32(truncatingIfNeeded: fastHops.groups) { fastHops.fill(g, snapshot: s, cache: cache) }
    }

    /// Pass 1 of `processBurst`: fills `plain`, `dst4` (by packet index), and
    /// for the other packets `results`, `infos`, `vips` and `hashes`; collects
    /// the IPv6 destinations to look up (`dst6`/`at6`) and the VIP flows whose
    /// buckets to prefetch (`atV`). The common case is `ShortPath.scan`; each
    /// packet it stops at is handled here, in order. Returns the plain count,
    /// the other IPv4 packets to route, the IPv6 and VIP counts, and the
    /// burst's bytes.
    /// `rxPort` ≥ 0: every packet came in on that data port (run to
    /// completion), so its MAC is read once.
    @inline(__always)
    mutating func classify(_ mb: UnsafeMutablePointer<OpaquePointer>, _ n: Int, snapshot s: Snapshot, rxPort: Int)
        -> (Int, Int, Int, Int, Int) {
        let fixedMAC = rxPort >= 0 ? portMACs[Int(f.portIds[rxPort]) & (Fabric.maxDPDKPorts - 1)] : 0
        let macs: UnsafePointer<UInt64>? = rxPort >= 0 ? nil : UnsafePointer(portMACs)
        let vip: UnsafePointer<ShortPath.VIPScan>? = anyVIP ? UnsafePointer(vipScan) : nil
        for i in 0..<min(n, 4) { mbufPrefetch(mb[i]) }
        var counts = BurstCounts()
        var bytes = 0, plainCount = 0
        var candidates: UInt64 = 0
        var i = 0
        while i < n {
            let (next, b, c, taken) = ShortPath.scan(mb, from: i, n, fixedMAC: fixedMAC, portMACs: macs, vip: vip,
                                                     plain: plain, dst4: dst4, lpm: prefetchInScan ? s.ipv4 : nil)
            candidates |= c
            plainCount &+= next &- i &- c.nonzeroBitCount &- taken
            bytes &+= b
            i = next
            guard i < n else { break }
            let m = mb[i]
            let len = mbufLength(m)
            bytes &+= len
            plain[i] = 0
            classifyOther(i, mbufData(m), len, snapshot: s, &counts)
            i &+= 1
        }
        // Plain packets whose destinations passed the VIP filter: VIP traffic, or routed as plain after all.
        if candidates != 0 {
            plainCount &+= ShortPath.vipCandidates(mb, candidates, snapshot: s, vip: vipScan.pointee, plain: plain, dst4: dst4,
                                                   lpm: prefetchInScan ? s.ipv4 : nil)
        }
        plain[n] = 0 // where the tunnel loop stops
        return (plainCount, counts.n4, counts.n6, counts.nV, bytes)
    }

    /// Pass 1 counts of the packets that are not plain: IPv4 and IPv6 lookups, VIP flows.
    struct BurstCounts { var n4 = 0, n6 = 0, nV = 0 }

    /// The parse result of a plain IPv4 packet (`Parser.plainIPv4`: no
    /// options, not a fragment, TCP or UDP), without the full parse: the
    /// fields `parse` gives it.
    @inline(__always)
    static func plainInfo(_ p: UnsafeRawPointer) -> PacketInfo {
        var info = PacketInfo()
        info.l3 = PacketInfo.ipv4
        info.l3Offset = 14
        info.l4Offset = 34
        info.l4Proto = p.load(fromByteOffset: 23, as: UInt8.self)
        info.l3Length = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt16.self))
        info.srcPort = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 34, as: UInt16.self))
        info.dstPort = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 36, as: UInt16.self))
        return info
    }

    /// Pass 1 for a packet that is not plain: the full parse, VIP traffic
    /// found, the destination collected. Out of line, as `fullPath`.
    @inline(never)
    mutating func classifyOther(_ i: Int, _ p: UnsafeMutableRawPointer, _ len: Int, snapshot s: Snapshot, _ c: inout BurstCounts) {
        vips[i] = -1
        dst4[i] = 0 // not routed as IPv4 unless set below
        let r = Parser.parse(p, length: len, into: &infos[i])
        results[i] = r
        guard r == .none else { return }
        let l3 = Int(infos[i].l3Offset)
        // VIP traffic: start loading the flow's connection-table bucket instead.
        // (TCP/UDP: an IP packet; the destination's last byte against the VIP filter first.)
        if (infos[i].l4Proto == 6 || infos[i].l4Proto == 17),
           case let last = Int(p.load(fromByteOffset: l3 &+ (infos[i].l3 == PacketInfo.ipv4 ? 19 : 39), as: UInt8.self)),
           vipFilter[last >> 6] & (1 &<< UInt64(last & 63)) != 0 {
            let vi = LoadBalancer.vip(p, infos[i], s)
            if vi >= 0 {
                vips[i] = vi
                let h = FlowHash.of(p, infos[i])
                hashes[i] = h
                if !infos[i].fragment { atV[c.nV] = UInt8(truncatingIfNeeded: i); c.nV &+= 1 }
                // The encapsulation writes into the headroom: a line not touched yet.
                keel_prefetch0(p + (l3 &- 64))
                return // its backend's LPM entry is hot
            }
        }
        if infos[i].l3 == PacketInfo.ipv4 {
            dst4[i] = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: l3 &+ 16, as: UInt32.self))
            c.n4 &+= 1
        } else if infos[i].l3 == PacketInfo.ipv6 {
            (dst6 + c.n6 &* 16).copyMemory(from: p + (l3 &+ 24), byteCount: 16)
            at6[c.n6] = UInt8(truncatingIfNeeded: i)
            c.n6 &+= 1
        }
    }

    @inline(__always)
    mutating func process(_ m: OpaquePointer, parsed r: DropReason, info at: UnsafePointer<PacketInfo>, vip: Int32, hash: UInt64, group: UInt32,
                          snapshot s: Snapshot, neighbors: borrowing NeighborTable) {
        let info = at.pointee
        let inPort = Int(f.indexOfDPDKPort[Int(mbufPort(m)) & (Fabric.maxDPDKPorts - 1)])
        guard inPort >= 0 else { drop(m, .unknownPort); return }
        let p = mbufData(m), len = mbufLength(m)
        guard r == .none else { drop(m, r); return }
        // A router takes unicast frames for its own MAC only (plus broadcast and multicast).
        guard p.load(as: UInt8.self) & 1 != 0 || s.isPortMAC(inPort, p) else { drop(m, .otherMAC); return }
        if info.l3 == PacketInfo.arp {
            let (result, learn) = NeighborDiscovery.arp(p, length: len, info, port: inPort, snapshot: s, learned: learned)
            if result == .replied {
                counters[Counter.arpReplies] &+= 1
                emit(m, inPort)
            } else if learn {
                emit(m, slowStage) // a reply to us: the main lcore learns it and shows it to the kernel
            } else { drop(m, .notForUs) }
            return
        }
        if info.l3 == PacketInfo.ipv6 && info.l4Proto == 58 && !info.fragment {
            let t = p.load(fromByteOffset: Int(info.l4Offset), as: UInt8.self)
            if t == 135 {
                let n = NeighborDiscovery.neighborAdvertisement(p, length: len, info, port: inPort, snapshot: s, learnedMAC: learned)
                if n > 0 {
                    mbufSetLength(m, n)
                    counters[Counter.ndReplies] &+= 1
                    emit(m, inPort)
                } else if f.tapIds[inPort] >= 0 {
                    emit(m, f.portCount &+ inPort) // e.g. for the kernel's link-local address
                } else { drop(m, .notForUs) }
                return
            }
            if t == 136 { emit(m, slowStage); return }
        }
        // Multicast is not routed: link-local protocols (IGMP, MLD, OSPF, router solicitations) are the kernel's.
        let l3 = Int(info.l3Offset)
        if info.l3 == PacketInfo.ipv4 ? p.load(fromByteOffset: l3 &+ 16, as: UInt8.self) & 0xF0 == 0xE0
                                      : p.load(fromByteOffset: l3 &+ 24, as: UInt8.self) == 0xFF {
            if f.tapIds[inPort] >= 0 { emit(m, f.portCount &+ inPort) } else { drop(m, .multicast) }
            return
        }
        // Load balancing: TCP/UDP to a VIP, and ICMP errors about a VIP's flows.
        // (The VIP and the flow hash were found in the burst's first pass.)
        if vip >= 0 {
            balance(m, p, at, vip: Int(vip), quoted: nil, hash: hash, inPort: inPort, snapshot: s, neighbors: neighbors)
            return
        } else if info.l4Proto == 1 || info.l4Proto == 58,
                  let q = LoadBalancer.quotedFlow(p, length: len, info, s) {
            balance(m, p, at, vip: Int(q.vip), quoted: q, hash: q.hash, inPort: inPort, snapshot: s, neighbors: neighbors)
            return
        }
        let v = forwarder.route(p, length: len, info, hash: Forwarder.lazyHash, snapshot: s, neighbors: neighbors, nextHop: nextHop, cache: cache,
                                group: group)
        switch v {
        case .forward(let out):
            emit(m, Int(out))
        case .local(_, let echo):
            if echo {
                ICMP.echoReply(p, info)
                s.copyPortMAC(inPort, to: p + 6) // the request may have come to a broadcast MAC
                counters[Counter.echoReplies] &+= 1
                emit(m, inPort)
            } else if f.tapIds[inPort] >= 0 {
                emit(m, f.portCount &+ inPort)
            } else { drop(m, .noExceptionPath) }
        case .resolve:
            counters[Counter.neighborMisses] &+= 1
            emit(m, slowStage) // the main lcore holds it and resolves the next hop
        case .icmpError(let type, let code, let mtu):
            icmpError(m, p, info, type: type, code: code, mtu: mtu, inPort: inPort, snapshot: s)
        case .drop(let why):
            drop(m, why)
        }
    }

    /// Answers the packet in `m` with an ICMP error (rate-limited, not about
    /// errors or multicast) back out of its in-port, counts the drop, frees `m`.
    mutating func icmpError(_ m: OpaquePointer, _ p: UnsafeMutableRawPointer, _ info: PacketInfo, type: UInt8, code: UInt8, mtu: UInt16,
                            inPort: Int, snapshot s: Snapshot) {
        let reason: DropReason = (type == 11 || (type == 3 && info.l3 == PacketInfo.ipv6)) ? .ttlExpired
            : ((type == 3 && code == 0) || type == 1) ? .noRoute : .tooBig
        counters[Counter.drop(Int(reason.rawValue))] &+= 1
        // Back out of the port it came in, from that port's address, to the sender's MAC.
        if ICMP.mayReportError(p, info) {
            if icmpBucket.take(now: clock) {
                if s.firstPortAddress(inPort, family: info.l3 == PacketInfo.ipv4 ? 4 : 6, into: scratch) {
                    if let q = rte_pktmbuf_alloc(f.pool) {
                        s.copyPortMAC(inPort, to: scratch + 16)
                        let n = ICMP.error(p, info, type: type, code: code, mtu: mtu, source: scratch, srcMAC: scratch + 16, dstMAC: p + 6, into: mbufData(q))
                        mbufSetLength(q, n)
                        counters[Counter.icmpErrorsSent] &+= 1
                        emit(q, inPort)
                    } else { counters[Counter.noMbuf] &+= 1 }
                }
            } else { counters[Counter.icmpRateLimited] &+= 1 }
        }
        mbufFree(m)
    }

    /// Sends a packet for VIP `vi` to its backend: the connection table
    /// first, else the VIP's Maglev table (then recorded); encapsulated
    /// (IPIP or GUE) and routed to the backend like any packet. `quoted`: an
    /// ICMP error about one of the VIP's flows (it follows that flow).
    mutating func balance(_ m: OpaquePointer, _ p: UnsafeMutableRawPointer, _ infoAt: UnsafePointer<PacketInfo>, vip vi: Int, quoted: LoadBalancer.QuotedFlow?,
                          hash flowHash: UInt64, inPort: Int, snapshot s: Snapshot, neighbors: borrowing NeighborTable) {
        let info = infoAt.pointee // by pointer: passed by value, its fields were packed into registers at every call
        let rec = s.vipRaw(vi)
        let c = lb + vi &* LBCounter.perVIP
        var flags: UInt64 = info.l4Proto == 17 || quoted?.quote.proto == 17 ? ConnTable.udp : 0
        if quoted == nil && info.l4Proto == 6 && p.load(fromByteOffset: Int(info.l4Offset) &+ 13, as: UInt8.self) & 0x05 != 0 {
            flags |= ConnTable.closing // FIN or RST
        }
        let fields = rec.load(fromByteOffset: 3, as: UInt8.self)
        let scratch = lbScratch
        // Fragments skip the table (later ones have no ports): Maglev on the 3-tuple.
        let choice = LoadBalancer.choose(vip: vi, snapshot: s, conn: info.fragment ? nil : conn, flowHash: flowHash, flags: flags,
                                         record: quoted == nil, now: ConnTable.tick(clock)) {
            if let q = quoted?.quote { // the flow client → VIP: the quoted packet reversed
                return LoadBalancer.maglevHash(v4: q.v4, src: p + q.dst, dst: p + q.src, proto: q.proto, srcPort: q.dstPort,
                                               dstPort: q.srcPort, fields: fields, scratch: scratch)
            }
            return LoadBalancer.maglevHash(p, info, fields: fields, scratch: scratch)
        }
        let k = choice.position, fresh = choice.fresh
        if !info.fragment && conn != nil {
            c[choice.hit ? LBCounter.connHits : LBCounter.connMisses] &+= 1
            if choice.evicted { c[LBCounter.connEvictions] &+= 1 }
        }
        guard k >= 0 else {
            c[LBCounter.noBackend] &+= 1
            drop(m, .noBackend)
            return
        }
        let b = s.backendRaw(vi, k)
        let outerV4 = b.load(fromByteOffset: 9, as: UInt8.self) == 4
        let innerV4 = info.l3 == PacketInfo.ipv4
        let encap = rec.load(fromByteOffset: 2, as: UInt8.self)
        let overhead = LoadBalancer.overhead(encap: encap, outerV4: outerV4)
        let innerLength = Int(info.l3Length)
        let bc = lb + (f.vipSlots &* LBCounter.perVIP &+ (vi &* f.backendSlots &+ k) &* LBCounter.perBackend)
        // The short path: this backend's tunnel (outer Ethernet header, out port,
        // its MTU, outer source) cached by the full path below, for IPv4 outer headers.
        let te = tunnels + (vi &* f.backendSlots &+ k) &* Work.tunnelSize
        if quoted == nil && outerV4 && te.load(as: UInt64.self) == cache.tag,
           innerLength &+ overhead <= Int(te.load(fromByteOffset: 22, as: UInt16.self)),
           let np = mbufReframe(m, delta: 14 &+ overhead &- Int(info.l3Offset), length: 14 &+ overhead &+ innerLength) {
            if innerV4 { // the tunnel's template, as ShortPath.tunnel
                ShortPath.writeOuterIPv4(np + 14, tunnel: te, tos: p.load(fromByteOffset: Int(info.l3Offset) &+ 1, as: UInt8.self),
                                         length: overhead &+ innerLength)
                if encap == LoadBalancer.gue {
                    LoadBalancer.writeGUE(np + 34, length: 12 &+ innerLength, sourcePort: LoadBalancer.gueSourcePort(flowHash),
                                          port: rec.load(fromByteOffset: 6, as: UInt16.self), innerProto: 4)
                }
            } else {
                LoadBalancer.encapsulate(outer: np + 14, innerLength: innerLength, innerV4: false, outerV4: true, encap: encap,
                                         guePort: rec.load(fromByteOffset: 6, as: UInt16.self), hash: flowHash, source: te + 32, destination: b + 16)
                decrementTTLFast(ipv4: np + 14) // what the routing step takes off every packet
            }
            ShortPath.writeOuterEthernet(np, tunnel: te)
            countTunnelled(c, bc, b, innerLength: innerLength, fresh: fresh)
            emit(m, Int(te.load(fromByteOffset: 20, as: UInt16.self)))
            return
        }
        let group = forwarder.group(b + 16, v4: outerV4, snapshot: s)
        let port = forwarder.outPort(group: group, hash: flowHash, snapshot: s)
        guard port >= 0 else { drop(m, .noRoute); return }
        let mtu = Int(s.portMTU(port))
        if innerLength &+ overhead > mtu {
            c[LBCounter.tooBig] &+= 1
            let df = innerV4 && UInt16(bigEndian: p.loadUnaligned(fromByteOffset: Int(info.l3Offset) &+ 6, as: UInt16.self)) & 0x4000 != 0
            if quoted == nil && (df || !innerV4) {
                // Tell the client the path MTU the tunnel leaves it.
                icmpError(m, p, info, type: innerV4 ? 3 : 2, code: innerV4 ? 4 : 0, mtu: UInt16(max(mtu &- overhead, 68)), inPort: inPort, snapshot: s)
            } else { drop(m, .tooBig) }
            return
        }
        // Outer source: the VIP's, else the out port's first address of the outer family.
        let source: UnsafeRawPointer
        if rec.load(fromByteOffset: 48, as: UInt8.self) != 0 && isMapped4(rec + 32) == outerV4 {
            source = rec + 32
        } else if s.firstPortAddress(port, family: outerV4 ? 4 : 6, into: lbScratch + 32) {
            source = UnsafeRawPointer(lbScratch + 32)
        } else { drop(m, .noTunnelSource); return }
        let frameLength = 14 &+ overhead &+ innerLength
        guard let np = mbufReframe(m, delta: 14 &+ overhead &- Int(info.l3Offset), length: frameLength) else {
            counters[Counter.noMbuf] &+= 1
            drop(m, .oversizeFrame)
            return
        }
        np.storeBytes(of: (outerV4 ? UInt16(0x0800) : UInt16(0x86DD)).bigEndian, toByteOffset: 12, as: UInt16.self)
        LoadBalancer.encapsulate(outer: np + 14, innerLength: innerLength, innerV4: innerV4, outerV4: outerV4, encap: encap,
                                 guePort: rec.load(fromByteOffset: 6, as: UInt16.self), hash: flowHash, source: source, destination: b + 16)
        var oi = PacketInfo()
        oi.l3 = outerV4 ? PacketInfo.ipv4 : PacketInfo.ipv6
        oi.l3Offset = 14
        oi.l4Offset = UInt16(14 &+ (outerV4 ? 20 : 40))
        oi.l4Proto = encap == LoadBalancer.gue ? 17 : innerV4 ? 4 : 41
        oi.l3Length = UInt16(overhead &+ innerLength)
        countTunnelled(c, bc, b, innerLength: innerLength, fresh: fresh)
        switch forwarder.route(np, length: frameLength, oi, hash: flowHash, snapshot: s, neighbors: neighbors, nextHop: nextHop,
                               cache: cache, group: group, onLink: backendMACs, onLinkSlot: vi &* f.backendSlots &+ k) {
        case .forward(let out):
            // Forwarded by a single next hop: cache the tunnel for the short path above.
            if quoted == nil && outerV4 && s.nextHopGroup(group).count == 1 {
                (te + 8).copyMemory(from: np, byteCount: 12)
                te.storeBytes(of: out, toByteOffset: 20, as: UInt16.self)
                te.storeBytes(of: UInt16(mtu), toByteOffset: 22, as: UInt16.self)
                (te + 32).copyMemory(from: source, byteCount: 16)
                // The outer header's template for ShortPath.tunnel: what every packet's header shares.
                let w1 = UInt32(UInt16(0x4000).bigEndian) << 16 // id 0, DF
                let w2 = UInt32(LoadBalancer.outerTTL) | UInt32(encap == LoadBalancer.gue ? 17 : innerV4 ? 4 : 41) << 8
                let w3 = source.loadUnaligned(fromByteOffset: 12, as: UInt32.self), w4 = b.load(fromByteOffset: 28, as: UInt32.self)
                // (With the first word's 0x45, folded to 16 bits: ones' complement, it adds up the same.)
                te.storeBytes(of: UInt32(Checksum.fold(0x45 &+ UInt64(w1) &+ UInt64(w2) &+ UInt64(w3) &+ UInt64(w4))), toByteOffset: 24, as: UInt32.self)
                te.storeBytes(of: encap == LoadBalancer.gue ? rec.load(fromByteOffset: 6, as: UInt16.self) : 0, toByteOffset: 28, as: UInt16.self)
                te.storeBytes(of: UInt64(w2) | UInt64(w3) << 32, toByteOffset: 48, as: UInt64.self)
                te.storeBytes(of: w4, toByteOffset: 56, as: UInt32.self)
                te.storeBytes(of: b.load(as: UInt32.self), toByteOffset: 60, as: UInt32.self)
                te.storeBytes(of: cache.tag, as: UInt64.self)
            }
            emit(m, Int(out))
        case .resolve:
            counters[Counter.neighborMisses] &+= 1
            emit(m, slowStage)
        case .drop(let why):
            drop(m, why)
        default:
            drop(m, .noRoute)
        }
    }
}

extension Work {
    /// One tunnelled packet in the VIP's and the backend's counters.
    @inline(__always)
    func countTunnelled(_ c: UnsafeMutablePointer<UInt64>, _ bc: UnsafeMutablePointer<UInt64>, _ b: UnsafeRawPointer, innerLength: Int, fresh: Bool) {
        c[LBCounter.packets] &+= 1
        c[LBCounter.bytes] &+= UInt64(innerLength)
        bc[LBCounter.backendPackets] &+= 1
        bc[LBCounter.backendBytes] &+= UInt64(innerLength)
        if fresh {
            c[LBCounter.newFlows] &+= 1
            bc[LBCounter.backendNewFlows] &+= 1
            bc[LBCounter.backendID] = UInt64(b.load(as: UInt32.self))
        }
    }
}

@inline(__always)
func isMapped4(_ a: UnsafeRawPointer) -> Bool {
    a.loadUnaligned(as: UInt64.self) == 0 && a.loadUnaligned(fromByteOffset: 8, as: UInt32.self) == UInt32(0xFFFF).bigEndian
}

extension EthPort {
    /// A handle for an already started port (no configuration).
    @inlinable @inline(__always)
    init(existing id: UInt16) { self.init(unchecked: id) }
}

extension Ring {
    @inlinable @inline(__always)
    init(_ r: OpaquePointer) { self.init(unchecked: r) }
}
