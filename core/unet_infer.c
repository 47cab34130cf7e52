/* The U-Net's inference form (ms_model_freeze, ms_unet_forward_infer): eval-mode BatchNorm and
 * the 1x1 shortcuts folded into each ResBlock's convolutions, with their Winograd weights (F(2x2);
 * F(4x4) too at the top levels), and the up-convolutions' weights transposed for their kernel,
 * so an inference makes fewer passes over memory than ms_unet_forward in eval mode (the
 * attention gates' own folding is core/unet_att.c's). The graph and its parameter table are
 * core/unet.c's. */
#include "unet.h"

#include "layers.h"

#include <math.h>
#include <stdlib.h>

/* BN in eval mode is an affine map per channel (scale = gamma/sqrt(var+eps), shift = beta -
 * mean*scale), so it folds into the preceding convolution's output rows; the shortcut is a
 * linear map of the block input added before the final ReLU, so it joins conv2 as extra rows of
 * the column block. */
static void fold_block(const ms_model *m, const ms_rb_off *o, ms_rb_plan *p, int level, size_t *pos) {
    const float *P = m->params, *bf = m->bufs;
    const int cin = o->cin, c = o->c, k1 = 9 * cin, k2 = 9 * c + cin;
    p->w1 = *pos;
    *pos += (size_t)c * k1;
    p->b1 = *pos;
    *pos += (size_t)c;
    p->w2 = *pos;
    *pos += (size_t)c * k2;
    p->b2 = *pos;
    *pos += (size_t)c;
    /* Winograd weights wherever Winograd can run (the plan measures whether it pays); conv2's
     * with its shortcut as centre-tap channels, whose first c columns also serve the split form
     * (the shortcut as its own GEMM) */
    p->u1 = p->u2 = MS_NO_WINO;
    if (conv3x3_wino_channels_ok(c)) {
        p->u1 = *pos;
        *pos += conv3x3_wino_weight_floats(cin, 0, c);
        p->u2 = *pos;
        *pos += conv3x3_wino_weight_floats(c, cin, c);
    }
    p->v1 = p->v2 = MS_NO_WINO;
    if (conv3x3_wino_channels_ok(c) && level < MS_WINO4_LEVELS) {
        p->v1 = *pos;
        *pos += conv3x3_wino4_infer_weight_floats(cin, 0, c);
        p->v2 = *pos;
        *pos += conv3x3_wino4_infer_weight_floats(c, cin, c);
    }
    float *L = m->plan;
    if (!L) return; /* sizing pass */
    for (int co = 0; co < c; co++) {
        const float s1 = P[o->b1g + co] / sqrtf(bf[o->b1rv + co] + BN_EPS);
        const float s2 = P[o->b2g + co] / sqrtf(bf[o->b2rv + co] + BN_EPS);
        for (int k = 0; k < k1; k++) L[p->w1 + (size_t)co * k1 + k] = P[o->c1w + (size_t)co * k1 + k] * s1;
        L[p->b1 + co] = P[o->b1b + co] - bf[o->b1rm + co] * s1;
        for (int k = 0; k < 9 * c; k++) L[p->w2 + (size_t)co * k2 + k] = P[o->c2w + (size_t)co * 9 * c + k] * s2;
        for (int j = 0; j < cin; j++) L[p->w2 + (size_t)co * k2 + 9 * c + j] = P[o->scw + (size_t)co * cin + j];
        L[p->b2 + co] = P[o->b2b + co] - bf[o->b2rm + co] * s2 + P[o->scb + co];
    }
    if (p->u1 != MS_NO_WINO) conv3x3_wino_weights(L + p->u1, L + p->w1, (size_t)k1, cin, 0, c);
    if (p->u2 != MS_NO_WINO) conv3x3_wino_weights(L + p->u2, L + p->w2, (size_t)k2, c, cin, c);
    if (p->v1 != MS_NO_WINO) conv3x3_wino4_infer_weights(L + p->v1, L + p->w1, (size_t)k1, cin, 0, c);
    if (p->v2 != MS_NO_WINO) conv3x3_wino4_infer_weights(L + p->v2, L + p->w2, (size_t)k2, c, cin, c);
}

