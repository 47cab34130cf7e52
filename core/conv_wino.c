/* Winograd F(2x2, 3x3) convolution (padding 1) for inference: each 2x2 output tile comes from a
 * 4x4 input tile through 16 products per channel pair instead of 36, i.e. 2.25x fewer
 * multiply-adds (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
 *
 *   U = G g G^T     weights, once per frozen model (conv3x3_wino_weights)   (16, Cout, Ct)
 *   V = B^T d B     each 4x4 input tile, per chunk of 48 tiles               (16, Ct, 48)
 *   M[x] = U[x] V[x]  16 small GEMMs, an AVX-512 kernel: 8 output channels x 48 tiles in zmm
 *   Y = A^T M A     the 2x2 outputs, plus bias, the optional ReLU
 *
 * Ct = Cin + Cextra: the appended 1x1 rows (the ResBlock shortcut of the folded inference form)
 * are channels whose 3x3 kernel is their weight at the centre tap. A chunk's V and M (16 x 48 x
 * (Ct + Cout) floats) stay in the core's L2 cache; only the deep, wide layers use this path
 * (conv3x3_wino_ok), where it pays for its transforms. F(2x2,3x3) in float32 keeps the error
 * within a few units of the direct sum's rounding (tested against it and against PyTorch). */
#include "layers.h"
#include "wino.h"

#include <omp.h>
#include <string.h>

#define TC WINO_TC
#ifndef MS_WINO_MIN_C
#define MS_WINO_MIN_C 32
#endif

/* Per output pixel the direct sum costs 9*Cin + Cextra multiply-adds, Winograd 4*(Cin + Cextra)
 * (16 per 2x2 tile for every channel, the appended 1x1 rows included) plus its transforms,
 * measured at ~1.4x the GEMM part on the Xeon: with Cextra = 2*Cin (the decoder's shortcut from
 * the concatenation) the direct sum is cheaper, and below 32 channels the transforms do not pay.
 * The fixed rule where nothing is measured (conv.c); the plan cache measures instead. */
int conv3x3_wino_pays(int Cin, int Cextra, int Cout) {
    const int Ct = Cin + Cextra;
    return Cout % 8 == 0 && Cout >= MS_WINO_MIN_C && Ct >= MS_WINO_MIN_C && 5.6 * Ct < 9.0 * Cin + Cextra;
}

int conv3x3_wino_channels_ok(int Cout) {
#if MS_HAVE_WINO
    return __builtin_cpu_supports("avx512f") && Cout % 8 == 0;
#else
    (void)Cout;
    return 0;
#endif
}

int conv3x3_wino_ok(int Cin, int Cextra, int Cout, int B, int H, int W) {
    (void)Cin, (void)Cextra;
    const long tiles = (long)B * (H / 2) * (W / 2);
    return conv3x3_wino_channels_ok(Cout) && H % 2 == 0 && W % 2 == 0 && tiles >= 16 &&
           (size_t)B * H * W < ((size_t)1 << 31); /* int32 gather indices */
}

size_t conv3x3_wino_weight_floats(int Cin, int Cextra, int Cout) { return (size_t)16 * Cout * (Cin + Cextra); }

size_t conv3x3_wino_ws_floats(int Ct, int Cout) {
    return (size_t)omp_get_num_procs() * ((size_t)16 * TC * (Ct + Cout) + 16);
}

/* U[x][o][i] (row stride ldu, plane stride Oc*ldu) = (G g G^T)[x] for the 3x3 kernel g of output
 * channel o, input channel i, read from w at o*so + i*si + k (k = 8-k when flipped); vectorised
 * over i. */
