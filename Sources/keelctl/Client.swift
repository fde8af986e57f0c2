import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import KeelAPI
import Yams

/// keelctl's exit codes (also in docs/keelctl.md).
enum Exit {
    /// The API refused the request (4xx other than 401/403): invalid input, not found, conflict.
    static let refused: Int32 = 1
    /// Usage error (ArgumentParser's own code).
    static let usage: Int32 = 64
    /// The API could not be reached, or failed (5xx).
    static let unavailable: Int32 = 3
    /// No token, a wrong token, or a read-only token asking for a change.
    static let auth: Int32 = 4
}

/// Where the API is and how to authenticate: flags, then the environment
/// (KEEL_API, KEEL_TOKEN, KEEL_TOKEN_FILE), then keel-control's settings file
/// (its listen address and data directory), then the appliance's defaults.
struct Connection: ParsableArguments {
    @Option(help: "keel-control's settings file or the appliance's, for the API address and the token file (env KEEL_CONFIG; default /etc/keel/keel.yaml, else /etc/keel/control.yaml).")
    var config: String?

    @Option(name: .customLong("api"), help: "Admin API base URL (env KEEL_API; default http://127.0.0.1:8440).")
    var api: String?

    @Option(help: "Bearer token (env KEEL_TOKEN; default: the first admin token in the token file).")
    var token: String?

    @Option(help: "Token file to take the token from (env KEEL_TOKEN_FILE; default /var/lib/keel/tokens).")
    var tokenFile: String?

    @Option(name: [.short, .customLong("output")], help: "Output: table, json or yaml.")
    var output: OutputFormat = .table

    /// `listen` and `data_dir` from keel-control's settings file (or the
    /// appliance's, where the address is `api.listen`), if it is there and readable.
    func settings() -> (listen: String?, dataDir: String?) {
        let path = config ?? environment("KEEL_CONFIG")
            ?? (FileManager.default.fileExists(atPath: "/etc/keel/keel.yaml") ? "/etc/keel/keel.yaml" : "/etc/keel/control.yaml")
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let y = (try? Yams.load(yaml: text)) as? [String: Any] else { return (nil, nil) }
        let listen = (y["api"] as? [String: Any])?["listen"] as? String ?? y["listen"] as? String
        return (listen, y["data_dir"] as? String)
    }

    func baseURL() -> String {
        var s = api ?? environment("KEEL_API")
            ?? settings().listen.map { "http://" + ($0.hasPrefix("0.0.0.0:") ? "127.0.0.1:" + $0.dropFirst(8) : $0) }
            ?? "http://127.0.0.1:8440"
        while s.hasSuffix("/") { s.removeLast() }
        return s
    }

    func bearer() throws -> String {
        if let token { return token }
        if let t = ProcessInfo.processInfo.environment["KEEL_TOKEN"], !t.isEmpty { return t }
        let path = tokenFile ?? environment("KEEL_TOKEN_FILE")
            ?? settings().dataDir.map { $0 + "/tokens" } ?? "/var/lib/keel/tokens"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw Failure("no token: give --token, set KEEL_TOKEN, or make \(path) readable", code: Exit.auth)
        }
        var readOnly: String?
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count == 3 else { continue }
            if f[1] == "admin" { return String(f[2]) }
            if f[1] == "read" && readOnly == nil { readOnly = String(f[2]) }
        }
        if let readOnly { return readOnly }
        throw Failure("no token in \(path)", code: Exit.auth)
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json, yaml
}

/// An environment variable; set but empty counts as unset.
func environment(_ name: String) -> String? {
    guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else { return nil }
    return v
}

/// An error keelctl reports on one line, with its exit code.
struct Failure: Error, CustomStringConvertible {
    let description: String
    let code: Int32
    init(_ message: String, code: Int32) {
        self.description = message
        self.code = code
    }
}

/// A response: status and body.
struct Reply {
    let status: Int
    let body: Data
    var json: JSONValue { (try? JSONDecoder().decode(JSONValue.self, from: body)) ?? .null }
}

