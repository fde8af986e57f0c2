import CDPDK

/// DPDK's rte_fib (DIR-24-8, 4-byte next hops): the reference for Keel's IPv4 LPM.
public final class DPDKFib4 {
    public let fib: OpaquePointer
    public static let defaultNextHop: UInt64 = (1 << 31) - 1

    public init(name: String, maxRoutes: Int, tbl8Groups: Int) throws {
        var conf = rte_fib_conf()
        conf.type = RTE_FIB_DIR24_8
        conf.default_nh = DPDKFib4.defaultNextHop
        conf.max_routes = Int32(maxRoutes)
        conf.dir24_8.nh_sz = RTE_FIB_DIR24_8_4B
        conf.dir24_8.num_tbl8 = UInt32(tbl8Groups)
        guard let f = rte_fib_create(name, Int32(SOCKET_ID_ANY), &conf) else {
            throw DPDKError("rte_fib_create(\(name))")
        }
        fib = f
    }

    deinit { rte_fib_free(fib) }

    public func add(_ address: UInt32, _ length: UInt8, nextHop: UInt32) throws {
        let rc = rte_fib_add(fib, address, length, UInt64(nextHop))
        guard rc == 0 else { throw DPDKError("rte_fib_add", errno: -rc) }
    }

    public func delete(_ address: UInt32, _ length: UInt8) throws {
        let rc = rte_fib_delete(fib, address, length)
        guard rc == 0 else { throw DPDKError("rte_fib_delete", errno: -rc) }
    }

    public func lookupBulk(_ a: UnsafeMutablePointer<UInt32>, _ out: UnsafeMutablePointer<UInt64>, count: Int) {
        _ = rte_fib_lookup_bulk(fib, a, out, Int32(count))
    }

    /// Picks the lookup function (scalar, vector or AVX-512) like DPDK's own apps do.
    public func selectLookup(_ type: rte_fib_lookup_type) -> Bool {
        rte_fib_select_lookup(fib, type) == 0
    }
}

/// DPDK's rte_fib6 (trie, 4-byte next hops): the reference for Keel's IPv6 LPM.
public final class DPDKFib6 {
    public let fib: OpaquePointer
    public static let defaultNextHop: UInt64 = (1 << 31) - 1

    public init(name: String, maxRoutes: Int, tbl8Groups: Int) throws {
        var conf = rte_fib6_conf()
        conf.type = RTE_FIB6_TRIE
        conf.default_nh = DPDKFib6.defaultNextHop
        conf.max_routes = Int32(maxRoutes)
        conf.trie.nh_sz = RTE_FIB6_TRIE_4B
        conf.trie.num_tbl8 = UInt32(tbl8Groups)
        guard let f = rte_fib6_create(name, Int32(SOCKET_ID_ANY), &conf) else {
            throw DPDKError("rte_fib6_create(\(name))")
        }
        fib = f
    }

    deinit { rte_fib6_free(fib) }

    /// tbl8 groups rte_fib6's trie needs for these prefix lengths: it reserves
    /// ceil((length - 24) / 8) groups per route, whether or not they are shared.
    public static func reservedGroups(_ lengths: [UInt8]) -> Int {
        lengths.reduce(0) { $0 + (Int($1) <= 24 ? 0 : (Int($1) - 24 + 7) / 8) } + 1
    }

    /// `address` points at 16 bytes in network byte order.
    public func add(_ address: UnsafePointer<UInt8>, _ length: UInt8, nextHop: UInt32) throws {
        let rc = rte_fib6_add(fib, address, length, UInt64(nextHop))
        guard rc == 0 else { throw DPDKError("rte_fib6_add", errno: -rc) }
    }

    public func delete(_ address: UnsafePointer<UInt8>, _ length: UInt8) throws {
        let rc = rte_fib6_delete(fib, address, length)
        guard rc == 0 else { throw DPDKError("rte_fib6_delete", errno: -rc) }
    }

    /// `a` points at `count` packed 16-byte addresses.
    public func lookupBulk(_ a: UnsafePointer<UInt8>, _ out: UnsafeMutablePointer<UInt64>, count: Int) {
        a.withMemoryRebound(to: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                                 UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8).self,
                            capacity: count) { p in
            _ = rte_fib6_lookup_bulk(fib, UnsafeMutablePointer(mutating: p), out, Int32(count))
        }
    }

    public func selectLookup(_ type: rte_fib6_lookup_type) -> Bool {
        rte_fib6_select_lookup(fib, type) == 0
    }
}

/// DPDK's rte_lpm (IPv4, DIR-24-8 with depth in each entry). Its add is slow
/// for a full table, so it is used on subsets.
public final class DPDKLpm4 {
    public let lpm: OpaquePointer
    public static let miss: UInt32 = .max

    public init(name: String, maxRules: Int, tbl8Groups: Int) throws {
        var conf = rte_lpm_config(max_rules: UInt32(maxRules), number_tbl8s: UInt32(tbl8Groups), flags: 0)
        guard let l = rte_lpm_create(name, Int32(SOCKET_ID_ANY), &conf) else {
            throw DPDKError("rte_lpm_create(\(name))")
        }
        lpm = l
    }

    deinit { rte_lpm_free(lpm) }

    public func add(_ address: UInt32, _ length: UInt8, nextHop: UInt32) throws {
        let rc = rte_lpm_add(lpm, address, length, nextHop)
        guard rc == 0 else { throw DPDKError("rte_lpm_add", errno: -rc) }
    }

    public func delete(_ address: UInt32, _ length: UInt8) throws {
        let rc = rte_lpm_delete(lpm, address, length)
        guard rc == 0 else { throw DPDKError("rte_lpm_delete", errno: -rc) }
    }

    /// Results as rte_lpm gives them, flag bits included (what an application's loop sees).
    public func lookupBulkRaw(_ a: UnsafePointer<UInt32>, _ out: UnsafeMutablePointer<UInt32>, count: Int) {
        var i = 0
        while i < count {
            let n = min(64, count - i)
            _ = rte_lpm_lookup_bulk_func(lpm, a + i, out + i, UInt32(n))
            i += n
        }
    }

    public func lookup(_ address: UInt32) -> UInt32 {
        var nh: UInt32 = 0
        return rte_lpm_lookup(lpm, address, &nh) == 0 ? nh : DPDKLpm4.miss
    }

    /// rte_lpm_lookup_bulk is a macro over rte_lpm_lookup_bulk_func, which keeps a
    /// variable-length array of `n` on the stack: call it 64 at a time. Results
    /// carry the valid flag in bit 24 (RTE_LPM_LOOKUP_SUCCESS).
    public func lookupBulk(_ a: UnsafePointer<UInt32>, _ out: UnsafeMutablePointer<UInt32>, count: Int) {
        lookupBulkRaw(a, out, count: count)
        for i in 0..<count {
            out[i] = out[i] & 0x0100_0000 != 0 ? out[i] & 0x00FF_FFFF : DPDKLpm4.miss
        }
    }
}
