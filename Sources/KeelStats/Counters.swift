/// Where each counter lives in an lcore's block of the stats file (indices of
/// UInt64 words). Stable: keel-control and keelctl read them by these numbers.
public enum Counter {
    /// Block header: role (see `Role`), lcore id, loop turns (a liveness hint).
    public static let role = 0, lcore = 1, turns = 2
    /// Per port p: base + 4p + 0 RX packets, 1 RX bytes, 2 TX packets, 3 TX bytes.
    public static let portBase = 8
    public static func rxPackets(_ p: Int) -> Int { portBase + 4 * p }
    public static func rxBytes(_ p: Int) -> Int { portBase + 4 * p + 1 }
    public static func txPackets(_ p: Int) -> Int { portBase + 4 * p + 2 }
    public static func txBytes(_ p: Int) -> Int { portBase + 4 * p + 3 }
    /// Drops by reason: dropBase + DropReason.rawValue (64 reserved).
    public static let dropBase = 72
    public static func drop(_ reason: Int) -> Int { dropBase + reason }
    // Events (136...).
    public static let echoReplies = 136, icmpErrorsSent = 137, icmpRateLimited = 138
    public static let arpReplies = 139, ndReplies = 140, solicitations = 141
    public static let toKernel = 142, fromKernel = 143, ringFull = 144, neighborMisses = 145
    public static let held = 146, heldReleased = 147, heldExpired = 148, noMbuf = 149
    public static let learned = 150, neighborTableFull = 151, snapshotSwitches = 152
    /// A gauge: flows alive in this lcore's connection table at the end of its
    /// last counting pass (a drained appliance is empty when the sum is 0).
    public static let liveFlows = 153
    /// Packets forwarded on the short path (`FastHops`, or a VIP flow's cached tunnel), a subset of the TX counts.
    public static let fastForwarded = 154
    public static let count = 160

    public static let names: [(Int, String)] = [
        (echoReplies, "echo_replies"), (icmpErrorsSent, "icmp_errors_sent"), (icmpRateLimited, "icmp_rate_limited"),
        (arpReplies, "arp_replies"), (ndReplies, "nd_replies"), (solicitations, "solicitations"),
        (toKernel, "to_kernel"), (fromKernel, "from_kernel"), (ringFull, "ring_full"), (neighborMisses, "neighbor_misses"),
        (held, "held"), (heldReleased, "held_released"), (heldExpired, "held_expired"), (noMbuf, "no_mbuf"),
        (learned, "neighbors_learned"), (neighborTableFull, "neighbor_table_full"), (snapshotSwitches, "snapshot_switches"),
        (fastForwarded, "fast_forwarded"),
    ]
}

/// Load-balancer counters (in each lcore's LB block of the stats file).
public enum LBCounter {
    /// Per VIP.
    public static let packets = 0, bytes = 1, newFlows = 2, connHits = 3, connMisses = 4, connEvictions = 5
    public static let noBackend = 6, tooBig = 7, perVIP = 8
    public static let vipNames: [(Int, String)] = [
        (packets, "packets"), (bytes, "bytes"), (newFlows, "new_flows"), (connHits, "conn_hits"),
        (connMisses, "conn_misses"), (connEvictions, "conn_evictions"), (noBackend, "no_backend"), (tooBig, "too_big"),
    ]
    /// Per backend position of a VIP: packets, bytes, new flows; and the id of
    /// the backend that held the position when this lcore last counted there.
    public static let backendPackets = 0, backendBytes = 1, backendNewFlows = 2, backendID = 3, perBackend = 4
}

public enum Role: UInt64 {
    case unused = 0, io = 1, worker = 2, single = 3, main = 4
    public var name: String {
        switch self {
        case .unused: return "unused"
        case .io: return "io"
        case .worker: return "worker"
        case .single: return "io+worker"
        case .main: return "main"
        }
    }
}
