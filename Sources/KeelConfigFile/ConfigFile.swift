import Foundation
import Yams

// Strict YAML settings files (Config/dataplane.yaml, Config/control.yaml): the
// whole file is checked against a fixed schema before anything is used.

/// A configuration file that cannot be used: where and why.
public struct ConfigFileError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}

/// Reads a settings file and composes its YAML; a file that is not a mapping is refused.
public func composeSettings(path: String) throws -> (Node, Reader) {
    let text: String
    do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
        throw ConfigFileError(path: path, message: "cannot read: \(String(cString: strerror(errno)))")
    }
    return try composeSettings(text: text, path: path)
}

public func composeSettings(text: String, path: String) throws -> (Node, Reader) {
    let node: Node?
    do { node = try Yams.compose(yaml: text) } catch {
        throw ConfigFileError(path: path, message: "not valid YAML: \(error)")
    }
    guard let root = node, root.mapping != nil else { throw ConfigFileError(path: path, message: "expected a mapping of settings") }
    return (root, Reader(path: path))
}

/// Walks the YAML nodes with a fixed schema: unknown keys, wrong types and
/// out-of-range values are errors (a typo must not silently become a default).
public struct Reader {
    public let path: String
    public init(path: String) { self.path = path }

    public func fail(_ n: Node, _ field: String, _ msg: String) -> ConfigFileError {
        ConfigFileError(path: path, message: "line \(n.mark?.line ?? 0): \(field): \(msg)")
    }

    public func mapping(_ n: Node, _ field: String, allowed: Set<String>) throws -> [String: Node] {
        guard let m = n.mapping else { throw fail(n, field, "expected a mapping") }
        var out: [String: Node] = [:]
        for (k, v) in m {
            guard let key = k.string else { throw fail(k, field, "keys must be strings") }
            guard allowed.contains(key) else {
                throw fail(k, field.isEmpty ? key : "\(field).\(key)", "unknown setting (allowed: \(allowed.sorted().joined(separator: ", ")))")
            }
            guard out[key] == nil else { throw fail(k, "\(field).\(key)", "given twice") }
            out[key] = v
        }
        return out
    }

    public func string(_ n: Node, _ field: String) throws -> String {
        guard let s = n.scalar?.string, !s.isEmpty else { throw fail(n, field, "expected a non-empty string") }
        return s
    }

    public func int(_ n: Node, _ field: String, _ range: ClosedRange<Int>) throws -> Int {
        guard let s = n.scalar?.string, let v = Int(s) else { throw fail(n, field, "expected an integer") }
        guard range.contains(v) else { throw fail(n, field, "\(v) is outside \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    public func ints(_ n: Node, _ field: String, _ range: ClosedRange<Int>) throws -> [Int] {
        guard let s = n.sequence else { throw fail(n, field, "expected a list of integers") }
        return try s.enumerated().map { try int($0.element, "\(field)[\($0.offset)]", range) }
    }

    public func key(_ m: [String: Node], _ k: String) -> Node? { m[k] }

    public func bool(_ n: Node, _ field: String) throws -> Bool {
        switch n.scalar?.string {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw fail(n, field, "expected true or false")
        }
    }
}
