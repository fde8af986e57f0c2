import Foundation
import XCTest
import KeelAPI
import KeelCompiler
import KeelDataPlane
import KeelTables
import Yams

/// The appliance's settings file (Config/keel.yaml): the shipped one is valid
/// for both processes, a mistake anywhere is refused whole with its line and
/// field, NICs given by interface name are resolved, and the binary's
/// `nics` / `check-config` answer what keel-nics and operators rely on.
final class ApplianceSettingsTests: XCTestCase {
    var repo: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path }

    func testShippedSettingsAndInitialConfiguration() throws {
        let a = try ApplianceSettings.load(path: "\(repo)/Config/keel.yaml")
        XCTAssertEqual(a.dataplane.ports.map(\.device), ["0000:00:04.0", "0000:00:05.0"])
        XCTAssertEqual(a.dataplane.ports.map(\.tap), ["keel-p0", "keel-p1"])
        XCTAssertEqual(a.nicDriver, "uio_pci_generic")
        XCTAssertEqual(a.hugepages, 640)
        XCTAssertEqual(a.dataplane.lcores, .init(main: 0, io: [1], workers: []))
        // One path for both processes.
        XCTAssertEqual(a.dataplane.tables, "/dev/hugepages/keel.tables")
        XCTAssertEqual(a.control.tables, a.dataplane.tables)
        XCTAssertEqual(a.control.stats, a.dataplane.stats)
        XCTAssertEqual(a.control.host, "0.0.0.0")
        XCTAssertEqual(a.control.port, 8440)
        XCTAssertEqual(a.control.unixSocket, "/run/keel/control.sock")
        XCTAssertEqual(a.control.dataDir, "/var/lib/keel")
        XCTAssertEqual(a.control.initial, "/etc/keel/initial.yaml")
        XCTAssertEqual(a.control.limits, SnapshotLimits())
        XCTAssertGreaterThanOrEqual(a.control.readers, 1 + a.dataplane.packetLcores.count)
        // Each process's own loader takes the appliance file too.
        XCTAssertEqual(try DataPlaneConfig.loadAny(path: "\(repo)/Config/keel.yaml"), a.dataplane)
        XCTAssertEqual(try ControlSettings.loadAny(path: "\(repo)/Config/keel.yaml"), a.control)
        XCTAssertEqual(try DataPlaneConfig.loadAny(path: "\(repo)/Config/dataplane.yaml"), try DataPlaneConfig.load(path: "\(repo)/Config/dataplane.yaml"))
        // initial.yaml is a configuration the compiler takes, with the ports keel.yaml names.
        let text = try String(contentsOfFile: "\(repo)/Config/initial.yaml", encoding: .utf8)
        let initial = try YAMLDecoder().decode(Configuration.self, from: text)
        XCTAssertEqual(initial.ports.map(\.name), a.dataplane.ports.map(\.name))
        XCTAssertFalse(try Compiler(limits: .small).replace(with: initial).isEmpty)
    }

    func testTableMaximaAndInterfaces() throws {
        let a = try ApplianceSettings.parse("""
        ports:
          - {name: up, interface: ens4, tap: k-up}
          - {name: down, device: "0000:3b:00.1"}
        lcores: {main: 0, io: [1], workers: [2, 3]}
        nics: {driver: vfio-pci}
        hugepages: {pages: 2048, mount: /mnt/huge}
        tables: {file: /mnt/huge/t, vips: 8, backends_per_vip: 16, maglev_max_size: 655373, ecmp_ways: 8}
        api: {listen: "[::1]:9000", max_body_mib: 64}
        log_level: debug
        """)
        XCTAssertEqual(a.dataplane.ports[0].interface, "ens4")
        XCTAssertEqual(a.dataplane.ports[0].device, "")
        XCTAssertEqual(a.nicDriver, "vfio-pci")
        XCTAssertEqual(a.hugepageMount, "/mnt/huge")
        XCTAssertEqual(a.control.limits.vips, 8)
        XCTAssertEqual(a.control.limits.maglevMaxSize, 655373)
        XCTAssertEqual(a.control.limits.ipv4Groups, SnapshotLimits().ipv4Groups)
        XCTAssertEqual(a.control.host, "::1")
        XCTAssertEqual(a.control.port, 9000)
        XCTAssertEqual(a.control.logLevel, "debug")
        XCTAssertEqual(a.control.tables, "/mnt/huge/t")

        // ens4: from sysfs while the kernel has it, from keel-nics' record once bound.
        let dir = NSTemporaryDirectory() + "keel-if-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: "\(dir)/net/ens4", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/net/ens4/device", withDestinationPath: "../../../devices/pci0000:00/0000:00:04.0")
        var c = a.dataplane
        try c.resolveInterfaces(sysfs: "\(dir)/net", bound: "\(dir)/none")
        XCTAssertEqual(c.ports[0].device, "0000:00:04.0")
        XCTAssertEqual(c.ports[1].device, "0000:3b:00.1")
        try "- 0000:3b:00.1 ixgbe\nens4 0000:00:07.0 virtio-pci\n".write(toFile: "\(dir)/nics", atomically: true, encoding: .utf8)
        c = a.dataplane
        try c.resolveInterfaces(sysfs: "\(dir)/empty", bound: "\(dir)/nics")
        XCTAssertEqual(c.ports[0].device, "0000:00:07.0")
        c = a.dataplane
        XCTAssertThrowsError(try c.resolveInterfaces(sysfs: "\(dir)/empty", bound: "\(dir)/none")) { e in
            XCTAssertTrue("\(e)".contains("ens4 is neither a kernel interface"), "\(e)")
        }
        // PCI ports are the EAL's allow list; --no-pci (tests) leaves it out.
        var args = DataPlane.ealArguments(config: c, extra: [])
        XCTAssertEqual(args.indices.filter { args[$0] == "-a" }.map { args[$0 + 1] }, ["0000:3b:00.1"])
        args = DataPlane.ealArguments(config: c, extra: ["--no-pci"])
        XCTAssertFalse(args.contains("-a"))
    }

    func testMistakesAreNamed() {
        let base = "ports:\n  - {device: \"0000:00:04.0\"}\n"
        let cases: [(String, String)] = [
            (base + "api: {listen: nowhere}\n", "api.listen: expected host:port"),
            (base + "api: {port: 1}\n", "api.port: unknown setting"),
            (base + "nics: {driver: e1000e}\n", "nics.driver: \"e1000e\" must be one of vfio-pci, uio_pci_generic, igb_uio"),
            (base + "hugepages: {pages: lots}\n", "hugepages.pages: expected an integer"),
            (base + "tables: {maglev_max_size: 65536}\n", "tables.maglev_max_size: 65536 is not prime"),
            (base + "tables: {vips: 0}\n", "tables.vips: 0 is outside"),
            (base + "tables: {routes: 5}\n", "tables.routes: unknown setting"),
            (base + "log_level: loud\n", "log_level: \"loud\" must be"),
            (base + "listen: 127.0.0.1:1\n", "listen: unknown setting"),
            (base + "readers: 4\n", "readers: unknown setting"),
            (base + "lcores: {io: [1], workers: [1]}\n", "lcores: an lcore has two roles"),
            ("ports:\n  - {device: eth0}\n", "ports[0].device: \"eth0\" is not a PCI address"),
            ("ports:\n  - {device: \"0000:00:04.0\", interface: ens4}\n", "ports[0]: give device or interface, not both"),
            ("ports:\n  - {interface: ens4}\n  - {interface: ens4}\n", "ports: a device or interface is listed twice"),
            ("nics: {driver: vfio-pci}\n", "ports: required"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try ApplianceSettings.parse(text, path: "keel.yaml"), message) { e in
                XCTAssertTrue("\(e)".contains(message), "\(e) should say \(message)")
                XCTAssertTrue("\(e)".hasPrefix("keel.yaml: line "), "\(e)")
            }
        }
    }

    func testHugepageShortfall() throws {
        let dir = NSTemporaryDirectory() + "keel-hp-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: "\(dir)/hugepages-2048kB", withIntermediateDirectories: true)
        var c = DataPlaneConfig(tables: "/t", ports: [])
        c.mempool.mbufs = 16383
        try "10\n".write(toFile: "\(dir)/hugepages-2048kB/free_hugepages", atomically: true, encoding: .utf8)
        let short = DataPlane.hugepageShortfall(config: c, eal: [], sysfs: dir)
        XCTAssertNotNil(short)
        XCTAssertTrue(short?.contains("10 free 2 MiB pages (20 MiB)") == true, short ?? "")
        XCTAssertNil(DataPlane.hugepageShortfall(config: c, eal: ["--no-huge"], sysfs: dir))
        try "200\n".write(toFile: "\(dir)/hugepages-2048kB/free_hugepages", atomically: true, encoding: .utf8)
        XCTAssertNil(DataPlane.hugepageShortfall(config: c, eal: [], sysfs: dir))
    }

    /// What keel-nics reads, and what an operator sees, from the real binary.
    func testNicsAndCheckConfigCommands() throws {
        let binary = productsDirectory.appendingPathComponent("keel-dataplane")
        let nics = try Helper(binary, ["nics", "\(repo)/Config/keel.yaml"])
        XCTAssertEqual(nics.wait(seconds: 30), 0, nics.output)
        XCTAssertEqual(nics.output, "driver uio_pci_generic\nhugepages 640\nport p0 0000:00:04.0 -\nport p1 0000:00:05.0 -\n")
        let check = try Helper(binary, ["check-config", "\(repo)/Config/keel.yaml"])
        XCTAssertEqual(check.wait(seconds: 30), 0, check.output)
        XCTAssertTrue(check.output.contains("valid: 2 port(s)"), check.output)
        let bad = NSTemporaryDirectory() + "keel-bad-\(getpid()).yaml"
        defer { unlink(bad) }
        let text = try String(contentsOfFile: "\(repo)/Config/keel.yaml", encoding: .utf8)
        try text.replacingOccurrences(of: "driver: uio_pci_generic", with: "driver: uio").write(toFile: bad, atomically: true, encoding: .utf8)
        let refused = try Helper(binary, ["nics", bad])
        XCTAssertEqual(refused.wait(seconds: 30), 1)
        XCTAssertTrue(refused.output.contains("nics.driver: \"uio\" must be one of"), refused.output)
        XCTAssertFalse(refused.output.contains("port p0"), refused.output)
    }
}
