#include <rte_config.h>
#include <rte_ethdev.h>
#include <rte_fib.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include "keel_bench_ref.h"

#define BURST 32

/* RFC 1812 checks as l3fwd does them (is_valid_ipv4_pkt). */
static inline int valid_ipv4(const struct rte_ipv4_hdr *h, uint32_t len) {
    if (len < sizeof(struct rte_ipv4_hdr)) return 0;
    if (h->version_ihl >> 4 != 4) return 0;
    if ((h->version_ihl & 0xf) < 5) return 0;
    if (rte_be_to_cpu_16(h->total_length) < sizeof(struct rte_ipv4_hdr)) return 0;
    return 1;
}

int keel_ref_l3fwd(void *arg) {
    struct keel_ref_ctx *c = arg;
    struct rte_mbuf *rx[BURST], *tx[BURST];
    uint32_t ips[BURST];
    uint64_t nh[BURST];
    struct rte_fib *fib = c->fib;
    uint64_t sent_total = 0;
    while (!c->stop) {
        uint16_t n = rte_eth_rx_burst(c->rx_port, 0, rx, BURST);
        if (n == 0) continue;
        uint16_t k = 0;
        for (uint16_t i = 0; i < n; i++) {
            struct rte_mbuf *m = rx[i];
            if (i + 4 < n) rte_prefetch0(rte_pktmbuf_mtod(rx[i + 4], void *));
            struct rte_ether_hdr *e = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
            struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(e + 1);
            if (e->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
                !valid_ipv4(ip, m->data_len - sizeof(*e)) || ip->time_to_live <= 1) {
                rte_pktmbuf_free(m);
                continue;
            }
            ips[k] = rte_be_to_cpu_32(ip->dst_addr);
            tx[k++] = m;
        }
        rte_fib_lookup_bulk(fib, ips, nh, k);
        uint16_t out = 0;
        for (uint16_t i = 0; i < k; i++) {
            struct rte_mbuf *m = tx[i];
            if (nh[i] >= c->next_hops) { rte_pktmbuf_free(m); continue; }
            struct rte_ether_hdr *e = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
            struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(e + 1);
            /* l3fwd's TTL/checksum update (RFC 1812 5.3.1 style). */
            --(ip->time_to_live);
            ++(ip->hdr_checksum);
            rte_memcpy(&e->dst_addr, c->macs + 6 * nh[i], 6);
            rte_memcpy(&e->src_addr, c->src_mac, 6);
            tx[out++] = m;
        }
        uint16_t sent = rte_eth_tx_burst(c->tx_port, 0, tx, out);
        for (uint16_t i = sent; i < out; i++) rte_pktmbuf_free(tx[i]);
        sent_total += sent;
        c->packets = sent_total;
    }
    return 0;
}
