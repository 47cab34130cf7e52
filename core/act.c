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

/* mask[i] for i in [i0, i1) and out; the scalar form of the hash (and the reference of the
 * vector form below, which must give the same bits) */
static void dropout_scalar(float *out, uint8_t *mask, const float *inp, size_t i0, size_t i1, float scale,
                           uint64_t threshold, uint64_t seed) {
    for (size_t i = i0; i < i1; i++) {
        const uint8_t keep = mix64(seed + 0x9E3779B97F4A7C15ull * (i + 1)) >= threshold;
        mask[i] = keep;
        out[i] = keep ? inp[i] * scale : 0.0f;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MS_DROPOUT_VEC 1
/* The same hash, 8 lanes of 64 bits at a time (vpmullq: AVX512DQ), 16 elements per step; the
 * counters advance by adding 16 * the golden-ratio constant, which is the scalar's product
 * modulo 2^64. The scalar loop spent ~2.3 ns per element on the 64-bit multiplies. */
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl"))) static inline __m512i mix64_vec(__m512i z) {
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ull));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64((long long)0x94D049BB133111EBull));
    return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl"))) static void dropout_vec(
    float *out, uint8_t *mask, const float *inp, size_t i0, size_t i1, float scale, uint64_t threshold, uint64_t seed) {
    const uint64_t K = 0x9E3779B97F4A7C15ull;
    const __m512i lane = _mm512_set_epi64(8, 7, 6, 5, 4, 3, 2, 1);
    /* counters of elements i0+1.. and i0+9.. */
    __m512i z0 = _mm512_add_epi64(_mm512_set1_epi64((long long)(seed + K * i0)),
                                  _mm512_mullo_epi64(lane, _mm512_set1_epi64((long long)K)));
    __m512i z1 = _mm512_add_epi64(z0, _mm512_set1_epi64((long long)(K * 8)));
    const __m512i step = _mm512_set1_epi64((long long)(K * 16)), thr = _mm512_set1_epi64((long long)threshold);
    const __m512 sc = _mm512_set1_ps(scale);
    const __m128i one = _mm_set1_epi8(1);
    size_t i = i0;
    for (; i + 16 <= i1; i += 16) {
        const __mmask8 k0 = _mm512_cmpge_epu64_mask(mix64_vec(z0), thr), k1 = _mm512_cmpge_epu64_mask(mix64_vec(z1), thr);
        const __mmask16 k = (__mmask16)(k0 | (unsigned)k1 << 8);
        _mm512_storeu_ps(out + i, _mm512_maskz_mul_ps(k, _mm512_loadu_ps(inp + i), sc));
        _mm_storeu_si128((__m128i *)(mask + i), _mm_maskz_mov_epi8(k, one));
        z0 = _mm512_add_epi64(z0, step);
        z1 = _mm512_add_epi64(z1, step);
    }
    dropout_scalar(out, mask, inp, i, i1, scale, threshold, seed);
}
#else
#define MS_DROPOUT_VEC 0
#endif

/* blocks of elements per loop iteration (a multiple of 16) */
#define DROPOUT_BLOCK 4096
void dropout_forward(float *out, uint8_t *mask, const float *inp, size_t n, float p, uint64_t seed) {
    const float scale = 1.0f / (1.0f - p);
    const uint64_t threshold = (uint64_t)((double)p * 18446744073709551616.0 * (1.0 - 1e-12));
#if MS_DROPOUT_VEC
    const int vec = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    const int vec = 0;
#endif
    const long nb = (long)((n + DROPOUT_BLOCK - 1) / DROPOUT_BLOCK);
#pragma omp parallel for schedule(static)
    for (long b = 0; b < nb; b++) {
        const size_t i0 = (size_t)b * DROPOUT_BLOCK, i1 = i0 + DROPOUT_BLOCK < n ? i0 + DROPOUT_BLOCK : n;
#if MS_DROPOUT_VEC
        if (vec) {
            dropout_vec(out, mask, inp, i0, i1, scale, threshold, seed);
            continue;
        }
#endif
        (void)vec;
        dropout_scalar(out, mask, inp, i0, i1, scale, threshold, seed);
    }
}

#if MS_DROPOUT_VEC
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void dropout_bwd_vec(float *dinp, const float *dout,
                                                                                const uint8_t *mask, size_t i0,
                                                                                size_t i1, float scale, int accumulate) {
    const __m512 sc = _mm512_set1_ps(scale);
    size_t i = i0;
    for (; i + 16 <= i1; i += 16) {
        const __m128i mb = _mm_loadu_si128((const __m128i *)(mask + i));
        const __m512 g = _mm512_maskz_mul_ps(_mm_test_epi8_mask(mb, mb), _mm512_loadu_ps(dout + i), sc);
        _mm512_storeu_ps(dinp + i, accumulate ? _mm512_add_ps(_mm512_loadu_ps(dinp + i), g) : g);
    }
    for (; i < i1; i++) {
        const float g = mask[i] ? dout[i] * scale : 0.0f;
        dinp[i] = accumulate ? dinp[i] + g : g;
    }
}
#endif

void dropout_backward(float *dinp, const float *dout, const uint8_t *mask, size_t n, float p, int accumulate) {
    const float scale = 1.0f / (1.0f - p);
#if MS_DROPOUT_VEC
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
        const long nb = (long)((n + DROPOUT_BLOCK - 1) / DROPOUT_BLOCK);
#pragma omp parallel for schedule(static)
        for (long b = 0; b < nb; b++) {
            const size_t i0 = (size_t)b * DROPOUT_BLOCK, i1 = i0 + DROPOUT_BLOCK < n ? i0 + DROPOUT_BLOCK : n;
            dropout_bwd_vec(dinp, dout, mask, i0, i1, scale, accumulate);
        }
        return;
    }
#endif
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
