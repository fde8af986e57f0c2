#include "keel_dpdk.h"

int keel_rte_errno(void) { return rte_errno; }
