import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// The stats file: written only by keel-dataplane, read by anyone (keel-control,
/// keelctl, tests). Every counter has exactly one writer, the lcore that owns
/// the block, so the data plane never shares a cache line between lcores and
/// never needs an atomic read-modify-write; readers sum the blocks. See
/// docs/dataplane.md ("Stats file").
///
///     0       header (4 KiB): magic, version, layout, pid, heartbeat, generation, port names
///     4096    one block per lcore (2 KiB each): role, lcore id, counters
///     after   the neighbor table region (written by the main lcore, read by workers)
public final class StatsFile: @unchecked Sendable {
    public static let magic: UInt64 = 0x4B45_454C_5354_4154 // "KEELSTAT"
    public static let version: UInt32 = 2
    public static let headerSize = 4096, blockSize = 2048
    public static let maxPorts = 16, maxLcores = 64, nameSize = 32
    // Header offsets.
    static let oMagic = 0, oVersion = 8, oLcores = 12, oPorts = 16, oNeighborCapacity = 20
    static let oPid = 24, oStarted = 32, oHeartbeat = 40, oGeneration = 48, oSize = 56, oNames = 1024
    static let oPortUp = 512, oVIPs = 64, oBackends = 68

    public let path: String
    public let base: UnsafeMutableRawPointer
    public let size: Int
    public let lcores: Int
    public let ports: Int
    public let neighborCapacity: Int
    /// Load-balancer counters: VIP slots (the tables' VIP limit) and backend slots per VIP.
    public let vips: Int, backendsPerVIP: Int

    /// Where block `i`'s counters start.
    public func block(_ i: Int) -> UnsafeMutablePointer<UInt64> {
        (base + StatsFile.headerSize + i * StatsFile.blockSize).assumingMemoryBound(to: UInt64.self)
    }

    /// The neighbor table's memory (see KeelForward.NeighborTable).
    public var neighborRegion: UnsafeMutableRawPointer { base + StatsFile.headerSize + lcores * StatsFile.blockSize }

    public static func size(lcores: Int, neighborCapacity: Int, vips: Int = 0, backendsPerVIP: Int = 0, entrySize: Int = 32) -> Int {
        let n = lbOffset(lcores: lcores, neighborCapacity: neighborCapacity, entrySize: entrySize) + lcores * lbBlockSize(vips, backendsPerVIP)
        return (n + 4095) & ~4095
    }

    static func lbOffset(lcores: Int, neighborCapacity: Int, entrySize: Int = 32) -> Int {
        let n = headerSize + lcores * blockSize + 64 + neighborCapacity * entrySize // 64: the table's header (version)
        return (n + 63) & ~63
    }

    static func lbBlockSize(_ vips: Int, _ backends: Int) -> Int { 8 * (vips * LBCounter.perVIP + vips * backends * LBCounter.perBackend) }

    /// Lcore `i`'s load-balancer counters: per VIP index `LBCounter.perVIP`
    /// words, then per (VIP, backend position) `LBCounter.perBackend` words.
    public func lbBlock(_ i: Int) -> UnsafeMutablePointer<UInt64> {
        (base + StatsFile.lbOffset(lcores: lcores, neighborCapacity: neighborCapacity) + i * StatsFile.lbBlockSize(vips, backendsPerVIP))
            .assumingMemoryBound(to: UInt64.self)
    }

    /// Index in an LB block of VIP `v`'s counter `c`.
    public func vipCounter(_ v: Int, _ c: Int) -> Int { v * LBCounter.perVIP + c }
    /// Index in an LB block of backend position `k` of VIP `v`, counter `c`.
    public func backendCounter(_ v: Int, _ k: Int, _ c: Int) -> Int {
        vips * LBCounter.perVIP + (v * backendsPerVIP + k) * LBCounter.perBackend + c
    }

