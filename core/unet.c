/* The marsseg U-Net: parameter table, activation layout and the forward/backward graph (the
 * folded inference form is core/unet_infer.c's).
 *
 *   enc l = 0..D-1 : ResBlock(C_{l-1} -> C_l), kept as skip, 2x2 max-pool
 *   bott           : ResBlock(C_{D-1} -> C_D), dropout
 *   dec i = 0..D-1 : (level l = D-1-i) ConvTranspose 2x2/2 (C_{l+1} -> C_l), concat [up, skip],
 *                    ResBlock(2C_l -> C_l), dropout; with model.attention the skip is first
 *                    gated by the up's output (core/unet_att.c)
 *   head           : conv1x1(F -> classes)
 *   ResBlock(x)    : relu(bn2(conv3x3(relu(bn1(conv3x3(x))))) + conv1x1(x))
 *
 * The concat costs nothing: the encoder block writes its output into the second half of the
 * level's concat buffer and the up-convolution into the first half. */
#include "unet.h"

#include "layers.h"
#include "rng.h"
#include "util.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ parameter table */

#include <stdarg.h>
size_t ms_table_add(ms_table_builder *tb, ms_tensor_kind kind, int ndim, const int64_t *shape, const char *fmt, ...) {
    ms_model *m = tb->m;
    if (tb->st != MS_OK) return 0;
    if (m->ntensors == tb->cap) {
        int cap = tb->cap ? tb->cap * 2 : 64;
        ms_tensor_info *t = realloc(m->tensors, sizeof *t * cap);
        if (!t) {
            tb->st = ms_fail(MS_ERR_NOMEM, "model: tensor table");
            return 0;
        }
        m->tensors = t;
        tb->cap = cap;
    }
    ms_tensor_info *t = &m->tensors[m->ntensors++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->kind = kind;
    t->ndim = ndim;
    t->count = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->count *= (size_t)shape[i];
    }
    if (kind == MS_T_PARAM) {
        t->offset = m->nparams;
        m->nparams += t->count;
    } else if (kind == MS_T_BUFFER) {
        t->offset = m->nbufs;
        m->nbufs += t->count;
    }
    return t->offset;
}

void ms_table_add_bn(ms_table_builder *tb, const char *prefix, int c, size_t *g, size_t *b, size_t *rm, size_t *rv) {
    int64_t s[1] = {c};
    *g = ms_table_add(tb, MS_T_PARAM, 1, s, "%s.weight", prefix);
    *b = ms_table_add(tb, MS_T_PARAM, 1, s, "%s.bias", prefix);
    *rm = ms_table_add(tb, MS_T_BUFFER, 1, s, "%s.running_mean", prefix);
    *rv = ms_table_add(tb, MS_T_BUFFER, 1, s, "%s.running_var", prefix);
    ms_table_add(tb, MS_T_COUNTER, 0, s, "%s.num_batches_tracked", prefix);
}

/* Registers a ResBlock in the same order as PyTorch's state_dict lists it. */
static void add_resblock(ms_table_builder *tb, ms_rb_off *rb, const char *prefix, int cin, int c) {
    char p[40];
    rb->cin = cin;
    rb->c = c;
    int64_t w3a[4] = {c, cin, 3, 3}, w3b[4] = {c, c, 3, 3}, w1[4] = {c, cin, 1, 1}, b1[1] = {c};
    rb->c1w = ms_table_add(tb, MS_T_PARAM, 4, w3a, "%s.c1.weight", prefix);
    snprintf(p, sizeof p, "%s.b1", prefix);
    ms_table_add_bn(tb, p, c, &rb->b1g, &rb->b1b, &rb->b1rm, &rb->b1rv);
    rb->c2w = ms_table_add(tb, MS_T_PARAM, 4, w3b, "%s.c2.weight", prefix);
    snprintf(p, sizeof p, "%s.b2", prefix);
    ms_table_add_bn(tb, p, c, &rb->b2g, &rb->b2b, &rb->b2rm, &rb->b2rv);
    rb->scw = ms_table_add(tb, MS_T_PARAM, 4, w1, "%s.sc.weight", prefix);
    rb->scb = ms_table_add(tb, MS_T_PARAM, 1, b1, "%s.sc.bias", prefix);
}

