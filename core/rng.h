/* Explicit, seedable random number generator (xoshiro128+ style state passed by pointer).
 * Every random choice in marsseg takes an ms_rng *: a seed reproduces a run, and the state
 * is a plain struct so that checkpoints can save and restore it exactly. */
#ifndef MS_RNG_H
#define MS_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} ms_rng;

static inline uint64_t ms_rng_splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline void ms_rng_seed(ms_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = ms_rng_splitmix(&seed);
}

static inline uint64_t ms_rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** */
static inline uint64_t ms_rng_u64(ms_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = ms_rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ms_rng_rotl(s[3], 45);
    return result;
}

/* uniform in [0, 1) with 24 bits */
static inline float ms_rng_float(ms_rng *r) { return (float)(ms_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

/* uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias negligible for our n) */
static inline uint32_t ms_rng_below(ms_rng *r, uint32_t n) {
    return (uint32_t)(((ms_rng_u64(r) >> 32) * (uint64_t)n) >> 32);
}

/* standard normal via Box-Muller (one value per call; simplicity over speed: used at init only) */
static inline float ms_rng_normal(ms_rng *r) {
    float u1 = ms_rng_float(r), u2 = ms_rng_float(r);
    if (u1 < 1e-12f) u1 = 1e-12f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

#endif
