/* The fast kernels against their reference forms, output for output: the direct AVX-512 3x3
 * convolution against im2col+GEMM, Winograd against both, the 1x1 and transposed 2x2 convolutions'
 * AVX-512 blocks and the max-pool backward's vector form against double-precision or scalar
 * references (gradients by finite differences: tests/test_layers.c). */
#include "layers.h"
#include "marsseg.h"
#include "plan.h"
#include "testutil.h"
#include "layertest.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* One case of the direct/Winograd comparisons below: a shape (Ce 1x1 rows appended to the
 * 3x3 columns), random input, extra rows, weights (K = Cin*9 + Ce per output) and bias, the
 * reference and tested outputs, the fused path's workspace. */
typedef struct { int B, Cin, Cout, H, W, Ce; } conv_shape;
typedef struct { int K; size_t N; float *x, *ex, *w, *b, *ref, *got, *ws; } conv_case;
static conv_case conv_case_new(conv_shape s, float wscale) {
    conv_case c = {s.Cin * 9 + s.Ce, (size_t)s.B * s.H * s.W, 0, 0, 0, 0, 0, 0, 0};
    c.x = rnd(c.N * s.Cin, 1);
    c.ex = rnd(c.N * s.Ce + 1, 1);
    c.w = rnd((size_t)s.Cout * c.K, wscale);
    c.b = rnd(s.Cout, 1);
    c.ref = malloc(sizeof(float) * c.N * s.Cout);
    c.got = malloc(sizeof(float) * c.N * s.Cout);
    c.ws = malloc(sizeof(float) * conv3x3_fused_ws_floats(s.B, s.Cin, s.Ce, s.H, s.W));
    return c;
}
static void conv_case_free(conv_case *c) {
    free(c->x); free(c->ex); free(c->w); free(c->b); free(c->ref); free(c->got); free(c->ws);
}

/* The direct AVX-512 convolution against the im2col+GEMM one, on the shapes that exercise its
 * edges: 3-vector blocks and a short last block, rows of 16 and 48, W = 8 and 24 (vectors that
 * straddle rows and images, masks from the per-image table), odd H, appended 1x1 rows, bias,
 * ReLU, accumulation, and the backward pass that computes dinp with it. */
