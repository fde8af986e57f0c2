import Foundation
import Hummingbird
import HummingbirdTesting
import KeelAPI
import KeelCompiler
import KeelControl
import XCTest

func sampleBGP() -> BGP {
    BGP(localAS: 65001, holdTime: 3, peers: [BGPPeer(address: "10.1.0.254", remoteAS: 65000, password: "s3cret", bfd: true),
                                             BGPPeer(address: "2001:db8:1::fe", remoteAS: 65000)])
}

/// The BGP section: stored with its own revisions, validated with the rest,
/// the announcements it gives, BIRD's configuration, BIRD's session list,
/// the fleet fingerprint, and the API and drain.
final class BGPTests: XCTestCase {
    func makePlane() async throws -> (ControlPlane, Store) {
        let store = try Store()
        let plane = ControlPlane(store: store, sink: RecordingSink(), limits: .small)
        _ = try await plane.start()
        return (plane, store)
    }

    func testStoredWithRevisionsDiffAndRollback() async throws {
        let (plane, store) = try await makePlane()
        var c = sampleConfig()
        c.bgp = sampleBGP()
        let r1 = try await plane.apply(.replace(c), author: "t")
        XCTAssertEqual(try store.configuration(), c)
        // Drain: one changed row, the peers untouched.
        let r2 = try await plane.apply(.setDrain(true), author: "t")
        XCTAssertEqual(r2.changed, 1)
        XCTAssertEqual(try store.configuration().bgp?.drain, true)
        XCTAssertEqual(try store.configuration().bgp?.peers, c.bgp?.peers)
        let diff = try store.diff(from: r1.revision, to: r2.revision)
        XCTAssertEqual(diff.map(\.kind), ["bgp"])
        // A peer removed: one peer row ended.
        var b = sampleBGP()
        b.peers.removeLast()
        b.drain = true
        let r3 = try await plane.apply(.setBGP(b), author: "t")
        XCTAssertEqual(try store.diff(from: r2.revision, to: r3.revision).map { "\($0.kind) \($0.key) \($0.op)" }, ["peer 2001:db8:1::fe delete"])
        // Rollback brings the whole section back, as it was.
        _ = try await plane.apply(.rollback(to: r1.revision), author: "t")
        XCTAssertEqual(try store.configuration().bgp, sampleBGP())
        // Removed: nothing announced; drain then has nothing to drain (404).
        _ = try await plane.apply(.setBGP(nil), author: "t")
        XCTAssertNil(try store.configuration().bgp)
        do { _ = try await plane.apply(.setDrain(true), author: "t"); XCTFail("drain without BGP") } catch ChangeError.notFound {}
        // Nothing about BGP reaches the tables: the published generation did not move for it.
        let g = await plane.publishedGeneration
        _ = try await plane.apply(.setBGP(sampleBGP()), author: "t")
        let after = await plane.publishedGeneration
        XCTAssertEqual(g, after)
    }

    func testInvalidSectionsChangeNothing() async throws {
        let (plane, store) = try await makePlane()
        _ = try await plane.apply(.replace(sampleConfig()), author: "t")
        let before = try store.latestRevision()
        let cases: [(BGP, String)] = [
            (BGP(localAS: 0), "bgp.local_as"),
            (BGP(localAS: 65001, routerID: "2001:db8::1"), "bgp.router_id"),
            (BGP(localAS: 65001, holdTime: 1), "bgp.hold_time"),
            (BGP(localAS: 65001, peers: [BGPPeer(address: "192.0.2.1", remoteAS: 65000)]), "bgp.peers[0].address"),
            (BGP(localAS: 65001, peers: [BGPPeer(address: "10.1.0.1", remoteAS: 65000)]), "bgp.peers[0].address"),
            (BGP(localAS: 65001, peers: [BGPPeer(address: "10.1.0.9", remoteAS: 65000), BGPPeer(address: "10.1.0.9", remoteAS: 65002)]), "bgp.peers[1].address"),
            (BGP(localAS: 65001, peers: [BGPPeer(address: "10.1.0.9", remoteAS: -1)]), "bgp.peers[0].remote_as"),
            (BGP(localAS: 65001, peers: [BGPPeer(address: "10.1.0.9", remoteAS: 65000, password: "a\";} protocol x {")]), "bgp.peers[0].password"),
        ]
        for (b, field) in cases {
            do {
                _ = try await plane.apply(.setBGP(b), author: "t")
                XCTFail("\(b) accepted")
            } catch ChangeError.invalid(let e) {
                XCTAssertTrue(e.issues.contains { $0.path == field }, "\(e) should name \(field)")
            }
            // The same section inside a whole configuration is refused too.
            var c = sampleConfig()
            c.bgp = b
            do { _ = try await plane.apply(.replace(c), author: "t"); XCTFail("\(b) accepted in a configuration") } catch ChangeError.invalid {}
            do { _ = try await plane.dryRun(c); XCTFail("dry run of \(b) accepted") } catch ChangeError.invalid {}
        }
        XCTAssertEqual(try store.latestRevision(), before)
        XCTAssertNil(try store.configuration().bgp)
    }

