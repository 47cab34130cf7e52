/* Winograd F(4x4, 3x3) for training's 3x3 convolutions (padding 1): forward, input and weight gradient;
 * each 4x4 output tile comes from a 6x6 input tile through 36 products per channel pair instead
 * of 144, i.e. 1.78x fewer multiply-adds than F(2x2,3x3)'s 16 per 2x2 tile (Lavin & Gray 2016).
 * At F=16 the narrow layers' F(2x2,3x3) products ran at the FMA peak, so fewer of them is what
 * was left to gain there.
 *
 *   U = G g G^T     weights, on each call (they change every step)       (36, Cout, Cin)
 *   V = B^T d B     each 6x6 input tile, per chunk of 48 tiles            (36, Cin, 48)
 *   M[x] = U[x] V[x]  36 small GEMMs: conv_wino.c's 8-row kernels
 *   Y = A^T M A     the 4x4 outputs, stored or added
 *
 * Tiles are taken 4 to a quad along a row of tiles (W a multiple of 16), 4 quads to a vector:
 * each input row of a quad is 16 contiguous floats twice (columns -1..14 and 1..16 of its tiles),
 * and a 4x4 transpose within each 128-bit lane of the quads' loads gives each column of the 16
 * tiles, lane 4L+m holding tile L of quad m (the output transform's transpose undoes it; the
 * products do not care about the order). No gathers or cross-lane permutes (gathers: slow on Zen 4,
 * see conv_wino.c).
 *
 * Numerics: the transforms' constants (up to 8 in A, 5 in B, 1/6 and 1/24 in G, not exact in
 * float32) make the error grow faster with the channels summed than F(2x2,3x3)'s: against a
 * double-precision sum (tests/test_kernels.c) 2-4e-6 of the output's scale up to 32 channels;
 * against im2col (tests/test_plan.c) 1e-5 at 256 input channels, where F(2x2,3x3) gives 6e-7;
 * the weight gradient over a batch-32 top level 4.6e-5 (F(2x2,3x3) 1.3e-5). The plan takes it
 * where it is faster; MARSSEG_PLAN=off (the fixed rules) never does. */
#include "layers.h"
#include "wino4.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

#define TC WINO_TC /* tiles per chunk: 3 vectors of 16, 12 quads of 4 */
#define NX 36      /* positions of a 6x6 tile */

/* V's and M's planes (one per position) are C*TC floats and a line apart: C*TC*4 bytes is a
 * multiple of 1 KB, so without the line the 36 planes a transform touches for one channel
 * share a few L1 sets (all 36 in one set from 64 channels on) and evict each other */
static size_t plane_of(int C) { return (size_t)C * TC + 16; }

int conv3x3_wino4_ok(int Cin, int Cout, int B, int H, int W) {
    (void)Cin;
    return conv3x3_wino_channels_ok(Cout) && H % 4 == 0 && W % 16 == 0 && (long)B * (H / 4) * (W / 4) >= 16 &&
           (size_t)B * H * W < ((size_t)1 << 31);
}

static size_t slice_floats(int Cin, int Cout) { return NX * (plane_of(Cin) + plane_of(Cout)) + 16; }

size_t conv3x3_wino4_ws_floats(int Cin, int Cout) {
    return (size_t)NX * Cout * Cin + (size_t)omp_get_num_procs() * slice_floats(Cin, Cout) + 16;
}

/* G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1], the one
 * table of both layouts' weights (wino4.h) and of the weight gradient's dU -> dw. In double, each
 * U rounded to float once: 1/6, 1/12 and 1/24 are not exact in float, and the frozen model's
 * weights were made so already (bit for bit the same now). Training's, on every call, cost what
 * the float form did (one Zen 4 thread, 32x32 to 256x256 channels: within 5%, 2.8-2.9 ms at
 * 256x256; the scattered stores of U take the time, not the arithmetic). */
