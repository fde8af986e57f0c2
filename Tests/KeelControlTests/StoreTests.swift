import Foundation
import GRDB
import KeelAPI
import KeelCompiler
import KeelTables
import XCTest
import KeelControl

typealias Configuration = KeelAPI.Configuration
typealias Port = KeelAPI.Port

/// Records what would be published (unit tests only; the process tests use the real tables file).
final class RecordingSink: TableSink, @unchecked Sendable {
    var batches: [[SnapshotChange]] = []
    var generation: UInt64 = 0
    var failNext = false
    func publish(_ changes: [SnapshotChange]) throws -> UInt64 {
        if failNext {
            failNext = false
            throw SnapshotPublisher.PublishError.stuck([], waitedMs: 500, slot: 0)
        }
        batches.append(changes)
        generation += 1
        return generation
    }
    var publishedGeneration: UInt64 { generation }
}

/// A small routing configuration: two ports, routes, one VIP.
func sampleConfig(routes: Int = 3) -> Configuration {
    var c = Configuration(
        ports: [Port(name: "p0", mac: "02:00:00:00:00:01", addresses: ["10.1.0.1/24", "2001:db8:1::1/64"]),
                Port(name: "p1", mac: "02:00:00:00:00:02", addresses: ["10.2.0.1/24"])],
        neighbors: [Neighbor(address: "10.2.0.9", mac: "02:00:00:00:00:09", port: "p1")],
        vips: [VIP(id: 1, address: "203.0.113.10", port: 80, tableSize: 251,
                   backends: [Backend(id: 11, address: "10.2.0.11"), Backend(id: 12, address: "10.2.0.12", weight: 2)])])
    for i in 0..<routes { c.routes.append(Route(prefix: "10.\(100 + i).0.0/16", nextHops: [NextHop(gateway: "10.2.0.2")])) }
    return c
}

final class StoreTests: XCTestCase {
    func makePlane() async throws -> (ControlPlane, RecordingSink, Store) {
        let store = try Store()
        let sink = RecordingSink()
        let plane = ControlPlane(store: store, sink: sink, limits: .small)
        _ = try await plane.start()
        return (plane, sink, store)
    }

    func testEveryChangeIsOneRevisionWithItsGeneration() async throws {
        let (plane, sink, store) = try await makePlane()
        let r1 = try await plane.apply(.replace(sampleConfig()), author: "alice", comment: "first")
        XCTAssertEqual(r1.revision, 1)
        XCTAssertEqual(r1.generation, sink.generation)
        XCTAssertEqual(r1.changed, 2 + 3 + 1 + 1 + 2)
        let r2 = try await plane.apply(.setRoute(Route(prefix: "10.200.0.0/16", nextHops: [NextHop(gateway: "10.1.0.7")])), author: "bob")
        XCTAssertEqual(r2.revision, 2)
        XCTAssertEqual(r2.generation, r1.generation + 1)
        let revs = try store.revisions(limit: 10)
        XCTAssertEqual(revs.map(\.id), [2, 1])
        XCTAssertEqual(revs.map(\.author), ["bob", "alice"])
        XCTAssertEqual(revs[0].summary, "+1 route")
        XCTAssertEqual(revs[1].comment, "first")
        XCTAssertEqual(revs[0].generation, r2.generation)
        // The configuration as of each revision.
        XCTAssertEqual(try store.configuration(at: 1).routes.count, 3)
        XCTAssertEqual(try store.configuration(at: 2).routes.count, 4)
        XCTAssertEqual(try store.configuration(at: 1), sampleConfig())
    }

    func testSameChangeTwiceMakesNoRevision() async throws {
        let (plane, sink, store) = try await makePlane()
        _ = try await plane.apply(.replace(sampleConfig()), author: "a")
        let batches = sink.batches.count
        let again = try await plane.apply(.replace(sampleConfig()), author: "a")
        XCTAssertEqual(again.changed, 0)
        XCTAssertEqual(again.revision, 1)
        XCTAssertEqual(try store.latestRevision(), 1)
        XCTAssertEqual(sink.batches.count, batches, "nothing to publish")
    }

