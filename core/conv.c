/* Convolutions on channel-major (C,B,H,W) data, and the algorithms of each 3x3 one.
 *  - 3x3, padding 1: each call lists the algorithms that can run it (conv3x3_candidates: the
 *    direct AVX-512 kernel of conv_direct.c, Winograd F(2x2,3x3) of conv_wino.c and
 *    conv_wino_dw.c, F(4x4,3x3) of conv_wino4_infer.c (inference), and darknet-style im2col of a chunk of rows into the shared workspace with
 *    one cblas_sgemm per chunk: chunking bounds the workspace and keeps the column block warm in
 *    cache for the GEMM), and runs the one the plan cache measured fastest for its shape
 *    (plan.c; conv_plan_force makes tests take each in turn).
 *  The 1x1 and transposed 2x2 convolutions are conv_pointwise.c's. */
#include "layers.h"
#include "plan.h"
#include "util.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>


/* The 3x3 convolution works on chunks of whole rows of the flattened (B*H, W) row sequence:
 * each thread builds the im2col block of its chunk in its own slice of the workspace, small
 * enough to stay in the core's L2 cache, and multiplies it with a single-threaded GEMM (OpenBLAS
 * built for OpenMP runs single-threaded inside a parallel region). Building and consuming the
 * column block while it is hot is what makes small channel counts (F=16: K=144) fast: a whole-
 * batch im2col would stream hundreds of MB through DRAM for little arithmetic. */
#ifndef MS_CONV_CHUNK_BYTES
#define MS_CONV_CHUNK_BYTES (384 * 1024)
#endif

/* ... but at least this many columns per GEMM: every call packs the whole weight matrix (Cout x K),
 * which at the deep levels (256 x 2304 at F=16) costs more than a few dozen columns of work */
#ifndef MS_CONV_MIN_COLS
#define MS_CONV_MIN_COLS 512
#endif

/* rows per chunk: K*rows*W floats near the byte target (K = Cin*9 plus any rows appended to the
 * column block) and at least MS_CONV_MIN_COLS columns, yet one chunk per thread where the rows
 * allow; at least 2 rows (col2im parity, below) */
static int chunk_rows_k(int K, int W, int total_rows, int nthr) {
    const size_t row_bytes = (size_t)K * W * sizeof(float);
    int r = (int)(MS_CONV_CHUNK_BYTES / row_bytes);
    const int min_r = (MS_CONV_MIN_COLS + W - 1) / W;
    if (r < min_r) r = min_r;
    const int per_thread = (total_rows + nthr - 1) / nthr;
    if (r > per_thread) r = per_thread;
    if (r < 2) r = 2;
    if (r > total_rows) r = total_rows;
    return r;
}
static int chunk_rows(int Cin, int W, int total_rows, int nthr) { return chunk_rows_k(Cin * 9, W, total_rows, nthr); }

/* Workspaces are sized for one slice per processor; a region never runs more threads than
 * that, whatever omp_set_num_threads said after the workspace was allocated. */
static int max_threads(void) { return omp_get_num_procs(); }
int conv_threads(void) {
    const int t = omp_get_max_threads(), p = omp_get_num_procs();
    return t < p ? t : p;
}


size_t conv3x3_fused_ws_floats(int B, int Cin, int Cextra, int H, int W) {
    const int K = Cin * 9 + Cextra, rows = chunk_rows_k(K, W, B * H, 1); /* one thread: the largest chunk */
    return (size_t)max_threads() * ((size_t)K * rows * W + 16);
}

/* what any candidate of the forward, input-gradient and weight-gradient passes needs: im2col
 * chunks, and Winograd's weights and tiles */
