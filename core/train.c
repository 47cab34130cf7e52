/* The training engine: data preparation, the epoch loop (AdamW, losses, augmentation, dropout),
 * validation, learning-rate schedule, early stopping with best-weights restore, curves, and
 * checkpoints after every epoch (and mid-epoch on pause) from which a run resumes exactly.
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
#include "checkpoint.h"
#include "marsseg_curves.h"
#include "marsseg_dist.h"
#include "marsseg_npz.h"
#include "data.h"
#include "layers.h"
#include "plan.h"
#include "rng.h"
#include "unet.h"
#include "util.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <stdatomic.h>

struct ms_trainer {
    ms_train_config cfg;
    char dir[1024];
    ms_train_callbacks cb;
    ms_dataset ds;
    int *train_idx, ntrain; /* training samples after oversampling (fixed order) */
    int *val_idx, nval;
    int *order;             /* this epoch's shuffled copy of train_idx */
    int dropped;
    float class_w[MS_NUM_CLASSES];
    ms_model *model, *best;
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

/* Steps between two checks that every rank holds the same weights and optimiser state. */
#define CHECK_EVERY 50

/* Rank r's part of n items split as evenly as possible (the first n % size ranks get one more). */
static void share_of(int n, int r, int size, int *lo, int *cnt) {
    const int q = n / size, rem = n % size;
    *lo = r * q + (r < rem ? r : rem);
    *cnt = q + (r < rem);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void logf_cb(ms_trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_cb(ms_trainer *t, const char *fmt, ...) {
    if (!t->cb.on_log) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    t->cb.on_log(t->cb.user, line);
}

void ms_set_threads(int threads) {
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    /* omp_set_num_threads sets the calling thread's own OpenMP thread count, and the OpenMP build
     * of OpenBLAS follows it per call (omp_get_max_threads): a training job's setting does not
     * leak into the HTTP threads that segment concurrently (openblas_set_num_threads would be
     * process-wide). */
    omp_set_num_threads(threads);
}

/* ------------------------------------------------------------------ data */

static size_t memory_budget(void) {
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || psz <= 0) return 0;
    return (size_t)pages * (size_t)psz / 2; /* the dataset may take half of RAM, never thrash */
}

/* Load, limit and de-duplicate as a run does, then split: shared by training and by
 * `marsseg eval --split-of`, so both see exactly the same validation tiles. */
static ms_status load_and_split(const ms_train_config *c, ms_dataset *ds, int *dropped, int **tr, int *ntr, int **val,
                                int *nval) {
    ms_status st = ms_dataset_load(ds, c->data, c->key, memory_budget());
    if (st) return st;
    if (!ds->mask) return ms_fail(MS_ERR_SHAPE, "%s: key %s holds no masks: training needs (N,2,H,W)", c->data, c->key);
    const int q = 1 << c->model.depth;
    if (ds->h % q || ds->w % q)
        return ms_fail(MS_ERR_SHAPE, "%s: tiles are %dx%d; depth %d needs multiples of %d", c->data, ds->h, ds->w,
                       c->model.depth, q);
    if (c->limit > 0 && c->limit < ds->n) ds->n = c->limit;
    *dropped = 0;
    if (c->dedup_k > 0 && (st = ms_dedup_masks(ds, c->dedup_k, dropped))) return st;
    return ms_split(ds->n, c->val_frac, c->split_group, c->seed, tr, ntr, val, nval);
}

ms_status ms_validation_set(const ms_train_config *c, ms_dataset *ds, int **val, int *nval) {
    int *tr = NULL, ntr = 0, dropped = 0;
    memset(ds, 0, sizeof *ds);
    *val = NULL;
    ms_status st = load_and_split(c, ds, &dropped, &tr, &ntr, val, nval);
    free(tr);
    if (st) {
        ms_dataset_free(ds);
        free(*val);
        *val = NULL;
    }
    return st;
}

static ms_status prepare_data(ms_trainer *t) {
    const ms_train_config *c = &t->cfg;
    int *tr = NULL, ntr = 0, dropped = 0;
    ms_status st = load_and_split(c, &t->ds, &dropped, &tr, &ntr, &t->val_idx, &t->nval);
    if (st) return st;
    logf_cb(t, "data: %d samples of %dx%d from %s[%s] (images %s), %d dropped as duplicate masks (recurring > %d times)",
            t->ds.n + dropped, t->ds.h, t->ds.w, c->data, c->key, t->ds.img_range, dropped, c->dedup_k);
    t->dropped = dropped;
    if (ntr < c->batch) {
        free(tr);
        return ms_fail(MS_ERR_ARG, "data: %d training samples are fewer than one batch of %d", ntr, c->batch);
    }
    st = ms_oversample(&t->ds, tr, ntr, 4, c->oversample, &t->train_idx, &t->ntrain);
    int64_t counts[MS_NUM_CLASSES];
    ms_class_pixel_counts(&t->ds, tr, ntr, counts);
    free(tr);
    if (st) return st;
    if (c->auto_weights) ms_class_weights_from_counts(counts, c->weight_power, c->bg_weight, t->class_w);
    else memcpy(t->class_w, c->class_weights, sizeof t->class_w);
    logf_cb(t, "data: %d training samples after oversampling big-rock tiles x%d, %d validation; class weights %.3g %.3g %.3g %.3g %.3g",
            t->ntrain, c->oversample, t->nval, t->class_w[0], t->class_w[1], t->class_w[2], t->class_w[3], t->class_w[4]);
    return MS_OK;
}

/* ------------------------------------------------------------------ set-up */

static ms_status alloc_state(ms_trainer *t) {
    const int B = t->cfg.batch, H = t->ds.h, W = t->ds.w;
    const size_t n = t->model->nparams;
    /* gradients, then room for the BN running stats: one all-reduce averages both */
    t->grads = calloc(n + t->model->nbufs, sizeof(float));
    t->m1 = calloc(n, sizeof(float));
    t->v = calloc(n, sizeof(float));
    t->xb = malloc(sizeof(float) * B * H * W);
    t->yb = malloc((size_t)B * H * W);
    t->pred = malloc((size_t)B * H * W);
    t->order = malloc(sizeof(int) * (size_t)t->ntrain);
    if (!t->grads || !t->m1 || !t->v || !t->xb || !t->yb || !t->pred || !t->order)
        return ms_fail(MS_ERR_NOMEM, "train: optimiser state for %zu parameters", n);
    ms_status st = ms_acts_create(&t->acts, t->model, t->share_n, H, W, 1);
    if (st == MS_OK && t->nranks > 1 && t->cfg.sync_bn) {
        t->bn_red.sum = ms_dist_sum_f64_cb;
        t->acts.bn_sync = &t->bn_red;
    }
    return st;
}

static ms_status make_dir(const char *dir) {
    if (mkdir(dir, 0755) && errno != EEXIST) return ms_fail(MS_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    return MS_OK;
}

void ms_trainer_free(ms_trainer *t) {
    if (!t) return;
    ms_acts_free(&t->acts);
    ms_model_free(t->model);
    ms_model_free(t->best);
    ms_dataset_free(&t->ds);
    free(t->train_idx);
    free(t->val_idx);
    free(t->order);
    free(t->grads);
    free(t->m1);
    free(t->v);
    free(t->xb);
    free(t->yb);
    free(t->pred);
    free(t->curves);
    free(t);
}

static ms_status trainer_new(ms_trainer **out, const ms_train_config *cfg, const char *dir, const ms_train_callbacks *cb) {
    ms_status st = ms_train_config_validate(cfg);
    if (st) return st;
    if (strlen(dir) >= sizeof((*out)->dir) - 32) return ms_fail(MS_ERR_ARG, "train: directory path too long");
    ms_trainer *t = calloc(1, sizeof *t);
    if (!t) return ms_fail(MS_ERR_NOMEM, "train: trainer");
    t->cfg = *cfg;
    snprintf(t->dir, sizeof t->dir, "%s", dir);
    if (cb) t->cb = *cb;
    *out = t;
    ms_set_threads(cfg->threads);
    t->rank = ms_dist_rank();
    t->nranks = ms_dist_size();
    if (cfg->batch < t->nranks)
        return ms_fail(MS_ERR_ARG, "batch: %d is smaller than the %d ranks; every rank needs a share of each batch", cfg->batch,
                       t->nranks);
    share_of(cfg->batch, t->rank, t->nranks, &t->share_lo, &t->share_n);
    if (t->rank == 0 && (st = make_dir(dir))) return st; /* rank 0 alone writes the run directory */
    if (t->nranks > 1) {
        /* every rank must run the same algorithms (their roundings differ, and the ranks' weights
         * must stay bit-identical): no per-rank measurement, the fixed rules decide everywhere */
        conv_plan_reset();
        setenv("MARSSEG_PLAN", "off", 1);
        logf_cb(t, "plan: measured plans off in a data-parallel run (the fixed rules decide on every rank)");
    } else {
        /* the run's own plan (core/plan.c): a resumed run takes the algorithms it started with */
        char plan[1100];
        snprintf(plan, sizeof plan, "%s/plan.json", dir);
        if (ms_plan_load(plan)) logf_cb(t, "plan: %s; ignored, measured again", ms_last_error());
    }
    if ((st = prepare_data(t))) return st;
    if (t->nranks > 1) {
        char shares[64];
        const int q = cfg->batch / t->nranks;
        if (cfg->batch % t->nranks) snprintf(shares, sizeof shares, "%d or %d", q + 1, q);
        else snprintf(shares, sizeof shares, "%d", q);
        logf_cb(t, "data-parallel: %d ranks; each batch of %d splits into shares of %s samples; BatchNorm statistics %s",
                t->nranks, cfg->batch, shares, cfg->sync_bn ? "over the whole batch (sync_bn)" : "per share");
    }
    return MS_OK;
}

/* cfg.init: start from the parameters and BN statistics of an earlier run's weights (same
 * architecture; dropout may differ). The optimiser moments start at zero. */
static ms_status warm_start(ms_model *m, const char *path) {
    ms_model *src = NULL;
    ms_npz *z = NULL;
    /* read, not ms_model_load: only the parameters are wanted, not the inference form */
    ms_status st = ms_npz_open(&z, path);
    if (!st) st = ms_model_read_npz(z, path, &src);
    ms_npz_close(z);
    if (st) {
        char why[512];
        snprintf(why, sizeof why, "%s", ms_last_error()); /* ms_fail rewrites that buffer */
        return ms_fail(st, "init: %s", why);
    }
    if (src->cfg.depth != m->cfg.depth || src->cfg.base != m->cfg.base || src->cfg.classes != m->cfg.classes ||
        src->nparams != m->nparams || src->nbufs != m->nbufs) {
        st = ms_fail(MS_ERR_ARG, "init: %s has depth %d base %d classes %d; the config asks for depth %d base %d classes %d",
                     path, src->cfg.depth, src->cfg.base, src->cfg.classes, m->cfg.depth, m->cfg.base, m->cfg.classes);
    } else {
        memcpy(m->params, src->params, sizeof(float) * m->nparams);
        memcpy(m->bufs, src->bufs, sizeof(float) * m->nbufs);
        m->num_batches_tracked = src->num_batches_tracked;
    }
    ms_model_free(src);
    return st;
}

static ms_status create_local(ms_trainer **out, const ms_train_config *cfg, const char *dir, const ms_train_callbacks *cb) {
    ms_trainer *t = NULL;
    ms_status st = trainer_new(&t, cfg, dir, cb);
    if (st == MS_OK) st = ms_model_create(&t->model, &t->cfg.model, t->cfg.seed);
    if (st == MS_OK && t->cfg.init[0]) st = warm_start(t->model, t->cfg.init);
    if (st == MS_OK) st = alloc_state(t);
    if (st) {
        ms_trainer_free(t);
        return st;
    }
    t->lr = t->cfg.lr;
    t->best_miou = -1.0;
    t->plateau_best = -1.0;
    ms_rng_seed(&t->order_rng, t->cfg.seed ^ 0x6F72646572ull);
    ms_rng_seed(&t->aug_rng, t->cfg.seed ^ 0x617567ull);
    *out = t;
    return MS_OK;
}

static ms_status resume_local(ms_trainer **out, const char *dir, const ms_train_callbacks *cb) {
    ms_checkpoint ck;
    char path[1100];
    snprintf(path, sizeof path, "%s/checkpoint.npz", dir);
    ms_status st = ms_checkpoint_load(path, &ck);
    if (st) return st;
    ms_trainer *t = NULL;
    st = trainer_new(&t, &ck.cfg, dir, cb);
    if (st == MS_OK) {
        t->model = ck.model;
        t->best = ck.best;
        ck.model = ck.best = NULL;
        st = alloc_state(t);
    }
    if (st) {
        ms_trainer_free(t);
        ms_checkpoint_free(&ck);
        return st;
    }
    memcpy(t->m1, ck.m1, sizeof(float) * t->model->nparams);
    memcpy(t->v, ck.v, sizeof(float) * t->model->nparams);
    t->curves = ck.curves;
    t->ncurves = t->capcurves = ck.ncurves;
    ck.curves = NULL;
    const ms_checkpoint_state *cs = &ck.state;
    t->epoch = cs->epoch;
    t->batch_in_epoch = cs->batch_in_epoch;
    t->step = cs->step;
    t->lr = cs->lr;
    t->best_miou = cs->best_miou;
    t->best_epoch = cs->best_epoch;
    t->bad_epochs = cs->bad_epochs;
    t->plateau_best = cs->plateau_best;
    t->plateau_wait = cs->plateau_wait;
    t->order_rng = cs->order_rng;
    t->aug_rng = cs->aug_rng;
    t->loss_sum = cs->loss_sum;
    t->train_cm = cs->train_cm;
    t->seconds_done = cs->seconds_in_epoch;
    ms_checkpoint_free(&ck);
    logf_cb(t, "resumed %s at epoch %d batch %d (step %lld)", dir, t->epoch + 1, t->batch_in_epoch, (long long)t->step);
    *out = t;
    return MS_OK;
}

/* In a data-parallel run every rank creates its trainer; all of them learn if one failed (so that
 * none waits for the others in ms_trainer_run). */
static ms_status agreed(ms_status st, ms_trainer **out) {
    st = ms_dist_agree(st);
    if (st && *out) {
        ms_trainer_free(*out);
        *out = NULL;
    }
    return st;
}

ms_status ms_trainer_create(ms_trainer **out, const ms_train_config *cfg, const char *dir, const ms_train_callbacks *cb) {
    *out = NULL;
    return agreed(create_local(out, cfg, dir, cb), out);
}

ms_status ms_trainer_resume(ms_trainer **out, const char *dir, const ms_train_callbacks *cb) {
    *out = NULL;
    return agreed(resume_local(out, dir, cb), out);
}

void ms_trainer_cancel(ms_trainer *t) { atomic_store(&t->stop, 1); }
void ms_trainer_pause(ms_trainer *t) { atomic_store(&t->stop, 2); }
const ms_train_config *ms_trainer_config(const ms_trainer *t) { return &t->cfg; }
ms_status ms_trainer_set_epochs(ms_trainer *t, int epochs) {
    if (epochs < 1 || epochs > 10000) return ms_fail(MS_ERR_ARG, "epochs: %d is outside [1, 10000]", epochs);
    t->cfg.epochs = epochs;
    return MS_OK;
}
int ms_trainer_curves(const ms_trainer *t, const ms_epoch_stats **out) {
    *out = t->curves;
    return t->ncurves;
}

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

static void argmax_labels(uint8_t *pred, const float *logits, int K, size_t N) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) {
        int best = 0;
        float bv = logits[i];
        for (int k = 1; k < K; k++)
            if (logits[(size_t)k * N + i] > bv) {
                bv = logits[(size_t)k * N + i];
                best = k;
            }
        pred[i] = (uint8_t)best;
    }
}

