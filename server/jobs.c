/* Training jobs: a FIFO queue, one worker thread that trains one job at a time, and the state
 * of every job on disk so that it survives restarts and crashes.
 *
 * On disk: <data-dir>/jobs/<id>/job.json (state, config, curves, error), rewritten atomically
 * (ms_write_file_atomic: temp, fsync, rename, fsync dir) on every state change and after every
 * epoch; the trainer writes its own checkpoint.npz / best.npz / model.npz in the same directory.
 * At start-up every job is read back: a job whose file still says "running" was running when the
 * process died and becomes "interrupted" (resumable with POST /jobs/{id}/resume); queued jobs
 * queue again in their original order. A clean shutdown (SIGTERM) instead pauses the running job
 * (the trainer checkpoints mid-epoch) and saves it as queued-with-resume, so it continues on the
 * next start by itself. An outcome (succeeded, failed, cancelled) is on disk before any client
 * can see it, and the temp files of writes that a crash interrupted (job.json.tmp,
 * checkpoint.npz.tmp...) are deleted at start-up.
 *
 * Locking: `mu` guards every job's fields and the queue, and is held only for copies (the
 * per-batch progress callback, GET handlers). Files are written outside it, under `io_mu`, from
 * a JSON snapshot taken under `mu`; each snapshot carries a version so that a slower writer can
 * never replace a newer job.json with an older one. Job structs are never freed while the
 * service runs, so a pointer taken under the lock stays valid after it. Model registration (its
 * own locks) is always called without `mu` held. */
#include "handlers.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define LOG_LINES 32
#define MAX_CURVE_POINTS 100000
#define MAX_JOBS 100000
#define JOB_JSON_MAX (64u << 20)

enum job_state { JS_QUEUED, JS_RUNNING, JS_SUCCEEDED, JS_FAILED, JS_CANCELLED, JS_INTERRUPTED, JS_COUNT };
static const char *const state_names[JS_COUNT] = {"queued", "running", "succeeded", "failed", "cancelled", "interrupted"};

struct job {
    char id[16];
    char dir[PATH_MAX];
    char dataset[32];
    int activate;
    cJSON *config;      /* the resolved training config as shown to clients (no "data" path) */
    enum job_state state;
    double created, started, finished;
    int resume;         /* the next run continues from dir/checkpoint.npz */
    int cancel_requested, pause_requested;
    ms_trainer *trainer; /* while running */
    ms_progress progress;
    int has_progress;
    ms_epoch_stats *curves;
    int ncurves, capcurves;
    double best_miou;
    int best_epoch;
    char error[512];
    char model_id[64];
    char *log[LOG_LINES]; /* ring of the trainer's recent log lines */
    int log_head, log_n;
    unsigned long version;           /* bumped on every change worth persisting */
    unsigned long persisted_version; /* guarded by io_mu */
    struct job *qnext;
};

struct jobs {
    struct server *srv;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* queue non-empty, or stop */
    pthread_mutex_t io_mu;
    struct job **v; /* every job, creation order */
    int n, cap;
    struct job *qhead, *qtail;
    int nqueued;
    struct job *running;
    unsigned next_id;
    int stop;
    int worker_started;
    pthread_t worker;
    char dir[PATH_MAX];
    int default_threads;
    unsigned long long finished_total[JS_COUNT];
};

/* ------------------------------------------------------------------ JSON of a job */

static cJSON *num_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

static cJSON *point_json(const ms_epoch_stats *e) {
    cJSON *j = cJSON_CreateObject(), *iou = cJSON_CreateArray();
    int ok = j && iou;
    if (ok) {
        ok &= jset_num(j, "epoch", e->epoch);
        ok &= jset_item(j, "train_loss", num_or_null(e->train_loss));
        ok &= jset_item(j, "val_loss", num_or_null(e->val_loss));
        ok &= jset_item(j, "train_miou", num_or_null(e->train_miou));
        ok &= jset_item(j, "val_miou", num_or_null(e->val_miou));
        ok &= jset_item(j, "pixel_acc", num_or_null(e->pixel_acc));
        for (int c = 0; c < MS_NUM_CLASSES && ok; c++) {
            cJSON *v = num_or_null(e->val_iou[c]);
            ok &= v && cJSON_AddItemToArray(iou, v);
            if (!ok) cJSON_Delete(v);
        }
        ok &= jset_item(j, "val_iou", iou);
        iou = NULL;
        ok &= jset_item(j, "lr", num_or_null(e->lr));
        ok &= jset_item(j, "seconds", num_or_null(e->seconds));
        ok &= jset_item(j, "images_per_s", num_or_null(e->images_per_s));
    }
    cJSON_Delete(iou);
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static double jnum(const cJSON *o, const char *k, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsNumber(v)) return v->valuedouble;
    if (cJSON_IsNull(v)) return NAN;
    return dflt;
}

static void point_from_json(const cJSON *j, ms_epoch_stats *e) {
    memset(e, 0, sizeof *e);
    e->epoch = (int)jnum(j, "epoch", 0);
    e->train_loss = jnum(j, "train_loss", NAN);
    e->val_loss = jnum(j, "val_loss", NAN);
    e->train_miou = jnum(j, "train_miou", NAN);
    e->val_miou = jnum(j, "val_miou", NAN);
    e->pixel_acc = jnum(j, "pixel_acc", NAN);
    const cJSON *iou = cJSON_GetObjectItemCaseSensitive(j, "val_iou");
    for (int c = 0; c < MS_NUM_CLASSES; c++) {
        const cJSON *v = cJSON_GetArrayItem(iou, c);
        e->val_iou[c] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    }
    e->lr = jnum(j, "lr", NAN);
    e->seconds = jnum(j, "seconds", NAN);
    e->images_per_s = jnum(j, "images_per_s", NAN);
}