static const double G[6][3] = {{0.25, 0, 0},
                               {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                               {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                               {1.0 / 24, 1.0 / 12, 1.0 / 6},
                               {1.0 / 24, -1.0 / 12, 1.0 / 6},
                               {0, 0, 1}};

void wino4_weights(float *U, size_t ldu, size_t plane, const float *w, int Oc, int Ic, size_t so, size_t si,
                   wino4_taps taps) {
    /* tap k at src[k0 + k*dk], times side outside the centre: scalars and no branch, so that the
     * loop over i vectorises (a centre-only kernel reads its one weight 9 times, 8 times zeroed) */
    const int k0 = taps == WINO4_FLIPPED ? 8 : 0, dk = taps == WINO4_TAPS ? 1 : taps == WINO4_FLIPPED ? -1 : 0;
    const double side = taps == WINO4_CENTRE ? 0.0 : 1.0;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < Oc; o++) {
        float *u = U + (size_t)o * ldu;
#pragma omp simd
        for (int i = 0; i < Ic; i++) { /* vectorised over i: only once the small loops are unrolled */
            const float *src = w + o * so + i * si;
            double g[9], t[6][3];
#pragma GCC unroll 9
            for (int k = 0; k < 9; k++) g[k] = (k == 4 ? 1.0 : side) * src[k0 + k * dk];
#pragma GCC unroll 6
            for (int a = 0; a < 6; a++) /* G g */
#pragma GCC unroll 3
                for (int c = 0; c < 3; c++) t[a][c] = G[a][0] * g[c] + G[a][1] * g[3 + c] + G[a][2] * g[6 + c];
#pragma GCC unroll 6
            for (int a = 0; a < 6; a++) /* (G g) G^T */
#pragma GCC unroll 6
                for (int b = 0; b < 6; b++)
                    u[(size_t)(6 * a + b) * plane + i] =
                        (float)(t[a][0] * G[b][0] + t[a][1] * G[b][1] + t[a][2] * G[b][2]);
        }
    }
}

#if MS_HAVE_WINO
/* where a quad (4 tiles in one tile row) reads: per input row the offset of its column
 * 4*tx0 - 1, the masks of its loads there and 2 further on (zero for rows outside the image or a
 * quad past the chunk's tiles; off for the left and right padding columns), and where its output
 * row 0 starts */
typedef struct {
    long row[6], out;
    __mmask16 ma[6], mb[6];
    int live;
} quad_geom;

static void quad_of(quad_geom *g, long T, int H, int W, int live) {
    const int TW = W / 4, TH = H / 4;
    const int tx0 = (int)(T % TW), ty = (int)((T / TW) % TH), b = (int)(T / ((long)TW * TH));
    g->live = live;
    g->out = live ? ((long)b * H + 4 * ty) * W + 4L * tx0 : 0;
    for (int i = 0; i < 6; i++) {
        const int y = 4 * ty - 1 + i, in = live && y >= 0 && y < H;
        g->row[i] = in ? ((long)b * H + y) * W + 4L * tx0 - 1 : 0;
        g->ma[i] = !in ? 0 : tx0 == 0 ? 0xFFFE : 0xFFFF;
        g->mb[i] = !in ? 0 : tx0 + 4 == TW ? 0x7FFF : 0xFFFF;
    }
}

/* the 4x4 transpose within each 128-bit lane: o[j] lane L element m = x[m] lane L element j */
#define LANE_T4(o, x)                                                                              \
    do {                                                                                           \
        const __m512 u0_ = _mm512_unpacklo_ps(x[0], x[1]), u1_ = _mm512_unpackhi_ps(x[0], x[1]);  \
        const __m512 u2_ = _mm512_unpacklo_ps(x[2], x[3]), u3_ = _mm512_unpackhi_ps(x[2], x[3]);  \
        o[0] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(u0_), _mm512_castps_pd(u2_))); \
        o[1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(u0_), _mm512_castps_pd(u2_))); \
        o[2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(u1_), _mm512_castps_pd(u3_))); \
        o[3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(u1_), _mm512_castps_pd(u3_))); \
    } while (0)

/* V (36 positions plane apart, Cin rows ldt apart, 48 tiles) <- B^T d B for channels 0..Cin-1 of
 * the chunk's 3 vectors (quads g[0..11]) */
