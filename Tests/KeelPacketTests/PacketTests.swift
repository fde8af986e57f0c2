import XCTest
import KeelPacket
import KeelTestData

final class ChecksumTests: XCTestCase {
    func testRFC1071Example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let b: [UInt8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]
        XCTAssertEqual(b.withUnsafeBytes { Checksum.fold(Checksum.sum($0.baseAddress!, 8)) }, 0xddf2)
        XCTAssertEqual(b.withUnsafeBytes { Checksum.finish(Checksum.sum($0.baseAddress!, 8)) }, 0x220d)
        // Odd length: the last byte is the high half of a word.
        XCTAssertEqual(b.withUnsafeBytes { Checksum.fold(Checksum.sum($0.baseAddress!, 7)) }, 0xddf2 &- 0x00f7)
    }

    func testKnownIPv4Header() {
        let h: [UInt8] = [0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00,
                          0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7]
        XCTAssertEqual(h.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress!, headerLength: 20) }, 0xb861)
    }

    /// RFC 1624 incremental updates give what a full recomputation gives.
    func testIncrementalEqualsFullRecompute() {
        var rng = SplitMix64(seed: 1624)
        for _ in 0..<100_000 {
            var h = (0..<20).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            h[0] = 0x45
            h[8] = UInt8(1 + rng.next() % 255) // TTL >= 1
            h[10] = 0; h[11] = 0
            let c = h.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress!, headerLength: 20) }
            h[10] = UInt8(c >> 8); h[11] = UInt8(c & 0xFF)
            h.withUnsafeMutableBytes { decrementTTL(ipv4: $0.baseAddress!) }
            XCTAssertEqual(h.withUnsafeBytes { Checksum.fold(Checksum.sum($0.baseAddress!, 20)) }, 0xFFFF, "TTL decrement: \(h)")
            // Rewrite the destination address (as NAT or encap would).
            let old = UInt32(h[16]) << 24 | UInt32(h[17]) << 16 | UInt32(h[18]) << 8 | UInt32(h[19])
            let new = UInt32(truncatingIfNeeded: rng.next())
            let c1 = UInt16(h[10]) << 8 | UInt16(h[11])
            let c2 = Checksum.update32(c1, old: old, new: new)
            h[16] = UInt8(new >> 24); h[17] = UInt8((new >> 16) & 0xFF); h[18] = UInt8((new >> 8) & 0xFF); h[19] = UInt8(new & 0xFF)
            h[10] = UInt8(c2 >> 8); h[11] = UInt8(c2 & 0xFF)
            XCTAssertEqual(h.withUnsafeBytes { Checksum.fold(Checksum.sum($0.baseAddress!, 20)) }, 0xFFFF, "address rewrite")
            if h[0] == 0 { break }
        }
    }
}

final class ShortPathTests: XCTestCase {
    /// The specialised TTL decrement gives `decrementTTL`'s bytes for every
    /// checksum value and every TTL the short path decrements (2...255).
    func testFastTTLDecrementEqualsRFC1624() {
        var a = [UInt8](repeating: 0, count: 20), b = a
        for ttl in [2, 3, 64, 128, 255] as [UInt8] {
            for c in 0...0xFFFF {
                a[8] = ttl; a[9] = 17; a[10] = UInt8(c >> 8); a[11] = UInt8(c & 0xFF)
                b = a
                a.withUnsafeMutableBytes { decrementTTL(ipv4: $0.baseAddress!) }
                b.withUnsafeMutableBytes { decrementTTLFast(ipv4: $0.baseAddress!) }
                if a != b { XCTFail("TTL \(ttl) checksum \(c): \(a[10...11]) vs \(b[10...11])"); return }
            }
        }
    }

