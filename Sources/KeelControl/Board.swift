import Foundation
import Synchronization

/// State that readers (the API, metrics) need without waiting behind the
/// writer: backend health as the checker sees it, and when each generation
/// was published (to tell a lagging lcore from one that has not looked yet).
public final class Board: Sendable {
    public struct Health: Sendable, Equatable {
        public var healthy: Bool
        /// Checks in a row whose result disagrees with `healthy` (it changes at rise / fall).
        public var streak: Int
        /// Changes of state seen recently (damping).
        public var flaps: Int
        public var since: Date
        public var lastError: String?
        /// Held down by damping until then.
        public var heldUntil: Date?
    }

    struct State {
        var health: [Int: Health] = [:]
        var published: (generation: UInt64, at: UInt64) = (0, 0)
    }
    let state = Mutex(State())

    public init() {}

    public func health(_ id: Int) -> Health? { state.withLock { $0.health[id] } }
    public var allHealth: [Int: Health] { state.withLock { $0.health } }
    public func setHealth(_ id: Int, _ h: Health?) { state.withLock { $0.health[id] = h } }

    /// Records a publish (monotonic ns).
    public func published(_ generation: UInt64) {
        let now = DispatchTime.now().uptimeNanoseconds
        state.withLock { if generation > $0.published.generation { $0.published = (generation, now) } }
    }

    /// The newest generation this process published, and how many ns ago.
    public var lastPublish: (generation: UInt64, ageNs: UInt64) {
        state.withLock {
            // The clock is read under the lock: read before it, a publish
            // that got the lock first was "later than now", and the
            // subtraction trapped (a status request racing a write killed
            // keel-control under 100 concurrent clients).
            let now = DispatchTime.now().uptimeNanoseconds
            let at = $0.published.at
            return ($0.published.generation, at == 0 || at > now ? 0 : now - at)
        }
    }
}
