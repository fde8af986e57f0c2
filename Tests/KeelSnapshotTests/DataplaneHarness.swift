import Foundation
import XCTest
import KeelAPI
import KeelCompiler
import KeelTables

/// Runs the real keel-dataplane process on net_pcap ports: each port replays
/// an input capture and records what the data plane transmits. The routing
/// configuration is compiled and published to a fresh tables file first.
struct DataplaneRun {
    var outputs: [[[UInt8]]] = []
    var stats: [String: Any] = [:]
    var log = ""
    var status: Int32 = 0

    /// `pipeline`: one I/O and one worker lcore (else one run-to-completion lcore).
    /// `netns`: run inside a private network namespace (needed for TAPs, which the kernel creates).
    static func run(_ routing: Configuration, inputs: [[[UInt8]]], seconds: Double = 2, pipeline: Bool = false,
                    taps: Bool = false, extraYAML: String = "") throws -> DataplaneRun {
        let tag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let dir = NSTemporaryDirectory() + "keel-dp-\(tag)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { if ProcessInfo.processInfo.environment["KEEL_KEEP"] == nil { try? FileManager.default.removeItem(atPath: dir) } }
        let tmp = TempTables("dp")
        let file = try TablesFile.create(path: tmp.path, limits: .small, readers: 4)
        let publisher = SnapshotPublisher(file: file)
        try publisher.publish(try Compiler(limits: .small).replace(with: routing))

        var yaml = "tables: \(tmp.path)\nstats: \(dir)/stats\n"
        yaml += pipeline ? "lcores: {main: 0, io: [1], workers: [2]}\n" : "lcores: {main: 0, io: [1]}\n"
        yaml += "ports:\n"
        for (i, frames) in inputs.enumerated() {
            Pcap.writePcap("\(dir)/in\(i).pcap", frames)
            yaml += "  - name: \(routing.ports[i].name)\n    device: net_pcap\(i),rx_pcap=\(dir)/in\(i).pcap,tx_pcap=\(dir)/out\(i).pcap\n"
            if taps { yaml += "    tap: kt\(i)-\(tag.suffix(6))\n" }
        }
        yaml += extraYAML
        try yaml.write(toFile: "\(dir)/dataplane.yaml", atomically: true, encoding: .utf8)
        let binary = productsDirectory.appendingPathComponent("keel-dataplane").path
        var args = ["--config", "\(dir)/dataplane.yaml", "--seconds", String(seconds), "--",
                    "--no-pci", "--no-huge", "-m", "256", "--no-shconf", "--log-level", "lib.eal:error",
                    "--lcores", pipeline ? "0@0,1@1,2@1" : "0@0,1@1", "--file-prefix", "keeldp\(tag)"]
        var exe = URL(fileURLWithPath: binary)
        let ns = "keel-dp-\(tag)"
        if taps {
            XCTAssertEqual(shell("ip netns add \(ns)"), 0)
            exe = URL(fileURLWithPath: "/usr/sbin/ip")
            args = ["netns", "exec", ns, binary] + args
        }
        defer { if taps { _ = shell("ip netns del \(ns)") } }
        let dp = try Helper(exe, args)
        var r = DataplaneRun()
        r.status = dp.wait(seconds: seconds + 60)
        r.log = dp.output
        r.outputs = (0..<inputs.count).map { Pcap.readPcap("\(dir)/out\($0).pcap") }
        if let line = r.log.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
           let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] {
            r.stats = obj
        }
        return r
    }

    func drops(_ reason: String) -> Int { ((stats["drops"] as? [String: Any])?[reason] as? NSNumber)?.intValue ?? 0 }
    func event(_ name: String) -> Int { ((stats["events"] as? [String: Any])?[name] as? NSNumber)?.intValue ?? 0 }
    func port(_ i: Int, _ field: String) -> Int {
        guard let ports = stats["ports"] as? [[String: Any]], i < ports.count else { return -1 }
        return (ports[i][field] as? NSNumber)?.intValue ?? -1
    }
}

/// Runs a shell command; returns its exit status.
@discardableResult
func shell(_ command: String) -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    do { try p.run() } catch { return -1 }
    p.waitUntilExit()
    return p.terminationStatus
}