static cJSON *progress_json(const ms_progress *p) {
    cJSON *j = cJSON_CreateObject();
    int ok = j && jset_num(j, "epoch", p->epoch) && jset_num(j, "epochs", p->epochs) && jset_num(j, "batch", p->batch) &&
             jset_num(j, "batches", p->batches) && jset_item(j, "loss", num_or_null(p->loss)) &&
             jset_item(j, "eta_s", num_or_null(p->eta_s)) && jset_item(j, "images_per_s", num_or_null(p->images_per_s));
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static int config_epochs(const struct job *jb) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(jb->config, "epochs");
    return cJSON_IsNumber(e) ? e->valueint : 0;
}

enum { VIEW_SUMMARY, VIEW_DETAIL, VIEW_PERSIST };

/* Caller holds js->mu. */
static cJSON *job_json(const struct job *jb, int view) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    int ok = jset_str(j, "id", jb->id) && jset_str(j, "state", state_names[jb->state]) &&
             jset_str(j, "dataset", jb->dataset) && jset_bool(j, "activate", jb->activate) &&
             jset_num(j, "created", round_to(jb->created, 3));
    ok = ok && (jb->started > 0 ? jset_num(j, "started", round_to(jb->started, 3)) : cJSON_AddNullToObject(j, "started") != NULL);
    ok = ok && (jb->finished > 0 ? jset_num(j, "finished", round_to(jb->finished, 3)) : cJSON_AddNullToObject(j, "finished") != NULL);
    int epoch = jb->ncurves ? jb->curves[jb->ncurves - 1].epoch : 0;
    ok = ok && jset_num(j, "epoch", epoch) && jset_num(j, "epochs", config_epochs(jb));
    ok = ok && jset_item(j, "best_val_miou", jb->best_epoch ? num_or_null(jb->best_miou) : cJSON_CreateNull()) &&
         jset_num(j, "best_epoch", jb->best_epoch);
    if (ok && view != VIEW_PERSIST) {
        if (jb->state == JS_RUNNING && jb->has_progress) {
            ok = jset_item(j, "progress", progress_json(&jb->progress)) &&
                 jset_item(j, "eta_s", num_or_null(jb->progress.eta_s));
        } else {
            ok = cJSON_AddNullToObject(j, "progress") && cJSON_AddNullToObject(j, "eta_s");
        }
    }
    ok = ok && (jb->error[0] ? jset_str(j, "error", jb->error) : cJSON_AddNullToObject(j, "error") != NULL);
    ok = ok && (jb->model_id[0] ? jset_str(j, "model", jb->model_id) : cJSON_AddNullToObject(j, "model") != NULL);
    if (ok && view != VIEW_SUMMARY) ok = jset_item(j, "config", cJSON_Duplicate(jb->config, 1));
    if (ok && view == VIEW_PERSIST) {
        ok = jset_bool(j, "resume", jb->resume);
        cJSON *arr = cJSON_CreateArray();
        ok = ok && arr;
        for (int i = 0; i < jb->ncurves && ok; i++) {
            cJSON *p = point_json(&jb->curves[i]);
            ok = p && cJSON_AddItemToArray(arr, p);
            if (!ok) cJSON_Delete(p);
        }
        if (ok) ok = jset_item(j, "curves", arr);
        else cJSON_Delete(arr);
    }
    if (ok && view == VIEW_DETAIL) {
        cJSON *arr = cJSON_CreateArray();
        ok = arr != NULL;
        for (int i = 0; i < jb->log_n && ok; i++) {
            cJSON *s = cJSON_CreateString(jb->log[(jb->log_head + i) % LOG_LINES]);
            ok = s && cJSON_AddItemToArray(arr, s);
            if (!ok) cJSON_Delete(s);
        }
        if (ok) ok = jset_item(j, "log", arr);
        else cJSON_Delete(arr);
    }
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* ------------------------------------------------------------------ persistence */

/* Writes a snapshot of version `version` to job.json, unless a newer one is already there.
 * Call without js->mu. Takes ownership of snap. */
static void write_snapshot(struct jobs *js, struct job *jb, unsigned long version, cJSON *snap) {
    if (!snap) {
        log_msg("job %s: out of memory saving its state", jb->id);
        return;
    }
    char path[PATH_MAX];
    pthread_mutex_lock(&js->io_mu);
    if (version > jb->persisted_version && fmt_path(path, sizeof path, "%s/job.json", jb->dir)) {
        ms_status st = write_json_atomic(path, snap);
        if (st) log_msg("job %s: cannot save %s: %s", jb->id, path, ms_last_error());
        else jb->persisted_version = version;
    }
    pthread_mutex_unlock(&js->io_mu);
    cJSON_Delete(snap);
}

/* Writes job.json from a snapshot. Call without js->mu. */
static void persist(struct jobs *js, struct job *jb) {
    pthread_mutex_lock(&js->mu);
    jb->version++;
    unsigned long version = jb->version;
    cJSON *snap = job_json(jb, VIEW_PERSIST);
    pthread_mutex_unlock(&js->mu);
    write_snapshot(js, jb, version, snap);
}

