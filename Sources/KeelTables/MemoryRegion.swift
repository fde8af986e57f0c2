#if canImport(Glibc)
import Glibc
#endif

/// Anonymous memory for a table, optionally backed by 2 MiB huge pages
/// (fewer TLB misses on the 64 MiB root table). Unmapped on deinit.
public final class MemoryRegion: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let size: Int
    public let hugePages: Bool

    public enum Failure: Error, CustomStringConvertible {
        case mmap(size: Int, huge: Bool, errno: Int32)
        public var description: String {
            switch self {
            case .mmap(let size, let huge, let e):
                return "mmap of \(size) bytes\(huge ? " in huge pages" : "") failed: \(String(cString: strerror(e)))"
                    + (huge ? " (are hugepages reserved? see /proc/sys/vm/nr_hugepages)" : "")
            }
        }
    }

    public init(size: Int, hugePages: Bool = false) throws {
        let huge = 2 << 20
        let length = hugePages ? (size + huge - 1) / huge * huge : size
        var flags = MAP_PRIVATE | MAP_ANONYMOUS
        if hugePages { flags |= MAP_HUGETLB }
        let p = mmap(nil, length, PROT_READ | PROT_WRITE, flags, -1, 0)
        guard let p, p != MAP_FAILED else { throw Failure.mmap(size: size, huge: hugePages, errno: errno) }
        base = p
        self.size = length
        self.hugePages = hugePages
    }

    deinit { munmap(base, size) }
}