    /// What the short path's check accepts, the full parse accepts with the
    /// same reading: an untagged IPv4 TCP/UDP packet, IHL 5, not a
    /// fragment, TTL > 1, unicast destination. Random mutations of plain frames.
    func testPlainIPv4ImpliesTheFullParse() {
        var rng = SplitMix64(seed: 1812)
        var info = PacketInfo()
        var accepted = 0, rejectedButParsed = 0
        let bases = [PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.9", proto: 17),
                     PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.9", proto: 6),
                     PacketBuilder.ipv4(src: "192.0.2.1", dst: "8.8.8.8", proto: 6, payload: [])]
        for b in bases { XCTAssertTrue(b.withUnsafeBytes { Parser.plainIPv4($0.baseAddress!, length: $0.count) }) }
        for i in 0..<300_000 {
            var f = bases[i % bases.count]
            for _ in 0...Int(rng.next() % 3) {
                let k = 12 + Int(rng.next() % UInt64(f.count - 12))
                f[k] = rng.next() % 4 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : f[k] ^ (1 << UInt8(rng.next() % 8))
            }
            if rng.next() % 2 == 0 { // fix the header checksum, so the other checks are reached
                f[24] = 0; f[25] = 0
                let c = f.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress! + 14, headerLength: 20) }
                f[24] = UInt8(c >> 8); f[25] = UInt8(c & 0xFF)
            }
            let cut = rng.next() % 8 == 0 ? Int(rng.next() % UInt64(f.count + 1)) : f.count
            let frame = Array(f.prefix(cut))
            let (plain, verdict) = frame.withUnsafeBufferPointer { b -> (Bool, DropReason) in
                let p = UnsafeMutableRawPointer.allocate(byteCount: max(1, b.count), alignment: 1)
                defer { p.deallocate() }
                if b.count > 0 { p.copyMemory(from: b.baseAddress!, byteCount: b.count) }
                return (Parser.plainIPv4(p, length: b.count), Parser.parse(p, length: b.count, into: &info))
            }
            guard plain else { if verdict == .none { rejectedButParsed += 1 }; continue }
            accepted += 1
            XCTAssertEqual(verdict, .none, "\(frame)")
            XCTAssertEqual(info.l3, PacketInfo.ipv4)
            XCTAssertEqual(info.l3Offset, 14)
            XCTAssertEqual(info.l4Offset, 34)
            XCTAssertTrue(info.l4Proto == 6 || info.l4Proto == 17)
            XCTAssertFalse(info.fragment)
            XCTAssertGreaterThan(frame[22], 1, "TTL")
            XCTAssertLessThan(frame[30], 224, "unicast destination")
            if verdict != .none { return }
        }
        XCTAssertGreaterThan(accepted, 10_000)
        XCTAssertGreaterThan(rejectedButParsed, 10_000, "the full parse takes what the short path leaves")
    }
}

/// Table-driven: frame -> drop reason (or none) and what the parser found.
final class ParserTests: XCTestCase {
    struct Case {
        let name: String
        let frame: [UInt8]
        let verdict: DropReason
        var check: ((PacketInfo) -> Void)? = nil
    }

