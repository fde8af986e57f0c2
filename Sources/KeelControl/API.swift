import Foundation
import GRDB
import Hummingbird
import KeelAPI
import KeelCompiler
import KeelStats
import KeelTables

/// The request context: who is calling (set by the token check).
public struct KeelContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var caller: Tokens.Entry?
    public init(source: Source) { coreContext = .init(source: source) }
}

/// What the API serves from.
public struct APIDependencies: Sendable {
    public let plane: ControlPlane
    public let store: Store
    public let tokens: Tokens
    public let board: Board
    /// The tables file (status: published generation, lcore epochs); nil in unit tests.
    public let tablesPath: String?
    /// The data plane's stats file (status, stats, metrics).
    public let statsPath: String?
    /// Largest request body: a whole configuration with the full routing table fits.
    public let maxBody: Int
    /// BGP announcements (status); nil in unit tests.
    public let announcer: Announcer?
    let fingerprints = Fingerprints()

    public init(plane: ControlPlane, store: Store, tokens: Tokens, board: Board, tablesPath: String?, statsPath: String?,
                maxBody: Int = 256 << 20, announcer: Announcer? = nil) {
        self.announcer = announcer
        self.plane = plane
        self.store = store
        self.tokens = tokens
        self.board = board
        self.tablesPath = tablesPath
        self.statsPath = statsPath
        self.maxBody = maxBody
    }
}

/// The admin API's router; `keel-control serve` and the tests both build it here.
public func buildRouter(_ deps: APIDependencies) -> Router<KeelContext> {
    let router = Router(context: KeelContext.self)
    router.add(middleware: ErrorMiddleware())
    router.add(middleware: TokenMiddleware(tokens: deps.tokens))
    let api = AdminAPI(deps)
    api.addRoutes(to: router)
    return router
}

/// Bearer token check: 401 without a valid token, 403 when a read-only token
/// asks for a change.
struct TokenMiddleware: RouterMiddleware {
    let tokens: Tokens
    func handle(_ request: Request, context: KeelContext, next: (Request, KeelContext) async throws -> Response) async throws -> Response {
        guard let auth = request.headers[.authorization], auth.hasPrefix("Bearer ") else {
            throw APIError(.unauthorized, "a bearer token is required (Authorization: Bearer TOKEN)")
        }
        guard let entry = tokens.find(auth.dropFirst(7)) else { throw APIError(.unauthorized, "unknown token") }
        if entry.role == .read && request.method != .get && request.method != .head {
            throw APIError(.forbidden, "token \"\(entry.name)\" is read-only")
        }
        var context = context
        context.caller = entry
        return try await next(request, context)
    }
}

struct AdminAPI: Sendable {
    let deps: APIDependencies
    init(_ deps: APIDependencies) { self.deps = deps }

    var plane: ControlPlane { deps.plane }
    var store: Store { deps.store }

