import Foundation

/// What the admin API answers a change with: the revision that records it and
/// the tables generation that carries it (the data plane forwards by it once
/// its lcores reach that generation).
public struct ChangeResult: Codable, Equatable, Sendable {
    public var revision: Int64
    public var generation: UInt64
    /// Objects that changed (0: the request matched what was already there; no revision).
    public var changed: Int

    public init(revision: Int64, generation: UInt64, changed: Int) {
        self.revision = revision
        self.generation = generation
        self.changed = changed
    }
}

/// One revision: who changed what, when, and which generation published it.
public struct RevisionInfo: Codable, Equatable, Sendable {
    public var id: Int64
    public var time: Date
    public var author: String
    public var comment: String
    /// For example "+1 route, ~1 backend".
    public var summary: String
    public var generation: UInt64?

    public init(id: Int64, time: Date, author: String, comment: String, summary: String, generation: UInt64?) {
        self.id = id
        self.time = time
        self.author = author
        self.comment = comment
        self.summary = summary
        self.generation = generation
    }
}

/// One object that differs between two configurations.
public struct DiffEntry: Codable, Equatable, Sendable {
    public enum Op: String, Codable, Sendable { case add, delete, change }
    /// port, route, neighbor, vip or backend.
    public var kind: String
    /// Its name: port name, prefix, neighbor address, VIP id or backend id.
    public var key: String
    public var op: Op
    /// For a backend, its VIP.
    public var vip: Int?
    public var before: JSONValue?
    public var after: JSONValue?

    public init(kind: String, key: String, op: Op, vip: Int? = nil, before: JSONValue?, after: JSONValue?) {
        self.kind = kind
        self.key = key
        self.op = op
        self.vip = vip
        self.before = before
        self.after = after
    }
}

/// A dry run or a diff: the changes, and a count per kind.
public struct DiffResult: Codable, Equatable, Sendable {
    public var changes: [DiffEntry]
    public var summary: String
    public init(changes: [DiffEntry], summary: String) {
        self.changes = changes
        self.summary = summary
    }
}

/// Every error the admin API returns: a message, and for invalid input the
/// fields at fault.
public struct ErrorBody: Codable, Equatable, Sendable, Error {
    public struct Issue: Codable, Equatable, Sendable {
        public var field: String
        public var message: String
        public init(field: String, message: String) {
            self.field = field
            self.message = message
        }
    }
    public var error: String
    public var issues: [Issue]?
    public init(error: String, issues: [Issue]? = nil) {
        self.error = error
        self.issues = issues
    }
}

/// Any JSON value (object bodies in diffs).
public enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n):
            if n == n.rounded(), abs(n) < 1e15 { try c.encode(Int64(n)) } else { try c.encode(n) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    public static func parse(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }
}
