/* Direct 3x3 convolution (padding 1) with AVX-512: no im2col, no GEMM packing.
 *
 * Why: with few channels (the top U-Net levels, F=16: K = 144) an im2col+GEMM convolution moves
 * more bytes than it multiplies — im2col writes K floats per pixel, OpenBLAS packs them again,
 * and the kernel reads them for only Cout = 16 outputs. Here a block of 8 output channels x 48
 * pixels lives in 24 zmm accumulators; each input vector (a shifted, masked load straight from
 * the activation plane) feeds 8 FMAs whose weights are broadcast from the weight rows as they
 * are, (Cout, Cin*9 + Cextra), so nothing is repacked either: per tap 3 vector loads and 8
 * broadcasts feed 24 FMAs, which keeps the two FMA ports busy rather than the load ports.
 * Measured on the U-Net's shapes: 230-260 GFLOP/s on 2 cores where im2col+GEMM gets 100-230.
 *
 * Shapes: Cout a multiple of 8; W a multiple of 16, or H*W a multiple of 16 with at most
 * MS_DIRECT_TAB vectors per image (conv3x3_direct_ok). Other shapes, and CPUs without AVX-512F,
 * use the im2col path in conv.c. */
#include "layers.h"

#include <omp.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MS_HAVE_DIRECT 1
#else
#define MS_HAVE_DIRECT 0
#endif

/* vector positions per image for which taps are tabulated (W < 16): 64x16 pixels */
#define MS_DIRECT_TAB 64

int conv3x3_direct_ok(int Cout, int H, int W) {
#if MS_HAVE_DIRECT
    /* __builtin_cpu_supports also checks that the OS saves the AVX-512 state */
    return __builtin_cpu_supports("avx512f") && Cout % 8 == 0 && (W % 16 == 0 || (H * W % 16 == 0 && H * W / 16 <= MS_DIRECT_TAB));
#else
    (void)Cout, (void)H, (void)W;
    return 0;
#endif
}

#if MS_HAVE_DIRECT
/* The 9 taps of a 16-pixel vector starting at flattened pixel p (of B*H*W): in the flattened
 * plane, tap (ky,kx) of every lane is at the constant offset ky*W + kx, so each tap is one
 * contiguous load; lanes whose neighbour lies outside their own image (padding) are masked off. */
typedef struct {
    __mmask16 m[9];
    long off[9];
} taps16;

static void taps_of_lanes(taps16 *t, long p, int H, int W) {
    for (int k = 0; k < 9; k++) {
        const int ky = k / 3 - 1, kx = k % 3 - 1;
        unsigned m = 0;
        for (int l = 0; l < 16; l++) {
            const long q = p + l;
            const int x = (int)(q % W), y = (int)((q / W) % H);
            if (y + ky >= 0 && y + ky < H && x + kx >= 0 && x + kx < W) m |= 1u << l;
        }
        t->m[k] = (__mmask16)m;
        t->off[k] = m ? p + (long)ky * W + kx : 0; /* masked-off lanes are never read */
    }
}

/* the taps of the vector at p; with W a multiple of 16 the vector lies within one row and the
 * masks follow from its row and column alone, otherwise (W = 8 at the bottom of the U) they come
 * from `tab`, one entry per vector position within an image */
static inline void taps_of(taps16 *t, long p, int H, int W, const taps16 *tab) {
    if (W % 16 == 0) {
        const int x0 = (int)(p % W), y = (int)((p / W) % H);
        const __mmask16 ml = x0 == 0 ? (__mmask16)0xFFFE : (__mmask16)0xFFFF;
        const __mmask16 mr = x0 + 16 == W ? (__mmask16)0x7FFF : (__mmask16)0xFFFF;
        for (int k = 0; k < 9; k++) {
            const int ky = k / 3 - 1, kx = k % 3 - 1;
            const __mmask16 m = y + ky < 0 || y + ky >= H ? 0 : kx < 0 ? ml : kx > 0 ? mr : (__mmask16)0xFFFF;
            t->m[k] = m;
            t->off[k] = m ? p + (long)ky * W + kx : 0;
        }
    } else {
        const long hw = (long)H * W, q = p % hw;
        *t = tab[q / 16];
        for (int k = 0; k < 9; k++) t->off[k] = t->m[k] ? t->off[k] + (p - q) : 0;
    }
}

/* DIRECT_BLOCK(name, NC, NV): output channels co0..co0+NC-1 of the NV*16 flattened pixels from
 * p0, in NC*NV zmm accumulators. A macro rather than a function with constant arguments: GCC
 * keeps the accumulators in registers only when every bound is a literal. */
