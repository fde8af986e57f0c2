import KeelTables

/// The slowest correct LPM there is: routes by length, longest match first.
/// Independent of the trie code, so the two can be compared.
struct ReferenceLPM {
    let bits: Int
    var byLength: [[UInt128: UInt32]]

    init(bits: Int) {
        self.bits = bits
        byLength = Array(repeating: [:], count: bits + 1)
    }

    /// `key` is the address as an integer of `bits` bits.
    mutating func insert(_ key: UInt128, _ length: Int, _ nh: UInt32) { byLength[length][key] = nh }
    mutating func delete(_ key: UInt128, _ length: Int) { byLength[length][key] = nil }

    func lookup(_ a: UInt128) -> UInt32 {
        for l in stride(from: bits, through: 0, by: -1) {
            let mask: UInt128 = l == 0 ? 0 : (~UInt128(0) << UInt128(bits - l)) & (bits == 128 ? ~0 : (UInt128(1) << UInt128(bits)) - 1)
            if let nh = byLength[l][a & mask] { return nh }
        }
        return LPMEntry.noRoute
    }
}
