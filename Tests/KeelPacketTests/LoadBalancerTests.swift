import XCTest
import KeelAPI
import KeelCompiler
import KeelForward
import KeelPacket
import KeelTables
import KeelTestData

/// The connection table and the backend choice, on snapshots compiled from
/// configurations (no DPDK): flows keep their backend across changes as the
/// backend states say, the table is bounded and evicts, timeouts hold.
final class LoadBalancerTests: XCTestCase {
    /// A compiled snapshot of `config` in its own memory.
    final class Compiled {
        let region: MemoryRegion
        let snapshot: Snapshot
        init(_ config: Configuration) throws {
            let limits = SnapshotLimits.small
            let layout = SnapshotLayout(limits)
            region = try MemoryRegion(size: layout.length)
            let b = try SnapshotBuilder(formatting: region.base, layout: layout)
            for c in try Compiler(limits: limits).replace(with: config) { try b.apply(c) }
            b.seal(generation: 1)
            snapshot = Snapshot(verified: region.base, layout: layout)
        }
    }

    static func config(_ backends: [Backend]) -> Configuration {
        Configuration(ports: [Port(name: "p0", mac: "02:00:00:00:00:01", addresses: ["10.1.0.1/24"]),
                              Port(name: "p1", mac: "02:00:00:00:00:02", addresses: ["10.2.0.1/24"])],
                      vips: [VIP(id: 1, address: "192.0.2.10", protocol: "tcp", port: 80, tableSize: 4099, backends: backends)])
    }

    static let abc = [Backend(id: 1, address: "10.2.0.11"), Backend(id: 2, address: "10.2.0.12"), Backend(id: 3, address: "10.2.0.13")]

    /// Flow i: 10.1.(i/250).(i%250) : 1024+i -> VIP:80.
    static func flow(_ i: Int) -> (hash: UInt64, maglev: UInt64) {
        let src = UInt32(0x0A01_0000) | UInt32(i / 250) << 8 | UInt32(i % 250)
        let h = FlowHash.v4(src: src, dst: 0xC000_020A, proto: 6, srcPort: UInt16(1024 + i % 60000), dstPort: 80)
        return (h, h) // 5-tuple VIP: the Maglev hash is the flow hash
    }

    func backendID(_ s: Snapshot, _ k: Int) -> UInt32 { s.backendRaw(0, k).load(as: UInt32.self) }

    func choose(_ s: Snapshot, _ conn: ConnTable?, _ i: Int, now: UInt32 = 100, flags: UInt64 = 0) -> (id: UInt32, c: LoadBalancer.Choice) {
        let f = LoadBalancerTests.flow(i)
        let c = LoadBalancer.choose(vip: 0, snapshot: s, conn: conn, flowHash: f.hash, flags: flags, record: true, now: now) { f.maglev }
        return (c.position >= 0 ? backendID(s, c.position) : 0, c)
    }

