import Foundation
import XCTest
import KeelAPI
import KeelPacket
import KeelTables
import KeelTestData

/// Table-driven packet fixtures through the real keel-dataplane: DPDK
/// net_pcap ports, a TAP per port (in a private network namespace), the
/// real lcore loop and slow path. One case per rule of docs/dataplane.md:
/// input frame → what comes out of which port (exact bytes, or the fields
/// of a generated ICMP/ARP/ND message), or the drop reason, or the TAP.
final class DataplaneFixtureTests: XCTestCase {
    typealias B = PacketBuilder
    static let mac0: [UInt8] = [2, 0, 0, 0, 0, 1], mac1: [UInt8] = [2, 0, 0, 0, 0, 2]
    static let gw: [UInt8] = [2, 0, 0, 0, 0, 0xfe], ecmp2: [UInt8] = [2, 0, 0, 0, 0, 0x22], ecmp3: [UInt8] = [2, 0, 0, 0, 0, 0x33]

    static let routing = FixtureConfigs.routing

    struct Case {
        let name: String
        let port: Int
        let frame: [UInt8]
        /// Frames that must come out: (port, test).
        var out: [(Int, ([UInt8]) -> Bool)] = []
        var drops: [String: Int] = [:]
        var toKernel = 0
        var events: [String: Int] = [:]
    }

