import Atomics
import CDPDK
import Foundation
// DataPlaneConfig lives there (shared with the appliance settings); users of KeelDataPlane see it.
@_exported import KeelConfigFile
import KeelDPDK
import KeelForward
import KeelPacket
import KeelStats
import KeelTables

/// A start-up problem: one clear line, non-zero exit.
public struct StartError: Error, CustomStringConvertible {
    public let description: String
    init(_ s: String) { description = s }
}

/// Set by SIGINT/SIGTERM (see `DataPlane.installSignalHandlers`).
nonisolated(unsafe) var stopRequested: sig_atomic_t = 0

/// keel-dataplane: EAL, ports, TAPs, rings, lcores; the main lcore's slow path.
public final class DataPlane {
    public let config: DataPlaneConfig
    let file: TablesFile
    let acceptor: SnapshotAcceptor
    public let stats: StatsFile
    var fabric: Fabric
    var ports: [EthPort] = []
    var taps: [EthPort?] = []
    var lcores: [(lcore: Int, work: PacketLcore)] = []
    var reader: LcoreReader
    var slow: SlowPath!
    var appliedTapState: [Int: (mac: [UInt8], mtu: UInt16, addresses: Set<String>)] = [:]
    let log: (String) -> Void

    /// The EAL arguments keel-dataplane adds to the operator's: lcores when
    /// not given, one vdev per virtual port and per TAP.
    public static func ealArguments(config c: DataPlaneConfig, extra: [String]) -> [String] {
        var args = ["keel-dataplane"] + extra
        let given = Set(extra.map { $0.split(separator: "=").first.map(String.init) ?? $0 })
        if given.isDisjoint(with: ["-l", "--lcores", "-c"]) {
            args += ["-l", ([c.lcores.main] + c.packetLcores).map(String.init).joined(separator: ",")]
        }
        if !given.contains("--main-lcore") { args += ["--main-lcore", String(c.lcores.main)] }
        for p in c.ports where p.device.hasPrefix("net_") { args.append("--vdev=\(p.device)") }
        // PCI ports: only these (the management NIC and the rest stay the kernel's).
        if given.isDisjoint(with: ["--no-pci", "-a", "--allow", "-b", "--block"]) {
            for p in c.ports where !p.device.hasPrefix("net_") && !p.device.isEmpty { args += ["-a", p.device] }
        }
        for (i, p) in c.ports.enumerated() {
            if let t = p.tap { args.append("--vdev=net_tap\(i),iface=\(t)") }
        }
        return args
    }

    /// A start-up check with a clear message: DPDK on huge pages (no
    /// `--no-huge`) needs free pages for a packet-buffer pool per NUMA socket
    /// (2.3 KiB an mbuf, DPDK's own headroom included) plus its rings and
    /// heap; nil when there are enough (or the system has no hugetlbfs at all,
    /// where DPDK itself says so).
    public static func hugepageShortfall(config c: DataPlaneConfig, eal: [String], sysfs: String = "/sys/kernel/mm/hugepages") -> String? {
        if eal.contains("--no-huge") { return nil }
        guard let sizes = try? FileManager.default.contentsOfDirectory(atPath: sysfs), !sizes.isEmpty else { return nil }
        var free = 0
        var detail: [String] = []
        for d in sizes.sorted() where d.hasPrefix("hugepages-") && d.hasSuffix("kB") {
            guard let kb = Int(d.dropFirst(10).dropLast(2)),
                  let n = (try? String(contentsOfFile: "\(sysfs)/\(d)/free_hugepages", encoding: .utf8)).flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
            else { continue }
            free += n * kb * 1024
            detail.append("\(n) free \(kb >= 1024 * 1024 ? "\(kb / 1024 / 1024) GiB" : "\(kb / 1024) MiB") pages")
        }
        let need = c.mempool.mbufs * 2368 + 64 << 20
        guard free < need else { return nil }
        return "hugepages: \(detail.joined(separator: ", ")) (\(free >> 20) MiB); the packet buffers (mempool.mbufs = \(c.mempool.mbufs)) and DPDK's heap need about \(need >> 20) MiB: reserve more (hugepages= on the kernel command line, hugepages.pages in keel.yaml) or lower mempool.mbufs"
    }

