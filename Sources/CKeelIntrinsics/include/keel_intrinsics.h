#ifndef KEEL_INTRINSICS_H
#define KEEL_INTRINSICS_H

/* Swift has no prefetch; these inline into Swift callers through the clang importer. */
static inline __attribute__((always_inline)) void keel_prefetch0(const void *p) {
    __builtin_prefetch(p, 0, 3);
}

#endif
