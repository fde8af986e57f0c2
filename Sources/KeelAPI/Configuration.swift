/// The configuration as operators write it (YAML/JSON) and as the admin API,
/// keelctl and the tests exchange it. Validation is in Validation.swift;
/// KeelCompiler turns a valid configuration into snapshot changes.
public struct Configuration: Codable, Equatable, Sendable {
    public var ports: [Port]
    public var routes: [Route]
    public var neighbors: [Neighbor]
    public var vips: [VIP]
    /// BGP announcement of the VIPs (nil: none).
    public var bgp: BGP?

    public init(ports: [Port] = [], routes: [Route] = [], neighbors: [Neighbor] = [], vips: [VIP] = [], bgp: BGP? = nil) {
        self.ports = ports
        self.routes = routes
        self.neighbors = neighbors
        self.vips = vips
        self.bgp = bgp
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case ports, routes, neighbors, vips, bgp }

    public init(from d: Decoder) throws {
        try rejectUnknownKeys(d, CodingKeys.self)
        let c = try d.container(keyedBy: CodingKeys.self)
        ports = try c.decodeIfPresent([Port].self, forKey: .ports) ?? []
        routes = try c.decodeIfPresent([Route].self, forKey: .routes) ?? []
        neighbors = try c.decodeIfPresent([Neighbor].self, forKey: .neighbors) ?? []
        vips = try c.decodeIfPresent([VIP].self, forKey: .vips) ?? []
        bgp = try c.decodeIfPresent(BGP.self, forKey: .bgp)
    }
}

/// A data-plane port: its name (which the data plane maps to a DPDK port),
/// MAC, interface addresses ("10.1.0.1/24", "2001:db8:1::1/64") and MTU.
public struct Port: Codable, Equatable, Sendable {
    public var name: String
    public var mac: String
    public var addresses: [String]
    public var mtu: Int

    public init(name: String, mac: String, addresses: [String] = [], mtu: Int = 1500) {
        self.name = name
        self.mac = mac
        self.addresses = addresses
        self.mtu = mtu
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case name, mac, addresses, mtu }

    public init(from d: Decoder) throws {
        try rejectUnknownKeys(d, CodingKeys.self)
        let c = try d.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        mac = try c.decode(String.self, forKey: .mac)
        addresses = try c.decodeIfPresent([String].self, forKey: .addresses) ?? []
        mtu = try c.decodeIfPresent(Int.self, forKey: .mtu) ?? 1500
    }
}

/// prefix -> next hops; several next hops are an ECMP group. `blackhole`
/// routes discard.
public struct Route: Codable, Equatable, Sendable {
    public var prefix: String
    public var nextHops: [NextHop]
    public var blackhole: Bool

    public init(prefix: String, nextHops: [NextHop] = [], blackhole: Bool = false) {
        self.prefix = prefix
        self.nextHops = nextHops
        self.blackhole = blackhole
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case prefix, blackhole
        case nextHops = "next_hops"
    }

    public init(from d: Decoder) throws {
        try rejectUnknownKeys(d, CodingKeys.self)
        let c = try d.container(keyedBy: CodingKeys.self)
        prefix = try c.decode(String.self, forKey: .prefix)
        nextHops = try c.decodeIfPresent([NextHop].self, forKey: .nextHops) ?? []
        blackhole = try c.decodeIfPresent(Bool.self, forKey: .blackhole) ?? false
    }
}

/// A gateway address, a port, or both (a gateway is resolved to the port whose
/// subnet holds it; a port alone means the destination is on that link).
public struct NextHop: Codable, Equatable, Hashable, Sendable {
    public var gateway: String?
    public var port: String?

    public init(gateway: String? = nil, port: String? = nil) {
        self.gateway = gateway
        self.port = port
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case gateway, port }

    public init(from d: Decoder) throws {
        try rejectUnknownKeys(d, CodingKeys.self)
        let c = try d.container(keyedBy: CodingKeys.self)
        gateway = try c.decodeIfPresent(String.self, forKey: .gateway)
        port = try c.decodeIfPresent(String.self, forKey: .port)
    }
}

/// A static neighbor (ARP/ND entry that never expires).
public struct Neighbor: Codable, Equatable, Sendable {
    public var address: String
    public var mac: String
    public var port: String

    public init(address: String, mac: String, port: String) {
        self.address = address
        self.mac = mac
        self.port = port
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case address, mac, port }

    public init(from d: Decoder) throws {
        try rejectUnknownKeys(d, CodingKeys.self)
        let c = try d.container(keyedBy: CodingKeys.self)
        address = try c.decode(String.self, forKey: .address)
        mac = try c.decode(String.self, forKey: .mac)
        port = try c.decode(String.self, forKey: .port)
    }
}

public struct VIP: Codable, Equatable, Sendable {
    /// Stable id, 1 ... the tables' VIP limit.
    public var id: Int
    public var address: String
    /// "tcp" or "udp".
    public var `protocol`: String
    /// One port, or nil / 0 for all ports.
    public var port: Int?
    public var encap: Encap
    /// "5-tuple" (default), "3-tuple" (addresses and protocol) or "source" (client address only).
    public var hash: String
    /// Maglev table size, a prime (default 65537).
    public var tableSize: Int
    /// Outer source address of encapsulated packets (default: the appliance's).
    public var sourceAddress: String?
    /// How keel-control checks the backends (none: always healthy).
    public var healthCheck: HealthCheck?
    public var backends: [Backend]

