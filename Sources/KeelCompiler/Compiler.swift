import KeelAPI
import KeelTables

/// Turns the configuration into snapshot content and keeps it up to date
/// change by change. The result is a pure function of (configuration, backend
/// health, next-hop group ids): the ids are the only state carried from one
/// change to the next, kept here (and by the control plane's store) so that a
/// route change touches one route, not every route that shares its next hops.
public final class Compiler {
    public let limits: SnapshotLimits
    /// Compiled content: what the publisher writes.
    public private(set) var state = SnapshotState()
    /// The configuration, indexed.
    var ports: [Port] = []
    var portIndex: [String: Int] = [:]
    /// Connected subnets per port index (for resolving gateways).
    var subnets: [(port: Int, prefix: Parse.AnyPrefix)] = []
    var routes: [Parse.AnyPrefix: Route] = [:]
    var neighbors: [Neighbor] = []
    var vips: [Int: VIP] = [:]
    /// Backend health from checks (absent: healthy).
    public private(set) var health: [Int: Bool] = [:]
    /// Next-hop groups: id and how many routes use each.
    var groupIDs: [NextHopGroupSpec: (id: UInt32, refs: Int)] = [:]
    var freeIDs: [UInt32] = []
    var nextID: UInt32
    /// Caches for validation (derived data, never part of the result).
    var localCache: (ports: [Port], map: [Parse.AnyPrefix: String])?
    var gatewayCache: [String: IPAddress] = [:]

    public init(limits: SnapshotLimits) {
        self.limits = limits
        nextID = UInt32(2 * limits.ports)
    }

    // MARK: transactions

    /// What `rollback` restores: the small parts whole, routes key by key.
    struct Checkpoint {
        var groupIDs: [NextHopGroupSpec: (id: UInt32, refs: Int)]
        var freeIDs: [UInt32]
        var nextID: UInt32
        var vips: [Int: VIP]
        var health: [Int: Bool]
        var stateVIPs: [UInt32: VIPSpec]
        var stateGroups: [UInt32: NextHopGroupSpec]
        var statePorts: [PortSpec]
        var stateNeighbors: [NeighborSpec]
        var ports: [Port]
        var portIndex: [String: Int]
        var subnets: [(port: Int, prefix: Parse.AnyPrefix)]
        var neighbors: [Neighbor]
        var routeUndo: [(Parse.AnyPrefix, Route?, UInt32?)] = []
        var wholeRoutes: ([Parse.AnyPrefix: Route], [IPv4Prefix: UInt32], [IPv6Prefix: UInt32])?
    }
    var checkpoint: Checkpoint?

    /// Starts a change that can be taken back (when publishing it fails).
    /// Cost: the size of the next-hop groups and VIPs, not of the routes.
    public func begin() {
        checkpoint = Checkpoint(groupIDs: groupIDs, freeIDs: freeIDs, nextID: nextID, vips: vips, health: health,
                                stateVIPs: state.vips, stateGroups: state.nextHopGroups, statePorts: state.ports,
                                stateNeighbors: state.neighbors, ports: ports, portIndex: portIndex, subnets: subnets,
                                neighbors: neighbors)
    }

    public func commit() { checkpoint = nil }

    /// Undoes everything since `begin`.
    public func rollback() {
        guard let c = checkpoint else { return }
        checkpoint = nil
        if let (r, r4, r6) = c.wholeRoutes {
            routes = r
            state.routes4 = r4
            state.routes6 = r6
        }
        for (p, route, id) in c.routeUndo.reversed() { putRoute(p, route, id) }
        groupIDs = c.groupIDs
        freeIDs = c.freeIDs
        nextID = c.nextID
        vips = c.vips
        health = c.health
        state.vips = c.stateVIPs
        state.nextHopGroups = c.stateGroups
        state.ports = c.statePorts
        state.neighbors = c.stateNeighbors
        ports = c.ports
        portIndex = c.portIndex
        subnets = c.subnets
        neighbors = c.neighbors
    }

    /// Sets (or removes) one route in both the configuration and the content.
    func putRoute(_ p: Parse.AnyPrefix, _ route: Route?, _ id: UInt32?) {
        if checkpoint != nil {
            let oldID: UInt32?
            switch p {
            case .v4(let x): oldID = state.routes4[x]
            case .v6(let x): oldID = state.routes6[x]
            }
            checkpoint!.routeUndo.append((p, routes[p], oldID))
        }
        routes[p] = route
        switch p {
        case .v4(let x): state.routes4[x] = id
        case .v6(let x): state.routes6[x] = id
        }
    }

