/* Winograd F(4x4, 3x3) convolution (padding 1) for inference: each 4x4 output tile comes from a
 * 6x6 input tile through 36 products per channel pair instead of 144, i.e. 4x fewer multiply-
 * adds than the direct sum and 1.78x fewer than F(2x2,3x3) (conv_wino.c), for transforms that
 * cost about as much per output pixel (Lavin & Gray 2016, the standard points 0, +-1, +-2):
 *
 *   U = G g G^T     weights, once per frozen model (conv3x3_wino4_infer_weights)   (36, Cout, Ct)
 *   V = B^T d B     each 6x6 input tile, per chunk of 48 tiles               (36, Ct, 48)
 *   M[x] = U[x] V[x]  36 small GEMMs, conv_wino.c's 8-channel x 48-tile kernel
 *   Y = A^T M A     the 4x4 outputs, plus bias, ReLU
 *
 * Only images whose width is a multiple of 64 and height of 4, or 32 wide and a multiple of 8
 * high (the top three levels of a 64x128 tile): a vector of 16 tiles is then one run of 64
 * columns of a tile row, or two runs of 32 of two, read with plain loads and permutes, written
 * back the same way (Zen 4's gathers and scatters are slow: conv_wino.c). The wider tile carries larger transform constants: in float32 the error is a
 * few times F(2x2)'s, still within 1e-5 of the direct sum's scale (tested against it and
 * PyTorch). An appended 1x1 row (the ResBlock shortcut) is a kernel with only its centre tap:
 * its U is zero outside the middle 4x4 of the 6x6 positions, so the other 20 run over the Cin
 * channels alone, and its transform computes only the middle 4x4, from the tiles' own pixels. Which convolutions take it is the plan's measurement (conv.c). */
#include "layers.h"
#include "wino4.h"

#include <omp.h>
#include <string.h>

#define TC WINO_TC
#define NX 36 /* positions of a 6x6 tile */

int conv3x3_wino4_infer_ok(int Cout, int B, int H, int W) {
    (void)B;
#if MS_HAVE_WINO
    return __builtin_cpu_supports("avx512f") && Cout % 8 == 0 && H > 0 &&
           ((W % 64 == 0 && H % 4 == 0) || (W == 32 && H % 8 == 0));
#else
    (void)Cout, (void)H, (void)W;
    return 0;
#endif
}

size_t conv3x3_wino4_infer_weight_floats(int Cin, int Cextra, int Cout) { return (size_t)NX * Cout * (Cin + Cextra); }

size_t conv3x3_wino4_infer_ws_floats(int Ct, int Cout) {
    return (size_t)omp_get_num_procs() * ((size_t)NX * TC * (Ct + Cout) + 16);
}

/* U (36, Cout, Ct) = G g G^T (wino4.h) of the Cin 3x3 kernels at w + o*ldw + i*9, then of the
 * Cextra centre-only ones w[o][9 Cin + e] */
void conv3x3_wino4_infer_weights(float *U, const float *w, size_t ldw, int Cin, int Cextra, int Cout) {
    const size_t Ct = (size_t)Cin + Cextra, plane = (size_t)Cout * Ct;
    wino4_weights(U, Ct, plane, w, Cout, Cin, ldw, 9, WINO4_TAPS);
    wino4_weights(U + Cin, Ct, plane, w + (size_t)9 * Cin, Cout, Cextra, ldw, 1, WINO4_CENTRE);
}

#if MS_HAVE_WINO
/* One vector of 16 tiles: tiles tx0 .. tx0+15 of tile row ty of image b (W a multiple of 64), or
 * with `two` (W = 32: 8 tiles a row, H a multiple of 8) the 8 tiles of rows ty (lanes 0-7) and
 * ty+1 (lanes 8-15), whose inputs and outputs lie 4 rows (4W floats) further on */