static ms_status validate_config(const ms_model_config *c) {
    if (c->depth < 1 || c->depth > MS_MAX_DEPTH)
        return ms_fail(MS_ERR_ARG, "model: depth must be 1..%d (got %d)", MS_MAX_DEPTH, c->depth);
    if (c->base < 1 || c->base > MS_MAX_BASE)
        return ms_fail(MS_ERR_ARG, "model: base must be 1..%d (got %d)", MS_MAX_BASE, c->base);
    if ((long)c->base << c->depth > MS_MAX_WIDTH)
        return ms_fail(MS_ERR_ARG, "model: base*2^depth must be <= %d (got %ld)", MS_MAX_WIDTH, (long)c->base << c->depth);
    if (c->classes < 2 || c->classes > 64)
        return ms_fail(MS_ERR_ARG, "model: classes must be 2..64 (got %d)", c->classes);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return ms_fail(MS_ERR_ARG, "model: dropout must be in [0, 1) (got %g)", (double)c->dropout);
    if (c->attention != 0 && c->attention != 1)
        return ms_fail(MS_ERR_ARG, "model: attention must be 0 or 1 (got %d)", c->attention);
    return MS_OK;
}

/* Builds the table and allocates zeroed params/buffers (BN running_var = 1, gamma = 1). */
static ms_status model_alloc(ms_model **out, const ms_model_config *cfg) {
    ms_status st = validate_config(cfg);
    if (st) return st;
    ms_model *m = calloc(1, sizeof *m);
    if (!m) return ms_fail(MS_ERR_NOMEM, "model: allocation");
    m->cfg = *cfg;
    const int D = cfg->depth, F = cfg->base;
    for (int l = 0; l <= D; l++) m->ch[l] = F << l;
    ms_table_builder tb = {m, 0, MS_OK};
    char p[32];
    for (int l = 0; l < D; l++) {
        snprintf(p, sizeof p, "enc.%d", l);
        add_resblock(&tb, &m->enc[l], p, l == 0 ? 1 : m->ch[l - 1], m->ch[l]);
    }
    add_resblock(&tb, &m->bott, "bott", m->ch[D - 1], m->ch[D]);
    for (int i = 0; i < D; i++) {
        const int l = D - 1 - i;
        int64_t w[4] = {m->ch[l + 1], m->ch[l], 2, 2}, b[1] = {m->ch[l]};
        m->upw[i] = ms_table_add(&tb, MS_T_PARAM, 4, w, "up.%d.weight", i);
        m->upb[i] = ms_table_add(&tb, MS_T_PARAM, 1, b, "up.%d.bias", i);
    }
    for (int i = 0; i < D; i++) {
        const int l = D - 1 - i;
        snprintf(p, sizeof p, "dec.%d", i);
        add_resblock(&tb, &m->dec[i], p, 2 * m->ch[l], m->ch[l]);
        if (cfg->attention) {
            snprintf(p, sizeof p, "dec.%d.att", i);
            att_register(&tb, &m->att[i], p, m->ch[l]);
        }
    }
    {
        int64_t w[4] = {cfg->classes, F, 1, 1}, b[1] = {cfg->classes};
        m->headw = ms_table_add(&tb, MS_T_PARAM, 4, w, "head.weight");
        m->headb = ms_table_add(&tb, MS_T_PARAM, 1, b, "head.bias");
    }
    if (tb.st) {
        ms_model_free(m);
        return tb.st;
    }
    m->params = calloc(m->nparams, sizeof(float));
    m->bufs = calloc(m->nbufs, sizeof(float));
    if (!m->params || !m->bufs) {
        ms_model_free(m);
        return ms_fail(MS_ERR_NOMEM, "model: %zu parameters", m->nparams);
    }
    for (int i = 0; i < m->ntensors; i++) {
        const ms_tensor_info *t = &m->tensors[i];
        const size_t n = strlen(t->name);
        if (t->kind == MS_T_BUFFER && n > 12 && strcmp(t->name + n - 12, ".running_var") == 0)
            for (size_t j = 0; j < t->count; j++) m->bufs[t->offset + j] = 1.0f;
    }
    *out = m;
    return MS_OK;
}

