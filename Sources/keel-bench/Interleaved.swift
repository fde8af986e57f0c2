import Foundation

/// The `lb` bench's interleaved side: one data plane replays a capture of
/// two blocks, all routed frames then all frames of established VIP flows,
/// over and over, so the lcore alternates between the two kinds every few
/// milliseconds. Sampled every ~50 µs (packets sent, VIP packets), each
/// interval is one kind or a boundary; the rates of consecutive blocks are
/// compared. Separate runs are seconds apart, and on a shared machine the
/// other tenants' load changes the rate by up to half in that time (routing
/// 15–27 Mpps within one invocation, 2026-12-06); blocks milliseconds apart
/// see the same load.
public enum Interleaved {
    public struct Sample: Equatable {
        public var t: UInt64 // ns
        public var tx: UInt64 // packets sent
        public var mark: UInt64 // VIP packets
        public init(t: UInt64, tx: UInt64, mark: UInt64) { self.t = t; self.tx = tx; self.mark = mark }
    }

    /// Consecutive intervals of one kind.
    public struct Block: Equatable {
        public var vip: Bool
        public var packets: UInt64
        public var ns: UInt64
        public init(vip: Bool, packets: UInt64, ns: UInt64) { self.vip = vip; self.packets = packets; self.ns = ns }
        public var pps: Double { Double(packets) / (Double(ns) / 1e9) }
    }

    /// After half a second of warm-up, a sample every ~`interval` for `seconds`
    /// (the sampler sleeps between samples: it shares the machine with the lcore).
    static func sample(_ seconds: Double, interval: Double = 50e-6, tx: () -> UInt64, mark: () -> UInt64) -> [Sample] {
        usleep(500_000)
        var out: [Sample] = []
        out.reserveCapacity(Int(seconds / interval) + 16)
        let end = now() &+ UInt64(seconds * 1e9)
        while true {
            let t = now()
            out.append(Sample(t: t, tx: tx(), mark: mark()))
            if t >= end { return out }
            usleep(UInt32(interval * 1e6))
        }
    }

    /// The blocks of `samples`: an interval whose sent packets were all VIP
    /// packets is VIP, one with none routed, within `slack` (a VIP packet is
    /// counted when staged, sent at the end of its burst); any other
    /// interval (a boundary, or nothing sent) ends a block and is left out.
    public static func blocks(_ samples: [Sample], slack: UInt64 = 64) -> [Block] {
        var out: [Block] = []
        var open = false
        for (a, b) in zip(samples, samples.dropFirst()) {
            let dtx = b.tx &- a.tx, dm = b.mark &- a.mark, dt = b.t &- a.t
            let vip: Bool
            if dtx > 2 &* slack, dm &+ slack >= dtx, dm <= dtx &+ slack { vip = true }
            else if dtx > 2 &* slack, dm <= slack { vip = false }
            else { open = false; continue }
            if open, out[out.count - 1].vip == vip {
                out[out.count - 1].packets &+= dtx
                out[out.count - 1].ns &+= dt
            } else {
                out.append(Block(vip: vip, packets: dtx, ns: dt))
                open = true
            }
        }
        return out
    }

    /// Summary of `blocks`: each kind's rate over all its blocks, and the
    /// median over VIP blocks of the VIP block's rate divided by the mean
    /// rate of the routed blocks on either side of it (the nearest before
    /// and after; one of them at the ends). `pairs` 0: no VIP block had a
    /// routed neighbour.
    public static func summary(_ blocks: [Block]) -> (route: Double, vip: Double, paired: Double, pairs: Int) {
        func rate(_ vip: Bool) -> Double {
            let b = blocks.filter { $0.vip == vip }
            let ns = b.reduce(0) { $0 &+ $1.ns }
            return ns == 0 ? 0 : Double(b.reduce(0) { $0 &+ $1.packets }) / (Double(ns) / 1e9)
        }
        var ratios: [Double] = []
        for (i, b) in blocks.enumerated() where b.vip {
            let before = blocks[..<i].last { !$0.vip }, after = blocks[(i + 1)...].first { !$0.vip }
            let near = [before, after].compactMap { $0?.pps }
            if !near.isEmpty { ratios.append(b.pps / (near.reduce(0, +) / Double(near.count))) }
        }
        return (rate(false), rate(true), ratios.isEmpty ? 0 : median(ratios), ratios.count)
    }
}
