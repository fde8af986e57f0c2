import Atomics
import CKeelIntrinsics
#if canImport(Glibc)
import Glibc
#endif

/// The tables file: one file mapped by the control plane (writer) and the
/// data plane (readers), each at its own address. See docs/table-format.md.
///
///     0        file header (4 KiB); `published` alone on the cache line at 64
///     4096     reader lines, 64 bytes each: generation seen (0 = offline), pid, lcore
///     2 MiB    slot 0, then slot 1 (each 2 MiB aligned)
///
/// `published` = generation << 1 | slot. Generation 0 means nothing is published.
public final class TablesFile: @unchecked Sendable {
    public static let magic: UInt64 = 0x4B45_454C_5442_4C46 // "KEELTBLF"
    public static let version: UInt32 = 1
    static let oMagic = 0, oVersion = 8, oReaders = 12, oSlotSize = 16, oSlot0 = 24, oSlot1 = 32
    static let oLines = 40, oFileSize = 48, oWriterPid = 56, oPublished = 64, oLimits = 128
    public static let lineSize = 64
    static let huge = 2 << 20

    public let path: String
    public let base: UnsafeMutableRawPointer
    public let size: Int
    public let layout: SnapshotLayout
    public let readerCount: Int
    let fd: Int32

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

    /// Where the file goes by default: a hugetlbfs mount if there is one
    /// (fewer TLB misses on the 64 MiB LPM roots), else /dev/shm.
    public static func defaultDirectory() -> String {
        if let mounts = readSmallFile("/proc/mounts") {
            for line in mounts.split(separator: "\n") {
                let f = line.split(separator: " ")
                if f.count > 2 && f[2] == "hugetlbfs" && access(String(f[1]), W_OK) == 0 { return String(f[1]) }
            }
        }
        return "/dev/shm"
    }

    static func readSmallFile(_ path: String) -> String? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func fileSize(_ layout: SnapshotLayout, readers: Int) -> (slot0: Int, total: Int) {
        let head = (4096 + readers * lineSize + huge - 1) / huge * huge
        return (head, head + 2 * layout.length)
    }

