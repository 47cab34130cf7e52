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
 * "adam.v", "best.params"/"best.bufs" (when best != NULL). Every entry carries a CRC-32 that
 * the reader verifies, so a damaged checkpoint is refused rather than half-used. */
ms_status ms_checkpoint_save(const char *path, const ms_train_config *cfg, const ms_checkpoint_state *s,
                             const ms_model *model, const ms_model *best, const float *m1, const float *v,
                             const ms_epoch_stats *curves, int ncurves);
/* Allocates *model, *best (NULL if none), *m1, *v, *curves. */
ms_status ms_checkpoint_load(const char *path, ms_train_config *cfg, ms_checkpoint_state *s, ms_model **model,
                             ms_model **best, float **m1, float **v, ms_epoch_stats **curves, int *ncurves);

#endif
