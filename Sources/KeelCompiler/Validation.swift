import KeelAPI
import KeelTables

/// A configuration problem: where (a path like `routes[3].next_hops[0].gateway`) and what.
public struct ConfigIssue: Equatable, Sendable, CustomStringConvertible {
    public let path: String
    public let message: String
    public init(_ path: String, _ message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}

/// One or more problems; the configuration was not applied, not even in part.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public let issues: [ConfigIssue]
    public init(_ issues: [ConfigIssue]) { self.issues = issues }
    public var description: String { issues.map(\.description).joined(separator: "\n") }
}

/// A message as an error value (for Result).
struct Message: Error { let text: String }

/// Parsing helpers shared by validation and compilation.
enum Parse {
    static func mac(_ s: String) -> [UInt8]? {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard p.count == 2, let b = UInt8(p, radix: 16) else { return nil }
            out.append(b)
        }
        return out
    }

    /// "address/length" where the address may have host bits (an interface address).
    static func interface(_ s: String) -> (IPAddress, UInt8)? {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = IPAddress(parts[0]), let l = UInt8(parts[1]) else { return nil }
        guard l <= (a.family == 4 ? 32 : 128) else { return nil }
        return (a, l)
    }

    enum AnyPrefix: Hashable {
        case v4(IPv4Prefix), v6(IPv6Prefix)
        var family: UInt8 { if case .v4 = self { return 4 } else { return 6 } }
        var length: UInt8 { switch self { case .v4(let p): return p.length; case .v6(let p): return p.length } }
        func contains(_ a: IPAddress) -> Bool {
            switch self {
            case .v4(let p): return a.family == 4 && a.v4 >= p.first && a.v4 <= p.last
            case .v6(let p): return a.family == 6 && a.value >= p.first && a.value <= p.last
            }
        }
        var text: String { switch self { case .v4(let p): return p.description; case .v6(let p): return p.description } }
    }

    /// A route prefix: host bits must be zero. The error says what to write instead.
    static func prefix(_ s: String) -> Result<AnyPrefix, Message> {
        let isV6 = s.utf8.contains(0x3A) // bytes: Foundation's contains(String) is a CFString search
        do {
            return .success(isV6 ? .v6(try IPv6Prefix(s)) : .v4(try IPv4Prefix(s)))
        } catch TableError.hostBitsSet {
            if let (a, l) = interface(s) {
                let masked = a.family == 4
                    ? IPv4Prefix.format(l == 0 ? 0 : a.v4 & ~0 << (32 - UInt32(l)))
                    : IPv6Prefix.format(l == 0 ? 0 : a.value & ~UInt128(0) << (128 - UInt128(l)))
                return .failure(Message(text: "\"\(s)\" has host bits set (did you mean \(masked)/\(l)?)"))
            }
            return .failure(Message(text: "\"\(s)\" has host bits set"))
        } catch {
            return .failure(Message(text: "\"\(s)\" is not a prefix (expected ADDRESS/LENGTH, e.g. 192.0.2.0/24 or 2001:db8::/32)"))
        }
    }

    static func subnet(_ a: IPAddress, _ l: UInt8) -> AnyPrefix {
        if a.family == 4 {
            return .v4(try! IPv4Prefix(address: l == 0 ? 0 : a.v4 & ~0 << (32 - UInt32(l)), length: l))
        }
        return .v6(try! IPv6Prefix(address: l == 0 ? 0 : a.value & ~UInt128(0) << (128 - UInt128(l)), length: l))
    }
}