    func testFlowsKeepTheirBackendAcrossChanges() throws {
        let conn = ConnTable(flows: 1 << 16)
        defer { conn.deallocate() }
        let before = try Compiled(Self.config(Self.abc))
        var first: [UInt32] = []
        for i in 0..<3000 {
            let (id, c) = choose(before.snapshot, conn, i)
            XCTAssertTrue(c.fresh && !c.hit)
            first.append(id)
        }
        // Spread: each of three backends gets about a third.
        for b in 1...3 { XCTAssertEqual(Double(first.filter { $0 == b }.count) / 3000, 1.0 / 3, accuracy: 0.05) }

        // Add a fourth backend: without the table some flows would move; with it none does.
        let added = try Compiled(Self.config(Self.abc + [Backend(id: 4, address: "10.2.0.14")]))
        var wouldMove = 0
        for i in 0..<3000 {
            let (id, c) = choose(added.snapshot, conn, i)
            XCTAssertTrue(c.hit, "flow \(i)")
            XCTAssertEqual(id, first[i], "flow \(i) kept its backend")
            if choose(added.snapshot, nil, i).id != first[i] { wouldMove += 1 }
        }
        XCTAssertGreaterThan(wouldMove, 300, "the Maglev table alone moves flows: the table is what keeps them")

        // Drain backend 2: its flows stay; new flows avoid it.
        var drained = Self.abc
        drained[1].state = "drain"
        let d = try Compiled(Self.config(drained))
        for i in 0..<3000 { XCTAssertEqual(choose(d.snapshot, conn, i).id, first[i]) }
        for i in 3000..<4000 { XCTAssertNotEqual(choose(d.snapshot, conn, i).id, 2, "new flow \(i) on a drained backend") }

        // Backend 2 down: its flows move (fresh choices), the others stay.
        var down = Self.abc
        down[1].state = "down"
        let dn = try Compiled(Self.config(down))
        for i in 0..<3000 {
            let (id, c) = choose(dn.snapshot, conn, i)
            if first[i] == 2 { XCTAssertTrue(c.fresh); XCTAssertNotEqual(id, 2) } else { XCTAssertEqual(id, first[i]) }
        }

        // Backend 1 removed (positions shift): flows of 3 are found by id at their new position.
        let removed = try Compiled(Self.config([Self.abc[1], Self.abc[2]]))
        let conn2 = ConnTable(flows: 1 << 16)
        defer { conn2.deallocate() }
        var second: [UInt32] = []
        for i in 0..<3000 { second.append(choose(before.snapshot, conn2, i).id) }
        for i in 0..<3000 {
            let (id, c) = choose(removed.snapshot, conn2, i)
            if second[i] == 1 { XCTAssertTrue(c.fresh); XCTAssertNotEqual(id, 1) } else { XCTAssertTrue(c.hit); XCTAssertEqual(id, second[i]) }
        }
    }

    func testTimeoutsAndClosingFlows() throws {
        let s = try Compiled(Self.config(Self.abc))
        let conn = ConnTable(flows: 1024, tcpTimeout: 300, closingTimeout: 10, udpTimeout: 30)
        defer { conn.deallocate() }
        let f = Self.flow(7)
        let fp = LoadBalancer.fingerprint(f.hash)
        _ = choose(s.snapshot, conn, 7, now: 1000)
        XCTAssertNotNil(conn.find(hash: f.hash, fingerprint: fp, now: 1000 + 270), "alive before 300 s")
        XCTAssertNil(conn.find(hash: f.hash, fingerprint: fp, now: 1000 + 290), "expired after 300 s (ticks of 1.07 s)")
        // A FIN shortens it to the closing timeout.
        _ = choose(s.snapshot, conn, 8, now: 1000)
        _ = choose(s.snapshot, conn, 8, now: 1001, flags: ConnTable.closing)
        let g = Self.flow(8)
        XCTAssertNil(conn.find(hash: g.hash, fingerprint: LoadBalancer.fingerprint(g.hash), now: 1001 + 11))
        // Wrap-around of the 24-bit tick.
        _ = choose(s.snapshot, conn, 9, now: 0xFF_FFF0)
        let h = Self.flow(9)
        XCTAssertNotNil(conn.find(hash: h.hash, fingerprint: LoadBalancer.fingerprint(h.hash), now: 0x10))
        // The timeout by flags (the table's header line): UDP 30 s (28 ticks), closing wins over UDP.
        for (flags, ticks) in [(ConnTable.udp, conn.udpTicks), (ConnTable.udp | ConnTable.closing, conn.closingTicks), (0, conn.tcpTicks)] {
            let k = 0x5151_0000_0000_0000 &+ flags << 20
            _ = conn.insert(hash: k, fingerprint: k, position: 1, backendID: 2, flags: flags, now: 2000)
            XCTAssertNotNil(conn.find(hash: k, fingerprint: k, now: 2000 + ticks - 1), "flags \(flags): alive a tick before")
            XCTAssertNil(conn.find(hash: k, fingerprint: k, now: 2000 + ticks), "flags \(flags): expired after \(ticks) ticks")
        }
        XCTAssertEqual([conn.tcpTicks, conn.closingTicks, conn.udpTicks], [280, 10, 28])
    }

