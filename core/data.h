/* Dataset preprocessing for the training engine (internal): duplicate-mask filtering, class
 * statistics and weights, the train/validation split, oversampling (data_prep.c), augmentation,
 * batching (augment.c). Loading itself (ms_dataset_load/ms_dataset_free, data.c) is declared in
 * marsseg.h.
 *
 * Everything random takes an explicit ms_rng * (or a seed) so that a seed reproduces a run. */
#ifndef MS_DATA_H
#define MS_DATA_H

#include "marsseg.h"
#include "rng.h"

#include <stdint.h>

/* ------------------------------------------------------------------ duplicate masks */

/* Drops every sample whose mask is byte-identical to a mask occurring more than k times in the
 * set (k >= 1), compacting img and mask in place and keeping the order of the rest. Meant for
 * tiles that share one planted mask (the course data hides ~110 "alien" tiles like that); note
 * that identical all-background masks count as duplicates too. *dropped (may be NULL) gets the
 * number removed; kept (may be NULL; room for ds->n) gets, for each sample left, its index before.
 * MS_ERR_ARG for an unlabelled set or k < 1. */
ms_status ms_dedup_masks(ms_dataset *ds, int k, int *dropped, int *kept);

/* ------------------------------------------------------------------ whole frames */

/* Training on whole camera frames (config "frames"): the developers' file holds each 128x128
 * frame as two consecutive 64x128 tiles, 2f the top half and 2f+1 the bottom. Fills `frames`
 * with the (2h, w) frames f = 0..tiles->n/2-1 of a labelled tile set as it was loaded (before
 * any de-duplication), leaving out those with skip[f] set (skip may be NULL). An odd last tile
 * has no partner and is left out. Free with ms_dataset_free. */
ms_status ms_join_frames(const ms_dataset *tiles, const uint8_t *skip, ms_dataset *frames);

/* ------------------------------------------------------------------ class statistics */

/* Inverse-frequency loss weights with an exponent. For the foreground classes 1..4 that have
 * pixels, w_c = counts[c]^-power / mean over those classes of counts[c']^-power, so the present
 * foreground classes average exactly 1 (power 1: plain inverse frequency; 0.5: inverse square
 * root, gentler on rare classes). A foreground class with no pixels gets 0 (it cannot contribute
 * to the loss anyway, and a large weight would blow up the first time it appears). If no
 * foreground class has pixels, all of 1..4 are 0. out[0] = bg_weight (0 ignores background);
 * a negative bg_weight weights background by the same rule from counts[0]. */
void ms_class_weights_from_counts(const int64_t counts[MS_NUM_CLASSES], float power, float bg_weight,
                                  float out[MS_NUM_CLASSES]);

/* Dynamic re-weighting (config "reweight"): out[c] = base[c] * clamp(((1 - iou[c]) / m)^power,
 * 1/4, 4), m the mean of 1 - iou over the classes with base[c] > 0 and a finite iou. A class
 * outside those, or every class when m is 0, keeps its base weight: a class the model gets
 * worse than the others weighs more in the next epoch's loss. */
void ms_reweight(const float base[MS_NUM_CLASSES], const double iou[MS_NUM_CLASSES], float power,
                 float out[MS_NUM_CLASSES]);

/* ------------------------------------------------------------------ split and sampling */

/* Splits 0..n-1 into train and validation by groups of `group` consecutive indices (the last
 * group may be shorter): group=2 keeps the two halves of a source image together, 1 is a plain
 * split. The groups are shuffled with `seed` and the first round(val_frac * ngroups) go to
 * validation. *train and *val are malloc'd (never NULL, even when empty), sorted ascending.
 * MS_ERR_ARG for n < 1, group < 1 or val_frac outside [0,1]. */
ms_status ms_split(int n, float val_frac, int group, uint64_t seed, int **train, int *ntrain, int **val,
                   int *nval);

/* Returns idx[0..n-1] with every sample whose mask contains class cls present `factor` times
 * in total (copies adjacent to the original; factor 1 = unchanged copy). *out is malloc'd
 * (never NULL). MS_ERR_ARG for an unlabelled set, a bad class or factor < 1. */
ms_status ms_oversample(const ms_dataset *ds, const int *idx, int n, int cls, int factor, int **out, int *nout);

/* Fisher-Yates shuffle of a[0..n-1]. */
void ms_shuffle_int(int *a, int n, ms_rng *rng);

/* ------------------------------------------------------------------ augmentation */

typedef struct {
    int hflip;        /* mirror left-right with probability 1/2 */
    float brightness; /* add a uniform offset in [-brightness, +brightness] (image in [0,1]) */
    float contrast;   /* scale (x - image mean) by a uniform factor in [1-contrast, 1+contrast] */
    int max_shift;    /* translate by uniform integers in [-max_shift, max_shift] in x and in y */
} ms_augment_cfg;

/* Augments one sample in place: geometry (flip, then shift) applied identically to the image
 * (h*w floats in [0,1]) and the mask (may be NULL); then contrast and brightness on the image,
 * clamped to [0,1]. A shift fills the vacated image border by replicating the edge and the
 * vacated mask border with class 0. Always draws the same 5 random numbers in the same order
 * (flip, brightness, contrast, dx, dy) whatever cfg enables, so a seed reproduces a run and
 * changing one option does not reshuffle the others. */
void ms_augment(float *img, uint8_t *mask, int h, int w, const ms_augment_cfg *cfg, ms_rng *rng);

/* ------------------------------------------------------------------ batching */

/* Fills x (count,h,w) with img/255 and y (count,h,w) with the masks (y may be NULL; y is
 * zero-filled for an unlabelled set) of samples order[0..count-1], augmenting each sample
 * when aug is not NULL (rng may be NULL when aug is NULL). */
void ms_batch_fill(const ms_dataset *ds, const int *order, int count, float *x, uint8_t *y,
                   const ms_augment_cfg *aug, ms_rng *rng);

#endif
