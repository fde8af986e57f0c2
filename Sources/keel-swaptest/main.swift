// Test helper for the epoch swap: a writer and readers as separate processes
// (or as threads of one process, for the thread sanitizer). Not shipped.
//
//   keel-swaptest writer  FILE COUNT [--create] [--grace-ms N]
//   keel-swaptest reader  FILE LINE SECONDS [--threads N] [--unregistered]
//     (--unregistered: read without a reader line, so the writer never waits:
//      the negative control that shows the torn-read check can fail)
//   keel-swaptest threads FILE COUNT READERS [--unregistered]
//   keel-swaptest offline FILE LINE
//
// Each generation g points routes 10.i.0.0/16 (i < 32) at next-hop group
// (g & 1) * 32 + i, whose gateway encodes g. A reader checks, within one loop
// turn, that every route leads to a group of the same generation, twice over:
// a torn read (a slot rewritten while read) shows as two generations.
import Foundation
import KeelTables
import Atomics

setvbuf(stdout, nil, _IOLBF, 0)
let routesPerGeneration = 32

func changes(for g: UInt64) -> [SnapshotChange] {
    var out: [SnapshotChange] = []
    for i in 0..<routesPerGeneration {
        let id = UInt32((g & 1) * UInt64(routesPerGeneration) + UInt64(i))
        out.append(.nextHopGroup(id: id, NextHopGroupSpec(kind: .forward, members: [
            NextHopMember(port: 0, gateway: IPAddress(v4: UInt32(truncatingIfNeeded: g)))])))
    }
    for i in 0..<routesPerGeneration {
        let id = UInt32((g & 1) * UInt64(routesPerGeneration) + UInt64(i))
        out.append(.route4(try! IPv4Prefix(address: UInt32(10) << 24 | UInt32(i * 7) << 16, length: 16), nextHopGroup: id))
    }
    return out
}

let limits = SnapshotLimits.small

func fail(_ s: String) -> Never {
    print("FAIL: \(s)")
    exit(1)
}

/// Checks one snapshot in one loop turn; returns the generation its routes say.
func check(_ s: Snapshot, expect: UInt64) -> String? {
    for pass in 0..<2 {
        // About as long as a data-plane loop turn with a full burst.
        if pass == 1 { spin(microseconds: 20) }
        for i in 0..<routesPerGeneration {
            let nh = s.ipv4.lookup(UInt32(10) << 24 | UInt32(i * 7) << 16 | 0x0102)
            guard nh != LPMEntry.noRoute else { return "pass \(pass) route \(i): no route in generation \(expect)" }
            guard nh / UInt32(routesPerGeneration) == UInt32(expect & 1) else {
                return "pass \(pass) route \(i): group \(nh) in generation \(expect)"
            }
            let m = s.member(nh, 0)
            let g = UInt64(m.gateway.load(fromByteOffset: 12, as: UInt32.self).bigEndian)
            guard g == expect & 0xFFFF_FFFF else { return "pass \(pass) route \(i): gateway says generation \(g), reader is on \(expect)" }
        }
    }
    return nil
}

func spin(microseconds: Double) {
    let end = Date().addingTimeInterval(microseconds / 1e6)
    while Date() < end {}
}

/// Runs `body(i)` for i in 0..<n on n threads of their own (Dispatch's pool
/// has one thread per core, too few for spinning readers plus a writer).
func onThreads(_ n: Int, _ body: @escaping (Int) -> Void) {
    let group = DispatchGroup()
    for i in 0..<n {
        group.enter()
        let t = Thread {
            body(i)
            group.leave()
        }
        t.start()
    }
    group.wait()
}

struct ReaderResult { var turns = 0, switches = 0, refused = 0, error: String? }

/// The negative control: follows `published` without a reader line, so the
/// writer never waits for it and may rewrite the slot it is reading.
func runUnregistered(file: TablesFile, until deadline: Date, stop: ManagedAtomic<Bool>? = nil) -> ReaderResult {
    let views = [Snapshot(verified: file.slot(0), layout: file.layout), Snapshot(verified: file.slot(1), layout: file.layout)]
    var r = ReaderResult()
    var seen: UInt64 = 0
    while Date() < deadline && !(stop?.load(ordering: .relaxed) ?? false) {
        let p = file.published.load(ordering: .acquiring)
        if p != seen { seen = p; r.switches += 1 }
        r.turns += 1
        if p >> 1 > 0, let e = check(views[Int(p & 1)], expect: p >> 1) {
            r.error = e
            break
        }
    }
    return r
}

