import ArgumentParser
import Foundation
import KeelAPI
import Yams

// BGP announcement of the VIPs and maintenance drain (docs/scale-out.md).

struct BGPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bgp", abstract: "BGP: the peers the VIPs are announced to, and what is announced.",
                                                    subcommands: [Show.self, Set.self, Delete.self])
    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The BGP section, the announced VIPs and the sessions.")
        @OptionGroup var connection: Connection
        func run() async throws {
            try await Keelctl.run {
                let client = Client(connection: connection)
                let b = try await client.get("/v1/bgp").json
                let s = try await client.get("/v1/status").json["bgp"]
                Render.print(.object(["bgp": b, "state": s]), connection.output) { v in
                    let b = v["bgp"], s = v["state"]
                    var out = "local AS \(b["local_as"].text), router id \(b["router_id"] == .null ? "(first port address)" : b["router_id"].text), hold time \(b["hold_time"].text) s\(b["drain"] == .bool(true) ? ", DRAINED" : "")\n"
                    out += "announced: \(s["announced"].array.isEmpty ? "nothing" : s["announced"].array.map(\.text).joined(separator: " "))\n"
                    let sessions = Dictionary(s["sessions"].array.map { ($0["peer"].text, $0) }, uniquingKeysWith: { a, _ in a })
                    out += Render.table(["PEER", "REMOTE AS", "BFD", "STATE"], b["peers"].array.map {
                        let st = sessions[$0["address"].text]
                        return [$0["address"].text, $0["remote_as"].text, $0["bfd"].text, st.map { "\($0["state"].text) \($0["info"].text)" } ?? "-"]
                    })
                    return out
                }
            }
        }
    }
    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make the BGP section this file's (YAML or JSON: local_as, router_id, hold_time, peers).")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        @Option(name: .short, help: "BGP section file.") var file: String
        func run() async throws {
            try await Keelctl.run {
                let text: String
                do { text = try String(contentsOfFile: file, encoding: .utf8) } catch { throw Failure("\(file): cannot read", code: Exit.usage) }
                let bgp: BGP
                do { bgp = try YAMLDecoder().decode(BGP.self, from: text) } catch let e as DecodingError {
                    throw Failure("\(file): \(describe(e))", code: Exit.refused)
                }
                let r = try await Client(connection: connection).send("PUT", "/v1/bgp", bgp, query: comment.query)
                printChange(r, connection, what: "bgp")
            }
        }
    }
    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove the BGP section (every announcement is withdrawn).")
        @OptionGroup var connection: Connection
        @OptionGroup var comment: CommentOption
        func run() async throws {
            try await Keelctl.run {
                let r = try await Client(connection: connection).request("DELETE", "/v1/bgp", query: comment.query)
                printChange(r, connection, what: "bgp deleted")
            }
        }
    }
}

struct Drain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Maintenance: withdraw every VIP announcement (--off: announce again).",
        discussion: "The upstream routers move new flows to the other appliances; flows already here keep their backends until they end.")
    @OptionGroup var connection: Connection
    @OptionGroup var comment: CommentOption
    @Flag(help: "End the drain.") var off = false
    @Option(help: "Wait at most this many seconds for the withdrawal to be in BIRD.") var wait: Double = 10
    @Option(help: "Then wait at most this many seconds for the connection tables to empty (0: do not wait).") var waitEmpty: Double = 0
    func run() async throws {
        try await Keelctl.run {
            let client = Client(connection: connection)
            let r = try await client.request(off ? "DELETE" : "POST", "/v1/drain", query: comment.query)
            printChange(r, connection, what: off ? "drain ended" : "drained")
            // The announcer applies it within a second: report when BIRD has it.
            let end = Date().addingTimeInterval(wait)
            while Date() < end {
                let s = try await client.get("/v1/status").json["bgp"]
                if s["drained"] == .bool(!off), s["bird_applied"] != .bool(false) {
                    if connection.output == .table {
                        print(off ? "announcing: \(s["announced"].array.map(\.text).joined(separator: " "))" : "withdrawn: nothing is announced")
                    }
                    if off { return }
                    // Drained: report the flows still here, and (asked to) wait until there are none.
                    let emptyBy = Date().addingTimeInterval(waitEmpty)
                    while true {
                        let flows = try await client.get("/v1/status").json["dataplane"]["flows"]
                        if flows.text == "0" { print("empty: no flows left in the connection tables"); return }
                        if Date() >= emptyBy {
                            print("\(flows.text) flows still in the connection tables (they end or time out; keelctl status shows the count)")
                            if waitEmpty > 0 { throw Failure("not empty after \(waitEmpty) s", code: Exit.unavailable) }
                            return
                        }
                        try await Task.sleep(for: .seconds(1))
                    }
                }
                try await Task.sleep(for: .milliseconds(250))
            }
            throw Failure("the announcer has not applied the change within \(wait) s (keelctl bgp show)", code: Exit.unavailable)
        }
    }
}
