/* Internal helpers shared by core/ files (not part of the public API). */
#ifndef MS_UTIL_H
#define MS_UTIL_H

#include "marsseg.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* ms_fail (record a detail for ms_last_error) is public: marsseg.h. */
void ms_clear_error(void);

/* Overflow-checked size arithmetic: return 0 and leave *out untouched on overflow. */
static inline int ms_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

/* A 64-bit hash of bytes, chained through h (the seed, or the hash of what came before):
 * word-at-a-time multiplicative mixing. Not cryptographic: where two inputs must really be
 * equal, a comparison decides (duplicate masks), or a mismatch is an error anyway (ranks). */
static inline uint64_t ms_hash_bytes(const void *buf, size_t bytes, uint64_t h) {
    const unsigned char *p = buf;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001B3ull;
        h ^= h >> 29;
    }
    for (; i < bytes; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    return h ^ (h >> 33);
}

/* Seconds on the monotonic clock (durations: training epochs, plan measurements, passes). */
static inline double ms_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define MS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MS_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
