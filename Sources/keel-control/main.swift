// keel-control: the control plane. For now one command, `publish`: compile a
// routing configuration (the keelctl apply schema, YAML or JSON) and publish
// it to the tables file, creating the file if needed. The store, the admin
// API and health checks come with issue 6 and publish the same way.
import ArgumentParser
import Foundation
import KeelAPI
import KeelCompiler
import KeelTables
import Yams

@main
struct KeelControl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keel-control",
        abstract: "Keel's control plane.",
        subcommands: [Publish.self])
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
