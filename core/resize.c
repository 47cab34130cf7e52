/* Image resizing as Pillow does it (Image.resize, Pillow 9.4 as in Debian 12), so that a frame
 * resized here is the frame a user resizes with PIL and the test can hold us to it bit for bit
 * (tests/fixtures/resize.npz, made by tools/make_fixtures.py):
 *
 *   bilinear : a separable triangle filter whose support widens with the downscale factor
 *              (antialiasing), horizontal pass first, then vertical. 8-bit images use Pillow's
 *              fixed-point weights (22 fraction bits) and round each pass to 8 bits; float maps
 *              ("F" mode) use double weights and a float intermediate.
 *   nearest  : source index floor((i + 0.5) * in / out), what Pillow's NEAREST does.
 *
 * What `segment --frame` and POST /segment?frame=1 use: a whole camera frame is brought to the
 * scale the model was trained at (core/frame.c) and its labels back to the input's size. */
#include "marsseg_predict.h"
#include "util.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

typedef struct {
    int ksize;  /* taps per output pixel */
    int *bound; /* (out, 2): first input index, number of taps */
    double *k;  /* (out, ksize) normalised weights */
} coeffs;

static double triangle(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Pillow's precompute_coeffs for the bilinear filter (support 1) */
static ms_status make_coeffs(int in, int out, coeffs *c) {
    const double scale = (double)in / out, filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = 1.0 * filterscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    c->bound = malloc(sizeof *c->bound * 2 * (size_t)out);
    c->k = calloc((size_t)out * (size_t)c->ksize, sizeof *c->k);
    if (!c->bound || !c->k) {
        free(c->bound);
        free(c->k);
        return ms_fail(MS_ERR_NOMEM, "resize: coefficients");
    }
    for (int xx = 0; xx < out; xx++) {
        const double center = (xx + 0.5) * scale, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in) xmax = in;
        xmax -= xmin;
        double *k = c->k + (size_t)xx * c->ksize, ww = 0.0;
        for (int x = 0; x < xmax; x++) ww += k[x] = triangle((x + xmin - center + 0.5) * ss);
        for (int x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        c->bound[2 * xx] = xmin;
        c->bound[2 * xx + 1] = xmax;
    }
    return MS_OK;
}

static void free_coeffs(coeffs *c) {
    free(c->bound);
    free(c->k);
}

/* double weights -> Pillow's fixed point (normalize_coeffs_8bpc) */
static int32_t *fixed_coeffs(const coeffs *c, int out) {
    int32_t *kk = malloc(sizeof *kk * (size_t)out * (size_t)c->ksize);
    if (!kk) return NULL;
    for (size_t i = 0; i < (size_t)out * (size_t)c->ksize; i++) {
        const double v = c->k[i] * (1 << PRECISION_BITS);
        kk[i] = (int32_t)(v < 0 ? -0.5 + v : 0.5 + v);
    }
    return kk;
}

static uint8_t clip8(int32_t acc) {
    const int32_t v = acc >> PRECISION_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* One pass along rows (horizontal) or columns (vertical): dst (dh, dw) from src of row length sw.
 * 8 bits: Pillow's fixed-point weights and rounding to 8 bits; float: double weights. */
typedef ms_status (*pass_fn)(const void *src, int sw, void *dst, int dh, int dw, int horizontal, const coeffs *c);

static ms_status pass_u8(const void *srcv, int sw, void *dstv, int dh, int dw, int horizontal, const coeffs *c) {
    const uint8_t *src = srcv;
    uint8_t *dst = dstv;
    int32_t *kk = fixed_coeffs(c, horizontal ? dw : dh);
    if (!kk) return ms_fail(MS_ERR_NOMEM, "resize: coefficients");
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++) {
            const int o = horizontal ? x : y, first = c->bound[2 * o], n = c->bound[2 * o + 1];
            const int32_t *k = kk + (size_t)o * c->ksize;
            int32_t acc = 1 << (PRECISION_BITS - 1);
            for (int t = 0; t < n; t++)
                acc += (horizontal ? src[(size_t)y * sw + first + t] : src[(size_t)(first + t) * sw + x]) * k[t];
            dst[(size_t)y * dw + x] = clip8(acc);
        }
    free(kk);
    return MS_OK;
}

static ms_status pass_f32(const void *srcv, int sw, void *dstv, int dh, int dw, int horizontal, const coeffs *c) {
    const float *src = srcv;
    float *dst = dstv;
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++) {
            const int o = horizontal ? x : y, first = c->bound[2 * o], n = c->bound[2 * o + 1];
            const double *k = c->k + (size_t)o * c->ksize;
            double acc = 0.0;
            for (int t = 0; t < n; t++)
                acc += (horizontal ? src[(size_t)y * sw + first + t] : src[(size_t)(first + t) * sw + x]) * k[t];
            dst[(size_t)y * dw + x] = (float)acc;
        }
    return MS_OK;
}

