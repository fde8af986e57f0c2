import Foundation
import KeelAPI
import KeelCompiler
import KeelStats
import Logging
import ServiceLifecycle
import Synchronization

/// Announces the VIPs over BGP through BIRD (docs/scale-out.md).
///
/// Once a second: a VIP is announced while the appliance can serve it — the
/// data plane's heartbeat is fresh, the BGP section is not drained, and at
/// least one of the VIP's backends is `up` and not down by its health check.
/// The set becomes BIRD's configuration (static routes of the VIP addresses,
/// exported to the configured peers only); when the text changes it is
/// written (atomically) and BIRD is told to reload (`birdc configure`).
/// BIRD's sessions are read back with `birdc show protocols` for the status.
public final class Announcer: Service, Sendable {
    public struct Settings: Sendable, Equatable {
        /// Where BIRD reads its configuration (nil: compute the announcements for the status only).
        public var config: String?
        /// BIRD's control socket.
        public var socket: String
        public var birdc: String
        public init(config: String? = nil, socket: String = "/run/bird/bird.ctl", birdc: String = "birdc") {
            self.config = config; self.socket = socket; self.birdc = birdc
        }
    }

    /// What the status shows.
    public struct State: Sendable, Equatable {
        public var configured = false
        public var drained = false
        public var dataplaneFresh = false
        public var announced: [String] = []
        /// Whether BIRD has the current configuration (nil: no BIRD configured).
        public var applied: Bool?
        public var lastError: String?
        public var sessions: [Session] = []
    }
    public struct Session: Sendable, Equatable {
        public var name: String
        public var peer: String
        public var state: String
        public var info: String
        public var established: Bool { info.hasPrefix("Established") }
    }

    let store: Store
    let board: Board
    let statsPath: String?
    let settings: Settings
    let logger: Logger
    let state = Mutex(State())
    /// The configuration text BIRD was last told to load.
    let applied = Mutex<String?>(nil)

    public init(store: Store, board: Board, statsPath: String?, settings: Settings, logger: Logger) {
        self.store = store
        self.board = board
        self.statsPath = statsPath
        self.settings = settings
        self.logger = logger
    }

    public var current: State { state.withLock { $0 } }