static void test_conv3x3_direct(void) {
    if (!conv3x3_direct_ok(8, 16, 16)) {
        printf("  conv3x3 direct: this CPU has no AVX-512F; the im2col path is the only one\n");
        return;
    }
    const conv_shape shapes[] = {/* B, Cin, Cout, H, W, Cextra */
                             {2, 3, 8, 6, 16, 0}, {2, 5, 16, 5, 48, 4}, {3, 4, 8, 4, 8, 2},
                             {1, 8, 24, 8, 24, 0}, {2, 16, 8, 3, 16, 3}, {1, 1, 16, 2, 32, 0},
                             /* direct dw too: one chunk per image, and two (32 + 8 rows) */
                             {2, 8, 16, 6, 32, 0}, {1, 8, 8, 40, 128, 0}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const conv_shape s = shapes[si];
        CHECK(conv3x3_direct_ok(s.Cout, s.H, s.W), "shape %zu should take the direct path", si);
        conv_case c = conv_case_new(s, 0.5f);
        for (int relu = 0; relu < 2; relu++) {
            conv3x3_fused_forward(c.ref, c.x, c.ex, s.Ce, c.w, c.b, relu, s.B, s.Cin, s.Cout, s.H, s.W, c.ws);
            conv3x3_direct_forward(c.got, c.x, c.ex, s.Ce, c.w, c.b, relu, 0, s.B, s.Cin, s.Cout, s.H, s.W);
            double d = tu_normwise_err(c.got, c.ref, c.N * s.Cout);
            CHECK(d <= 1e-5, "direct conv %zu (relu %d): normwise error %.3g", si, relu, d);
        }
        /* accumulate: out += conv */
        float *acc = rnd(c.N * s.Cout, 1);
        memcpy(c.got, acc, sizeof(float) * c.N * s.Cout);
        conv3x3_direct_forward(c.got, c.x, c.ex, s.Ce, c.w, c.b, 0, 1, s.B, s.Cin, s.Cout, s.H, s.W);
        conv3x3_fused_forward(c.ref, c.x, c.ex, s.Ce, c.w, c.b, 0, s.B, s.Cin, s.Cout, s.H, s.W, c.ws);
        for (size_t i = 0; i < c.N * s.Cout; i++) c.ref[i] += acc[i];
        double d = tu_normwise_err(c.got, c.ref, c.N * s.Cout);
        CHECK(d <= 1e-5, "direct conv %zu accumulating: normwise error %.3g", si, d);
        /* backward with whatever applies directly (dinp: Cin a multiple of 8; dw: W a multiple
         * of 16 and dinp direct too) against im2col/col2im, dinp accumulated */
        if (s.Ce == 0) {
            float *dout = rnd(c.N * s.Cout, 1), *dx0 = rnd(c.N * s.Cin, 1);
            float *dx[2], *dw[2];
            float *bws = malloc(sizeof(float) * conv3x3_ws_floats(s.B, s.Cin, s.Cout, s.H, s.W));
            float *dws = malloc(sizeof(float) * conv3x3_dw_floats(s.Cin, s.Cout));
            for (int dir = 0; dir < 2; dir++) {
                dx[dir] = malloc(sizeof(float) * c.N * s.Cin);
                memcpy(dx[dir], dx0, sizeof(float) * c.N * s.Cin);
                dw[dir] = calloc((size_t)s.Cout * c.K, sizeof(float));
                conv_plan_force(dir ? CONV_DIRECT : CONV_IM2COL);
                conv3x3_backward(dx[dir], dw[dir], dout, c.x, c.w, s.B, s.Cin, s.Cout, s.H, s.W, bws, dws, 1);
            }
            d = tu_normwise_err(dx[1], dx[0], c.N * s.Cin);
            CHECK(d <= 1e-5, "direct conv %zu dinp: normwise error %.3g", si, d);
            d = tu_normwise_err(dw[1], dw[0], (size_t)s.Cout * c.K);
            CHECK(d <= 1e-5, "direct conv %zu dw: normwise error %.3g", si, d);
            for (int dir = 0; dir < 2; dir++) free(dx[dir]), free(dw[dir]);
            free(dout); free(dx0); free(bws); free(dws);
        }
        conv_plan_force(-1);
        printf("  conv3x3 direct %dx%dx%dx%d -> %d (+%d rows): matches im2col (normwise error %.2g)\n", s.B, s.Cin, s.H, s.W, s.Cout, s.Ce, d);
        conv_case_free(&c);
        free(acc);
    }
}

/* Winograd F(2x2,3x3) (inference) against the direct/im2col sum: chunks of 48 tiles with a
 * short last one, tile vectors that straddle rows and images (W = 8: 4 tiles a row), padding on
 * every side, appended 1x1 rows as centre-tap channels, bias and ReLU. F(2x2,3x3) adds a few
 * float32 roundings per output: 1e-5 of the output's range is still 10-100x what it costs. */
