/* The training engine's epoch loop: batches (augmentation, dropout, losses, AdamW), the
 * learning-rate schedule, validation, early stopping with best-weights restore, curves, and
 * checkpoints after every epoch (and mid-epoch on pause) from which a run resumes exactly.
 * core/trainer.h names the files around it: core/train_state.c (creation, data, resume, the
 * run's files), core/train_dist.c (the data-parallel steps), core/evaluate.c (validation).
 *
 * Determinism: every random choice comes from two explicit RNG streams (epoch order and
 * augmentation) plus a dropout seed derived from (seed, step), all saved in checkpoints; with the
 * same seed and thread count a run, or a resumed run, is bit-identical.
 *
 * Data-parallel runs (mpirun, marsseg_dist.h): every rank holds the whole state and draws the
 * same order and augmentation; rank r computes forward and backward on its share of each global
 * batch, the gradients are summed over ranks (each share's loss is scaled by its part of the
 * batch's loss weight, so the sum is the gradient of the global batch's loss), and AdamW runs on
 * every rank alike, so the weights stay identical (checked by hash every CHECK_EVERY steps).
 * Per-step statistics (loss, training confusion matrix) are summed over ranks as they happen, so
 * a checkpoint holds global state and rank 0 alone writes files. With one rank every sum is
 * skipped and the arithmetic is the single-process one. */
#include "layers.h"
#include "marsseg_dist.h"
#include "trainer.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ one batch */

/* Dice is a ratio of sums over the whole batch: across ranks, the sums are all-reduced first. */
static double dice_part(ms_trainer *t, float *dlogits, const float *logits, const uint8_t *y, int K, size_t N, int acc) {
    if (t->nranks == 1) return dice_forward_backward(dlogits, logits, y, t->class_w, K, N, 1.0f, acc);
    double sums[3 * MS_NUM_CLASSES];
    dice_sums(logits, y, K, N, sums, sums + K, sums + 2 * K);
    ms_dist_sum_f64(sums, 3 * (size_t)K);
    return dice_from_sums(dlogits, logits, y, t->class_w, K, N, 1.0f, acc, sums, sums + K, sums + 2 * K);
}

/* The loss of this share's N pixels (labels y) and its gradient into dlogits. The weighted
 * per-pixel losses (CE, focal) are means over the batch's loss weight: `share` is this share's
 * part of that weight (1 in one process), so *pixel_part gets this share's contribution to the
 * batch's mean and the gradients of all shares add up to the batch's; *batch_part gets the
 * part that is already the whole batch's (Dice). */
static void batch_loss(ms_trainer *t, const float *logits, float *dlogits, const uint8_t *y, size_t N, double share,
                       double *pixel_part, double *batch_part) {
    const char *l = t->cfg.loss;
    const int K = t->model->cfg.classes;
    *pixel_part = *batch_part = 0;
    if (strcmp(l, "focal") == 0)
        *pixel_part = focal_forward_backward(dlogits, logits, y, t->class_w, t->cfg.focal_gamma, K, N, (float)share) * share;
    else if (strcmp(l, "dice") == 0)
        *batch_part = dice_part(t, dlogits, logits, y, K, N, 0);
    else {
        *pixel_part = softmax_ce_forward_backward(dlogits, logits, y, t->class_w, K, N, (float)share, NULL) * share;
        if (strcmp(l, "wce+dice") == 0) *batch_part = dice_part(t, dlogits, logits, y, K, N, 1);
    }
}

static void set_lr_for_step(ms_trainer *t, int batches) {
    if (strcmp(t->cfg.schedule, "cosine") != 0) return;
    const double total = (double)t->cfg.epochs * batches, pos = (double)t->step;
    const double f = 0.5 * (1.0 + cos(M_PI * fmin(pos / total, 1.0)));
    t->lr = (float)(t->cfg.min_lr + (t->cfg.lr - t->cfg.min_lr) * f);
}

/* One training step on this rank's share of the batch in t->xb/t->yb. */
/* ema = d ema + (1 - d) weights, over the parameters and the BN statistics, with the decay
 * ramped up over the first steps, d = min(cfg.ema, (1 + step) / (10 + step)) (as timm's ModelEma
 * and TensorFlow's num_updates do), so that the average does not drag the random start along
 * for ~1/(1 - d) steps. Every rank holds the same weights, so every rank's average is the same. */
static void ema_update(ms_trainer *t) {
    const double ramp = (1.0 + (double)t->step) / (10.0 + (double)t->step);
    const float d = (float)(t->cfg.ema < ramp ? t->cfg.ema : ramp), e = 1.0f - d;
    float *a = t->ema->params, *b = t->ema->bufs;
    const float *p = t->model->params, *q = t->model->bufs;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < t->model->nparams; i++) a[i] = d * a[i] + e * p[i];
    for (size_t i = 0; i < t->model->nbufs; i++) b[i] = d * b[i] + e * q[i];
    t->ema->num_batches_tracked = t->model->num_batches_tracked;
}

