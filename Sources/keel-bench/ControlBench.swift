import ArgumentParser
import Atomics
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import KeelAPI
import KeelTables
import KeelTestData

/// `keel-bench control`: a real keel-control process (its store on disk, its
/// API on a socket) with the full table loaded through the API, then
/// one-route changes timed from the request to the moment a reader of the
/// tables file (the same acceptor and lcore reader code as the data plane's
/// lcores, spinning like an lcore) forwards by the new route.
struct ControlBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control",
        abstract: "keel-control: load the full table through the API; request-to-forwarding time of one-route changes.")

    @Option(help: "The full table (gzip, one CIDR a line).") var table = FullTable.defaultPath()
    @Option(help: "One-route changes to time.") var changes = 1000
    @Option(help: "Use only the first N IPv4 and N/5 IPv6 prefixes (default: the whole table).") var routes: Int?
    @Option(help: "Directory for the store (default: a new one in the temporary directory; the tables file goes to /dev/shm).") var directory: String?
    @Flag(help: "Print one JSON object instead of tables.") var json = false

    func percentile(_ xs: [Double], _ p: Double) -> Double {
        let s = xs.sorted()
        return s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count - 1) * p))]
    }

    func run() throws {
        var data = try FullTable.load(path: table)
        if let routes {
            data.v4 = Array(data.v4.prefix(routes))
            data.v6 = Array(data.v6.prefix(routes / 5))
        }
        // The store on disk (a real file system, fsync on commit), the tables file in /dev/shm.
        let dir = directory ?? NSTemporaryDirectory() + "keel-bench-control-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tables = "/dev/shm/keel-bench-control-\(getpid()).tables"
        defer { if directory == nil { try? FileManager.default.removeItem(atPath: dir) }; unlink(tables) }
        try """
        listen: 127.0.0.1:0
        data_dir: \(dir)/data
        tables: \(tables)
        stats: \(dir)/none.stats
        readers: 4
        log_level: \(ProcessInfo.processInfo.environment["KEEL_LOG_LEVEL"] ?? "warning")
        """.write(toFile: dir + "/control.yaml", atomically: true, encoding: .utf8)
        let server = try ControlServerProcess(binary: URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("keel-control").path, config: dir + "/control.yaml", log: dir + "/control.log")
        defer { server.stop() }
        let api = APIClient(base: "http://127.0.0.1:\(server.port)", token: server.adminToken(dataDir: dir + "/data"))

        // The configuration: two ports; 64 gateways by prefix index (docs/performance.md's rule).
        var config = Configuration(ports: [
            Port(name: "p0", mac: "02:00:00:00:00:01", addresses: ["10.1.0.1/24", "2001:db8:1::1/64"]),
            Port(name: "p1", mac: "02:00:00:00:00:02", addresses: ["10.2.0.1/16", "2001:db8:2::1/64"]),
        ])
        config.routes.reserveCapacity(data.v4.count + data.v6.count)
        for (i, r) in data.v4.enumerated() where r.prefix.description != "10.2.0.0/16" {
            config.routes.append(Route(prefix: r.prefix.description, nextHops: [NextHop(gateway: "10.2.\(i % 64).2")]))
        }
        for (i, r) in data.v6.enumerated() {
            config.routes.append(Route(prefix: r.prefix.description, nextHops: [NextHop(gateway: "2001:db8:2::\(i % 64 + 2)")]))
        }
        var t0 = now()
        let body = try JSONEncoder().encode(config)
        let encodeMs = Double(now() - t0) / 1e6
        t0 = now()
        let load = try api.send("PUT", "/v1/config", body)
        let loadS = Double(now() - t0) / 1e9
        guard load.status == 200 else { throw ValidationError("loading the table: HTTP \(load.status) \(String(decoding: load.body.prefix(500), as: UTF8.self))") }

        // A reader like a data-plane lcore: acceptor (verifies each new snapshot) + lcore reader, spinning.
        let file = try TablesFile.open(path: tables)
        let watcher = Watcher(file: file)
        let thread = Thread { watcher.loop() }
        thread.start()
        defer { watcher.stop.store(true, ordering: .relaxed); while !watcher.done.load(ordering: .acquiring) { usleep(1000) } }
        while watcher.generation.load(ordering: .acquiring) < 1 { usleep(1000) }

        // Fresh /32s the table does not route (so "forwarding by the new route" is a lookup that starts to hit).
        var targets: [UInt32] = []
        var rng = SplitMix64(seed: 99)
        let acc = SnapshotAcceptor(file: file)
        _ = acc.poll()
        var probe = LcoreReader(file: file, line: 3, source: acc.accepted)
        probe.online()
        while targets.count < changes {
            let a = UInt32(truncatingIfNeeded: rng.next()) | 0x0100_0000
            if probe.snapshot.ipv4.lookup(a) == LPMEntry.noRoute && !targets.contains(a) { targets.append(a) }
        }
        probe.offline()

        var forwardUs: [Double] = [], responseUs: [Double] = []
        var missed = 0
        for (i, a) in targets.enumerated() {
            let prefix = IPv4Prefix.format(a) + "/32"
            let route = try JSONEncoder().encode(Route(prefix: prefix, nextHops: [NextHop(gateway: "10.2.\(i % 64).9")]))
            watcher.seenAt.store(0, ordering: .relaxed)
            watcher.target.store(UInt64(a), ordering: .releasing)
            let start = now()
            let r = try api.send("POST", "/v1/routes", route)
            let answered = now()
            guard r.status == 200 else { throw ValidationError("route \(prefix): HTTP \(r.status)") }
            let end = answered + 2_000_000_000
            var seen: UInt64 = 0
            while seen == 0 && now() < end { seen = watcher.seenAt.load(ordering: .acquiring) }
            watcher.target.store(0, ordering: .releasing)
            if seen == 0 { missed += 1; continue }
            forwardUs.append(Double(seen - start) / 1e3)
            responseUs.append(Double(answered - start) / 1e3)
        }
        let status = try api.send("GET", "/v1/revisions?limit=1", nil)
        let result: [String: Any] = [
            "command": "control", "routes": config.routes.count, "request_mb": Double(body.count) / 1e6,
            "client_encode_ms": encodeMs, "full_table_load_s": loadS,
            "changes": changes, "missed": missed,
            "forwarding_ms_p50": percentile(forwardUs, 0.5) / 1e3, "forwarding_ms_p99": percentile(forwardUs, 0.99) / 1e3,
            "forwarding_ms_max": (forwardUs.max() ?? 0) / 1e3,
            "response_ms_p50": percentile(responseUs, 0.5) / 1e3, "response_ms_p99": percentile(responseUs, 0.99) / 1e3,
            "revisions": (try? JSONSerialization.jsonObject(with: status.body) as? [String: Any])
                .flatMap { ($0["revisions"] as? [[String: Any]])?.first?["id"] as? Int } ?? 0,
        ]
        if json {
            print(jsonString(result))
            return
        }
        var t = TextTable(header: ["figure", "value"])
        t.add(["routes loaded through PUT /v1/config", "\(config.routes.count) (\(fmt(Double(body.count) / 1e6, 1)) MB of JSON)"])
        t.add(["full table load (request to answer: decoded, validated, stored, published)", fmt(loadS, 2) + " s"])
        t.add(["one-route change, request to forwarding, p50", fmt(percentile(forwardUs, 0.5) / 1e3, 2) + " ms"])
        t.add(["one-route change, request to forwarding, p99", fmt(percentile(forwardUs, 0.99) / 1e3, 2) + " ms"])
        t.add(["one-route change, request to answer, p50", fmt(percentile(responseUs, 0.5) / 1e3, 2) + " ms"])
        t.add(["one-route change, request to answer, p99", fmt(percentile(responseUs, 0.99) / 1e3, 2) + " ms"])
        t.add(["changes not seen within 2 s", "\(missed)"])
        print("keel-control: full table through the API, then \(changes) one-route changes\n" + t.render())
    }
}