static void test_conv3x3_wino(void) {
    const conv_shape shapes[] = {/* B, Cin, Cout, H, W, Cextra */
                             {1, 32, 32, 16, 32, 0}, {3, 40, 32, 6, 8, 0}, {2, 32, 40, 10, 14, 16}, {1, 64, 32, 12, 36, 0},
                             {2, 32, 40, 10, 24, 0},
                             /* rows of 16k tiles (W a multiple of 32): the gather-free transforms, with
                              * a short last chunk (80 tiles), 3 vectors a row, appended rows */
                             {1, 40, 32, 10, 32, 0}, {2, 32, 32, 4, 96, 8}, {3, 32, 40, 6, 64, 16},
                             /* two tile rows of 8 a vector (W 16) with appended rows, 2 vectors of tiles
                              * (the deep levels at batch 1); 22 chunks, the last of one vector */
                             {1, 32, 40, 8, 16, 16}, {1, 32, 32, 64, 64, 8}};
    if (!conv3x3_wino_ok(32, 0, 32, 1, 16, 32)) {
        printf("  conv3x3 winograd: this CPU has no AVX-512F; not used\n");
        return;
    }
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const conv_shape s = shapes[si];
        /* the tile count decides only whether it pays at run time: small shapes test the edges */
        CHECK(conv3x3_wino_pays(s.Cin, s.Ce, s.Cout), "winograd shape %zu should pay for its channels", si);
        conv_case c = conv_case_new(s, 0.2f);
        float *U = malloc(sizeof(float) * conv3x3_wino_weight_floats(s.Cin, s.Ce, s.Cout));
        float *wws = malloc(sizeof(float) * conv3x3_wino_ws_floats(s.Cin + s.Ce, s.Cout));
        conv3x3_wino_weights(U, c.w, (size_t)c.K, s.Cin, s.Ce, s.Cout);
        for (int relu = 0; relu < 2; relu++) {
            conv3x3_fused_forward(c.ref, c.x, c.ex, s.Ce, c.w, c.b, relu, s.B, s.Cin, s.Cout, s.H, s.W, c.ws);
            for (size_t i = 0; i < c.N * s.Cout; i++) c.got[i] = NAN; /* every output must be written */
            conv3x3_wino_forward(c.got, c.x, c.ex, s.Ce, U, s.Cin + s.Ce, c.b, relu, 0, s.B, s.Cin, s.Cout, s.H, s.W, wws);
            size_t unwritten = 0;
            for (size_t i = 0; i < c.N * s.Cout; i++) unwritten += !isfinite(c.got[i]);
            CHECK(unwritten == 0, "winograd conv %zu: %zu outputs not written", si, unwritten);
            double d = tu_normwise_err(c.got, c.ref, c.N * s.Cout);
            CHECK(d <= 1e-5, "winograd conv %zu (relu %d): normwise error %.3g", si, relu, d);
            /* one thread (whole chunks) gives the same floats as a team sharing each chunk */
            float *one = malloc(sizeof(float) * c.N * s.Cout);
            const int nthr = omp_get_max_threads();
            omp_set_num_threads(1);
            conv3x3_wino_forward(one, c.x, c.ex, s.Ce, U, s.Cin + s.Ce, c.b, relu, 0, s.B, s.Cin, s.Cout, s.H, s.W, wws);
            omp_set_num_threads(nthr);
            CHECK(memcmp(one, c.got, sizeof(float) * c.N * s.Cout) == 0, "winograd conv %zu: %d threads differ from one", si, nthr);
            free(one);
            if (relu) printf("  conv3x3 winograd %dx%dx%dx%d -> %d (+%d rows): normwise error %.2g\n", s.B, s.Cin, s.H, s.W, s.Cout, s.Ce, d);
        }
        /* training form (U made on each call): conv3x3_forward and the backward's dinp against
         * the direct path, where the tile count makes them take it */
        if (s.Ce == 0 && conv3x3_wino_ok(s.Cin, 0, s.Cout, s.B, s.H, s.W) && conv3x3_wino_ok(s.Cout, 0, s.Cin, s.B, s.H, s.W)) {
            float *tws = malloc(sizeof(float) * conv3x3_ws_floats(s.B, s.Cin, s.Cout, s.H, s.W));
            float *dws = malloc(sizeof(float) * conv3x3_dw_floats(s.Cin, s.Cout));
            float *dout = rnd(c.N * s.Cout, 1), *dx0 = rnd(c.N * s.Cin, 1), *dx[2], *dw[2];
            for (int wino = 0; wino < 2; wino++) {
                conv_plan_force(wino ? CONV_WINO : CONV_IM2COL);
                conv3x3_forward(wino ? c.got : c.ref, c.x, c.w, s.B, s.Cin, s.Cout, s.H, s.W, tws);
                dx[wino] = malloc(sizeof(float) * c.N * s.Cin);
                memcpy(dx[wino], dx0, sizeof(float) * c.N * s.Cin);
                dw[wino] = calloc((size_t)s.Cout * c.K, sizeof(float));
                conv3x3_backward(dx[wino], dw[wino], dout, c.x, c.w, s.B, s.Cin, s.Cout, s.H, s.W, tws, dws, 1);
            }
            conv_plan_force(-1);
            double d = tu_normwise_err(c.got, c.ref, c.N * s.Cout);
            CHECK(d <= 1e-5, "winograd conv3x3_forward %zu: normwise error %.3g", si, d);
            d = tu_normwise_err(dx[1], dx[0], c.N * s.Cin);
            CHECK(d <= 1e-5, "winograd dinp %zu: normwise error %.3g", si, d);
            printf("  conv3x3 winograd training form %dx%dx%dx%d -> %d: forward and dinp match\n", s.B, s.Cin, s.H, s.W, s.Cout);
            for (int i = 0; i < 2; i++) free(dx[i]), free(dw[i]);
            free(tws); free(dws); free(dout); free(dx0);
        }
        conv_case_free(&c);
        free(U); free(wws);
    }
}