static void wino_weights_strided(float *U, size_t ldu, const float *w, int Oc, int Ic, size_t so, size_t si, int flip) {
    const size_t plane = (size_t)Oc * ldu;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < Oc; o++) {
        float *u = U + (size_t)o * ldu;
#pragma omp simd
        for (int i = 0; i < Ic; i++) {
            const float *src = w + o * so + i * si;
            float g[9];
            for (int k = 0; k < 9; k++) g[k] = src[flip ? 8 - k : k];
            float t[4][3]; /* G g, G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1] */
            for (int j = 0; j < 3; j++) {
                t[0][j] = g[j];
                t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
                t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
                t[3][j] = g[6 + j];
            }
            for (int r = 0; r < 4; r++) { /* (G g) G^T */
                u[(size_t)(4 * r + 0) * plane + i] = t[r][0];
                u[(size_t)(4 * r + 1) * plane + i] = 0.5f * (t[r][0] + t[r][1] + t[r][2]);
                u[(size_t)(4 * r + 2) * plane + i] = 0.5f * (t[r][0] - t[r][1] + t[r][2]);
                u[(size_t)(4 * r + 3) * plane + i] = t[r][2];
            }
        }
    }
}

void conv3x3_wino_weights(float *U, const float *w, size_t ldw, int Cin, int Cextra, int Cout) {
    // w (Cout, ldw >= Cin*9 + Cextra) -> U (16, Cout, Ct = Cin + Cextra)
    const int Ct = Cin + Cextra;
    const size_t plane = (size_t)Cout * Ct;
    wino_weights_strided(U, (size_t)Ct, w, Cout, Cin, ldw, 9, 0);
    /* an appended 1x1 row is a kernel with weight s at the centre tap only: G g G^T is s times
     * the outer product of G's middle column (0 .5 -.5 0) with itself */
    static const float centre[16] = {0, 0, 0, 0, 0, 0.25f, -0.25f, 0, 0, -0.25f, 0.25f, 0, 0, 0, 0, 0};
    for (int co = 0; co < Cout; co++)
        for (int e = 0; e < Cextra; e++) {
            const float sw = w[(size_t)co * ldw + (size_t)Cin * 9 + e];
            for (int x = 0; x < 16; x++) U[x * plane + (size_t)co * Ct + Cin + e] = centre[x] * sw;
        }
}

#if MS_HAVE_WINO
__attribute__((target("avx512f"))) void wino_tiles_of(chunk_tiles *ct, int B, int H, int W, long t0, int nt) {
    (void)B;
    const int TH = H / 2, TW = W / 2;
    for (int v = 0; v < 3; v++) {
        int base[16];
        unsigned m[16] = {0}, live = 0;
        for (int l = 0; l < 16; l++) {
            const int t = v * 16 + l;
            base[l] = 0;
            if (t >= nt) continue;
            live |= 1u << l;
            const long tile = t0 + t;
            const int tx = (int)(tile % TW), ty = (int)((tile / TW) % TH), b = (int)(tile / ((long)TW * TH));
            base[l] = (b * H + 2 * ty - 1) * W + 2 * tx - 1;
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    const int y = 2 * ty - 1 + i, x = 2 * tx - 1 + j;
                    if (y >= 0 && y < H && x >= 0 && x < W) m[i * 4 + j] |= 1u << l;
                }
        }
        ct->base[v] = _mm512_loadu_si512(base);
        for (int k = 0; k < 16; k++) ct->m[v][k] = (__mmask16)m[k];
        ct->live[v] = (__mmask16)live;
    }
}

/* B^T d B of 16 tiles' 4x4 inputs d, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], stored at
 * o + x * plane for the 16 positions x */
