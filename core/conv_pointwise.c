/* Pointwise convolutions on channel-major (C,B,H,W) data: the 1x1 convolution (the ResBlocks'
 * shortcuts and the head) and the 2x2 stride-2 transposed convolution (the up-sampling: each
 * output pixel comes from exactly one input pixel, so it is a 1x1 product of Cout*4 rows and a
 * scatter).
 *
 * Why own kernels: at the top levels these are products of few channels (16-64) over many pixels
 * (B*H*W = 262144 at level 0, batch 32), where OpenBLAS packs more bytes than it multiplies and
 * each pass (the GEMM, the bias, the bias gradient, the weight gradient, the input gradient, the
 * transposed convolution's scatter and gather) streams the activations through DRAM again. Here
 * a column chunk of pixels is taken once, while it sits in L2, through every product of the
 * call: 1x1 backward reads dout and x once for db, dw and dinp; the transposed convolution
 * scatters (gathers) its chunk straight from (into) a cache-sized block. The AVX-512 blocks are
 * those of conv_direct.c: 8 output rows x 48 pixels in 24 zmm accumulators, weights broadcast.
 *
 * Weight gradients are sums over pixels: each thread adds its chunks (a static split, so the
 * order depends on the thread count only, never on timing) into its own partial sums, which are
 * then added in thread order. Without AVX-512, or for shapes the blocks do not cover (pixel
 * counts not a multiple of 16; wide layers, whose weight-gradient reduction per chunk would be
 * too short: see PW_MIN_COLS), the OpenBLAS forms of conv_pointwise_blas.c run. */
#include "layers.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MS_HAVE_PW 1
#else
#define MS_HAVE_PW 0
#endif

/* bytes of the rows of one pixel chunk that should stay in the 1 MB L2 together */
#define PW_CHUNK_BYTES (512 * 1024)
/* a backward chunk shorter than this many pixels leaves too few multiply-adds per weight-gradient
 * element to pay for the horizontal sum that ends it: OpenBLAS there */
#define PW_MIN_COLS 512
#define PW_MAX_COLS 4096

/* pixels per chunk for `rows` rows of floats in cache together: a multiple of 16 (a vector;
 * the blocks take 48 at a time and the rest in one narrower block) */
static size_t pw_cols(int rows) {
    size_t p = PW_CHUNK_BYTES / (sizeof(float) * (size_t)rows);
    if (p > PW_MAX_COLS) p = PW_MAX_COLS;
    p -= p % 16;
    return p < 48 ? 48 : p;
}

/* ... and at most a quarter of a thread's share of the N pixels: the deep levels (N = 1024 at
 * the bottleneck of a batch of 32) would otherwise be one or three chunks, all or two thirds of
 * them on one thread */
static size_t pw_split(size_t P, size_t N, int nthr) {
    const size_t share = N / (4 * (size_t)nthr);
    const size_t cap = share < 16 ? 16 : (share + 15) & ~(size_t)15;
    return P < cap ? P : cap;
}

static int pw_cpu(void) {
#if MS_HAVE_PW
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}
/* the gradients' blocks take whole vectors of pixels */
static int pw_ok(size_t N) { return pw_cpu() && N % 16 == 0; }

#if MS_HAVE_PW
/* ------------------------------------------------------------------ AVX-512 blocks */

/* how pw_gemm writes C */
enum { PW_SET, PW_ADD, PW_STREAM /* set, with non-temporal stores (64-byte aligned rows) */ };

/* C (R rows ldc apart, NV*16 pixels) = [C +] [bias +] A (R x K, rows lda apart) . X (K rows ldx
 * apart, NV*16 pixels), C + only for acc == PW_ADD; R <= 8, NV <= 3 are constants where it is
 * inlined. */
