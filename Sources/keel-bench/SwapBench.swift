import ArgumentParser
import Atomics
import Foundation
import KeelAPI
import KeelCompiler
import KeelTables
import KeelTestData

struct SwapBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swap",
        abstract: "Publishing through the tables file with the full table loaded: one-route changes, full rebuild, reader cost per loop turn."
    )

    @Option(help: "The full table (gzip, one CIDR a line).") var table = FullTable.defaultPath()
    @Option(help: "One-route changes to time.") var changes = 1000
    @Option(help: "Directory for the tables file.") var directory = "/dev/shm"
    @Option(help: "Reader loop turns to time.") var turns = 100_000_000
    @Option(help: "Use only the first N IPv4 and N/5 IPv6 prefixes (default: the whole table).") var routes: Int?
    @Flag(help: "Print one JSON object instead of tables.") var json = false

    func percentile(_ xs: [Double], _ p: Double) -> Double {
        let s = xs.sorted()
        return s[min(s.count - 1, Int(Double(s.count - 1) * p))]
    }

    func run() throws {
        var data = try FullTable.load(path: table)
        if let routes {
            data.v4 = Array(data.v4.prefix(routes))
            data.v6 = Array(data.v6.prefix(routes / 5))
        }
        let limits = SnapshotLimits(ipv4Groups: 4096, ipv6Groups: 65536, nextHopGroups: 4096, ecmpWays: 16, ports: 16,
                                    neighbors: 1024, vips: 64, backendsPerVIP: 1024, maglevMaxSize: 65537)
        var config = Configuration(ports: [
            Port(name: "p0", mac: "02:00:00:00:00:01", addresses: ["10.1.0.1/24", "2001:db8:1::1/64"]),
            Port(name: "p1", mac: "02:00:00:00:00:02", addresses: ["10.2.0.1/16", "2001:db8:2::1/64"]),
        ])
        // Next hops: 64 gateways, by prefix index (the rule of docs/performance.md).
        config.routes.reserveCapacity(data.v4.count + data.v6.count)
        for (i, r) in data.v4.enumerated() {
            config.routes.append(Route(prefix: r.prefix.description, nextHops: [NextHop(gateway: "10.2.\(i % 64).2")]))
        }
        for (i, r) in data.v6.enumerated() {
            config.routes.append(Route(prefix: r.prefix.description, nextHops: [NextHop(gateway: "2001:db8:2::\(i % 64 + 2)")]))
        }
        config.routes.removeAll { $0.prefix == "10.2.0.0/16" }
        let compiler = Compiler(limits: limits)
        let path = "\(directory)/keel-bench-swap-\(getpid())"
        unlink(path)
        defer { unlink(path) }
        let file = try TablesFile.create(path: path, limits: limits, readers: 4)
        let publisher = SnapshotPublisher(file: file)

        var t0 = now()
        let all = try compiler.replace(with: config)
        let compileFullMs = Double(now() - t0) / 1e6
        t0 = now()
        try publisher.publish(all)
        let firstPublishMs = Double(now() - t0) / 1e6
        // A full rebuild of a slot from the compiled state (what a restarted writer does).
        publisher.replaceState(compiler.state)
        t0 = now()
        try publisher.publish([])
        let rebuildMs = Double(now() - t0) / 1e6
        try publisher.publish([]) // the other slot, so both have builders again

        let acceptor = SnapshotAcceptor(file: file)
        t0 = now()
        _ = acceptor.poll()
        let fullVerifyMs = Double(now() - t0) / 1e6

        // One-route changes: compile + write (replaying the previous change on the
        // idle slot first) + seal + swap. No reader lags, so no grace wait.
        var publishUs: [Double] = [], compileUs: [Double] = [], verifyUs: [Double] = []
        var rng = SplitMix64(seed: 77)
        for i in 0..<changes {
            let r = data.v4[Int(rng.next() % UInt64(data.v4.count))]
            let route = Route(prefix: r.prefix.description, nextHops: [NextHop(gateway: "10.2.\(i % 64).3")])
            let c0 = now()
            compiler.begin()
            let ch = try compiler.setRoute(route)
            let c1 = now()
            try publisher.publish(ch)
            compiler.commit()
            let c2 = now()
            _ = acceptor.poll()
            let c3 = now()
            compileUs.append(Double(c1 - c0) / 1e3)
            publishUs.append(Double(c2 - c0) / 1e3)
            verifyUs.append(Double(c3 - c2) / 1e3)
        }

        // Reader: the check at the top of a loop turn.
        var reader = LcoreReader(file: file, line: 0, source: acceptor.accepted)
        reader.online()
        var switches = 0
        t0 = now()
        for _ in 0..<turns where reader.refresh() { switches += 1 }
        let idleNs = Double(now() - t0) / Double(turns)
        reader.offline()
        // With a change every turn: a local source word flipped between two published values.
        let source = UnsafeAtomic<UInt64>.create(file.published.load(ordering: .relaxed))
        defer { source.destroy() }
        var flip = LcoreReader(file: file, line: 1, source: source)
        flip.online()
        let a = source.load(ordering: .relaxed), b = a ^ 1 // the other slot, same generation bits
        let n = turns / 10
        t0 = now()
        for i in 0..<n {
            source.store(i & 1 == 0 ? b : a, ordering: .relaxed)
            if flip.refresh() { switches += 1 }
        }
        let changeNs = Double(now() - t0) / Double(n)
        t0 = now()
        for i in 0..<n { source.store(i & 1 == 0 ? b : a, ordering: .relaxed) }
        let storeOnlyNs = Double(now() - t0) / Double(n)
        flip.offline()

        let result: [String: Any] = [
            "command": "swap", "routes": compiler.routeCount, "slot_bytes": file.layout.length,
            "compile_full_ms": compileFullMs, "first_publish_ms": firstPublishMs, "full_rebuild_ms": rebuildMs,
            "full_verify_ms": fullVerifyMs, "changes": changes,
            "one_route_publish_us_p50": percentile(publishUs, 0.5), "one_route_publish_us_p99": percentile(publishUs, 0.99),
            "one_route_compile_us_p50": percentile(compileUs, 0.5),
            "one_route_verify_us_p50": percentile(verifyUs, 0.5), "one_route_verify_us_p99": percentile(verifyUs, 0.99),
            "reader_turn_ns_unchanged": idleNs, "reader_turn_ns_changed": changeNs, "reader_turn_ns_store_only": storeOnlyNs,
            "reader_switches": switches,
        ]
        if json {
            print(jsonString(result))
            return
        }
        var t = TextTable(header: ["figure", "value"])
        t.add(["routes loaded", "\(compiler.routeCount)"])
        t.add(["slot size", fmt(Double(file.layout.length) / 1048576, 1) + " MiB"])
        t.add(["compile full configuration", fmt(compileFullMs, 1) + " ms"])
        t.add(["first publish (format + write + seal)", fmt(firstPublishMs, 1) + " ms"])
        t.add(["full rebuild of a slot", fmt(rebuildMs, 1) + " ms"])
        t.add(["full verify (reader side)", fmt(fullVerifyMs, 1) + " ms"])
        t.add(["one-route change published, p50", fmt(percentile(publishUs, 0.5), 1) + " us"])
        t.add(["one-route change published, p99", fmt(percentile(publishUs, 0.99), 1) + " us"])
        t.add(["  of which compile, p50", fmt(percentile(compileUs, 0.5), 1) + " us"])
        t.add(["one-route change verified by the reader side, p50", fmt(percentile(verifyUs, 0.5), 1) + " us"])
        t.add(["one-route change verified by the reader side, p99", fmt(percentile(verifyUs, 0.99), 1) + " us"])
        t.add(["reader check per loop turn, no change", fmt(idleNs, 2) + " ns"])
        t.add(["reader check per loop turn, change every turn", fmt(changeNs, 2) + " ns (store alone " + fmt(storeOnlyNs, 2) + " ns)"])
        print("Tables file swap, full table (\(changes) one-route changes)\n" + t.render())
    }
}
