// keel-dataplane, one-lcore mode (the first cut of issue 4): reads its tables
// from the tables file, polls every DPDK port, routes with KeelForward, answers
// ARP/ND and ping for its own addresses, asks for unknown next hops, sends
// rate-limited ICMP errors, and transmits. Snapshot port i is DPDK port i.
// Still missing: I/O and worker lcores with rings, a hold queue for packets
// waiting on a neighbor (they are dropped and counted), TAPs, the stats file.
//
//   keel-dataplane --tables FILE [--line N] [--seconds S] -- EAL ARGS...
import CDPDK
import Foundation
import KeelDPDK
import KeelForward
import KeelPacket
import KeelTables

setvbuf(stdout, nil, _IOLBF, 0)

func die(_ s: String) -> Never {
    FileHandle.standardError.write(Data("keel-dataplane: \(s)\n".utf8))
    exit(1)
}

let argv = CommandLine.arguments
let split = argv.firstIndex(of: "--") ?? argv.count
let own = Array(argv[1..<split])
let eal = ["keel-dataplane"] + (split < argv.count ? Array(argv[(split + 1)...]) : [])
func option(_ name: String) -> String? { own.firstIndex(of: name).flatMap { $0 + 1 < own.count ? own[$0 + 1] : nil } }
guard let tablesPath = option("--tables") else { die("--tables FILE is required") }
let line = Int(option("--line") ?? "0") ?? 0
let seconds = Double(option("--seconds") ?? "0") ?? 0

let file: TablesFile
do { file = try TablesFile.open(path: tablesPath) } catch { die("\(error)") }
do { try EAL.initialize(eal) } catch { die("\(error)") }
let portCount = EthPort.count
guard portCount > 0 else { die("no DPDK ports (give --vdev=... or bind a NIC)") }
let pool: Mempool
var ports: [EthPort] = []
do {
    pool = try Mempool(name: "keel-pool", count: 8191)
    for i in 0..<portCount { ports.append(try EthPort(id: UInt16(i), pool: pool)) }
} catch { die("\(error)") }

let acceptor = SnapshotAcceptor(file: file)
if case .refused(_, let why) = acceptor.poll() { die(why) }
var reader = LcoreReader(file: file, line: line, source: acceptor.accepted)
reader.online()
guard reader.hasSnapshot else { die("nothing published in \(tablesPath) yet") }
var neighbors = NeighborTable(capacity: 4096)
func loadStaticNeighbors() {
    let s = reader.snapshot
    for i in 0..<s.staticNeighborCount {
        let n = s.staticNeighbor(i)
        neighbors.set(port: n.port, address: n.address, mac: n.mac)
    }
}
loadStaticNeighbors()

nonisolated(unsafe) var stop = false
signal(SIGINT) { _ in stop = true }
signal(SIGTERM) { _ in stop = true }

// Per-lcore state, allocated once.
let burstSize = 32
let rx = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: burstSize)
let txQueues = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: burstSize * portCount)
let txCount = UnsafeMutablePointer<Int>.allocate(capacity: portCount)
txCount.initialize(repeating: 0, count: portCount)
let nextHop = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
let drops = UnsafeMutablePointer<UInt64>.allocate(capacity: 256)
drops.initialize(repeating: 0, count: 256)
var rxPackets: UInt64 = 0, txPackets: UInt64 = 0, echoReplies: UInt64 = 0, toKernel: UInt64 = 0, icmpErrors: UInt64 = 0
var info = PacketInfo()
let forwarder = Forwarder()
let learned = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 16)
let scratch = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
var clock = monotonicNs()
var icmpBucket = TokenBucket(rate: 1000, burst: 100, now: clock)
var resolveBucket = TokenBucket(rate: 1000, burst: 100, now: clock)
var arpReplies: UInt64 = 0, ndReplies: UInt64 = 0, solicitations: UInt64 = 0, icmpSent: UInt64 = 0, noMbuf: UInt64 = 0

/// The first address of `family` on snapshot port `port` (16 bytes, IPv4 mapped) into `out`.
func portAddress(_ s: Snapshot, _ port: Int, family: UInt8, into out: UnsafeMutableRawPointer) -> Bool {
    for k in 0..<4 {
        let a = s.portAddress(port, k)
        if a.family == family { a.address.store(to: out); return true }
    }
    return false
}
let deadline = seconds > 0 ? Date().addingTimeInterval(seconds) : Date.distantFuture
var turns = 0

func flush(_ port: Int) {
    let n = txCount[port]
    guard n > 0 else { return }
    txPackets += UInt64(ports[port].transmit(txQueues + port * burstSize, count: n))
    txCount[port] = 0
}

@inline(__always)
func enqueue(_ m: OpaquePointer, _ port: Int) {
    txQueues[port * burstSize + txCount[port]] = m
    txCount[port] += 1
    if txCount[port] == burstSize { flush(port) }
}

