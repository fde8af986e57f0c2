import Dispatch
import Foundation
import GRDB
import KeelAPI
import KeelCompiler
import KeelTables
import Logging

// GRDB and NIO have their own Configuration and Port.
public typealias Configuration = KeelAPI.Configuration
public typealias Port = KeelAPI.Port

/// Runs an actor's jobs on one dispatch queue (its own thread), off the
/// cooperative pool.
final class QueueExecutor: SerialExecutor, @unchecked Sendable {
    let queue: DispatchQueue
    init(label: String) { queue = DispatchQueue(label: label) }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedSerialExecutor()) }
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }
}

/// Where compiled changes go: the tables file's publisher in production, a
/// recorder in unit tests.
public protocol TableSink: AnyObject {
    func publish(_ changes: [SnapshotChange]) throws -> UInt64
    var publishedGeneration: UInt64 { get }
}

extension SnapshotPublisher: TableSink {}

/// One change an operator asks for.
public enum Mutation: Sendable {
    case setRoute(Route)
    case deleteRoute(prefix: String)
    case setVIP(VIP)
    case deleteVIP(id: Int)
    case setBackend(vip: Int, Backend)
    case deleteBackend(vip: Int, id: Int)
    case setPort(Port)
    case deletePort(name: String)
    case setNeighbor(Neighbor)
    case deleteNeighbor(address: String)
    case replace(Configuration)
    case rollback(to: Int64)
    /// The BGP section whole (nil: remove it, announcing nothing).
    case setBGP(BGP?)
    /// Maintenance drain on or off (the BGP section's `drain`).
    case setDrain(Bool)
}

/// Why a change was refused (nothing changed).
public enum ChangeError: Error, CustomStringConvertible {
    /// The request names something that does not exist (404).
    case notFound(String)
    /// The change is invalid (422), field by field.
    case invalid(ConfigError)
    /// Publishing failed (503): a stuck reader, a full table.
    case publish(String)
    /// The store failed (503): disk full, read-only database.
    case store(String)

    public var description: String {
        switch self {
        case .notFound(let m): return m
        case .invalid(let e): return e.description
        case .publish(let m): return "not published: \(m)"
        case .store(let m): return "not stored: \(m)"
        }
    }
}

