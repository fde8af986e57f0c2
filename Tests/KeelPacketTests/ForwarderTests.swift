import XCTest
import KeelAPI
import KeelCompiler
import KeelForward
import KeelPacket
import KeelTables
import KeelTestData

/// Frame in -> verdict, and for forwarded frames the exact bytes out.
final class ForwarderTests: XCTestCase {
    static let config = Configuration(
        ports: [Port(name: "p0", mac: "02:00:00:00:01:00", addresses: ["10.1.0.1/24", "2001:db8:1::1/64"]),
                Port(name: "p1", mac: "02:00:00:00:02:00", addresses: ["10.2.0.1/24", "2001:db8:2::1/64"], mtu: 1500)],
        routes: [Route(prefix: "0.0.0.0/0", nextHops: [NextHop(gateway: "10.2.0.254")]),
                 Route(prefix: "198.51.100.0/24", nextHops: [NextHop(gateway: "10.2.0.2"), NextHop(gateway: "10.2.0.3")]),
                 Route(prefix: "192.0.2.0/24", blackhole: true),
                 Route(prefix: "2001:db8:ff::/48", nextHops: [NextHop(gateway: "2001:db8:2::2")])])

    var region: MemoryRegion!
    var snapshot: Snapshot!
    var neighbors = NeighborTable(capacity: 64)
    let macs: [String: [UInt8]] = ["10.2.0.254": [0x0e, 0, 0, 0, 0, 0xfe], "10.2.0.2": [0x0e, 0, 0, 0, 0, 0x02],
                                   "10.2.0.3": [0x0e, 0, 0, 0, 0, 0x03], "2001:db8:2::2": [0x0e, 0, 0, 0, 0x66, 0x02]]

    override func setUpWithError() throws {
        let limits = SnapshotLimits.small
        let compiler = Compiler(limits: limits)
        let changes = try compiler.replace(with: ForwarderTests.config)
        let layout = SnapshotLayout(limits)
        region = try MemoryRegion(size: layout.length)
        let b = try SnapshotBuilder(formatting: region.base, layout: layout)
        for c in changes { try b.apply(c) }
        b.seal(generation: 1)
        snapshot = Snapshot(verified: region.base, layout: layout)
        for (a, m) in macs { neighbors.set(port: 1, address: IPAddress(a)!, mac: m) }
    }

    func run(_ frame: [UInt8]) -> (Verdict, [UInt8]) {
        var f = frame
        var info = PacketInfo()
        var nh = [UInt8](repeating: 0, count: 16)
        let v = f.withUnsafeMutableBytes { b -> Verdict in
            let r = Parser.parse(b.baseAddress!, length: b.count, into: &info)
            guard r == .none else { return .drop(r) }
            let h = FlowHash.of(b.baseAddress!, info)
            return nh.withUnsafeMutableBytes {
                Forwarder().route(b.baseAddress!, length: b.count, info, hash: h, snapshot: snapshot, neighbors: neighbors, nextHop: $0.baseAddress!)
            }
        }
        return (v, f)
    }

    /// `route` with the lcore's caches: the gateways' `cache`, an on-link `slot` in `onLink`.
    func routeCached(_ frame: [UInt8], cache: NeighborCache? = nil, onLink: NeighborCache? = nil, slot: Int = -1) -> (Verdict, [UInt8]) {
        var f = frame
        var info = PacketInfo()
        var nh = [UInt8](repeating: 0, count: 16)
        let v = f.withUnsafeMutableBytes { b -> Verdict in
            _ = Parser.parse(b.baseAddress!, length: b.count, into: &info)
            return nh.withUnsafeMutableBytes {
                Forwarder().route(b.baseAddress!, length: b.count, info, hash: Forwarder.lazyHash, snapshot: snapshot,
                                  neighbors: neighbors, nextHop: $0.baseAddress!, cache: cache, onLink: onLink, onLinkSlot: slot)
            }
        }
        return (v, f)
    }

