import Foundation
import KeelTables
import Yams

/// keel-control's own settings (Config/control.yaml). Routes and VIPs are not
/// here: they live in the store and change through the API.
public struct ControlSettings: Equatable, Sendable {
    /// Admin API address. Loopback unless the operator writes another.
    public var host = "127.0.0.1"
    /// 0: any free port (tests; the bound port is printed).
    public var port = 8440
    /// Also serve the API on this Unix socket (mode 0660).
    public var unixSocket: String?
    /// The store (keel.db) and the token file (tokens) live here.
    public var dataDir = "/var/lib/keel"
    public var tables = "/dev/shm/keel.tables"
    public var stats = "/dev/shm/keel.stats"
    /// Reader lines in a new tables file: the data plane's lcores plus its main lcore.
    public var readers = 16
    /// Table maxima for a new tables file (`small_tables: true` gives
    /// SnapshotLimits.small, for labs and tests: less memory).
    public var limits = SnapshotLimits()
    /// Applied as the first revision when the store is empty.
    public var initial: String?
    public var logLevel = "info"
    /// Largest API request body, in MiB.
    public var maxBodyMiB = 256
    /// BIRD (BGP announcements of the VIPs): the configuration file keel-control
    /// writes (nil: none is written), BIRD's control socket, and birdc.
    public var birdConfig: String?
    public var birdSocket = "/run/bird/bird.ctl"
    public var birdc = "birdc"

    public init() {}

    public var databasePath: String { dataDir + "/keel.db" }
    public var tokensPath: String { dataDir + "/tokens" }

    public static func load(path: String) throws -> ControlSettings {
        let (root, r) = try composeSettings(path: path)
        return try r.control(root)
    }

    public static func parse(_ text: String, path: String = "<config>") throws -> ControlSettings {
        let (root, r) = try composeSettings(text: text, path: path)
        return try r.control(root)
    }

    /// keel-control's settings from `path`: its own file (Config/control.yaml)
    /// or the appliance's (Config/keel.yaml), which is checked whole.
    public static func loadAny(path: String) throws -> ControlSettings {
        var (root, r) = try composeSettings(path: path)
        if ApplianceSettings.isAppliance(root) { return try r.appliance(root).control }
        return try r.control(root)
    }
}

extension Reader {
    func control(_ root: Node) throws -> ControlSettings {
        let m = try mapping(root, "", allowed: ["listen", "unix_socket", "data_dir", "tables", "stats", "readers",
                                                 "small_tables", "initial", "log_level", "max_body_mib", "bird"])
        var s = ControlSettings()
        if let n = m["listen"] { (s.host, s.port) = try listen(n, "listen") }
        if let n = m["unix_socket"] { s.unixSocket = try string(n, "unix_socket") }
        if let n = m["data_dir"] { s.dataDir = try string(n, "data_dir") }
        if let n = m["tables"] { s.tables = try string(n, "tables") }
        if let n = m["stats"] { s.stats = try string(n, "stats") }
        if let n = m["readers"] { s.readers = try int(n, "readers", 1...64) }
        if let n = m["small_tables"], try bool(n, "small_tables") { s.limits = .small }
        if let n = m["initial"] { s.initial = try string(n, "initial") }
        if let n = m["log_level"] { s.logLevel = try logLevel(n, "log_level") }
        if let n = m["max_body_mib"] { s.maxBodyMiB = try int(n, "max_body_mib", 1...4096) }
        if let n = m["bird"] { try bird(n, into: &s) }
        return s
    }

    /// bird: {config, socket, birdc}
    func bird(_ n: Node, into s: inout ControlSettings) throws {
        let q = try mapping(n, "bird", allowed: ["config", "socket", "birdc"])
        if let v = q["config"] { s.birdConfig = try string(v, "bird.config") }
        if let v = q["socket"] { s.birdSocket = try string(v, "bird.socket") }
        if let v = q["birdc"] { s.birdc = try string(v, "bird.birdc") }
    }

    /// host:port or [v6]:port.
    func listen(_ n: Node, _ field: String) throws -> (String, Int) {
        let v = try string(n, field)
        guard let colon = v.lastIndex(of: ":"), let port = Int(v[v.index(after: colon)...]), (0...65535).contains(port) else {
            throw fail(n, field, "expected host:port (for example 127.0.0.1:8440 or [::1]:8440)")
        }
        var host = String(v[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw fail(n, field, "no host before the port") }
        return (host, port)
    }

    func logLevel(_ n: Node, _ field: String) throws -> String {
        let v = try string(n, field)
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(v) else {
            throw fail(n, field, "\"\(v)\" must be trace, debug, info, notice, warning, error or critical")
        }
        return v
    }
}
