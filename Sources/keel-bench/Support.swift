import ArgumentParser
import CKeelIntrinsics
import Foundation
#if canImport(Glibc)
import Glibc
import KeelTestData
#endif

/// Monotonic nanoseconds.
@inline(__always)
/// The median of `xs` (not empty).
func median(_ xs: [Double]) -> Double {
    let v = xs.sorted()
    return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
}

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

/// A classic pcap capture (Ethernet) built in memory, for net_pcap to replay.
struct PcapCapture {
    private(set) var data = Data()
    private(set) var count = 0

    init() {
        u32(0xa1b2c3d4); u16(2); u16(4); u32(0); u32(0); u32(65535); u32(1)
    }

    func write(to path: String) throws { try data.write(to: URL(fileURLWithPath: path)) }

    mutating func add(_ frame: [UInt8]) {
        u32(UInt32(count)); u32(0); u32(UInt32(frame.count)); u32(UInt32(frame.count))
        data.append(contentsOf: frame)
        count += 1
    }

    private mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    private mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
}

/// The options `forward` and `lb` share: the table, the lcore, how long and
/// how often to measure, the pages, the output form.
struct PacketBenchOptions: ParsableArguments {
    @Option(help: "The full table (gzip, one CIDR a line).") var table = FullTable.defaultPath()
    @Option(help: "Use only the first N IPv4 prefixes (default: all).") var routes: Int?
    @Option(help: "Seconds per measured run.") var seconds = 3.0
    @Option(help: "The lcore that forwards (the main lcore is 0).") var lcore = 1
    @Option(help: "Runs of each side (child processes, alternating).") var runs = 2
    @Flag(help: "Use 2 MiB huge pages for DPDK memory and the tables file (as an appliance does).") var hugePages = false
    @Flag(help: "Print one JSON object instead of tables.") var json = false

    /// EAL arguments of a child side: the main lcore 0 and the measured lcore,
    /// DPDK memory on huge pages or not, a file prefix of its own.
    func eal(prefix: String) -> [String] {
        ["--no-pci", "--lcores", "0@0,\(lcore)@\(lcore)", "--log-level", "lib.eal:error", "--no-telemetry",
         "--file-prefix", "\(prefix)\(getpid())"]
            + (hugePages ? ["--in-memory", "--socket-mem", "2048"] : ["--no-huge", "--no-shconf", "-m", "3072"])
    }
}
