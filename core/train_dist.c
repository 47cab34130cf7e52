/* The data-parallel steps of a training run (see core/train.c's file comment): the agreement on
 * stopping and the loss weight of each share, the gradient and count sums, the replicas' check.
 * With one rank the trainer calls none of these but train_check_replicas (which returns at once)
 * and train_share_of (the whole batch). Every MPI call is core/dist.c's. */
#include "marsseg_dist.h"
#include "trainer.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

void train_share_of(int n, int r, int size, int *lo, int *cnt) {
    const int q = n / size, rem = n % size;
    *lo = r * q + (r < rem ? r : rem);
    *cnt = q + (r < rem);
}

/* Any rank asked to stop (cancel beats pause) and the class pixel counts of every share, in one
 * sum: returns the agreed stop (0, 1 cancel, 2 pause) and sets *share to this share's part of the
 * batch's loss weight (sum over its pixels of class_w[label]). */
int train_agree_step(ms_trainer *t, int stop, double *share) {
    const size_t hw = (size_t)t->tds->h * t->tds->w, n = (size_t)t->share_n * hw;
    const uint8_t *y = t->yb + (size_t)t->share_lo * hw;
    int64_t v[2 + MS_NUM_CLASSES] = {stop == 1, stop == 2};
    for (size_t i = 0; i < n; i++)
        if (y[i] < MS_NUM_CLASSES) v[2 + y[i]]++;
    double mine = 0, all = 0;
    for (int k = 0; k < MS_NUM_CLASSES; k++) mine += (double)v[2 + k] * t->class_w[k];
    ms_dist_sum_i64(v, 2 + MS_NUM_CLASSES);
    for (int k = 0; k < MS_NUM_CLASSES; k++) all += (double)v[2 + k] * t->class_w[k];
    *share = all > 0 ? mine / all : 0;
    return v[0] ? 1 : v[1] ? 2 : 0;
}

/* The gradient sum over ranks: one all-reduce of the one contiguous gradient block (the
 * parameters' layout, unet.h), with the BN running stats appended when every share has its own
 * (they are averaged, so that every rank keeps the same; with sync_bn they already are). */
void train_sum_gradients(ms_trainer *t) {
    ms_model *m = t->model;
    const int bufs = !t->cfg.sync_bn;
    const double t0 = ms_now_s();
    if (bufs) memcpy(t->grads + m->nparams, m->bufs, sizeof(float) * m->nbufs);
    ms_dist_sum_f32(t->grads, m->nparams + (bufs ? m->nbufs : 0));
    if (bufs) {
        const float inv = 1.0f / (float)t->nranks;
        for (size_t i = 0; i < m->nbufs; i++) m->bufs[i] = t->grads[m->nparams + i] * inv;
    }
    t->comm_s += ms_now_s() - t0;
}

/* A confusion matrix and two numbers (loss sums) summed over ranks in one all-reduce (the
 * counts stay exact in double below 2^53). */
void train_sum_counts(ms_confusion *cm, double x[2]) {
    double v[2 + MS_NUM_CLASSES * MS_NUM_CLASSES];
    v[0] = x[0];
    v[1] = x[1];
    for (int i = 0; i < MS_NUM_CLASSES; i++)
        for (int j = 0; j < MS_NUM_CLASSES; j++) v[2 + i * MS_NUM_CLASSES + j] = (double)cm->cm[i][j];
    ms_dist_sum_f64(v, sizeof v / sizeof *v);
    x[0] = v[0];
    x[1] = v[1];
    for (int i = 0; i < MS_NUM_CLASSES; i++)
        for (int j = 0; j < MS_NUM_CLASSES; j++) cm->cm[i][j] = (int64_t)v[2 + i * MS_NUM_CLASSES + j];
}

/* Every rank holds the same weights, BN stats, AdamW moments and schedule state: checked by
 * hash against rank 0's (at the start, every CHECK_EVERY steps and before every checkpoint). */
ms_status train_check_replicas(ms_trainer *t) {
    if (t->nranks == 1) return MS_OK;
    const ms_model *m = t->model;
    const size_t np = sizeof(float) * m->nparams;
    uint64_t h = ms_dist_hash(m->params, np, 0x6D61727373656721ull);
    h = ms_dist_hash(m->bufs, sizeof(float) * m->nbufs, h);
    h = ms_dist_hash(t->m1, np, h);
    h = ms_dist_hash(t->v, np, h);
    const int64_t ints[] = {t->step, m->num_batches_tracked, t->epoch, t->batch_in_epoch};
    h = ms_dist_hash(ints, sizeof ints, h);
    h = ms_dist_hash(&t->lr, sizeof t->lr, h);
    h = ms_dist_hash(t->order_rng.s, sizeof t->order_rng.s, h);
    h = ms_dist_hash(t->aug_rng.s, sizeof t->aug_rng.s, h);
    char what[96];
    snprintf(what, sizeof what, "weights or optimiser state at step %lld", (long long)t->step);
    return ms_dist_check_same(h, what);
}