/// The one writer: every change goes through here, in order, so the store,
/// the revision log and the published snapshot never disagree.
///
/// A change is compiled (validated; nothing touched if invalid), written to the
/// store inside a transaction, published to the tables file, and only then
/// committed; if publishing fails the transaction rolls back, and if the
/// commit fails after publishing, the previous content is published again.
/// The caller is answered after the commit, with the revision and generation.
///
/// Runs on its own thread (a serial dispatch queue as its executor): store and
/// publish calls block, and the server's and health checks' tasks must not
/// wait behind them on the shared cooperative pool.
public actor ControlPlane {
    public let store: Store
    public let board: Board
    let compiler: Compiler
    let sink: TableSink
    let executor = QueueExecutor(label: "keel.writer")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    let logger: Logger

    public init(store: Store, sink: TableSink, limits: SnapshotLimits, board: Board = Board(), logger: Logger = Logger(label: "keel-control")) {
        self.logger = logger
        self.store = store
        self.board = board
        self.sink = sink
        self.compiler = Compiler(limits: limits)
    }

    /// Loads the current configuration from the store and publishes it (a
    /// restart republishes the same content, so the data plane sees no change
    /// in forwarding). Returns the generation.
    public func start() throws -> UInt64 {
        let config = try store.configuration()
        let changes: [SnapshotChange]
        do { changes = try compiler.replace(with: config) } catch let e as ConfigError {
            throw ChangeError.invalid(e)
        }
        return try publish(changes)
    }

    func publish(_ changes: [SnapshotChange]) throws -> UInt64 {
        do {
            let g = try sink.publish(changes)
            board.published(g)
            return g
        } catch { throw ChangeError.publish("\(error)") }
    }

    public var publishedGeneration: UInt64 { sink.publishedGeneration }

    /// Applies one change as one revision. A change that leaves everything as it
    /// was makes no revision (`changed == 0`, the current revision and generation).
    public func apply(_ m: Mutation, author: String, comment: String = "") throws -> ChangeResult {
        let t0 = DispatchTime.now().uptimeNanoseconds
        var t1 = t0, t2 = t0, tr = t0
        // Prefixes in their canonical text once, for both the compiler and the store.
        let m = canonical(m)
        if case .replace(let c) = m, c.routes.count >= 10_000 { return try applyBulk(c, author: author, comment: comment) }
        compiler.begin()
        var changes: [SnapshotChange]
        do { changes = try compile(m) } catch let e as ConfigError {
            compiler.rollback()
            throw ChangeError.invalid(e)
        } catch {
            compiler.rollback()
            throw error
        }
        var result = ChangeResult(revision: 0, generation: sink.publishedGeneration, changed: 0)
        var published = false
        do {
            try store.db.writeWithoutTransaction { db in
                try db.inTransaction(.immediate) {
                    t1 = DispatchTime.now().uptimeNanoseconds
                    let rev = try Store.beginRevision(db, author: author, comment: comment)
                    try self.record(m, db, rev)
                    tr = DispatchTime.now().uptimeNanoseconds
                    let (summary, changed) = try Store.summary(db, rev)
                    t2 = DispatchTime.now().uptimeNanoseconds
                    guard changed > 0 else { return .rollback }
                    if !changes.isEmpty {
                        result.generation = try self.publish(changes)
                        published = true
                    }
                    try Store.finishRevision(db, rev, summary: summary, generation: result.generation)
                    result.revision = rev
                    result.changed = changed
                    return .commit
                }
            }
        } catch {
            compiler.rollback()
            if published {
                // Stored nothing but published: put the old content back.
                republishCompiled()
            }
            if let e = error as? ChangeError { throw e }
            throw ChangeError.store(store.failure(error))
        }
        compiler.commit()
        if result.changed == 0 { result.revision = try store.latestRevision() }
        let t3 = DispatchTime.now().uptimeNanoseconds
        // Bulk changes at info (an operator wants to see where a big load spends its time).
        logger.log(level: result.changed > 1000 ? .info : .debug, "applied", metadata: [
            "revision": "\(result.revision)", "generation": "\(result.generation)", "changed": "\(result.changed)", "author": "\(author)",
            "compile_ms": "\((t1 - t0) / 1_000_000)", "store_ms": "\((tr - t1) / 1_000_000)", "summary_ms": "\((t2 - tr) / 1_000_000)", "publish_commit_ms": "\((t3 - t2) / 1_000_000)"])
        return result
    }

    /// A whole configuration with a large table: the store writes its rows on
    /// another thread while this one compiles (on two cores, the two biggest
    /// costs of a full-table load overlap). Same contract as `apply`: nothing
    /// is committed unless it compiled and was published; nothing is
    /// published unless its rows are written.
    func applyBulk(_ config: Configuration, author: String, comment: String) throws -> ChangeResult {
        let bgpIssues = BGPCheck.issues(config.bgp, ports: config.ports)
        guard bgpIssues.isEmpty else { throw ChangeError.invalid(ConfigError(bgpIssues)) }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let job = BulkJob()
        let store = self.store
        let thread = Thread {
            do {
                try store.db.writeWithoutTransaction { db in
                    try db.inTransaction(.immediate) {
                        do {
                            job.revision = try Store.beginRevision(db, author: author, comment: comment)
                            _ = try Store.putConfiguration(db, config, revision: job.revision)
                            (job.summary, job.changed) = try Store.summary(db, job.revision)
                        } catch {
                            job.failure = error
                            job.stored.signal()
                            throw error
                        }
                        job.stored.signal()
                        job.go.wait()
                        guard job.commit else { return .rollback }
                        try Store.finishRevision(db, job.revision, summary: job.summary, generation: job.generation)
                        return .commit
                    }
                }
            } catch {
                if job.failure == nil { job.failure = error }
            }
            job.finished.signal()
        }
        thread.start()
        compiler.begin()
        var changes: [SnapshotChange] = []
        var compileError: Error?
        do { changes = try compiler.replace(with: config) } catch { compileError = error }
        let t1 = DispatchTime.now().uptimeNanoseconds
        job.stored.wait()
        let t2 = DispatchTime.now().uptimeNanoseconds
        func abandon(_ e: Error) -> Error {
            job.commit = false
            job.go.signal()
            job.finished.wait()
            compiler.rollback()
            if let e = e as? ConfigError { return ChangeError.invalid(e) }
            if e is ChangeError { return e }
            return ChangeError.store(store.failure(e))
        }
        if let f = job.failure {
            job.finished.wait()
            compiler.rollback()
            throw ChangeError.store(store.failure(f))
        }
        if let compileError { throw abandon(compileError) }
        if job.changed == 0 {
            _ = abandon(ChangeError.store("no change"))
            return ChangeResult(revision: try store.latestRevision(), generation: sink.publishedGeneration, changed: 0)
        }
        do { job.generation = try publish(changes) } catch { throw abandon(error) }
        job.commit = true
        job.go.signal()
        job.finished.wait()
        if let f = job.failure {
            // Published but not stored: put the old content back.
            compiler.rollback()
            republishCompiled()
            throw ChangeError.store(store.failure(f))
        }
        compiler.commit()
        let t3 = DispatchTime.now().uptimeNanoseconds
        logger.info("applied", metadata: [
            "revision": "\(job.revision)", "generation": "\(job.generation)", "changed": "\(job.changed)", "author": "\(author)",
            "compile_ms": "\((t1 - t0) / 1_000_000)", "store_wait_ms": "\((t2 - t1) / 1_000_000)", "publish_commit_ms": "\((t3 - t2) / 1_000_000)"])
        return ChangeResult(revision: job.revision, generation: job.generation, changed: job.changed)
    }

    /// After a change was published but not stored (and the compiler rolled
    /// back): publishes what turns the tables back into the compiler's content.
    func republishCompiled() {
        _ = try? sink.publish((sink as? SnapshotPublisher)?.state.changes(to: compiler.state) ?? [])
    }

    /// What `replace` would change, without changing anything.
    public func dryRun(_ config: Configuration) throws -> DiffResult {
        compiler.begin()
        defer { compiler.rollback() }
        let bgpIssues = BGPCheck.issues(config.bgp, ports: config.ports)
        do { _ = try compiler.replace(with: config) } catch let e as ConfigError { throw ChangeError.invalid(ConfigError(e.issues + bgpIssues)) }
        if !bgpIssues.isEmpty { throw ChangeError.invalid(ConfigError(bgpIssues)) }
        let entries = ConfigDiff.diff(try store.configuration(), canonical(config))
        return DiffResult(changes: entries, summary: ConfigDiff.summary(entries))
    }

    /// The checker's verdict for one backend; republishes the VIPs that have it
    /// (not a revision: health is state, not configuration).
    @discardableResult
    public func setHealth(backend id: Int, healthy: Bool) throws -> UInt64? {
        let changes = compiler.setHealth(backend: id, healthy: healthy)
        guard !changes.isEmpty else { return nil }
        return try publish(changes)
    }

    /// Forgets checker state for backends that no longer have a check.
    public func clearHealth(except keep: Set<Int>) throws {
        // The compiler keeps the unhealthy ones; putting the others back to healthy changes nothing.
        for id in compiler.health.keys where !keep.contains(id) {
            let changes = compiler.setHealth(backend: id, healthy: true)
            if !changes.isEmpty { _ = try publish(changes) }
        }
    }

    /// The VIPs with their health checks (for the checker).
    public func checkedVIPs() -> [VIP] {
        compiler.vipIDs.compactMap { compiler.vip($0) }.filter { $0.healthCheck != nil }
    }

    // MARK: compile and record

    func compile(_ m: Mutation) throws -> [SnapshotChange] {
        switch m {
        case .setRoute(let r):
            return try compiler.setRoute(r)
        case .deleteRoute(let p):
            guard compiler.route(p) != nil else { throw ChangeError.notFound("no route for \(p)") }
            return try compiler.deleteRoute(prefix: p)
        case .setVIP(let v):
            return try compiler.setVIP(v)
        case .deleteVIP(let id):
            guard compiler.vip(id) != nil else { throw ChangeError.notFound("no VIP \(id)") }
            return try compiler.deleteVIP(id: id)
        case .setBackend(let vid, let b):
            guard var v = compiler.vip(vid) else { throw ChangeError.notFound("no VIP \(vid)") }
            if let other = compiler.vipOfBackend(b.id), other != vid {
                throw ChangeError.invalid(ConfigError([ConfigIssue("id", "backend id \(b.id) belongs to VIP \(other)")]))
            }
            if let i = v.backends.firstIndex(where: { $0.id == b.id }) { v.backends[i] = b } else { v.backends.append(b) }
            return try compiler.setVIP(v)
        case .deleteBackend(let vid, let id):
            guard var v = compiler.vip(vid) else { throw ChangeError.notFound("no VIP \(vid)") }
            guard let i = v.backends.firstIndex(where: { $0.id == id }) else { throw ChangeError.notFound("VIP \(vid) has no backend \(id)") }
            v.backends.remove(at: i)
            return try compiler.setVIP(v)
        case .setPort(let p):
            var c = compiler.configuration
            if let i = c.ports.firstIndex(where: { $0.name == p.name }) { c.ports[i] = p } else { c.ports.append(p) }
            return try compiler.replace(with: c)
        case .deletePort(let name):
            var c = compiler.configuration
            guard let i = c.ports.firstIndex(where: { $0.name == name }) else { throw ChangeError.notFound("no port \(name)") }
            c.ports.remove(at: i)
            return try compiler.replace(with: c)
        case .setNeighbor(let n):
            var c = compiler.configuration
            if let i = c.neighbors.firstIndex(where: { $0.address == n.address }) { c.neighbors[i] = n } else { c.neighbors.append(n) }
            return try compiler.replace(with: c)
        case .deleteNeighbor(let a):
            var c = compiler.configuration
            guard let i = c.neighbors.firstIndex(where: { $0.address == a }) else { throw ChangeError.notFound("no neighbor \(a)") }
            c.neighbors.remove(at: i)
            return try compiler.replace(with: c)
        case .replace(let c):
            let bgpIssues = BGPCheck.issues(c.bgp, ports: c.ports)
            let changes: [SnapshotChange]
            do { changes = try compiler.replace(with: c) } catch let e as ConfigError { throw ConfigError(e.issues + bgpIssues) }
            if !bgpIssues.isEmpty { throw ConfigError(bgpIssues) }
            return changes
        case .rollback(let rev):
            guard try store.revisionExists(rev) else { throw ChangeError.notFound("no revision \(rev)") }
            return try compiler.replace(with: store.configuration(at: rev))
        case .setBGP(let b):
            let issues = BGPCheck.issues(b, ports: compiler.currentPorts)
            if !issues.isEmpty { throw ConfigError(issues) }
            return [] // nothing in the tables: the announcer reads the store
        case .setDrain:
            guard try store.configuration(kinds: [.bgp]).bgp != nil else {
                throw ChangeError.notFound("no BGP section: the appliance announces nothing, there is nothing to drain")
            }
            return []
        }
    }

    /// Writes the rows of a compiled change (the compiler holds the result).
    func record(_ m: Mutation, _ db: Database, _ rev: Int64) throws {
        switch m {
        case .setRoute(let r):
            try Store.put(db, .route, key: r.prefix, body: Body.route(r), revision: rev)
        case .deleteRoute(let p):
            try Store.remove(db, .route, key: Compiler.canonicalPrefix(p) ?? p, revision: rev)
        case .setVIP(let v):
            try Store.putVIP(db, v, revision: rev)
        case .deleteVIP(let id):
            try Store.remove(db, .vip, key: String(id), revision: rev)
            try Store.removeBackends(db, vip: id, keeping: [], revision: rev)
        case .setBackend(let vid, let b):
            let position = try Store.backendPosition(db, vip: vid, id: b.id)
            try Store.put(db, .backend, key: String(b.id), parent: vid, position: position, body: Body.encode(b), revision: rev)
        case .deleteBackend(_, let id):
            try Store.remove(db, .backend, key: String(id), revision: rev)
        case .setPort, .deletePort, .setNeighbor, .deleteNeighbor:
            // The compiler holds the new ports and neighbors; write those two lists whole.
            let c = Configuration(ports: compiler.currentPorts, neighbors: compiler.currentNeighbors)
            _ = try Store.putConfiguration(db, c, kinds: [.port, .neighbor], revision: rev)
        case .replace(let c):
            _ = try Store.putConfiguration(db, c, revision: rev)
        case .rollback(let r):
            _ = try Store.putConfiguration(db, Store.configuration(db, at: r), revision: rev)
        case .setBGP(let b):
            try Store.putBGP(db, b, revision: rev)
        case .setDrain(let on):
            var b = try Store.configuration(db, at: nil, kinds: [.bgp, .peer]).bgp
            b?.drain = on
            try Store.putBGP(db, b, revision: rev)
        }
    }

    nonisolated func canonical(_ m: Mutation) -> Mutation {
        switch m {
        case .setRoute(let r): return .setRoute(canonical(r))
        case .replace(let c): return .replace(canonical(c))
        default: return m
        }
    }

    nonisolated func canonical(_ r: Route) -> Route {
        var r = r
        if let p = Compiler.canonicalPrefix(r.prefix) { r.prefix = p }
        return r
    }

    nonisolated func canonical(_ c: Configuration) -> Configuration {
        var c = c
        c.routes = c.routes.map(canonical)
        return c
    }
}

/// The store thread's side of `applyBulk`, handed over with semaphores (each
/// field is written by one side before the signal the other side waits for).
final class BulkJob: @unchecked Sendable {
    let stored = DispatchSemaphore(value: 0)
    let go = DispatchSemaphore(value: 0)
    let finished = DispatchSemaphore(value: 0)
    var revision: Int64 = 0
    var summary = ""
    var changed = 0
    var generation: UInt64 = 0
    var commit = false
    var failure: Error?
}