    /// Group ids below 2 x ports are fixed: port i's own addresses use i, its
    /// connected subnets ports + i. Route groups take the lowest free id above.
    func localGroup(_ port: Int) -> UInt32 { UInt32(port) }
    func connectedGroup(_ port: Int) -> UInt32 { UInt32(limits.ports + port) }

    public var configuration: Configuration {
        Configuration(ports: ports,
                      routes: routes.values.sorted { $0.prefix < $1.prefix },
                      neighbors: neighbors,
                      vips: vips.keys.sorted().map { vips[$0]! })
    }

    public var routeCount: Int { routes.count }

    // MARK: whole configuration

    /// Validates `config` as a whole and returns the changes from the current
    /// content to it. Nothing changes here if it is invalid.
    public func replace(with config: Configuration) throws -> [SnapshotChange] {
        var issues: [ConfigIssue] = []
        let (newPorts, newIndex, newSubnets, portState) = validatePorts(config.ports, &issues)
        // Validate routes against the new ports, in a scratch compiler sharing nothing.
        let scratch = Compiler(limits: limits)
        scratch.ports = newPorts
        scratch.portIndex = newIndex
        scratch.subnets = newSubnets
        var seen: [Parse.AnyPrefix: Int] = [:]
        var parsedRoutes: [(Parse.AnyPrefix, Route, NextHopGroupSpec)] = []
        parsedRoutes.reserveCapacity(config.routes.count)
        for (i, r) in config.routes.enumerated() {
            guard let (p, spec) = scratch.checkRoute(r, path: "routes[\(i)]", &issues) else { continue }
            if let j = seen[p] {
                issues.append(ConfigIssue("routes[\(i)].prefix", "\(p.text) is also routes[\(j)]"))
                continue
            }
            seen[p] = i
            parsedRoutes.append((p, r, spec))
        }
        let neighborSpecs = scratch.checkNeighbors(config.neighbors, &issues)
        var vipIDs: [Int: Int] = [:]
        var backendIDs: [Int: String] = [:]
        var vipSpecs: [Int: VIPSpec] = [:]
        for (i, v) in config.vips.enumerated() {
            if let j = vipIDs[v.id] { issues.append(ConfigIssue("vips[\(i)].id", "id \(v.id) is also vips[\(j)]")); continue }
            vipIDs[v.id] = i
            if let spec = scratch.checkVIP(v, path: "vips[\(i)]", backendIDs: &backendIDs, &issues) { vipSpecs[v.id] = spec }
        }
        // Distinct next-hop groups must fit the table.
        let distinct = Set(parsedRoutes.map(\.2))
        if distinct.count > limits.nextHopGroups - 2 * limits.ports {
            issues.append(ConfigIssue("routes", "\(distinct.count) distinct next-hop sets, at most \(limits.nextHopGroups - 2 * limits.ports)"))
        }
        let vipKeys = Dictionary(grouping: config.vips.enumerated(), by: { "\($0.element.address)|\($0.element.protocol)|\($0.element.port ?? 0)" })
        for (_, group) in vipKeys where group.count > 1 {
            issues.append(ConfigIssue("vips[\(group[1].offset)]", "same address, protocol and port as vips[\(group[0].offset)]"))
        }
        guard issues.isEmpty else { throw ConfigError(issues) }

        // Build the new content, reusing ids of groups that stay.
        var newState = SnapshotState()
        newState.ports = portState
        newState.neighbors = neighborSpecs
        var newGroups: [NextHopGroupSpec: (id: UInt32, refs: Int)] = [:]
        var used = Set<UInt32>()
        for (spec, refs) in Dictionary(grouping: parsedRoutes, by: \.2).mapValues(\.count) {
            if let old = groupIDs[spec] {
                newGroups[spec] = (old.id, refs)
                used.insert(old.id)
            } else {
                newGroups[spec] = (UInt32.max, refs)
            }
        }
        var freeList = (UInt32(2 * limits.ports)..<UInt32(limits.nextHopGroups)).filter { !used.contains($0) }.reversed().map { $0 }
        for spec in newGroups.keys.sorted(by: { "\($0)" < "\($1)" }) where newGroups[spec]!.id == .max {
            newGroups[spec]!.id = freeList.removeLast()
        }
        for (i, p) in newPorts.enumerated() { addPortContent(i, p, into: &newState) }
        for (spec, g) in newGroups { newState.nextHopGroups[g.id] = spec }
        for (p, _, spec) in parsedRoutes {
            let id = newGroups[spec]!.id
            switch p {
            case .v4(let x): newState.routes4[x] = id
            case .v6(let x): newState.routes6[x] = id
            }
        }
        for (id, spec) in vipSpecs { newState.vips[UInt32(id - 1)] = spec }
        let changes = state.changes(to: newState)

        // Commit.
        if checkpoint != nil && checkpoint!.wholeRoutes == nil {
            checkpoint!.wholeRoutes = (routes, state.routes4, state.routes6)
        }
        state = newState
        ports = newPorts
        portIndex = newIndex
        subnets = newSubnets
        routes = Dictionary(uniqueKeysWithValues: parsedRoutes.map { ($0.0, $0.1) })
        neighbors = config.neighbors
        vips = Dictionary(uniqueKeysWithValues: config.vips.map { ($0.id, $0) })
        groupIDs = newGroups
        let taken = Set(newGroups.values.map(\.id))
        nextID = (taken.max() ?? UInt32(2 * limits.ports - 1)) + 1
        freeIDs = (UInt32(2 * limits.ports)..<nextID).filter { !taken.contains($0) }.sorted(by: >)
        return changes
    }