__attribute__((target("avx512f"))) static void input_transform(float *V, size_t ldt, size_t plane, const float *inp,
                                                              int Cin, size_t N, const quad_geom *g) {
    for (int c = 0; c < Cin; c++) {
        const float *src = inp + (size_t)c * N;
        if (c + WINO_PREFETCH < Cin) { /* wino.h: planes are further apart than the prefetchers follow */
            const float *sp = inp + (size_t)(c + WINO_PREFETCH) * N;
            for (int q = 0; q < 12; q++)
                if (g[q].live)
                    for (int i = 0; i < 6; i++) {
                        _mm_prefetch((const char *)(sp + g[q].row[i]), _MM_HINT_T0);
                        _mm_prefetch((const char *)(sp + g[q].row[i] + 17), _MM_HINT_T0);
                    }
        }
        for (int v = 0; v < 3; v++) {
            const quad_geom *gv = &g[4 * v];
            __m512 t[6][6]; /* B^T applied along each tile's rows: t[i][k] */
            for (int i = 0; i < 6; i++) {
                __m512 a[4], b[4], d[6], lo[4], hi[4];
                for (int m = 0; m < 4; m++) {
                    const float *p = src + gv[m].row[i];
                    a[m] = _mm512_maskz_loadu_ps(gv[m].ma[i], p);     /* columns 0..3 of each tile */
                    b[m] = _mm512_maskz_loadu_ps(gv[m].mb[i], p + 2); /* columns 2..5 */
                }
                LANE_T4(lo, a);
                LANE_T4(hi, b); /* (the compiler drops hi[0], hi[1]) */
                d[0] = lo[0], d[1] = lo[1], d[2] = lo[2], d[3] = lo[3], d[4] = hi[2], d[5] = hi[3];
                wino4_bt6(t[i], d);
            }
            float *o = V + (size_t)c * ldt + 16 * v;
            for (int k = 0; k < 6; k++) { /* B^T along the columns */
                __m512 col[6], r[6];
                for (int i = 0; i < 6; i++) col[i] = t[i][k];
                wino4_bt6(r, col);
                for (int i = 0; i < 6; i++) _mm512_storeu_ps(o + (size_t)(6 * i + k) * plane, r[i]);
            }
        }
    }
}

/* M (36, Cout, TC; planes plane_of(Cout) apart) <- U[x] . V[x] over the chunk's first nv vectors */
static void products(float *M, const float *U, const float *V, int Cin, int Cout, int nv) {
    const size_t mplane = plane_of(Cout), uplane = (size_t)Cout * Cin;
    for (int x = 0; x < NX; x++) {
        const float *Vx = V + x * plane_of(Cin);
        for (int co = 0; co < Cout; co += 8) {
            float *Mo = M + x * mplane + (size_t)co * TC;
            const float *Uo = U + x * uplane + (size_t)co * Cin;
            wino_gemm_8(Mo, Uo, (size_t)Cin, Vx, Cin, nv);
        }
    }
}

/* out (+)= A^T M A: per output channel and vector, the 4x4 outputs of its 16 tiles; the lane
 * transpose turns each output row's 4 column vectors into the 4 quads' 16 contiguous floats */
