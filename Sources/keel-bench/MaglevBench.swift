import ArgumentParser
import KeelTables
import KeelTestData

struct MaglevBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "maglev",
        abstract: "Maglev table build time against the paper's pseudocode (same run) and the paper's figures; disruption on removal."
    )

    @Option(help: "Backends in the table.") var backends = 1000
    @Option(help: "Builds per figure; the fastest counts.") var repeats = 20
    @Flag(help: "Print one JSON object instead of tables.") var json = false

    func run() throws {
        // The paper (section 5.3) reports 1.8 ms and 22.9 ms for 1000 backends.
        let sizes: [(m: Int, paperMs: Double)] = [(65537, 1.8), (655373, 22.9)]
        let list = (0..<backends).map { Maglev.Backend(id: UInt64(1000 + $0 * 7)) }
        var builds: [[String: Any]] = []
        var table = TextTable(header: ["M", "backends", "keel ms", "reference ms", "keel/ref speedup", "paper ms", "keel/paper"])
        for (m, paperMs) in sizes {
            var out = [UInt16](repeating: 0, count: m)
            let keelNs = try fastest(repeats) {
                try out.withUnsafeMutableBufferPointer { try Maglev.populate(list, into: $0) }
            }
            var ref: [Int] = []
            let refNs = fastest(max(1, repeats / 10)) { ref = ReferenceMaglev.table(ids: list.map(\.id), tableSize: m) }
            guard ref == out.map(Int.init) else { throw BenchFailure("Keel's table differs from the reference at M=\(m)") }
            let keelMs = Double(keelNs) / 1e6, refMs = Double(refNs) / 1e6
            builds.append(["table_size": m, "backends": backends, "keel_ms": keelMs, "reference_ms": refMs,
                           "speedup_vs_reference": refMs / keelMs, "paper_ms": paperMs, "ratio_to_paper": keelMs / paperMs])
            table.add(["\(m)", "\(backends)", fmt(keelMs, 3), fmt(refMs, 3), fmt(refMs / keelMs), fmt(paperMs, 1), fmt(keelMs / paperMs)])
        }
        var disruption: [[String: Any]] = []
        var dt = TextTable(header: ["backends", "M", "entries moved", "x minimum (1/N)"])
        for (n, m) in [(10, 65537), (100, 65537), (1000, 65537), (1000, 655373)] {
            let d = try MaglevDisruption.measure(n: n, tableSize: m)
            disruption.append(["backends": n, "table_size": m, "moved_fraction": d, "times_minimum": d * Double(n)])
            dt.add(["\(n)", "\(m)", fmt(d * 100, 2) + "%", fmt(d * Double(n))])
        }
        if json {
            print(jsonString(["command": "maglev", "builds": builds, "disruption": disruption]))
        } else {
            print("Maglev table build (fastest of \(repeats))\n" + table.render())
            print("\nDisruption when 1 of N backends is removed\n" + dt.render())
        }
    }
}