    /// The frame as Keel must forward it: new MACs, TTL / hop limit one less (checksum by full recomputation).
    static func routed(_ f: [UInt8], dst: [UInt8], src: [UInt8], l3: Int = 14) -> [UInt8] {
        var g = f
        g.replaceSubrange(0..<6, with: dst)
        g.replaceSubrange(6..<12, with: src)
        if g[l3] >> 4 == 4 {
            g[l3 + 8] -= 1
            g[l3 + 10] = 0; g[l3 + 11] = 0
            let ihl = Int(g[l3] & 0xF) * 4
            let c = g.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress! + l3, headerLength: ihl) }
            g[l3 + 10] = UInt8(c >> 8); g[l3 + 11] = UInt8(c & 0xFF)
        } else {
            g[l3 + 7] -= 1
        }
        return g
    }

    static func be16(_ f: [UInt8], _ o: Int) -> Int { Int(f[o]) << 8 | Int(f[o + 1]) }

    /// An IPv4 ICMP message from `from` to 10.1.0.2 of this type/code, checksums right, quoting source port `id`.
    static func icmp4(type: UInt8, code: UInt8, from: [UInt8], id: Int, mtu: Int? = nil) -> ([UInt8]) -> Bool {
        { f in
            guard f.count >= 14 + 20 + 8, be16(f, 12) == 0x0800, f[23] == 1, Array(f[26..<30]) == from, Array(f[30..<34]) == [10, 1, 0, 2],
                  f[34] == type, f[35] == code, Array(f[0..<6]) == B.macA, Array(f[6..<12]) == mac0 else { return false }
            let hdrOK = f.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress! + 14, headerLength: 20) } == 0
            let len = be16(f, 16)
            let icmpOK = f.withUnsafeBytes { Checksum.finish(Checksum.sum($0.baseAddress! + 34, len - 20)) } == 0
            if let mtu, be16(f, 40) != mtu { return false }
            // The quoted packet: its IPv4 header then the first 8 bytes of its transport header (source port = id).
            let quoted = type == 0 ? be16(f, 38) : be16(f, 62)
            return hdrOK && icmpOK && quoted == id
        }
    }

    static func icmp6(type: UInt8, code: UInt8, from: String, id: Int, mtu: Int? = nil) -> ([UInt8]) -> Bool {
        let src = IPv6Prefix.parseAddress(from)!
        var srcBytes = [UInt8](repeating: 0, count: 16)
        srcBytes.withUnsafeMutableBytes { IPv6Prefix.store(src, to: $0.baseAddress!) }
        return { f in
            guard f.count >= 14 + 40 + 8, be16(f, 12) == 0x86DD, f[20] == 58, Array(f[22..<38]) == srcBytes,
                  f[54] == type, f[55] == code, Array(f[0..<6]) == B.macA else { return false }
            let len = be16(f, 18)
            let ok = f.withUnsafeBytes {
                Checksum.finish(Checksum.sum($0.baseAddress! + 54, len, initial: Checksum.pseudoHeader6(addresses: $0.baseAddress! + 22, proto: 58, length: len)))
            } == 0
            if let mtu, Int(f[58]) << 24 | Int(f[59]) << 16 | Int(f[60]) << 8 | Int(f[61]) != mtu { return false }
            let quoted = type == 129 ? be16(f, 58) : be16(f, 62 + 40)
            return ok && quoted == id
        }
    }

    static func arpRequest(target: [UInt8], asker: [UInt8], mac: [UInt8]) -> [UInt8] {
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] + mac + [0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1] + mac + asker + [0, 0, 0, 0, 0, 0] + target
    }

    static func cases() -> [Case] {
        var c: [Case] = []
        var id = 1000
        func next() -> UInt16 { id += 1; return UInt16(id) }
        func add(_ name: String, port: Int = 0, _ frame: [UInt8], out: [(Int, ([UInt8]) -> Bool)] = [], drops: [String: Int] = [:],
                 toKernel: Int = 0, events: [String: Int] = [:]) {
            // Frames are addressed to the in-port's MAC (the builder's default destination stands for "someone else").
            var frame = frame
            if Array(frame.prefix(6)) == B.macB { frame.replaceSubrange(0..<6, with: port == 0 ? mac0 : mac1) }
            c.append(Case(name: name, port: port, frame: frame, out: out, drops: drops, toKernel: toKernel, events: events))
        }
        func exact(_ b: [UInt8]) -> ([UInt8]) -> Bool { { $0 == b } }

        // Forwarding.
        var f = B.ipv4(src: "10.1.0.2", dst: "203.0.113.9", srcPort: next())
        add("IPv4 UDP routed to the gateway", f, out: [(1, exact(routed(f, dst: gw, src: mac1)))])
        var other = B.ipv4(src: "10.1.0.2", dst: "203.0.113.9", srcPort: next())
        other.replaceSubrange(0..<6, with: [2, 0, 0, 0, 0, 0x55])
        add("unicast frame for another MAC is not routed", other, drops: ["otherMAC": 1])
        f = B.ipv4(src: "10.1.0.2", dst: "203.0.113.9", proto: 6, srcPort: next())
        add("IPv4 TCP routed", f, out: [(1, exact(routed(f, dst: gw, src: mac1)))])
        f = B.ipv4(src: "10.1.0.2", dst: "203.0.113.9", ttl: 2, srcPort: next())
        add("IPv4 TTL 2 leaves with TTL 1", f, out: [(1, exact(routed(f, dst: gw, src: mac1)))])
        f = B.ipv4(src: "10.2.0.7", dst: "10.1.0.2", srcPort: next())
        add("IPv4 to a connected host, from the other port", port: 1, f, out: [(0, exact(routed(f, dst: B.macA, src: mac0)))])
        f = B.ipv4(src: "10.1.0.2", dst: "203.0.113.9", srcPort: next(), vlan: 42)
        add("802.1Q tagged frame routed, tag kept", f, out: [(1, exact(routed(f, dst: gw, src: mac1, l3: 18)))])
        f = B.ipv4(src: "10.1.0.2", dst: "203.0.113.9", srcPort: next(), fragment: 0x2000)
        add("IPv4 first fragment routed", f, out: [(1, exact(routed(f, dst: gw, src: mac1)))])
        f = B.ipv4(src: "10.1.0.2", dst: "203.0.113.9", srcPort: next(), fragment: 0x0010)
        add("IPv4 later fragment routed", f, out: [(1, exact(routed(f, dst: gw, src: mac1)))])
        for k in 0..<4 {
            f = B.ipv4(src: "10.1.0.2", dst: "198.51.100.\(k + 1)", srcPort: next())
            var info = PacketInfo()
            let h = f.withUnsafeBytes { p -> UInt64 in
                _ = Parser.parse(p.baseAddress!, length: f.count, into: &info)
                return FlowHash.of(p.baseAddress!, info)
            }
            add("IPv4 ECMP flow \(k) on the member its hash picks", f, out: [(1, exact(routed(f, dst: h % 2 == 0 ? ecmp2 : ecmp3, src: mac1)))])
        }
        f = B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", srcPort: next())
        add("IPv6 UDP routed", f, out: [(1, exact(routed(f, dst: gw, src: mac1)))])
        f = B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", srcPort: next(), extensions: [(0, [0, 0, 1, 4, 0, 0, 0, 0])])
        add("IPv6 with a hop-by-hop header routed", f, out: [(1, exact(routed(f, dst: gw, src: mac1)))])
        f = B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", srcPort: next(), extensions: [(44, [0, 0, 0, 1, 0, 0, 0, 7])])
        add("IPv6 first fragment routed", f, out: [(1, exact(routed(f, dst: gw, src: mac1)))])
        f = B.ipv6(src: "2001:db8:2::5", dst: "2001:db8:1::2", proto: 6, srcPort: next())
        add("IPv6 to a connected host, from the other port", port: 1, f, out: [(0, exact(routed(f, dst: B.macA, src: mac0)))])

        // The appliance's own addresses.
        var i = next()
        add("ICMP echo to the in-port's address", B.ipv4(src: "10.1.0.2", dst: "10.1.0.1", proto: 1, srcPort: i),
            out: [(0, icmp4(type: 0, code: 0, from: [10, 1, 0, 1], id: Int(i)))], events: ["echo_replies": 1])
        i = next()
        add("ICMP echo to the other port's address", B.ipv4(src: "10.1.0.2", dst: "10.2.0.1", proto: 1, srcPort: i),
            out: [(0, icmp4(type: 0, code: 0, from: [10, 2, 0, 1], id: Int(i)))], events: ["echo_replies": 1])
        i = next()
        add("ICMPv6 echo to the port's address", B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:1::1", proto: 58, srcPort: i),
            out: [(0, icmp6(type: 129, code: 0, from: "2001:db8:1::1", id: Int(i)))], events: ["echo_replies": 1])
        add("TCP SYN to the router's address goes to the TAP", B.ipv4(src: "10.1.0.2", dst: "10.1.0.1", proto: 6, srcPort: next(), dstPort: 22), toKernel: 1)
        add("UDP to the router's IPv6 address goes to the TAP", B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:1::1", srcPort: next(), dstPort: 179), toKernel: 1)
        add("IPv4 multicast (OSPF) goes to the TAP", B.ipv4(src: "10.1.0.2", dst: "224.0.0.5", proto: 89, srcPort: next()), toKernel: 1)

        // ICMP errors.
        i = next()
        add("TTL 1 → time exceeded", B.ipv4(src: "10.1.0.2", dst: "203.0.113.9", ttl: 1, srcPort: i),
            out: [(0, icmp4(type: 11, code: 0, from: [10, 1, 0, 1], id: Int(i)))], drops: ["ttlExpired": 1])
        i = next()
        add("TTL 0 → time exceeded", B.ipv4(src: "10.1.0.2", dst: "203.0.113.9", ttl: 0, srcPort: i),
            out: [(0, icmp4(type: 11, code: 0, from: [10, 1, 0, 1], id: Int(i)))], drops: ["ttlExpired": 1])
        i = next()
        add("hop limit 1 → ICMPv6 time exceeded", B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", hopLimit: 1, srcPort: i),
            out: [(0, icmp6(type: 3, code: 0, from: "2001:db8:1::1", id: Int(i)))], drops: ["ttlExpired": 1])
        i = next()
        add("no route → destination net unreachable", B.ipv4(src: "10.1.0.2", dst: "8.8.8.8", srcPort: i),
            out: [(0, icmp4(type: 3, code: 0, from: [10, 1, 0, 1], id: Int(i)))], drops: ["noRoute": 1])
        i = next()
        add("IPv6 no route → no route to destination", B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:77::1", srcPort: i),
            out: [(0, icmp6(type: 1, code: 0, from: "2001:db8:1::1", id: Int(i)))], drops: ["noRoute": 1])
        i = next()
        add("DF and larger than the out port's MTU → fragmentation needed with the MTU",
            B.ipv4(src: "10.1.0.2", dst: "203.0.113.9", srcPort: i, payload: Array(repeating: 7, count: 1450), df: true),
            out: [(0, icmp4(type: 3, code: 4, from: [10, 1, 0, 1], id: Int(i), mtu: 1400))], drops: ["tooBig": 1])
        add("no DF and larger than the MTU → dropped (Keel does not fragment)",
            B.ipv4(src: "10.1.0.2", dst: "203.0.113.9", srcPort: next(), payload: Array(repeating: 7, count: 1450)), drops: ["tooBig": 1])
        i = next()
        add("IPv6 larger than the MTU → packet too big",
            B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", srcPort: i, payload: Array(repeating: 7, count: 1400)),
            out: [(0, icmp6(type: 2, code: 0, from: "2001:db8:1::1", id: Int(i), mtu: 1400))], drops: ["tooBig": 1])
        add("blackhole route", B.ipv4(src: "10.1.0.2", dst: "192.0.2.5", srcPort: next()), drops: ["blackhole": 1])
        add("IPv6 blackhole route", B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:dead::5", srcPort: next()), drops: ["blackhole": 1])
        i = next()
        add("unresolved next hop: held, asked for twice, then host unreachable",
            B.ipv4(src: "10.1.0.2", dst: "100.64.3.4", srcPort: i),
            out: [(1, exact(arpRequest(target: [10, 2, 0, 99], asker: [10, 2, 0, 1], mac: mac1))),
                  (1, exact(arpRequest(target: [10, 2, 0, 99], asker: [10, 2, 0, 1], mac: mac1))),
                  (0, icmp4(type: 3, code: 1, from: [10, 1, 0, 1], id: Int(i)))],
            drops: ["neighborUnresolved": 1], events: ["held": 1, "held_expired": 1])

        // ARP and Neighbor Discovery.
        let arpReq = B.ethernet(type: 0x0806, dst: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) + [0, 1, 8, 0, 6, 4, 0, 1] + B.macA + [10, 1, 0, 2] + [0, 0, 0, 0, 0, 0] + [10, 1, 0, 1]
        add("ARP request for the port's address → reply", arpReq,
            out: [(0, exact(B.macA + mac0 + [0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2] + mac0 + [10, 1, 0, 1] + B.macA + [10, 1, 0, 2]))], events: ["arp_replies": 1])
        add("ARP request for someone else → ignored",
            B.ethernet(type: 0x0806, dst: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) + [0, 1, 8, 0, 6, 4, 0, 1] + B.macA + [10, 1, 0, 2] + [0, 0, 0, 0, 0, 0] + [10, 1, 0, 99],
            drops: ["notForUs": 1])
        add("ARP reply to the router → learned, shown to the kernel",
            B.ethernet(type: 0x0806, dst: mac0, src: [2, 0, 0, 0, 0, 0x77]) + [0, 1, 8, 0, 6, 4, 0, 2] + [2, 0, 0, 0, 0, 0x77] + [10, 1, 0, 7] + mac0 + [10, 1, 0, 1],
            toKernel: 1, events: ["neighbors_learned": 1])
        var ns = B.ipv6(src: "2001:db8:1::2", dst: "ff02::1:ff00:1", proto: 58, hopLimit: 255)
        ns = Array(ns[0..<54]) + [135, 0, 0, 0, 0, 0, 0, 0] + [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1] + [1, 1] + B.macA
        ns[18] = 0; ns[19] = 32
        fixICMPv6(&ns)
        add("Neighbor Solicitation for the port's address → advertisement", ns,
            out: [(0, { f in f.count >= 86 && f[54] == 136 && Array(f[62..<78]) == [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
                        && f[58] == 0xE0 && Array(f[80..<86]) == mac0 && Array(f[0..<6]) == B.macA })], events: ["nd_replies": 1])
        var na = B.ipv6(src: "2001:db8:1::9", dst: "2001:db8:1::1", proto: 58, hopLimit: 255)
        na = Array(na[0..<54]) + [136, 0, 0, 0, 0x60, 0, 0, 0] + [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9] + [2, 1, 2, 0, 0, 0, 0, 0x99]
        na[18] = 0; na[19] = 32
        fixICMPv6(&na)
        add("Neighbor Advertisement → learned, shown to the kernel", na, toKernel: 1, events: ["neighbors_learned": 1])

        // Malformed: every check of the parser, counted by reason.
        add("runt frame", Array(B.ipv4(src: "10.1.0.2", dst: "203.0.113.9")[0..<10]), drops: ["truncated": 1])
        add("IPv4 header cut short", Array(B.ipv4(src: "10.1.0.2", dst: "203.0.113.9")[0..<30]), drops: ["truncated": 1])
        add("LLDP (unknown EtherType)", B.ethernet(type: 0x88CC) + Array(repeating: 0, count: 46), drops: ["unknownEtherType": 1])
        func mutate(_ name: String, _ reason: String, _ m: (inout [UInt8]) -> Void, fixChecksum: Bool = true) {
            var g = B.ipv4(src: "10.1.0.2", dst: "203.0.113.9", srcPort: next())
            m(&g)
            if fixChecksum {
                g[24] = 0; g[25] = 0
                let ihl = max(Int(g[14] & 0xF) * 4, 20)
                let cs = g.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress! + 14, headerLength: min(ihl, g.count - 14)) }
                g[24] = UInt8(cs >> 8); g[25] = UInt8(cs & 0xFF)
            }
            add(name, g, drops: [reason: 1])
        }
        mutate("IPv4 version 5", "ipv4BadVersion") { $0[14] = 0x55 }
        mutate("IPv4 IHL 4", "ipv4BadIHL") { $0[14] = 0x44 }
        mutate("IPv4 IHL beyond the packet", "ipv4BadIHL") { $0[14] = 0x4F }
        mutate("IPv4 bad header checksum", "ipv4BadChecksum", { $0[24] ^= 0xFF }, fixChecksum: false)
        mutate("IPv4 total length beyond the frame", "ipv4BadLength") { $0[16] = 0x05; $0[17] = 0xDC }
        mutate("IPv4 total length below the header", "ipv4BadLength") { $0[16] = 0; $0[17] = 12 }
        mutate("IPv4 source 127.0.0.1", "ipv4MartianSource") { $0.replaceSubrange(26..<30, with: [127, 0, 0, 1]) }
        mutate("IPv4 source multicast", "ipv4MartianSource") { $0.replaceSubrange(26..<30, with: [224, 0, 0, 1]) }
        mutate("IPv4 source 0.0.0.0/8", "ipv4MartianSource") { $0.replaceSubrange(26..<30, with: [0, 1, 2, 3]) }
        mutate("IPv4 destination 0.x", "ipv4MartianDestination") { $0.replaceSubrange(30..<34, with: [0, 0, 0, 5]) }
        mutate("IPv4 limited broadcast destination", "ipv4MartianDestination") { $0.replaceSubrange(30..<34, with: [255, 255, 255, 255]) }
        mutate("IPv4 TCP header cut short", "l4Truncated") { g in
            g = Array(g[0..<44]); g[23] = 6; g[16] = 0; g[17] = 30
        }
        var v6 = B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", srcPort: next())
        v6[14] = 0x40
        add("IPv6 version 4", v6, drops: ["ipv6BadVersion": 1])
        v6 = B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", srcPort: next())
        v6[18] = 0x05
        add("IPv6 payload length beyond the frame", v6, drops: ["ipv6BadLength": 1])
        add("IPv6 source ::1", B.ipv6(src: "::1", dst: "2001:db8:ff::9", srcPort: next()), drops: ["ipv6MartianSource": 1])
        add("IPv6 source multicast", B.ipv6(src: "ff02::1", dst: "2001:db8:ff::9", srcPort: next()), drops: ["ipv6MartianSource": 1])
        add("IPv6 destination ::", B.ipv6(src: "2001:db8:1::2", dst: "::", srcPort: next()), drops: ["ipv6MartianDestination": 1])
        add("IPv6 with nine extension headers", B.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", srcPort: next(),
                                                       extensions: Array(repeating: (60, [0, 0, 1, 4, 0, 0, 0, 0]), count: 9)),
            drops: ["ipv6TooManyExtensions": 1])
        return c
    }

    static func fixICMPv6(_ f: inout [UInt8]) {
        f[56] = 0; f[57] = 0
        let len = be16(f, 18)
        let c = f.withUnsafeBytes {
            Checksum.finish(Checksum.sum($0.baseAddress! + 54, len, initial: Checksum.pseudoHeader6(addresses: $0.baseAddress! + 22, proto: 58, length: len)))
        }
        f[56] = UInt8(c >> 8); f[57] = UInt8(c & 0xFF)
    }

    func runFixtures(pipeline: Bool) throws {
        let cases = Self.cases()
        XCTAssertGreaterThanOrEqual(cases.count, 40)
        let inputs = [cases.filter { $0.port == 0 }.map(\.frame), cases.filter { $0.port == 1 }.map(\.frame)]
        FuzzCorpus.checkSeeds(cases.map(\.frame))
        let r = try DataplaneRun.run(Self.routing, inputs: inputs, seconds: 2.5, pipeline: pipeline, taps: true,
                                     extraYAML: "neighbors: {retries: 2, retry_ms: 300}\n")
        XCTAssertEqual(r.status, 0, r.log)
        var outputs = r.outputs
        for c in cases {
            for (port, test) in c.out {
                if let k = outputs[port].firstIndex(where: test) { outputs[port].remove(at: k) } else {
                    XCTFail("\(c.name): expected frame not sent on port \(port) (pipeline: \(pipeline))")
                }
            }
        }
        // What is left came from the kernel behind the TAPs (its own ARP/ND, RSTs, unreachables), nothing else.
        let left = outputs.map(\.count).reduce(0, +)
        XCTAssertEqual(left, r.event("from_kernel"), "unexpected frames: \(outputs.map { $0.map { Array($0.prefix(40)) } })")
        var drops: [String: Int] = [:], events: [String: Int] = [:]
        var toKernel = 0
        for c in cases {
            for (k, v) in c.drops { drops[k, default: 0] += v }
            for (k, v) in c.events { events[k, default: 0] += v }
            toKernel += c.toKernel
        }
        let got = (r.stats["drops"] as? [String: Any] ?? [:]).mapValues { ($0 as? NSNumber)?.intValue ?? 0 }
        XCTAssertEqual(got, drops, "drop counters (pipeline: \(pipeline))")
        for (k, v) in events { XCTAssertEqual(r.event(k), v, "\(k) (pipeline: \(pipeline))") }
        XCTAssertEqual(r.event("to_kernel"), toKernel, "packets to the TAPs (pipeline: \(pipeline))")
        XCTAssertEqual(r.port(0, "rx_packets") + r.port(1, "rx_packets"), cases.count)
    }

    /// The short path (plain IPv4 with a cached rewrite, `FastHops`) against
    /// the full path's rules: 600 frames, mostly plain TCP/UDP to a gateway
    /// route and to the ECMP route, with a case the short path must not take
    /// every few frames (TTL 2 and 1, DF and over the MTU, a bad checksum, IP
    /// options, another MAC, multicast). Every frame must come out exactly
    /// as the rules say, and most plain ones by the short path.
    func testShortPathAgreesWithFullPath() throws {
        var frames: [[UInt8]] = [], expected: [(Int, ([UInt8]) -> Bool)] = []
        var drops: [String: Int] = [:], plain = 0
        var rng = SplitMix64(seed: 7)
        func exact(_ b: [UInt8]) -> ([UInt8]) -> Bool { { $0 == b } }
        func ecmpMAC(_ f: [UInt8]) -> [UInt8] {
            var info = PacketInfo()
            let h = f.withUnsafeBytes { p -> UInt64 in
                _ = Parser.parse(p.baseAddress!, length: f.count, into: &info)
                return FlowHash.of(p.baseAddress!, info)
            }
            return h % 2 == 0 ? Self.ecmp2 : Self.ecmp3
        }
        for i in 0..<600 {
            let port = UInt16(2000 + i), proto: UInt8 = rng.next() % 2 == 0 ? 6 : 17
            let ecmp = rng.next() % 2 == 0
            let dst = ecmp ? "198.51.100.\(1 + rng.next() % 200)" : "203.0.113.\(1 + rng.next() % 200)"
            var f = B.ipv4(src: "10.1.0.\(2 + rng.next() % 200)", dst: dst, proto: proto, srcPort: port)
            f.replaceSubrange(0..<6, with: Self.mac0)
            switch i % 16 {
            case 3:
                f = B.ipv4(src: "10.1.0.2", dst: dst, proto: proto, ttl: 2, srcPort: port)
                f.replaceSubrange(0..<6, with: Self.mac0)
                expected.append((1, exact(Self.routed(f, dst: ecmp ? ecmpMAC(f) : Self.gw, src: Self.mac1))))
                plain += 1
            case 5:
                f = B.ipv4(src: "10.1.0.2", dst: dst, ttl: 1, srcPort: port)
                f.replaceSubrange(0..<6, with: Self.mac0)
                expected.append((0, Self.icmp4(type: 11, code: 0, from: [10, 1, 0, 1], id: Int(port))))
                drops["ttlExpired", default: 0] += 1
            case 7:
                f = B.ipv4(src: "10.1.0.2", dst: dst, srcPort: port, payload: Array(repeating: 7, count: 1450), df: true)
                f.replaceSubrange(0..<6, with: Self.mac0)
                expected.append((0, Self.icmp4(type: 3, code: 4, from: [10, 1, 0, 1], id: Int(port), mtu: 1400)))
                drops["tooBig", default: 0] += 1
            case 9:
                f[24] ^= 0x5A
                drops["ipv4BadChecksum", default: 0] += 1
            case 11:
                f.replaceSubrange(0..<6, with: [2, 0, 0, 0, 0, 0x55])
                drops["otherMAC", default: 0] += 1
            case 13:
                f.replaceSubrange(30..<34, with: [239, 1, 2, 3])
                f[24] = 0; f[25] = 0
                let c = f.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress! + 14, headerLength: 20) }
                f[24] = UInt8(c >> 8); f[25] = UInt8(c & 0xFF)
                drops["multicast", default: 0] += 1
            case 15:
                // IPv4 options (IHL 6: a no-op option word): the full path routes it.
                var g = Array(f[0..<34]) + [1, 1, 1, 0] + Array(f[34...])
                g[14] = 0x46
                let total = Int(g[16]) << 8 | Int(g[17]) + 4
                g[16] = UInt8(total >> 8); g[17] = UInt8(total & 0xFF)
                g[24] = 0; g[25] = 0
                let c = g.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress! + 14, headerLength: 24) }
                g[24] = UInt8(c >> 8); g[25] = UInt8(c & 0xFF)
                f = g
                expected.append((1, exact(Self.routed(f, dst: ecmp ? ecmpMAC(f) : Self.gw, src: Self.mac1))))
            default:
                expected.append((1, exact(Self.routed(f, dst: ecmp ? ecmpMAC(f) : Self.gw, src: Self.mac1))))
                plain += 1
            }
            frames.append(f)
        }
        for pipeline in [false, true] {
            let r = try DataplaneRun.run(Self.routing, inputs: [frames, []], seconds: 2.5, pipeline: pipeline)
            XCTAssertEqual(r.status, 0, r.log)
            var outputs = r.outputs
            var missing = 0
            for (port, test) in expected {
                if let k = outputs[port].firstIndex(where: test) { outputs[port].remove(at: k) } else { missing += 1 }
            }
            XCTAssertEqual(missing, 0, "expected frames not sent (pipeline: \(pipeline))")
            XCTAssertEqual(outputs.map(\.count), [0, 0], "unexpected frames (pipeline: \(pipeline))")
            let got = (r.stats["drops"] as? [String: Any] ?? [:]).mapValues { ($0 as? NSNumber)?.intValue ?? 0 }
            XCTAssertEqual(got, drops, "drop counters (pipeline: \(pipeline))")
            // The first packet of each group per burst-tag fills the cache; nearly all the rest take the short path.
            let fast = r.event("fast_forwarded")
            XCTAssertLessThanOrEqual(fast, plain, "only plain packets take the short path")
            XCTAssertGreaterThan(fast, plain * 9 / 10, "plain packets should take the short path once their group is cached")
        }
    }

    func testFixturesRunToCompletion() throws { try runFixtures(pipeline: false) }
    func testFixturesPipeline() throws { try runFixtures(pipeline: true) }
}