__attribute__((target("avx512f"), always_inline)) static inline void pw_block(float *C, size_t ldc, const float *A,
                                                                              size_t lda, const float *X, size_t ldx,
                                                                              int K, const float *bias, int acc,
                                                                              const int R, const int NV) {
    __m512 c[8][3];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++)
            c[r][v] = acc == PW_ADD ? _mm512_loadu_ps(C + r * ldc + 16 * v)
                      : bias        ? _mm512_set1_ps(bias[r])
                                    : _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m512 x[3];
        for (int v = 0; v < NV; v++) x[v] = _mm512_loadu_ps(X + k * ldx + 16 * v);
        for (int r = 0; r < R; r++) {
            const __m512 a = _mm512_set1_ps(A[r * lda + k]);
            for (int v = 0; v < NV; v++) c[r][v] = _mm512_fmadd_ps(a, x[v], c[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++)
            if (acc == PW_STREAM)
                _mm512_stream_ps(C + r * ldc + 16 * v, c[r][v]);
            else
                _mm512_storeu_ps(C + r * ldc + 16 * v, c[r][v]);
}

typedef void (*pw_block_fn)(float *, size_t, const float *, size_t, const float *, size_t, int, const float *, int);
#define PW_BLOCK(R, NV)                                                                                         \
    __attribute__((target("avx512f"))) static void pw_block_##R##_##NV(float *C, size_t ldc, const float *A,     \
                                                                       size_t lda, const float *X, size_t ldx,   \
                                                                       int K, const float *bias, int acc) {     \
        pw_block(C, ldc, A, lda, X, ldx, K, bias, acc, R, NV);                                                  \
    }
#define PW_BLOCKS(R) PW_BLOCK(R, 1) PW_BLOCK(R, 2) PW_BLOCK(R, 3)
PW_BLOCKS(1) PW_BLOCKS(2) PW_BLOCKS(3) PW_BLOCKS(4) PW_BLOCKS(5) PW_BLOCKS(6) PW_BLOCKS(7) PW_BLOCKS(8)
#define PW_ROW(R) {pw_block_##R##_1, pw_block_##R##_2, pw_block_##R##_3}
static const pw_block_fn pw_blocks[8][3] = {PW_ROW(1), PW_ROW(2), PW_ROW(3), PW_ROW(4),
                                            PW_ROW(5), PW_ROW(6), PW_ROW(7), PW_ROW(8)};

/* the last P < 16 pixels of pw_gemm, one at a time in the blocks' order of operations (fmaf is
 * the vector FMA's single rounding): a pixel's result does not depend on where it falls, so a
 * batch gives each image what it gets alone */
static void pw_tail(float *C, size_t ldc, const float *A, size_t lda, const float *X, size_t ldx, int M, int K, size_t P,
                    const float *bias, int acc) {
    for (int r = 0; r < M; r++)
        for (size_t j = 0; j < P; j++) {
            float c = acc == PW_ADD ? C[r * ldc + j] : bias ? bias[r] : 0.0f;
            for (int k = 0; k < K; k++) c = fmaf(A[r * lda + k], X[k * ldx + j], c);
            C[r * ldc + j] = c;
        }
}

/* C (M x P) = [C +] [bias +] A (M x K) . X (K x P) */
static void pw_gemm(float *C, size_t ldc, const float *A, size_t lda, const float *X, size_t ldx, int M, int K,
                    size_t P, const float *bias, int acc) {
    if (acc == PW_STREAM && ((uintptr_t)C % 64 || ldc % 16)) acc = PW_SET;
    const size_t P16 = P & ~(size_t)15;
    for (size_t p = 0; p < P16; p += 48) {
        const int nv = P16 - p >= 48 ? 3 : (int)((P16 - p) / 16);
        for (int r = 0; r < M; r += 8) {
            const int R = M - r < 8 ? M - r : 8;
            pw_blocks[R - 1][nv - 1](C + (size_t)r * ldc + p, ldc, A + (size_t)r * lda, lda, X + p, ldx, K,
                                     bias ? bias + r : NULL, acc);
        }
    }
    if (acc == PW_STREAM) _mm_sfence(); /* the non-temporal stores are visible before the region ends */
    if (P16 < P) pw_tail(C + P16, ldc, A, lda, X + P16, ldx, M, K, P - P16, bias, acc);
}

/* Outputs of at least this many bytes go to memory with non-temporal stores: they cannot stay in
 * the caches for their next reader anyway, and a plain store first reads each line it writes. */
