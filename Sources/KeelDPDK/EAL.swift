import CDPDK
import Foundation

public struct DPDKError: Error, CustomStringConvertible {
    public let what: String
    public let errno: Int32
    public init(_ what: String, errno: Int32 = keel_rte_errno()) {
        self.what = what
        self.errno = errno
    }
    public var description: String {
        errno == 0 ? what : "\(what): \(String(cString: rte_strerror(errno))) (errno \(errno))"
    }
}

/// DPDK's Environment Abstraction Layer. `rte_eal_init` runs once per process
/// and cannot run again after cleanup, so the first caller's arguments win.
public enum EAL {
    nonisolated(unsafe) private static var initialized = false
    nonisolated(unsafe) private static var hugePages = false
    nonisolated(unsafe) private static var failure: DPDKError?
    private static let lock = NSLock()

    /// Arguments for tests and benchmarks on a machine without NICs.
    public static func labArguments(hugePages: Bool, memoryMB: Int = 2048) -> [String] {
        var args = ["keel", "--no-pci", "-l", "0", "--log-level", "lib.eal:error", "--no-telemetry",
                    "--file-prefix", "keel\(getpid())"]
        if hugePages {
            args += ["--in-memory", "--socket-mem", "\(memoryMB)"]
        } else {
            // --in-memory implies legacy memory, which --no-huge refuses; --no-shconf
            // keeps the run from leaving files under /var/run/dpdk.
            args += ["--no-huge", "--no-shconf", "-m", "\(memoryMB)"]
        }
        return args
    }

    nonisolated(unsafe) private static var keptArguments: [UnsafeMutablePointer<CChar>?] = []
    nonisolated(unsafe) private static var ownedArguments: [UnsafeMutablePointer<CChar>?] = []

    /// Initialises the EAL once; later calls return at once.
    public static func initialize(_ arguments: [String]) throws {
        lock.lock()
        defer { lock.unlock() }
        if initialized { return }
        // A failed rte_eal_init cannot be retried in the same process.
        if let failure { throw failure }
        // Kept for the life of the process: the EAL keeps pointers into argv
        // (and permutes it while parsing).
        // (A second list of the same strings: the EAL overwrites some entries of the first.)
        ownedArguments = arguments.map { strdup($0) }
        keptArguments = ownedArguments
        let rc = keptArguments.withUnsafeMutableBufferPointer { rte_eal_init(Int32($0.count), $0.baseAddress) }
        guard rc >= 0 else {
            let e = DPDKError("rte_eal_init(\(arguments.joined(separator: " ")))")
            failure = e
            throw e
        }
        initialized = true
        hugePages = !arguments.contains("--no-huge")
    }

    public static var usesHugePages: Bool { hugePages }

    /// TSC ticks per second (for cycles-per-operation figures).
    public static var tscHz: UInt64 { rte_get_tsc_hz() }

    /// Bytes allocated from DPDK's heap on all sockets (tables, RIB nodes, mempools).
    public static func heapAllocatedBytes() -> Int {
        var total = 0
        for socket in 0..<Int32(rte_socket_count()) {
            var stats = rte_malloc_socket_stats()
            if rte_malloc_get_socket_stats(rte_socket_id_by_idx(UInt32(socket)), &stats) == 0 {
                total += Int(stats.heap_allocsz_bytes)
            }
        }
        return total
    }
}
