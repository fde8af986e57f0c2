import Foundation
import XCTest
import KeelAPI
import KeelPacket
import KeelTables
import KeelTestData

/// Load-balancer fixtures through the real keel-dataplane (net_pcap ports,
/// both lcore layouts): VIP traffic comes out of the backend port
/// encapsulated, and the expected outer headers are built here byte by byte
/// (independently of LoadBalancer.encapsulate) around the untouched inner packet.
final class LoadBalancerFixtureTests: XCTestCase {
    typealias B = PacketBuilder
    static let mac0: [UInt8] = [2, 0, 0, 0, 0, 1], mac1: [UInt8] = [2, 0, 0, 0, 0, 2]
    static func bmac(_ last: UInt8) -> [UInt8] { [2, 0, 0, 0, 1, last] }

    static let config = FixtureConfigs.loadBalancing

    static func be16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    static func v4(_ s: String) -> [UInt8] { let a = IPv4Prefix.parseAddress(s)!; return [UInt8(a >> 24), UInt8(a >> 16 & 255), UInt8(a >> 8 & 255), UInt8(a & 255)] }
    static func v6(_ s: String) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 16)
        b.withUnsafeMutableBytes { IPv6Prefix.store(IPv6Prefix.parseAddress(s)!, to: $0.baseAddress!) }
        return b
    }

    /// A client frame to the router's MAC on p0.
    static func client(_ f: [UInt8]) -> [UInt8] { var g = f; g.replaceSubrange(0..<6, with: mac0); return g }

    /// The encapsulated frame Keel must send for inner packet `inner` (IP
    /// onwards): outer IPv4 (DF, TTL 64, TOS copied) or IPv6 (hop limit 64,
    /// flow label = flow hash & 0xFFFFF), then for GUE a UDP header (source
    /// port from the flow hash, IPv4 checksum 0, IPv6 checksum computed) and
    /// a 4-byte GUE header naming the inner protocol.
    static func encapsulated(_ inner: [UInt8], backendMAC: [UInt8], source: String, backend: String, gue: Int? = nil, hash: UInt64) -> [UInt8] {
        let innerV4 = inner[0] >> 4 == 4
        let outerV4 = !backend.contains(":")
        let innerProto: UInt8 = innerV4 ? 4 : 41
        var l4: [UInt8] = []
        if let gue {
            let sport = 0xC000 | Int(hash >> 20) & 0x3FFF
            l4 = be16(sport) + be16(gue) + be16(8 + 4 + inner.count) + [0, 0] + [0, innerProto, 0, 0]
        }
        let tos: UInt8 = innerV4 ? inner[1] : UInt8((Int(inner[0]) << 8 | Int(inner[1])) >> 4 & 0xFF)
        var ip: [UInt8]
        if outerV4 {
            ip = [0x45, tos] + be16(20 + l4.count + inner.count) + [0, 0, 0x40, 0, 64, gue != nil ? 17 : innerProto, 0, 0] + v4(source) + v4(backend)
            let c = ip.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress!, headerLength: 20) }
            ip[10] = UInt8(c >> 8); ip[11] = UInt8(c & 0xFF)
        } else {
            let label = Int(hash & 0xF_FFFF)
            ip = [0x60 | tos >> 4, tos << 4 | UInt8(label >> 16), UInt8(label >> 8 & 0xFF), UInt8(label & 0xFF)]
                + be16(l4.count + inner.count) + [gue != nil ? 17 : innerProto, 64] + v6(source) + v6(backend)
            if gue != nil {
                let seg = l4 + inner
                let c = (ip + seg).withUnsafeBytes {
                    Checksum.finish(Checksum.sum($0.baseAddress! + 40, seg.count, initial: Checksum.pseudoHeader6(addresses: $0.baseAddress! + 8, proto: 17, length: seg.count)))
                }
                let v = c == 0 ? 0xFFFF : Int(c)
                l4[6] = UInt8(v >> 8); l4[7] = UInt8(v & 0xFF)
            }
        }
        return backendMAC + mac1 + (outerV4 ? [8, 0] : [0x86, 0xDD]) + ip + l4 + inner
    }

    /// The flow hash Keel uses (docs/load-balancing.md: the fixed 5-tuple hash, 3-tuple for fragments).
    static func hash(_ f: [UInt8]) -> UInt64 {
        var info = PacketInfo()
        return f.withUnsafeBytes { b -> UInt64 in
            XCTAssertEqual(Parser.parse(b.baseAddress!, length: f.count, into: &info), .none)
            return FlowHash.of(b.baseAddress!, info)
        }
    }

    func run(pipeline: Bool) throws {
        typealias T = LoadBalancerFixtureTests
        var frames: [[UInt8]] = []
        // 1, 2: a TCP flow to VIP 1 (IPIP, two backends): SYN then ACK, both to the same backend.
        let syn = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: 6, srcPort: 40000, dstPort: 80, payload: []))
        let ack = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: 6, srcPort: 40000, dstPort: 80, payload: Array(repeating: 0x41, count: 100)))
        // 3: UDP to VIP 2 (all ports, GUE, three backends).
        let udp = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.20", proto: 17, srcPort: 5000, dstPort: 9999))
        // 4: IPv6 TCP to VIP 3 (IPIP over IPv6).
        let tcp6 = T.client(B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:f::10", proto: 6, srcPort: 40001, dstPort: 443))
        // 5: IPv6 UDP to VIP 4: GUE over IPv4 to an IPv4 backend.
        let udp6in4 = T.client(B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:f::20", proto: 17, srcPort: 40002, dstPort: 53))
        // 6: IPv4 TCP to VIP 5: IPIP over IPv6 (IPv4 in IPv6).
        let tcp4in6 = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.30", proto: 6, srcPort: 40003, dstPort: 80))
        // 7: IPv6 UDP to VIP 7: GUE over IPv6 (UDP checksum computed).
        let udp6gue6 = T.client(B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:f::30", proto: 17, srcPort: 40004, dstPort: 53))
        // 8: not a VIP: routed as usual.
        let plain = T.client(B.ipv4(src: "10.1.0.2", dst: "203.0.113.5", proto: 6, srcPort: 40005, dstPort: 80))
        // 9: a VIP address on a port that is not a VIP: no route for it -> ICMP net unreachable.
        let otherPort = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: 6, srcPort: 40006, dstPort: 81))
        // 10, 11: the first and a later fragment of one UDP datagram to VIP 2: same backend.
        let frag1 = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.20", proto: 17, srcPort: 5001, dstPort: 9999,
                                    payload: Array(repeating: 0x62, count: 40), fragment: 0x2000))
        var frag2 = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.20", proto: 17, payload: Array(repeating: 0x63, count: 24), fragment: 6))
        _ = frag2.count
        // 12: ICMP "fragmentation needed" from a router on the client's path, about the backend's reply
        //     VIP:80 -> 10.1.0.2:40000 of flow 1: it must reach the flow's backend.
        let quotedIP = Array(B.ipv4(src: "192.0.2.10", dst: "10.1.0.2", proto: 6, srcPort: 80, dstPort: 40000, payload: [])[14..<(14 + 28)])
        var icmpBody: [UInt8] = [3, 4, 0, 0, 0, 0] + T.be16(1300) + quotedIP
        let ic = icmpBody.withUnsafeBytes { Checksum.finish(Checksum.sum($0.baseAddress!, $0.count)) }
        icmpBody[2] = UInt8(ic >> 8); icmpBody[3] = UInt8(ic & 0xFF)
        var icmpIP: [UInt8] = [0x45, 0] + T.be16(20 + icmpBody.count) + [0, 1, 0, 0, 64, 1, 0, 0] + T.v4("10.1.0.77") + T.v4("192.0.2.10")
        let hc = icmpIP.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress!, headerLength: 20) }
        icmpIP[10] = UInt8(hc >> 8); icmpIP[11] = UInt8(hc & 0xFF)
        let icmpQuoting = T.mac0 + B.macA + [8, 0] + icmpIP + icmpBody
        // 13: too big for the tunnel with DF: ICMP fragmentation needed with MTU 1400 - 20 to the client.
        let bigDF = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: 6, srcPort: 40007, dstPort: 80,
                                    payload: Array(repeating: 0x64, count: 1400 - 40), df: true))
        // 14: the same without DF: dropped (Keel does not fragment).
        let bigNoDF = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: 6, srcPort: 40008, dstPort: 80,
                                      payload: Array(repeating: 0x64, count: 1400 - 40)))
        // 15: IPv6 too big for the tunnel: packet too big with MTU 1400 - 40.
        let big6 = T.client(B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:f::10", proto: 6, srcPort: 40009, dstPort: 443,
                                   payload: Array(repeating: 0x65, count: 1400 - 60)))
        // 16: VIP 6's only backend is drained: no new flows.
        let drained = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.40", proto: 6, srcPort: 40010, dstPort: 80))
        // 17: a second datagram of flow 3 (GUE), 18: FIN+ACK of flow 1 (IPIP): connection-table hits
        //     with their tunnels cached, so they take the short path (`ShortPath.tunnel`); same bytes as the full path's.
        let udp2 = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.20", proto: 17, srcPort: 5000, dstPort: 9999, payload: Array(repeating: 0x66, count: 30)))
        var fin = ack
        fin[47] = 0x11 // FIN+ACK for SYN; the TCP checksum follows (RFC 1624)
        let tc = UInt32(fin[50]) << 8 | UInt32(fin[51])
        let x = (~tc & 0xFFFF) &+ (~UInt32(0x5002) & 0xFFFF) &+ 0x5011
        let folded = (x & 0xFFFF) &+ (x >> 16)
        let nc = ~((folded & 0xFFFF) &+ (folded >> 16)) & 0xFFFF
        fin[50] = UInt8(nc >> 8); fin[51] = UInt8(nc & 0xFF)
        // 19-58: 40 more datagrams of flow 3. Those past the first burst of 32 find VIP 2 in the
        //     lcore's VIP cache (filled by the first burst), and their flow hash is computed there,
        //     with the destination's part from the cache: it must equal FlowHash.v4 (the GUE
        //     source port shows it, and so does the table hit).
        let udp3 = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.20", proto: 17, srcPort: 5000, dstPort: 9999, payload: Array(repeating: 0x67, count: 20)))
        frames = [syn, ack, udp, tcp6, udp6in4, tcp4in6, udp6gue6, plain, otherPort, frag1, frag2, icmpQuoting, bigDF, bigNoDF, big6, drained, udp2, fin]
            + Array(repeating: udp3, count: 40)
        FuzzCorpus.checkSeeds(frames)
        // Later fragments carry no ports; the 3-tuple hash of both fragments is the same.
        frag2 = frames[10]

        let r = try DataplaneRun.run(T.config, inputs: [frames, []], seconds: 2.5, pipeline: pipeline)
        XCTAssertEqual(r.status, 0, r.log)
        var out = r.outputs[1]
        func take(_ name: String, _ test: ([UInt8]) -> Bool) -> [UInt8]? {
            guard let k = out.firstIndex(where: test) else { XCTFail("\(name): expected frame not sent (pipeline: \(pipeline))"); return nil }
            return out.remove(at: k)
        }
        func inner(_ f: [UInt8]) -> [UInt8] { Array(f[14...]) }
        // One of the VIP's backends, exactly; returns which.
        func oneOf(_ name: String, _ f: [UInt8], _ backends: [(String, UInt8)], gue: Int? = nil, source: String = "10.2.0.1", hash: UInt64? = nil) -> String? {
            var got: String?
            _ = take(name) { o in
                for (a, m) in backends where o == T.encapsulated(inner(f), backendMAC: T.bmac(m), source: source, backend: a, gue: gue, hash: hash ?? T.hash(f)) {
                    got = a; return true
                }
                return false
            }
            return got
        }
        let vip1 = [("10.2.0.11", UInt8(11)), ("10.2.0.12", UInt8(12))]
        let b1 = oneOf("VIP 1 SYN (IPIP)", syn, vip1)
        let b2 = oneOf("VIP 1 ACK (IPIP)", ack, vip1)
        XCTAssertNotNil(b1)
        XCTAssertEqual(b1, b2, "a flow keeps its backend")
        let b3 = oneOf("VIP 2 UDP (GUE)", udp, [("10.2.0.13", 13), ("10.2.0.17", 17), ("10.2.0.18", 18)], gue: 6080)
        XCTAssertNotNil(b3)
        XCTAssertEqual(oneOf("VIP 2 UDP again (GUE, short path)", udp2, [("10.2.0.13", 13), ("10.2.0.17", 17), ("10.2.0.18", 18)], gue: 6080, hash: T.hash(udp)), b3)
        XCTAssertEqual(oneOf("VIP 1 FIN (IPIP, short path)", fin, vip1), b1)
        for k in 0..<40 {
            XCTAssertEqual(oneOf("VIP 2 UDP datagram \(k) of 40 (GUE, short path)", udp3, [("10.2.0.13", 13), ("10.2.0.17", 17), ("10.2.0.18", 18)],
                                 gue: 6080, hash: T.hash(udp)), b3)
        }
        XCTAssertNotNil(oneOf("VIP 3 IPv6 (IPIP6)", tcp6, [("2001:db8:2::11", 0x11)], source: "2001:db8:2::1"))
        XCTAssertNotNil(oneOf("VIP 4 IPv6 in GUE/IPv4", udp6in4, [("10.2.0.14", 14)], gue: 6080))
        XCTAssertNotNil(oneOf("VIP 5 IPv4 in IPv6", tcp4in6, [("2001:db8:2::16", 0x16)], source: "2001:db8:2::1"))
        XCTAssertNotNil(oneOf("VIP 7 GUE over IPv6", udp6gue6, [("2001:db8:2::11", 0x11)], gue: 6081, source: "2001:db8:2::1"))
        _ = take("plain routed") { $0 == DataplaneFixtureTests.routed(plain, dst: [2, 0, 0, 0, 0, 0xfe], src: T.mac1) }
        let vip2 = [("10.2.0.13", UInt8(13)), ("10.2.0.17", UInt8(17)), ("10.2.0.18", UInt8(18))]
        let f1 = oneOf("first fragment", frag1, vip2, gue: 6080)
        let f2 = oneOf("later fragment", frag2, vip2, gue: 6080, hash: T.hash(frag1))
        XCTAssertNotNil(f1)
        XCTAssertEqual(f1, f2, "all fragments of a datagram go to one backend")
        // The ICMP error follows flow 1 (hash of the flow as the client sends it).
        let bq = oneOf("ICMP quoting a VIP flow", icmpQuoting, vip1, hash: T.hash(syn))
        XCTAssertEqual(bq, b1, "the ICMP error reaches the flow's backend")
        XCTAssertTrue(out.isEmpty, "unexpected frames on p1: \(out.map { Array($0.prefix(48)) })")
        // Back to the client on p0: net unreachable (port 81 is no VIP), fragmentation needed (MTU 1380), packet too big (MTU 1360).
        var back = r.outputs[0]
        for (name, test) in [("unreachable", DataplaneFixtureTests.icmp4(type: 3, code: 0, from: [10, 1, 0, 1], id: 40006)),
                             ("fragmentation needed", DataplaneFixtureTests.icmp4(type: 3, code: 4, from: [10, 1, 0, 1], id: 40007, mtu: 1380)),
                             ("packet too big", DataplaneFixtureTests.icmp6(type: 2, code: 0, from: "2001:db8:1::1", id: 40009, mtu: 1360))] {
            if let k = back.firstIndex(where: test) { back.remove(at: k) } else { XCTFail("\(name) not sent to the client (pipeline: \(pipeline))") }
        }
        XCTAssertTrue(back.isEmpty, "unexpected frames on p0: \(back.map { Array($0.prefix(48)) })")
        XCTAssertEqual(r.drops("noBackend"), 1)
        XCTAssertEqual(r.drops("tooBig"), 3) // DF (answered), no DF (dropped), IPv6 (answered)
        XCTAssertEqual(r.drops("noRoute"), 1)
        // Per-VIP counters: VIP 1 sent SYN, ACK, FIN and the ICMP error (one new flow; ACK, FIN and ICMP hit the table),
        // and refused the two oversize packets (their flows were recorded before the MTU check: misses).
        let vips = (r.stats["vips"] as? [[String: Any]]) ?? []
        let v1 = vips.first { ($0["id"] as? NSNumber)?.intValue == 1 }
        XCTAssertEqual((v1?["packets"] as? NSNumber)?.intValue, 4, "\(vips)")
        XCTAssertEqual((v1?["bytes"] as? NSNumber)?.intValue, 40 + 140 + 140 + 56, "inner IP bytes: SYN, ACK, FIN, the ICMP error: \(vips)")
        XCTAssertEqual((v1?["new_flows"] as? NSNumber)?.intValue, 1)
        XCTAssertEqual((v1?["conn_misses"] as? NSNumber)?.intValue, 3, "SYN and the two oversize packets")
        XCTAssertEqual((v1?["conn_hits"] as? NSNumber)?.intValue, 3, "ACK, FIN and the ICMP error")
        let v2 = vips.first { ($0["id"] as? NSNumber)?.intValue == 2 }
        XCTAssertEqual((v2?["packets"] as? NSNumber)?.intValue, 44, "42 datagrams of flow 3, two fragments: \(vips)")
        XCTAssertEqual((v2?["conn_hits"] as? NSNumber)?.intValue, 41, "all datagrams but the first (fragments skip the table)")
        XCTAssertEqual((v2?["new_flows"] as? NSNumber)?.intValue, 1, "flow 3 only: every later datagram hashed alike")
        // ACK, FIN and the 41 later datagrams: hits whose tunnel the packet before them cached. (The one plain packet is its group's first.)
        XCTAssertEqual(r.event("fast_forwarded"), 43, "VIP hits take the tunnel short path (pipeline: \(pipeline))")
        XCTAssertEqual((v1?["too_big"] as? NSNumber)?.intValue, 2)
    }

    func testVIPTrafficRunToCompletion() throws { try run(pipeline: false) }
    func testVIPTrafficPipeline() throws { try run(pipeline: true) }

    /// The lcore's VIP cache (filled by the first burst, read by the scan
    /// after it) tells a VIP's port and protocol from the same address's
    /// other ports and protocols: in the second burst, the TCP flow to VIP 1's
    /// port 80 still goes to its backend, and TCP to port 81 and UDP to port
    /// 80 of the same address are still no VIP's (no route: ICMP unreachable),
    /// whichever of them the cache saw last.
    func testVIPCacheKeysByPortAndProtocol() throws {
        typealias T = LoadBalancerFixtureTests
        let syn = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: 6, srcPort: 41000, dstPort: 80, payload: []))
        let ack = T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: 6, srcPort: 41000, dstPort: 80, payload: Array(repeating: 0x41, count: 10)))
        func other(_ proto: UInt8, _ sport: UInt16, _ dport: UInt16) -> [UInt8] {
            T.client(B.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: proto, srcPort: sport, dstPort: dport, payload: []))
        }
        let plain = T.client(B.ipv4(src: "10.1.0.2", dst: "203.0.113.5", proto: 6, srcPort: 41100, dstPort: 80))
        // Burst 1 (32 frames): the VIP flow, then port 81 and UDP, then routed filler. Burst 2: the same kinds again.
        let first = [syn, other(6, 41001, 81), other(17, 41002, 80)] + Array(repeating: plain, count: 29)
        let second = [ack, other(6, 41003, 81), other(17, 41004, 80)]
        let r = try DataplaneRun.run(T.config, inputs: [first + second, []], seconds: 2, pipeline: false)
        XCTAssertEqual(r.status, 0, r.log)
        var out = r.outputs[1]
        let vip1 = [("10.2.0.11", UInt8(11)), ("10.2.0.12", UInt8(12))]
        func backend(_ f: [UInt8]) -> String? {
            for (a, m) in vip1 {
                if let k = out.firstIndex(of: T.encapsulated(Array(f[14...]), backendMAC: T.bmac(m), source: "10.2.0.1", backend: a, gue: nil, hash: T.hash(f))) {
                    out.remove(at: k); return a
                }
            }
            XCTFail("not sent to a backend of VIP 1: \(f.prefix(40))"); return nil
        }
        let b = backend(syn)
        XCTAssertNotNil(b)
        XCTAssertEqual(backend(ack), b, "the second burst's VIP packet, through the cache, to the flow's backend")
        let routed = DataplaneFixtureTests.routed(plain, dst: [2, 0, 0, 0, 0, 0xfe], src: T.mac1)
        XCTAssertEqual(out.filter { $0 == routed }.count, 29)
        XCTAssertTrue(out.allSatisfy { $0 == routed }, "unexpected frames on p1: \(out.filter { $0 != routed }.map { Array($0.prefix(48)) })")
        var back = r.outputs[0]
        for id in [41001, 41002, 41003, 41004] {
            if let k = back.firstIndex(where: DataplaneFixtureTests.icmp4(type: 3, code: 0, from: [10, 1, 0, 1], id: id)) { back.remove(at: k) }
            else { XCTFail("no ICMP unreachable for the frame from port \(id)") }
        }
        XCTAssertTrue(back.isEmpty, "unexpected frames on p0: \(back.map { Array($0.prefix(48)) })")
    }
}

