/* A trainer's state and files: creation from a config (with its data prepared and, for a warm
 * start, earlier weights) or from a checkpoint, the accessors, and what a run writes — checkpoint.npz
 * after every epoch (and on pause), best.npz, model.npz. The epoch loop is core/train.c's. */
#include "checkpoint.h"
#include "marsseg_curves.h"
#include "marsseg_dist.h"
#include "marsseg_npz.h"
#include "plan.h"
#include "trainer.h"
#include "util.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void train_log(ms_trainer *t, const char *fmt, ...) {
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
 * `marsseg eval --split-of`, so both see exactly the same validation tiles. With `frames` (not
 * NULL) the tile pairs are also joined into frames before de-duplication, and kept[i] (malloc'd)
 * says which loaded tile the i-th remaining one was. */
static ms_status load_and_split(const ms_train_config *c, ms_dataset *ds, int *dropped, int **tr, int *ntr, int **val,
                                int *nval, ms_dataset *frames, int **kept) {
    ms_status st = ms_dataset_load(ds, c->data, c->key, memory_budget());
    if (st) return st;
    if (!ds->mask) return ms_fail(MS_ERR_SHAPE, "%s: key %s holds no masks: training needs (N,2,H,W)", c->data, c->key);
    const int q = 1 << c->model.depth;
    if (ds->h % q || ds->w % q)
        return ms_fail(MS_ERR_SHAPE, "%s: tiles are %dx%d; depth %d needs multiples of %d", c->data, ds->h, ds->w,
                       c->model.depth, q);
    if (c->limit > 0 && c->limit < ds->n) ds->n = c->limit;
    if (frames) {
        if ((st = ms_join_frames(ds, NULL, frames))) return st;
        if (!(*kept = malloc(sizeof(int) * (size_t)(ds->n ? ds->n : 1))))
            return ms_fail(MS_ERR_NOMEM, "frames: out of memory for %d tiles", ds->n);
        for (int i = 0; i < ds->n; i++) (*kept)[i] = i;
    }
    *dropped = 0;
    if (c->dedup_k > 0 && (st = ms_dedup_masks(ds, c->dedup_k, dropped, frames ? *kept : NULL))) return st;
    return ms_split(ds->n, c->val_frac, c->split_group, c->seed, tr, ntr, val, nval);
}

/* One side of a run's split: *keep gets the validation (want_val) or the training indices; with
 * frames (may be NULL), also the file's tiles joined as frames and *orig each tile's file index. */
static ms_status split_side(const ms_train_config *c, ms_dataset *ds, int want_val, int **keep, int *nkeep,
                           ms_dataset *frames, int **orig) {
    int *tr = NULL, ntr = 0, *val = NULL, nval = 0, dropped = 0;
    memset(ds, 0, sizeof *ds);
    if (frames) {
        memset(frames, 0, sizeof *frames);
        *orig = NULL;
    }
    *keep = NULL;
    *nkeep = 0;
    ms_status st = load_and_split(c, ds, &dropped, &tr, &ntr, &val, &nval, frames, orig);
    if (st) {
        ms_dataset_free(ds);
        free(tr);
        free(val);
        if (frames) {
            ms_dataset_free(frames);
            free(*orig);
            *orig = NULL;
        }
        return st;
    }
    *keep = want_val ? val : tr;
    *nkeep = want_val ? nval : ntr;
    free(want_val ? tr : val);
    return MS_OK;
}

ms_status ms_validation_set(const ms_train_config *c, ms_dataset *ds, int **val, int *nval) {
    return split_side(c, ds, 1, val, nval, NULL, NULL);
}

ms_status ms_training_set(const ms_train_config *c, ms_dataset *ds, int **train, int *ntrain) {
    return split_side(c, ds, 0, train, ntrain, NULL, NULL);
}

ms_status ms_validation_frames(const ms_train_config *c, ms_dataset *ds, int **val, int *nval, ms_dataset *frames,
                               int **orig) {
    return split_side(c, ds, 1, val, nval, frames, orig);
}

/* The training frames of a `frames` run: every frame neither of whose halves is a validation
 * tile (the split groups the tiles left after de-duplication, so a group need not be one frame's
 * pair), and not both of whose halves were dropped as duplicate masks. Replaces *tr. */
static ms_status training_frames(ms_trainer *t, const int *kept, int **tr, int *ntr) {
    const int nf = t->frames.n;
    uint8_t *state = calloc((size_t)(nf ? nf : 1), 1); /* bit 0: a half kept, bit 1: a half in validation */
    int *out = malloc(sizeof(int) * (size_t)(nf ? nf : 1));
    if (!state || !out) {
        free(state);
        free(out);
        return ms_fail(MS_ERR_NOMEM, "frames: out of memory for %d frames", nf);
    }
    for (int i = 0; i < t->ds.n; i++)
        if (kept[i] / 2 < nf) state[kept[i] / 2] |= 1;
    for (int v = 0; v < t->nval; v++)
        if (kept[t->val_idx[v]] / 2 < nf) state[kept[t->val_idx[v]] / 2] |= 2;
    int n = 0;
    for (int f = 0; f < nf; f++)
        if (state[f] == 1) out[n++] = f;
    free(state);
    free(*tr);
    *tr = out;
    *ntr = n;
    return MS_OK;
}

static ms_status prepare_data(ms_trainer *t) {
    const ms_train_config *c = &t->cfg;
    int *tr = NULL, ntr = 0, dropped = 0, *kept = NULL;
    ms_status st = load_and_split(c, &t->ds, &dropped, &tr, &ntr, &t->val_idx, &t->nval, c->frames ? &t->frames : NULL,
                                  &kept);
    if (st == MS_OK && c->frames) st = training_frames(t, kept, &tr, &ntr);
    free(kept);
    if (st) {
        free(tr);
        return st;
    }
    t->tds = c->frames ? &t->frames : &t->ds;
    train_log(t, "data: %d samples of %dx%d from %s[%s] (images %s), %d dropped as duplicate masks (recurring > %d times)",
            t->ds.n + dropped, t->ds.h, t->ds.w, c->data, c->key, t->ds.img_range, dropped, c->dedup_k);
    if (c->frames)
        train_log(t, "data: training on %d whole frames of %dx%d (tile pairs; those with a validation half left out)", ntr,
                  t->frames.h, t->frames.w);
    t->dropped = dropped;
    if (ntr < c->batch) {
        free(tr);
        return ms_fail(MS_ERR_ARG, "data: %d training samples are fewer than one batch of %d", ntr, c->batch);
    }
    st = ms_oversample(t->tds, tr, ntr, 4, c->oversample, &t->train_idx, &t->ntrain);
    int64_t counts[MS_NUM_CLASSES];
    ms_class_pixel_counts(t->tds, tr, ntr, counts);
    free(tr);
    if (st) return st;
    if (c->auto_weights) ms_class_weights_from_counts(counts, c->weight_power, c->bg_weight, t->class_w);
    else memcpy(t->class_w, c->class_weights, sizeof t->class_w);
    memcpy(t->base_w, t->class_w, sizeof t->base_w);
    train_log(t, "data: %d training samples after oversampling big-rock tiles x%d, %d validation; class weights %.3g %.3g %.3g %.3g %.3g",
            t->ntrain, c->oversample, t->nval, t->class_w[0], t->class_w[1], t->class_w[2], t->class_w[3], t->class_w[4]);
    return MS_OK;
}

/* ------------------------------------------------------------------ set-up */

static ms_status alloc_state(ms_trainer *t) {
    const int B = t->cfg.batch, H = t->tds->h, W = t->tds->w;
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
    if (ms_mkdirs(dir) != 0) return ms_fail(MS_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    return MS_OK;
}

void ms_trainer_free(ms_trainer *t) {
    if (!t) return;
    ms_acts_free(&t->acts);
    ms_model_free(t->model);
    ms_model_free(t->best);
    ms_model_free(t->ema);
    ms_dataset_free(&t->ds);
    ms_dataset_free(&t->frames);
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
    train_share_of(cfg->batch, t->rank, t->nranks, &t->share_lo, &t->share_n);
    if (t->rank == 0 && (st = make_dir(dir))) return st; /* rank 0 alone writes the run directory */
    if (t->nranks > 1) {
        /* every rank must run the same algorithms (their roundings differ, and the ranks' weights
         * must stay bit-identical): no per-rank measurement, the fixed rules decide everywhere */
        conv_plan_reset();
        setenv("MARSSEG_PLAN", "off", 1);
        train_log(t, "plan: measured plans off in a data-parallel run (the fixed rules decide on every rank)");
    } else {
        /* the run's own plan (core/plan.c): a resumed run takes the algorithms it started with */
        char plan[1100];
        snprintf(plan, sizeof plan, "%s/plan.json", dir);
        if (ms_plan_load(plan)) train_log(t, "plan: %s; ignored, measured again", ms_last_error());
    }
    if ((st = prepare_data(t))) return st;
    if (t->nranks > 1) {
        char shares[64];
        const int q = cfg->batch / t->nranks;
        if (cfg->batch % t->nranks) snprintf(shares, sizeof shares, "%d or %d", q + 1, q);
        else snprintf(shares, sizeof shares, "%d", q);
        train_log(t, "data-parallel: %d ranks; each batch of %d splits into shares of %s samples; BatchNorm statistics %s",
                t->nranks, cfg->batch, shares, cfg->sync_bn ? "over the whole batch (sync_bn)" : "per share");
    }
    return MS_OK;
}

/* Parameters, BN statistics and the batch counter (same architecture). */
static void copy_weights(ms_model *dst, const ms_model *src) {
    memcpy(dst->params, src->params, sizeof(float) * src->nparams);
    memcpy(dst->bufs, src->bufs, sizeof(float) * src->nbufs);
    dst->num_batches_tracked = src->num_batches_tracked;
}

/* The bias of each gate's last BatchNorm when gates are added to weights trained without them:
 * sigmoid(4 + N(0,1)) is 0.95-0.99, so the gates start nearly open and the warm-started model
 * nearly computes what it did (the decoder sees its skips at ~0.98 of their values). */
#define GATE_OPEN_BIAS 4.0f

/* Weights without attention gates into a model with them (same depth, base, classes): every
 * tensor of src copied by name, the gates' own left as ms_model_create drew them but open. */
static void add_gates(ms_model *m, const ms_model *src) {
    for (int i = 0; i < m->ntensors; i++) {
        const ms_tensor_info *d = &m->tensors[i];
        const ms_tensor_info *s = ms_model_find_tensor(src, d->name);
        if (!s || s->kind != d->kind || s->count != d->count) continue;
        if (d->kind == MS_T_PARAM) memcpy(m->params + d->offset, src->params + s->offset, sizeof(float) * d->count);
        else if (d->kind == MS_T_BUFFER) memcpy(m->bufs + d->offset, src->bufs + s->offset, sizeof(float) * d->count);
    }
    m->num_batches_tracked = src->num_batches_tracked;
    for (int l = 0; l < m->cfg.depth; l++) m->params[m->att[l].bpb] = GATE_OPEN_BIAS;
}

/* cfg.init: start from the parameters and BN statistics of an earlier run's weights (same
 * architecture, dropout may differ; or the same without attention gates, which are then added
 * open). The optimiser moments start at zero. */
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
    const int same_net = src->cfg.depth == m->cfg.depth && src->cfg.base == m->cfg.base && src->cfg.classes == m->cfg.classes;
    if (same_net && !src->cfg.attention && m->cfg.attention) {
        add_gates(m, src);
    } else if (!same_net || src->cfg.attention != m->cfg.attention || src->nparams != m->nparams || src->nbufs != m->nbufs) {
        static const char *const att[2] = {"without", "with"};
        st = ms_fail(MS_ERR_ARG,
                     "init: %s has depth %d base %d classes %d %s attention; the config asks for depth %d base %d classes %d %s attention",
                     path, src->cfg.depth, src->cfg.base, src->cfg.classes, att[src->cfg.attention], m->cfg.depth, m->cfg.base,
                     m->cfg.classes, att[m->cfg.attention]);
    } else {
        copy_weights(m, src);
    }
    ms_model_free(src);
    return st;
}

static ms_status create_local(ms_trainer **out, const ms_train_config *cfg, const char *dir, const ms_train_callbacks *cb) {
    ms_trainer *t = NULL;
    ms_status st = trainer_new(&t, cfg, dir, cb);
    if (st == MS_OK) st = ms_model_create(&t->model, &t->cfg.model, t->cfg.seed);
    if (st == MS_OK && t->cfg.init[0]) st = warm_start(t->model, t->cfg.init);
    if (st == MS_OK && t->cfg.ema > 0.0f) st = ms_model_clone(&t->ema, t->model); /* the average starts at the start */
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
        t->ema = ck.ema;
        ck.model = ck.best = ck.ema = NULL;
        /* a checkpoint from before the average was asked for (--ema given at resume is refused,
         * but an older file may lack it): it starts from the current weights */
        if (t->cfg.ema > 0.0f && !t->ema) st = ms_model_clone(&t->ema, t->model);
        if (st == MS_OK) st = alloc_state(t);
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
    train_reweight(t); /* the weights of the epoch it resumes */
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
    train_log(t, "resumed %s at epoch %d batch %d (step %lld)", dir, t->epoch + 1, t->batch_in_epoch, (long long)t->step);
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

/* ------------------------------------------------------------------ files */

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
    ms_status st = ms_checkpoint_save(path, &t->cfg, &cs, t->model, t->best, t->ema, t->m1, t->v, t->curves, t->ncurves);
    snprintf(path, sizeof path, "%s/plan.json", t->dir); /* the algorithms this run measured and took */
    if (!st && ms_plan_save(path)) train_log(t, "plan: %s", ms_last_error());
    return st;
}

/* Files are rank 0's: the other ranks skip the write, and all of them learn whether it worked. */
ms_status train_checkpoint(ms_trainer *t) { return ms_dist_agree(t->rank == 0 ? save_checkpoint(t) : MS_OK); }

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

/* DIR/name, written by rank 0 with the meta of epoch e; every rank learns whether it worked. */
static ms_status save_model(ms_trainer *t, const ms_model *m, const char *name, const ms_epoch_stats *e, double total_s) {
    char path[1100], *meta = model_meta(t, e, total_s);
    snprintf(path, sizeof path, "%s/%s", t->dir, name);
    ms_status st = t->rank == 0 ? ms_model_save(m, path, meta) : MS_OK;
    free(meta);
    return ms_dist_agree(st);
}

ms_status train_save_best(ms_trainer *t, const ms_epoch_stats *e, double total_s) {
    ms_status st;
    if (!t->best && (st = ms_model_clone(&t->best, t->model))) return st;
    copy_weights(t->best, train_weights(t));
    return save_model(t, t->best, "best.npz", e, total_s);
}

ms_status train_finish(ms_trainer *t, double total_s) {
    const ms_epoch_stats *best = NULL, *last = t->ncurves ? &t->curves[t->ncurves - 1] : NULL;
    for (int i = 0; i < t->ncurves; i++)
        if (t->curves[i].epoch == t->best_epoch) best = &t->curves[i];
    ms_model *w = train_weights(t);
    if (t->cfg.restore_best && t->best && best) {
        copy_weights(w, t->best);
        train_log(t, "restored the best weights (epoch %d, val mIoU %.4f)", t->best_epoch, best->val_miou);
    } else {
        best = last;
    }
    return save_model(t, w, "model.npz", best, total_s);
}
