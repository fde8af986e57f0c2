import XCTest
import KeelAPI
import KeelCompiler
import KeelTables
import KeelTestData

final class CompilerSnapshotTests: XCTestCase {
    let limits = SnapshotLimits.small

    func testCompiledLPMAnswersLikeAFreshBuild() throws {
        let table = try FullTable.load(path: FullTable.defaultPath(repositoryRoot: DifferentialRoot.path))
        var config = ConfigValidationTests.base
        let gateways = ["10.2.0.2", "10.2.0.3", "10.2.0.4", "10.2.0.5"]
        // Every 20th prefix of the full table, as configuration text.
        for (i, r) in stride(from: 0, to: table.v4.count, by: 20).map({ table.v4[$0] }).enumerated() {
            config.routes.append(Route(prefix: r.prefix.description, nextHops: [NextHop(gateway: gateways[i % 4])]))
        }
        for (i, r) in stride(from: 0, to: table.v6.count, by: 20).map({ table.v6[$0] }).enumerated() {
            config.routes.append(Route(prefix: r.prefix.description, nextHops: [NextHop(gateway: "2001:db8:2::\(i % 3 + 2)")]))
        }
        config.routes.removeAll { $0.prefix == "0.0.0.0/0" }
        let compiler = Compiler(limits: SnapshotLimits(ipv4Groups: 1024, ipv6Groups: 16384, nextHopGroups: 256, ecmpWays: 8, ports: 8,
                                                       neighbors: 64, vips: 16, backendsPerVIP: 64, maglevMaxSize: 4099))
        let changes = try compiler.replace(with: config)
        let region = try MemoryRegion(size: SnapshotLayout(compiler.limits).length)
        let builder = try SnapshotBuilder(formatting: region.base, layout: SnapshotLayout(compiler.limits))
        for c in changes { try builder.apply(c) }
        builder.seal(generation: 1)
        let snap = Snapshot(verified: region.base, layout: builder.layout)

        // The same routes straight into a plain table.
        let plainRegion = try MemoryRegion(size: IPv4LPM.regionSize(tbl8Groups: 1024))
        let plain = try IPv4LPM(region: plainRegion.base, size: plainRegion.size, tbl8Groups: 1024)
        try plain.build(compiler.state.routes4.map { ($0.key, $0.value) })
        var probes = AddressStream.uniformV4(count: 1_000_000, seed: 5)
        for p in compiler.state.routes4.keys { probes += [p.first, p.last, p.first &- 1, p.last &+ 1] }
        var mismatches = 0
        for a in probes where snap.ipv4.lookup(a) != plain.view.lookup(a) { mismatches += 1 }
        XCTAssertEqual(mismatches, 0)
        // And the answers mean what the configuration says.
        let gw = snap.member(snap.ipv4.lookup(IPv4Prefix.parseAddress("198.51.100.9")!), 0)
        XCTAssertEqual(snap.nextHopGroup(snap.ipv4.lookup(IPv4Prefix.parseAddress("198.51.100.9")!)).count, 2)
        XCTAssertEqual(gw.port, 1)
        XCTAssertEqual(IPAddress.load(from: gw.gateway), IPAddress("10.2.0.2"))
        XCTAssertEqual(snap.nextHopGroup(snap.ipv4.lookup(IPv4Prefix.parseAddress("10.1.0.1")!)).kind, NextHopKind.local.rawValue)
        XCTAssertEqual(snap.nextHopGroup(snap.ipv4.lookup(IPv4Prefix.parseAddress("10.1.0.77")!)).kind, NextHopKind.connected.rawValue)
        XCTAssertEqual(snap.ipv4.lookup(IPv4Prefix.parseAddress("0.0.0.1")!), LPMEntry.noRoute)
        let vip = [UInt8](repeating: 0, count: 10) + [0xff, 0xff, 192, 0, 2, 10]
        let index = vip.withUnsafeBytes { snap.vip(address: $0.baseAddress!, proto: 6, port: 80) }
        XCTAssertEqual(index, 0)
        XCTAssertEqual(vip.withUnsafeBytes { snap.vip(address: $0.baseAddress!, proto: 6, port: 81) }, -1)
        XCTAssertEqual(snap.vipRecord(0)?.backendCount, 2)
    }

