// keelctl: the command-line tool over keel-control's admin API.
import ArgumentParser
import Foundation
import KeelAPI
import Yams

@main
struct Keelctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keelctl",
        abstract: "Operate a Keel appliance through its admin API.",
        discussion: """
            The API address and token come from --api/--token, else KEEL_API/KEEL_TOKEN, else \
            http://127.0.0.1:8440 and the first admin token in /var/lib/keel/tokens. Exit codes: \
            0 done, 1 refused by the API (invalid, not found, conflict), 3 API unreachable or failing, \
            4 authentication or permission, 64 usage. Shell completion: keelctl --generate-completion-script bash.
            """,
        subcommands: [RouteCommand.self, VIPCommand.self, BackendCommand.self, NeighborCommand.self, PortCommand.self,
                      BGPCommand.self, Drain.self,
                      Apply.self, Diff.self, GetConfig.self, History.self, ShowRevision.self, Rollback.self, Status.self, Stats.self, Trace.self])

    /// Runs a subcommand body, turning failures into one line on stderr and an exit code.
    static func run(_ body: () async throws -> Void) async throws {
        do { try await body() } catch let f as Failure {
            FileHandle.standardError.write(Data("keelctl: \(f.description)\n".utf8))
            throw ExitCode(f.code)
        }
    }
}

/// Prints a change's result: revision and generation.
func printChange(_ r: Reply, _ c: Connection, what: String) {
    Render.print(r.json, c.output) { v in
        if v["changed"].text == "0" { return "\(what): no change (revision \(v["revision"].text), generation \(v["generation"].text))\n" }
        return "\(what): revision \(v["revision"].text), published in generation \(v["generation"].text)\n"
    }
}

struct CommentOption: ParsableArguments {
    @Option(help: "Comment recorded in the revision.")
    var comment: String?
    var query: [String: String] { comment.map { ["comment": $0] } ?? [:] }
}

// MARK: routes

struct RouteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "route", abstract: "Routes.",
                                                    subcommands: [Add.self, Del.self, List.self, Show.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add or replace a route (several --via: ECMP).")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Argument(help: "Prefix, e.g. 10.0.0.0/8 or 2001:db8::/32.") var prefix: String
        @Option(help: "Gateway address (repeat for ECMP).") var via: [String] = []
        @Option(help: "Out port (with --via: pins the gateway's port; alone: on-link).") var dev: String?
        @Flag(help: "Discard packets to this prefix.") var blackhole = false

        func run() async throws {
            try await Keelctl.run {
                var hops = via.map { NextHop(gateway: $0, port: dev) }
                if hops.isEmpty, let dev { hops = [NextHop(port: dev)] }
                let r = try await Client(connection: connection).send("POST", "/v1/routes", Route(prefix: prefix, nextHops: hops, blackhole: blackhole), query: comment.query)
                printChange(r, connection, what: "route \(prefix)")
            }
        }
    }

    struct Del: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a route.")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Argument var prefix: String
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).request("DELETE", "/v1/routes/\(prefix)", query: comment.query)
                printChange(r, connection, what: "route \(prefix) deleted")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List routes (by prefix text order).")
        @OptionGroup var connection: Connection
        @Option(help: "At most this many.") var limit: Int = 100_000
        @Option(help: "Start after this prefix (paging).") var after: String?
        func run() async throws {
            try await Keelctl.run {
                var q = ["limit": String(limit)]
                if let after { q["after"] = after }
                let r = try await Client(connection: connection).get("/v1/routes", query: q)
                Render.print(r.json, connection.output) { v in
                    Render.table(["PREFIX", "NEXT HOPS"], v["routes"].array.map { route in
                        [route["prefix"].text, route["blackhole"] == .bool(true) ? "blackhole"
                            : route["next_hops"].array.map { h in [h["gateway"], h["port"]].filter { $0 != .null }.map(\.text).joined(separator: " dev ") }.joined(separator: ", ")]
                    }) + (v["next"] == .null ? "" : "(more: --after \(v["next"].text))\n")
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one route.")
        @OptionGroup var connection: Connection
        @Argument var prefix: String
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).get("/v1/routes/\(prefix)")
                Render.print(r.json, connection.output) { Render.json($0) + "\n" }
            }
        }
    }
}