func runReader(file: TablesFile, line: Int, until deadline: Date, stop: ManagedAtomic<Bool>? = nil, registered: Bool = true) -> ReaderResult {
    if !registered { return runUnregistered(file: file, until: deadline, stop: stop) }
    let acceptor = SnapshotAcceptor(file: file)
    var reader = LcoreReader(file: file, line: line, source: acceptor.accepted)
    reader.online()
    var r = ReaderResult()
    while Date() < deadline && !(stop?.load(ordering: .relaxed) ?? false) {
        // The main lcore's job in the data plane; here the same thread does it.
        if case .refused(_, let why) = acceptor.poll() {
            r.refused += 1
            print("refused: \(why)")
        }
        if reader.refresh() { r.switches += 1 }
        r.turns += 1
        if reader.hasSnapshot, let e = check(reader.snapshot, expect: reader.generation) {
            r.error = e
            break
        }
    }
    reader.offline()
    return r
}

func runWriter(file: TablesFile, count: UInt64, graceMs: UInt64) {
    let publisher = SnapshotPublisher(file: file)
    publisher.graceTimeoutNanoseconds = graceMs * 1_000_000
    let start = publisher.publishedGeneration
    if start > 0 { print("resuming after generation \(start)") }
    var published: UInt64 = 0
    while published < count {
        let next = publisher.publishedGeneration + 1
        do {
            // A restarted writer has no builders: its first two publishes rebuild
            // each slot from the state, which is the previous generation's content.
            if start > 0 && published == 0 {
                var state = SnapshotState()
                state.ports = [PortSpec(mac: [2, 0, 0, 0, 0, 1], mtu: 1500, addresses: [])]
                state.apply(changes(for: start - 1))
                state.apply(changes(for: start))
                publisher.replaceState(state)
            }
            let g = try publisher.publish((next == 1 ? [.ports([PortSpec(mac: [2, 0, 0, 0, 0, 1], mtu: 1500, addresses: [])])] : []) + changes(for: next))
            published += 1
            if g % 1000 == 0 { print("published \(g)") }
        } catch let SnapshotPublisher.PublishError.stuck(readers, ms, slot) {
            print("STUCK after \(ms) ms, slot \(slot): " + readers.map(\.description).joined(separator: "; "))
            usleep(100_000)
        } catch {
            fail("publish: \(error)")
        }
    }
    print("writer done at generation \(publisher.publishedGeneration)")
}

let args = CommandLine.arguments
guard args.count >= 3 else { fail("usage: see the comment at the top of main.swift") }
let path = args[2]
func flag(_ name: String) -> String? { args.firstIndex(of: name).flatMap { $0 + 1 < args.count ? args[$0 + 1] : nil } }

switch args[1] {
case "writer":
    let file = args.contains("--create")
        ? try TablesFile.create(path: path, limits: limits, readers: 8)
        : try TablesFile.open(path: path)
    runWriter(file: file, count: UInt64(args[3])!, graceMs: UInt64(flag("--grace-ms") ?? "200")!)
case "reader":
    let file = try TablesFile.open(path: path)
    let line = Int(args[3])!, seconds = Double(args[4])!
    let threads = Int(flag("--threads") ?? "1")!
    let deadline = Date().addingTimeInterval(seconds)
    var results = [ReaderResult](repeating: ReaderResult(), count: threads)
    let lock = NSLock()
    onThreads(threads) { t in
        let r = runReader(file: file, line: line + t, until: deadline, registered: !args.contains("--unregistered"))
        lock.lock(); results[t] = r; lock.unlock()
    }
    for (t, r) in results.enumerated() {
        print("reader line \(line + t): \(r.turns) turns, \(r.switches) switches, \(r.refused) refused")
        if let e = r.error { fail("torn read on line \(line + t): \(e)") }
    }
    print("readers ok")
case "threads":
    let file = try TablesFile.create(path: path, limits: limits, readers: 8)
    let count = UInt64(args[3])!, readers = Int(args[4])!
    let stop = ManagedAtomic(false)
    var results = [ReaderResult](repeating: ReaderResult(), count: readers)
    let lock = NSLock()
    onThreads(readers + 1) { t in
        if t == readers {
            runWriter(file: file, count: count, graceMs: 5000)
            stop.store(true, ordering: .relaxed)
        } else {
            let r = runReader(file: file, line: t, until: Date().addingTimeInterval(600), stop: stop,
                              registered: !args.contains("--unregistered"))
            lock.lock(); results[t] = r; lock.unlock()
        }
    }
    for (t, r) in results.enumerated() {
        print("reader thread \(t): \(r.turns) turns, \(r.switches) switches")
        if let e = r.error { fail("torn read on thread \(t): \(e)") }
    }
    print("threads ok")
case "offline":
    let file = try TablesFile.open(path: path)
    file.line(Int(args[3])!).store(0, ordering: .releasing)
    print("line \(args[3]) offline")
default:
    fail("unknown command \(args[1])")
}
