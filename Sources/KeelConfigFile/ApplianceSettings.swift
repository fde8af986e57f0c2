import Foundation
import KeelTables
import Yams

/// The appliance's one settings file (Config/keel.yaml, /etc/keel/keel.yaml):
/// keel-nics, keel-control and keel-dataplane each read all of it, so a
/// mistake anywhere stops every service with the line and field named.
/// It holds keel-dataplane's sections as they are in dataplane.yaml, the
/// paths both processes share once, and keel-control's settings under `api`
/// and a few top-level keys.
public struct ApplianceSettings: Equatable, Sendable {
    public var dataplane: DataPlaneConfig
    public var control: ControlSettings
    /// The kernel driver keel-nics binds the data NICs to.
    public var nicDriver = "uio_pci_generic"
    /// 2 MiB pages reserved at boot, and where hugetlbfs is mounted.
    public var hugepages = 640
    public var hugepageMount = "/dev/hugepages"

    public static let drivers = ["vfio-pci", "uio_pci_generic", "igb_uio"]

    /// An appliance file is told apart from the per-process files by its `api` or `nics` section.
    public static func isAppliance(_ root: Node) -> Bool {
        guard let m = root.mapping else { return false }
        return m.keys.contains { $0.string == "api" || $0.string == "nics" || $0.string == "hugepages" }
    }

    public static func load(path: String) throws -> ApplianceSettings {
        var (root, r) = try composeSettings(path: path)
        return try r.appliance(root)
    }

    public static func parse(_ text: String, path: String = "<config>") throws -> ApplianceSettings {
        var (root, r) = try composeSettings(text: text, path: path)
        return try r.appliance(root)
    }
}

extension Reader {
    mutating func appliance(_ root: Node) throws -> ApplianceSettings {
        let own: Set<String> = ["nics", "hugepages", "tables", "stats", "api", "data_dir", "initial", "log_level", "bird"]
        let m = try mapping(root, "", allowed: Reader.dataPlaneSections.union(own))
        var control = ControlSettings()
        var tablesPath = "/dev/hugepages/keel.tables"
        if let n = m["tables"] {
            let t = try mapping(n, "tables", allowed: ["file", "ipv4_tbl8_groups", "ipv6_groups", "next_hop_groups", "ecmp_ways",
                                                       "neighbors", "vips", "backends_per_vip", "maglev_max_size"])
            if let v = t["file"] { tablesPath = try string(v, "tables.file") }
            var l = SnapshotLimits()
            if let v = t["ipv4_tbl8_groups"] { l.ipv4Groups = try int(v, "tables.ipv4_tbl8_groups", 16...1 << 20) }
            if let v = t["ipv6_groups"] { l.ipv6Groups = try int(v, "tables.ipv6_groups", 16...1 << 22) }
            if let v = t["next_hop_groups"] { l.nextHopGroups = try int(v, "tables.next_hop_groups", 16...1 << 20) }
            if let v = t["ecmp_ways"] { l.ecmpWays = try int(v, "tables.ecmp_ways", 1...64) }
            if let v = t["neighbors"] { l.neighbors = try int(v, "tables.neighbors", 16...1 << 20) }
            if let v = t["vips"] { l.vips = try int(v, "tables.vips", 1...4096) }
            if let v = t["backends_per_vip"] { l.backendsPerVIP = try int(v, "tables.backends_per_vip", 1...65536) }
            if let v = t["maglev_max_size"] {
                l.maglevMaxSize = try int(v, "tables.maglev_max_size", 7...4_000_037)
                guard Maglev.isPrime(l.maglevMaxSize) else { throw fail(v, "tables.maglev_max_size", "\(l.maglevMaxSize) is not prime") }
            }
            control.limits = l
        }
        var dp = DataPlaneConfig(tables: tablesPath, ports: [])
        if let n = m["stats"] { dp.stats = try string(n, "stats") }
        try dataPlaneSections(m, root, into: &dp)
        for (i, p) in dp.ports.enumerated() where p.interface == nil && !p.device.hasPrefix("net_") && !Reader.isPCIAddress(p.device) {
            throw fail(m["ports"]!, "ports[\(i)].device", "\"\(p.device)\" is not a PCI address (like 0000:00:04.0) or a virtual device (net_...)")
        }
        var a = ApplianceSettings(dataplane: dp, control: control)
        if let n = m["nics"] {
            let q = try mapping(n, "nics", allowed: ["driver"])
            if let v = q["driver"] {
                let d = try string(v, "nics.driver")
                guard ApplianceSettings.drivers.contains(d) else {
                    throw fail(v, "nics.driver", "\"\(d)\" must be one of \(ApplianceSettings.drivers.joined(separator: ", "))")
                }
                a.nicDriver = d
            }
        }
        if let n = m["hugepages"] {
            let q = try mapping(n, "hugepages", allowed: ["pages", "mount"])
            if let v = q["pages"] { a.hugepages = try int(v, "hugepages.pages", 0...1 << 20) }
            if let v = q["mount"] { a.hugepageMount = try string(v, "hugepages.mount") }
        }
        // keel-control: the same paths as the data plane, reader lines for every lcore (and room to add some).
        a.control.tables = dp.tables
        a.control.stats = dp.stats
        a.control.readers = max(16, 1 + dp.packetLcores.count)
        if let n = m["api"] {
            let q = try mapping(n, "api", allowed: ["listen", "unix_socket", "max_body_mib"])
            if let v = q["listen"] { (a.control.host, a.control.port) = try listen(v, "api.listen") }
            if let v = q["unix_socket"] { a.control.unixSocket = try string(v, "api.unix_socket") }
            if let v = q["max_body_mib"] { a.control.maxBodyMiB = try int(v, "api.max_body_mib", 1...4096) }
        }
        if let n = m["data_dir"] { a.control.dataDir = try string(n, "data_dir") }
        if let n = m["initial"] { a.control.initial = try string(n, "initial") }
        if let n = m["log_level"] { a.control.logLevel = try logLevel(n, "log_level") }
        if let n = m["bird"] { try bird(n, into: &a.control) }
        return a
    }

    static func isPCIAddress(_ s: String) -> Bool {
        // domain:bus:device.function, hexadecimal: 0000:00:04.0
        let hex = Set("0123456789abcdefABCDEF")
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[0].allSatisfy(hex.contains), parts[1].allSatisfy(hex.contains) else { return false }
        let df = parts[2].split(separator: ".", omittingEmptySubsequences: false)
        return df.count == 2 && df[0].count == 2 && df[0].allSatisfy(hex.contains) && df[1].count == 1 && ("0"..."7").contains(String(df[1]))
    }
}