/* The 1x1 convolution over many pixels runs in column chunks (conv_pointwise.c: its AVX-512
 * blocks where the pixel count is a multiple of 16, else OpenBLAS GEMMs; weight gradients summed
 * per thread): against a double-precision reference, including a short last chunk and channel
 * counts that leave partial register blocks. */
static void conv1x1_chunked_case(size_t N, int Cin, int Cout, int accumulate) {
    float *x = rnd(N * Cin, 1), *w = rnd((size_t)Cin * Cout, 1), *b = rnd(Cout, 1), *dout = rnd(N * Cout, 1);
    float *out = rnd_aligned(N * Cout, 1), *dx = rnd_aligned(N * Cin, 1), *dx0 = malloc(sizeof(float) * N * Cin);
    float *dw = calloc((size_t)Cin * Cout, sizeof(float)), *db = calloc(Cout, sizeof(float));
    memcpy(dx0, dx, sizeof(float) * N * Cin);
    conv1x1_forward(out, x, w, b, N, Cin, Cout);
    conv1x1_backward(dx, dw, db, dout, x, w, N, Cin, Cout, accumulate);
    if (!accumulate) memset(dx0, 0, sizeof(float) * N * Cin);
    double e_out = 0, e_dx = 0, e_dw = 0, e_db = 0;
    for (int co = 0; co < Cout; co++) {
        double sb = 0;
        for (int ci = 0; ci < Cin; ci++) {
            /* a float32 sum of N products: its rounding scales with the sum of their magnitudes
             * (relative to |sum| + 1 it reached 1.9e-5 with OpenBLAS's Haswell/Zen kernels);
             * a lost or doubled chunk of 300 columns still shows as ~1e-3 of it */
            double sw = 0, sa = 0;
            for (size_t i = 0; i < N; i++) sw += (double)dout[co * N + i] * x[ci * N + i], sa += fabs((double)dout[co * N + i] * x[ci * N + i]);
            e_dw = fmax(e_dw, fabs(sw - dw[co * Cin + ci]) / sa);
        }
        for (size_t i = 0; i < N; i++) {
            double o = b[co];
            for (int ci = 0; ci < Cin; ci++) o += (double)w[co * Cin + ci] * x[ci * N + i];
            e_out = fmax(e_out, fabs(o - out[co * N + i]));
            sb += dout[co * N + i];
        }
        e_db = fmax(e_db, fabs(sb - db[co]) / (fabs(sb) + 1));
    }
    for (int ci = 0; ci < Cin; ci++)
        for (size_t i = 0; i < N; i++) {
            double g = dx0[ci * N + i];
            for (int co = 0; co < Cout; co++) g += (double)w[co * Cin + ci] * dout[co * N + i];
            e_dx = fmax(e_dx, fabs(g - dx[ci * N + i]));
        }
    CHECK(e_out < 1e-5 && e_dx < 1e-5 && e_dw < 1e-5 && e_db < 1e-5,
          "chunked conv1x1: out %.2g dinp %.2g dw %.2g db %.2g", e_out, e_dx, e_dw, e_db);
    printf("  conv1x1 chunked (N=%zu, %d -> %d, dinp %s): out %.1e, dinp %.1e, dw %.1e, db %.1e from double\n", N, Cin,
           Cout, accumulate ? "added" : "set", e_out, e_dx, e_dw, e_db);
    free(x); free(w); free(b); free(dout); free(out); free(dx); free(dx0); free(dw); free(db);
}
/* A pixel's 1x1 output does not depend on how many pixels the call has (a frame's batch and
 * single inferences give the same labels byte for byte): the first 100 of 1000 pixels (full
 * vectors) against a call on those 100 alone (6 vectors and a 4-pixel tail). */
