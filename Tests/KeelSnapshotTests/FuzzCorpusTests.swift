import Foundation
import XCTest
import KeelAPI
import KeelCompiler
import KeelTables

/// The fuzz targets' corpus (Tests/Fuzz): every packet fixture's frame is in
/// it, and both targets, built normally, run their whole corpus without a
/// failure (crashes, mbuf leaks and accepted corrupt headers abort them).
/// Tests/fuzz.sh fuzzes from this corpus with libFuzzer in CI.
enum FuzzCorpus {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz")

    /// A corpus file's name: FNV-1a of its bytes (libFuzzer names its own by SHA-1; either is fine).
    static func name(_ bytes: [UInt8]) -> String {
        var h: UInt64 = 0xcbf29ce484222325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        return "fixture-" + String(h, radix: 16)
    }

    /// Each frame must be in the packet corpus; with KEEL_WRITE_CORPUS set,
    /// the missing ones are written instead (then commit them).
    static func checkSeeds(_ frames: [[UInt8]], file: StaticString = #filePath, line: UInt = #line) {
        let dir = root.appendingPathComponent("packet")
        let write = ProcessInfo.processInfo.environment["KEEL_WRITE_CORPUS"] != nil
        for f in frames {
            let path = dir.appendingPathComponent(name(f)).path
            if let have = FileManager.default.contents(atPath: path), [UInt8](have) == f { continue }
            if write {
                try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                FileManager.default.createFile(atPath: path, contents: Data(f))
            } else {
                XCTFail("fixture frame missing from the fuzz corpus (run the fixtures with KEEL_WRITE_CORPUS=1): \(path)", file: file, line: line)
            }
        }
    }
}

final class FuzzCorpusTests: XCTestCase {
    func replay(_ target: String) throws -> (Int32, String, Int) {
        let dir = FuzzCorpus.root.appendingPathComponent(target).path
        let count = try FileManager.default.contentsOfDirectory(atPath: dir).filter { !$0.hasPrefix(".") }.count
        let p = Process()
        p.executableURL = productsDirectory.appendingPathComponent("keel-fuzz-\(target)")
        p.arguments = [dir]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text, count)
    }

    func testPacketCorpusRunsClean() throws {
        let (status, out, count) = try replay("packet")
        XCTAssertGreaterThanOrEqual(count, 60, "the fixtures seed the corpus")
        XCTAssertEqual(status, 0, out)
        XCTAssertTrue(out.contains("replayed \(count) inputs, no failure"), out)
    }

    func testTablesCorpusRunsClean() throws {
        let (status, out, count) = try replay("tables")
        XCTAssertGreaterThanOrEqual(count, 2)
        XCTAssertEqual(status, 0, out)
        XCTAssertTrue(out.contains("replayed \(count) inputs, no failure"), out)
    }

    /// The tables corpus's seeds: a real published slot header and a real
    /// file header (KEEL_WRITE_CORPUS writes them; they differ per run by
    /// generation and pid, so they are checked by kind, not by content).
    func testTablesSeedsAreRealHeaders() throws {
        let dir = FuzzCorpus.root.appendingPathComponent("tables")
        let tmp = TempTables("seeds")
        let file = try TablesFile.create(path: tmp.path, limits: .small, readers: 2)
        try SnapshotPublisher(file: file).publish(try Compiler(limits: .small).replace(with: ConfigValidationTests.base))
        if ProcessInfo.processInfo.environment["KEEL_WRITE_CORPUS"] != nil {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: dir.appendingPathComponent("slot-header").path,
                                           contents: Data(bytes: file.slot(0), count: SnapshotLayout.headerSize))
            FileManager.default.createFile(atPath: dir.appendingPathComponent("file-header").path,
                                           contents: Data(bytes: file.base, count: 4096))
        }
        let slot = try XCTUnwrap(FileManager.default.contents(atPath: dir.appendingPathComponent("slot-header").path))
        let head = try XCTUnwrap(FileManager.default.contents(atPath: dir.appendingPathComponent("file-header").path))
        XCTAssertEqual(slot.count, SnapshotLayout.headerSize)
        XCTAssertEqual(Array(slot.prefix(8)), Array(Data(bytes: file.slot(0), count: 8)), "a slot header's magic")
        XCTAssertEqual(Array(head.prefix(12)), Array(Data(bytes: file.base, count: 12)), "a file header's magic and version")
        // Alone, a slot header is refused for the slot it does not have, not misread.
        XCTAssertThrowsError(try slot.withUnsafeBytes { try SnapshotVerifier.verify($0.baseAddress!, available: $0.count) }) {
            XCTAssertTrue("\($0)".contains("exceeds its slot"), "\($0)")
        }
    }
}