#define PW_STREAM_BYTES ((size_t)16 << 20)
static int pw_set_mode(int rows, size_t N) { return (size_t)rows * N * sizeof(float) >= PW_STREAM_BYTES ? PW_STREAM : PW_SET; }

/* D (RA x RB, rows ldd apart) += A (RA rows lda apart) . X (RB rows ldx apart)^T over P pixels
 * (a multiple of 16): 16 lanes of sums per element, then one horizontal sum each; RA <= 4,
 * RB <= 6 are constants where it is inlined. */
__attribute__((target("avx512f"), always_inline)) static inline void pw_dw_block(float *D, size_t ldd, const float *A,
                                                                                 size_t lda, const float *X, size_t ldx,
                                                                                 size_t P, const int RA, const int RB) {
    __m512 s[4][6];
    for (int i = 0; i < RA; i++)
        for (int j = 0; j < RB; j++) s[i][j] = _mm512_setzero_ps();
    for (size_t p = 0; p < P; p += 16) {
        __m512 a[4], x[6];
        for (int i = 0; i < RA; i++) a[i] = _mm512_loadu_ps(A + i * lda + p);
        for (int j = 0; j < RB; j++) x[j] = _mm512_loadu_ps(X + j * ldx + p);
        for (int i = 0; i < RA; i++)
            for (int j = 0; j < RB; j++) s[i][j] = _mm512_fmadd_ps(a[i], x[j], s[i][j]);
    }
    for (int i = 0; i < RA; i++)
        for (int j = 0; j < RB; j++) D[i * ldd + j] += _mm512_reduce_add_ps(s[i][j]);
}

typedef void (*pw_dw_fn)(float *, size_t, const float *, size_t, const float *, size_t, size_t);
#define PW_DW(RA, RB)                                                                                           \
    __attribute__((target("avx512f"))) static void pw_dw_##RA##_##RB(float *D, size_t ldd, const float *A,       \
                                                                     size_t lda, const float *X, size_t ldx,     \
                                                                     size_t P) {                                 \
        pw_dw_block(D, ldd, A, lda, X, ldx, P, RA, RB);                                                         \
    }
#define PW_DWS(RA) PW_DW(RA, 1) PW_DW(RA, 2) PW_DW(RA, 3) PW_DW(RA, 4) PW_DW(RA, 5) PW_DW(RA, 6)
PW_DWS(1) PW_DWS(2) PW_DWS(3) PW_DWS(4)
#define PW_DW_ROW(RA) {pw_dw_##RA##_1, pw_dw_##RA##_2, pw_dw_##RA##_3, pw_dw_##RA##_4, pw_dw_##RA##_5, pw_dw_##RA##_6}
static const pw_dw_fn pw_dws[4][6] = {PW_DW_ROW(1), PW_DW_ROW(2), PW_DW_ROW(3), PW_DW_ROW(4)};

/* D (MA x MB) += A (MA x P) . X (MB x P)^T */
static void pw_dw(float *D, size_t ldd, const float *A, size_t lda, const float *X, size_t ldx, int MA, int MB,
                  size_t P) {
    for (int i = 0; i < MA; i += 4) {
        const int ra = MA - i < 4 ? MA - i : 4;
        for (int j = 0; j < MB; j += 6) {
            const int rb = MB - j < 6 ? MB - j : 6;
            pw_dws[ra - 1][rb - 1](D + (size_t)i * ldd + j, ldd, A + (size_t)i * lda, lda, X + (size_t)j * ldx, ldx, P);
        }
    }
}

/* s[r / group] += the sum of rows r..r+group-1 of x (R rows ldx apart, P pixels): 1 row for a
 * plain row sum, 4 for the transposed convolution's four taps of one output channel; added up in
 * double, as OpenBLAS's path does (a bias gradient sums up to 10^6 elements per step) */