static void conv1x1_batch_invariant(void) {
    const int Cin = 7, Cout = 5;
    const size_t NB = 1000, NS = 100;
    float *xb = rnd(NB * Cin, 1), *xs = malloc(sizeof(float) * NS * Cin), *w = rnd((size_t)Cin * Cout, 1), *b = rnd(Cout, 1);
    float *ob = malloc(sizeof(float) * NB * Cout), *os = malloc(sizeof(float) * NS * Cout);
    for (int c = 0; c < Cin; c++) memcpy(xs + c * NS, xb + c * NB, sizeof(float) * NS);
    conv1x1_forward(ob, xb, w, b, NB, Cin, Cout);
    conv1x1_forward(os, xs, w, b, NS, Cin, Cout);
    int same = 1;
    for (int c = 0; c < Cout; c++) same &= memcmp(os + c * NS, ob + c * NB, sizeof(float) * NS) == 0;
    CHECK(same, "conv1x1_forward: a pixel's output depends on the call's pixel count");
    free(xb); free(xs); free(w); free(b); free(ob); free(os);
}

static void test_conv1x1_chunked(void) {
    conv1x1_batch_invariant();
    conv1x1_chunked_case(16 * 1024 + 300, 5, 3, 1); /* not a multiple of 16: the forward's tail, OpenBLAS's gradients */
    conv1x1_chunked_case(16 * 1024 + 304, 5, 3, 1); /* the blocks, a short last chunk */
    conv1x1_chunked_case(3 * 1024 + 48, 19, 11, 0); /* partial blocks of rows (8, 4 and 6) */
    conv1x1_chunked_case(262144, 16, 16, 0);        /* outputs of 16 MB: non-temporal stores */
}

/* Against a double-precision reference, at shapes of the AVX-512 blocks (pixels a multiple of 16,
 * W of 8; several chunks) and one of OpenBLAS's: forward with bias, dinp accumulated, dw, db. */
static void convt_reference_case(int B, int Cin, int Cout, int H, int W, int accumulate) {
    const size_t Nin = (size_t)B * H * W, nx = Nin * Cin, ny = Nin * 4 * Cout, nw = (size_t)Cin * Cout * 4;
    float *x = rnd(nx, 1), *w = rnd(nw, 1), *b = rnd(Cout, 1), *dout = rnd(ny, 1), *out = malloc(sizeof(float) * ny);
    float *dx = rnd_aligned(nx, 1), *dx0 = malloc(sizeof(float) * nx), *dw = calloc(nw, sizeof(float)), *db = calloc(Cout, sizeof(float));
    float *ws = malloc(sizeof(float) * convt2x2_ws_floats(B, Cout, H, W));
    memcpy(dx0, dx, sizeof(float) * nx);
    convt2x2_forward(out, x, w, b, B, Cin, Cout, H, W, ws);
    convt2x2_backward(dx, dw, db, dout, x, w, B, Cin, Cout, H, W, ws, accumulate);
    if (!accumulate) memset(dx0, 0, sizeof(float) * nx);
    double e_out = 0, e_dx = 0, e_dw = 0, e_db = 0;
    /* output pixel (co, bb, 2y+dy, 2x+dx) comes from input pixel (bb, y, x) through w[ci][co][dy][dx] */
#define OUT_AT(co, p, k) ((size_t)(co) * 4 * Nin + (((p) / W / H) * 2 * H + 2 * ((p) / W % H) + (k) / 2) * 2 * W + 2 * ((p) % W) + (k) % 2)
    for (int co = 0; co < Cout; co++) {
        double sb = 0;
        for (size_t p = 0; p < Nin; p++)
            for (int k = 0; k < 4; k++) {
                double o = b[co];
                for (int ci = 0; ci < Cin; ci++) o += (double)w[((size_t)ci * Cout + co) * 4 + k] * x[ci * Nin + p];
                e_out = fmax(e_out, fabs(o - out[OUT_AT(co, p, k)]));
                sb += dout[OUT_AT(co, p, k)];
            }
        e_db = fmax(e_db, fabs(sb - db[co]) / (fabs(sb) + 1));
    }
    for (int ci = 0; ci < Cin; ci++) {
        for (int m = 0; m < Cout * 4; m++) {
            double sw = 0, sa = 0;
            for (size_t p = 0; p < Nin; p++) {
                const double t = (double)x[ci * Nin + p] * dout[OUT_AT(m / 4, p, m % 4)];
                sw += t, sa += fabs(t);
            }
            e_dw = fmax(e_dw, fabs(sw - dw[(size_t)ci * Cout * 4 + m]) / (sa + 1e-30));
        }
        for (size_t p = 0; p < Nin; p++) {
            double g = dx0[ci * Nin + p];
            for (int m = 0; m < Cout * 4; m++) g += (double)w[(size_t)ci * Cout * 4 + m] * dout[OUT_AT(m / 4, p, m % 4)];
            e_dx = fmax(e_dx, fabs(g - dx[ci * Nin + p]));
        }
    }
#undef OUT_AT
    /* the frozen model's form (w transposed once) and each image alone (a batch of one takes the
     * split by output channels where the batch is split by pixels) give the same bits */
    float *wt = malloc(sizeof(float) * convt2x2_weights_t_floats(Cin, Cout)), *o2 = malloc(sizeof(float) * ny);
    convt2x2_weights_t(wt, w, Cin, Cout);
    convt2x2_infer(o2, x, w, wt, b, B, Cin, Cout, H, W, ws);
    CHECK(!memcmp(o2, out, sizeof(float) * ny), "convt2x2_infer with w transposed once differs from convt2x2_forward");
    const size_t in1 = (size_t)H * W, out1 = 4 * in1;
    int alone_same = 1;
    for (int bb = 0; bb < B; bb++) {
        float *x1 = malloc(sizeof(float) * in1 * Cin);
        for (int ci = 0; ci < Cin; ci++) memcpy(x1 + ci * in1, x + ci * Nin + bb * in1, sizeof(float) * in1);
        convt2x2_infer(o2, x1, w, wt, b, 1, Cin, Cout, H, W, ws);
        for (int co = 0; co < Cout; co++)
            alone_same &= !memcmp(o2 + co * out1, out + co * 4 * Nin + bb * out1, sizeof(float) * out1);
        free(x1);
    }
    CHECK(alone_same, "convt2x2 %dx%dx%dx%d -> %d: an image alone differs from its place in the batch", B, Cin, H, W, Cout);
    free(wt); free(o2);
    CHECK(e_out < 1e-5 && e_dx < 1e-5 && e_dw < 1e-5 && e_db < 1e-5,
          "convt2x2 %dx%dx%dx%d -> %d: out %.2g dinp %.2g dw %.2g db %.2g", B, Cin, H, W, Cout, e_out, e_dx, e_dw, e_db);
    printf("  convt2x2 %dx%dx%dx%d -> %d: out %.1e, dinp %.1e, dw %.1e, db %.1e from double\n", B, Cin, H, W, Cout, e_out,
           e_dx, e_dw, e_db);
    free(x); free(w); free(b); free(dout); free(out); free(dx); free(dx0); free(dw); free(db); free(ws);
}
static void test_convt_reference(void) {
    convt_reference_case(4, 19, 5, 16, 64, 1);  /* W a multiple of 16, several chunks */
    convt_reference_case(3, 7, 9, 6, 8, 0);     /* W = 8: a vector spans two input rows */
    convt_reference_case(2, 4, 3, 3, 5, 1);     /* OpenBLAS */
    convt_reference_case(16, 16, 4, 64, 256, 0); /* dinp of 16 MB: non-temporal stores */
}

