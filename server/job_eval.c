/* Evaluations (issue 14): `marsseg eval --report` as a background job.
 *
 *   POST /evaluations  {model?, dataset?, key?, tta?, worst?} or {job, model?, tta?, worst?}:
 *                      a labelled dataset, or a training job's own validation split (the tiles
 *                      that run held out; the model defaults to the job's) -> 202, the job
 *   GET /evaluations, DELETE /evaluations/{id} (cancel)
 *   GET /evaluations/{id}                    the job, and once it succeeded its "report": the
 *                                            confusion matrix (counts and row-normalised), per-class
 *                                            IoU, precision and recall, mIoU, pixel accuracy and
 *                                            the `worst` tiles by their own mIoU, with file names
 *   GET /evaluations/{id}/files/{name}       the report's PNGs (NNNNN_image|truth|pred|uncertainty.png)
 *
 * The report is ms_eval_report's (core/report.c), written into the job's report/ directory as
 * the CLI writes it (built in report.tmp and renamed into place). */
#include "jobs.h"

#include "marsseg_predict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVAL_WORST_DEFAULT 8
#define EVAL_WORST_MAX 100
#define REPORT_JSON_MAX (16u << 20)

/* A training job's validation split: its config resolved as its run resolved it. */
static int job_split(struct jobs *js, const char *job_id, ms_dataset *ds, int **idx, int *n, char *model, size_t mcap,
                     char *dataset, size_t dcap, struct jr_error *e) {
    ms_train_config cfg;
    pthread_mutex_lock(&js->mu);
    struct job *tj = job_find_in(js, job_id, "/jobs");
    cJSON *config = tj ? cJSON_Duplicate(tj->config, 1) : NULL;
    if (tj) {
        snprintf(dataset, dcap, "%s", tj->dataset);
        if (model && !model[0]) snprintf(model, mcap, "%s", tj->model_id);
    }
    pthread_mutex_unlock(&js->mu);
    if (!tj) return jr_refuse(e, 400, "unknown_job", "job: no training job with id '%s'", job_id);
    ms_status st = config ? job_train_config(js, dataset, config, &cfg) : ms_fail(MS_ERR_NOMEM, "out of memory");
    cJSON_Delete(config);
    if (!st) st = ms_validation_set(&cfg, ds, idx, n);
    if (st) {
        char msg[sizeof e->msg];
        str_replace(msg, sizeof msg, ms_last_error(), cfg.data, dataset);
        return jr_refuse(e, st == MS_ERR_NOMEM ? 503 : 422, st == MS_ERR_NOMEM ? "nomem" : "invalid_dataset", "job %s: %s", job_id, msg);
    }
    if (*n == 0) {
        ms_dataset_free(ds);
        free(*idx);
        *idx = NULL;
        return jr_refuse(e, 422, "unlabelled", "job %s held out no validation tiles (val_frac 0): name a labelled dataset instead", job_id);
    }
    return 0;
}

/* The model and tiles of an evaluation: the request's dataset, or its job's split. */
static ms_status eval_open(struct pass_run *p) {
    const cJSON *job = cJSON_GetObjectItemCaseSensitive(p->jb->config, "job");
    if (!cJSON_IsString(job)) return pass_open_request(p, 1);
    char dataset[32];
    struct jr_error e;
    if (job_split(p->js, job->valuestring, &p->ds, &p->idx, &p->n, NULL, 0, dataset, sizeof dataset, &e))
        return ms_fail(MS_ERR_ARG, "%s", e.msg);
    ms_status st = model_acquire_id(p->js->srv->models, p->jb->model_id, &p->snap);
    if (!st) st = ms_check_labels_fit(p->snap->model, &p->ds, p->idx, p->n);
    return st;
}