__attribute__((target("avx512f"))) static void pw_row_sums(double *s, const float *x, size_t ldx, int R, int group,
                                                           size_t P) {
    for (int r = 0; r < R; r += group) {
        __m512d a = _mm512_setzero_pd(), b = _mm512_setzero_pd();
        for (int g = 0; g < group; g++)
            for (size_t p = 0; p < P; p += 16) {
                const __m512 v = _mm512_loadu_ps(x + (size_t)(r + g) * ldx + p);
                a = _mm512_add_pd(a, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
                b = _mm512_add_pd(b, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
            }
        s[r / group] += _mm512_reduce_add_pd(_mm512_add_pd(a, b));
    }
}

/* dst (C, R) = src (R, C) transposed: the weights as the blocks read them */
static void pw_transpose(float *dst, const float *src, int R, int C) {
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) dst[(size_t)c * R + r] = src[(size_t)r * C + c];
}

/* Activation planes are B*H*W floats apart, a power of two: rows read in step alias to the same
 * L1 and L2 sets (README, "Power-of-two plane strides alias"; here they made the products 3-4x
 * slower than their arithmetic). So each chunk's rows are copied to (from) a thread's block of
 * rows PW_LD(P) apart, which is not such a stride. */
#define PW_LD(P) ((P) + 16)
static void pw_pack(float *dst, size_t ldd, const float *src, size_t lds, int R, size_t nc) {
    for (int r = 0; r < R; r++) memcpy(dst + (size_t)r * ldd, src + (size_t)r * lds, sizeof(float) * nc);
}
/* dst's rows += src's (pw_pack's inverse, adding) */
static void pw_unpack_add(float *dst, size_t ldd, const float *src, size_t lds, int R, size_t nc) {
    for (int r = 0; r < R; r++) {
        float *d = dst + (size_t)r * ldd;
        const float *s = src + (size_t)r * lds;
        for (size_t i = 0; i < nc; i++) d[i] += s[i];
    }
}

/* Per thread: partial sums of a weight gradient (n floats) and a bias gradient (nb doubles) and
 * a block of ns floats; shared: nw floats (transposed weights). 0 if out of memory (the caller
 * takes the OpenBLAS form, which needs none of it). */
typedef struct {
    float *dw, *scr, *shared;
    double *db;
    size_t n, nb, ns;
} pw_parts;
static int pw_parts_alloc(pw_parts *p, int nthr, size_t n, size_t nb, size_t ns, size_t nw) {
    p->n = (n + 15) & ~(size_t)15;
    p->nb = (nb + 7) & ~(size_t)7;
    p->ns = (ns + 15) & ~(size_t)15;
    p->db = aligned_alloc(64, sizeof(double) * (p->nb * nthr + 8));
    p->dw = aligned_alloc(64, sizeof(float) * ((p->n + p->ns) * nthr + ((nw + 15) & ~(size_t)15)));
    if (!p->db || !p->dw) {
        free(p->db);
        free(p->dw);
        return 0;
    }
    memset(p->db, 0, sizeof(double) * p->nb * nthr);
    memset(p->dw, 0, sizeof(float) * p->n * nthr);
    p->scr = p->dw + p->n * nthr;
    p->shared = p->scr + p->ns * nthr;
    return 1;
}
static void pw_parts_free(pw_parts *p) {
    free(p->db);
    free(p->dw);
}
/* dw += the partials, db += the bias partials, in thread order (deterministic); then frees them */
static void pw_parts_reduce(pw_parts *p, int nthr, float *dw, size_t n, float *db, int nb) {
    if (dw)
        for (int t = 0; t < nthr; t++) {
            const float *s = p->dw + (size_t)t * p->n;
            for (size_t i = 0; i < n; i++) dw[i] += s[i];
        }
    if (db)
        for (int c = 0; c < nb; c++) {
            double s = 0.0;
            for (int t = 0; t < nthr; t++) s += p->db[(size_t)t * p->nb + c];
            db[c] += (float)s;
        }
    pw_parts_free(p);
}

/* A chunk's input gradient dinp_c (Cin, nc) = A (Cin, K) . G (K, nc), added through the block
 * DX when accumulating, else stored in place (as conv1x1_forward_pw's outputs are) */
static void pw_dinp(float *dinp, size_t ldi, float *DX, const float *A, size_t lda, const float *G, size_t ld, int Cin,
                    int K, size_t nc, int accumulate) {
    if (accumulate) {
        pw_gemm(DX, ld, A, lda, G, ld, Cin, K, nc, NULL, PW_SET);
        pw_unpack_add(dinp, ldi, DX, ld, Cin, nc);
    } else {
        pw_gemm(dinp, ldi, A, lda, G, ld, Cin, K, nc, NULL, pw_set_mode(Cin, ldi));
    }
}

/* ------------------------------------------------------------------ 1x1 */

/* 0 when out of memory (the caller takes OpenBLAS) */
static int conv1x1_forward_pw(float *out, const float *inp, const float *w, const float *b, size_t N, int Cin,
                              int Cout) {
    const int nthr = conv_threads();
    const size_t P = pw_split(pw_cols(Cin), N, nthr), ld = PW_LD(P);
    pw_parts pp;
    if (!pw_parts_alloc(&pp, nthr, 0, 0, (size_t)Cin * ld, 0)) return 0;
    const int mode = pw_set_mode(Cout, N);
    const long nch = (long)((N + P - 1) / P);
#pragma omp parallel for schedule(static) num_threads(nthr)
    for (long c = 0; c < nch; c++) {
        float *X = pp.scr + (size_t)omp_get_thread_num() * pp.ns;
        const size_t c0 = (size_t)c * P, nc = N - c0 < P ? N - c0 : P;
        // out_c (Cout, nc) = w (Cout, Cin) . inp_c (Cin, nc) + b (stored in place: a block's 8 rows x 3
        // lines still fit the L1's 8 ways, and measured faster than a copy out)
        pw_pack(X, ld, inp + c0, N, Cin, nc);
        pw_gemm(out + c0, N, w, (size_t)Cin, X, ld, Cout, Cin, nc, b, mode);
    }
    pw_parts_free(&pp);
    return 1;
}

/* 0 when the shape is not for the blocks or out of memory (the caller takes OpenBLAS) */
static int conv1x1_backward_pw(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                               size_t N, int Cin, int Cout, int accumulate) {
    const int nthr = conv_threads();
    const size_t P = pw_split(pw_cols(2 * Cin + Cout), N, nthr), ld = PW_LD(P);
    if (P < PW_MIN_COLS) return 0;
    pw_parts pp;
    if (!pw_parts_alloc(&pp, nthr, (size_t)Cout * Cin, (size_t)Cout, (size_t)(2 * Cin + Cout) * ld,
                        (size_t)Cout * Cin))
        return 0;
    float *wt = pp.shared; /* w^T (Cin, Cout) */
    pw_transpose(wt, w, Cout, Cin);
    const long nch = (long)((N + P - 1) / P);
#pragma omp parallel for schedule(static) num_threads(nthr)
    for (long c = 0; c < nch; c++) {
        const int t = omp_get_thread_num();
        float *G = pp.scr + (size_t)t * pp.ns, *X = G + (size_t)Cout * ld, *DX = X + (size_t)Cin * ld;
        const size_t c0 = (size_t)c * P, nc = N - c0 < P ? N - c0 : P;
        // per chunk: db += row sums of dout_c; dw (Cout,Cin) += dout_c . inp_c^T; dinp_c (+)= w^T . dout_c
        pw_pack(G, ld, dout + c0, N, Cout, nc);
        pw_pack(X, ld, inp + c0, N, Cin, nc);
        if (db) pw_row_sums(pp.db + (size_t)t * pp.nb, G, ld, Cout, 1, nc);
        pw_dw(pp.dw + (size_t)t * pp.n, (size_t)Cin, G, ld, X, ld, Cout, Cin, nc);
        if (dinp) pw_dinp(dinp + c0, N, DX, wt, (size_t)Cout, G, ld, Cin, Cout, nc, accumulate);
    }
    pw_parts_reduce(&pp, nthr, dw, (size_t)Cout * Cin, db, Cout);
    return 1;
}

/* ------------------------------------------------------------------ transposed 2x2 */

/* lanes 0-7 and 8-15 of a 16-pixel vector at input pixel p (W a multiple of 8: each half lies in
 * one input row) land in output rows 2y+dy at columns 2x..2x+15: out_of(p) and out_of(p+8) */
static inline size_t convt_out_of(size_t p, int H, int W, int dy) {
    const size_t x = p % (size_t)W, r = p / (size_t)W; /* r = b*H + y */
    const size_t b = r / (size_t)H, y = r % (size_t)H;
    return ((b * 2 * H) + 2 * y + dy) * 2 * (size_t)W + 2 * x;
}

/* out[co][b][2y+dy][2x+dx] = T[co*4 + dy*2 + dx][p] + bias[co] for the chunk's pixels p = c0 +
 * [0, nc) (T: M rows ldt apart), the two taps of a row interleaved */
__attribute__((target("avx512f"))) static void convt_scatter(float *out, const float *T, size_t ldt, const float *b,
                                                             size_t c0, size_t nc, int Cout, size_t plane, int H,
                                                             int W) {
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    for (size_t p = 0; p < nc; p += 16) {
        for (int dy = 0; dy < 2; dy++) {
            const size_t o0 = convt_out_of(c0 + p, H, W, dy), o1 = convt_out_of(c0 + p + 8, H, W, dy);
            for (int co = 0; co < Cout; co++) {
                const __m512 bias = _mm512_set1_ps(b ? b[co] : 0.0f);
                const __m512 t0 = _mm512_add_ps(_mm512_loadu_ps(T + (size_t)(co * 4 + 2 * dy) * ldt + p), bias);
                const __m512 t1 = _mm512_add_ps(_mm512_loadu_ps(T + (size_t)(co * 4 + 2 * dy + 1) * ldt + p), bias);
                float *o = out + (size_t)co * plane;
                _mm512_storeu_ps(o + o0, _mm512_permutex2var_ps(t0, lo, t1));
                _mm512_storeu_ps(o + o1, _mm512_permutex2var_ps(t0, hi, t1));
            }
        }
    }
}

/* dT[co*4 + dy*2 + dx][p] = dout[co][b][2y+dy][2x+dx] for the chunk's pixels (the scatter's inverse) */
__attribute__((target("avx512f"))) static void convt_gather(float *dT, size_t ldt, const float *dout, size_t c0,
                                                            size_t nc, int Cout, size_t plane, int H, int W) {
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (size_t p = 0; p < nc; p += 16) {
        for (int dy = 0; dy < 2; dy++) {
            const size_t o0 = convt_out_of(c0 + p, H, W, dy), o1 = convt_out_of(c0 + p + 8, H, W, dy);
            for (int co = 0; co < Cout; co++) {
                const float *o = dout + (size_t)co * plane;
                const __m512 a = _mm512_loadu_ps(o + o0), c = _mm512_loadu_ps(o + o1);
                _mm512_storeu_ps(dT + (size_t)(co * 4 + 2 * dy) * ldt + p, _mm512_permutex2var_ps(a, ev, c));
                _mm512_storeu_ps(dT + (size_t)(co * 4 + 2 * dy + 1) * ldt + p, _mm512_permutex2var_ps(a, od, c));
            }
        }
    }
}

/* per image, not per batch (whatever the batch, an image takes the same path: the same bits) */
static int convt_pw_ok(int H, int W) { return pw_cpu() && W % 8 == 0 && H * W % 16 == 0; }

/* Few pixels (batch 1 at the deep levels: 32 at the bottleneck of a 64x128 tile): the whole
 * input is one chunk, and a split by pixels would give each thread a 16-pixel sliver and the
 * whole weight matrix to stream. Split by output channels instead: the input is packed once,
 * each thread multiplies its rows of w^T by all of it and scatters them. A pixel's sums run over
 * the same products in the same order either way, so both splits give the same bits. */
#define CONVT_CO_BLOCK 2 /* output channels per task: 8 rows, one block of the kernel */
static void convt2x2_forward_rows(float *out, const float *inp, const float *wt, const float *b, float *X, float *T,
                                  size_t ld, size_t Nin, int Cin, int Cout, int H, int W, int nthr) {
    const size_t plane = 4 * Nin;
    const int nblk = (Cout + CONVT_CO_BLOCK - 1) / CONVT_CO_BLOCK;
#pragma omp parallel num_threads(nthr)
    {
#pragma omp for schedule(static)
        for (int r = 0; r < Cin; r++) memcpy(X + (size_t)r * ld, inp + (size_t)r * Nin, sizeof(float) * Nin);
#pragma omp for schedule(static)
        for (int k = 0; k < nblk; k++) {
            const int co0 = k * CONVT_CO_BLOCK, nco = Cout - co0 < CONVT_CO_BLOCK ? Cout - co0 : CONVT_CO_BLOCK;
            float *Tk = T + (size_t)co0 * 4 * ld;
            // T_k (4 nco, Nin) = w^T rows of channels co0.. (4 nco, Cin) . X (Cin, Nin)
            pw_gemm(Tk, ld, wt + (size_t)co0 * 4 * Cin, (size_t)Cin, X, ld, 4 * nco, Cin, Nin, NULL, PW_SET);
            convt_scatter(out + (size_t)co0 * plane, Tk, ld, b ? b + co0 : NULL, 0, Nin, nco, plane, H, W);
        }
    }
}

/* wt: w transposed (convt2x2_weights_t), or NULL to transpose it here; 0 when out of memory (the
 * caller takes OpenBLAS) */
static int convt2x2_forward_pw(float *out, const float *inp, const float *w, const float *wt, const float *b, int B,
                               int Cin, int Cout, int H, int W) {
    const size_t Nin = (size_t)B * H * W, plane = 4 * Nin; /* an output channel: B*2H*2W */
    const int M = Cout * 4;
    const int nthr = conv_threads();
    const size_t P1 = pw_cols(Cin + M);
    const int rows = Nin <= P1; /* one chunk holds every pixel: split by output channels */
    const size_t P = rows ? Nin : pw_split(P1, Nin, nthr), ld = PW_LD(P);
    pw_parts pp;
    if (!pw_parts_alloc(&pp, rows ? 1 : nthr, 0, 0, (size_t)(Cin + M) * ld, wt ? 0 : (size_t)M * Cin)) return 0;
    if (!wt) {
        pw_transpose(pp.shared, w, Cin, M); /* w^T (M, Cin) */
        wt = pp.shared;
    }
    if (rows) {
        convt2x2_forward_rows(out, inp, wt, b, pp.scr, pp.scr + (size_t)Cin * ld, ld, Nin, Cin, Cout, H, W, nthr);
        pw_parts_free(&pp);
        return 1;
    }
    const long nch = (long)((Nin + P - 1) / P);
#pragma omp parallel for schedule(static) num_threads(nthr)
    for (long c = 0; c < nch; c++) {
        float *X = pp.scr + (size_t)omp_get_thread_num() * pp.ns, *T = X + (size_t)Cin * ld;
        const size_t c0 = (size_t)c * P, nc = Nin - c0 < P ? Nin - c0 : P;
        // T_c (M, nc) = w^T (M, Cin) . inp_c (Cin, nc), scattered with the bias
        pw_pack(X, ld, inp + c0, Nin, Cin, nc);
        pw_gemm(T, ld, wt, (size_t)Cin, X, ld, M, Cin, nc, NULL, PW_SET);
        convt_scatter(out, T, ld, b, c0, nc, Cout, plane, H, W);
    }
    pw_parts_free(&pp);
    return 1;
}

/* 0 when the shape is not for the blocks or out of memory (the caller takes OpenBLAS) */
static int convt2x2_backward_pw(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                const float *w, int B, int Cin, int Cout, int H, int W, int accumulate) {
    const size_t Nin = (size_t)B * H * W, plane = 4 * Nin;
    const int M = Cout * 4;
    const int nthr = conv_threads();
    const size_t P = pw_split(pw_cols(2 * Cin + M), Nin, nthr), ld = PW_LD(P);
    if (P < PW_MIN_COLS) return 0;
    pw_parts pp;
    if (!pw_parts_alloc(&pp, nthr, (size_t)Cin * M, (size_t)Cout, (size_t)(2 * Cin + M) * ld, 0)) return 0;
    const long nch = (long)((Nin + P - 1) / P);
#pragma omp parallel for schedule(static) num_threads(nthr)
    for (long c = 0; c < nch; c++) {
        const int t = omp_get_thread_num();
        float *T = pp.scr + (size_t)t * pp.ns, *X = T + (size_t)M * ld, *DX = X + (size_t)Cin * ld;
        const size_t c0 = (size_t)c * P, nc = Nin - c0 < P ? Nin - c0 : P;
        // per chunk: dT_c (M, nc) gathered; db += its sums per output channel; dw (Cin, M) += inp_c . dT_c^T;
        // dinp_c (+)= w (Cin, M) . dT_c
        convt_gather(T, ld, dout, c0, nc, Cout, plane, H, W);
        pw_pack(X, ld, inp + c0, Nin, Cin, nc);
        if (db) pw_row_sums(pp.db + (size_t)t * pp.nb, T, ld, M, 4, nc);
        pw_dw(pp.dw + (size_t)t * pp.n, (size_t)M, X, ld, T, ld, Cin, M, nc);
        if (dinp) pw_dinp(dinp + c0, Nin, DX, w, (size_t)M, T, ld, Cin, M, nc, accumulate);
    }
    pw_parts_reduce(&pp, nthr, dw, (size_t)Cin * M, db, Cout);
    return 1;
}
#endif

/* ------------------------------------------------------------------ the layers */

void conv1x1_forward(float *out, const float *inp, const float *w, const float *b, size_t N, int Cin, int Cout) {
#if MS_HAVE_PW
    /* any N: the blocks end in pw_tail, so batch and single calls give the same bits */
    if (pw_cpu() && conv1x1_forward_pw(out, inp, w, b, N, Cin, Cout)) return;
#endif
    conv1x1_forward_blas(out, inp, w, b, N, Cin, Cout);
}

void conv1x1_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, size_t N,
                      int Cin, int Cout, int accumulate) {
#if MS_HAVE_PW
    if (pw_ok(N) && conv1x1_backward_pw(dinp, dw, db, dout, inp, w, N, Cin, Cout, accumulate)) return;
#endif
    conv1x1_backward_blas(dinp, dw, db, dout, inp, w, N, Cin, Cout, accumulate);
}

