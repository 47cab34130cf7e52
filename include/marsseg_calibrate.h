/* Per-class logit offsets chosen on labelled tiles to maximise mIoU over classes 1-4, folded
 * into a model's head bias (core/calibrate.c; `marsseg calibrate`). */
#ifndef MARSSEG_CALIBRATE_H
#define MARSSEG_CALIBRATE_H

#include "marsseg.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float offsets[MS_NUM_CLASSES]; /* added to each class's logit (offsets[0] = 0) */
    double miou_before, miou_after; /* mIoU (classes 1-4) on the calibration tiles */
    int tiles;
} ms_calibration;

/* Predicts tiles idx[0..n-1] of ds (all n first tiles if idx is NULL), chooses the offsets by
 * coordinate search (steps 1 down to 0.02, each within [-4, 4]) and adds them to m's head bias
 * (m may be frozen: its inference form is rebuilt). Memory: 20 bytes per pixel of the tiles.
 * Calibrate on a run's training tiles: on its validation tiles the figure would be flattered. */
ms_status ms_calibrate(ms_model *m, const ms_dataset *ds, const int *idx, int n, ms_calibration *out);

/* The search and its objective on n pixels of log-probabilities logp (n, 5) with labels y,
 * exposed for tests: mIoU (1-4) of argmax(logp + offsets), and the offsets search. */
double ms_calibrate_score(const float *logp, const uint8_t *y, size_t n, const float offsets[MS_NUM_CLASSES]);
void ms_calibrate_search(const float *logp, const uint8_t *y, size_t n, float offsets[MS_NUM_CLASSES], double *before,
                         double *after);

#endif