    public func run() async throws {
        // A full round once a second; in between, the data plane's liveness
        // every 200 ms, and a round at once when it changes: a killed data
        // plane is withdrawn within 200 ms, not at the next full round (a
        // supervisor restarting it in a second could hide it from that).
        var last = DispatchTime.now().uptimeNanoseconds
        tick()
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .milliseconds(200))
            let now = DispatchTime.now().uptimeNanoseconds
            if now - last >= 1_000_000_000 || Announcer.dataplaneFresh(statsPath: statsPath) != current.dataplaneFresh {
                tick()
                last = now
            }
        }
        // Shutting down: keel-control going away does not stop the data plane,
        // so the announcements stay as they are (BIRD keeps them); a stopped
        // data plane is noticed by the next keel-control, or by BFD/hold time.
    }

    /// One round: what to announce, BIRD told if it changed, sessions read.
    public func tick() {
        let config = (try? store.configuration(kinds: [.bgp, .peer, .port, .vip, .backend])) ?? Configuration()
        let fresh = Announcer.dataplaneFresh(statsPath: statsPath)
        let health = board.allHealth.mapValues(\.healthy)
        let announce = Announcer.announced(config, health: health, dataplaneFresh: fresh)
        var s = State(configured: config.bgp != nil, drained: config.bgp?.drain ?? false, dataplaneFresh: fresh, announced: announce)
        let before = current
        if s.configured && before.dataplaneFresh != fresh {
            if fresh {
                logger.info("data plane running: announcing", metadata: ["announced": "\(announce.joined(separator: " "))"])
            } else if before.configured {
                logger.warning("data plane not running (heartbeat stale or process gone): announcements withdrawn",
                               metadata: ["withdrawn": "\(before.announced.joined(separator: " "))"])
            }
        }
        if let path = settings.config {
            let text = Announcer.birdConfig(config, announced: announce)
            if applied.withLock({ $0 }) != text {
                do {
                    try Announcer.writeAtomically(text, to: path)
                    let (rc, out) = Announcer.run(settings.birdc, ["-s", settings.socket, "configure"], timeout: 10)
                    guard rc == 0, !out.contains("rror") else { throw Failure("birdc configure: \(out.trimmingCharacters(in: .whitespacesAndNewlines))") }
                    applied.withLock { $0 = text }
                    logger.info("BIRD reconfigured", metadata: ["announced": "\(announce.joined(separator: " "))"])
                } catch {
                    s.lastError = "\(error)"
                    logger.warning("BIRD not reconfigured (retrying)", metadata: ["error": "\(error)"])
                }
            }
            s.applied = applied.withLock { $0 } == text
            let (rc, out) = Announcer.run(settings.birdc, ["-s", settings.socket, "show", "protocols", "all"], timeout: 5)
            if rc == 0 { s.sessions = Announcer.sessions(out) }
        }
        state.withLock { $0 = s }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ s: String) { description = s }
    }

    // MARK: pure parts (unit-tested)

    /// The VIP addresses to announce, sorted (each address once, whatever its ports).
    public static func announced(_ c: Configuration, health: [Int: Bool], dataplaneFresh: Bool) -> [String] {
        guard let bgp = c.bgp, !bgp.drain, dataplaneFresh else { return [] }
        var out = Set<String>()
        for v in c.vips where v.backends.contains(where: { $0.state == "up" && health[$0.id] != false }) {
            out.insert(v.address)
        }
        return out.sorted()
    }

    /// BIRD 2's configuration: the announced VIPs as static routes (never
    /// installed anywhere: there is no kernel protocol), exported to each peer
    /// of the same family; nothing imported.
    public static func birdConfig(_ c: Configuration, announced: [String]) -> String {
        guard let bgp = c.bgp else {
            // BIRD needs a router id; with no IPv4 port address it picks one from the interfaces.
            let id = BGPCheck.firstIPv4Address(c.ports).map { "router id \($0);\n" } ?? ""
            return "# Generated by keel-control: no BGP section in the configuration, nothing is announced.\n\(id)protocol device { }\n"
        }
        let id = BGPCheck.routerID(bgp, ports: c.ports) ?? "0.0.0.0"
        let v4 = announced.filter { !$0.contains(":") }, v6 = announced.filter { $0.contains(":") }
        var t = """
        # Generated by keel-control from its store; do not edit (it is rewritten
        # whenever what the appliance can serve changes).
        router id \(id);
        protocol device { }

        """
        if bgp.peers.contains(where: \.bfd) { t += "protocol bfd keel_bfd { }\n" }
        t += "protocol static keel_vips4 {\n    ipv4;\n" + v4.map { "    route \($0)/32 blackhole;\n" }.joined() + "}\n"
        t += "protocol static keel_vips6 {\n    ipv6;\n" + v6.map { "    route \($0)/128 blackhole;\n" }.joined() + "}\n"
        let keepalive = max(1, bgp.holdTime / 3)
        for (i, p) in bgp.peers.enumerated() {
            let six = p.address.contains(":")
            t += """
            protocol bgp peer\(i) {
                description "\(p.address)";
                local as \(bgp.localAS);
                neighbor \(p.address) as \(p.remoteAS);
                hold time \(bgp.holdTime);
                keepalive time \(keepalive);
                connect retry time 5;
                error wait time 1, 30;

            """
            if let pw = p.password { t += "    password \"\(pw)\";\n" }
            if p.bfd { t += "    bfd on;\n" }
            t += "    \(six ? "ipv6" : "ipv4") { import none; export where proto = \"\(six ? "keel_vips6" : "keel_vips4")\"; next hop self; };\n}\n"
        }
        return t
    }

    /// BGP sessions from `birdc show protocols all`.
    public static func sessions(_ text: String) -> [Session] {
        var out: [Session] = []
        var current: Session?
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if !line.hasPrefix(" "), f.count >= 4, f[1] == "BGP" {
                if let c = current { out.append(c) }
                // name proto table state since info...
                current = Session(name: String(f[0]), peer: "", state: String(f[3]), info: f.count > 5 ? f[5...].joined(separator: " ") : "")
            } else if !line.hasPrefix(" "), !f.isEmpty {
                if let c = current { out.append(c) }
                current = nil
            } else if current != nil, line.trimmingCharacters(in: .whitespaces).hasPrefix("Neighbor address:") {
                current!.peer = line.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces)
            } else if current != nil, line.trimmingCharacters(in: .whitespaces).hasPrefix("Description:") {
                if current!.peer.isEmpty { current!.peer = line.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces) }
            }
        }
        if let c = current { out.append(c) }
        return out
    }

    static func dataplaneFresh(statsPath: String?) -> Bool {
        DataplaneLiveness.read(statsPath: statsPath)?.running ?? false
    }

    static func writeAtomically(_ text: String, to path: String) throws {
        let tmp = path + ".keel-new"
        try text.write(toFile: tmp, atomically: false, encoding: .utf8)
        guard rename(tmp, path) == 0 else { throw Failure("\(path): cannot replace: \(String(cString: strerror(errno)))") }
    }

    /// Runs a short command, its output collected; -1 when it cannot start or takes longer than `timeout`.
    static func run(_ command: String, _ args: [String], timeout: Double) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: command.hasPrefix("/") ? command : "/usr/bin/env")
        p.arguments = command.hasPrefix("/") ? args : [command] + args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { return (-1, "\(command): \(error)") }
        // A BIRD that does not answer must not stop the announcer: the command is ended after `timeout`.
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout) { if p.isRunning { p.terminate() } }
        // Read to the end (a full pipe would block the child).
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// The load-balancing fingerprint of the current configuration: a hash of the
/// VIPs and their backends in the store's canonical JSON — everything that
/// decides which backend a flow gets (appliances of one fleet differ in their
/// ports, routes and peers, never in this). Equal fingerprints across a fleet:
/// the same backend for the same flow everywhere. FNV-1a, 64 bits: for
/// comparing at a glance, not a security check. Cached per revision.
public final class Fingerprints: Sendable {
    let cache = Mutex<(revision: Int64, value: String)?>(nil)

    public init() {}

    public func of(_ store: Store) throws -> String {
        let rev = try store.latestRevision()
        if let c = cache.withLock({ $0 }), c.revision == rev { return c.value }
        let value = Fingerprints.compute(try store.configuration(kinds: [.vip, .backend]).vips)
        cache.withLock { $0 = (rev, value) }
        return value
    }

    public static func compute(_ vips: [VIP]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for v in vips.sorted(by: { $0.id < $1.id }) {
            for byte in ((try? Body.encode(v)) ?? "").utf8 {
                h ^= UInt64(byte)
                h = h &* 0x0000_0100_0000_01B3
            }
            h ^= 0x0A
            h = h &* 0x0000_0100_0000_01B3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
