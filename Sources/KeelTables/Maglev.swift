/// Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4), with weights.
///
/// The lookup table is a pure function of (backend ids, weights, table size M):
/// no per-process seed, no dictionary order, no floating point. Every process
/// and every appliance with the same configuration builds identical bytes, so
/// a flow keeps its backend when ECMP moves it to another appliance.
///
/// Hashes (fixed, documented in docs/table-format.md):
///     offset(id) = mix64(id ^ 0x6B65_656C_6F66_6673) mod M
///     skip(id)   = mix64(id ^ 0x6B65_656C_736B_6970) mod (M - 1) + 1
/// where mix64 is the MurmurHash3 64-bit finaliser. Swift's `Hasher` is seeded
/// per process and must never be used for anything that lands in a table.
public enum Maglev {
    public static let defaultTableSize = 65537
    /// Entries of a table with no usable backend.
    public static let noBackend: UInt16 = .max
    /// Backend indices are UInt16, one value kept for `noBackend`.
    public static let maxBackends = Int(UInt16.max)
    public static let maxWeight: UInt32 = 1 << 16

    public struct Backend: Hashable, Sendable {
        /// Stable id from the store; the permutation depends on it alone.
        public var id: UInt64
        /// Relative weight; 0 takes the backend out of the table.
        public var weight: UInt32
        public init(id: UInt64, weight: UInt32 = 1) {
            self.id = id
            self.weight = weight
        }
    }

    @inlinable @inline(__always)
    public static func mix64(_ x: UInt64) -> UInt64 {
        var k = x
        k ^= k >> 33
        k &*= 0xff51_afd7_ed55_8ccd
        k ^= k >> 33
        k &*= 0xc4ce_b9fe_1a85_ec53
        k ^= k >> 33
        return k
    }

    /// Where backend `id`'s permutation starts and how far it steps, for size `m`.
    public static func permutationParameters(id: UInt64, tableSize m: Int) -> (offset: Int, skip: Int) {
        let offset = Int(mix64(id ^ 0x6B65_656C_6F66_6673) % UInt64(m))
        let skip = Int(mix64(id ^ 0x6B65_656C_736B_6970) % UInt64(m - 1)) + 1
        return (offset, skip)
    }

    public static func isPrime(_ n: Int) -> Bool {
        if n < 2 { return false }
        if n % 2 == 0 { return n == 2 }
        var d = 3
        while d * d <= n {
            if n % d == 0 { return false }
            d += 2
        }
        return true
    }

    public static func validate(_ backends: [Backend], tableSize m: Int) throws {
        guard isPrime(m) else { throw TableError.invalidMaglev("table size \(m) is not prime") }
        guard m <= 1 << 24 else { throw TableError.invalidMaglev("table size \(m) is above 16777216") }
        guard backends.count <= maxBackends else {
            throw TableError.invalidMaglev("\(backends.count) backends, at most \(maxBackends)")
        }
        guard backends.count < m else {
            throw TableError.invalidMaglev("\(backends.count) backends need a table larger than \(m)")
        }
        var seen = Set<UInt64>()
        for b in backends {
            guard b.weight <= maxWeight else {
                throw TableError.invalidMaglev("backend \(b.id) weight \(b.weight) is above \(maxWeight)")
            }
            guard seen.insert(b.id).inserted else { throw TableError.invalidMaglev("backend id \(b.id) appears twice") }
        }
    }

