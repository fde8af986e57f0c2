// Runs the per-packet path over many bursts and reports how many times it
// called the allocator (it must be 0). Not shipped; AllocationTests runs it.
//
//   keel-alloccheck [--control]   (--control allocates in the loop: must report > 0)
//   keel-alloccheck --dataplane   the data plane's own lcore code (KeelDataPlane:
//                                 mbufs, routing, staging, tx_burst on net_null ports)
import CMallocCounter
import KeelDataPlane
import KeelStats
import Foundation
import KeelAPI
import KeelCompiler
import KeelForward
import KeelPacket
import KeelTables
import KeelTestData

let control = CommandLine.arguments.contains("--control")
let limits = SnapshotLimits.small
let compiler = Compiler(limits: limits)
let config = Configuration(
    ports: [Port(name: "p0", mac: "02:00:00:00:01:00", addresses: ["10.1.0.1/24", "2001:db8:1::1/64"]),
            Port(name: "p1", mac: "02:00:00:00:02:00", addresses: ["10.2.0.1/24", "2001:db8:2::1/64"])],
    routes: [Route(prefix: "0.0.0.0/0", nextHops: [NextHop(gateway: "10.2.0.254")]),
             Route(prefix: "198.51.100.0/24", nextHops: [NextHop(gateway: "10.2.0.2"), NextHop(gateway: "10.2.0.3")]),
             Route(prefix: "2001:db8:ff::/48", nextHops: [NextHop(gateway: "2001:db8:2::2")])])
let path = "/dev/shm/keel-alloccheck-\(getpid())"
unlink(path)
defer { unlink(path) }
let file = try TablesFile.create(path: path, limits: limits, readers: 2)
let publisher = SnapshotPublisher(file: file)
try publisher.publish(try compiler.replace(with: config))
let acceptor = SnapshotAcceptor(file: file)
_ = acceptor.poll()
var reader = LcoreReader(file: file, line: 0, source: acceptor.accepted)
reader.online()
var neighbors = NeighborTable(capacity: 64)
for (a, m) in [("10.2.0.254", 0xfe), ("10.2.0.2", 2), ("10.2.0.3", 3), ("2001:db8:2::2", 0x22)] {
    neighbors.set(port: 1, address: IPAddress(a)!, mac: [0x0e, 0, 0, 0, 0, UInt8(m)])
}

// A burst of 32 frames of several kinds, copied into one buffer (as mbufs would hold them).
let kinds: [[UInt8]] = [
    PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", proto: 6),
    PacketBuilder.ipv4(src: "10.1.0.2", dst: "198.51.100.9", proto: 17),
    PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", proto: 6),
    PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.1.0.1", proto: 1),
    PacketBuilder.ipv4(src: "127.0.0.1", dst: "10.2.0.9"),
    PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", ttl: 1),
]
let stride = 2048, burst = 32
let pristine = UnsafeMutableRawPointer.allocate(byteCount: stride * burst, alignment: 64)
let frames = UnsafeMutableRawPointer.allocate(byteCount: stride * burst, alignment: 64)
let lengths = UnsafeMutablePointer<Int>.allocate(capacity: burst)
for i in 0..<burst {
    let k = kinds[i % kinds.count]
    k.withUnsafeBytes { (pristine + i * stride).copyMemory(from: $0.baseAddress!, byteCount: k.count) }
    lengths[i] = k.count
}
let infos = UnsafeMutablePointer<PacketInfo>.allocate(capacity: burst)
infos.initialize(repeating: PacketInfo(), count: burst)
let nextHop = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
var forwarded = 0, verdicts = 0
let forwarder = Forwarder()
let bursts = 20_000

final class Box { let v: Int; init(_ v: Int) { self.v = v } }
@inline(never) func use(_ b: Box) -> Int { let c = b; return c.v }

