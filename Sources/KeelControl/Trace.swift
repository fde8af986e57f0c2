import Foundation
import KeelAPI
import KeelForward
import KeelPacket
import KeelTables

/// /v1/trace: what the published tables do with one packet, computed with the
/// data plane's own lookup, hash and Maglev code on the published slot. For a
/// VIP it is the choice for a new flow (an existing flow keeps the backend in
/// its worker's connection table, which only the data plane sees).
enum Trace {
    struct Query {
        var src: IPAddress
        var dst: IPAddress
        var proto: UInt8
        var sport: UInt16
        var dport: UInt16
    }

    static func run(_ q: Query, tablesPath: String, store: Store) throws -> [String: Any] {
        let file: TablesFile
        do { file = try TablesFile.open(path: tablesPath) } catch { throw APIError(.serviceUnavailable, "no tables file: \(error)") }
        // The writer may reuse the other slot while we read this one: read, then
        // check nothing was published meanwhile (else read again).
        for _ in 0..<10 {
            let word = file.published.load(ordering: .acquiring)
            guard word >> 1 != 0 else { throw APIError(.serviceUnavailable, "nothing published yet") }
            let slot = file.slot(Int(word & 1))
            let s = Snapshot(verified: UnsafeRawPointer(slot), layout: file.layout)
            let out = try trace(q, s, store: store)
            if file.published.load(ordering: .acquiring) == word { return out }
        }
        throw APIError(.serviceUnavailable, "the tables kept changing while tracing; try again")
    }

    static func trace(_ q: Query, _ s: Snapshot, store: Store) throws -> [String: Any] {
        var out: [String: Any] = ["generation": s.generation]
        let v4 = q.dst.family == 4
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 96, alignment: 16)
        defer { buf.deallocate() }
        let dst = buf, src = buf + 16, scratch = buf + 32
        q.dst.store(to: dst)
        q.src.store(to: src)
        let ports = try store.configuration(kinds: [.port]).ports
        func portName(_ i: Int) -> String { i < ports.count ? ports[i].name : "port \(i)" }

        // Load balancing first, as the data plane does.
        if q.proto == 6 || q.proto == 17 {
            // The one-port VIP first, then the all-ports one (as the data plane looks).
            let vi = s.vip(address: dst, proto: q.proto, port: q.dport)
            if vi >= 0, let rec = s.vipRecord(Int(vi)) {
                out["vip"] = Int(vi) + 1
                let fields = rec.hash
                let h = v4 ? LoadBalancer.maglevHash(v4: true, src: src + 12, dst: dst + 12, proto: q.proto, srcPort: q.sport, dstPort: q.dport,
                                                      fields: fields, scratch: scratch)
                           : LoadBalancer.maglevHash(v4: false, src: src, dst: dst, proto: q.proto, srcPort: q.sport, dstPort: q.dport,
                                                     fields: fields, scratch: scratch)
                let e = rec.tableSize > 0 ? s.maglevEntry(Int(vi), Int(h % UInt64(rec.tableSize))) : Maglev.noBackend
                guard e != Maglev.noBackend else {
                    out["verdict"] = "no-backend"
                    return out
                }
                let b = s.backend(Int(vi), Int(e))
                out["verdict"] = "load-balance"
                out["backend"] = Int(b.id)
                out["backend_address"] = b.address.description
                return out
            }
        }
        let group = Forwarder().group(dst, v4: v4, snapshot: s)
        if group == LPMEntry.noRoute {
            out["verdict"] = "no-route"
            return out
        }
        if let r = try longestRoute(q.dst, store: store) { out["route"] = r }
        let (kind, count) = s.nextHopGroup(group)
        switch kind {
        case NextHopKind.local.rawValue:
            out["verdict"] = "local"
            out["port"] = portName(Int(s.member(group, 0).port))
        case NextHopKind.drop.rawValue:
            out["verdict"] = "blackhole"
        default:
            guard count > 0 else { out["verdict"] = "no-route"; return out }
            // The software flow hash (ports that give an RSS hash may pick another ECMP member).
            let hash = v4 ? FlowHash.v4(src: q.src.v4, dst: q.dst.v4, proto: q.proto, srcPort: q.sport, dstPort: q.dport)
                          : FlowHash.v6(src: src, dst: dst, proto: q.proto, srcPort: q.sport, dstPort: q.dport)
            let m = s.member(group, count > 1 ? Int(hash % UInt64(count)) : 0)
            out["verdict"] = "forward"
            out["ecmp_members"] = count
            out["port"] = portName(Int(m.port))
            out["next_hop"] = m.family != 0 ? IPAddress.load(from: m.gateway).unmapped(m.family).description : q.dst.description
            if out["route"] == nil { out["route"] = "connected" }
        }
        return out
    }

    /// The longest stored route holding `a` (connected subnets are not routes).
    static func longestRoute(_ a: IPAddress, store: Store) throws -> String? {
        let bits = a.family == 4 ? 32 : 128
        var keys: [String] = []
        for len in stride(from: bits, through: 0, by: -1) {
            let text: String
            if a.family == 4 {
                let mask: UInt32 = len == 0 ? 0 : ~UInt32(0) << (32 - len)
                text = (try? IPv4Prefix(address: a.v4 & mask, length: UInt8(len)).description) ?? ""
            } else {
                let mask: UInt128 = len == 0 ? 0 : ~UInt128(0) << (128 - len)
                text = (try? IPv6Prefix(address: a.value & mask, length: UInt8(len)).description) ?? ""
            }
            keys.append(text)
        }
        return try store.db.read { db in
            for k in keys where try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM routes WHERE until IS NULL AND key = ?)", arguments: [k]) == true {
                return k
            }
            return nil
        }
    }
}

extension IPAddress {
    /// An address loaded from the 16-byte mapped form, as the family it was stored as.
    func unmapped(_ family: UInt8) -> IPAddress { family == 4 ? IPAddress(v4: UInt32(truncatingIfNeeded: value)) : self }
}
