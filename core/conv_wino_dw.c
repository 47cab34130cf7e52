/* Winograd F(2x2,3x3) weight gradient: the products of the weight gradient in the Winograd
 * domain, 16 per tile and channel pair instead of the direct sum's 36.
 *
 * The forward pass is Y = A^T [U . V] A per tile, U = G g G^T, V = B^T d B (conv_wino.c), so
 *   dL/dU[x] = sum over tiles of Z[x] . V[x],   Z = A dY A^T   (dY: the tile's 2x2 output gradient)
 *   dL/dg    = G^T (dL/dU) G
 * i.e. for each of the 16 positions x one product dU[x] (Cout, Cin) += Z[x] (Cout, tiles) .
 * V[x]^T (tiles, Cin), whose reduction runs over the tiles. A chunk of up to 192 tiles is
 * transformed (V by conv_wino.c's input transform, Z here), V[x] is transposed in 16x16 blocks so
 * that input channels are contiguous, and an 8 x 48 register-blocked kernel adds the chunk into
 * the thread's dU; each thread turns its dU into its slice of the caller's per-thread weight
 * gradients (conv3x3_backward adds the slices in a fixed order).
 *
 * Why: the wide layers' weight gradient went through im2col + OpenBLAS, whose kernel set the
 * environment may pin (OPENBLAS_CORETYPE=Haswell on Zen machines) and whose packing of the long
 * reduction dominates these shapes; the direct kernel (conv_direct.c) is for narrow layers. */
#include "layers.h"
#include "wino.h"

#include <omp.h>
#include <string.h>

#define TC WINO_TC

/* 48-tile sub-chunks per chunk: more tiles per pass over the dU accumulators, as long as a
 * chunk's V and Z stay L2-sized (16 * (Cin + Cout) * tiles floats) */
static int dw_subs(int Cin, int Cout) {
    const size_t per = (size_t)16 * (Cin + Cout) * TC * sizeof(float);
    const int s = (int)((size_t)(1536 * 1024) / per);
    return s < 1 ? 1 : s > 4 ? 4 : s;
}

int conv3x3_wino_dw_ok(int Cin, int Cout, int B, int H, int W) {
    return conv3x3_wino_ok(Cin, 0, Cout, B, H, W) && Cin % 16 == 0;
}

/* V's and Z's rows are the chunk's tiles and a line (16 floats): T*4 bytes is a multiple of 1 KB,
 * which put the 16 positions' rows that a transform writes for one channel into a few L1 sets
 * (all 16 in one from 16 channels on) */
static size_t dw_ld(int Cin, int Cout) { return (size_t)TC * dw_subs(Cin, Cout) + 16; }

/* per thread: dU (16, Cout, Cin), V (16, Cin, ld), Z (16, Cout, ld), Vt (T, Cin) with T the chunk */
static size_t dw_slice(int Cin, int Cout) {
    const size_t T = (size_t)TC * dw_subs(Cin, Cout), ld = dw_ld(Cin, Cout);
    return (size_t)16 * Cout * Cin + 16 * ld * (Cin + Cout) + T * Cin + 64;
}
size_t conv3x3_wino_dw_ws_floats(int Cin, int Cout) { return (size_t)omp_get_num_procs() * dw_slice(Cin, Cout); }

#if MS_HAVE_WINO
/* Z (16, Cout, ldz) <- A dY A^T of the sub-chunk's tiles (zeros for absent ones), A^T = [1 1 1 0;
 * 0 1 -1 -1]; dY read as contiguous rows where W allows (wino_row_layout), else gathered */
