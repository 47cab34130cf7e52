/* What the kinds that pass a model over a dataset share (predictions: job_predict.c,
 * evaluations: job_eval.c, and GET /datasets/{id}/uncertain in dataset_uncertain.c):
 *
 *  - the request: "model" (a registered id; default the serving model, resolved by pass_open), "dataset" (an id;
 *    default "sample") or the job's own npz body, "key" (default: training_set for an evaluation,
 *    else test_set if the file has one, else training_set, else its only array:
 *    ms_predict_default_key), "tta", and each kind's own
 *    fields; any other field is refused, so that a typo is not silently ignored;
 *  - the checks before anything is queued, each a 4xx naming the problem: an unknown model or
 *    dataset, a missing key, an array of the wrong dtype or rank, tiles the model cannot take, an
 *    unlabelled dataset or labels the model's classes do not cover (when the kind needs labels);
 *  - the run's frame: the model and tiles opened again on the worker, progress (tiles done, rate,
 *    ETA), cancel and pause through the core's cancel flag, the end of the job. A pass has no
 *    checkpoint: a paused or interrupted one runs again from the start (jobs.h, `pass`). */
#include "jobs.h"

#include "marsseg_predict.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PASS_MAX_KEY 64

static int in_list(const char *name, const char *const *list) {
    for (; list && *list; list++)
        if (strcmp(name, *list) == 0) return 1;
    return 0;
}

static int take_string(const cJSON *body, const char *k, char *dst, size_t cap, int id, struct jr_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, k);
    if (!v) return 0;
    if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= cap || (id && !is_safe_id(v->valuestring, cap - 1)))
        return jr_refuse(e, 400, "invalid_argument", "%s: must be %s", k, id ? "an id (letters, digits, '_', '-')" : "a non-empty string");
    snprintf(dst, cap, "%s", v->valuestring);
    return 0;
}

int pass_bool(const cJSON *body, const char *k, int *out, struct jr_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, k);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return jr_refuse(e, 400, "invalid_argument", "%s: must be true or false", k);
    *out = cJSON_IsTrue(v);
    return 0;
}

int pass_req_from_json(const cJSON *body, const char *const *extra, struct pass_req *q, struct jr_error *e) {
    static const char *const common[] = {"model", "dataset", "key", "tta", NULL};
    memset(q, 0, sizeof *q);
    const cJSON *f;
    cJSON_ArrayForEach(f, body)
        if (!in_list(f->string, common) && !in_list(f->string, extra))
            return jr_refuse(e, 400, "invalid_argument", "%s: not a field of this request", f->string);
    if (take_string(body, "model", q->model, sizeof q->model, 1, e) || take_string(body, "dataset", q->dataset, sizeof q->dataset, 1, e) ||
        take_string(body, "key", q->key, sizeof q->key, 0, e) || pass_bool(body, "tta", &q->tta, e))
        return -1;
    return 0;
}

int pass_query_bool(struct req *r, const char *k, int *out, struct jr_error *e) {
    const char *v = req_query(r, k);
    if (!v || !*v) return 0;
    if (!strcmp(v, "1") || !strcmp(v, "true")) *out = 1;
    else if (!strcmp(v, "0") || !strcmp(v, "false")) *out = 0;
    else return jr_refuse(e, 400, "invalid_argument", "%s: must be 0 or 1", k);
    return 0;
}

int pass_req_from_query(struct req *r, struct pass_req *q, struct jr_error *e) {
    memset(q, 0, sizeof *q);
    const char *m = req_query(r, "model"), *k = req_query(r, "key");
    if (m && *m) {
        if (!is_safe_id(m, sizeof q->model - 1)) return jr_refuse(e, 400, "unknown_model", "model: no model with id '%.64s'", m);
        snprintf(q->model, sizeof q->model, "%s", m);
    }
    if (k && *k) {
        if (strlen(k) >= sizeof q->key) return jr_refuse(e, 400, "invalid_argument", "key: too long");
        snprintf(q->key, sizeof q->key, "%s", k);
    }
    return pass_query_bool(r, "tta", &q->tta, e);
}

/* A core error about file `path` (named `shown` to the client) as a refusal. */
static int refuse_data(struct jr_error *e, ms_status st, const char *path, const char *shown) {
    char msg[sizeof e->msg];
    str_replace(msg, sizeof msg, ms_last_error(), path, shown);
    switch (st) {
    case MS_ERR_NOTFOUND: return jr_refuse(e, 400, "missing_key", "%s", msg);
    case MS_ERR_SHAPE: return jr_refuse(e, 400, "bad_shape", "%s", msg);
    case MS_ERR_UNSUPPORTED: return jr_refuse(e, 400, "bad_dtype", "%s", msg);
    case MS_ERR_LIMIT: return jr_refuse(e, 413, "dataset_too_large", "%s", msg);
    case MS_ERR_NOMEM: return jr_refuse(e, 503, "nomem", "%s", msg);
    case MS_ERR_IO: return jr_refuse(e, 500, "io", "%s", msg);
    default: return jr_refuse(e, 400, "invalid_dataset", "%s", msg);
    }
}