/* ---------------- max-pool backward at a width of the vector form (W a multiple of 32): bit for
 * bit the scalar rule (first maximum in scan order gets the gradient; the rest untouched, -0
 * included), with ties everywhere (inputs from 3 values) */
static void test_pool_wide(void) {
    const size_t P = 3;
    const int H = 4, W = 64;
    const size_t n = P * H * W, m = n / 4;
    float *x = malloc(sizeof(float) * n), *d = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n), *g = rnd(m, 1);
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)(rand() % 3);
        d[i] = i % 5 == 0 ? -0.0f : (float)(rand() % 100) / 7.0f;
    }
    memcpy(ref, d, sizeof(float) * n);
    for (size_t p = 0; p < P; p++)
        for (int y = 0; y < H / 2; y++)
            for (int xx = 0; xx < W / 2; xx++) {
                const size_t i0 = p * H * W + (size_t)(2 * y) * W + 2 * xx, c[4] = {i0, i0 + 1, i0 + W, i0 + W + 1};
                size_t best = c[0];
                for (int k = 1; k < 4; k++)
                    if (x[c[k]] > x[best]) best = c[k];
                ref[best] += g[p * (H / 2) * (W / 2) + (size_t)y * (W / 2) + xx];
            }
    maxpool2x2_backward(d, g, x, P, H, W);
    CHECK(memcmp(d, ref, sizeof(float) * n) == 0, "wide max-pool backward differs from the scalar rule");
    free(x); free(d); free(ref); free(g);
}

