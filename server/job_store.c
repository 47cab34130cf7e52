/* The jobs on disk: <data-dir>/jobs/<id>/job.json (state, config, error), rewritten atomically
 * (temp, fsync, rename, fsync dir) on every state change and after every epoch; the trainer
 * writes its own checkpoint.npz / best.npz / model.npz in the same directory, and the job's
 * curves are read back from checkpoint.npz (see jobs.h).
 *
 * At start-up every job is read back: a training job whose file still says "running" was running
 * when the process died and becomes "interrupted" (resumable with POST /jobs/{id}/resume); a pass
 * (prediction, evaluation) queues again and reruns; queued jobs queue again in their original
 * order. job.json names its kind ("kind"; none: training) and the kind's ids start with its
 * letter. A clean shutdown (SIGTERM) instead pauses the running job
 * (the trainer checkpoints mid-epoch) and saves it as queued-with-resume, so it continues on the
 * next start by itself. An outcome (succeeded, failed, cancelled) is on disk before any client
 * can see it, and the temp files of writes that a crash interrupted (job.json.tmp,
 * checkpoint.npz.tmp...) are deleted at start-up. */
#include "jobs.h"

#include "marsseg_curves.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOB_JSON_MAX (64u << 20)

void job_write_snapshot(struct jobs *js, struct job *jb, unsigned long version, cJSON *snap) {
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

void job_persist(struct jobs *js, struct job *jb) {
    pthread_mutex_lock(&js->mu);
    unsigned long version = ++jb->version;
    cJSON *snap = job_json(jb, VIEW_PERSIST);
    pthread_mutex_unlock(&js->mu);
    job_write_snapshot(js, jb, version, snap);
}

void job_add_epoch(struct job *jb, const ms_epoch_stats *e) {
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
}

void job_free(struct job *jb) {
    if (!jb) return;
    cJSON_Delete(jb->config);
    cJSON_Delete(jb->outcome);
    free(jb->curves);
    for (int i = 0; i < LOG_LINES; i++) free(jb->log[i]);
    free(jb);
}

int job_add(struct jobs *js, struct job *jb) {
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

struct job *job_find(struct jobs *js, const char *id) {
    for (int i = 0; i < js->n; i++)
        if (strcmp(js->v[i]->id, id) == 0) return js->v[i];
    return NULL;
}

/* ------------------------------------------------------------------ start-up */

static double num_or(const cJSON *o, const char *k, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : dflt;
}

/* The kinds job.json may name (its "kind"; absent in the files of training jobs). */
static const struct job_kind *const kinds[] = {&job_kind_train, &job_kind_predict, &job_kind_eval};

static const struct job_kind *kind_named(const cJSON *name) {
    if (!name) return &job_kind_train;
    for (size_t i = 0; cJSON_IsString(name) && i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(name->valuestring, kinds[i]->name) == 0) return kinds[i];
    return NULL;
}

static struct job *load_job(struct jobs *js, const char *id) {
    char path[PATH_MAX];
    if (!fmt_path(path, sizeof path, "%s/%s/job.json", js->dir, id)) return NULL;
    cJSON *j = read_json_file(path, JOB_JSON_MAX);
    if (!j) return NULL;
    struct job *jb = calloc(1, sizeof *jb);
    const struct job_kind *kind = kind_named(cJSON_GetObjectItemCaseSensitive(j, "kind"));
    const int pass = kind && kind->pass;
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(j, "id"), *state = cJSON_GetObjectItemCaseSensitive(j, "state"),
                *ds = cJSON_GetObjectItemCaseSensitive(j, "dataset"),
                *cfg = cJSON_GetObjectItemCaseSensitive(j, pass ? "request" : "config"),
                *outcome = cJSON_GetObjectItemCaseSensitive(j, pass ? "result" : "activation"),
                *err = cJSON_GetObjectItemCaseSensitive(j, "error"), *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    enum activate_rule rule = ACTIVATE_DEFAULT;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "activate");
    if (!jb || !kind || id[0] != kind->prefix || !cJSON_IsString(jid) || strcmp(jid->valuestring, id) != 0 ||
        !cJSON_IsString(state) || !(cJSON_IsString(ds) ? is_safe_id(ds->valuestring, sizeof jb->dataset - 1) : pass && cJSON_IsNull(ds)) ||
        !cJSON_IsObject(cfg) || (act && activate_parse(act, &rule) != 0)) {
        log_msg("%s: not a job file of this service; ignored", path);
        free(jb);
        cJSON_Delete(j);
        return NULL;
    }
    jb->kind = kind;
    const double ranks = num_or(j, "ranks", 0);
    if (!pass && ranks >= 1 && ranks <= 4096) {
        jb->ranks = (int)ranks;
        jb->kind = &job_kind_mpi;
    }
    snprintf(jb->id, sizeof jb->id, "%.15s", id);
    fmt_path(jb->dir, sizeof jb->dir, "%s/%s", js->dir, id);
    if (cJSON_IsString(ds)) snprintf(jb->dataset, sizeof jb->dataset, "%s", ds->valuestring);
    jb->state = JS_COUNT;
    for (int s = 0; s < JS_COUNT; s++)
        if (strcmp(state->valuestring, job_state_names[s]) == 0) jb->state = (enum job_state)s;
    jb->activate = (int)rule;
    jb->resume = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "resume"));
    jb->created = num_or(j, "created", 0);
    jb->started = num_or(j, "started", 0);
    jb->finished = num_or(j, "finished", 0);
    if (cJSON_IsString(err)) snprintf(jb->error, sizeof jb->error, "%s", err->valuestring);
    if (cJSON_IsString(model)) snprintf(jb->model_id, sizeof jb->model_id, "%s", model->valuestring);
    jb->config = cJSON_DetachItemViaPointer(j, (cJSON *)cfg);
    if (cJSON_IsObject(outcome)) jb->outcome = cJSON_DetachItemViaPointer(j, (cJSON *)outcome);
    cJSON_Delete(j);
    if (jb->state == JS_COUNT) {
        log_msg("%s: unknown state; listed as failed", path);
        jb->state = JS_FAILED;
        snprintf(jb->error, sizeof jb->error, "unknown state in job.json");
    }
    if (pass) return jb;
    /* the curves of whatever ran: from the checkpoint, their owner */
    ms_status st = ms_run_curves(jb->dir, &jb->curves, &jb->ncurves);
    if (st && st != MS_ERR_NOTFOUND) log_msg("job %s: no curves: %s", jb->id, ms_last_error());
    if (jb->ncurves > MAX_CURVE_POINTS) jb->ncurves = MAX_CURVE_POINTS;
    jb->capcurves = jb->ncurves;
    return jb;
}