    func testInvalidChangeChangesNothing() async throws {
        let (plane, sink, store) = try await makePlane()
        _ = try await plane.apply(.replace(sampleConfig()), author: "a")
        let batches = sink.batches.count
        do {
            _ = try await plane.apply(.setRoute(Route(prefix: "10.50.0.0/16", nextHops: [NextHop(gateway: "192.0.2.1")])), author: "a")
            XCTFail("accepted a route through an unreachable gateway")
        } catch ChangeError.invalid(let e) {
            XCTAssertEqual(e.issues.map(\.path), ["route.next_hops[0].gateway"])
        }
        XCTAssertEqual(try store.latestRevision(), 1)
        XCTAssertEqual(sink.batches.count, batches)
        XCTAssertEqual(try store.configuration(), sampleConfig())
    }

    func testFailedPublishStoresNothingAndLeavesTheCompilerAsItWas() async throws {
        let (plane, sink, store) = try await makePlane()
        _ = try await plane.apply(.replace(sampleConfig()), author: "a")
        sink.failNext = true
        do {
            _ = try await plane.apply(.setRoute(Route(prefix: "10.60.0.0/16", nextHops: [NextHop(gateway: "10.2.0.2")])), author: "a")
            XCTFail("a failed publish was acknowledged")
        } catch ChangeError.publish {}
        XCTAssertEqual(try store.latestRevision(), 1)
        XCTAssertEqual(try store.configuration(), sampleConfig())
        // The next change is compiled against the old state: the failed route is not in it.
        let r = try await plane.apply(.setRoute(Route(prefix: "10.61.0.0/16", nextHops: [NextHop(gateway: "10.2.0.2")])), author: "a")
        XCTAssertEqual(r.revision, 2)
        let routes = sink.batches.last!.compactMap { c -> String? in if case .route4(let p, _) = c { return p.description }; return nil }
        XCTAssertEqual(routes, ["10.61.0.0/16"])
        XCTAssertEqual(try store.configuration().routes.map(\.prefix).sorted(), ["10.100.0.0/16", "10.101.0.0/16", "10.102.0.0/16", "10.61.0.0/16"])
    }

    func testDiffAndRollback() async throws {
        let (plane, _, store) = try await makePlane()
        _ = try await plane.apply(.replace(sampleConfig()), author: "a")
        _ = try await plane.apply(.setBackend(vip: 1, Backend(id: 12, address: "10.2.0.12", weight: 5)), author: "a")
        _ = try await plane.apply(.deleteRoute(prefix: "10.101.0.0/16"), author: "a")
        _ = try await plane.apply(.setBackend(vip: 1, Backend(id: 13, address: "10.2.0.13")), author: "a")
        let d = try store.diff(from: 1, to: 4)
        XCTAssertEqual(d.map { "\($0.op) \($0.kind) \($0.key)" }, ["delete route 10.101.0.0/16", "change backend 12", "add backend 13"])
        XCTAssertEqual(d[1].before?["weight"], .number(2))
        XCTAssertEqual(d[1].after?["weight"], .number(5))
        // Backwards: the same changes reversed.
        XCTAssertEqual(try store.diff(from: 4, to: 1).map { "\($0.op) \($0.kind) \($0.key)" }, ["add route 10.101.0.0/16", "change backend 12", "delete backend 13"])
        // Rollback is a new revision whose configuration equals revision 1's.
        let r = try await plane.apply(.rollback(to: 1), author: "a", comment: "undo")
        XCTAssertEqual(r.revision, 5)
        XCTAssertEqual(try store.configuration(), sampleConfig())
        XCTAssertEqual(try store.configuration(at: 4).vips[0].backends.map(\.id), [11, 12, 13])
        XCTAssertEqual(try store.revision(5)?.summary, "+1 route, ~1 backend, -1 backend")
        // A dry run lists the same objects a revision diff would.
        var c = sampleConfig()
        c.routes.removeFirst()
        let dry = try await plane.dryRun(c)
        XCTAssertEqual(dry.summary, "-1 route")
        XCTAssertEqual(try store.latestRevision(), 5, "a dry run stores nothing")
    }

    func testBackendOrderAndVIPReplaceKeepRows() async throws {
        let (plane, _, store) = try await makePlane()
        _ = try await plane.apply(.replace(sampleConfig()), author: "a")
        var v = sampleConfig().vips[0]
        v.hash = "source"
        let r = try await plane.apply(.setVIP(v), author: "a")
        XCTAssertEqual(try store.revision(r.revision)?.summary, "~1 vip", "backends unchanged: no new rows")
        v.backends.removeFirst()
        _ = try await plane.apply(.setVIP(v), author: "a")
        XCTAssertEqual(try store.configuration().vips[0].backends.map(\.id), [12])
        do {
            _ = try await plane.apply(.setBackend(vip: 2, Backend(id: 1, address: "10.2.0.1")), author: "a")
            XCTFail()
        } catch ChangeError.notFound {}
    }