#define DIRECT_BLOCK(name, NC, NV)                                                                     \
    __attribute__((target("avx512f"))) static void name(                                               \
        float *out, const float *inp, const float *extra, int Cextra, const float *w, const float *bias,  \
        int relu, int accumulate, size_t N, int Cin, int H, int W, int co0, long p0, const taps16 *tab) { \
        const int K = Cin * 9 + Cextra;                                                                 \
        const float *wb = w + (size_t)co0 * K; /* row j of the block: wb + j*K */                       \
        taps16 t[NV];                                                                                   \
        for (int v = 0; v < NV; v++) taps_of(&t[v], p0 + 16 * v, H, W, tab);                            \
        __m512 acc[NC * NV];                                                                            \
        _Pragma("GCC unroll 32") for (int j = 0; j < NC * NV; j++) acc[j] = _mm512_setzero_ps();        \
        for (int c = 0; c < Cin; c++) {                                                                 \
            const float *plane = inp + (size_t)c * N;                                                   \
            const float *wc = wb + c * 9;                                                               \
            for (int k = 0; k < 9; k++) {                                                               \
                __m512 in[NV];                                                                          \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                    \
                    in[v] = _mm512_maskz_loadu_ps(t[v].m[k], plane + t[v].off[k]);                      \
                _Pragma("GCC unroll 16") for (int j = 0; j < NC; j++) {                                 \
                    const __m512 wv = _mm512_set1_ps(wc[(size_t)j * K + k]);                            \
                    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                \
                        acc[j * NV + v] = _mm512_fmadd_ps(in[v], wv, acc[j * NV + v]);                  \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
        /* appended 1x1 rows (the ResBlock shortcut in the folded inference form) */                    \
        for (int e = 0; e < Cextra; e++) {                                                              \
            const float *src = extra + (size_t)e * N + p0;                                              \
            __m512 in[NV];                                                                              \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) in[v] = _mm512_loadu_ps(src + 16 * v); \
            const float *we = wb + Cin * 9 + e;                                                         \
            _Pragma("GCC unroll 16") for (int j = 0; j < NC; j++) {                                     \
                const __m512 wv = _mm512_set1_ps(we[(size_t)j * K]);                                    \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                    \
                    acc[j * NV + v] = _mm512_fmadd_ps(in[v], wv, acc[j * NV + v]);                      \
            }                                                                                           \
        }                                                                                               \
        _Pragma("GCC unroll 16") for (int j = 0; j < NC; j++) {                                         \
            const __m512 bj = _mm512_set1_ps(bias ? bias[co0 + j] : 0.0f);                              \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                                      \
                float *o = out + (size_t)(co0 + j) * N + p0 + 16 * v;                                   \
                __m512 r = _mm512_add_ps(acc[j * NV + v], bj);                                          \
                if (accumulate) r = _mm512_add_ps(r, _mm512_loadu_ps(o));                               \
                if (relu) r = _mm512_max_ps(r, _mm512_setzero_ps());                                    \
                _mm512_storeu_ps(o, r);                                                                 \
            }                                                                                           \
        }                                                                                               \
    }
DIRECT_BLOCK(direct_8x3, 8, 3)
DIRECT_BLOCK(direct_8x2, 8, 2) /* the short last block (deep levels at batch 1: 2 vectors in all) */
DIRECT_BLOCK(direct_8x1, 8, 1)
#endif

void conv3x3_direct_forward(float *out, const float *inp, const float *extra, int Cextra, const float *w,
                            const float *bias, int relu, int accumulate, int B, int Cin, int Cout, int H, int W) {
    // inp (Cin,B,H,W), extra (Cextra,B,H,W), w (Cout, Cin*9 + Cextra), out (Cout,B,H,W)
#if MS_HAVE_DIRECT
    const size_t N = (size_t)B * H * W;
    const long nvec = (long)(N / 16), nblk = (nvec + 2) / 3; /* blocks of 3 vectors, the last may be short */
    const int ncb = Cout / 8;
    taps16 tab[MS_DIRECT_TAB]; /* W < 16 only: the taps of each vector position in an image */
    if (W % 16)
        for (int i = 0; i < H * W / 16; i++) taps_of_lanes(&tab[i], 16L * i, H, W);
    /* pixel blocks outermost: a thread's pixels share their input across all channel blocks */
#pragma omp parallel for schedule(static) collapse(2) num_threads(conv_threads())
    for (long pb = 0; pb < nblk; pb++)
        for (int cb = 0; cb < ncb; cb++) {
            const long v0 = pb * 3;
            if (v0 + 3 <= nvec) {
                direct_8x3(out, inp, extra, Cextra, w, bias, relu, accumulate, N, Cin, H, W, cb * 8, v0 * 16, tab);
            } else if (v0 + 2 == nvec) {
                direct_8x2(out, inp, extra, Cextra, w, bias, relu, accumulate, N, Cin, H, W, cb * 8, v0 * 16, tab);
            } else {
                direct_8x1(out, inp, extra, Cextra, w, bias, relu, accumulate, N, Cin, H, W, cb * 8, v0 * 16, tab);
            }
        }
#else
    (void)out, (void)inp, (void)extra, (void)Cextra, (void)w, (void)bias, (void)relu, (void)accumulate;
    (void)B, (void)Cin, (void)Cout, (void)H, (void)W;
#endif
}

/* ---- weight gradient: dw[co][c*9+k] += sum_p dout[co][p] * inp[c][p + tap k] ----
 * im2col+GEMM computes this as a (Cout x ncols) . (ncols x K) product whose long reduction and
 * small output make OpenBLAS pack far more than it multiplies: at F=16 it was 35% of a training
 * step. Here a chunk of R rows of one image is copied once into a zero-padded buffer (no masks
 * needed afterwards), and for each pair of output channels and each input channel the 18
 * (2 x 9 taps) dot products run over the chunk in zmm accumulators: per 16 pixels 2 + 9 loads
 * feed 18 FMAs. Shapes: W a multiple of 16, Cout even (conv3x3_direct_dw_rows > 0). */
int conv3x3_direct_dw_rows(size_t slice_floats, int Cin, int Cout, int H, int W) {
#if MS_HAVE_DIRECT
    if (!__builtin_cpu_supports("avx512f") || W % 16 || Cout % 2) return 0;
    long r = (long)(slice_floats / ((size_t)Cin * (W + 2))) - 2; /* the padded chunk must fit the slice */
    const long want = (4096 + W - 1) / W;                         /* ~4096 pixels: L2-sized with the dout rows */
    if (r > want) r = want;
    if (r > H) r = H;
    return r < 1 ? 0 : (int)r;
#else
    (void)slice_floats, (void)Cin, (void)Cout, (void)H, (void)W;
    return 0;
#endif
}

#if MS_HAVE_DIRECT
__attribute__((target("avx512f"))) static void dw_chunk(float *dwt, const float *dout, const float *pad, size_t N,
                                                       int Cin, int Cout, int W, int R, size_t p0) {
    const int PW = W + 2, K = Cin * 9;
    for (int co = 0; co < Cout; co += 2) {
        const float *d0 = dout + (size_t)co * N + p0, *d1 = d0 + N;
        for (int c = 0; c < Cin; c++) {
            const float *pc = pad + (size_t)c * (R + 2) * PW;
            __m512 a0[9], a1[9];
#pragma GCC unroll 9
            for (int k = 0; k < 9; k++) a0[k] = a1[k] = _mm512_setzero_ps();
            for (int r = 0; r < R; r++) {
                for (int x0 = 0; x0 < W; x0 += 16) {
                    const __m512 g0 = _mm512_loadu_ps(d0 + (size_t)r * W + x0), g1 = _mm512_loadu_ps(d1 + (size_t)r * W + x0);
                    const float *q = pc + (size_t)r * PW + x0; /* padded (row r+ky, col x0+kx), ky,kx in 0..2 */
#pragma GCC unroll 9
                    for (int k = 0; k < 9; k++) {
                        __m512 xv = _mm512_loadu_ps(q + (k / 3) * PW + k % 3);
                        __asm__("" : "+v"(xv)); /* one load for both FMAs: GCC would fold it into each */
                        a0[k] = _mm512_fmadd_ps(g0, xv, a0[k]);
                        a1[k] = _mm512_fmadd_ps(g1, xv, a1[k]);
                    }
                }
            }
#pragma GCC unroll 9
            for (int k = 0; k < 9; k++) {
                dwt[(size_t)co * K + c * 9 + k] += _mm512_reduce_add_ps(a0[k]);
                dwt[(size_t)(co + 1) * K + c * 9 + k] += _mm512_reduce_add_ps(a1[k]);
            }
        }
    }
}
#endif

void conv3x3_direct_dw(float *dw_ws, size_t wslice, float *ws, size_t slice, const float *dout, const float *inp,
                       int B, int Cin, int Cout, int H, int W, int R) {
    // dout (Cout,B,H,W), inp (Cin,B,H,W); thread t adds into dw_ws + t*wslice, (Cout, Cin*9)
#if MS_HAVE_DIRECT
    const size_t N = (size_t)B * H * W;
    const int per_img = (H + R - 1) / R, nchunks = B * per_img, PW = W + 2;
    /* as many threads as conv3x3_backward has dw_ws slices for */
#pragma omp parallel for schedule(static) num_threads(conv_threads())
    for (int ch = 0; ch < nchunks; ch++) {
        const int t = omp_get_thread_num(), b = ch / per_img, y0 = (ch % per_img) * R;
        const int rows = H - y0 < R ? H - y0 : R;
        float *pad = ws + (size_t)t * slice;
        /* rows y0-1 .. y0+rows of image b, zero outside it and in the two padding columns */
        for (int c = 0; c < Cin; c++) {
            float *pc = pad + (size_t)c * (rows + 2) * PW;
            for (int i = 0; i < rows + 2; i++) {
                const int y = y0 - 1 + i;
                float *d = pc + (size_t)i * PW;
                d[0] = d[W + 1] = 0.0f;
                if (y < 0 || y >= H) memset(d + 1, 0, sizeof(float) * W);
                else memcpy(d + 1, inp + (size_t)c * N + ((size_t)b * H + y) * W, sizeof(float) * W);
            }
        }
        dw_chunk(dw_ws + (size_t)t * wslice, dout, pad, N, Cin, Cout, W, rows, ((size_t)b * H + y0) * W);
    }
#else
    (void)dw_ws, (void)wslice, (void)ws, (void)slice, (void)dout, (void)inp, (void)B, (void)Cin, (void)Cout;
    (void)H, (void)W, (void)R;
#endif
}