    func testAnnouncedSet() {
        var c = sampleConfig()
        c.bgp = sampleBGP()
        c.vips.append(VIP(id: 2, address: "2001:db8:100::10", port: 80, tableSize: 251, backends: [Backend(id: 21, address: "2001:db8:1::21")]))
        c.vips.append(VIP(id: 3, address: "203.0.113.10", protocol: "udp", port: 53, tableSize: 251, backends: [Backend(id: 31, address: "10.2.0.31")]))
        XCTAssertEqual(Announcer.announced(c, health: [:], dataplaneFresh: true), ["2001:db8:100::10", "203.0.113.10"])
        // Nothing while the data plane is not running, or drained, or without a BGP section.
        XCTAssertEqual(Announcer.announced(c, health: [:], dataplaneFresh: false), [])
        var d = c
        d.bgp?.drain = true
        XCTAssertEqual(Announcer.announced(d, health: [:], dataplaneFresh: true), [])
        d = c
        d.bgp = nil
        XCTAssertEqual(Announcer.announced(d, health: [:], dataplaneFresh: true), [])
        // A VIP whose backends are all down (checked) or drained/disabled is withdrawn; one healthy backend is enough.
        XCTAssertEqual(Announcer.announced(c, health: [21: false], dataplaneFresh: true), ["203.0.113.10"])
        d = c
        d.vips[1].backends[0].state = "drain"
        XCTAssertEqual(Announcer.announced(d, health: [:], dataplaneFresh: true), ["203.0.113.10"])
        XCTAssertEqual(Announcer.announced(c, health: [11: false, 12: false, 31: false, 21: false], dataplaneFresh: true), [])
        XCTAssertEqual(Announcer.announced(c, health: [11: false, 31: false], dataplaneFresh: true), ["2001:db8:100::10", "203.0.113.10"])
    }

    func testBirdConfiguration() {
        var c = sampleConfig()
        c.bgp = sampleBGP()
        let t = Announcer.birdConfig(c, announced: ["203.0.113.10", "2001:db8:100::10"])
        XCTAssertTrue(t.contains("router id 10.1.0.1;"), t) // the first IPv4 port address
        XCTAssertTrue(t.contains("route 203.0.113.10/32 blackhole;"), t)
        XCTAssertTrue(t.contains("route 2001:db8:100::10/128 blackhole;"), t)
        XCTAssertTrue(t.contains("neighbor 10.1.0.254 as 65000;"), t)
        XCTAssertTrue(t.contains("local as 65001;"), t)
        XCTAssertTrue(t.contains("hold time 3;"), t)
        XCTAssertTrue(t.contains("keepalive time 1;"), t)
        XCTAssertTrue(t.contains("password \"s3cret\";"), t)
        XCTAssertTrue(t.contains("bfd on;"), t)
        XCTAssertTrue(t.contains("protocol bfd"), t)
        XCTAssertTrue(t.contains("ipv4 { import none; export where proto = \"keel_vips4\"; next hop self; };"), t)
        XCTAssertTrue(t.contains("ipv6 { import none; export where proto = \"keel_vips6\"; next hop self; };"), t)
        XCTAssertFalse(t.contains("protocol kernel"), "nothing is installed in the appliance's kernel")
        // Withdrawn: the same peers, no routes.
        let empty = Announcer.birdConfig(c, announced: [])
        XCTAssertFalse(empty.contains("route "), empty)
        XCTAssertTrue(empty.contains("neighbor 10.1.0.254 as 65000;"), empty)
        c.bgp?.routerID = "192.0.2.7"
        XCTAssertTrue(Announcer.birdConfig(c, announced: []).contains("router id 192.0.2.7;"))
    }

    func testSessionsFromBirdc() {
        let out = """
        BIRD 2.0.12 ready.
        Name       Proto      Table      State  Since         Info
        device1    Device     ---        up     10:00:00.000
        keel_vips4 Static     master4    up     10:00:00.000
        peer0      BGP        ---        up     10:00:01.000  Established
          Description:    10.1.0.254
          BGP state:          Established
            Neighbor address: 10.1.0.254
            Neighbor AS:      65000
        peer1      BGP        ---        start  10:00:00.000  Active        Socket: Connection refused
          Description:    2001:db8:1::fe
          BGP state:          Active
            Neighbor address: 2001:db8:1::fe

        """
        let s = Announcer.sessions(out)
        XCTAssertEqual(s.map(\.name), ["peer0", "peer1"])
        XCTAssertEqual(s.map(\.peer), ["10.1.0.254", "2001:db8:1::fe"])
        XCTAssertEqual(s.map(\.established), [true, false])
        XCTAssertEqual(s[1].state, "start")
    }