const ms_tensor_info *ms_model_find_tensor(const ms_model *m, const char *name) {
    for (int i = 0; i < m->ntensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

/* PyTorch's default init: conv/convT weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 * (kaiming_uniform with a=sqrt(5)); fan_in of a ConvTranspose weight (Cin,Cout,k,k) is Cout*k*k.
 * BN: gamma 1, beta 0. */
ms_status ms_model_create(ms_model **out, const ms_model_config *cfg, uint64_t seed) {
    ms_model *m;
    ms_status st = model_alloc(&m, cfg);
    if (st) return st;
    ms_rng rng;
    ms_rng_seed(&rng, seed);
    for (int i = 0; i < m->ntensors; i++) {
        const ms_tensor_info *t = &m->tensors[i];
        if (t->kind != MS_T_PARAM) continue;
        float *p = m->params + t->offset;
        const char *dot = strrchr(t->name, '.');
        /* a BatchNorm's parameters are those whose module has running statistics */
        char rm[sizeof t->name + 16];
        snprintf(rm, sizeof rm, "%.*s.running_mean", (int)(dot - t->name), t->name);
        if (ms_model_find_tensor(m, rm)) {
            const float v = strcmp(dot, ".weight") == 0 ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->count; j++) p[j] = v;
            continue;
        }
        /* fan_in: for weights from the shape; for a bias, from its weight (the previous tensor) */
        const ms_tensor_info *w = (t->ndim == 1 && i > 0) ? &m->tensors[i - 1] : t;
        /* shape[1] is Cin for a conv and Cout for a ConvTranspose: PyTorch uses it for both */
        const double fan_in = (double)w->shape[1] * w->shape[2] * w->shape[3];
        const float bound = (float)(1.0 / sqrt(fan_in));
        for (size_t j = 0; j < t->count; j++) p[j] = (2.0f * ms_rng_float(&rng) - 1.0f) * bound;
    }
    *out = m;
    return MS_OK;
}

void ms_model_free(ms_model *m) {
    if (!m) return;
    free(m->tensors);
    free(m->params);
    free(m->bufs);
    free(m->meta_json);
    free(m->plan);
    free(m);
}

ms_status ms_model_clone(ms_model **out, const ms_model *src) {
    ms_model *m;
    ms_status st = model_alloc(&m, &src->cfg);
    if (st) return st;
    memcpy(m->params, src->params, sizeof(float) * m->nparams);
    memcpy(m->bufs, src->bufs, sizeof(float) * m->nbufs);
    m->num_batches_tracked = src->num_batches_tracked;
    if (src->meta_json && !(m->meta_json = strdup(src->meta_json))) {
        ms_model_free(m);
        return ms_fail(MS_ERR_NOMEM, "model: clone");
    }
    *out = m;
    return MS_OK;
}

const ms_model_config *ms_model_get_config(const ms_model *m) { return &m->cfg; }
size_t ms_model_num_params(const ms_model *m) { return m->nparams; }
const char *ms_model_meta(const ms_model *m) { return m->meta_json ? m->meta_json : "{}"; }

ms_status ms_model_alloc_internal(ms_model **out, const ms_model_config *cfg) { return model_alloc(out, cfg); }

/* ------------------------------------------------------------------ activations */

typedef struct {
    float *base;
    size_t used;
} bump;

static float *take(bump *b, size_t n) {
    float *p = b->base ? b->base + b->used : NULL;
    b->used += (n + 15) & ~(size_t)15; /* 64-byte alignment of every tensor */
    return p;
}

/* Lays out every activation; called twice: once to size (base NULL), once to assign. */
static void layout(ms_acts *a, const ms_model *m, bump *fb, bump *gb, size_t *mask_bytes, size_t *scratch) {
    const int D = m->cfg.depth, B = a->B, K = m->cfg.classes;
    const int train = a->training, drop = train && m->cfg.dropout > 0.0f;
    size_t N[MS_MAX_DEPTH + 1];
    int hs[MS_MAX_DEPTH + 1], wsz[MS_MAX_DEPTH + 1];
    for (int l = 0; l <= D; l++) {
        hs[l] = a->H >> l;
        wsz[l] = a->W >> l;
        N[l] = (size_t)B * hs[l] * wsz[l];
    }
    size_t masks = 0, scr = 0;
#define BLOCK(rb, cin_, c_, l)                                                      \
    do {                                                                           \
        (rb).cin = (cin_);                                                         \
        (rb).c = (c_);                                                             \
        (rb).h = hs[l];                                                            \
        (rb).w = wsz[l];                                                           \
        (rb).c1 = take(fb, (size_t)(c_) * N[l]);                                   \
        (rb).a1 = take(fb, (size_t)(c_) * N[l]);                                   \
        (rb).c2 = take(fb, (size_t)(c_) * N[l]);                                   \
        (rb).m1 = take(fb, (c_));                                                  \
        (rb).s1 = take(fb, (c_));                                                  \
        (rb).m2 = take(fb, (c_));                                                  \
        (rb).s2 = take(fb, (c_));                                                  \
        if ((size_t)(c_) * N[l] > scr) scr = (size_t)(c_) * N[l];                  \
    } while (0)
    for (int l = 0; l < D; l++) {
        const int C = m->ch[l];
        a->cat[l] = take(fb, (size_t)2 * C * N[l]);
        BLOCK(a->enc[l], l == 0 ? 1 : m->ch[l - 1], C, l);
        /* with attention, training keeps the raw skip for backward and gates it into the concat */
        if (m->cfg.attention && train) a->enc[l].out = take(fb, (size_t)C * N[l]);
        else a->enc[l].out = a->cat[l] ? a->cat[l] + (size_t)C * N[l] : NULL;
        a->pool[l] = take(fb, (size_t)C * N[l + 1]);
        if (train) {
            a->d_cat[l] = take(gb, (size_t)2 * C * N[l]);
            a->d_pool[l] = take(gb, (size_t)C * N[l + 1]);
        }
    }
    BLOCK(a->bott, m->ch[D - 1], m->ch[D], D);
    a->bott.out = take(fb, (size_t)m->ch[D] * N[D]);
    if (train) a->d_bott = take(gb, (size_t)m->ch[D] * N[D]);
    if (drop) {
        a->bott_drop = take(fb, (size_t)m->ch[D] * N[D]);
        a->d_bott_drop = take(gb, (size_t)m->ch[D] * N[D]);
        masks += (size_t)m->ch[D] * N[D];
    } else {
        a->bott_drop = a->bott.out;
        a->d_bott_drop = a->d_bott;
    }
    for (int i = 0; i < D; i++) {
        const int l = D - 1 - i, C = m->ch[l];
        BLOCK(a->dec[i], 2 * C, C, l);
        if (m->cfg.attention) {
            ms_att_acts *g = &a->att[i];
            const int f = m->att[i].f;
            g->c = C;
            g->f = f;
            g->gc = train ? take(fb, (size_t)f * N[l]) : NULL;
            g->xc = take(fb, (size_t)f * N[l]);
            g->s = take(fb, (size_t)f * N[l]);
            g->p = take(fb, N[l]);
            g->psi = take(fb, N[l]);
            g->mg = take(fb, f);
            g->sg = take(fb, f);
            g->mx = take(fb, f);
            g->sx = take(fb, f);
            g->mp = take(fb, 1);
            g->sp = take(fb, 1);
            if (train) a->d_att_psi[i] = take(gb, N[l]);
        }
        a->dec[i].out = take(fb, (size_t)C * N[l]);
        if (train) a->d_dec[i] = take(gb, (size_t)C * N[l]);
        if (drop) {
            a->dec_drop[i] = take(fb, (size_t)C * N[l]);
            a->d_dec_drop[i] = take(gb, (size_t)C * N[l]);
            masks += (size_t)C * N[l];
        } else {
            a->dec_drop[i] = a->dec[i].out;
            a->d_dec_drop[i] = a->d_dec[i];
        }
    }
    a->logits = take(fb, (size_t)K * N[0]);
    if (train) a->d_logits = take(gb, (size_t)K * N[0]);
#undef BLOCK
    *mask_bytes = masks;
    *scratch = scr;
}

ms_status ms_acts_create(ms_acts *a, const ms_model *m, int B, int H, int W, int training) {
    memset(a, 0, sizeof *a);
    const int D = m->cfg.depth;
    if (B < 1 || H < 1 || W < 1 || H % (1 << D) || W % (1 << D))
        return ms_fail(MS_ERR_SHAPE, "model: input %dx%dx%d: B must be >= 1 and H, W multiples of %d",
                       B, H, W, 1 << D);
    if ((double)B * H * W * m->ch[0] > 4e9)
        return ms_fail(MS_ERR_LIMIT, "model: input %dx%dx%d too large", B, H, W);
    a->B = B;
    a->H = H;
    a->W = W;
    a->training = training;
    bump fb = {NULL, 0}, gb = {NULL, 0};
    size_t mask_bytes, scratch;
    layout(a, m, &fb, &gb, &mask_bytes, &scratch);
    /* the conv workspace serves the largest 3x3 im2col and transposed-conv scatter */
    size_t ws = 0;
    for (int l = 0; l <= D; l++) {
        const int h = H >> l, w = W >> l;
        const ms_rb_off *blocks[2] = {l < D ? &m->enc[l] : &m->bott, l < D ? &m->dec[D - 1 - l] : &m->bott};
        for (int k = 0; k < 2; k++) {
            ws = MS_MAX(ws, conv3x3_ws_floats(B, blocks[k]->cin, blocks[k]->c, h, w));
            ws = MS_MAX(ws, conv3x3_ws_floats(B, blocks[k]->c, blocks[k]->c, h, w));
            if (!training) {
                ws = MS_MAX(ws, conv3x3_infer_ws_floats(B, blocks[k]->cin, 0, blocks[k]->c, h, w));
                ws = MS_MAX(ws, conv3x3_infer_ws_floats(B, blocks[k]->c, blocks[k]->cin, blocks[k]->c, h, w));
            }
        }
        if (l < D) ws = MS_MAX(ws, convt2x2_ws_floats(B, m->ch[l], h >> 1, w >> 1));
    }
    size_t dws = 0;
    for (int l = 0; l <= D; l++) {
        const ms_rb_off *blocks[2] = {l < D ? &m->enc[l] : &m->bott, l < D ? &m->dec[D - 1 - l] : &m->bott};
        for (int k = 0; k < 2; k++) dws = MS_MAX(dws, conv3x3_dw_floats(MS_MAX(blocks[k]->cin, blocks[k]->c), blocks[k]->c));
    }
    a->ws_floats = ws;
    a->arena = aligned_alloc(64, sizeof(float) * (fb.used + 16));
    a->ws = aligned_alloc(64, sizeof(float) * ((ws + 15) & ~(size_t)15));
    int ok = a->arena && a->ws;
    if (training) {
        a->grad_arena = aligned_alloc(64, sizeof(float) * (gb.used + 16));
        a->dw_ws = aligned_alloc(64, sizeof(float) * ((dws + 15) & ~(size_t)15));
        ok = ok && a->grad_arena && a->dw_ws;
        for (int i = 0; i < 3 && ok; i++) {
            a->scratch[i] = aligned_alloc(64, sizeof(float) * ((scratch + 15) & ~(size_t)15));
            ok = a->scratch[i] != NULL;
        }
        if (mask_bytes) {
            a->masks = malloc(mask_bytes);
            ok = ok && a->masks;
        }
    }
    if (!ok) {
        ms_acts_free(a);
        return ms_fail(MS_ERR_NOMEM, "model: activations for batch %d of %dx%d (%.0f MB)", B, H, W,
                       (double)(fb.used + gb.used * 2 + ws) * 4 / 1e6);
    }
    a->arena_floats = fb.used;
    fb.base = a->arena;
    fb.used = 0;
    gb.base = a->grad_arena;
    gb.used = 0;
    layout(a, m, &fb, &gb, &mask_bytes, &scratch);
    if (a->masks) {
        size_t off = 0;
        a->bott_mask = a->masks;
        off += (size_t)m->ch[D] * B * (H >> D) * (W >> D);
        for (int i = 0; i < D; i++) {
            const int l = D - 1 - i;
            a->dec_mask[i] = a->masks + off;
            off += (size_t)m->ch[l] * B * (H >> l) * (W >> l);
        }
    }
    return MS_OK;
}

void ms_acts_free(ms_acts *a) {
    free(a->arena);
    free(a->grad_arena);
    free(a->masks);
    free(a->ws);
    free(a->dw_ws);
    for (int i = 0; i < 3; i++) free(a->scratch[i]);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------------ forward */

static void resblock_forward(ms_model *m, const ms_rb_off *o, ms_rb_acts *r, const float *inp,
                             int B, int training, float *ws, const ms_reducer *sync) {
    const float *P = m->params;
    float *bf = m->bufs;
    const size_t N = (size_t)B * r->h * r->w;
    r->inp = inp;
    conv3x3_forward(r->c1, inp, P + o->c1w, B, o->cin, o->c, r->h, r->w, ws);
    if (training && sync)
        batchnorm_forward_train_sync(r->a1, r->m1, r->s1, r->c1, P + o->b1g, P + o->b1b, bf + o->b1rm,
                                     bf + o->b1rv, NULL, 1, o->c, N, BN_MOMENTUM, BN_EPS, sync);
    else if (training)
        batchnorm_forward_train(r->a1, r->m1, r->s1, r->c1, P + o->b1g, P + o->b1b, bf + o->b1rm,
                                bf + o->b1rv, NULL, 1, o->c, N, BN_MOMENTUM, BN_EPS);
    else
        batchnorm_forward_eval(r->a1, r->c1, P + o->b1g, P + o->b1b, bf + o->b1rm, bf + o->b1rv,
                               NULL, 1, o->c, N, BN_EPS);
    conv3x3_forward(r->c2, r->a1, P + o->c2w, B, o->c, o->c, r->h, r->w, ws);
    /* shortcut into out, then out = relu(bn2(c2) + out) in one pass */
    conv1x1_forward(r->out, inp, P + o->scw, P + o->scb, N, o->cin, o->c);
    if (training && sync)
        batchnorm_forward_train_sync(r->out, r->m2, r->s2, r->c2, P + o->b2g, P + o->b2b, bf + o->b2rm,
                                     bf + o->b2rv, r->out, 1, o->c, N, BN_MOMENTUM, BN_EPS, sync);
    else if (training)
        batchnorm_forward_train(r->out, r->m2, r->s2, r->c2, P + o->b2g, P + o->b2b, bf + o->b2rm,
                                bf + o->b2rv, r->out, 1, o->c, N, BN_MOMENTUM, BN_EPS);
    else
        batchnorm_forward_eval(r->out, r->c2, P + o->b2g, P + o->b2b, bf + o->b2rm, bf + o->b2rv,
                               r->out, 1, o->c, N, BN_EPS);
}

void ms_unet_forward(ms_model *m, ms_acts *a, const float *x, int training, uint64_t dropout_seed) {
    const int D = m->cfg.depth, B = a->B;
    const float p = m->cfg.dropout;
    const int drop = training && p > 0.0f && a->masks;
    const float *P = m->params;
    const float *h = x;
    if (training) m->num_batches_tracked++;
    for (int l = 0; l < D; l++) {
        resblock_forward(m, &m->enc[l], &a->enc[l], h, B, training, a->ws, a->bn_sync);
        maxpool2x2_forward(a->pool[l], a->enc[l].out, (size_t)m->ch[l] * B, a->enc[l].h, a->enc[l].w);
        h = a->pool[l];
    }
    resblock_forward(m, &m->bott, &a->bott, h, B, training, a->ws, a->bn_sync);
    const size_t nb = (size_t)m->ch[D] * B * a->bott.h * a->bott.w;
    if (drop) dropout_forward(a->bott_drop, a->bott_mask, a->bott.out, nb, p, dropout_seed);
    h = drop ? a->bott_drop : a->bott.out;
    for (int i = 0; i < D; i++) {
        const int l = D - 1 - i;
        ms_rb_acts *r = &a->dec[i];
        convt2x2_forward(a->cat[l], h, P + m->upw[i], P + m->upb[i], B, m->ch[l + 1], m->ch[l],
                         r->h / 2, r->w / 2, a->ws);
        if (m->cfg.attention) {
            const size_t N = (size_t)B * r->h * r->w;
            att_forward(m, &m->att[i], &a->att[i], a->cat[l], a->enc[l].out, a->cat[l] + (size_t)m->ch[l] * N, N,
                        training, a->bn_sync);
        }
        resblock_forward(m, &m->dec[i], r, a->cat[l], B, training, a->ws, a->bn_sync);
        const size_t n = (size_t)m->ch[l] * B * r->h * r->w;
        if (drop) dropout_forward(a->dec_drop[i], a->dec_mask[i], r->out, n, p, dropout_seed + 1 + i);
        h = drop ? a->dec_drop[i] : r->out;
    }
    conv1x1_forward(a->logits, h, P + m->headw, P + m->headb, (size_t)B * a->H * a->W, m->ch[0],
                    m->cfg.classes);
}

/* ------------------------------------------------------------------ backward */

/* dout: gradient of the block output (C,N); dinp (Cin,N) += input gradient (NULL: not needed) */
static void resblock_backward(const ms_model *m, const ms_rb_off *o, const ms_rb_acts *r, float *G,
                              const float *dout, float *dinp, int B, float *ws, float *dw_ws, float *scratch[3],
                              const ms_reducer *sync) {
    const float *P = m->params;
    const size_t N = (size_t)B * r->h * r->w, cn = (size_t)o->c * N;
    float *g = scratch[0], *dc = scratch[1], *da1 = scratch[2];
    relu_backward(g, dout, r->out, cn);                        /* through the final relu */
    /* the shortcut is the first writer of dinp: it overwrites, the 3x3 conv below adds */
    conv1x1_backward(dinp, G + o->scw, G + o->scb, g, r->inp, P + o->scw, N, o->cin, o->c, 0);
    if (sync)
        batchnorm_backward_sync(dc, G + o->b2g, G + o->b2b, g, NULL, r->c2, r->m2, r->s2, P + o->b2g, o->c, N, 0, sync);
    else
        batchnorm_backward(dc, G + o->b2g, G + o->b2b, g, NULL, r->c2, r->m2, r->s2, P + o->b2g, o->c, N, 0);
    conv3x3_backward(da1, G + o->c2w, dc, r->a1, P + o->c2w, B, o->c, o->c, r->h, r->w, ws, dw_ws, 0);
    if (sync)
        batchnorm_backward_sync(dc, G + o->b1g, G + o->b1b, da1, r->a1, r->c1, r->m1, r->s1, P + o->b1g, o->c, N, 0, sync);
    else
        batchnorm_backward(dc, G + o->b1g, G + o->b1b, da1, r->a1, r->c1, r->m1, r->s1, P + o->b1g, o->c, N, 0);
    conv3x3_backward(dinp, G + o->c1w, dc, r->inp, P + o->c1w, B, o->cin, o->c, r->h, r->w, ws, dw_ws, 1);
}

void ms_unet_backward(const ms_model *m, ms_acts *a, float *G) {
    const int D = m->cfg.depth, B = a->B;
    const float p = m->cfg.dropout;
    const int drop = a->masks != NULL;
    const float *P = m->params;
    /* No zeroing of activation gradients: each buffer's first writer overwrites it (the head and
     * the up-convolutions write the dropout-output gradients, dropout_backward the block-output
     * gradients, a block's shortcut its input gradient); later writers add. */
    const float *last = a->dec_drop[D - 1];
    conv1x1_backward(a->d_dec_drop[D - 1], G + m->headw, G + m->headb, a->d_logits, last,
                     P + m->headw, (size_t)B * a->H * a->W, m->ch[0], m->cfg.classes, 0);
    for (int i = D - 1; i >= 0; i--) {
        const int l = D - 1 - i;
        const ms_rb_acts *r = &a->dec[i];
        const size_t n = (size_t)m->ch[l] * B * r->h * r->w;
        if (drop) dropout_backward(a->d_dec[i], a->d_dec_drop[i], a->dec_mask[i], n, p, 0);
        resblock_backward(m, &m->dec[i], r, G, a->d_dec[i], a->d_cat[l], B, a->ws, a->dw_ws, a->scratch, a->bn_sync);
        if (m->cfg.attention) { /* the skip's gradient becomes the raw skip's; the up's grows */
            const size_t N = (size_t)B * r->h * r->w;
            att_backward(m, &m->att[i], &a->att[i], G, a->d_cat[l] + (size_t)m->ch[l] * N, a->d_cat[l], a->cat[l],
                         a->enc[l].out, N, a->d_att_psi[i], a->scratch[0], a->scratch[1], a->bn_sync);
        }
        const float *up_in = i == 0 ? a->bott_drop : a->dec_drop[i - 1];
        float *d_up_in = i == 0 ? a->d_bott_drop : a->d_dec_drop[i - 1];
        convt2x2_backward(d_up_in, G + m->upw[i], G + m->upb[i], a->d_cat[l], up_in, P + m->upw[i], B,
                          m->ch[l + 1], m->ch[l], r->h / 2, r->w / 2, a->ws, 0);
    }
    const size_t nb = (size_t)m->ch[D] * B * a->bott.h * a->bott.w;
    if (drop) dropout_backward(a->d_bott, a->d_bott_drop, a->bott_mask, nb, p, 0);
    resblock_backward(m, &m->bott, &a->bott, G, a->d_bott, a->d_pool[D - 1], B, a->ws, a->dw_ws, a->scratch, a->bn_sync);
    for (int l = D - 1; l >= 0; l--) {
        const ms_rb_acts *r = &a->enc[l];
        const size_t C = (size_t)m->ch[l], N = (size_t)B * r->h * r->w;
        float *d_skip = a->d_cat[l] + C * N;
        maxpool2x2_backward(d_skip, a->d_pool[l], r->out, C * B, r->h, r->w);
        resblock_backward(m, &m->enc[l], r, G, d_skip, l == 0 ? NULL : a->d_pool[l - 1], B, a->ws,
                          a->dw_ws, a->scratch, a->bn_sync);
    }
}
