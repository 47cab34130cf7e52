/* Training checkpoints: everything a run needs to continue exactly (internal to core/). */
#ifndef MS_CHECKPOINT_H
#define MS_CHECKPOINT_H

#include "marsseg.h"
#include "rng.h"

typedef struct {
    int epoch, batch_in_epoch;   /* finished epochs; finished batches of the next one */
    int64_t step;
    float lr;
    double best_miou, plateau_best;
    int best_epoch, bad_epochs, plateau_wait;
    ms_rng order_rng, aug_rng;
    double loss_sum;             /* running sums of a partly done epoch */
    ms_confusion train_cm;
    double seconds_in_epoch;
} ms_checkpoint_state;

/* One npz, written atomically (temp file, fsync, rename): the model as a weights file (so a
 * checkpoint also loads with ms_model_load), "train_config.json", "state.json", "adam.m",
 * "adam.v", "best.params"/"best.bufs" (when best != NULL), "ema.params"/"ema.bufs" (the moving
 * average of the weights, when ema != NULL). Every entry carries a CRC-32 that
 * the reader verifies, so a damaged checkpoint is refused rather than half-used. */
ms_status ms_checkpoint_save(const char *path, const ms_train_config *cfg, const ms_checkpoint_state *s,
                             const ms_model *model, const ms_model *best, const ms_model *ema, const float *m1,
                             const float *v, const ms_epoch_stats *curves, int ncurves);
/* A checkpoint as ms_checkpoint_load reads it; ms_checkpoint_free frees what it holds. */
typedef struct {
    ms_train_config cfg;
    ms_checkpoint_state state;
    ms_model *model, *best, *ema; /* best, ema: NULL if none */
    float *m1, *v;          /* AdamW moments, model->nparams each */
    ms_epoch_stats *curves;
    int ncurves;
} ms_checkpoint;

/* Fills *ck (all of it, or nothing: zeroed on failure). */
ms_status ms_checkpoint_load(const char *path, ms_checkpoint *ck);
void ms_checkpoint_free(ms_checkpoint *ck);

#endif