__attribute__((target("avx512f"), always_inline)) static inline void tile_inputs(float *o, size_t plane, __m512 d[4][4]) {
    __m512 r[4][4]; /* B^T d */
    for (int j = 0; j < 4; j++) {
        r[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
        r[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
        r[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
        r[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
    }
    for (int i = 0; i < 4; i++) { /* (B^T d) B */
        _mm512_storeu_ps(o + (size_t)(i * 4 + 0) * plane, _mm512_sub_ps(r[i][0], r[i][2]));
        _mm512_storeu_ps(o + (size_t)(i * 4 + 1) * plane, _mm512_add_ps(r[i][1], r[i][2]));
        _mm512_storeu_ps(o + (size_t)(i * 4 + 2) * plane, _mm512_sub_ps(r[i][2], r[i][1]));
        _mm512_storeu_ps(o + (size_t)(i * 4 + 3) * plane, _mm512_sub_ps(r[i][1], r[i][3]));
    }
}

/* V (16, Ct, ldt) <- B^T d B of the chunk's tiles (zeros for absent ones), 16 tiles per vector */
__attribute__((target("avx512f"))) void wino_input_transform(float *V, size_t ldt, const float *inp, const float *extra,
                                                            int Cin, int Cextra, size_t N, int W, const chunk_tiles *ct,
                                                            int c0, int c1) {
    const size_t plane = (size_t)(Cin + Cextra) * ldt;
    for (int c = c0; c < c1; c++) {
        const float *src = c < Cin ? inp + (size_t)c * N : extra + (size_t)(c - Cin) * N;
        for (int v = 0; v < 3; v++) {
            __m512 d[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    const __m512i idx = _mm512_add_epi32(ct->base[v], _mm512_set1_epi32(i * W + j));
                    d[i][j] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), ct->m[v][i * 4 + j], idx, src, 4);
                }
            tile_inputs(V + (size_t)c * ldt + 16 * v, plane, d);
        }
    }
}

/* The same transform without gathers (wino_row_layout): where image rows hold a multiple of 16
 * tiles (W a multiple of 32), each 16-tile vector lies in one tile row, so the 4x4 inputs of its
 * tiles are four input rows of 34 floats, read as contiguous (masked at the image's left and
 * right edge) loads and split into the even and odd columns by permutes; 16-wide images (8
 * tiles a row, H a multiple of 4) put two tile rows of one image in a vector, the halves of
 * each load coming from rows two apart. Gathers and scatters
 * are slow on some CPUs (Zen 4: the gathers took 46% of a level-0 Winograd convolution, more
 * than its products); loads and permutes are cheap everywhere. */
int wino_row_layout(int H, int W) { return W % 32 == 0 ? 1 : W == 16 && H % 4 == 0 ? 2 : 0; }

/* where one vector of 16 tiles reads its inputs: per input row i of the 4x4 tiles, its offset
 * in a channel plane and the masks of its loads (zero for rows outside the image: a masked-off
 * lane reads nothing, so no branch is needed) */
typedef struct {
    long row[4];
    __mmask16 m[4][4];
} rows_geom;

/* B^T d B of one channel's 16 tiles (geometry g) into o (positions plane apart); TWO: two tile
 * rows of 8 a vector. Inlined with a literal TWO so that d[][] stays in registers. */
__attribute__((target("avx512f"), always_inline)) static inline void rows_vec(float *o, size_t plane, const float *src,
                                                                            const rows_geom *g, int W, const int TWO) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512i next = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    const __m512i next1 = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17);
    __m512 d[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const float *p = src + g->row[i];
        if (TWO) { /* two tile rows of 8: columns -1..14 and 1..16 of rows y, y+2 */
            const __m512 pa = _mm512_maskz_loadu_ps(g->m[i][0], p), pb = _mm512_maskz_loadu_ps(g->m[i][1], p + 2 * W);
            const __m512 qa = _mm512_maskz_loadu_ps(g->m[i][2], p + 2), qb = _mm512_maskz_loadu_ps(g->m[i][3], p + 2 * W + 2);
            d[i][0] = _mm512_permutex2var_ps(pa, even, pb);
            d[i][1] = _mm512_permutex2var_ps(pa, odd, pb);
            d[i][2] = _mm512_permutex2var_ps(qa, even, qb);
            d[i][3] = _mm512_permutex2var_ps(qa, odd, qb);
        } else {
            const __m512 l0 = _mm512_maskz_loadu_ps(g->m[i][0], p), l1 = _mm512_maskz_loadu_ps(g->m[i][1], p + 16);
            const __m512 l2 = _mm512_maskz_loadu_ps(g->m[i][2], p + 32);
            d[i][0] = _mm512_permutex2var_ps(l0, even, l1);
            d[i][1] = _mm512_permutex2var_ps(l0, odd, l1);
            d[i][2] = _mm512_permutex2var_ps(d[i][0], next, l2);
            d[i][3] = _mm512_permutex2var_ps(d[i][1], next1, l2);
        }
    }
    tile_inputs(o, plane, d);
}

