/* The trainer's state and what its files share (internal to core/): core/train.c runs the epoch
 * loop, core/train_state.c creates a trainer (from a config or a checkpoint) and writes its
 * files, core/train_dist.c holds the data-parallel steps, core/evaluate.c the eval-mode pass
 * and an epoch's validation. The public face is ms_trainer in marsseg.h. */
#ifndef MS_TRAINER_H
#define MS_TRAINER_H

#include "data.h"
#include "layers.h"
#include "marsseg.h"
#include "rng.h"
#include "unet.h"

#include <stdatomic.h>

struct ms_trainer {
    ms_train_config cfg;
    char dir[1024];
    ms_train_callbacks cb;
    ms_dataset ds;          /* the tiles: validation always, training unless cfg.frames */
    ms_dataset frames;      /* cfg.frames: every tile pair as one (2h, w) frame */
    const ms_dataset *tds;  /* what training batches come from: &ds or &frames */
    int *train_idx, ntrain; /* training samples (of tds) after oversampling (fixed order) */
    int *val_idx, nval;
    int *order;             /* this epoch's shuffled copy of train_idx */
    int dropped;
    float class_w[MS_NUM_CLASSES];   /* the loss weights of the current epoch */
    float base_w[MS_NUM_CLASSES];    /* those of the config (auto or explicit): reweight scales them */
    ms_model *model, *best;
    ms_model *ema;          /* cfg.ema > 0: the moving average of model's weights (else NULL) */
    float *grads, *m1, *v;  /* gradient and AdamW moments, same layout as model->params */
    ms_acts acts;
    float *xb;
    uint8_t *yb, *pred;
    /* progress and schedule state (all of it goes into checkpoints) */
    int epoch;              /* finished epochs */
    int batch_in_epoch;     /* finished batches of the current epoch */
    int64_t step;
    float lr;
    double best_miou, plateau_best;
    int best_epoch, bad_epochs, plateau_wait;
    ms_rng order_rng;       /* order stream at the start of the current epoch */
    ms_rng aug_rng;         /* augmentation stream, current */
    double loss_sum;        /* running sums of the current epoch */
    ms_confusion train_cm;
    double seconds_done;    /* seconds already spent in the current epoch before a pause */
    ms_epoch_stats *curves;
    int ncurves, capcurves;
    atomic_int stop;        /* 0 run, 1 cancel, 2 pause */
    /* data-parallel run: this rank computes samples [share_lo, share_lo + share_n) of every
     * global batch of cfg.batch (xb, yb hold the whole batch: every rank draws it alike) */
    int rank, nranks, share_lo, share_n;
    ms_reducer bn_red;      /* sync_bn: BatchNorm sums over ranks */
    double comm_s;          /* seconds in the per-step sums this epoch (rank 0 logs them) */
};

/* The weights a run is judged by and keeps: the moving average when cfg.ema is on. */
static inline ms_model *train_weights(ms_trainer *t) { return t->ema ? t->ema : t->model; }

/* Steps between two checks that every rank holds the same weights and optimiser state. */
#define CHECK_EVERY 50

/* ------------------------------------------------------------------ train_state.c */
/* A line for the run's log callback (none: dropped). */
void train_log(ms_trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* checkpoint.npz (and the run's plan.json) after an epoch or on pause: rank 0 writes, every
 * rank learns whether it worked. */
ms_status train_checkpoint(ms_trainer *t);
/* A new best epoch e: its weights kept in t->best and written to best.npz. */
ms_status train_save_best(ms_trainer *t, const ms_epoch_stats *e, double total_s);
/* The end of a run: the best weights restored (restore_best), model.npz written. */
ms_status train_finish(ms_trainer *t, double total_s);

/* cfg.reweight: class_w = base_w scaled by the last epoch's training IoUs (see ms_reweight);
 * derived from the curves alone, so a resumed run gets the same weights. */
void train_reweight(ms_trainer *t);

/* ------------------------------------------------------------------ train_dist.c */
/* Rank r's part of n items split as evenly as possible (the first n % size ranks get one more). */
void train_share_of(int n, int r, int size, int *lo, int *cnt);
int train_agree_step(ms_trainer *t, int stop, double *share);
void train_sum_gradients(ms_trainer *t);
void train_sum_counts(ms_confusion *cm, double x[2]);
ms_status train_check_replicas(ms_trainer *t);

/* ------------------------------------------------------------------ evaluate.c */
/* pred[i] = the class of the largest of logits (K, N) at pixel i. */
void ms_argmax_labels(uint8_t *pred, const float *logits, int K, size_t N);
/* The validation figures of the epoch in e (val_loss, val_miou, pixel_acc, val_iou): each rank
 * evaluates its share of the validation tiles, the counts are summed. */
ms_status train_validate(ms_trainer *t, ms_epoch_stats *e);

#endif
