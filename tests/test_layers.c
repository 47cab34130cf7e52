/* Finite-difference gradient checks of every layer on its own, plus the whole U-Net on a tiny
 * config (the fast kernels against their reference forms: tests/test_kernels.c). Each layer check projects the layer output on a fixed random tensor r (L = sum r*out),
 * compares the analytic gradient from *_backward with central differences in float32, and
 * tolerates a small share of points where a ReLU/max-pool kink is crossed; the whole U-Net is
 * differenced on a double-precision reference of its graph (see test_unet_fd). */
#include "layers.h"
#include "marsseg.h"
#include "plan.h"
#include "rng.h"
#include "testutil.h"
#include "unet.h"
#include "unet_ref.h"
#include "layertest.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef double (*loss_fn)(void *ctx);

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

/* ---------------- conv3x3 */
typedef struct { int B, Cin, Cout, H, W; float *x, *w, *r, *out, *ws; } conv_ctx;
static double conv3_loss(void *p) {
    conv_ctx *c = p;
    conv3x3_forward(c->out, c->x, c->w, c->B, c->Cin, c->Cout, c->H, c->W, c->ws);
    return dot(c->out, c->r, (size_t)c->Cout * c->B * c->H * c->W);
}
/* finite differences of the forward against the backward, under each algorithm that can run
 * the shape (conv_plan_force: im2col/col2im, direct, Winograd; the weight gradient takes the
 * direct kernel or im2col) */
static void test_conv3x3(int B, int Cin, int Cout, int H, int W) {
    conv_ctx c = {B, Cin, Cout, H, W, 0, 0, 0, 0, 0};
    size_t nx = (size_t)c.Cin * c.B * c.H * c.W, ny = (size_t)c.Cout * c.B * c.H * c.W, nw = (size_t)c.Cout * c.Cin * 9;
    c.x = rnd(nx, 1); c.w = rnd(nw, 0.5f); c.r = rnd(ny, 1); c.out = malloc(sizeof(float) * ny);
    c.ws = malloc(sizeof(float) * conv3x3_ws_floats(c.B, c.Cin, c.Cout, c.H, c.W));
    float *dx = malloc(sizeof(float) * nx), *dw = malloc(sizeof(float) * nw);
    float *dws = malloc(sizeof(float) * conv3x3_dw_floats(c.Cin, c.Cout));
    const int algos[] = {CONV_IM2COL, CONV_DIRECT, CONV_WINO};
    for (size_t ai = 0; ai < sizeof algos / sizeof *algos; ai++) {
        const int a = algos[ai];
        int cf[CONV_NALGO], cd[CONV_NALGO], cw[CONV_NALGO], in_f = 0, in_d = 0, in_w = 0;
        const int nf = conv3x3_candidates(CONV_OP_FWD, B, Cin, 0, Cout, H, W, 0, cf);
        const int nd = conv3x3_candidates(CONV_OP_DINP, B, Cin, 0, Cout, H, W, 0, cd);
        const int nw2 = conv3x3_candidates(CONV_OP_DW, B, Cin, 0, Cout, H, W, 0, cw);
        for (int i = 0; i < nf; i++) in_f |= cf[i] == a;
        for (int i = 0; i < nd; i++) in_d |= cd[i] == a;
        for (int i = 0; i < nw2; i++) in_w |= cw[i] == a;
        if (a != CONV_IM2COL && !in_f && !in_d && !in_w) continue;
        printf("  conv3x3 %dx%dx%dx%d -> %d channels, forced %s: forward %s, dinp %s, dw %s\n", B, Cin, H, W, Cout,
               conv_algo_name(a, CONV_OP_FWD), in_f ? "yes" : "no", in_d ? "yes" : "no", in_w ? "yes" : "no");
        conv_plan_force(a);
        memset(dx, 0, sizeof(float) * nx);
        memset(dw, 0, sizeof(float) * nw);
        conv3x3_backward(dx, dw, c.r, c.x, c.w, c.B, c.Cin, c.Cout, c.H, c.W, c.ws, dws, 1);
        fd_check("conv3x3 dinp", conv3_loss, &c, c.x, dx, nx, 200, 1e-2f, 1e-2);
        fd_check("conv3x3 dw", conv3_loss, &c, c.w, dw, nw, 108, 1e-2f, 1e-2);
        conv_plan_force(-1);
    }
    free(dws);
    free(c.x); free(c.w); free(c.r); free(c.out); free(c.ws); free(dx); free(dw);
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
/* the documented hash (layers.h: splitmix64's finaliser of seed + golden * (i + 1)), element by
 * element: the reference the vectorised mask must match bit for bit */
static int dropout_keep_ref(uint64_t seed, size_t i, float p) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z >= (uint64_t)((double)p * 18446744073709551616.0 * (1.0 - 1e-12));
}