static void set_lr_for_step(ms_trainer *t, int batches) {
    if (strcmp(t->cfg.schedule, "cosine") != 0) return;
    const double total = (double)t->cfg.epochs * batches, pos = (double)t->step;
    const double f = 0.5 * (1.0 + cos(M_PI * fmin(pos / total, 1.0)));
    t->lr = (float)(t->cfg.min_lr + (t->cfg.lr - t->cfg.min_lr) * f);
}

/* ------------------------------------------------------------------ evaluation */

/* Eval-mode pass over samples idx[0..n-1] (all if idx is NULL): confusion matrix, and the
 * weighted CE loss when class_w is given (not with tta) as its two sums (weighted losses,
 * weights). */
static ms_status evaluate_into(const ms_model *m, const ms_dataset *ds, const int *idx, int n, int tta, int batch,
                               const float *class_w, double loss_sums[2], ms_confusion *cm) {
    if (!ds->mask) return ms_fail(MS_ERR_ARG, "evaluate: the dataset has no masks");
    if (n <= 0) return MS_OK;
    const int H = ds->h, W = ds->w, K = m->cfg.classes, copies = tta ? 2 : 1;
    if (batch < 1) batch = 32;
    if (batch > n) batch = n;
    const size_t hw = (size_t)H * W;
    ms_acts a = {0}, tail = {0};
    float *x = malloc(sizeof(float) * hw * batch * copies);
    uint8_t *y = malloc(hw * batch), *pred = malloc(hw * batch);
    int *order = malloc(sizeof(int) * batch);
    double lsum = 0, wsum_all = 0;
    ms_status st = MS_OK;
    if (!x || !y || !pred || !order) {
        st = ms_fail(MS_ERR_NOMEM, "evaluate: buffers");
        goto done;
    }
    if ((st = ms_acts_create(&a, m, batch * copies, H, W, 0))) goto done;
    for (int i0 = 0; i0 < n; i0 += batch) {
        const int nb = MS_MIN(batch, n - i0);
        ms_acts *ap = &a;
        if (nb < batch) { /* a short last batch gets activations of its own size */
            if ((st = ms_acts_create(&tail, m, nb * copies, H, W, 0))) goto done;
            ap = &tail;
        }
        for (int i = 0; i < nb; i++) order[i] = idx ? idx[i0 + i] : i0 + i;
        ms_batch_fill(ds, order, nb, x, y, NULL, NULL);
        if (tta) /* images nb..2nb-1 are the mirrored copies */
            for (int i = 0; i < nb; i++)
                for (int r = 0; r < H; r++)
                    for (int c = 0; c < W; c++) x[(nb + i) * hw + (size_t)r * W + c] = x[i * hw + (size_t)r * W + (W - 1 - c)];
        ms_unet_forward((ms_model *)m, ap, x, 0, 0);
        const size_t N = (size_t)nb * copies * hw;
        if (!tta) {
            if (class_w) {
                double ws = 0;
                lsum += softmax_ce_forward_backward(NULL, ap->logits, y, class_w, K, N, 1.0f, &ws) * ws;
                wsum_all += ws;
            }
            argmax_labels(pred, ap->logits, K, N);
        } else {
            /* average the logits of an image and of its mirror, mirrored back */
            for (int i = 0; i < nb; i++)
                for (size_t p = 0; p < hw; p++) {
                    const size_t r = p / W, c = p % W, q = (size_t)(nb + i) * hw + r * W + (W - 1 - c);
                    float mx = -INFINITY;
                    int best = 0;
                    for (int k = 0; k < K; k++) {
                        const float v = ap->logits[(size_t)k * N + (size_t)i * hw + p] + ap->logits[(size_t)k * N + q];
                        if (v > mx) {
                            mx = v;
                            best = k;
                        }
                    }
                    pred[(size_t)i * hw + p] = (uint8_t)best;
                }
        }
        ms_confusion_add(cm, y, pred, (size_t)nb * hw);
    }
    if (loss_sums) { /* the weighted CE is their ratio; ranks add theirs first */
        loss_sums[0] = lsum;
        loss_sums[1] = wsum_all;
    }
done:
    ms_acts_free(&a);
    ms_acts_free(&tail);
    free(x);
    free(y);
    free(pred);
    free(order);
    return st;
}

