import Foundation
import KeelTables

/// SplitMix64: a tiny seeded generator, so every stream is reproducible.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public enum TestDataError: Error, CustomStringConvertible {
    case notFound(String)
    case unreadable(String, String)
    public var description: String {
        switch self {
        case .notFound(let p): return "test data not found: \(p) (expected ../shared/data beside the repository, or set KEEL_SHARED_DATA)"
        case .unreadable(let p, let why): return "cannot read \(p): \(why)"
        }
    }
}

/// The full Internet table from ../shared/data, with synthetic next hops.
///
/// Next-hop rule: each prefix's next hop is its index among the prefixes of its
/// family in file order (IPv4 0...901898, IPv6 0...160146). Unique next hops make
/// any precedence mistake visible and exercise 20 bits of next hop.
public struct FullTable: Sendable {
    public var v4: [(prefix: IPv4Prefix, nextHop: UInt32)]
    public var v6: [(prefix: IPv6Prefix, nextHop: UInt32)]

    /// `../shared/data` relative to the repository root, or $KEEL_SHARED_DATA.
    public static func dataDirectory(repositoryRoot: String? = nil) -> String {
        if let env = ProcessInfo.processInfo.environment["KEEL_SHARED_DATA"] { return env }
        let root = repositoryRoot ?? FileManager.default.currentDirectoryPath
        return URL(fileURLWithPath: root).deletingLastPathComponent()
            .appendingPathComponent("shared/data").path
    }

    public static func defaultPath(repositoryRoot: String? = nil) -> String {
        dataDirectory(repositoryRoot: repositoryRoot) + "/full-table-2024.txt.gz"
    }

    public static func load(path: String) throws -> FullTable {
        guard FileManager.default.fileExists(atPath: path) else { throw TestDataError.notFound(path) }
        // Plain text too (a table cut for a profiler run, e.g. under valgrind, which cannot spawn gzip).
        let text = path.hasSuffix(".gz") ? try gunzip(path) : [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var t = FullTable(v4: [], v6: [])
        t.v4.reserveCapacity(910_000)
        t.v6.reserveCapacity(170_000)
        for line in text.split(separator: UInt8(ascii: "\n")) {
            let s = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if s.isEmpty || s.hasPrefix("#") { continue }
            if s.contains(":") {
                t.v6.append((try IPv6Prefix(s), UInt32(t.v6.count)))
            } else {
                t.v4.append((try IPv4Prefix(s), UInt32(t.v4.count)))
            }
        }
        return t
    }

    /// Decompresses with the system's gzip; test data only, not product code.
    static func gunzip(_ path: String) throws -> [UInt8] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/gzip")
        p.arguments = ["-dc", path]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestDataError.unreadable(path, "gzip exited \(p.terminationStatus)") }
        return [UInt8](data)
    }
}

/// Address streams for lookups: uniform over the whole space, or skewed so that
/// 90% of lookups fall inside 1% of the prefixes (a few hot destinations).
public enum AddressStream {
    public static func uniformV4(count: Int, seed: UInt64) -> [UInt32] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
    }

    public static func skewedV4(count: Int, prefixes: [IPv4Prefix], seed: UInt64) -> [UInt32] {
        var rng = SplitMix64(seed: seed)
        let hot = hotSet(prefixes.count, &rng)
        return (0..<count).map { _ in
            let r = UInt32(truncatingIfNeeded: rng.next())
            guard rng.next() % 10 != 0 else { return r }
            let p = prefixes[hot[Int(rng.next() % UInt64(hot.count))]]
            let host: UInt32 = p.length == 0 ? r : (p.length == 32 ? 0 : r & ~(~0 << (32 - UInt32(p.length))))
            return p.address | host
        }
    }

    /// IPv6 addresses, 16 bytes each in network byte order, packed.
    public static func uniformV6(count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        var out = [UInt8](repeating: 0, count: count * 16)
        out.withUnsafeMutableBytes { b in
            for i in 0..<count {
                let a = UInt128(rng.next()) << 64 | UInt128(rng.next())
                IPv6Prefix.store(a, to: b.baseAddress! + i * 16)
            }
        }
        return out
    }

    public static func skewedV6(count: Int, prefixes: [IPv6Prefix], seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        let hot = hotSet(prefixes.count, &rng)
        var out = [UInt8](repeating: 0, count: count * 16)
        out.withUnsafeMutableBytes { b in
            for i in 0..<count {
                var a = UInt128(rng.next()) << 64 | UInt128(rng.next())
                if rng.next() % 10 != 0 {
                    let p = prefixes[hot[Int(rng.next() % UInt64(hot.count))]]
                    let hostMask: UInt128 = p.length == 0 ? ~0 : (p.length == 128 ? 0 : ~(~UInt128(0) << (128 - UInt128(p.length))))
                    a = p.address | (a & hostMask)
                }
                IPv6Prefix.store(a, to: b.baseAddress! + i * 16)
            }
        }
        return out
    }

    /// 1% of the prefix indices, at least one.
    static func hotSet(_ n: Int, _ rng: inout SplitMix64) -> [Int] {
        let k = max(1, n / 100)
        return (0..<k).map { _ in Int(rng.next() % UInt64(n)) }
    }
}
