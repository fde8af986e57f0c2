import Foundation
import XCTest
import KeelTables

/// End to end: Appliance/lab/lab.sh builds a lab of network namespaces (the
/// Linux kernel on every host) and starts the real keel-dataplane on af_packet
/// ports; real ping, traceroute, curl, iperf3 and TCP go through it.
final class LabTests: XCTestCase {
    var lab = ""
    var repo: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path }
    var productsDirectory: URL { URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent() }

    /// Runs a command line; returns (status, stdout+stderr).
    @discardableResult
    func sh(_ command: String, timeout: Double = 60) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        // closefds: Foundation's Process watches a socket its child inherits; a
        // background process must not keep it, or the wait never ends.
        p.arguments = ["-c", "closefds() { for fd in $(ls /proc/$BASHPID/fd); do [ \"$fd\" -gt 2 ] && eval \"exec $fd>&-\"; done; }; " + command]
        var env = ProcessInfo.processInfo.environment
        env["LAB"] = lab
        env["KEEL_BIN"] = productsDirectory.path
        p.environment = env
        let out = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("keel-lab-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out) }
        guard let h = try? FileHandle(forWritingTo: out) else { return (-1, "") }
        p.standardOutput = h
        p.standardError = h
        do { try p.run() } catch { return (-1, "\(error)") }
        let end = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < end { usleep(20_000) }
        if p.isRunning { kill(-p.processIdentifier, SIGKILL); p.terminate(); p.waitUntilExit() }
        try? h.close()
        return (p.isRunning ? -1 : p.terminationStatus, (try? String(contentsOf: out, encoding: .utf8)) ?? "")
    }

    func inNS(_ ns: String, _ command: String, timeout: Double = 60) -> (Int32, String) {
        sh("ip netns exec \(lab)-\(ns) \(command)", timeout: timeout)
    }

    /// Starts a Python script in a namespace in the background (killed by `lab.sh down`).
    func background(_ ns: String, python: String, _ args: [String] = []) {
        let path = NSTemporaryDirectory() + "keel-lab-\(lab)-\(UUID().uuidString).py"
        try? python.write(toFile: path, atomically: true, encoding: .utf8)
        sh("( closefds; exec ip netns exec \(lab)-\(ns) python3 \(path) \(args.joined(separator: " ")) </dev/null >/dev/null 2>&1 ) &")
    }

    func waitListening(_ ns: String, _ port: Int) {
        sh("for i in $(seq 1 100); do ip netns exec \(lab)-\(ns) ss -ltn | grep -q ':\(port) ' && break; sleep 0.1; done")
    }

    override func setUp() {
        lab = "kl\(getpid() % 10000)"
    }

    func testRoutingRealTrafficInANamespaceLab() throws {
        let script = "\(repo)/Appliance/lab/lab.sh"
        let up = sh("bash \(script) up", timeout: 120)
        defer {
            if (testRun?.failureCount ?? 0) > 0 {
                print("--- data plane log:\n" + ((try? String(contentsOfFile: "/run/keel-lab-\(lab)/dataplane.log", encoding: .utf8)) ?? "none"))
                print(sh("bash \(script) stats; ps aux | grep keel-dataplane | grep -v grep").1)
            }
            let down = sh("bash \(script) down", timeout: 60)
            XCTAssertEqual(down.0, 0, down.1)
            XCTAssertFalse(sh("ip netns list").1.contains("\(lab)-"), "namespaces left behind")
        }
        XCTAssertEqual(up.0, 0, up.1)
        guard up.0 == 0 else { return }
        let log = "/run/keel-lab-\(lab)/dataplane.log"

        // Ping both ways through the router, IPv4 and IPv6, and the router's own addresses.
        for (ns, target) in [("client", "10.2.0.2"), ("client", "10.3.0.2"), ("server1", "10.1.0.2"), ("server2", "2001:db8:1::2"),
                             ("client", "2001:db8:2::2"), ("client", "10.1.0.1"), ("client", "2001:db8:1::1"), ("server1", "10.2.0.1")] {
            let r = inNS(ns, "ping -c 3 -i 0.2 -W 2 \(target)")
            XCTAssertEqual(r.0, 0, "ping \(target) from \(ns): \(r.1)")
            XCTAssertTrue(r.1.contains("3 received"), r.1)
            XCTAssertFalse(r.1.contains("DUP"), "duplicate replies: \(r.1)")
            if target.hasSuffix("::2") || target.hasSuffix(".0.2") { XCTAssertTrue(r.1.contains("ttl=63"), "one router hop: \(r.1)") }
        }

        // traceroute names the router as the first hop (ICMP time exceeded from the data plane).
        let tr = inNS("client", "traceroute -n -q 1 -w 2 -m 4 10.3.0.2")
        XCTAssertEqual(tr.0, 0, tr.1)
        XCTAssertTrue(tr.1.contains(" 1  10.1.0.1 "), tr.1)
        XCTAssertTrue(tr.1.contains(" 2  10.3.0.2 "), tr.1)
        let tr6 = inNS("client", "traceroute -6 -n -q 1 -w 2 -m 4 2001:db8:2::2")
        XCTAssertTrue(tr6.1.contains(" 1  2001:db8:1::1 "), tr6.1)

        // A large HTTP transfer through the router, checked byte for byte.
        let file = "/tmp/keel-lab-\(lab).bin"
        XCTAssertEqual(sh("head -c 30000000 /dev/urandom > \(file)").0, 0)
        defer { try? FileManager.default.removeItem(atPath: file); try? FileManager.default.removeItem(atPath: file + ".got") }
        background("server1", python: """
        import http.server, socketserver, os
        os.chdir('/tmp'); socketserver.TCPServer.allow_reuse_address = True
        socketserver.TCPServer(('10.2.0.2', 8080), http.server.SimpleHTTPRequestHandler).serve_forever()
        """)
        waitListening("server1", 8080)
        let curl = inNS("client", "curl -sS --max-time 60 -o \(file).got -w '%{http_code} %{size_download}' http://10.2.0.2:8080/keel-lab-\(lab).bin", timeout: 90)
        XCTAssertEqual(curl.1, "200 30000000", curl.1)
        XCTAssertEqual(sh("cmp \(file) \(file).got").0, 0, "the file came through changed")

        // iperf3 for a few seconds.
        sh("( closefds; exec ip netns exec \(lab)-server2 iperf3 -s -1 </dev/null >/dev/null 2>&1 ) &")
        waitListening("server2", 5201)
        let ip = inNS("client", "iperf3 -c 10.3.0.2 -t 3 -J", timeout: 60)
        XCTAssertEqual(ip.0, 0, ip.1)
        if let d = try? JSONSerialization.jsonObject(with: Data(ip.1.utf8)) as? [String: Any],
           let end = d["end"] as? [String: Any], let recv = end["sum_received"] as? [String: Any],
           let bps = recv["bits_per_second"] as? Double {
            XCTAssertGreaterThan(bps, 10e6, "iperf3 throughput")
            print("iperf3 through the lab router: \(Int(bps / 1e6)) Mbit/s")
        } else { XCTFail("iperf3 output: \(ip.1)") }

        // ECMP: 198.51.100.0/24 has two equal next hops; each server answers with its name.
        for s in [1, 2] {
            background("server\(s)", python: """
            import socket
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('198.51.100.1', 7000)); s.listen(64)
            while True:
                c, _ = s.accept(); c.sendall(b'server\(s)'); c.close()
            """)
            waitListening("server\(s)", 7000)
        }
        let flows = inNS("client", """
        python3 -c "
        import socket
        for i in range(40):
            s = socket.create_connection(('198.51.100.1', 7000), timeout=3); print(s.recv(16).decode()); s.close()"
        """)
        XCTAssertEqual(flows.0, 0, flows.1)
        let one = flows.1.components(separatedBy: "server1").count - 1, two = flows.1.components(separatedBy: "server2").count - 1
        XCTAssertEqual(one + two, 40, flows.1)
        XCTAssertGreaterThan(one, 5, "ECMP should spread 40 flows over both next hops")
        XCTAssertGreaterThan(two, 5, "ECMP should spread 40 flows over both next hops")

        // The router's kernel behind the TAP: a TCP listener on the router's address.
        background("router", python: """
        import socket
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('10.1.0.1', 2222)); s.listen(4)
        c, _ = s.accept(); c.sendall(b'router kernel'); c.close()
        """)
        waitListening("router", 2222)
        let tap = inNS("client", "python3 -c \"import socket; print(socket.create_connection(('10.1.0.1', 2222), timeout=3).recv(32).decode())\"")
        XCTAssertTrue(tap.1.contains("router kernel"), tap.1)

        // Counters in the stats file.
        let st = sh("bash \(script) stats --json")
        XCTAssertEqual(st.0, 0, st.1)
        let stats = (try? JSONSerialization.jsonObject(with: Data(st.1.utf8)) as? [String: Any]) ?? [:]
        let events = stats["events"] as? [String: Any] ?? [:]
        XCTAssertGreaterThanOrEqual((events["echo_replies"] as? Int) ?? 0, 6, st.1)
        XCTAssertGreaterThan((events["to_kernel"] as? Int) ?? 0, 0, st.1)
        XCTAssertGreaterThan((events["from_kernel"] as? Int) ?? 0, 0, st.1)
        XCTAssertGreaterThan((events["icmp_errors_sent"] as? Int) ?? 0, 0, st.1)
        let ports = stats["ports"] as? [[String: Any]] ?? []
        XCTAssertEqual(ports.count, 3)
        for p in ports { XCTAssertEqual(p["up"] as? Bool, true, "\(p)") }
        XCTAssertGreaterThan((ports.first?["rx_bytes"] as? Int) ?? 0, 30_000_000 / 2, st.1)

        // A clean stop: SIGTERM drains, marks the lcores offline in the tables file and says so.
        let tables = try TablesFile.open(path: "/run/keel-lab-\(lab)/tables")
        XCTAssertNotEqual(tables.line(0).load(ordering: .acquiring), 0, "main lcore online while running")
        XCTAssertEqual(sh("kill -TERM $(cat /run/keel-lab-\(lab)/dataplane.pid); for i in $(seq 1 50); do kill -0 $(cat /run/keel-lab-\(lab)/dataplane.pid) 2>/dev/null || exit 0; sleep 0.1; done; exit 1").0, 0,
                       "keel-dataplane did not stop on SIGTERM")
        let finalLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertTrue(finalLog.contains("stopped"), finalLog)
        for i in 0..<tables.readerCount { XCTAssertEqual(tables.line(i).load(ordering: .acquiring), 0, "line \(i) still online") }
    }
}
