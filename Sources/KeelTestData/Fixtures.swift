import KeelAPI

/// The configurations of the packet fixtures (DataplaneFixtureTests,
/// LoadBalancerFixtureTests), shared with the packet fuzz target so that the
/// fixtures' frames, which seed its corpus, mean the same there.
public enum FixtureConfigs {
    public static let routing = Configuration(
        ports: [Port(name: "p0", mac: "02:00:00:00:00:01", addresses: ["10.1.0.1/24", "2001:db8:1::1/64"]),
                Port(name: "p1", mac: "02:00:00:00:00:02", addresses: ["10.2.0.1/24", "2001:db8:2::1/64"], mtu: 1400)],
        routes: [Route(prefix: "203.0.113.0/24", nextHops: [NextHop(gateway: "10.2.0.254")]),
                 Route(prefix: "198.51.100.0/24", nextHops: [NextHop(gateway: "10.2.0.2"), NextHop(gateway: "10.2.0.3")]),
                 Route(prefix: "100.64.0.0/16", nextHops: [NextHop(gateway: "10.2.0.99")]),
                 Route(prefix: "192.0.2.0/25", blackhole: true),
                 Route(prefix: "2001:db8:ff::/48", nextHops: [NextHop(gateway: "2001:db8:2::fe")]),
                 Route(prefix: "2001:db8:dead::/48", blackhole: true)],
        neighbors: [Neighbor(address: "10.2.0.254", mac: "02:00:00:00:00:fe", port: "p1"),
                    Neighbor(address: "10.2.0.2", mac: "02:00:00:00:00:22", port: "p1"),
                    Neighbor(address: "10.2.0.3", mac: "02:00:00:00:00:33", port: "p1"),
                    Neighbor(address: "2001:db8:2::fe", mac: "02:00:00:00:00:fe", port: "p1"),
                    Neighbor(address: "10.1.0.2", mac: "02:00:00:00:00:0a", port: "p0"),
                    Neighbor(address: "2001:db8:1::2", mac: "02:00:00:00:00:0a", port: "p0")],
        vips: [])

    public static let loadBalancing: Configuration = {
        var c = Configuration(
            ports: [Port(name: "p0", mac: "02:00:00:00:00:01", addresses: ["10.1.0.1/24", "2001:db8:1::1/64"]),
                    Port(name: "p1", mac: "02:00:00:00:00:02", addresses: ["10.2.0.1/24", "2001:db8:2::1/64"], mtu: 1400)],
            routes: [Route(prefix: "203.0.113.0/24", nextHops: [NextHop(gateway: "10.2.0.254")])],
            neighbors: [Neighbor(address: "10.2.0.254", mac: "02:00:00:00:00:fe", port: "p1"),
                        Neighbor(address: "10.1.0.2", mac: "02:00:00:00:00:0a", port: "p0"),
                        Neighbor(address: "2001:db8:1::2", mac: "02:00:00:00:00:0a", port: "p0")]
                + [11, 12, 13, 14, 17, 18].map { Neighbor(address: "10.2.0.\($0)", mac: "02:00:00:00:01:\(String(format: "%02x", $0))", port: "p1") }
                + [Neighbor(address: "2001:db8:2::11", mac: "02:00:00:00:01:11", port: "p1"),
                   Neighbor(address: "2001:db8:2::16", mac: "02:00:00:00:01:16", port: "p1")],
            vips: [])
        c.vips = [
            VIP(id: 1, address: "192.0.2.10", protocol: "tcp", port: 80, tableSize: 4099,
                backends: [Backend(id: 1, address: "10.2.0.11"), Backend(id: 2, address: "10.2.0.12")]),
            VIP(id: 2, address: "192.0.2.20", protocol: "udp", encap: Encap(type: "gue", port: 6080), tableSize: 4099,
                backends: [Backend(id: 3, address: "10.2.0.13"), Backend(id: 7, address: "10.2.0.17"), Backend(id: 8, address: "10.2.0.18")]),
            VIP(id: 3, address: "2001:db8:f::10", protocol: "tcp", port: 443, tableSize: 4099,
                backends: [Backend(id: 4, address: "2001:db8:2::11")]),
            VIP(id: 4, address: "2001:db8:f::20", protocol: "udp", port: 53, encap: Encap(type: "gue", port: 6080), tableSize: 4099,
                backends: [Backend(id: 5, address: "10.2.0.14")]),
            VIP(id: 5, address: "192.0.2.30", protocol: "tcp", port: 80, tableSize: 4099,
                backends: [Backend(id: 6, address: "2001:db8:2::16")]),
            VIP(id: 6, address: "192.0.2.40", protocol: "tcp", port: 80, tableSize: 4099,
                backends: [Backend(id: 9, address: "10.2.0.11", state: "drain")]),
            VIP(id: 7, address: "2001:db8:f::30", protocol: "udp", port: 53, encap: Encap(type: "gue", port: 6081), tableSize: 4099,
                backends: [Backend(id: 10, address: "2001:db8:2::11")]),
        ]
        return c
    }()

    /// Both at once, for the fuzz target: the routing fixtures' ports,
    /// routes and neighbors plus the load-balancing fixtures' neighbors and VIPs.
    public static let fuzz: Configuration = {
        var c = routing
        for n in loadBalancing.neighbors where !c.neighbors.contains(where: { $0.address == n.address }) { c.neighbors.append(n) }
        c.vips = loadBalancing.vips
        return c
    }()
}