static void free_job(struct job *jb) {
    if (!jb) return;
    cJSON_Delete(jb->config);
    free(jb->curves);
    for (int i = 0; i < LOG_LINES; i++) free(jb->log[i]);
    free(jb);
}

static int add_job(struct jobs *js, struct job *jb) {
    if (js->n == js->cap) {
        if (js->n >= MAX_JOBS) return -1;
        int ncap = js->cap ? js->cap * 2 : 32;
        struct job **nv = realloc(js->v, (size_t)ncap * sizeof *nv);
        if (!nv) return -1;
        js->v = nv;
        js->cap = ncap;
    }
    js->v[js->n++] = jb;
    return 0;
}

static void enqueue(struct jobs *js, struct job *jb) {
    jb->qnext = NULL;
    if (js->qtail) js->qtail->qnext = jb;
    else js->qhead = jb;
    js->qtail = jb;
    js->nqueued++;
    pthread_cond_signal(&js->cv);
}

static int dequeue_job(struct jobs *js, struct job *jb) {
    struct job **pp = &js->qhead, *prev = NULL;
    while (*pp && *pp != jb) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (!*pp) return 0;
    *pp = jb->qnext;
    if (js->qtail == jb) js->qtail = prev;
    jb->qnext = NULL;
    js->nqueued--;
    return 1;
}

static struct job *find_job(struct jobs *js, const char *id) {
    for (int i = 0; i < js->n; i++)
        if (strcmp(js->v[i]->id, id) == 0) return js->v[i];
    return NULL;
}

/* The client's (or job.json's) config object as an ms_train_config (job_config_resolve) with
 * the dataset's path, never the client's, and the service's default thread count. On failure
 * ms_last_error() names the field. */
static ms_status resolve_config(struct jobs *js, const char *dataset, const cJSON *obj, ms_train_config *cfg) {
    char path[sizeof cfg->data];
    ms_status st = datasets_path(js->srv->datasets, dataset, path, sizeof path);
    if (st) return st;
    return job_config_resolve(obj, path, js->default_threads, cfg);
}

/* ------------------------------------------------------------------ the worker */

struct run_ctx {
    struct jobs *js;
    struct job *jb;
    char data_path[PATH_MAX]; /* shown to clients as the dataset id */
};

/* The trainer's texts name the dataset file and the job directory; clients see ids instead. */
static void scrub(const struct run_ctx *c, char *dst, size_t cap, const char *src) {
    char tmp[1024];
    str_replace(tmp, sizeof tmp, src, c->data_path[0] ? c->data_path : NULL, c->jb->dataset);
    str_replace(dst, cap, tmp, c->jb->dir, c->jb->id);
}

static void on_batch(void *user, const ms_progress *p) {
    struct run_ctx *c = user;
    pthread_mutex_lock(&c->js->mu);
    c->jb->progress = *p;
    c->jb->has_progress = 1;
    pthread_mutex_unlock(&c->js->mu);
}

static void on_epoch(void *user, const ms_epoch_stats *e) {
    struct run_ctx *c = user;
    struct job *jb = c->jb;
    pthread_mutex_lock(&c->js->mu);
    /* a resumed run may redo epochs after its checkpoint: keep one point per epoch */
    while (jb->ncurves && jb->curves[jb->ncurves - 1].epoch >= e->epoch) jb->ncurves--;
    if (jb->ncurves == jb->capcurves && jb->capcurves < MAX_CURVE_POINTS) {
        int ncap = jb->capcurves ? jb->capcurves * 2 : 32;
        ms_epoch_stats *nc = realloc(jb->curves, (size_t)ncap * sizeof *nc);
        if (nc) {
            jb->curves = nc;
            jb->capcurves = ncap;
        }
    }
    if (jb->ncurves < jb->capcurves) jb->curves[jb->ncurves++] = *e;
    if (isfinite(e->val_miou) && (!jb->best_epoch || e->val_miou > jb->best_miou)) {
        jb->best_miou = e->val_miou;
        jb->best_epoch = e->epoch;
    }
    pthread_mutex_unlock(&c->js->mu);
    log_msg("job %s: epoch %d loss %.4f val_loss %.4f val_mIoU %.4f lr %.2g %.1fs", jb->id, e->epoch, e->train_loss,
            e->val_loss, e->val_miou, e->lr, e->seconds);
    persist(c->js, jb);
}

static void on_log(void *user, const char *line) {
    struct run_ctx *c = user;
    struct job *jb = c->jb;
    log_msg("job %s: %s", jb->id, line);
    char clean[1024];
    scrub(c, clean, sizeof clean, line);
    char *copy = strdup(clean);
    if (!copy) return;
    pthread_mutex_lock(&c->js->mu);
    int slot = (jb->log_head + jb->log_n) % LOG_LINES;
    if (jb->log_n == LOG_LINES) {
        free(jb->log[jb->log_head]);
        jb->log[jb->log_head] = NULL;
        jb->log_head = (jb->log_head + 1) % LOG_LINES;
        slot = (jb->log_head + LOG_LINES - 1) % LOG_LINES;
    } else {
        jb->log_n++;
    }
    jb->log[slot] = copy;
    pthread_mutex_unlock(&c->js->mu);
}

