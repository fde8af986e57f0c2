import KeelTables

/// Maglev straight from the paper's pseudocode (Eisenbud et al., NSDI 2016,
/// section 3.4, Pseudocode 1), with the same offset/skip inputs as Keel:
/// permutation[i][j] = (offset + j * skip) mod M. Plain arrays, no shortcuts:
/// the yardstick for Keel's table in tests and in `keel-bench maglev`.
public enum ReferenceMaglev {
    public static func table(ids: [UInt64], tableSize m: Int) -> [Int] {
        let n = ids.count
        var permutation = [[Int]](repeating: [], count: n)
        for i in 0..<n {
            let (offset, skip) = Maglev.permutationParameters(id: ids[i], tableSize: m)
            permutation[i] = (0..<m).map { j in (offset + j * skip) % m }
        }
        var next = [Int](repeating: 0, count: n)
        var entry = [Int](repeating: -1, count: m)
        var filled = 0
        while true {
            for i in 0..<n {
                var c = permutation[i][next[i]]
                while entry[c] >= 0 {
                    next[i] += 1
                    c = permutation[i][next[i]]
                }
                entry[c] = i
                next[i] += 1
                filled += 1
                if filled == m { return entry }
            }
        }
    }

}

/// How much of Keel's Maglev table moves when a backend leaves.
public enum MaglevDisruption {
    /// Fraction of entries whose backend changes when the middle one of N is removed.
    public static func measure(n: Int, tableSize m: Int) throws -> Double {
        let all = (0..<n).map { Maglev.Backend(id: UInt64(1000 + $0 * 7)) }
        let before = try Maglev.table(all, tableSize: m).map { all[Int($0)].id }
        var fewer = all
        fewer.remove(at: n / 2)
        let after = try Maglev.table(fewer, tableSize: m).map { fewer[Int($0)].id }
        return Double(zip(before, after).filter { $0 != $1 }.count) / Double(m)
    }
}
