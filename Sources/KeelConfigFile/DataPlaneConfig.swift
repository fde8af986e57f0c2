import Foundation
import Yams

/// keel-dataplane's own settings (Config/dataplane.yaml). Routes, VIPs and
/// port addresses are not here: they come from the tables file.
public struct DataPlaneConfig: Equatable, Sendable {
    public struct Port: Equatable, Sendable {
        /// Shown in counters; also the default TAP name's suffix.
        public var name: String
        /// A DPDK device: a PCI address (`0000:00:04.0`, bound to vfio-pci or
        /// uio) or a virtual device spec (`net_af_packet0,iface=veth0`), which
        /// keel-dataplane creates.
        public var device: String
        /// The kernel interface of this port's exception path (nil: none).
        public var tap: String?
        /// The NIC given by its kernel interface name instead of `device`
        /// (appliance settings): `device` is then empty until
        /// `DataPlaneConfig.resolveInterfaces` finds its PCI address.
        public var interface: String?

        public init(name: String, device: String, tap: String? = nil, interface: String? = nil) {
            self.name = name; self.device = device; self.tap = tap; self.interface = interface
        }
    }
    public struct Lcores: Equatable, Sendable {
        public var main: Int = 0
        public var io: [Int] = [1]
        /// Empty: the I/O lcores route too (run to completion; "one-lcore mode" with one I/O lcore).
        public var workers: [Int] = []

        public init(main: Int = 0, io: [Int] = [1], workers: [Int] = []) {
            self.main = main; self.io = io; self.workers = workers
        }
    }
    public struct Queues: Equatable, Sendable {
        public var rxDescriptors = 1024
        public var txDescriptors = 1024
        public var ringSize = 4096
        public var burst = 32
    }
    public struct Mempool: Equatable, Sendable {
        public var mbufs = 16383
        public var cache = 256
    }
    public struct Neighbors: Equatable, Sendable {
        public var capacity = 8192
        public var holdPackets = 4
        public var retries = 3
        public var retryMs = 1000
        public var reachableSeconds = 30
    }
    public struct ICMPLimits: Equatable, Sendable {
        public var rate = 1000
        public var burst = 100
    }

    /// Per worker connection table (load-balanced flows).
    public struct ConnTrack: Equatable, Sendable {
        /// Flows per worker (rounded up to a power of two buckets of four; 16 bytes each).
        public var flows = 1 << 20
        public var tcpTimeout = 300
        public var tcpClosingTimeout = 10
        public var udpTimeout = 30

        public init(flows: Int = 1 << 20, tcpTimeout: Int = 300, tcpClosingTimeout: Int = 10, udpTimeout: Int = 30) {
            self.flows = flows; self.tcpTimeout = tcpTimeout; self.tcpClosingTimeout = tcpClosingTimeout; self.udpTimeout = udpTimeout
        }
    }

    public var tables: String
    public var stats: String = "/dev/shm/keel.stats"
    public var lcores = Lcores()
    public var ports: [Port] = []
    public var queues = Queues()
    public var mempool = Mempool()
    public var neighbors = Neighbors()
    public var icmp = ICMPLimits()
    public var conntrack = ConnTrack()

    public init(tables: String, ports: [Port]) {
        self.tables = tables
        self.ports = ports
    }

    /// Every lcore that does packet work.
    public var packetLcores: [Int] { lcores.io + lcores.workers }
    public var pipeline: Bool { !lcores.workers.isEmpty }
}

extension DataPlaneConfig {
    public static func load(path: String) throws -> DataPlaneConfig {
        var (root, r) = try composeSettings(path: path)
        return try r.config(root)
    }

    /// keel-dataplane's settings from `path`: its own file (Config/dataplane.yaml)
    /// or the appliance's (Config/keel.yaml), which is checked whole.
    public static func loadAny(path: String) throws -> DataPlaneConfig {
        var (root, r) = try composeSettings(path: path)
        if ApplianceSettings.isAppliance(root) { return try r.appliance(root).dataplane }
        return try r.config(root)
    }

