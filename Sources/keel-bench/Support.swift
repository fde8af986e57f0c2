import CKeelIntrinsics
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Monotonic nanoseconds.
@inline(__always)
func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Runs `body` `repeats` times and returns the fastest run in nanoseconds:
/// on a shared, noisy machine the minimum is the most repeatable figure.
func fastest(_ repeats: Int, _ body: () throws -> Void) rethrows -> UInt64 {
    var best = UInt64.max
    for _ in 0..<max(1, repeats) {
        let t0 = now()
        try body()
        best = min(best, now() - t0)
    }
    return best
}

/// Bytes the C heap has handed out (glibc mallinfo2), for writer-side memory.
func heapInUse() -> Int {
    let m = mallinfo2()
    return Int(m.uordblks) + Int(m.hblkhd)
}

/// A plain text table with right-aligned numbers.
struct TextTable {
    var header: [String]
    var rows: [[String]] = []

    mutating func add(_ r: [String]) { rows.append(r) }

    func render() -> String {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        func line(_ r: [String]) -> String {
            r.enumerated().map { i, c in
                i == 0 ? c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                       : String(repeating: " ", count: widths[i] - c.count) + c
            }.joined(separator: "  ")
        }
        return ([line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")] + rows.map(line))
            .joined(separator: "\n")
    }
}

func fmt(_ x: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }

func jsonString(_ object: Any) -> String {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
}

/// Whether 2 MiB huge pages are reserved and free (`/proc/meminfo`).
func freeHugePages() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("HugePages_Free:") {
        return Int(line.split(separator: " ").last ?? "0") ?? 0
    }
    return 0
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