    /// Local (/32, /128) and connected routes of a port, with their groups.
    func addPortContent(_ i: Int, _ p: Port, into s: inout SnapshotState) {
        s.nextHopGroups[localGroup(i)] = NextHopGroupSpec(kind: .local, members: [NextHopMember(port: UInt16(i), gateway: nil)])
        s.nextHopGroups[connectedGroup(i)] = NextHopGroupSpec(kind: .connected, members: [NextHopMember(port: UInt16(i), gateway: nil)])
        for text in p.addresses {
            let (a, l) = Parse.interface(text)!
            switch Parse.subnet(a, l) {
            case .v4(let net):
                if l < 32 { s.routes4[net] = connectedGroup(i) }
                s.routes4[try! IPv4Prefix(address: a.v4, length: 32)] = localGroup(i)
            case .v6(let net):
                if l < 128 { s.routes6[net] = connectedGroup(i) }
                s.routes6[try! IPv6Prefix(address: a.value, length: 128)] = localGroup(i)
            }
        }
    }

    // MARK: single changes (cost follows the change, not the table)

    /// Adds or replaces one route.
    public func setRoute(_ r: Route) throws -> [SnapshotChange] {
        var issues: [ConfigIssue] = []
        guard let (p, spec) = checkRoute(r, path: "route", &issues) else { throw ConfigError(issues) }
        var changes: [SnapshotChange] = []
        let old = routes[p].flatMap { _ in groupOf(p) }
        let id: UInt32
        if let g = groupIDs[spec] {
            id = g.id
            groupIDs[spec]!.refs += 1
        } else {
            guard let fresh = allocateID() else {
                throw ConfigError([ConfigIssue("route.next_hops", "no free next-hop group (limit \(limits.nextHopGroups))")])
            }
            id = fresh
            groupIDs[spec] = (id, 1)
            state.nextHopGroups[id] = spec
            changes.append(.nextHopGroup(id: id, spec))
        }
        switch p {
        case .v4(let x): changes.append(.route4(x, nextHopGroup: id))
        case .v6(let x): changes.append(.route6(x, nextHopGroup: id))
        }
        putRoute(p, r, id)
        if let old { changes += release(old) }
        return changes
    }

    /// Deletes the route for `prefix`.
    public func deleteRoute(prefix: String) throws -> [SnapshotChange] {
        let p: Parse.AnyPrefix
        switch Parse.prefix(prefix) {
        case .success(let x): p = x
        case .failure(let m): throw ConfigError([ConfigIssue("prefix", m.text)])
        }
        guard routes[p] != nil, let old = groupOf(p) else { throw ConfigError([ConfigIssue("prefix", "no route for \(p.text)")]) }
        var changes: [SnapshotChange]
        switch p {
        case .v4(let x): changes = [.route4(x, nextHopGroup: nil)]
        case .v6(let x): changes = [.route6(x, nextHopGroup: nil)]
        }
        putRoute(p, nil, nil)
        changes += release(old)
        return changes
    }

    func groupOf(_ p: Parse.AnyPrefix) -> NextHopGroupSpec? {
        let id: UInt32?
        switch p {
        case .v4(let x): id = state.routes4[x]
        case .v6(let x): id = state.routes6[x]
        }
        return id.flatMap { state.nextHopGroups[$0] }
    }

    func allocateID() -> UInt32? {
        if let id = freeIDs.popLast() { return id }
        guard Int(nextID) < limits.nextHopGroups else { return nil }
        defer { nextID += 1 }
        return nextID
    }

    /// One route stopped using `spec`; the group goes when its last route does.
    func release(_ spec: NextHopGroupSpec) -> [SnapshotChange] {
        guard let g = groupIDs[spec] else { return [] }
        if g.refs > 1 {
            groupIDs[spec]!.refs -= 1
            return []
        }
        groupIDs[spec] = nil
        state.nextHopGroups[g.id] = nil
        // Lowest free first, so ids stay compact.
        freeIDs.append(g.id)
        freeIDs.sort(by: >)
        return [.nextHopGroup(id: g.id, nil)]
    }

