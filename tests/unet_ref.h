/* A double-precision reference of the U-Net's training-mode graph (ms_unet_forward with
 * training=1: batch-statistics BatchNorm, the given dropout masks) and its weighted softmax
 * cross-entropy, in plain loops: no BLAS, no threads, no float32 rounding, so the same value on
 * every CPU and build. test_layers differences it to check the float backward. Parameters are
 * a double copy of m->params (same offsets). Include after unet.h. */
#ifndef MS_UNET_REF_H
#define MS_UNET_REF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const ms_model *m; const double *P; const uint8_t *bmask, *dmask[MS_MAX_DEPTH]; int B, H, W; } ref_net;

/* out (Cout,B,H,W) = conv3x3(inp (Cin,B,H,W), w (Cout,Cin,3,3)), padding 1 */
static void ref_conv3(double *out, const double *inp, const double *w, int B, int Cin, int Cout, int H, int W) {
    const size_t N = (size_t)B * H * W;
    for (int co = 0; co < Cout; co++)
        for (int b = 0; b < B; b++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    double s = 0;
                    for (int ci = 0; ci < Cin; ci++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                const int yy = y + ky - 1, xx = x + kx - 1;
                                if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                                s += w[((size_t)co * Cin + ci) * 9 + ky * 3 + kx] * inp[ci * N + ((size_t)b * H + yy) * W + xx];
                            }
                    out[co * N + ((size_t)b * H + y) * W + x] = s;
                }
}
/* out (Cout,N) = w (Cout,Cin) inp + b */
static void ref_conv1(double *out, const double *inp, const double *w, const double *b, size_t N, int Cin, int Cout) {
    for (int co = 0; co < Cout; co++)
        for (size_t i = 0; i < N; i++) {
            double s = b[co];
            for (int ci = 0; ci < Cin; ci++) s += w[co * Cin + ci] * inp[ci * N + i];
            out[co * N + i] = s;
        }
}
/* training-mode BatchNorm (batch mean, biased variance, eps as BN_EPS in unet.h), + res, then
 * ReLU if relu, in place on x (C,N) */
