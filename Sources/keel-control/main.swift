// keel-control: the control plane. `serve` runs it (store, admin API, health
// checks, publishing); `init` does serve's start-up alone (the appliance's
// first boot); `publish` compiles one configuration file straight into the
// tables file (labs and recovery, no store).
import ArgumentParser
import Foundation
import KeelAPI
import KeelCompiler
import KeelControl
import KeelTables
import Yams

@main
struct KeelControlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keel-control",
        abstract: "Keel's control plane.",
        subcommands: [Serve.self, Init.self, Publish.self])
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the admin API, run health checks and publish the stored configuration to the tables file.")

    @OptionGroup var settings: SettingsOptions

    func run() async throws {
        let s = try settings.load()
        do { try await ControlServer.run(s) } catch let e as ControlServer.StartError {
            FileHandle.standardError.write(Data("keel-control: \(e)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the store, the token file and the tables file, apply the initial configuration to an empty store, publish, and exit (first boot).")

    @OptionGroup var settings: SettingsOptions

    @Flag(help: "Print the admin token (first boot shows it on the console once).")
    var printToken = false

    func run() async throws {
        let s = try settings.load()
        do {
            let p = try await ControlServer.prepare(s)
            print("keel-control: store \(s.databasePath) at revision \(p.revision), published generation \(p.generation) to \(s.tables)")
            if printToken, let admin = p.tokens.first(.admin) {
                print("keel-firstboot: admin token: \(admin.token) (kept in \(s.tokensPath))")
            }
        } catch let e as ControlServer.StartError {
            FileHandle.standardError.write(Data("keel-control: \(e)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// The settings file (keel-control's own or the appliance's keel.yaml) and its overrides.
struct SettingsOptions: ParsableArguments {
    @Option(help: "Settings file: keel-control's own (Config/control.yaml) or the appliance's (Config/keel.yaml). Default: /etc/keel/keel.yaml if it exists, else /etc/keel/control.yaml.")
    var config: String?

    @Option(help: "Override the settings file's listen address (host:port).")
    var listen: String?

    @Option(help: "Override the settings file's data directory.")
    var dataDir: String?

    func load() throws -> ControlSettings {
        let path = config ?? (FileManager.default.fileExists(atPath: "/etc/keel/keel.yaml") ? "/etc/keel/keel.yaml" : "/etc/keel/control.yaml")
        var s: ControlSettings
        do { s = try ControlSettings.loadAny(path: path) } catch {
            FileHandle.standardError.write(Data("keel-control: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if let listen {
            do { let o = try ControlSettings.parse("listen: \"\(listen)\"", path: "--listen"); s.host = o.host; s.port = o.port } catch {
                FileHandle.standardError.write(Data("keel-control: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        if let dataDir { s.dataDir = dataDir }
        return s
    }
}

struct Publish: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compile a routing configuration and publish it to the tables file (one generation).")

    @Option(help: "Routing configuration (YAML or JSON: ports, routes, neighbors, vips).")
    var routing: String

    @Option(help: "The tables file (created when missing).")
    var tables: String = "/dev/shm/keel.tables"

    @Option(help: "Reader lines to create in a new tables file (one per data-plane lcore that reads it, plus the main lcore).")
    var readers: Int = 16

    @Flag(help: "Use small table limits (tests and labs: less memory).")
    var small = false

    func run() throws {
        let text: String
        do { text = try String(contentsOfFile: routing, encoding: .utf8) } catch {
            throw ValidationError("\(routing): cannot read")
        }
        let config: Configuration
        do { config = try YAMLDecoder().decode(Configuration.self, from: text) } catch {
            throw ValidationError("\(routing): \(error)")
        }
        let limits: SnapshotLimits = small ? .small : SnapshotLimits()
        let file: TablesFile
        if FileManager.default.fileExists(atPath: tables) {
            file = try TablesFile.open(path: tables)
        } else {
            file = try TablesFile.create(path: tables, limits: limits, readers: readers)
        }
        let compiler = Compiler(limits: file.layout.limits)
        let changes: [SnapshotChange]
        do { changes = try compiler.replace(with: config) } catch { throw ValidationError("\(routing): \(error)") }
        let publisher = SnapshotPublisher(file: file)
        let g = try publisher.publish(changes)
        print("published generation \(g) to \(tables)")
    }
}
