// libFuzzer target over the data plane's whole per-packet path: each input
// is one Ethernet frame, received on port p0 by the real lcore code
// (`PacketLcore.drive`: mbuf, parse, VIP lookup and connection table, LPM,
// ECMP, neighbor cache, rewrite, IPIP/GUE encapsulation, ICMP errors, ARP/ND
// answers, staging and tx_burst on net_null ports), then what it queued for
// the main lcore goes through the slow path (neighbor resolution, hold
// queue). The configuration is the packet fixtures' (FixtureConfigs.fuzz:
// routes of every kind, an unresolved gateway, a smaller MTU on p1, VIPs
// over IPIP and GUE, IPv4 and IPv6), so the fixtures' frames, which seed the
// corpus, reach every path. The frame is driven twice, so the second pass meets the
// connection-table entry the first made. After each input every mbuf must
// be back in the pool: a leak aborts, like a crash.
//
// Built with libFuzzer and the address sanitizer by Tests/fuzz.sh; in the
// normal build the replay main (CKeelFuzzMain) runs the corpus once.
import CKeelFuzzMain
import Foundation
import KeelAPI
import KeelCompiler
import KeelDataPlane
import KeelStats
import KeelTables
import KeelTestData

final class PacketHarness {
    let plane: DataPlane
    let lcore: PacketLcore
    let frame = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 64)
    let length = UnsafeMutablePointer<Int>.allocate(capacity: 1)
    let rx = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: 64)
    var baseline = 0
    let dir = "/dev/shm/keel-fuzz-packet-\(getpid())"


    init() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tables = "\(dir)/tables"
        let file = try TablesFile.create(path: tables, limits: .small, readers: 4)
        try SnapshotPublisher(file: file).publish(try Compiler(limits: .small).replace(with: FixtureConfigs.fuzz))
        var dp = DataPlaneConfig(tables: tables, ports: [.init(name: "p0", device: "net_null0,no-rx=1"),
                                                         .init(name: "p1", device: "net_null1,no-rx=1")])
        dp.stats = "\(dir)/stats"
        dp.lcores = .init(main: 0, io: [1], workers: [])
        dp.conntrack.flows = 4 // 16 entries, small: inputs evict each other
        dp.icmp.rate = 100_000_000 // the rate limit would hide ICMP generation from the fuzzer
        dp.icmp.burst = 100_000
        dp.mempool.mbufs = 2047
        plane = try DataPlane(config: dp, eal: ["--no-pci", "--no-huge", "-m", "128", "--no-shconf", "--lcores", "0@0,1@0",
                                                "--log-level", "lib.eal:error", "--log-level", "pmd.*:error", "--no-telemetry",
                                                "--file-prefix", "kfz\(getpid())"],
                              log: { _ in })
        lcore = plane.lcoreForDriving()
        baseline = plane.freeMbufs
    }

    func run(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        let n = min(size, 1600) // a full frame plus VLAN and more; the rest of a long input is ignored
        if n > 0, let data { frame.copyMemory(from: data, byteCount: n) }
        length.pointee = n
        lcore.drive(bursts: 1, frames: frame, stride: 2048, lengths: length, count: 1) { _ in }
        // Again with the IPv4 header checksum made right: a mutated header
        // would otherwise almost always stop at the checksum check.
        if fixIPv4Checksum(n) { lcore.drive(bursts: 1, frames: frame, stride: 2048, lengths: length, count: 1) { _ in } }
        while plane.slowTurn(rx, now: DispatchTime.now().uptimeNanoseconds, timers: true) > 0 {}
        lcore.drainQueued() // ARP and ND solicitations the slow path sent
        plane.releaseHeld()
        if plane.freeMbufs != baseline {
            fputs("keel-fuzz-packet: \(baseline - plane.freeMbufs) mbufs not returned to the pool after this input\n", stderr)
            abort()
        }
    }
}

extension PacketHarness {
    /// Rewrites the frame's IPv4 header checksum (after an 802.1Q tag too);
    /// false when the frame has no complete IPv4 header or it was right.
    func fixIPv4Checksum(_ n: Int) -> Bool {
        guard n >= 34 else { return false }
        let p = frame.assumingMemoryBound(to: UInt8.self)
        var l3 = 14
        if p[12] == 0x81 && p[13] == 0x00 { l3 = 18 }
        guard n >= l3 + 20, p[l3 - 2] == 0x08, p[l3 - 1] == 0x00 else { return false }
        let ihl = Int(p[l3] & 0x0F) * 4
        guard ihl >= 20, l3 + ihl <= n else { return false }
        let old = (p[l3 + 10], p[l3 + 11])
        p[l3 + 10] = 0; p[l3 + 11] = 0
        var sum: UInt32 = 0
        for i in stride(from: 0, to: ihl, by: 2) { sum += UInt32(p[l3 + i]) << 8 | UInt32(p[l3 + i + 1]) }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        let c = ~UInt16(sum)
        p[l3 + 10] = UInt8(c >> 8); p[l3 + 11] = UInt8(c & 0xFF)
        return (p[l3 + 10], p[l3 + 11]) != old
    }
}

nonisolated(unsafe) var harness: PacketHarness?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    do { harness = try PacketHarness() } catch {
        fputs("keel-fuzz-packet: \(error)\n", stderr)
        exit(2)
    }
    atexit {
        guard let h = harness else { return }
        if getenv("KEEL_FUZZ_STATS") != nil { print(StatsReport.text(h.plane.stats)) } // what the inputs did
        try? FileManager.default.removeItem(atPath: h.dir)
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    harness!.run(data, size)
    return 0
}