size_t convt2x2_ws_floats(int B, int Cout, int H, int W) { return (size_t)Cout * 4 * (size_t)B * H * W; }

void convt2x2_forward(float *out, const float *inp, const float *w, const float *b, int B, int Cin, int Cout, int H,
                      int W, float *ws) {
    convt2x2_infer(out, inp, w, NULL, b, B, Cin, Cout, H, W, ws);
}

size_t convt2x2_weights_t_floats(int Cin, int Cout) { return (size_t)4 * Cout * Cin; }

void convt2x2_weights_t(float *wt, const float *w, int Cin, int Cout) {
#if MS_HAVE_PW
    pw_transpose(wt, w, Cin, 4 * Cout);
#else
    memcpy(wt, w, sizeof(float) * 4 * (size_t)Cout * Cin); /* unused without the blocks */
#endif
}

void convt2x2_infer(float *out, const float *inp, const float *w, const float *wt, const float *b, int B, int Cin,
                    int Cout, int H, int W, float *ws) {
#if MS_HAVE_PW
    if (convt_pw_ok(H, W) && convt2x2_forward_pw(out, inp, w, wt, b, B, Cin, Cout, H, W)) return;
#else
    (void)wt;
#endif
    convt2x2_forward_blas(out, inp, w, b, B, Cin, Cout, H, W, ws);
}

void convt2x2_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int B,
                       int Cin, int Cout, int H, int W, float *ws, int accumulate) {
#if MS_HAVE_PW
    if (convt_pw_ok(H, W) && convt2x2_backward_pw(dinp, dw, db, dout, inp, w, B, Cin, Cout, H, W, accumulate))
        return;
#endif
    convt2x2_backward_blas(dinp, dw, db, dout, inp, w, B, Cin, Cout, H, W, ws, accumulate);
}