typedef struct {
    long row0;        /* offset of input row 4ty-1, column 4tx0-1, in a channel plane (-W-1 at the top left) */
    int rows_live;    /* bit r: input row 4ty-1+r lies inside the image; two: bit 8+r, that row of ty+1 */
    __mmask16 m0, m4; /* one row: masks of the first and the last (fifth) load of a row */
    size_t out0;      /* offset of output row 4ty, column 4tx0 */
    int two;
} vec_geom;

static int wino4_two(int H, int W) { return W == 32 && H % 8 == 0; }

static void geom_of(vec_geom *g, int H, int W, long T) {
    const int TW = W / 4, TH = H / 4;
    const int tx0 = (int)(T % TW), ty = (int)((T / TW) % TH), b = (int)(T / ((long)TW * TH));
    g->two = wino4_two(H, W);
    g->row0 = ((long)b * H + 4 * ty) * W + 4L * tx0 - W - 1;
    g->rows_live = 0;
    for (int r = 0; r < 6; r++) {
        const int y = 4 * ty - 1 + r;
        if (y >= 0 && y < H) g->rows_live |= 1 << r;
        if (g->two && y + 4 >= 0 && y + 4 < H) g->rows_live |= 1 << (8 + r);
    }
    g->m0 = tx0 == 0 ? 0xFFFE : 0xFFFF;
    g->m4 = tx0 + 16 < TW ? 0x3 : 0x1;
    g->out0 = ((size_t)b * H + 4 * ty) * W + 4 * (size_t)tx0;
}

/* d[j] (j < 4) lane l = element 4l + j of x0|x1 for l < 8, of x2|x3 (element 4(l-8) + j) for the
 * rest: two rounds of even/odd splits, 8 permutes */
__attribute__((target("avx512f"), always_inline)) static inline void deal4(__m512 d[4], __m512 x0, __m512 x1, __m512 x2,
                                                                          __m512 x3) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512 e01 = _mm512_permutex2var_ps(x0, even, x1), o01 = _mm512_permutex2var_ps(x0, odd, x1);
    const __m512 e23 = _mm512_permutex2var_ps(x2, even, x3), o23 = _mm512_permutex2var_ps(x2, odd, x3);
    d[0] = _mm512_permutex2var_ps(e01, even, e23);
    d[1] = _mm512_permutex2var_ps(o01, even, o23);
    d[2] = _mm512_permutex2var_ps(e01, odd, e23);
    d[3] = _mm512_permutex2var_ps(o01, odd, o23);
}

/* d[0..5] of one input row of a vector (lane l: column 4l + j - 1 of the tiles' row), read with
 * loads and permutes; zeros for rows outside the image */
__attribute__((target("avx512f"), always_inline)) static inline void row_inputs(__m512 d[6], const float *src,
                                                                               const vec_geom *g, int W, int r) {
    const float *p = src + g->row0 + (long)r * W;
    if (!g->two) { /* 66 columns: five loads */
        const __m512i next = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
        const __m512i next1 = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17);
        const __m512 l0 = _mm512_maskz_loadu_ps(g->m0, p), l1 = _mm512_loadu_ps(p + 16);
        const __m512 l2 = _mm512_loadu_ps(p + 32), l3 = _mm512_loadu_ps(p + 48);
        const __m512 l4 = _mm512_maskz_loadu_ps(g->m4, p + 64);
        deal4(d, l0, l1, l2, l3);
        d[4] = _mm512_permutex2var_ps(d[0], next, l4);
        d[5] = _mm512_permutex2var_ps(d[1], next1, l4);
        return;
    }
    /* two rows of 34 columns (-1 .. 32; column 32 is past the edge): a, and b 4 rows down */
    const __m512i idx4 = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 16, 9, 10, 11, 12, 13, 14, 15, 24);
    const __m512i idx5 = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 17, 9, 10, 11, 12, 13, 14, 15, 25);
    const float *q = p + 4 * (long)W;
    const int la = g->rows_live >> r & 1, lb = g->rows_live >> (8 + r) & 1;
    const __m512 a0 = _mm512_maskz_loadu_ps(la ? 0xFFFE : 0, p), a1 = _mm512_maskz_loadu_ps(la ? 0xFFFF : 0, p + 16);
    const __m512 b0 = _mm512_maskz_loadu_ps(lb ? 0xFFFE : 0, q), b1 = _mm512_maskz_loadu_ps(lb ? 0xFFFF : 0, q + 16);
    __m512 e = _mm512_maskz_loadu_ps(la ? 0x1 : 0, p + 32); /* column 31 of a in lane 0, of b in lane 8 */
    e = _mm512_mask_loadu_ps(e, lb ? 0x100 : 0, q + 24);
    deal4(d, a0, a1, b0, b1);
    d[4] = _mm512_permutex2var_ps(d[0], idx4, e);
    d[5] = _mm512_permutex2var_ps(d[1], idx5, e);
}