/* ---------------- Winograd F(4x4,3x3) (conv_wino4.c) against a double-precision sum: forward and
 * the input-gradient form (w transposed and flipped), stored and added, on one and several chunks,
 * partly live vectors (24 and 36 tiles), rows of 16, 32, 48, 64 and 96, 1 input channel, 3
 * output blocks of 8; every output written; the same floats at one thread as at two */
static void wino4_case(int B, int Cin, int Cout, int H, int W) {
    const size_t N = (size_t)B * H * W, no = N * Cout;
    float *x = rnd(N * Cin, 1), *w = rnd((size_t)Cout * Cin * 9, 0.5f), *acc = rnd(no, 1);
    float *ref = malloc(sizeof(float) * no), *got = malloc(sizeof(float) * no), *one = malloc(sizeof(float) * no);
    float *ws = malloc(sizeof(float) * conv3x3_wino4_ws_floats(Cin, Cout));
    CHECK(conv3x3_wino4_ok(Cin, Cout, B, H, W), "wino4 %dx%dx%dx%d -> %d should run", B, Cin, H, W, Cout);
    for (int tr = 0; tr < 2; tr++)
        for (int accumulate = 0; accumulate < 2; accumulate++) {
            for (int co = 0; co < Cout; co++)
                for (size_t p = 0; p < N; p++) {
                    const int b = (int)(p / ((size_t)H * W)), y = (int)(p / W % H), xx = (int)(p % W);
                    double s = accumulate ? acc[(size_t)co * N + p] : 0.0;
                    for (int ci = 0; ci < Cin; ci++)
                        for (int k = 0; k < 9; k++) {
                            const int yy = y + k / 3 - 1, xk = xx + k % 3 - 1;
                            if (yy < 0 || yy >= H || xk < 0 || xk >= W) continue;
                            const float wk = tr ? w[((size_t)ci * Cout + co) * 9 + 8 - k] : w[((size_t)co * Cin + ci) * 9 + k];
                            s += (double)wk * x[(size_t)ci * N + ((size_t)b * H + yy) * W + xk];
                        }
                    ref[(size_t)co * N + p] = (float)s;
                }
            for (size_t i = 0; i < no; i++) got[i] = accumulate ? acc[i] : NAN; /* every output must be written */
            conv3x3_wino4_conv(got, x, w, tr, accumulate, B, Cin, Cout, H, W, ws);
            size_t unwritten = 0;
            for (size_t i = 0; i < no; i++) unwritten += !isfinite(got[i]);
            CHECK(unwritten == 0, "wino4 %dx%dx%dx%d -> %d: %zu outputs not written", B, Cin, H, W, Cout, unwritten);
            const double d = tu_normwise_err(got, ref, no);
            CHECK(d <= 1e-5, "wino4 %dx%dx%dx%d -> %d (transposed %d, accumulate %d): normwise error %.3g", B, Cin, H, W,
                  Cout, tr, accumulate, d);
            for (size_t i = 0; i < no; i++) one[i] = accumulate ? acc[i] : NAN;
            const int nthr = omp_get_max_threads();
            omp_set_num_threads(1);
            conv3x3_wino4_conv(one, x, w, tr, accumulate, B, Cin, Cout, H, W, ws);
            omp_set_num_threads(nthr);
            CHECK(memcmp(one, got, sizeof(float) * no) == 0, "wino4: %d threads differ from one", nthr);
            if (tr && accumulate)
                printf("  conv3x3 winograd 4x4 %dx%dx%dx%d -> %d: normwise error %.2g\n", B, Cin, H, W, Cout, d);
        }
    /* the weight gradient (Cin a multiple of 16): dw = sum over pixels of dout x the input's taps,
     * two threads' partial sums added as conv3x3_backward does */
    if (conv3x3_wino4_dw_ok(Cin, Cout, B, H, W)) {
        const size_t nw = (size_t)Cout * Cin * 9, wslice = nw + 16;
        double *dref = calloc(nw, sizeof(double));
        float *dws = calloc(2 * wslice, sizeof(float)), *dw = calloc(nw, sizeof(float));
        float *wws = malloc(sizeof(float) * conv3x3_wino4_dw_ws_floats(Cin, Cout)), *dout = acc;
        for (int co = 0; co < Cout; co++)
            for (size_t p = 0; p < N; p++) {
                const int b = (int)(p / ((size_t)H * W)), y = (int)(p / W % H), xx = (int)(p % W);
                for (int ci = 0; ci < Cin; ci++)
                    for (int k = 0; k < 9; k++) {
                        const int yy = y + k / 3 - 1, xk = xx + k % 3 - 1;
                        if (yy < 0 || yy >= H || xk < 0 || xk >= W) continue;
                        dref[((size_t)co * Cin + ci) * 9 + k] +=
                            (double)dout[(size_t)co * N + p] * x[(size_t)ci * N + ((size_t)b * H + yy) * W + xk];
                    }
            }
        const int nthr = omp_get_max_threads();
        omp_set_num_threads(2);
        conv3x3_wino4_dw(dws, wslice, dout, x, B, Cin, Cout, H, W, wws);
        omp_set_num_threads(nthr);
        for (size_t i = 0; i < nw; i++) dw[i] = dws[i] + dws[wslice + i], ref[i] = (float)dref[i];
        const double d = tu_normwise_err(dw, ref, nw);
        /* F(4x4,3x3)'s transforms have constants up to 8: its error is several times F(2x2,3x3)'s
         * (4x16x8x128 -> 8: 1.0e-6 -> 7.6e-6; the top level at batch 32: 1.3e-5 -> 4.6e-5) */
        CHECK(d <= 3e-5, "wino4 dw %dx%dx%dx%d -> %d: normwise error %.3g", B, Cin, H, W, Cout, d);
        printf("  conv3x3 winograd 4x4 weight gradient %dx%dx%dx%d -> %d: normwise error %.2g\n", B, Cin, H, W, Cout, d);
        free(dref); free(dws); free(dw); free(wws);
    }
    free(x); free(w); free(acc); free(ref); free(got); free(one); free(ws);
}
static void test_conv3x3_wino4(void) {
    if (!conv3x3_wino_channels_ok(8)) {
        printf("  conv3x3 winograd 4x4: this CPU has no AVX-512F\n");
        return;
    }
    wino4_case(2, 3, 8, 4, 32);   /* 16 tiles: one vector, image edges everywhere */
    wino4_case(1, 5, 24, 8, 96);  /* 24 tiles: a half-live vector; 3 output blocks */
    wino4_case(2, 16, 16, 8, 64); /* 64 tiles: a full chunk and a short one */
    wino4_case(3, 1, 8, 12, 32);  /* one input channel, 72 tiles */
    wino4_case(1, 32, 16, 16, 128);
    wino4_case(4, 16, 8, 8, 128); /* the weight gradient over a chunk of 4 sub-chunks and a short one */
    wino4_case(3, 16, 16, 8, 16); /* 16-wide rows: each quad a whole tile row */
    wino4_case(1, 16, 8, 12, 48); /* 36 tiles: a vector with one live quad; rows of 3 quads */
    /* an output of 16 MB goes out by non-temporal stores: the same floats as added to zeros */
    const int B = 32, C = 16, H = 64, W = 128;
    const size_t N = (size_t)B * H * W;
    float *x = rnd_aligned(N * C, 1), *w = rnd((size_t)C * C * 9, 0.5f), *set = rnd_aligned(N * C, 1);
    float *add = aligned_alloc(64, sizeof(float) * N * C), *ws = malloc(sizeof(float) * conv3x3_wino4_ws_floats(C, C));
    memset(add, 0, sizeof(float) * N * C);
    for (size_t i = 0; i < N * C; i++) set[i] = NAN;
    conv3x3_wino4_conv(set, x, w, 0, 0, B, C, C, H, W, ws);
    conv3x3_wino4_conv(add, x, w, 0, 1, B, C, C, H, W, ws);
    size_t differ = 0;
    for (size_t i = 0; i < N * C; i++) differ += !(set[i] == add[i]);
    CHECK(differ == 0, "wino4 16 MB output: %zu of %zu floats differ from the added ones", differ, N * C);
    free(x); free(w); free(set); free(add); free(ws);
}

int main(void) {
    seeded(test_conv3x3_direct, 2027);
    seeded(test_conv3x3_wino, 2028);
    seeded(test_conv3x3_wino4, 2039);
    seeded(test_conv1x1_chunked, 2036);
    seeded(test_convt_reference, 2037);
    seeded(test_pool_wide, 2038);
    return TEST_END();
}
