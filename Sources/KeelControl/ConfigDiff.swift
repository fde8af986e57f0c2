import KeelAPI

/// The difference between two configurations, object by object, in the same
/// terms as the store's revision diffs (dry runs and `keelctl diff`).
public enum ConfigDiff {
    struct Object {
        var parent: Int?
        var body: String
    }

    static func objects(_ c: Configuration) -> [Store.Kind: [String: Object]] {
        var out: [Store.Kind: [String: Object]] = [:]
        func add(_ k: Store.Kind, _ key: String, _ parent: Int? = nil, _ body: String) { out[k, default: [:]][key] = Object(parent: parent, body: body) }
        for p in c.ports { add(.port, p.name, nil, (try? Body.encode(p)) ?? "") }
        for r in c.routes { add(.route, r.prefix, nil, (try? Body.encode(r)) ?? "") }
        for n in c.neighbors { add(.neighbor, n.address, nil, (try? Body.encode(n)) ?? "") }
        for v in c.vips {
            var bare = v
            bare.backends = []
            add(.vip, String(v.id), nil, (try? Body.encode(bare)) ?? "")
            for b in v.backends { add(.backend, String(b.id), v.id, (try? Body.encode(b)) ?? "") }
        }
        return out
    }

    public static func diff(_ old: Configuration, _ new: Configuration) -> [DiffEntry] {
        let a = objects(old), b = objects(new)
        var out: [DiffEntry] = []
        for kind in Store.Kind.allCases {
            let o = a[kind] ?? [:], n = b[kind] ?? [:]
            for key in Set(o.keys).union(n.keys).sorted(by: Store.keyOrder(kind)) {
                let x = o[key], y = n[key]
                if let x, let y, x.body == y.body, x.parent == y.parent { continue }
                out.append(DiffEntry(kind: kind.rawValue, key: key, op: x == nil ? .add : y == nil ? .delete : .change,
                                     vip: (y ?? x)!.parent,
                                     before: x.flatMap { try? JSONValue.parse($0.body) },
                                     after: y.flatMap { try? JSONValue.parse($0.body) }))
            }
        }
        return out
    }

    /// "+2 routes, ~1 backend" (nothing: "no change").
    public static func summary(_ entries: [DiffEntry]) -> String {
        var parts: [String] = []
        for kind in Store.Kind.allCases {
            for (op, sign) in [(DiffEntry.Op.add, "+"), (.change, "~"), (.delete, "-")] {
                let n = entries.filter { $0.kind == kind.rawValue && $0.op == op }.count
                if n > 0 { parts.append("\(sign)\(n) \(kind.rawValue)\(n == 1 ? "" : "s")") }
            }
        }
        return parts.isEmpty ? "no change" : parts.joined(separator: ", ")
    }
}
