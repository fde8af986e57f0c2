import CKeelIntrinsics
import Glibc

/// A worker's connection table: which backend each load-balanced flow uses.
///
/// Fixed size, set at start (`conntrack.flows`, `entriesPerFlow` entries
/// each), never grows: a SYN flood can fill it but not exhaust memory.
/// Buckets are one cache line of four 16-byte entries; a flow lives in the
/// bucket its flow hash's low bits pick and is recognised by a 48-bit
/// fingerprint, the hash's upper 48 bits (with the bucket index: all 64
/// bits of the hash from 2^16 buckets, 256K flows, up; 48 + log2(buckets)
/// below). An entry:
///
///     word 0: fingerprint (48) | backend position in the VIP's list (16)
///     word 1: backend id (32) | expiry tick (24) | flags (8)
///
/// Ticks are 2^30 ns (about 1.07 s). An empty entry has word 1 = 0 (backend
/// ids start at 1). One cache line in front of the buckets holds the
/// timeouts by flags (`timeout(_:)`): a load from the register that already
/// holds the bucket base, where three timeouts picked by two branches were
/// three more values for the short path to keep (on the stack). Inserting
/// into a full bucket evicts the entry closest to expiry (expired entries
/// first), so the oldest idle flows go first.
///
/// One writer: the worker that owns it (flows are steered to one worker), so
/// no atomics or locks. Written in-house: it is the fast path.
public struct ConnTable {
    public static let entriesPerBucket = 4, entrySize = 16
    public static let closing: UInt64 = 1 // a FIN or RST was seen: the short timeout applies
    public static let udp: UInt64 = 2

    public let buckets: UnsafeMutableRawPointer
    let mapped: Bool
    public let bucketMask: Int
    /// Timeouts in ticks.
    public let tcpTicks: UInt32, closingTicks: UInt32, udpTicks: UInt32

    /// Entries per flow the table is sized to hold (`conntrack.flows`). Flows
    /// fill four-entry buckets at random: with one entry per flow, a fifth of
    /// the flows would find their bucket full while the table is only 80%
    /// used (and over half would share a bucket with four others, evicting
    /// each other in turn). At a quarter load 0.4% of the flows do not fit
    /// (Poisson, mean 1 per bucket), and an evicted flow is sent to the same
    /// backend again by Maglev while the VIP's backends do not change.
    public static let entriesPerFlow = 4

    /// A table sized to hold `flows` flows: `flows * entriesPerFlow` entries.
    public init(flows: Int, tcpTimeout: Double = 300, closingTimeout: Double = 10, udpTimeout: Double = 30) {
        self.init(entries: flows &* ConnTable.entriesPerFlow, tcpTimeout: tcpTimeout, closingTimeout: closingTimeout, udpTimeout: udpTimeout)
    }

    /// A table of `entries` entries, rounded up to a power of two buckets of four.
    public init(entries: Int, tcpTimeout: Double = 300, closingTimeout: Double = 10, udpTimeout: Double = 30) {
        let n = ConnTable.buckets(entries: entries)
        bucketMask = n - 1
        // Anonymous memory with transparent huge pages where the kernel allows
        // it (fewer TLB misses on a table far larger than the caches); zeroed
        // by mmap, and first touched by the lcore that owns it (its NUMA node).
        let bytes = ConnTable.headerBytes + n * 64
        let base: UnsafeMutableRawPointer
        let m = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if let m, m != MAP_FAILED {
            _ = madvise(m, bytes, 14 /* MADV_HUGEPAGE */)
            base = m
            mapped = true
        } else {
            base = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            base.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            mapped = false
        }
        for i in stride(from: 0, to: bytes, by: 4096) { base.storeBytes(of: 0, toByteOffset: i, as: UInt8.self) }
        buckets = base + ConnTable.headerBytes
        func ticks(_ s: Double) -> UInt32 { UInt32(max(1, min(Double(1 << 23), (s * 1e9 / Double(1 << 30)).rounded(.up)))) }
        tcpTicks = ticks(tcpTimeout); closingTicks = ticks(closingTimeout); udpTicks = ticks(udpTimeout)
        // By the flags' two bits: a closing flow's timeout wins over UDP's.
        for f in 0...(ConnTable.closing | ConnTable.udp) {
            let t = f & ConnTable.closing != 0 ? closingTicks : f & ConnTable.udp != 0 ? udpTicks : tcpTicks
            base.storeBytes(of: t, toByteOffset: Int(f) * 4, as: UInt32.self)
        }
    }