    /// Adds or replaces one VIP (with its backends).
    public func setVIP(_ v: VIP) throws -> [SnapshotChange] {
        var issues: [ConfigIssue] = []
        var backendIDs: [Int: String] = [:]
        for (id, other) in vips where id != v.id {
            for b in other.backends { backendIDs[b.id] = "VIP \(id)" }
        }
        guard let spec = checkVIP(v, path: "vip", backendIDs: &backendIDs, &issues) else { throw ConfigError(issues) }
        for (id, other) in vips where id != v.id && other.address == v.address && other.protocol == v.protocol && (other.port ?? 0) == (v.port ?? 0) {
            throw ConfigError([ConfigIssue("vip", "same address, protocol and port as VIP \(id)")])
        }
        vips[v.id] = v
        state.vips[UInt32(v.id - 1)] = spec
        return [.vip(index: UInt32(v.id - 1), spec)]
    }

    public func deleteVIP(id: Int) throws -> [SnapshotChange] {
        guard vips[id] != nil else { throw ConfigError([ConfigIssue("id", "no VIP \(id)")]) }
        vips[id] = nil
        state.vips[UInt32(id - 1)] = nil
        return [.vip(index: UInt32(id - 1), nil)]
    }

    /// Health from the checker: an unhealthy backend is out of its VIP's table.
    public func setHealth(backend id: Int, healthy: Bool) -> [SnapshotChange] {
        guard health[id, default: true] != healthy else { return [] }
        health[id] = healthy ? nil : false
        var changes: [SnapshotChange] = []
        for (vid, v) in vips where v.backends.contains(where: { $0.id == id }) {
            var issues: [ConfigIssue] = []
            var ids: [Int: String] = [:]
            if let spec = checkVIP(v, path: "vip", backendIDs: &ids, &issues) {
                state.vips[UInt32(vid - 1)] = spec
                changes.append(.vip(index: UInt32(vid - 1), spec))
            }
        }
        return changes
    }
}

extension SnapshotState {
    /// The changes that turn `self` into `other`.
    public func changes(to other: SnapshotState) -> [SnapshotChange] {
        var out: [SnapshotChange] = []
        if ports != other.ports { out.append(.ports(other.ports)) }
        if neighbors != other.neighbors { out.append(.neighbors(other.neighbors)) }
        // New groups before the routes that use them; old ones after.
        for (id, spec) in other.nextHopGroups.sorted(by: { $0.key < $1.key }) where nextHopGroups[id] != spec {
            out.append(.nextHopGroup(id: id, spec))
        }
        for (p, nh) in other.routes4 where routes4[p] != nh { out.append(.route4(p, nextHopGroup: nh)) }
        for (p, _) in routes4 where other.routes4[p] == nil { out.append(.route4(p, nextHopGroup: nil)) }
        for (p, nh) in other.routes6 where routes6[p] != nh { out.append(.route6(p, nextHopGroup: nh)) }
        for (p, _) in routes6 where other.routes6[p] == nil { out.append(.route6(p, nextHopGroup: nil)) }
        for id in nextHopGroups.keys.sorted() where other.nextHopGroups[id] == nil { out.append(.nextHopGroup(id: id, nil)) }
        for (i, spec) in other.vips.sorted(by: { $0.key < $1.key }) where vips[i] != spec { out.append(.vip(index: i, spec)) }
        for i in vips.keys.sorted() where other.vips[i] == nil { out.append(.vip(index: i, nil)) }
        return out
    }
}

// MARK: reading the configuration piece by piece (the control plane's writer)

extension Compiler {
    /// The canonical text of a prefix ("10.0.0.0/8", "2001:db8::/32"), nil if invalid.
    public static func canonicalPrefix(_ s: String) -> String? {
        if case .success(let p) = Parse.prefix(s) { return p.text }
        return nil
    }

    public func vip(_ id: Int) -> VIP? { vips[id] }
    public var vipIDs: [Int] { vips.keys.sorted() }

    public func route(_ prefix: String) -> Route? {
        guard case .success(let p) = Parse.prefix(prefix) else { return nil }
        return routes[p]
    }

    public var currentPorts: [Port] { ports }
    public var currentNeighbors: [Neighbor] { neighbors }

    /// The VIP that has backend `id`, if any.
    public func vipOfBackend(_ id: Int) -> Int? {
        vips.first { $0.value.backends.contains { $0.id == id } }?.key
    }
}