__attribute__((target("avx512f"))) static void grad_transform(float *Z, size_t ldz, const float *dout, int Cout,
                                                             size_t N, int H, int W, long t0, int nt,
                                                             const chunk_tiles *ct) {
    const size_t plane = (size_t)Cout * ldz;
    const int TW = W / 2, TH = H / 2, rows = wino_row_layout(H, W) != 0;
    const size_t half = wino_row_layout(H, W) == 2 ? 2 * (size_t)W : 16; /* the second 8 tiles' rows (see wino.h) */
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int v = 0; v < 3; v++) {
        float *z0 = Z + 16 * v;
        if (16 * v >= nt) {
            for (int x = 0; x < 16; x++)
                for (int co = 0; co < Cout; co++) _mm512_storeu_ps(z0 + x * plane + (size_t)co * ldz, _mm512_setzero_ps());
            continue;
        }
        size_t r0 = 0;
        __m512i o00 = _mm512_setzero_si512(), o01 = o00, o10 = o00, o11 = o00;
        if (rows) {
            const long T = t0 + 16 * v;
            const int tx0 = (int)(T % TW), ty = (int)((T / TW) % TH), b = (int)(T / ((long)TW * TH));
            r0 = ((size_t)b * H + 2 * ty) * W + 2 * tx0;
        } else { /* the output tile's top-left pixel: the input tile's + one row + one column */
            o00 = _mm512_add_epi32(ct->base[v], _mm512_set1_epi32(W + 1));
            o01 = _mm512_add_epi32(o00, _mm512_set1_epi32(1));
            o10 = _mm512_add_epi32(o00, _mm512_set1_epi32(W));
            o11 = _mm512_add_epi32(o10, _mm512_set1_epi32(1));
        }
        for (int co = 0; co < Cout; co++) {
            const float *src = dout + (size_t)co * N;
            __m512 y00, y01, y10, y11;
            if (rows) {
                const float *p = src + r0;
                if (co + WINO_PREFETCH < Cout) { /* WINO_PREFETCH channels ahead (wino.h) */
                    const float *q = p + (size_t)WINO_PREFETCH * N;
                    const float *qs[4] = {q, q + half, q + W, q + W + half};
                    for (int k = 0; k < 4; k++) {
                        _mm_prefetch((const char *)qs[k], _MM_HINT_T0);
                        _mm_prefetch((const char *)(qs[k] + 15), _MM_HINT_T0);
                    }
                }
                const __m512 a0 = _mm512_loadu_ps(p), a1 = _mm512_loadu_ps(p + half);
                const __m512 b0 = _mm512_loadu_ps(p + W), b1 = _mm512_loadu_ps(p + W + half);
                y00 = _mm512_permutex2var_ps(a0, even, a1), y01 = _mm512_permutex2var_ps(a0, odd, a1);
                y10 = _mm512_permutex2var_ps(b0, even, b1), y11 = _mm512_permutex2var_ps(b0, odd, b1);
            } else {
                const __mmask16 lv = ct->live[v];
                const __m512 z = _mm512_setzero_ps();
                y00 = _mm512_mask_i32gather_ps(z, lv, o00, src, 4), y01 = _mm512_mask_i32gather_ps(z, lv, o01, src, 4);
                y10 = _mm512_mask_i32gather_ps(z, lv, o10, src, 4), y11 = _mm512_mask_i32gather_ps(z, lv, o11, src, 4);
            }
            /* T = A dY (4x2), then Z = T A^T (4x4) */
            const __m512 t[4][2] = {{y00, y01},
                                    {_mm512_add_ps(y00, y10), _mm512_add_ps(y01, y11)},
                                    {_mm512_sub_ps(y00, y10), _mm512_sub_ps(y01, y11)},
                                    {_mm512_sub_ps(_mm512_setzero_ps(), y10), _mm512_sub_ps(_mm512_setzero_ps(), y11)}};
            float *o = z0 + (size_t)co * ldz;
            for (int i = 0; i < 4; i++) {
                _mm512_storeu_ps(o + (size_t)(i * 4 + 0) * plane, t[i][0]);
                _mm512_storeu_ps(o + (size_t)(i * 4 + 1) * plane, _mm512_add_ps(t[i][0], t[i][1]));
                _mm512_storeu_ps(o + (size_t)(i * 4 + 2) * plane, _mm512_sub_ps(t[i][0], t[i][1]));
                _mm512_storeu_ps(o + (size_t)(i * 4 + 3) * plane, _mm512_sub_ps(_mm512_setzero_ps(), t[i][1]));
            }
        }
    }
}

