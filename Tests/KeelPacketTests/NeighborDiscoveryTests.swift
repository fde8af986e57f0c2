import XCTest
import KeelAPI
import KeelCompiler
import KeelForward
import KeelPacket
import KeelTables
import KeelTestData

final class NeighborDiscoveryTests: XCTestCase {
    var region: MemoryRegion!
    var s: Snapshot!
    let hostMAC: [UInt8] = [0x0e, 0xaa, 0, 0, 0, 2]
    let routerMAC: [UInt8] = [0x02, 0, 0, 0, 1, 0]

    override func setUpWithError() throws {
        let compiler = Compiler(limits: .small)
        let changes = try compiler.replace(with: Configuration(ports: [
            Port(name: "p0", mac: "02:00:00:00:01:00", addresses: ["10.1.0.1/24", "2001:db8:1::1/64"])]))
        let layout = SnapshotLayout(.small)
        region = try MemoryRegion(size: layout.length)
        let b = try SnapshotBuilder(formatting: region.base, layout: layout)
        for c in changes { try b.apply(c) }
        b.seal(generation: 1)
        s = Snapshot(verified: region.base, layout: layout)
    }

    func arpFrame(op: UInt16, target: [UInt8]) -> [UInt8] {
        PacketBuilder.ethernet(type: 0x0806, dst: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], src: hostMAC)
            + [0, 1, 8, 0, 6, 4, 0, UInt8(op)] + hostMAC + [10, 1, 0, 2] + [0, 0, 0, 0, 0, 0] + target
    }

    func handleARP(_ frame: inout [UInt8]) -> (NeighborDiscovery.ARPResult, Bool, [UInt8]) {
        var info = PacketInfo()
        var learned = [UInt8](repeating: 0, count: 10)
        let r = frame.withUnsafeMutableBytes { b -> (NeighborDiscovery.ARPResult, learn: Bool) in
            XCTAssertEqual(Parser.parse(b.baseAddress!, length: b.count, into: &info), DropReason.none)
            return learned.withUnsafeMutableBytes { NeighborDiscovery.arp(b.baseAddress!, length: b.count, info, port: 0, snapshot: s, learned: $0.baseAddress!) }
        }
        return (r.0, r.learn, learned)
    }

    func testARPRequestForUsIsAnswered() {
        var f = arpFrame(op: 1, target: [10, 1, 0, 1])
        let (r, learn, learned) = handleARP(&f)
        XCTAssertEqual(r, .replied)
        XCTAssertTrue(learn)
        XCTAssertEqual(learned, hostMAC + [10, 1, 0, 2])
        XCTAssertEqual(Array(f[0..<6]), hostMAC)
        XCTAssertEqual(Array(f[6..<12]), routerMAC)
        XCTAssertEqual(Array(f[20..<22]), [0, 2], "reply")
        XCTAssertEqual(Array(f[22..<28]), routerMAC, "sender: us")
        XCTAssertEqual(Array(f[28..<32]), [10, 1, 0, 1])
        XCTAssertEqual(Array(f[32..<38]), hostMAC, "target: the asker")
        XCTAssertEqual(Array(f[38..<42]), [10, 1, 0, 2])
    }

    func testARPForSomeoneElseIgnoredAndRepliesLearned() {
        var other = arpFrame(op: 1, target: [10, 1, 0, 9])
        XCTAssertEqual(handleARP(&other).0, .ignored)
        XCTAssertFalse(handleARP(&other).1)
        var reply = arpFrame(op: 2, target: [10, 1, 0, 1])
        let (r, learn, learned) = handleARP(&reply)
        XCTAssertEqual(r, .ignored)
        XCTAssertTrue(learn)
        XCTAssertEqual(Array(learned[0..<6]), hostMAC)
    }

    func testARPRequestBuilt() {
        var out = [UInt8](repeating: 0, count: 64)
        let n = out.withUnsafeMutableBytes { NeighborDiscovery.arpRequest(port: 0, snapshot: s, source: 0x0A01_0001, target: 0x0A01_0002, into: $0.baseAddress!) }
        XCTAssertEqual(n, 42)
        XCTAssertEqual(Array(out[0..<6]), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        XCTAssertEqual(Array(out[12..<22]), [0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1])
        XCTAssertEqual(Array(out[28..<32]), [10, 1, 0, 1])
        XCTAssertEqual(Array(out[38..<42]), [10, 1, 0, 2])
    }

    func addr(_ s: String) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 16)
        b.withUnsafeMutableBytes { IPAddress(s)!.store(to: $0.baseAddress!) }
        return b
    }

    func testNeighborSolicitationAnsweredWithAdvertisement() {
        // A host's solicitation for the router's address (built with the same code, then made the host's).
        var f = [UInt8](repeating: 0, count: 128)
        let n = f.withUnsafeMutableBytes { o in
            NeighborDiscovery.neighborSolicitation(port: 0, snapshot: s, source: addr("2001:db8:1::2"), target: addr("2001:db8:1::1"), into: o.baseAddress!)
        }
        f = Array(f.prefix(n))
        XCTAssertEqual(Array(f[0..<6]), [0x33, 0x33, 0xff, 0, 0, 1], "solicited-node multicast MAC")
        XCTAssertEqual(Array(f[38..<54]), addr("ff02::1:ff00:1"))
        for i in 0..<6 { f[6 + i] = hostMAC[i]; f[14 + 40 + 26 + i] = hostMAC[i] }
        // Fix the checksum after the option change: recompute over the message.
        f[56] = 0; f[57] = 0
        let c = f.withUnsafeBytes { Checksum.finish(Checksum.sum($0.baseAddress! + 54, 32, initial: Checksum.pseudoHeader6(addresses: $0.baseAddress! + 22, proto: 58, length: 32))) }
        f[56] = UInt8(c >> 8); f[57] = UInt8(c & 0xFF)

        let solicitation = f
        var info = PacketInfo()
        var learned = [UInt8](repeating: 0, count: 6)
        let m = f.withUnsafeMutableBytes { b -> Int in
            XCTAssertEqual(Parser.parse(b.baseAddress!, length: b.count, into: &info), DropReason.none)
            return learned.withUnsafeMutableBytes { NeighborDiscovery.neighborAdvertisement(b.baseAddress!, length: b.count, info, port: 0, snapshot: s, learnedMAC: $0.baseAddress!) }
        }
        XCTAssertEqual(m, 14 + 40 + 32)
        XCTAssertEqual(learned, hostMAC)
        let na = Array(f.prefix(m))
        XCTAssertEqual(Array(na[0..<6]), hostMAC)
        XCTAssertEqual(na[54], 136)
        XCTAssertEqual(na[58] & 0xE0, 0xE0, "router, solicited, override")
        XCTAssertEqual(Array(na[62..<78]), addr("2001:db8:1::1"), "target")
        XCTAssertEqual(Array(na[78..<80]), [2, 1])
        XCTAssertEqual(Array(na[80..<86]), routerMAC)
        XCTAssertEqual(Array(na[38..<54]), addr("2001:db8:1::2"))
        let ok = na.withUnsafeBytes { Checksum.fold(Checksum.sum($0.baseAddress! + 54, 32, initial: Checksum.pseudoHeader6(addresses: $0.baseAddress! + 22, proto: 58, length: 32))) }
        XCTAssertEqual(ok, 0xFFFF)
        // And the advertisement teaches whoever reads it.
        var info2 = PacketInfo()
        var target = [UInt8](repeating: 0, count: 16), mac = [UInt8](repeating: 0, count: 6)
        let learnedOK = na.withUnsafeBytes { b -> Bool in
            _ = Parser.parse(b.baseAddress!, length: b.count, into: &info2)
            return target.withUnsafeMutableBytes { t in mac.withUnsafeMutableBytes { NeighborDiscovery.advertised(b.baseAddress!, info2, target: t.baseAddress!, mac: $0.baseAddress!) } }
        }
        XCTAssertTrue(learnedOK)
        XCTAssertEqual(target, addr("2001:db8:1::1"))
        XCTAssertEqual(mac, routerMAC)
        // A solicitation with a hop limit below 255 is not answered (RFC 4861 7.1.1).
        var bad = solicitation
        bad[21] = 64
        var info3 = PacketInfo()
        let none = bad.withUnsafeMutableBytes { b -> Int in
            _ = Parser.parse(b.baseAddress!, length: b.count, into: &info3)
            return learned.withUnsafeMutableBytes { NeighborDiscovery.neighborAdvertisement(b.baseAddress!, length: b.count, info3, port: 0, snapshot: s, learnedMAC: $0.baseAddress!) }
        }
        XCTAssertEqual(none, 0)
        // The untouched solicitation is answered (so the refusal above was the hop limit's).
        var good = solicitation
        var info4 = PacketInfo()
        let answered = good.withUnsafeMutableBytes { b -> Int in
            _ = Parser.parse(b.baseAddress!, length: b.count, into: &info4)
            return learned.withUnsafeMutableBytes { NeighborDiscovery.neighborAdvertisement(b.baseAddress!, length: b.count, info4, port: 0, snapshot: s, learnedMAC: $0.baseAddress!) }
        }
        XCTAssertEqual(answered, 86)
    }
}
