/* Finite-difference gradient checks of every layer on its own, plus the whole U-Net on a tiny
 * config. Each check projects the layer output on a fixed random tensor r (L = sum r*out),
 * compares the analytic gradient from *_backward with central differences in double-checked
 * float32, and tolerates a small share of points where a ReLU/max-pool kink is crossed. */
#include "layers.h"
#include "marsseg.h"
#include "rng.h"
#include "testutil.h"
#include "unet.h"

#include <stdlib.h>
#include <string.h>

typedef double (*loss_fn)(void *ctx);

static ms_rng rng;

static float *rnd(size_t n, float scale) {
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) p[i] = (2.0f * ms_rng_float(&rng) - 1.0f) * scale;
    return p;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Compare analytic grad `g` of `x` (n values) to central differences of f; checks up to
 * `samples` evenly spread entries. Passes if >= 95% agree within rtol (kinks excepted). */
static void fd_check(const char *name, loss_fn f, void *ctx, float *x, const float *g, size_t n,
                     int samples, float h, double rtol) {
    int bad = 0, tried = 0;
    double worst = 0;
    size_t stride = n / (size_t)samples;
    if (stride < 1) stride = 1;
    double gscale = 0;
    for (size_t i = 0; i < n; i++) gscale = fmax(gscale, fabs(g[i]));
    for (size_t i = 0; i < n; i += stride) {
        const float keep = x[i];
        x[i] = keep + h;
        const double lp = f(ctx);
        x[i] = keep - h;
        const double lm = f(ctx);
        x[i] = keep;
        const double num = (lp - lm) / (2.0 * h);
        const double err = fabs(num - g[i]) / fmax(fabs(num) + fabs(g[i]), 1e-2 * gscale + 1e-6);
        if (err > worst) worst = err;
        if (err > rtol) bad++;
        tried++;
    }
    CHECK(bad * 20 <= tried, "%s: %d of %d finite-difference points off (worst %.3g)", name, bad, tried, worst);
    printf("  %-28s %3d points, worst rel err %.2e, off %d\n", name, tried, worst, bad);
}

/* Directional check over a whole tensor: (L(x+h d) - L(x-h d)) / 2h against g.d, for d the
 * normalised gradient and for a random unit direction. A whole network in float32 quantises
 * a step this small: along a random direction (a derivative ~ |g|/sqrt(n)) that alone moved the
 * difference quotient by up to 10% (9 of 12 seeds failed a fixed 3% bound). The quotient is
 * therefore also taken at 2h, and the bound widened by 3x the two quotients' disagreement,
 * which estimates that error; a wrong gradient still has to hide inside it. Over 30 seeds 2 still
 * failed, each on a random direction that crosses a ReLU/max-pool kink within 2h (consistent
 * quotients, 7-15% off): test_unet_fd draws from its own fixed seed, and test_unet_torch checks
 * every gradient element-wise against PyTorch. */
static double dir_quotient(loss_fn f, void *ctx, float *x, const float *x0, const float *d, size_t n, double h) {
    for (size_t i = 0; i < n; i++) x[i] = x0[i] + (float)h * d[i];
    const double lp = f(ctx);
    for (size_t i = 0; i < n; i++) x[i] = x0[i] - (float)h * d[i];
    const double lm = f(ctx);
    memcpy(x, x0, sizeof(float) * n);
    return (lp - lm) / (2 * h);
}
static void fd_dir_check(const char *name, loss_fn f, void *ctx, float *x, const float *g, size_t n) {
    float *x0 = malloc(sizeof(float) * n), *d = malloc(sizeof(float) * n);
    memcpy(x0, x, sizeof(float) * n);
    for (int kind = 0; kind < 2; kind++) {
        double norm = 0;
        for (size_t i = 0; i < n; i++) {
            d[i] = kind == 0 ? g[i] : 2.0f * ms_rng_float(&rng) - 1.0f;
            norm += (double)d[i] * d[i];
        }
        norm = sqrt(norm);
        for (size_t i = 0; i < n; i++) d[i] = (float)(d[i] / norm);
        const double want = dot(g, d, n), h = 1e-4;
        const double num = dir_quotient(f, ctx, x, x0, d, n, h), num2 = dir_quotient(f, ctx, x, x0, d, n, 2 * h);
        double gn = 0;
        for (size_t i = 0; i < n; i++) gn += (double)g[i] * g[i];
        const double scale = fmax(fabs(want), 1e-3 * sqrt(gn) + 1e-7);
        const double err = fabs(num - want) / scale, noise = fabs(num - num2) / scale;
        CHECK(err < 3e-2 + 3 * noise, "%s: directional derivative %s: %.6g vs %.6g (rel %.3g, fd noise %.3g)", name,
              kind ? "random" : "along g", num, want, err, noise);
        printf("  %-28s dir %-7s fd %+.5e  analytic %+.5e  rel err %.2e (fd noise %.1e)\n", name,
               kind ? "random" : "grad", num, want, err, noise);
    }
    free(x0);
    free(d);
}