static void test_dropout(void) {
    size_t n = 100003; /* not a multiple of the 16-element vectors */
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
    size_t nref = 0;
    for (size_t i = 0; i < n; i++) nref += mask[i] != dropout_keep_ref(42, i, 0.3f);
    CHECK(nref == 0, "%zu mask elements differ from the scalar hash", nref);
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

/* ---------------- the attention gate's layers: out = x * sigmoid(a) per pixel over channels */
typedef struct { int C; size_t N; float *x, *a, *r, *psi, *out; } gate_ctx;
static double gate_loss(void *p) {
    gate_ctx *c = p;
    sigmoid_forward(c->psi, c->a, c->N);
    gate_forward(c->out, c->x, c->psi, c->C, c->N);
    return dot(c->out, c->r, (size_t)c->C * c->N);
}
static void test_gate(void) {
    gate_ctx c = {5, 1100, 0, 0, 0, 0, 0}; /* N over two of gate_backward's pixel blocks */
    const size_t n = (size_t)c.C * c.N;
    c.x = rnd(n, 1); c.a = rnd(c.N, 3); c.r = rnd(n, 1); c.psi = malloc(4 * c.N); c.out = malloc(4 * n);
    gate_loss(&c);
    float *dx = malloc(4 * n), *dpsi = malloc(4 * c.N), *da = malloc(4 * c.N), *d = malloc(4 * n);
    gate_backward(dx, dpsi, c.r, c.x, c.psi, c.C, c.N);
    sigmoid_backward(da, dpsi, c.psi, c.N);
    fd_check("gate dx", gate_loss, &c, c.x, dx, n, 150, 1e-2f, 1e-2);
    fd_check("gate+sigmoid da", gate_loss, &c, c.a, da, c.N, 150, 1e-2f, 1e-2);
    /* in place, as att_backward runs it: dx over dout, dpsi taken first; sigmoid likewise */
    gate_loss(&c); /* psi and out as at the unperturbed point again */
    memcpy(d, c.r, 4 * n);
    float *dpsi2 = malloc(4 * c.N);
    gate_backward(d, dpsi2, d, c.x, c.psi, c.C, c.N);
    sigmoid_backward(dpsi2, dpsi2, c.psi, c.N);
    CHECK(!memcmp(d, dx, 4 * n) && !memcmp(dpsi2, da, 4 * c.N), "gate/sigmoid backward in place differ");
    memcpy(d, c.x, 4 * n);
    gate_forward(d, d, c.psi, c.C, c.N);
    CHECK(!memcmp(d, c.out, 4 * n), "gate forward in place differs");
    free(c.x); free(c.a); free(c.r); free(c.psi); free(c.out); free(dx); free(dpsi); free(da); free(d); free(dpsi2);
}

/* ---------------- whole U-Net, tiny config, with dropout on
 * Finite differences of the float32 network cannot check it: a directional derivative along a
 * random direction is ~1e-3, so a step of 1e-4 moves the loss by ~2e-7 of its 1.5, while the
 * float32 loss itself differs by ~3e-8 between BLAS kernels (SkylakeX/Haswell), thread counts
 * (reduction order) and builds (ASan changes how `omp simd` reductions vectorise): the same code
 * gave difference quotients from -1.03e-3 to -1.17e-3 for an analytic -1.10724e-3 (identical to
 * six digits everywhere), and SAN=1 with OpenBLAS's own Zen kernels failed. So the differences
 * are taken on a double-precision reference of the same graph (plain loops, no BLAS, no
 * threads, so the same result on every CPU and build), which is first checked against the float
 * forward; with ~1e-16 rounding a step of 1e-6 is exact to ~1e-9 and crosses no ReLU/max-pool
 * kink in practice (tests/unet_ref.h). The float backward's gradient is then compared along its
 * own direction and along random ones. */
static void unet_fd(int attention) {
    ms_model_config cfg = {2, 3, 5, 0.25f, 0, attention};
    ms_model *m = NULL;
    CHECK_OK(ms_model_create(&m, &cfg, 5));
    ms_acts a;
    const int B = 2, H = 8, W = 12;
    CHECK_OK(ms_acts_create(&a, m, B, H, W, 1));
    const size_t N = (size_t)B * H * W, K = 5;
    float *x = rnd(N, 1), w[5] = {0.3f, 1, 1.5f, 0.7f, 2};
    uint8_t *t = malloc(N);
    for (size_t i = 0; i < N; i++) t[i] = (uint8_t)ms_rng_below(&rng, 5);
    /* the float forward and backward under test; its dropout masks drive the reference */
    ms_unet_forward(m, &a, x, 1, 7);
    const double loss32 = softmax_ce_forward_backward(a.d_logits, a.logits, t, w, (int)K, N, 1.0f, NULL);
    float *g = calloc(m->nparams, sizeof(float));
    ms_unet_backward(m, &a, g);
    double *P = malloc(sizeof(double) * m->nparams), *lg = malloc(sizeof(double) * K * N);
    for (size_t i = 0; i < m->nparams; i++) P[i] = m->params[i];
    ref_net r = {m, P, a.bott_mask, {0}, B, H, W};
    for (int i = 0; i < cfg.depth; i++) r.dmask[i] = a.dec_mask[i];
    /* the reference is the same graph: its logits and loss match the float forward's */
    ref_forward(&r, x, lg);
    double num = 0, den = 0;
    for (size_t i = 0; i < K * N; i++) num = fmax(num, fabs(lg[i] - a.logits[i])), den = fmax(den, fabs(lg[i]));
    const double loss64 = ref_loss(&r, x, t, w);
    CHECK(num <= 1e-5 * den && fabs(loss64 - loss32) <= 1e-5 * loss64, "double reference: logits off by %.3g of %.3g, loss %.9g vs %.9g",
          num, den, loss64, loss32);
    printf("  unet double reference: logits within %.1e of max %.2f, loss %.8f (float %.8f)\n", num, den, loss64, loss32);
    const char *plain[] = {"enc.0.c1.weight", "enc.1.b1.weight", "bott.c2.weight", "bott.sc.bias",
                           "up.0.weight", "up.1.bias", "dec.0.b2.bias", "dec.1.c1.weight", "head.weight", "head.bias"};
    /* every gate tensor with a gradient, on both levels (f = 3 and 1), and what the gate's
     * backward feeds: the up-convolution and the encoder below the skip. Left out: the wg/wx/psi
     * biases, which feed training-mode BatchNorms (zero by construction; tests/test_unet_torch.c
     * holds them to it), and psi's weight where f = 1 (bpsi normalises its one product away:
     * ~1e-7, below float32's noise) */
    const char *gated[] = {"dec.0.att.wg.weight", "dec.0.att.bg.weight", "dec.0.att.bg.bias", "dec.0.att.wx.weight",
                           "dec.0.att.bx.weight", "dec.0.att.psi.weight", "dec.0.att.bpsi.weight",
                           "dec.0.att.bpsi.bias", "dec.1.att.wg.weight", "dec.1.att.wx.weight", "dec.1.att.bx.bias",
                           "dec.1.att.bpsi.weight", "up.1.weight", "enc.0.c2.weight", "enc.1.sc.weight"};
    const char **names = attention ? gated : plain;
    const size_t nnames = attention ? sizeof gated / sizeof *gated : sizeof plain / sizeof *plain;
    for (size_t k = 0; k < nnames; k++) {
        const ms_tensor_info *ti = ms_model_find_tensor(m, names[k]);
        CHECK(ti != NULL, "no tensor %s", names[k]);
        if (!ti) continue;
        const size_t n = ti->count;
        double *p = P + ti->offset, *p0 = malloc(sizeof(double) * n), *d = malloc(sizeof(double) * n);
        const float *gt = g + ti->offset;
        memcpy(p0, p, sizeof(double) * n);
        double gn = 0;
        for (size_t i = 0; i < n; i++) gn += (double)gt[i] * gt[i];
        gn = sqrt(gn);
        for (int kind = 0; kind < 3; kind++) { /* along g, then two random directions */
            double norm = 0, want = 0;
            for (size_t i = 0; i < n; i++) {
                d[i] = kind == 0 ? gt[i] : 2.0 * ms_rng_float(&rng) - 1.0;
                norm += d[i] * d[i];
            }
            norm = sqrt(norm);
            for (size_t i = 0; i < n; i++) d[i] /= norm, want += gt[i] * d[i];
            const double h = 1e-6;
            for (size_t i = 0; i < n; i++) p[i] = p0[i] + h * d[i];
            const double lp = ref_loss(&r, x, t, w);
            for (size_t i = 0; i < n; i++) p[i] = p0[i] - h * d[i];
            const double lm = ref_loss(&r, x, t, w);
            memcpy(p, p0, sizeof(double) * n);
            const double fd = (lp - lm) / (2 * h);
            /* float32 gradients carry ~1e-6 of |g| in rounding: scale by |g|/100 at least */
            const double err = fabs(fd - want) / fmax(fabs(want), 1e-2 * gn + 1e-12);
            CHECK(err < 1e-4, "unet %s: directional derivative %s: %.9g (double fd) vs %.9g (rel %.3g)", names[k],
                  kind ? "random" : "along g", fd, want, err);
            printf("  unet %-22s dir %-6s fd %+.6e analytic %+.6e rel err %.1e\n", names[k], kind ? "random" : "grad", fd,
                   want, err);
        }
        free(p0);
        free(d);
    }
    free(g); free(x); free(t); free(P); free(lg);
    ms_acts_free(&a);
    ms_model_free(m);
}

static void test_unet_fd(void) { unet_fd(0); }
static void test_unet_att_fd(void) { unet_fd(1); }
static void conv3x3_im2col(void) { test_conv3x3(3, 3, 4, 6, 10); }   /* the im2col path */
static void conv3x3_direct(void) { test_conv3x3(2, 8, 16, 4, 16); }   /* direct where the CPU has it, dinp too */
static void conv3x3_wino(void) { test_conv3x3(2, 32, 32, 8, 24); }    /* Winograd forward and dinp (96 tiles) */
static void bn_plain(void) { test_bn(0); }
static void bn_relu(void) { test_bn(1); }

int main(void) {
    seeded(conv3x3_im2col, 2024);
    seeded(conv3x3_direct, 2025);
    seeded(conv3x3_wino, 2026);
    seeded(test_conv1x1, 2029);
    seeded(test_convt, 2030);
    seeded(bn_plain, 2031);
    seeded(bn_relu, 2032);
    seeded(test_maxpool, 2033);
    seeded(test_dropout, 2034);
    seeded(test_ce, 2035);
    seeded(test_unet_fd, 11);
    seeded(test_gate, 2037);
    seeded(test_unet_att_fd, 12);
    return TEST_END();
}
