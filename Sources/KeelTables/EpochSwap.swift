import Atomics
#if canImport(Glibc)
import Glibc
#endif

// Memory-ordering contract (in the manner of DPDK's rte_rcu_qsbr.h)
//
// Shared words, all in the tables file:
//   published        generation << 1 | slot, written only by the writer
//   line[i]          generation reader i last switched to; 0 = offline
//
// Writer, to publish generation N+1 (N = published >> 1):
//   W1  fence(seq_cst); for every line: load(acquire) until it is 0 or >= N.
//       A reader at >= N has stopped reading the slot of N-1 (R3 below), so
//       that slot, the idle one, may be overwritten. Bounded wait; on timeout
//       the stuck lines are reported and the slot is left alone.
//   W2  plain stores into the idle slot; seal it (checksums).
//   W3  published.store(N+1 << 1 | idle, release): every W2 store happens
//       before any reader that sees N+1 reads the slot.
//
// Validator (one per reading process, e.g. the data plane's main lcore):
//   V1  published.load(acquire); verify the slot it names (reads after the
//       acquire see the W2 stores); accepted.store(value, release).
//
// Reader (each lcore, at the top of its loop, never mid-burst):
//   R1  source.load(acquire), source = accepted (or published, unvalidated)
//   R2  unchanged: go on (one load and one compare: the whole cost)
//   R3  changed: switch to the slot it names, then line.store(generation, release).
//       Release orders every read of the old slot before the store, which is
//       what W1's acquire load relies on.
//   Offline: line.store(0, release) after the last read (before sleeping or
//   exiting). Online: line.store(g) then fence(seq_cst) then re-load the
//   source and retry if it moved, so a writer that passed W1 while the reader
//   was offline cannot be writing the slot the reader starts on.
//
// No locks, no syscalls, no allocation on the reader side.

/// The writer: turns changes into published snapshots. Only one per file.
public final class SnapshotPublisher {
    public let file: TablesFile
    var builders: [SnapshotBuilder?] = [nil, nil]
    /// Changes each slot has not seen yet (applied to the other one).
    var pending: [[SnapshotChange]] = [[], []]
    /// Everything now published, for rebuilding a slot from scratch.
    public private(set) var state: SnapshotState
    /// How long to wait for lagging readers before giving up on a publish.
    public var graceTimeoutNanoseconds: UInt64 = 500_000_000

    /// Attaches to `file`, whose newest snapshot is `state` (after a restart,
    /// the caller's configuration). Generations go on counting from the file.
    public init(file: TablesFile, state: SnapshotState = SnapshotState()) {
        self.file = file
        self.state = state
        file.writerPid = getpid()
    }

    public var publishedGeneration: UInt64 { file.published.load(ordering: .acquiring) >> 1 }

    public struct StuckReader: Sendable, CustomStringConvertible {
        public let line: Int, pid: Int32, generation: UInt64, alive: Bool
        public var description: String {
            "reader line \(line) (pid \(pid)\(alive ? "" : ", not running")) still at generation \(generation)"
        }
    }

    public enum PublishError: Error, CustomStringConvertible {
        case stuck([StuckReader], waitedMs: UInt64, slot: Int)
        case rejected(Error)
        public var description: String {
            switch self {
            case .stuck(let r, let ms, let slot):
                return "grace period not over after \(ms) ms: " + r.map(\.description).joined(separator: "; ")
                    + "; slot \(slot) left untouched (mark the reader offline or restart it)"
            case .rejected(let e): return "change refused, nothing published: \(e)"
            }
        }
    }

    /// W1: waits until no online reader is older than `generation`.
    public func waitForGrace(_ generation: UInt64, idleSlot: Int) throws {
        guard generation > 0 else { return }
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let start = now()
        var spins = 0
        while true {
            var stuck: [Int] = []
            for i in 0..<file.readerCount {
                let g = file.line(i).load(ordering: .acquiring)
                if g != 0 && g < generation { stuck.append(i) }
            }
            if stuck.isEmpty { return }
            let waited = now() - start
            if waited >= graceTimeoutNanoseconds {
                let report = stuck.map { i in
                    StuckReader(line: i, pid: file.linePid(i), generation: file.line(i).load(ordering: .relaxed),
                                alive: TablesFile.processAlive(file.linePid(i)))
                }
                throw PublishError.stuck(report, waitedMs: waited / 1_000_000, slot: idleSlot)
            }
            spins += 1
            // Readers switch at the top of their next loop turn (microseconds);
            // past the first spins, sleep a little rather than burn the core.
            if spins > 1000 { usleep(50) }
        }
    }