    static func patched(_ f: [UInt8], _ edits: [(Int, UInt8)], fixIPv4Checksum: Bool = false) -> [UInt8] {
        var g = f
        for (i, v) in edits { g[i] = v }
        if fixIPv4Checksum {
            let ihl = Int(g[14] & 0xF) * 4
            g[24] = 0; g[25] = 0
            let c = g.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress! + 14, headerLength: min(ihl, g.count - 14)) }
            g[24] = UInt8(c >> 8); g[25] = UInt8(c & 0xFF)
        }
        return g
    }

    static let udp4 = PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.2.0.2", proto: 17, srcPort: 5000, dstPort: 53)
    static let tcp6 = PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:2::2", proto: 6, srcPort: 40000, dstPort: 443)
    static let destOpts: (UInt8, [UInt8]) = (60, [0, 0, 1, 4, 0, 0, 0, 0])
    static let hbh: (UInt8, [UInt8]) = (0, [0, 0, 1, 4, 0, 0, 0, 0])

    var cases: [Case] {
        let u = ParserTests.udp4
        return [
            Case(name: "IPv4 UDP", frame: u, verdict: .none) { i in
                XCTAssertEqual(i.l3, PacketInfo.ipv4); XCTAssertEqual(i.l4Proto, 17)
                XCTAssertEqual(i.srcPort, 5000); XCTAssertEqual(i.dstPort, 53); XCTAssertEqual(i.l4Offset, 34)
            },
            Case(name: "IPv4 TCP in VLAN 42", frame: PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.2.0.2", proto: 6, vlan: 42), verdict: .none) { i in
                XCTAssertEqual(i.vlan, 42); XCTAssertEqual(i.l3Offset, 18); XCTAssertEqual(i.l4Proto, 6)
            },
            Case(name: "ICMP echo", frame: PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.2.0.2", proto: 1), verdict: .none) { i in
                XCTAssertEqual(i.l4Proto, 1)
            },
            Case(name: "ARP", frame: PacketBuilder.ethernet(type: 0x0806) + [UInt8](repeating: 0, count: 28), verdict: .none) { i in
                XCTAssertEqual(i.l3, PacketInfo.arp)
            },
            Case(name: "runt frame", frame: Array(u.prefix(10)), verdict: .truncated),
            Case(name: "IPv4 header cut short", frame: Array(u.prefix(30)), verdict: .truncated),
            Case(name: "unknown EtherType", frame: ParserTests.patched(u, [(12, 0x88), (13, 0xcc)]), verdict: .unknownEtherType),
            Case(name: "IPv4 version 5", frame: ParserTests.patched(u, [(14, 0x55)]), verdict: .ipv4BadVersion),
            Case(name: "IHL 4 (16 bytes)", frame: ParserTests.patched(u, [(14, 0x44)]), verdict: .ipv4BadIHL),
            Case(name: "IHL beyond the frame", frame: Array(ParserTests.patched(u, [(14, 0x4F)]).prefix(50)), verdict: .ipv4BadIHL),
            Case(name: "bad header checksum", frame: ParserTests.patched(u, [(24, u[24] ^ 0xFF)]), verdict: .ipv4BadChecksum),
            Case(name: "total length beyond the frame", frame: ParserTests.patched(u, [(16, 0x05), (17, 0xDC)], fixIPv4Checksum: true), verdict: .ipv4BadLength),
            Case(name: "total length below the header", frame: ParserTests.patched(u, [(16, 0), (17, 10)], fixIPv4Checksum: true), verdict: .ipv4BadLength),
            Case(name: "source 127.0.0.1", frame: PacketBuilder.ipv4(src: "127.0.0.1", dst: "10.2.0.2"), verdict: .ipv4MartianSource),
            Case(name: "source 0.1.2.3", frame: PacketBuilder.ipv4(src: "0.1.2.3", dst: "10.2.0.2"), verdict: .ipv4MartianSource),
            Case(name: "multicast source", frame: PacketBuilder.ipv4(src: "224.0.0.5", dst: "10.2.0.2"), verdict: .ipv4MartianSource),
            Case(name: "broadcast source", frame: PacketBuilder.ipv4(src: "255.255.255.255", dst: "10.2.0.2"), verdict: .ipv4MartianSource),
            Case(name: "destination 127.1.1.1", frame: PacketBuilder.ipv4(src: "10.1.0.2", dst: "127.1.1.1"), verdict: .ipv4MartianDestination),
            Case(name: "limited broadcast", frame: PacketBuilder.ipv4(src: "10.1.0.2", dst: "255.255.255.255"), verdict: .ipv4MartianDestination),
            Case(name: "UDP header cut short", frame: PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.2.0.2", proto: 17, payload: []).dropLast(4)
                 .map { $0 }, verdict: .ipv4BadLength),
            Case(name: "first fragment", frame: PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.2.0.2", fragment: 0x2000), verdict: .none) { i in
                XCTAssertTrue(i.fragment); XCTAssertFalse(i.laterFragment); XCTAssertEqual(i.dstPort, 80)
            },
            Case(name: "later fragment", frame: PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.2.0.2", fragment: 0x0010), verdict: .none) { i in
                XCTAssertTrue(i.laterFragment); XCTAssertEqual(i.dstPort, 0)
            },
            Case(name: "IPv6 TCP", frame: ParserTests.tcp6, verdict: .none) { i in
                XCTAssertEqual(i.l3, PacketInfo.ipv6); XCTAssertEqual(i.l4Offset, 54); XCTAssertEqual(i.dstPort, 443)
            },
            Case(name: "IPv6 hop-by-hop + destination options", frame: PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:2::2", proto: 6,
                 extensions: [ParserTests.hbh, ParserTests.destOpts]), verdict: .none) { i in
                XCTAssertTrue(i.hopByHop); XCTAssertEqual(i.l4Proto, 6); XCTAssertEqual(i.l4Offset, 70); XCTAssertEqual(i.dstPort, 80)
            },
            Case(name: "IPv6 fragment header", frame: PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:2::2", proto: 17,
                 extensions: [(44, [0, 0, 0, 1, 0, 0, 0, 7])]), verdict: .none) { i in
                XCTAssertTrue(i.fragment); XCTAssertFalse(i.laterFragment); XCTAssertEqual(i.l4Proto, 17)
            },
            Case(name: "IPv6 nine extension headers", frame: PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:2::2",
                 extensions: Array(repeating: ParserTests.destOpts, count: 9)), verdict: .ipv6TooManyExtensions),
            Case(name: "IPv6 version 4", frame: ParserTests.patched(ParserTests.tcp6, [(14, 0x40)]), verdict: .ipv6BadVersion),
            Case(name: "IPv6 payload length beyond the frame", frame: ParserTests.patched(ParserTests.tcp6, [(18, 0x10)]), verdict: .ipv6BadLength),
            Case(name: "IPv6 header cut short", frame: Array(ParserTests.tcp6.prefix(40)), verdict: .truncated),
            Case(name: "IPv6 loopback source", frame: PacketBuilder.ipv6(src: "::1", dst: "2001:db8:2::2"), verdict: .ipv6MartianSource),
            Case(name: "IPv6 multicast source", frame: PacketBuilder.ipv6(src: "ff02::1", dst: "2001:db8:2::2"), verdict: .ipv6MartianSource),
            Case(name: "IPv6 unspecified destination", frame: PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "::"), verdict: .ipv6MartianDestination),
            Case(name: "TCP header cut short (IPv6)", frame: ParserTests.patched(Array(ParserTests.tcp6.prefix(64)), [(18, 0), (19, 10)]), verdict: .l4Truncated),
        ]
    }

    func testFixtures() {
        var info = PacketInfo()
        for c in cases {
            let v = c.frame.withUnsafeBytes { Parser.parse($0.baseAddress!, length: $0.count, into: &info) }
            XCTAssertEqual(v, c.verdict, c.name)
            if v == .none { c.check?(info) }
        }
        XCTAssertGreaterThanOrEqual(cases.count, 30)
    }

    func testEveryDropReasonHasADescription() {
        let texts = DropReason.allCases.map(\.description)
        XCTAssertEqual(Set(texts).count, texts.count)
    }

    /// Arbitrary bytes never crash the parser nor send it past the frame.
    func testRandomFramesAreParsedOrDropped() {
        var rng = SplitMix64(seed: 99)
        var info = PacketInfo()
        var seen = Set<UInt8>()
        for i in 0..<200_000 {
            var f = i % 2 == 0 ? ParserTests.udp4 : ParserTests.tcp6
            let n = Int(rng.next() % 6)
            for _ in 0...n { f[Int(rng.next() % UInt64(f.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            let cut = Int(rng.next() % UInt64(f.count + 1))
            let frame = Array(f.prefix(cut))
            let v = frame.withUnsafeBufferPointer { b -> DropReason in
                // An exact-size allocation, so an overread would leave it.
                let p = UnsafeMutableRawPointer.allocate(byteCount: max(1, b.count), alignment: 1)
                defer { p.deallocate() }
                if b.count > 0 { p.copyMemory(from: b.baseAddress!, byteCount: b.count) }
                return Parser.parse(p, length: b.count, into: &info)
            }
            if v == .none { XCTAssertLessThanOrEqual(Int(info.l4Offset), cut) }
            seen.insert(v.rawValue)
        }
        XCTAssertGreaterThan(seen.count, 8)
    }
}

final class FlowHashTests: XCTestCase {
    func testFixedAndFragmentsTogether() {
        let h = FlowHash.v4(src: 0x0A01_0002, dst: 0x0A02_0002, proto: 6, srcPort: 40000, dstPort: 443)
        // Fixed: the same in every process and on every appliance.
        XCTAssertEqual(h, FlowHash.v4(src: 0x0A01_0002, dst: 0x0A02_0002, proto: 6, srcPort: 40000, dstPort: 443))
        XCTAssertNotEqual(h, FlowHash.v4(src: 0x0A02_0002, dst: 0x0A01_0002, proto: 6, srcPort: 443, dstPort: 40000))
        var info = PacketInfo()
        let first = PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.2.0.2", fragment: 0x2000)
        let later = PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.2.0.2", payload: [1, 2, 3, 4, 5, 6, 7, 8], fragment: 0x0010)
        let h1 = first.withUnsafeBytes { b -> UInt64 in _ = Parser.parse(b.baseAddress!, length: b.count, into: &info); return FlowHash.of(b.baseAddress!, info) }
        let h2 = later.withUnsafeBytes { b -> UInt64 in _ = Parser.parse(b.baseAddress!, length: b.count, into: &info); return FlowHash.of(b.baseAddress!, info) }
        XCTAssertEqual(h1, h2, "all fragments of a datagram hash alike (3-tuple)")
    }

    func testSpreadsFlowsEvenly() {
        var rng = SplitMix64(seed: 8)
        var buckets = [Int](repeating: 0, count: 8)
        let n = 200_000
        for _ in 0..<n {
            let h = FlowHash.v4(src: 0x0A00_0000 | UInt32(rng.next() % 65536), dst: 0xC000_020A, proto: 6,
                                srcPort: UInt16(truncatingIfNeeded: rng.next()), dstPort: 80)
            buckets[Int(h % 8)] += 1
        }
        for b in buckets { XCTAssertEqual(Double(b) / Double(n / 8), 1, accuracy: 0.02) }
    }
}