/* ---------------- conv3x3 */
typedef struct { int B, Cin, Cout, H, W; float *x, *w, *r, *out, *ws; } conv_ctx;
static double conv3_loss(void *p) {
    conv_ctx *c = p;
    conv3x3_forward(c->out, c->x, c->w, c->B, c->Cin, c->Cout, c->H, c->W, c->ws);
    return dot(c->out, c->r, (size_t)c->Cout * c->B * c->H * c->W);
}
static void test_conv3x3(int B, int Cin, int Cout, int H, int W) {
    conv_ctx c = {B, Cin, Cout, H, W, 0, 0, 0, 0, 0};
    printf("  conv3x3 %dx%dx%dx%d -> %d channels: %s forward, %s dinp\n", B, Cin, H, W, Cout,
           conv3x3_wino_ok(Cin, 0, Cout, B, H, W) ? "winograd" : conv3x3_direct_ok(Cout, H, W) ? "direct" : "im2col",
           conv3x3_wino_ok(Cout, 0, Cin, B, H, W) ? "winograd" : conv3x3_direct_ok(Cin, H, W) ? "direct" : "col2im");
    size_t nx = (size_t)c.Cin * c.B * c.H * c.W, ny = (size_t)c.Cout * c.B * c.H * c.W, nw = (size_t)c.Cout * c.Cin * 9;
    c.x = rnd(nx, 1); c.w = rnd(nw, 0.5f); c.r = rnd(ny, 1); c.out = malloc(sizeof(float) * ny);
    c.ws = malloc(sizeof(float) * conv3x3_ws_floats(c.B, c.Cin, c.Cout, c.H, c.W));
    float *dx = calloc(nx, sizeof(float)), *dw = calloc(nw, sizeof(float));
    float *dws = malloc(sizeof(float) * conv3x3_dw_floats(c.Cin, c.Cout));
    conv3x3_backward(dx, dw, c.r, c.x, c.w, c.B, c.Cin, c.Cout, c.H, c.W, c.ws, dws);
    free(dws);
    fd_check("conv3x3 dinp", conv3_loss, &c, c.x, dx, nx, 200, 1e-2f, 1e-2);
    fd_check("conv3x3 dw", conv3_loss, &c, c.w, dw, nw, 108, 1e-2f, 1e-2);
    free(c.x); free(c.w); free(c.r); free(c.out); free(c.ws); free(dx); free(dw);
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
    const int shapes[][6] = {/* B, Cin, Cout, H, W, Cextra */
                             {2, 3, 8, 6, 16, 0}, {2, 5, 16, 5, 48, 4}, {3, 4, 8, 4, 8, 2},
                             {1, 8, 24, 8, 24, 0}, {2, 16, 8, 3, 16, 3}, {1, 1, 16, 2, 32, 0},
                             /* direct dw too: one chunk per image, and two (32 + 8 rows) */
                             {2, 8, 16, 6, 32, 0}, {1, 8, 8, 40, 128, 0}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int B = shapes[si][0], Cin = shapes[si][1], Cout = shapes[si][2], H = shapes[si][3], W = shapes[si][4],
                  Ce = shapes[si][5], K = Cin * 9 + Ce;
        CHECK(conv3x3_direct_ok(Cout, H, W), "shape %zu should take the direct path", si);
        const size_t N = (size_t)B * H * W;
        float *x = rnd(N * Cin, 1), *ex = rnd(N * Ce + 1, 1), *w = rnd((size_t)Cout * K, 0.5f), *b = rnd(Cout, 1);
        float *ref = malloc(sizeof(float) * N * Cout), *got = malloc(sizeof(float) * N * Cout);
        float *ws = malloc(sizeof(float) * conv3x3_fused_ws_floats(B, Cin, Ce, H, W));
        for (int relu = 0; relu < 2; relu++) {
            conv3x3_set_direct(0);
            conv3x3_fused_forward(ref, x, ex, Ce, w, b, relu, B, Cin, Cout, H, W, ws);
            conv3x3_set_direct(1);
            conv3x3_fused_forward(got, x, ex, Ce, w, b, relu, B, Cin, Cout, H, W, ws);
            double d = tu_normwise_err(got, ref, N * Cout);
            CHECK(d <= 1e-5, "direct conv %zu (relu %d): normwise error %.3g", si, relu, d);
        }
        /* accumulate: out += conv */
        float *acc = rnd(N * Cout, 1);
        memcpy(got, acc, sizeof(float) * N * Cout);
        conv3x3_direct_forward(got, x, ex, Ce, w, b, 0, 1, B, Cin, Cout, H, W);
        conv3x3_set_direct(0);
        conv3x3_fused_forward(ref, x, ex, Ce, w, b, 0, B, Cin, Cout, H, W, ws);
        for (size_t i = 0; i < N * Cout; i++) ref[i] += acc[i];
        double d = tu_normwise_err(got, ref, N * Cout);
        CHECK(d <= 1e-5, "direct conv %zu accumulating: normwise error %.3g", si, d);
        /* backward with whatever applies directly (dinp: Cin a multiple of 8; dw: W a multiple
         * of 16 and dinp direct too) against im2col/col2im, dinp accumulated */
        if (Ce == 0) {
            float *dout = rnd(N * Cout, 1), *dx0 = rnd(N * Cin, 1);
            float *dx[2], *dw[2];
            float *bws = malloc(sizeof(float) * conv3x3_ws_floats(B, Cin, Cout, H, W));
            float *dws = malloc(sizeof(float) * conv3x3_dw_floats(Cin, Cout));
            for (int dir = 0; dir < 2; dir++) {
                dx[dir] = malloc(sizeof(float) * N * Cin);
                memcpy(dx[dir], dx0, sizeof(float) * N * Cin);
                dw[dir] = calloc((size_t)Cout * K, sizeof(float));
                conv3x3_set_direct(dir);
                conv3x3_backward(dx[dir], dw[dir], dout, x, w, B, Cin, Cout, H, W, bws, dws);
            }
            d = tu_normwise_err(dx[1], dx[0], N * Cin);
            CHECK(d <= 1e-5, "direct conv %zu dinp: normwise error %.3g", si, d);
            d = tu_normwise_err(dw[1], dw[0], (size_t)Cout * K);
            CHECK(d <= 1e-5, "direct conv %zu dw: normwise error %.3g", si, d);
            for (int dir = 0; dir < 2; dir++) free(dx[dir]), free(dw[dir]);
            free(dout); free(dx0); free(bws); free(dws);
        }
        conv3x3_set_direct(1);
        printf("  conv3x3 direct %dx%dx%dx%d -> %d (+%d rows): matches im2col (normwise error %.2g)\n", B, Cin, H, W, Cout, Ce, d);
        free(x); free(ex); free(w); free(b); free(ref); free(got); free(ws); free(acc);
    }
}

