import KeelAPI

/// The difference between two configurations, object by object, in the same
/// terms as the store's revision diffs (dry runs and `keelctl diff`).
public enum ConfigDiff {
    /// Objects by kind and key (order within lists is not a difference here).
    static func objects(_ c: Configuration) -> [Store.Kind: [String: Store.Object]] {
        var out: [Store.Kind: [String: Store.Object]] = [:]
        for (kind, list) in (try? Store.objects(c)) ?? [:] {
            out[kind] = Dictionary(list.map { ($0.key, $0) }, uniquingKeysWith: { _, last in last })
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