    public init(id: Int, address: String, protocol: String = "tcp", port: Int? = nil, encap: Encap = Encap(),
                hash: String = "5-tuple", tableSize: Int = 65537, sourceAddress: String? = nil,
                healthCheck: HealthCheck? = nil, backends: [Backend] = []) {
        self.id = id
        self.address = address
        self.protocol = `protocol`
        self.port = port
        self.encap = encap
        self.hash = hash
        self.tableSize = tableSize
        self.sourceAddress = sourceAddress
        self.healthCheck = healthCheck
        self.backends = backends
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case id, address, `protocol`, port, encap, hash, backends
        case tableSize = "table_size"
        case sourceAddress = "source_address"
        case healthCheck = "health_check"
    }

    public init(from d: Decoder) throws {
        try rejectUnknownKeys(d, CodingKeys.self)
        let c = try d.container(keyedBy: CodingKeys.self)
        id = try c.decode(Int.self, forKey: .id)
        address = try c.decode(String.self, forKey: .address)
        `protocol` = try c.decodeIfPresent(String.self, forKey: .protocol) ?? "tcp"
        port = try c.decodeIfPresent(Int.self, forKey: .port)
        encap = try c.decodeIfPresent(Encap.self, forKey: .encap) ?? Encap()
        hash = try c.decodeIfPresent(String.self, forKey: .hash) ?? "5-tuple"
        tableSize = try c.decodeIfPresent(Int.self, forKey: .tableSize) ?? 65537
        sourceAddress = try c.decodeIfPresent(String.self, forKey: .sourceAddress)
        healthCheck = try c.decodeIfPresent(HealthCheck.self, forKey: .healthCheck)
        backends = try c.decodeIfPresent([Backend].self, forKey: .backends) ?? []
    }
}

public struct Encap: Codable, Equatable, Sendable {
    /// "ipip" or "gue".
    public var type: String
    /// GUE's UDP destination port.
    public var port: Int?

    public init(type: String = "ipip", port: Int? = nil) {
        self.type = type
        self.port = port
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case type, port }

    public init(from d: Decoder) throws {
        try rejectUnknownKeys(d, CodingKeys.self)
        let c = try d.container(keyedBy: CodingKeys.self)
        type = try c.decodeIfPresent(String.self, forKey: .type) ?? "ipip"
        port = try c.decodeIfPresent(Int.self, forKey: .port)
    }
}

public struct Backend: Codable, Equatable, Sendable {
    /// Stable id, unique across all VIPs; a backend's Maglev permutation follows from it.
    public var id: Int
    public var address: String
    public var weight: Int
    /// "up", "drain" (existing flows stay, no new ones) or "down".
    public var state: String

    public init(id: Int, address: String, weight: Int = 1, state: String = "up") {
        self.id = id
        self.address = address
        self.weight = weight
        self.state = state
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case id, address, weight, state }

    public init(from d: Decoder) throws {
        try rejectUnknownKeys(d, CodingKeys.self)
        let c = try d.container(keyedBy: CodingKeys.self)
        id = try c.decode(Int.self, forKey: .id)
        address = try c.decode(String.self, forKey: .address)
        weight = try c.decodeIfPresent(Int.self, forKey: .weight) ?? 1
        state = try c.decodeIfPresent(String.self, forKey: .state) ?? "up"
    }
}


/// A VIP's backend check, run by keel-control from the appliance's kernel
/// side. A backend goes down after `fall` failures in a row and comes back
/// after `rise` successes in a row.
public struct HealthCheck: Codable, Equatable, Sendable {
    /// "tcp" (connect) or "http" (GET `path`, expect `expect_status`).
    public var type: String
    /// The backend port to check (default: the VIP's port; required for all-port VIPs).
    public var port: Int?
    public var path: String
    public var expectStatus: Int
    /// Seconds between checks, and how long one check may take.
    public var interval: Double
    public var timeout: Double
    public var rise: Int
    public var fall: Int

    public init(type: String = "tcp", port: Int? = nil, path: String = "/", expectStatus: Int = 200,
                interval: Double = 2, timeout: Double = 1, rise: Int = 2, fall: Int = 3) {
        self.type = type
        self.port = port
        self.path = path
        self.expectStatus = expectStatus
        self.interval = interval
        self.timeout = timeout
        self.rise = rise
        self.fall = fall
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case type, port, path, interval, timeout, rise, fall
        case expectStatus = "expect_status"
    }

    public init(from d: Decoder) throws {
        try rejectUnknownKeys(d, CodingKeys.self)
        let c = try d.container(keyedBy: CodingKeys.self)
        type = try c.decodeIfPresent(String.self, forKey: .type) ?? "tcp"
        port = try c.decodeIfPresent(Int.self, forKey: .port)
        path = try c.decodeIfPresent(String.self, forKey: .path) ?? "/"
        expectStatus = try c.decodeIfPresent(Int.self, forKey: .expectStatus) ?? 200
        interval = try c.decodeIfPresent(Double.self, forKey: .interval) ?? 2
        timeout = try c.decodeIfPresent(Double.self, forKey: .timeout) ?? 1
        rise = try c.decodeIfPresent(Int.self, forKey: .rise) ?? 2
        fall = try c.decodeIfPresent(Int.self, forKey: .fall) ?? 3
    }
}


/// A key of any name (to see every key of an object).
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

/// A misspelt field must not silently become a default: every object refuses
/// keys it does not know, naming them and the ones it takes.
func rejectUnknownKeys<K: CodingKey & CaseIterable>(_ d: Decoder, _ keys: K.Type) throws {
    if d.userInfo[KeyCheck.checked] != nil { return } // the whole body's keys were checked in one pass
    let c = try d.container(keyedBy: AnyKey.self)
    for key in c.allKeys where K(stringValue: key.stringValue) == nil {
        throw DecodingError.dataCorruptedError(
            forKey: key, in: c,
            debugDescription: "unknown field (allowed: \(K.allCases.map(\.stringValue).joined(separator: ", ")))")
    }
}