ms_status ms_evaluate(const ms_model *m, const ms_dataset *ds, const int *idx, int n, int tta, int batch, ms_confusion *cm) {
    return evaluate_into(m, ds, idx, n, tta, batch, NULL, NULL, cm);
}

/* ------------------------------------------------------------------ the loop */

static ms_status save_checkpoint(ms_trainer *t) {
    char path[1100];
    snprintf(path, sizeof path, "%s/checkpoint.npz", t->dir);
    ms_checkpoint_state cs = {
        .epoch = t->epoch, .batch_in_epoch = t->batch_in_epoch, .step = t->step, .lr = t->lr,
        .best_miou = t->best_miou, .best_epoch = t->best_epoch, .bad_epochs = t->bad_epochs,
        .plateau_best = t->plateau_best, .plateau_wait = t->plateau_wait,
        .order_rng = t->order_rng, .aug_rng = t->aug_rng, .loss_sum = t->loss_sum,
        .train_cm = t->train_cm, .seconds_in_epoch = t->seconds_done,
    };
    ms_status st = ms_checkpoint_save(path, &t->cfg, &cs, t->model, t->best, t->m1, t->v, t->curves, t->ncurves);
    snprintf(path, sizeof path, "%s/plan.json", t->dir); /* the algorithms this run measured and took */
    if (!st && ms_plan_save(path)) logf_cb(t, "plan: %s", ms_last_error());
    return st;
}