static ms_status train_step(ms_trainer *t, int batches, double share, const ms_adamw_cfg *opt0) {
    const ms_train_config *c = &t->cfg;
    const size_t hw = (size_t)t->tds->h * t->tds->w, N = (size_t)t->share_n * hw;
    const int K = t->model->cfg.classes;
    const uint8_t *y = t->yb + (size_t)t->share_lo * hw;
    /* every rank its own dropout masks; rank 0's are those of a one-process run */
    const uint64_t dseed = c->seed * 0x9E3779B97F4A7C15ull + (uint64_t)t->step + (uint64_t)t->rank * 0xD1B54A32D192ED03ull;
    ms_unet_forward(t->model, &t->acts, t->xb + (size_t)t->share_lo * hw, 1, dseed);
    double pixel_part, batch_part;
    batch_loss(t, t->acts.logits, t->acts.d_logits, y, N, share, &pixel_part, &batch_part);
    ms_argmax_labels(t->pred, t->acts.logits, K, N);
    if (t->nranks == 1) {
        ms_confusion_add(&t->train_cm, y, t->pred, N);
    } else { /* this share's loss part and counts, summed over ranks */
        ms_confusion cm;
        memset(&cm, 0, sizeof cm);
        ms_confusion_add(&cm, y, t->pred, N);
        double x[2] = {pixel_part, 0};
        train_sum_counts(&cm, x);
        pixel_part = x[0];
        for (int i = 0; i < MS_NUM_CLASSES; i++)
            for (int j = 0; j < MS_NUM_CLASSES; j++) t->train_cm.cm[i][j] += cm.cm[i][j];
    }
    const double loss = pixel_part + batch_part; /* the same on every rank */
    if (!isfinite(loss)) {
        return ms_fail(MS_ERR_NONFINITE, "train: loss is %g at step %lld (epoch %d batch %d); lr %g — lower lr",
                       loss, (long long)t->step + 1, t->epoch + 1, t->batch_in_epoch + 1, (double)t->lr);
    }
    memset(t->grads, 0, sizeof(float) * t->model->nparams);
    ms_unet_backward(t->model, &t->acts, t->grads);
    if (t->nranks > 1) train_sum_gradients(t);
    set_lr_for_step(t, batches);
    ms_adamw_cfg opt = *opt0;
    opt.lr = t->lr;
    t->step++;
    adamw_step(t->model->params, t->grads, t->m1, t->v, t->model->nparams, t->step, &opt);
    if (t->ema) ema_update(t);
    t->loss_sum += loss;
    return t->step % CHECK_EVERY == 0 ? train_check_replicas(t) : MS_OK;
}

void train_reweight(ms_trainer *t) {
    if (t->cfg.reweight <= 0 || t->ncurves == 0) return;
    const ms_epoch_stats *e = &t->curves[t->ncurves - 1];
    ms_reweight(t->base_w, e->train_iou, t->cfg.reweight, t->class_w);
    train_log(t, "reweight: class weights %.3g %.3g %.3g %.3g %.3g for epoch %d (training IoU of epoch %d)", t->class_w[0],
              t->class_w[1], t->class_w[2], t->class_w[3], t->class_w[4], e->epoch + 1, e->epoch);
}

/* ------------------------------------------------------------------ the loop */

static ms_status push_curve(ms_trainer *t, const ms_epoch_stats *e) {
    if (t->ncurves == t->capcurves) {
        int cap = t->capcurves ? t->capcurves * 2 : 32;
        ms_epoch_stats *c = realloc(t->curves, sizeof *c * cap);
        if (!c) return ms_fail(MS_ERR_NOMEM, "train: curves");
        t->curves = c;
        t->capcurves = cap;
    }
    t->curves[t->ncurves++] = *e;
    return MS_OK;
}

