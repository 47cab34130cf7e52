/* Convolutions as GEMMs (darknet-style im2col + cblas_sgemm) on channel-major (C,B,H,W) data.
 *  - 3x3, padding 1: im2col of a chunk of images into the shared workspace, one GEMM per chunk.
 *    Chunking bounds the workspace and keeps the column block warm in cache for the GEMM.
 *  - 1x1: the input already is the column matrix; no im2col.
 *  - transposed 2x2 stride 2: one GEMM into the workspace, then a scatter (each output pixel
 *    comes from exactly one input pixel, so there is no overlap to add up). */
#include "layers.h"

#include <cblas.h>
#include <string.h>

/* Columns (pixels) per im2col chunk: large enough for efficient GEMMs, small enough for cache. */
#ifndef MS_CONV_CHUNK_COLS
#define MS_CONV_CHUNK_COLS 8192
#endif

static inline int MS_MIN_INT(int a, int b) { return a < b ? a : b; }

static int chunk_images(int B, int H, int W) {
    int hw = H * W;
    int nb = MS_CONV_CHUNK_COLS / hw;
    if (nb < 1) nb = 1;
    if (nb > B) nb = B;
    return nb;
}

size_t conv3x3_ws_floats(int B, int Cin, int H, int W) {
    return (size_t)Cin * 9 * (size_t)chunk_images(B, H, W) * H * W;
}

/* col (Cin*9, nb*H*W) <- shifted copies of images b0..b0+nb-1 of inp (Cin,B,H,W), zero padded */
static void im2col3x3(float *col, const float *inp, int B, int Cin, int H, int W, int b0, int nb) {
    const size_t hw = (size_t)H * W, N = (size_t)B * hw, ncols = (size_t)nb * hw;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < Cin * 9; r++) {
        const int ci = r / 9, ky = (r % 9) / 3 - 1, kx = r % 3 - 1;
        float *dst = col + (size_t)r * ncols;
        const float *src = inp + (size_t)ci * N + (size_t)b0 * hw;
        for (int b = 0; b < nb; b++) {
            for (int y = 0; y < H; y++) {
                float *d = dst + (size_t)b * hw + (size_t)y * W;
                const int sy = y + ky;
                if (sy < 0 || sy >= H) {
                    memset(d, 0, sizeof(float) * W);
                    continue;
                }
                const float *s = src + (size_t)b * hw + (size_t)sy * W;
                if (kx == 0) {
                    memcpy(d, s, sizeof(float) * W);
                } else if (kx < 0) {
                    d[0] = 0.0f;
                    memcpy(d + 1, s, sizeof(float) * (W - 1));
                } else {
                    memcpy(d, s + 1, sizeof(float) * (W - 1));
                    d[W - 1] = 0.0f;
                }
            }
        }
    }
}

/* dinp (Cin,B,H,W) += col2im(dcol (Cin*9, nb*H*W)) for images b0..b0+nb-1.
 * Parallel over input channels, so no two threads write the same element. */
static void col2im3x3_add(float *dinp, const float *dcol, int B, int Cin, int H, int W, int b0, int nb) {
    const size_t hw = (size_t)H * W, N = (size_t)B * hw, ncols = (size_t)nb * hw;
#pragma omp parallel for schedule(static)
    for (int ci = 0; ci < Cin; ci++) {
        for (int k = 0; k < 9; k++) {
            const int ky = k / 3 - 1, kx = k % 3 - 1;
            const float *src = dcol + (size_t)(ci * 9 + k) * ncols;
            float *dst = dinp + (size_t)ci * N + (size_t)b0 * hw;
            for (int b = 0; b < nb; b++) {
                for (int y = 0; y < H; y++) {
                    const int sy = y + ky;
                    if (sy < 0 || sy >= H) continue;
                    const float *s = src + (size_t)b * hw + (size_t)y * W;
                    float *d = dst + (size_t)b * hw + (size_t)sy * W;
                    if (kx == 0) {
                        for (int x = 0; x < W; x++) d[x] += s[x];
                    } else if (kx < 0) {
                        for (int x = 1; x < W; x++) d[x - 1] += s[x];
                    } else {
                        for (int x = 0; x < W - 1; x++) d[x + 1] += s[x];
                    }
                }
            }
        }
    }
}

void conv3x3_forward(float *out, const float *inp, const float *w,
                     int B, int Cin, int Cout, int H, int W, float *ws) {
    // inp (Cin,B,H,W), w (Cout,Cin*9), out (Cout,B,H,W)
    const int nb = chunk_images(B, H, W), K = Cin * 9;
    const size_t hw = (size_t)H * W, N = (size_t)B * hw;
    for (int b0 = 0; b0 < B; b0 += nb) {
        const int n = MS_MIN_INT(nb, B - b0);
        const int ncols = (int)(n * hw);
        im2col3x3(ws, inp, B, Cin, H, W, b0, n);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cout, ncols, K,
                    1.0f, w, K, ws, ncols, 0.0f, out + (size_t)b0 * hw, (int)N);
    }
}

