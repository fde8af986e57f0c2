import XCTest
import KeelAPI
import KeelCompiler
import KeelTables

/// Every invalid configuration is refused whole, with a message naming the field.
final class ConfigValidationTests: XCTestCase {
    static let base = Configuration(
        ports: [Port(name: "p0", mac: "02:00:00:00:00:01", addresses: ["10.1.0.1/24", "2001:db8:1::1/64"]),
                Port(name: "p1", mac: "02:00:00:00:00:02", addresses: ["10.2.0.1/24", "2001:db8:2::1/64"])],
        routes: [Route(prefix: "0.0.0.0/0", nextHops: [NextHop(gateway: "10.2.0.254")]),
                 Route(prefix: "198.51.100.0/24", nextHops: [NextHop(gateway: "10.2.0.2"), NextHop(gateway: "10.2.0.3")]),
                 Route(prefix: "2001:db8:ff::/48", nextHops: [NextHop(gateway: "2001:db8:2::2")])],
        neighbors: [Neighbor(address: "10.2.0.254", mac: "02:00:00:00:00:fe", port: "p1")],
        vips: [VIP(id: 1, address: "192.0.2.10", protocol: "tcp", port: 80, tableSize: 4099,
                   backends: [Backend(id: 1, address: "10.2.0.11"), Backend(id: 2, address: "10.2.0.12", weight: 2)])])

    func issues(_ mutate: (inout Configuration) -> Void) -> [ConfigIssue] {
        var c = ConfigValidationTests.base
        mutate(&c)
        let compiler = Compiler(limits: .small)
        do {
            _ = try compiler.replace(with: c)
            return []
        } catch let e as ConfigError {
            XCTAssertEqual(compiler.routeCount, 0, "a refused configuration changes nothing")
            return e.issues
        } catch {
            XCTFail("\(error)")
            return []
        }
    }

    func assertIssue(_ path: String, _ fragment: String, _ mutate: (inout Configuration) -> Void, line: UInt = #line) {
        let found = issues(mutate)
        XCTAssertTrue(found.contains { $0.path == path && $0.message.contains(fragment) },
                      "expected \(path): …\(fragment)…, got \(found)", line: line)
    }

    func testBaseIsValid() throws {
        let compiler = Compiler(limits: .small)
        let changes = try compiler.replace(with: ConfigValidationTests.base)
        XCTAssertFalse(changes.isEmpty)
        XCTAssertEqual(compiler.routeCount, 3)
        // Local /32s, connected /24s and the three routes.
        XCTAssertEqual(compiler.state.routes4.count, 2 + 2 + 2)
        XCTAssertEqual(compiler.state.routes6.count, 2 + 2 + 1)
    }

    func testRoutes() {
        assertIssue("routes[1].prefix", "has host bits set (did you mean 198.51.100.0/24?)") { $0.routes[1].prefix = "198.51.100.7/24" }
        assertIssue("routes[1].prefix", "is not a prefix") { $0.routes[1].prefix = "198.51.100/24" }
        assertIssue("routes[3].prefix", "is also routes[1]") { $0.routes.append(Route(prefix: "198.51.100.0/24", nextHops: [NextHop(gateway: "10.2.0.9")])) }
        assertIssue("routes[1].next_hops[0].gateway", "not reachable through any port") { $0.routes[1].nextHops[0].gateway = "172.16.0.1" }
        assertIssue("routes[1].next_hops[0].gateway", "not reachable through port p0") { $0.routes[1].nextHops[0].port = "p0" }
        assertIssue("routes[1].next_hops[0].gateway", "is IPv6, the prefix is IPv4") { $0.routes[1].nextHops[0].gateway = "2001:db8:2::9" }
        assertIssue("routes[1].next_hops[0].port", "no port named \"p9\"") { $0.routes[1].nextHops[0] = NextHop(port: "p9") }
        assertIssue("routes[1].next_hops", "at least one next hop") { $0.routes[1].nextHops = [] }
        assertIssue("routes[1].next_hops[1]", "duplicates an earlier next hop") { $0.routes[1].nextHops[1].gateway = "10.2.0.2" }
        assertIssue("routes[1].next_hops", "at most 8") { c in c.routes[1].nextHops = (2...10).map { NextHop(gateway: "10.2.0.\($0)") } }
        assertIssue("routes[3].prefix", "connected subnet") { $0.routes.append(Route(prefix: "10.1.0.0/24", nextHops: [NextHop(gateway: "10.2.0.9")])) }
    }

