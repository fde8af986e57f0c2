#ifndef KEEL_BENCH_REF_H
#define KEEL_BENCH_REF_H
#include <stdint.h>

/* The reference forwarder of `keel-bench forward`: the shape of DPDK's
 * examples/l3fwd (LPM mode) on one lcore: rx_burst -> IPv4 checks ->
 * rte_fib_lookup_bulk -> next-hop MAC, TTL and checksum -> tx_burst. */
struct keel_ref_ctx {
    uint16_t rx_port, tx_port;
    void *fib;                   /* struct rte_fib * */
    const uint8_t *macs;         /* 6 bytes per next-hop id */
    uint32_t next_hops;
    uint8_t src_mac[6];
    volatile int stop;
    volatile uint64_t packets;   /* transmitted so far */
};

/* An lcore_function_t: runs until ctx->stop. */
int keel_ref_l3fwd(void *ctx);

#endif