    /// Fills `table` (M entries) with indices into `backends`.
    ///
    /// Each round every backend adds its weight to a credit; a backend whose
    /// credit reaches the largest weight spends it on its next preferred free
    /// entry. With equal weights every backend takes one entry per round: the
    /// paper's algorithm exactly. Entries per backend stay proportional to weight.
    public static func populate(_ backends: [Backend], into table: UnsafeMutableBufferPointer<UInt16>) throws {
        let m = table.count
        try validate(backends, tableSize: m)
        table.update(repeating: noBackend)
        // Sorted by id: the table depends on the set of backends, not on their order.
        let live = backends.indices.filter { backends[$0].weight > 0 }.sorted { backends[$0].id < backends[$1].id }
        guard !live.isEmpty else { return }
        let n = live.count
        let maxW = live.map { backends[$0].weight }.max()!
        let equalWeights = live.allSatisfy { backends[$0].weight == maxW }
        // Per live backend, packed so the round-robin walks one small array.
        let state = UnsafeMutablePointer<FillState>.allocate(capacity: n)
        // Which entries are taken, one bit each: 8 KiB for M = 65537, so the
        // probe loop runs in L1 instead of in the 128 KiB table.
        let words = (m + 63) / 64
        let taken = UnsafeMutablePointer<UInt64>.allocate(capacity: words)
        taken.initialize(repeating: 0, count: words)
        defer { state.deallocate(); taken.deallocate() }
        for (k, i) in live.enumerated() {
            let p = permutationParameters(id: backends[i].id, tableSize: m)
            state[k] = FillState(offset: UInt32(p.offset), pos: UInt32(p.offset), skip: UInt32(p.skip), weight: backends[i].weight,
                                 credit: 0, index: UInt16(truncatingIfNeeded: i))
        }
        let t = table.baseAddress!
        let m32 = UInt32(m)
        // Once few entries are left free, probing a permutation for one takes
        // about M / free steps; then it is cheaper to ask, for each free entry,
        // where it sits in the backend's permutation and take the earliest.
        // Same result: every entry a backend's permutation reaches before its
        // current position is taken already.
        let endgame = max(16, Int(Double(m).squareRoot()) / 2) // tuned with keel-bench maglev
        var filled = 0
        var k = 0
        while m - filled > endgame {
            if equalWeights || spendCredit(&state[k], maxW) {
                var c = state[k].pos
                let s = state[k].skip
                while taken[Int(c &>> 6)] & (1 &<< UInt64(c & 63)) != 0 {
                    c &+= s
                    if c >= m32 { c &-= m32 }
                }
                taken[Int(c &>> 6)] |= 1 &<< UInt64(c & 63)
                t[Int(c)] = state[k].index
                c &+= s
                if c >= m32 { c &-= m32 }
                state[k].pos = c
                filled &+= 1
            }
            k = k &+ 1 == n ? 0 : k &+ 1
        }
        var free: [UInt32] = []
        free.reserveCapacity(m - filled)
        for c in 0..<m32 where taken[Int(c &>> 6)] & (1 &<< UInt64(c & 63)) == 0 { free.append(c) }
        let m64 = UInt64(m)
        while !free.isEmpty {
            if equalWeights || spendCredit(&state[k], maxW) {
                // Position in k's permutation: j = (c - offset) * skip^-1 mod M.
                let inverse = UInt64(modularInverse(state[k].skip, m))
                let offset = UInt64(state[k].offset)
                var best = 0
                var bestJ = UInt64.max
                for (i, c) in free.enumerated() {
                    var d = UInt64(c) &+ m64 &- offset
                    if d >= m64 { d &-= m64 }
                    let j = d &* inverse % m64
                    if j < bestJ { bestJ = j; best = i }
                }
                t[Int(free[best])] = state[k].index
                free.swapAt(best, free.count - 1)
                free.removeLast()
            }
            k = k &+ 1 == n ? 0 : k &+ 1
        }
    }

    @inline(__always)
    static func spendCredit(_ st: inout FillState, _ maxW: UInt32) -> Bool {
        st.credit &+= st.weight
        if st.credit < maxW { return false }
        st.credit &-= maxW
        return true
    }

    /// x^-1 mod m for prime m (Fermat: x^(m-2)).
    static func modularInverse(_ x: UInt32, _ m: Int) -> UInt32 {
        var result: UInt64 = 1, base = UInt64(x) % UInt64(m), e = m - 2
        let mm = UInt64(m)
        while e > 0 {
            if e & 1 == 1 { result = result &* base % mm }
            base = base &* base % mm
            e >>= 1
        }
        return UInt32(result)
    }

    struct FillState {
        var offset: UInt32
        var pos: UInt32
        var skip: UInt32
        var weight: UInt32
        var credit: UInt32
        var index: UInt16
    }

    /// Convenience: a new table of `tableSize` entries.
    public static func table(_ backends: [Backend], tableSize: Int = defaultTableSize) throws -> [UInt16] {
        guard tableSize > 0 else { throw TableError.invalidMaglev("table size \(tableSize) is not prime") }
        var t = [UInt16](repeating: noBackend, count: tableSize)
        try t.withUnsafeMutableBufferPointer { try populate(backends, into: $0) }
        return t
    }
}