    /// 10,000 random changes published one by one; then the published slot is
    /// compared byte for byte with a fresh compile of the final configuration.
    func testIncrementalEqualsFreshAfter10000Changes() throws {
        let limits = SnapshotLimits(ipv4Groups: 1024, ipv6Groups: 512, nextHopGroups: 256, ecmpWays: 8, ports: 8,
                                    neighbors: 64, vips: 16, backendsPerVIP: 64, maglevMaxSize: 4099)
        let tmp = TempTables("incr")
        let file = try TablesFile.create(path: tmp.path, limits: limits, readers: 2)
        let publisher = SnapshotPublisher(file: file)
        let compiler = Compiler(limits: limits)
        try publisher.publish(try compiler.replace(with: ConfigValidationTests.base))
        var rng = SplitMix64(seed: 2026)
        let gateways = (2...9).map { "10.2.0.\($0)" }
        var kinds = [Int](repeating: 0, count: 5)
        var refused = 0, publishRefused = 0
        for _ in 0..<10_000 {
            var changes: [SnapshotChange] = []
            let k = Int(rng.next() % 10)
            compiler.begin()
            do {
                switch k {
                case 0...4: // route add/replace, ECMP of 1-3 gateways
                    let n = Int(rng.next() % 3) + 1
                    let hops = (0..<n).map { _ in gateways[Int(rng.next() % UInt64(gateways.count))] }
                    // Mostly /16-/24, a fifth longer (they need tbl8 groups).
                    let len = rng.next() % 5 == 0 ? 25 + Int(rng.next() % 4) : 16 + Int(rng.next() % 9)
                    let a = (UInt32(100) << 24 | UInt32(truncatingIfNeeded: rng.next() & 0x0F_FFFF)) & ~0 << (32 - UInt32(len))
                    changes = try compiler.setRoute(Route(prefix: "\(IPv4Prefix.format(a))/\(len)", nextHops: Array(Set(hops)).sorted().map { NextHop(gateway: $0) }))
                    kinds[0] += 1
                case 5, 6: // route delete
                    guard let victim = compiler.configuration.routes.filter({ $0.prefix.hasPrefix("100.") }).randomElement(using: &rng) else { continue }
                    changes = try compiler.deleteRoute(prefix: victim.prefix)
                    kinds[1] += 1
                case 7: // VIP add/replace
                    let id = Int(rng.next() % 4) + 1
                    let n = Int(rng.next() % 8)
                    let backends = (0..<n).map { i in
                        Backend(id: id * 100 + i + Int(rng.next() % 3) * 10, address: "10.2.0.\(20 + i)", weight: Int(rng.next() % 4),
                                state: ["up", "up", "drain", "down"][Int(rng.next() % 4)])
                    }
                    var seenIDs = Set<Int>()
                    changes = try compiler.setVIP(VIP(id: id, address: "192.0.2.\(100 + id)", protocol: rng.next() % 2 == 0 ? "tcp" : "udp",
                                                      port: Int(rng.next() % 3) * 443, tableSize: [251, 4099][Int(rng.next() % 2)],
                                                      backends: backends.filter { seenIDs.insert($0.id).inserted }))
                    kinds[2] += 1
                case 8: // VIP delete
                    guard let id = compiler.configuration.vips.map(\.id).filter({ $0 > 1 }).randomElement(using: &rng) else { continue }
                    changes = try compiler.deleteVIP(id: id)
                    kinds[3] += 1
                default: // health
                    changes = compiler.setHealth(backend: Int(rng.next() % 500), healthy: rng.next() % 2 == 0)
                    kinds[4] += 1
                }
            } catch is ConfigError {
                compiler.rollback()
                refused += 1
                continue
            }
            do {
                try publisher.publish(changes)
                compiler.commit()
            } catch {
                // e.g. tbl8 groups exhausted: nothing was published, take the change back.
                compiler.rollback()
                publishRefused += 1
            }
        }
        print("10,000 steps: \(kinds) (route set, route delete, VIP set, VIP delete, health), \(refused) refused by validation, \(publishRefused) by the tables; generation \(publisher.publishedGeneration)")
        XCTAssertGreaterThan(publisher.publishedGeneration, 9_000)

        let published = file.published.load(ordering: .acquiring)
        try assertMatchesFreshCompile(file, compiler)
        // The reader side agrees the incremental one is whole.
        XCTAssertNoThrow(try SnapshotVerifier.verify(file.slot(Int(published & 1)), available: file.layout.length))
    }

