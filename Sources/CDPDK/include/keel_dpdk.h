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

/* rte_errno is a per-lcore thread-local macro (RTE_PER_LCORE), which Swift cannot import. */
int keel_rte_errno(void);

#endif