    func testStoreReopensWithEverythingAndMigratesOnce() async throws {
        let dir = NSTemporaryDirectory() + "keel-store-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let store = try Store(path: dir + "/keel.db")
            let plane = ControlPlane(store: store, sink: RecordingSink(), limits: .small)
            _ = try await plane.start()
            _ = try await plane.apply(.replace(sampleConfig()), author: "a")
            _ = try await plane.apply(.deleteVIP(id: 1), author: "a")
        }
        let store = try Store(path: dir + "/keel.db")
        XCTAssertEqual(try store.latestRevision(), 2)
        XCTAssertEqual(try store.configuration().vips, [])
        XCTAssertEqual(try store.configuration(at: 1), sampleConfig())
        let mode = try await store.db.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") }
        XCTAssertEqual(mode, "wal")
        let fk = try await store.db.read { try Int.fetchOne($0, sql: "PRAGMA foreign_keys") }
        XCTAssertEqual(fk, 1)
        // A restarted writer republishes the same content.
        let sink = RecordingSink()
        let plane = ControlPlane(store: store, sink: sink, limits: .small)
        _ = try await plane.start()
        var state = SnapshotState()
        state.apply(sink.batches[0])
        let direct = Compiler(limits: .small)
        var expected = SnapshotState()
        expected.apply(try direct.replace(with: try store.configuration()))
        XCTAssertEqual(state.routes4, expected.routes4)
        XCTAssertEqual(state.vips, expected.vips)
    }
}

extension JSONValue {
    subscript(_ key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
}

final class BulkTests: XCTestCase {
    /// A whole configuration with a large table takes the bulk path (store and
    /// compiler in parallel): same results as the one-by-one path.
    func testBulkReplaceStoresPublishesAndRefusesLikeTheSmallPath() async throws {
        let store = try Store()
        let sink = RecordingSink()
        let plane = ControlPlane(store: store, sink: sink, limits: SnapshotLimits(ipv4Groups: 1024, ipv6Groups: 1024, nextHopGroups: 256, ecmpWays: 4, ports: 4,
                                                                                   neighbors: 16, vips: 4, backendsPerVIP: 8, maglevMaxSize: 251))
        _ = try await plane.start()
        var c = sampleConfig(routes: 0)
        for i in 0..<12_000 { c.routes.append(Route(prefix: "10.\(100 + i / 256).\(i % 256).0/24", nextHops: [NextHop(gateway: "10.2.0.\(2 + i % 3)")])) }
        let r = try await plane.apply(.replace(c), author: "bulk")
        XCTAssertEqual(r.revision, 1)
        XCTAssertEqual(r.changed, 2 + 12_000 + 1 + 1 + 2)
        XCTAssertEqual(r.generation, sink.generation)
        XCTAssertEqual(try store.configuration().routes.count, 12_000)
        XCTAssertEqual(try store.revision(1)?.summary, "+2 ports, +12000 routes, +1 neighbor, +1 vip, +2 backends")
        var published = SnapshotState()
        for b in sink.batches { published.apply(b) }
        XCTAssertEqual(published.routes4.count, 12_000 + 4, "the routes and the ports' own and connected prefixes")
        // The same again: no revision, nothing published.
        let batches = sink.batches.count
        let again = try await plane.apply(.replace(c), author: "bulk")
        XCTAssertEqual(again.changed, 0)
        XCTAssertEqual(sink.batches.count, batches)
        // One bad route among 12,001: refused whole, nothing stored or published.
        c.routes.append(Route(prefix: "10.250.0.0/24", nextHops: [NextHop(gateway: "192.0.2.1")]))
        do {
            _ = try await plane.apply(.replace(c), author: "bulk")
            XCTFail("accepted")
        } catch ChangeError.invalid(let e) {
            XCTAssertEqual(e.issues.map(\.path), ["routes[12000].next_hops[0].gateway"])
        }
        XCTAssertEqual(try store.latestRevision(), 1)
        XCTAssertEqual(sink.batches.count, batches)
        // A publish failure: nothing stored.
        c.routes.removeLast()
        c.routes.removeFirst(100)
        sink.failNext = true
        do { _ = try await plane.apply(.replace(c), author: "bulk"); XCTFail("accepted") } catch ChangeError.publish {}
        XCTAssertEqual(try store.latestRevision(), 1)
        XCTAssertEqual(try store.configuration().routes.count, 12_000)
        let ok = try await plane.apply(.replace(c), author: "bulk")
        XCTAssertEqual(try store.revision(ok.revision)?.summary, "-100 routes")
    }

