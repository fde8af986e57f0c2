import Foundation
import XCTest
import KeelAPI
import KeelCompiler
import KeelPacket
import KeelTables
import KeelTestData

/// Frames through the real keel-dataplane process: DPDK net_pcap ports read
/// an input capture and write what the data plane sends.
final class DataplanePcapTests: XCTestCase {
    static func writePcap(_ path: String, _ frames: [[UInt8]]) {
        var d = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        u32(0xa1b2c3d4); u16(2); u16(4); u32(0); u32(0); u32(65535); u32(1)
        for (i, f) in frames.enumerated() {
            u32(UInt32(i)); u32(0); u32(UInt32(f.count)); u32(UInt32(f.count))
            d.append(contentsOf: f)
        }
        FileManager.default.createFile(atPath: path, contents: d)
    }

    static func readPcap(_ path: String) -> [[UInt8]] {
        guard let d = FileManager.default.contents(atPath: path), d.count >= 24 else { return [] }
        let b = [UInt8](d)
        func u32(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 | Int(b[o + 2]) << 16 | Int(b[o + 3]) << 24 }
        var out: [[UInt8]] = []
        var o = 24
        while o + 16 <= b.count {
            let n = u32(o + 8)
            out.append(Array(b[(o + 16)..<(o + 16 + n)]))
            o += 16 + n
        }
        return out
    }

    func testFramesThroughTheDataplane() throws {
        var config = ConfigValidationTests.base
        config.vips = []
        let forward = PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", proto: 17, ttl: 64)
        let echo = PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.1.0.1", proto: 1)
        let expired = PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", ttl: 1)
        var badChecksum = forward
        badChecksum[24] ^= 0xFF
        let arpRequest = PacketBuilder.ethernet(type: 0x0806, dst: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
            + [0, 1, 8, 0, 6, 4, 0, 1] + PacketBuilder.macA + [10, 1, 0, 2] + [0, 0, 0, 0, 0, 0] + [10, 1, 0, 1]
        let toUnknownNeighbor = PacketBuilder.ipv4(src: "10.1.0.2", dst: "10.2.0.77")
        for pipeline in [false, true] {
            let r = try DataplaneRun.run(config, inputs: [[forward, echo, expired, badChecksum, arpRequest, toUnknownNeighbor], []],
                                         seconds: 2, pipeline: pipeline,
                                         extraYAML: "neighbors: {retries: 2, retry_ms: 200}\n")
            XCTAssertEqual(r.status, 0, r.log)
            let out1 = r.outputs[1], out0 = r.outputs[0]
            // Port 1: the routed frame, and two ARP requests for the unknown on-link neighbor (first try, one retry).
            let routed = out1.filter { $0[12] == 0x08 && $0[13] == 0x00 }
            let arps = out1.filter { $0[12] == 0x08 && $0[13] == 0x06 }
            XCTAssertEqual(routed.count, 1, r.log)
            XCTAssertEqual(arps.count, 2, r.log)
            if let f = routed.first {
                XCTAssertEqual(Array(f[0..<6]), [2, 0, 0, 0, 0, 0xfe], "to the default gateway's static neighbor MAC")
                XCTAssertEqual(Array(f[6..<12]), [2, 0, 0, 0, 0, 2], "from port p1")
                let expected = PacketBuilder.ipv4(src: "10.1.0.2", dst: "203.0.113.5", proto: 17, ttl: 63)
                XCTAssertEqual(Array(f[12...]), Array(expected[12...]))
            }
            if let a = arps.first {
                XCTAssertEqual(Array(a[28..<32]), [10, 2, 0, 1], "asked from port p1's address")
                XCTAssertEqual(Array(a[38..<42]), [10, 2, 0, 77])
            }
            // Port 0: echo reply, time exceeded (from 10.1.0.1), ARP reply, then host unreachable when nobody answered.
            XCTAssertEqual(out0.count, 4, r.log)
            if out0.count == 4 {
                XCTAssertEqual(out0[0][34], 0, "ICMP echo reply")
                XCTAssertEqual(out0[1][34], 11, "ICMP time exceeded")
                XCTAssertEqual(Array(out0[1][26..<34]), [10, 1, 0, 1, 10, 1, 0, 2])
                XCTAssertEqual(Array(out0[1][0..<6]), PacketBuilder.macA, "back to the sender")
                XCTAssertEqual(Array(out0[2][20..<22]), [0, 2], "ARP reply")
                XCTAssertEqual(Array(out0[2][22..<28]), [2, 0, 0, 0, 0, 1], "port p0's MAC")
                XCTAssertEqual(Array(out0[3][34..<36]), [3, 1], "ICMP host unreachable after the neighbor timed out")
            }
            XCTAssertEqual(r.port(0, "rx_packets"), 6, r.log)
            XCTAssertEqual(r.drops("neighborUnresolved"), 1, r.log)
            XCTAssertEqual(r.drops("ipv4BadChecksum"), 1, r.log)
            XCTAssertEqual(r.drops("ttlExpired"), 1, r.log)
            XCTAssertEqual(r.event("held"), 1, r.log)
            XCTAssertEqual(r.event("held_expired"), 1, r.log)
        }
    }
}