while !stop {
    turns &+= 1
    if turns & 1023 == 0 {
        if case .refused(let g, let why) = acceptor.poll() { print("refused generation \(g): \(why)") }
        if Date() > deadline { break }
    }
    if turns & 63 == 0 { clock = monotonicNs() }
    if reader.refresh() { loadStaticNeighbors() }
    let s = reader.snapshot
    for inPort in 0..<portCount {
        let n = ports[inPort].receive(rx, max: UInt16(burstSize))
        rxPackets &+= UInt64(n)
        for i in 0..<n {
            let m = rx[i]!
            let p = mbufData(m), len = mbufLength(m)
            let r = Parser.parse(p, length: len, into: &info)
            guard r == .none else {
                drops[Int(r.rawValue)] &+= 1
                mbufFree(m)
                continue
            }
            if info.l3 == PacketInfo.arp {
                let (result, learn) = NeighborDiscovery.arp(p, length: len, info, port: inPort, snapshot: s, learned: learned)
                if learn {
                    // learned = MAC (6) then IPv4 (4); the table keys on the mapped address.
                    scratch.storeBytes(of: UInt64(0), as: UInt64.self)
                    scratch.storeBytes(of: UInt32(0xFFFF).bigEndian, toByteOffset: 8, as: UInt32.self)
                    (scratch + 12).copyMemory(from: learned + 6, byteCount: 4)
                    neighbors.set(port: UInt16(inPort), address: UnsafeRawPointer(scratch), mac: learned)
                }
                if result == .replied { arpReplies &+= 1; enqueue(m, inPort) } else { mbufFree(m) }
                continue
            }
            if info.l3 == PacketInfo.ipv6 && info.l4Proto == 58 && !info.fragment {
                let t = p.load(fromByteOffset: Int(info.l4Offset), as: UInt8.self)
                if t == 135 {
                    let n = NeighborDiscovery.neighborAdvertisement(p, length: len, info, port: inPort, snapshot: s, learnedMAC: learned)
                    if n > 0 {
                        mbufSetLength(m, n)
                        ndReplies &+= 1
                        enqueue(m, inPort)
                    } else { mbufFree(m) }
                    continue
                }
                if t == 136 {
                    if NeighborDiscovery.advertised(p, info, target: scratch, mac: learned) {
                        neighbors.set(port: UInt16(inPort), address: UnsafeRawPointer(scratch), mac: learned)
                    }
                    mbufFree(m)
                    continue
                }
            }
            let v = forwarder.route(p, length: len, info, hash: FlowHash.of(p, info), snapshot: s, neighbors: neighbors, nextHop: nextHop)
            switch v {
            case .forward(let out):
                enqueue(m, Int(out))
            case .local(_, let echo):
                if echo {
                    ICMP.echoReply(p, info)
                    echoReplies &+= 1
                    enqueue(m, inPort)
                } else {
                    toKernel &+= 1 // the TAP exception path is not built yet
                    mbufFree(m)
                }
            case .resolve(let out):
                // No hold queue yet: drop, count, and ask (rate-limited).
                drops[Int(DropReason.neighborUnresolved.rawValue)] &+= 1
                let v4 = nextHop.loadUnaligned(fromByteOffset: 8, as: UInt32.self) == UInt32(0xFFFF).bigEndian
                    && nextHop.loadUnaligned(as: UInt64.self) == 0
                if resolveBucket.take(now: clock), portAddress(s, Int(out), family: v4 ? 4 : 6, into: scratch) {
                    guard let q = mbufAlloc(pool) else { noMbuf &+= 1; mbufFree(m); continue }
                    let n = v4
                        ? NeighborDiscovery.arpRequest(port: Int(out), snapshot: s,
                                                       source: UInt32(bigEndian: scratch.loadUnaligned(fromByteOffset: 12, as: UInt32.self)),
                                                       target: UInt32(bigEndian: nextHop.loadUnaligned(fromByteOffset: 12, as: UInt32.self)), into: mbufData(q))
                        : NeighborDiscovery.neighborSolicitation(port: Int(out), snapshot: s, source: scratch, target: nextHop, into: mbufData(q))
                    mbufSetLength(q, n)
                    solicitations &+= 1
                    enqueue(q, Int(out))
                }
                mbufFree(m)
            case .icmpError(let type, let code, let mtu):
                icmpErrors &+= 1
                let reason: DropReason = (type == 11 || (type == 3 && info.l3 == PacketInfo.ipv6)) ? .ttlExpired
                    : ((type == 3 && code == 0) || type == 1) ? .noRoute : .tooBig
                drops[Int(reason.rawValue)] &+= 1
                // Back out of the port it came in, from that port's address, to the sender's MAC.
                if ICMP.mayReportError(p, info), icmpBucket.take(now: clock),
                   portAddress(s, inPort, family: info.l3 == PacketInfo.ipv4 ? 4 : 6, into: scratch) {
                    guard let q = mbufAlloc(pool) else { noMbuf &+= 1; mbufFree(m); continue }
                    let n = ICMP.error(p, info, type: type, code: code, mtu: mtu, source: scratch, srcMAC: p, dstMAC: p + 6, into: mbufData(q))
                    mbufSetLength(q, n)
                    icmpSent &+= 1
                    enqueue(q, inPort)
                }
                mbufFree(m)
            case .drop(let why):
                drops[Int(why.rawValue)] &+= 1
                mbufFree(m)
            }
        }
    }
    for port in 0..<portCount { flush(port) }
}

reader.offline()
for port in ports { port.close() }
var dropText: [String: UInt64] = [:]
for r in DropReason.allCases where drops[Int(r.rawValue)] > 0 { dropText["\(r)"] = drops[Int(r.rawValue)] }
let summary: [String: Any] = ["rx": rxPackets, "tx": txPackets, "echo_replies": echoReplies, "to_kernel": toKernel,
                              "icmp_errors": icmpErrors, "icmp_sent": icmpSent, "arp_replies": arpReplies, "nd_replies": ndReplies,
                              "solicitations": solicitations, "no_mbuf": noMbuf, "drops": dropText, "generation": reader.generation]
print(String(decoding: try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys]), as: UTF8.self))