size_t conv3x3_ws_floats(int B, int Cin, int Cout, int H, int W) {
    size_t n = conv3x3_fused_ws_floats(B, Cin, 0, H, W);
    if (conv3x3_wino_ok(Cin, 0, Cout, B, H, W)) n = MS_MAX(n, conv3x3_wino_conv_ws_floats(Cin, Cout));
    if (conv3x3_wino_ok(Cout, 0, Cin, B, H, W)) n = MS_MAX(n, conv3x3_wino_conv_ws_floats(Cout, Cin));
    if (conv3x3_wino_dw_ok(Cin, Cout, B, H, W)) n = MS_MAX(n, conv3x3_wino_dw_ws_floats(Cin, Cout));
    if (conv3x3_wino4_ok(Cin, Cout, B, H, W)) n = MS_MAX(n, conv3x3_wino4_ws_floats(Cin, Cout));
    if (conv3x3_wino4_ok(Cout, Cin, B, H, W)) n = MS_MAX(n, conv3x3_wino4_ws_floats(Cout, Cin));
    if (conv3x3_wino4_dw_ok(Cin, Cout, B, H, W)) n = MS_MAX(n, conv3x3_wino4_dw_ws_floats(Cin, Cout));
    return n;
}

size_t conv3x3_dw_floats(int Cin, int Cout) { return (size_t)max_threads() * ((size_t)Cout * Cin * 9 + 16); }

/* col (Cin*9, nrows*W) <- the 3x3 neighbourhoods of global rows g0..g0+nrows-1 of inp
 * (Cin, B*H rows, W); zero outside each image (padding 1) */