/* an appended 1x1 row: only the middle 2x2 (chunk_products), i.e. the tiles' own pixels, which
 * lie inside the image */
__attribute__((target("avx512f"), always_inline)) static inline void rows_vec_centre(float *o, size_t plane,
                                                                                   const float *src, const rows_geom *g,
                                                                                   size_t half) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const float *p1 = src + g->row[1] + 1, *p2 = src + g->row[2] + 1;
    const __m512 a1 = _mm512_loadu_ps(p1), b1 = _mm512_loadu_ps(p1 + half);
    const __m512 a2 = _mm512_loadu_ps(p2), b2 = _mm512_loadu_ps(p2 + half);
    const __m512 d11 = _mm512_permutex2var_ps(a1, even, b1), d12 = _mm512_permutex2var_ps(a1, odd, b1);
    const __m512 d21 = _mm512_permutex2var_ps(a2, even, b2), d22 = _mm512_permutex2var_ps(a2, odd, b2);
    const __m512 r11 = _mm512_add_ps(d11, d21), r12 = _mm512_add_ps(d12, d22); /* as tile_inputs */
    const __m512 r21 = _mm512_sub_ps(d21, d11), r22 = _mm512_sub_ps(d22, d12);
    _mm512_storeu_ps(o + 5 * plane, _mm512_add_ps(r11, r12));
    _mm512_storeu_ps(o + 6 * plane, _mm512_sub_ps(r12, r11));
    _mm512_storeu_ps(o + 9 * plane, _mm512_add_ps(r21, r22));
    _mm512_storeu_ps(o + 10 * plane, _mm512_sub_ps(r22, r21));
}

/* Channels outermost: a channel's rows for the chunk's vectors are read together, as longer
 * runs of each plane (the planes are further apart than the prefetchers follow). */
__attribute__((target("avx512f"))) void wino_input_transform_rows(float *V, size_t ldt, const float *inp,
                                                                 const float *extra, int Cin, int Cextra, size_t N,
                                                                 int H, int W, long t0, int nt, int c0, int c1) {
    const int Ct = Cin + Cextra, TW = W / 2, TH = H / 2, two = wino_row_layout(H, W) == 2, nv = (nt + 15) / 16;
    const size_t plane = (size_t)Ct * ldt, half = two ? 2 * (size_t)W : 16;
    rows_geom g[3];
    for (int v = 0; v < nv; v++) {
        const long T = t0 + 16 * v;
        const int tx0 = (int)(T % TW), ty = (int)((T / TW) % TH), b = (int)(T / ((long)TW * TH));
        const long x0 = 2L * tx0 - 1; /* column of the first tile's first input */
        for (int i = 0; i < 4; i++) {
            const int y = 2 * ty - 1 + i, live = y >= 0 && y < H, live2 = y + 2 < H; /* live2: the second tile row's (two) */
            g[v].row[i] = ((long)b * H + y) * W + x0;
            if (two) {
                g[v].m[i][0] = live ? 0xFFFE : 0, g[v].m[i][1] = live2 ? 0xFFFE : 0;
                g[v].m[i][2] = live ? 0x7FFF : 0, g[v].m[i][3] = live2 ? 0x7FFF : 0;
            } else {
                g[v].m[i][0] = !live ? 0 : tx0 == 0 ? 0xFFFE : 0xFFFF;
                g[v].m[i][1] = live ? 0xFFFF : 0;
                g[v].m[i][2] = !live ? 0 : tx0 + 16 < TW ? 0x3 : 0x1; /* columns x0+32, x0+33 */
                g[v].m[i][3] = 0;
            }
        }
    }
    for (int c = c0; c < c1; c++) {
        const float *src = c < Cin ? inp + (size_t)c * N : extra + (size_t)(c - Cin) * N;
        float *oc = V + (size_t)c * ldt;
        /* the rows WINO_PREFETCH channels ahead (wino.h) */
        if (c + WINO_PREFETCH < c1) {
            const int cp = c + WINO_PREFETCH;
            const float *sp = cp < Cin ? inp + (size_t)cp * N : extra + (size_t)(cp - Cin) * N;
            for (int v = 0; v < nv; v++)
                for (int i = 0; i < 4; i++) {
                    const char *p = (const char *)(sp + g[v].row[i]);
                    _mm_prefetch(p, _MM_HINT_T0);
                    _mm_prefetch(p + 64, _MM_HINT_T0);
                    _mm_prefetch(p + 132, _MM_HINT_T0);
                    if (two) {
                        _mm_prefetch(p + 8 * W, _MM_HINT_T0);
                        _mm_prefetch(p + 8 * W + 68, _MM_HINT_T0);
                    }
                }
        }
        for (int v = 0; v < nv; v++) {
            if (c >= Cin) rows_vec_centre(oc + 16 * v, plane, src, &g[v], half);
            else if (two) rows_vec(oc + 16 * v, plane, src, &g[v], W, 1);
            else rows_vec(oc + 16 * v, plane, src, &g[v], W, 0);
        }
        for (int v = nv; v < 3; v++) /* absent tiles: zeros (their products are never stored) */
            for (int x = 0; x < 16; x++) _mm512_storeu_ps(oc + 16 * v + x * plane, _mm512_setzero_ps());
    }
}

