/* Where a batch-1 inference's time goes, layer by layer: each 3x3 convolution shape of the
 * frozen U-Net (level, channels, size) timed with every candidate algorithm, plus the other
 * steps (transposed convolutions, pooling, head, softmax) and the whole ms_model_predict.
 * Single-thread CPU time (CLOCK_THREAD_CPUTIME_ID: descheduling on a shared machine does not
 * inflate it), the minimum over many repetitions, candidates interleaved in one process.
 *   bench_layers [F [reps]]    (default F=32, 200 repetitions) */
#include "layers.h"
#include "marsseg.h"
#include "marsseg_blas_restart.h"
#include "plan.h"
#include "rng.h"
#include "unet.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const char *where;
    int level, Cin, Cextra, Cout, H, W;
    const float *w, *U, *U4, *bias;
    int cands[CONV_NALGO], n;
    double best[CONV_NALGO];
} layer;

static float *rnd(size_t n, ms_rng *r) {
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) p[i] = ms_rng_float(r) - 0.3f;
    return p;
}

int main(int argc, char **argv) {
    const int F = argc > 1 ? atoi(argv[1]) : 32, reps = argc > 2 ? atoi(argv[2]) : 200;
    const int H = 64, W = 128, D = 4;
    omp_set_num_threads(1);
    printf("CPU: %s; OpenBLAS kernels: %s; 1 thread, CPU time, min of %d interleaved repetitions\n", ms_cpu_name(),
           ms_blas_core(), reps);
    ms_model_config cfg = {D, F, 5, 0.1f, 0, 0};
    ms_model *m;
    if (ms_model_create(&m, &cfg, 1) || ms_model_freeze(m)) return 1;
    ms_rng r;
    ms_rng_seed(&r, 7);
    layer L[2 * (2 * D + 1)];
    int nl = 0;
    for (int b = 0; b < 2 * D + 1; b++) {
        const int lev = b < D ? b : b == D ? D : 2 * D - b;
        const ms_rb_off *o = b < D ? &m->enc[b] : b == D ? &m->bott : &m->dec[b - D - 1];
        const ms_rb_plan *p = b < D ? &m->penc[b] : b == D ? &m->pbott : &m->pdec[b - D - 1];
        const char *where = b < D ? "enc" : b == D ? "bott" : "dec";
        for (int k = 0; k < 2; k++) {
            layer *l = &L[nl++];
            memset(l, 0, sizeof *l);
            l->where = where, l->level = lev, l->H = H >> lev, l->W = W >> lev, l->Cout = o->c;
            l->Cin = k ? o->c : o->cin, l->Cextra = k ? o->cin : 0;
            l->w = m->plan + (k ? p->w2 : p->w1), l->bias = m->plan + (k ? p->b2 : p->b1);
            const size_t u = k ? p->u2 : p->u1;
            l->U = u != MS_NO_WINO ? m->plan + u : NULL;
            const size_t v = k ? p->v2 : p->v1;
            l->U4 = v != MS_NO_WINO ? m->plan + v : NULL;
            l->n = conv3x3_candidates(CONV_OP_INFER, 1, l->Cin, l->Cextra, l->Cout, l->H, l->W,
                                      (l->U ? CONV_HAVE_U : 0) | (l->U4 ? CONV_HAVE_U4 : 0), l->cands);
            for (int i = 0; i < CONV_NALGO; i++) l->best[i] = 1e30;
        }
    }
    size_t wsn = 0, maxc = 0;
    for (int i = 0; i < nl; i++) {
        const size_t a = conv3x3_infer_ws_floats(1, L[i].Cin, L[i].Cextra, L[i].Cout, L[i].H, L[i].W);
        if (a > wsn) wsn = a;
        const size_t c = (size_t)(L[i].Cin + L[i].Cextra + L[i].Cout) * L[i].H * L[i].W;
        if (c > maxc) maxc = c;
    }
    float *ws = rnd(wsn, &r), *inp = rnd(maxc, &r), *out = rnd(maxc, &r);
    float *x = rnd((size_t)H * W, &r);
    uint8_t *lab = malloc((size_t)H * W);
    double whole = 1e30, other[4] = {1e30, 1e30, 1e30, 1e30}, up_best[MS_MAX_DEPTH];
    for (int i = 0; i < D; i++) up_best[i] = 1e30;
    ms_acts a;
    if (ms_acts_create(&a, m, 1, H, W, 0)) return 1;
    ms_model_predict(m, x, 1, H, W, lab, NULL);
    for (int rep = 0; rep < reps; rep++) {
        double t = cpu_now();
        ms_model_predict(m, x, 1, H, W, lab, NULL);
        t = cpu_now() - t;
        if (t < whole) whole = t;
        for (int i = 0; i < nl; i++) {
            layer *l = &L[i];
            const float *extra = inp + (size_t)l->Cin * l->H * l->W;
            for (int c = 0; c < l->n; c++) {
                conv_plan_force(l->cands[c]);
                t = cpu_now();
                conv3x3_infer(out, inp, l->Cextra ? extra : NULL, l->Cextra, l->w, l->U, l->U4, l->bias, 1, 1, l->Cin, l->Cout,
                              l->H, l->W, ws);
                t = cpu_now() - t;
                if (t < l->best[l->cands[c]]) l->best[l->cands[c]] = t;
            }
        }
        conv_plan_force(-1);
        /* the rest of ms_unet_forward_infer: transposed convolutions, pooling, the head */
        double up = 0;
        for (int i = 0; i < D; i++) {
            const int lv = D - 1 - i;
            t = cpu_now();
            convt2x2_infer(a.cat[lv], inp, m->params + m->upw[i], m->plan + m->upt[i], m->params + m->upb[i], 1,
                           m->ch[lv + 1], m->ch[lv], a.dec[i].h / 2, a.dec[i].w / 2, a.ws);
            t = cpu_now() - t;
            if (t < up_best[i]) up_best[i] = t;
            up += t;
        }
        if (up < other[0]) other[0] = up;
        t = cpu_now();
        for (int lv = 0; lv < D; lv++) maxpool2x2_forward(a.pool[lv], inp, (size_t)m->ch[lv], H >> lv, W >> lv);
        t = cpu_now() - t;
        if (t < other[1]) other[1] = t;
        t = cpu_now();
        conv1x1_forward(a.logits, inp, m->params + m->headw, m->params + m->headb, (size_t)H * W, F, 5);
        t = cpu_now() - t;
        if (t < other[2]) other[2] = t;
    }
    double chosen_sum = 0;
    printf("%-5s %5s %9s %8s  %-16s %8s %8s  candidates (ms)\n", "block", "level", "channels", "size", "fastest", "ms",
           "GFLOP/s");
    for (int i = 0; i < nl; i++) {
        const layer *l = &L[i];
        int bi = l->cands[0];
        for (int c = 0; c < l->n; c++)
            if (l->best[l->cands[c]] < l->best[bi]) bi = l->cands[c];
        const double flop = 2.0 * l->H * l->W * l->Cout * (9.0 * l->Cin + l->Cextra);
        char ch[32], sz[16];
        snprintf(ch, sizeof ch, l->Cextra ? "%d+%d>%d" : "%d>%d", l->Cin, l->Cextra ? l->Cextra : l->Cout, l->Cout);
        snprintf(sz, sizeof sz, "%dx%d", l->H, l->W);
        printf("%-5s %5d %9s %8s  %-16s %8.3f %8.1f ", l->where, l->level, ch, sz, conv_algo_name(bi, CONV_OP_INFER),
               l->best[bi] * 1e3, flop / l->best[bi] / 1e9);
        for (int c = 0; c < l->n; c++)
            printf(" %s %.3f", conv_algo_name(l->cands[c], CONV_OP_INFER), l->best[l->cands[c]] * 1e3);
        printf("\n");
        chosen_sum += l->best[bi];
    }
    printf("3x3 convolutions, each at its fastest: %.2f ms\n", chosen_sum * 1e3);
    printf("transposed 2x2 convolutions %.2f ms (", other[0] * 1e3);
    for (int i = 0; i < D; i++) printf("%slevel %d %.3f", i ? ", " : "", D - 1 - i, up_best[i] * 1e3);
    printf("), max-pooling %.2f ms, head %.2f ms\n", other[1] * 1e3, other[2] * 1e3);
    printf("ms_model_predict, batch 1, %dx%d, F=%d: %.2f ms\n", H, W, F, whole * 1e3);
    ms_acts_free(&a);
    ms_model_free(m);
    free(ws), free(inp), free(out), free(x), free(lab);
    return 0;
}