    func testAPIAndStatus() async throws {
        let store = try Store()
        let board = Board()
        let plane = ControlPlane(store: store, sink: RecordingSink(), limits: .small, board: board)
        _ = try await plane.start()
        let tokens = try Tokens.parse("admin admin \(APITests.admin)\nmonitor read \(APITests.reader)\n")
        let announcer = Announcer(store: store, board: board, statsPath: nil, settings: .init(), logger: .init(label: "t"))
        let deps = APIDependencies(plane: plane, store: store, tokens: tokens, board: board, tablesPath: nil, statsPath: nil, announcer: announcer)
        let app = Application(router: buildRouter(deps))
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/config", method: .put, headers: headers(), body: body(sampleConfig())) { r in XCTAssertEqual(r.status, .ok) }
            try await client.execute(uri: "/v1/bgp", method: .get, headers: headers()) { r in XCTAssertEqual(r.status, .notFound) }
            try await client.execute(uri: "/v1/drain", method: .post, headers: headers()) { r in XCTAssertEqual(r.status, .notFound) }
            // Invalid: 422 naming the field; unknown field: 400.
            try await client.execute(uri: "/v1/bgp", method: .put, headers: headers(), body: body(BGP(localAS: 65001, peers: [BGPPeer(address: "192.0.2.1", remoteAS: 1)]))) { r in
                XCTAssertEqual(r.status, .unprocessableContent)
                XCTAssertTrue(String(buffer: r.body).contains("bgp.peers[0].address"), String(buffer: r.body))
            }
            try await client.execute(uri: "/v1/bgp", method: .put, headers: headers(), body: ByteBuffer(string: #"{"local_as": 65001, "peer": []}"#)) { r in
                XCTAssertEqual(r.status, .badRequest)
            }
            try await client.execute(uri: "/v1/bgp", method: .put, headers: headers(), body: body(sampleBGP())) { r in
                XCTAssertEqual(r.status, .ok, String(buffer: r.body))
                XCTAssertEqual(json(r)["changed"], .number(3))
            }
            try await client.execute(uri: "/v1/bgp", method: .get, headers: headers(APITests.reader)) { r in
                XCTAssertEqual(try JSONDecoder().decode(BGP.self, from: Data(buffer: r.body)), sampleBGP())
            }
            try await client.execute(uri: "/v1/drain", method: .post, headers: headers(APITests.reader)) { r in XCTAssertEqual(r.status, .forbidden) }
            try await client.execute(uri: "/v1/drain", method: .post, headers: headers()) { r in XCTAssertEqual(json(r)["changed"], .number(1)) }
            XCTAssertEqual(try store.configuration().bgp?.drain, true)
            try await client.execute(uri: "/v1/drain", method: .delete, headers: headers()) { r in XCTAssertEqual(json(r)["changed"], .number(1)) }
            announcer.tick()
            try await client.execute(uri: "/v1/status", method: .get, headers: headers()) { r in
                let v = json(r)
                XCTAssertEqual(v["bgp"]?["configured"], .bool(true))
                XCTAssertEqual(v["bgp"]?["drained"], .bool(false))
                // No data plane here: nothing is announced.
                XCTAssertEqual(v["bgp"]?["announced"], .array([]))
                XCTAssertEqual(v["fingerprint"]?.string?.count, 16)
            }
            try await client.execute(uri: "/v1/bgp", method: .delete, headers: headers()) { r in XCTAssertEqual(r.status, .ok) }
            try await client.execute(uri: "/v1/bgp", method: .delete, headers: headers()) { r in XCTAssertEqual(r.status, .notFound) }
        }
    }

    /// The fingerprint follows what decides a flow's backend, and nothing else.
    func testFingerprint() async throws {
        let (plane, store) = try await makePlane()
        _ = try await plane.apply(.replace(sampleConfig()), author: "t")
        let f = try Fingerprints().of(store)
        // Another appliance of the fleet: other ports, routes and peers, the same VIPs.
        var other = sampleConfig(routes: 7)
        other.ports[0].addresses = ["10.1.0.2/24", "2001:db8:1::2/64"]
        other.bgp = sampleBGP()
        let (plane2, store2) = try await makePlane()
        _ = try await plane2.apply(.replace(other), author: "t")
        XCTAssertEqual(try Fingerprints().of(store2), f)
        _ = try await plane2.apply(.setBackend(vip: 1, Backend(id: 12, address: "10.2.0.12", weight: 3)), author: "t")
        XCTAssertNotEqual(try Fingerprints().of(store2), f)
    }
}

extension JSONValue {
    var string: String? { if case .string(let s) = self { return s }; return nil }
}