static void im2col_rows(float *col, const float *inp, int B, int Cin, int H, int W, int g0, int nrows) {
    const size_t N = (size_t)B * H * W, ncols = (size_t)nrows * W;
    for (int r = 0; r < Cin * 9; r++) {
        const int ci = r / 9, ky = (r % 9) / 3 - 1, kx = r % 3 - 1;
        const float *src = inp + (size_t)ci * N;
        float *dst = col + (size_t)r * ncols;
        for (int i = 0; i < nrows; i++) {
            const int g = g0 + i, y = g % H, sy = y + ky;
            float *d = dst + (size_t)i * W;
            if (sy < 0 || sy >= H) {
                memset(d, 0, sizeof(float) * W);
                continue;
            }
            const float *s = src + (size_t)(g + ky) * W;
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

/* dinp rows g0-1 .. g0+nrows (within each image) += col2im(dcol) */
static void col2im_rows_add(float *dinp, const float *dcol, int B, int Cin, int H, int W, int g0, int nrows) {
    const size_t N = (size_t)B * H * W, ncols = (size_t)nrows * W;
    for (int r = 0; r < Cin * 9; r++) {
        const int ci = r / 9, ky = (r % 9) / 3 - 1, kx = r % 3 - 1;
        float *dst = dinp + (size_t)ci * N;
        const float *src = dcol + (size_t)r * ncols;
        for (int i = 0; i < nrows; i++) {
            const int g = g0 + i, y = g % H, sy = y + ky;
            if (sy < 0 || sy >= H) continue;
            const float *s = src + (size_t)i * W;
            float *d = dst + (size_t)(g + ky) * W;
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

/* ------------------------------------------------------------------ the choice of algorithm
 * Every 3x3 call names its candidates, the fixed rule's pick first, and conv_plan_choose
 * (plan.c) returns the one measured fastest for the shape on this machine. The rules stay as
 * the choice where nothing is measured (MARSSEG_PLAN=off) and as the order of the candidates:
 *  - direct beats im2col+GEMM on every U-Net shape measured on the Xeon except wide layers over
 *    many pixels, where OpenBLAS's blocking wins (F=32 at batch 32, Cin 256 and 512);
 *  - Winograd pays from 32 channels and two chunks of tiles on (conv3x3_wino_pays);
 *  - the direct weight gradient beat im2col+GEMM by 1.1-2.1x up to 128 input + output channels
 *    with rows at least 32 wide, and lost (0.8x) on 16-wide rows with 192+ channels. */
static int direct_rule(int B, int Cin, int Cout, int H, int W) {
    return conv3x3_direct_ok(Cout, H, W) && (Cin < 256 || (size_t)B * H * W < 1024);
}
static int wino_rule(int Cin, int Cextra, int Cout, int B, int H, int W) {
    return conv3x3_wino_ok(Cin, Cextra, Cout, B, H, W) && conv3x3_wino_pays(Cin, Cextra, Cout) &&
           (long)B * (H / 2) * (W / 2) >= 96;
}
#ifndef MS_DIRECT_DW_MAX_C
#define MS_DIRECT_DW_MAX_C 128
#endif

/* The weight gradient's im2col chunks: two per thread (the col2im parity passes below run every
 * other chunk); the direct weight gradient's padded rows live in the same slices. */
static int bwd_rows(int Cin, int W, int total) { return chunk_rows(Cin, W, total, 2 * max_threads()); }
static int dw_direct_rows(int B, int Cin, int Cout, int H, int W) {
    const size_t slice = (size_t)Cin * 9 * bwd_rows(Cin, W, B * H) * W + 16;
    return conv3x3_direct_dw_rows(slice, Cin, Cout, H, W);
}

/* candidates of an op, the rule's first; have_u: a frozen model's Winograd weights exist */
int conv3x3_candidates(int op, int B, int Cin, int Cextra, int Cout, int H, int W, int have_u, int *c) {
    int n = 0, rule;
    const int rest[] = {CONV_WINO, CONV_WINO_SPLIT, CONV_DIRECT, CONV_IM2COL, CONV_WINO4};
    int ok[CONV_NALGO] = {0};
    ok[CONV_IM2COL] = 1;
    switch (op) {
    case CONV_OP_FWD:
    case CONV_OP_INFER:
        ok[CONV_DIRECT] = conv3x3_direct_ok(Cout, H, W);
        if (op == CONV_OP_FWD || have_u & CONV_HAVE_U) {
            ok[CONV_WINO] = conv3x3_wino_ok(Cin, Cextra, Cout, B, H, W);
            ok[CONV_WINO_SPLIT] = Cextra > 0 && conv3x3_wino_ok(Cin, 0, Cout, B, H, W);
        }
        ok[CONV_WINO4] = op == CONV_OP_INFER ? have_u & CONV_HAVE_U4 && conv3x3_wino4_infer_ok(Cout, B, H, W)
                                             : conv3x3_wino4_ok(Cin, Cout, B, H, W);
        rule = ok[CONV_WINO] && wino_rule(Cin, Cextra, Cout, B, H, W)                    ? CONV_WINO
               : ok[CONV_WINO_SPLIT] && wino_rule(Cin, 0, Cout, B, H, W)                  ? CONV_WINO_SPLIT
               : direct_rule(B, Cin, Cout, H, W)                                            ? CONV_DIRECT
                                                                                            : CONV_IM2COL;
        break;
    case CONV_OP_DINP: /* a convolution from Cout to Cin channels */
        ok[CONV_DIRECT] = conv3x3_direct_ok(Cin, H, W);
        ok[CONV_WINO] = conv3x3_wino_ok(Cout, 0, Cin, B, H, W);
        ok[CONV_WINO4] = conv3x3_wino4_ok(Cout, Cin, B, H, W);
        rule = wino_rule(Cout, 0, Cin, B, H, W) ? CONV_WINO : direct_rule(B, Cout, Cin, H, W) ? CONV_DIRECT : CONV_IM2COL;
        break;
    default: /* CONV_OP_DW */
        ok[CONV_DIRECT] = dw_direct_rows(B, Cin, Cout, H, W) > 0;
        ok[CONV_WINO] = conv3x3_wino_dw_ok(Cin, Cout, B, H, W);
        ok[CONV_WINO4] = conv3x3_wino4_dw_ok(Cin, Cout, B, H, W);
        rule = ok[CONV_DIRECT] && Cin + Cout <= MS_DIRECT_DW_MAX_C && W >= 32 ? CONV_DIRECT : CONV_IM2COL;
        break;
    }
    c[n++] = rule;
    for (size_t i = 0; i < sizeof rest / sizeof *rest; i++)
        if (ok[rest[i]] && rest[i] != rule) c[n++] = rest[i];
    return n;
}

/* one 3x3 call: everything any candidate needs */
typedef struct {
    int op;
    float *out;                 /* FWD/INFER: out; DINP: dinp (added to); DW: unused (dw_ws) */
    const float *inp, *extra;   /* DINP: inp is dout; DW: extra is dout */
    int Cextra, relu;
    const float *w, *U, *bias;  /* U: a frozen model's Winograd weights (16, Cout, Cin + Cextra) */
    int B, Cin, Cout, H, W;
    float *ws, *dw_ws;
    size_t out_floats, dw_floats; /* timing copies: out/dw_ws are scratch made on first use */
    int scratch;
    int set; /* DINP: overwrite dinp instead of adding to it */
    const float *U4; /* INFER: a frozen model's F(4x4) Winograd weights (36, Cout, Cin + Cextra), or NULL */
} conv_call;

static void im2col_forward(float *out, const float *inp, const float *extra, int Cextra, const float *w,
                           const float *bias, int relu, int B, int Cin, int Cout, int H, int W, float *ws);
static void col2im_dinp(float *dinp, const float *dout, const float *w, int B, int Cin, int Cout, int H, int W,
                        float *ws);
static void im2col_dw(float *dw_ws, const float *dout, const float *inp, int B, int Cin, int Cout, int H, int W,
                      float *ws);

static void conv_run(void *p, int algo) {
    conv_call *c = p;
    if (c->scratch) { /* timing a call that adds into its outputs: into scratch copies */
        if (!c->out && c->out_floats) c->out = calloc(c->out_floats, sizeof(float));
        if (!c->dw_ws) c->dw_ws = calloc(c->dw_floats, sizeof(float));
        if ((c->out_floats && !c->out) || !c->dw_ws) return; /* no memory: nothing to time */
    }
    const int B = c->B, Cin = c->Cin, Cout = c->Cout, H = c->H, W = c->W;
    switch (c->op) {
    case CONV_OP_FWD:
    case CONV_OP_INFER:
        if (algo == CONV_WINO4 && c->op == CONV_OP_FWD) {
            conv3x3_wino4_conv(c->out, c->inp, c->w, 0, 0, B, Cin, Cout, H, W, c->ws);
        } else if (algo == CONV_WINO && c->op == CONV_OP_FWD) {
            conv3x3_wino_conv(c->out, c->inp, c->w, 0, 0, B, Cin, Cout, H, W, c->ws);
        } else if (algo == CONV_WINO) {
            conv3x3_wino_forward(c->out, c->inp, c->extra, c->Cextra, c->U, Cin + c->Cextra, c->bias, c->relu, 0, B, Cin,
                                 Cout, H, W, c->ws);
        } else if (algo == CONV_WINO4) {
            conv3x3_wino4_infer(c->out, c->inp, c->extra, c->Cextra, c->U4, c->bias, c->relu, B, Cin, Cout, H, W, c->ws);
        } else if (algo == CONV_WINO_SPLIT) {
            /* out = the appended rows as a 1x1 convolution, then += 3x3 (the U's first Cin columns) + bias, ReLU */
            const int N = B * H * W, K = Cin * 9 + c->Cextra;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cout, N, c->Cextra, 1.0f, c->w + Cin * 9, K, c->extra,
                        N, 0.0f, c->out, N);
            conv3x3_wino_forward(c->out, c->inp, NULL, 0, c->U, Cin + c->Cextra, c->bias, c->relu, 1, B, Cin, Cout, H,
                                 W, c->ws);
        } else if (algo == CONV_DIRECT) {
            conv3x3_direct_forward(c->out, c->inp, c->extra, c->Cextra, c->w, c->bias, c->relu, 0, B, Cin, Cout, H, W);
        } else {
            im2col_forward(c->out, c->inp, c->extra, c->Cextra, c->w, c->bias, c->relu, B, Cin, Cout, H, W, c->ws);
        }
        break;
    case CONV_OP_DINP:
        if (algo == CONV_WINO) {
            conv3x3_wino_conv(c->out, c->inp, c->w, 1, !c->set, B, Cout, Cin, H, W, c->ws); /* w transposed, flipped */
        } else if (algo == CONV_WINO4) {
            conv3x3_wino4_conv(c->out, c->inp, c->w, 1, !c->set, B, Cout, Cin, H, W, c->ws);
        } else if (algo == CONV_DIRECT) {
            float *wt = c->dw_ws; // (Cin, Cout*9): wt[ci][co*9 + 8-k] = w[co][ci*9 + k]; dw_ws holds no partial sums yet
            const int K = Cin * 9;
            for (int co = 0; co < Cout; co++)
                for (int ci = 0; ci < Cin; ci++)
                    for (int k = 0; k < 9; k++) wt[(size_t)ci * Cout * 9 + co * 9 + 8 - k] = c->w[(size_t)co * K + ci * 9 + k];
            conv3x3_direct_forward(c->out, c->inp, NULL, 0, wt, NULL, 0, !c->set, B, Cout, Cin, H, W);
        } else {
            if (c->set) { /* col2im adds */
                const long n = (long)Cin * B * H * W;
#pragma omp parallel for schedule(static)
                for (long i = 0; i < n; i++) c->out[i] = 0.0f;
            }
            col2im_dinp(c->out, c->inp, c->w, B, Cin, Cout, H, W, c->ws);
        }
        break;
    default: { /* CONV_OP_DW: per-thread partial sums into dw_ws */
        const int nthr = conv_threads();
        memset(c->dw_ws, 0, sizeof(float) * ((size_t)Cout * Cin * 9 + 16) * nthr);
        if (algo == CONV_WINO4) {
            conv3x3_wino4_dw(c->dw_ws, (size_t)Cout * Cin * 9 + 16, c->extra, c->inp, B, Cin, Cout, H, W, c->ws);
        } else if (algo == CONV_WINO) {
            conv3x3_wino_dw(c->dw_ws, (size_t)Cout * Cin * 9 + 16, c->extra, c->inp, B, Cin, Cout, H, W, c->ws);
        } else if (algo == CONV_DIRECT) {
            const size_t slice = (size_t)Cin * 9 * bwd_rows(Cin, W, B * H) * W + 16;
            conv3x3_direct_dw(c->dw_ws, (size_t)Cout * Cin * 9 + 16, c->ws, slice, c->extra, c->inp, B, Cin, Cout, H, W,
                              dw_direct_rows(B, Cin, Cout, H, W));
        } else {
            im2col_dw(c->dw_ws, c->extra, c->inp, B, Cin, Cout, H, W, c->ws);
        }
    }
    }
}

/* plan, then run the chosen algorithm on the real buffers (after measuring, too: the result
 * must be the winner's, whichever candidate ran last) */
static void conv_dispatch(conv_call *c) {
    int cands[CONV_NALGO];
    const int have = (c->U ? CONV_HAVE_U : 0) | (c->U4 ? CONV_HAVE_U4 : 0);
    const int n = conv3x3_candidates(c->op, c->B, c->Cin, c->Cextra, c->Cout, c->H, c->W, have, cands);
    const conv_key k = {c->op, c->B, c->Cin, c->Cextra, c->Cout, c->H, c->W, conv_threads()};
    int algo;
    if (c->op == CONV_OP_DINP || c->op == CONV_OP_DW) { /* these add into their outputs: time on scratch */
        conv_call t = *c;
        t.scratch = 1;
        t.out = NULL;
        t.dw_ws = NULL;
        t.out_floats = c->op == CONV_OP_DINP ? (size_t)c->Cin * c->B * c->H * c->W : 0;
        t.dw_floats = conv3x3_dw_floats(c->Cin, c->Cout);
        algo = conv_plan_choose(&k, cands, n, conv_run, &t);
        free(t.out);
        free(t.dw_ws);
    } else {
        algo = conv_plan_choose(&k, cands, n, conv_run, c);
    }
    conv_run(c, algo);
}

/* Inference: out = act(w . [im2col(inp); extra] + bias), with the bias, the optional ReLU and
 * the appended rows all applied to each chunk while its column block and output are in cache.
 * With BN folded into w and bias, and the ResBlock's 1x1 shortcut input as `extra` (its weights
 * appended to w's rows), one call is a whole conv-BN-(+shortcut)-ReLU: no separate passes over
 * memory for BN, the residual add or the shortcut GEMM. */
static void im2col_forward(float *out, const float *inp, const float *extra, int Cextra, const float *w,
                           const float *bias, int relu, int B, int Cin, int Cout, int H, int W, float *ws) {
    // inp (Cin,B,H,W), extra (Cextra,B,H,W), w (Cout, Cin*9 + Cextra), out (Cout,B,H,W)
    const int K = Cin * 9 + Cextra, total = B * H, rows = chunk_rows_k(K, W, total, conv_threads());
    const int nchunks = (total + rows - 1) / rows;
    const size_t N = (size_t)total * W, slice = (size_t)K * rows * W + 16;
#pragma omp parallel for schedule(static) num_threads(conv_threads())
    for (int c = 0; c < nchunks; c++) {
        float *col = ws + (size_t)omp_get_thread_num() * slice;
        const int g0 = c * rows, nr = MS_MIN(rows, total - g0), ncols = nr * W;
        im2col_rows(col, inp, B, Cin, H, W, g0, nr);
        for (int e = 0; e < Cextra; e++)
            memcpy(col + (size_t)(Cin * 9 + e) * ncols, extra + (size_t)e * N + (size_t)g0 * W, sizeof(float) * ncols);
        float *o = out + (size_t)g0 * W;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cout, ncols, K, 1.0f, w, K, col, ncols, 0.0f, o, (int)N);
        if (!bias && !relu) continue; /* the plain convolution */
        for (int co = 0; co < Cout; co++) {
            float *r = o + (size_t)co * N;
            const float b = bias ? bias[co] : 0.0f;
            if (relu) {
                for (int i = 0; i < ncols; i++) {
                    const float v = r[i] + b;
                    r[i] = v > 0.0f ? v : 0.0f;
                }
            } else {
                for (int i = 0; i < ncols; i++) r[i] += b;
            }
        }
    }
}

void conv3x3_fused_forward(float *out, const float *inp, const float *extra, int Cextra, const float *w,
                           const float *bias, int relu, int B, int Cin, int Cout, int H, int W, float *ws) {
    im2col_forward(out, inp, extra, Cextra, w, bias, relu, B, Cin, Cout, H, W, ws);
}

size_t conv3x3_infer_ws_floats(int B, int Cin, int Cextra, int Cout, int H, int W) {
    size_t n = conv3x3_fused_ws_floats(B, Cin, Cextra, H, W);
    if (conv3x3_wino_ok(Cin, 0, Cout, B, H, W)) n = MS_MAX(n, conv3x3_wino_ws_floats(Cin + Cextra, Cout));
    if (conv3x3_wino4_infer_ok(Cout, B, H, W)) n = MS_MAX(n, conv3x3_wino4_infer_ws_floats(Cin + Cextra, Cout));
    return n;
}

void conv3x3_infer(float *out, const float *inp, const float *extra, int Cextra, const float *w, const float *U,
                   const float *U4, const float *bias, int relu, int B, int Cin, int Cout, int H, int W, float *ws) {
    conv_call c = {CONV_OP_INFER, out, inp, extra, Cextra, relu, w, U, bias, B, Cin, Cout, H, W, ws, NULL, 0, 0, 0, 0, U4};
    conv_dispatch(&c);
}

void conv3x3_forward(float *out, const float *inp, const float *w,
                     int B, int Cin, int Cout, int H, int W, float *ws) {
    // inp (Cin,B,H,W), w (Cout,Cin*9), out (Cout,B,H,W)
    conv_call c = {CONV_OP_FWD, out, inp, NULL, 0, 0, w, NULL, NULL, B, Cin, Cout, H, W, ws, NULL, 0, 0, 0, 0, NULL};
    conv_dispatch(&c);
}

/* dinp += col2im(w^T . dout), chunk by chunk: two passes, even chunks then odd ones (a chunk's
 * col2im touches one row of each neighbour, and chunks of the same parity are at least 2 rows
 * apart) */
static void col2im_dinp(float *dinp, const float *dout, const float *w, int B, int Cin, int Cout, int H, int W,
                        float *ws) {
    const int nthr = conv_threads(), K = Cin * 9, total = B * H, rows = bwd_rows(Cin, W, total);
    const int nchunks = (total + rows - 1) / rows;
    const size_t N = (size_t)total * W, slice = (size_t)K * rows * W + 16;
    for (int parity = 0; parity < 2; parity++) {
#pragma omp parallel for schedule(static) num_threads(nthr)
        for (int c = parity; c < nchunks; c += 2) {
            float *col = ws + (size_t)omp_get_thread_num() * slice;
            const int g0 = c * rows, nr = MS_MIN(rows, total - g0), ncols = nr * W;
            // dcol (K,ncols) = w^T (K,Cout) . dout_chunk (Cout,ncols)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, ncols, Cout, 1.0f, w, K, dout + (size_t)g0 * W, (int)N,
                        0.0f, col, ncols);
            col2im_rows_add(dinp, col, B, Cin, H, W, g0, nr);
        }
    }
}

/* thread t's dw_ws slice += dout_chunk (Cout,ncols) . im2col(inp)^T (ncols,K) over its chunks */
static void im2col_dw(float *dw_ws, const float *dout, const float *inp, int B, int Cin, int Cout, int H, int W,
                      float *ws) {
    const int nthr = conv_threads(), K = Cin * 9, total = B * H, rows = bwd_rows(Cin, W, total);
    const int nchunks = (total + rows - 1) / rows;
    const size_t N = (size_t)total * W, slice = (size_t)K * rows * W + 16, wslice = (size_t)Cout * K + 16;
#pragma omp parallel for schedule(static) num_threads(nthr)
    for (int c = 0; c < nchunks; c++) {
        const int tid = omp_get_thread_num();
        float *col = ws + (size_t)tid * slice;
        const int g0 = c * rows, nr = MS_MIN(rows, total - g0), ncols = nr * W;
        im2col_rows(col, inp, B, Cin, H, W, g0, nr);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Cout, K, ncols, 1.0f, dout + (size_t)g0 * W, (int)N, col,
                    ncols, 1.0f, dw_ws + (size_t)tid * wslice, K);
    }
}

void conv3x3_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      int B, int Cin, int Cout, int H, int W, float *ws, float *dw_ws, int accumulate) {
    /* dinp (+)= the 3x3 convolution of dout with w transposed and flipped (first: the direct
     * kernel's flipped weights borrow dw_ws before it holds partial sums) */
    if (dinp) {
        conv_call c = {CONV_OP_DINP, dinp, dout, NULL, 0, 0, w, NULL, NULL, B, Cin, Cout, H, W, ws, dw_ws, 0, 0, 0,
                       !accumulate, NULL};
        conv_dispatch(&c);
    }
    conv_call c = {CONV_OP_DW, NULL, inp, dout, 0, 0, w, NULL, NULL, B, Cin, Cout, H, W, ws, dw_ws, 0, 0, 0, 0, NULL};
    conv_dispatch(&c);
    /* reduce the per-thread weight gradients in a fixed order (deterministic) */
    const int nthr = conv_threads();
    const size_t n = (size_t)Cout * Cin * 9, wslice = n + 16;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float s = 0.0f;
        for (int t = 0; t < nthr; t++) s += dw_ws[(size_t)t * wslice + i];
        dw[i] += s;
    }
}
