import XCTest
import KeelTables

/// The writer and readers as real, separate processes on one shared file.
final class EpochSwapProcessTests: XCTestCase {
    var helper: URL { productsDirectory.appendingPathComponent("keel-swaptest") }

    /// 10,000 snapshots, each rewriting routes and next hops that encode their
    /// generation, while two reader processes (two threads each) check every
    /// loop turn for entries of two generations.
    func testTornReadStressAcrossProcesses() throws {
        let tmp = TempTables("stress")
        let writer = try Helper(helper, ["writer", tmp.path, "10000", "--create"])
        XCTAssertTrue(writer.waitFor("published", seconds: 30) || writer.output.contains("writer done"), writer.output)
        let r1 = try Helper(helper, ["reader", tmp.path, "0", "25", "--threads", "2"])
        let r2 = try Helper(helper, ["reader", tmp.path, "2", "25", "--threads", "2"])
        XCTAssertEqual(writer.wait(seconds: 120), 0, writer.output)
        XCTAssertTrue(writer.output.contains("writer done at generation 10000"), writer.output)
        XCTAssertEqual(r1.wait(seconds: 60), 0, r1.output)
        XCTAssertEqual(r2.wait(seconds: 60), 0, r2.output)
        for r in [r1, r2] {
            XCTAssertTrue(r.output.contains("readers ok"), r.output)
            // Each thread followed many generations, not just the last.
            for line in r.output.split(separator: "\n") where line.hasPrefix("reader line") {
                let switches = Int(line.split(separator: " ")[5]) ?? 0
                XCTAssertGreaterThan(switches, 1000, String(line))
            }
            print(r.output)
        }
    }

    /// The check can fail: a reader without a reader line is not waited for,
    /// and sees the writer rewrite its slot.
    func testNegativeControlSeesTornReads() throws {
        let tmp = TempTables("control")
        let writer = try Helper(helper, ["writer", tmp.path, "20000", "--create"])
        XCTAssertTrue(writer.waitFor("published", seconds: 30), writer.output)
        let reader = try Helper(helper, ["reader", tmp.path, "0", "20", "--threads", "2", "--unregistered"])
        XCTAssertEqual(reader.wait(seconds: 60), 1, reader.output)
        XCTAssertTrue(reader.output.contains("FAIL: torn read"), reader.output)
        writer.kill9()
    }

    /// kill -9 of a reader: the writer reports it stuck (by pid, not running)
    /// and leaves the slot alone; marked offline, the writer goes on.
    func testKilledReaderIsReportedThenMarkedOffline() throws {
        let tmp = TempTables("killreader")
        let writer = try Helper(helper, ["writer", tmp.path, "100000", "--create", "--grace-ms", "200"])
        XCTAssertTrue(writer.waitFor("published", seconds: 30) || true)
        let reader = try Helper(helper, ["reader", tmp.path, "3", "60"])
        usleep(1_500_000)
        reader.kill9()
        XCTAssertTrue(writer.waitFor("STUCK", seconds: 10), writer.output)
        XCTAssertTrue(writer.output.contains("reader line 3 (pid \(reader.process.processIdentifier), not running)"), writer.output)
        let before = writer.output.components(separatedBy: "published").count
        let off = try Helper(helper, ["offline", tmp.path, "3"])
        XCTAssertEqual(off.wait(seconds: 10), 0, off.output)
        // Progress again: more "published N000" lines, and no longer stuck.
        usleep(3_000_000)
        XCTAssertGreaterThan(writer.output.components(separatedBy: "published").count, before, writer.output)
        let tail = writer.output.split(separator: "\n").suffix(2).joined()
        XCTAssertFalse(tail.contains("STUCK"), tail)
        writer.kill9()
    }

    /// kill -9 of the writer mid-publish: readers keep the last published
    /// snapshot, whole; a restarted writer continues the generations.
    func testKilledWriterLeavesReadersIntactAndResumes() throws {
        let tmp = TempTables("killwriter")
        let writer = try Helper(helper, ["writer", tmp.path, "1000000", "--create"])
        XCTAssertTrue(writer.waitFor("published 2000", seconds: 60), writer.output)
        let reader = try Helper(helper, ["reader", tmp.path, "0", "12", "--threads", "2"])
        usleep(1_000_000)
        writer.kill9()
        let file = try TablesFile.open(path: tmp.path)
        let p = file.published.load(ordering: .acquiring)
        // The published snapshot verifies whole, whatever the writer was doing to the other slot.
        let v = try SnapshotVerifier.verify(file.slot(Int(p & 1)), available: file.layout.length)
        XCTAssertEqual(v.generation, p >> 1)
        usleep(1_000_000)
        let restarted = try Helper(helper, ["writer", tmp.path, "3000"])
        XCTAssertEqual(restarted.wait(seconds: 120), 0, restarted.output)
        XCTAssertTrue(restarted.output.contains("resuming after generation \(p >> 1)"), restarted.output)
        XCTAssertTrue(restarted.output.contains("writer done at generation \((p >> 1) + 3000)"), restarted.output)
        XCTAssertEqual(reader.wait(seconds: 60), 0, reader.output)
        XCTAssertTrue(reader.output.contains("readers ok"), reader.output)
    }

    /// Writer and readers as threads of one process under the thread sanitizer
    /// (it cannot see across processes). Tests/run.sh builds the instrumented helper.
    func testThreadSanitizerRun() throws {
        let tsan = URL(fileURLWithPath: DifferentialRoot.path).appendingPathComponent(".build-tsan/release/keel-swaptest")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: tsan.path),
                      "build it first: swift build -c release --sanitize=thread --product keel-swaptest --scratch-path .build-tsan")
        let tmp = TempTables("tsan")
        let run = try Helper(tsan, ["threads", tmp.path, "2000", "2"])
        let status = run.wait(seconds: 300)
        XCTAssertFalse(run.output.contains("ThreadSanitizer"), run.output)
        XCTAssertEqual(status, 0, run.output)
        XCTAssertTrue(run.output.contains("threads ok"), run.output)
    }
}
