/* What the layer tests share (test_layers.c, test_kernels.c): one random stream, random tensors,
 * a dot product, and each test's own seed. */
#ifndef MS_LAYERTEST_H
#define MS_LAYERTEST_H

#include "rng.h"

#include <stdint.h>
#include <stdlib.h>

static ms_rng rng;

static inline float *rnd(size_t n, float scale) {
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) p[i] = (2.0f * ms_rng_float(&rng) - 1.0f) * scale;
    return p;
}

/* rnd, 64-byte aligned as the model's activations are (the kernels' non-temporal stores need it) */
static inline float *rnd_aligned(size_t n, float scale) {
    float *p = aligned_alloc(64, (sizeof(float) * n + 63) & ~(size_t)63);
    for (size_t i = 0; i < n; i++) p[i] = (2.0f * ms_rng_float(&rng) - 1.0f) * scale;
    return p;
}

static inline double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* each test draws from its own seed (MS_TEST_SEED shifts them all, to look for fragile checks):
 * adding a test must not change another's data */
static inline void seeded(void (*fn)(void), uint64_t seed) {
    const char *e = getenv("MS_TEST_SEED");
    ms_rng_seed(&rng, seed + (e ? strtoull(e, NULL, 10) * 1000 : 0));
    fn();
}
#endif
