import Foundation
import KeelAPI
import KeelPacket
import KeelStats
import KeelTables
import Prometheus

/// /metrics: the data plane's counters (from its stats file), the published
/// generation and lcore epochs (from the tables file) and backend health, in
/// Prometheus text format.
///
/// The counters live in shared memory, written by the data plane; a fresh
/// registry per scrape reports them as they are (a data-plane restart resets
/// them, which Prometheus' rate() handles as a counter reset).
enum Metrics {
    static func text(_ deps: APIDependencies, revision: Int64, checked: [(vip: Int, backend: Int)]) -> String {
        let r = PrometheusCollectorRegistry()
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = [], _ v: Double) {
            r.makeGauge(name: name, labels: labels, help: help).set(v)
        }
        func counter(_ name: String, _ help: String, _ labels: [(String, String)] = [], _ v: UInt64) {
            r.makeCounter(name: name, labels: labels, help: help).increment(by: Int64(clamping: v))
        }
        gauge("keel_config_revision", "Newest configuration revision in the store.", [], Double(revision))
        let epochs = Epochs.read(tablesPath: deps.tablesPath, board: deps.board)
        let generation = epochs.published
        for l in epochs.lines {
            gauge("keel_lcore_generation", "Tables generation each data-plane reader line (lcore) is on.", [("line", String(l.line))], Double(l.generation))
            gauge("keel_lcore_lagging", "1 when a reader line is still before the newest generation a second after it was published.",
                  [("line", String(l.line))], l.lagging ? 1 : 0)
        }
        gauge("keel_published_generation", "Newest tables generation published.", [], Double(generation))

        var running = false
        if let path = deps.statsPath, let s = try? StatsFile.open(path: path) {
            let live = DataplaneLiveness(s)
            running = live.running
            if live.heartbeatAgeMs >= 0 {
                gauge("keel_dataplane_heartbeat_age_seconds", "Seconds since the data plane's last heartbeat.", [], Double(live.heartbeatAgeMs) / 1000)
            }
            gauge("keel_dataplane_generation", "Tables generation the data plane's main lcore has accepted.", [], Double(s.generation))
            for i in 0..<s.ports {
                let p = [("port", s.portName(i))]
                gauge("keel_port_up", "Port link state (1 up).", p, s.portUp(i) ? 1 : 0)
                counter("keel_port_rx_packets_total", "Packets received.", p, s.total(Counter.rxPackets(i)))
                counter("keel_port_rx_bytes_total", "Bytes received.", p, s.total(Counter.rxBytes(i)))
                counter("keel_port_tx_packets_total", "Packets sent.", p, s.total(Counter.txPackets(i)))
                counter("keel_port_tx_bytes_total", "Bytes sent.", p, s.total(Counter.txBytes(i)))
            }
            for reason in DropReason.allCases where reason != .none {
                counter("keel_drops_total", "Packets dropped, by reason.", [("reason", "\(reason)")], s.total(Counter.drop(Int(reason.rawValue))))
            }
            for (c, name) in Counter.names {
                counter("keel_events_total", "Data-plane events (ARP/ND, ICMP, exception path, neighbors, snapshots).", [("event", name)], s.total(c))
            }
            for v in 0..<s.vips {
                var total: UInt64 = 0
                for (c, _) in LBCounter.vipNames { total |= s.lbTotal(s.vipCounter(v, c)) }
                guard total != 0 else { continue }
                let l = [("vip", String(v + 1))]
                for (c, name) in LBCounter.vipNames {
                    counter("keel_vip_\(name)_total", "Per-VIP load-balancing counter (\(name.replacingOccurrences(of: "_", with: " "))).", l, s.lbTotal(s.vipCounter(v, c)))
                }
                for k in 0..<s.backendsPerVIP {
                    let packets = s.lbTotal(s.backendCounter(v, k, LBCounter.backendPackets))
                    guard packets > 0 else { continue }
                    let id = s.backendID(v, k)
                    let bl = [("vip", String(v + 1)), ("backend", String(id))]
                    counter("keel_backend_packets_total", "Packets sent to a backend.", bl, packets)
                    counter("keel_backend_bytes_total", "Bytes sent to a backend.", bl, s.lbTotal(s.backendCounter(v, k, LBCounter.backendBytes)))
                    counter("keel_backend_new_flows_total", "New flows given to a backend.", bl, s.lbTotal(s.backendCounter(v, k, LBCounter.backendNewFlows)))
                }
            }
        }
        gauge("keel_dataplane_up", "1 while the data plane runs: its heartbeat is fresh and its process exists.", [], running ? 1 : 0)
        let health = deps.board.allHealth
        for (vip, backend) in checked {
            guard let h = health[backend] else { continue }
            gauge("keel_backend_healthy", "Health check verdict (1 up, 0 down).", [("vip", String(vip)), ("backend", String(backend))], h.healthy ? 1 : 0)
        }
        if let a = deps.announcer?.current, a.configured {
            gauge("keel_bgp_announced_prefixes", "VIP addresses announced over BGP (0 while drained or the data plane is down).", [], Double(a.announced.count))
            gauge("keel_bgp_drained", "1 while the appliance is drained for maintenance.", [], a.drained ? 1 : 0)
            for s in a.sessions {
                gauge("keel_bgp_session_established", "1 while the BGP session with a peer is established.", [("peer", s.peer.isEmpty ? s.name : s.peer)], s.established ? 1 : 0)
            }
        }
        return r.emitToString()
    }
}