/* Copies the trainer's curves (after a resume they include the epochs of earlier runs). */
static void sync_curves(struct jobs *js, struct job *jb, ms_trainer *t) {
    const ms_epoch_stats *pts = NULL;
    int n = ms_trainer_curves(t, &pts);
    if (n <= 0 || !pts) return;
    if (n > MAX_CURVE_POINTS) n = MAX_CURVE_POINTS;
    ms_epoch_stats *copy = malloc((size_t)n * sizeof *copy);
    if (!copy) return;
    memcpy(copy, pts, (size_t)n * sizeof *copy);
    pthread_mutex_lock(&js->mu);
    free(jb->curves);
    jb->curves = copy;
    jb->ncurves = jb->capcurves = n;
    jb->best_epoch = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(copy[i].val_miou) && (!jb->best_epoch || copy[i].val_miou > jb->best_miou)) {
            jb->best_miou = copy[i].val_miou;
            jb->best_epoch = copy[i].epoch;
        }
    pthread_mutex_unlock(&js->mu);
}

static void finish(struct jobs *js, struct job *jb, enum job_state state, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void finish(struct jobs *js, struct job *jb, enum job_state state, const char *fmt, ...) {
    char error[sizeof jb->error] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(error, sizeof error, fmt, ap);
        va_end(ap);
    }
    const double t = now_wall();
    /* On disk first, visible second: a client never sees an outcome (succeeded, failed,
     * cancelled) that a crash right after could take back. The snapshot is taken from a
     * shallow copy carrying the new state; job_json only reads it, under mu. */
    pthread_mutex_lock(&js->mu);
    struct job view = *jb;
    view.state = state;
    view.has_progress = 0;
    if (state != JS_QUEUED) view.finished = t;
    memcpy(view.error, error, sizeof view.error);
    unsigned long version = ++jb->version;
    cJSON *snap = job_json(&view, VIEW_PERSIST);
    pthread_mutex_unlock(&js->mu);
    write_snapshot(js, jb, version, snap);
    pthread_mutex_lock(&js->mu);
    jb->state = state;
    jb->has_progress = 0;
    if (state != JS_QUEUED) jb->finished = t;
    memcpy(jb->error, error, sizeof jb->error);
    if (state != JS_QUEUED) js->finished_total[state]++;
    pthread_mutex_unlock(&js->mu);
    log_msg("job %s: %s%s%s", jb->id, state == JS_QUEUED ? "paused (resumes on restart)" : state_names[state],
            error[0] ? ": " : "", error);
}

static void run_job(struct jobs *js, struct job *jb) {
    struct run_ctx ctx = {.js = js, .jb = jb};
    if (datasets_path(js->srv->datasets, jb->dataset, ctx.data_path, sizeof ctx.data_path)) ctx.data_path[0] = 0;
    ms_train_callbacks cb = {.user = &ctx, .on_batch = on_batch, .on_epoch = on_epoch, .on_log = on_log};
    ms_trainer *t = NULL;
    ms_status st;
    char ckpt[PATH_MAX];
    struct stat sb;
    int resume = jb->resume && fmt_path(ckpt, sizeof ckpt, "%s/checkpoint.npz", jb->dir) && stat(ckpt, &sb) == 0;
    if (resume) {
        st = ms_trainer_resume(&t, jb->dir, &cb);
    } else {
        ms_train_config cfg;
        st = resolve_config(js, jb->dataset, jb->config, &cfg);
        if (!st) st = ms_trainer_create(&t, &cfg, jb->dir, &cb);
    }
    if (st) {
        char err[512];
        scrub(&ctx, err, sizeof err, ms_last_error());
        finish(js, jb, JS_FAILED, "%s: %s", ms_strerror(st), err);
        return;
    }
    if (resume) sync_curves(js, jb, t);
    pthread_mutex_lock(&js->mu);
    int cancel = jb->cancel_requested, stop = js->stop;
    if (!cancel && !stop) jb->trainer = t;
    pthread_mutex_unlock(&js->mu);
    if (cancel || stop) { /* asked while the trainer was being prepared: do not start */
        ms_trainer_free(t);
        if (cancel) finish(js, jb, JS_CANCELLED, NULL);
        else finish(js, jb, JS_QUEUED, NULL);
        return;
    }
    atomic_store(&training_active, 1);
    st = ms_trainer_run(t);
    atomic_store(&training_active, 0);
    char err[512];
    scrub(&ctx, err, sizeof err, st ? ms_last_error() : "");
    pthread_mutex_lock(&js->mu);
    jb->trainer = NULL;
    int paused = jb->pause_requested;
    pthread_mutex_unlock(&js->mu);
    ms_trainer_free(t);
    if (st == MS_OK) {
        char path[PATH_MAX];
        if (!fmt_path(path, sizeof path, "%s/model.npz", jb->dir)) {
            finish(js, jb, JS_FAILED, "job directory path too long");
            return;
        }
        st = models_register(js->srv->models, jb->id, path, "job", jb->id, jb->activate);
        if (st) {
            scrub(&ctx, err, sizeof err, ms_last_error());
            finish(js, jb, JS_FAILED, "trained, but the model could not be loaded: %s", err);
            return;
        }
        pthread_mutex_lock(&js->mu);
        snprintf(jb->model_id, sizeof jb->model_id, "%s", jb->id);
        pthread_mutex_unlock(&js->mu);
        finish(js, jb, JS_SUCCEEDED, NULL);
    } else if (st == MS_ERR_CANCELLED && paused) {
        pthread_mutex_lock(&js->mu);
        jb->resume = 1;
        pthread_mutex_unlock(&js->mu);
        finish(js, jb, JS_QUEUED, NULL);
    } else if (st == MS_ERR_CANCELLED) {
        finish(js, jb, JS_CANCELLED, NULL);
    } else {
        finish(js, jb, JS_FAILED, "%s: %s", ms_strerror(st), err);
    }
}

