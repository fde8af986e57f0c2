import Foundation
import XCTest
import KeelTables

/// A tables file in /dev/shm with a unique name, removed at the end of the test.
final class TempTables {
    let path: String
    init(_ name: String) {
        path = "/dev/shm/keel-test-\(getpid())-\(name)-\(UInt32.random(in: 0...UInt32.max))"
        unlink(path)
    }
    deinit { unlink(path) }
}

/// Snapshot bytes equal, apart from the generation and the header checksum over it.
func sameSnapshot(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, length: Int) -> String? {
    if memcmp(a, b, 16) != 0 { return "header bytes 0..<16 differ" }
    if memcmp(a + 24, b + 24, SnapshotLayout.headerSize - 28) != 0 { return "header bytes 24..<4092 differ" }
    var off = SnapshotLayout.headerSize
    while off < length {
        let n = min(1 << 20, length - off)
        if memcmp(a + off, b + off, n) != 0 {
            var i = off
            while (a + i).load(as: UInt8.self) == (b + i).load(as: UInt8.self) { i += 1 }
            return "first difference at byte \(i)"
        }
        off += n
    }
    return nil
}

/// The directory of the test binary, where SwiftPM puts the helper executables.
var productsDirectory: URL {
    URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
}

/// Starts a helper process with its output collected in a file.
final class Helper {
    let process = Process()
    let outURL: URL
    init(_ executable: URL, _ args: [String]) throws {
        outURL = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("keel-helper-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        let h = try FileHandle(forWritingTo: outURL)
        process.executableURL = executable
        process.arguments = args
        process.standardOutput = h
        process.standardError = h
        try process.run()
    }
    var output: String { (try? String(contentsOf: outURL, encoding: .utf8)) ?? "" }
    /// Waits at most `seconds`; kills the process if it is still running then.
    @discardableResult
    func wait(seconds: Double) -> Int32 {
        let end = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < end { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return -1
        }
        return process.terminationStatus
    }
    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
    /// Waits until the output contains `text`, at most `seconds`.
    func waitFor(_ text: String, seconds: Double) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if output.contains(text) { return true }
            usleep(20_000)
        }
        return false
    }
    deinit {
        if process.isRunning { kill9() }
        try? FileManager.default.removeItem(at: outURL)
    }
}