/// Fleet consistency: two data-plane processes started from the same
/// configuration (each with its own tables file) send each of 100,000 random
/// flows to the same backend, and that backend is the one an independent
/// Maglev implementation (KeelTestData.ReferenceMaglev) picks.
final class MaglevAcrossProcessesTests: XCTestCase {
    func testTwoDataPlanesPickTheSameBackends() throws {
        typealias T = LoadBalancerFixtureTests
        let backends = (1...10).map { Backend(id: 100 + $0, address: "10.2.0.\(10 + $0)") }
        var config = Configuration(
            ports: [Port(name: "p0", mac: "02:00:00:00:00:01", addresses: ["10.1.0.1/16"]),
                    Port(name: "p1", mac: "02:00:00:00:00:02", addresses: ["10.2.0.1/24"])],
            neighbors: [Neighbor(address: "10.1.0.2", mac: "02:00:00:00:00:0a", port: "p0")]
                + (1...10).map { Neighbor(address: "10.2.0.\(10 + $0)", mac: "02:00:00:00:01:\(String(format: "%02x", $0))", port: "p1") },
            vips: [])
        config.vips = [VIP(id: 1, address: "192.0.2.10", protocol: "udp", tableSize: 4099, backends: backends)]
        var rng = SplitMix64(seed: 7)
        let flows = 100_000
        var frames: [[UInt8]] = []
        frames.reserveCapacity(flows)
        for _ in 0..<flows {
            let r = rng.next()
            frames.append(T.client(PacketBuilder.ipv4(src: "10.1.\(r >> 8 & 0xFF).\(r & 0xFF | 1)", dst: "192.0.2.10", proto: 17,
                                                      srcPort: UInt16(1024 + (r >> 16) % 60000), dstPort: UInt16(1 + (r >> 40) % 65535),
                                                      payload: [])))
        }
        let a = try DataplaneRun.run(config, inputs: [frames, []], seconds: 4)
        let b = try DataplaneRun.run(config, inputs: [frames, []], seconds: 4) // pipeline mode would drop at the ring: net_pcap delivers faster than a worker sharing its core
        XCTAssertEqual(a.status, 0, a.log)
        XCTAssertEqual(b.status, 0, b.log)
        // One frame out per flow, in order (one routing lcore each); the backend is the outer destination.
        let pa = a.outputs[1].map { Array($0[30..<34]) }, pb = b.outputs[1].map { Array($0[30..<34]) }
        XCTAssertEqual(pa.count, flows, "\(a.stats["drops"] ?? "") \(a.stats["events"] ?? "")")
        XCTAssertEqual(pb.count, flows, "\(b.stats["drops"] ?? "") \(b.stats["events"] ?? "")")
        XCTAssertTrue(pa == pb, "the two processes disagree on \(zip(pa, pb).filter { $0 != $1 }.count) flows")
        // And the choice is Maglev's: table[hash mod M] of the reference implementation (ids sorted as in the snapshot).
        let table = ReferenceMaglev.table(ids: backends.map { UInt64($0.id) }, tableSize: 4099)
        var wrong = 0, perBackend = [Int](repeating: 0, count: 10)
        for (i, f) in frames.enumerated() where i < pa.count {
            let k = table[Int(T.hash(f) % 4099)]
            perBackend[k] += 1
            if pa[i] != [10, 2, 0, UInt8(11 + k)] { wrong += 1 }
        }
        XCTAssertEqual(wrong, 0, "flows not on the reference Maglev backend")
        for n in perBackend { XCTAssertEqual(Double(n), Double(flows) / 10, accuracy: Double(flows) / 10 * 0.1) }
    }
}