/* M[x] (8 rows from co0, TC) = U[x] (rows co0.., first Ct columns, row stride ldu) . V[x] (Ct, TC),
 * for one x of the 16, over the chunk's first NV vectors of 16 tiles: a chunk that is not full
 * (the last of a layer; the only one of a 4x8-tile layer at batch 1) multiplies no absent tiles.
 * A macro for literal bounds, as DIRECT_BLOCK in conv_direct.c. */
#define WINO_GEMM(name, NV)                                                                                  \
    __attribute__((target("avx512f"))) static void name(float *M, const float *U, size_t ldu, const float *V, \
                                                        int Ct) {                                            \
        __m512 acc[8 * NV];                                                                                  \
        _Pragma("GCC unroll 24") for (int j = 0; j < 8 * NV; j++) acc[j] = _mm512_setzero_ps();             \
        for (int c = 0; c < Ct; c++) {                                                                       \
            if ((c & 15) == 0) /* the next 8 rows' line at c, a call ahead: U streams from memory */        \
                _Pragma("GCC unroll 8") for (int j = 8; j < 16; j++) _mm_prefetch((const char *)(U + j * ldu + c), _MM_HINT_T0); \
            __m512 v[NV];                                                                                    \
            _Pragma("GCC unroll 3") for (int k = 0; k < NV; k++) v[k] = _mm512_loadu_ps(V + (size_t)c * TC + 16 * k); \
            _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {                                            \
                const __m512 u = _mm512_set1_ps(U[j * ldu + c]);                                             \
                _Pragma("GCC unroll 3") for (int k = 0; k < NV; k++) acc[NV * j + k] = _mm512_fmadd_ps(v[k], u, acc[NV * j + k]); \
            }                                                                                                \
        }                                                                                                    \
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)                                                  \
            _Pragma("GCC unroll 3") for (int k = 0; k < NV; k++) _mm512_storeu_ps(M + (size_t)j * TC + 16 * k, acc[NV * j + k]); \
    }
WINO_GEMM(wino_gemm_8x48, 3)
WINO_GEMM(wino_gemm_8x32, 2)
WINO_GEMM(wino_gemm_8x16, 1)

void wino_gemm_8(float *M, const float *U, size_t ldu, const float *V, int Ct, int nv) {
    if (nv == 3) wino_gemm_8x48(M, U, ldu, V, Ct);
    else if (nv == 2) wino_gemm_8x32(M, U, ldu, V, Ct);
    else wino_gemm_8x16(M, U, ldu, V, Ct);
}

/* M (16, co1 - co0, TC) <- the products of output channels co0 .. co1-1 over nv vectors of tiles.
 * An appended 1x1 row (channel Cin + e) is a kernel with only its centre tap: its U is zero at
 * the 12 positions x outside the middle 2x2 of the 4x4 (conv3x3_wino_weights), so those products
 * run over the Cin channels alone. Skipping exact zeros changes no result, and it makes the
 * shortcut cost 4 products per tile and channel pair, as many as the 1x1 convolution has. */