// MARK: VIPs and backends

struct VIPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vip", abstract: "Virtual IPs.",
                                                    subcommands: [Add.self, Del.self, List.self, Show.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add or replace a VIP (its backends stay unless given with apply).")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Option(help: "Stable VIP id.") var id: Int
        @Option(help: "VIP address.") var address: String
        @Option(help: "tcp or udp.") var `protocol`: String = "tcp"
        @Option(help: "Port (0: all ports).") var port: Int = 0
        @Option(help: "ipip or gue.") var encap: String = "ipip"
        @Option(help: "GUE's UDP port.") var encapPort: Int?
        @Option(help: "5-tuple, 3-tuple or source.") var hash: String = "5-tuple"
        @Option(help: "Maglev table size (prime).") var tableSize: Int = 65537
        @Option(help: "Outer source address.") var source: String?
        @Option(help: "Health check: tcp or http (none: no check).") var check: String?
        @Option(help: "Health check port (default: the VIP's).") var checkPort: Int?
        @Option(help: "HTTP check path.") var checkPath: String = "/"

        func run() async throws {
            try await Keelctl.run {
                let client = Client(connection: connection)
                // Keep the VIP's backends when replacing it.
                var backends: [Backend] = []
                if let r = try? await client.get("/v1/vips/\(id)"), let v = try? JSONDecoder().decode(VIPBackends.self, from: r.body) { backends = v.backends }
                let v = VIP(id: id, address: address, protocol: `protocol`, port: port == 0 ? nil : port,
                            encap: Encap(type: encap, port: encapPort), hash: hash, tableSize: tableSize, sourceAddress: source,
                            healthCheck: check.map { HealthCheck(type: $0, port: checkPort, path: checkPath) }, backends: backends)
                let r = try await client.send("PUT", "/v1/vips/\(id)", v, query: comment.query)
                printChange(r, connection, what: "VIP \(id)")
            }
        }
    }

    struct Del: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a VIP and its backends.")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Argument var id: Int
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).request("DELETE", "/v1/vips/\(id)", query: comment.query)
                printChange(r, connection, what: "VIP \(id) deleted")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List VIPs.")
        @OptionGroup var connection: Connection
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).get("/v1/vips")
                Render.print(r.json, connection.output) { v in
                    Render.table(["ID", "ADDRESS", "PROTO", "PORT", "ENCAP", "HASH", "BACKENDS (up/total)"], v["vips"].array.map { x in
                        let b = x["backends"].array
                        let up = b.filter { $0["state"] == .string("up") && $0["health"] != .string("down") }.count
                        return [x["id"].text, x["address"].text, x["protocol"].text, x["port"] == .null ? "all" : x["port"].text,
                                x["encap"]["type"].text, x["hash"].text, "\(up)/\(b.count)"]
                    })
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a VIP with its backends and their health.")
        @OptionGroup var connection: Connection
        @Argument var id: Int
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).get("/v1/vips/\(id)")
                Render.print(r.json, connection.output) { x in
                    "VIP \(x["id"].text) \(x["address"].text) \(x["protocol"].text)/\(x["port"] == .null ? "all" : x["port"].text), \(x["encap"]["type"].text), hash \(x["hash"].text)\n"
                        + Render.table(["BACKEND", "ADDRESS", "WEIGHT", "STATE", "HEALTH"], x["backends"].array.map {
                            [$0["id"].text, $0["address"].text, $0["weight"].text, $0["state"].text, $0["health"].text]
                        })
                }
            }
        }
    }
}