static size_t fold_all(ms_model *m) {
    size_t pos = 0;
    const int D = m->cfg.depth;
    for (int l = 0; l < D; l++) fold_block(m, &m->enc[l], &m->penc[l], l, &pos);
    fold_block(m, &m->bott, &m->pbott, D, &pos);
    for (int i = 0; i < D; i++) fold_block(m, &m->dec[i], &m->pdec[i], D - 1 - i, &pos);
    for (int i = 0; i < m->cfg.depth && m->cfg.attention; i++) att_fold(m, &m->att[i], &m->patt[i], &pos);
    for (int i = 0; i < m->cfg.depth; i++) { /* the up-convolutions' weights as their kernel reads them */
        const int l = m->cfg.depth - 1 - i;
        m->upt[i] = pos;
        pos += convt2x2_weights_t_floats(m->ch[l + 1], m->ch[l]);
        if (m->plan) convt2x2_weights_t(m->plan + m->upt[i], m->params + m->upw[i], m->ch[l + 1], m->ch[l]);
    }
    return pos;
}

ms_status ms_model_freeze(ms_model *m) {
    free(m->plan);
    m->plan = NULL;
    const size_t n = fold_all(m);
    if (!(m->plan = malloc(sizeof(float) * (n + 16)))) return ms_fail(MS_ERR_NOMEM, "model: inference form");
    fold_all(m);
    return MS_OK;
}

static void resblock_infer(const ms_model *m, const ms_rb_plan *p, ms_rb_acts *r, const float *inp, int B, float *ws) {
    const float *L = m->plan;
    const float *u1 = p->u1 != MS_NO_WINO ? L + p->u1 : NULL, *u2 = p->u2 != MS_NO_WINO ? L + p->u2 : NULL;
    const float *v1 = p->v1 != MS_NO_WINO ? L + p->v1 : NULL, *v2 = p->v2 != MS_NO_WINO ? L + p->v2 : NULL;
    conv3x3_infer(r->a1, inp, NULL, 0, L + p->w1, u1, v1, L + p->b1, 1, B, r->cin, r->c, r->h, r->w, ws);
    conv3x3_infer(r->out, r->a1, inp, r->cin, L + p->w2, u2, v2, L + p->b2, 1, B, r->c, r->c, r->h, r->w, ws);
}

void ms_unet_forward_infer(const ms_model *m, ms_acts *a, const float *x, int B) {
    const int D = m->cfg.depth;
    if (B > a->B) B = a->B; /* the buffers hold a->B images */
    const float *P = m->params;
    const float *h = x;
    for (int l = 0; l < D; l++) {
        /* The encoder output is the second half of the level's concat buffer, and with B images
         * that half starts after C*B planes, not after the C*a->B planes the buffer was laid out
         * for: a batch smaller than the buffers (the last chunk of a large one) must write it
         * there, or the decoder reads the wrong skip. */
        ms_rb_acts enc = a->enc[l];
        enc.out = a->cat[l] + (size_t)m->ch[l] * B * enc.h * enc.w;
        resblock_infer(m, &m->penc[l], &enc, h, B, a->ws);
        maxpool2x2_forward(a->pool[l], enc.out, (size_t)m->ch[l] * B, enc.h, enc.w);
        h = a->pool[l];
    }
    resblock_infer(m, &m->pbott, &a->bott, h, B, a->ws);
    h = a->bott.out;
    for (int i = 0; i < D; i++) {
        const int l = D - 1 - i;
        ms_rb_acts *r = &a->dec[i];
        convt2x2_infer(a->cat[l], h, P + m->upw[i], m->plan + m->upt[i], P + m->upb[i], B, m->ch[l + 1], m->ch[l],
                       r->h / 2, r->w / 2, a->ws);
        if (m->cfg.attention) /* the encoder left the raw skip in the concat: gated in place */
            att_infer(m, &m->patt[i], &m->att[i], a->cat[l], a->att[i].s, a->att[i].psi, (size_t)B * r->h * r->w);
        resblock_infer(m, &m->pdec[i], r, a->cat[l], B, a->ws);
        h = r->out;
    }
    conv1x1_forward(a->logits, h, P + m->headw, P + m->headb, (size_t)B * a->H * a->W, m->ch[0],
                    m->cfg.classes);
}