static void chunk_products(float *M, const float *U, size_t uplane, int ldu, const float *V, int Cin, int Ct, int co0,
                           int co1, int nv) {
    const size_t mplane = (size_t)(co1 - co0) * TC;
    for (int x = 0; x < 16; x++) {
        const int centre = x == 5 || x == 6 || x == 9 || x == 10, ct = centre ? Ct : Cin;
        const float *Vx = V + (size_t)x * Ct * TC;
        for (int co = co0; co < co1; co += 8) {
            float *Mo = M + x * mplane + (size_t)(co - co0) * TC;
            const float *Uo = U + x * uplane + (size_t)co * ldu;
            wino_gemm_8(Mo, Uo, ldu, Vx, ct, nv);
        }
    }
}

/* The 2x2 outputs y00, y01, y10, y11 of 16 tiles: A^T m A + bias, A^T = [1 1 1 0; 0 1 -1 -1], from
 * the 16 positions of m (position x at m + x * plane) */
__attribute__((target("avx512f"), always_inline)) static inline void tile_outputs(__m512 y[4], const float *m, size_t plane,
                                                                                float bias) {
    __m512 s0[4], s1[4];
    for (int j = 0; j < 4; j++) {
        const __m512 m0 = _mm512_loadu_ps(m + (size_t)(0 * 4 + j) * plane), m1 = _mm512_loadu_ps(m + (size_t)(1 * 4 + j) * plane);
        const __m512 m2 = _mm512_loadu_ps(m + (size_t)(2 * 4 + j) * plane), m3 = _mm512_loadu_ps(m + (size_t)(3 * 4 + j) * plane);
        s0[j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
        s1[j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
    }
    const __m512 bv = _mm512_set1_ps(bias);
    y[0] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0[0], s0[1]), s0[2]), bv);
    y[1] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s0[1], s0[2]), s0[3]), bv);
    y[2] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s1[0], s1[1]), s1[2]), bv);
    y[3] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s1[1], s1[2]), s1[3]), bv);
}

/* out <- A^T M A (+ bias, ReLU), A^T = [1 1 1 0; 0 1 -1 -1]; scattered 16 tiles at a time */
__attribute__((target("avx512f"))) static void output_transform(float *out, const float *M, const float *bias, int relu,
                                                               int accumulate, int Cout, size_t N, int W,
                                                               const chunk_tiles *ct) {
    const size_t plane = (size_t)Cout * TC;
    const __m512i one = _mm512_set1_epi32(1), wp1 = _mm512_set1_epi32(W + 1);
    for (int v = 0; v < 3; v++) {
        if (!ct->live[v]) continue;
        /* output tile's top-left pixel: input top-left + one row + one column */
        const __m512i o00 = _mm512_add_epi32(ct->base[v], wp1), o01 = _mm512_add_epi32(o00, one);
        const __m512i o10 = _mm512_add_epi32(o00, _mm512_set1_epi32(W)), o11 = _mm512_add_epi32(o10, one);
        const __m512i o[4] = {o00, o01, o10, o11};
        const __mmask16 lv = ct->live[v];
        for (int co = 0; co < Cout; co++) {
            __m512 y[4];
            tile_outputs(y, M + (size_t)co * TC + 16 * v, plane, bias ? bias[co] : 0.0f);
            float *dst = out + (size_t)co * N;
            for (int k = 0; k < 4; k++) { /* the four outputs of a tile are distinct pixels */
                if (accumulate) y[k] = _mm512_add_ps(y[k], _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lv, o[k], dst, 4));
                if (relu) y[k] = _mm512_max_ps(y[k], _mm512_setzero_ps());
                _mm512_mask_i32scatter_ps(dst, lv, o[k], y[k], 4);
            }
        }
    }
}
/* output_transform without scatters (wino_row_layout): the 2x2 outputs of 16 tiles in a row are
 * two output rows of 32 floats, interleaved from the even and odd columns by permutes (two tile
 * rows of 8: the second half of each lands two output rows further down) */