atomic_int training_active;

static void *worker_main(void *arg) {
    struct jobs *js = arg;
    /* Training runs at a lower priority than the HTTP and inference threads, so that /segment
     * stays responsive while a job trains. On Linux nice is per thread, and the OpenMP team this
     * thread starts inherits it. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0)
        log_msg("jobs: could not lower the training thread's priority: %s", strerror(errno));
    pthread_mutex_lock(&js->mu);
    for (;;) {
        while (!js->stop && !js->qhead) pthread_cond_wait(&js->cv, &js->mu);
        if (js->stop) break;
        struct job *jb = js->qhead;
        dequeue_job(js, jb);
        jb->state = JS_RUNNING;
        jb->started = now_wall();
        jb->finished = 0;
        jb->error[0] = 0;
        jb->has_progress = 0;
        jb->cancel_requested = jb->pause_requested = 0;
        js->running = jb;
        pthread_mutex_unlock(&js->mu);
        log_msg("job %s: %s on dataset %s", jb->id, jb->resume ? "resuming" : "starting", jb->dataset);
        persist(js, jb);
        run_job(js, jb);
        pthread_mutex_lock(&js->mu);
        js->running = NULL;
    }
    pthread_mutex_unlock(&js->mu);
    return NULL;
}

/* ------------------------------------------------------------------ start-up and shutdown */

static struct job *load_job(struct jobs *js, const char *id) {
    char path[PATH_MAX];
    if (!fmt_path(path, sizeof path, "%s/%s/job.json", js->dir, id)) return NULL;
    cJSON *j = read_json_file(path, JOB_JSON_MAX);
    if (!j) return NULL;
    struct job *jb = calloc(1, sizeof *jb);
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(j, "id"), *state = cJSON_GetObjectItemCaseSensitive(j, "state"),
                *ds = cJSON_GetObjectItemCaseSensitive(j, "dataset"), *cfg = cJSON_GetObjectItemCaseSensitive(j, "config"),
                *err = cJSON_GetObjectItemCaseSensitive(j, "error"), *model = cJSON_GetObjectItemCaseSensitive(j, "model"),
                *curves = cJSON_GetObjectItemCaseSensitive(j, "curves");
    if (!jb || !cJSON_IsString(jid) || strcmp(jid->valuestring, id) != 0 || !cJSON_IsString(state) ||
        !cJSON_IsString(ds) || !is_safe_id(ds->valuestring, sizeof jb->dataset - 1) || !cJSON_IsObject(cfg)) {
        log_msg("%s: not a job file of this service; ignored", path);
        free(jb);
        cJSON_Delete(j);
        return NULL;
    }
    snprintf(jb->id, sizeof jb->id, "%.15s", id);
    fmt_path(jb->dir, sizeof jb->dir, "%s/%s", js->dir, id);
    snprintf(jb->dataset, sizeof jb->dataset, "%s", ds->valuestring);
    jb->state = JS_COUNT;
    for (int s = 0; s < JS_COUNT; s++)
        if (strcmp(state->valuestring, state_names[s]) == 0) jb->state = (enum job_state)s;
    jb->activate = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "activate"));
    jb->resume = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "resume"));
    jb->created = jnum(j, "created", 0);
    jb->started = jnum(j, "started", 0);
    jb->finished = jnum(j, "finished", 0);
    if (!isfinite(jb->started)) jb->started = 0;
    if (!isfinite(jb->finished)) jb->finished = 0;
    if (cJSON_IsString(err)) snprintf(jb->error, sizeof jb->error, "%s", err->valuestring);
    if (cJSON_IsString(model)) snprintf(jb->model_id, sizeof jb->model_id, "%s", model->valuestring);
    jb->config = cJSON_DetachItemViaPointer(j, (cJSON *)cfg);
    int n = cJSON_GetArraySize(curves);
    if (n > MAX_CURVE_POINTS) n = MAX_CURVE_POINTS;
    if (n > 0 && (jb->curves = calloc((size_t)n, sizeof *jb->curves))) {
        jb->capcurves = n;
        const cJSON *p;
        cJSON_ArrayForEach(p, curves) {
            if (jb->ncurves >= n) break;
            point_from_json(p, &jb->curves[jb->ncurves++]);
        }
        for (int i = 0; i < jb->ncurves; i++)
            if (isfinite(jb->curves[i].val_miou) && (!jb->best_epoch || jb->curves[i].val_miou > jb->best_miou)) {
                jb->best_miou = jb->curves[i].val_miou;
                jb->best_epoch = jb->curves[i].epoch;
            }
    }
    cJSON_Delete(j);
    if (jb->state == JS_COUNT) {
        log_msg("%s: unknown state; listed as failed", path);
        jb->state = JS_FAILED;
        snprintf(jb->error, sizeof jb->error, "unknown state in job.json");
    }
    return jb;
}

