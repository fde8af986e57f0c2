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

/* rte_errno is a per-lcore thread-local macro (RTE_PER_LCORE), which Swift cannot import. */
int keel_rte_errno(void);

/* rte_pktmbuf_mtod is a macro. */
static inline void *keel_mbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
/* data_len/pkt_len sit in an anonymous-union-heavy struct; one accessor each keeps Swift out of its layout. */
static inline uint16_t keel_mbuf_data_len(const struct rte_mbuf *m) { return m->data_len; }
static inline void keel_mbuf_set_len(struct rte_mbuf *m, uint16_t len) { m->data_len = len; m->pkt_len = len; }
/* RTE_MBUF_DEFAULT_BUF_SIZE and RTE_ETH_RSS_* are macros. */
static inline uint16_t keel_mbuf_default_buf_size(void) { return RTE_MBUF_DEFAULT_BUF_SIZE; }

#endif