__attribute__((target("avx512f"))) static void output_transform_rows(float *out, const float *M, const float *bias,
                                                                    int relu, int accumulate, int Cout, size_t N,
                                                                    int H, int W, long t0, int nt) {
    const size_t plane = (size_t)Cout * TC;
    const int TW = W / 2, TH = H / 2;
    const size_t half = wino_row_layout(H, W) == 2 ? 2 * (size_t)W : 16; /* where the vector's second 8 tiles' outputs go */
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (int v = 0; v < 3 && 16 * v < nt; v++) {
        const long T = t0 + 16 * v;
        const int tx0 = (int)(T % TW), ty = (int)((T / TW) % TH), b = (int)(T / ((long)TW * TH));
        const size_t r0 = ((size_t)b * H + 2 * ty) * W + 2 * tx0; /* the tiles' top-left output pixel */
        for (int co = 0; co < Cout; co++) {
            __m512 y[4];
            tile_outputs(y, M + (size_t)co * TC + 16 * v, plane, bias ? bias[co] : 0.0f);
            float *dst = out + (size_t)co * N + r0;
            __m512 q[4] = {_mm512_permutex2var_ps(y[0], lo, y[1]), _mm512_permutex2var_ps(y[0], hi, y[1]),
                           _mm512_permutex2var_ps(y[2], lo, y[3]), _mm512_permutex2var_ps(y[2], hi, y[3])};
            for (int k = 0; k < 4; k++) {
                float *d = dst + (k >> 1) * W + half * (k & 1);
                if (accumulate) q[k] = _mm512_add_ps(q[k], _mm512_loadu_ps(d));
                if (relu) q[k] = _mm512_max_ps(q[k], _mm512_setzero_ps());
                _mm512_storeu_ps(d, q[k]);
            }
        }
    }
}
#endif

#if MS_HAVE_WINO
/* One chunk's input transform (channels c0..c1-1 of the Ct) and, after it, its products and
 * output transform for output channels co0..co1-1 (M: that range's (16, co1-co0, TC)). */
static void chunk_in(float *V, const float *inp, const float *extra, int Cin, int Cextra, size_t N, int B, int H, int W,
                     long t0, int nt, chunk_tiles *ct, int c0, int c1) {
    if (wino_row_layout(H, W)) wino_input_transform_rows(V, TC, inp, extra, Cin, Cextra, N, H, W, t0, nt, c0, c1);
    else {
        wino_tiles_of(ct, B, H, W, t0, nt);
        wino_input_transform(V, TC, inp, extra, Cin, Cextra, N, W, ct, c0, c1);
    }
}
static void chunk_out(float *out, float *M, const float *U, size_t uplane, int ldu, const float *V, const float *bias,
                      int relu, int accumulate, int Cin, int Ct, size_t N, int H, int W, long t0, int nt,
                      const chunk_tiles *ct, int co0, int co1) {
    chunk_products(M, U, uplane, ldu, V, Cin, Ct, co0, co1, (nt + 15) / 16);
    float *o = out + (size_t)co0 * N;
    const float *b = bias ? bias + co0 : NULL;
    if (wino_row_layout(H, W)) output_transform_rows(o, M, b, relu, accumulate, co1 - co0, N, H, W, t0, nt);
    else output_transform(o, M, b, relu, accumulate, co1 - co0, N, W, ct);
}
#endif

/* Below this many chunks per thread, the threads share each chunk (its input channels, then its
 * output channels) instead of taking whole chunks: the deep levels at batch 1 have 1 (4x8 tiles)
 * or 3 (8x16) chunks, which whole-chunk threading left to one thread of two, or two of three. */
#ifndef MS_WINO_TEAM_CHUNKS
#define MS_WINO_TEAM_CHUNKS 4
#endif

