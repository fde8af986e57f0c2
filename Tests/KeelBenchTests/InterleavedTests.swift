import XCTest
import keel_bench

/// The interleaved side's arithmetic on made-up samples: which intervals
/// form blocks, which are left out, and the ratios.
final class InterleavedTests: XCTestCase {
    typealias S = Interleaved.Sample

    /// Samples 100 µs apart: `kinds` per interval, "R" 2,000 routed packets,
    /// "E" `vip` VIP packets (counted as staged: `lag` of them sent in the
    /// next interval), "M" half and half, "-" nothing sent.
    func samples(_ kinds: String, vip: UInt64 = 1600, lag: UInt64 = 0) -> [S] {
        var out = [S(t: 0, tx: 0, mark: 0)]
        var t: UInt64 = 0, tx: UInt64 = 0, mark: UInt64 = 0, owed: UInt64 = 0
        for k in kinds {
            t += 100_000
            switch k {
            case "R": tx += 2000 + owed; owed = 0
            case "E": mark += vip; tx += vip - lag + owed; owed = lag
            case "M": mark += 900; tx += 1800 + owed; owed = 0
            default: tx += owed; owed = 0
            }
            out.append(S(t: t, tx: tx, mark: mark))
        }
        return out
    }

    func testBlocksSplitAtBoundaries() {
        let b = Interleaved.blocks(samples("RRRMEEEEMRR-RR"))
        XCTAssertEqual(b, [
            .init(vip: false, packets: 6000, ns: 300_000),
            .init(vip: true, packets: 6400, ns: 400_000),
            .init(vip: false, packets: 4000, ns: 200_000),
            .init(vip: false, packets: 4000, ns: 200_000), // "-" ends a block even between two of a kind
        ])
        XCTAssertEqual(b[0].pps, 20e6, accuracy: 1)
        XCTAssertEqual(b[1].pps, 16e6, accuracy: 1)
    }

    func testStagedLagWithinSlackStaysVIP() {
        // 32 VIP packets counted when staged but sent in the next interval: still VIP intervals.
        let b = Interleaved.blocks(samples("RREEER", lag: 32))
        XCTAssertEqual(b.map(\.vip), [false, true, false])
        XCTAssertEqual(b[1].ns, 300_000)
        // 200 staged at the block's start is more than the slack: that first interval is a
        // boundary; after it as many are in flight at each sample, and the rest is VIP.
        let late = Interleaved.blocks(samples("RREEER", lag: 200))
        XCTAssertEqual(late.map(\.vip), [false, true, false])
        XCTAssertEqual(late[1].ns, 200_000)
        XCTAssertEqual(late[1].packets, 3200)
    }

    func testSummaryPairsEachVIPBlockWithItsNeighbours() {
        // Routing at 20 Mpps, VIP at 16: 0.8 for every VIP block.
        let s = Interleaved.summary(Interleaved.blocks(samples("RRMEEMRRMEEEMRR")))
        XCTAssertEqual(s.route, 20e6, accuracy: 1)
        XCTAssertEqual(s.vip, 16e6, accuracy: 1)
        XCTAssertEqual(s.paired, 0.8, accuracy: 1e-9)
        XCTAssertEqual(s.pairs, 2)
        // Neighbours at 10 and 30 Mpps around a 16 Mpps block: divided by their mean, 20.
        let blocks: [Interleaved.Block] = [.init(vip: false, packets: 1000, ns: 100_000), .init(vip: true, packets: 1600, ns: 100_000),
                                           .init(vip: false, packets: 3000, ns: 100_000)]
        XCTAssertEqual(Interleaved.summary(blocks).paired, 0.8, accuracy: 1e-9)
        // No routed block: no pair, ratio 0 (the caller reports it, not a made-up figure).
        XCTAssertEqual(Interleaved.summary([.init(vip: true, packets: 1600, ns: 100_000)]).pairs, 0)
        XCTAssertEqual(Interleaved.summary([.init(vip: true, packets: 1600, ns: 100_000)]).paired, 0)
    }
}
