/* The attention gates of model.attention (Oktay et al. 2018, "Attention U-Net"; the gate of the
 * widely used PyTorch AttU_Net, LeeJunHyun/Image_Segmentation's Attention_block): at decoder
 * level l, with g the up-convolution's output and x the encoder's skip (c channels each),
 *
 *   s    = relu(bg(wg(g)) + bx(wx(x)))      wg, wx: 1x1 convolutions c -> f = max(c/2, 1), bias
 *   psi  = sigmoid(bpsi(psi(s)))            psi: 1x1 convolution f -> 1, bias
 *   skip' = x * psi                         the decoder concatenates [up, skip'] as without
 *
 * bg, bx, bpsi are BatchNorms like the ResBlocks' (training and eval modes, running stats, the
 * same momentum; synchronised over a data-parallel run's processes with sync_bn). The graph
 * around them is core/unet.c's; the inference form folds each BatchNorm into its convolution and
 * runs both of the first convolutions as one over the concat [g; x], which is contiguous. */
#include "layers.h"
#include "unet.h"

#include <math.h>
#include <stdio.h>

/* The state_dict order of a PyTorch module registering wg, bg, wx, bx, psi, bpsi. */
void att_register(ms_table_builder *tb, ms_att_off *o, const char *prefix, int c) {
    const int f = c / 2 > 1 ? c / 2 : 1;
    char p[40];
    o->c = c;
    o->f = f;
    int64_t w[4] = {f, c, 1, 1}, bf[1] = {f}, wp[4] = {1, f, 1, 1}, b1[1] = {1};
    o->wgw = ms_table_add(tb, MS_T_PARAM, 4, w, "%s.wg.weight", prefix);
    o->wgb = ms_table_add(tb, MS_T_PARAM, 1, bf, "%s.wg.bias", prefix);
    snprintf(p, sizeof p, "%s.bg", prefix);
    ms_table_add_bn(tb, p, f, &o->bgg, &o->bgb, &o->bgrm, &o->bgrv);
    o->wxw = ms_table_add(tb, MS_T_PARAM, 4, w, "%s.wx.weight", prefix);
    o->wxb = ms_table_add(tb, MS_T_PARAM, 1, bf, "%s.wx.bias", prefix);
    snprintf(p, sizeof p, "%s.bx", prefix);
    ms_table_add_bn(tb, p, f, &o->bxg, &o->bxb, &o->bxrm, &o->bxrv);
    o->pw = ms_table_add(tb, MS_T_PARAM, 4, wp, "%s.psi.weight", prefix);
    o->pb = ms_table_add(tb, MS_T_PARAM, 1, b1, "%s.psi.bias", prefix);
    snprintf(p, sizeof p, "%s.bpsi", prefix);
    ms_table_add_bn(tb, p, 1, &o->bpg, &o->bpb, &o->bprm, &o->bprv);
}

/* out = bn(inp) in the graph's mode (train: batch statistics saved in mean/invstd and the
 * running stats moved; sync: over every process's share), + residual, ReLU if relu */
static void bn(ms_model *m, size_t g, size_t b, size_t rm, size_t rv, float *out, float *mean, float *invstd, const float *inp,
               const float *residual, int relu, int C, size_t N, int training, const ms_reducer *sync) {
    const float *P = m->params;
    float *bf = m->bufs;
    if (training && sync)
        batchnorm_forward_train_sync(out, mean, invstd, inp, P + g, P + b, bf + rm, bf + rv, residual, relu, C, N,
                                     BN_MOMENTUM, BN_EPS, sync);
    else if (training)
        batchnorm_forward_train(out, mean, invstd, inp, P + g, P + b, bf + rm, bf + rv, residual, relu, C, N,
                                BN_MOMENTUM, BN_EPS);
    else
        batchnorm_forward_eval(out, inp, P + g, P + b, bf + rm, bf + rv, residual, relu, C, N, BN_EPS);
}

void att_forward(ms_model *m, const ms_att_off *o, ms_att_acts *r, const float *up, const float *x, float *out,
                 size_t N, int training, const ms_reducer *sync) {
    const float *P = m->params;
    const int c = o->c, f = o->f;
    /* g's branch: (f, N) into s, through gc when training (backward needs the BN's input);
     * eval mode normalises s in place */
    float *gc = training ? r->gc : r->s;
    conv1x1_forward(gc, up, P + o->wgw, P + o->wgb, N, c, f);                               // (f,N)
    bn(m, o->bgg, o->bgb, o->bgrm, o->bgrv, r->s, r->mg, r->sg, gc, NULL, 0, f, N, training, sync);
    conv1x1_forward(r->xc, x, P + o->wxw, P + o->wxb, N, c, f);                             // (f,N)
    bn(m, o->bxg, o->bxb, o->bxrm, o->bxrv, r->s, r->mx, r->sx, r->xc, r->s, 1, f, N, training, sync); // s = relu(x1 + g1)
    conv1x1_forward(r->p, r->s, P + o->pw, P + o->pb, N, f, 1);                              // (1,N)
    bn(m, o->bpg, o->bpb, o->bprm, o->bprv, r->psi, r->mp, r->sp, r->p, NULL, 0, 1, N, training, sync);
    sigmoid_forward(r->psi, r->psi, N);
    gate_forward(out, x, r->psi, c, N);                                                      // (c,N)
}

static void bn_backward(const ms_model *m, size_t g, size_t b, float *G, float *dinp, const float *dout, const float *relu_out,
                        const float *inp, const float *mean, const float *invstd, int C, size_t N,
                        const ms_reducer *sync) {
    const float *P = m->params;
    if (sync)
        batchnorm_backward_sync(dinp, G + g, G + b, dout, relu_out, inp, mean, invstd, P + g, C, N, 0, sync);
    else
        batchnorm_backward(dinp, G + g, G + b, dout, relu_out, inp, mean, invstd, P + g, C, N, 0);
}