    /// The per-lcore MAC cache gives the table's answer, and follows a MAC
    /// change (the table's version moves the tag) and a forgotten neighbor.
    func testNeighborCacheFollowsTheTable() {
        var cache = NeighborCache(groups: SnapshotLimits.small.nextHopGroups, ways: SnapshotLimits.small.ecmpWays)
        func route(_ frame: [UInt8]) -> (Verdict, [UInt8]) {
            cache.tag = (neighbors.version << 24) | 1
            return routeCached(frame, cache: cache)
        }
        let frame = PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5")
        for _ in 0..<2 {
            let (v, out) = route(frame)
            XCTAssertEqual(v, .forward(port: 1))
            XCTAssertEqual(Array(out[0..<6]), macs["10.2.0.254"]!)
        }
        let v0 = neighbors.version
        neighbors.set(port: 1, address: IPAddress("10.2.0.254")!, mac: [0x0e, 9, 9, 9, 9, 9])
        XCTAssertGreaterThan(neighbors.version, v0)
        XCTAssertEqual(Array(route(frame).1[0..<6]), [0x0e, 9, 9, 9, 9, 9], "the new MAC, not the cached one")
        var key = [UInt8](repeating: 0, count: 16)
        key.withUnsafeMutableBytes { IPAddress("10.2.0.254")!.store(to: $0.baseAddress!) }
        let i = key.withUnsafeBytes { neighbors.find(port: 1, address: $0.baseAddress!) }
        neighbors.clearMAC(i)
        XCTAssertEqual(route(frame).0, .resolve(port: 1), "a forgotten neighbor is asked for again")
        // ECMP members are cached apart: both MACs of 198.51.100.0/24 appear over many flows.
        var seen = Set<[UInt8]>()
        for port in 1000..<1064 {
            let (v, out) = route(PacketBuilder.ipv4(src: "10.1.0.2", dst: "198.51.100.7", srcPort: UInt16(port)))
            XCTAssertEqual(v, .forward(port: 1))
            seen.insert(Array(out[0..<6]))
        }
        XCTAssertEqual(seen, [macs["10.2.0.2"]!, macs["10.2.0.3"]!])
    }

    /// An on-link destination keyed by a slot (the load balancer's backends)
    /// gets its MAC from the slot cache, which follows a MAC change; another
    /// slot is kept apart; without a slot the table is asked every time.
    func testOnLinkSlotCacheFollowsTheTable() {
        let onLink = NeighborCache(groups: 4, ways: 1)
        var onLinkTagged = onLink
        func route(_ dst: String, slot: Int) -> (Verdict, [UInt8]) {
            onLinkTagged.tag = (neighbors.version << 24) | 1
            return routeCached(PacketBuilder.ipv4(src: "10.1.0.2", dst: dst), onLink: onLinkTagged, slot: slot)
        }
        neighbors.set(port: 1, address: IPAddress("10.2.0.7")!, mac: [0x0e, 7, 7, 7, 7, 7])
        neighbors.set(port: 1, address: IPAddress("10.2.0.8")!, mac: [0x0e, 8, 8, 8, 8, 8])
        for _ in 0..<2 {
            let (v, out) = route("10.2.0.7", slot: 1)
            XCTAssertEqual(v, .forward(port: 1))
            XCTAssertEqual(Array(out[0..<6]), [0x0e, 7, 7, 7, 7, 7])
        }
        XCTAssertEqual(onLink.get(1, 0), 0, "an old tag does not answer")
        XCTAssertEqual(Array(route("10.2.0.8", slot: 2).1[0..<6]), [0x0e, 8, 8, 8, 8, 8], "another slot, another MAC")
        XCTAssertEqual(Array(route("10.2.0.7", slot: 1).1[0..<6]), [0x0e, 7, 7, 7, 7, 7])
        neighbors.set(port: 1, address: IPAddress("10.2.0.7")!, mac: [0x0e, 9, 9, 9, 9, 9])
        XCTAssertEqual(Array(route("10.2.0.7", slot: 1).1[0..<6]), [0x0e, 9, 9, 9, 9, 9], "the new MAC, not the cached one")
        XCTAssertEqual(Array(route("10.2.0.8", slot: -1).1[0..<6]), [0x0e, 8, 8, 8, 8, 8])
    }