    /// Route bodies are written without JSONEncoder; they must be the bytes JSONEncoder writes.
    func testRouteBodyIsJSONEncodersBytes() throws {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let routes = [Route(prefix: "10.0.0.0/8"), Route(prefix: "::/0", blackhole: true),
                      Route(prefix: "10.1.0.0/16", nextHops: [NextHop(gateway: "10.2.0.2"), NextHop(gateway: "10.3.0.2", port: "p\"1\\")]),
                      Route(prefix: "2001:db8::/32", nextHops: [NextHop(port: "pé\u{1}\n\t/x")])]
        for r in routes {
            XCTAssertEqual(Body.route(r), String(decoding: try e.encode(r), as: UTF8.self))
            XCTAssertEqual(try JSONDecoder().decode(Route.self, from: Data(Body.route(r).utf8)), r)
        }
    }
}

final class KeyCheckTests: XCTestCase {
    /// Every field of every object passes; an unknown key in any object fails,
    /// and so does the strict decoder (which names it).
    func testKeyCheckAgreesWithTheStrictDecoder() throws {
        var c = sampleConfig(routes: 2)
        c.routes.append(Route(prefix: "10.9.0.0/16", nextHops: [NextHop(gateway: "10.2.0.2", port: "p1")], blackhole: false))
        c.vips[0].encap = Encap(type: "gue", port: 6080)
        c.vips[0].sourceAddress = "10.2.0.1"
        c.vips[0].healthCheck = HealthCheck(type: "http", port: 80, path: "/h", expectStatus: 204, interval: 1, timeout: 0.5, rise: 1, fall: 2)
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        let good = try e.encode(c)
        XCTAssertTrue(KeyCheck.passes(good, Configuration.shape))
        XCTAssertEqual(try KeyCheck.decoder().decode(Configuration.self, from: good), c)
        let text = String(decoding: good, as: UTF8.self)
        // Put an unknown key into each kind of object in turn.
        let anchors = ["{\"addresses\"", "{\"blackhole\"", "{\"gateway\"", "{\"address\":\"10.2.0.9\"", "{\"address\":\"203.0.113.10\"",
                       "{\"port\":6080", "{\"expect_status\"", "{\"address\":\"10.2.0.11\"", "{\"neighbors\""]
        for a in anchors {
            guard let r = text.range(of: a) else { XCTFail("no \(a) in \(text)"); continue }
            var bad = text
            bad.insert(contentsOf: "\"zz_unknown\":1,", at: bad.index(after: r.lowerBound))
            XCTAssertFalse(KeyCheck.passes(Data(bad.utf8), Configuration.shape), a)
            XCTAssertThrowsError(try JSONDecoder().decode(Configuration.self, from: Data(bad.utf8)), a)
        }
        // Whitespace, empty containers, nested values where scalars go, escaped strings: the check follows them.
        let spaced = " { \"routes\" : [ { \"prefix\" : \"10.0.0.0/8\" , \"next_hops\" : [ ] } ] , \"ports\" : [ ] , \"vips\":[{\"id\":1,\"address\":\"a\\\"b\",\"backends\":[]}] } "
        XCTAssertTrue(KeyCheck.passes(Data(spaced.utf8), Configuration.shape))
        // Malformed or escaped keys: not passed (the strict decoder decides).
        XCTAssertFalse(KeyCheck.passes(Data("{\"routes\":[".utf8), Configuration.shape))
        XCTAssertFalse(KeyCheck.passes(Data("{\"rou\\u0074es\":[]}".utf8), Configuration.shape))
        XCTAssertFalse(KeyCheck.passes(Data("{\"routes\":[]} x".utf8), Configuration.shape))
    }
}
