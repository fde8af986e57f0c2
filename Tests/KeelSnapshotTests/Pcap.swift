import Foundation
import XCTest
import KeelAPI
import KeelCompiler
import KeelPacket
import KeelTables
import KeelTestData

/// pcap files for the net_pcap ports of the data-plane tests (DataplaneRun,
/// DataplaneFixtureTests): what a port replays and what it recorded.
enum Pcap {
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
}