__attribute__((target("avx512f"))) static void output_transform(float *out, const float *M, int accumulate, int Cout,
                                                               size_t N, int W, const quad_geom *g) {
    const size_t plane = plane_of(Cout);
    /* outputs of 16 MB and more bypass the caches (as conv_pointwise.c's): a quad's rows are whole
     * aligned lines (its column 4*tx0 and W are multiples of 16 floats) */
    const int stream = !accumulate && (uintptr_t)out % 64 == 0 && N * Cout * sizeof(float) >= ((size_t)16 << 20);
    for (int co = 0; co < Cout; co++) {
        for (int v = 0; v < 3; v++) {
            const quad_geom *gv = &g[4 * v];
            if (!gv[0].live) continue;
            const float *m = M + (size_t)co * TC + 16 * v;
            __m512 s[4][6]; /* A^T along the columns: s[r][j] */
            for (int j = 0; j < 6; j++) {
                __m512 col[6], y[4];
                for (int i = 0; i < 6; i++) col[i] = _mm512_loadu_ps(m + (size_t)(6 * i + j) * plane);
                wino4_at6(y, col);
                for (int r = 0; r < 4; r++) s[r][j] = y[r];
            }
            float *o = out + (size_t)co * N;
            for (int r = 0; r < 4; r++) {
                __m512 y[4], q[4];
                wino4_at6(y, s[r]); /* the tiles' output row r, columns 0..3 */
                LANE_T4(q, y); /* q[m]: quad m's row, 16 floats */
                for (int mq = 0; mq < 4; mq++) {
                    if (!gv[mq].live) continue;
                    float *d = o + gv[mq].out + (size_t)r * W;
                    if (accumulate) q[mq] = _mm512_add_ps(q[mq], _mm512_loadu_ps(d));
                    if (stream) _mm512_stream_ps(d, q[mq]);
                    else _mm512_storeu_ps(d, q[mq]);
                }
            }
        }
    }
    if (stream) _mm_sfence(); /* visible to the other threads when the region ends */
}
#endif

void conv3x3_wino4_conv(float *out, const float *inp, const float *w, int transposed, int accumulate, int B, int Cin,
                        int Cout, int H, int W, float *ws) {
    // inp (Cin,B,H,W), out (Cout,B,H,W) (+)= conv3x3(inp; w): w (Cout,Cin,3,3), or with transposed
    // the input gradient of a layer whose w is (Cin,Cout,3,3), i.e. w transposed and flipped
    float *U = ws, *slices = ws + (size_t)NX * Cout * Cin;
    const size_t plane = (size_t)Cout * Cin;
    if (transposed) wino4_weights(U, Cin, plane, w, Cout, Cin, 9, (size_t)Cout * 9, WINO4_FLIPPED);
    else wino4_weights(U, Cin, plane, w, Cout, Cin, (size_t)Cin * 9, 9, WINO4_TAPS);
#if MS_HAVE_WINO
    const size_t N = (size_t)B * H * W, slice = slice_floats(Cin, Cout);
    const long T = (long)B * (H / 4) * (W / 4), nchunks = (T + TC - 1) / TC;
#pragma omp parallel for schedule(static) num_threads(conv_threads())
    for (long ch = 0; ch < nchunks; ch++) {
        float *V = slices + (size_t)omp_get_thread_num() * slice, *M = V + NX * plane_of(Cin);
        const long t0 = ch * TC;
        const int nt = T - t0 < TC ? (int)(T - t0) : TC; /* a multiple of 4: W/4 is */
        quad_geom g[12];
        for (int q = 0; q < 12; q++) quad_of(&g[q], t0 + 4 * q, H, W, 4 * q < nt);
        input_transform(V, TC, plane_of(Cin), inp, Cin, N, g);
        products(M, U, V, Cin, Cout, (nt + 15) / 16);
        output_transform(out, M, accumulate, Cout, N, W, g);
    }
#else
    (void)out, (void)inp, (void)accumulate, (void)B, (void)H, (void)W, (void)slices; /* never a candidate here */
#endif
}

/* ------------------------------------------------------------------ weight gradient
 * As conv_wino_dw.c does for F(2x2,3x3): Y = A^T [U . V] A gives
 *   dL/dU[x] = sum over tiles of Z[x] V[x],  Z = A dY A^T (6x6 from the tile's 4x4 output gradient)
 *   dL/dg    = G^T (dL/dU) G
 * 36 products per 4x4 tile and channel pair against F(2x2,3x3)'s 64 (16 per 2x2 tile). A chunk of
 * up to 192 tiles is transformed, V[x] transposed in 16x16 blocks, and conv_wino_dw.c's 8 x 48
 * kernel adds it into the thread's dU (36, Cout, Cin). */

