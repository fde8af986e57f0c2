#ifndef KEEL_MALLOC_COUNTER_H
#define KEEL_MALLOC_COUNTER_H
#include <stdint.h>

/* Counts calls into the allocator by interposing malloc and friends in the
 * executable that links this target (test helpers only). Swift cannot define
 * C symbols like `malloc`, hence C. */
uint64_t keel_malloc_count(void);
void keel_malloc_counting(int on);
/* swift_retain + swift_release calls while counting. */
uint64_t keel_refcount_count(void);

#endif