struct VIPBackends: Decodable {
    var backends: [Backend]
    enum CodingKeys: String, CodingKey { case backends }
    init(from d: Decoder) throws {
        // The API adds "health" to each backend; take only the configuration fields.
        struct B: Decodable { var id: Int; var address: String; var weight: Int; var state: String }
        let c = try d.container(keyedBy: CodingKeys.self)
        backends = try c.decode([B].self, forKey: .backends).map { Backend(id: $0.id, address: $0.address, weight: $0.weight, state: $0.state) }
    }
}

struct BackendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backend", abstract: "A VIP's backends.",
        subcommands: [Add.self, Del.self, List.self, SetWeight.self, Drain.self, Enable.self, Disable.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a backend to a VIP.")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Argument(help: "VIP id.") var vip: Int
        @Option(help: "Stable backend id (unique across VIPs).") var id: Int
        @Option(help: "Backend address.") var address: String
        @Option(help: "Weight (0: no new flows).") var weight: Int = 1
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).send("POST", "/v1/vips/\(vip)/backends",
                                                                     Backend(id: id, address: address, weight: weight), query: comment.query)
                printChange(r, connection, what: "backend \(id) of VIP \(vip)")
            }
        }
    }

    struct Del: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a backend (its flows move).")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Argument var vip: Int
        @Argument var id: Int
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).request("DELETE", "/v1/vips/\(vip)/backends/\(id)", query: comment.query)
                printChange(r, connection, what: "backend \(id) of VIP \(vip) removed")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a VIP's backends with their health.")
        @OptionGroup var connection: Connection
        @Argument var vip: Int
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).get("/v1/vips/\(vip)/backends")
                Render.print(r.json, connection.output) { v in
                    Render.table(["BACKEND", "ADDRESS", "WEIGHT", "STATE", "HEALTH"], v["backends"].array.map {
                        [$0["id"].text, $0["address"].text, $0["weight"].text, $0["state"].text, $0["health"].text]
                    })
                }
            }
        }
    }

    struct Patch: Encodable { var weight: Int?; var state: String? }

    static func patch(_ c: Connection, _ comment: CommentOption, _ vip: Int, _ id: Int, _ p: Patch, _ what: String) async throws {
        try await Keelctl.run {
            let r = try await Client(connection: c).send("PATCH", "/v1/vips/\(vip)/backends/\(id)", p, query: comment.query)
            printChange(r, c, what: "backend \(id) of VIP \(vip) \(what)")
        }
    }

    struct SetWeight: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a backend's weight.")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Argument var vip: Int
        @Argument var id: Int
        @Argument var weight: Int
        func run() async throws { try await BackendCommand.patch(connection, comment, vip, id, Patch(weight: weight), "weight \(weight)") }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "No new flows to a backend; its existing flows stay.")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Argument var vip: Int
        @Argument var id: Int
        func run() async throws { try await BackendCommand.patch(connection, comment, vip, id, Patch(state: "drain"), "draining") }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Put a backend back in service (state up).")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Argument var vip: Int
        @Argument var id: Int
        func run() async throws { try await BackendCommand.patch(connection, comment, vip, id, Patch(state: "up"), "up") }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take a backend out now (state down: its flows move).")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Argument var vip: Int
        @Argument var id: Int
        func run() async throws { try await BackendCommand.patch(connection, comment, vip, id, Patch(state: "down"), "down") }
    }
}

// MARK: neighbors and ports

struct NeighborCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "neighbor", abstract: "Static neighbors (ARP/ND entries).",
                                                    subcommands: [Add.self, Del.self, List.self])
    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add or replace a static neighbor.")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Argument var address: String
        @Option var mac: String
        @Option var port: String
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).send("POST", "/v1/neighbors", Neighbor(address: address, mac: mac, port: port), query: comment.query)
                printChange(r, connection, what: "neighbor \(address)")
            }
        }
    }
    struct Del: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a static neighbor.")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Argument var address: String
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).request("DELETE", "/v1/neighbors/\(address)", query: comment.query)
                printChange(r, connection, what: "neighbor \(address) deleted")
            }
        }
    }
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List static neighbors.")
        @OptionGroup var connection: Connection
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).get("/v1/neighbors")
                Render.print(r.json, connection.output) { v in
                    Render.table(["ADDRESS", "MAC", "PORT"], v["neighbors"].array.map { [$0["address"].text, $0["mac"].text, $0["port"].text] })
                }
            }
        }
    }
}