static int cmp_created(const void *a, const void *b) {
    const struct job *x = *(struct job *const *)a, *y = *(struct job *const *)b;
    if (x->created != y->created) return x->created < y->created ? -1 : 1;
    return strcmp(x->id, y->id);
}

int jobs_create(struct server *srv, struct jobs **out) {
    struct jobs *js = calloc(1, sizeof *js);
    if (!js) return -1;
    js->srv = srv;
    js->next_id = 1;
    js->default_threads = cpu_count() > 1 ? cpu_count() - 1 : 1;
    pthread_mutex_init(&js->mu, NULL);
    pthread_mutex_init(&js->io_mu, NULL);
    pthread_cond_init(&js->cv, NULL);
    if (!fmt_path(js->dir, sizeof js->dir, "%s/jobs", srv->cfg.data_dir) || ensure_dir(js->dir) != 0) {
        log_msg("cannot create %s: %s", js->dir, strerror(errno));
        jobs_destroy(js);
        return -1;
    }
    DIR *d = opendir(js->dir);
    if (!d) {
        log_msg("cannot read %s: %s", js->dir, strerror(errno));
        jobs_destroy(js);
        return -1;
    }
    struct dirent *de;
    int debris = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] != 'j' || !is_safe_id(de->d_name, 15)) continue;
        char jdir[PATH_MAX];
        if (fmt_path(jdir, sizeof jdir, "%s/%s", js->dir, de->d_name)) debris += remove_tmp_files(jdir);
        struct job *jb = load_job(js, de->d_name);
        if (!jb) continue;
        if (add_job(js, jb) != 0) {
            free_job(jb);
            continue;
        }
        unsigned num = (unsigned)strtoul(jb->id + 1, NULL, 10);
        if (num >= js->next_id) js->next_id = num + 1;
    }
    closedir(d);
    if (debris) log_msg("removed %d temp files of interrupted writes from job directories", debris);
    if (js->n > 1) qsort(js->v, (size_t)js->n, sizeof *js->v, cmp_created);
    for (int i = 0; i < js->n; i++) {
        struct job *jb = js->v[i];
        if (jb->state == JS_RUNNING) {
            jb->state = JS_INTERRUPTED;
            jb->resume = 1;
            snprintf(jb->error, sizeof jb->error, "the service stopped while this job was running; POST /jobs/%s/resume continues it", jb->id);
            log_msg("job %s was running when the service stopped: interrupted", jb->id);
            persist(js, jb);
        } else if (jb->state == JS_QUEUED) {
            enqueue(js, jb);
        } else if (jb->state == JS_SUCCEEDED && jb->model_id[0]) {
            char path[PATH_MAX];
            if (fmt_path(path, sizeof path, "%s/model.npz", jb->dir)) {
                ms_status st = models_register(srv->models, jb->model_id, path, "job", jb->id, 0);
                if (st) log_msg("job %s: its model is not usable: %s", jb->id, ms_last_error());
            }
        }
    }
    if (js->n) log_msg("%d jobs reloaded (%d queued)", js->n, js->nqueued);
    *out = js;
    return 0;
}

int jobs_start(struct jobs *js) {
    if (pthread_create(&js->worker, NULL, worker_main, js) != 0) return -1;
    js->worker_started = 1;
    return 0;
}

void jobs_stop(struct jobs *js) {
    if (!js) return;
    pthread_mutex_lock(&js->mu);
    js->stop = 1;
    if (js->running) {
        js->running->pause_requested = 1;
        if (js->running->trainer) {
            log_msg("job %s: pausing for shutdown", js->running->id);
            ms_trainer_pause(js->running->trainer);
        }
    }
    pthread_cond_broadcast(&js->cv);
    pthread_mutex_unlock(&js->mu);
    if (js->worker_started) pthread_join(js->worker, NULL);
    js->worker_started = 0;
}

void jobs_destroy(struct jobs *js) {
    if (!js) return;
    jobs_stop(js);
    for (int i = 0; i < js->n; i++) free_job(js->v[i]);
    free(js->v);
    pthread_mutex_destroy(&js->mu);
    pthread_mutex_destroy(&js->io_mu);
    pthread_cond_destroy(&js->cv);
    free(js);
}

void jobs_metrics(struct jobs *js, char **buf, size_t *len, size_t *cap) {
    int counts[JS_COUNT] = {0};
    pthread_mutex_lock(&js->mu);
    for (int i = 0; i < js->n; i++) counts[js->v[i]->state]++;
    buf_printf(buf, len, cap, "# HELP marsseg_jobs Training jobs by state.\n# TYPE marsseg_jobs gauge\n");
    for (int s = 0; s < JS_COUNT; s++) buf_printf(buf, len, cap, "marsseg_jobs{state=\"%s\"} %d\n", state_names[s], counts[s]);
    buf_printf(buf, len, cap,
               "# HELP marsseg_jobs_finished_total Jobs that ended since start-up, by outcome.\n"
               "# TYPE marsseg_jobs_finished_total counter\n");
    for (int s = JS_SUCCEEDED; s < JS_COUNT; s++)
        buf_printf(buf, len, cap, "marsseg_jobs_finished_total{state=\"%s\"} %llu\n", state_names[s], js->finished_total[s]);
    if (js->running && js->running->has_progress) {
        const ms_progress *p = &js->running->progress;
        buf_printf(buf, len, cap,
                   "# HELP marsseg_job_epoch Epoch of the running job.\n# TYPE marsseg_job_epoch gauge\n"
                   "marsseg_job_epoch{id=\"%s\"} %d\n"
                   "# HELP marsseg_job_images_per_second Training throughput of the running job.\n"
                   "# TYPE marsseg_job_images_per_second gauge\n"
                   "marsseg_job_images_per_second{id=\"%s\"} %g\n",
                   js->running->id, p->epoch, js->running->id, isfinite(p->images_per_s) ? p->images_per_s : 0.0);
    }
    pthread_mutex_unlock(&js->mu);
}

