import KeelAPI
import KeelTables

/// The BGP section of a configuration: checked with the rest (a bad section
/// refuses the whole change), compiled into nothing in the tables — keel-control's
/// announcer turns it into BIRD's configuration.
public enum BGPCheck {
    public static func issues(_ bgp: BGP?, ports: [Port]) -> [ConfigIssue] {
        guard let bgp else { return [] }
        var issues: [ConfigIssue] = []
        if !(1...4_294_967_295).contains(bgp.localAS) { issues.append(ConfigIssue("bgp.local_as", "\(bgp.localAS) is not an AS number (1 ... 4294967295)")) }
        if let id = bgp.routerID, IPAddress(id)?.family != 4 {
            issues.append(ConfigIssue("bgp.router_id", "\"\(id)\" is not an IPv4 address"))
        }
        if bgp.routerID == nil && routerID(bgp, ports: ports) == nil {
            issues.append(ConfigIssue("bgp.router_id", "required: no port has an IPv4 address to take it from"))
        }
        if !(3...65535).contains(bgp.holdTime) { issues.append(ConfigIssue("bgp.hold_time", "\(bgp.holdTime) is outside 3...65535 seconds")) }
        // Peers: directly connected, on one of the ports' subnets (BGP reaches BIRD through that port's TAP).
        let subnets = ports.flatMap { p in p.addresses.compactMap { Parse.interface($0).map { (p.name, $0.0, Parse.subnet($0.0, $0.1)) } } }
        var seen: [IPAddress: Int] = [:]
        for (i, peer) in bgp.peers.enumerated() {
            let path = "bgp.peers[\(i)]"
            guard let a = IPAddress(peer.address) else { issues.append(ConfigIssue("\(path).address", "\"\(peer.address)\" is not an address")); continue }
            if let j = seen[a] { issues.append(ConfigIssue("\(path).address", "\(peer.address) is also bgp.peers[\(j)]")) }
            seen[a] = i
            if !subnets.contains(where: { $0.2.contains(a) && $0.1 != a }) {
                issues.append(ConfigIssue("\(path).address", "\(peer.address) is on no port's subnet (peers are directly connected)"))
            }
            if !(1...4_294_967_295).contains(peer.remoteAS) { issues.append(ConfigIssue("\(path).remote_as", "\(peer.remoteAS) is not an AS number")) }
            // The password goes into BIRD's configuration between quotes: printable ASCII, no quote or backslash.
            if let pw = peer.password, pw.isEmpty || pw.utf8.count > 80 || !pw.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) {
                issues.append(ConfigIssue("\(path).password", "1 to 80 printable ASCII characters without \" or \\"))
            }
        }
        return issues
    }

    /// The router id: the configured one, else the first IPv4 address of the ports.
    public static func routerID(_ bgp: BGP, ports: [Port]) -> String? { bgp.routerID ?? firstIPv4Address(ports) }

    /// The first IPv4 address of the ports (BIRD's router id when none is configured).
    public static func firstIPv4Address(_ ports: [Port]) -> String? {
        for p in ports { for a in p.addresses { if let (ip, _) = Parse.interface(a), ip.family == 4 { return ip.description } } }
        return nil
    }
}
