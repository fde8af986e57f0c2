// libFuzzer target over the tables-file readers, the data plane's only input
// from another process:
// - the input as a snapshot slot: `SnapshotVerifier.verify` over exactly the
//   input's bytes (a heap allocation of that size, so the address sanitizer
//   sees any read past it) must throw or accept; it may not read out of bounds;
// - the input as a whole tables file: `TablesFile.open` must refuse it with an
//   error (an input cannot be the 64 MiB and more that a real file is), and
//   never fault on a file shorter than its header says;
// - the input's first 4 KiB written over the header of a real published
//   slot: verify must refuse it unless the header is unchanged.
//
// Built with libFuzzer and the address sanitizer by Tests/fuzz.sh; in the
// normal build the replay main (CKeelFuzzMain) runs the corpus once.
import CKeelFuzzMain
import Foundation
import KeelAPI
import KeelCompiler
import KeelTables

final class TablesHarness {
    let dir = "/dev/shm/keel-fuzz-tables-\(getpid())"
    let file: TablesFile
    let pristine: UnsafeMutableRawPointer // slot 0's header as published

    init() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        file = try TablesFile.create(path: "\(dir)/tables", limits: .small, readers: 2)
        let config = Configuration(
            ports: [Port(name: "p0", mac: "02:00:00:00:01:00", addresses: ["10.1.0.1/24", "2001:db8:1::1/64"])],
            routes: [Route(prefix: "0.0.0.0/0", nextHops: [NextHop(gateway: "10.1.0.254")]),
                     Route(prefix: "2001:db8:ff::/48", nextHops: [NextHop(gateway: "2001:db8:1::2")])],
            vips: [VIP(id: 1, address: "192.0.2.10", port: 80, tableSize: 251, backends: [Backend(id: 1, address: "10.1.0.11")])])
        try SnapshotPublisher(file: file).publish(try Compiler(limits: .small).replace(with: config))
        pristine = .allocate(byteCount: SnapshotLayout.headerSize, alignment: 64)
        pristine.copyMemory(from: file.slot(0), byteCount: SnapshotLayout.headerSize)
        _ = try SnapshotVerifier.verify(file.slot(0), available: file.layout.length) // the seed is valid
        // The mapping outlives the name: a killed run leaves no file behind.
        unlink("\(dir)/tables")
    }

    func run(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        // 1. The input as a slot of its own size.
        if let data { _ = try? SnapshotVerifier.verify(UnsafeRawPointer(data), available: size) }
        // 2. The input as a tables file.
        let path = "\(dir)/input"
        let fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0o600)
        if fd >= 0 {
            if let data, size > 0 { _ = write(fd, data, size) }
            close(fd)
            if let opened = try? TablesFile.open(path: path) {
                fputs("keel-fuzz-tables: a \(size)-byte file was opened as a tables file of \(opened.size) bytes\n", stderr)
                abort()
            }
            unlink(path)
        }
        // 3. The input over a real slot's header.
        guard let data, size > 0 else { return }
        let slot = file.slot(0)
        let n = min(size, SnapshotLayout.headerSize)
        slot.copyMemory(from: data, byteCount: n)
        // (An unchanged header is the published snapshot: verifying it would
        // only checksum the whole slot again.)
        if memcmp(slot, pristine, n) != 0, let result = try? SnapshotVerifier.verify(slot, available: file.layout.length) {
            fputs("keel-fuzz-tables: a changed header was accepted (generation \(result.generation))\n", stderr)
            abort()
        }
        slot.copyMemory(from: pristine, byteCount: SnapshotLayout.headerSize)
    }
}

nonisolated(unsafe) var harness: TablesHarness?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    do { harness = try TablesHarness() } catch {
        fputs("keel-fuzz-tables: \(error)\n", stderr)
        exit(2)
    }
    atexit { if let h = harness { try? FileManager.default.removeItem(atPath: h.dir) } }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    harness!.run(data, size)
    return 0
}
