/* Shared by the libFuzzer harnesses in fuzz/ and by tests/test_fuzz_regress.c, which #includes
 * every harness with MS_FUZZ_REGRESS defined and replays fuzz/regress/<target>/ and
 * fuzz/corpus/<target>/ through the same entry points in a plain (gcc, -Werror) build.
 *
 * A harness checks properties as well as memory safety: FUZZ_CHECK prints what went wrong and
 * aborts, which libFuzzer reports as a crash (and keeps the input) and which fails the
 * regression test. */
#ifndef MS_FUZZ_COMMON_H
#define MS_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define FUZZ_CHECK(cond, ...)                                                              \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* The libFuzzer entry point of a harness whose whole work is one(data, size) (the regression
 * test calls one itself). */
#ifndef MS_FUZZ_REGRESS
#define FUZZ_ENTRY(one)                                                                    \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);                          \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return one(data, size); }
#else
#define FUZZ_ENTRY(one)
#endif

/* A custom mutator for formats guarded by checksums: libFuzzer's mutation, then (7 times in 8)
 * fix(data, size) recomputes the checksums, so that mutations reach the code behind the
 * checksum checks; the eighth keeps them as they are, so the checks themselves stay fuzzed. */
#define FUZZ_CHECKSUM_MUTATOR(fix)                                                         \
    size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);                  \
    size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed); \
    size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) { \
        size = LLVMFuzzerMutate(data, size, max_size);                                     \
        if (seed % 8 != 0) fix(data, size);                                                \
        return size;                                                                       \
    }

/* Inflate the raw deflate stream of n bytes at d (output capped at 64 MiB) through a zlib
 * checksum (crc32 or adler32) of what comes out. 1 when the stream ended properly: then
 * *sum is the checksum and *used the compressed bytes it took. */
static inline int fuzz_inflate_sum(const uint8_t *d, size_t n, uLong (*fn)(uLong, const Bytef *, uInt), uLong *sum,
                                   size_t *used) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) return 0;
    static uint8_t buf[65536];
    uLong s = fn(0, NULL, 0), total = 0;
    int ended = 0;
    zs.next_in = (Bytef *)(uintptr_t)d;
    zs.avail_in = (uInt)n;
    for (;;) {
        zs.next_out = buf;
        zs.avail_out = sizeof buf;
        int r = inflate(&zs, Z_NO_FLUSH);
        size_t got = sizeof buf - zs.avail_out;
        s = fn(s, buf, (uInt)got);
        total += got;
        if (r == Z_STREAM_END) {
            ended = 1;
            break;
        }
        if (r != Z_OK || total > (64u << 20) || (got == 0 && zs.avail_in == 0)) break;
    }
    *sum = s;
    *used = (size_t)zs.total_in;
    inflateEnd(&zs);
    return ended;
}

#endif