    /// Ports given by `interface`: their PCI address, from sysfs while the
    /// kernel still has the NIC, else from keel-nics' record of what it bound
    /// (`bound`: lines "interface pci-address driver").
    public mutating func resolveInterfaces(sysfs: String = "/sys/class/net", bound: String = "/run/keel/nics") throws {
        let record = (try? String(contentsOfFile: bound, encoding: .utf8)) ?? ""
        for i in ports.indices {
            guard let name = ports[i].interface else { continue }
            if let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(sysfs)/\(name)/device") {
                ports[i].device = URL(fileURLWithPath: link).lastPathComponent
                continue
            }
            let w = record.split(separator: "\n").map { $0.split(separator: " ") }.first { $0.count >= 2 && $0[0] == name }
            guard let w else {
                throw ConfigFileError(path: "ports[\(i)].interface", message: "\(name) is neither a kernel interface with a PCI device nor in \(bound) (keel-nics bind records the NICs it binds)")
            }
            ports[i].device = String(w[1])
        }
    }

    /// Parses and checks the whole file; the first problem rejects it, naming the line and field.
    public static func parse(_ text: String, path: String = "<config>") throws -> DataPlaneConfig {
        var (root, r) = try composeSettings(text: text, path: path)
        return try r.config(root)
    }
}

extension Reader {
    /// The keys of keel-dataplane's own sections (shared with the appliance file).
    static let dataPlaneSections: Set<String> = ["lcores", "ports", "queues", "mempool", "neighbors", "icmp", "conntrack"]

    mutating func config(_ root: Node) throws -> DataPlaneConfig {
        let m = try mapping(root, "", allowed: Reader.dataPlaneSections.union(["tables", "stats"]))
        guard let t = m["tables"] else { throw fail(root, "tables", "required (the tables file keel-control publishes to)") }
        var c = DataPlaneConfig(tables: try string(t, "tables"), ports: [])
        if let n = m["stats"] { c.stats = try string(n, "stats") }
        try dataPlaneSections(m, root, into: &c)
        return c
    }

