import Foundation
import KeelAPI
import KeelCompiler
import KeelDataPlane
import KeelPacket
import KeelStats
import KeelTables

/// The keel side of the packet benchmarks (`forward`, `lb`): the real
/// keel-dataplane in this process, run to completion on one lcore, net_pcap
/// replaying `capture` from memory (infinite_rx) into port p0 and net_null
/// taking port p1's output. `config` is compiled and published to a tables
/// file first (on hugetlbfs with huge pages, where keel-control puts it).
enum BenchDataPlane {
    struct Result {
        var pps: Double
        /// The fastest tenth of a second's rate (`ForwardBench.sampleWindows`).
        var peakPps: Double
        var stats: StatsFile
        var drops: [String: UInt64]
        /// With `mark`: the fine samples (`Interleaved.sample`), for `Interleaved.blocks`.
        var samples: [Interleaved.Sample] = []
    }

    /// Packets per second sent on p1 over `seconds`, after half a second of warm-up.
    static func measure(_ config: Configuration, limits: SnapshotLimits, capture: String, dir: String, name: String,
                        hugePages: Bool, lcore: Int, eal: [String], seconds: Double, mbufs: Int,
                        conntrack: Int? = nil, mark: (@Sendable (StatsFile) -> UInt64)? = nil) throws -> Result {
        let tables = hugePages ? "\(TablesFile.defaultDirectory())/keel-bench-\(name)-\(getpid()).tables" : "\(dir)/tables"
        defer { unlink(tables) }
        let file = try TablesFile.create(path: tables, limits: limits, readers: 4)
        try SnapshotPublisher(file: file).publish(try Compiler(limits: limits).replace(with: config))
        var dp = DataPlaneConfig(tables: tables, ports: [
            .init(name: "p0", device: "net_pcap0,rx_pcap=\(capture),infinite_rx=1"),
            .init(name: "p1", device: "net_null0,no-rx=1"),
        ])
        dp.stats = "\(dir)/stats"
        dp.lcores = .init(main: 0, io: [lcore], workers: [])
        dp.mempool.mbufs = mbufs
        if let conntrack { dp.conntrack.flows = conntrack }
        let plane = try DataPlane(config: dp, eal: eal, log: { _ in })
        final class Box: @unchecked Sendable { var rate = 0.0, peak = 0.0; var samples: [Interleaved.Sample] = []; var done = false }
        let box = Box()
        let stats = plane.stats
        let sampler = Thread {
            if let mark {
                box.samples = Interleaved.sample(seconds, tx: { stats.total(Counter.txPackets(1)) }, mark: { mark(stats) })
                let (first, last) = (box.samples.first!, box.samples.last!)
                box.rate = Double(last.tx &- first.tx) / (Double(last.t &- first.t) / 1e9)
            } else {
                (box.rate, box.peak) = ForwardBench.sampleWindows(seconds) { stats.total(Counter.txPackets(1)) }
            }
            box.done = true
        }
        sampler.start()
        try plane.run(seconds: seconds + 1.0)
        while !box.done { usleep(10_000) }
        var drops: [String: UInt64] = [:]
        for r in DropReason.allCases where r != .none && stats.total(Counter.drop(Int(r.rawValue))) > 0 {
            drops["\(r)"] = stats.total(Counter.drop(Int(r.rawValue)))
        }
        return Result(pps: box.rate, peakPps: box.peak, stats: stats, drops: drops, samples: box.samples)
    }
}
