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
        let beat = s.heartbeatNs
        return ["pid": Int(s.pid), "generation": s.generation, "running": beat != 0,
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
        return out
    }
}
