/* Training curves, owned by the run's checkpoint (core/curves.c, core/checkpoint.c).
 *
 * A run's curves have one owner: the trainer keeps them and writes them into every checkpoint
 * (dir/checkpoint.npz, state.json, written after every epoch and kept when the run ends). Anyone
 * else (the service) reads them from there with ms_run_curves and follows a running job through
 * the on_epoch callback. The JSON view of one epoch below is the only one, both ways. */
#ifndef MARSSEG_CURVES_H
#define MARSSEG_CURVES_H

#include "marsseg.h"

#include <cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A JSON number, or null when v is not finite (JSON has no NaN). NULL on allocation failure. */
cJSON *ms_json_number(double v);
/* Read back: the number under key, NaN for null; *ok = 0 when it is missing or not a number. */
double ms_json_get_number(const cJSON *o, const char *key, int *ok);
/* {"epoch", "train_loss", "val_loss", "train_miou", "val_miou", "pixel_acc", "val_iou": [5],
 * "lr", "seconds", "images_per_s"}; NULL on allocation failure. */
cJSON *ms_epoch_stats_to_cjson(const ms_epoch_stats *e);
/* The same object read back (null reads as NaN). 0 when a field is missing or not a number. */
int ms_epoch_stats_from_cjson(const cJSON *j, ms_epoch_stats *e);
/* The epoch of the best finite val_miou (the first of equals) and that value; 0 if none. */
int ms_curves_best(const ms_epoch_stats *curves, int n, double *best_miou);
/* The curves of the run in dir, from its checkpoint (state.json only: no weights are read).
 * *out is malloc'd (NULL when *n is 0). MS_ERR_NOTFOUND when dir has no checkpoint. */
ms_status ms_run_curves(const char *dir, ms_epoch_stats **out, int *n);

#ifdef __cplusplus
}
#endif
#endif
