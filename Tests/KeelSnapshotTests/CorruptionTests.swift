import XCTest
import KeelAPI
import KeelCompiler
import KeelTables

/// A bad snapshot or file is refused with a clear message; readers keep the last good one.
final class CorruptionTests: XCTestCase {
    func published(_ name: String, generations: Int) throws -> (TempTables, TablesFile, SnapshotPublisher, Compiler) {
        let tmp = TempTables(name)
        let file = try TablesFile.create(path: tmp.path, limits: .small, readers: 2)
        let publisher = SnapshotPublisher(file: file)
        let compiler = Compiler(limits: .small)
        try publisher.publish(try compiler.replace(with: ConfigValidationTests.base))
        for i in 1..<generations {
            try publisher.publish(try compiler.setRoute(Route(prefix: "203.0.\(i).0/24", nextHops: [NextHop(gateway: "10.2.0.7")])))
        }
        return (tmp, file, publisher, compiler)
    }

    func testBadChecksumRefusedAndLastGoodKept() throws {
        let (tmp, file, publisher, compiler) = try published("crc", generations: 2)
        _ = tmp
        let acceptor = SnapshotAcceptor(file: file)
        XCTAssertEqual(acceptor.poll(), .accepted(2))
        var reader = LcoreReader(file: file, line: 0, source: acceptor.accepted)
        reader.online()
        XCTAssertEqual(reader.generation, 2)
        // Generation 3 changes one route; flip a byte in the root entries it wrote.
        try publisher.publish(try compiler.setRoute(Route(prefix: "203.0.99.0/24", nextHops: [NextHop(gateway: "10.2.0.8")])))
        let p = file.published.load(ordering: .acquiring)
        let slot = file.slot(Int(p & 1))
        let entry = file.layout.offset(.ipv4) + 4096 + Int(IPv4Prefix.parseAddress("203.0.99.0")! >> 8) * 4
        slot.storeBytes(of: slot.load(fromByteOffset: entry, as: UInt8.self) ^ 0x40, toByteOffset: entry, as: UInt8.self)
        guard case .refused(3, let why) = acceptor.poll() else { return XCTFail("a corrupt generation 3 was accepted") }
        XCTAssertTrue(why.contains("checksum mismatch"), why)
        XCTAssertFalse(reader.refresh(), "the lcore stays on the last good snapshot")
        XCTAssertEqual(reader.generation, 2)
        XCTAssertEqual(acceptor.poll(), .unchanged, "refused once, not again on every poll")
        // A fresh process verifying everything refuses it too.
        guard case .refused = SnapshotAcceptor(file: file).poll() else { return XCTFail() }
        reader.offline()
    }

    func testWrongVersionMagicAndHeaderChecksum() throws {
        let (tmp, file, _, _) = try published("version", generations: 1)
        _ = tmp
        let slot = file.slot(0)
        // Layout version 2, with a header checksum that matches it.
        slot.storeBytes(of: UInt32(2), toByteOffset: 8, as: UInt32.self)
        slot.storeBytes(of: crc32c(slot, 4092), toByteOffset: 4092, as: UInt32.self)
        XCTAssertThrowsError(try SnapshotVerifier.verify(slot, available: file.layout.length)) {
            XCTAssertTrue("\($0)".contains("layout version 2, this build reads version 1"), "\($0)")
        }
        // Any other header byte changed: the header checksum catches it.
        slot.storeBytes(of: UInt32(1), toByteOffset: 8, as: UInt32.self)
        slot.storeBytes(of: UInt8(9), toByteOffset: 200, as: UInt8.self)
        XCTAssertThrowsError(try SnapshotVerifier.verify(slot, available: file.layout.length)) {
            XCTAssertTrue("\($0)".contains("header checksum mismatch"), "\($0)")
        }
        slot.storeBytes(of: UInt64(0x1234), toByteOffset: 0, as: UInt64.self)
        XCTAssertThrowsError(try SnapshotVerifier.verify(slot, available: file.layout.length)) {
            XCTAssertTrue("\($0)".contains("bad magic"), "\($0)")
        }
        // A slot smaller than the snapshot says it is.
        XCTAssertThrowsError(try SnapshotVerifier.header(file.slot(1), available: 1 << 20))
        // The file: a version this build does not read.
        file.base.storeBytes(of: UInt32(9), toByteOffset: 8, as: UInt32.self)
        XCTAssertThrowsError(try TablesFile.open(path: tmp.path)) {
            XCTAssertTrue("\($0)".contains("tables file version 9, this build reads version 1"), "\($0)")
        }
    }

    func testTruncatedFile() throws {
        let (tmp, file, _, _) = try published("trunc", generations: 1)
        let size = file.size
        XCTAssertEqual(truncate(tmp.path, off_t(size / 2)), 0)
        XCTAssertThrowsError(try TablesFile.open(path: tmp.path)) {
            XCTAssertTrue("\($0)".contains("truncated: \(size / 2) bytes, the header says \(size)"), "\($0)")
        }
        XCTAssertEqual(truncate(tmp.path, 100), 0)
        XCTAssertThrowsError(try TablesFile.open(path: tmp.path)) { XCTAssertTrue("\($0)".contains("too short"), "\($0)") }
        XCTAssertThrowsError(try TablesFile.open(path: tmp.path + "-missing")) { XCTAssertTrue("\($0)".contains("No such file"), "\($0)") }
    }

    func testCreateRefusesExistingFile() throws {
        let (tmp, _, _, _) = try published("exists", generations: 1)
        XCTAssertThrowsError(try TablesFile.create(path: tmp.path, limits: .small, readers: 2)) {
            XCTAssertTrue("\($0)".contains("File exists"), "\($0)")
        }
    }

    /// The data plane prefetches LPM entries differently on huge pages; it
    /// learns where the file is from `onHugePages`. (Tests/run.sh mounts
    /// /dev/hugepages.)
    func testKnowsWhetherItIsOnHugePages() throws {
        let (_, shm, _, _) = try published("shm", generations: 1)
        XCTAssertFalse(shm.onHugePages)
        let path = "/dev/hugepages/keel-test-\(getpid())-huge"
        unlink(path)
        defer { unlink(path) }
        let huge = try TablesFile.create(path: path, limits: .small, readers: 2)
        XCTAssertTrue(huge.onHugePages)
    }
}