/* 48-tile sub-chunks per chunk: a chunk's V and Z near 1.5 MB (conv_wino_dw.c) */
static int dw4_subs(int Cin, int Cout) {
    const size_t per = (size_t)NX * (Cin + Cout) * TC * sizeof(float);
    const int s = (int)((size_t)(1536 * 1024) / per);
    return s < 1 ? 1 : s > 4 ? 4 : s;
}
static size_t dw4_ld(int Cin, int Cout) { return (size_t)TC * dw4_subs(Cin, Cout) + 16; } /* a line more (L1 sets) */

int conv3x3_wino4_dw_ok(int Cin, int Cout, int B, int H, int W) { return conv3x3_wino4_ok(Cin, Cout, B, H, W) && Cin % 16 == 0; }

/* per thread: dU (36, Cout, Cin), V (36, Cin, ld), Z (36, Cout, ld), Vt (T, Cin) */
static size_t dw4_slice(int Cin, int Cout) {
    const size_t T = (size_t)TC * dw4_subs(Cin, Cout);
    return (size_t)NX * Cout * Cin + NX * dw4_ld(Cin, Cout) * (Cin + Cout) + T * Cin + 64;
}
size_t conv3x3_wino4_dw_ws_floats(int Cin, int Cout) { return (size_t)omp_get_num_procs() * dw4_slice(Cin, Cout); }

#if MS_HAVE_WINO
/* A applied to 4 values, A = (A^T)^T: rows (1 0 0 0), (1 1 1 1), (1 -1 1 -1), (1 2 4 8), (1 -2 4 -8), (0 0 0 1) */
#define A4(z, y)                                                                                   \
    do {                                                                                           \
        const __m512 e_ = _mm512_add_ps(y[0], y[2]), o_ = _mm512_add_ps(y[1], y[3]);              \
        const __m512 e4_ = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), y[2], y[0]);                     \
        const __m512 o4_ = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), y[3], y[1]);                     \
        z[0] = y[0];                                                                               \
        z[1] = _mm512_add_ps(e_, o_);                                                              \
        z[2] = _mm512_sub_ps(e_, o_);                                                              \
        z[3] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), o4_, e4_);                                    \
        z[4] = _mm512_fnmadd_ps(_mm512_set1_ps(2.0f), o4_, e4_);                                   \
        z[5] = y[3];                                                                               \
    } while (0)

/* Z (36 positions plane apart, Cout rows ldz apart) <- A dY A^T of the 3 vectors' tiles (zeros
 * for absent quads): each quad's output rows are 16 contiguous floats, turned into the 4 columns
 * of the vector's tiles by the lane transpose (the tiles in the order of input_transform's) */
__attribute__((target("avx512f"))) static void grad_transform(float *Z, size_t ldz, size_t plane, const float *dout,
                                                             int Cout, size_t N, int W, const quad_geom *g) {
    for (int co = 0; co < Cout; co++) {
        const float *src = dout + (size_t)co * N;
        for (int v = 0; v < 3; v++) {
            const quad_geom *gv = &g[4 * v];
            __m512 t[4][6]; /* A applied along each output row: t[r][l] */
            for (int r = 0; r < 4; r++) {
                __m512 x[4], y[4];
                for (int m = 0; m < 4; m++)
                    x[m] = _mm512_maskz_loadu_ps(gv[m].live ? 0xFFFF : 0, src + gv[m].out + (size_t)r * W);
                LANE_T4(y, x);
                A4(t[r], y);
            }
            float *o = Z + (size_t)co * ldz + 16 * v;
            for (int l = 0; l < 6; l++) { /* A along the columns */
                __m512 col[4], z[6];
                for (int r = 0; r < 4; r++) col[r] = t[r][l];
                A4(z, col);
                for (int k = 0; k < 6; k++) _mm512_storeu_ps(o + (size_t)(6 * k + l) * plane, z[k]);
            }
        }
    }
}

