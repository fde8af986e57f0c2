import Foundation
import XCTest

/// Scale-out (docs/scale-out.md) in a namespace lab: two appliances, each with
/// its own data plane, control plane and BIRD, peer over BGP through their
/// TAPs with an upstream BIRD that installs an ECMP route; Appliance/lab/fleet.sh
/// runs the checks (long-lived flows keep their backends when the upstream
/// moves them to the other appliance; a stopped data plane and a drain
/// withdraw the announcement; a drained appliance reports empty tables).
final class FleetTests: XCTestCase {
    var repo: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path }

    func testTwoAppliancesBehindECMP() throws {
        let bin = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().path
        let out = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("keel-fleet-\(getpid()).log")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["\(repo)/Appliance/lab/fleet.sh", "test"]
        p.environment = ProcessInfo.processInfo.environment.merging(["KEEL_BIN": bin]) { $1 }
        let h = try FileHandle(forWritingTo: out)
        p.standardOutput = h
        p.standardError = h
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let end = Date().addingTimeInterval(600)
        while p.isRunning && Date() < end { usleep(200_000) }
        if p.isRunning { p.terminate(); sleep(5); if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        p.waitUntilExit()
        let log = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
        print(log.split(separator: "\n").filter { !$0.contains("qdisc") && !$0.contains("tap") }.joined(separator: "\n"))
        XCTAssertEqual(p.terminationStatus, 0, "fleet.sh failed")
        XCTAssertTrue(log.contains("fleet: PASS"))
        XCTAssertTrue(log.contains("nexthop via 10.0.0.1") && log.contains("nexthop via 10.0.0.2"), "an ECMP route over both appliances")
        XCTAssertNotNil(log.range(of: #"answered: 200 of 200; VIP packets through A: [1-9]"#, options: .regularExpression), "flows through both")
        XCTAssertTrue(log.contains("answered 200 of 200, all through B"), "the moved flows answered")
        XCTAssertTrue(log.contains("on another backend than before: 0"), "each flow on the same backend")
        XCTAssertTrue(log.contains("empty: no flows left in the connection tables"), "drain reports empty tables")
    }
}