    /// The id of the backend at position `k` of VIP `v`, as the last lcore that sent to it recorded it (0: none).
    public func backendID(_ v: Int, _ k: Int) -> UInt64 {
        var id: UInt64 = 0
        for i in 0..<lcores where lbBlock(i)[backendCounter(v, k, LBCounter.backendID)] != 0 {
            id = lbBlock(i)[backendCounter(v, k, LBCounter.backendID)]
        }
        return id
    }

    /// Sum over the packet lcores' LB blocks.
    public func lbTotal(_ index: Int) -> UInt64 {
        var t: UInt64 = 0
        for i in 0..<lcores { t &+= SharedWord.load(UnsafeMutableRawPointer(lbBlock(i) + index)) }
        return t
    }

    public enum Failure: Error, CustomStringConvertible {
        case system(String, Int32)
        case invalid(String)
        public var description: String {
            switch self {
            case .system(let what, let e): return "\(what): \(String(cString: strerror(e)))"
            case .invalid(let why): return why
            }
        }
    }

    init(path: String, base: UnsafeMutableRawPointer, size: Int) {
        self.path = path; self.base = base; self.size = size
        lcores = Int(base.load(fromByteOffset: StatsFile.oLcores, as: UInt32.self))
        ports = Int(base.load(fromByteOffset: StatsFile.oPorts, as: UInt32.self))
        neighborCapacity = Int(base.load(fromByteOffset: StatsFile.oNeighborCapacity, as: UInt32.self))
        vips = Int(base.load(fromByteOffset: StatsFile.oVIPs, as: UInt32.self))
        backendsPerVIP = Int(base.load(fromByteOffset: StatsFile.oBackends, as: UInt32.self))
    }

    deinit { munmap(base, size) }

