/* The training engine: data preparation, the epoch loop (AdamW, losses, augmentation, dropout),
 * validation, learning-rate schedule, early stopping with best-weights restore, curves, and
 * checkpoints after every epoch (and mid-epoch on pause) from which a run resumes exactly.
 *
 * Determinism: every random choice comes from two explicit RNG streams (epoch order and
 * augmentation) plus a dropout seed derived from (seed, step), all saved in checkpoints; with the
 * same seed and thread count a run, or a resumed run, is bit-identical. */
#include "checkpoint.h"
#include "marsseg_npz.h"
#include "data.h"
#include "layers.h"
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
};

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
    t->grads = calloc(n, sizeof(float));
    t->m1 = calloc(n, sizeof(float));
    t->v = calloc(n, sizeof(float));
    t->xb = malloc(sizeof(float) * B * H * W);
    t->yb = malloc((size_t)B * H * W);
    t->pred = malloc((size_t)B * H * W);
    t->order = malloc(sizeof(int) * (size_t)t->ntrain);
    if (!t->grads || !t->m1 || !t->v || !t->xb || !t->yb || !t->pred || !t->order)
        return ms_fail(MS_ERR_NOMEM, "train: optimiser state for %zu parameters", n);
    return ms_acts_create(&t->acts, t->model, B, H, W, 1);
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
    if ((st = make_dir(dir))) return st;
    /* the run's own plan (core/plan.c): a resumed run takes the algorithms it started with */
    char plan[1100];
    snprintf(plan, sizeof plan, "%s/plan.json", dir);
    if (ms_plan_load(plan)) logf_cb(t, "plan: %s; ignored, measured again", ms_last_error());
    return prepare_data(t);
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

