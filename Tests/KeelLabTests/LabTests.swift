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

    /// Brings the lab up, runs `body` with lab.sh's path, and takes the lab
    /// down again (also when `body` fails), printing the data plane's log and
    /// counters if the test failed; no namespace may be left behind.
    func withLab(_ body: (String) throws -> Void) throws {
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
        try body(script)
    }

    override func setUp() {
        lab = "kl\(getpid() % 10000)"
    }

    func testRoutingRealTrafficInANamespaceLab() throws {
        try withLab { script in
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
            XCTAssertEqual(ports.count, 4)
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

    /// Load balancing end to end: a client, the router, four backends whose
    /// kernels answer from the VIP on lo (direct server return). The lab's
    /// routing.yaml has VIP 203.0.113.10 TCP 80 (IPIP) and UDP 53 (GUE) on
    /// be1-be3; the test republishes changes with `lab.sh publish`.
    func testLoadBalancingInANamespaceLab() throws {
        try withLab { script in
            let run = "/run/keel-lab-\(lab)"
            let base = try String(contentsOfFile: "\(run)/routing.yaml", encoding: .utf8)
            guard let cut = base.range(of: "vips:") else { return XCTFail("no VIPs in the lab's routing.yaml:\n\(base)") }
            /// The lab's routing with the two VIPs on backends (number, weight); TCP ids 1-4, UDP ids 11-14.
            func publish(_ backends: [(Int, Int)], _ name: String) {
                func list(_ offset: Int) -> String {
                    "[" + backends.map { "{id: \($0.0 + offset), address: 10.4.0.1\($0.0), weight: \($0.1)}" }.joined(separator: ", ") + "]"
                }
                let yaml = String(base[..<cut.lowerBound]) + """
                vips:
                  - {id: 1, address: 203.0.113.10, protocol: tcp, port: 80, table_size: 4099, backends: \(list(0))}
                  - {id: 2, address: 203.0.113.10, protocol: udp, port: 53, encap: {type: gue, port: 6080}, table_size: 4099, backends: \(list(10))}

                """
                try? yaml.write(toFile: "\(run)/\(name).yaml", atomically: true, encoding: .utf8)
                let r = sh("bash \(script) publish \(run)/\(name).yaml")
                XCTAssertEqual(r.0, 0, r.1)
            }

            // Every backend: HTTP on the VIP naming itself (/slow: its name, then 10 MB over 8 s), UDP echoing its name.
            for b in 1...4 {
                background("be\(b)", python: """
                import http.server, socket, threading, time
                class H(http.server.BaseHTTPRequestHandler):
                    def log_message(self, *a): pass
                    def do_GET(self):
                        self.send_response(200); self.end_headers()
                        self.wfile.write(b'be\(b)\\n')
                        if self.path == '/slow':
                            for _ in range(160):
                                self.wfile.write(b'x' * 65536); time.sleep(0.05)
                def udp():
                    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('203.0.113.10', 53))
                    while True:
                        d, a = u.recvfrom(2048); u.sendto(b'be\(b)', a)
                threading.Thread(target=udp, daemon=True).start()
                http.server.ThreadingHTTPServer.allow_reuse_address = True
                http.server.ThreadingHTTPServer(('203.0.113.10', 80), H).serve_forever()
                """)
            }
            for b in 1...4 { waitListening("be\(b)", 80) }

            // N HTTP connections from fixed source ports (so the outcome does not depend on the kernel's choice of ports).
            func connections(from first: Int, count: Int) -> [String: Int] {
                let r = inNS("client", """
                python3 -c "
                import socket, collections
                n = collections.Counter()
                for p in range(\(first), \(first + count)):
                    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.settimeout(3)
                    s.bind(('10.1.0.2', p)); s.connect(('203.0.113.10', 80))
                    s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); d = b''
                    while True:
                        c = s.recv(4096)
                        if not c: break
                        d += c
                    s.close(); n[d.split(b'\\r\\n\\r\\n', 1)[1].decode().strip()] += 1
                print(' '.join(f'{k}={v}' for k, v in sorted(n.items())))"
                """, timeout: 180)
                XCTAssertEqual(r.0, 0, r.1)
                var out: [String: Int] = [:]
                for kv in r.1.split(whereSeparator: \.isWhitespace) {
                    let p = kv.split(separator: "=")
                    if p.count == 2, let v = Int(p[1]) { out[String(p[0])] = v }
                }
                XCTAssertEqual(out.values.reduce(0, +), count, r.1)
                return out
            }
            func within(_ got: Int?, _ want: Double, _ what: String) {
                XCTAssertEqual(Double(got ?? 0), want, accuracy: want * 0.05, what)
            }

            // 3,000 connections over three equal backends: each within 5% of a third.
            let equal = connections(from: 20000, count: 3000)
            print("VIP, equal weights, 3000 connections: \(equal)")
            for b in ["be1", "be2", "be3"] { within(equal[b], 1000, "\(b) of 3000 equal: \(equal)") }

            // Weights 1:2:1.
            publish([(1, 1), (2, 2), (3, 1)], "weighted")
            let w = connections(from: 23000, count: 3000)
            print("VIP, weights 1:2:1, 3000 connections: \(w)")
            within(w["be1"], 750, "be1 at weight 1: \(w)")
            within(w["be2"], 1500, "be2 at weight 2: \(w)")
            within(w["be3"], 750, "be3 at weight 1: \(w)")

            // A long transfer keeps its backend while another backend is removed and be4 added.
            publish([(1, 1), (2, 1), (3, 1)], "equal")
            let transfer = "\(run)/transfer"
            let a = startTransfer(transfer, timeout: 10)
            let removed = ["be1", "be2", "be3"].first { $0 != a }!
            let rid = Int(String(removed.last!))!
            publish([1, 2, 3, 4].filter { $0 != rid }.map { ($0, 1) }, "changed")
            let after = connections(from: 27000, count: 1000)
            print("VIP after removing \(removed) and adding be4 (transfer on \(a)): \(after)")
            XCTAssertNil(after[removed], "no new flow reaches the removed backend: \(after)")
            XCTAssertGreaterThan(after["be4"] ?? 0, 150, "the added backend takes new flows: \(after)")
            XCTAssertEqual(sh("for i in $(seq 1 300); do [ -s \(transfer).done ] && exit 0; sleep 0.1; done; exit 1").0, 0, "the transfer did not end")
            XCTAssertEqual(try? String(contentsOfFile: "\(transfer).done", encoding: .utf8), "ok \(4 + 160 * 65536)",
                           "the transfer on \(a) went on without reset while \(removed) left")

            // UDP through GUE: 300 clients (source ports), every one answered.
            let udp = inNS("client", """
            python3 -c "
            import socket, collections
            n = collections.Counter()
            for p in range(30000, 30300):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.1.0.2', p)); s.settimeout(1)
                for attempt in range(3):
                    s.sendto(b'q', ('203.0.113.10', 53))
                    try:
                        n[s.recv(64).decode()] += 1; break
                    except socket.timeout:
                        pass
                s.close()
            print(' '.join(f'{k}={v}' for k, v in sorted(n.items())))"
            """, timeout: 120)
            print("UDP VIP, 300 clients: \(udp.1)")
            let answered = udp.1.split(whereSeparator: \.isWhitespace).compactMap { Int($0.split(separator: "=").last ?? "") }.reduce(0, +)
            XCTAssertEqual(answered, 300, udp.1)
            XCTAssertTrue(udp.1.contains("be4=") && !udp.1.contains("\(removed)="), "UDP follows the changed VIP too: \(udp.1)")

            // The per-VIP counters.
            let st = sh("bash \(script) stats --json")
            let stats = (try? JSONSerialization.jsonObject(with: Data(st.1.utf8)) as? [String: Any]) ?? [:]
            let vips = stats["vips"] as? [[String: Any]] ?? []
            let v1 = vips.first { ($0["id"] as? Int) == 1 }
            XCTAssertGreaterThanOrEqual((v1?["new_flows"] as? Int) ?? 0, 7001, st.1)
            XCTAssertGreaterThan((v1?["conn_hits"] as? Int) ?? 0, 7001, st.1)
            XCTAssertEqual(stats["drops"].flatMap { ($0 as? [String: Any])?["noBackend"] } as? Int, nil, st.1)
        }
    }

    /// Starts `GET /slow` on the VIP from the client in the background; the
    /// backend's name lands in PATH.name, then "ok BYTES" or "error ..." in
    /// PATH.done. Returns the backend's name once the transfer has started.
    func startTransfer(_ transfer: String, timeout: Int) -> String {
        sh("( closefds; exec ip netns exec \(lab)-client python3 -c \"" + """
        import socket
        s = socket.socket(); s.settimeout(\(timeout)); s.connect(('203.0.113.10', 80)); s.sendall(b'GET /slow HTTP/1.0\\r\\n\\r\\n')
        d = b''; named = False
        try:
            while True:
                c = s.recv(65536)
                if not c: break
                d += c
                if not named and b'\\n' in d.split(b'\\r\\n\\r\\n', 1)[-1]:
                    open('\(transfer).name', 'w').write(d.split(b'\\r\\n\\r\\n', 1)[1].split(b'\\n')[0].decode()); named = True
            result = 'ok %d' % len(d.split(b'\\r\\n\\r\\n', 1)[1])
        except Exception as e:
            result = 'error %s after %d' % (e, len(d))
        open('\(transfer).done', 'w').write(result)
        """ + "\" </dev/null >/dev/null 2>&1 ) &")
        XCTAssertEqual(sh("for i in $(seq 1 50); do [ -s \(transfer).name ] && exit 0; sleep 0.1; done; exit 1").0, 0, "the transfer did not start")
        return (try? String(contentsOfFile: "\(transfer).name", encoding: .utf8)) ?? ""
    }

    /// Raw frames sent from the client's veth with AF_PACKET, as fast as
    /// Python goes, bounded in count and time. "syn": TCP SYNs to the VIP
    /// 203.0.113.10:80 from as many source addresses (172.16.0.0/12) and
    /// ports; "ttl": UDP to server1 (10.2.0.2) with TTL 1. Prints
    /// "sent N in S s". Checksums valid (computed incrementally).
    static let flooder = """
    import socket, struct, sys, time
    iface, dmac, kind, count, limit = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', '')), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    smac = bytes.fromhex(open('/sys/class/net/%s/address' % iface).read().strip().replace(':', ''))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((iface, 0))
    def fold(x):
        while x >> 16: x = (x & 0xffff) + (x >> 16)
        return x
    def words(b): return sum(struct.unpack('!%dH' % (len(b) // 2), b))
    syn = kind == 'syn'
    dst = socket.inet_aton('203.0.113.10' if syn else '10.2.0.2')
    proto, l4len = (6, 20) if syn else (17, 8 + 18)
    ip = bytearray(struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + l4len, 0, 0x4000 if syn else 0, 64 if syn else 1, proto, 0, b'\\0' * 4, dst))
    ipbase = words(bytes(ip))
    if syn:
        l4 = bytearray(struct.pack('!HHIIBBHHH', 0, 80, 1, 0, 0x50, 0x02, 65535, 0, 0))
    else:
        l4 = bytearray(struct.pack('!HHHH', 40000, 33434, l4len, 0) + b'keel-ttl-flood-xxx')
    l4base = words(bytes(l4)) + words(dst) + proto + l4len
    frame = bytearray(dmac + smac + b'\\x08\\x00' + ip + l4)
    src = socket.inet_aton('10.1.0.2')
    t0 = time.time(); n = 0
    while n < count and time.time() - t0 < limit:
        for _ in range(1000):
            if syn:
                a = 0xac100000 | ((n * 2654435761) & 0xfffff); sport = 1024 + n % 64000
                hi, lo = a >> 16, a & 0xffff
                struct.pack_into('!HH', frame, 26, hi, lo)
                struct.pack_into('!H', frame, 24, 0xffff ^ fold(ipbase + hi + lo))
                struct.pack_into('!H', frame, 34, sport)
                struct.pack_into('!H', frame, 50, 0xffff ^ fold(l4base + hi + lo + sport))
            else:
                if n == 0:
                    frame[26:30] = src
                    w = words(src)
                    struct.pack_into('!H', frame, 24, 0xffff ^ fold(ipbase + w))
                    struct.pack_into('!H', frame, 40, 0xffff ^ fold(l4base + w))
            try:
                s.send(frame)
            except BlockingIOError:
                pass
            n += 1
            if n >= count: break
    print('sent %d in %.2f s' % (n, time.time() - t0))
    """

    /// Floods in the lab, bounded in count and time:
    /// - 250,000 SYNs to the VIP from 250,000 source addresses, twice: the
    ///   connection table (65,536 flows) fills and evicts, the data plane's
    ///   memory does not grow on the second flood, a long transfer that
    ///   started before keeps its backend and its bytes, new connections are
    ///   still answered;
    /// - 30,000 packets with TTL 1: the time-exceeded answers stay within the
    ///   ICMP rate limit (1,000/s and a burst of 100 per lcore).
    func testFloodsInANamespaceLab() throws {
        try withLab { script in
            let run = "/run/keel-lab-\(lab)"
            let flood = "\(run)/flood.py"
            try LabTests.flooder.write(toFile: flood, atomically: true, encoding: .utf8)
            for b in 1...3 {
                background("be\(b)", python: """
                import http.server, time
                class H(http.server.BaseHTTPRequestHandler):
                    def log_message(self, *a): pass
                    def do_GET(self):
                        self.send_response(200); self.end_headers(); self.wfile.write(b'be\(b)\\n')
                        if self.path == '/slow':
                            for _ in range(200):
                                self.wfile.write(b'x' * 65536); time.sleep(0.05)
                http.server.ThreadingHTTPServer.allow_reuse_address = True
                http.server.ThreadingHTTPServer(('203.0.113.10', 80), H).serve_forever()
                """)
            }
            for b in 1...3 { waitListening("be\(b)", 80) }
            // The backends' kernels answer the SYNs towards 172.16/12, which the router has no route for: SYN cookies, few retries.
            for b in 1...3 { inNS("be\(b)", "sysctl -qw net.ipv4.tcp_synack_retries=1 net.ipv4.tcp_syncookies=1") }
            func stats() -> [String: Any] { (try? JSONSerialization.jsonObject(with: Data(sh("bash \(script) stats --json").1.utf8))) as? [String: Any] ?? [:] }
            func vip1(_ st: [String: Any], _ key: String) -> Int {
                ((st["vips"] as? [[String: Any]])?.first { ($0["id"] as? Int) == 1 }?[key] as? Int) ?? 0
            }
            func events(_ st: [String: Any], _ key: String) -> Int { ((st["events"] as? [String: Any])?[key] as? Int) ?? 0 }
            let pid = (try? String(contentsOfFile: "\(run)/dataplane.pid", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            func memory() -> (rss: Int, size: Int) {
                let s = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
                func kb(_ k: String) -> Int { Int(s.split(separator: "\n").first { $0.hasPrefix(k) }?.split(whereSeparator: \.isWhitespace)[1] ?? "") ?? -1 }
                return (kb("VmRSS:"), kb("VmSize:"))
            }

            // A long transfer (13 MB over 10 s) to the VIP, started before the floods.
            let transfer = "\(run)/transfer"
            let owner = startTransfer(transfer, timeout: 15)

            let s0 = stats(), m0 = memory()
            var figures: [String] = []
            var m1 = m0
            for round in 1...2 {
                let r = inNS("client", "python3 \(flood) \(lab)c0 02:4b:00:00:00:01 syn 250000 20", timeout: 40)
                XCTAssertEqual(r.0, 0, r.1)
                usleep(300_000)
                let st = stats(), m = memory()
                figures.append("flood \(round): \(r.1.trimmingCharacters(in: .whitespacesAndNewlines)); VIP new flows \(vip1(st, "new_flows") - vip1(s0, "new_flows")), evictions \(vip1(st, "conn_evictions") - vip1(s0, "conn_evictions")), flows alive \(st["flows"] ?? "?"), RSS \(m.rss) KiB, size \(m.size) KiB")
                if round == 1 { m1 = m }
                XCTAssertLessThanOrEqual((st["flows"] as? Int) ?? .max, 4 * 65536, "more flows than the table has entries (conntrack.flows 65536, four entries per flow): \(st)")
            }
            let s2 = stats(), m2 = memory()
            print("lab SYN floods: memory before \(m0.rss) KiB RSS, \(m0.size) KiB size; " + figures.joined(separator: "; "))
            XCTAssertGreaterThan(vip1(s2, "new_flows") - vip1(s0, "new_flows"), 100_000, "the floods did not reach the VIP: \(figures)")
            XCTAssertGreaterThan(vip1(s2, "conn_evictions") - vip1(s0, "conn_evictions"), 30_000, "the table did not fill and evict: \(figures)")
            XCTAssertEqual(m2.size, m0.size, "the data plane's address space changed during the floods")
            XCTAssertLessThan(m2.rss - m1.rss, 2048, "RSS grew by \(m2.rss - m1.rss) KiB during the second flood")
            XCTAssertEqual(sh("kill -0 \(pid)").0, 0, "the data plane died")
            // Still serving: new connections answered; the transfer ends whole on its backend.
            let after = inNS("client", "bash -c 'for i in $(seq 1 30); do curl -s --max-time 3 http://203.0.113.10/ || echo FAILED; done | sort | uniq -c'")
            XCTAssertFalse(after.1.contains("FAILED"), after.1)
            XCTAssertEqual(sh("for i in $(seq 1 300); do [ -s \(transfer).done ] && exit 0; sleep 0.1; done; exit 1").0, 0, "the transfer did not end")
            XCTAssertEqual(try? String(contentsOfFile: "\(transfer).done", encoding: .utf8), "ok \(4 + 200 * 65536)",
                           "the transfer on \(owner) did not survive the SYN floods")
            let reached = ((s2["vips"] as? [[String: Any]])?.first { ($0["id"] as? Int) == 1 }?["backends"] as? [String: Any]) ?? [:]
            XCTAssertEqual(reached.count, 3, "every backend took flood flows: \(reached.keys)")

            // TTL-expiring packets: the ICMP time-exceeded answers stay within the rate limit.
            let icmpLog = "\(run)/icmp.count"
            background("client", python: """
            import socket, time
            r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); r.settimeout(0.5)
            n = 0; end = time.time() + 12; first = last = 0.0
            while time.time() < end:
                try:
                    d = r.recv(2048)
                except socket.timeout:
                    continue
                # Time exceeded quoting the flood's UDP ports (40000 -> 33434).
                if d[20] == 11 and d[48:52] == b'\\x9c\\x40\\x82\\x9a':
                    t = time.time(); first = first or t; last = t; n += 1
                    open('\(icmpLog)', 'w').write('%d %.3f' % (n, last - first))
            """)
            usleep(500_000)
            let e0 = stats()
            let t0 = Date()
            let ttl = inNS("client", "python3 \(flood) \(lab)c0 02:4b:00:00:00:01 ttl 30000 10", timeout: 30)
            let seconds = Date().timeIntervalSince(t0)
            XCTAssertEqual(ttl.0, 0, ttl.1)
            usleep(1_000_000)
            let e1 = stats()
            let sent = events(e1, "icmp_errors_sent") - events(e0, "icmp_errors_sent")
            let limited = events(e1, "icmp_rate_limited") - events(e0, "icmp_rate_limited")
            let seen = ((try? String(contentsOfFile: icmpLog, encoding: .utf8)) ?? "0").split(separator: " ")
            let received = Int(seen.first ?? "0") ?? 0
            let allowed = Int(1000 * (seconds + 1.0)) + 100
            print("lab TTL flood: \(ttl.1.trimmingCharacters(in: .whitespacesAndNewlines)); ICMP time exceeded sent \(sent), rate-limited \(limited), received by the client \(received) over \(seen.count > 1 ? String(seen[1]) : "?") s; allowed at most \(allowed)")
            XCTAssertGreaterThan(sent, 0)
            XCTAssertLessThanOrEqual(sent, allowed, "ICMP errors over the rate limit")
            XCTAssertGreaterThan(limited, 10_000, "the flood was not rate-limited")
            XCTAssertLessThanOrEqual(received, sent)
            XCTAssertGreaterThan(received, 0, "no time exceeded reached the client")
        }
    }

    /// keel-control (in the router namespace, as on the appliance) drives the
    /// data plane: a route added with keelctl forwards once the data plane is
    /// at the answered generation; a health check takes a dead backend out and
    /// puts it back; kill -9 of keel-control during 1000 writes loses no
    /// acknowledged write and no packet between the namespaces.
    func testControlPlaneDrivesTheDataPlane() throws {
        try withLab { script in
            func keelctl(_ args: String) -> (Int32, String) { sh("bash \(script) keelctl \(args)") }
            func json(_ s: String) -> [String: Any] { (try? JSONSerialization.jsonObject(with: Data(s.utf8))) as? [String: Any] ?? [:] }

            // 1. A route through keelctl.
            XCTAssertEqual(inNS("server1", "ip addr add 192.0.2.1/32 dev lo").0, 0)
            XCTAssertNotEqual(inNS("client", "ping -c 1 -W 1 192.0.2.1").0, 0, "no route yet")
            let add = keelctl("route add 192.0.2.0/24 --via 10.2.0.2 -o json")
            XCTAssertEqual(add.0, 0, add.1)
            let generation = json(add.1)["generation"] as? Int ?? -1
            XCTAssertGreaterThan(generation, 1, add.1)
            // The data plane reaches that generation at once (its lcores switch at their next loop turn).
            var seen = 0
            for _ in 0..<50 {
                seen = (json(keelctl("status -o json").1)["dataplane"] as? [String: Any])?["generation"] as? Int ?? 0
                if seen >= generation { break }
                usleep(20_000)
            }
            XCTAssertGreaterThanOrEqual(seen, generation, "data plane still before the answered generation")
            let ping = inNS("client", "ping -c 3 -i 0.2 -W 2 192.0.2.1")
            XCTAssertTrue(ping.1.contains("3 received"), ping.1)

            // 2. Health checks: HTTP servers on be1 and be2 only; be3 goes down, then up when it serves.
            let server = """
            import http.server, sys
            class H(http.server.BaseHTTPRequestHandler):
                def log_message(self, *a): pass
                def do_GET(self):
                    self.send_response(200); self.end_headers(); self.wfile.write(sys.argv[1].encode() + b'\\n')
            http.server.ThreadingHTTPServer(('0.0.0.0', 80), H).serve_forever()
            """
            background("be1", python: server, ["be1"])
            background("be2", python: server, ["be2"])
            waitListening("be1", 80)
            waitListening("be2", 80)
            XCTAssertEqual(keelctl("vip add --id 1 --address 203.0.113.10 --port 80 --table-size 4099 --check http --check-path /health").0, 0)
            func health() -> [String] {
                let v = json(keelctl("vip show 1 -o json").1)
                return ((v["backends"] as? [[String: Any]]) ?? []).map { $0["health"] as? String ?? "?" }
            }
            var states: [String] = []
            for _ in 0..<100 { states = health(); if states == ["up", "up", "down"] { break }; usleep(200_000) }
            XCTAssertEqual(states, ["up", "up", "down"], "be3 (no server) should be down")
            let status = json(keelctl("status -o json").1)
            XCTAssertEqual(status["backends_down"] as? [Int], [3])
            let curls = inNS("client", "bash -c 'for i in $(seq 1 60); do curl -s --max-time 2 http://203.0.113.10/ || echo FAILED; done | sort | uniq -c'")
            XCTAssertFalse(curls.1.contains("FAILED"), "connections to the dead backend: \(curls.1)")
            XCTAssertTrue(curls.1.contains("be1") && curls.1.contains("be2"), curls.1)
            // /metrics with a running data plane and health checks passes promtool.
            let metrics = sh("ip netns exec \(lab)-router sh -c 'curl -sf -H \"Authorization: Bearer $(awk \"/ read /{print \\$3}\" /run/keel-lab-\(lab)/control/tokens)\" http://127.0.0.1:8440/metrics' > /tmp/keel-lab-\(lab).metrics && promtool check metrics < /tmp/keel-lab-\(lab).metrics && cat /tmp/keel-lab-\(lab).metrics; rm -f /tmp/keel-lab-\(lab).metrics")
            XCTAssertEqual(metrics.0, 0, metrics.1)
            for series in ["keel_dataplane_up 1", "keel_backend_healthy{vip=\"1\",backend=\"3\"} 0", "keel_backend_healthy{vip=\"1\",backend=\"1\"} 1",
                           "keel_port_rx_packets_total{port=\"p0\"}", "keel_vip_packets_total{vip=\"1\"}", "keel_lcore_generation{line=\"1\"}"] {
                XCTAssertTrue(metrics.1.contains(series), "\(series) missing from /metrics:\n\(metrics.1)")
            }
            background("be3", python: server, ["be3"])
            for _ in 0..<100 { states = health(); if states == ["up", "up", "up"] { break }; usleep(200_000) }
            XCTAssertEqual(states, ["up", "up", "up"], "be3 serves again")

            // keelctl trace names the backend a new flow gets; the flow really goes there.
            for sport in [41000, 41001, 41002, 41003, 41004, 41005] {
                let t = json(keelctl("trace 203.0.113.10 --src 10.1.0.2 --sport \(sport) --dport 80 -o json").1)
                XCTAssertEqual(t["verdict"] as? String, "load-balance", "\(t)")
                let answer = inNS("client", "curl -s --max-time 3 --local-port \(sport) http://203.0.113.10/").1.trimmingCharacters(in: .whitespacesAndNewlines)
                XCTAssertEqual(answer, "be\(t["backend"] as? Int ?? 0)", "trace said backend \(t["backend"] ?? "?"), the flow went to \(answer)")
                usleep(50_000)
            }
            let tr = json(keelctl("trace 192.0.2.1 --src 10.1.0.2 -o json").1)
            XCTAssertEqual(tr["verdict"] as? String, "forward")
            XCTAssertEqual(tr["route"] as? String, "192.0.2.0/24")
            XCTAssertEqual(tr["next_hop"] as? String, "10.2.0.2")
            XCTAssertEqual(tr["port"] as? String, "p1")

            // 3. kill -9 keel-control twice during 1000 writes, with traffic between client and server1.
            let writer = NSTemporaryDirectory() + "keel-lab-writer-\(lab).py"
            try """
            import json, urllib.request, urllib.error, sys, time
            token = [l.split()[2] for l in open(sys.argv[1]) if not l.startswith('#') and l.split()[1] == 'admin'][0]
            out = {'ack': [], 'refused': [], 'unknown': []}
            for i in range(1000):
                prefix = '10.%d.%d.0/24' % (100 + i // 250, i % 250)
                gw = '192.0.2.99' if i % 7 == 3 else '10.2.0.2'
                body = json.dumps({'prefix': prefix, 'next_hops': [{'gateway': gw}]}).encode()
                req = urllib.request.Request('http://127.0.0.1:8440/v1/routes', data=body, method='POST',
                                             headers={'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'})
                for attempt in range(200):
                    try:
                        urllib.request.urlopen(req, timeout=10).read(); out['ack'].append(prefix)
                    except urllib.error.HTTPError as e:
                        out['refused' if e.code < 500 else 'unknown'].append(prefix)
                    except urllib.error.URLError as e:
                        # Not sent (keel-control is restarting): like any client, try again.
                        if isinstance(e.reason, ConnectionRefusedError):
                            time.sleep(0.05); continue
                        out['unknown'].append(prefix)
                    except Exception:
                        out['unknown'].append(prefix)
                    break
            json.dump(out, open(sys.argv[2], 'w'))
            """.write(toFile: writer, atomically: true, encoding: .utf8)
            let result = writer + ".json"
            defer { try? FileManager.default.removeItem(atPath: writer); try? FileManager.default.removeItem(atPath: result) }
            let pingLog = NSTemporaryDirectory() + "keel-lab-ping-\(lab).log"
            defer { try? FileManager.default.removeItem(atPath: pingLog) }
            sh("( closefds; exec ip netns exec \(lab)-client ping -q -c 2000 -i 0.005 -W 1 10.2.0.2 </dev/null >\(pingLog) 2>&1 ) &")
            sh("( closefds; exec ip netns exec \(lab)-router python3 \(writer) /run/keel-lab-\(lab)/control/tokens \(result) </dev/null >/dev/null 2>&1 ) &")
            for _ in 0..<2 {
                usleep(1_500_000)
                XCTAssertEqual(sh("kill -9 $(cat /run/keel-lab-\(lab)/control.pid)").0, 0)
                usleep(100_000)
                let restart = sh("bash \(script) control-start", timeout: 30)
                XCTAssertEqual(restart.0, 0, restart.1)
            }
            sh("for i in $(seq 1 600); do [ -f \(result) ] && break; sleep 0.1; done", timeout: 90)
            sh("for i in $(seq 1 300); do grep -q 'packets transmitted' \(pingLog) && break; sleep 0.1; done", timeout: 60)
            let outcome = json((try? String(contentsOfFile: result, encoding: .utf8)) ?? "")
            let ack = outcome["ack"] as? [String] ?? [], refused = outcome["refused"] as? [String] ?? [], unknown = outcome["unknown"] as? [String] ?? []
            XCTAssertEqual(ack.count + refused.count + unknown.count, 1000, "writer did not finish")
            var stored = Set<String>()
            var after = ""
            while true {
                let page = json(keelctl("route list -o json --limit 5000" + (after.isEmpty ? "" : " --after \(after)")).1)
                for r in (page["routes"] as? [[String: Any]]) ?? [] { if let p = r["prefix"] as? String { stored.insert(p) } }
                guard let next = page["next"] as? String else { break }
                after = next
            }
            XCTAssertEqual(ack.filter { !stored.contains($0) }, [], "acknowledged writes lost")
            XCTAssertEqual(refused.filter { stored.contains($0) }, [], "refused writes stored")
            XCTAssertGreaterThan(ack.count, 800)
            XCTAssertLessThanOrEqual(unknown.count, 4, "only writes in flight at a kill go unanswered")
            let pingOut = (try? String(contentsOfFile: pingLog, encoding: .utf8)) ?? ""
            XCTAssertTrue(pingOut.contains("2000 packets transmitted, 2000 received, 0% packet loss"), "traffic lost while keel-control was killed: \(pingOut)")
            print("lab kill -9 test: \(ack.count) acknowledged (all kept), \(refused.count) refused (none kept), \(unknown.count) unanswered; ping: \(pingOut.split(separator: "\n").filter { $0.contains("packets") }.joined())")

            // 4. A live data plane that stops advancing (SIGSTOP: every lcore
            // halts with its reader line at the old generation). keel-control
            // publishes once into the idle slot, then refuses (503, naming the
            // reader) rather than overwrite the slot the lcores may still read;
            // the status reports the lines lagging and alive; the refused route
            // is not stored; after SIGCONT publishing goes on.
            func currentStatus() -> [String: Any] { json(keelctl("status -o json").1) }
            func routes() -> Set<String> {
                Set(((json(keelctl("route list -o json --limit 5000").1)["routes"] as? [[String: Any]]) ?? []).compactMap { $0["prefix"] as? String })
            }
            let stopped = (try? String(contentsOfFile: "/run/keel-lab-\(lab)/dataplane.pid", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            XCTAssertFalse(stopped.isEmpty)
            XCTAssertEqual(sh("kill -STOP \(stopped)").0, 0)
            let first = keelctl("route add 192.0.3.0/24 --via 10.2.0.2")
            XCTAssertEqual(first.0, 0, "one publish fits in the idle slot: \(first.1)")
            usleep(1_200_000)
            let second = keelctl("route add 192.0.4.0/24 --via 10.2.0.2")
            XCTAssertNotEqual(second.0, 0, "published over the slot a stopped lcore may read: \(second.1)")
            XCTAssertTrue(second.1.contains("pid \(stopped)") && second.1.contains("still at generation"), second.1)
            let lag = currentStatus()
            let lines = (lag["lcores"] as? [[String: Any]]) ?? []
            XCTAssertEqual(lag["lagging"] as? Bool, true, "\(lag)")
            XCTAssertEqual(lag["healthy"] as? Bool, false, "\(lag)")
            XCTAssertTrue(lines.contains { ($0["lagging"] as? Bool) == true && ($0["alive"] as? Bool) == true && ($0["pid"] as? Int) == Int(stopped) }, "\(lines)")
            XCTAssertFalse(routes().contains("192.0.4.0/24"), "the refused route was stored")
            XCTAssertEqual(sh("kill -CONT \(stopped)").0, 0)
            var caughtUp = false
            for _ in 0..<50 { if currentStatus()["lagging"] as? Bool == false { caughtUp = true; break }; usleep(100_000) }
            XCTAssertTrue(caughtUp, "lcores did not catch up after SIGCONT: \(currentStatus())")
            let third = keelctl("route add 192.0.4.0/24 --via 10.2.0.2")
            XCTAssertEqual(third.0, 0, third.1)
            print("lab stopped lcores: 1 publish into the idle slot, the next refused (\(second.1.trimmingCharacters(in: .whitespacesAndNewlines))); after SIGCONT published again")

            // 5. kill -9 keel-dataplane under traffic. The lab's supervisor (as
            // systemd on the appliance) restarts it; it re-attaches to the
            // current snapshot and forwards again within 2 s. Meanwhile
            // keel-control withdraws the BGP announcements (no BIRD here: the
            // announced set in the status is what BIRD would be given).
            let bgpFile = NSTemporaryDirectory() + "keel-lab-bgp-\(lab).yaml"
            try "local_as: 65001\npeers: [{address: 10.2.0.2, remote_as: 65000}]\n".write(toFile: bgpFile, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: bgpFile) }
            XCTAssertEqual(keelctl("bgp set -f \(bgpFile)").0, 0)
            func announced() -> [String]? { (currentStatus()["bgp"] as? [String: Any])?["announced"] as? [String] }
            var before: [String]? = nil
            for _ in 0..<30 { before = announced(); if before == ["203.0.113.10"] { break }; usleep(100_000) }
            XCTAssertEqual(before, ["203.0.113.10"], "the VIP is announced while the data plane runs")
            let victim = (try? String(contentsOfFile: "/run/keel-lab-\(lab)/dataplane.pid", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            let replies = NSTemporaryDirectory() + "keel-lab-ping-restart-\(lab).log"
            defer { try? FileManager.default.removeItem(atPath: replies) }
            // 100 pings a second for 6 s, each reply with its time (-D).
            sh("( closefds; exec ip netns exec \(lab)-client ping -D -c 600 -i 0.01 -W 1 10.2.0.2 </dev/null >\(replies) 2>&1 ) &")
            usleep(1_500_000)
            let killedAt = Date().timeIntervalSince1970
            XCTAssertEqual(sh("kill -9 \(victim)").0, 0)
            var withdrawnAfter: Double? = nil, restartedAfter: Double? = nil, announcedAgainAfter: Double? = nil
            var newPid = victim
            while Date().timeIntervalSince1970 - killedAt < 8 {
                let st = currentStatus()
                let dp = st["dataplane"] as? [String: Any] ?? [:]
                let ann = (st["bgp"] as? [String: Any])?["announced"] as? [String]
                let t = Date().timeIntervalSince1970 - killedAt
                if withdrawnAfter == nil, ann == [] { withdrawnAfter = t }
                let pid = (try? String(contentsOfFile: "/run/keel-lab-\(lab)/dataplane.pid", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
                if restartedAfter == nil, pid != victim, dp["running"] as? Bool == true, (dp["pid"] as? Int).map(String.init) == pid {
                    restartedAfter = t; newPid = pid
                }
                if restartedAfter != nil, withdrawnAfter != nil, ann == ["203.0.113.10"] { announcedAgainAfter = t; break }
                usleep(50_000)
            }
            XCTAssertNotNil(withdrawnAfter, "the announcement was not withdrawn while the data plane was down")
            XCTAssertNotNil(restartedAfter, "the data plane was not restarted")
            XCTAssertNotNil(announcedAgainAfter, "the VIP was not announced again after the restart")
            XCTAssertNotEqual(newPid, victim)
            sh("for i in $(seq 1 100); do grep -q 'packets transmitted' \(replies) && break; sleep 0.1; done", timeout: 30)
            let out = (try? String(contentsOfFile: replies, encoding: .utf8)) ?? ""
            // "[1764600000.123456] 64 bytes from 10.2.0.2: icmp_seq=..."
            let times = out.split(separator: "\n").filter { $0.contains("bytes from") }.compactMap { line -> Double? in
                guard line.hasPrefix("["), let end = line.firstIndex(of: "]") else { return nil }
                return Double(line[line.index(after: line.startIndex)..<end])
            }
            let firstAfter = times.first { $0 > killedAt + 0.02 }
            XCTAssertNotNil(firstAfter, "no reply after the kill: \(out.suffix(400))")
            let resumed = (firstAfter ?? .infinity) - killedAt
            XCTAssertLessThan(resumed, 2.0, "forwarding resumed \(resumed) s after kill -9 (should be within 2 s)")
            let lost = 600 - times.count
            XCTAssertGreaterThan(times.count, 400, out.suffix(400).description)
            let st = currentStatus()
            XCTAssertEqual((st["dataplane"] as? [String: Any])?["generation"] as? Int, st["published_generation"] as? Int, "the restarted data plane is on the current snapshot: \(st)")
            let f = { (x: Double?) in x.map { String(format: "%.2f s", $0) } ?? "never" }
            print("lab kill -9 keel-dataplane: withdrawn after \(f(withdrawnAfter)), restarted (running) after \(f(restartedAfter)), forwarding after \(f(resumed)), announced again after \(f(announcedAgainAfter)); \(lost) of 600 pings lost")
        }
    }
}