/* The "meta" JSON stored with saved models: where they came from and how good they are. */
static char *model_meta(ms_trainer *t, const ms_epoch_stats *e, double total_s) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "source", "train");
    cJSON_AddNumberToObject(root, "epoch", e ? e->epoch : 0);
    cJSON_AddItemToObject(root, "val_miou", ms_json_number(e ? e->val_miou : NAN));
    cJSON *iou = cJSON_AddArrayToObject(root, "val_iou");
    for (int k = 0; k < MS_NUM_CLASSES; k++) cJSON_AddItemToArray(iou, ms_json_number(e ? e->val_iou[k] : NAN));
    cJSON_AddItemToObject(root, "pixel_acc", ms_json_number(e ? e->pixel_acc : NAN));
    cJSON_AddItemToObject(root, "val_loss", ms_json_number(e ? e->val_loss : NAN));
    cJSON_AddNumberToObject(root, "train_seconds", total_s);
    cJSON_AddNumberToObject(root, "steps", (double)t->step);
    cJSON *cj = ms_train_config_to_cjson(&t->cfg);
    if (cj) cJSON_AddItemToObject(root, "config", cj);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

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

static void copy_weights(ms_model *dst, const ms_model *src) {
    memcpy(dst->params, src->params, sizeof(float) * src->nparams);
    memcpy(dst->bufs, src->bufs, sizeof(float) * src->nbufs);
    dst->num_batches_tracked = src->num_batches_tracked;
}