/* dst (16 rows, ldd) = src (16 rows, lds) transposed: a 16x16 block of floats */
__attribute__((target("avx512f"))) void wino_transpose16(float *dst, size_t ldd, const float *src, size_t lds) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * lds);
    for (int i = 0; i < 16; i += 2) { /* pairs of 32-bit elements */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* 64-bit pairs */
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    /* r[4k + m] holds, in each 128-bit lane L, rows 4k..4k+3 of column 4L + m; gather the lanes */
    for (int k = 0; k < 4; k++) {
        const __m512 a = r[k], b = r[4 + k], c = r[8 + k], d = r[12 + k];
        /* lanes (a0 b0 a2 b2), (c0 d0 c2 d2), ... */
        const __m512 ab02 = _mm512_shuffle_f32x4(a, b, 0x88), ab13 = _mm512_shuffle_f32x4(a, b, 0xDD);
        const __m512 cd02 = _mm512_shuffle_f32x4(c, d, 0x88), cd13 = _mm512_shuffle_f32x4(c, d, 0xDD);
        t[k] = _mm512_shuffle_f32x4(ab02, cd02, 0x88);      /* lane 0 of a b c d: column k */
        t[8 + k] = _mm512_shuffle_f32x4(ab02, cd02, 0xDD);  /* lane 2: column 8 + k */
        t[4 + k] = _mm512_shuffle_f32x4(ab13, cd13, 0x88);  /* lane 1: column 4 + k */
        t[12 + k] = _mm512_shuffle_f32x4(ab13, cd13, 0xDD); /* lane 3: column 12 + k */
    }
    for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + i * ldd, t[i]);
}

/* dU rows co0..co0+7, columns ci0..ci0+16*NV-1 (row stride Cin) += Z (8 rows from co0, stride
 * ldz) . Vt (nt rows, stride Cin) from column ci0; a macro for literal bounds (see conv_direct.c) */
#define DW_BLOCK(name, NV)                                                                              \
    __attribute__((target("avx512f"))) void name(float *dU, const float *Z, size_t ldz, const float *Vt,  \
                                                 int nt, int Cin) {                                       \
        __m512 acc[8 * NV];                                                                             \
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)                                             \
            _Pragma("GCC unroll 3") for (int k = 0; k < NV; k++)                                        \
                acc[j * NV + k] = _mm512_loadu_ps(dU + (size_t)j * Cin + 16 * k);                       \
        for (int t = 0; t < nt; t++) {                                                                  \
            __m512 v[NV];                                                                               \
            _Pragma("GCC unroll 3") for (int k = 0; k < NV; k++) v[k] = _mm512_loadu_ps(Vt + (size_t)t * Cin + 16 * k); \
            _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {                                       \
                const __m512 z = _mm512_set1_ps(Z[j * ldz + t]);                                        \
                _Pragma("GCC unroll 3") for (int k = 0; k < NV; k++)                                    \
                    acc[j * NV + k] = _mm512_fmadd_ps(v[k], z, acc[j * NV + k]);                        \
            }                                                                                           \
        }                                                                                               \
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)                                             \
            _Pragma("GCC unroll 3") for (int k = 0; k < NV; k++)                                        \
                _mm512_storeu_ps(dU + (size_t)j * Cin + 16 * k, acc[j * NV + k]);                       \
    }
DW_BLOCK(wino_dw_8x48, 3)
DW_BLOCK(wino_dw_8x32, 2)
DW_BLOCK(wino_dw_8x16, 1)

/* dw (Cout, Cin*9) += G^T dU G per channel pair, G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1] */
static void dU_to_dw(float *dw, const float *dU, int Cin, int Cout) {
    const size_t plane = (size_t)Cout * Cin;
    for (int co = 0; co < Cout; co++)
        for (int ci = 0; ci < Cin; ci++) {
            float u[4][4], t[3][4];
            for (int x = 0; x < 16; x++) u[x / 4][x % 4] = dU[x * plane + (size_t)co * Cin + ci];
            for (int j = 0; j < 4; j++) { /* G^T u: 3x4 */
                t[0][j] = u[0][j] + 0.5f * (u[1][j] + u[2][j]);
                t[1][j] = 0.5f * (u[1][j] - u[2][j]);
                t[2][j] = 0.5f * (u[1][j] + u[2][j]) + u[3][j];
            }
            float *d = dw + (size_t)co * Cin * 9 + (size_t)ci * 9;
            for (int a = 0; a < 3; a++) { /* (G^T u) G: 3x3 */
                d[a * 3 + 0] += t[a][0] + 0.5f * (t[a][1] + t[a][2]);
                d[a * 3 + 1] += 0.5f * (t[a][1] - t[a][2]);
                d[a * 3 + 2] += 0.5f * (t[a][1] + t[a][2]) + t[a][3];
            }
        }
}
#endif