@inline(never)
func runBursts() {
    for n in 0..<bursts {
        _ = reader.refresh()
        frames.copyMemory(from: pristine, byteCount: stride * burst)
        let s = reader.snapshot
        for i in 0..<burst {
            let p = frames + i * stride
            if Parser.parse(p, length: lengths[i], into: &infos[i]) != .none { continue }
            let h = FlowHash.of(p, infos[i])
            let v = forwarder.route(p, length: lengths[i], infos[i], hash: h, snapshot: s, neighbors: neighbors, nextHop: nextHop)
            if case .forward = v { forwarded += 1 }
            verdicts += 1
        }
        if control && n % 100 == 0 {
            // The negative control: a per-burst Array, as a careless loop would make,
            // and a class instance passed around (retain/release).
            let scratch = [Int](repeating: n, count: burst)
            forwarded += scratch[0] & 0
            let box = Box(n)
            forwarded += use(box) & 0
        }
    }
}

if CommandLine.arguments.contains("--dataplane") || CommandLine.arguments.contains("--dataplane-established") {
    try driveDataPlane(established: CommandLine.arguments.contains("--dataplane-established"))
    unlink(path) // exit() skips the top-level defer
    exit(0)
}
runBursts() // warm up (lazy runtime metadata)
keel_malloc_counting(1)
let before = keel_malloc_count(), rcBefore = keel_refcount_count()
runBursts()
let allocations = keel_malloc_count() - before
let refcounts = keel_refcount_count() - rcBefore
keel_malloc_counting(0)
reader.offline()
print("\(bursts) bursts of \(burst): \(verdicts / 2) verdicts, \(forwarded / 2) forwarded, \(allocations) allocations, \(refcounts) retains/releases")


