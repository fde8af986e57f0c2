// keel-dataplane, one-lcore mode (the first cut of issue 4): reads its tables
// from the tables file, polls every DPDK port, routes with KeelForward, and
// transmits. Snapshot port i is DPDK port i. Still missing: I/O and worker
// lcores with rings, ARP/ND hold queue, ICMP errors on the wire, TAPs, stats file.
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
    if reader.refresh() { loadStaticNeighbors() }
    let s = reader.snapshot
    for inPort in 0..<portCount {
        let n = ports[inPort].receive(rx, max: UInt16(burstSize))
        rxPackets &+= UInt64(n)
        for i in 0..<n {
            let m = rx[i]!
            let p = mbufData(m), len = mbufLength(m)
            var r = Parser.parse(p, length: len, into: &info)
            if r == .none && info.l3 == PacketInfo.arp { r = .unknownEtherType } // ARP on the loop: next step
            guard r == .none else {
                drops[Int(r.rawValue)] &+= 1
                mbufFree(m)
                continue
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
            case .resolve:
                drops[Int(DropReason.neighborUnresolved.rawValue)] &+= 1
                mbufFree(m)
            case .icmpError(let type, _, _):
                icmpErrors &+= 1
                drops[Int((type == 11 || (type == 3 && info.l3 == PacketInfo.ipv6)) ? DropReason.ttlExpired.rawValue : (type == 3 && info.l3 == PacketInfo.ipv4) || type == 1 ? DropReason.noRoute.rawValue : DropReason.tooBig.rawValue)] &+= 1
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
                              "icmp_errors_not_sent": icmpErrors, "drops": dropText, "generation": reader.generation]
print(String(decoding: try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys]), as: UTF8.self))
