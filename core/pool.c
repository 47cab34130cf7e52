/* 2x2 max-pool with stride 2 on P planes of (H, W); H and W are even (the U-Net guarantees it). */
#include "layers.h"

void maxpool2x2_forward(float *out, const float *inp, size_t P, int H, int W) {
    const int H2 = H / 2, W2 = W / 2;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < P; p++) {
        const float *in = inp + p * (size_t)H * W;
        float *o = out + p * (size_t)H2 * W2;
        for (int y = 0; y < H2; y++) {
            const float *r0 = in + (size_t)(2 * y) * W, *r1 = r0 + W;
            for (int x = 0; x < W2; x++) {
                float m = r0[2 * x];
                if (r0[2 * x + 1] > m) m = r0[2 * x + 1];
                if (r1[2 * x] > m) m = r1[2 * x];
                if (r1[2 * x + 1] > m) m = r1[2 * x + 1];
                o[(size_t)y * W2 + x] = m;
            }
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MS_POOL_VEC 1
/* One row pair of a plane, 16 windows per step (W a multiple of 32): the four candidates of each
 * window deinterleaved from the two rows, the winner found with the scalar loop's strict > in
 * its order (first maximum in scan order), the gradient added to it alone and the rows
 * interleaved back. */
__attribute__((target("avx512f"))) static void pool_bwd_rows(float *d0, float *d1, const float *r0, const float *r1,
                                                             const float *g, int W2) {
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (int x = 0; x < W2; x += 16) {
        const __m512 a0 = _mm512_loadu_ps(r0 + 2 * x), a1 = _mm512_loadu_ps(r0 + 2 * x + 16);
        const __m512 b0 = _mm512_loadu_ps(r1 + 2 * x), b1 = _mm512_loadu_ps(r1 + 2 * x + 16);
        const __m512 a = _mm512_permutex2var_ps(a0, ev, a1), b = _mm512_permutex2var_ps(a0, od, a1);
        const __m512 c = _mm512_permutex2var_ps(b0, ev, b1), d = _mm512_permutex2var_ps(b0, od, b1);
        __m512 m = a;
        const __mmask16 kb = _mm512_cmp_ps_mask(b, m, _CMP_GT_OQ);
        m = _mm512_mask_mov_ps(m, kb, b);
        const __mmask16 kc = _mm512_cmp_ps_mask(c, m, _CMP_GT_OQ);
        m = _mm512_mask_mov_ps(m, kc, c);
        const __mmask16 kd = _mm512_cmp_ps_mask(d, m, _CMP_GT_OQ);
        /* the winner: d if kd, else c if kc, else b if kb, else a */
        const __mmask16 wd = kd, wc = kc & ~kd, wb = kb & ~kc & ~kd, wa = ~(kb | kc | kd);
        /* the gradient goes to the winner alone (a masked add: the others stay exactly as they
         * were, -0 included); windows interleaved back into the two rows */
        const __m512 gv = _mm512_loadu_ps(g + x);
        const __m512i one = _mm512_set1_epi32(1);
        const __m512i ia = _mm512_maskz_mov_epi32(wa, one), ib = _mm512_maskz_mov_epi32(wb, one);
        const __m512i ic = _mm512_maskz_mov_epi32(wc, one), id = _mm512_maskz_mov_epi32(wd, one);
        const __m512i ilo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        const __m512i ihi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        const __m512 g0 = _mm512_permutexvar_ps(ilo, gv), g1 = _mm512_permutexvar_ps(ihi, gv); /* each twice */
        const __mmask16 m00 = _mm512_test_epi32_mask(_mm512_permutex2var_epi32(ia, ilo, ib), one);
        const __mmask16 m01 = _mm512_test_epi32_mask(_mm512_permutex2var_epi32(ia, ihi, ib), one);
        const __mmask16 m10 = _mm512_test_epi32_mask(_mm512_permutex2var_epi32(ic, ilo, id), one);
        const __mmask16 m11 = _mm512_test_epi32_mask(_mm512_permutex2var_epi32(ic, ihi, id), one);
        float *p0 = d0 + 2 * x, *p1 = d1 + 2 * x;
        __m512 v;
        v = _mm512_loadu_ps(p0), _mm512_storeu_ps(p0, _mm512_mask_add_ps(v, m00, v, g0));
        v = _mm512_loadu_ps(p0 + 16), _mm512_storeu_ps(p0 + 16, _mm512_mask_add_ps(v, m01, v, g1));
        v = _mm512_loadu_ps(p1), _mm512_storeu_ps(p1, _mm512_mask_add_ps(v, m10, v, g0));
        v = _mm512_loadu_ps(p1 + 16), _mm512_storeu_ps(p1 + 16, _mm512_mask_add_ps(v, m11, v, g1));
    }
}
#else
#define MS_POOL_VEC 0
#endif

void maxpool2x2_backward(float *dinp, const float *dout, const float *inp, size_t P, int H, int W) {
    const int H2 = H / 2, W2 = W / 2;
#if MS_POOL_VEC
    const int vec = W % 32 == 0 && __builtin_cpu_supports("avx512f");
#else
    const int vec = 0;
#endif
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < P; p++) {
        const float *in = inp + p * (size_t)H * W;
        float *din = dinp + p * (size_t)H * W;
        const float *g = dout + p * (size_t)H2 * W2;
        for (int y = 0; y < H2; y++) {
            const size_t i0 = (size_t)(2 * y) * W, i1 = i0 + W;
#if MS_POOL_VEC
            if (vec) {
                pool_bwd_rows(din + i0, din + i1, in + i0, in + i1, g + (size_t)y * W2, W2);
                continue;
            }
#endif
            (void)vec;
            for (int x = 0; x < W2; x++) {
                // first maximum in scan order, as PyTorch picks it (strict >)
                size_t best = i0 + 2 * x;
                float m = in[best];
                if (in[i0 + 2 * x + 1] > m) { best = i0 + 2 * x + 1; m = in[best]; }
                if (in[i1 + 2 * x] > m) { best = i1 + 2 * x; m = in[best]; }
                if (in[i1 + 2 * x + 1] > m) { best = i1 + 2 * x + 1; }
                din[best] += g[(size_t)y * W2 + x];
            }
        }
    }
}