/* The tiles' own 4x4 pixels (always inside the image) of input row r (0-3) of a vector: what the
 * middle 4x4 of the transform reads (lane l: column 4l + j) */
__attribute__((target("avx512f"), always_inline)) static inline void own_inputs(__m512 d[4], const float *src,
                                                                               const vec_geom *g, int W, int r) {
    const float *p = src + g->row0 + (long)(r + 1) * W + 1, *q = g->two ? p + 4 * (long)W : p + 32;
    const __m512 l0 = _mm512_loadu_ps(p), l1 = _mm512_loadu_ps(p + 16);
    const __m512 l2 = _mm512_loadu_ps(q), l3 = _mm512_loadu_ps(q + 16);
    deal4(d, l0, l1, l2, l3);
}

/* V (36, Ct, TC) <- B^T d B of the chunk's vectors for channels c0..c1-1 (zeros for absent ones) */
__attribute__((target("avx512f"))) static void input_transform(float *V, const float *inp, const float *extra, int Cin,
                                                               int Ct, size_t N, int W, const vec_geom *g, int nv,
                                                               int c0, int c1) {
    const size_t plane = (size_t)Ct * TC;
    const int live = g[0].two ? 0x3F3F : 0x3F;
    for (int c = c0; c < c1; c++) {
        const float *src = c < Cin ? inp + (size_t)c * N : extra + (size_t)(c - Cin) * N;
        float *oc = V + (size_t)c * TC;
        for (int v = 0; v < nv && c >= Cin; v++) { /* an appended row: the middle 4x4 only (products) */
            __m512 e[4][4];
            for (int r = 0; r < 4; r++) {
                __m512 d[4];
                own_inputs(d, src, &g[v], W, r);
                wino4_bt4(e[r], d);
            }
            for (int j = 0; j < 4; j++) {
                const __m512 col[4] = {e[0][j], e[1][j], e[2][j], e[3][j]};
                __m512 o[4];
                wino4_bt4(o, col);
                for (int i = 0; i < 4; i++) _mm512_storeu_ps(oc + 16 * v + (size_t)(6 * (i + 1) + j + 1) * plane, o[i]);
            }
        }
        for (int v = 0; v < nv && c < Cin; v++) {
            __m512 e[6][6]; /* e[r] = the row's 6 column vectors, then B^T along the columns */
            for (int r = 0; r < 6; r++) {
                if (!(g[v].rows_live & live & (0x101 << r))) {
                    for (int j = 0; j < 6; j++) e[r][j] = _mm512_setzero_ps();
                    continue;
                }
                __m512 d[6];
                row_inputs(d, src, &g[v], W, r);
                wino4_bt6(e[r], d); /* d B (the transform along a row) */
            }
            for (int j = 0; j < 6; j++) { /* B^T (d B): along the columns */
                const __m512 col[6] = {e[0][j], e[1][j], e[2][j], e[3][j], e[4][j], e[5][j]};
                __m512 o[6];
                wino4_bt6(o, col);
                for (int i = 0; i < 6; i++) _mm512_storeu_ps(oc + 16 * v + (size_t)(6 * i + j) * plane, o[i]);
            }
        }
        for (int v = nv; v < 3; v++) /* absent tiles: zeros (their products are never stored) */
            for (int x = 0; x < NX; x++) _mm512_storeu_ps(oc + 16 * v + x * plane, _mm512_setzero_ps());
    }
}