ms_status ms_trainer_run(ms_trainer *t) {
    const ms_train_config *c = &t->cfg;
    const int B = c->batch;
    const int batches = t->ntrain / B; /* drop the last partial batch: BN wants full batches */
    const ms_adamw_cfg opt0 = {t->lr, c->beta1, c->beta2, c->eps, c->weight_decay};
    const ms_augment_cfg aug = {c->hflip, c->brightness, c->contrast, c->max_shift};
    const double run_start = ms_now_s();
    double total_s = 0;
    for (int i = 0; i < t->ncurves; i++) total_s += t->curves[i].seconds;
    /* every rank starts from the same config and state (same seed, checkpoint or init file) */
    ms_status st = MS_OK;
    if (t->nranks > 1) {
        char *cj = ms_train_config_to_json(c);
        if (!cj) return ms_fail(MS_ERR_NOMEM, "train: config");
        st = ms_dist_check_same(ms_dist_hash(cj, strlen(cj), 1), "a training config");
        free(cj);
    }
    if (st || (st = train_check_replicas(t))) return st;
    /* a run resumed from the checkpoint of its early-stop epoch stays stopped */
    int stop_early = c->early_stop > 0 && t->bad_epochs >= c->early_stop;

    while (t->epoch < c->epochs && !stop_early) {
        const double ep_start = ms_now_s() - t->seconds_done;
        const int first_batch = t->batch_in_epoch;
        t->comm_s = 0;
        /* the epoch order comes from the order stream's state at the epoch start, so that a
         * mid-epoch resume regenerates the same order; the stream moves on when the epoch ends */
        if (t->batch_in_epoch == 0) {
            t->loss_sum = 0;
            memset(&t->train_cm, 0, sizeof t->train_cm);
        }
        ms_rng next_order = t->order_rng;
        memcpy(t->order, t->train_idx, sizeof(int) * (size_t)t->ntrain);
        ms_shuffle_int(t->order, t->ntrain, &next_order);

        for (; t->batch_in_epoch < batches; t->batch_in_epoch++) {
            const ms_rng aug_at_batch = t->aug_rng;
            int stop = atomic_load(&t->stop);
            double share = 1.0;
            /* every rank draws the whole batch (the same augmentation as one process) and
             * computes its share; the ranks agree on stopping at the same batch */
            if (!stop || t->nranks > 1)
                ms_batch_fill(t->tds, t->order + (size_t)t->batch_in_epoch * B, B, t->xb, t->yb, &aug, &t->aug_rng);
            if (t->nranks > 1) stop = train_agree_step(t, stop, &share);
            if (stop) {
                t->aug_rng = aug_at_batch; /* a resumed run draws this batch again */
                if (stop == 2) {
                    t->seconds_done = ms_now_s() - ep_start;
                    if ((st = train_checkpoint(t))) return st;
                    train_log(t, "paused at epoch %d batch %d: checkpoint written", t->epoch + 1, t->batch_in_epoch);
                }
                return ms_fail(MS_ERR_CANCELLED, "train: %s at epoch %d batch %d", stop == 2 ? "paused" : "cancelled",
                               t->epoch + 1, t->batch_in_epoch);
            }
            if ((st = train_step(t, batches, share, &opt0))) return st;
            if (t->cb.on_batch) {
                const double el = ms_now_s() - ep_start;
                const int done = t->batch_in_epoch + 1;
                const double per_batch = el / done;
                ms_progress p = {t->epoch + 1, c->epochs, done, batches, t->loss_sum / done,
                                 per_batch * ((double)(batches - done) + (double)(c->epochs - t->epoch - 1) * batches * 1.1),
                                 done * B / el};
                t->cb.on_batch(t->cb.user, &p);
            }
        }
        const double train_s = ms_now_s() - ep_start;

        /* validation */
        ms_epoch_stats e;
        memset(&e, 0, sizeof e);
        e.epoch = t->epoch + 1;
        e.train_loss = t->loss_sum / batches;
        ms_scores s;
        ms_confusion_scores(&t->train_cm, &s);
        e.train_miou = s.miou;
        memcpy(e.train_iou, s.iou, sizeof e.train_iou);
        e.lr = t->lr;
        if (t->nranks > 1 && batches > first_batch)
            train_log(t, "epoch %d: %.1f ms per step, of which %.1f ms in the gradient all-reduce (waiting for the slowest rank included)", t->epoch + 1,
                      1e3 * train_s / (batches - first_batch), 1e3 * t->comm_s / (batches - first_batch));
        if ((st = train_validate(t, &e))) return st;
        e.seconds = ms_now_s() - ep_start;
        e.images_per_s = batches * B / train_s;
        total_s += e.seconds;
        if ((st = push_curve(t, &e))) return st;
        t->epoch++;
        t->batch_in_epoch = 0;
        t->seconds_done = 0;
        t->order_rng = next_order;

        /* best weights, early stopping, plateau schedule — all on validation mIoU */
        const double score = isnan(e.val_miou) ? -1.0 : e.val_miou;
        if (score > t->best_miou) {
            t->best_miou = score;
            t->best_epoch = e.epoch;
            t->bad_epochs = 0;
            if ((st = train_save_best(t, &e, total_s))) return st;
        } else {
            t->bad_epochs++;
            if (c->early_stop > 0 && t->bad_epochs >= c->early_stop) stop_early = 1;
        }
        if (strcmp(c->schedule, "plateau") == 0) {
            if (score > t->plateau_best) {
                t->plateau_best = score;
                t->plateau_wait = 0;
            } else if (++t->plateau_wait >= c->plateau_patience) {
                const float nlr = fmaxf(t->lr * c->plateau_factor, c->min_lr);
                if (nlr < t->lr) train_log(t, "epoch %d: val mIoU flat for %d epochs, lr %.3g -> %.3g", e.epoch, t->plateau_wait, (double)t->lr, (double)nlr);
                t->lr = nlr;
                t->plateau_wait = 0;
            }
        }
        if ((st = train_check_replicas(t)) || (st = train_checkpoint(t))) return st;
        if (t->cb.on_epoch) t->cb.on_epoch(t->cb.user, &e);
        if (c->reweight > 0) train_reweight(t); /* the next epoch's weights (logged after this one) */
        if (stop_early) train_log(t, "early stop: no val mIoU gain for %d epochs", t->bad_epochs);
    }
    train_log(t, "finished %d epochs in %.0f s", t->epoch, ms_now_s() - run_start);
    return train_finish(t, total_s);
}