void conv3x3_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      int B, int Cin, int Cout, int H, int W, float *ws) {
    const int nb = chunk_images(B, H, W), K = Cin * 9;
    const size_t hw = (size_t)H * W, N = (size_t)B * hw;
    for (int b0 = 0; b0 < B; b0 += nb) {
        const int n = MS_MIN_INT(nb, B - b0);
        const int ncols = (int)(n * hw);
        const float *dout_chunk = dout + (size_t)b0 * hw;
        im2col3x3(ws, inp, B, Cin, H, W, b0, n);
        // dw (Cout,K) += dout_chunk (Cout,ncols) . col^T (ncols,K)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Cout, K, ncols,
                    1.0f, dout_chunk, (int)N, ws, ncols, 1.0f, dw, K);
        if (!dinp) continue;
        // dcol (K,ncols) = w^T (K,Cout) . dout_chunk (Cout,ncols), reusing the column buffer
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, ncols, Cout,
                    1.0f, w, K, dout_chunk, (int)N, 0.0f, ws, ncols);
        col2im3x3_add(dinp, ws, B, Cin, H, W, b0, n);
    }
}

void conv1x1_forward(float *out, const float *inp, const float *w, const float *b,
                     size_t N, int Cin, int Cout) {
    // out (Cout,N) = w (Cout,Cin) . inp (Cin,N) + b
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cout, (int)N, Cin,
                1.0f, w, Cin, inp, (int)N, 0.0f, out, (int)N);
    if (!b) return;
#pragma omp parallel for schedule(static)
    for (int co = 0; co < Cout; co++) {
        float *o = out + (size_t)co * N;
        const float bias = b[co];
        for (size_t i = 0; i < N; i++) o[i] += bias;
    }
}

/* db[c] += sum over the row c of x (C,N) */
static void add_row_sums(float *db, const float *x, int C, size_t N) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const float *r = x + (size_t)c * N;
        double s = 0.0;
        for (size_t i = 0; i < N; i++) s += r[i];
        db[c] += (float)s;
    }
}

void conv1x1_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                      const float *w, size_t N, int Cin, int Cout) {
    // dw (Cout,Cin) += dout (Cout,N) . inp^T (N,Cin)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Cout, Cin, (int)N,
                1.0f, dout, (int)N, inp, (int)N, 1.0f, dw, Cin);
    if (db) add_row_sums(db, dout, Cout, N);
    // dinp (Cin,N) += w^T (Cin,Cout) . dout (Cout,N)
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Cin, (int)N, Cout,
                    1.0f, w, Cin, dout, (int)N, 1.0f, dinp, (int)N);
}

size_t convt2x2_ws_floats(int B, int Cout, int H, int W) {
    return (size_t)Cout * 4 * (size_t)B * H * W;
}

void convt2x2_forward(float *out, const float *inp, const float *w, const float *b,
                      int B, int Cin, int Cout, int H, int W, float *ws) {
    // inp (Cin,B,H,W) -> T (Cout*4, B*H*W) = w^T . inp, w viewed as (Cin, Cout*4)
    const size_t hw = (size_t)H * W, Nin = (size_t)B * hw;
    const int M = Cout * 4, W2 = 2 * W;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, (int)Nin, Cin,
                1.0f, w, M, inp, (int)Nin, 0.0f, ws, (int)Nin);
    // scatter: out[co][b][2y+dy][2x+dx] = T[co*4 + dy*2 + dx][b][y][x] + bias[co]
#pragma omp parallel for collapse(2) schedule(static)
    for (int co = 0; co < Cout; co++) {
        for (int bb = 0; bb < B; bb++) {
            const float bias = b ? b[co] : 0.0f;
            float *o = out + ((size_t)co * B + bb) * 4 * hw;
            for (int k = 0; k < 4; k++) {
                const int dy = k >> 1, dx = k & 1;
                const float *t = ws + (size_t)(co * 4 + k) * Nin + (size_t)bb * hw;
                for (int y = 0; y < H; y++) {
                    float *orow = o + (size_t)(2 * y + dy) * W2 + dx;
                    const float *trow = t + (size_t)y * W;
                    for (int x = 0; x < W; x++) orow[2 * x] = trow[x] + bias;
                }
            }
        }
    }
}

void convt2x2_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                       const float *w, int B, int Cin, int Cout, int H, int W, float *ws) {
    const size_t hw = (size_t)H * W, Nin = (size_t)B * hw;
    const int M = Cout * 4, W2 = 2 * W;
    // gather dT (Cout*4, Nin) from dout (Cout, B, 2H, 2W)
#pragma omp parallel for collapse(2) schedule(static)
    for (int co = 0; co < Cout; co++) {
        for (int bb = 0; bb < B; bb++) {
            const float *o = dout + ((size_t)co * B + bb) * 4 * hw;
            for (int k = 0; k < 4; k++) {
                const int dy = k >> 1, dx = k & 1;
                float *t = ws + (size_t)(co * 4 + k) * Nin + (size_t)bb * hw;
                for (int y = 0; y < H; y++) {
                    const float *orow = o + (size_t)(2 * y + dy) * W2 + dx;
                    float *trow = t + (size_t)y * W;
                    for (int x = 0; x < W; x++) trow[x] = orow[2 * x];
                }
            }
        }
    }
    if (db) add_row_sums(db, dout, Cout, Nin * 4);
    // dw (Cin, M) += inp (Cin, Nin) . dT^T (Nin, M)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Cin, M, (int)Nin,
                1.0f, inp, (int)Nin, ws, (int)Nin, 1.0f, dw, M);
    // dinp (Cin, Nin) += w (Cin, M) . dT (M, Nin)
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cin, (int)Nin, M,
                    1.0f, w, M, ws, (int)Nin, 1.0f, dinp, (int)Nin);
}