    /// Replaces the state slots are rebuilt from, and forgets both builders
    /// (a restarted writer that knows the configuration the file carries).
    public func replaceState(_ s: SnapshotState) {
        state = s
        builders = [nil, nil]
        pending = [[], []]
    }

    /// Marks a reader line offline (an lcore that is gone; see the stuck report).
    public func markOffline(line i: Int) { file.line(i).store(0, ordering: .releasing) }

    /// Publishes one batch of changes as the next generation; returns it.
    /// Nothing is published, and the state is unchanged, if any change is refused.
    @discardableResult
    public func publish(_ changes: [SnapshotChange]) throws -> UInt64 {
        let current = file.published.load(ordering: .acquiring)
        let generation = current >> 1
        let idle = generation == 0 ? 0 : Int(1 - (current & 1))
        try waitForGrace(generation, idleSlot: idle)
        let builder: SnapshotBuilder
        do {
            if let b = builders[idle] {
                builder = b
                for c in pending[idle] { try builder.apply(c) }
            } else {
                builder = try SnapshotBuilder(formatting: file.slot(idle), layout: file.layout)
                for c in state.changes() { try builder.apply(c) }
            }
            pending[idle] = []
            builders[idle] = builder
        } catch {
            builders[idle] = nil
            throw PublishError.rejected(error)
        }
        do {
            for c in changes { try builder.apply(c) }
        } catch {
            // The slot holds part of the batch: rebuild it from the state next time.
            builders[idle] = nil
            pending[idle] = []
            throw PublishError.rejected(error)
        }
        builder.seal(generation: generation + 1)
        file.published.store((generation + 1) << 1 | UInt64(idle), ordering: .releasing)
        state.apply(changes)
        pending[1 - idle] += changes
        return generation + 1
    }

    /// The builder of a slot, for tests and tools (nil until that slot was written).
    public func builder(slot: Int) -> SnapshotBuilder? { builders[slot] }

    func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// Everything in a snapshot as plain values: what a slot is rebuilt from.
public struct SnapshotState: Sendable {
    public var ports: [PortSpec] = []
    public var neighbors: [NeighborSpec] = []
    public var nextHopGroups: [UInt32: NextHopGroupSpec] = [:]
    public var routes4: [IPv4Prefix: UInt32] = [:]
    public var routes6: [IPv6Prefix: UInt32] = [:]
    public var vips: [UInt32: VIPSpec] = [:]

    public init() {}

    public mutating func apply(_ changes: [SnapshotChange]) {
        for c in changes {
            switch c {
            case .ports(let p): ports = p
            case .neighbors(let n): neighbors = n
            case .nextHopGroup(let id, let spec): nextHopGroups[id] = spec
            case .route4(let p, let nh): routes4[p] = nh
            case .route6(let p, let nh): routes6[p] = nh
            case .vip(let i, let spec): vips[i] = spec
            }
        }
    }

    /// Changes that build this state from an empty snapshot.
    public func changes() -> [SnapshotChange] {
        var out: [SnapshotChange] = [.ports(ports), .neighbors(neighbors)]
        for id in nextHopGroups.keys.sorted() { out.append(.nextHopGroup(id: id, nextHopGroups[id])) }
        for (p, nh) in routes4.sorted(by: { ($0.key.length, $0.key.address) < ($1.key.length, $1.key.address) }) {
            out.append(.route4(p, nextHopGroup: nh))
        }
        for (p, nh) in routes6.sorted(by: { ($0.key.length, $0.key.address) < ($1.key.length, $1.key.address) }) {
            out.append(.route6(p, nextHopGroup: nh))
        }
        for i in vips.keys.sorted() { out.append(.vip(index: i, vips[i])) }
        return out
    }
}

/// Verifies each newly published snapshot once per process before any lcore
/// of the process uses it, and passes on only good ones (`accepted`).
public final class SnapshotAcceptor: @unchecked Sendable {
    public let file: TablesFile
    /// published value of the newest verified snapshot (0: none yet). Lcores follow this word.
    public let accepted: UnsafeAtomic<UInt64>
    var lastSeen: UInt64 = 0
    var tables: [[UInt32]?] = [nil, nil]
    public private(set) var lastError: String?
    public private(set) var refused = 0