struct PortCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "port", abstract: "Data-plane ports: MAC, addresses, MTU.",
                                                    subcommands: [Set.self, Del.self, List.self])
    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add or replace a port.")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Argument var name: String
        @Option var mac: String
        @Option(help: "Interface address, e.g. 10.1.0.1/24 (repeat).") var address: [String] = []
        @Option var mtu: Int = 1500
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).send("PUT", "/v1/ports/\(name)", Port(name: name, mac: mac, addresses: address, mtu: mtu), query: comment.query)
                printChange(r, connection, what: "port \(name)")
            }
        }
    }
    struct Del: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a port.")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Argument var name: String
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).request("DELETE", "/v1/ports/\(name)", query: comment.query)
                printChange(r, connection, what: "port \(name) deleted")
            }
        }
    }
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List ports.")
        @OptionGroup var connection: Connection
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).get("/v1/ports")
                Render.print(r.json, connection.output) { v in
                    Render.table(["PORT", "MAC", "MTU", "ADDRESSES"], v["ports"].array.map { [$0["name"].text, $0["mac"].text, $0["mtu"].text, $0["addresses"].text] })
                }
            }
        }
    }
}

// MARK: whole configuration and revisions

/// Reads a configuration file (YAML or JSON), refusing unknown fields.
func readConfiguration(_ path: String) throws -> (Configuration, Int) {
    let data: Data
    do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch { throw Failure("\(path): cannot read", code: Exit.usage) }
    do {
        let text = String(decoding: data, as: UTF8.self)
        return (try YAMLDecoder().decode(Configuration.self, from: text), data.count)
    } catch let e as DecodingError {
        throw Failure("\(path): \(describe(e))", code: Exit.refused)
    } catch {
        throw Failure("\(path): \(error)", code: Exit.refused)
    }
}

func describe(_ e: DecodingError) -> String {
    func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
    }
    switch e {
    case .keyNotFound(let k, let c): return "\(path(c.codingPath + [k])): required"
    case .typeMismatch(let t, let c): return "\(path(c.codingPath)): expected \(t)"
    case .valueNotFound(let t, let c): return "\(path(c.codingPath)): expected \(t), not null"
    case .dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
    @unknown default: return "\(e)"
    }
}

func stderrLine(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

struct Apply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make the appliance's configuration exactly this file (one revision).")
    @OptionGroup var connection: Connection
    @OptionGroup var comment: CommentOption
    @Option(name: .short, help: "Configuration file (YAML or JSON; the /v1/config schema).") var file: String
    @Flag(help: "Show what would change; change nothing.") var dryRun = false

    func run() async throws {
        try await Keelctl.run {
            let start = Date()
            let (config, bytes) = try readConfiguration(file)
            // Progress for bulk loads: what is being sent, then how long the server took.
            let big = config.routes.count > 10_000
            if big { stderrLine("keelctl: \(file): \(config.ports.count) ports, \(config.routes.count) routes, \(config.vips.count) VIPs (\(bytes / 1_000_000) MB) read in \(String(format: "%.1f", Date().timeIntervalSince(start))) s; sending…") }
            var q = comment.query
            if dryRun { q["dry_run"] = "true" }
            let sent = Date()
            let r = try await Client(connection: connection).send("PUT", "/v1/config", config, query: q)
            if big { stderrLine("keelctl: validated, stored and published in \(String(format: "%.1f", Date().timeIntervalSince(sent))) s") }
            if dryRun { printDiff(r, connection) } else { printChange(r, connection, what: "applied \(file)") }
        }
    }
}