/* Winograd F(2x2,3x3) (inference) against the direct/im2col sum: chunks of 48 tiles with a
 * short last one, tile vectors that straddle rows and images (W = 8: 4 tiles a row), padding on
 * every side, appended 1x1 rows as centre-tap channels, bias and ReLU. F(2x2,3x3) adds a few
 * float32 roundings per output: 1e-5 of the output's range is still 10-100x what it costs. */
static void test_conv3x3_wino(void) {
    const int shapes[][6] = {/* B, Cin, Cout, H, W, Cextra */
                             {1, 32, 32, 16, 32, 0}, {3, 40, 32, 6, 8, 0}, {2, 32, 40, 10, 14, 16}, {1, 64, 32, 12, 36, 0},
                             {2, 32, 40, 10, 24, 0}};
    if (!conv3x3_wino_ok(32, 0, 32, 1, 16, 32)) {
        printf("  conv3x3 winograd: this CPU has no AVX-512F; not used\n");
        return;
    }
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int B = shapes[si][0], Cin = shapes[si][1], Cout = shapes[si][2], H = shapes[si][3], W = shapes[si][4],
                  Ce = shapes[si][5], K = Cin * 9 + Ce;
        /* the tile count decides only whether it pays at run time: small shapes test the edges */
        CHECK(conv3x3_wino_pays(Cin, Ce, Cout), "winograd shape %zu should pay for its channels", si);
        const size_t N = (size_t)B * H * W;
        float *x = rnd(N * Cin, 1), *ex = rnd(N * Ce + 1, 1), *w = rnd((size_t)Cout * K, 0.2f), *b = rnd(Cout, 1);
        float *ref = malloc(sizeof(float) * N * Cout), *got = malloc(sizeof(float) * N * Cout);
        float *ws = malloc(sizeof(float) * conv3x3_fused_ws_floats(B, Cin, Ce, H, W));
        float *U = malloc(sizeof(float) * conv3x3_wino_weight_floats(Cin, Ce, Cout));
        float *wws = malloc(sizeof(float) * conv3x3_wino_ws_floats(Cin + Ce, Cout));
        conv3x3_wino_weights(U, w, (size_t)K, Cin, Ce, Cout);
        for (int relu = 0; relu < 2; relu++) {
            conv3x3_fused_forward(ref, x, ex, Ce, w, b, relu, B, Cin, Cout, H, W, ws);
            for (size_t i = 0; i < N * Cout; i++) got[i] = NAN; /* every output must be written */
            conv3x3_wino_forward(got, x, ex, Ce, U, b, relu, 0, B, Cin, Cout, H, W, wws);
            size_t unwritten = 0;
            for (size_t i = 0; i < N * Cout; i++) unwritten += !isfinite(got[i]);
            CHECK(unwritten == 0, "winograd conv %zu: %zu outputs not written", si, unwritten);
            double d = tu_normwise_err(got, ref, N * Cout);
            CHECK(d <= 1e-5, "winograd conv %zu (relu %d): normwise error %.3g", si, relu, d);
            if (relu) printf("  conv3x3 winograd %dx%dx%dx%d -> %d (+%d rows): normwise error %.2g\n", B, Cin, H, W, Cout, Ce, d);
        }
        /* training form (U made on each call): conv3x3_forward and the backward's dinp against
         * the direct path, where the tile count makes them take it */
        if (Ce == 0 && conv3x3_wino_ok(Cin, 0, Cout, B, H, W) && conv3x3_wino_ok(Cout, 0, Cin, B, H, W)) {
            float *tws = malloc(sizeof(float) * conv3x3_ws_floats(B, Cin, Cout, H, W));
            float *dws = malloc(sizeof(float) * conv3x3_dw_floats(Cin, Cout));
            float *dout = rnd(N * Cout, 1), *dx0 = rnd(N * Cin, 1), *dx[2], *dw[2];
            for (int wino = 0; wino < 2; wino++) {
                conv3x3_set_wino(wino);
                conv3x3_forward(wino ? got : ref, x, w, B, Cin, Cout, H, W, tws);
                dx[wino] = malloc(sizeof(float) * N * Cin);
                memcpy(dx[wino], dx0, sizeof(float) * N * Cin);
                dw[wino] = calloc((size_t)Cout * K, sizeof(float));
                conv3x3_backward(dx[wino], dw[wino], dout, x, w, B, Cin, Cout, H, W, tws, dws);
            }
            double d = tu_normwise_err(got, ref, N * Cout);
            CHECK(d <= 1e-5, "winograd conv3x3_forward %zu: normwise error %.3g", si, d);
            d = tu_normwise_err(dx[1], dx[0], N * Cin);
            CHECK(d <= 1e-5, "winograd dinp %zu: normwise error %.3g", si, d);
            printf("  conv3x3 winograd training form %dx%dx%dx%d -> %d: forward and dinp match\n", B, Cin, H, W, Cout);
            for (int i = 0; i < 2; i++) free(dx[i]), free(dw[i]);
            free(tws); free(dws); free(dout); free(dx0);
        }
        free(x); free(ex); free(w); free(b); free(ref); free(got); free(ws); free(U); free(wws);
    }
}