    func addRoutes(to router: Router<KeelContext>) {
        let v1 = router.group("v1")
        // Routes: the prefix is the rest of the path (10.0.0.0/8, 2001:db8::/32).
        v1.get("routes") { req, _ in try listRoutes(req) }
        v1.post("routes") { req, ctx in try await change(.setRoute(decode(Route.self, req)), req, ctx) }
        v1.get("routes/**") { _, ctx in try route(prefixParameter(ctx)) }
        v1.delete("routes/**") { req, ctx in try await change(.deleteRoute(prefix: prefixParameter(ctx)), req, ctx) }
        // VIPs and their backends.
        v1.get("vips") { _, _ in JSONResponse.make(["vips": try withHealth(store.configuration(kinds: [.vip, .backend]).vips)]) }
        v1.post("vips") { req, ctx in
            let v = try await decode(VIP.self, req)
            if try store.configuration(kinds: [.vip, .backend]).vips.contains(where: { $0.id == v.id }) {
                throw APIError(.conflict, "VIP \(v.id) exists (PUT /v1/vips/\(v.id) replaces it)")
            }
            return try await change(.setVIP(v), req, ctx, created: true)
        }
        v1.get("vips/:id") { _, ctx in JSONResponse.make(try withHealth([vip(ctx)]).first!) }
        v1.put("vips/:id") { req, ctx in
            let id = try intParameter(ctx, "id")
            let v = try await decode(VIP.self, req)
            guard v.id == id else { throw APIError(.badRequest, "id in body (\(v.id)) differs from the path (\(id))", issues: [.init(field: "id", message: "must be \(id)")]) }
            return try await change(.setVIP(v), req, ctx)
        }
        v1.delete("vips/:id") { req, ctx in try await change(.deleteVIP(id: intParameter(ctx, "id")), req, ctx) }
        v1.get("vips/:id/backends") { _, ctx in JSONResponse.make(["backends": try withHealth([vip(ctx)]).first!.backends]) }
        v1.post("vips/:id/backends") { req, ctx in
            let v = try vip(ctx)
            let b = try await decode(Backend.self, req)
            if v.backends.contains(where: { $0.id == b.id }) {
                throw APIError(.conflict, "VIP \(v.id) has backend \(b.id) (PUT or PATCH /v1/vips/\(v.id)/backends/\(b.id) changes it)")
            }
            return try await change(.setBackend(vip: v.id, b), req, ctx, created: true)
        }
        v1.get("vips/:id/backends/:backend") { _, ctx in
            let (v, b) = try backend(ctx)
            return JSONResponse.make(try withHealth([VIP(id: v.id, address: v.address, backends: [b])]).first!.backends[0])
        }
        v1.put("vips/:id/backends/:backend") { req, ctx in
            let (v, old) = try backend(ctx)
            let b = try await decode(Backend.self, req)
            guard b.id == old.id else { throw APIError(.badRequest, "id in body (\(b.id)) differs from the path (\(old.id))", issues: [.init(field: "id", message: "must be \(old.id)")]) }
            return try await change(.setBackend(vip: v.id, b), req, ctx)
        }
        v1.patch("vips/:id/backends/:backend") { req, ctx in
            let (v, old) = try backend(ctx)
            let patch = try await decode(BackendPatch.self, req)
            var b = old
            if let w = patch.weight { b.weight = w }
            if let s = patch.state { b.state = s }
            if let a = patch.address { b.address = a }
            return try await change(.setBackend(vip: v.id, b), req, ctx)
        }
        v1.delete("vips/:id/backends/:backend") { req, ctx in
            let (v, b) = try backend(ctx)
            return try await change(.deleteBackend(vip: v.id, id: b.id), req, ctx)
        }
        // Static neighbors and ports.
        v1.get("neighbors") { _, _ in JSONResponse.make(["neighbors": try store.configuration(kinds: [.neighbor]).neighbors]) }
        v1.post("neighbors") { req, ctx in try await change(.setNeighbor(decode(Neighbor.self, req)), req, ctx) }
        v1.delete("neighbors/:address") { req, ctx in try await change(.deleteNeighbor(address: ctx.parameters.require("address")), req, ctx) }
        v1.get("ports") { _, _ in JSONResponse.make(["ports": try store.configuration(kinds: [.port]).ports]) }
        v1.put("ports/:name") { req, ctx in
            let name = try ctx.parameters.require("name")
            let p = try await decode(Port.self, req)
            guard p.name == name else { throw APIError(.badRequest, "name in body (\(p.name)) differs from the path (\(name))", issues: [.init(field: "name", message: "must be \(name)")]) }
            return try await change(.setPort(p), req, ctx)
        }
        v1.delete("ports/:name") { req, ctx in try await change(.deletePort(name: ctx.parameters.require("name")), req, ctx) }
        // The whole configuration.
        v1.get("config") { _, _ in JSONResponse.make(try store.configuration()) }
        v1.put("config") { req, ctx in
            let t0 = DispatchTime.now().uptimeNanoseconds
            let c = try await decode(Configuration.self, req)
            ctx.logger.debug("configuration decoded", metadata: ["ms": "\((DispatchTime.now().uptimeNanoseconds - t0) / 1_000_000)", "routes": "\(c.routes.count)"])
            if try boolQuery(req, "dry_run") { return JSONResponse.make(try await plane.dryRun(c)) }
            return try await change(.replace(c), req, ctx)
        }
        // Revisions.
        v1.get("revisions") { req, _ in
            let limit = try intQuery(req, "limit", 1...10000) ?? 100
            let before = try intQuery(req, "before", 1...Int.max).map(Int64.init)
            return JSONResponse.make(["revisions": try store.revisions(limit: limit, before: before)])
        }
        v1.get("revisions/:rev") { _, ctx in
            let r = try revision(ctx)
            return JSONResponse.make(RevisionDetail(revision: r, configuration: try store.configuration(at: r.id)))
        }
        v1.get("revisions/:rev/diff") { req, ctx in
            let r = try revision(ctx)
            let from = try intQuery(req, "from", 0...Int.max).map(Int64.init) ?? r.id - 1
            if from != 0, try !store.revisionExists(from) { throw APIError(.notFound, "no revision \(from)") }
            let entries = try store.diff(from: from, to: r.id)
            return JSONResponse.make(DiffResult(changes: entries, summary: ConfigDiff.summary(entries)))
        }
        v1.post("revisions/:rev/rollback") { req, ctx in
            let r = try revision(ctx)
            return try await change(.rollback(to: r.id), req, ctx, defaultComment: "rollback to revision \(r.id)")
        }
        // State.
        v1.get("bgp") { _, _ in
            guard let b = try store.configuration(kinds: [.bgp, .peer]).bgp else { throw APIError(.notFound, "no BGP section: nothing is announced") }
            return JSONResponse.make(b)
        }
        v1.put("bgp") { req, ctx in try await change(.setBGP(decode(BGP.self, req)), req, ctx) }
        v1.delete("bgp") { req, ctx in
            guard try store.configuration(kinds: [.bgp]).bgp != nil else { throw APIError(.notFound, "no BGP section") }
            return try await change(.setBGP(nil), req, ctx)
        }
        // Maintenance: withdraw every announcement (flows here keep their backends), and back.
        v1.post("drain") { req, ctx in try await change(.setDrain(true), req, ctx, defaultComment: "drain") }
        v1.delete("drain") { req, ctx in try await change(.setDrain(false), req, ctx, defaultComment: "end of drain") }
        v1.get("status") { _, _ in JSONResponse.object(try status()) }
        router.get("metrics") { _, _ in
            let vips = try store.configuration(kinds: [.vip, .backend]).vips
            let checked = vips.filter { $0.healthCheck != nil }.flatMap { v in v.backends.map { (vip: v.id, backend: $0.id) } }
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            let text = Metrics.text(deps, revision: try store.latestRevision(), checked: checked)
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        v1.get("trace") { req, _ in
            guard let path = deps.tablesPath else { throw APIError(.serviceUnavailable, "no tables file configured") }
            return JSONResponse.object(try Trace.run(traceQuery(req), tablesPath: path, store: store))
        }
        v1.get("stats") { _, _ in
            guard let path = deps.statsPath, let s = try? StatsFile.open(path: path) else {
                throw APIError(.serviceUnavailable, "no stats file (is keel-dataplane running?)")
            }
            return JSONResponse.object(StatsReport.dictionary(s))
        }
    }

    // MARK: changes

    func change(_ m: Mutation, _ req: Request, _ ctx: KeelContext, created: Bool = false, defaultComment: String = "") async throws -> Response {
        let comment = req.uri.queryParameters.get("comment") ?? defaultComment
        guard comment.utf8.count <= 1000 else { throw APIError(.badRequest, "comment longer than 1000 bytes", issues: [.init(field: "comment", message: "at most 1000 bytes")]) }
        let result = try await plane.apply(m, author: ctx.caller?.name ?? "unknown", comment: comment)
        return JSONResponse.make(result, status: created && result.changed > 0 ? .created : .ok)
    }

    func decode<T: Decodable>(_ t: T.Type, _ req: Request) async throws -> T {
        let buffer = try await req.body.collect(upTo: deps.maxBody)
        guard buffer.readableBytes > 0 else { throw APIError(.badRequest, "a JSON body is required") }
        if let type = req.headers[.contentType], !type.lowercased().hasPrefix("application/json") {
            throw APIError(.unsupportedMediaType, "the body must be application/json, not \(type)")
        }
        let data = Data(buffer: buffer)
        // One pass over the bytes for unknown fields, then a plain decode; a body
        // that fails the pass is decoded strictly, which names the field at fault.
        if let shaped = T.self as? ShapedBody.Type, KeyCheck.passes(data, shaped.shape) {
            return try KeyCheck.decoder().decode(T.self, from: data)
        }
        return try JSONDecoder().decode(T.self, from: data)
    }

    // MARK: reads

    func listRoutes(_ req: Request) throws -> Response {
        let limit = try intQuery(req, "limit", 1...1_000_000) ?? 100_000
        let after = req.uri.queryParameters.get("after") ?? ""
        // Bodies are stored as JSON: splice them, no decode/encode per route.
        let (bodies, more): ([String], Bool) = try store.db.read { db in
            let rows = try String.fetchAll(db, sql: "SELECT body FROM routes WHERE until IS NULL AND key > ? ORDER BY key LIMIT ?",
                                           arguments: [after, limit + 1])
            return (Array(rows.prefix(limit)), rows.count > limit)
        }
        var next = "null"
        if more, let last = bodies.last, let r = try? Body.decode(Route.self, last) { next = "\"\(r.prefix)\"" }
        return JSONResponse.raw("{\"next\":\(next),\"routes\":[" + bodies.joined(separator: ",") + "]}")
    }

    /// The prefix after /v1/routes/: its slash as is (10.0.0.0/8) or encoded (10.0.0.0%2F8).
    func prefixParameter(_ ctx: KeelContext) -> String {
        let raw = ctx.parameters.getCatchAll().joined(separator: "/")
        return raw.removingPercentEncoding ?? raw
    }

    func route(_ prefix: String) throws -> Response {
        guard let key = Compiler.canonicalPrefix(prefix) else {
            throw APIError(.badRequest, "\"\(prefix)\" is not a prefix", issues: [.init(field: "prefix", message: "expected address/length without host bits")])
        }
        guard let body = try store.db.read({ db in
            try String.fetchOne(db, sql: "SELECT body FROM routes WHERE until IS NULL AND key = ?", arguments: [key])
        }) else { throw APIError(.notFound, "no route for \(key)") }
        return JSONResponse.raw(body)
    }

    func vip(_ ctx: KeelContext) throws -> VIP {
        let id = try intParameter(ctx, "id")
        guard let v = try store.configuration(kinds: [.vip, .backend]).vips.first(where: { $0.id == id }) else { throw APIError(.notFound, "no VIP \(id)") }
        return v
    }

    func backend(_ ctx: KeelContext) throws -> (VIP, Backend) {
        let v = try vip(ctx)
        let id = try intParameter(ctx, "backend")
        guard let b = v.backends.first(where: { $0.id == id }) else { throw APIError(.notFound, "VIP \(v.id) has no backend \(id)") }
        return (v, b)
    }

    func revision(_ ctx: KeelContext) throws -> RevisionInfo {
        let id = try intParameter(ctx, "rev")
        guard let r = try store.revision(Int64(id)) else { throw APIError(.notFound, "no revision \(id)") }
        return r
    }

    /// VIPs with each backend's health as the checker sees it.
    func withHealth(_ vips: [VIP]) throws -> [VIPView] {
        let health = deps.board.allHealth
        return vips.map { v in
            VIPView(vip: v, backends: v.backends.map { b in
                BackendView(backend: b, health: v.healthCheck == nil ? "unchecked" : health[b.id].map { $0.healthy ? "up" : "down" } ?? "unknown")
            })
        }
    }

    func intParameter(_ ctx: KeelContext, _ name: String) throws -> Int {
        let s = try ctx.parameters.require(name)
        guard let v = Int(s), v >= 0 else { throw APIError(.badRequest, "\(name) \"\(s)\" is not a number", issues: [.init(field: name, message: "expected a non-negative integer")]) }
        return v
    }

    func intQuery(_ req: Request, _ name: String, _ range: ClosedRange<Int>) throws -> Int? {
        guard let s = req.uri.queryParameters.get(name) else { return nil }
        guard let v = Int(s), range.contains(v) else {
            throw APIError(.badRequest, "\(name)=\(s) is not an integer in \(range.lowerBound)...\(range.upperBound)",
                           issues: [.init(field: name, message: "expected an integer in \(range.lowerBound)...\(range.upperBound)")])
        }
        return v
    }

    func boolQuery(_ req: Request, _ name: String) throws -> Bool {
        guard let s = req.uri.queryParameters.get(name) else { return false }
        switch s { case "true", "1": return true; case "false", "0": return false
        default: throw APIError(.badRequest, "\(name)=\(s) must be true or false", issues: [.init(field: name, message: "expected true or false")])
        }
    }

    func traceQuery(_ req: Request) throws -> Trace.Query {
        func address(_ name: String) throws -> IPAddress? {
            guard let s = req.uri.queryParameters.get(name) else { return nil }
            guard let a = IPAddress(s) else { throw APIError(.badRequest, "\(name)=\(s) is not an address", issues: [.init(field: name, message: "expected an IPv4 or IPv6 address")]) }
            return a
        }
        guard let dst = try address("dst") else { throw APIError(.badRequest, "dst is required", issues: [.init(field: "dst", message: "required")]) }
        let src = try address("src") ?? (dst.family == 4 ? IPAddress(v4: 0) : IPAddress(v6: 0))
        guard src.family == dst.family else { throw APIError(.badRequest, "src and dst are of different families", issues: [.init(field: "src", message: "same family as dst")]) }
        var proto: UInt8 = 6
        if let p = req.uri.queryParameters.get("proto") {
            guard let v = ["tcp": UInt8(6), "udp": 17, "icmp": 1][p] else { throw APIError(.badRequest, "proto=\(p) must be tcp, udp or icmp", issues: [.init(field: "proto", message: "tcp, udp or icmp")]) }
            proto = v
        }
        let sport = try intQuery(req, "sport", 0...65535) ?? 0
        let dport = try intQuery(req, "dport", 0...65535) ?? 0
        return Trace.Query(src: src, dst: dst, proto: proto, sport: UInt16(sport), dport: UInt16(dport))
    }

    // MARK: status

    /// The data plane's heartbeat, generations and lcore epochs, ports.
    func status() throws -> [String: Any] {
        var out: [String: Any] = [:]
        let e = Epochs.read(tablesPath: deps.tablesPath, board: deps.board)
        let published = e.published
        let lcores: [[String: Any]] = e.lines.map {
            ["line": $0.line, "pid": Int($0.pid), "generation": $0.generation, "alive": $0.alive, "lagging": $0.lagging]
        }
        let lagging = e.lines.contains { $0.lagging }
        out["published_generation"] = published
        out["revision"] = try store.latestRevision()
        out["lcores"] = lcores
        out["lagging"] = lagging
        var dataplane: [String: Any] = ["running": false]
        var ports: [[String: Any]] = []
        if let path = deps.statsPath, let s = try? StatsFile.open(path: path) {
            let live = DataplaneLiveness(s)
            dataplane = ["running": live.running, "pid": Int(s.pid), "process_alive": live.processAlive, "heartbeat_age_ms": live.heartbeatAgeMs,
                         "generation": s.generation, "flows": Int(s.total(Counter.liveFlows))]
            for i in 0..<s.ports { ports.append(["name": s.portName(i), "up": s.portUp(i)]) }
        }
        out["dataplane"] = dataplane
        out["ports"] = ports
        let health = deps.board.allHealth
        out["backends_down"] = health.filter { !$0.value.healthy }.keys.sorted()
        out["healthy"] = (dataplane["running"] as? Bool ?? false) && !lagging
        out["fingerprint"] = try deps.fingerprints.of(store)
        if let a = deps.announcer?.current {
            var bgp: [String: Any] = ["configured": a.configured, "drained": a.drained, "announced": a.announced,
                                      "sessions": a.sessions.map { ["name": $0.name, "peer": $0.peer, "state": $0.state, "info": $0.info,
                                                                    "established": $0.established] as [String: Any] }]
            if let applied = a.applied { bgp["bird_applied"] = applied }
            if let e = a.lastError { bgp["error"] = e }
            out["bgp"] = bgp
        }
        return out
    }
}

/// PATCH body for one backend: only the fields given change.
struct BackendPatch: Decodable {
    var weight: Int?
    var state: String?
    var address: String?
    enum CodingKeys: String, CodingKey, CaseIterable { case weight, state, address }
    init(from d: Decoder) throws {
        let all = try d.container(keyedBy: AnyCodingKey.self)
        for k in all.allKeys where CodingKeys(stringValue: k.stringValue) == nil {
            throw DecodingError.dataCorruptedError(forKey: k, in: all, debugDescription: "unknown field (allowed: weight, state, address)")
        }
        let c = try d.container(keyedBy: CodingKeys.self)
        weight = try c.decodeIfPresent(Int.self, forKey: .weight)
        state = try c.decodeIfPresent(String.self, forKey: .state)
        address = try c.decodeIfPresent(String.self, forKey: .address)
    }
}

struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

struct RevisionDetail: Encodable {
    var revision: RevisionInfo
    var configuration: Configuration
}

/// A VIP as the API shows it: the configuration plus backend health.
struct VIPView: Encodable {
    var vip: VIP
    var backends: [BackendView]
    func encode(to encoder: Encoder) throws {
        var v = vip
        v.backends = []
        try v.encode(to: encoder)
        var c = encoder.container(keyedBy: AnyCodingKey.self)
        try c.encode(backends, forKey: AnyCodingKey(stringValue: "backends"))
    }
}

struct BackendView: Encodable {
    var backend: Backend
    /// up, down (by the health check), unknown (not checked yet) or unchecked (the VIP has no check).
    var health: String
    func encode(to encoder: Encoder) throws {
        try backend.encode(to: encoder)
        var c = encoder.container(keyedBy: AnyCodingKey.self)
        try c.encode(health, forKey: AnyCodingKey(stringValue: "health"))
    }
}

/// The tables file's generations: the newest published, and each online reader line's.
struct Epochs {
    struct Line { var line: Int; var pid: Int32; var generation: UInt64; var alive: Bool; var lagging: Bool }
    var published: UInt64
    var lines: [Line]

    static func read(tablesPath: String?, board: Board) -> Epochs {
        let (lastGeneration, age) = board.lastPublish
        var e = Epochs(published: lastGeneration, lines: [])
        guard let path = tablesPath, let t = try? TablesFile.open(path: path) else { return e }
        e.published = t.published.load(ordering: .acquiring) >> 1
        for i in 0..<t.readerCount {
            let g = t.line(i).load(ordering: .acquiring)
            guard g != 0 else { continue }
            let pid = t.linePid(i)
            // Lagging: still before the newest generation a second after it was published.
            let lag = g < e.published && (e.published != lastGeneration || age > 1_000_000_000)
            e.lines.append(Line(line: i, pid: pid, generation: g, alive: TablesFile.processAlive(pid), lagging: lag))
        }
        return e
    }
}