    public init(config c: DataPlaneConfig, eal extra: [String], log: @escaping (String) -> Void) throws {
        config = c
        self.log = log
        do { file = try TablesFile.open(path: c.tables) } catch {
            throw StartError("no usable tables file at \(c.tables): \(error) (keel-control creates it)")
        }
        let readers = c.pipeline ? c.lcores.workers.count : c.lcores.io.count
        guard file.readerCount >= 1 + readers else {
            throw StartError("the tables file has \(file.readerCount) reader lines; this layout needs \(1 + readers) (main + \(readers) routing lcores)")
        }
        do { try EAL.initialize(DataPlane.ealArguments(config: c, extra: extra)) } catch {
            throw StartError("DPDK EAL: \(error)")
        }
        guard EAL.mainLcore == c.lcores.main else { throw StartError("the EAL's main lcore is \(EAL.mainLcore), the configuration says \(c.lcores.main)") }
        for l in c.packetLcores where !EAL.lcoreEnabled(l) {
            throw StartError("lcore \(l) is not available to DPDK (too few CPUs, or not in -l/--lcores)")
        }
        // Ports, by device name (the part before the first comma).
        var ids: [UInt16] = []
        for p in c.ports {
            let name = String(p.device.split(separator: ",").first ?? "")
            guard let id = EthPort.find(name: name) else {
                throw StartError("port \(p.name): no DPDK device \(name) (a PCI device must be bound to vfio-pci or uio; a virtual one must be net_...)")
            }
            guard Int(id) < Fabric.maxDPDKPorts else { throw StartError("port \(p.name): DPDK port id \(id) too large") }
            if ids.contains(id) { throw StartError("port \(p.name): device \(name) is listed twice") }
            ids.append(id)
        }
        // One mempool per NUMA socket that has a port or an lcore on it.
        var pools: [Int32: Mempool] = [:]
        func pool(_ socket: Int32) throws -> Mempool {
            if let p = pools[socket] { return p }
            let p = try Mempool(name: "keel-pool-\(socket)", count: c.mempool.mbufs, cacheSize: c.mempool.cache, socket: socket)
            pools[socket] = p
            return p
        }
        let burst = c.queues.burst
        do {
            for (i, id) in ids.enumerated() {
                let sock = EthPort(unchecked: id).socket
                ports.append(try EthPort(id: id, pool: try pool(sock), queues: 1, rxDescriptors: UInt16(c.queues.rxDescriptors),
                                         txDescriptors: UInt16(c.queues.txDescriptors), promiscuous: true))
                if let t = c.ports[i].tap {
                    guard let tid = EthPort.find(name: "net_tap\(i)") else { throw StartError("TAP \(t) was not created") }
                    taps.append(try EthPort(id: tid, pool: try pool(sock), queues: 1, rxDescriptors: 512, txDescriptors: 512, promiscuous: false))
                } else { taps.append(nil) }
            }
        } catch let e as StartError { throw e } catch { throw StartError("\(error)") }

        let n = ports.count
        let portIds = UnsafeMutablePointer<UInt16>.allocate(capacity: n)
        let tapIds = UnsafeMutablePointer<Int32>.allocate(capacity: n)
        let index = UnsafeMutablePointer<Int16>.allocate(capacity: Fabric.maxDPDKPorts)
        index.initialize(repeating: -1, count: Fabric.maxDPDKPorts)
        for i in 0..<n {
            portIds[i] = ports[i].id
            tapIds[i] = taps[i].map { Int32($0.id) } ?? -1
            index[Int(ports[i].id)] = Int16(i)
        }
        let txRings = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: n)
        let tapRings = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: n)
        let workers = c.lcores.workers
        let workerRings = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: max(workers.count, 1))
        let ringSize = c.queues.ringSize
        // Which I/O lcore owns each port (RX and TX queue 0): round robin.
        let owner = (0..<n).map { $0 % c.lcores.io.count }
        let slowRing: Ring
        do {
            for i in 0..<n {
                let sock = EAL.socket(ofLcore: c.lcores.io[owner[i]])
                txRings[i] = try Ring(name: "keel-tx\(i)", size: ringSize, socket: sock, singleProducer: false, singleConsumer: true).ring
                tapRings[i] = taps[i] == nil ? nil
                    : try Ring(name: "keel-tap\(i)", size: 1024, socket: sock, singleProducer: false, singleConsumer: true).ring
            }
            for (k, l) in workers.enumerated() {
                workerRings[k] = try Ring(name: "keel-w\(k)", size: ringSize, socket: EAL.socket(ofLcore: l),
                                          singleProducer: c.lcores.io.count == 1, singleConsumer: true).ring
            }
            slowRing = try Ring(name: "keel-slow", size: 4096, socket: EAL.socket(ofLcore: c.lcores.main), singleProducer: false, singleConsumer: true)
        } catch { throw StartError("\(error)") }

        let packetLcores = c.packetLcores
        let capacity = NeighborTable.roundUp(c.neighbors.capacity * 2)
        do {
            stats = try StatsFile.create(path: c.stats, lcores: 1 + packetLcores.count, portNames: c.ports.map(\.name), neighborCapacity: capacity,
                                         vips: file.layout.limits.vips, backendsPerVIP: file.layout.limits.backendsPerVIP)
        } catch { throw StartError("\(error)") }
        let mainPool: Mempool
        do { mainPool = try pool(EAL.socket(ofLcore: c.lcores.main)) } catch { throw StartError("\(error)") }
        fabric = Fabric(portCount: n, portIds: portIds, tapIds: tapIds, indexOfDPDKPort: index, txRings: txRings, tapRings: tapRings,
                        workerRings: workerRings, workerCount: workers.count, slowRing: slowRing.ring, pool: mainPool.pool,
                        neighborMemory: stats.neighborRegion, neighborCapacity: capacity, stage: .create(0), burst: burst,
                        icmpRate: UInt64(c.icmp.rate), icmpBurst: UInt64(c.icmp.burst))
        _ = NeighborTable(memory: stats.neighborRegion, capacity: capacity) // zeroes it
        fabric.nextHopGroups = file.layout.limits.nextHopGroups
        fabric.ecmpWays = file.layout.limits.ecmpWays
        fabric.vipSlots = file.layout.limits.vips
        fabric.backendSlots = file.layout.limits.backendsPerVIP
        fabric.conntrack = c.conntrack

        acceptor = SnapshotAcceptor(file: file)
        if case .refused(let g, let why) = acceptor.poll() { log("refused snapshot generation \(g): \(why)") }
        reader = LcoreReader(file: file, line: 0, source: acceptor.accepted)

        // Lcore blocks: 0 = main, then io..., then workers...
        stats.block(0)[Counter.role] = Role.main.rawValue
        stats.block(0)[Counter.lcore] = UInt64(c.lcores.main)
        var line = 1
        for (k, l) in c.lcores.io.enumerated() {
            let b = stats.block(1 + k)
            let kind: PacketLcore.Kind = c.pipeline ? .io : .single
            b[Counter.role] = (kind == .io ? Role.io : Role.single).rawValue
            b[Counter.lcore] = UInt64(l)
            let owned = (0..<n).filter { owner[$0] == k }
            let myLine = kind == .single ? line : -1
            if kind == .single { line += 1 }
            lcores.append((l, PacketLcore(kind: kind, fabric: fabric, counters: b, lbCounters: stats.lbBlock(1 + k), ownedPorts: owned, workerIndex: -1,
                                           file: kind == .single ? file : nil, line: myLine, source: acceptor.accepted)))
        }
        for (k, l) in workers.enumerated() {
            let b = stats.block(1 + c.lcores.io.count + k)
            b[Counter.role] = Role.worker.rawValue
            b[Counter.lcore] = UInt64(l)
            lcores.append((l, PacketLcore(kind: .worker, fabric: fabric, counters: b, lbCounters: stats.lbBlock(1 + c.lcores.io.count + k), ownedPorts: [], workerIndex: k,
                                           file: file, line: line, source: acceptor.accepted)))
            line += 1
        }
        slow = SlowPath(fabric: fabric, config: c, counters: stats.block(0), pool: mainPool.pool)
    }

    /// The first packet lcore's routing code, for tests and profiling (see
    /// `PacketLcore.drive`), after doing what the main lcore does at start
    /// (snapshot, static neighbors).
    public func lcoreForDriving() -> PacketLcore {
        reader.online()
        if reader.hasSnapshot { snapshotChanged() }
        return lcores[0].work
    }

    /// One turn of the main lcore's packet work: what the packet lcores queued
    /// for it (neighbor misses, ARP replies, NAs), and the neighbor timers
    /// when `timers`. Returns how many packets it took.
    @discardableResult
    public func slowTurn(_ rx: UnsafeMutablePointer<OpaquePointer?>, now: UInt64, timers: Bool) -> Int {
        let n = Ring(fabric.slowRing).dequeue(rx, max: 64)
        for i in 0..<n { slow.handle(rx[i]!, snapshot: reader.snapshot) }
        if timers { slow.timers(now: now, snapshot: reader.snapshot) }
        return n
    }

    /// For the fuzz target: frees the packets held for unresolved neighbors,
    /// and counts the mbufs free in the pool (all caches included), so a
    /// leak of one mbuf shows.
    public func releaseHeld() { slow.releaseAll() }
    public var freeMbufs: Int { Int(rte_mempool_avail_count(fabric.pool)) }

    public static func installSignalHandlers() {
        signal(SIGINT) { _ in stopRequested = 1 }
        signal(SIGTERM) { _ in stopRequested = 1 }
    }

    /// Runs until SIGINT/SIGTERM (or `seconds`), then drains and stops.
    public func run(seconds: Double = 0) throws {
        reader.online()
        if !reader.hasSnapshot { log("waiting for keel-control to publish a snapshot in \(config.tables)") }
        while !reader.hasSnapshot && stopRequested == 0 {
            usleep(10_000)
            if case .refused(let g, let why) = acceptor.poll() { log("refused snapshot generation \(g): \(why)") }
            _ = reader.refresh()
        }
        guard stopRequested == 0 else { return shutdown() }
        snapshotChanged()
        stats.beat()
        for i in 0..<ports.count { stats.setPortUp(i, ports[i].linkUp) }
        // Launch the packet lcores.
        for k in 0..<lcores.count {
            let box = Unmanaged.passRetained(LcoreBox(lcores[k].work)).toOpaque()
            try EAL.launch(lcore: lcores[k].lcore, { arg in
                let b = Unmanaged<LcoreBox>.fromOpaque(arg!).takeRetainedValue()
                b.work.run()
                return 0
            }, box)
        }
        log("running: \(ports.count) ports, \(config.pipeline ? "\(config.lcores.io.count) I/O + \(config.lcores.workers.count) worker lcores" : "\(config.lcores.io.count) run-to-completion lcore(s)"), generation \(reader.generation)")
        let deadline = seconds > 0 ? monotonicNs() + UInt64(seconds * 1e9) : UInt64.max
        var lastBeat: UInt64 = 0, lastTimers: UInt64 = 0
        let rx = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: 64)
        while stopRequested == 0 && monotonicNs() < deadline {
            if case .refused(let g, let why) = acceptor.poll() { log("refused snapshot generation \(g): \(why)") }
            if reader.refresh() { snapshotChanged() }
            let now = monotonicNs()
            let timers = now - lastTimers >= 10_000_000
            if timers { lastTimers = now }
            let n = slowTurn(rx, now: now, timers: timers)
            if now - lastBeat >= 100_000_000 {
                stats.beat()
                for i in 0..<ports.count { stats.setPortUp(i, ports[i].linkUp) }
                lastBeat = now
            }
            if n == 0 { usleep(500) }
        }
        // Drain: stop receiving, let workers empty their rings and I/O lcores their TX rings, then stop.
        fabric.stage.store(1, ordering: .releasing)
        usleep(50_000)
        fabric.stage.store(2, ordering: .releasing)
        EAL.waitAll()
        shutdown()
    }

    func shutdown() {
        reader.offline()
        slow?.releaseAll()
        for p in ports { p.close() }
        for t in taps { t?.close() }
        stats.stopped()
        log("stopped")
    }

    /// A new snapshot: static neighbors, TAP addresses, the generation in the stats file.
    func snapshotChanged() {
        let s = reader.snapshot
        slow.loadStaticNeighbors(s)
        stats.setGeneration(reader.generation)
        for i in 0..<ports.count { if let t = config.ports[i].tap, s.portPresent(i) { configureTap(i, name: t, s) } }
    }

    /// Gives the kernel the port's MAC, MTU and addresses on the TAP, so that
    /// what it sends out of the TAP is the appliance speaking on the port.
    func configureTap(_ i: Int, name: String, _ s: Snapshot) {
        let mac = s.portMAC(i), mtu = s.portMTU(i)
        var addresses = Set<String>()
        for k in 0..<4 {
            let a = s.portAddress(i, k)
            if a.family != 0 { addresses.insert("\(a.address)/\(a.length)") }
        }
        let old = appliedTapState[i]
        let macText = mac.map { String(format: "%02x", $0) }.joined(separator: ":")
        if old == nil || old!.mac != mac || old!.mtu != mtu {
            runIP(["link", "set", "dev", name, "down"])
            runIP(["link", "set", "dev", name, "address", macText, "mtu", String(mtu)])
            runIP(["link", "set", "dev", name, "up"])
        }
        for a in addresses.subtracting(old?.addresses ?? []) {
            runIP(["addr", "replace", a, "dev", name] + (a.contains(":") ? ["nodad"] : []))
        }
        for a in (old?.addresses ?? []).subtracting(addresses) { runIP(["addr", "del", a, "dev", name]) }
        appliedTapState[i] = (mac, mtu, addresses)
    }

    /// Runs ip(8) and waits for it (posix_spawn + waitpid: Foundation's
    /// Process watches children with a run loop that misses some exits here).
    func runIP(_ args: [String]) {
        let path = access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip"
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { log("ip: pipe: \(String(cString: strerror(errno)))"); return }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        let argv = ([path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
        close(fds[1])
        defer { close(fds[0]) }
        guard rc == 0 else { log("cannot run \(path): \(String(cString: strerror(rc)))"); return }
        var err = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 512)
        while true {
            let n = read(fds[0], &buf, buf.count)
            if n <= 0 { break }
            err += buf[0..<n]
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if status != 0 {
            log("ip \(args.joined(separator: " ")): \(String(decoding: err, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }
}

final class LcoreBox {
    let work: PacketLcore
    init(_ w: PacketLcore) { work = w }
}