/// The real lcore code of keel-dataplane (`PacketLcore.drive`): mbufs from the
/// mempool, two-pass bursts, the MAC cache, staging and tx_burst on two net_null
/// ports; counted on this thread, with no other lcore running. `established`:
/// a connection table that holds every flow, so VIP packets are hits (the
/// tunnel short path) rather than inserts and evictions.
func driveDataPlane(established: Bool) throws {
    let dir = "/dev/shm/keel-alloccheck-dp-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let tables = "\(dir)/tables"
    let file = try TablesFile.create(path: tables, limits: .small, readers: 4)
    var routing = config
    routing.neighbors = [Neighbor(address: "10.2.0.254", mac: "0e:00:00:00:00:fe", port: "p1"),
                         Neighbor(address: "10.2.0.2", mac: "0e:00:00:00:00:02", port: "p1"),
                         Neighbor(address: "10.2.0.3", mac: "0e:00:00:00:00:03", port: "p1"),
                         Neighbor(address: "2001:db8:2::2", mac: "0e:00:00:00:00:22", port: "p1"),
                         Neighbor(address: "10.2.0.11", mac: "0e:00:00:00:00:11", port: "p1"),
                         Neighbor(address: "10.2.0.12", mac: "0e:00:00:00:00:12", port: "p1"),
                         Neighbor(address: "2001:db8:2::11", mac: "0e:00:00:00:00:31", port: "p1")]
    // Load balancing: IPIP and GUE, IPv4 and IPv6 (GUE over IPv6 computes the UDP checksum).
    routing.vips = [
        VIP(id: 1, address: "192.0.2.10", protocol: "tcp", port: 80, tableSize: 4099,
            backends: [Backend(id: 1, address: "10.2.0.11"), Backend(id: 2, address: "10.2.0.12")]),
        VIP(id: 2, address: "192.0.2.10", protocol: "udp", encap: Encap(type: "gue", port: 6080), tableSize: 4099,
            backends: [Backend(id: 3, address: "10.2.0.11")]),
        VIP(id: 3, address: "2001:db8:f::10", protocol: "tcp", port: 443, encap: Encap(type: "gue", port: 6080), tableSize: 4099,
            backends: [Backend(id: 4, address: "2001:db8:2::11")]),
    ]
    try SnapshotPublisher(file: file).publish(try Compiler(limits: .small).replace(with: routing))
    var dp = DataPlaneConfig(tables: tables, ports: [.init(name: "p0", device: "net_null0,no-rx=1"), .init(name: "p1", device: "net_null1,no-rx=1")])
    dp.stats = "\(dir)/stats"
    dp.lcores = .init(main: 0, io: [1], workers: [])
    // One bucket of four: the burst's five VIP flows keep evicting each other, so the
    // insert and eviction paths run in every burst, not only the hits.
    dp.conntrack.flows = established ? 4096 : 1
    let plane = try DataPlane(config: dp, eal: ["--no-pci", "--no-huge", "-m", "256", "--no-shconf", "--lcores", "0@0,1@0",
                                                 "--log-level", "lib.eal:error", "--no-telemetry", "--file-prefix", "kac\(getpid())"],
                              log: { _ in })
    // The burst: the six routing kinds and, every other slot, VIP traffic
    // (IPIP, GUE, IPv6, an ICMP error about a VIP flow), all addressed to port p0's MAC.
    let quoted = Array(PacketBuilder.ipv4(src: "192.0.2.10", dst: "10.1.0.2", proto: 6, srcPort: 80, dstPort: 40000, payload: [])[14..<42])
    var icmp: [UInt8] = [3, 4, 0, 0, 0, 0, 5, 20] + quoted
    let c = icmp.withUnsafeBytes { Checksum.finish(Checksum.sum($0.baseAddress!, $0.count)) }
    icmp[2] = UInt8(c >> 8); icmp[3] = UInt8(c & 0xFF)
    var ip: [UInt8] = [0x45, 0, 0, UInt8(20 + icmp.count), 0, 1, 0, 0, 64, 1, 0, 0, 10, 1, 0, 77, 192, 0, 2, 10]
    let h = ip.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress!, headerLength: 20) }
    ip[10] = UInt8(h >> 8); ip[11] = UInt8(h & 0xFF)
    let lb: [[UInt8]] = [
        PacketBuilder.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: 6, srcPort: 40000, dstPort: 80),
        PacketBuilder.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: 6, srcPort: 40001, dstPort: 80),
        PacketBuilder.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: 17, srcPort: 40002, dstPort: 53),
        PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:f::10", proto: 6, srcPort: 40003, dstPort: 443),
        PacketBuilder.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: 6, srcPort: 40004, dstPort: 80),
        PacketBuilder.ethernet(type: 0x0800) + ip + icmp,
    ]
    for i in 0..<burst where i % 2 == 1 {
        let k = lb[(i / 2) % lb.count]
        k.withUnsafeBytes { (pristine + i * stride).copyMemory(from: $0.baseAddress!, byteCount: k.count) }
        lengths[i] = k.count
    }
    for i in 0..<burst { (pristine + i * stride).copyMemory(from: [UInt8](arrayLiteral: 2, 0, 0, 0, 1, 0), byteCount: 6) }
    var allocations: UInt64 = 0, refcounts: UInt64 = 0, before: UInt64 = 0, rcBefore: UInt64 = 0
    plane.lcoreForDriving().drive(bursts: bursts, frames: pristine, stride: stride, lengths: lengths, count: burst) { on in
        if on {
            keel_malloc_counting(1)
            before = keel_malloc_count(); rcBefore = keel_refcount_count()
        } else {
            allocations = keel_malloc_count() - before
            refcounts = keel_refcount_count() - rcBefore
            keel_malloc_counting(0)
        }
    }
    let sent = plane.stats.total(Counter.txPackets(0)) + plane.stats.total(Counter.txPackets(1))
    if getenv("KEEL_DEBUG") != nil { print(StatsReport.text(plane.stats)) }
    let vip = plane.stats.lbTotal(plane.stats.vipCounter(0, LBCounter.packets)) + plane.stats.lbTotal(plane.stats.vipCounter(1, LBCounter.packets))
        + plane.stats.lbTotal(plane.stats.vipCounter(2, LBCounter.packets))
    let evictions = plane.stats.lbTotal(plane.stats.vipCounter(0, LBCounter.connEvictions))
    let hits = (0..<3).reduce(UInt64(0)) { $0 + plane.stats.lbTotal(plane.stats.vipCounter($1, LBCounter.connHits)) }
    let fast = plane.stats.total(Counter.fastForwarded)
    print("\(bursts) bursts of \(burst): \(sent / 2) forwarded, \(vip / 2) load-balanced, \(evictions / 2) evictions, \(hits / 2) hits, \(fast / 2) short-path, \(allocations) allocations, \(refcounts) retains/releases")
}