/* dw (Cout, Cin*9) += G^T dU G per channel pair, summed in double as wino4_weights */
static void dU4_to_dw(float *dw, const float *dU, int Cin, int Cout) {
    const size_t plane = (size_t)Cout * Cin;
    for (int co = 0; co < Cout; co++)
        for (int ci = 0; ci < Cin; ci++) {
            double t[3][6];
            const float *u = dU + (size_t)co * Cin + ci;
            for (int l = 0; l < 6; l++) /* G^T u: 3x6 */
                for (int a = 0; a < 3; a++) {
                    double s = 0;
                    for (int k = 0; k < 6; k++) s += G[k][a] * u[(size_t)(6 * k + l) * plane];
                    t[a][l] = s;
                }
            float *d = dw + (size_t)co * Cin * 9 + (size_t)ci * 9;
            for (int a = 0; a < 3; a++) /* (G^T u) G: 3x3 */
                for (int b = 0; b < 3; b++) {
                    double s = 0;
                    for (int l = 0; l < 6; l++) s += t[a][l] * G[l][b];
                    d[a * 3 + b] += (float)s;
                }
        }
}
#endif

void conv3x3_wino4_dw(float *dw_ws, size_t wslice, const float *dout, const float *inp, int B, int Cin, int Cout,
                      int H, int W, float *ws) {
    // dout (Cout,B,H,W), inp (Cin,B,H,W); thread t adds into dw_ws + t*wslice, (Cout, Cin*9)
#if MS_HAVE_WINO
    const size_t N = (size_t)B * H * W, slice = dw4_slice(Cin, Cout), LD = dw4_ld(Cin, Cout);
    const int CT = TC * dw4_subs(Cin, Cout);
    const long T = (long)B * (H / 4) * (W / 4), nchunks = (T + CT - 1) / CT;
#pragma omp parallel num_threads(conv_threads())
    {
        const int tid = omp_get_thread_num();
        float *dU = ws + (size_t)tid * slice, *V = dU + (size_t)NX * Cout * Cin;
        float *Z = V + NX * LD * Cin, *Vt = Z + NX * LD * Cout;
        memset(dU, 0, sizeof(float) * NX * Cout * Cin);
#pragma omp for schedule(static)
        for (long ch = 0; ch < nchunks; ch++) {
            const long c0 = ch * CT;
            const int nt = T - c0 < CT ? (int)(T - c0) : CT, ntp = (nt + 15) & ~15;
            for (int s = 0; s * TC < nt; s++) {
                quad_geom g[12];
                for (int q = 0; q < 12; q++) quad_of(&g[q], c0 + s * TC + 4 * q, H, W, s * TC + 4 * q < nt);
                input_transform(V + s * TC, LD, LD * Cin, inp, Cin, N, g);
                grad_transform(Z + s * TC, LD, LD * Cout, dout, Cout, N, W, g);
            }
            for (int x = 0; x < NX; x++) {
                const float *Vx = V + x * LD * Cin, *Zx = Z + x * LD * Cout;
                float *dUx = dU + (size_t)x * Cout * Cin;
                for (int c = 0; c < Cin; c += 16) /* Vt (ntp, Cin) = Vx (Cin, ntp)^T */
                    for (int t = 0; t < ntp; t += 16) wino_transpose16(Vt + (size_t)t * Cin + c, Cin, Vx + c * LD + t, LD);
                for (int co = 0; co < Cout; co += 8) {
                    int c = 0;
                    for (; c + 48 <= Cin; c += 48) wino_dw_8x48(dUx + (size_t)co * Cin + c, Zx + co * LD, LD, Vt + c, ntp, Cin);
                    if (Cin - c == 32) wino_dw_8x32(dUx + (size_t)co * Cin + c, Zx + co * LD, LD, Vt + c, ntp, Cin);
                    else if (Cin - c == 16) wino_dw_8x16(dUx + (size_t)co * Cin + c, Zx + co * LD, LD, Vt + c, ntp, Cin);
                }
            }
        }
        dU4_to_dw(dw_ws + (size_t)tid * wslice, dU, Cin, Cout);
    }
#else
    (void)dw_ws, (void)wslice, (void)dout, (void)inp, (void)B, (void)Cin, (void)Cout, (void)H, (void)W, (void)ws;
#endif
}