ms_status ms_trainer_create(ms_trainer **out, const ms_train_config *cfg, const char *dir, const ms_train_callbacks *cb) {
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

ms_status ms_trainer_resume(ms_trainer **out, const char *dir, const ms_train_callbacks *cb) {
    ms_train_config cfg;
    ms_checkpoint_state cs;
    ms_model *model = NULL, *best = NULL;
    float *m1 = NULL, *v = NULL;
    ms_epoch_stats *curves = NULL;
    int ncurves = 0;
    char path[1100];
    snprintf(path, sizeof path, "%s/checkpoint.npz", dir);
    ms_status st = ms_checkpoint_load(path, &cfg, &cs, &model, &best, &m1, &v, &curves, &ncurves);
    if (st) return st;
    ms_trainer *t = NULL;
    st = trainer_new(&t, &cfg, dir, cb);
    if (st == MS_OK) {
        t->model = model;
        t->best = best;
        model = best = NULL;
        st = alloc_state(t);
    }
    if (st) {
        ms_trainer_free(t);
        ms_model_free(model);
        ms_model_free(best);
        free(m1);
        free(v);
        free(curves);
        return st;
    }
    memcpy(t->m1, m1, sizeof(float) * t->model->nparams);
    memcpy(t->v, v, sizeof(float) * t->model->nparams);
    free(m1);
    free(v);
    t->curves = curves;
    t->ncurves = t->capcurves = ncurves;
    t->epoch = cs.epoch;
    t->batch_in_epoch = cs.batch_in_epoch;
    t->step = cs.step;
    t->lr = cs.lr;
    t->best_miou = cs.best_miou;
    t->best_epoch = cs.best_epoch;
    t->bad_epochs = cs.bad_epochs;
    t->plateau_best = cs.plateau_best;
    t->plateau_wait = cs.plateau_wait;
    t->order_rng = cs.order_rng;
    t->aug_rng = cs.aug_rng;
    t->loss_sum = cs.loss_sum;
    t->train_cm = cs.train_cm;
    t->seconds_done = cs.seconds_in_epoch;
    logf_cb(t, "resumed %s at epoch %d batch %d (step %lld)", dir, t->epoch + 1, t->batch_in_epoch, (long long)t->step);
    *out = t;
    return MS_OK;
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

static double batch_loss(ms_trainer *t, const float *logits, float *dlogits, size_t N) {
    const char *l = t->cfg.loss;
    const int K = t->model->cfg.classes;
    if (strcmp(l, "focal") == 0) return focal_forward_backward(dlogits, logits, t->yb, t->class_w, t->cfg.focal_gamma, K, N, 1.0f);
    if (strcmp(l, "dice") == 0) return dice_forward_backward(dlogits, logits, t->yb, t->class_w, K, N, 1.0f, 0);
    double loss = softmax_ce_forward_backward(dlogits, logits, t->yb, t->class_w, K, N, 1.0f, NULL);
    if (strcmp(l, "wce+dice") == 0) loss += dice_forward_backward(dlogits, logits, t->yb, t->class_w, K, N, 1.0f, 1);
    return loss;
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
 * weighted CE loss when class_w is given (not with tta). */
static ms_status evaluate_into(const ms_model *m, const ms_dataset *ds, const int *idx, int n, int tta, int batch,
                               const float *class_w, double *loss_out, ms_confusion *cm) {
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
    if (loss_out) *loss_out = wsum_all > 0 ? lsum / wsum_all : 0;
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

static cJSON *num_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

/* The "meta" JSON stored with saved models: where they came from and how good they are. */
static char *model_meta(ms_trainer *t, const ms_epoch_stats *e, double total_s) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "source", "train");
    cJSON_AddNumberToObject(root, "epoch", e ? e->epoch : 0);
    cJSON_AddItemToObject(root, "val_miou", num_or_null(e ? e->val_miou : NAN));
    cJSON *iou = cJSON_AddArrayToObject(root, "val_iou");
    for (int k = 0; k < MS_NUM_CLASSES; k++) cJSON_AddItemToArray(iou, num_or_null(e ? e->val_iou[k] : NAN));
    cJSON_AddItemToObject(root, "pixel_acc", num_or_null(e ? e->pixel_acc : NAN));
    cJSON_AddItemToObject(root, "val_loss", num_or_null(e ? e->val_loss : NAN));
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
    ms_status st = ms_model_save(t->model, path, meta);
    free(meta);
    return st;
}

ms_status ms_trainer_run(ms_trainer *t) {
    const ms_train_config *c = &t->cfg;
    const int B = c->batch, H = t->ds.h, W = t->ds.w, K = t->model->cfg.classes;
    const size_t N = (size_t)B * H * W;
    const int batches = t->ntrain / B; /* drop the last partial batch: BN wants full batches */
    const ms_adamw_cfg opt0 = {t->lr, c->beta1, c->beta2, c->eps, c->weight_decay};
    const ms_augment_cfg aug = {c->hflip, c->brightness, c->contrast, c->max_shift};
    const double run_start = now_s();
    double total_s = 0;
    for (int i = 0; i < t->ncurves; i++) total_s += t->curves[i].seconds;
    ms_status st = MS_OK;
    /* a run resumed from the checkpoint of its early-stop epoch stays stopped */
    int stop_early = c->early_stop > 0 && t->bad_epochs >= c->early_stop;

    while (t->epoch < c->epochs && !stop_early) {
        const double ep_start = now_s() - t->seconds_done;
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
            const int stop = atomic_load(&t->stop);
            if (stop) {
                if (stop == 2) {
                    t->seconds_done = now_s() - ep_start;
                    st = save_checkpoint(t);
                    if (st) return st;
                    logf_cb(t, "paused at epoch %d batch %d: checkpoint written", t->epoch + 1, t->batch_in_epoch);
                }
                return ms_fail(MS_ERR_CANCELLED, "train: %s at epoch %d batch %d", stop == 2 ? "paused" : "cancelled",
                               t->epoch + 1, t->batch_in_epoch);
            }
            ms_batch_fill(&t->ds, t->order + (size_t)t->batch_in_epoch * B, B, t->xb, t->yb, &aug, &t->aug_rng);
            ms_unet_forward(t->model, &t->acts, t->xb, 1, c->seed * 0x9E3779B97F4A7C15ull + (uint64_t)t->step);
            const double loss = batch_loss(t, t->acts.logits, t->acts.d_logits, N);
            if (!isfinite(loss)) {
                return ms_fail(MS_ERR_NONFINITE, "train: loss is %g at step %lld (epoch %d batch %d); lr %g — lower lr",
                               loss, (long long)t->step + 1, t->epoch + 1, t->batch_in_epoch + 1, (double)t->lr);
            }
            memset(t->grads, 0, sizeof(float) * t->model->nparams);
            ms_unet_backward(t->model, &t->acts, t->grads);
            set_lr_for_step(t, batches);
            ms_adamw_cfg opt = opt0;
            opt.lr = t->lr;
            t->step++;
            adamw_step(t->model->params, t->grads, t->m1, t->v, t->model->nparams, t->step, &opt);
            argmax_labels(t->pred, t->acts.logits, K, N);
            ms_confusion_add(&t->train_cm, t->yb, t->pred, N);
            t->loss_sum += loss;
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
        if (t->nval > 0) {
            ms_confusion cm;
            memset(&cm, 0, sizeof cm);
            st = evaluate_into(t->model, &t->ds, t->val_idx, t->nval, 0, B, t->class_w, &e.val_loss, &cm);
            if (st) return st;
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
            st = ms_model_save(t->best, path, meta);
            free(meta);
            if (st) return st;
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
        if ((st = save_checkpoint(t))) return st;
        if (t->cb.on_epoch) t->cb.on_epoch(t->cb.user, &e);
        if (stop_early) logf_cb(t, "early stop: no val mIoU gain for %d epochs", t->bad_epochs);
    }
    logf_cb(t, "finished %d epochs in %.0f s", t->epoch, now_s() - run_start);
    return finish(t, total_s);
}
