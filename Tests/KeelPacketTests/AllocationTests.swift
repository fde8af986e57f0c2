import Foundation
import XCTest

/// The per-packet path (snapshot check, parse, flow hash, route, rewrite)
/// allocates nothing and retains/releases nothing, over 20,000 bursts of 32.
/// keel-alloccheck interposes malloc and swift_retain/swift_release to count.
final class AllocationTests: XCTestCase {
    func run(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("keel-alloccheck")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        return String(decoding: data, as: UTF8.self)
    }

    func numbers(_ s: String) -> (forwarded: Int, allocations: Int, refcounts: Int) {
        let w = s.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" })
        func before(_ word: String) -> Int { Int(w[w.firstIndex(of: Substring(word))! - 1]) ?? -1 }
        return (before("forwarded"), before("allocations"), before("retains/releases"))
    }

    func testHotPathAllocatesAndRetainsNothing() throws {
        let out = try run([])
        let n = numbers(out)
        XCTAssertGreaterThan(n.forwarded, 100_000, out)
        XCTAssertEqual(n.allocations, 0, out)
        XCTAssertEqual(n.refcounts, 0, out)
    }

    /// The data plane's own lcore code over real mbufs and ports: 20,000 bursts
    /// (echo replies, ICMP errors and drops among them, and half of each burst
    /// load-balanced: encapsulation, connection-table inserts and evictions)
    /// after as many to warm up.
    func testDataPlaneLcoreAllocatesAndRetainsNothing() throws {
        let out = try run(["--dataplane"])
        let n = numbers(out)
        let w = out.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" })
        let balanced = Int(w[w.firstIndex(of: "load-balanced")! - 1]) ?? 0, evictions = Int(w[w.firstIndex(of: "evictions")! - 1]) ?? 0
        XCTAssertGreaterThan(balanced, 20_000 * 16 - 1000, out)
        XCTAssertGreaterThan(evictions, 20_000, out)
        XCTAssertGreaterThan(n.forwarded, 100_000, out)
        XCTAssertEqual(n.allocations, 0, out)
        XCTAssertEqual(n.refcounts, 0, out)
    }

    /// The same with a connection table that holds every flow: the VIP
    /// packets are hits, most of them on the tunnel short path (`ShortPath.tunnel`).
    func testDataPlaneLcoreEstablishedFlowsAllocateAndRetainNothing() throws {
        let out = try run(["--dataplane-established"])
        let n = numbers(out)
        let w = out.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" })
        func before(_ word: String) -> Int { Int(w[w.firstIndex(of: Substring(word))! - 1]) ?? -1 }
        XCTAssertEqual(before("evictions"), 0, out)
        XCTAssertGreaterThan(before("hits"), 20_000 * 16 - 1000, out)
        // Per burst of 32: six plain routed packets and eleven IPv4 VIP hits (IPIP and GUE) take a short path
        // (with the one-bucket table of the test above, 11).
        XCTAssertGreaterThan(before("short-path"), 20_000 * 17 - 1000, out)
        XCTAssertEqual(n.allocations, 0, out)
        XCTAssertEqual(n.refcounts, 0, out)
    }

    func testCountersSeeACarelessLoop() throws {
        let n = numbers(try run(["--control"]))
        XCTAssertGreaterThan(n.allocations, 0)
        XCTAssertGreaterThan(n.refcounts, 0)
    }
}
