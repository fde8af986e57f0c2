import KeelStats
import KeelTables

/// Whether the data plane is running, read from its stats file. One rule for
/// the status, /metrics and the announcer: a heartbeat younger than 2 s from
/// a process that still exists. The pid check notices a killed data plane at
/// once, where the heartbeat alone would take its 2 s to go stale (by then a
/// supervisor may have restarted it). keel-control and keel-dataplane must
/// share a pid namespace (they do on the appliance and in the labs).
public struct DataplaneLiveness: Sendable, Equatable {
    public var pid: Int32
    /// Milliseconds since the last heartbeat; -1 when it never beat.
    public var heartbeatAgeMs: Int
    public var processAlive: Bool
    public var running: Bool { heartbeatAgeMs >= 0 && heartbeatAgeMs < DataplaneLiveness.maxHeartbeatAgeMs && processAlive }

    public static let maxHeartbeatAgeMs = 2000

    public init(_ s: StatsFile) {
        pid = s.pid
        let beat = s.heartbeatNs
        heartbeatAgeMs = beat == 0 ? -1 : max(0, Int((Int64(bitPattern: realtimeNs()) - Int64(bitPattern: beat)) / 1_000_000))
        processAlive = TablesFile.processAlive(pid)
    }

    /// nil when there is no stats file (no data plane ever started).
    public static func read(statsPath: String?) -> DataplaneLiveness? {
        guard let path = statsPath, let s = try? StatsFile.open(path: path) else { return nil }
        return DataplaneLiveness(s)
    }
}
