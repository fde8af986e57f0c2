import KeelAPI
import KeelTables

extension Compiler {
    /// The port whose own address is the host prefix `p` (cached per port list:
    /// checked for every route).
    func localAddressOwner(_ p: Parse.AnyPrefix) -> String? {
        if localCache == nil || localCache!.ports != ports {
            var map: [Parse.AnyPrefix: String] = [:]
            for port in ports {
                for text in port.addresses {
                    if let (a, _) = Parse.interface(text) { map[Parse.subnet(a, a.family == 4 ? 32 : 128)] = port.name }
                }
            }
            localCache = (ports, map)
        }
        return localCache!.map[p]
    }

    /// Gateway text to address; a full table names a few gateways a million times.
    func parseGateway(_ g: String) -> IPAddress? {
        if let a = gatewayCache[g] { return a }
        guard let a = IPAddress(g) else { return nil }
        if gatewayCache.count > 65536 { gatewayCache.removeAll() }
        gatewayCache[g] = a
        return a
    }

    /// Ports: names, MACs, MTUs, addresses; returns them parsed.
    func validatePorts(_ list: [Port], _ issues: inout [ConfigIssue])
        -> ([Port], [String: Int], [(port: Int, prefix: Parse.AnyPrefix)], [PortSpec]) {
        var index: [String: Int] = [:]
        var subnets: [(port: Int, prefix: Parse.AnyPrefix)] = []
        var specs: [PortSpec] = []
        var addressOwner: [IPAddress: String] = [:]
        if list.count > limits.ports { issues.append(ConfigIssue("ports", "\(list.count) ports, at most \(limits.ports)")) }
        for (i, p) in list.enumerated() {
            let path = "ports[\(i)]"
            if p.name.isEmpty || p.name.count > 32 || !p.name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) {
                issues.append(ConfigIssue("\(path).name", "\"\(p.name)\" must be 1 to 32 letters, digits, '-', '_' or '.'"))
            } else if let j = index[p.name] {
                issues.append(ConfigIssue("\(path).name", "\"\(p.name)\" is also ports[\(j)]"))
            } else {
                index[p.name] = i
            }
            let mac = Parse.mac(p.mac)
            if mac == nil {
                issues.append(ConfigIssue("\(path).mac", "\"\(p.mac)\" is not a MAC address (expected six hex pairs like 02:00:00:00:00:01)"))
            } else if mac![0] & 1 == 1 {
                issues.append(ConfigIssue("\(path).mac", "\(p.mac) is a multicast address"))
            }
            if p.mtu < 68 || p.mtu > 9216 { issues.append(ConfigIssue("\(path).mtu", "\(p.mtu) is outside 68...9216")) }
            if p.addresses.count > 4 { issues.append(ConfigIssue("\(path).addresses", "\(p.addresses.count) addresses, at most 4")) }
            var parsed: [(IPAddress, UInt8)] = []
            for (k, text) in p.addresses.enumerated() {
                guard let (a, l) = Parse.interface(text) else {
                    issues.append(ConfigIssue("\(path).addresses[\(k)]", "\"\(text)\" is not an interface address (ADDRESS/LENGTH, e.g. 10.1.0.1/24)"))
                    continue
                }
                if a.value == 0 { issues.append(ConfigIssue("\(path).addresses[\(k)]", "the unspecified address cannot be an interface address")); continue }
                if let other = addressOwner[a] {
                    issues.append(ConfigIssue("\(path).addresses[\(k)]", "\(a) is also on \(other)"))
                    continue
                }
                addressOwner[a] = "ports[\(i)]"
                let net = Parse.subnet(a, l)
                if net.length < (a.family == 4 ? 32 : 128) {
                    if let clash = subnets.first(where: { $0.prefix == net }) {
                        issues.append(ConfigIssue("\(path).addresses[\(k)]", "subnet \(net.text) is also on ports[\(clash.port)]"))
                    }
                    subnets.append((i, net))
                }
                parsed.append((a, l))
            }
            specs.append(PortSpec(mac: mac ?? [0, 0, 0, 0, 0, 0], mtu: UInt16(clamping: p.mtu), addresses: parsed))
        }
        return (list, index, subnets, specs)
    }

    /// One route against the current ports: its prefix and next-hop group.
    /// `path` is built only when there is something to report (a full table is a million routes).
    func checkRoute(_ r: Route, path pathText: @autoclosure () -> String, _ issues: inout [ConfigIssue]) -> (Parse.AnyPrefix, NextHopGroupSpec)? {
        var path: String { pathText() }
        let p: Parse.AnyPrefix
        switch Parse.prefix(r.prefix) {
        case .success(let x): p = x
        case .failure(let m): issues.append(ConfigIssue("\(path).prefix", m.text)); return nil
        }
        if subnets.contains(where: { $0.prefix == p }) {
            issues.append(ConfigIssue("\(path).prefix", "\(p.text) is a port's connected subnet; it is routed already"))
            return nil
        }
        if let owner = localAddressOwner(p) {
            issues.append(ConfigIssue("\(path).prefix", "\(p.text) is the address of port \(owner)"))
            return nil
        }
        if r.blackhole {
            if !r.nextHops.isEmpty { issues.append(ConfigIssue("\(path).next_hops", "a blackhole route has no next hops")); return nil }
            return (p, NextHopGroupSpec(kind: .drop, members: []))
        }
        guard !r.nextHops.isEmpty else {
            issues.append(ConfigIssue("\(path).next_hops", "at least one next hop (or blackhole: true)"))
            return nil
        }
        if r.nextHops.count > limits.ecmpWays {
            issues.append(ConfigIssue("\(path).next_hops", "\(r.nextHops.count) next hops, at most \(limits.ecmpWays) (ECMP ways)"))
            return nil
        }
        var members: [NextHopMember] = []
        var ok = true
        for (k, nh) in r.nextHops.enumerated() {
            var npath: String { "\(path).next_hops[\(k)]" }
            var port: Int?
            if let name = nh.port {
                guard let i = portIndex[name] else {
                    issues.append(ConfigIssue("\(npath).port", "no port named \"\(name)\""))
                    ok = false
                    continue
                }
                port = i
            }
            var gateway: IPAddress?
            if let g = nh.gateway {
                guard let a = parseGateway(g) else {
                    issues.append(ConfigIssue("\(npath).gateway", "\"\(g)\" is not an address"))
                    ok = false
                    continue
                }
                guard a.family == p.family else {
                    issues.append(ConfigIssue("\(npath).gateway", "\(a) is IPv\(a.family), the prefix is IPv\(p.family)"))
                    ok = false
                    continue
                }
                // The longest connected subnet holding the gateway (on the given port, if any).
                var reach: (port: Int, prefix: Parse.AnyPrefix)?
                for s in subnets where s.prefix.contains(a) && (port == nil || s.port == port) {
                    if reach == nil || s.prefix.length > reach!.prefix.length { reach = s }
                }
                guard let reach else {
                    issues.append(ConfigIssue("\(npath).gateway", "\(a) is not reachable through \(port.map { "port \(ports[$0].name)" } ?? "any port") (no connected subnet holds it)"))
                    ok = false
                    continue
                }
                port = reach.port
                gateway = a
            }
            guard let port else {
                issues.append(ConfigIssue(npath, "needs a gateway, a port, or both"))
                ok = false
                continue
            }
            let m = NextHopMember(port: UInt16(port), gateway: gateway)
            if members.contains(m) {
                issues.append(ConfigIssue(npath, "duplicates an earlier next hop"))
                ok = false
                continue
            }
            members.append(m)
        }
        guard ok else { return nil }
        // Member order does not matter to ECMP; sort so equal sets share a group.
        members.sort { ($0.port, $0.gateway?.value ?? 0) < ($1.port, $1.gateway?.value ?? 0) }
        return (p, NextHopGroupSpec(kind: .forward, members: members))
    }

    func checkNeighbors(_ list: [Neighbor], _ issues: inout [ConfigIssue]) -> [NeighborSpec] {
        var out: [NeighborSpec] = []
        var seen: [String: Int] = [:]
        if list.count > limits.neighbors { issues.append(ConfigIssue("neighbors", "\(list.count) static neighbors, at most \(limits.neighbors)")) }
        for (i, n) in list.enumerated() {
            let path = "neighbors[\(i)]"
            guard let port = portIndex[n.port] else { issues.append(ConfigIssue("\(path).port", "no port named \"\(n.port)\"")); continue }
            guard let a = IPAddress(n.address) else { issues.append(ConfigIssue("\(path).address", "\"\(n.address)\" is not an address")); continue }
            guard let mac = Parse.mac(n.mac), mac[0] & 1 == 0 else {
                issues.append(ConfigIssue("\(path).mac", "\"\(n.mac)\" is not a unicast MAC address"))
                continue
            }
            let key = "\(port)|\(a)"
            if let j = seen[key] { issues.append(ConfigIssue(path, "\(a) on \(n.port) is also neighbors[\(j)]")); continue }
            seen[key] = i
            out.append(NeighborSpec(port: UInt16(port), address: a, mac: mac))
        }
        return out.sorted()
    }

    /// One VIP and its backends; `backendIDs` collects ids across VIPs (they must be unique).
    func checkVIP(_ v: VIP, path: String, backendIDs: inout [Int: String], _ issues: inout [ConfigIssue]) -> VIPSpec? {
        let before = issues.count
        if v.id < 1 || v.id > limits.vips { issues.append(ConfigIssue("\(path).id", "\(v.id) is outside 1...\(limits.vips)")) }
        let address = IPAddress(v.address)
        if address == nil { issues.append(ConfigIssue("\(path).address", "\"\(v.address)\" is not an address")) }
        let proto: UInt8
        switch v.protocol.lowercased() {
        case "tcp": proto = 6
        case "udp": proto = 17
        default: proto = 0; issues.append(ConfigIssue("\(path).protocol", "\"\(v.protocol)\" must be tcp or udp"))
        }
        let port = v.port ?? 0
        if port < 0 || port > 65535 { issues.append(ConfigIssue("\(path).port", "\(port) is outside 0...65535 (0: all ports)")) }
        let encap: EncapKind
        switch v.encap.type.lowercased() {
        case "ipip": encap = .ipip
        case "gue": encap = .gue
        default: encap = .ipip; issues.append(ConfigIssue("\(path).encap.type", "\"\(v.encap.type)\" must be ipip or gue"))
        }
        if encap == .gue {
            if let p = v.encap.port, p >= 1 && p <= 65535 {} else {
                issues.append(ConfigIssue("\(path).encap.port", "GUE needs a UDP port 1...65535"))
            }
        } else if v.encap.port != nil {
            issues.append(ConfigIssue("\(path).encap.port", "only GUE takes a port"))
        }
        let hash: FlowHashFields
        switch v.hash {
        case "5-tuple": hash = .fiveTuple
        case "3-tuple": hash = .threeTuple
        case "source": hash = .source
        default: hash = .fiveTuple; issues.append(ConfigIssue("\(path).hash", "\"\(v.hash)\" must be 5-tuple, 3-tuple or source"))
        }
        if !Maglev.isPrime(v.tableSize) {
            issues.append(ConfigIssue("\(path).table_size", "\(v.tableSize) is not prime (65537 and 655373 are)"))
        } else if v.tableSize > limits.maglevMaxSize {
            issues.append(ConfigIssue("\(path).table_size", "\(v.tableSize) is above the tables' limit of \(limits.maglevMaxSize)"))
        } else if v.tableSize <= v.backends.count {
            issues.append(ConfigIssue("\(path).table_size", "\(v.tableSize) entries cannot hold \(v.backends.count) backends"))
        }
        var source: IPAddress?
        if let s = v.sourceAddress {
            source = IPAddress(s)
            if source == nil { issues.append(ConfigIssue("\(path).source_address", "\"\(s)\" is not an address")) }
        }
        if let h = v.healthCheck {
            let hp = "\(path).health_check"
            if h.type != "tcp" && h.type != "http" { issues.append(ConfigIssue("\(hp).type", "\"\(h.type)\" must be tcp or http")) }
            if let p = h.port {
                if p < 1 || p > 65535 { issues.append(ConfigIssue("\(hp).port", "\(p) is outside 1...65535")) }
            } else if port == 0 {
                issues.append(ConfigIssue("\(hp).port", "an all-ports VIP needs the port to check"))
            }
            if h.type == "http" {
                if !h.path.hasPrefix("/") || h.path.contains(where: { $0 == " " || $0 == "\r" || $0 == "\n" }) {
                    issues.append(ConfigIssue("\(hp).path", "\"\(h.path)\" must start with / and hold no spaces or line breaks"))
                }
                if h.expectStatus < 100 || h.expectStatus > 599 { issues.append(ConfigIssue("\(hp).expect_status", "\(h.expectStatus) is not an HTTP status")) }
            }
            if !(h.interval >= 0.1 && h.interval <= 3600) { issues.append(ConfigIssue("\(hp).interval", "\(h.interval) s is outside 0.1...3600")) }
            if !(h.timeout >= 0.01 && h.timeout <= h.interval) { issues.append(ConfigIssue("\(hp).timeout", "\(h.timeout) s must be at least 0.01 and at most the interval")) }
            if h.rise < 1 || h.rise > 100 { issues.append(ConfigIssue("\(hp).rise", "\(h.rise) is outside 1...100")) }
            if h.fall < 1 || h.fall > 100 { issues.append(ConfigIssue("\(hp).fall", "\(h.fall) is outside 1...100")) }
        }
        if v.backends.count > limits.backendsPerVIP {
            issues.append(ConfigIssue("\(path).backends", "\(v.backends.count) backends, at most \(limits.backendsPerVIP)"))
        }
        var backends: [BackendSpec] = []
        for (k, b) in v.backends.enumerated() {
            let bpath = "\(path).backends[\(k)]"
            if b.id < 1 || b.id > Int(UInt32.max) { issues.append(ConfigIssue("\(bpath).id", "\(b.id) must be a positive 32-bit id")); continue }
            if let other = backendIDs[b.id] { issues.append(ConfigIssue("\(bpath).id", "backend id \(b.id) is also used by \(other)")); continue }
            backendIDs[b.id] = path
            guard let a = IPAddress(b.address) else { issues.append(ConfigIssue("\(bpath).address", "\"\(b.address)\" is not an address")); continue }
            if let vip = address, encap == .ipip, vip.family == 6, a.family == 4 {
                issues.append(ConfigIssue("\(bpath).address", "an IPv6 VIP cannot reach an IPv4 backend over IPIP (use GUE or an IPv6 backend)"))
                continue
            }
            if b.weight < 0 || b.weight > Int(Maglev.maxWeight) {
                issues.append(ConfigIssue("\(bpath).weight", "\(b.weight) is outside 0...\(Maglev.maxWeight)"))
                continue
            }
            guard let state = ["up": BackendState.up, "drain": .drain, "down": .down][b.state] else {
                issues.append(ConfigIssue("\(bpath).state", "\"\(b.state)\" must be up, drain or down"))
                continue
            }
            let effective: BackendState = health[b.id] == false ? .down : state
            backends.append(BackendSpec(id: UInt32(b.id), address: a, weight: UInt32(b.weight), state: effective))
        }
        guard issues.count == before, let address else { return nil }
        if let source, source.family != address.family && !backends.contains(where: { $0.address.family == source.family }) {
            issues.append(ConfigIssue("\(path).source_address", "\(source) is IPv\(source.family); no backend of this VIP is"))
            return nil
        }
        return VIPSpec(address: address, proto: proto, port: UInt16(port), encap: encap, guePort: UInt16(v.encap.port ?? 0),
                       hash: hash, tableSize: UInt32(v.tableSize), source: source, backends: backends)
    }
}
