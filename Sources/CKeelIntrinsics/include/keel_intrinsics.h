#ifndef KEEL_INTRINSICS_H
#define KEEL_INTRINSICS_H

/* mallinfo2 (heap in use, for memory figures): malloc.h is not part of Swift's Glibc module. */
#include <malloc.h>

/* Whether fd's file is on hugetlbfs (sys/vfs.h is not part of Swift's Glibc module either). */
#include <sys/vfs.h>
static inline int keel_on_hugetlbfs(int fd) {
    struct statfs fs;
    return fstatfs(fd, &fs) == 0 && fs.f_type == 0x958458f6; /* HUGETLBFS_MAGIC */
}

/* Swift has no prefetch; these inline into Swift callers through the clang importer. */
static inline __attribute__((always_inline)) void keel_prefetch0(const void *p) {
    __builtin_prefetch(p, 0, 3);
}



#include <stdint.h>
#include <stddef.h>

/* CRC32C with the SSE4.2 instruction: Swift has no spelling for it. The target
 * attribute lets it compile without raising the whole module's -march. */
__attribute__((target("sse4.2")))
static inline uint32_t keel_crc32c(uint32_t crc, const void *data, size_t length) {
    const uint8_t *p = (const uint8_t *)data;
    uint64_t c = ~crc;
    while (length >= 8) {
        uint64_t v;
        __builtin_memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        length -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (length > 0) {
        c32 = __builtin_ia32_crc32qi(c32, *p);
        p++;
        length--;
    }
    return ~c32;
}
#endif
