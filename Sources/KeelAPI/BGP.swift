/// Scale-out (docs/scale-out.md): the appliance announces its VIPs over BGP
/// through BIRD, to the upstream routers named here, while it can serve them.
public struct BGP: Codable, Equatable, Sendable {
    /// The appliance's AS number (1 ... 4294967295).
    public var localAS: Int
    /// BGP router id (an IPv4 address); nil: the first IPv4 address of the ports.
    public var routerID: String?
    /// Seconds without a keepalive before a session is down (3 ... 65535; keepalives every third of it).
    public var holdTime: Int
    /// Maintenance: announce nothing (set by `keelctl drain`); flows already
    /// here keep their backends until they end.
    public var drain: Bool
    public var peers: [BGPPeer]

    public init(localAS: Int, routerID: String? = nil, holdTime: Int = 90, drain: Bool = false, peers: [BGPPeer] = []) {
        self.localAS = localAS
        self.routerID = routerID
        self.holdTime = holdTime
        self.drain = drain
        self.peers = peers
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case localAS = "local_as", routerID = "router_id", holdTime = "hold_time", drain, peers
    }

    public init(from d: Decoder) throws {
        try rejectUnknownKeys(d, CodingKeys.self)
        let c = try d.container(keyedBy: CodingKeys.self)
        localAS = try c.decode(Int.self, forKey: .localAS)
        routerID = try c.decodeIfPresent(String.self, forKey: .routerID)
        holdTime = try c.decodeIfPresent(Int.self, forKey: .holdTime) ?? 90
        drain = try c.decodeIfPresent(Bool.self, forKey: .drain) ?? false
        peers = try c.decodeIfPresent([BGPPeer].self, forKey: .peers) ?? []
    }
}

/// An upstream router the appliance peers with (eBGP or iBGP, directly connected).
public struct BGPPeer: Codable, Equatable, Sendable {
    /// The peer's address on one of the ports' subnets.
    public var address: String
    public var remoteAS: Int
    /// TCP MD5 password (RFC 2385), if the peer wants one.
    public var password: String?
    /// Bidirectional forwarding detection with the peer (fast failure detection).
    public var bfd: Bool

    public init(address: String, remoteAS: Int, password: String? = nil, bfd: Bool = false) {
        self.address = address
        self.remoteAS = remoteAS
        self.password = password
        self.bfd = bfd
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case address, remoteAS = "remote_as", password, bfd }

    public init(from d: Decoder) throws {
        try rejectUnknownKeys(d, CodingKeys.self)
        let c = try d.container(keyedBy: CodingKeys.self)
        address = try c.decode(String.self, forKey: .address)
        remoteAS = try c.decode(Int.self, forKey: .remoteAS)
        password = try c.decodeIfPresent(String.self, forKey: .password)
        bfd = try c.decodeIfPresent(Bool.self, forKey: .bfd) ?? false
    }
}