static ms_status finish(ms_trainer *t, double total_s) {
    const ms_epoch_stats *best = NULL, *last = t->ncurves ? &t->curves[t->ncurves - 1] : NULL;
    for (int i = 0; i < t->ncurves; i++)
        if (t->curves[i].epoch == t->best_epoch) best = &t->curves[i];
    if (t->cfg.restore_best && t->best && best) {
        copy_weights(t->model, t->best);
        logf_cb(t, "restored the best weights (epoch %d, val mIoU %.4f)", t->best_epoch, best->val_miou);
    } else {
        best = last;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/model.npz", t->dir);
    char *meta = model_meta(t, best, total_s);
    ms_status st = t->rank == 0 ? ms_model_save(t->model, path, meta) : MS_OK;
    free(meta);
    return ms_dist_agree(st);
}

/* ------------------------------------------------------------------ data-parallel steps */

/* Any rank asked to stop (cancel beats pause) and the class pixel counts of every share, in one
 * sum: returns the agreed stop (0, 1 cancel, 2 pause) and sets *share to this share's part of the
 * batch's loss weight (sum over its pixels of class_w[label]). */
static int agree_step(ms_trainer *t, int stop, double *share) {
    const size_t hw = (size_t)t->ds.h * t->ds.w, n = (size_t)t->share_n * hw;
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
static void sum_gradients(ms_trainer *t) {
    ms_model *m = t->model;
    const int bufs = !t->cfg.sync_bn;
    const double t0 = now_s();
    if (bufs) memcpy(t->grads + m->nparams, m->bufs, sizeof(float) * m->nbufs);
    ms_dist_sum_f32(t->grads, m->nparams + (bufs ? m->nbufs : 0));
    if (bufs) {
        const float inv = 1.0f / (float)t->nranks;
        for (size_t i = 0; i < m->nbufs; i++) m->bufs[i] = t->grads[m->nparams + i] * inv;
    }
    t->comm_s += now_s() - t0;
}

/* A confusion matrix and two numbers (loss sums) summed over ranks in one all-reduce (the
 * counts stay exact in double below 2^53). */
static void sum_counts(ms_confusion *cm, double x[2]) {
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
static ms_status check_replicas(ms_trainer *t) {
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

/* Files are rank 0's: the other ranks skip the write, and all of them learn whether it worked. */
static ms_status rank0_checkpoint(ms_trainer *t) { return ms_dist_agree(t->rank == 0 ? save_checkpoint(t) : MS_OK); }

/* One training step on this rank's share of the batch in t->xb/t->yb. */
static ms_status train_step(ms_trainer *t, int batches, double share, const ms_adamw_cfg *opt0) {
    const ms_train_config *c = &t->cfg;
    const size_t hw = (size_t)t->ds.h * t->ds.w, N = (size_t)t->share_n * hw;
    const int K = t->model->cfg.classes;
    const uint8_t *y = t->yb + (size_t)t->share_lo * hw;
    /* every rank its own dropout masks; rank 0's are those of a one-process run */
    const uint64_t dseed = c->seed * 0x9E3779B97F4A7C15ull + (uint64_t)t->step + (uint64_t)t->rank * 0xD1B54A32D192ED03ull;
    ms_unet_forward(t->model, &t->acts, t->xb + (size_t)t->share_lo * hw, 1, dseed);
    double pixel_part, batch_part;
    batch_loss(t, t->acts.logits, t->acts.d_logits, y, N, share, &pixel_part, &batch_part);
    argmax_labels(t->pred, t->acts.logits, K, N);
    if (t->nranks == 1) {
        ms_confusion_add(&t->train_cm, y, t->pred, N);
    } else { /* this share's loss part and counts, summed over ranks */
        ms_confusion cm;
        memset(&cm, 0, sizeof cm);
        ms_confusion_add(&cm, y, t->pred, N);
        double x[2] = {pixel_part, 0};
        sum_counts(&cm, x);
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
    if (t->nranks > 1) sum_gradients(t);
    set_lr_for_step(t, batches);
    ms_adamw_cfg opt = *opt0;
    opt.lr = t->lr;
    t->step++;
    adamw_step(t->model->params, t->grads, t->m1, t->v, t->model->nparams, t->step, &opt);
    t->loss_sum += loss;
    return t->step % CHECK_EVERY == 0 ? check_replicas(t) : MS_OK;
}

ms_status ms_trainer_run(ms_trainer *t) {
    const ms_train_config *c = &t->cfg;
    const int B = c->batch;
    const int batches = t->ntrain / B; /* drop the last partial batch: BN wants full batches */
    const ms_adamw_cfg opt0 = {t->lr, c->beta1, c->beta2, c->eps, c->weight_decay};
    const ms_augment_cfg aug = {c->hflip, c->brightness, c->contrast, c->max_shift};
    const double run_start = now_s();
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
    if (st || (st = check_replicas(t))) return st;
    /* a run resumed from the checkpoint of its early-stop epoch stays stopped */
    int stop_early = c->early_stop > 0 && t->bad_epochs >= c->early_stop;

    while (t->epoch < c->epochs && !stop_early) {
        const double ep_start = now_s() - t->seconds_done;
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
                ms_batch_fill(&t->ds, t->order + (size_t)t->batch_in_epoch * B, B, t->xb, t->yb, &aug, &t->aug_rng);
            if (t->nranks > 1) stop = agree_step(t, stop, &share);
            if (stop) {
                t->aug_rng = aug_at_batch; /* a resumed run draws this batch again */
                if (stop == 2) {
                    t->seconds_done = now_s() - ep_start;
                    if ((st = rank0_checkpoint(t))) return st;
                    logf_cb(t, "paused at epoch %d batch %d: checkpoint written", t->epoch + 1, t->batch_in_epoch);
                }
                return ms_fail(MS_ERR_CANCELLED, "train: %s at epoch %d batch %d", stop == 2 ? "paused" : "cancelled",
                               t->epoch + 1, t->batch_in_epoch);
            }
            if ((st = train_step(t, batches, share, &opt0))) return st;
            if (t->cb.on_batch) {
                const double el = now_s() - ep_start;
                const int done = t->batch_in_epoch + 1;
                const double per_batch = el / done;
                ms_progress p = {t->epoch + 1, c->epochs, done, batches, t->loss_sum / done,
                                 per_batch * ((double)(batches - done) + (double)(c->epochs - t->epoch - 1) * batches * 1.1),
                                 done * B / el};
                t->cb.on_batch(t->cb.user, &p);
            }
        }
        const double train_s = now_s() - ep_start;

        /* validation */
        ms_epoch_stats e;
        memset(&e, 0, sizeof e);
        e.epoch = t->epoch + 1;
        e.train_loss = t->loss_sum / batches;
        ms_scores s;
        ms_confusion_scores(&t->train_cm, &s);
        e.train_miou = s.miou;
        e.lr = t->lr;
        if (t->nranks > 1 && batches > first_batch)
            logf_cb(t, "epoch %d: %.1f ms per step, of which %.1f ms in the gradient all-reduce (waiting for the slowest rank included)", t->epoch + 1,
                    1e3 * train_s / (batches - first_batch), 1e3 * t->comm_s / (batches - first_batch));
        if (t->nval > 0) {
            /* each rank evaluates its share of the validation tiles; the counts are summed */
            ms_confusion cm;
            memset(&cm, 0, sizeof cm);
            double loss_sums[2] = {0, 0};
            int lo, n;
            share_of(t->nval, t->rank, t->nranks, &lo, &n);
            st = evaluate_into(t->model, &t->ds, t->val_idx + lo, n, 0, B, t->class_w, loss_sums, &cm);
            if ((st = ms_dist_agree(st))) return st;
            if (t->nranks > 1) sum_counts(&cm, loss_sums);
            e.val_loss = loss_sums[1] > 0 ? loss_sums[0] / loss_sums[1] : 0;
            ms_confusion_scores(&cm, &s);
            e.val_miou = s.miou;
            e.pixel_acc = s.pixel_acc;
            memcpy(e.val_iou, s.iou, sizeof e.val_iou);
        } else {
            e.val_miou = e.train_miou;
            for (int k = 0; k < MS_NUM_CLASSES; k++) e.val_iou[k] = NAN;
        }
        e.seconds = now_s() - ep_start;
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
            if (!t->best && (st = ms_model_clone(&t->best, t->model))) return st;
            copy_weights(t->best, t->model);
            char path[1100], *meta = model_meta(t, &e, total_s);
            snprintf(path, sizeof path, "%s/best.npz", t->dir);
            st = t->rank == 0 ? ms_model_save(t->best, path, meta) : MS_OK;
            free(meta);
            if ((st = ms_dist_agree(st))) return st;
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
                if (nlr < t->lr) logf_cb(t, "epoch %d: val mIoU flat for %d epochs, lr %.3g -> %.3g", e.epoch, t->plateau_wait, (double)t->lr, (double)nlr);
                t->lr = nlr;
                t->plateau_wait = 0;
            }
        }
        if ((st = check_replicas(t)) || (st = rank0_checkpoint(t))) return st;
        if (t->cb.on_epoch) t->cb.on_epoch(t->cb.user, &e);
        if (stop_early) logf_cb(t, "early stop: no val mIoU gain for %d epochs", t->bad_epochs);
    }
    logf_cb(t, "finished %d epochs in %.0f s", t->epoch, now_s() - run_start);
    return finish(t, total_s);
}