    /// The short path's refresh (`refreshWords` once a tick, then a load per
    /// packet) stores what `touch` stores, for every flag combination and
    /// across the 24-bit tick's wrap-around; a FIN or RST (closing) is kept.
    func testRefreshByWordsMatchesTouch() throws {
        let words = UnsafeMutablePointer<UInt64>.allocate(capacity: ConnTable.refreshWordCount)
        defer { words.deallocate() }
        for now: UInt32 in [5000, 0xFF_FFF0] {
            let conn = ConnTable(flows: 1024, tcpTimeout: 300, closingTimeout: 10, udpTimeout: 30)
            defer { conn.deallocate() }
            conn.refreshWords(now: now, into: words)
            XCTAssertEqual(words[4], UInt64(now))
            for (n, (have, add)) in [(0, 0), (0, ConnTable.closing), (ConnTable.udp, 0), (ConnTable.udp, ConnTable.closing),
                                     (ConnTable.closing, 0)].enumerated() {
                let a = 0x7000_0000_0000_0000 | UInt64(n), b = 0x6000_0000_0000_0000 | UInt64(n &+ 8) // buckets n and n + 8
                _ = conn.insert(hash: a, fingerprint: a, position: 3, backendID: 9, flags: have, now: now &- 5)
                _ = conn.insert(hash: b, fingerprint: b, position: 3, backendID: 9, flags: have, now: now &- 5)
                let ha = try XCTUnwrap(conn.find(hash: a, fingerprint: a, now: now))
                let hb = try XCTUnwrap(conn.find(hash: b, fingerprint: b, now: now))
                conn.touch(ha, position: 3, backendID: 9, flags: add, now: now)
                ConnTable.refresh(hb, words: words, flags: add)
                XCTAssertEqual(hb.entry.load(fromByteOffset: 8, as: UInt64.self), ha.entry.load(fromByteOffset: 8, as: UInt64.self),
                               "flags \(have) + \(add) at \(now)")
                XCTAssertEqual(hb.entry.load(fromByteOffset: 8, as: UInt64.self) & 0xFF, have | add)
                let ticks = (have | add) & ConnTable.closing != 0 ? conn.closingTicks : have & ConnTable.udp != 0 ? conn.udpTicks : conn.tcpTicks
                XCTAssertNotNil(conn.find(hash: b, fingerprint: b, now: now &+ ticks &- 1))
                XCTAssertNil(conn.find(hash: b, fingerprint: b, now: (now &+ ticks) & 0xFF_FFFF), "expires \(ticks) ticks after the refresh")
            }
        }
    }

    /// The live-flow gauge a routing lcore keeps (a slice every 64 loop turns):
    /// slices add up to the whole count, and expired flows are not counted.
    func testLiveFlowsCountedBySlices() throws {
        let s = try Compiled(Self.config(Self.abc))
        let conn = ConnTable(flows: 4096)
        defer { conn.deallocate() }
        for i in 0..<1000 { _ = choose(s.snapshot, conn, i, now: 500) }
        let whole = conn.count(now: 500)
        XCTAssertGreaterThan(whole, 900)
        var sliced = 0, b = 0
        while b <= conn.bucketMask { sliced += conn.count(buckets: b, 64, now: 500); b += 64 }
        XCTAssertEqual(sliced, whole)
        XCTAssertEqual(conn.count(buckets: conn.bucketMask, 1000, now: 500), conn.count(buckets: conn.bucketMask, 1, now: 500), "clipped to the table")
        XCTAssertEqual(conn.count(now: 500 + conn.tcpTicks + 1), 0, "all expired")
    }

    func testAFullTableEvictsTheOldestAndNeverGrows() throws {
        let s = try Compiled(Self.config(Self.abc))
        let conn = ConnTable(entries: 64) // 16 buckets of 4
        defer { conn.deallocate() }
        XCTAssertEqual(conn.capacity, 64)
        let sized = ConnTable(flows: 16)
        defer { sized.deallocate() }
        XCTAssertEqual(sized.capacity, 64, "sized at four entries per flow")
        var evicted = 0
        for i in 0..<10_000 { if choose(s.snapshot, conn, i, now: 100 + UInt32(i / 100)).c.evicted { evicted += 1 } }
        XCTAssertEqual(conn.count(now: 200), 64, "full, not more")
        XCTAssertGreaterThan(evicted, 9000)
        // The most recent flows are the ones kept.
        var recent = 0
        for i in 9_900..<10_000 {
            let f = Self.flow(i)
            if conn.find(hash: f.hash, fingerprint: LoadBalancer.fingerprint(f.hash), now: 200) != nil { recent += 1 }
        }
        XCTAssertGreaterThan(recent, 40)
    }