int pass_open(struct server *srv, struct pass_req *q, const char *input, int need_labels, struct model_snap **snap,
              ms_dataset *ds, struct jr_error *e) {
    char path[PATH_MAX], key[PASS_MAX_KEY];
    const char *shown = q->dataset[0] ? q->dataset : "the npz body";
    *snap = NULL;
    memset(ds, 0, sizeof *ds);
    if (input) snprintf(path, sizeof path, "%s", input);
    else if (datasets_path(srv->datasets, q->dataset[0] ? q->dataset : "sample", path, sizeof path))
        return jr_refuse(e, 400, "unknown_dataset", "dataset: no dataset with id '%s'", q->dataset[0] ? q->dataset : "sample");
    if (!q->dataset[0] && !input) snprintf(q->dataset, sizeof q->dataset, "sample"), shown = q->dataset;
    ms_status st = MS_OK;
    if (!q->key[0] && need_labels) snprintf(q->key, sizeof q->key, "training_set"); /* the labelled array */
    if (!q->key[0] && (st = ms_predict_default_key(path, key, sizeof key))) return refuse_data(e, st, path, shown);
    if (!q->key[0]) snprintf(q->key, sizeof q->key, "%s", key);
    if ((st = ms_dataset_load(ds, path, q->key, srv->cfg.max_dataset_mem))) return refuse_data(e, st, path, shown);
    if (need_labels && !ds->mask) {
        ms_dataset_free(ds);
        return jr_refuse(e, 422, "unlabelled", "%s[%s] has no masks (an (N,H,W) image array): an evaluation needs (N,2,H,W) "
                                              "images and masks",
                         shown, q->key);
    }
    if (!q->model[0]) models_active_id(srv->models, q->model, sizeof q->model); /* the default: the serving model */
    if (!q->model[0]) {
        ms_dataset_free(ds);
        return jr_refuse(e, 400, "unknown_model", "model: no model is serving; name one (GET /models)");
    }
    if ((st = model_acquire_id(srv->models, q->model, snap))) {
        ms_dataset_free(ds);
        if (st == MS_ERR_NOTFOUND) return jr_refuse(e, 400, "unknown_model", "model: no model with id '%s' (GET /models)", q->model);
        return jr_refuse(e, st == MS_ERR_NOMEM ? 503 : 500, ms_status_code(st), "model %s: %s", q->model, ms_last_error());
    }
    const ms_model_config *mc = ms_model_get_config((*snap)->model);
    const int mult = 1 << mc->depth;
    const char *why = !q->frame && (ds->h % mult || ds->w % mult) ? "bad_shape" : NULL;
    char msg[300] = "";
    if (why) snprintf(msg, sizeof msg, "%s[%s]: tiles of %dx%d (HxW); model %s (depth %d) needs multiples of %d", shown, q->key, ds->h,
                      ds->w, q->model, mc->depth, mult);
    else if (need_labels && (st = ms_check_labels_fit((*snap)->model, ds, NULL, 0)))
        why = "class_mismatch", snprintf(msg, sizeof msg, "%s[%s] and model %s: %s", shown, q->key, q->model, ms_last_error());
    if (why) {
        model_release(*snap);
        *snap = NULL;
        ms_dataset_free(ds);
        return jr_refuse(e, strcmp(why, "bad_shape") ? 422 : 400, why, "%s", msg);
    }
    return 0;
}

/* ------------------------------------------------------------------ the run */

static void on_progress(void *user, int done, int total, double elapsed) {
    struct pass_run *p = user;
    ms_progress g;
    memset(&g, 0, sizeof g);
    g.batch = done;
    g.batches = total;
    g.images_per_s = elapsed > 0 ? done / elapsed : NAN;
    g.eta_s = done > 0 ? (total - done) * elapsed / done : NAN;
    pthread_mutex_lock(&p->js->mu);
    p->jb->progress = g;
    p->jb->has_progress = 1;
    pthread_mutex_unlock(&p->js->mu);
}

