import Foundation
import Hummingbird
import HummingbirdTesting
import KeelAPI
import KeelControl
import Yams
import XCTest

/// The admin API through Hummingbird's test client (router) and through a real
/// socket (live), over an in-memory store and a recording sink.
final class APITests: XCTestCase {
    static let admin = "admin-token-0123456789abcdef"
    static let reader = "read-token-0123456789abcdef"

    struct Fixture {
        let app: Application<RouterResponder<KeelContext>>
        let store: Store
        let sink: RecordingSink
    }

    func fixture(maxBody: Int = 1 << 20) async throws -> Fixture {
        let store = try Store()
        let sink = RecordingSink()
        let board = Board()
        let plane = ControlPlane(store: store, sink: sink, limits: .small, board: board)
        _ = try await plane.start()
        let tokens = try Tokens.parse("admin admin \(APITests.admin)\nmonitor read \(APITests.reader)\n")
        let deps = APIDependencies(plane: plane, store: store, tokens: tokens, board: board, tablesPath: nil, statsPath: nil, maxBody: maxBody)
        return Fixture(app: Application(router: buildRouter(deps)), store: store, sink: sink)
    }

    func testResourcesRoundTrip() async throws {
        let f = try await fixture()
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/config", method: .put, headers: headers(), body: body(sampleConfig())) { r in
                XCTAssertEqual(r.status, .ok)
                XCTAssertEqual(json(r)["revision"], .number(1))
                XCTAssertEqual(json(r)["generation"], .number(Double(f.sink.generation)))
            }
            try await client.execute(uri: "/v1/config", method: .get, headers: headers(APITests.reader)) { r in
                XCTAssertEqual(r.status, .ok)
                XCTAssertEqual(try JSONDecoder().decode(Configuration.self, from: Data(buffer: r.body)), sampleConfig())
            }
            // Routes: add (prefix canonical in the store), get by path, list with paging, delete.
            try await client.execute(uri: "/v1/routes?comment=new%20peer", method: .post, headers: headers(),
                                     body: body(Route(prefix: "2001:DB8:9::/48", nextHops: [NextHop(gateway: "2001:db8:1::2")]))) { r in
                XCTAssertEqual(r.status, .ok, String(buffer: r.body))
            }
            try await client.execute(uri: "/v1/routes/2001:db8:9::/48", method: .get, headers: headers()) { r in
                XCTAssertEqual(r.status, .ok)
                XCTAssertEqual(json(r)["prefix"], .string("2001:db8:9::/48"))
            }
            try await client.execute(uri: "/v1/routes?limit=2", method: .get, headers: headers()) { r in
                XCTAssertEqual(json(r)["routes"]?.arrayCount, 2)
                XCTAssertEqual(json(r)["next"], .string("10.101.0.0/16"))
            }
            try await client.execute(uri: "/v1/routes?limit=10&after=10.101.0.0/16", method: .get, headers: headers()) { r in
                XCTAssertEqual(json(r)["routes"]?.arrayCount, 2)
                XCTAssertEqual(json(r)["next"], .null)
            }
            try await client.execute(uri: "/v1/revisions?limit=1", method: .get, headers: headers()) { r in
                guard case .array(let revs)? = json(r)["revisions"] else { return XCTFail() }
                XCTAssertEqual(revs.first?["comment"], .string("new peer"))
                XCTAssertEqual(revs.first?["author"], .string("admin"))
            }
            try await client.execute(uri: "/v1/routes/2001:db8:9::/48", method: .delete, headers: headers()) { r in
                XCTAssertEqual(r.status, .ok)
            }
            try await client.execute(uri: "/v1/routes/2001:db8:9::/48", method: .delete, headers: headers()) { r in
                XCTAssertEqual(r.status, .notFound)
            }
            // VIPs and backends: create (201), conflict (409), patch, health shown.
            try await client.execute(uri: "/v1/vips/1/backends", method: .post, headers: headers(), body: body(Backend(id: 13, address: "10.2.0.13"))) { r in
                XCTAssertEqual(r.status, .created, String(buffer: r.body))
            }
            try await client.execute(uri: "/v1/vips/1/backends", method: .post, headers: headers(), body: body(Backend(id: 13, address: "10.2.0.13"))) { r in
                XCTAssertEqual(r.status, .conflict)
            }
            try await client.execute(uri: "/v1/vips/1/backends/13", method: .patch, headers: headers(), body: ByteBuffer(string: #"{"state":"drain"}"#)) { r in
                XCTAssertEqual(r.status, .ok)
            }
            try await client.execute(uri: "/v1/vips/1/backends/13", method: .get, headers: headers()) { r in
                XCTAssertEqual(json(r)["state"], .string("drain"))
                XCTAssertEqual(json(r)["health"], .string("unchecked"))
            }
            try await client.execute(uri: "/v1/vips", method: .post, headers: headers(), body: body(VIP(id: 1, address: "203.0.113.99", tableSize: 251))) { r in
                XCTAssertEqual(r.status, .conflict)
            }
            // Neighbors and ports.
            try await client.execute(uri: "/v1/neighbors/10.2.0.9", method: .delete, headers: headers()) { r in XCTAssertEqual(r.status, .ok) }
            try await client.execute(uri: "/v1/neighbors", method: .get, headers: headers()) { r in XCTAssertEqual(json(r)["neighbors"]?.arrayCount, 0) }
            try await client.execute(uri: "/v1/ports/p1", method: .put, headers: headers(),
                                     body: body(Port(name: "p1", mac: "02:00:00:00:00:02", addresses: ["10.2.0.1/24"], mtu: 9000))) { r in
                XCTAssertEqual(r.status, .ok)
            }
            // Diff of one revision, dry run, rollback.
            try await client.execute(uri: "/v1/revisions/3/diff", method: .get, headers: headers()) { r in
                XCTAssertEqual(json(r)["summary"], .string("-1 route"))
            }
            try await client.execute(uri: "/v1/config?dry_run=true", method: .put, headers: headers(), body: body(sampleConfig())) { r in
                XCTAssertEqual(r.status, .ok)
                XCTAssertEqual(json(r)["summary"], .string("~1 port, +1 neighbor, -1 backend"))
            }
            try await client.execute(uri: "/v1/revisions/1/rollback", method: .post, headers: headers()) { r in
                XCTAssertEqual(r.status, .ok)
            }
        }
        XCTAssertEqual(try f.store.configuration(), sampleConfig())
    }

    /// Each bad request gets its 4xx with a JSON error naming the problem, and changes nothing.
    func testBadRequestsAreRefusedAndChangeNothing() async throws {
        let f = try await fixture(maxBody: 64 << 10)
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/config", method: .put, headers: headers(), body: body(sampleConfig())) { r in XCTAssertEqual(r.status, .ok) }
        }
        let before = try f.store.configuration()
        let generation = f.sink.generation
        let route = #"{"prefix":"10.77.0.0/16","next_hops":[{"gateway":"10.2.0.2"}]}"#
        let cases: [(String, HTTPRequest.Method, HTTPFields, String?, HTTPResponse.Status, String)] = [
            ("no token", .post, headers(nil), route, .unauthorized, "bearer token"),
            ("wrong token", .post, headers("admin-token-0123456789abcdeX"), route, .unauthorized, "unknown token"),
            ("a token's prefix", .post, headers(String(APITests.admin.dropLast())), route, .unauthorized, "unknown token"),
            ("read-only token writing", .post, headers(APITests.reader), route, .forbidden, "read-only"),
            ("malformed JSON", .post, headers(), #"{"prefix": "10.77.0.0/16", "#, .badRequest, "malformed JSON"),
            ("unknown field", .post, headers(), #"{"prefix":"10.77.0.0/16","nexthops":[]}"#, .badRequest, "unknown field"),
            ("wrong type", .post, headers(), #"{"prefix":10}"#, .badRequest, "expected a string"),
            ("missing field", .post, headers(), #"{"next_hops":[]}"#, .badRequest, "required"),
            ("invalid prefix", .post, headers(), #"{"prefix":"10.77.0.0/33"}"#, .unprocessableContent, "prefix"),
            ("empty body", .post, headers(), nil, .badRequest, "JSON body"),
            ("not JSON", .post, [.authorization: "Bearer \(APITests.admin)", .contentType: "text/plain"], route, .unsupportedMediaType, "application/json"),
            ("oversized body", .put, headers(), "{\"routes\":[" + Array(repeating: route, count: 2000).joined(separator: ",") + "]}", .contentTooLarge, "too large"),
            ("path outside the API", .get, headers(), nil, .notFound, "no such resource"),
            ("encoded path trick", .get, headers(), nil, .badRequest, "not a prefix"),
        ]
        let uris = ["/v1/routes", "/v1/routes", "/v1/routes", "/v1/routes", "/v1/routes", "/v1/routes", "/v1/routes", "/v1/routes",
                    "/v1/routes", "/v1/routes", "/v1/routes", "/v1/config", "/v1/../../etc/passwd", "/v1/routes/..%2F..%2Fconfig"]
        try await f.app.test(.router) { client in
            for (i, c) in cases.enumerated() {
                try await client.execute(uri: uris[i], method: c.1, headers: c.2, body: c.3.map { ByteBuffer(string: $0) }) { r in
                    XCTAssertEqual(r.status, c.4, "\(c.0): \(String(buffer: r.body))")
                    let e = try? JSONDecoder().decode(ErrorBody.self, from: Data(buffer: r.body))
                    XCTAssertNotNil(e, "\(c.0): error body is not the API's JSON error")
                    XCTAssertTrue(e?.error.contains(c.5) == true || e?.issues?.contains { $0.message.contains(c.5) || $0.field.contains(c.5) } == true,
                                  "\(c.0): \(String(buffer: r.body))")
                    if r.status == .unauthorized { XCTAssertNotNil(r.headers[.wwwAuthenticate]) }
                }
            }
            // Field paths in validation errors.
            try await client.execute(uri: "/v1/vips/1/backends/12", method: .patch, headers: headers(), body: ByteBuffer(string: #"{"weight":-3}"#)) { r in
                XCTAssertEqual(r.status, .unprocessableContent)
                let e = try JSONDecoder().decode(ErrorBody.self, from: Data(buffer: r.body))
                XCTAssertEqual(e.issues?.first?.field, "vip.backends[1].weight")
            }
            try await client.execute(uri: "/v1/vips/1", method: .put, headers: headers(), body: body(VIP(id: 2, address: "203.0.113.10", tableSize: 251))) { r in
                XCTAssertEqual(r.status, .badRequest)
            }
            try await client.execute(uri: "/v1/vips/abc", method: .get, headers: headers()) { r in XCTAssertEqual(r.status, .badRequest) }
            try await client.execute(uri: "/v1/revisions?limit=0", method: .get, headers: headers()) { r in XCTAssertEqual(r.status, .badRequest) }
            try await client.execute(uri: "/v1/revisions/99/rollback", method: .post, headers: headers()) { r in XCTAssertEqual(r.status, .notFound) }
            try await client.execute(uri: "/v1/config?dry_run=maybe", method: .put, headers: headers(), body: body(sampleConfig())) { r in
                XCTAssertEqual(r.status, .badRequest)
            }
            // A whole configuration with two problems: both named, nothing applied.
            var bad = sampleConfig()
            bad.routes.append(Route(prefix: "10.99.0.0/16", nextHops: [NextHop(gateway: "192.0.2.1")]))
            bad.vips[0].backends.append(Backend(id: 11, address: "10.2.0.99"))
            try await client.execute(uri: "/v1/config", method: .put, headers: headers(), body: body(bad)) { r in
                XCTAssertEqual(r.status, .unprocessableContent)
                let e = try JSONDecoder().decode(ErrorBody.self, from: Data(buffer: r.body))
                XCTAssertEqual(e.issues?.map(\.field).sorted(), ["routes[3].next_hops[0].gateway", "vips[0].backends[2].id"])
            }
        }
        XCTAssertEqual(try f.store.configuration(), before)
        XCTAssertEqual(try f.store.latestRevision(), 1)
        XCTAssertEqual(f.sink.generation, generation, "nothing published")
    }

    /// The same through a real socket: HTTP/1.1 on 127.0.0.1, concurrent writers serialised.
    func testLiveSocketSerialisesConcurrentWriters() async throws {
        let f = try await fixture()
        try await f.app.test(.live) { client in
            try await client.execute(uri: "/v1/config", method: .put, headers: headers(), body: body(sampleConfig())) { r in XCTAssertEqual(r.status, .ok) }
            let revisions = try await withThrowingTaskGroup(of: Int64.self) { group in
                for i in 0..<40 {
                    group.addTask {
                        try await client.execute(uri: "/v1/routes", method: .post, headers: headers(),
                                                 body: body(Route(prefix: "10.\(150 + i).0.0/16", nextHops: [NextHop(gateway: "10.2.0.2")]))) { r in
                            XCTAssertEqual(r.status, .ok)
                            return Int64(json(r)["revision"]?.number ?? 0)
                        }
                    }
                }
                var out: [Int64] = []
                for try await r in group { out.append(r) }
                return out
            }
            XCTAssertEqual(Set(revisions), Set(2...41), "each write got its own revision")
        }
        XCTAssertEqual(try f.store.configuration().routes.count, 43)
        XCTAssertEqual(f.sink.generation, 1 + 1 + 40)
    }
}

func headers(_ token: String? = APITests.admin, json: Bool = true) -> HTTPFields {
    var h = HTTPFields()
    if let token { h[.authorization] = "Bearer \(token)" }
    if json { h[.contentType] = "application/json" }
    return h
}

func body<T: Encodable>(_ v: T) -> ByteBuffer { ByteBuffer(data: try! JSONEncoder().encode(v)) }

func json(_ r: TestResponse) -> JSONValue { (try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: r.body))) ?? .null }


extension JSONValue {
    var arrayCount: Int? { if case .array(let a) = self { return a.count }; return nil }
    var number: Double? { if case .number(let n) = self { return n }; return nil }
}

/// docs/openapi.yaml against the server: the same paths and methods, and
/// schemathesis finds no server error and no response outside the document.
final class OpenAPITests: XCTestCase {
    var repo: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path }

    func testDocumentHasExactlyTheRoutersRoutes() async throws {
        let store = try Store()
        let plane = ControlPlane(store: store, sink: RecordingSink(), limits: .small)
        let deps = APIDependencies(plane: plane, store: store, tokens: try Tokens.parse("a admin 0123456789abcdef0123"), board: Board(),
                                   tablesPath: nil, statsPath: nil)
        let router = buildRouter(deps)
        var served = Set<String>()
        for r in router.routes {
            // Hummingbird spells parameters :name and the prefix catch-all **.
            let path = "\(r.path)".split(separator: "/").map { s -> String in
                if s == "**" { return "{prefix}" }
                if s.hasPrefix(":") { return "{\(s.dropFirst())}" }
                return String(s)
            }.joined(separator: "/")
            served.insert("\(r.method.rawValue) /\(path)")
        }
        let doc = try Yams.load(yaml: String(contentsOfFile: repo + "/docs/openapi.yaml", encoding: .utf8)) as? [String: Any]
        let paths = doc?["paths"] as? [String: Any] ?? [:]
        var documented = Set<String>()
        for (path, item) in paths {
            for method in ((item as? [String: Any]) ?? [:]).keys where ["get", "put", "post", "patch", "delete"].contains(method) {
                documented.insert("\(method.uppercased()) \(path)")
            }
        }
        XCTAssertGreaterThan(served.count, 20)
        XCTAssertEqual(served.subtracting(documented).sorted(), [], "served but not documented")
        XCTAssertEqual(documented.subtracting(served).sorted(), [], "documented but not served")
    }
}

final class BoardTests: XCTestCase {
    /// `lastPublish` racing `published` from other threads (as status
    /// requests race writes). It trapped on an unsigned underflow when the
    /// clock was read before the lock.
    func testLastPublishRacesPublishes() {
        let b = Board()
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for i in 0..<300_000 {
                if t == 0 {
                    b.published(UInt64(i + 1))
                } else {
                    let (g, age) = b.lastPublish
                    XCTAssertLessThanOrEqual(g, 300_000)
                    if age > 60_000_000_000 { XCTFail("age \(age) ns") }
                }
            }
        }
        XCTAssertEqual(b.lastPublish.generation, 300_000)
    }
}