void att_backward(const ms_model *m, const ms_att_off *o, const ms_att_acts *r, float *G, float *dout, float *d_up,
                  const float *up, const float *x, size_t N, float *d_psi, float *scratch0, float *scratch1,
                  const ms_reducer *sync) {
    const float *P = m->params;
    const int c = o->c, f = o->f;
    float *ds = scratch0, *d = scratch1;
    gate_backward(dout, d_psi, dout, x, r->psi, c, N); /* d_psi (1,N); dout becomes x's direct share */
    sigmoid_backward(d_psi, d_psi, r->psi, N);
    bn_backward(m, o->bpg, o->bpb, G, d, d_psi, NULL, r->p, r->mp, r->sp, 1, N, sync);              // d: (1,N)
    conv1x1_backward(ds, G + o->pw, G + o->pb, d, r->s, P + o->pw, N, f, 1, 0);               // ds: (f,N)
    /* both branches see ds through the ReLU (s > 0) */
    bn_backward(m, o->bxg, o->bxb, G, d, ds, r->s, r->xc, r->mx, r->sx, f, N, sync);                // d: (f,N)
    conv1x1_backward(dout, G + o->wxw, G + o->wxb, d, x, P + o->wxw, N, c, f, 1);             // dout (c,N) +=
    bn_backward(m, o->bgg, o->bgb, G, d, ds, r->s, r->gc, r->mg, r->sg, f, N, sync);
    conv1x1_backward(d_up, G + o->wgw, G + o->wgb, d, up, P + o->wgw, N, c, f, 1);            // d_up (c,N) +=
}

/* Eval-mode BatchNorm is per channel out = in * scale + shift (scale = gamma/sqrt(var+eps),
 * shift = beta - mean*scale): folded into the rows of the convolution before it. */
void att_fold(const ms_model *m, const ms_att_off *o, ms_att_plan *p, size_t *pos) {
    const int c = o->c, f = o->f;
    p->w = *pos;
    *pos += (size_t)f * 2 * c;
    p->b = *pos;
    *pos += (size_t)f;
    p->wp = *pos;
    *pos += (size_t)f;
    p->bp = *pos;
    *pos += 1;
    float *L = m->plan;
    if (!L) return; /* sizing pass */
    const float *P = m->params, *bf = m->bufs;
    for (int j = 0; j < f; j++) {
        const float sg = P[o->bgg + j] / sqrtf(bf[o->bgrv + j] + BN_EPS);
        const float sx = P[o->bxg + j] / sqrtf(bf[o->bxrv + j] + BN_EPS);
        float *row = L + p->w + (size_t)j * 2 * c;
        for (int k = 0; k < c; k++) {
            row[k] = P[o->wgw + (size_t)j * c + k] * sg;
            row[c + k] = P[o->wxw + (size_t)j * c + k] * sx;
        }
        L[p->b + j] = (P[o->wgb + j] - bf[o->bgrm + j]) * sg + P[o->bgb + j] +
                      (P[o->wxb + j] - bf[o->bxrm + j]) * sx + P[o->bxb + j];
    }
    const float sp = P[o->bpg] / sqrtf(bf[o->bprv] + BN_EPS);
    for (int j = 0; j < f; j++) L[p->wp + j] = P[o->pw + j] * sp;
    L[p->bp] = (P[o->pb] - bf[o->bprm]) * sp + P[o->bpb];
}

/* Pixels per task of the inference tail, and the fewest pixels worth a parallel region (batch 1
 * at the deep levels has 128: a region's wake-up would cost more than the work). */
#define ATT_BLOCK 256
#define ATT_PAR_MIN 4096

void att_infer(const ms_model *m, const ms_att_plan *p, const ms_att_off *o, float *cat, float *s, float *psi, size_t N) {
    const float *L = m->plan, *b = L + p->b, *wp = L + p->wp;
    const int c = o->c, f = o->f;
    conv1x1_forward(s, cat, L + p->w, NULL, N, 2 * c, f); /* [wg | wx] . [g; x]: (f,N), bias below */
    /* the rest in one pass per pixel block: bias and ReLU, psi's 1x1 (f -> 1), sigmoid, and the
     * gate over the skip's channels (the concat's second half, in place) */
    float *x = cat + (size_t)c * N;
    const long nb = (long)((N + ATT_BLOCK - 1) / ATT_BLOCK);
#pragma omp parallel for schedule(static) if (N >= ATT_PAR_MIN)
    for (long bi = 0; bi < nb; bi++) {
        const size_t i0 = (size_t)bi * ATT_BLOCK, n = N - i0 < ATT_BLOCK ? N - i0 : ATT_BLOCK;
        float acc[ATT_BLOCK];
        for (size_t i = 0; i < n; i++) acc[i] = L[p->bp];
        for (int j = 0; j < f; j++) {
            const float *sj = s + (size_t)j * N + i0, bj = b[j], w = wp[j];
            for (size_t i = 0; i < n; i++) {
                const float v = sj[i] + bj;
                acc[i] += w * (v > 0.0f ? v : 0.0f);
            }
        }
        for (size_t i = 0; i < n; i++) psi[i0 + i] = 1.0f / (1.0f + expf(-acc[i]));
        for (int k = 0; k < c; k++) {
            float *xk = x + (size_t)k * N + i0;
            for (size_t i = 0; i < n; i++) xk[i] *= psi[i0 + i];
        }
    }
}
