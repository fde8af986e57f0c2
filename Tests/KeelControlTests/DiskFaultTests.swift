import Foundation
import KeelAPI
import XCTest

/// keel-control's store on a real ext4 filesystem (a loop device) that fills
/// up, and then fails and goes read-only under it (ext4's errors=remount-ro,
/// triggered through /sys/fs/ext4/DEV/trigger_fs_error): writes are refused
/// with a 503 that says why and change nothing, in the store or in the
/// published tables; reads keep working; keel-control restarts on the
/// read-only disk and serves what it stored; nothing acknowledged is lost and
/// the database passes SQLite's integrity check.
final class DiskFaultTests: XCTestCase {
    @discardableResult
    func sh(_ command: String) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", command]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return (-1, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func routes(_ c: ControlProcess) -> Set<String> {
        let (status, body) = c.http("GET", "/v1/routes?limit=10000")
        XCTAssertEqual(status, 200, body)
        guard case .array(let a)? = (try? JSONDecoder().decode([String: JSONValue].self, from: Data(body.utf8)))?["routes"] else { return [] }
        return Set(a.compactMap { if case .object(let o) = $0, case .string(let p)? = o["prefix"] { return p }; return nil })
    }

    func route(_ i: Int) -> String { "10.\(100 + i / 250).\(i % 250).0/24" }

    func testFullThenReadOnlyDiskRefusesWritesKeepsReadsLosesNothing() throws {
        let c = try ControlProcess()
        let data = c.dir + "/data", image = c.dir + ".img"
        XCTAssertEqual(sh("truncate -s 24M \(image) && mkfs.ext4 -q -F \(image)").0, 0)
        let loop = sh("losetup -f --show \(image)").1.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(loop.hasPrefix("/dev/loop"), loop)
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        XCTAssertEqual(sh("mount -o errors=remount-ro \(loop) \(data)").0, 0)
        defer {
            _ = c.stop()
            sh("umount \(data); losetup -d \(loop); rm -f \(image)")
            c.cleanup()
        }
        try c.start()
        XCTAssertEqual(c.http("PUT", "/v1/config", body: #"{"ports":[{"name":"p1","mac":"02:00:00:00:00:02","addresses":["10.2.0.1/24"]}]}"#).0, 200)
        var acknowledged: [String] = [], refused: [String] = []
        var reasons = Set<String>()
        func write(_ i: Int) -> Int {
            let (status, body) = c.http("POST", "/v1/routes", body: #"{"prefix":"\#(route(i))","next_hops":[{"gateway":"10.2.0.2"}]}"#)
            if status == 200 { acknowledged.append(route(i)) } else {
                refused.append(route(i))
                XCTAssertEqual(status, 503, body)
                let message = (try? JSONDecoder().decode([String: JSONValue].self, from: Data(body.utf8)))?["error"].flatMap { if case .string(let s) = $0 { return s }; return nil } ?? body
                reasons.insert(message)
            }
            return status
        }
        for i in 0..<50 { XCTAssertEqual(write(i), 200) }

        // 1. The disk fills up (dd until ENOSPC). Writes that still fit in
        // SQLite's allocated pages are stored; then they are refused.
        sh("dd if=/dev/zero of=\(data)/filler bs=64k 2>/dev/null; sync")
        var firstRefused = -1
        for i in 50..<1050 {
            if write(i) == 503, firstRefused < 0 { firstRefused = i }
            if firstRefused >= 0 && i >= firstRefused + 20 { break }
        }
        XCTAssertGreaterThanOrEqual(firstRefused, 0, "no write refused on a full disk")
        XCTAssertTrue(reasons.contains { $0.contains("not stored") && $0.contains("is full") }, "\(reasons)")
        // Reads go on; the refused routes are neither stored nor in the data plane's tables.
        let stored = routes(c)
        XCTAssertEqual(acknowledged.filter { !stored.contains($0) }, [], "acknowledged writes missing")
        XCTAssertEqual(refused.filter { stored.contains($0) }, [], "refused writes stored")
        let trace = c.http("GET", "/v1/trace?dst=\(refused.first?.replacingOccurrences(of: ".0/24", with: ".1") ?? "")")
        XCTAssertEqual(trace.0, 200, trace.1)
        XCTAssertTrue(trace.1.contains("no-route"), "a refused route reached the published tables: \(trace.1)")
        XCTAssertEqual(c.http("GET", "/v1/status").0, 200)
        // Room again: writes go through.
        sh("rm -f \(data)/filler; sync")
        for i in 1100..<1110 { XCTAssertEqual(write(i), 200) }
        let full = (acknowledged.count, refused.count)

        // 2. The disk fails: ext4 remounts it read-only. Writes are refused, reads work.
        let dev = (loop as NSString).lastPathComponent
        XCTAssertEqual(sh("echo keel-test > /sys/fs/ext4/\(dev)/trigger_fs_error").0, 0)
        let mounts = sh("grep ' \(data) ' /proc/mounts").1
        XCTAssertTrue(mounts.contains("emergency_ro") || mounts.contains(" ro,"), mounts)
        for i in 1200..<1210 { XCTAssertEqual(write(i), 503) }
        XCTAssertEqual(Set(acknowledged), routes(c), "reads on the read-only disk")
        // 3. keel-control restarts on the read-only disk (kill -9, as a crash would):
        // it serves what it stored and still refuses writes.
        c.kill9()
        try c.start()
        XCTAssertEqual(Set(acknowledged), routes(c), "after the restart on the read-only disk")
        for i in 1300..<1305 { XCTAssertEqual(write(i), 503) }
        XCTAssertTrue(reasons.contains { $0.contains("failed a write") }, "\(reasons)")
        XCTAssertTrue(reasons.contains { $0.contains("is read-only") }, "\(reasons)")
        XCTAssertEqual(c.http("GET", "/v1/revisions?limit=1").0, 200)
        _ = c.stop()

        // 4. Nothing corrupted: the database file, checked by SQLite itself after the disk is back.
        sh("umount \(data)")
        XCTAssertEqual(sh("mount \(loop) \(data)").0, 0)
        let check = sh("python3 -c \"import sqlite3; c = sqlite3.connect('\(data)/keel.db'); print(c.execute('pragma integrity_check').fetchone()[0], c.execute('select count(*) from routes where until is null').fetchone()[0])\"")
        print("disk faults: full disk: \(full.0) writes acknowledged, \(full.1) refused (first at write \(firstRefused)); read-only disk: \(refused.count - full.1) refused; reasons: \(reasons.sorted()); integrity: \(check.1.trimmingCharacters(in: .whitespacesAndNewlines))")
        XCTAssertTrue(check.1.hasPrefix("ok "), check.1)
        try c.start()
        XCTAssertEqual(Set(acknowledged), routes(c), "after the disk is back")
        XCTAssertEqual(write(1400), 200)

        // 5. A store closed cleanly (no -wal, no -shm left), then mounted
        // read-only (as after a failed fsck at boot): keel-control starts,
        // serves it and refuses changes.
        XCTAssertEqual(c.stop(), 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: data + "/keel.db-wal"), "SQLite left its WAL after a clean close")
        sh("umount \(data)")
        XCTAssertEqual(sh("mount -o ro \(loop) \(data)").0, 0)
        try c.start()
        XCTAssertEqual(Set(acknowledged), routes(c), "served from the read-only store")
        let onReadOnly = c.http("POST", "/v1/routes", body: #"{"prefix":"10.120.0.0/24","next_hops":[{"gateway":"10.2.0.2"}]}"#)
        XCTAssertEqual(onReadOnly.0, 503, onReadOnly.1)
        XCTAssertTrue(onReadOnly.1.contains("is read-only"), onReadOnly.1)
        XCTAssertTrue(((try? String(contentsOfFile: c.log, encoding: .utf8)) ?? "").contains("filesystem is read-only"))
    }
}