ms_status pass_open_request(struct pass_run *p, int need_labels) {
    struct job *jb = p->jb;
    struct pass_req q = {.tta = p->tta, .frame = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(jb->config, "frame"))};
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(jb->config, "model"), *k = cJSON_GetObjectItemCaseSensitive(jb->config, "key");
    snprintf(q.model, sizeof q.model, "%s", cJSON_IsString(m) ? m->valuestring : "");
    snprintf(q.key, sizeof q.key, "%s", cJSON_IsString(k) ? k->valuestring : "");
    snprintf(q.dataset, sizeof q.dataset, "%s", jb->dataset);
    char input[PATH_MAX];
    const int body = !jb->dataset[0];
    if (body && !fmt_path(input, sizeof input, "%s/input.npz", jb->dir)) return ms_fail(MS_ERR_ARG, "job directory path too long");
    struct jr_error e;
    if (pass_open(p->js->srv, &q, body ? input : NULL, need_labels, &p->snap, &p->ds, &e))
        return ms_fail(e.status == 503 ? MS_ERR_NOMEM : MS_ERR_ARG, "%s", e.msg);
    return MS_OK;
}

void pass_execute(struct jobs *js, struct job *jb, ms_status (*open)(struct pass_run *p), ms_status (*work)(struct pass_run *p)) {
    struct pass_run p = {.js = js, .jb = jb, .progress = on_progress};
    atomic_init(&p.cancel, 0);
    const cJSON *tta = cJSON_GetObjectItemCaseSensitive(jb->config, "tta");
    p.tta = cJSON_IsTrue(tta);
    if (jb->dataset[0] && datasets_path(js->srv->datasets, jb->dataset, p.data_path, sizeof p.data_path)) p.data_path[0] = 0;
    ms_set_threads(js->default_threads);
    char err[512];
    ms_status st = open(&p);
    pthread_mutex_lock(&js->mu);
    const int cancel = jb->cancel_requested, stop = js->stop;
    if (!st && !cancel && !stop) jb->stop = &p.cancel;
    pthread_mutex_unlock(&js->mu);
    if (!st && !cancel && !stop) {
        atomic_store(&js->srv->training_active, 1); /* /segment's workers go single-threaded meanwhile */
        st = work(&p);
        atomic_store(&js->srv->training_active, 0);
    }
    job_scrub(jb, p.data_path, err, sizeof err, st ? ms_last_error() : "");
    pthread_mutex_lock(&js->mu);
    jb->stop = NULL;
    const int cancelled = jb->cancel_requested, paused = jb->pause_requested || js->stop;
    if (!st && !cancel && !stop) {
        cJSON_Delete(jb->outcome);
        jb->outcome = p.result;
        p.result = NULL;
    }
    pthread_mutex_unlock(&js->mu);
    cJSON_Delete(p.result);
    model_release(p.snap);
    ms_dataset_free(&p.ds);
    free(p.idx);
    if (cancelled) job_finish(js, jb, JS_CANCELLED, NULL);
    else if (paused && (st == MS_ERR_CANCELLED || stop)) job_finish(js, jb, JS_QUEUED, NULL); /* runs again at the next start */
    else if (st) job_finish(js, jb, JS_FAILED, "%s", err);
    else job_finish(js, jb, JS_SUCCEEDED, NULL);
}

void pass_interrupt(struct job *jb, int pause) {
    if (pause) log_msg("job %s: stopping for shutdown; it runs again at the next start", jb->id);
    if (jb->stop) atomic_store(jb->stop, 1); /* checked by the core between batches */
}

/* ------------------------------------------------------------------ submissions */

struct job *pass_submit(struct jobs *js, const struct job_kind *kind, const struct pass_req *q, cJSON *request, const char *upload,
                        struct jr_error *e) {
    struct job *jb = calloc(1, sizeof *jb);
    if (!jb) {
        cJSON_Delete(request);
        return jr_refuse(e, 503, "nomem", "out of memory"), NULL;
    }
    jb->kind = kind;
    jb->config = request;
    snprintf(jb->dataset, sizeof jb->dataset, "%s", upload ? "" : q->dataset);
    snprintf(jb->model_id, sizeof jb->model_id, "%s", q->model);
    if (job_reserve(js, jb, e)) return NULL;
    char input[PATH_MAX];
    if (upload && (!fmt_path(input, sizeof input, "%s/input.npz", jb->dir) || rename(upload, input) != 0)) {
        jr_refuse(e, 500, "io", "cannot keep the npz body with the job");
        rmdir(jb->dir);
        job_free(jb);
        return NULL;
    }
    if (job_publish(js, jb, e)) return NULL;
    return jb;
}

/* The request as stored and shown: the common fields resolved (model, dataset, key, tta). */
cJSON *pass_request_json(const struct pass_req *q, int body) {
    cJSON *j = cJSON_CreateObject();
    int ok = j && jset_str(j, "model", q->model) &&
             (body ? cJSON_AddNullToObject(j, "dataset") != NULL : jset_str(j, "dataset", q->dataset)) && jset_str(j, "key", q->key) &&
             jset_bool(j, "tta", q->tta);
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}
