import ArgumentParser
import Foundation
import KeelAPI
import KeelCompiler
import KeelDataPlane
import KeelDPDK
import KeelForward
import KeelPacket
import KeelStats
import KeelTables
import KeelTestData

/// Packets per second of one routing lcore of the real keel-dataplane for
/// VIP traffic, beside plain routing in the same run (same process setup,
/// same full table, same ports): net_pcap replays a capture from memory
/// (infinite_rx) into the data plane, net_null takes what comes out.
///
/// Sides (each a child process, alternating):
/// - route: TCP frames to random routed destinations (the forward bench's traffic);
/// - established: TCP frames of `--flows` distinct flows to one VIP (16
///   backends, IPIP); after the warm-up every flow is in the connection
///   table (sized `--conntrack` flows), so each packet is a table hit;
/// - new: the same frames with a connection table of one bucket (4 entries),
///   so every packet misses: Maglev lookup, insert, eviction — a SYN flood;
/// - interleaved: route's frames then established's in one capture, so one
///   data plane alternates between the two every few milliseconds and each
///   block is compared with the routed blocks next to it (`Interleaved`).
struct LBBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lb",
        abstract: "Packets per second per routing lcore for VIP traffic (new and established flows) vs plain routing, full IPv4 table."
    )

    @OptionGroup var o: PacketBenchOptions
    @Option(help: "Distinct flows (frames) in the replayed capture.") var flows = 65536
    @Option(help: "Flows the connection table is sized to hold (established side; 4 entries of 16 bytes each).") var conntrack = 1 << 20
    @Option(help: .hidden) var side: String?

    static let sides = ["route", "established", "new", "interleaved"]

    /// How many times the interleaved side's capture holds each block of
    /// `n` frames: at least 32,768 frames a block, so a block lasts a
    /// millisecond or more and is seen in samples 50-100 µs apart.
    static func interleavedCopies(_ n: Int) -> Int { max(1, 32768 / max(n, 1)) }

    func run() throws {
        if let side { return try child(side) }
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var results: [String: [[String: Any]]] = [:]
        for run in 0..<o.runs {
            // Each round runs the sides back to back, in reverse order every
            // other round (route, established, new, interleaved; then backwards): the
            // load of other tenants drifts, and each round's ratio compares runs
            // next to each other in time.
            for s in run % 2 == 0 ? LBBench.sides : LBBench.sides.reversed() {
                var args = ["lb", "--side", s, "--table", o.table, "--seconds", String(o.seconds), "--flows", String(flows),
                            "--conntrack", String(conntrack), "--lcore", String(o.lcore)]
                if let routes = o.routes { args += ["--routes", String(routes)] }
                if o.hugePages { args.append("--huge-pages") }
                let out = try ForwardBench().runChild(me, args)
                guard let line = out.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
                      let d = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                    throw BenchFailure("lb --side \(s) printed no result:\n\(out)")
                }
                results[s, default: []].append(d)
            }
        }
        func rates(_ s: String) -> [Double] { results[s]!.map { ($0["pps"] as? Double) ?? 0 } }
        let route = median(rates("route")), est = median(rates("established")), new = median(rates("new"))
        let tsc = (results["route"]?.first?["tsc_hz"] as? Double) ?? 2.1e9
        // The fastest run of each: other tenants only ever slow a run down (see forward).
        let routeBest = rates("route").max() ?? 0, estBest = rates("established").max() ?? 0, newBest = rates("new").max() ?? 0
        // Each run's fastest tenth of a second, medians of those: the rate with the least of other tenants' load in it.
        func peaks(_ s: String) -> [Double] { results[s]!.map { ($0["peak_pps"] as? Double) ?? 0 } }
        let routePeak = median(peaks("route")), estPeak = median(peaks("established")), newPeak = median(peaks("new"))
        // Per round, each side against the routing run next to it; the median of those.
        let estPaired = median(zip(rates("established"), rates("route")).map { $0 / $1 })
        let newPaired = median(zip(rates("new"), rates("route")).map { $0 / $1 })
        let drops = LBBench.sides.flatMap { s in results[s]!.compactMap { $0["drops"] as? [String: Any] }.filter { !$0.isEmpty }.map { "\(s): \($0)" } }
        let hits = results["established"]!.map { ($0["conn_hits"] as? Int) ?? 0 }, misses = results["established"]!.map { ($0["conn_misses"] as? Int) ?? 0 }
        let perFlow = ConnTable.bytes(flows: conntrack) / max(conntrack, 1) // per flow the table is sized for (4 entries each)
        let routesUsed = (results["route"]?.first?["routes"] as? Int) ?? 0
        // Interleaved: per run, each kind's rate over its blocks and the median block ratio; medians over the runs.
        func inter(_ k: String) -> [Double] { results["interleaved"]!.map { ($0[k] as? Double) ?? 0 } }
        let iRoute = median(inter("route_pps")), iEst = median(inter("established_pps")), iPaired = median(inter("paired"))
        let iPairs = results["interleaved"]!.map { ($0["pairs"] as? Int) ?? 0 }
        let iBlockMs = median(inter("block_ms"))
        if o.json {
            print(jsonString(["command": "lb", "huge_pages": o.hugePages, "routes": routesUsed, "flows": flows, "conntrack_flows": conntrack, "seconds": o.seconds, "runs": o.runs,
                              "route_pps": route, "established_pps": est, "new_pps": new,
                              "route_pps_runs": rates("route"), "established_pps_runs": rates("established"), "new_pps_runs": rates("new"),
                              "route_cycles_per_packet": tsc / route, "established_cycles_per_packet": tsc / est, "new_cycles_per_packet": tsc / new,
                              "established_to_route": est / route, "new_to_route": new / route,
                              "established_to_route_paired": estPaired, "new_to_route_paired": newPaired,
                              "route_peak_pps": routePeak, "established_peak_pps": estPeak, "new_peak_pps": newPeak,
                              "established_to_route_peak": estPeak / routePeak, "new_to_route_peak": newPeak / routePeak,
                              "route_pps_best": routeBest, "established_pps_best": estBest, "new_pps_best": newBest,
                              "established_to_route_best": estBest / routeBest, "new_to_route_best": newBest / routeBest,
                              "conntrack_bytes": ConnTable.bytes(flows: conntrack), "bytes_per_flow": perFlow,
                              "established_conn_hits": hits, "established_conn_misses": misses, "drops": drops,
                              "interleaved_route_pps": iRoute, "interleaved_established_pps": iEst,
                              "established_to_route_interleaved": iPaired, "established_to_route_interleaved_runs": inter("paired"),
                              "interleaved_route_pps_runs": inter("route_pps"), "interleaved_established_pps_runs": inter("established_pps"),
                              "interleaved_pairs": iPairs, "interleaved_block_ms": iBlockMs]))
        } else {
            print("lb: \(routesUsed) IPv4 routes, one VIP with 16 backends (IPIP), \(flows) flows of 60-byte TCP frames, connection table sized for \(conntrack) flows (\(ConnTable.bytes(flows: conntrack) >> 20) MiB, \(perFlow) bytes per flow), one lcore, \(o.hugePages ? "huge pages" : "4 KiB pages"), median of \(o.runs) runs each")
            var t = TextTable(header: ["traffic", "Mpps", "cycles/packet", "vs routing", "vs routing, paired", "best Mpps", "best vs routing", "runs (Mpps)"])
            t.add(["routing only (random destinations)", fmt(route / 1e6, 3), fmt(tsc / route, 1), "1.000", "1.000", fmt(routeBest / 1e6, 3), "1.000",
                   rates("route").map { fmt($0 / 1e6, 2) }.joined(separator: " ")])
            t.add(["VIP, established flows", fmt(est / 1e6, 3), fmt(tsc / est, 1), fmt(est / route, 3), fmt(estPaired, 3), fmt(estBest / 1e6, 3),
                   fmt(estBest / routeBest, 3), rates("established").map { fmt($0 / 1e6, 2) }.joined(separator: " ")])
            t.add(["VIP, new flows (every packet a miss)", fmt(new / 1e6, 3), fmt(tsc / new, 1), fmt(new / route, 3), fmt(newPaired, 3), fmt(newBest / 1e6, 3),
                   fmt(newBest / routeBest, 3), rates("new").map { fmt($0 / 1e6, 2) }.joined(separator: " ")])
            print(t.render())
            print("established / routing: \(fmt(est / route, 3)) (medians), \(fmt(estPaired, 3)) (median of the rounds' ratios), \(fmt(estBest / routeBest, 3)) (best runs), "
                  + "\(fmt(estPeak / routePeak, 3)) (fastest 0.1 s of each run, medians: \(fmt(routePeak / 1e6, 2)) and \(fmt(estPeak / 1e6, 2)) Mpps)")
            print("interleaved in one data plane (blocks of \(LBBench.interleavedCopies(flows) * flows) frames, \(fmt(iBlockMs, 2)) ms on average): routing \(fmt(iRoute / 1e6, 3)) Mpps, "
                  + "established \(fmt(iEst / 1e6, 3)) Mpps; established / routing: \(fmt(iPaired, 3)) (median of block ratios, medians over runs: "
                  + "\(inter("paired").map { fmt($0, 3) }.joined(separator: " ")); block pairs \(iPairs.map(String.init).joined(separator: " ")))")
            if !drops.isEmpty { print("drops: \(drops.joined(separator: "; "))") }
        }
    }

    func child(_ side: String) throws {
        let dir = "/dev/shm/keel-bench-lb-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var data = try FullTable.load(path: o.table)
        if let routes = o.routes { data.v4 = Array(data.v4.prefix(routes)) }
        data.v4.removeAll { $0.prefix.address >> 24 == 10 || $0.prefix.address >> 8 == 0xC00002 } // the bench's own 10/8 and VIP
        let gateways = 64
        let fibNH = DPDKFibHolder(data: data, gateways: gateways)
        var pcap = PcapCapture()
        // interleaved: route's frames, then established's (see Interleaved), each block repeated (`interleavedCopies`).
        for routed in side == "interleaved" ? [true, false] : [side == "route"] {
            var stream = AddressStream.uniformV4(count: flows * 8, seed: 42).makeIterator()
            var rng = SplitMix64(seed: 42) // the same flows as the established side
            var written = 0
            var block: [[UInt8]] = []
            while written < flows {
                let r = rng.next()
                var f: [UInt8]
                if routed {
                    guard let a = stream.next() else { break }
                    guard fibNH.routed(a) else { continue }
                    f = PacketBuilder.ipv4(src: "10.1.0.2", dst: "\(a >> 24).\(a >> 16 & 255).\(a >> 8 & 255).\(a & 255)", proto: 6,
                                           srcPort: UInt16(1024 + written % 60000), payload: [])
                } else {
                    f = PacketBuilder.ipv4(src: "10.1.\(r >> 8 & 0xFF).\(r & 0xFF)", dst: "192.0.2.10", proto: 6,
                                           srcPort: UInt16(1024 + (r >> 16) % 60000), dstPort: 80, payload: [])
                }
                f += [UInt8](repeating: 0, count: max(0, 60 - f.count))
                f.replaceSubrange(0..<6, with: [2, 0, 0, 0, 0, 1])
                pcap.add(f)
                block.append(f)
                written += 1
            }
            if side == "interleaved" { for _ in 1..<LBBench.interleavedCopies(block.count) { for f in block { pcap.add(f) } } }
        }
        let capture = "\(dir)/in.pcap"
        try pcap.write(to: capture)
        let eal = o.eal(prefix: "keellb")
        var config = Configuration(ports: [
            Port(name: "p0", mac: "02:00:00:00:00:01", addresses: ["10.1.0.1/16"]),
            Port(name: "p1", mac: "02:00:00:00:00:02", addresses: ["10.2.0.1/16"]),
        ])
        config.routes = data.v4.enumerated().map { i, r in Route(prefix: r.prefix.description, nextHops: [NextHop(gateway: "10.2.\(i % gateways).2")]) }
        config.neighbors = (0..<gateways).map { Neighbor(address: "10.2.\($0).2", mac: String(format: "02:00:00:00:01:%02x", $0), port: "p1") }
            + (1...16).map { Neighbor(address: "10.2.100.\($0)", mac: String(format: "02:00:00:00:02:%02x", $0), port: "p1") }
        config.vips = [VIP(id: 1, address: "192.0.2.10", protocol: "tcp", port: 80, tableSize: 65537,
                           backends: (1...16).map { Backend(id: $0, address: "10.2.100.\($0)") })]
        let limits = SnapshotLimits(ipv4Groups: 4096, ipv6Groups: 512, nextHopGroups: 256, ecmpWays: 8, ports: 8,
                                    neighbors: 256, vips: 4, backendsPerVIP: 16, maglevMaxSize: 65537)
        var mark: (@Sendable (StatsFile) -> UInt64)?
        if side == "interleaved" { mark = { $0.lbTotal($0.vipCounter(0, LBCounter.packets)) } }
        let r = try BenchDataPlane.measure(config, limits: limits, capture: capture, dir: dir, name: "lb", hugePages: o.hugePages,
                                           lcore: o.lcore, eal: eal, seconds: o.seconds, mbufs: max(32767, 2 * pcap.count + 8191),
                                           conntrack: side == "new" ? 1 : conntrack, // new: one bucket of 4 entries
                                           mark: mark)
        let stats = r.stats
        var out: [String: Any] = ["pps": r.pps, "peak_pps": r.peakPps, "tsc_hz": Double(EAL.tscHz), "routes": data.v4.count, "drops": r.drops,
                                  "conn_hits": Int(stats.lbTotal(stats.vipCounter(0, LBCounter.connHits))),
                                  "conn_misses": Int(stats.lbTotal(stats.vipCounter(0, LBCounter.connMisses)))]
        if side == "interleaved" {
            let blocks = Interleaved.blocks(r.samples)
            let sum = Interleaved.summary(blocks)
            out["route_pps"] = sum.route
            out["established_pps"] = sum.vip
            out["paired"] = sum.paired
            out["pairs"] = sum.pairs
            out["samples"] = r.samples.count
            let ns: UInt64 = blocks.reduce(0) { $0 &+ $1.ns }
            out["block_ms"] = blocks.isEmpty ? 0.0 : Double(ns) / Double(blocks.count) / 1e6
        }
        print(jsonString(out))
    }
}