static int kind_named_by_prefix(char c) {
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kinds[i]->prefix == c) return 1;
    return 0;
}

static int cmp_created(const void *a, const void *b) {
    const struct job *x = *(struct job *const *)a, *y = *(struct job *const *)b;
    if (x->created != y->created) return x->created < y->created ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* Reads every job directory, removing the temp files of interrupted writes first. */
static int load_all(struct jobs *js) {
    DIR *d = opendir(js->dir);
    if (!d) {
        log_msg("cannot read %s: %s", js->dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    int debris = 0;
    while ((de = readdir(d))) {
        if (!is_safe_id(de->d_name, 15) || !kind_named_by_prefix(de->d_name[0])) continue;
        char jdir[PATH_MAX];
        if (fmt_path(jdir, sizeof jdir, "%s/%s", js->dir, de->d_name)) debris += remove_tmp_files(jdir);
        struct job *jb = load_job(js, de->d_name);
        if (!jb) continue;
        if (job_add(js, jb) != 0) {
            job_free(jb);
            continue;
        }
        unsigned num = (unsigned)strtoul(jb->id + 1, NULL, 10);
        if (num >= js->next_id) js->next_id = num + 1;
    }
    closedir(d);
    if (debris) log_msg("removed %d temp files of interrupted writes from job directories", debris);
    if (js->n > 1) qsort(js->v, (size_t)js->n, sizeof *js->v, cmp_created);
    return 0;
}

int job_store_load(struct jobs *js) {
    if (load_all(js) != 0) return -1;
    for (int i = 0; i < js->n; i++) {
        struct job *jb = js->v[i];
        if (jb->state == JS_RUNNING && jb->kind->pass) { /* no checkpoint: it runs again */
            jb->state = JS_QUEUED;
            log_msg("job %s was running when the service stopped: queued to run again", jb->id);
            job_persist(js, jb);
            job_enqueue(js, jb);
        } else if (jb->state == JS_RUNNING) {
            jb->state = JS_INTERRUPTED;
            jb->resume = 1;
            snprintf(jb->error, sizeof jb->error, "the service stopped while this job was running; POST /jobs/%s/resume continues it", jb->id);
            log_msg("job %s was running when the service stopped: interrupted", jb->id);
            job_persist(js, jb);
        } else if (jb->state == JS_QUEUED) {
            job_enqueue(js, jb);
        } else if (jb->state == JS_SUCCEEDED && jb->model_id[0]) {
            char path[PATH_MAX];
            if (fmt_path(path, sizeof path, "%s/model.npz", jb->dir)) {
                ms_status st = models_register(js->srv->models, jb->model_id, path, "job", jb->id, 0);
                if (st) log_msg("job %s: its model is not usable: %s", jb->id, ms_last_error());
            }
        }
    }
    if (js->n) log_msg("%d jobs reloaded (%d queued)", js->n, js->nqueued);
    return 0;
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
    if (job_store_load(js) != 0) {
        jobs_destroy(js);
        return -1;
    }
    *out = js;
    return 0;
}

void jobs_destroy(struct jobs *js) {
    if (!js) return;
    jobs_stop(js);
    for (int i = 0; i < js->n; i++) job_free(js->v[i]);
    free(js->v);
    pthread_mutex_destroy(&js->mu);
    pthread_mutex_destroy(&js->io_mu);
    pthread_cond_destroy(&js->cv);
    free(js);
}
