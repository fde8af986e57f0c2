import Foundation

/// Which keys each object of a request body may have, as a tree.
public indirect enum Shape: Sendable {
    case object([String: Shape])
    case array(Shape)
    case value
}

/// The unknown-field check of a whole JSON body in one pass over its bytes.
///
/// Decoding a million routes with a per-object check (`rejectUnknownKeys`)
/// costs twice the plain decode; this scan costs a fraction of it. When it
/// passes, the body is decoded with the per-object check off (`userInfo`);
/// when it finds an unknown key, or cannot follow the bytes (malformed JSON,
/// escaped keys), the caller decodes strictly and reports exactly as before.
public enum KeyCheck {
    /// Set in a decoder's userInfo when the body's keys were checked already.
    public static let checked = CodingUserInfoKey(rawValue: "keel.keysChecked")!

    /// True when every object key in `data` is one `shape` allows there.
    public static func passes(_ data: Data, _ shape: Shape) -> Bool {
        data.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return false }
            var s = Scanner(p: base.assumingMemoryBound(to: UInt8.self), n: raw.count)
            guard s.value(shape) else { return false }
            s.whitespace()
            return s.i == s.n
        }
    }

    /// A decoder that trusts a passed `KeyCheck`.
    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.userInfo[checked] = true
        return d
    }

    struct Scanner {
        let p: UnsafePointer<UInt8>
        let n: Int
        var i = 0

        mutating func whitespace() {
            while i < n, p[i] == 0x20 || p[i] == 0x0A || p[i] == 0x0D || p[i] == 0x09 { i += 1 }
        }

        /// A string at `i` (its opening quote); the range of its raw contents, nil if malformed.
        /// `escaped` tells whether it had backslashes.
        mutating func string(escaped: inout Bool) -> Range<Int>? {
            guard i < n, p[i] == 0x22 else { return nil }
            i += 1
            let start = i
            while i < n {
                switch p[i] {
                case 0x22:
                    defer { i += 1 }
                    return start..<i
                case 0x5C:
                    escaped = true
                    i += 2
                default:
                    i += 1
                }
            }
            return nil
        }

        /// Skips any value (iteratively: nesting depth costs no stack).
        mutating func skip() -> Bool {
            whitespace()
            guard i < n else { return false }
            var depth = 0
            repeat {
                whitespace()
                guard i < n else { return false }
                switch p[i] {
                case 0x7B, 0x5B: depth += 1; i += 1
                case 0x7D, 0x5D: depth -= 1; i += 1
                case 0x22:
                    var e = false
                    guard string(escaped: &e) != nil else { return false }
                case 0x2C, 0x3A: i += 1
                default:
                    // number, true, false, null
                    let start = i
                    while i < n, !(p[i] == 0x2C || p[i] == 0x7D || p[i] == 0x5D || p[i] == 0x20 || p[i] == 0x0A || p[i] == 0x0D || p[i] == 0x09 || p[i] == 0x3A) { i += 1 }
                    if i == start { return false }
                }
                if depth < 0 { return false }
            } while depth > 0
            return true
        }

        mutating func value(_ shape: Shape) -> Bool {
            whitespace()
            guard i < n else { return false }
            switch (shape, p[i]) {
            case (.object(let keys), 0x7B):
                i += 1
                whitespace()
                if i < n && p[i] == 0x7D { i += 1; return true }
                while true {
                    whitespace()
                    var escaped = false
                    guard let k = string(escaped: &escaped), !escaped else { return false }
                    guard let sub = lookup(keys, k) else { return false }
                    whitespace()
                    guard i < n, p[i] == 0x3A else { return false }
                    i += 1
                    guard value(sub) else { return false }
                    whitespace()
                    guard i < n else { return false }
                    if p[i] == 0x2C { i += 1; continue }
                    if p[i] == 0x7D { i += 1; return true }
                    return false
                }
            case (.array(let element), 0x5B):
                i += 1
                whitespace()
                if i < n && p[i] == 0x5D { i += 1; return true }
                while true {
                    guard value(element) else { return false }
                    whitespace()
                    guard i < n else { return false }
                    if p[i] == 0x2C { i += 1; continue }
                    if p[i] == 0x5D { i += 1; return true }
                    return false
                }
            default:
                // A scalar where one is expected, or a type the decoder will refuse: skip it.
                return skip()
            }
        }

        func lookup(_ keys: [String: Shape], _ r: Range<Int>) -> Shape? {
            for (k, shape) in keys where k.utf8.count == r.count {
                if k.utf8.elementsEqual(UnsafeBufferPointer(start: p + r.lowerBound, count: r.count)) { return shape }
            }
            return nil
        }
    }
}

extension Shape {
    public static let nextHop = Shape.object(["gateway": .value, "port": .value])
    public static let route = Shape.object(["prefix": .value, "next_hops": .array(nextHop), "blackhole": .value])
    public static let port = Shape.object(["name": .value, "mac": .value, "addresses": .value, "mtu": .value])
    public static let neighbor = Shape.object(["address": .value, "mac": .value, "port": .value])
    public static let backend = Shape.object(["id": .value, "address": .value, "weight": .value, "state": .value])
    public static let healthCheck = Shape.object(["type": .value, "port": .value, "path": .value, "expect_status": .value,
                                                  "interval": .value, "timeout": .value, "rise": .value, "fall": .value])
    public static let vip = Shape.object(["id": .value, "address": .value, "protocol": .value, "port": .value,
                                          "encap": .object(["type": .value, "port": .value]), "hash": .value, "table_size": .value,
                                          "source_address": .value, "health_check": healthCheck, "backends": .array(backend)])
    public static let bgpPeer = Shape.object(["address": .value, "remote_as": .value, "password": .value, "bfd": .value])
    public static let bgp = Shape.object(["local_as": .value, "router_id": .value, "hold_time": .value, "drain": .value,
                                          "peers": .array(bgpPeer)])
    public static let configuration = Shape.object(["ports": .array(port), "routes": .array(route),
                                                    "neighbors": .array(neighbor), "vips": .array(vip), "bgp": bgp])
}

/// A request body type with its key shape (for `KeyCheck`).
public protocol ShapedBody: Decodable {
    static var shape: Shape { get }
}

extension Configuration: ShapedBody { public static var shape: Shape { .configuration } }
extension Route: ShapedBody { public static var shape: Shape { .route } }
extension VIP: ShapedBody { public static var shape: Shape { .vip } }
extension Backend: ShapedBody { public static var shape: Shape { .backend } }
extension Neighbor: ShapedBody { public static var shape: Shape { .neighbor } }
extension Port: ShapedBody { public static var shape: Shape { .port } }
extension BGP: ShapedBody { public static var shape: Shape { .bgp } }
