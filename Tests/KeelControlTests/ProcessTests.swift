import Foundation
import KeelAPI
import KeelStats
import XCTest

/// A real keel-control process on 127.0.0.1 with its store on disk.
final class ControlProcess {
    let dir: String
    var process: Process?
    var port = 0
    var log: String { dir + "/control.log" }
    var bin: URL { URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent() }
    var token: String {
        let text = (try? String(contentsOfFile: dir + "/data/tokens", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").first { !$0.hasPrefix("#") && $0.contains(" admin ") }.map { String($0.split(separator: " ")[2]) } ?? ""
    }
    var readToken: String {
        let text = (try? String(contentsOfFile: dir + "/data/tokens", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").first { !$0.hasPrefix("#") && $0.contains(" read ") }.map { String($0.split(separator: " ")[2]) } ?? ""
    }

    init(settings extra: String = "") throws {
        dir = NSTemporaryDirectory() + "keel-control-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try """
        listen: 127.0.0.1:0
        data_dir: \(dir)/data
        tables: /dev/shm/keel-test-\(dir.suffix(8)).tables
        stats: \(dir)/no.stats
        small_tables: true
        readers: 4
        \(extra)
        """.write(toFile: dir + "/control.yaml", atomically: true, encoding: .utf8)
    }

    /// Starts keel-control and waits for its "listening on" line (the port may change across restarts).
    func start() throws {
        // A new log per start (the previous one is kept as control.log.N).
        if FileManager.default.fileExists(atPath: log) { try? FileManager.default.moveItem(atPath: log, toPath: log + ".\(restarts)") }
        FileManager.default.createFile(atPath: log, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        let p = Process()
        p.executableURL = bin.appendingPathComponent("keel-control")
        p.arguments = ["serve", "--config", dir + "/control.yaml"] + (port != 0 ? ["--listen", "127.0.0.1:\(port)"] : [])
        p.standardOutput = h
        p.standardError = h
        try p.run()
        process = p
        let end = Date().addingTimeInterval(60)
        while Date() < end {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").last(where: { $0.hasPrefix("keel-control: listening on 127.0.0.1:") }),
               let p = Int(line.split(separator: ":").last!), p > 0 {
                port = p
                restarts += 1
                return
            }
            if !p.isRunning { throw NSError(domain: "keel-control exited: \(text)", code: 1) }
            usleep(20_000)
        }
        throw NSError(domain: "keel-control did not start (restart \(restarts), port \(port), running \(p.isRunning), files \((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")", code: 1)
    }
    var restarts = 0

    func kill9() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    func stop() -> Int32 {
        guard let p = process else { return 0 }
        kill(p.processIdentifier, SIGTERM)
        let end = Date().addingTimeInterval(10)
        while p.isRunning && Date() < end { usleep(10_000) }
        if p.isRunning { kill9(); return -1 }
        process = nil
        return p.terminationStatus
    }

    func cleanup() {
        _ = stop()
        try? FileManager.default.removeItem(atPath: "/dev/shm/keel-test-\(dir.suffix(8)).tables")
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Runs keelctl with this server's address and token; returns (exit code, stdout, stderr).
    @discardableResult
    func keelctl(_ args: [String], token: String? = nil, env extra: [String: String] = [:]) -> (Int32, String, String) {
        let p = Process()
        p.executableURL = bin.appendingPathComponent("keelctl")
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["KEEL_API"] = "http://127.0.0.1:\(port)"
        env["KEEL_TOKEN"] = token ?? self.token
        for (k, v) in extra { env[k] = v }
        p.environment = env
        let out = dir + "/keelctl-\(UUID().uuidString).out", err = out + ".err"
        FileManager.default.createFile(atPath: out, contents: nil)
        FileManager.default.createFile(atPath: err, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: out); try? FileManager.default.removeItem(atPath: err) }
        p.standardOutput = try? FileHandle(forWritingTo: URL(fileURLWithPath: out))
        p.standardError = try? FileHandle(forWritingTo: URL(fileURLWithPath: err))
        do { try p.run() } catch { return (-1, "", "\(error)") }
        p.waitUntilExit()
        return (p.terminationStatus, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "", (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
    }

    /// One HTTP request with curl-free plain sockets: (status, body); status 0 when the connection failed.
    func http(_ method: String, _ path: String, body: String? = nil, token: String? = nil) -> (Int, String) {
        var req = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        req.httpMethod = method
        req.timeoutInterval = 30
        req.setValue("Bearer \(token ?? self.token)", forHTTPHeaderField: "Authorization")
        if let body {
            req.httpBody = Data(body.utf8)
            req.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let sem = DispatchSemaphore(value: 0)
        let box = HTTPBox()
        URLSession.shared.dataTask(with: req) { data, response, _ in
            box.status = (response as? HTTPURLResponse)?.statusCode ?? 0
            box.body = data.map { String(decoding: $0, as: UTF8.self) } ?? ""
            sem.signal()
        }.resume()
        sem.wait()
        return (box.status, box.body)
    }
}

final class HTTPBox: @unchecked Sendable { var status = 0; var body = "" }

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

final class ProcessTests: XCTestCase {
    let portsAndVIP = """
    ports:
      - {name: p0, mac: "02:00:00:00:00:01", addresses: ["10.1.0.1/24"]}
      - {name: p1, mac: "02:00:00:00:00:02", addresses: ["10.2.0.1/24", "2001:db8:2::1/64"]}
    routes:
      - {prefix: 10.50.0.0/16, next_hops: [{gateway: 10.2.0.2}]}
    vips:
      - id: 1
        address: 203.0.113.10
        port: 80
        table_size: 251
        backends:
          - {id: 11, address: 10.2.0.11}
    """

    func testKeelctlAgainstARunningServer() throws {
        let c = try ControlProcess()
        defer { c.cleanup() }
        try c.start()
        let tokenMode = try FileManager.default.attributesOfItem(atPath: c.dir + "/data/tokens")[.posixPermissions] as? Int
        XCTAssertEqual(tokenMode, 0o600)
        let file = c.dir + "/config.yaml"
        try portsAndVIP.write(toFile: file, atomically: true, encoding: .utf8)

        var r = c.keelctl(["diff", "-f", file])
        XCTAssertEqual(r.0, 0, r.2)
        XCTAssertTrue(r.1.hasPrefix("+2 ports, +1 route, +1 vip, +1 backend"), r.1)
        r = c.keelctl(["apply", "-f", file, "--comment", "first"])
        XCTAssertEqual(r.0, 0, r.2)
        XCTAssertTrue(r.1.contains("revision 1, published in generation"), r.1)
        r = c.keelctl(["route", "add", "10.60.0.0/16", "--via", "10.2.0.2", "--via", "10.1.0.2"])
        XCTAssertEqual(r.0, 0, r.2)
        r = c.keelctl(["route", "list"])
        XCTAssertTrue(r.1.contains("10.60.0.0/16  10.2.0.2, 10.1.0.2"), r.1)
        r = c.keelctl(["backend", "add", "1", "--id", "12", "--address", "10.2.0.12", "--weight", "3"])
        XCTAssertEqual(r.0, 0, r.2)
        XCTAssertEqual(c.keelctl(["backend", "set-weight", "1", "12", "5"]).0, 0)
        XCTAssertEqual(c.keelctl(["backend", "drain", "1", "11"]).0, 0)
        r = c.keelctl(["backend", "list", "1", "-o", "json"])
        let backends = try JSONDecoder().decode([String: [[String: JSONValue]]].self, from: Data(r.1.utf8))["backends"] ?? []
        XCTAssertEqual(backends.map { $0["state"] }, [.string("drain"), .string("up")])
        XCTAssertEqual(backends.map { $0["weight"] }, [.number(1), .number(5)])
        r = c.keelctl(["neighbor", "add", "10.2.0.2", "--mac", "02:00:00:00:00:22", "--port", "p1"])
        XCTAssertEqual(r.0, 0, r.2)
        r = c.keelctl(["history", "-o", "yaml"])
        XCTAssertTrue(r.1.contains("comment: \"first\""), r.1)
        r = c.keelctl(["history"])
        XCTAssertEqual(r.1.split(separator: "\n").count, 1 + 6, r.1)

        // get-config | apply is a no-op; rollback to revision 1 restores the file's configuration.
        r = c.keelctl(["get-config"])
        try r.1.write(toFile: c.dir + "/exported.yaml", atomically: true, encoding: .utf8)
        r = c.keelctl(["apply", "-f", c.dir + "/exported.yaml"])
        XCTAssertTrue(r.1.contains("no change"), r.1)
        XCTAssertEqual(c.keelctl(["rollback", "1"]).0, 0)
        r = c.keelctl(["show-revision", "7"])
        XCTAssertTrue(r.1.hasPrefix("-1 route, -1 neighbor, ~1 backend, -1 backend"), r.1)

        // Exit codes: refused (1), authentication (4), unreachable (3), usage (64).
        r = c.keelctl(["route", "add", "10.70.0.0/16", "--via", "192.0.2.1"])
        XCTAssertEqual(r.0, 1)
        XCTAssertTrue(r.2.contains("route.next_hops[0].gateway"), r.2)
        r = c.keelctl(["route", "del", "10.71.0.0/16"])
        XCTAssertEqual(r.0, 1)
        XCTAssertEqual(c.keelctl(["route", "list"], token: "not-a-token-at-all-xx").0, 4)
        XCTAssertEqual(c.keelctl(["route", "add", "10.72.0.0/16", "--via", "10.2.0.2"], token: c.readToken).0, 4)
        XCTAssertEqual(c.keelctl(["route", "list"], env: ["KEEL_API": "http://127.0.0.1:1"]).0, 3)
        XCTAssertEqual(c.keelctl(["route", "add"]).0, 64)
        try "vips:\n  - {id: 1, adress: 203.0.113.1}\n".write(toFile: c.dir + "/bad.yaml", atomically: true, encoding: .utf8)
        r = c.keelctl(["apply", "-f", c.dir + "/bad.yaml"])
        XCTAssertEqual(r.0, 1)
        XCTAssertTrue(r.2.contains("vips[0].adress: unknown field"), r.2)
        // status: not healthy without a data plane (exit 3), but answers.
        r = c.keelctl(["status"])
        XCTAssertEqual(r.0, 3)
        XCTAssertTrue(r.1.contains("data plane: not running"), r.1)
        XCTAssertEqual(c.stop(), 0, "SIGTERM: clean exit")
    }

    /// The API on a Unix socket too (settings), and keelctl finding the API and
    /// token through keel-control's settings file alone.
    func testUnixSocketAndKeelctlFromTheSettingsFile() throws {
        let c = try ControlProcess(settings: "unix_socket: /tmp/keel-test-\(getpid()).sock")
        defer { c.cleanup(); unlink("/tmp/keel-test-\(getpid()).sock") }
        try c.start()
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.arguments = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", "/tmp/keel-test-\(getpid()).sock",
                          "-H", "Authorization: Bearer \(c.token)", "http://keel/v1/revisions"]
        let out = Pipe()
        curl.standardOutput = out
        try curl.run()
        curl.waitUntilExit()
        XCTAssertEqual(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self), "200")
        var mode = stat()
        XCTAssertEqual(stat("/tmp/keel-test-\(getpid()).sock", &mode), 0)
        XCTAssertEqual(mode.st_mode & 0o777, 0o660)
        // keelctl with neither KEEL_API nor KEEL_TOKEN: the settings file (with the bound port) tells both.
        let settings = try String(contentsOfFile: c.dir + "/control.yaml", encoding: .utf8)
            .replacingOccurrences(of: "listen: 127.0.0.1:0", with: "listen: 127.0.0.1:\(c.port)")
        try settings.write(toFile: c.dir + "/keelctl.yaml", atomically: true, encoding: .utf8)
        let r = c.keelctl(["history"], token: "", env: ["KEEL_API": "", "KEEL_CONFIG": c.dir + "/keelctl.yaml"])
        XCTAssertEqual(r.0, 0, r.2)
        XCTAssertTrue(r.1.hasPrefix("REV"), r.1)
    }

    func testTokenFileReadableByOthersIsRefused() throws {
        let c = try ControlProcess()
        defer { c.cleanup() }
        try c.start()
        XCTAssertEqual(c.stop(), 0)
        chmod(c.dir + "/data/tokens", 0o644)
        XCTAssertThrowsError(try c.start())
        XCTAssertTrue(((try? String(contentsOfFile: c.log, encoding: .utf8)) ?? "").contains("lets others read the tokens"))
    }

    func testBadSettingsFileStopsWithTheField() throws {
        let c = try ControlProcess(settings: "listn: 127.0.0.1:1")
        defer { c.cleanup() }
        XCTAssertThrowsError(try c.start())
        let log = (try? String(contentsOfFile: c.log, encoding: .utf8)) ?? ""
        XCTAssertTrue(log.contains("line 7: listn: unknown setting"), log)
    }

    /// kill -9 while a client writes: every write that got a 2xx is there after
    /// the restart, every write that got an error is not.
    func testKill9DuringWritesLosesNothingAcknowledged() throws {
        let c = try ControlProcess()
        defer { c.cleanup() }
        try c.start()
        XCTAssertEqual(c.http("PUT", "/v1/config", body: #"{"ports":[{"name":"p1","mac":"02:00:00:00:00:02","addresses":["10.2.0.1/24"]}]}"#).0, 200)
        var acknowledged: [String] = [], refused: [String] = [], unknown: [String] = []
        let total = 1000
        for i in 0..<total {
            // Every 7th write is invalid (a gateway no port reaches): it must be refused and leave no trace.
            let prefix = "10.\(100 + i / 250).\(i % 250).0/24"
            let gateway = i % 7 == 3 ? "192.0.2.1" : "10.2.0.2"
            let (status, _) = c.http("POST", "/v1/routes", body: #"{"prefix":"\#(prefix)","next_hops":[{"gateway":"\#(gateway)"}]}"#)
            switch status {
            case 200: acknowledged.append(prefix)
            case 0: unknown.append(prefix)
            default: refused.append(prefix)
            }
            if i == 400 || i == 700 {
                // Kill it while the next writes are on their way.
                let victim = c.process!.processIdentifier
                DispatchQueue.global().asyncAfter(deadline: .now() + 0.05) { kill(victim, SIGKILL) }
            }
            if c.process?.isRunning == false {
                c.process!.waitUntilExit()
                c.process = nil
                try c.start()
            }
        }
        XCTAssertEqual(c.restarts, 3, "killed twice, restarted twice")
        let (status, body) = c.http("GET", "/v1/routes?limit=10000")
        XCTAssertEqual(status, 200)
        let stored = Set((try JSONDecoder().decode([String: JSONValue].self, from: Data(body.utf8))["routes"].flatMap { v -> [String]? in
            if case .array(let a) = v { return a.compactMap { if case .object(let o) = $0, case .string(let p)? = o["prefix"] { return p }; return nil } }
            return nil
        }) ?? [])
        let lost = acknowledged.filter { !stored.contains($0) }
        XCTAssertEqual(lost, [], "acknowledged writes lost")
        XCTAssertEqual(refused.filter { stored.contains($0) }, [], "refused writes stored")
        XCTAssertEqual(refused.count, (0..<total).filter { $0 % 7 == 3 }.count - unknown.filter { p in
            let parts = p.split(separator: "."); let i = (Int(parts[1])! - 100) * 250 + Int(parts[2])!; return i % 7 == 3 }.count)
        XCTAssertLessThanOrEqual(unknown.count, 10, "only writes in flight at a kill are unanswered")
        print("kill -9 test: \(acknowledged.count) acknowledged (all kept), \(refused.count) refused (none kept), \(unknown.count) unanswered at the kills (\(unknown.filter { stored.contains($0) }.count) of them committed)")
        // Revisions are contiguous and each acknowledged write has its own.
        let (_, revs) = c.http("GET", "/v1/revisions?limit=1")
        XCTAssertTrue(revs.contains("\"id\":\(1 + stored.count)"), revs)
    }
}

/// The admin API under 100 concurrent clients, each on its own keep-alive
/// connection, all opened before any request: every answer correct (a client
/// reads back each route it wrote), writes serialised (one revision each, no
/// gap, no repeat), memory bounded.
final class ConcurrentClientTests: XCTestCase {
    func testHundredConcurrentClients() throws {
        let c = try ControlProcess()
        defer { c.cleanup() }
        try c.start()
        XCTAssertEqual(c.http("PUT", "/v1/config", body: #"{"ports":[{"name":"p1","mac":"02:00:00:00:00:02","addresses":["10.2.0.1/24"]}]}"#).0, 200)
        func rss() -> Int {
            let s = (try? String(contentsOfFile: "/proc/\(c.process!.processIdentifier)/status", encoding: .utf8)) ?? ""
            return Int(s.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }?.split(whereSeparator: \.isWhitespace)[1] ?? "") ?? -1
        }
        let script = c.dir + "/clients.py", result = c.dir + "/clients.json"
        try """
        import http.client, json, sys, threading, time
        port, token, clients, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        H = {'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'}
        ready = threading.Barrier(clients)
        out = {'revisions': [], 'errors': [], 'requests': 0, 'connected': 0}
        lock = threading.Lock()
        def client(i):
            conn = http.client.HTTPConnection('127.0.0.1', port, timeout=60); conn.connect()
            with lock: out['connected'] += 1
            ready.wait()
            def call(method, path, body=None):
                conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=H)
                r = conn.getresponse(); data = r.read()
                with lock: out['requests'] += 1
                return r.status, data
            for j in range(rounds):
                prefix = '10.%d.%d.0/24' % (100 + i // 2, (i % 2) * 100 + j)
                status, data = call('POST', '/v1/routes', {'prefix': prefix, 'next_hops': [{'gateway': '10.2.0.2'}]})
                if status != 200:
                    with lock: out['errors'].append('POST %s: %d %s' % (prefix, status, data[:200])); continue
                with lock: out['revisions'].append(json.loads(data)['revision'])
                status, data = call('GET', '/v1/routes/' + prefix)
                if status != 200 or json.loads(data).get('prefix') != prefix:
                    with lock: out['errors'].append('GET %s: %d %s' % (prefix, status, data[:200]))
                status, data = call('GET', '/v1/status' if j % 2 else '/v1/revisions?limit=5')
                if status != 200:
                    with lock: out['errors'].append('read: %d %s' % (status, data[:200]))
            conn.close()
        t0 = time.time()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads: t.start()
        for t in threads: t.join(120)
        out['seconds'] = time.time() - t0
        json.dump(out, open(sys.argv[5], 'w'))
        """.write(toFile: script, atomically: true, encoding: .utf8)
        let before = rss()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [script, String(c.port), c.token, "100", "10", result]
        try p.run()
        var peak = before
        let end = Date().addingTimeInterval(180)
        while p.isRunning && Date() < end { peak = max(peak, rss()); usleep(50_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        let after = rss()
        XCTAssertEqual(c.process?.isRunning, true, "keel-control died under 100 clients: \(((try? String(contentsOfFile: c.log, encoding: .utf8)) ?? "").suffix(3000))")
        let out = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: result)))) as? [String: Any] ?? [:]
        let revisions = (out["revisions"] as? [Int]) ?? []
        let errors = (out["errors"] as? [String]) ?? []
        XCTAssertEqual(out["connected"] as? Int, 100, "not every client connected")
        XCTAssertEqual(errors, [], "wrong or failed answers")
        XCTAssertEqual(revisions.count, 1000)
        // Serialised: revision 1 is the first PUT; the 1,000 writes are 2...1001, each once.
        XCTAssertEqual(revisions.sorted(), Array(2...1001), "writes not serialised into one revision each")
        let (status, body) = c.http("GET", "/v1/routes?limit=5000")
        XCTAssertEqual(status, 200)
        XCTAssertEqual(body.components(separatedBy: "\"prefix\"").count - 1, 1000, "routes stored")
        XCTAssertLessThan(peak - before, 128 * 1024, "keel-control's RSS grew by \(peak - before) KiB under 100 clients")
        print("100 concurrent clients: \(out["requests"] ?? 0) requests in \(String(format: "%.1f", out["seconds"] as? Double ?? 0)) s, \(errors.count) errors; revisions \(revisions.min() ?? 0)...\(revisions.max() ?? 0), \(Set(revisions).count) distinct; RSS \(before) KiB before, peak \(peak), after \(after)")
    }
}

/// schemathesis (from PyPI; Tests/run.sh installs it in /opt/keel-venv)
/// against a live keel-control: no server error, no status, content type or
/// body outside docs/openapi.yaml.
final class SchemathesisTests: XCTestCase {
    var repo: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path }

    func testSchemathesisFindsNothing() throws {
        let tool = ProcessInfo.processInfo.environment["KEEL_SCHEMATHESIS"] ?? "/opt/keel-venv/bin/schemathesis"
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: tool), "\(tool) missing: Tests/run.sh installs it (pip install schemathesis)")
        let c = try ControlProcess()
        defer { c.cleanup() }
        // The data plane's stats file, as keel-dataplane makes it (no data plane runs here).
        _ = try StatsFile.create(path: c.dir + "/no.stats", lcores: 2, portNames: ["p0", "p1"], neighborCapacity: 64, vips: 4, backendsPerVIP: 4)
        try c.start()
        // Something to read, change and delete.
        let seed = #"{"ports":[{"name":"p0","mac":"02:00:00:00:00:01","addresses":["10.1.0.1/24"]},{"name":"p1","mac":"02:00:00:00:00:02","addresses":["10.2.0.1/24","2001:db8:2::1/64"]}],"routes":[{"prefix":"10.50.0.0/16","next_hops":[{"gateway":"10.2.0.2"}]}],"neighbors":[{"address":"10.2.0.9","mac":"02:00:00:00:00:09","port":"p1"}],"vips":[{"id":1,"address":"203.0.113.10","port":80,"table_size":251,"backends":[{"id":11,"address":"10.2.0.11"}]}]}"#
        XCTAssertEqual(c.http("PUT", "/v1/config", body: seed).0, 200)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.currentDirectoryURL = URL(fileURLWithPath: c.dir)
        p.arguments = ["run", repo + "/docs/openapi.yaml", "--url", "http://127.0.0.1:\(c.port)", "-H", "Authorization: Bearer \(c.token)",
                       "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,refused_change_changes_nothing",
                       "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "40", "--seed", "1",
                       "--suppress-health-check", "filter_too_much", "--generation-database", "none", "--no-color"]
        // Tests/Schemathesis/keel_hooks.py: a refused write must leave the configuration and the revisions as they were.
        let hookStats = c.dir + "/hook-stats.json"
        p.environment = ProcessInfo.processInfo.environment.merging([
            "PYTHONPATH": repo + "/Tests/Schemathesis", "SCHEMATHESIS_HOOKS": "keel_hooks",
            "KEEL_URL": "http://127.0.0.1:\(c.port)", "KEEL_TOKEN": c.token, "KEEL_HOOK_STATS": hookStats,
        ]) { $1 }
        let out = c.dir + "/schemathesis.out"
        FileManager.default.createFile(atPath: out, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        p.standardOutput = h
        p.standardError = h
        try p.run()
        let end = Date().addingTimeInterval(900)
        while p.isRunning && Date() < end { usleep(100_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        let summary = text.components(separatedBy: "SUMMARY").last ?? text
        XCTAssertEqual(p.terminationStatus, 0, text.count > 20000 ? String(text.suffix(20000)) : text)
        XCTAssertTrue(summary.contains("Tested: 36"), summary) // every operation of docs/openapi.yaml
        print("schemathesis:" + summary)
        // The stateful phase's own lines: links found, scenarios run.
        let stateful = text.components(separatedBy: "\n").filter { $0.localizedCaseInsensitiveContains("stateful") || $0.contains("links") || $0.contains("scenario") }
        print("schemathesis stateful phase:\n" + stateful.joined(separator: "\n"))
        let checked = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: hookStats)))) as? [String: Int] ?? [:]
        XCTAssertGreaterThan(checked["refused_checked"] ?? 0, 100, "few refused writes were checked for changes: \(checked)")
        print("schemathesis refused writes checked to change nothing: \(checked)")
        XCTAssertEqual(c.stop(), 0, "keel-control survived schemathesis")
    }
}
