/* Element-wise activations: ReLU backward, inverted dropout, sigmoid and the attention gate's
 * per-pixel product. */
#include "layers.h"

#include <math.h>

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

void sigmoid_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = 1.0f / (1.0f + expf(-inp[i]));
}

void sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * out[i] * (1.0f - out[i]);
}

void gate_forward(float *out, const float *x, const float *g, int C, size_t N) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * N;
        float *oc = out + (size_t)c * N;
        for (size_t i = 0; i < N; i++) oc[i] = xc[i] * g[i];
    }
}

/* Pixel blocks: each thread takes its pixels through every channel, dg first, so dx may
 * overwrite dout. */
#define GATE_BLOCK 512
void gate_backward(float *dx, float *dg, const float *dout, const float *x, const float *g, int C, size_t N) {
    const long nb = (long)((N + GATE_BLOCK - 1) / GATE_BLOCK);
#pragma omp parallel for schedule(static)
    for (long bi = 0; bi < nb; bi++) {
        const size_t i0 = (size_t)bi * GATE_BLOCK, i1 = i0 + GATE_BLOCK < N ? i0 + GATE_BLOCK : N;
        for (size_t i = i0; i < i1; i++) dg[i] = 0.0f;
        for (int c = 0; c < C; c++) {
            const float *d = dout + (size_t)c * N, *xc = x + (size_t)c * N;
            for (size_t i = i0; i < i1; i++) dg[i] += d[i] * xc[i];
        }
        for (int c = 0; c < C; c++) {
            const float *d = dout + (size_t)c * N;
            float *o = dx + (size_t)c * N;
            for (size_t i = i0; i < i1; i++) o[i] = d[i] * g[i];
        }
    }
}
