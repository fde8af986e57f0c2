import Foundation
import XCTest
import KeelDataPlane
import KeelTables

/// keel-dataplane's configuration file: the shipped default is valid, every
/// kind of mistake is rejected whole with the line and field named, and
/// start-up problems end the process with one clear line.
final class DataplaneConfigTests: XCTestCase {
    var repo: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path }

    func testShippedDefaultIsValid() throws {
        let c = try DataPlaneConfig.load(path: "\(repo)/Config/dataplane.yaml")
        XCTAssertEqual(c.ports.count, 2)
        XCTAssertEqual(c.ports[0].tap, "keel-p0")
        XCTAssertEqual(c.lcores.main, 0)
        XCTAssertEqual(c.lcores.io, [1])
        XCTAssertFalse(c.pipeline)
        XCTAssertEqual(c.neighbors.retries, 3)
    }

    func testFullConfiguration() throws {
        let c = try DataPlaneConfig.parse("""
        tables: /t
        stats: /s
        lcores: {main: 0, io: [1, 2], workers: [3, 4]}
        ports:
          - {name: a, device: "net_ring0", tap: ta}
          - {device: "0000:00:05.0"}
        queues: {rx_descriptors: 512, tx_descriptors: 256, ring_size: 1024, burst: 16}
        mempool: {mbufs: 4095, cache: 128}
        neighbors: {capacity: 100, hold_packets: 2, retries: 5, retry_ms: 250, reachable_seconds: 60}
        icmp: {rate: 10, burst: 5}
        conntrack: {flows: 1000, tcp_timeout: 60, tcp_closing_timeout: 5, udp_timeout: 20}
        """)
        XCTAssertEqual(c.tables, "/t")
        XCTAssertEqual(c.lcores.workers, [3, 4])
        XCTAssertTrue(c.pipeline)
        XCTAssertEqual(c.ports[1].name, "port1")
        XCTAssertNil(c.ports[1].tap)
        XCTAssertEqual(c.queues.ringSize, 1024)
        XCTAssertEqual(c.mempool.mbufs, 4095)
        XCTAssertEqual(c.neighbors.retryMs, 250)
        XCTAssertEqual(c.icmp.rate, 10)
        XCTAssertEqual(c.conntrack, .init(flows: 1000, tcpTimeout: 60, tcpClosingTimeout: 5, udpTimeout: 20))
        let args = DataPlane.ealArguments(config: c, extra: ["--no-pci"])
        XCTAssertTrue(args.contains("--vdev=net_ring0"))
        XCTAssertTrue(args.contains("--vdev=net_tap0,iface=ta"))
        XCTAssertEqual(args[args.firstIndex(of: "-l")! + 1], "0,1,2,3,4")
        XCTAssertFalse(DataPlane.ealArguments(config: c, extra: ["--lcores=0@0,1@1"]).contains("-l"))
    }

    func testMistakesAreNamed() {
        let base = "tables: /t\nports:\n  - {device: net_ring0}\n"
        let cases: [(String, String)] = [
            ("ports:\n  - {device: net_ring0}\n", "tables: required"),
            ("tables: /t\n", "ports: required"),
            ("tables: /t\nports: []\n", "ports: expected a non-empty list"),
            ("tables: /t\nports:\n  - {name: a}\n", "ports[0].device: required"),
            (base + "tabels: /x\n", "tabels: unknown setting"),
            (base + "lcores: {main: 0, io: [1], workers: [1]}\n", "lcores: an lcore has two roles"),
            (base + "lcores: {io: []}\n", "lcores.io: at least one I/O lcore"),
            (base + "lcores: {io: [one]}\n", "lcores.io[0]: expected an integer"),
            (base + "queues: {ring_size: 1000}\n", "queues.ring_size: must be a power of two"),
            (base + "queues: {burst: 65}\n", "queues.burst: 65 is outside 1...64"),
            (base + "neighbors: {retries: 0}\n", "neighbors.retries: 0 is outside"),
            (base + "icmp: {rate: -1}\n", "icmp.rate: -1 is outside"),
            (base + "conntrack: {flows: 2}\n", "conntrack.flows: 2 is outside"),
            (base + "conntrack: {udp_timeout: 0}\n", "conntrack.udp_timeout: 0 is outside"),
            (base + "conntrack: {tcp: 1}\n", "conntrack.tcp: unknown setting"),
            (base + "mempool: {mbufs: 10}\n", "mempool.mbufs: 10 is outside"),
            ("tables: /t\nports:\n  - {device: a, tap: this-name-is-far-too-long}\n", "ports[0].tap: an interface name of at most 15"),
            ("tables: /t\nports:\n  - {device: a, name: x}\n  - {device: b, name: x}\n", "ports: port names must be distinct"),
            ("tables: /t\nports:\n  - {device: a, bogus: 1}\n", "ports[0].bogus: unknown setting"),
            ("tables: [/t\n", "not valid YAML"),
            ("- just\n- a list\n", "expected a mapping"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try DataPlaneConfig.parse(text, path: "x.yaml"), message) { e in
                XCTAssertTrue("\(e)".contains(message), "\(e) should say \(message)")
                XCTAssertTrue("\(e)".hasPrefix("x.yaml: "), "\(e)")
            }
        }
        // The line is named.
        XCTAssertThrowsError(try DataPlaneConfig.parse(base + "queues:\n  burst: 0\n")) { e in
            XCTAssertTrue("\(e)".contains("line 5: queues.burst"), "\(e)")
        }
    }

    /// Start-up errors from the real binary: one line on stderr, exit status 1.
    func testStartupErrors() throws {
        let dir = NSTemporaryDirectory() + "keel-cfg-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tmp = TempTables("cfg")
        _ = try TablesFile.create(path: tmp.path, limits: .small, readers: 4)
        let binary = productsDirectory.appendingPathComponent("keel-dataplane")
        let eal = ["--", "--no-pci", "--no-huge", "-m", "128", "--no-shconf", "--log-level", "lib.eal:error", "--file-prefix", "kcfg\(getpid())"]
        func run(_ yaml: String, _ extra: [String] = []) throws -> (Int32, String) {
            let path = "\(dir)/c-\(UUID().uuidString).yaml"
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            let h = try Helper(binary, ["--config", path, "--seconds", "1"] + eal + extra)
            let rc = h.wait(seconds: 60)
            return (rc, h.output)
        }
        var r = try run("tables: \(dir)/missing\nports:\n  - {device: net_null0}\nlcores: {main: 0, io: [1]}\n", ["--lcores", "0@0,1@1"])
        XCTAssertEqual(r.0, 1)
        XCTAssertTrue(r.1.contains("no usable tables file at \(dir)/missing"), r.1)
        r = try run("tables: \(tmp.path)\nstats: \(dir)/s\nports:\n  - {device: \"0000:00:09.0\"}\nlcores: {main: 0, io: [1]}\n", ["--lcores", "0@0,1@1"])
        XCTAssertEqual(r.0, 1)
        XCTAssertTrue(r.1.contains("port port0: no DPDK device 0000:00:09.0"), r.1)
        r = try run("tables: \(tmp.path)\nstats: \(dir)/s\nports:\n  - {device: net_null0}\nlcores: {main: 0, io: [1], workers: [5]}\n", ["--lcores", "0@0,1@1"])
        XCTAssertEqual(r.0, 1)
        XCTAssertTrue(r.1.contains("lcore 5 is not available to DPDK"), r.1)
        r = try run("tables: \(tmp.path)\nports:\n  - {device: net_null0}\nlcores: {main: 0, io: [1], workers: [2, 3, 4, 5]}\n")
        XCTAssertEqual(r.0, 1)
        XCTAssertTrue(r.1.contains("reader lines"), r.1)
        // A bad settings file exits 2 (systemd's RestartPreventExitStatus: no restart loop until it is fixed).
        r = try run("tables: \(tmp.path)\nports: nope\n")
        XCTAssertEqual(r.0, 2)
        XCTAssertTrue(r.1.contains("line 2: ports: expected a non-empty list"), r.1)
        // check-config: the same checks without starting anything.
        let good = try Helper(binary, ["check-config", "\(repo)/Config/dataplane.yaml"])
        XCTAssertEqual(good.wait(seconds: 30), 0, good.output)
        XCTAssertTrue(good.output.contains("valid: 2 port(s)"), good.output)
    }
}
