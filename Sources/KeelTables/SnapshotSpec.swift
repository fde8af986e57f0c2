/// What goes into a snapshot, in the compiler's terms: already validated,
/// with every object under a stable index. The compiler (KeelCompiler) turns a
/// configuration into these; `SnapshotBuilder` writes them into a slot.

/// An IPv4 or IPv6 address. IPv4 is kept as its 32-bit value in `value`.
public struct IPAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var family: UInt8 // 4 or 6
    public var value: UInt128

    public init(v4: UInt32) { family = 4; value = UInt128(v4) }
    public init(v6: UInt128) { family = 6; value = v6 }

    public init?(_ text: some StringProtocol) {
        if text.utf8.contains(0x3A) {
            guard let v = IPv6Prefix.parseAddress(text) else { return nil }
            self.init(v6: v)
        } else {
            guard let v = IPv4Prefix.parseAddress(text) else { return nil }
            self.init(v4: v)
        }
    }

    public var v4: UInt32 { UInt32(truncatingIfNeeded: value) }

    /// 16 bytes in network order; IPv4 as ::ffff:a.b.c.d.
    public var mapped: UInt128 { family == 4 ? UInt128(0xFFFF) << 32 | value : value }

    public func store(to p: UnsafeMutableRawPointer) { IPv6Prefix.store(mapped, to: p) }

    public static func load(from p: UnsafeRawPointer) -> IPAddress {
        let hi = UInt64(bigEndian: p.loadUnaligned(as: UInt64.self))
        let lo = UInt64(bigEndian: (p + 8).loadUnaligned(as: UInt64.self))
        let v = UInt128(hi) << 64 | UInt128(lo)
        return v >> 32 == 0xFFFF ? IPAddress(v4: UInt32(truncatingIfNeeded: v)) : IPAddress(v6: v)
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool { (a.family, a.value) < (b.family, b.value) }

    public var description: String { family == 4 ? IPv4Prefix.format(v4) : IPv6Prefix.format(value) }
}

public enum NextHopKind: UInt8, Sendable {
    /// Forward to one of the members (ECMP by flow hash when several).
    case forward = 1
    /// Addressed to the appliance itself (member 0 names the port).
    case local = 2
    /// Discard (blackhole route).
    case drop = 3
    /// On-link: the destination itself is the neighbor (member 0 names the port).
    case connected = 4
}

public struct NextHopMember: Hashable, Sendable {
    public var port: UInt16
    public var gateway: IPAddress?
    public init(port: UInt16, gateway: IPAddress?) {
        self.port = port
        self.gateway = gateway
    }
}

public struct NextHopGroupSpec: Hashable, Sendable {
    public var kind: NextHopKind
    public var members: [NextHopMember]
    public init(kind: NextHopKind, members: [NextHopMember]) {
        self.kind = kind
        self.members = members
    }
}

public struct PortSpec: Hashable, Sendable {
    public var mac: [UInt8] // 6 bytes
    public var mtu: UInt16
    public var addresses: [(IPAddress, UInt8)]

    public init(mac: [UInt8], mtu: UInt16, addresses: [(IPAddress, UInt8)]) {
        self.mac = mac
        self.mtu = mtu
        self.addresses = addresses
    }

    public static func == (a: PortSpec, b: PortSpec) -> Bool {
        a.mac == b.mac && a.mtu == b.mtu && a.addresses.map(\.0) == b.addresses.map(\.0) && a.addresses.map(\.1) == b.addresses.map(\.1)
    }

    public func hash(into h: inout Hasher) {
        h.combine(mac)
        h.combine(mtu)
        for (a, l) in addresses { h.combine(a); h.combine(l) }
    }
}

public struct NeighborSpec: Hashable, Sendable, Comparable {
    public var port: UInt16
    public var address: IPAddress
    public var mac: [UInt8]
    public init(port: UInt16, address: IPAddress, mac: [UInt8]) {
        self.port = port
        self.address = address
        self.mac = mac
    }
    public static func < (a: NeighborSpec, b: NeighborSpec) -> Bool { (a.port, a.address) < (b.port, b.address) }
}

