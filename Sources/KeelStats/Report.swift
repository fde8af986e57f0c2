import Foundation
import KeelPacket
import KeelStats

/// The stats file as one JSON-ready dictionary (keel-dataplane's exit line,
/// `keel-dataplane stats --json`, and later the admin API's /v1/stats).
public enum StatsReport {
    public static func dictionary(_ s: StatsFile) -> [String: Any] {
        var ports: [[String: Any]] = []
        for i in 0..<s.ports {
            ports.append(["name": s.portName(i), "up": s.portUp(i),
                          "rx_packets": s.total(Counter.rxPackets(i)), "rx_bytes": s.total(Counter.rxBytes(i)),
                          "tx_packets": s.total(Counter.txPackets(i)), "tx_bytes": s.total(Counter.txBytes(i))])
        }
        var drops: [String: UInt64] = [:]
        for r in DropReason.allCases where r != .none {
            let v = s.total(Counter.drop(Int(r.rawValue)))
            if v > 0 { drops["\(r)"] = v }
        }
        var events: [String: UInt64] = [:]
        for (c, name) in Counter.names { events[name] = s.total(c) }
        var lcores: [[String: Any]] = []
        for i in 0..<s.lcores {
            let b = s.block(i)
            lcores.append(["lcore": b[Counter.lcore], "role": (Role(rawValue: b[Counter.role]) ?? .unused).name, "turns": b[Counter.turns]])
        }
        // Load balancing: VIPs (by id = index + 1) that saw traffic, with their backends by id.
        var vips: [[String: Any]] = []
        for v in 0..<s.vips {
            var row: [String: Any] = ["id": v + 1]
            var any = false
            for (c, name) in LBCounter.vipNames {
                let x = s.lbTotal(s.vipCounter(v, c))
                row[name] = x
                if x > 0 { any = true }
            }
            guard any else { continue }
            var backends: [String: [String: UInt64]] = [:]
            for k in 0..<s.backendsPerVIP {
                let packets = s.lbTotal(s.backendCounter(v, k, LBCounter.backendPackets))
                guard packets > 0 else { continue }
                let id = s.backendID(v, k)
                backends["\(id)"] = ["position": UInt64(k), "packets": packets, "bytes": s.lbTotal(s.backendCounter(v, k, LBCounter.backendBytes)),
                                     "new_flows": s.lbTotal(s.backendCounter(v, k, LBCounter.backendNewFlows))]
            }
            row["backends"] = backends
            vips.append(row)
        }
        let beat = s.heartbeatNs
        return ["vips": vips, "pid": Int(s.pid), "generation": s.generation, "running": beat != 0, "flows": s.total(Counter.liveFlows),
                "heartbeat_age_ms": beat == 0 ? -1 : Int((Int64(bitPattern: realtimeNs()) - Int64(bitPattern: beat)) / 1_000_000),
                "ports": ports, "drops": drops, "events": events, "lcores": lcores]
    }

    public static func json(_ s: StatsFile) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: dictionary(s), options: [.sortedKeys])) ?? Data(), as: UTF8.self)
    }

    /// A readable table.
    public static func text(_ s: StatsFile) -> String {
        let d = dictionary(s)
        var out = "generation \(s.generation), \(s.heartbeatNs == 0 ? "stopped" : "running (heartbeat \(d["heartbeat_age_ms"]!) ms ago)")\n"
        out += "port              up     rx packets       rx bytes     tx packets       tx bytes\n"
        for p in d["ports"] as! [[String: Any]] {
            let name = (p["name"] as! String).padding(toLength: 16, withPad: " ", startingAt: 0)
            let up = ((p["up"] as! Bool) ? "yes" : "no").padding(toLength: 4, withPad: " ", startingAt: 0)
            out += "\(name)  \(up)" + String(format: " %13llu  %13llu  %13llu  %13llu\n",
                          p["rx_packets"] as! UInt64, p["rx_bytes"] as! UInt64, p["tx_packets"] as! UInt64, p["tx_bytes"] as! UInt64)
        }
        let drops = d["drops"] as! [String: UInt64]
        if !drops.isEmpty {
            out += "drops:\n"
            for (k, v) in drops.sorted(by: { $0.key < $1.key }) { out += "  \(k.padding(toLength: 28, withPad: " ", startingAt: 0)) \(v)\n" }
        }
        out += "events:\n"
        for (k, v) in (d["events"] as! [String: UInt64]).sorted(by: { $0.key < $1.key }) where v > 0 {
            out += "  \(k.padding(toLength: 28, withPad: " ", startingAt: 0)) \(v)\n"
        }
        let vips = d["vips"] as! [[String: Any]]
        if !vips.isEmpty {
            out += "vips:\n"
            for v in vips {
                out += "  VIP \(v["id"]!): \(v["packets"]!) packets, \(v["new_flows"]!) new flows, connection table \(v["conn_hits"]!) hits / \(v["conn_misses"]!) misses / \(v["conn_evictions"]!) evictions\n"
                for (id, b) in (v["backends"] as! [String: [String: UInt64]]).sorted(by: { $0.key < $1.key }) {
                    out += "    backend \(id): \(b["packets"]!) packets, \(b["new_flows"]!) new flows\n"
                }
            }
        }
        return out
    }
}