/* ------------------------------------------------------------------ handlers */

static enum MHD_Result reply_job(struct req *r, struct jobs *js, struct job *jb, unsigned status, int view) {
    pthread_mutex_lock(&js->mu);
    cJSON *j = job_json(jb, view);
    pthread_mutex_unlock(&js->mu);
    if (!j) return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    char loc[48];
    snprintf(loc, sizeof loc, "/jobs/%s", jb->id);
    return reply_json(r, status, j, status == 202 || status == 201 ? loc : NULL);
}

enum MHD_Result h_jobs_list(struct req *r) {
    struct jobs *js = req_server(r)->jobs;
    cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int ok = j && arr;
    pthread_mutex_lock(&js->mu);
    for (int i = js->n - 1; i >= 0 && ok; i--) { /* newest first */
        cJSON *e = job_json(js->v[i], VIEW_SUMMARY);
        ok = e && cJSON_AddItemToArray(arr, e);
        if (!ok) cJSON_Delete(e);
    }
    ok = ok && jset_num(j, "queued", js->nqueued);
    ok = ok && (js->running ? jset_str(j, "running", js->running->id) : cJSON_AddNullToObject(j, "running") != NULL);
    pthread_mutex_unlock(&js->mu);
    return reply_json_list(r, j, "jobs", arr, ok);
}

enum MHD_Result h_jobs_create(struct req *r) {
    struct server *srv = req_server(r);
    struct jobs *js = srv->jobs;
    enum MHD_Result res;
    cJSON *body = req_json_object(r, &res);
    if (!body) return res;
    char dataset[32];
    int activate;
    struct jr_error e;
    if (job_request_fields(body, dataset, sizeof dataset, &activate, &e)) {
        cJSON_Delete(body);
        return reply_error(r, (unsigned)e.status, e.code, "%s", e.msg);
    }
    ms_train_config cfg;
    ms_status st = resolve_config(js, dataset, body, &cfg);
    cJSON_Delete(body);
    if (st == MS_ERR_NOTFOUND) return reply_error(r, 400, "unknown_dataset", "dataset: no dataset with id '%s'", dataset);
    if (st == MS_ERR_NOMEM) return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    if (st) return reply_error(r, 400, "invalid_config", "%s", ms_last_error());

    struct job *jb = calloc(1, sizeof *jb);
    if (!jb || !(jb->config = job_config_display(&cfg))) {
        free_job(jb);
        return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    }
    snprintf(jb->dataset, sizeof jb->dataset, "%s", dataset);
    jb->activate = activate;
    jb->state = JS_QUEUED;
    jb->created = now_wall();

    pthread_mutex_lock(&js->mu);
    if (js->stop) {
        pthread_mutex_unlock(&js->mu);
        free_job(jb);
        return reply_error_retry(r, 503, 5, "shutting_down", "the service is shutting down");
    }
    if ((unsigned)js->nqueued >= srv->cfg.max_queue) {
        int q = js->nqueued;
        pthread_mutex_unlock(&js->mu);
        free_job(jb);
        return reply_error_retry(r, 503, 30, "queue_full", "%d jobs are already queued; retry later", q);
    }
    unsigned num = js->next_id++;
    pthread_mutex_unlock(&js->mu);
    snprintf(jb->id, sizeof jb->id, "j%06u", num);
    if (!fmt_path(jb->dir, sizeof jb->dir, "%s/%s", js->dir, jb->id) || ensure_dir(jb->dir) != 0) {
        int e = errno;
        free_job(jb);
        return reply_error(r, 500, "io", "cannot create the job directory: %s", strerror(e));
    }
    fsync_dir(js->dir);
    /* on disk before it is visible, so an accepted job is never lost */
    cJSON *snap = job_json(jb, VIEW_PERSIST);
    char path[PATH_MAX];
    st = snap && fmt_path(path, sizeof path, "%s/job.json", jb->dir) ? write_json_atomic(path, snap) : MS_ERR_NOMEM;
    cJSON_Delete(snap);
    if (st) {
        rmdir(jb->dir);
        free_job(jb);
        return reply_status(r, st, "saving the job");
    }
    jb->persisted_version = jb->version = 1;
    pthread_mutex_lock(&js->mu);
    if (add_job(js, jb) != 0) {
        pthread_mutex_unlock(&js->mu);
        free_job(jb);
        return reply_error_retry(r, 503, 30, "too_many_jobs", "job registry full or out of memory");
    }
    enqueue(js, jb);
    pthread_mutex_unlock(&js->mu);
    log_msg("job %s: queued (dataset %s)", jb->id, dataset);
    return reply_job(r, js, jb, 202, VIEW_DETAIL);
}

enum MHD_Result h_job_get(struct req *r) {
    struct jobs *js = req_server(r)->jobs;
    pthread_mutex_lock(&js->mu);
    struct job *jb = find_job(js, req_param(r, 0));
    pthread_mutex_unlock(&js->mu);
    if (!jb) return reply_error(r, 404, "not_found", "no such job");
    return reply_job(r, js, jb, 200, VIEW_DETAIL);
}