public enum BackendState: UInt8, Sendable {
    case up = 0
    /// Existing flows stay, new flows go elsewhere.
    case drain = 1
    /// Out: existing flows move too.
    case down = 2
}

public struct BackendSpec: Hashable, Sendable {
    public var id: UInt32
    public var address: IPAddress
    public var weight: UInt32
    public var state: BackendState
    public init(id: UInt32, address: IPAddress, weight: UInt32, state: BackendState) {
        self.id = id
        self.address = address
        self.weight = weight
        self.state = state
    }
}

public enum EncapKind: UInt8, Sendable { case ipip = 1, gue = 2 }
public enum FlowHashFields: UInt8, Sendable { case fiveTuple = 5, threeTuple = 3, source = 1 }

public struct VIPSpec: Hashable, Sendable {
    public var address: IPAddress
    public var proto: UInt8 // 6 TCP, 17 UDP
    public var port: UInt16 // 0 = all ports
    public var encap: EncapKind
    public var guePort: UInt16
    public var hash: FlowHashFields
    public var tableSize: UInt32
    /// Outer source address of encapsulated packets (nil: the appliance's default).
    public var source: IPAddress?
    public var backends: [BackendSpec]

    public init(address: IPAddress, proto: UInt8, port: UInt16, encap: EncapKind, guePort: UInt16 = 0,
                hash: FlowHashFields = .fiveTuple, tableSize: UInt32 = 65537, source: IPAddress? = nil, backends: [BackendSpec]) {
        self.address = address
        self.proto = proto
        self.port = port
        self.encap = encap
        self.guePort = guePort
        self.hash = hash
        self.tableSize = tableSize
        self.source = source
        self.backends = backends
    }
}

/// One step of change to a snapshot. A batch of them is one publish.
public enum SnapshotChange: Sendable {
    /// All ports at once (index = position).
    case ports([PortSpec])
    case nextHopGroup(id: UInt32, NextHopGroupSpec?)
    case route4(IPv4Prefix, nextHopGroup: UInt32?)
    case route6(IPv6Prefix, nextHopGroup: UInt32?)
    /// All static neighbors at once.
    case neighbors([NeighborSpec])
    /// VIP by index (0 ..< maxVIPs); nil removes it.
    case vip(index: UInt32, VIPSpec?)
}

/// Sizes of everything in a snapshot; fixed per tables file.
public struct SnapshotLimits: Hashable, Sendable, Codable {
    public var ipv4Groups: Int
    public var ipv6Groups: Int
    public var nextHopGroups: Int
    public var ecmpWays: Int
    public var ports: Int
    public var neighbors: Int
    public var vips: Int
    public var backendsPerVIP: Int
    public var maglevMaxSize: Int

    public init(ipv4Groups: Int = 4096, ipv6Groups: Int = 65536, nextHopGroups: Int = 4096, ecmpWays: Int = 16,
                ports: Int = 16, neighbors: Int = 1024, vips: Int = 64, backendsPerVIP: Int = 1024, maglevMaxSize: Int = 65537) {
        self.ipv4Groups = ipv4Groups
        self.ipv6Groups = ipv6Groups
        self.nextHopGroups = nextHopGroups
        self.ecmpWays = ecmpWays
        self.ports = ports
        self.neighbors = neighbors
        self.vips = vips
        self.backendsPerVIP = backendsPerVIP
        self.maglevMaxSize = maglevMaxSize
    }

    /// Small tables for tests (the two LPM roots still take 64 MiB each).
    public static let small = SnapshotLimits(ipv4Groups: 256, ipv6Groups: 512, nextHopGroups: 256, ecmpWays: 8,
                                             ports: 8, neighbors: 64, vips: 16, backendsPerVIP: 64, maglevMaxSize: 4099)
}