    func testForwardIPv4ExactBytes() {
        let (v, out) = run(PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", proto: 6, ttl: 64))
        XCTAssertEqual(v, .forward(port: 1))
        let expected = PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", proto: 6, ttl: 63)
        XCTAssertEqual(Array(out[0..<6]), macs["10.2.0.254"]!)
        XCTAssertEqual(Array(out[6..<12]), [0x02, 0, 0, 0, 0x02, 0])
        XCTAssertEqual(Array(out[12...]), Array(expected[12...]), "TTL 63 and the checksum a full recompute gives")
    }

    func testForwardIPv6() {
        let (v, out) = run(PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", proto: 17, hopLimit: 2))
        XCTAssertEqual(v, .forward(port: 1))
        XCTAssertEqual(out[14 + 7], 1)
        XCTAssertEqual(Array(out[0..<6]), macs["2001:db8:2::2"]!)
    }

    func testTTLExpiredAndNoRouteAndBlackhole() {
        XCTAssertEqual(run(PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", ttl: 1)).0, .icmpError(type: 11, code: 0, mtu: 0))
        XCTAssertEqual(run(PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", hopLimit: 1)).0, .icmpError(type: 3, code: 0, mtu: 0))
        XCTAssertEqual(run(PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db9::1")).0, .icmpError(type: 1, code: 0, mtu: 0))
        XCTAssertEqual(run(PacketBuilder.ipv4(src: "10.1.0.2", dst: "192.0.2.7")).0, .drop(.blackhole))
    }

    func testLocalAddresses() {
        XCTAssertEqual(run(PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.1.0.1", proto: 1)).0, .local(port: 0, echoRequest: true))
        XCTAssertEqual(run(PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.2.0.1", proto: 6, dstPort: 22)).0, .local(port: 1, echoRequest: false))
        XCTAssertEqual(run(PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:1::1", proto: 58)).0, .local(port: 0, echoRequest: true))
        // Local delivery ignores TTL 1 (the packet is for us).
        XCTAssertEqual(run(PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.1.0.1", proto: 1, ttl: 1)).0, .local(port: 0, echoRequest: true))
    }

    func testConnectedNeighborUnknownThenKnown() {
        XCTAssertEqual(run(PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.2.0.77")).0, .resolve(port: 1))
        neighbors.set(port: 1, address: IPAddress("10.2.0.77")!, mac: [0x0e, 1, 2, 3, 4, 5])
        let (v, out) = run(PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.2.0.77"))
        XCTAssertEqual(v, .forward(port: 1))
        XCTAssertEqual(Array(out[0..<6]), [0x0e, 1, 2, 3, 4, 5])
    }

    func testMTU() {
        let big = [UInt8](repeating: 7, count: 1600)
        XCTAssertEqual(run(PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", payload: big, df: true)).0, .icmpError(type: 3, code: 4, mtu: 1500))
        XCTAssertEqual(run(PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", payload: big)).0, .drop(.tooBig))
        XCTAssertEqual(run(PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", payload: big)).0, .icmpError(type: 2, code: 0, mtu: 1500))
        // Exactly the MTU passes.
        let fits = [UInt8](repeating: 7, count: 1500 - 20 - 8)
        XCTAssertEqual(run(PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", payload: fits, df: true)).0, .forward(port: 1))
    }

    func testECMPSpreadsFlowsAndKeepsEachOnOnePath() {
        var counts: [UInt8: Int] = [:]
        for sport in 0..<2000 {
            let f = PacketBuilder.ipv4(src: "10.1.0.2", dst: "198.51.100.9", proto: 6, srcPort: UInt16(10000 + sport))
            let (v, out) = run(f)
            XCTAssertEqual(v, .forward(port: 1))
            counts[out[5], default: 0] += 1
            XCTAssertEqual(run(f).1[5], out[5], "a flow stays on its path")
        }
        XCTAssertEqual(Set(counts.keys), [0x02, 0x03])
        XCTAssertEqual(Double(counts[0x02]!) / 2000, 0.5, accuracy: 0.05)
    }
}