    /// The line in front of the buckets: the timeouts by flags.
    @usableFromInline static let headerBytes = 64

    /// A handle, copied freely (it is a pointer): the owner frees it once.
    public func deallocate() {
        let base = buckets - ConnTable.headerBytes
        if mapped { munmap(base, ConnTable.headerBytes + (bucketMask + 1) * 64) } else { base.deallocate() }
    }

    /// Entries (four per flow it is sized for).
    public var capacity: Int { (bucketMask + 1) * ConnTable.entriesPerBucket }
    /// The memory of a table sized to hold `flows` flows.
    public static func bytes(flows: Int) -> Int { bytes(entries: flows &* entriesPerFlow) }
    public static func bytes(entries: Int) -> Int { headerBytes + buckets(entries: entries) * 64 }

    /// Buckets for `entries`: a power of two, at least one.
    static func buckets(entries: Int) -> Int {
        var n = 1
        while n * entriesPerBucket < entries { n <<= 1 }
        return n
    }

    @inlinable @inline(__always)
    public static func tick(_ ns: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: ns >> 30) & 0xFF_FFFF }

    /// Whether expiry tick `e` is still ahead of `now` (24-bit wrap-around arithmetic).
    @inlinable @inline(__always)
    static func alive(_ e: UInt32, _ now: UInt32) -> Bool {
        let d = (e &- now) & 0xFF_FFFF
        return d != 0 && d < 0x80_0000
    }

    public struct Hit {
        public var entry: UnsafeMutableRawPointer
        public var position: Int
        public var backendID: UInt32
        public var flags: UInt64
        @inlinable
        init(entry: UnsafeMutableRawPointer, position: Int, backendID: UInt32, flags: UInt64) {
            self.entry = entry; self.position = position; self.backendID = backendID; self.flags = flags
        }
    }

    @inlinable @inline(__always)
    func bucket(_ hash: UInt64) -> UnsafeMutableRawPointer { buckets + (Int(truncatingIfNeeded: hash) & bucketMask) &* 64 }

    /// Starts loading the flow's bucket.
    @inlinable @inline(__always)
    public func prefetch(_ hash: UInt64) { keel_prefetch0(bucket(hash)) }

    /// The live entry of the flow (`hash` picks the bucket, `fingerprint` the entry).
    @inlinable @inline(__always)
    public func find(hash: UInt64, fingerprint: UInt64, now: UInt32) -> Hit? {
        let b = bucket(hash)
        let fp = fingerprint & ~0xFFFF
        for i in 0..<ConnTable.entriesPerBucket {
            let e = b + i &* 16
            let w0 = e.load(as: UInt64.self), w1 = e.load(fromByteOffset: 8, as: UInt64.self)
            if w1 != 0 && w0 & ~0xFFFF == fp && ConnTable.alive(UInt32(truncatingIfNeeded: w1 >> 8) & 0xFF_FFFF, now) {
                return Hit(entry: e, position: Int(w0 & 0xFFFF), backendID: UInt32(truncatingIfNeeded: w1 >> 32), flags: w1 & 0xFF)
            }
        }
        return nil
    }

    /// Timeout in ticks for an entry with `flags`.
    @inlinable @inline(__always)
    func timeout(_ flags: UInt64) -> UInt32 {
        (buckets - ConnTable.headerBytes).load(fromByteOffset: Int(truncatingIfNeeded: flags & (ConnTable.closing | ConnTable.udp)) &<< 2,
                                               as: UInt32.self)
    }

    /// Refreshes a hit: new expiry, flags or'ed in, the backend's position/id (they may move after a change).
    @inlinable @inline(__always)
    public func touch(_ h: Hit, position: Int, backendID: UInt32, flags: UInt64, now: UInt32) {
        let f = h.flags | flags
        let w0 = h.entry.load(as: UInt64.self) & ~0xFFFF | UInt64(position & 0xFFFF)
        let w1 = UInt64(backendID) << 32 | UInt64((now &+ timeout(f)) & 0xFF_FFFF) << 8 | f
        if h.entry.load(as: UInt64.self) != w0 { h.entry.storeBytes(of: w0, as: UInt64.self) }
        if h.entry.load(fromByteOffset: 8, as: UInt64.self) != w1 { h.entry.storeBytes(of: w1, toByteOffset: 8, as: UInt64.self) }
    }

    /// The words `refreshWords` writes.
    public static let refreshWordCount = 5

    /// What `refresh(_:words:flags:)` stores at `now`: words 0-3, by an
    /// entry's flags (closing, UDP), the low 32 bits of its word 1 without
    /// the flags (the expiry tick << 8); word 4, `now` itself. Computed once
    /// a tick, so a hit's refresh is a load, not a timeout lookup and an addition.
    public func refreshWords(now: UInt32, into w: UnsafeMutablePointer<UInt64>) {
        for f in 0...(ConnTable.closing | ConnTable.udp) { w[Int(f)] = UInt64((now &+ timeout(f)) & 0xFF_FFFF) << 8 }
        w[4] = UInt64(now)
    }

    /// `touch` for a hit that stays with its backend where it is (only the
    /// expiry and flags can change), at the `now` that `words` were computed
    /// for (`refreshWords`).
    @inlinable @inline(__always)
    public static func refresh(_ h: Hit, words: UnsafePointer<UInt64>, flags: UInt64) {
        let f = h.flags | flags
        let w1 = UInt64(h.backendID) << 32 | words[Int(truncatingIfNeeded: f & (ConnTable.closing | ConnTable.udp))] | f
        if h.entry.load(fromByteOffset: 8, as: UInt64.self) != w1 { h.entry.storeBytes(of: w1, toByteOffset: 8, as: UInt64.self) }
    }

    /// Records a new flow. Returns true when a live entry was evicted for it.
    @inlinable @inline(__always)
    public func insert(hash: UInt64, fingerprint: UInt64, position: Int, backendID: UInt32, flags: UInt64, now: UInt32) -> Bool {
        let b = bucket(hash)
        var victim = 0, best: UInt32 = .max, evicted = true
        for i in 0..<ConnTable.entriesPerBucket {
            let w1 = (b + i &* 16).load(fromByteOffset: 8, as: UInt64.self)
            let e = UInt32(truncatingIfNeeded: w1 >> 8) & 0xFF_FFFF
            if w1 == 0 || !ConnTable.alive(e, now) { victim = i; evicted = false; break }
            let left = (e &- now) & 0xFF_FFFF // ticks to expiry
            if left < best { best = left; victim = i }
        }
        let e = b + victim &* 16
        e.storeBytes(of: fingerprint & ~0xFFFF | UInt64(position & 0xFFFF), as: UInt64.self)
        e.storeBytes(of: UInt64(backendID) << 32 | UInt64((now &+ timeout(flags)) & 0xFF_FFFF) << 8 | flags, toByteOffset: 8, as: UInt64.self)
        return evicted
    }

    /// Live entries (a scan; for tests, stats and drain reports, not the fast path).
    public func count(now: UInt32) -> Int { count(buckets: 0, bucketMask + 1, now: now) }

    /// Live entries in buckets first ..< first + n (clipped to the table): the
    /// owner counts its table a slice at a time.
    public func count(buckets first: Int, _ n: Int, now: UInt32) -> Int {
        var live = 0
        let end = min(first &+ n, bucketMask &+ 1) &* ConnTable.entriesPerBucket
        var i = first &* ConnTable.entriesPerBucket
        while i < end {
            let w1 = (buckets + i &* 16).load(fromByteOffset: 8, as: UInt64.self)
            if w1 != 0 && ConnTable.alive(UInt32(truncatingIfNeeded: w1 >> 8) & 0xFF_FFFF, now) { live &+= 1 }
            i &+= 1
        }
        return live
    }
}
