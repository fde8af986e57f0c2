import Foundation
import Hummingbird
// ControlSettings lives there (shared with the appliance settings); users of KeelControl see it.
@_exported import KeelConfigFile
import KeelAPI
import KeelTables
import Logging
import ServiceLifecycle
import Yams

/// `keel-control serve`: opens the store and the tables file, publishes the
/// stored configuration, and serves the admin API and the health checks until
/// SIGTERM or SIGINT.
public enum ControlServer {
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    /// What `serve` and `init` share: the store, tokens and tables file
    /// opened (created on first start), the initial configuration applied to
    /// an empty store, and the stored configuration published.
    public struct Prepared: Sendable {
        public let tokens: Tokens
        let store: Store
        let plane: ControlPlane
        let board: Board
        let logger: Logger
        public let revision: Int64
        public let generation: UInt64
    }

    public static func prepare(_ s: ControlSettings) async throws -> Prepared {
        var logger = Logger(label: "keel-control")
        logger.logLevel = Logger.Level(rawValue: s.logLevel) ?? .info

        do { try FileManager.default.createDirectory(atPath: s.dataDir, withIntermediateDirectories: true) } catch {
            throw StartError(description: "\(s.dataDir): cannot create the data directory: \(error.localizedDescription)")
        }
        let tokens: Tokens
        do { tokens = try Tokens.load(path: s.tokensPath) } catch { throw StartError(description: "\(error)") }
        let store: Store
        do { store = try Store(path: s.databasePath) } catch { throw StartError(description: "\(s.databasePath): \(error)") }
        if store.openedReadOnly {
            logger.warning("the store's filesystem is read-only: serving the stored configuration, refusing every change", metadata: ["store": "\(s.databasePath)"])
        }

        let file: TablesFile
        do {
            if FileManager.default.fileExists(atPath: s.tables) {
                file = try TablesFile.open(path: s.tables)
            } else {
                file = try TablesFile.create(path: s.tables, limits: s.limits, readers: s.readers)
            }
        } catch { throw StartError(description: "\(s.tables): \(error)") }
        let board = Board()
        let plane = ControlPlane(store: store, sink: SnapshotPublisher(file: file), limits: file.layout.limits, board: board, logger: logger)

        // First start with an initial configuration: it becomes revision 1.
        if let initial = s.initial, try store.latestRevision() == 0, FileManager.default.fileExists(atPath: initial) {
            let config: Configuration
            do { config = try YAMLDecoder().decode(Configuration.self, from: String(contentsOfFile: initial, encoding: .utf8)) } catch {
                throw StartError(description: "\(initial): \(error)")
            }
            do { _ = try await plane.apply(.replace(config), author: "initial", comment: "applied \(initial) on first start") } catch {
                throw StartError(description: "\(initial): \(error)")
            }
        }
        let generation: UInt64
        do { generation = try await plane.start() } catch { throw StartError(description: "the stored configuration: \(error)") }
        let revision = try store.latestRevision()
        logger.info("published the stored configuration", metadata: ["generation": "\(generation)", "revision": "\(revision)"])
        return Prepared(tokens: tokens, store: store, plane: plane, board: board, logger: logger, revision: revision, generation: generation)
    }

    public static func run(_ s: ControlSettings) async throws {
        let p = try await prepare(s)
        let (tokens, store, plane, board, logger) = (p.tokens, p.store, p.plane, p.board, p.logger)
        let announcer = Announcer(store: store, board: board, statsPath: s.stats,
                                  settings: .init(config: s.birdConfig, socket: s.birdSocket, birdc: s.birdc), logger: logger)
        let deps = APIDependencies(plane: plane, store: store, tokens: tokens, board: board, tablesPath: s.tables,
                                   statsPath: s.stats, maxBody: s.maxBodyMiB << 20, announcer: announcer)
        let checker = HealthChecker(plane: plane, board: board, logger: logger)
        var services: [any Service] = [checker, announcer]
        services.append(Application(
            router: buildRouter(deps),
            configuration: .init(address: .hostname(s.host, port: s.port), serverName: "keel-control"),
            onServerRunning: { channel in
                // Tests and scripts read the bound address from this line.
                let a = channel.localAddress
                let host = a?.ipAddress.map { $0.contains(":") ? "[\($0)]" : $0 } ?? "?"
                FileHandle.standardOutput.write(Data("keel-control: listening on \(host):\(a?.port ?? 0)\n".utf8))
            },
            logger: logger))
        if let path = s.unixSocket {
            unlink(path)
            services.append(Application(
                router: buildRouter(deps),
                configuration: .init(address: .unixDomainSocket(path: path), serverName: "keel-control"),
                onServerRunning: { _ in chmod(path, 0o660) },
                logger: logger))
        }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
