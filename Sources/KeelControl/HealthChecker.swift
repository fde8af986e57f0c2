import Foundation
import KeelAPI
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Checks every backend of every VIP that has a `health_check`, from this
/// host's kernel (on the appliance: the kernel behind the data plane's TAPs).
///
/// A backend goes down after `fall` failures in a row and up after `rise`
/// successes in a row; state changes republish its VIP (down backends leave
/// the Maglev table; their flows move). A backend that changed state
/// `flapLimit` times within `flapWindow` is held down for `holdDown` even if it
/// passes (damping), so a flapping backend does not churn flows.
public final class HealthChecker: Service, Sendable {
    let plane: ControlPlane
    let board: Board
    let logger: Logger
    public static let flapLimit = 4
    public static let flapWindow: TimeInterval = 60
    public static let holdDown: TimeInterval = 30

    /// What each running probe loop checks; a loop whose entry changed or went away ends.
    struct Target: Equatable, Sendable {
        var vip: Int
        var backend: Int
        var address: String
        var port: Int
        var check: HealthCheck
    }
    let running = Mutex<[Int: Target]>([:])

    public init(plane: ControlPlane, board: Board, logger: Logger) {
        self.plane = plane
        self.board = board
        self.logger = logger
    }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                let wanted = await targets()
                let started: [Target] = running.withLock { current in
                    var new: [Target] = []
                    for (id, t) in wanted where current[id] != t {
                        current[id] = t
                        new.append(t)
                    }
                    for id in current.keys where wanted[id] == nil { current[id] = nil }
                    return new
                }
                for t in started { group.addTask { await self.loop(t) } }
                let gone = Set(board.allHealth.keys).subtracting(wanted.keys)
                if !gone.isEmpty {
                    for id in gone { board.setHealth(id, nil) }
                    try? await plane.clearHealth(except: Set(wanted.keys))
                }
                try? await Task.sleep(for: .milliseconds(500))
            }
            group.cancelAll()
        }
    }

    func targets() async -> [Int: Target] {
        var out: [Int: Target] = [:]
        for v in await plane.checkedVIPs() {
            guard let check = v.healthCheck, let port = check.port ?? v.port, port > 0 else { continue }
            for b in v.backends { out[b.id] = Target(vip: v.id, backend: b.id, address: b.address, port: port, check: check) }
        }
        return out
    }

    func current(_ t: Target) -> Bool { running.withLock { $0[t.backend] == t } }

    /// Probes one backend every interval while its target stays the same.
    func loop(_ t: Target) async {
        var flaps: [Date] = []
        while current(t) && !Task.isCancelled {
            let started = Date()
            let error = await HealthChecker.probe(address: t.address, port: t.port, check: t.check)
            guard current(t) else { return }
            record(t, ok: error == nil, error: error, flaps: &flaps)
            let left = t.check.interval - Date().timeIntervalSince(started)
            if left > 0 { try? await Task.sleep(for: .milliseconds(Int(left * 1000))) }
        }
    }

    func record(_ t: Target, ok: Bool, error: String?, flaps: inout [Date]) {
        let now = Date()
        // A backend starts healthy (as in HAProxy): `fall` failures take it out.
        var h = board.health(t.backend) ?? Board.Health(healthy: true, streak: 0, flaps: 0, since: now, lastError: nil, heldUntil: nil)
        h.lastError = error
        h.streak = ok == h.healthy ? 0 : h.streak + 1
        var change: Bool? = nil
        if h.streak >= (h.healthy ? t.check.fall : t.check.rise) {
            if !h.healthy, let held = h.heldUntil, held > now {
                // Damped: stays down while held.
            } else {
                change = !h.healthy
            }
        }
        if let up = change {
            flaps = flaps.filter { now.timeIntervalSince($0) < HealthChecker.flapWindow } + [now]
            h.healthy = up
            h.streak = 0
            h.since = now
            h.flaps = flaps.count
            h.heldUntil = nil
            if !up && flaps.count >= HealthChecker.flapLimit {
                h.heldUntil = now.addingTimeInterval(HealthChecker.holdDown)
                logger.warning("backend flapping: held down", metadata: ["backend": "\(t.backend)", "seconds": "\(HealthChecker.holdDown)"])
            }
            logger.notice("backend \(up ? "up" : "down")", metadata: ["vip": "\(t.vip)", "backend": "\(t.backend)", "error": "\(error ?? "")"])
        }
        board.setHealth(t.backend, h)
        if let up = change {
            let plane = self.plane, logger = self.logger, id = t.backend
            Task {
                do { try await plane.setHealth(backend: id, healthy: up) } catch {
                    logger.error("cannot publish backend health", metadata: ["backend": "\(id)", "error": "\(error)"])
                }
            }
        }
    }

    // MARK: probes

    /// nil when the backend passes; else why it failed.
    public static func probe(address: String, port: Int, check: HealthCheck) async -> String? {
        let timeout = TimeAmount.milliseconds(Int64(check.timeout * 1000))
        let socketAddress: SocketAddress
        do { socketAddress = try SocketAddress(ipAddress: address, port: port) } catch { return "bad address \(address)" }
        let deadline = NIODeadline.now() + timeout
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(timeout)
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .connect(to: socketAddress).get()
            defer { channel.close(promise: nil) }
            guard check.type == "http" else { return nil }
            let status = channel.eventLoop.makePromise(of: Int.self)
            try await channel.pipeline.addHandler(StatusLineReader(promise: status)).get()
            let host = address.contains(":") ? "[\(address)]" : address
            let request = "GET \(check.path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUser-Agent: keel-health\r\nConnection: close\r\n\r\n"
            try await channel.writeAndFlush(ByteBuffer(string: request)).get()
            let timer = channel.eventLoop.scheduleTask(deadline: deadline) { status.fail(ChannelError.connectTimeout(timeout)) }
            defer { timer.cancel() }
            let code = try await status.futureResult.get()
            return code == check.expectStatus ? nil : "HTTP status \(code), expected \(check.expectStatus)"
        } catch {
            return "\(error)"
        }
    }
}

/// Reads the status code of the first line of an HTTP response.
final class StatusLineReader: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<Int>
    var line = ""
    var done = false

    init(promise: EventLoopPromise<Int>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        var b = unwrapInboundIn(data)
        line += b.readString(length: b.readableBytes) ?? ""
        if let end = line.range(of: "\r\n") {
            done = true
            let first = line[..<end.lowerBound].split(separator: " ")
            if first.count >= 2, first[0].hasPrefix("HTTP/"), let code = Int(first[1]) { promise.succeed(code) } else {
                promise.fail(ChannelError.inappropriateOperationForState)
            }
        } else if line.utf8.count > 4096 {
            done = true
            promise.fail(ChannelError.inappropriateOperationForState)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done { done = true; promise.fail(ChannelError.eof) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !done { done = true; promise.fail(error) }
        context.close(promise: nil)
    }
}