void conv3x3_wino_forward(float *out, const float *inp, const float *extra, int Cextra, const float *U, int ldu,
                          const float *bias, int relu, int accumulate, int B, int Cin, int Cout, int H, int W,
                          float *ws) {
    // inp (Cin,B,H,W), extra (Cextra,B,H,W), U (16, Cout, ldu >= Cin+Cextra), out (Cout,B,H,W)
#if MS_HAVE_WINO
    const int Ct = Cin + Cextra, nthr = conv_threads();
    const size_t N = (size_t)B * H * W;
    const long T = (long)B * (H / 2) * (W / 2), nchunks = (T + TC - 1) / TC;
    const size_t slice = (size_t)16 * TC * (Ct + Cout) + 16, uplane = (size_t)Cout * ldu;
    if (nthr > 1 && nchunks < (long)MS_WINO_TEAM_CHUNKS * nthr) {
        /* one V for the team (the front of the workspace), each thread's M after it at its
         * output channels' place: 16 * TC * (Ct + Cout) floats in all */
#pragma omp parallel num_threads(nthr)
        {
            const int t = omp_get_thread_num(), n = omp_get_num_threads(), nb = Cout / 8;
            const int c0 = (int)((long)Ct * t / n), c1 = (int)((long)Ct * (t + 1) / n);
            const int co0 = 8 * (nb * t / n), co1 = 8 * (nb * (t + 1) / n);
            float *V = ws, *M = ws + (size_t)16 * TC * (Ct + co0);
            for (long ch = 0; ch < nchunks; ch++) {
                const long t0 = ch * TC;
                const int nt = T - t0 < TC ? (int)(T - t0) : TC;
                chunk_tiles ct;
                chunk_in(V, inp, extra, Cin, Cextra, N, B, H, W, t0, nt, &ct, c0, c1);
#pragma omp barrier
                if (co1 > co0)
                    chunk_out(out, M, U, uplane, ldu, V, bias, relu, accumulate, Cin, Ct, N, H, W, t0, nt, &ct, co0, co1);
#pragma omp barrier
            }
        }
        return;
    }
#pragma omp parallel for schedule(static) num_threads(nthr)
    for (long ch = 0; ch < nchunks; ch++) {
        float *V = ws + (size_t)omp_get_thread_num() * slice, *M = V + (size_t)16 * TC * Ct;
        const long t0 = ch * TC;
        const int nt = T - t0 < TC ? (int)(T - t0) : TC;
        chunk_tiles ct;
        chunk_in(V, inp, extra, Cin, Cextra, N, B, H, W, t0, nt, &ct, 0, Ct);
        chunk_out(out, M, U, uplane, ldu, V, bias, relu, accumulate, Cin, Ct, N, H, W, t0, nt, &ct, 0, Cout);
    }
#else
    (void)out, (void)inp, (void)extra, (void)Cextra, (void)U, (void)bias, (void)relu, (void)accumulate;
    (void)B, (void)Cin, (void)Cout, (void)H, (void)W, (void)ws;
#endif
}

/* Training: the weights change every step, so U is made from w on each call, into the front of
 * the workspace (16 * Cout * Cin floats; the AVX-512 transform of a 256x256 layer's weights
 * takes well under a millisecond on two cores, against ~10 ms for its convolution at B = 32). */
size_t conv3x3_wino_conv_ws_floats(int Cin, int Cout) {
    return conv3x3_wino_weight_floats(Cin, 0, Cout) + conv3x3_wino_ws_floats(Cin, Cout) + 16;
}

void conv3x3_wino_conv(float *out, const float *inp, const float *w, int transposed, int accumulate, int B, int Cin,
                       int Cout, int H, int W, float *ws) {
    // inp (Cin,B,H,W), out (Cout,B,H,W) (+)= conv3x3(inp; w): w (Cout,Cin,3,3), or with transposed
    // the input gradient of a layer whose w is (Cin,Cout,3,3), i.e. w transposed and flipped
    float *U = ws, *slices = ws + conv3x3_wino_weight_floats(Cin, 0, Cout);
    if (transposed) wino_weights_strided(U, (size_t)Cin, w, Cout, Cin, 9, (size_t)Cout * 9, 1);
    else wino_weights_strided(U, (size_t)Cin, w, Cout, Cin, (size_t)Cin * 9, 9, 0);
    conv3x3_wino_forward(out, inp, NULL, 0, U, Cin, NULL, 0, accumulate, B, Cin, Cout, H, W, slices);
}