    func testRestartedWriterAndReaderResume() throws {
        let tmp = TempTables("restart")
        var compiler = Compiler(limits: limits)
        do {
            let file = try TablesFile.create(path: tmp.path, limits: limits, readers: 2)
            let publisher = SnapshotPublisher(file: file)
            try publisher.publish(try compiler.replace(with: ConfigValidationTests.base))
            try publisher.publish(try compiler.setRoute(Route(prefix: "203.0.113.0/24", nextHops: [NextHop(gateway: "10.2.0.7")])))
            XCTAssertEqual(publisher.publishedGeneration, 2)
        }
        // A new writer process: it knows the configuration, the file knows the generation.
        let file = try TablesFile.open(path: tmp.path)
        compiler = Compiler(limits: limits)
        var config = ConfigValidationTests.base
        config.routes.append(Route(prefix: "203.0.113.0/24", nextHops: [NextHop(gateway: "10.2.0.7")]))
        var state = SnapshotState()
        state.apply(try compiler.replace(with: config))
        let acceptor = SnapshotAcceptor(file: file)
        XCTAssertEqual(acceptor.poll(), .accepted(2))
        var reader = LcoreReader(file: file, line: 0, source: acceptor.accepted)
        reader.online()
        XCTAssertEqual(reader.generation, 2, "a restarted reader attaches to the current snapshot at once")
        let publisher = SnapshotPublisher(file: file, state: state)
        let g = try publisher.publish(try compiler.setRoute(Route(prefix: "203.0.113.0/24", nextHops: [NextHop(gateway: "10.2.0.8")])))
        XCTAssertEqual(g, 3, "generations keep counting after a restart")
        XCTAssertEqual(acceptor.poll(), .accepted(3))
        XCTAssertTrue(reader.refresh())
        let nh = reader.snapshot.ipv4.lookup(IPv4Prefix.parseAddress("203.0.113.5")!)
        XCTAssertEqual(IPAddress.load(from: reader.snapshot.member(nh, 0).gateway), IPAddress("10.2.0.8"))
        XCTAssertFalse(reader.refresh())
        // Two more, so both slots have been rebuilt by this writer; still identical to fresh.
        try publisher.publish(try compiler.deleteRoute(prefix: "198.51.100.0/24"))
        // The reader must move on before the slot it reads can be rewritten.
        XCTAssertEqual(acceptor.poll(), .accepted(4))
        XCTAssertTrue(reader.refresh())
        try publisher.publish(try compiler.setVIP(VIP(id: 2, address: "192.0.2.20", tableSize: 251, backends: [Backend(id: 7, address: "10.2.0.70")])))
        try assertMatchesFreshCompile(file, compiler)
        reader.offline()
    }
}

extension CompilerSnapshotTests {
    /// A change the tables cannot take (tbl8 groups run out) is refused whole:
    /// nothing published, the compiler rolled back, the next change goes through.
    func testRefusedPublishRollsBack() throws {
        var l = limits
        l.ipv4Groups = 8 // 7 usable
        let tmp = TempTables("rollback")
        let file = try TablesFile.create(path: tmp.path, limits: l, readers: 1)
        let publisher = SnapshotPublisher(file: file)
        let compiler = Compiler(limits: l)
        try publisher.publish(try compiler.replace(with: ConfigValidationTests.base))
        var refusedAt: Int?
        for i in 0..<10 {
            compiler.begin()
            let changes = try compiler.setRoute(Route(prefix: "100.0.\(i).128/25", nextHops: [NextHop(gateway: "10.2.0.9")]))
            do {
                try publisher.publish(changes)
                compiler.commit()
            } catch {
                XCTAssertTrue("\(error)".contains("capacity exceeded"), "\(error)")
                compiler.rollback()
                refusedAt = i
                break
            }
        }
        // The ports' own /32s hold 2 of the 7 groups.
        XCTAssertEqual(refusedAt, 5)
        XCTAssertEqual(compiler.routeCount, 3 + 5)
        XCTAssertEqual(publisher.publishedGeneration, 6)
        compiler.begin()
        try publisher.publish(try compiler.deleteRoute(prefix: "100.0.0.128/25"))
        compiler.commit()
        try assertMatchesFreshCompile(file, compiler)
    }
}

/// The published slot equals a fresh compile of the compiler's configuration, byte for byte.
func assertMatchesFreshCompile(_ file: TablesFile, _ compiler: Compiler, line: UInt = #line) throws {
    let published = file.published.load(ordering: .acquiring)
    let region = try MemoryRegion(size: file.layout.length)
    let fresh = try SnapshotBuilder(formatting: region.base, layout: file.layout)
    for c in compiler.state.changes() { try fresh.apply(c) }
    fresh.seal(generation: published >> 1)
    XCTAssertNil(sameSnapshot(file.slot(Int(published & 1)), region.base, length: file.layout.length), line: line)
}

enum DifferentialRoot {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
}