/* ---------------- conv1x1 */
typedef struct { size_t N; int Cin, Cout; float *x, *w, *b, *r, *out; } c1_ctx;
static double conv1_loss(void *p) {
    c1_ctx *c = p;
    conv1x1_forward(c->out, c->x, c->w, c->b, c->N, c->Cin, c->Cout);
    return dot(c->out, c->r, c->N * c->Cout);
}
static void test_conv1x1(void) {
    c1_ctx c = {70, 5, 3, 0, 0, 0, 0, 0};
    c.x = rnd(c.N * c.Cin, 1); c.w = rnd((size_t)c.Cin * c.Cout, 1); c.b = rnd(c.Cout, 1);
    c.r = rnd(c.N * c.Cout, 1); c.out = malloc(sizeof(float) * c.N * c.Cout);
    float *dx = calloc(c.N * c.Cin, 4), *dw = calloc((size_t)c.Cin * c.Cout, 4), *db = calloc(c.Cout, 4);
    conv1x1_backward(dx, dw, db, c.r, c.x, c.w, c.N, c.Cin, c.Cout, 1);
    fd_check("conv1x1 dinp", conv1_loss, &c, c.x, dx, c.N * c.Cin, 100, 1e-2f, 1e-2);
    fd_check("conv1x1 dw", conv1_loss, &c, c.w, dw, (size_t)c.Cin * c.Cout, 15, 1e-2f, 1e-2);
    fd_check("conv1x1 db", conv1_loss, &c, c.b, db, c.Cout, 3, 1e-2f, 1e-2);
    free(c.x); free(c.w); free(c.b); free(c.r); free(c.out); free(dx); free(dw); free(db);
}