/// Spins like a data-plane lcore: accepts new snapshots, switches, and stamps
/// the first moment the watched address has a route.
final class Watcher: @unchecked Sendable {
    let file: TablesFile
    let target = ManagedAtomic<UInt64>(0)
    let seenAt = ManagedAtomic<UInt64>(0)
    let generation = ManagedAtomic<UInt64>(0)
    let stop = ManagedAtomic<Bool>(false)
    let done = ManagedAtomic<Bool>(false)
    init(file: TablesFile) { self.file = file }

    func loop() {
        let acceptor = SnapshotAcceptor(file: file)
        var reader = LcoreReader(file: file, line: 2, source: acceptor.accepted)
        _ = acceptor.poll()
        reader.online()
        while !stop.load(ordering: .relaxed) {
            _ = acceptor.poll()
            _ = reader.refresh()
            generation.store(reader.generation, ordering: .releasing)
            let t = target.load(ordering: .acquiring)
            if t != 0 && seenAt.load(ordering: .relaxed) == 0 && reader.snapshot.ipv4.lookup(UInt32(t)) != LPMEntry.noRoute {
                seenAt.store(now(), ordering: .releasing)
            }
        }
        reader.offline()
        done.store(true, ordering: .releasing)
    }
}

/// keel-control started for the benchmark.
final class ControlServerProcess {
    let process = Process()
    var port = 0

    init(binary: String, config: String, log: String) throws {
        FileManager.default.createFile(atPath: log, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--config", config]
        process.standardOutput = h
        process.standardError = h
        try process.run()
        let end = Date().addingTimeInterval(60)
        while Date() < end {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("keel-control: listening on 127.0.0.1:") }),
               let p = Int(line.split(separator: ":").last ?? "") {
                port = p
                return
            }
            guard process.isRunning else { throw ValidationError("keel-control exited: \(text)") }
            usleep(20_000)
        }
        throw ValidationError("keel-control did not start")
    }

    func adminToken(dataDir: String) -> String {
        let text = (try? String(contentsOfFile: dataDir + "/tokens", encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let f = line.split(separator: " ")
            if f.count == 3 && f[1] == "admin" { return String(f[2]) }
        }
        return ""
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}

/// Plain blocking HTTP through URLSession.
struct APIClient {
    let base: String
    let token: String

    func send(_ method: String, _ path: String, _ body: Data?) throws -> (status: Int, body: Data) {
        var r = URLRequest(url: URL(string: base + path)!)
        r.httpMethod = method
        r.timeoutInterval = 600
        r.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        if let body {
            r.httpBody = body
            r.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let box = ReplyBox()
        let sem = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: r) { data, response, error in
            box.status = (response as? HTTPURLResponse)?.statusCode ?? 0
            box.body = data ?? Data(String(describing: error).utf8)
            sem.signal()
        }.resume()
        sem.wait()
        return (box.status, box.body)
    }
}

final class ReplyBox: @unchecked Sendable {
    var status = 0
    var body = Data()
}