enum MHD_Result h_job_delete(struct req *r) {
    struct jobs *js = req_server(r)->jobs;
    pthread_mutex_lock(&js->mu);
    struct job *jb = find_job(js, req_param(r, 0));
    if (!jb) {
        pthread_mutex_unlock(&js->mu);
        return reply_error(r, 404, "not_found", "no such job");
    }
    enum job_state s = jb->state;
    if (s == JS_QUEUED && dequeue_job(js, jb)) {
        pthread_mutex_unlock(&js->mu);
        finish(js, jb, JS_CANCELLED, NULL);
        return reply_job(r, js, jb, 200, VIEW_DETAIL);
    }
    if (s == JS_RUNNING) {
        jb->cancel_requested = 1;
        if (jb->trainer) ms_trainer_cancel(jb->trainer);
        pthread_mutex_unlock(&js->mu);
        log_msg("job %s: cancel requested", jb->id);
        return reply_job(r, js, jb, 202, VIEW_DETAIL); /* it stops at the next batch */
    }
    pthread_mutex_unlock(&js->mu);
    return reply_error(r, 409, "conflict", "job %s is %s; only queued or running jobs can be cancelled", jb->id, state_names[s]);
}

enum MHD_Result h_job_resume(struct req *r) {
    struct server *srv = req_server(r);
    struct jobs *js = srv->jobs;
    pthread_mutex_lock(&js->mu);
    struct job *jb = find_job(js, req_param(r, 0));
    if (!jb) {
        pthread_mutex_unlock(&js->mu);
        return reply_error(r, 404, "not_found", "no such job");
    }
    if (jb->state != JS_INTERRUPTED && jb->state != JS_CANCELLED) {
        enum job_state s = jb->state;
        pthread_mutex_unlock(&js->mu);
        return reply_error(r, 409, "conflict", "job %s is %s; only interrupted or cancelled jobs can be resumed", jb->id,
                           state_names[s]);
    }
    if ((unsigned)js->nqueued >= srv->cfg.max_queue) {
        pthread_mutex_unlock(&js->mu);
        return reply_error_retry(r, 503, 30, "queue_full", "the job queue is full; retry later");
    }
    jb->state = JS_QUEUED;
    jb->resume = 1;
    jb->error[0] = 0;
    jb->finished = 0;
    enqueue(js, jb);
    pthread_mutex_unlock(&js->mu);
    log_msg("job %s: queued to resume", jb->id);
    persist(js, jb);
    return reply_job(r, js, jb, 202, VIEW_DETAIL);
}

enum MHD_Result h_job_curves(struct req *r) {
    struct jobs *js = req_server(r)->jobs;
    int since = 0;
    const char *q = req_query(r, "since");
    if (q && *q) {
        unsigned v;
        if (parse_uint(q, 0, 1000000, &v) != 0) return reply_error(r, 400, "invalid_argument", "since: must be an epoch number >= 0");
        since = (int)v;
    }
    pthread_mutex_lock(&js->mu);
    struct job *jb = find_job(js, req_param(r, 0));
    if (!jb) {
        pthread_mutex_unlock(&js->mu);
        return reply_error(r, 404, "not_found", "no such job");
    }
    /* copy the points after `since` under the lock, build JSON outside it */
    int first = 0;
    while (first < jb->ncurves && jb->curves[first].epoch <= since) first++;
    int n = jb->ncurves - first;
    ms_epoch_stats *pts = n > 0 ? malloc((size_t)n * sizeof *pts) : NULL;
    if (n > 0 && !pts) {
        pthread_mutex_unlock(&js->mu);
        return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    }
    if (n > 0) memcpy(pts, jb->curves + first, (size_t)n * sizeof *pts);
    if (n < 0) n = 0;
    enum job_state state = jb->state;
    ms_progress prog = jb->progress;
    int has_prog = jb->state == JS_RUNNING && jb->has_progress;
    int last_epoch = jb->ncurves ? jb->curves[jb->ncurves - 1].epoch : 0;
    int epochs = config_epochs(jb);
    double best = jb->best_miou;
    int best_epoch = jb->best_epoch;
    pthread_mutex_unlock(&js->mu);

    cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int ok = j && arr && jset_str(j, "id", req_param(r, 0)) && jset_str(j, "state", state_names[state]) &&
             jset_num(j, "epoch", last_epoch) && jset_num(j, "epochs", epochs) && jset_num(j, "since", since) &&
             jset_item(j, "best_val_miou", best_epoch ? num_or_null(best) : cJSON_CreateNull()) &&
             jset_num(j, "best_epoch", best_epoch);
    for (int i = 0; i < n && ok; i++) {
        cJSON *p = point_json(&pts[i]);
        ok = p && cJSON_AddItemToArray(arr, p);
        if (!ok) cJSON_Delete(p);
    }
    free(pts);
    if (ok) {
        ok = jset_item(j, "points", arr);
        arr = NULL;
    }
    cJSON_Delete(arr);
    ok = ok && (has_prog ? jset_item(j, "progress", progress_json(&prog)) : cJSON_AddNullToObject(j, "progress") != NULL);
    if (!ok) {
        cJSON_Delete(j);
        return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    }
    return reply_json(r, 200, j, NULL);
}
