import XCTest
import KeelForward
import KeelPacket
import KeelTables
import KeelTestData

final class ICMPTests: XCTestCase {
    func parsed(_ f: [UInt8]) -> PacketInfo {
        var info = PacketInfo()
        XCTAssertEqual(f.withUnsafeBytes { Parser.parse($0.baseAddress!, length: $0.count, into: &info) }, DropReason.none)
        return info
    }

    /// The ICMP (or, with the IPv6 pseudo-header, ICMPv6) checksum verifies.
    func icmpValid(_ f: [UInt8], _ info: PacketInfo) -> Bool {
        f.withUnsafeBytes { b in
            let l4 = Int(info.l4Offset), end = Int(info.l3Offset) + Int(info.l3Length)
            let initial = info.l3 == PacketInfo.ipv6
                ? Checksum.pseudoHeader6(addresses: b.baseAddress! + Int(info.l3Offset) + 8, proto: 58, length: end - l4) : 0
            return Checksum.fold(Checksum.sum(b.baseAddress! + l4, end - l4, initial: initial)) == 0xFFFF
        }
    }

    func testEchoReplyIPv4() {
        var f = PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.1.0.1", proto: 1, ttl: 9, srcPort: 77)
        let info = parsed(f)
        f.withUnsafeMutableBytes { ICMP.echoReply($0.baseAddress!, info) }
        let r = parsed(f)
        XCTAssertEqual(f[34], 0, "type echo reply")
        XCTAssertTrue(icmpValid(f, r))
        XCTAssertEqual(Array(f[26..<30]), [10, 1, 0, 1])
        XCTAssertEqual(Array(f[30..<34]), [10, 1, 0, 2])
        XCTAssertEqual(Array(f[0..<6]), PacketBuilder.macA)
        XCTAssertEqual(f[22], 64)
        XCTAssertEqual(Array(f[38..<40]), [0, 77], "identifier kept")
    }

    func testEchoReplyIPv6() {
        var f = PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:1::1", proto: 58)
        let info = parsed(f)
        f.withUnsafeMutableBytes { ICMP.echoReply($0.baseAddress!, info) }
        let r = parsed(f)
        XCTAssertEqual(f[54], 129)
        XCTAssertTrue(icmpValid(f, r))
        XCTAssertEqual(IPAddress.load(from: f.withUnsafeBytes { $0.baseAddress! + 22 }), IPAddress("2001:db8:1::1"))
    }

    func buildError(_ f: [UInt8], type: UInt8, code: UInt8, mtu: UInt16 = 0, source: String) -> [UInt8] {
        let info = parsed(f)
        var out = [UInt8](repeating: 0, count: 2048)
        var src = [UInt8](repeating: 0, count: 16)
        src.withUnsafeMutableBytes { IPAddress(source)!.store(to: $0.baseAddress!) }
        let n = f.withUnsafeBytes { p in
            out.withUnsafeMutableBytes { o in
                ICMP.error(p.baseAddress!, info, type: type, code: code, mtu: mtu, source: src.withUnsafeBytes { $0.baseAddress! },
                           srcMAC: PacketBuilder.macB.withUnsafeBytes { $0.baseAddress! },
                           dstMAC: PacketBuilder.macA.withUnsafeBytes { $0.baseAddress! }, into: o.baseAddress!)
            }
        }
        return Array(out.prefix(n))
    }

    func testTimeExceededIPv4QuotesTheDatagram() {
        let original = PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", proto: 17, ttl: 1)
        let e = buildError(original, type: 11, code: 0, source: "10.1.0.1")
        let info = parsed(e)
        XCTAssertEqual(info.l4Proto, 1)
        XCTAssertTrue(icmpValid(e, info))
        XCTAssertEqual(e[34], 11)
        XCTAssertEqual(Array(e[26..<30]), [10, 1, 0, 1], "from the router's address")
        XCTAssertEqual(Array(e[30..<34]), [10, 1, 0, 2], "to the original source")
        XCTAssertEqual(Array(e[42...]), Array(original[14...]), "the whole (small) datagram quoted")
    }

    func testFragmentationNeededCarriesMTUAndStaysWithin576() {
        let original = PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", payload: [UInt8](repeating: 1, count: 1600), df: true)
        let e = buildError(original, type: 3, code: 4, mtu: 1500, source: "10.1.0.1")
        let info = parsed(e)
        XCTAssertTrue(icmpValid(e, info))
        XCTAssertEqual(e.count - 14, 576)
        XCTAssertEqual(Array(e[40..<42]), [0x05, 0xDC], "next-hop MTU 1500")
    }

    func testPacketTooBigIPv6() {
        let original = PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", payload: [UInt8](repeating: 1, count: 1600))
        let e = buildError(original, type: 2, code: 0, mtu: 1500, source: "2001:db8:1::1")
        let info = parsed(e)
        XCTAssertTrue(icmpValid(e, info))
        XCTAssertEqual(e.count - 14, 1280)
        XCTAssertEqual(Array(e[58..<62]), [0, 0, 0x05, 0xDC])
        XCTAssertEqual(e[54], 2)
    }

    func testNoErrorsAboutErrorsFragmentsOrMulticast() {
        func may(_ f: [UInt8]) -> Bool { let i = parsed(f); return f.withUnsafeBytes { ICMP.mayReportError($0.baseAddress!, i) } }
        XCTAssertTrue(may(PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5")))
        XCTAssertTrue(may(PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", proto: 1)), "echo request")
        let timeExceeded = buildError(PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", ttl: 1), type: 11, code: 0, source: "10.9.0.1")
        XCTAssertFalse(may(timeExceeded), "never an error about an error")
        XCTAssertFalse(may(PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", fragment: 0x0010)))
        XCTAssertFalse(may(PacketBuilder.ipv4(src: "10.1.0.2", dst: "239.1.1.1")))
        XCTAssertFalse(may(PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "ff05::1")))
        XCTAssertTrue(may(PacketBuilder.ipv6(src: "2001:db8:1::2", dst: "2001:db8:ff::9", proto: 58)), "echo request")
    }

    func testTokenBucket() {
        var b = TokenBucket(rate: 100, burst: 10, now: 0)
        XCTAssertEqual((0..<20).filter { _ in b.take(now: 0) }.count, 10)
        XCTAssertFalse(b.take(now: 5_000_000), "0.5 token after 5 ms")
        XCTAssertEqual((0..<20).filter { _ in b.take(now: 50_000_000) }.count, 5, "5 tokens after 50 ms")
        XCTAssertEqual((0..<50).filter { _ in b.take(now: 10_000_000_000) }.count, 10, "capped at the burst")
    }
}
