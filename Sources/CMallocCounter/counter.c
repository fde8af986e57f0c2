#include "malloc_counter.h"
#define _GNU_SOURCE
#include <stddef.h>
#include <stdatomic.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static atomic_uint_fast64_t count;
static atomic_int counting;

uint64_t keel_malloc_count(void) { return atomic_load(&count); }
void keel_malloc_counting(int on) { atomic_store(&counting, on); }

static inline void note(void) {
    if (atomic_load_explicit(&counting, memory_order_relaxed)) atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
}

void *malloc(size_t n) { note(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { note(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { note(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
int posix_memalign(void **out, size_t align, size_t n) {
    note();
    void *p = __libc_memalign(align, n);
    if (!p) return 12;
    *out = p;
    return 0;
}
void *aligned_alloc(size_t align, size_t n) { note(); return __libc_memalign(align, n); }
void *memalign(size_t align, size_t n) { note(); return __libc_memalign(align, n); }

/* swift_retain / swift_release, forwarded to the runtime's own: counts the
 * reference-counting traffic of the loop under test. */
#include <dlfcn.h>

static atomic_uint_fast64_t rc_count;
uint64_t keel_refcount_count(void) { return atomic_load(&rc_count); }

typedef void *(*retain_fn)(void *);
typedef void (*release_fn)(void *);
static retain_fn real_retain;
static release_fn real_release;

void *swift_retain(void *p) {
    if (!real_retain) real_retain = (retain_fn)dlsym(RTLD_NEXT, "swift_retain");
    if (atomic_load_explicit(&counting, memory_order_relaxed)) atomic_fetch_add_explicit(&rc_count, 1, memory_order_relaxed);
    return real_retain(p);
}

void swift_release(void *p) {
    if (!real_release) real_release = (release_fn)dlsym(RTLD_NEXT, "swift_release");
    if (atomic_load_explicit(&counting, memory_order_relaxed)) atomic_fetch_add_explicit(&rc_count, 1, memory_order_relaxed);
    real_release(p);
}
