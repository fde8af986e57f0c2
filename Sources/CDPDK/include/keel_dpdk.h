#ifndef KEEL_DPDK_H
#define KEEL_DPDK_H

/* rte_config.h must come first: DPDK's headers assume it (pkg-config passes it with -include). */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_memory.h>
#include <rte_malloc.h>
#include <rte_lpm.h>
#include <rte_fib.h>
#include <rte_fib6.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_bus.h>
#include <rte_dev.h>

/* rte_errno is a per-lcore thread-local macro (RTE_PER_LCORE), which Swift cannot import. */
int keel_rte_errno(void);

/* rte_pktmbuf_mtod is a macro. */
static inline void *_Nonnull keel_mbuf_data(struct rte_mbuf *_Nonnull m) { return rte_pktmbuf_mtod(m, void *); }
/* data_len/pkt_len sit in an anonymous-union-heavy struct; one accessor each keeps Swift out of its layout. */
static inline uint16_t keel_mbuf_data_len(const struct rte_mbuf *m) { return m->data_len; }
static inline void keel_mbuf_set_len(struct rte_mbuf *m, uint16_t len) { m->data_len = len; m->pkt_len = len; }
/* Moves the start of a one-segment mbuf's data by `delta` bytes (positive:
 * into the headroom, for encapsulation) and sets its length to `len`. NULL
 * when the headroom or the buffer is too small (nothing changed then). */
static inline void *keel_mbuf_reframe(struct rte_mbuf *m, int delta, uint16_t len) {
    int off = (int)m->data_off - delta;
    if (off < 0 || off + (int)len > (int)m->buf_len) return NULL;
    m->data_off = (uint16_t)off;
    m->data_len = len;
    m->pkt_len = len;
    return rte_pktmbuf_mtod(m, void *);
}
/* keel_mbuf_reframe for a new frame that ends no later than the old data
 * does (the encapsulation of an IP packet the frame holds whole), so only
 * the headroom can be too small: one check fewer on the tunnel short path. */
static inline void *keel_mbuf_push_front(struct rte_mbuf *m, uint16_t delta, uint16_t len) {
    if (m->data_off < delta) return NULL;
    uint16_t off = (uint16_t)(m->data_off - delta);
    m->data_off = off;
    m->data_len = len;
    m->pkt_len = len;
    return (char *)m->buf_addr + off;
}
/* RTE_MBUF_DEFAULT_BUF_SIZE and RTE_ETH_RSS_* are macros. */
static inline uint16_t keel_mbuf_default_buf_size(void) { return RTE_MBUF_DEFAULT_BUF_SIZE; }

/* Fields the pipeline reads: the input port and the NIC's RSS hash (valid only with the flag). */
static inline uint16_t keel_mbuf_port(const struct rte_mbuf *m) { return m->port; }
static inline int keel_mbuf_rss(const struct rte_mbuf *m, uint32_t *hash) {
    if (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) { *hash = m->hash.rss; return 1; }
    return 0;
}
static inline void keel_mbuf_set_port(struct rte_mbuf *m, uint16_t port) { m->port = port; }
static inline void keel_mbuf_prefetch(struct rte_mbuf *m) { rte_prefetch0(rte_pktmbuf_mtod(m, void *)); }
static inline int keel_link_up(uint16_t port) {
    struct rte_eth_link l;
    return rte_eth_link_get_nowait(port, &l) == 0 && l.link_status == RTE_ETH_LINK_UP;
}
static inline uint32_t keel_ring_f_sp_enq(void) { return RING_F_SP_ENQ; }
static inline uint32_t keel_ring_f_sc_deq(void) { return RING_F_SC_DEQ; }

#endif
