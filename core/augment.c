/* Augmentation of one sample and the filling of a batch (img/255, masks, augmented in order).
 * See data.h for the contracts. */
#include "data.h"
#include "util.h"

#include <string.h>

/* ================================================================== augmentation */

/* Geometry helpers work on rows of w elements of es bytes, so the same code moves the float
 * image and the byte mask; `replicate` chooses edge replication or zero fill for what a shift
 * vacates. All in place: no allocation, so augmentation cannot fail. */

static void flip_rows(void *base, size_t es, int h, int w) {
    uint8_t *a = base, t[8];
    for (int y = 0; y < h; y++) {
        uint8_t *r = a + (size_t)y * w * es;
        for (int i = 0, j = w - 1; i < j; i++, j--) {
            memcpy(t, r + i * es, es);
            memcpy(r + i * es, r + j * es, es);
            memcpy(r + j * es, t, es);
        }
    }
}

static void shift_vertical(void *base, size_t es, int h, int w, int dy, int replicate) {
    uint8_t *a = base;
    size_t row = (size_t)w * es;
    if (dy > 0) { /* content moves down; walk bottom-up so sources are read before overwritten */
        for (int y = h - 1; y >= dy; y--) memcpy(a + y * row, a + (size_t)(y - dy) * row, row);
        for (int y = dy - 1; y >= 0; y--) {
            if (!replicate) memset(a + y * row, 0, row);
            else if (y > 0) memcpy(a + y * row, a, row); /* row 0 still holds the old top row */
        }
    } else if (dy < 0) {
        int d = -dy;
        for (int y = 0; y + d < h; y++) memcpy(a + y * row, a + (size_t)(y + d) * row, row);
        for (int y = h - d; y < h; y++) {
            if (!replicate) memset(a + y * row, 0, row);
            else if (y < h - 1) memcpy(a + y * row, a + (size_t)(h - 1) * row, row);
        }
    }
}

static void shift_horizontal(void *base, size_t es, int h, int w, int dx, int replicate) {
    if (dx == 0) return;
    uint8_t *a = base, edge[8];
    int d = dx > 0 ? dx : -dx;
    for (int y = 0; y < h; y++) {
        uint8_t *r = a + (size_t)y * w * es;
        if (replicate) memcpy(edge, dx > 0 ? r : r + (size_t)(w - 1) * es, es);
        else memset(edge, 0, es);
        if (dx > 0) memmove(r + (size_t)d * es, r, (size_t)(w - d) * es);
        else memmove(r, r + (size_t)d * es, (size_t)(w - d) * es);
        uint8_t *fill = dx > 0 ? r : r + (size_t)(w - d) * es;
        for (int i = 0; i < d; i++) memcpy(fill + (size_t)i * es, edge, es);
    }
}

void ms_augment(float *img, uint8_t *mask, int h, int w, const ms_augment_cfg *cfg, ms_rng *rng) {
    if (!img || !cfg || !rng || h <= 0 || w <= 0) return;
    int sx = MS_MAX(0, MS_MIN(cfg->max_shift, w - 1)), sy = MS_MAX(0, MS_MIN(cfg->max_shift, h - 1));
    /* the fixed draw order: flip, brightness, contrast, dx, dy */
    int flip = ms_rng_float(rng) < 0.5f;
    float db = (2.0f * ms_rng_float(rng) - 1.0f) * cfg->brightness;
    float cf = 1.0f + (2.0f * ms_rng_float(rng) - 1.0f) * cfg->contrast;
    int dx = (int)ms_rng_below(rng, (uint32_t)(2 * sx + 1)) - sx;
    int dy = (int)ms_rng_below(rng, (uint32_t)(2 * sy + 1)) - sy;

    if (cfg->hflip && flip) {
        flip_rows(img, sizeof *img, h, w);
        if (mask) flip_rows(mask, 1, h, w);
    }
    shift_vertical(img, sizeof *img, h, w, dy, 1);
    shift_horizontal(img, sizeof *img, h, w, dx, 1);
    if (mask) {
        shift_vertical(mask, 1, h, w, dy, 0);
        shift_horizontal(mask, 1, h, w, dx, 0);
    }
    size_t n = (size_t)h * (size_t)w;
    float mean = 0.0f;
    if (cfg->contrast != 0.0f) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += img[i];
        mean = (float)(s / (double)n);
    }
    for (size_t i = 0; i < n; i++) {
        float v = img[i];
        if (cfg->contrast != 0.0f) v = mean + (v - mean) * cf;
        v += db;
        img[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
}

/* ================================================================== batching */

void ms_batch_fill(const ms_dataset *ds, const int *order, int count, float *x, uint8_t *y,
                   const ms_augment_cfg *aug, ms_rng *rng) {
    if (!ds || !order || !x || count <= 0) return;
    /* table lookup: exactly v/255.0f, with no division per pixel */
    float lut[256];
    for (int v = 0; v < 256; v++) lut[v] = (float)v / 255.0f;
    size_t hw = (size_t)ds->h * (size_t)ds->w;
    for (int k = 0; k < count; k++) {
        size_t i = (size_t)order[k];
        const uint8_t *src = ds->img + i * hw;
        float *xd = x + (size_t)k * hw;
        uint8_t *yd = y ? y + (size_t)k * hw : NULL;
        for (size_t p = 0; p < hw; p++) xd[p] = lut[src[p]];
        if (yd) {
            if (ds->mask) memcpy(yd, ds->mask + i * hw, hw);
            else memset(yd, 0, hw);
        }
        if (aug && rng) ms_augment(xd, yd, ds->h, ds->w, aug, rng);
    }
}