func printDiff(_ r: Reply, _ c: Connection) {
    Render.print(r.json, c.output) { v in
        var out = v["summary"].text + "\n"
        for e in v["changes"].array.prefix(200) {
            let sign = ["add": "+", "delete": "-", "change": "~"][e["op"].text] ?? "?"
            out += "\(sign) \(e["kind"].text) \(e["key"].text)"
            if e["vip"] != .null { out += " (VIP \(e["vip"].text))" }
            out += "\n"
            if e["op"].text != "add" { out += "    before: \(e["before"].text)\n" }
            if e["op"].text != "delete" { out += "    after:  \(e["after"].text)\n" }
        }
        if v["changes"].array.count > 200 { out += "… \(v["changes"].array.count - 200) more (-o json for all)\n" }
        return out
    }
}

struct Diff: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show what applying a file would change.")
    @OptionGroup var connection: Connection
    @Option(name: .short, help: "Configuration file (YAML or JSON).") var file: String
    func run() async throws {
        try await Keelctl.run {
            let (config, _) = try readConfiguration(file)
            let r = try await Client(connection: connection).send("PUT", "/v1/config", config, query: ["dry_run": "true"])
            printDiff(r, connection)
        }
    }
}

struct GetConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get-config", abstract: "Print the whole configuration (YAML unless -o json): apply -f takes it back.")
    @OptionGroup var connection: Connection
    func run() async throws {
        try await Keelctl.run {
            let r = try await Client(connection: connection).get("/v1/config")
            Render.print(r.json, connection.output == .table ? .yaml : connection.output) { Render.json($0) }
        }
    }
}

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List revisions, newest first.")
    @OptionGroup var connection: Connection
    @Option var limit: Int = 20
    func run() async throws {
        try await Keelctl.run {
            let r = try await Client(connection: connection).get("/v1/revisions", query: ["limit": String(limit)])
            Render.print(r.json, connection.output) { v in
                Render.table(["REV", "TIME", "AUTHOR", "GEN", "CHANGES", "COMMENT"], v["revisions"].array.map {
                    [$0["id"].text, $0["time"].text, $0["author"].text, $0["generation"].text, $0["summary"].text, $0["comment"].text]
                })
            }
        }
    }
}

struct ShowRevision: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show-revision", abstract: "Show what a revision changed (or, with --config, its whole configuration).")
    @OptionGroup var connection: Connection
    @Argument var revision: Int
    @Option(help: "Diff against this revision instead of the one before.") var from: Int?
    @Flag(help: "Print the whole configuration as of this revision.") var config = false
    func run() async throws {
        try await Keelctl.run {
            let client = Client(connection: connection)
            if config {
                let r = try await client.get("/v1/revisions/\(revision)")
                Render.print(r.json["configuration"], connection.output == .table ? .yaml : connection.output) { Render.json($0) }
            } else {
                let r = try await client.get("/v1/revisions/\(revision)/diff", query: from.map { ["from": String($0)] } ?? [:])
                printDiff(r, connection)
            }
        }
    }
}