struct Client {
    let connection: Connection

    func request(_ method: String, _ path: String, query: [String: String] = [:], body: Data? = nil) async throws -> Reply {
        var components = URLComponents(string: connection.baseURL() + path)
        if !query.isEmpty { components?.queryItems = query.sorted(by: { $0.key < $1.key }).map { URLQueryItem(name: $0.key, value: $0.value) } }
        guard let url = components?.url else { throw Failure("bad API URL \(connection.baseURL())\(path)", code: Exit.usage) }
        var r = URLRequest(url: url)
        r.httpMethod = method
        r.timeoutInterval = 600
        r.setValue("Bearer \(try connection.bearer())", forHTTPHeaderField: "Authorization")
        if let body {
            r.httpBody = body
            r.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let data: Data, response: URLResponse
        do { (data, response) = try await URLSession.shared.data(for: r) } catch {
            throw Failure("cannot reach the admin API at \(connection.baseURL()): \(error.localizedDescription)", code: Exit.unavailable)
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let reply = Reply(status: status, body: data)
        guard (200..<300).contains(status) else { throw refusal(reply) }
        return reply
    }

    /// The API's error body as one readable message, with the exit code for its status.
    func refusal(_ r: Reply) -> Failure {
        var text = "HTTP \(r.status)"
        if let e = try? JSONDecoder().decode(ErrorBody.self, from: r.body) {
            text += ": \(e.error)"
            for i in e.issues ?? [] { text += "\n  \(i.field): \(i.message)" }
        } else if let s = String(data: r.body, encoding: .utf8), !s.isEmpty {
            text += ": \(s)"
        }
        let code = r.status == 401 || r.status == 403 ? Exit.auth : r.status >= 500 || r.status == 0 ? Exit.unavailable : Exit.refused
        return Failure(text, code: code)
    }

    func get(_ path: String, query: [String: String] = [:]) async throws -> Reply { try await request("GET", path, query: query) }

    func send<T: Encodable>(_ method: String, _ path: String, _ value: T, query: [String: String] = [:]) async throws -> Reply {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return try await request(method, path, query: query, body: try e.encode(value))
    }
}

// MARK: output

enum Render {
    static func print(_ value: JSONValue, _ format: OutputFormat, table: (JSONValue) -> String) {
        switch format {
        case .json: Swift.print(json(value))
        case .yaml: Swift.print((try? Yams.serialize(node: yaml(value))) ?? "", terminator: "")
        case .table: Swift.print(table(value), terminator: "")
        }
    }

    static func json(_ v: JSONValue) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(v)) ?? Data(), as: UTF8.self)
    }

    static func yaml(_ v: JSONValue) -> Node {
        switch v {
        case .null: return Node("null", Tag(.null))
        case .bool(let b): return Node(b ? "true" : "false", Tag(.bool))
        case .number(let n): return Node(n == n.rounded() && abs(n) < 1e15 ? String(Int64(n)) : String(n), Tag(.float))
        case .string(let s): return Node(s, Tag(.str), .doubleQuoted)
        case .array(let a): return Node(a.map(yaml))
        case .object(let o): return Node(o.keys.sorted().map { (Node($0), yaml(o[$0]!)) })
        }
    }

    /// A plain text table: a header row and aligned columns.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ") + "\n"
        }
        return line(header) + rows.map(line).joined()
    }
}

extension JSONValue {
    subscript(_ key: String) -> JSONValue {
        if case .object(let o) = self { return o[key] ?? .null }
        return .null
    }
    var array: [JSONValue] { if case .array(let a) = self { return a }; return [] }
    var text: String {
        switch self {
        case .null: return "-"
        case .bool(let b): return b ? "yes" : "no"
        case .number(let n): return n == n.rounded() && abs(n) < 1e15 ? String(Int64(n)) : String(n)
        case .string(let s): return s
        case .array(let a): return a.map(\.text).joined(separator: ",")
        case .object:
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return String(decoding: (try? e.encode(self)) ?? Data(), as: UTF8.self)
        }
    }
}