    public init(file: TablesFile) {
        self.file = file
        accepted = .create(0)
    }

    deinit { accepted.destroy() }

    public enum Outcome: Equatable { case unchanged, accepted(UInt64), refused(UInt64, String) }

    /// Checks `published`; verifies a new snapshot (only its changed chunks
    /// when this process verified that slot before) and accepts it if good.
    /// A refused snapshot is reported once; the last good one stays in use.
    @discardableResult
    public func poll() -> Outcome {
        let p = file.published.load(ordering: .acquiring)
        guard p != lastSeen else { return .unchanged }
        lastSeen = p
        let generation = p >> 1, slot = Int(p & 1)
        guard generation > 0 else { return .unchanged }
        do {
            let r = try SnapshotVerifier.verify(file.slot(slot), available: file.layout.length, previous: tables[slot])
            guard r.generation == generation else {
                throw SnapshotError.corrupt("slot \(slot) holds generation \(r.generation), published says \(generation)")
            }
            guard r.layout == file.layout else { throw SnapshotError.corrupt("snapshot limits differ from the file's") }
            tables[slot] = r.table
            accepted.store(p, ordering: .releasing)
            return .accepted(generation)
        } catch {
            tables[slot] = nil
            refused += 1
            lastError = "\(error)"
            return .refused(generation, "\(error)")
        }
    }
}

/// One lcore's view: which snapshot it reads, and its reader line. Owned by
/// its lcore alone; copy it nowhere.
public struct LcoreReader: @unchecked Sendable {
    @usableFromInline let source: UnsafeAtomic<UInt64>
    @usableFromInline let line: UnsafeAtomic<UInt64>
    @usableFromInline let views: (Snapshot, Snapshot)
    /// The source value this lcore runs on.
    public private(set) var seen: UInt64 = 0
    /// The snapshot to read; valid once `hasSnapshot`.
    public private(set) var snapshot: Snapshot

    /// `source` is an acceptor's `accepted` word (or `file.published` to skip verification).
    public init(file: TablesFile, line index: Int, source: UnsafeAtomic<UInt64>) {
        self.source = source
        line = file.line(index)
        file.setLinePid(index, getpid())
        views = (Snapshot(verified: file.slot(0), layout: file.layout), Snapshot(verified: file.slot(1), layout: file.layout))
        snapshot = views.0
    }

    public var hasSnapshot: Bool { seen >> 1 != 0 }
    public var generation: UInt64 { seen >> 1 }

    /// R1/R2: the check at the top of every loop turn. True when it switched.
    @inlinable @inline(__always)
    public mutating func refresh() -> Bool {
        let p = source.load(ordering: .acquiring)
        if _fastPath(p == seen) { return false }
        switchTo(p)
        return true
    }

    /// R3.
    @usableFromInline @inline(never)
    mutating func switchTo(_ p: UInt64) {
        seen = p
        snapshot = p & 1 == 0 ? views.0 : views.1
        line.store(p >> 1, ordering: .releasing)
    }

    /// Starts reading: publishes the generation this lcore is on before using it.
    public mutating func online() {
        while true {
            let p = source.load(ordering: .acquiring)
            seen = p
            snapshot = p & 1 == 0 ? views.0 : views.1
            // Online with generation 0 (nothing published) would read as offline: use 1.
            line.store(max(p >> 1, 1), ordering: .releasing)
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            if source.load(ordering: .acquiring) == p { return }
        }
    }

    /// Stops reading (before sleeping or exiting).
    public func offline() { line.store(0, ordering: .releasing) }
}
