#if canImport(Glibc)
import Glibc
#endif

/// Errors from parsing and from table operations. Each says what is wrong.
public enum TableError: Error, Equatable, CustomStringConvertible {
    case malformedPrefix(String)
    case hostBitsSet(String)
    case capacityExceeded(needed: Int, free: Int, capacity: Int)
    case routeNotFound(String)
    case nextHopOutOfRange(UInt32)
    case regionTooSmall(needed: Int, got: Int)
    case badRegion(String)
    case tableNotEmpty
    case invalidMaglev(String)

    public var description: String {
        switch self {
        case .malformedPrefix(let s): return "malformed prefix '\(s)': expected ADDRESS/LENGTH"
        case .hostBitsSet(let s): return "prefix '\(s)' has host bits set"
        case .capacityExceeded(let needed, let free, let capacity):
            return "LPM tbl8 capacity exceeded: route needs \(needed) more group(s), \(free) of \(capacity) free; table unchanged"
        case .routeNotFound(let s): return "route \(s) is not in the table"
        case .nextHopOutOfRange(let nh): return "next hop \(nh) is out of range (maximum \(LPMEntry.maxNextHop))"
        case .regionTooSmall(let needed, let got): return "memory region too small: need \(needed) bytes, got \(got)"
        case .badRegion(let why): return "not a valid LPM region: \(why)"
        case .tableNotEmpty: return "bulk build needs an empty table"
        case .invalidMaglev(let why): return "invalid Maglev input: \(why)"
        }
    }
}

/// An IPv4 prefix; `address` in host byte order, host bits zero.
public struct IPv4Prefix: Hashable, Sendable, CustomStringConvertible {
    public let address: UInt32
    public let length: UInt8

    public init(address: UInt32, length: UInt8) throws {
        precondition(length <= 32)
        let mask: UInt32 = length == 0 ? 0 : ~0 << (32 - UInt32(length))
        guard address & ~mask == 0 else {
            throw TableError.hostBitsSet("\(IPv4Prefix.format(address))/\(length)")
        }
        self.address = address
        self.length = length
    }

    /// Parses "192.0.2.0/24" (bytes, no allocation: a full table is a million of them).
    public init(_ text: some StringProtocol) throws {
        var address: UInt32 = 0, part: UInt32 = 0, digits = 0, dots = 0
        var length: UInt32 = 0, lengthDigits = 0, slash = false
        for c in text.utf8 {
            if slash {
                guard c >= 0x30 && c <= 0x39, lengthDigits < 3 else { throw TableError.malformedPrefix(String(text)) }
                length = length * 10 + UInt32(c - 0x30)
                lengthDigits += 1
            } else if c == 0x2F {
                guard dots == 3, digits > 0 else { throw TableError.malformedPrefix(String(text)) }
                address = address << 8 | part
                slash = true
            } else if c == 0x2E {
                guard digits > 0, dots < 3 else { throw TableError.malformedPrefix(String(text)) }
                address = address << 8 | part
                part = 0; digits = 0; dots += 1
            } else if c >= 0x30 && c <= 0x39 {
                // As inet_pton: at most 255, no leading zeros.
                guard !(digits > 0 && part == 0) else { throw TableError.malformedPrefix(String(text)) }
                part = part * 10 + UInt32(c - 0x30)
                digits += 1
                guard part <= 255 else { throw TableError.malformedPrefix(String(text)) }
            } else {
                throw TableError.malformedPrefix(String(text))
            }
        }
        guard slash, lengthDigits > 0, length <= 32 else { throw TableError.malformedPrefix(String(text)) }
        try self.init(address: address, length: UInt8(length))
    }

    public static func parseAddress(_ s: some StringProtocol) -> UInt32? {
        var a = in_addr()
        let ok = String(s).withCString { inet_pton(AF_INET, $0, &a) }
        return ok == 1 ? UInt32(bigEndian: a.s_addr) : nil
    }

    public static func format(_ a: UInt32) -> String {
        "\(a >> 24).\((a >> 16) & 0xff).\((a >> 8) & 0xff).\(a & 0xff)"
    }

    /// First and last address covered.
    public var first: UInt32 { address }
    public var last: UInt32 { length == 0 ? UInt32.max : address | ~(~0 << (32 - UInt32(length))) }

    public var description: String { "\(IPv4Prefix.format(address))/\(length)" }
}

/// An IPv6 prefix; `address` as a 128-bit integer, most significant byte first on the wire.
public struct IPv6Prefix: Hashable, Sendable, CustomStringConvertible {
    public let address: UInt128
    public let length: UInt8

    public init(address: UInt128, length: UInt8) throws {
        precondition(length <= 128)
        let mask: UInt128 = length == 0 ? 0 : ~0 << (128 - UInt128(length))
        guard address & ~mask == 0 else {
            throw TableError.hostBitsSet("\(IPv6Prefix.format(address))/\(length)")
        }
        self.address = address
        self.length = length
    }

    /// Parses "2001:db8::/32".
    public init(_ text: some StringProtocol) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let len = UInt8(parts[1]), len <= 128,
              let addr = IPv6Prefix.parseAddress(parts[0]) else {
            throw TableError.malformedPrefix(String(text))
        }
        try self.init(address: addr, length: len)
    }

    public static func parseAddress(_ s: some StringProtocol) -> UInt128? {
        var bytes = (UInt64(0), UInt64(0))
        let ok = String(s).withCString { cs in
            withUnsafeMutableBytes(of: &bytes) { inet_pton(AF_INET6, cs, $0.baseAddress) }
        }
        guard ok == 1 else { return nil }
        return UInt128(UInt64(bigEndian: bytes.0)) << 64 | UInt128(UInt64(bigEndian: bytes.1))
    }

    public static func format(_ a: UInt128) -> String {
        var bytes = (UInt64(UInt64(truncatingIfNeeded: a >> 64).bigEndian), UInt64(UInt64(truncatingIfNeeded: a).bigEndian))
        var buf = [CChar](repeating: 0, count: 64)
        _ = withUnsafeBytes(of: &bytes) { inet_ntop(AF_INET6, $0.baseAddress, &buf, 64) }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Writes the address in network byte order into 16 bytes at `p`.
    @inlinable
    public static func store(_ a: UInt128, to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: UInt64(truncatingIfNeeded: a >> 64).bigEndian, as: UInt64.self)
        (p + 8).storeBytes(of: UInt64(truncatingIfNeeded: a).bigEndian, as: UInt64.self)
    }

    public var first: UInt128 { address }
    public var last: UInt128 { length == 0 ? UInt128.max : address | ~(~0 << (128 - UInt128(length))) }

    public var description: String { "\(IPv6Prefix.format(address))/\(length)" }
}
