import CDPDK

/// A packet mempool on the caller's NUMA socket.
public final class Mempool {
    public let pool: OpaquePointer

    public init(name: String, count: Int, cacheSize: Int = 256, socket: Int32 = Int32(SOCKET_ID_ANY)) throws {
        guard let p = rte_pktmbuf_pool_create(name, UInt32(count), UInt32(cacheSize), 0, keel_mbuf_default_buf_size(), socket) else {
            throw DPDKError("rte_pktmbuf_pool_create(\(name), \(count))")
        }
        pool = p
    }
}

/// An ethdev port with one RX and one TX queue (the one-lcore layout).
public struct EthPort {
    public let id: UInt16

    public static var count: Int { Int(rte_eth_dev_count_avail()) }

    /// A handle for port `id` as it is (already configured and started).
    @inlinable @inline(__always)
    public init(unchecked id: UInt16) { self.id = id }

    /// Configures and starts port `id`.
    public init(id: UInt16, pool: Mempool, rxDescriptors: UInt16 = 1024, txDescriptors: UInt16 = 1024) throws {
        self.id = id
        var conf = rte_eth_conf()
        var rc = rte_eth_dev_configure(id, 1, 1, &conf)
        guard rc == 0 else { throw DPDKError("rte_eth_dev_configure(port \(id))", errno: -rc) }
        let socket = UInt32(bitPattern: rte_eth_dev_socket_id(id))
        rc = rte_eth_rx_queue_setup(id, 0, rxDescriptors, socket, nil, pool.pool)
        guard rc == 0 else { throw DPDKError("rte_eth_rx_queue_setup(port \(id))", errno: -rc) }
        rc = rte_eth_tx_queue_setup(id, 0, txDescriptors, socket, nil)
        guard rc == 0 else { throw DPDKError("rte_eth_tx_queue_setup(port \(id))", errno: -rc) }
        rc = rte_eth_dev_start(id)
        guard rc == 0 else { throw DPDKError("rte_eth_dev_start(port \(id))", errno: -rc) }
        _ = rte_eth_promiscuous_enable(id)
    }

    @inlinable @inline(__always)
    public func receive(_ burst: UnsafeMutablePointer<OpaquePointer?>, max: UInt16) -> Int {
        Int(rte_eth_rx_burst(id, 0, burst, max))
    }

    /// Sends; frees what the port did not take. Returns how many were sent.
    @inlinable @inline(__always)
    public func transmit(_ burst: UnsafeMutablePointer<OpaquePointer?>, count: Int) -> Int {
        let sent = Int(rte_eth_tx_burst(id, 0, burst, UInt16(count)))
        var i = sent
        while i < count {
            rte_pktmbuf_free(burst[i])
            i += 1
        }
        return sent
    }

    /// Stops and closes the port (net_pcap flushes its output file here).
    public func close() {
        _ = rte_eth_dev_stop(id)
        _ = rte_eth_dev_close(id)
    }
}

@inlinable @inline(__always)
public func mbufData(_ m: OpaquePointer) -> UnsafeMutableRawPointer { keel_mbuf_data(m) }

@inlinable @inline(__always)
public func mbufLength(_ m: OpaquePointer) -> Int { Int(keel_mbuf_data_len(m)) }

@inlinable @inline(__always)
public func mbufFree(_ m: OpaquePointer) { rte_pktmbuf_free(m) }

public func ealCleanup() { _ = rte_eal_cleanup() }

/// A fresh mbuf from `pool` (nil when the pool is empty: the caller counts it).
@inlinable @inline(__always)
public func mbufAlloc(_ pool: Mempool) -> OpaquePointer? { rte_pktmbuf_alloc(pool.pool) }

@inlinable @inline(__always)
public func mbufSetLength(_ m: OpaquePointer, _ n: Int) { keel_mbuf_set_len(m, UInt16(n)) }

/// Moves the data start by `delta` bytes (positive: into the headroom) and
/// sets the length; nil when it does not fit (the mbuf is unchanged).
@inlinable @inline(__always)
public func mbufReframe(_ m: OpaquePointer, delta: Int, length: Int) -> UnsafeMutableRawPointer? {
    keel_mbuf_reframe(m, Int32(delta), UInt16(truncatingIfNeeded: length))
}

/// `mbufReframe` by `delta` > 0 where the new frame of `length` bytes ends
/// no later than the old data (it holds the old frame's IP packet whole):
/// only the headroom is checked.
@inlinable @inline(__always)
public func mbufPushFront(_ m: OpaquePointer, delta: Int, length: Int) -> UnsafeMutableRawPointer? {
    keel_mbuf_push_front(m, UInt16(truncatingIfNeeded: delta), UInt16(truncatingIfNeeded: length))
}

extension EthPort {
    /// The port of a DPDK device by name (a PCI address such as 0000:00:04.0, or a vdev name such as net_af_packet0).
    public static func find(name: String) -> UInt16? {
        var id: UInt16 = 0
        return rte_eth_dev_get_port_by_name(name, &id) == 0 ? id : nil
    }