    /// The VIP's hash fields: "source" keeps a client on one backend whatever
    /// its ports and protocol, "3-tuple" ignores ports, "5-tuple" spreads a
    /// client's connections; fragments never hash ports.
    func testMaglevHashFields() {
        func h(_ f: [UInt8], _ fields: UInt8) -> UInt64 {
            var info = PacketInfo()
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 16)
            defer { scratch.deallocate() }
            return f.withUnsafeBytes { b in
                XCTAssertEqual(Parser.parse(b.baseAddress!, length: f.count, into: &info), .none)
                return LoadBalancer.maglevHash(b.baseAddress!, info, fields: fields, scratch: scratch)
            }
        }
        for (a, b) in [("10.1.0.2", "192.0.2.10"), ("2001:db8:1::2", "2001:db8:f::10")] {
            let v4 = !a.contains(":")
            func frame(_ sp: UInt16, _ dp: UInt16, proto: UInt8 = 6, src: String? = nil, fragment: UInt16 = 0) -> [UInt8] {
                v4 ? PacketBuilder.ipv4(src: src ?? a, dst: b, proto: proto, srcPort: sp, dstPort: dp, fragment: fragment)
                   : PacketBuilder.ipv6(src: src ?? a, dst: b, proto: proto, srcPort: sp, dstPort: dp)
            }
            XCTAssertEqual(h(frame(1000, 80), 1), h(frame(2000, 443, proto: 17), 1), "source: ports and protocol do not matter")
            XCTAssertNotEqual(h(frame(1000, 80), 1), h(frame(1000, 80, src: v4 ? "10.1.0.3" : "2001:db8:1::3"), 1), "source: the client does")
            XCTAssertEqual(h(frame(1000, 80), 3), h(frame(2000, 443), 3), "3-tuple: ports do not matter")
            XCTAssertNotEqual(h(frame(1000, 80), 3), h(frame(1000, 80, proto: 17), 3), "3-tuple: the protocol does")
            XCTAssertNotEqual(h(frame(1000, 80), 5), h(frame(2000, 80), 5), "5-tuple: the source port does")
            if v4 {
                XCTAssertEqual(h(frame(1000, 80, fragment: 0x2000), 5), h(frame(1000, 80), 3), "a fragment hashes the 3-tuple")
            }
        }
    }

    /// An ICMP error about a flow is steered (and looked up) by the flow's own hash, IPv4 and IPv6.
    func testICMPErrorsFollowTheQuotedFlow() {
        func hash(_ f: [UInt8]) -> (UInt64, UInt64) {
            var info = PacketInfo()
            return f.withUnsafeBytes { b in
                XCTAssertEqual(Parser.parse(b.baseAddress!, length: f.count, into: &info), .none)
                return (FlowHash.of(b.baseAddress!, info), LoadBalancer.steeringHash(b.baseAddress!, length: f.count, info))
            }
        }
        let flow4 = PacketBuilder.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: 6, srcPort: 40000, dstPort: 80)
        let reply4 = PacketBuilder.ipv4(src: "192.0.2.10", dst: "10.1.0.2", proto: 6, srcPort: 80, dstPort: 40000, payload: [])
        var body4: [UInt8] = [3, 4, 0, 0, 0, 0, 5, 20] + Array(reply4[14..<42])
        let c4 = body4.withUnsafeBytes { Checksum.finish(Checksum.sum($0.baseAddress!, $0.count)) }
        body4[2] = UInt8(c4 >> 8); body4[3] = UInt8(c4 & 0xFF)
        var ip4: [UInt8] = [0x45, 0, 0, UInt8(20 + body4.count), 0, 1, 0, 0, 64, 1, 0, 0, 10, 1, 0, 77, 192, 0, 2, 10]
        let h4 = ip4.withUnsafeBytes { Checksum.ipv4Header($0.baseAddress!, headerLength: 20) }
        ip4[10] = UInt8(h4 >> 8); ip4[11] = UInt8(h4 & 0xFF)
        let error4 = PacketBuilder.ethernet(type: 0x0800) + ip4 + body4
        XCTAssertEqual(hash(error4).1, hash(flow4).0)
        XCTAssertNotEqual(hash(error4).0, hash(flow4).0, "the error's own 5-tuple differs")

        let flow6 = PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:f::10", proto: 17, srcPort: 40001, dstPort: 53)
        let reply6 = PacketBuilder.ipv6(src: "2001:db8:f::10", dst: "2001:db8:1::2", proto: 17, srcPort: 53, dstPort: 40001)
        // ICMPv6 packet too big from a router, to the VIP, quoting the reply.
        let quoted = Array(reply6[14...])
        var error6 = PacketBuilder.ipv6(src: "2001:db8:1::77", dst: "2001:db8:f::10", proto: 58, srcPort: 0, dstPort: 0, payload: quoted)
        error6[54] = 2; error6[55] = 0 // an echo request made into type 2 code 0 (the parser does not check ICMPv6 checksums)
        XCTAssertEqual(hash(error6).1, hash(flow6).0)
    }

    func testEncapsulationHeaders() {
        // IPv4 in IPv4 (IPIP) and IPv4 in IPv6 (GUE): lengths, protocols, checksums.
        let inner = Array(PacketBuilder.ipv4(src: "10.1.0.2", dst: "192.0.2.10", proto: 6, srcPort: 1, dstPort: 80)[14...])
        for (outerV4, encap) in [(true, LoadBalancer.ipip), (true, LoadBalancer.gue), (false, LoadBalancer.ipip), (false, LoadBalancer.gue)] {
            let oh = LoadBalancer.overhead(encap: encap, outerV4: outerV4)
            var buf = [UInt8](repeating: 0, count: oh) + inner
            var src = [UInt8](repeating: 0, count: 16), dst = [UInt8](repeating: 0, count: 16)
            IPAddress(outerV4 ? "10.2.0.1" : "2001:db8::1")!.store(to: &src)
            IPAddress(outerV4 ? "10.2.0.11" : "2001:db8::11")!.store(to: &dst)
            buf.withUnsafeMutableBytes { b in
                LoadBalancer.encapsulate(outer: b.baseAddress!, innerLength: inner.count, innerV4: true, outerV4: outerV4, encap: encap,
                                         guePort: 6080, hash: 0x1234_5678_9ABC, source: src, destination: dst)
            }
            XCTAssertEqual(Array(buf[oh...]), inner, "inner untouched")
            var info = PacketInfo()
            let frame = [UInt8](repeating: 0, count: 12) + (outerV4 ? [8, 0] : [0x86, 0xDD]) + buf
            let r = frame.withUnsafeBytes { Parser.parse($0.baseAddress!, length: frame.count, into: &info) }
            XCTAssertEqual(r, .none, "the outer packet parses (checksum, lengths)")
            XCTAssertEqual(Int(info.l3Length), buf.count)
            XCTAssertEqual(info.l4Proto, encap == LoadBalancer.gue ? 17 : 4)
            if encap == LoadBalancer.gue {
                XCTAssertEqual(Int(info.dstPort), 6080)
                XCTAssertEqual(Int(info.srcPort) & 0xC000, 0xC000)
                XCTAssertEqual(buf[(outerV4 ? 20 : 40) + 9], 4, "GUE names the inner protocol")
                if !outerV4 {
                    let l = buf.count - 40
                    let ok = buf.withUnsafeBytes { Checksum.finish(Checksum.sum($0.baseAddress! + 40, l, initial: Checksum.pseudoHeader6(addresses: $0.baseAddress! + 8, proto: 17, length: l))) }
                    XCTAssertEqual(ok, 0, "IPv6 UDP checksum")
                }
            }
        }
    }
}

extension IPAddress {
    func store(to bytes: inout [UInt8]) { bytes.withUnsafeMutableBytes { store(to: $0.baseAddress!) } }
}