struct Rollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make the configuration what it was at a revision (as a new revision).")
    @OptionGroup var connection: Connection
    @OptionGroup var comment: CommentOption
    @Argument var revision: Int
    func run() async throws {
        try await Keelctl.run {
            let r = try await Client(connection: connection).request("POST", "/v1/revisions/\(revision)/rollback", query: comment.query)
            printChange(r, connection, what: "rolled back to revision \(revision)")
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Data plane heartbeat, generations, lcores, ports. Exit 0 only when healthy.")
    @OptionGroup var connection: Connection
    func run() async throws {
        try await Keelctl.run {
            let r = try await Client(connection: connection).get("/v1/status")
            let v = r.json
            Render.print(v, connection.output) { v in
                let dp = v["dataplane"]
                var out = "healthy: \(v["healthy"].text)\n"
                out += "data plane: \(dp["running"] == .bool(true) ? "running" : "not running")"
                if dp["pid"] != .null { out += " (pid \(dp["pid"].text), heartbeat \(dp["heartbeat_age_ms"].text) ms ago, at generation \(dp["generation"].text), \(dp["flows"].text) flows)" }
                out += "\npublished generation \(v["published_generation"].text), revision \(v["revision"].text)\n"
                out += Render.table(["LINE", "PID", "GENERATION", "LAGGING"], v["lcores"].array.map { [$0["line"].text, $0["pid"].text, $0["generation"].text, $0["lagging"].text] })
                out += Render.table(["PORT", "UP"], v["ports"].array.map { [$0["name"].text, $0["up"].text] })
                if !v["backends_down"].array.isEmpty { out += "backends down: \(v["backends_down"].text)\n" }
                out += "load-balancing fingerprint: \(v["fingerprint"].text) (equal across a fleet: the same backend for the same flow)\n"
                let b = v["bgp"]
                if b["configured"] == .bool(true) {
                    let sessions = b["sessions"].array
                    out += "bgp: \(b["drained"] == .bool(true) ? "drained, " : "")announcing \(b["announced"].array.isEmpty ? "nothing" : b["announced"].array.map(\.text).joined(separator: " ")); "
                    out += "\(sessions.filter { $0["established"] == .bool(true) }.count) of \(sessions.count) sessions established\n"
                }
                return out
            }
            if v["healthy"] != .bool(true) { throw ExitCode(Exit.unavailable) }
        }
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The data plane's counters.")
    @OptionGroup var connection: Connection
    func run() async throws {
        try await Keelctl.run {
            let r = try await Client(connection: connection).get("/v1/stats")
            Render.print(r.json, connection.output) { v in
                var out = Render.table(["PORT", "UP", "RX PACKETS", "RX BYTES", "TX PACKETS", "TX BYTES"], v["ports"].array.map {
                    [$0["name"].text, $0["up"].text, $0["rx_packets"].text, $0["rx_bytes"].text, $0["tx_packets"].text, $0["tx_bytes"].text]
                })
                if case .object(let d) = v["drops"], !d.isEmpty {
                    out += "drops:\n" + d.keys.sorted().map { "  \($0): \(d[$0]!.text)\n" }.joined()
                }
                for x in v["vips"].array {
                    out += "VIP \(x["id"].text): \(x["packets"].text) packets, \(x["new_flows"].text) new flows\n"
                    if case .object(let b) = x["backends"] {
                        for k in b.keys.sorted(by: { (Int($0) ?? 0) < (Int($1) ?? 0) }) { out += "  backend \(k): \(b[k]!["packets"].text) packets\n" }
                    }
                }
                return out
            }
        }
    }
}

struct Trace: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "What the published tables do with a packet: route, next hop, VIP, backend.")
    @OptionGroup var connection: Connection
    @Argument(help: "Destination address.") var dst: String
    @Option(help: "Source address.") var src: String?
    @Option(help: "tcp, udp or icmp.") var proto: String = "tcp"
    @Option(help: "Source port.") var sport: Int = 0
    @Option(help: "Destination port.") var dport: Int = 0
    func run() async throws {
        try await Keelctl.run {
            var q = ["dst": dst, "proto": proto, "sport": String(sport), "dport": String(dport)]
            if let src { q["src"] = src }
            let r = try await Client(connection: connection).get("/v1/trace", query: q)
            Render.print(r.json, connection.output) { v in
                var out = "generation \(v["generation"].text): \(v["verdict"].text)"
                for k in ["route", "next_hop", "port", "ecmp_members", "vip", "backend", "backend_address"] where v[k] != .null {
                    out += "\n  \(k.replacingOccurrences(of: "_", with: " ")): \(v[k].text)"
                }
                return out + "\n"
            }
        }
    }
}
