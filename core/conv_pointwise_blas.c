/* The OpenBLAS forms of the pointwise convolutions (conv_pointwise.c): what runs without
 * AVX-512, and for the shapes its blocks leave out (the wide layers' gradients). Each is the whole
 * layer as layers.h describes it. */
#include "layers.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

/* 1x1 convolutions over many pixels split poorly in one OpenBLAS call: column chunks of
 * BLAS_1X1_COLS pixels, one single-threaded GEMM each inside an OpenMP loop (3-5x one call), for
 * channel counts up to BLAS_1X1_MAX_C (wider ones measured slower chunked). */
#define BLAS_1X1_COLS 1024
#define BLAS_1X1_MIN_N (16 * BLAS_1X1_COLS)
#define BLAS_1X1_MAX_C 32
static int chunk_1x1(size_t N, int Cin, int Cout) {
    return N >= BLAS_1X1_MIN_N && Cin <= BLAS_1X1_MAX_C && Cout <= BLAS_1X1_MAX_C;
}
/* partial weight gradients per thread, on the stack (small layers only) */
#define BLAS_1X1_PART_FLOATS 8192

// C (M, N; ld N) = op(A) (M, K) . Bm (K, N; ld N) + beta C, in column chunks
static void gemm_col_chunks(int transa, int M, size_t N, int K, const float *A, int lda, const float *Bm, float beta,
                            float *C) {
    const long nch = (long)((N + BLAS_1X1_COLS - 1) / BLAS_1X1_COLS);
#pragma omp parallel for schedule(static) num_threads(conv_threads())
    for (long c = 0; c < nch; c++) {
        const size_t c0 = (size_t)c * BLAS_1X1_COLS;
        const int nc = (int)(N - c0 < BLAS_1X1_COLS ? N - c0 : BLAS_1X1_COLS);
        cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans, CblasNoTrans, M, nc, K, 1.0f, A, lda, Bm + c0,
                    (int)N, beta, C + c0, (int)N);
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

void conv1x1_forward_blas(float *out, const float *inp, const float *w, const float *b, size_t N, int Cin,
                                 int Cout) {
    // out (Cout,N) = w (Cout,Cin) . inp (Cin,N) + b
    if (chunk_1x1(N, Cin, Cout))
        gemm_col_chunks(0, Cout, N, Cin, w, Cin, inp, 0.0f, out);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cout, (int)N, Cin, 1.0f, w, Cin, inp, (int)N, 0.0f, out,
                    (int)N);
    if (!b) return;
#pragma omp parallel for schedule(static)
    for (int co = 0; co < Cout; co++) {
        float *o = out + (size_t)co * N;
        const float bias = b[co];
        for (size_t i = 0; i < N; i++) o[i] += bias;
    }
}

void conv1x1_backward_blas(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                  const float *w, size_t N, int Cin, int Cout, int accumulate) {
    const int nthr = conv_threads();
    if (chunk_1x1(N, Cin, Cout) && (size_t)nthr * Cout * Cin <= BLAS_1X1_PART_FLOATS) {
        // dw (Cout,Cin) += sum over column chunks of dout_c (Cout,nc) . inp_c^T (nc,Cin), per-thread partials
        float part[BLAS_1X1_PART_FLOATS];
        memset(part, 0, sizeof(float) * (size_t)nthr * Cout * Cin);
        const long nch = (long)((N + BLAS_1X1_COLS - 1) / BLAS_1X1_COLS);
#pragma omp parallel for schedule(static) num_threads(nthr)
        for (long c = 0; c < nch; c++) {
            const size_t c0 = (size_t)c * BLAS_1X1_COLS;
            const int nc = (int)(N - c0 < BLAS_1X1_COLS ? N - c0 : BLAS_1X1_COLS);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Cout, Cin, nc, 1.0f, dout + c0, (int)N, inp + c0,
                        (int)N, 1.0f, part + (size_t)omp_get_thread_num() * Cout * Cin, Cin);
        }
        for (int t = 0; t < nthr; t++) /* fixed order: deterministic */
            for (int i = 0; i < Cout * Cin; i++) dw[i] += part[(size_t)t * Cout * Cin + i];
    } else {
        // dw (Cout,Cin) += dout (Cout,N) . inp^T (N,Cin)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Cout, Cin, (int)N, 1.0f, dout, (int)N, inp, (int)N, 1.0f,
                    dw, Cin);
    }
    if (db) add_row_sums(db, dout, Cout, N);
    // dinp (Cin,N) (+)= w^T (Cin,Cout) . dout (Cout,N)
    if (!dinp) return;
    if (chunk_1x1(N, Cin, Cout))
        gemm_col_chunks(1, Cin, N, Cout, w, Cin, dout, accumulate ? 1.0f : 0.0f, dinp);
    else
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Cin, (int)N, Cout, 1.0f, w, Cin, dout, (int)N,
                    accumulate ? 1.0f : 0.0f, dinp, (int)N);
}

void convt2x2_forward_blas(float *out, const float *inp, const float *w, const float *b, int B, int Cin,
                                  int Cout, int H, int W, float *ws) {
    // inp (Cin,B,H,W) -> T (Cout*4, B*H*W) = w^T . inp, w viewed as (Cin, Cout*4)
    const size_t hw = (size_t)H * W, Nin = (size_t)B * hw;
    const int M = Cout * 4, W2 = 2 * W;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, (int)Nin, Cin, 1.0f, w, M, inp, (int)Nin, 0.0f, ws,
                (int)Nin);
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

void convt2x2_backward_blas(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                   const float *w, int B, int Cin, int Cout, int H, int W, float *ws, int accumulate) {
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
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Cin, M, (int)Nin, 1.0f, inp, (int)Nin, ws, (int)Nin, 1.0f, dw,
                M);
    // dinp (Cin, Nin) (+)= w (Cin, M) . dT (M, Nin)
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cin, (int)Nin, M, 1.0f, w, M, ws, (int)Nin,
                    accumulate ? 1.0f : 0.0f, dinp, (int)Nin);
}