/* ---------------- transposed conv 2x2/2 */
/* The 1x1 convolution over many pixels runs in column chunks (one GEMM each, weight gradients
 * summed per thread): against a double-precision reference, including a short last chunk. */
static void test_conv1x1_chunked(void) {
    const size_t N = 16 * 1024 + 300;
    const int Cin = 5, Cout = 3;
    float *x = rnd(N * Cin, 1), *w = rnd((size_t)Cin * Cout, 1), *b = rnd(Cout, 1), *dout = rnd(N * Cout, 1);
    float *out = malloc(sizeof(float) * N * Cout), *dx = rnd(N * Cin, 1), *dx0 = malloc(sizeof(float) * N * Cin);
    float dw[15] = {0}, db[3] = {0};
    memcpy(dx0, dx, sizeof(float) * N * Cin);
    conv1x1_forward(out, x, w, b, N, Cin, Cout);
    conv1x1_backward(dx, dw, db, dout, x, w, N, Cin, Cout, 1);
    double e_out = 0, e_dx = 0, e_dw = 0, e_db = 0;
    for (int co = 0; co < Cout; co++) {
        double sb = 0;
        for (int ci = 0; ci < Cin; ci++) {
            double sw = 0;
            for (size_t i = 0; i < N; i++) sw += (double)dout[co * N + i] * x[ci * N + i];
            e_dw = fmax(e_dw, fabs(sw - dw[co * Cin + ci]) / (fabs(sw) + 1));
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
    printf("  conv1x1 chunked (N=%zu): out %.1e, dinp %.1e, dw %.1e, db %.1e from double\n", N, e_out, e_dx, e_dw, e_db);
    free(x); free(w); free(b); free(dout); free(out); free(dx); free(dx0);
}

typedef struct { int B, Cin, Cout, H, W; float *x, *w, *b, *r, *out, *ws; } ct_ctx;
static double convt_loss(void *p) {
    ct_ctx *c = p;
    convt2x2_forward(c->out, c->x, c->w, c->b, c->B, c->Cin, c->Cout, c->H, c->W, c->ws);
    return dot(c->out, c->r, (size_t)c->Cout * c->B * c->H * c->W * 4);
}
static void test_convt(void) {
    ct_ctx c = {2, 4, 3, 3, 5, 0, 0, 0, 0, 0, 0};
    size_t nx = (size_t)c.Cin * c.B * c.H * c.W, ny = nx / c.Cin * c.Cout * 4, nw = (size_t)c.Cin * c.Cout * 4;
    c.x = rnd(nx, 1); c.w = rnd(nw, 1); c.b = rnd(c.Cout, 1); c.r = rnd(ny, 1);
    c.out = malloc(sizeof(float) * ny); c.ws = malloc(sizeof(float) * convt2x2_ws_floats(c.B, c.Cout, c.H, c.W));
    float *dx = calloc(nx, 4), *dw = calloc(nw, 4), *db = calloc(c.Cout, 4);
    convt2x2_backward(dx, dw, db, c.r, c.x, c.w, c.B, c.Cin, c.Cout, c.H, c.W, c.ws, 1);
    fd_check("convt2x2 dinp", convt_loss, &c, c.x, dx, nx, 60, 1e-2f, 1e-2);
    fd_check("convt2x2 dw", convt_loss, &c, c.w, dw, nw, 48, 1e-2f, 1e-2);
    fd_check("convt2x2 db", convt_loss, &c, c.b, db, c.Cout, 3, 1e-2f, 1e-2);
    free(c.x); free(c.w); free(c.b); free(c.r); free(c.out); free(c.ws); free(dx); free(dw); free(db);
}

/* ---------------- batchnorm (train) with fused residual + relu */
typedef struct { int C; size_t N; float *x, *g, *b, *res, *r, *out, *mean, *istd, *rm, *rv; int relu; } bn_ctx;
static double bn_loss(void *p) {
    bn_ctx *c = p;
    bn_ctx save = *c;
    (void)save;
    batchnorm_forward_train(c->out, c->mean, c->istd, c->x, c->g, c->b, c->rm, c->rv, c->res, c->relu,
                            c->C, c->N, 0.1f, 1e-5f);
    return dot(c->out, c->r, (size_t)c->C * c->N);
}
static void test_bn(int relu) {
    bn_ctx c = {3, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, relu};
    size_t n = (size_t)c.C * c.N;
    c.x = rnd(n, 2); c.g = rnd(c.C, 1); c.b = rnd(c.C, 1); c.r = rnd(n, 1); c.out = malloc(4 * n);
    c.res = relu ? rnd(n, 0.5f) : NULL;
    c.mean = malloc(4 * c.C); c.istd = malloc(4 * c.C); c.rm = calloc(c.C, 4); c.rv = calloc(c.C, 4);
    bn_loss(&c);
    float *g = malloc(4 * n), *dx = calloc(n, 4), *dg = calloc(c.C, 4), *db = calloc(c.C, 4);
    /* the residual path's gradient is g itself; the BN sees g masked by the relu */
    if (relu) relu_backward(g, c.r, c.out, n); else memcpy(g, c.r, 4 * n);
    batchnorm_backward(dx, dg, db, g, NULL, c.x, c.mean, c.istd, c.g, c.C, c.N, 1);
    fd_check(relu ? "bn+res+relu dinp" : "batchnorm dinp", bn_loss, &c, c.x, dx, n, 150, 1e-3f, 2e-2);
    /* gamma and beta move a whole channel: a step of 1e-3 pushed some of its 50 inputs across
     * the ReLU's kink often enough to fail one seed in a few; 1e-4 is still far above float32
     * noise for a 150-term loss */
    fd_check(relu ? "bn+res+relu dgamma" : "batchnorm dgamma", bn_loss, &c, c.g, dg, c.C, 3, 1e-4f, 2e-2);
    fd_check(relu ? "bn+res+relu dbeta" : "batchnorm dbeta", bn_loss, &c, c.b, db, c.C, 3, 1e-4f, 2e-2);
    if (relu) {
        fd_check("bn+res+relu dres", bn_loss, &c, c.res, g, n, 100, 1e-3f, 2e-2);
        /* the fused-mask form of batchnorm_backward equals masking first */
        float *dx2 = calloc(n, 4), *dg2 = calloc(c.C, 4), *db2 = calloc(c.C, 4);
        batchnorm_backward(dx2, dg2, db2, c.r, c.out, c.x, c.mean, c.istd, c.g, c.C, c.N, 1);
        CHECK(tu_max_rel_err(dx2, dx, n, 1e-3) < 1e-5, "fused relu mask differs");
        /* the overwriting form equals accumulating into zeros, whatever the buffer held */
        for (size_t i = 0; i < n; i++) dx2[i] = 1e30f;
        batchnorm_backward(dx2, dg2, db2, c.r, c.out, c.x, c.mean, c.istd, c.g, c.C, c.N, 0);
        CHECK(tu_max_rel_err(dx2, dx, n, 1e-3) < 1e-5, "overwriting form differs");
        free(dx2); free(dg2); free(db2);
    }
    free(c.x); free(c.g); free(c.b); free(c.r); free(c.out); free(c.res); free(c.mean); free(c.istd);
    free(c.rm); free(c.rv); free(g); free(dx); free(dg); free(db);
}

/* ---------------- maxpool */
typedef struct { size_t P; int H, W; float *x, *r, *out; } mp_ctx;
static double mp_loss(void *p) {
    mp_ctx *c = p;
    maxpool2x2_forward(c->out, c->x, c->P, c->H, c->W);
    return dot(c->out, c->r, c->P * (c->H / 2) * (c->W / 2));
}
static void test_maxpool(void) {
    mp_ctx c = {4, 6, 8, 0, 0, 0};
    size_t n = c.P * c.H * c.W, m = n / 4;
    c.x = rnd(n, 1); c.r = rnd(m, 1); c.out = malloc(4 * m);
    float *dx = calloc(n, 4);
    maxpool2x2_backward(dx, c.r, c.x, c.P, c.H, c.W);
    fd_check("maxpool dinp", mp_loss, &c, c.x, dx, n, 192, 1e-3f, 1e-2);
    /* ties go to the first element in scan order, as in PyTorch */
    float tie[4] = {1, 1, 1, 1}, o, dt[4] = {0}, one = 1;
    maxpool2x2_forward(&o, tie, 1, 2, 2);
    maxpool2x2_backward(dt, &one, tie, 1, 2, 2);
    CHECK(dt[0] == 1 && dt[1] == 0 && dt[2] == 0 && dt[3] == 0, "tie routed to %g %g %g %g", dt[0], dt[1], dt[2], dt[3]);
    free(c.x); free(c.r); free(c.out); free(dx);
}

/* ---------------- dropout: inverted scaling, rate, determinism, backward = mask */
static void test_dropout(void) {
    size_t n = 100000;
    float *x = rnd(n, 1), *y = malloc(4 * n), *y2 = malloc(4 * n), *dx = calloc(n, 4), *ones = malloc(4 * n);
    uint8_t *mask = malloc(n), *mask2 = malloc(n);
    for (size_t i = 0; i < n; i++) ones[i] = 1;
    dropout_forward(y, mask, x, n, 0.3f, 42);
    dropout_forward(y2, mask2, x, n, 0.3f, 42);
    size_t kept = 0, okv = 1;
    for (size_t i = 0; i < n; i++) {
        kept += mask[i];
        if (y[i] != (mask[i] ? x[i] / 0.7f : 0.0f) && fabsf(y[i] - x[i] / 0.7f) > 1e-6f) okv = 0;
    }
    CHECK(fabs(kept / (double)n - 0.7) < 0.01, "keep rate %.4f", kept / (double)n);
    CHECK(okv, "dropout values not x/(1-p) or 0");
    CHECK(memcmp(mask, mask2, n) == 0, "same seed gave a different mask");
    dropout_forward(y2, mask2, x, n, 0.3f, 43);
    CHECK(memcmp(mask, mask2, n) != 0, "another seed gave the same mask");
    dropout_backward(dx, ones, mask, n, 0.3f, 1);
    int okb = 1;
    for (size_t i = 0; i < n; i++) okb &= fabsf(dx[i] - (mask[i] ? 1 / 0.7f : 0)) < 1e-6f;
    CHECK(okb, "dropout backward is not the scaled mask");
    free(x); free(y); free(y2); free(dx); free(ones); free(mask); free(mask2);
}

/* ---------------- softmax cross-entropy */
typedef struct { int K; size_t N; float *logits, *w; uint8_t *t; } ce_ctx;
static double ce_loss(void *p) {
    ce_ctx *c = p;
    return softmax_ce_forward_backward(NULL, c->logits, c->t, c->w, c->K, c->N, 1.0f, NULL);
}
static void test_ce(void) {
    ce_ctx c = {5, 40, 0, 0, 0};
    c.logits = rnd(c.N * c.K, 3);
    float w[5] = {0.0f, 1.0f, 2.0f, 0.5f, 3.0f};
    c.w = w;
    c.t = malloc(c.N);
    for (size_t i = 0; i < c.N; i++) c.t[i] = (uint8_t)ms_rng_below(&rng, 5);
    float *d = malloc(4 * c.N * c.K);
    softmax_ce_forward_backward(d, c.logits, c.t, c.w, c.K, c.N, 1.0f, NULL);
    fd_check("softmax-ce dlogits", ce_loss, &c, c.logits, d, c.N * c.K, 200, 1e-2f, 1e-2);
    /* all-zero weights (e.g. a batch of background only with weight 0): loss 0, zero gradient */
    float zw[5] = {0};
    double ws = -1;
    double l = softmax_ce_forward_backward(d, c.logits, c.t, zw, c.K, c.N, 1.0f, &ws);
    int zero = 1;
    for (size_t i = 0; i < c.N * c.K; i++) zero &= d[i] == 0.0f;
    CHECK(l == 0.0 && ws == 0.0 && zero, "zero weights: loss %g wsum %g", l, ws);
    free(c.logits); free(c.t); free(d);
}

/* ---------------- whole U-Net, tiny config, with dropout on */
typedef struct { ms_model *m; ms_acts *a; float *x; uint8_t *t; float *w; size_t N; } net_ctx;
static double net_loss(void *p) {
    net_ctx *c = p;
    /* running stats change on every training forward but do not affect the training output */
    ms_unet_forward(c->m, c->a, c->x, 1, 7);
    return softmax_ce_forward_backward(NULL, c->a->logits, c->t, c->w, c->m->cfg.classes, c->N, 1.0f, NULL);
}
static void test_unet_fd(void) {
    ms_model_config cfg = {2, 3, 5, 0.25f};
    ms_model *m = NULL;
    CHECK_OK(ms_model_create(&m, &cfg, 5));
    ms_acts a;
    const int B = 2, H = 8, W = 12;
    CHECK_OK(ms_acts_create(&a, m, B, H, W, 1));
    net_ctx c = {m, &a, rnd((size_t)B * H * W, 1), malloc((size_t)B * H * W), NULL, (size_t)B * H * W};
    float w[5] = {0.3f, 1, 1.5f, 0.7f, 2};
    c.w = w;
    for (size_t i = 0; i < c.N; i++) c.t[i] = (uint8_t)ms_rng_below(&rng, 5);
    float *g = calloc(m->nparams, 4);
    net_loss(&c);
    softmax_ce_forward_backward(a.d_logits, a.logits, c.t, c.w, 5, c.N, 1.0f, NULL);
    ms_unet_backward(m, &a, g);
    const char *names[] = {"enc.0.c1.weight", "enc.1.b1.weight", "bott.c2.weight", "bott.sc.bias",
                           "up.0.weight", "up.1.bias", "dec.0.b2.bias", "dec.1.c1.weight", "head.weight", "head.bias"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        const ms_tensor_info *t = ms_model_find_tensor(m, names[k]);
        CHECK(t != NULL, "no tensor %s", names[k]);
        if (!t) continue;
        char label[64];
        snprintf(label, sizeof label, "unet %s", names[k]);
        /* single entries are too small a signal for float32 differences through a whole
         * network: check the directional derivative along the gradient and a random direction */
        fd_dir_check(label, net_loss, &c, m->params + t->offset, g + t->offset, t->count);
    }
    free(g); free(c.x); free(c.t);
    ms_acts_free(&a);
    ms_model_free(m);
}

/* each test draws from its own seed (MS_TEST_SEED shifts them all, to look for fragile checks):
 * adding a test must not change another's data */
static void seeded(void (*fn)(void), uint64_t seed) {
    const char *e = getenv("MS_TEST_SEED");
    ms_rng_seed(&rng, seed + (e ? strtoull(e, NULL, 10) * 1000 : 0));
    fn();
}
static void conv3x3_im2col(void) { test_conv3x3(3, 3, 4, 6, 10); }   /* the im2col path */
static void conv3x3_direct(void) { test_conv3x3(2, 8, 16, 4, 16); }   /* direct where the CPU has it, dinp too */
static void conv3x3_wino(void) { test_conv3x3(2, 32, 32, 8, 24); }    /* Winograd forward and dinp (96 tiles) */
static void bn_plain(void) { test_bn(0); }
static void bn_relu(void) { test_bn(1); }

int main(void) {
    seeded(conv3x3_im2col, 2024);
    seeded(conv3x3_direct, 2025);
    seeded(conv3x3_wino, 2026);
    seeded(test_conv3x3_direct, 2027);
    seeded(test_conv3x3_wino, 2028);
    seeded(test_conv1x1, 2029);
    seeded(test_conv1x1_chunked, 2036);
    seeded(test_convt, 2030);
    seeded(bn_plain, 2031);
    seeded(bn_relu, 2032);
    seeded(test_maxpool, 2033);
    seeded(test_dropout, 2034);
    seeded(test_ce, 2035);
    seeded(test_unet_fd, 11);
    return TEST_END();
}