static void ref_bn(double *x, const double *g, const double *bt, const double *res, int C, size_t N, int relu) {
    for (int c = 0; c < C; c++) {
        double *v = x + c * N, m = 0, var = 0;
        for (size_t i = 0; i < N; i++) m += v[i];
        m /= (double)N;
        for (size_t i = 0; i < N; i++) var += (v[i] - m) * (v[i] - m);
        const double is = 1 / sqrt(var / (double)N + (double)1e-5f);
        for (size_t i = 0; i < N; i++) {
            const double o = g[c] * (v[i] - m) * is + bt[c] + (res ? res[c * N + i] : 0);
            v[i] = o > 0 || !relu ? o : 0;
        }
    }
}
static void ref_bn_relu(double *x, const double *g, const double *bt, const double *res, int C, size_t N) {
    ref_bn(x, g, bt, res, C, N, 1);
}
/* attention gate (core/unet_att.c): x (c, N) *= sigmoid(bpsi(psi(relu(bg(wg(g)) + bx(wx(x)))))) */
static void ref_att(const ref_net *r, const ms_att_off *o, const double *g, double *x, size_t N) {
    const double *P = r->P;
    double *g1 = malloc(sizeof(double) * o->f * N), *x1 = malloc(sizeof(double) * o->f * N), *p = malloc(sizeof(double) * N);
    ref_conv1(g1, g, P + o->wgw, P + o->wgb, N, o->c, o->f);
    ref_bn(g1, P + o->bgg, P + o->bgb, NULL, o->f, N, 0);
    ref_conv1(x1, x, P + o->wxw, P + o->wxb, N, o->c, o->f);
    ref_bn(x1, P + o->bxg, P + o->bxb, g1, o->f, N, 1);
    ref_conv1(p, x1, P + o->pw, P + o->pb, N, o->f, 1);
    ref_bn(p, P + o->bpg, P + o->bpb, NULL, 1, N, 0);
    for (size_t i = 0; i < N; i++) {
        const double psi = 1 / (1 + exp(-p[i]));
        for (int c = 0; c < o->c; c++) x[c * N + i] *= psi;
    }
    free(g1);
    free(x1);
    free(p);
}
/* ResBlock: relu(bn2(conv(relu(bn1(conv(inp))))) + sc(inp)) into out (c, N) */
static void ref_block(const ref_net *r, const ms_rb_off *o, double *out, const double *inp, int h, int w) {
    const size_t N = (size_t)r->B * h * w;
    double *a1 = malloc(sizeof(double) * o->c * N), *sc = malloc(sizeof(double) * o->c * N);
    ref_conv3(a1, inp, r->P + o->c1w, r->B, o->cin, o->c, h, w);
    ref_bn_relu(a1, r->P + o->b1g, r->P + o->b1b, NULL, o->c, N);
    ref_conv3(out, a1, r->P + o->c2w, r->B, o->c, o->c, h, w);
    ref_conv1(sc, inp, r->P + o->scw, r->P + o->scb, N, o->cin, o->c);
    ref_bn_relu(out, r->P + o->b2g, r->P + o->b2b, sc, o->c, N);
    free(a1);
    free(sc);
}
static void ref_dropout(double *x, const uint8_t *mask, size_t n, float p) {
    for (size_t i = 0; i < n; i++) x[i] = mask[i] ? x[i] * (double)(1.0f / (1.0f - p)) : 0;
}
/* logits (K, B*H*W) of ms_unet_forward(training=1) with the given dropout masks */
static void ref_forward(const ref_net *r, const float *x, double *logits) {
    const ms_model *m = r->m;
    const int D = m->cfg.depth, B = r->B;
    double *enc[MS_MAX_DEPTH], *h;
    size_t N0 = (size_t)B * r->H * r->W;
    h = malloc(sizeof(double) * N0);
    for (size_t i = 0; i < N0; i++) h[i] = x[i];
    for (int l = 0; l < D; l++) { /* encoder: block, keep as skip, 2x2 max-pool */
        const int hh = r->H >> l, ww = r->W >> l, C = m->ch[l];
        enc[l] = malloc(sizeof(double) * C * B * hh * ww);
        ref_block(r, &m->enc[l], enc[l], h, hh, ww);
        free(h);
        h = malloc(sizeof(double) * C * B * (hh / 2) * (ww / 2));
        for (size_t p = 0; p < (size_t)C * B; p++)
            for (int y = 0; y < hh / 2; y++)
                for (int xx = 0; xx < ww / 2; xx++) {
                    const double *s = enc[l] + p * hh * ww + (size_t)2 * y * ww + 2 * xx;
                    h[p * (hh / 2) * (ww / 2) + (size_t)y * (ww / 2) + xx] = fmax(fmax(s[0], s[1]), fmax(s[ww], s[ww + 1]));
                }
    }
    const size_t nb = (size_t)m->ch[D] * B * (r->H >> D) * (r->W >> D);
    double *t = malloc(sizeof(double) * nb);
    ref_block(r, &m->bott, t, h, r->H >> D, r->W >> D);
    ref_dropout(t, r->bmask, nb, m->cfg.dropout);
    free(h);
    h = t;
    for (int i = 0; i < D; i++) { /* decoder: up 2x2/2, concat [up, skip (gated with attention)], block */
        const int l = D - 1 - i, hh = r->H >> l, ww = r->W >> l, C = m->ch[l], Cin = m->ch[l + 1];
        const size_t N = (size_t)B * hh * ww, Ni = N / 4;
        double *cat = malloc(sizeof(double) * 2 * C * N);
        const double *wu = r->P + m->upw[i], *bu = r->P + m->upb[i];
        for (int co = 0; co < C; co++)
            for (int b = 0; b < B; b++)
                for (int y = 0; y < hh; y++)
                    for (int xx = 0; xx < ww; xx++) {
                        double s = bu[co];
                        for (int ci = 0; ci < Cin; ci++)
                            s += h[ci * Ni + ((size_t)b * (hh / 2) + y / 2) * (ww / 2) + xx / 2] *
                                 wu[((size_t)ci * C + co) * 4 + (y % 2) * 2 + xx % 2];
                        cat[co * N + ((size_t)b * hh + y) * ww + xx] = s;
                    }
        memcpy(cat + C * N, enc[l], sizeof(double) * C * N);
        if (m->cfg.attention) ref_att(r, &m->att[i], cat, cat + C * N, N);
        free(h);
        h = malloc(sizeof(double) * C * N);
        ref_block(r, &m->dec[i], h, cat, hh, ww);
        ref_dropout(h, r->dmask[i], C * N, m->cfg.dropout);
        free(cat);
        free(enc[l]);
    }
    ref_conv1(logits, h, r->P + m->headw, r->P + m->headb, N0, m->ch[0], m->cfg.classes);
    free(h);
}
/* weighted softmax cross-entropy, as softmax_ce_forward_backward */
static double ref_loss(const ref_net *r, const float *x, const uint8_t *t, const float *w) {
    const int K = r->m->cfg.classes;
    const size_t N = (size_t)r->B * r->H * r->W;
    double *lg = malloc(sizeof(double) * K * N), loss = 0, wsum = 0;
    ref_forward(r, x, lg);
    for (size_t i = 0; i < N; i++) {
        double mx = lg[i], s = 0;
        for (int k = 1; k < K; k++) mx = fmax(mx, lg[k * N + i]);
        for (int k = 0; k < K; k++) s += exp(lg[k * N + i] - mx);
        loss += w[t[i]] * (mx + log(s) - lg[t[i] * N + i]);
        wsum += w[t[i]];
    }
    free(lg);
    return loss / wsum;
}

#endif