    /// Creates a new file (it must not exist), both slots empty.
    public static func create(path: String, limits: SnapshotLimits, readers: Int) throws -> TablesFile {
        guard readers > 0 && readers <= 1024 else { throw Failure.invalid("reader lines must be 1...1024, not \(readers)") }
        guard SnapshotLayout.fits(limits) else { throw Failure.invalid("these limits need a slot over \(SnapshotLayout.maxLength >> 30) GiB") }
        let layout = SnapshotLayout(limits)
        let (slot0, total) = fileSize(layout, readers: readers)
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure.system("create \(path)", errno) }
        guard ftruncate(fd, off_t(total)) == 0 else {
            let e = errno
            close(fd)
            unlink(path)
            throw Failure.system("size \(path) to \(total) bytes", e)
        }
        let f = try TablesFile(path: path, fd: fd, size: total, layout: layout, readers: readers)
        let b = f.base
        b.storeBytes(of: UInt32(readers), toByteOffset: oReaders, as: UInt32.self)
        b.storeBytes(of: UInt64(layout.length), toByteOffset: oSlotSize, as: UInt64.self)
        b.storeBytes(of: UInt64(slot0), toByteOffset: oSlot0, as: UInt64.self)
        b.storeBytes(of: UInt64(slot0 + layout.length), toByteOffset: oSlot1, as: UInt64.self)
        b.storeBytes(of: UInt64(4096), toByteOffset: oLines, as: UInt64.self)
        b.storeBytes(of: UInt64(total), toByteOffset: oFileSize, as: UInt64.self)
        for (i, v) in SnapshotLayout.limitsArray(limits).enumerated() {
            b.storeBytes(of: UInt32(v), toByteOffset: oLimits + 4 * i, as: UInt32.self)
        }
        b.storeBytes(of: version, toByteOffset: oVersion, as: UInt32.self)
        // The magic last: a file cut short during creation is not taken for a tables file.
        b.storeBytes(of: magic, toByteOffset: oMagic, as: UInt64.self)
        return f
    }

    /// Opens an existing file and checks its header against its size.
    public static func open(path: String) throws -> TablesFile {
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw Failure.system("open tables file \(path)", errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw Failure.system("stat \(path)", e)
        }
        let actual = Int(st.st_size)
        guard actual >= 4096 else {
            close(fd)
            throw Failure.invalid("\(path): \(actual) bytes is too short for a tables file")
        }
        guard let p = mmap(nil, 4096, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            let e = errno
            close(fd)
            throw Failure.system("map \(path)", e)
        }
        defer { munmap(p, 4096) }
        func fail(_ why: String) -> Failure {
            close(fd)
            return .invalid("\(path): \(why)")
        }
        guard p.load(fromByteOffset: oMagic, as: UInt64.self) == magic else { throw fail("not a Keel tables file (bad magic)") }
        let v = p.load(fromByteOffset: oVersion, as: UInt32.self)
        guard v == version else { throw fail("tables file version \(v), this build reads version \(version)") }
        let readers = Int(p.load(fromByteOffset: oReaders, as: UInt32.self))
        let limits = SnapshotLayout.limits(from: (0..<9).map { Int(p.load(fromByteOffset: oLimits + 4 * $0, as: UInt32.self)) })
        guard readers > 0 && readers <= 1024, limits.ipv4Groups > 0, limits.ipv4Groups < 1 << 24, limits.ipv6Groups > 0,
              limits.ipv6Groups < 1 << 24, limits.vips < 1 << 20, limits.maglevMaxSize < 1 << 25, limits.ecmpWays < 256,
              limits.nextHopGroups < 1 << 24, limits.backendsPerVIP <= 65535, limits.neighbors < 1 << 24, limits.ports < 4096 else {
            throw fail("header limits out of range")
        }
        // Each limit in range, and together a slot the layout can hold (found by keel-fuzz-tables).
        guard SnapshotLayout.fits(limits) else { throw fail("header limits need a slot over \(SnapshotLayout.maxLength >> 30) GiB") }
        let layout = SnapshotLayout(limits)
        let (slot0, total) = fileSize(layout, readers: readers)
        // Compared as stored (UInt64): converting a corrupt value to Int first
        // trapped (found by keel-fuzz-tables).
        guard p.load(fromByteOffset: oSlotSize, as: UInt64.self) == UInt64(layout.length),
              p.load(fromByteOffset: oSlot0, as: UInt64.self) == UInt64(slot0),
              p.load(fromByteOffset: oFileSize, as: UInt64.self) == UInt64(total) else {
            throw fail("header sizes do not match its limits")
        }
        guard actual >= total else { throw fail("truncated: \(actual) bytes, the header says \(total)") }
        return try TablesFile(path: path, fd: fd, size: total, layout: layout, readers: readers)
    }

    private init(path: String, fd: Int32, size: Int, layout: SnapshotLayout, readers: Int) throws {
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            let e = errno
            close(fd)
            throw Failure.system("map \(path) (\(size) bytes)", e)
        }
        self.path = path
        self.fd = fd
        self.base = p
        self.size = size
        self.layout = layout
        self.readerCount = readers
        onHugePages = keel_on_hugetlbfs(fd) != 0
    }

    /// Whether the file is on hugetlbfs: its tables then cost no page walks,
    /// so the data plane can prefetch LPM entries among other work.
    public let onHugePages: Bool

    deinit {
        munmap(base, size)
        close(fd)
    }

    // MARK: shared words

    /// generation << 1 | slot of the newest complete snapshot.
    public var published: UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: (base + TablesFile.oPublished).assumingMemoryBound(to: UInt64.AtomicRepresentation.self))
    }

    /// Reader line `i`: the generation its lcore last switched to (0 = offline).
    public func line(_ i: Int) -> UnsafeAtomic<UInt64> {
        precondition(i >= 0 && i < readerCount)
        return UnsafeAtomic(at: (base + 4096 + i * TablesFile.lineSize).assumingMemoryBound(to: UInt64.AtomicRepresentation.self))
    }

    public func linePid(_ i: Int) -> Int32 { base.load(fromByteOffset: 4096 + i * TablesFile.lineSize + 8, as: Int32.self) }

    func setLinePid(_ i: Int, _ pid: Int32) {
        base.storeBytes(of: pid, toByteOffset: 4096 + i * TablesFile.lineSize + 8, as: Int32.self)
    }

    public func slot(_ i: Int) -> UnsafeMutableRawPointer {
        base + Int(base.load(fromByteOffset: i == 0 ? TablesFile.oSlot0 : TablesFile.oSlot1, as: UInt64.self))
    }

    public var writerPid: Int32 {
        get { base.load(fromByteOffset: TablesFile.oWriterPid, as: Int32.self) }
        set { base.storeBytes(of: newValue, toByteOffset: TablesFile.oWriterPid, as: Int32.self) }
    }

    /// Whether process `pid` still exists (for reporting a stuck reader).
    public static func processAlive(_ pid: Int32) -> Bool { pid > 0 && (kill(pid, 0) == 0 || errno == EPERM) }

    /// Flushes a file on disk to storage (not needed for /dev/shm or hugetlbfs).
    public func sync() { msync(base, size, MS_SYNC) }
}
