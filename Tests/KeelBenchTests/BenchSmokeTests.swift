import Foundation
import XCTest

/// keel-bench is a product: each subcommand must print its table and, with
/// --json, one JSON object with the documented fields. Small sizes; the
/// figures themselves come from running it by hand (docs/performance.md).
final class BenchSmokeTests: XCTestCase {
    static var binary: URL {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("keel-bench")
    }

    func run(_ args: [String]) throws -> (status: Int32, out: String) {
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build keel-bench first (swift build)")
        let p = Process()
        p.executableURL = Self.binary
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func json(_ s: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any], "not one JSON object: \(s.prefix(300))")
    }

    func testMaglevTableAndJSON() throws {
        let text = try run(["maglev", "--repeats", "2", "--backends", "100"])
        XCTAssertEqual(text.status, 0)
        XCTAssertTrue(text.out.contains("keel ms"), text.out)
        let j = try run(["maglev", "--repeats", "2", "--backends", "100", "--json"])
        XCTAssertEqual(j.status, 0)
        let obj = try json(j.out)
        XCTAssertEqual(obj["command"] as? String, "maglev")
        let builds = try XCTUnwrap(obj["builds"] as? [[String: Any]])
        XCTAssertEqual(builds.map { $0["table_size"] as? Int }, [65537, 655373])
        for b in builds {
            for key in ["keel_ms", "reference_ms", "speedup_vs_reference", "paper_ms", "ratio_to_paper"] {
                XCTAssertGreaterThan(b[key] as? Double ?? 0, 0, key)
            }
        }
        XCTAssertEqual((obj["disruption"] as? [Any])?.count, 4)
    }

    func testLPMJSON() throws {
        let j = try run(["lpm", "--memory", "normal", "--lookups", "200000", "--repeats", "1", "--lpm-subset", "5000", "--json"])
        XCTAssertEqual(j.status, 0)
        let obj = try json(j.out)
        XCTAssertEqual(obj["command"] as? String, "lpm")
        let run = try XCTUnwrap((obj["runs"] as? [[String: Any]])?.first)
        XCTAssertEqual(run["memory"] as? String, "normal")
        let lookups = try XCTUnwrap(run["lookups"] as? [[String: Any]])
        let families = Set(lookups.compactMap { $0["family"] as? String })
        XCTAssertEqual(families, ["ipv4", "ipv4-subset", "ipv6"])
        for row in lookups {
            XCTAssertGreaterThan(row["mlookups_per_s"] as? Double ?? 0, 0)
            XCTAssertGreaterThan(row["cycles_per_lookup"] as? Double ?? 0, 0)
            if (row["implementation"] as? String)?.hasPrefix("keel") == true {
                XCTAssertGreaterThan(row["speedup_vs_reference"] as? Double ?? 0, 0, "\(row)")
            }
        }
        let builds = try XCTUnwrap(run["builds"] as? [[String: Any]])
        XCTAssertEqual(Set(builds.compactMap { $0["implementation"] as? String }), ["keel", "rte_fib", "rte_fib6", "rte_lpm"])
        XCTAssertTrue(builds.allSatisfy { ($0["bytes"] as? Int ?? 0) > 0 && ($0["build_ms"] as? Double ?? 0) > 0 })
    }

    func testSwapJSON() throws {
        let j = try run(["swap", "--routes", "20000", "--changes", "50", "--turns", "1000000", "--json"])
        XCTAssertEqual(j.status, 0)
        let obj = try json(j.out)
        XCTAssertEqual(obj["command"] as? String, "swap")
        for key in ["first_publish_ms", "full_rebuild_ms", "full_verify_ms", "one_route_publish_us_p50", "one_route_publish_us_p99",
                    "one_route_verify_us_p99", "reader_turn_ns_unchanged", "reader_turn_ns_changed"] {
            XCTAssertGreaterThan(obj[key] as? Double ?? 0, 0, key)
        }
        XCTAssertGreaterThan(obj["routes"] as? Int ?? 0, 20000)
        let text = try run(["swap", "--routes", "20000", "--changes", "50", "--turns", "1000000"])
        XCTAssertTrue(text.out.contains("one-route change published, p99"), text.out)
    }

    /// A short `forward` run: both sides move packets, Keel drops none, the table and JSON agree in shape.
    func testForwardJSONAndTable() throws {
        let j = try run(["forward", "--routes", "20000", "--seconds", "0.5", "--runs", "1", "--frames", "1024", "--json"])
        XCTAssertEqual(j.status, 0, j.out)
        let obj = try json(j.out)
        XCTAssertGreaterThan(obj["keel_pps"] as? Double ?? 0, 100_000, j.out)
        XCTAssertGreaterThan(obj["reference_pps"] as? Double ?? 0, 100_000, j.out)
        XCTAssertGreaterThan(obj["ratio"] as? Double ?? 0, 0)
        // One run each: the best run is the median.
        XCTAssertEqual(obj["keel_pps_best"] as? Double, obj["keel_pps"] as? Double, j.out)
        XCTAssertEqual(obj["ratio_best"] as? Double, obj["ratio"] as? Double, j.out)
        XCTAssertEqual((obj["keel_drops"] as? [String: Any])?.count, 0, "Keel dropped packets: \(j.out)")
        let rx = obj["keel_rx_packets"] as? [Int] ?? [], tx = obj["keel_tx_packets"] as? [Int] ?? []
        XCTAssertEqual(rx, tx, "every received packet forwarded")
        XCTAssertGreaterThan(obj["frames"] as? Int ?? 0, 100)
        let t = try run(["forward", "--routes", "20000", "--seconds", "0.3", "--runs", "1", "--frames", "512"])
        XCTAssertEqual(t.status, 0, t.out)
        XCTAssertTrue(t.out.contains("ratio keel / reference:") && t.out.contains("(best runs)"), t.out)
    }

    /// A short `lb` run: all three traffic kinds move packets, established flows hit the table, JSON and table agree in shape.
    func testLBJSONAndTable() throws {
        let j = try run(["lb", "--routes", "20000", "--seconds", "0.5", "--runs", "1", "--flows", "2048", "--conntrack", "65536", "--json"])
        XCTAssertEqual(j.status, 0, j.out)
        let obj = try json(j.out)
        for k in ["route_pps", "established_pps", "new_pps"] { XCTAssertGreaterThan(obj[k] as? Double ?? 0, 100_000, "\(k): \(j.out)") }
        XCTAssertGreaterThan(obj["established_to_route"] as? Double ?? 0, 0)
        XCTAssertEqual(obj["established_to_route_best"] as? Double, obj["established_to_route"] as? Double, j.out)
        // One round: the paired ratio is that round's ratio; a window is never slower than the run as a whole.
        XCTAssertEqual(obj["established_to_route_paired"] as? Double ?? 0, obj["established_to_route"] as? Double ?? -1, accuracy: 1e-9, j.out)
        for s in ["route", "established", "new"] {
            XCTAssertGreaterThanOrEqual(obj["\(s)_peak_pps"] as? Double ?? 0, 0.99 * (obj["\(s)_pps"] as? Double ?? .infinity), "\(s): \(j.out)")
        }
        XCTAssertGreaterThan(obj["established_to_route_peak"] as? Double ?? 0, 0, j.out)
        XCTAssertEqual(obj["bytes_per_flow"] as? Int, 64) // 4 entries of 16 bytes per flow
        XCTAssertEqual((obj["drops"] as? [Any])?.count, 0, "dropped packets: \(j.out)")
        let hits = (obj["established_conn_hits"] as? [Int])?.first ?? 0, misses = (obj["established_conn_misses"] as? [Int])?.first ?? 0
        XCTAssertGreaterThan(hits, 50 * misses, "established traffic should hit the table: \(j.out)")
        // Interleaved: both kinds of blocks seen, every VIP block paired with routed ones, rates in range.
        XCTAssertGreaterThan(obj["interleaved_route_pps"] as? Double ?? 0, 100_000, j.out)
        XCTAssertGreaterThan(obj["interleaved_established_pps"] as? Double ?? 0, 100_000, j.out)
        XCTAssertGreaterThan((obj["interleaved_pairs"] as? [Int])?.first ?? 0, 10, "blocks of 2048 frames over 0.5 s: \(j.out)")
        let ratio = obj["established_to_route_interleaved"] as? Double ?? 0
        XCTAssertTrue(ratio > 0.1 && ratio < 10, "established / routing, interleaved: \(j.out)")
        XCTAssertGreaterThan(obj["interleaved_block_ms"] as? Double ?? 0, 0, j.out)
        let t = try run(["lb", "--routes", "20000", "--seconds", "0.3", "--runs", "1", "--flows", "1024", "--conntrack", "4096"])
        XCTAssertEqual(t.status, 0, t.out)
        XCTAssertTrue(t.out.contains("established / routing:") && t.out.contains("(best runs)"), t.out)
        XCTAssertTrue(t.out.contains("interleaved in one data plane"), t.out)
    }

    func testControlJSONAndTable() throws {
        let j = try run(["control", "--routes", "20000", "--changes", "50", "--json"])
        XCTAssertEqual(j.status, 0, j.out)
        let obj = try json(j.out)
        XCTAssertEqual(obj["routes"] as? Int, 24000, j.out) // 20000 IPv4 + 4000 IPv6
        XCTAssertEqual(obj["missed"] as? Int, 0, "every change must reach the reader: \(j.out)")
        XCTAssertEqual(obj["revisions"] as? Int, 51, "one revision per change: \(j.out)")
        for k in ["full_table_load_s", "forwarding_ms_p50", "forwarding_ms_p99", "response_ms_p50", "response_ms_p99"] {
            XCTAssertGreaterThan(obj[k] as? Double ?? 0, 0, "\(k): \(j.out)")
        }
        XCTAssertLessThanOrEqual(obj["forwarding_ms_p50"] as? Double ?? 1e9, obj["forwarding_ms_p99"] as? Double ?? 0)
        let t = try run(["control", "--routes", "5000", "--changes", "10"])
        XCTAssertEqual(t.status, 0, t.out)
        XCTAssertTrue(t.out.contains("request to forwarding, p99"), t.out)
    }

    func testLPMHugePagesTable() throws {
        // CI reserves huge pages (Tests/run.sh); the table form of the output, huge-page run.
        let t = try run(["lpm", "--memory", "huge", "--lookups", "200000", "--repeats", "1", "--lpm-subset", "5000"])
        XCTAssertEqual(t.status, 0, "needs reserved 2 MiB huge pages: run Tests/run.sh as root")
        XCTAssertTrue(t.out.contains("LPM lookups, huge pages"), t.out)
        XCTAssertTrue(t.out.contains("rte_fib6_lookup_bulk"), t.out)
    }
}
