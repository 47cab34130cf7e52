/* Element-wise activations: ReLU backward and inverted dropout. */
#include "layers.h"

void relu_backward(float *dinp, const float *dout, const float *out, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

/* A counter-based hash (splitmix64 finaliser) of (seed, i): the mask does not depend on how
 * the loop is split across threads, so runs are reproducible for any thread count. */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void dropout_forward(float *out, uint8_t *mask, const float *inp, size_t n, float p, uint64_t seed) {
    const float scale = 1.0f / (1.0f - p);
    const uint64_t threshold = (uint64_t)((double)p * 18446744073709551616.0 * (1.0 - 1e-12));
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const uint8_t keep = mix64(seed + 0x9E3779B97F4A7C15ull * (i + 1)) >= threshold;
        mask[i] = keep;
        out[i] = keep ? inp[i] * scale : 0.0f;
    }
}

void dropout_backward(float *dinp, const float *dout, const uint8_t *mask, size_t n, float p, int accumulate) {
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = mask[i] ? dout[i] * scale : 0.0f;
        dinp[i] = accumulate ? dinp[i] + g : g;
    }
}