static ms_status check_sizes(int H, int W, int h, int w) {
    const size_t cap = (size_t)1 << 28;
    if (H < 1 || W < 1 || h < 1 || w < 1 || (size_t)h * (size_t)w > cap || (size_t)H * (size_t)W > cap)
        return ms_fail(MS_ERR_ARG, "resize: %dx%d -> %dx%d: sizes must be positive and at most 2^28 pixels", W, H, w, h);
    return MS_OK;
}

/* A horizontal pass when the width changes, a vertical one when the height does (Pillow skips a
 * pass that would change nothing: an unchanged image is copied). */
static ms_status resize_bilinear(const void *src, int H, int W, void *dst, int h, int w, size_t esz, pass_fn pass) {
    ms_status st = check_sizes(H, W, h, w);
    if (st) return st;
    coeffs ch = {0}, cv = {0};
    void *mid = NULL;
    const int need_h = w != W, need_v = h != H;
    if (!need_h && !need_v) {
        memcpy(dst, src, esz * (size_t)H * (size_t)W);
        return MS_OK;
    }
    if ((need_h && (st = make_coeffs(W, w, &ch))) || (need_v && (st = make_coeffs(H, h, &cv)))) goto done;
    if (need_h && need_v && !(mid = malloc(esz * (size_t)H * (size_t)w))) {
        st = ms_fail(MS_ERR_NOMEM, "resize: %dx%d buffer", w, H);
        goto done;
    }
    if (need_h && (st = pass(src, W, need_v ? mid : dst, H, w, 1, &ch))) goto done;
    if (need_v) st = pass(need_h ? mid : src, w, dst, h, w, 0, &cv);
done:
    free(mid);
    free_coeffs(&ch);
    free_coeffs(&cv);
    return st;
}

ms_status ms_resize_bilinear_u8(const uint8_t *src, int H, int W, uint8_t *dst, int h, int w) {
    return resize_bilinear(src, H, W, dst, h, w, 1, pass_u8);
}

ms_status ms_resize_bilinear_f32(const float *src, int H, int W, float *dst, int h, int w) {
    return resize_bilinear(src, H, W, dst, h, w, sizeof(float), pass_f32);
}

ms_status ms_resize_nearest_u8(const uint8_t *src, int H, int W, uint8_t *dst, int h, int w) {
    ms_status st = check_sizes(H, W, h, w);
    if (st) return st;
    int *xs = malloc(sizeof *xs * (size_t)w);
    if (!xs) return ms_fail(MS_ERR_NOMEM, "resize: %d columns", w);
    const double sx = (double)W / w, sy = (double)H / h;
    for (int x = 0; x < w; x++) xs[x] = MS_MIN((int)((x + 0.5) * sx), W - 1);
    for (int y = 0; y < h; y++) {
        const uint8_t *row = src + (size_t)MS_MIN((int)((y + 0.5) * sy), H - 1) * W;
        for (int x = 0; x < w; x++) dst[(size_t)y * w + x] = row[xs[x]];
    }
    free(xs);
    return MS_OK;
}
