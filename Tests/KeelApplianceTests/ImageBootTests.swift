import Foundation
import XCTest

/// The appliance image (built by Appliance/image/build.sh before the tests,
/// in Tests/run.sh) boots under qemu (TCG) and serves: Appliance/image/boot-test.sh
/// waits for `keelctl status` to be healthy through the forwarded admin port,
/// applies a route and a VIP, and sends traffic from a client namespace
/// through the VM to a backend namespace. This test runs it and checks its
/// figures, and the image's size.
final class ImageBootTests: XCTestCase {
    var repo: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path }
    var image: String { ProcessInfo.processInfo.environment["KEEL_IMAGE_DIR"] ?? "\(repo)/.build/image" }

    func testImageSize() throws {
        let sizes = try String(contentsOfFile: "\(image)/sizes.txt", encoding: .utf8)
        var figures: [String: Int] = [:]
        for line in sizes.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count == 2, let v = Int(f[1]) { figures[String(f[0])] = v }
        }
        print("image sizes: \(figures.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        let qcow2 = try XCTUnwrap(figures["qcow2_mib"]), deb = try XCTUnwrap(figures["deb_mib"])
        XCTAssertLessThan(qcow2, 400, "compressed qcow2 \(qcow2) MiB")
        XCTAssertLessThan(deb, 100, "the package \(deb) MiB")
        // Tests/run.sh builds with KEEL_IMAGE_XZ=0 (no raw.xz, a minute saved); a release build has it.
        if let xz = figures["raw_xz_mib"] { XCTAssertLessThan(xz, 400, "raw.xz \(xz) MiB") } else { print("image sizes: no keel.raw.xz in this build (KEEL_IMAGE_XZ=0)") }
        XCTAssertGreaterThan(qcow2, 20, "an image this small cannot hold a kernel and Keel")
    }

    func testImageBootsAndServes() throws {
        let qcow2 = "\(image)/keel.qcow2"
        XCTAssertTrue(FileManager.default.fileExists(atPath: qcow2), "no image at \(qcow2): Tests/run.sh builds it with Appliance/image/build.sh")
        let keelctl = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("keelctl").path
        let out = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("keel-boot-\(getpid()).log")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["\(repo)/Appliance/image/boot-test.sh", qcow2, keelctl]
        let h = try FileHandle(forWritingTo: out)
        p.standardOutput = h
        p.standardError = h
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // Bounded: boot under TCG is about a minute; the script's own waits stop at 300 s each.
        let end = Date().addingTimeInterval(900)
        while p.isRunning && Date() < end { usleep(200_000) }
        if p.isRunning { p.terminate(); sleep(5); if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        p.waitUntilExit()
        let log = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
        print(log)
        XCTAssertEqual(p.terminationStatus, 0, "boot-test.sh failed")
        XCTAssertTrue(log.contains("boot-test: PASS"))
        // The figures it printed.
        let boot = log.range(of: #"keelctl status healthy after ([0-9.]+) s"#, options: .regularExpression).map { String(log[$0]) }
        XCTAssertNotNil(boot, "no boot time in the output")
        XCTAssertTrue(log.contains("HTTP to the VIP: 10 of 10"), "VIP traffic")
        XCTAssertNotNil(log.range(of: #"ping through the appliance: (19|20) of 20"#, options: .regularExpression), "routed traffic")
        XCTAssertTrue(log.contains("BGP: the client learned 203.0.113.10/32 from the appliance"), "the VM announces the VIP over BGP")
        XCTAssertTrue(log.contains("BGP: drained, the client's route to the VIP is withdrawn"), "drain withdraws it")
        XCTAssertNotNil(log.range(of: #"kill -9 keel-dataplane \(pid [0-9]+\): VIP withdrawn at the client after [0-9.]+ s, restarted by systemd \(pid [0-9]+, restarts [1-9]"#, options: .regularExpression),
                        "systemd restarts a killed data plane, and the VIP is withdrawn meanwhile")
    }
}
