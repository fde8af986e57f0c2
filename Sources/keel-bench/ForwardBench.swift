import ArgumentParser
import CKeelBenchRef
import Foundation
import KeelAPI
import KeelCompiler
import KeelDataPlane
import KeelDPDK
import KeelPacket
import KeelStats
import KeelTables
import KeelTestData

/// Packets per second of one routing lcore: the real keel-dataplane loop
/// (run to completion: rx → parse → LPM → rewrite → tx) against an
/// l3fwd-shaped C loop over rte_fib on the same kind of ports and the same
/// lcore, each side in its own child process, alternating. Input: a capture of
/// 60-byte UDP frames to random routed destinations, replayed from memory by
/// net_pcap (infinite_rx); output: net_null with no-rx=1 (it frees what it is
/// given and, unlike its default, generates nothing for the loop to poll).
struct ForwardBench: ParsableCommand {
    /// The rate of `count` over `seconds`, after half a second of warm-up.
    static func sample(_ seconds: Double, _ count: () -> UInt64) -> Double { sampleWindows(seconds, count).rate }

    /// `sample`, read every `window` seconds too: the rate over the whole
    /// time and the fastest window's. Other tenants of the machine only ever
    /// slow the lcore down, and their load changes from one tenth of a second
    /// to the next: the fastest window is the closest to the code's own rate.
    static func sampleWindows(_ seconds: Double, window: Double = 0.1, _ count: () -> UInt64) -> (rate: Double, peak: Double) {
        usleep(500_000)
        let c0 = count(), t0 = now()
        var c = c0, t = t0, peak = 0.0
        let windows = max(1, Int((seconds / window).rounded()))
        for _ in 0..<windows {
            usleep(UInt32(seconds / Double(windows) * 1e6))
            let c1 = count(), t1 = now()
            peak = max(peak, Double(c1 - c) / (Double(t1 - t) / 1e9))
            c = c1; t = t1
        }
        return (Double(c - c0) / (Double(t - t0) / 1e9), peak)
    }

    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Packets per second per routing lcore: keel-dataplane vs an l3fwd-style C loop over rte_fib, full IPv4 table."
    )

    @OptionGroup var o: PacketBenchOptions
    @Option(help: "Frames in the replayed capture.") var frames = 8192

    @Option(help: .hidden) var side: String? // a child run: "keel" or "reference"

    /// The parent: alternates child processes, one side each, so neither
    /// inherits the other's cache, TLB or allocator state; reports medians.
    func run() throws {
        if let side { return try child(side) }
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var keel: [[String: Any]] = [], ref: [[String: Any]] = []
        for _ in 0..<o.runs {
            for s in ["keel", "reference"] {
                var args = ["forward", "--side", s, "--table", o.table, "--seconds", String(o.seconds), "--frames", String(frames), "--lcore", String(o.lcore)]
                if let routes = o.routes { args += ["--routes", String(routes)] }
                if o.hugePages { args.append("--huge-pages") }
                let out = try runChild(me, args)
                guard let line = out.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
                      let d = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                    throw BenchFailure("forward --side \(s) printed no result:\n\(out)")
                }
                if s == "keel" { keel.append(d) } else { ref.append(d) }
            }
        }
        let keelRuns = keel.map { ($0["pps"] as? Double) ?? 0 }, refRuns = ref.map { ($0["pps"] as? Double) ?? 0 }
        let keelRate = median(keelRuns), refRate = median(refRuns)
        let tsc = (keel.first?["tsc_hz"] as? Double) ?? 2.1e9
        let ratio = keelRate / refRate
        // Other tenants of a shared machine only ever slow a run down, so the
        // fastest run of each side is the better estimate of its own speed.
        let keelBest = keelRuns.max() ?? 0, refBest = refRuns.max() ?? 0
        let routesUsed = (keel.first?["routes"] as? Int) ?? 0, written = (keel.first?["frames"] as? Int) ?? 0
        let drops = keel.first?["drops"] as? [String: Any] ?? [:]
        let rx = keel.map { ($0["rx_packets"] as? Int) ?? 0 }, tx = keel.map { ($0["tx_packets"] as? Int) ?? 0 }
        if o.json {
            print(jsonString(["routes": routesUsed, "frames": written, "seconds": o.seconds, "huge_pages": o.hugePages, "runs": o.runs,
                              "keel_pps": keelRate, "reference_pps": refRate, "keel_pps_runs": keelRuns, "reference_pps_runs": refRuns,
                              "keel_cycles_per_packet": tsc / keelRate, "reference_cycles_per_packet": tsc / refRate, "ratio": ratio,
                              "keel_pps_best": keelBest, "reference_pps_best": refBest, "ratio_best": keelBest / refBest,
                              "keel_rx_packets": rx, "keel_tx_packets": tx, "keel_drops": drops]))
        } else {
            print("forward: \(routesUsed) IPv4 routes, \(written) frames of 60 bytes to random routed destinations, one lcore, \(o.hugePages ? "huge pages" : "4 KiB pages"), median of \(o.runs) runs each")
            var t = TextTable(header: ["", "Mpps", "cycles/packet", "best Mpps", "runs (Mpps)"])
            t.add(["keel-dataplane", fmt(keelRate / 1e6, 3), fmt(tsc / keelRate, 1), fmt(keelBest / 1e6, 3), keelRuns.map { fmt($0 / 1e6, 2) }.joined(separator: " ")])
            t.add(["C reference (l3fwd-style, rte_fib)", fmt(refRate / 1e6, 3), fmt(tsc / refRate, 1), fmt(refBest / 1e6, 3), refRuns.map { fmt($0 / 1e6, 2) }.joined(separator: " ")])
            print(t.render())
            print("ratio keel / reference: \(fmt(ratio, 3)) (medians), \(fmt(keelBest / refBest, 3)) (best runs)")
            print("keel-dataplane: \(rx) received, \(tx) sent\(drops.isEmpty ? "" : ", dropped: \(drops)")")
        }
    }

    /// Runs a child to completion with posix_spawn and a blocking waitpid:
    /// Foundation's Process waits on a run loop that took CPU time from the
    /// child's lcores here.
    func runChild(_ exe: URL, _ args: [String]) throws -> String {
        let out = NSTemporaryDirectory() + "keel-fwd-\(UUID().uuidString)"
        defer { unlink(out) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([exe.path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, exe.path, &actions, nil, argv, environ)
        guard rc == 0 else { throw BenchFailure("posix_spawn: \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        guard status == 0 else { throw BenchFailure("forward --side failed (status \(status)):\n\(text)") }
        return text
    }

    /// One side in this process: builds the same capture (fixed seed), then measures.
    func child(_ side: String) throws {
        let dir = "/dev/shm/keel-bench-fwd-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var data = try FullTable.load(path: o.table)
        if let routes = o.routes { data.v4 = Array(data.v4.prefix(routes)) }
        data.v4.removeAll { $0.prefix.address >> 24 == 10 } // keep clear of the bench's own 10/8 subnets
        let gateways = 64
        let fibNH = DPDKFibHolder(data: data, gateways: gateways)
        var stream = AddressStream.uniformV4(count: frames * 8, seed: 42).makeIterator()
        var pcap = PcapCapture()
        var written = 0
        while written < frames, let a = stream.next() {
            guard fibNH.routed(a) else { continue }
            var f = PacketBuilder.ipv4(src: "10.1.0.2", dst: "\(a >> 24).\(a >> 16 & 255).\(a >> 8 & 255).\(a & 255)",
                                       srcPort: UInt16(1024 + written % 60000), payload: Array(repeating: 0x61, count: 18))
            f.replaceSubrange(0..<6, with: [2, 0, 0, 0, 0, 1])
            pcap.add(f)
            written += 1
        }
        let capture = "\(dir)/in.pcap"
        try pcap.write(to: capture)
        let eal = o.eal(prefix: "keelfwd")
        var result: [String: Any] = ["routes": data.v4.count, "frames": written, "tsc_hz": 0.0]

        if side == "keel" {
            var config = Configuration(ports: [
                Port(name: "p0", mac: "02:00:00:00:00:01", addresses: ["10.1.0.1/24"]),
                Port(name: "p1", mac: "02:00:00:00:00:02", addresses: ["10.2.0.1/16"]),
            ])
            config.routes = data.v4.enumerated().map { i, r in Route(prefix: r.prefix.description, nextHops: [NextHop(gateway: "10.2.\(i % gateways).2")]) }
            config.neighbors = (0..<gateways).map { Neighbor(address: "10.2.\($0).2", mac: String(format: "02:00:00:00:01:%02x", $0), port: "p1") }
            let limits = SnapshotLimits(ipv4Groups: 4096, ipv6Groups: 512, nextHopGroups: 256, ecmpWays: 8, ports: 8,
                                        neighbors: 256, vips: 4, backendsPerVIP: 8, maglevMaxSize: 4099)
            let r = try BenchDataPlane.measure(config, limits: limits, capture: capture, dir: dir, name: "fwd", hugePages: o.hugePages,
                                               lcore: o.lcore, eal: eal, seconds: o.seconds, mbufs: 32767)
            let stats = r.stats
            result["tsc_hz"] = Double(EAL.tscHz)
            result["pps"] = r.pps
            result["rx_packets"] = stats.total(Counter.rxPackets(0))
            result["tx_packets"] = stats.total(Counter.txPackets(1))
            result["drops"] = r.drops
            result["loop_turns"] = stats.block(1)[Counter.turns] // includes the idle turns before and after the traffic
        } else {
            try EAL.initialize(["keel-bench"] + eal + ["--vdev=net_pcap1,rx_pcap=\(capture),infinite_rx=1", "--vdev=net_null1,no-rx=1"])
            result["tsc_hz"] = Double(EAL.tscHz)
            try fibNH.buildFib()
            let refPool = try Mempool(name: "ref-pool", count: 32767)
            guard let refIn = EthPort.find(name: "net_pcap1"), let refOut = EthPort.find(name: "net_null1") else {
                throw BenchFailure("reference ports missing")
            }
            let rin = try EthPort(id: refIn, pool: refPool, queues: 1, rxDescriptors: 1024, txDescriptors: 1024, promiscuous: true)
            let rout = try EthPort(id: refOut, pool: refPool, queues: 1, rxDescriptors: 1024, txDescriptors: 1024, promiscuous: true)
            let ctx = UnsafeMutablePointer<keel_ref_ctx>.allocate(capacity: 1)
            defer { ctx.deallocate() }
            ctx.initialize(to: keel_ref_ctx())
            ctx.pointee.rx_port = rin.id
            ctx.pointee.tx_port = rout.id
            ctx.pointee.fib = UnsafeMutableRawPointer(fibNH.fib!.fib)
            ctx.pointee.next_hops = UInt32(gateways)
            ctx.pointee.src_mac = (2, 0, 0, 0, 0, 2)
            ctx.pointee.macs = UnsafePointer(fibNH.macs)
            try EAL.launch(lcore: o.lcore, keel_ref_l3fwd, UnsafeMutableRawPointer(ctx))
            result["pps"] = ForwardBench.sample(o.seconds) { ctx.pointee.packets }
            ctx.pointee.stop = 1
            EAL.waitAll()
            rin.close(); rout.close()
        }
        print(jsonString(result))
    }
}

/// The reference's rte_fib (built after the EAL starts) and its next-hop MACs.
final class DPDKFibHolder {
    let data: FullTable
    let gateways: Int
    var fib: DPDKFib4?
    let macs: UnsafeMutablePointer<UInt8>
    let sorted: [(UInt32, UInt32, UInt8)]

    init(data: FullTable, gateways: Int) {
        self.data = data
        self.gateways = gateways
        macs = .allocate(capacity: 6 * gateways)
        for g in 0..<gateways { for (k, b) in [2, 0, 0, 0, 1, UInt8(g)].enumerated() { macs[6 * g + k] = b } }
        sorted = data.v4.map { ($0.prefix.address, $0.prefix.address | (($0.prefix.length == 0 ? ~0 : ~(~0 << (32 - UInt32($0.prefix.length))))), $0.prefix.length) }
    }

    /// Whether some prefix covers `a` (before DPDK is up: a scan of a coarse bitmap of /16s, then the prefixes).
    lazy var covered: Set<UInt32> = {
        var s = Set<UInt32>()
        for (lo, hi, _) in sorted { var x = lo >> 16; while x <= hi >> 16 { s.insert(x); x += 1 } }
        return s
    }()
    lazy var byBlock: [UInt32: [(UInt32, UInt32)]] = {
        var d: [UInt32: [(UInt32, UInt32)]] = [:]
        for (lo, hi, len) in sorted where len >= 16 { d[lo >> 16, default: []].append((lo, hi)) }
        return d
    }()
    lazy var wide: Set<UInt32> = {
        var s = Set<UInt32>()
        for (lo, hi, len) in sorted where len < 16 { var x = lo >> 16; while x <= hi >> 16 { s.insert(x); x += 1 } }
        return s
    }()

    func routed(_ a: UInt32) -> Bool {
        let b = a >> 16
        guard covered.contains(b) else { return false }
        if wide.contains(b) { return true }
        return byBlock[b]?.contains { $0.0 <= a && a <= $0.1 } ?? false
    }

    func buildFib() throws {
        var groups = 0
        for r in data.v4 where r.prefix.length > 24 { groups += 1 }
        let f = try DPDKFib4(name: "fwd-ref", maxRoutes: data.v4.count, tbl8Groups: max(groups, 1024) + 1024)
        for (i, r) in data.v4.enumerated() { try f.add(r.prefix.address, r.prefix.length, nextHop: UInt32(i % gateways)) }
        fib = f
    }
}