static ms_status eval_work(struct pass_run *p) {
    struct job *jb = p->jb;
    char dir[PATH_MAX], data[96];
    if (!fmt_path(dir, sizeof dir, "%s/report", jb->dir)) return ms_fail(MS_ERR_ARG, "job directory path too long");
    const cJSON *job = cJSON_GetObjectItemCaseSensitive(jb->config, "job"), *key = cJSON_GetObjectItemCaseSensitive(jb->config, "key"),
                *worst = cJSON_GetObjectItemCaseSensitive(jb->config, "worst");
    if (cJSON_IsString(job)) snprintf(data, sizeof data, "validation split of job %s", job->valuestring);
    else snprintf(data, sizeof data, "%s[%s]", jb->dataset, cJSON_IsString(key) ? key->valuestring : "");
    ms_report_opts o = {.tta = p->tta, .worst = cJSON_IsNumber(worst) ? worst->valueint : EVAL_WORST_DEFAULT, .model_label = jb->model_id,
                        .data_label = data, .progress = p->progress, .user = p, .cancel = &p->cancel};
    cJSON *report = NULL;
    ms_status st = ms_eval_report(p->snap->model, &p->ds, p->idx, p->idx ? p->n : 0, &o, dir, &report, NULL);
    if (st) return st;
    static const char *const keep[] = {"tiles", "miou", "pixel_acc", "confidence", "entropy", "seconds"};
    cJSON *j = cJSON_CreateObject();
    int ok = j != NULL;
    for (size_t i = 0; ok && i < sizeof keep / sizeof keep[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(report, keep[i]);
        ok = !v || jset_item(j, keep[i], cJSON_Duplicate(v, 1));
    }
    cJSON_Delete(report);
    if (!ok) {
        cJSON_Delete(j);
        return ms_fail(MS_ERR_NOMEM, "the evaluation's summary");
    }
    p->result = j;
    return MS_OK;
}

static void run_eval(struct jobs *js, struct job *jb) { pass_execute(js, jb, eval_open, eval_work); }

const struct job_kind job_kind_eval = {"evaluate", 'e', "/evaluations", 1, run_eval, pass_interrupt};

/* ------------------------------------------------------------------ handlers */

static int take_worst(const cJSON *body, int *worst, struct jr_error *e) {
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(body, "worst");
    *worst = EVAL_WORST_DEFAULT;
    if (!w) return 0;
    if (!cJSON_IsNumber(w) || w->valuedouble != (double)(int)w->valuedouble || w->valuedouble < 0 || w->valuedouble > EVAL_WORST_MAX)
        return jr_refuse(e, 400, "invalid_argument", "worst: must be a whole number of tiles in [0, %d]", EVAL_WORST_MAX);
    *worst = w->valueint;
    return 0;
}

/* The request checked (the data loaded once, as the job will): 0, or -1 with *e. */
static int check_request(struct server *srv, const cJSON *body, struct pass_req *q, char *job, size_t jcap, int *worst,
                         struct jr_error *e) {
    static const char *const extra[] = {"job", "worst", NULL};
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(body, "job");
    job[0] = 0;
    if (j && (!cJSON_IsString(j) || !is_safe_id(j->valuestring, jcap - 1)))
        return jr_refuse(e, 400, "unknown_job", "job: must be the id of a training job");
    if (j && (cJSON_GetObjectItemCaseSensitive(body, "dataset") || cJSON_GetObjectItemCaseSensitive(body, "key")))
        return jr_refuse(e, 400, "invalid_argument", "give a dataset (and key) or a job (its validation split), not both");
    if (j) snprintf(job, jcap, "%s", j->valuestring);
    if (pass_req_from_json(body, extra, q, e) || take_worst(body, worst, e)) return -1;
    struct model_snap *snap = NULL;
    ms_dataset ds;
    if (!job[0]) {
        if (pass_open(srv, q, NULL, 1, &snap, &ds, e)) return -1;
        model_release(snap);
        ms_dataset_free(&ds);
        return 0;
    }
    int *idx = NULL, n = 0;
    if (job_split(srv->jobs, job, &ds, &idx, &n, q->model, sizeof q->model, q->dataset, sizeof q->dataset, e)) return -1;
    int rc = 0;
    /* the model defaults to the job's (job_split), else to the serving one */
    if (!q->model[0]) models_active_id(srv->models, q->model, sizeof q->model);
    ms_status st = q->model[0] ? model_acquire_id(srv->models, q->model, &snap) : MS_ERR_NOTFOUND;
    if (st == MS_ERR_NOTFOUND) rc = jr_refuse(e, 400, "unknown_model", "model: no model with id '%s' (GET /models)", q->model);
    else if (st) rc = jr_refuse(e, 500, ms_status_code(st), "model %s: %s", q->model, ms_last_error());
    else if ((st = ms_check_labels_fit(snap->model, &ds, idx, n)))
        rc = jr_refuse(e, 422, "class_mismatch", "job %s's validation split and model %s: %s", job, q->model, ms_last_error());
    model_release(snap);
    ms_dataset_free(&ds);
    free(idx);
    return rc;
}

enum MHD_Result h_evaluations_create(struct req *r) {
    struct server *srv = req_server(r);
    enum MHD_Result res;
    cJSON *body = req_json_object(r, &res);
    if (!body) return res;
    struct pass_req q;
    struct jr_error e;
    char job[32];
    int worst = EVAL_WORST_DEFAULT;
    const int bad = check_request(srv, body, &q, job, sizeof job, &worst, &e);
    cJSON_Delete(body);
    if (bad) return reply_jr_error(r, &e);
    cJSON *request = pass_request_json(&q, 0);
    int ok = request && jset_num(request, "worst", worst);
    if (ok && job[0]) {
        cJSON_DeleteItemFromObjectCaseSensitive(request, "key");
        ok = jset_str(request, "job", job);
    }
    if (!ok) {
        cJSON_Delete(request);
        return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    }
    struct job *jb = pass_submit(srv->jobs, &job_kind_eval, &q, request, NULL, &e);
    if (!jb) return reply_jr_error(r, &e);
    return jobs_reply_created(r, jb);
}

enum MHD_Result h_evaluations_list(struct req *r) { return jobs_reply_list(r, "/evaluations"); }
enum MHD_Result h_evaluation_cancel(struct req *r) { return jobs_reply_cancel(r, "/evaluations"); }

/* The job's directory and state, or a 404 queued (*res). */
static int find_eval(struct req *r, char *dir, size_t cap, enum job_state *state, cJSON **view, enum MHD_Result *res) {
    struct jobs *js = req_server(r)->jobs;
    pthread_mutex_lock(&js->mu);
    struct job *jb = job_find_in(js, req_param(r, 0), "/evaluations");
    if (jb) {
        snprintf(dir, cap, "%s", jb->dir);
        *state = jb->state;
        if (view) *view = job_json(jb, VIEW_DETAIL);
    }
    pthread_mutex_unlock(&js->mu);
    if (!jb) *res = reply_error(r, 404, "not_found", "no such evaluation");
    return jb ? 0 : -1;
}

enum MHD_Result h_evaluation_get(struct req *r) {
    char dir[PATH_MAX], path[PATH_MAX];
    enum job_state state;
    cJSON *j = NULL;
    enum MHD_Result res;
    if (find_eval(r, dir, sizeof dir, &state, &j, &res)) return res;
    cJSON *report = NULL;
    if (state == JS_SUCCEEDED && fmt_path(path, sizeof path, "%s/report/report.json", dir)) report = read_json_file(path, REPORT_JSON_MAX);
    if (!j || !jset_item(j, "report", report ? report : cJSON_CreateNull())) {
        cJSON_Delete(j);
        return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    }
    return reply_json(r, 200, j, NULL);
}

enum MHD_Result h_evaluation_file(struct req *r) {
    char dir[PATH_MAX], path[PATH_MAX], stem[72];
    enum job_state state;
    enum MHD_Result res;
    if (find_eval(r, dir, sizeof dir, &state, NULL, &res)) return res;
    /* only the report's own PNGs: NNNNN_<what>.png, no path of any other shape */
    const char *name = req_param(r, 1);
    const size_t n = strlen(name);
    if (n < 5 || n - 4 >= sizeof stem || strcmp(name + n - 4, ".png") != 0) return reply_error(r, 404, "not_found", "no such file");
    memcpy(stem, name, n - 4);
    stem[n - 4] = 0;
    if (!is_safe_id(stem, sizeof stem - 1) || !fmt_path(path, sizeof path, "%s/report/%s", dir, name))
        return reply_error(r, 404, "not_found", "no such file");
    return reply_file(r, path, "image/png", NULL);
}