void conv3x3_wino_dw(float *dw_ws, size_t wslice, const float *dout, const float *inp, int B, int Cin, int Cout, int H,
                     int W, float *ws) {
    // dout (Cout,B,H,W), inp (Cin,B,H,W); thread t adds into dw_ws + t*wslice, (Cout, Cin*9)
#if MS_HAVE_WINO
    const size_t N = (size_t)B * H * W, slice = dw_slice(Cin, Cout);
    const int subs = dw_subs(Cin, Cout), CT = TC * subs, LD = (int)dw_ld(Cin, Cout);
    const long T = (long)B * (H / 2) * (W / 2), nchunks = (T + CT - 1) / CT;
    const int rows = wino_row_layout(H, W) != 0;
#pragma omp parallel num_threads(conv_threads())
    {
        const int tid = omp_get_thread_num();
        float *dU = ws + (size_t)tid * slice, *V = dU + (size_t)16 * Cout * Cin;
        float *Z = V + (size_t)16 * Cin * LD, *Vt = Z + (size_t)16 * Cout * LD;
        memset(dU, 0, sizeof(float) * 16 * Cout * Cin);
#pragma omp for schedule(static)
        for (long ch = 0; ch < nchunks; ch++) {
            const long c0 = ch * CT;
            const int nt = T - c0 < CT ? (int)(T - c0) : CT, ntp = (nt + 15) & ~15;
            for (int s = 0; s * TC < nt; s++) {
                const long t0 = c0 + s * TC;
                const int n = nt - s * TC < TC ? nt - s * TC : TC;
                chunk_tiles ct;
                if (rows) {
                    wino_input_transform_rows(V + s * TC, LD, inp, NULL, Cin, 0, N, H, W, t0, n, 0, Cin);
                } else {
                    wino_tiles_of(&ct, B, H, W, t0, n);
                    wino_input_transform(V + s * TC, LD, inp, NULL, Cin, 0, N, W, &ct, 0, Cin);
                }
                grad_transform(Z + s * TC, LD, dout, Cout, N, H, W, t0, n, &ct);
            }
            for (int x = 0; x < 16; x++) {
                const float *Vx = V + (size_t)x * Cin * LD, *Zx = Z + (size_t)x * Cout * LD;
                float *dUx = dU + (size_t)x * Cout * Cin;
                for (int c = 0; c < Cin; c += 16) /* Vt (ntp, Cin) = Vx (Cin, ntp)^T */
                    for (int t = 0; t < ntp; t += 16) wino_transpose16(Vt + (size_t)t * Cin + c, Cin, Vx + (size_t)c * LD + t, LD);
                for (int co = 0; co < Cout; co += 8) {
                    int c = 0;
                    for (; c + 48 <= Cin; c += 48) wino_dw_8x48(dUx + (size_t)co * Cin + c, Zx + (size_t)co * LD, LD, Vt + c, ntp, Cin);
                    if (Cin - c == 32) wino_dw_8x32(dUx + (size_t)co * Cin + c, Zx + (size_t)co * LD, LD, Vt + c, ntp, Cin);
                    else if (Cin - c == 16) wino_dw_8x16(dUx + (size_t)co * Cin + c, Zx + (size_t)co * LD, LD, Vt + c, ntp, Cin);
                }
            }
        }
        dU_to_dw(dw_ws + (size_t)tid * wslice, dU, Cin, Cout);
    }
#else
    (void)dw_ws, (void)wslice, (void)dout, (void)inp, (void)B, (void)Cin, (void)Cout, (void)H, (void)W, (void)ws;
#endif
}
