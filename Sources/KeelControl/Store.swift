import Foundation
import GRDB
import KeelAPI

/// The configuration store: SQLite through GRDB, WAL, foreign keys, versioned
/// migrations.
///
/// Every object (port, route, neighbor, VIP, backend) is a row per version:
/// a row is current from the revision that wrote it (`since`) until the
/// revision that replaced or deleted it (`until`, NULL while current). So the
/// full configuration of any revision is one query (`since <= R AND (until IS
/// NULL OR until > R)`), a diff between two revisions reads only the rows
/// those revisions touched, and a one-route change costs two rows, not a copy
/// of a 900,000-route table. Rollback writes the old configuration as a new
/// revision; history is never rewritten.
///
/// Writes come only from `ControlPlane` (the one writer); reads may come from
/// any task (WAL readers do not block the writer).
public final class Store: Sendable {
    public let db: any DatabaseWriter
    /// The database file (nil: in memory).
    public let path: String?
    /// Opened immutable on a read-only filesystem: reads only.
    public let openedReadOnly: Bool

    static func readOnlyFilesystem(_ dir: String) -> Bool {
        var st = statvfs()
        if statvfs(dir, &st) == 0, st.f_flag & UInt(ST_RDONLY) != 0 { return true }
        return access(dir, W_OK) != 0 && errno == EROFS
    }

    /// The kinds of object, each with its own table of the same shape.
    public enum Kind: String, CaseIterable, Sendable, Codable {
        case port, route, neighbor, vip, backend
        /// The BGP section without its peers (one row, key "bgp"), and its peers (by address).
        case bgp, peer
        var table: String { rawValue + "s" }
        /// The kinds of the first schema (migrations v1 and v2 made their tables).
        static let v1: [Kind] = [.port, .route, .neighbor, .vip, .backend]
    }

