/* Per-class logit offsets (ms_calibrate): the decision rule argmax(logits) is not the one that
 * maximises IoU. Background here means "unlabelled", and for a foreground class a background
 * pixel predicted as it is a false positive: how readily the model says "soil" or "sand" rather
 * than "background" trades false positives against false negatives, and the loss's class weights
 * set that trade-off for the loss, not for mIoU. Adding an offset b_k to class k's logit moves
 * it; the offsets are chosen on labelled tiles (a run's training tiles, never its validation
 * tiles) by coordinate search, and folded into the head's bias, so inference costs nothing more.
 * argmax(logits + b) = argmax(log softmax + b): the search works on log-probabilities. */
#include "data.h"
#include "marsseg_calibrate.h"
#include "unet.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define K MS_NUM_CLASSES
#define BATCH 32
#define MAX_OFFSET 4.0f

/* mIoU over classes 1..4 (ms_confusion_scores') of argmax(lp + b) against y, over n pixels (lp: (n, K)). */
static double miou_with(const float *lp, const uint8_t *y, size_t n, const float b[K]) {
    int64_t cm[K * K];
    memset(cm, 0, sizeof cm);
#pragma omp parallel for schedule(static) reduction(+ : cm[:K * K])
    for (size_t i = 0; i < n; i++) {
        const float *p = lp + i * K;
        int best = 0;
        float mx = p[0] + b[0];
        for (int k = 1; k < K; k++)
            if (p[k] + b[k] > mx) mx = p[k] + b[k], best = k;
        cm[y[i] * K + best]++;
    }
    ms_confusion c;
    memcpy(c.cm, cm, sizeof c.cm);
    ms_scores s;
    ms_confusion_scores(&c, &s);
    return s.miou;
}

double ms_calibrate_score(const float *logp, const uint8_t *y, size_t n, const float offsets[MS_NUM_CLASSES]) {
    return miou_with(logp, y, n, offsets);
}

void ms_calibrate_search(const float *logp, const uint8_t *y, size_t n, float offsets[MS_NUM_CLASSES], double *before,
                         double *after) {
    static const float steps[] = {1.0f, 0.5f, 0.25f, 0.1f, 0.05f, 0.02f};
    float b[K] = {0};
    double best = miou_with(logp, y, n, b);
    if (before) *before = best;
    for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
        for (int pass = 0, moved = 1; moved && pass < 50; pass++) {
            moved = 0;
            for (int k = 1; k < K; k++) /* b_0 = 0: only differences between offsets matter */
                for (int dir = -1; dir <= 1; dir += 2) {
                    float c[K];
                    memcpy(c, b, sizeof c);
                    c[k] += (float)dir * steps[s];
                    if (fabsf(c[k]) > MAX_OFFSET) continue;
                    const double v = miou_with(logp, y, n, c);
                    if (v > best + 1e-9) {
                        best = v;
                        memcpy(b, c, sizeof b);
                        moved = 1;
                    }
                }
        }
    }
    memcpy(offsets, b, sizeof b);
    if (after) *after = best;
}

ms_status ms_calibrate(ms_model *m, const ms_dataset *ds, const int *idx, int n, ms_calibration *out) {
    if (!m || !ds || !out) return ms_fail(MS_ERR_ARG, "calibrate: NULL argument");
    if (!ds->mask) return ms_fail(MS_ERR_ARG, "calibrate: the tiles have no masks");
    if (n < 1) return ms_fail(MS_ERR_ARG, "calibrate: no tiles to calibrate on");
    if (m->cfg.classes != K) return ms_fail(MS_ERR_ARG, "calibrate: the model has %d classes, not %d", m->cfg.classes, K);
    const int q = 1 << m->cfg.depth, H = ds->h, W = ds->w;
    if (H % q || W % q) return ms_fail(MS_ERR_SHAPE, "calibrate: tiles of %dx%d; depth %d needs multiples of %d", H, W, m->cfg.depth, q);
    const size_t hw = (size_t)H * W, npx = (size_t)n * hw;
    float *lp = malloc(sizeof(float) * npx * K), *x = malloc(sizeof(float) * BATCH * hw), *pr = malloc(sizeof(float) * BATCH * hw * K);
    uint8_t *y = malloc(npx);
    int *order = malloc(sizeof(int) * BATCH);
    ms_status st = MS_OK;
    if (!lp || !x || !pr || !y || !order) {
        st = ms_fail(MS_ERR_NOMEM, "calibrate: out of memory for %d tiles of %dx%d", n, H, W);
        goto done;
    }
    for (int i0 = 0; i0 < n; i0 += BATCH) {
        const int nb = n - i0 < BATCH ? n - i0 : BATCH;
        for (int i = 0; i < nb; i++) {
            const int t = idx ? idx[i0 + i] : i0 + i;
            if (t < 0 || t >= ds->n) {
                st = ms_fail(MS_ERR_ARG, "calibrate: tile %d is not in 0..%d", t, ds->n - 1);
                goto done;
            }
            order[i] = t;
            memcpy(y + (size_t)(i0 + i) * hw, ds->mask + (size_t)t * hw, hw);
        }
        ms_batch_fill(ds, order, nb, x, NULL, NULL, NULL);
        if ((st = ms_model_predict(m, x, nb, H, W, NULL, pr))) goto done;
        for (int i = 0; i < nb; i++) /* (K, hw) probabilities -> (hw, K) log-probabilities */
            for (size_t p = 0; p < hw; p++)
                for (int k = 0; k < K; k++)
                    lp[((size_t)(i0 + i) * hw + p) * K + k] = logf(fmaxf(pr[((size_t)i * K + k) * hw + p], 1e-30f));
    }
    ms_calibrate_search(lp, y, npx, out->offsets, &out->miou_before, &out->miou_after);
    out->tiles = n;
    for (int k = 0; k < K; k++) m->params[m->headb + k] += out->offsets[k];
    if (m->plan) st = ms_model_freeze(m);
done:
    free(lp);
    free(x);
    free(pr);
    free(y);
    free(order);
    return st;
}
