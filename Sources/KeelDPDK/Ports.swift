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