    /// Opens (creating if needed) the database at `path` and migrates it forward.
    public init(path: String) throws {
        var config = GRDB.Configuration()
        config.foreignKeysEnabled = true
        config.prepareDatabase { db in
            // FULL: a commit is on disk before the change is acknowledged (power loss too, not only kill -9).
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // 64 MiB of page cache: a full-table load touches ~200 MB of table and index pages.
            try db.execute(sql: "PRAGMA cache_size = -65536")
        }
        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: path, configuration: config)
        } catch {
            // A store closed cleanly (SQLite removed its -wal and -shm) on a
            // filesystem now mounted read-only: WAL cannot be opened read-only
            // without them. Opened immutable instead, it serves reads; every
            // write is refused (SQLITE_READONLY, a 503 naming it).
            let dir = (path as NSString).deletingLastPathComponent
            guard FileManager.default.fileExists(atPath: path), Store.readOnlyFilesystem(dir) else { throw error }
            var ro = GRDB.Configuration()
            ro.readonly = true
            let queue = try DatabaseQueue(path: "file:\(path)?immutable=1", configuration: ro)
            guard try queue.read({ try Store.migrator.hasCompletedMigrations($0) }) else {
                throw DatabaseError(message: "\(path): the store needs a migration, and its filesystem is read-only")
            }
            db = queue
            self.path = path
            openedReadOnly = true
            return
        }
        // Again on the writer, after the pool is open: GRDB's WAL set-up runs
        // after prepareDatabase and lowers it to NORMAL, which keeps commits
        // across kill -9 but not across a crash of the OS or the disk
        // (DiskFaultTests lost ten acknowledged writes that way).
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            guard try Int.fetchOne(db, sql: "PRAGMA synchronous") == 2 else {
                throw DatabaseError(message: "PRAGMA synchronous = FULL did not take")
            }
        }
        db = pool
        self.path = path
        openedReadOnly = false
        try Store.migrator.migrate(db)
    }

    /// Why a write failed, for the 503 an operator reads: the faults a disk
    /// gives (full, read-only, failing) named as such, with SQLite's words.
    /// (A filesystem that ext4 turned read-only after errors still says rw in
    /// statvfs, hence SQLite's result code rather than the mount flags.)
    public func failure(_ error: Error) -> String {
        guard let e = error as? DatabaseError else { return "\(error)" }
        let sqlite = "SQLite: \(e.message ?? "\(e.resultCode)")"
        let dir = path.map { ($0 as NSString).deletingLastPathComponent } ?? "memory"
        switch e.resultCode {
        case .SQLITE_FULL: return "the disk holding the database (\(dir)) is full; \(sqlite)"
        case .SQLITE_READONLY: return "the database (\(dir)) is read-only; \(sqlite)"
        case .SQLITE_IOERR:
            return "the disk holding the database (\(dir)) failed a write (an I/O error, or a filesystem gone read-only after errors); \(sqlite)"
        default: return sqlite
        }
    }

    /// An in-memory store (unit tests).
    public init() throws {
        var config = GRDB.Configuration()
        config.foreignKeysEnabled = true
        db = try DatabaseQueue(configuration: config)
        path = nil
        openedReadOnly = false
        try Store.migrator.migrate(db)
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: objects and revisions") { db in
            try db.execute(sql: """
                CREATE TABLE revisions (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    time REAL NOT NULL,
                    author TEXT NOT NULL,
                    comment TEXT NOT NULL DEFAULT '',
                    summary TEXT NOT NULL DEFAULT '',
                    generation INTEGER
                )
                """)
            for kind in Kind.v1 { try createObjectTable(db, kind, untilIndex: "") }
        }
        m.registerMigration("v2: index only ended rows by until") { db in
            // Current rows (until NULL, the vast majority) need no entry in the until
            // index: queries on it compare until with a revision, which implies NOT NULL.
            for kind in Kind.v1 {
                let t = kind.table
                try db.execute(sql: "DROP INDEX \(t)_until; CREATE INDEX \(t)_until ON \(t)(until) WHERE until IS NOT NULL;")
            }
        }
        m.registerMigration("v3: BGP section and peers") { db in
            for kind in [Kind.bgp, .peer] { try createObjectTable(db, kind, untilIndex: "WHERE until IS NOT NULL") }
        }
        return m
    }

    /// One kind's table of object versions. key: the object's name (port name,
    /// canonical prefix, neighbor address, VIP id, backend id, "bgp", peer
    /// address); parent: the VIP of a backend; position: order within the list
    /// it came in. `untilIndex`: the until index's condition (v2 made it partial).
    static func createObjectTable(_ db: Database, _ kind: Kind, untilIndex: String) throws {
        let t = kind.table
        try db.execute(sql: """
            CREATE TABLE \(t) (
                key TEXT NOT NULL,
                parent INTEGER,
                position INTEGER NOT NULL DEFAULT 0,
                body TEXT NOT NULL,
                since INTEGER NOT NULL REFERENCES revisions(id),
                until INTEGER REFERENCES revisions(id),
                CHECK (until IS NULL OR until > since)
            );
            CREATE UNIQUE INDEX \(t)_current ON \(t)(key) WHERE until IS NULL;
            CREATE INDEX \(t)_since ON \(t)(since);
            CREATE INDEX \(t)_until ON \(t)(until) \(untilIndex);
            """)
    }

    // MARK: writing (inside the writer's transaction)

    /// Starts a revision; its id is the `since` / `until` of the rows it writes.
    static func beginRevision(_ db: Database, author: String, comment: String) throws -> Int64 {
        try db.execute(sql: "INSERT INTO revisions (time, author, comment) VALUES (?, ?, ?)",
                       arguments: [Date().timeIntervalSince1970, author, comment])
        return db.lastInsertedRowID
    }

    static func finishRevision(_ db: Database, _ rev: Int64, summary: String, generation: UInt64?) throws {
        try db.execute(sql: "UPDATE revisions SET summary = ?, generation = ? WHERE id = ?",
                       arguments: [summary, generation.map { Int64($0) }, rev])
    }

    /// Makes `body` the current version of (kind, key); no new row when nothing changed.
    /// Returns whether a row was written.
    @discardableResult
    static func put(_ db: Database, _ kind: Kind, key: String, parent: Int? = nil, position: Int = 0,
                    body: String, revision rev: Int64) throws -> Bool {
        let t = kind.table
        let current = try Row.fetchOne(db.cachedStatement(sql: "SELECT parent, position, body FROM \(t) WHERE key = ? AND until IS NULL"),
                                       arguments: [key])
        if let current {
            if current["body"] as String == body && current["parent"] as Int? == parent && current["position"] as Int == position {
                return false
            }
            try db.cachedStatement(sql: "UPDATE \(t) SET until = ? WHERE key = ? AND until IS NULL").execute(arguments: [rev, key])
        }
        try db.cachedStatement(sql: "INSERT INTO \(t) (key, parent, position, body, since) VALUES (?, ?, ?, ?, ?)")
            .execute(arguments: [key, parent, position, body, rev])
        return true
    }

    /// Ends the current version of (kind, key). Returns whether there was one.
    @discardableResult
    static func remove(_ db: Database, _ kind: Kind, key: String, revision rev: Int64) throws -> Bool {
        try db.cachedStatement(sql: "UPDATE \(kind.table) SET until = ? WHERE key = ? AND until IS NULL").execute(arguments: [rev, key])
        return db.changesCount > 0
    }

    /// One stored object: its key, its VIP (backends), its place in its list and its body.
    struct Object { var key: String; var parent: Int?; var position: Int; var body: String }

    /// A configuration as the rows it is stored as, by kind (VIPs without their backends).
    static func objects(_ config: Configuration, kinds: Set<Kind> = Set(Kind.allCases)) throws -> [Kind: [Object]] {
        var out: [Kind: [Object]] = [:]
        if kinds.contains(.port) { out[.port] = try config.ports.enumerated().map { Object(key: $1.name, parent: nil, position: $0, body: try Body.encode($1)) } }
        if kinds.contains(.route) { out[.route] = config.routes.map { Object(key: $0.prefix, parent: nil, position: 0, body: Body.route($0)) } }
        if kinds.contains(.neighbor) { out[.neighbor] = try config.neighbors.enumerated().map { Object(key: $1.address, parent: nil, position: $0, body: try Body.encode($1)) } }
        if kinds.contains(.vip) {
            var vips: [Object] = [], backends: [Object] = []
            for v in config.vips {
                var bare = v
                bare.backends = []
                vips.append(Object(key: String(v.id), parent: nil, position: v.id, body: try Body.encode(bare)))
                for (i, b) in v.backends.enumerated() { backends.append(Object(key: String(b.id), parent: v.id, position: i, body: try Body.encode(b))) }
            }
            out[.vip] = vips
            out[.backend] = backends
        }
        if kinds.contains(.bgp) {
            var bare = config.bgp
            bare?.peers = []
            out[.bgp] = try bare.map { [Object(key: "bgp", parent: nil, position: 0, body: try Body.encode($0))] } ?? []
            out[.peer] = try (config.bgp?.peers ?? []).enumerated().map { Object(key: $1.address, parent: nil, position: $0, body: try Body.encode($1)) }
        }
        return out
    }

    /// Writes the BGP section whole (nil: none).
    static func putBGP(_ db: Database, _ bgp: BGP?, revision rev: Int64) throws {
        _ = try putConfiguration(db, Configuration(bgp: bgp), kinds: [.bgp, .peer], revision: rev)
    }

    /// Writes `config` as the whole current configuration: rows that differ are
    /// replaced, rows that are gone are ended. Returns how many rows changed.
    /// Bulk: the current rows of each kind are read once and compared in memory
    /// (a full table is a million routes).
    static func putConfiguration(_ db: Database, _ config: Configuration, kinds: Set<Kind> = Set(Kind.allCases),
                                 revision rev: Int64) throws -> Int {
        let wanted = try objects(config, kinds: kinds)
        var changed = 0
        for kind in Kind.allCases where wanted[kind] != nil {
            let t = kind.table
            var current: [String: Object] = [:]
            let rows = try Row.fetchCursor(db, sql: "SELECT key, parent, position, body FROM \(t) WHERE until IS NULL")
            while let r = try rows.next() { current[r[0]] = Object(key: r[0], parent: r[1], position: r[2], body: r[3]) }
            let end = try db.cachedStatement(sql: "UPDATE \(t) SET until = ? WHERE key = ? AND until IS NULL")
            let insert = try db.cachedStatement(sql: "INSERT INTO \(t) (key, parent, position, body, since) VALUES (?, ?, ?, ?, ?)")
            for o in wanted[kind]! {
                if let c = current.removeValue(forKey: o.key) {
                    if c.body == o.body && c.parent == o.parent && c.position == o.position { continue }
                    try end.execute(arguments: [rev, o.key])
                }
                try insert.execute(arguments: [o.key, o.parent, o.position, o.body, rev])
                changed += 1
            }
            for key in current.keys {
                try end.execute(arguments: [rev, key])
                changed += 1
            }
        }
        return changed
    }

    /// Writes one VIP and its backends (backends it no longer has are ended).
    static func putVIP(_ db: Database, _ v: VIP, revision rev: Int64) throws {
        var bare = v
        bare.backends = []
        try put(db, .vip, key: String(v.id), position: v.id, body: Body.encode(bare), revision: rev)
        for (i, b) in v.backends.enumerated() {
            try put(db, .backend, key: String(b.id), parent: v.id, position: i, body: Body.encode(b), revision: rev)
        }
        try removeBackends(db, vip: v.id, keeping: Set(v.backends.map { String($0.id) }), revision: rev)
    }

    static func removeBackends(_ db: Database, vip: Int, keeping: Set<String>, revision rev: Int64) throws {
        let keys = try String.fetchAll(db, sql: "SELECT key FROM backends WHERE parent = ? AND until IS NULL", arguments: [vip])
        for k in keys where !keeping.contains(k) { try remove(db, .backend, key: k, revision: rev) }
    }

    /// Where backend `id` sits in its VIP's list (the end for a new one).
    static func backendPosition(_ db: Database, vip: Int, id: Int) throws -> Int {
        if let p = try Int.fetchOne(db, sql: "SELECT position FROM backends WHERE key = ? AND parent = ? AND until IS NULL",
                                    arguments: [String(id), vip]) { return p }
        return (try Int.fetchOne(db, sql: "SELECT MAX(position) + 1 FROM backends WHERE parent = ? AND until IS NULL", arguments: [vip])) ?? 0
    }

    /// What revision `rev` did, as "+2 routes, ~1 backend, -1 vip", and how many objects it touched.
    static func summary(_ db: Database, _ rev: Int64) throws -> (String, Int) {
        var parts: [String] = []
        var total = 0
        for kind in Kind.allCases {
            let t = kind.table
            let row = try Row.fetchOne(db, sql: """
                SELECT
                  (SELECT COUNT(*) FROM \(t) WHERE since = ?1 AND key NOT IN (SELECT key FROM \(t) WHERE until = ?1)),
                  (SELECT COUNT(*) FROM \(t) WHERE since = ?1 AND key IN (SELECT key FROM \(t) WHERE until = ?1)),
                  (SELECT COUNT(*) FROM \(t) WHERE until = ?1 AND key NOT IN (SELECT key FROM \(t) WHERE since = ?1))
                """, arguments: [rev])!
            let (a, c, d): (Int, Int, Int) = (row[0], row[1], row[2])
            for (n, sign) in [(a, "+"), (c, "~"), (d, "-")] where n > 0 {
                parts.append("\(sign)\(n) \(kind.rawValue)\(n == 1 ? "" : "s")")
            }
            total += a + c + d
        }
        return (parts.joined(separator: ", "), total)
    }

    // MARK: reading

    /// The configuration current at revision `rev` (nil: now).
    public func configuration(at rev: Int64? = nil, kinds: Set<Kind> = Set(Kind.allCases)) throws -> Configuration {
        try db.read { db in try Store.configuration(db, at: rev, kinds: kinds) }
    }

    static func alive(_ rev: Int64?) -> (String, StatementArguments) {
        guard let rev else { return ("until IS NULL", []) }
        return ("since <= ? AND (until IS NULL OR until > ?)", [rev, rev])
    }

    static func configuration(_ db: Database, at rev: Int64?, kinds: Set<Kind> = Set(Kind.allCases)) throws -> Configuration {
        let (cond, args) = alive(rev)
        func rows(_ kind: Kind, order: String) throws -> [Row] {
            guard kinds.contains(kind) else { return [] }
            return try Row.fetchAll(db, sql: "SELECT key, parent, body FROM \(kind.table) WHERE \(cond) ORDER BY \(order)", arguments: args)
        }
        var c = Configuration()
        c.ports = try rows(.port, order: "position").map { try Body.decode(Port.self, $0["body"]) }
        c.routes = try rows(.route, order: "key").map { try Body.decode(Route.self, $0["body"]) }
        c.neighbors = try rows(.neighbor, order: "position").map { try Body.decode(Neighbor.self, $0["body"]) }
        var backends: [Int: [Backend]] = [:]
        for r in try rows(.backend, order: "parent, position") {
            backends[r["parent"] as Int, default: []].append(try Body.decode(Backend.self, r["body"]))
        }
        c.vips = try rows(.vip, order: "position").map {
            var v = try Body.decode(VIP.self, $0["body"])
            v.backends = backends[v.id] ?? []
            return v
        }
        if var b = try rows(.bgp, order: "key").first.map({ try Body.decode(BGP.self, $0["body"]) }) {
            b.peers = try rows(.peer, order: "position").map { try Body.decode(BGPPeer.self, $0["body"]) }
            c.bgp = b
        }
        return c
    }

    public func latestRevision() throws -> Int64 {
        try db.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM revisions") ?? 0 }
    }

    public func revisionExists(_ rev: Int64) throws -> Bool {
        try db.read { db in try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM revisions WHERE id = ?)", arguments: [rev]) ?? false }
    }

    /// Revisions, newest first: at most `limit`, older than `before` if given.
    public func revisions(limit: Int, before: Int64? = nil) throws -> [RevisionInfo] {
        try db.read { db in
            try Row.fetchAll(db, sql: """
                SELECT id, time, author, comment, summary, generation FROM revisions
                WHERE id < ? ORDER BY id DESC LIMIT ?
                """, arguments: [before ?? Int64.max, limit]).map(Store.revisionInfo)
        }
    }

    public func revision(_ id: Int64) throws -> RevisionInfo? {
        try db.read { db in
            try Row.fetchOne(db, sql: "SELECT id, time, author, comment, summary, generation FROM revisions WHERE id = ?",
                             arguments: [id]).map(Store.revisionInfo)
        }
    }

    static func revisionInfo(_ r: Row) -> RevisionInfo {
        RevisionInfo(id: r["id"], time: Date(timeIntervalSince1970: r["time"]), author: r["author"], comment: r["comment"],
                     summary: r["summary"], generation: (r["generation"] as Int64?).map { UInt64($0) })
    }

    /// What changed from revision `from` to revision `to` (from < to, or the
    /// reverse for a backwards diff), object by object.
    public func diff(from: Int64, to: Int64) throws -> [DiffEntry] {
        try db.read { db in try Store.diff(db, from: from, to: to) }
    }

    static func diff(_ db: Database, from: Int64, to: Int64) throws -> [DiffEntry] {
        let lo = min(from, to), hi = max(from, to)
        var out: [DiffEntry] = []
        for kind in Kind.allCases {
            let t = kind.table
            // Alive at lo and ended in (lo, hi]; alive at hi and started in (lo, hi].
            let ended = try Row.fetchAll(db, sql: "SELECT key, parent, body FROM \(t) WHERE since <= ? AND until > ? AND until <= ?",
                                         arguments: [lo, lo, hi])
            let started = try Row.fetchAll(db, sql: "SELECT key, parent, body FROM \(t) WHERE since > ? AND since <= ? AND (until IS NULL OR until > ?)",
                                           arguments: [lo, hi, hi])
            var atLo: [String: Row] = [:], atHi: [String: Row] = [:]
            for r in ended { atLo[r["key"]] = r }
            for r in started { atHi[r["key"]] = r }
            let (old, new) = from <= to ? (atLo, atHi) : (atHi, atLo)
            for key in Set(old.keys).union(new.keys).sorted(by: Store.keyOrder(kind)) {
                let o = old[key], n = new[key]
                if let o, let n, o["body"] as String == n["body"] as String, o["parent"] as Int? == n["parent"] as Int? { continue }
                let op: DiffEntry.Op = o == nil ? .add : n == nil ? .delete : .change
                out.append(DiffEntry(kind: kind.rawValue, key: key, op: op, vip: (n ?? o)!["parent"],
                                     before: try o.map { try JSONValue.parse($0["body"]) },
                                     after: try n.map { try JSONValue.parse($0["body"]) }))
            }
        }
        return out
    }

    static func keyOrder(_ kind: Kind) -> (String, String) -> Bool {
        switch kind {
        case .vip, .backend: return { (Int($0) ?? 0) < (Int($1) ?? 0) }
        default: return { $0 < $1 }
        }
    }
}

/// Object bodies as stored: compact JSON with sorted keys, so equal objects
/// are equal strings.
public enum Body {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    public static func encode<T: Encodable>(_ v: T) throws -> String {
        if let r = v as? Route { return route(r) }
        return String(decoding: try encoder.encode(v), as: UTF8.self)
    }

    /// A route's body without JSONEncoder (a full table is a million of them):
    /// the same bytes JSONEncoder writes with sorted keys (a test checks).
    public static func route(_ r: Route) -> String {
        var s = "{\"blackhole\":\(r.blackhole ? "true" : "false"),\"next_hops\":["
        for (i, h) in r.nextHops.enumerated() {
            if i > 0 { s += "," }
            s += "{"
            if let g = h.gateway { s += "\"gateway\":" + quoted(g) }
            if let p = h.port { s += (h.gateway == nil ? "" : ",") + "\"port\":" + quoted(p) }
            s += "}"
        }
        return s + "],\"prefix\":" + quoted(r.prefix) + "}"
    }

    /// A JSON string literal (as JSONEncoder escapes, slashes unescaped).
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    static func decode<T: Decodable>(_ t: T.Type, _ s: String) throws -> T {
        try JSONDecoder().decode(t, from: Data(s.utf8))
    }
}
