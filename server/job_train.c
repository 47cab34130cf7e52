/* The training job kind: resolve the config against the dataset registry, run an ms_trainer in
 * the job's directory (or resume it from its checkpoint), follow it through its callbacks
 * (progress, curves, log lines) and register the trained model. */
#include "jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

ms_status job_train_config(struct jobs *js, const char *dataset, const cJSON *obj, ms_train_config *cfg) {
    char path[sizeof cfg->data];
    ms_status st = datasets_path(js->srv->datasets, dataset, path, sizeof path);
    if (st) return st;
    return job_config_resolve(obj, path, js->default_threads, cfg);
}

struct run_ctx {
    struct jobs *js;
    struct job *jb;
    char data_path[PATH_MAX]; /* shown to clients as the dataset id */
};

/* The trainer's texts name the dataset file and the job directory; clients see ids instead. */
static void scrub(const struct run_ctx *c, char *dst, size_t cap, const char *src) {
    job_scrub(c->jb, c->data_path, dst, cap, src);
}

static void on_batch(void *user, const ms_progress *p) {
    struct run_ctx *c = user;
    pthread_mutex_lock(&c->js->mu);
    c->jb->progress = *p;
    c->jb->has_progress = 1;
    pthread_mutex_unlock(&c->js->mu);
}

/* Called after the trainer wrote the epoch into its checkpoint: the live copy follows it. */
static void on_epoch(void *user, const ms_epoch_stats *e) {
    struct run_ctx *c = user;
    struct job *jb = c->jb;
    pthread_mutex_lock(&c->js->mu);
    job_add_epoch(jb, e);
    pthread_mutex_unlock(&c->js->mu);
    log_msg("job %s: epoch %d loss %.4f val_loss %.4f val_mIoU %.4f lr %.2g %.1fs", jb->id, e->epoch, e->train_loss,
            e->val_loss, e->val_miou, e->lr, e->seconds);
    job_persist(c->js, jb);
}

static void on_log(void *user, const char *line) {
    struct run_ctx *c = user;
    char clean[1024];
    scrub(c, clean, sizeof clean, line);
    job_log(c->js, c->jb, clean);
}

static void run_train(struct jobs *js, struct job *jb) {
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
        st = job_train_config(js, jb->dataset, jb->config, &cfg);
        if (!st) st = ms_trainer_create(&t, &cfg, jb->dir, &cb);
    }
    if (st) {
        char err[512];
        scrub(&ctx, err, sizeof err, ms_last_error());
        job_finish(js, jb, JS_FAILED, "%s: %s", ms_strerror(st), err);
        return;
    }
    pthread_mutex_lock(&js->mu);
    int cancel = jb->cancel_requested, stop = js->stop;
    if (!cancel && !stop) jb->trainer = t;
    pthread_mutex_unlock(&js->mu);
    if (cancel || stop) { /* asked while the trainer was being prepared: do not start */
        ms_trainer_free(t);
        if (cancel) job_finish(js, jb, JS_CANCELLED, NULL);
        else job_finish(js, jb, JS_QUEUED, NULL);
        return;
    }
    atomic_store(&js->srv->training_active, 1);
    st = ms_trainer_run(t);
    atomic_store(&js->srv->training_active, 0);
    char err[512];
    scrub(&ctx, err, sizeof err, st ? ms_last_error() : "");
    pthread_mutex_lock(&js->mu);
    jb->trainer = NULL;
    int paused = jb->pause_requested;
    pthread_mutex_unlock(&js->mu);
    ms_trainer_free(t);
    if (st == MS_OK) {
        job_train_succeeded(js, jb, ctx.data_path);
    } else if (st == MS_ERR_CANCELLED && paused) {
        pthread_mutex_lock(&js->mu);
        jb->resume = 1;
        pthread_mutex_unlock(&js->mu);
        job_finish(js, jb, JS_QUEUED, NULL);
    } else if (st == MS_ERR_CANCELLED) {
        job_finish(js, jb, JS_CANCELLED, NULL);
    } else {
        job_finish(js, jb, JS_FAILED, "%s: %s", ms_strerror(st), err);
    }
}

static void interrupt_train(struct job *jb, int pause) {
    if (!jb->trainer) return; /* still preparing: run_train checks the request before starting */
    if (pause) {
        log_msg("job %s: pausing for shutdown", jb->id);
        ms_trainer_pause(jb->trainer);
    } else {
        ms_trainer_cancel(jb->trainer);
    }
}

const struct job_kind job_kind_train = {"train", 'j', "/jobs", 0, run_train, interrupt_train};