    /// lcores, ports, queues, mempool, neighbors, icmp and conntrack from `m` (the file's root mapping).
    func dataPlaneSections(_ m: [String: Node], _ root: Node, into c: inout DataPlaneConfig) throws {
        guard let portsNode = m["ports"] else { throw fail(root, "ports", "required (at least one port)") }
        if let n = m["lcores"] {
            let l = try mapping(n, "lcores", allowed: ["main", "io", "workers"])
            if let v = l["main"] { c.lcores.main = try int(v, "lcores.main", 0...1023) }
            if let v = l["io"] { c.lcores.io = try ints(v, "lcores.io", 0...1023) }
            if let v = l["workers"] { c.lcores.workers = try ints(v, "lcores.workers", 0...1023) }
            if c.lcores.io.isEmpty { throw fail(n, "lcores.io", "at least one I/O lcore is needed") }
            let all = [c.lcores.main] + c.lcores.io + c.lcores.workers
            if Set(all).count != all.count { throw fail(n, "lcores", "an lcore has two roles (main, io and workers must be distinct)") }
            if c.lcores.io.count + c.lcores.workers.count > 62 { throw fail(n, "lcores", "at most 62 packet lcores") }
        }
        guard let seq = portsNode.sequence, !seq.isEmpty else { throw fail(portsNode, "ports", "expected a non-empty list") }
        guard seq.count <= 16 else { throw fail(portsNode, "ports", "at most 16 ports") }
        for (i, pn) in seq.enumerated() {
            let f = "ports[\(i)]"
            let p = try mapping(pn, f, allowed: ["name", "device", "interface", "tap"])
            var device = "", interface: String? = nil
            switch (p["device"], p["interface"]) {
            case (let d?, nil): device = try string(d, "\(f).device")
            case (nil, let i?):
                let s = try string(i, "\(f).interface")
                guard s.utf8.count <= 15, !s.contains("/") else { throw fail(i, "\(f).interface", "an interface name of at most 15 characters") }
                interface = s
            case (_?, _?): throw fail(pn, f, "give device or interface, not both")
            case (nil, nil): throw fail(pn, "\(f).device", "required (a PCI address or a virtual device; or interface: a kernel NIC name)")
            }
            let name = try p["name"].map { try string($0, "\(f).name") } ?? "port\(i)"
            guard name.utf8.count < 32, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw fail(p["name"]!, "\(f).name", "letters, digits, - and _, under 32 characters")
            }
            var tap: String? = nil
            if let tn = p["tap"] {
                let s = try string(tn, "\(f).tap")
                guard s.utf8.count <= 15, s.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
                    throw fail(tn, "\(f).tap", "an interface name of at most 15 characters")
                }
                tap = s
            }
            c.ports.append(.init(name: name, device: device, tap: tap, interface: interface))
        }
        if Set(c.ports.map(\.name)).count != c.ports.count { throw fail(portsNode, "ports", "port names must be distinct") }
        let nics = c.ports.map { $0.interface.map { "if:" + $0 } ?? $0.device }
        if Set(nics).count != nics.count { throw fail(portsNode, "ports", "a device or interface is listed twice") }
        let taps = c.ports.compactMap(\.tap)
        if Set(taps).count != taps.count { throw fail(portsNode, "ports", "TAP names must be distinct") }
        if let n = m["queues"] {
            let q = try mapping(n, "queues", allowed: ["rx_descriptors", "tx_descriptors", "ring_size", "burst"])
            if let v = q["rx_descriptors"] { c.queues.rxDescriptors = try int(v, "queues.rx_descriptors", 64...32768) }
            if let v = q["tx_descriptors"] { c.queues.txDescriptors = try int(v, "queues.tx_descriptors", 64...32768) }
            if let v = q["ring_size"] {
                c.queues.ringSize = try int(v, "queues.ring_size", 256...1 << 20)
                if c.queues.ringSize & (c.queues.ringSize - 1) != 0 { throw fail(v, "queues.ring_size", "must be a power of two") }
            }
            if let v = q["burst"] { c.queues.burst = try int(v, "queues.burst", 1...64) }
        }
        if let n = m["mempool"] {
            let q = try mapping(n, "mempool", allowed: ["mbufs", "cache"])
            if let v = q["mbufs"] { c.mempool.mbufs = try int(v, "mempool.mbufs", 1023...16 << 20) }
            if let v = q["cache"] { c.mempool.cache = try int(v, "mempool.cache", 0...512) }
        }
        if let n = m["neighbors"] {
            let q = try mapping(n, "neighbors", allowed: ["capacity", "hold_packets", "retries", "retry_ms", "reachable_seconds"])
            if let v = q["capacity"] { c.neighbors.capacity = try int(v, "neighbors.capacity", 16...1 << 22) }
            if let v = q["hold_packets"] { c.neighbors.holdPackets = try int(v, "neighbors.hold_packets", 0...64) }
            if let v = q["retries"] { c.neighbors.retries = try int(v, "neighbors.retries", 1...100) }
            if let v = q["retry_ms"] { c.neighbors.retryMs = try int(v, "neighbors.retry_ms", 10...60000) }
            if let v = q["reachable_seconds"] { c.neighbors.reachableSeconds = try int(v, "neighbors.reachable_seconds", 1...86400) }
        }
        if let n = m["icmp"] {
            let q = try mapping(n, "icmp", allowed: ["rate", "burst"])
            if let v = q["rate"] { c.icmp.rate = try int(v, "icmp.rate", 0...1_000_000) }
            if let v = q["burst"] { c.icmp.burst = try int(v, "icmp.burst", 1...100_000) }
        }
        if let n = m["conntrack"] {
            let q = try mapping(n, "conntrack", allowed: ["flows", "tcp_timeout", "tcp_closing_timeout", "udp_timeout"])
            if let v = q["flows"] { c.conntrack.flows = try int(v, "conntrack.flows", 4...1 << 26) }
            if let v = q["tcp_timeout"] { c.conntrack.tcpTimeout = try int(v, "conntrack.tcp_timeout", 1...86400) }
            if let v = q["tcp_closing_timeout"] { c.conntrack.tcpClosingTimeout = try int(v, "conntrack.tcp_closing_timeout", 1...86400) }
            if let v = q["udp_timeout"] { c.conntrack.udpTimeout = try int(v, "conntrack.udp_timeout", 1...86400) }
        }
    }
}