    func testPorts() {
        assertIssue("ports[1].name", "is also ports[0]") { $0.ports[1].name = "p0" }
        assertIssue("ports[0].mac", "is not a MAC address") { $0.ports[0].mac = "02:00:00:00:01" }
        assertIssue("ports[0].mac", "multicast") { $0.ports[0].mac = "01:00:5e:00:00:01" }
        assertIssue("ports[0].mtu", "outside 68...9216") { $0.ports[0].mtu = 20 }
        assertIssue("ports[1].addresses[0]", "is also on ports[0]") { $0.ports[1].addresses[0] = "10.1.0.1/24" }
        assertIssue("ports[1].addresses[0]", "subnet 10.1.0.0/24 is also on ports[0]") { $0.ports[1].addresses[0] = "10.1.0.2/24" }
        assertIssue("ports[0].addresses[0]", "not an interface address") { $0.ports[0].addresses[0] = "10.1.0.1" }
    }

    func testNeighbors() {
        assertIssue("neighbors[0].port", "no port named") { $0.neighbors[0].port = "x" }
        assertIssue("neighbors[0].mac", "not a unicast MAC") { $0.neighbors[0].mac = "ff:ff:ff:ff:ff:ff" }
        assertIssue("neighbors[1]", "is also neighbors[0]") { $0.neighbors.append($0.neighbors[0]) }
    }

    func testVIPs() {
        assertIssue("vips[1].id", "is also vips[0]") { $0.vips.append(VIP(id: 1, address: "192.0.2.11", backends: [])) }
        assertIssue("vips[1]", "same address, protocol and port as vips[0]") {
            $0.vips.append(VIP(id: 2, address: "192.0.2.10", protocol: "tcp", port: 80, backends: []))
        }
        assertIssue("vips[0].id", "outside 1...16") { $0.vips[0].id = 17 }
        assertIssue("vips[0].table_size", "is not prime") { $0.vips[0].tableSize = 4096 }
        assertIssue("vips[0].table_size", "above the tables' limit of 4099") { $0.vips[0].tableSize = 65537 }
        assertIssue("vips[0].backends[1].weight", "outside 0...65536") { $0.vips[0].backends[1].weight = 70000 }
        assertIssue("vips[0].backends[1].weight", "outside 0...65536") { $0.vips[0].backends[1].weight = -1 }
        assertIssue("vips[0].backends[1].id", "also used by") { $0.vips[0].backends[1].id = 1 }
        assertIssue("vips[0].backends[0].state", "must be up, drain or down") { $0.vips[0].backends[0].state = "maybe" }
        assertIssue("vips[0].protocol", "must be tcp or udp") { $0.vips[0].protocol = "sctp" }
        assertIssue("vips[0].encap.port", "GUE needs a UDP port") { $0.vips[0].encap = Encap(type: "gue") }
        assertIssue("vips[0].hash", "must be 5-tuple, 3-tuple or source") { $0.vips[0].hash = "4-tuple" }
        assertIssue("vips[0].backends[0].address", "IPv6 VIP cannot reach an IPv4 backend over IPIP") { $0.vips[0].address = "2001:db8:ff::10" }
        // GUE carries either family.
        XCTAssertEqual(issues { $0.vips[0].address = "2001:db8:ff::10"; $0.vips[0].encap = Encap(type: "gue", port: 6080) }, [])
        // IPv4 VIP to an IPv6 backend over IPIP (4in6) is fine.
        XCTAssertEqual(issues { $0.vips[0].backends[0].address = "2001:db8:2::11" }, [])
    }

    func testSeveralIssuesReportedTogether() {
        let found = issues {
            $0.routes[0].prefix = "bad"
            $0.vips[0].tableSize = 10
        }
        XCTAssertEqual(found.count, 2, "\(found)")
    }

    func testCodableRoundTripWithSnakeCase() throws {
        let json = #"{"routes":[{"prefix":"10.9.0.0/16","next_hops":[{"gateway":"10.2.0.5"}]}],"vips":[{"id":3,"address":"192.0.2.1","table_size":4099,"encap":{"type":"gue","port":6080},"backends":[{"id":9,"address":"10.2.0.9"}]}]}"#
        let c = try JSONDecoder().decode(Configuration.self, from: Data(json.utf8))
        XCTAssertEqual(c.routes[0].nextHops[0].gateway, "10.2.0.5")
        XCTAssertEqual(c.vips[0].tableSize, 4099)
        XCTAssertEqual(c.vips[0].backends[0].weight, 1)
        XCTAssertEqual(c.vips[0].backends[0].state, "up")
        let again = try JSONDecoder().decode(Configuration.self, from: JSONEncoder().encode(c))
        XCTAssertEqual(again, c)
    }
}