    /// Configures and starts port `id` with `queues` RX and TX queues (queue i is lcore-owned by one lcore).
    public init(id: UInt16, pool: Mempool, queues: UInt16, rxDescriptors: UInt16, txDescriptors: UInt16, promiscuous: Bool) throws {
        self.id = id
        var conf = rte_eth_conf()
        var rc = rte_eth_dev_configure(id, queues, queues, &conf)
        guard rc == 0 else { throw DPDKError("rte_eth_dev_configure(port \(id))", errno: -rc) }
        var rxd = rxDescriptors, txd = txDescriptors
        _ = rte_eth_dev_adjust_nb_rx_tx_desc(id, &rxd, &txd)
        let socket = UInt32(bitPattern: rte_eth_dev_socket_id(id))
        for q in 0..<queues {
            rc = rte_eth_rx_queue_setup(id, q, rxd, socket, nil, pool.pool)
            guard rc == 0 else { throw DPDKError("rte_eth_rx_queue_setup(port \(id))", errno: -rc) }
            rc = rte_eth_tx_queue_setup(id, q, txd, socket, nil)
            guard rc == 0 else { throw DPDKError("rte_eth_tx_queue_setup(port \(id))", errno: -rc) }
        }
        rc = rte_eth_dev_start(id)
        guard rc == 0 else { throw DPDKError("rte_eth_dev_start(port \(id))", errno: -rc) }
        if promiscuous { _ = rte_eth_promiscuous_enable(id) }
    }

    /// The NUMA socket of the device (0 when unknown).
    public var socket: Int32 { max(rte_eth_dev_socket_id(id), 0) }


    /// Link up, without waiting.
    public var linkUp: Bool { keel_link_up(id) != 0 }

    @inlinable @inline(__always)
    public func receive(queue: UInt16, _ burst: UnsafeMutablePointer<OpaquePointer?>, max: UInt16) -> Int {
        Int(rte_eth_rx_burst(id, queue, burst, max))
    }

    /// Sends on `queue`; returns how many the port took (the caller frees or keeps the rest).
    @inlinable @inline(__always)
    public func send(queue: UInt16, _ burst: UnsafeMutablePointer<OpaquePointer?>, count: Int) -> Int {
        Int(rte_eth_tx_burst(id, queue, burst, UInt16(count)))
    }
}

/// An rte_ring of mbuf pointers.
public struct Ring {
    public let ring: OpaquePointer

    @inlinable @inline(__always)
    public init(unchecked r: OpaquePointer) { ring = r }

    public init(name: String, size: Int, socket: Int32, singleProducer: Bool, singleConsumer: Bool) throws {
        var flags: UInt32 = 0
        if singleProducer { flags |= keel_ring_f_sp_enq() }
        if singleConsumer { flags |= keel_ring_f_sc_deq() }
        guard let r = rte_ring_create(name, UInt32(size), socket, flags) else { throw DPDKError("rte_ring_create(\(name), \(size))") }
        ring = r
    }

    /// Enqueues up to `count`; returns how many went in.
    @inlinable @inline(__always)
    public func enqueue(_ burst: UnsafeMutablePointer<OpaquePointer?>, count: Int) -> Int {
        Int(burst.withMemoryRebound(to: UnsafeMutableRawPointer?.self, capacity: count) {
            rte_ring_enqueue_burst(ring, $0, UInt32(count), nil)
        })
    }

    @inlinable @inline(__always)
    public func dequeue(_ burst: UnsafeMutablePointer<OpaquePointer?>, max: Int) -> Int {
        Int(burst.withMemoryRebound(to: UnsafeMutableRawPointer?.self, capacity: max) {
            rte_ring_dequeue_burst(ring, $0, UInt32(max), nil)
        })
    }
}

@inlinable @inline(__always)
public func mbufPort(_ m: OpaquePointer) -> UInt16 { keel_mbuf_port(m) }

/// The NIC's RSS hash when it gave one.
@inlinable @inline(__always)
public func mbufRSS(_ m: OpaquePointer) -> UInt32? {
    var h: UInt32 = 0
    return keel_mbuf_rss(m, &h) != 0 ? h : nil
}

@inlinable @inline(__always)
public func mbufPrefetch(_ m: OpaquePointer) { keel_mbuf_prefetch(m) }

extension EAL {
    /// Runs `body(arg)` on lcore `lcore` (an EAL worker lcore).
    public static func launch(lcore: Int, _ body: @convention(c) (UnsafeMutableRawPointer?) -> Int32, _ arg: UnsafeMutableRawPointer) throws {
        let rc = rte_eal_remote_launch(body, arg, UInt32(lcore))
        guard rc == 0 else { throw DPDKError("rte_eal_remote_launch(lcore \(lcore))", errno: -rc) }
    }

    public static func waitAll() { rte_eal_mp_wait_lcore() }
    public static var mainLcore: Int { Int(rte_get_main_lcore()) }
    public static func lcoreEnabled(_ l: Int) -> Bool { rte_lcore_is_enabled(UInt32(l)) != 0 }
    public static func socket(ofLcore l: Int) -> Int32 { Int32(bitPattern: rte_lcore_to_socket_id(UInt32(l))) }
}