    /// Creates (or replaces) the file for a data plane with these lcores and ports.
    public static func create(path: String, lcores: Int, portNames: [String], neighborCapacity: Int,
                              vips: Int = 0, backendsPerVIP: Int = 0) throws -> StatsFile {
        guard lcores <= maxLcores, portNames.count <= maxPorts else {
            throw Failure.invalid("stats file: at most \(maxLcores) lcores and \(maxPorts) ports")
        }
        let size = size(lcores: lcores, neighborCapacity: neighborCapacity, vips: vips, backendsPerVIP: backendsPerVIP)
        // A fresh file (unlink first) so a reader of the old one keeps its own mapping.
        unlink(path)
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Failure.system("stats file \(path)", errno) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else { throw Failure.system("stats file \(path): ftruncate", errno) }
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw Failure.system("stats file \(path): mmap", errno)
        }
        p.storeBytes(of: UInt32(lcores), toByteOffset: oLcores, as: UInt32.self)
        p.storeBytes(of: UInt32(portNames.count), toByteOffset: oPorts, as: UInt32.self)
        p.storeBytes(of: UInt32(neighborCapacity), toByteOffset: oNeighborCapacity, as: UInt32.self)
        p.storeBytes(of: UInt32(vips), toByteOffset: oVIPs, as: UInt32.self)
        p.storeBytes(of: UInt32(backendsPerVIP), toByteOffset: oBackends, as: UInt32.self)
        p.storeBytes(of: UInt64(getpid()), toByteOffset: oPid, as: UInt64.self)
        p.storeBytes(of: realtimeNs(), toByteOffset: oStarted, as: UInt64.self)
        p.storeBytes(of: UInt64(size), toByteOffset: oSize, as: UInt64.self)
        for (i, name) in portNames.enumerated() {
            let bytes = Array(name.utf8.prefix(nameSize - 1))
            (p + oNames + i * nameSize).copyMemory(from: bytes, byteCount: bytes.count)
        }
        p.storeBytes(of: version, toByteOffset: oVersion, as: UInt32.self)
        p.storeBytes(of: magic, toByteOffset: oMagic, as: UInt64.self)
        return StatsFile(path: path, base: p, size: size)
    }

    /// Opens an existing file read-write (the data plane's own) or read-only.
    public static func open(path: String, writable: Bool = false) throws -> StatsFile {
        let fd = Glibc.open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else { throw Failure.system("stats file \(path)", errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Failure.system("stats file \(path): fstat", errno) }
        let size = Int(st.st_size)
        guard size >= headerSize else { throw Failure.invalid("stats file \(path): too short (\(size) bytes)") }
        guard let p = mmap(nil, size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw Failure.system("stats file \(path): mmap", errno)
        }
        guard p.load(fromByteOffset: oMagic, as: UInt64.self) == magic,
              p.load(fromByteOffset: oVersion, as: UInt32.self) == version else {
            munmap(p, size)
            throw Failure.invalid("stats file \(path): not a Keel stats file of version \(version)")
        }
        let lc = Int(p.load(fromByteOffset: oLcores, as: UInt32.self))
        let nc = Int(p.load(fromByteOffset: oNeighborCapacity, as: UInt32.self))
        let nv = Int(p.load(fromByteOffset: oVIPs, as: UInt32.self)), nb = Int(p.load(fromByteOffset: oBackends, as: UInt32.self))
        guard lc <= maxLcores, Int(p.load(fromByteOffset: oPorts, as: UInt32.self)) <= maxPorts, nv < 1 << 20, nb <= 65536,
              Int(p.load(fromByteOffset: oSize, as: UInt64.self)) == size,
              StatsFile.size(lcores: lc, neighborCapacity: nc, vips: nv, backendsPerVIP: nb) == size else {
            munmap(p, size)
            throw Failure.invalid("stats file \(path): header does not match its size")
        }
        return StatsFile(path: path, base: UnsafeMutableRawPointer(mutating: p), size: size)
    }

    public var pid: Int32 { Int32(truncatingIfNeeded: base.load(fromByteOffset: StatsFile.oPid, as: UInt64.self)) }
    public var startedNs: UInt64 { base.load(fromByteOffset: StatsFile.oStarted, as: UInt64.self) }
    /// Wall-clock ns of the main lcore's last beat (every 100 ms while running; 0 after a clean stop).
    public var heartbeatNs: UInt64 { SharedWord.load(base + StatsFile.oHeartbeat) }
    public func beat() { SharedWord.store(realtimeNs(), base + StatsFile.oHeartbeat) }
    public func stopped() { SharedWord.store(0, base + StatsFile.oHeartbeat) }
    /// The snapshot generation the data plane runs on.
    public var generation: UInt64 { SharedWord.load(base + StatsFile.oGeneration) }
    public func setGeneration(_ g: UInt64) { SharedWord.store(g, base + StatsFile.oGeneration) }
    public func portName(_ i: Int) -> String {
        let p = (base + StatsFile.oNames + i * StatsFile.nameSize).assumingMemoryBound(to: CChar.self)
        return String(cString: p)
    }
    /// Link state of port `i` as the main lcore last saw it (1 up, 0 down).
    public func portUp(_ i: Int) -> Bool { base.load(fromByteOffset: StatsFile.oPortUp + i * 8, as: UInt64.self) != 0 }
    public func setPortUp(_ i: Int, _ up: Bool) { base.storeBytes(of: up ? 1 : 0, toByteOffset: StatsFile.oPortUp + i * 8, as: UInt64.self) }

    /// One counter summed over every lcore block.
    public func total(_ c: Int) -> UInt64 {
        var t: UInt64 = 0
        for i in 0..<lcores { t &+= block(i)[c] }
        return t
    }
}

/// Words another process reads or writes concurrently (heartbeat, generation).
enum SharedWord {
    static func load(_ p: UnsafeMutableRawPointer) -> UInt64 {
        UnsafeAtomic<UInt64>(at: p.assumingMemoryBound(to: UInt64.AtomicRepresentation.self)).load(ordering: .acquiring)
    }
    static func store(_ v: UInt64, _ p: UnsafeMutableRawPointer) {
        UnsafeAtomic<UInt64>(at: p.assumingMemoryBound(to: UInt64.AtomicRepresentation.self)).store(v, ordering: .releasing)
    }
}

public func realtimeNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

public func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