/* M (36, co1-co0, TC) <- U[x] . V[x] for output channels co0..co1-1; the positions outside the
 * middle 4x4 run over the Cin channels alone (the appended rows' U is zero there) */
static void products(float *M, const float *U, int Cout, int Cin, int Ct, const float *V, int co0, int co1, int nv) {
    const size_t mplane = (size_t)(co1 - co0) * TC, uplane = (size_t)Cout * Ct;
    for (int x = 0; x < NX; x++) {
        const int a = x / 6, b = x % 6, inner = a >= 1 && a <= 4 && b >= 1 && b <= 4;
        for (int co = co0; co < co1; co += 8)
            wino_gemm_8(M + x * mplane + (size_t)(co - co0) * TC, U + x * uplane + (size_t)co * Ct, (size_t)Ct,
                        V + (size_t)x * Ct * TC, inner ? Ct : Cin, nv);
    }
}

/* out <- A^T M A + bias (ReLU): the 4x4 outputs of a vector's 16 tiles are 4 rows of 64 columns,
 * interleaved from the 4 column vectors of each row by permutes */
__attribute__((target("avx512f"))) static void output_transform(float *out, const float *M, const float *bias, int relu,
                                                                int co0, int co1, size_t N, int W, const vec_geom *g,
                                                                int nv) {
    const size_t mplane = (size_t)(co1 - co0) * TC;
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512i q0 = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const __m512i q1 = _mm512_setr_epi32(8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
    for (int co = co0; co < co1; co++) {
        const __m512 bv = _mm512_set1_ps(bias ? bias[co] : 0.0f);
        for (int v = 0; v < nv; v++) {
            const float *m = M + (size_t)(co - co0) * TC + 16 * v;
            __m512 t[6][4]; /* A^T along each row of m */
            for (int i = 0; i < 6; i++) {
                const float *r = m + (size_t)6 * i * mplane;
                __m512 row[6];
                for (int j = 0; j < 6; j++) row[j] = _mm512_loadu_ps(r + j * mplane);
                wino4_at6(t[i], row);
            }
            __m512 y[4][4]; /* y[row][column] of the 16 tiles */
            for (int k = 0; k < 4; k++) {
                const __m512 m6[6] = {t[0][k], t[1][k], t[2][k], t[3][k], t[4][k], t[5][k]};
                __m512 col[4];
                wino4_at6(col, m6);
                for (int r = 0; r < 4; r++) y[r][k] = col[r];
            }
            float *dst = out + (size_t)co * N + g[v].out0;
            for (int r = 0; r < 4; r++) {
                __m512 s[4];
                for (int k = 0; k < 4; k++) {
                    s[k] = _mm512_add_ps(y[r][k], bv);
                    if (relu) s[k] = _mm512_max_ps(s[k], _mm512_setzero_ps());
                }
                const __m512 a0 = _mm512_permutex2var_ps(s[0], lo, s[1]), a1 = _mm512_permutex2var_ps(s[0], hi, s[1]);
                const __m512 b0 = _mm512_permutex2var_ps(s[2], lo, s[3]), b1 = _mm512_permutex2var_ps(s[2], hi, s[3]);
                float *d = dst + (size_t)r * W, *d2 = d + (g[v].two ? 4 * (size_t)W : 32); /* tiles 8-15 */
                _mm512_storeu_ps(d, _mm512_permutex2var_ps(a0, q0, b0));
                _mm512_storeu_ps(d + 16, _mm512_permutex2var_ps(a0, q1, b0));
                _mm512_storeu_ps(d2, _mm512_permutex2var_ps(a1, q0, b1));
                _mm512_storeu_ps(d2 + 16, _mm512_permutex2var_ps(a1, q1, b1));
            }
        }
    }
}
#endif

/* Below this many chunks per thread the threads share each chunk, as in conv_wino.c (batch 1:
 * 3 chunks at 32x64, 1 at 16x32). Not more: the 11 chunks of a 64x128 level shared took 2 x 22
 * barriers and V's trips between the cores, and two threads ran a level-0 layer only 1.2x faster
 * than one (whole chunks: ~1.8x) */
#define WINO4_TEAM_CHUNKS 4

void conv3x3_wino4_infer(float *out, const float *inp, const float *extra, int Cextra, const float *U,
                           const float *bias, int relu, int B, int Cin, int Cout, int H, int W, float *ws) {
    // inp (Cin,B,H,W), extra (Cextra,B,H,W), U (36, Cout, Cin+Cextra), out (Cout,B,H,W)
#if MS_HAVE_WINO
    const int Ct = Cin + Cextra, nthr = conv_threads();
    const size_t N = (size_t)B * H * W;
    const long T = (long)B * (H / 4) * (W / 4), nchunks = (T + TC - 1) / TC;
    const size_t slice = (size_t)NX * TC * (Ct + Cout) + 16;
    if (nthr > 1 && nchunks < (long)WINO4_TEAM_CHUNKS * nthr) {
        /* one V for the team, each thread's M after it at its output channels' place */
#pragma omp parallel num_threads(nthr)
        {
            const int t = omp_get_thread_num(), n = omp_get_num_threads(), nb = Cout / 8;
            const int c0 = (int)((long)Ct * t / n), c1 = (int)((long)Ct * (t + 1) / n);
            const int co0 = 8 * (nb * t / n), co1 = 8 * (nb * (t + 1) / n);
            float *V = ws, *M = ws + (size_t)NX * TC * (Ct + co0);
            for (long ch = 0; ch < nchunks; ch++) {
                const long t0 = ch * TC;
                const int nv = (int)(((T - t0 < TC ? T - t0 : TC) + 15) / 16);
                vec_geom g[3];
                for (int v = 0; v < nv; v++) geom_of(&g[v], H, W, t0 + 16 * v);
                input_transform(V, inp, extra, Cin, Ct, N, W, g, nv, c0, c1);
#pragma omp barrier
                if (co1 > co0) {
                    products(M, U, Cout, Cin, Ct, V, co0, co1, nv);
                    output_transform(out, M, bias, relu, co0, co1, N, W, g, nv);
                }
#pragma omp barrier
            }
        }
        return;
    }
#pragma omp parallel for schedule(static) num_threads(nthr)
    for (long ch = 0; ch < nchunks; ch++) {
        float *V = ws + (size_t)omp_get_thread_num() * slice, *M = V + (size_t)NX * TC * Ct;
        const long t0 = ch * TC;
        const int nv = (int)(((T - t0 < TC ? T - t0 : TC) + 15) / 16);
        vec_geom g[3];
        for (int v = 0; v < nv; v++) geom_of(&g[v], H, W, t0 + 16 * v);
        input_transform(V, inp, extra, Cin, Ct, N, W, g, nv, 0, Ct);
        products(M, U, Cout, Cin, Ct, V, 0, Cout, nv);
        output_transform(out, M, bias, relu, 0, Cout, N, W, g, nv);
    }
#else
    (void)out, (void)inp, (void)extra, (void)Cextra, (void)U, (void)bias, (void)relu;
    (void)B, (void)Cin, (void)Cout, (void)H, (void)W, (void)ws;
#endif
}
