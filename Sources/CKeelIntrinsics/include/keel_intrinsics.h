#ifndef KEEL_INTRINSICS_H
#define KEEL_INTRINSICS_H

/* mallinfo2 (heap in use, for memory figures): malloc.h is not part of Swift's Glibc module. */
#include <malloc.h>

/* Swift has no prefetch; these inline into Swift callers through the clang importer. */
static inline __attribute__((always_inline)) void keel_prefetch0(const void *p) {
    __builtin_prefetch(p, 0, 3);
}

#endif
