/* The jobs' HTTP handlers (GET/POST /jobs, GET/DELETE /jobs/{id}, GET /jobs/{id}/curves, POST
 * /jobs/{id}/resume), the steps of every submission (job_reserve, job_publish), the list, detail
 * and cancel handlers every kind's collection shares (/predictions, /evaluations use them too),
 * and the Prometheus lines. The queue, the store and the views they use are described in jobs.h. */
#include "jobs.h"

#include "marsseg_curves.h"
#include "marsseg_io.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const job_kind_names[JOB_KINDS] = {"train", "predict", "evaluate"};

int job_kind_index(const struct job_kind *k) {
    for (int i = 0; i < JOB_KINDS; i++)
        if (strcmp(k->name, job_kind_names[i]) == 0) return i;
    return 0;
}

void jobs_metrics(struct jobs *js, char **buf, size_t *len, size_t *cap) {
    int counts[JOB_KINDS][JS_COUNT] = {{0}};
    pthread_mutex_lock(&js->mu);
    for (int i = 0; i < js->n; i++) counts[job_kind_index(js->v[i]->kind)][js->v[i]->state]++;
    buf_printf(buf, len, cap, "# HELP marsseg_jobs Jobs (training, predictions, evaluations) by kind and state.\n# TYPE marsseg_jobs gauge\n");
    for (int k = 0; k < JOB_KINDS; k++)
        for (int s = 0; s < JS_COUNT; s++)
            buf_printf(buf, len, cap, "marsseg_jobs{kind=\"%s\",state=\"%s\"} %d\n", job_kind_names[k], job_state_names[s], counts[k][s]);
    buf_printf(buf, len, cap,
               "# HELP marsseg_jobs_finished_total Jobs that ended since start-up, by kind and outcome.\n"
               "# TYPE marsseg_jobs_finished_total counter\n");
    for (int k = 0; k < JOB_KINDS; k++)
        for (int s = JS_SUCCEEDED; s < JS_COUNT; s++)
            buf_printf(buf, len, cap, "marsseg_jobs_finished_total{kind=\"%s\",state=\"%s\"} %llu\n", job_kind_names[k],
                       job_state_names[s], js->finished_total[k][s]);
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
    snprintf(loc, sizeof loc, "%s/%s", jb->kind->collection, jb->id);
    return reply_json(r, status, j, status == 202 || status == 201 ? loc : NULL);
}

struct job *job_find_in(struct jobs *js, const char *id, const char *collection) {
    struct job *jb = job_find(js, id);
    return jb && strcmp(jb->kind->collection, collection) == 0 ? jb : NULL;
}

enum MHD_Result h_jobs_list(struct req *r) { return jobs_reply_list(r, "/jobs"); }

enum MHD_Result jobs_reply_list(struct req *r, const char *collection) {
    struct jobs *js = req_server(r)->jobs;
    cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int ok = j && arr;
    pthread_mutex_lock(&js->mu);
    for (int i = js->n - 1; i >= 0 && ok; i--) { /* newest first */
        if (strcmp(js->v[i]->kind->collection, collection) != 0) continue;
        cJSON *e = job_json(js->v[i], VIEW_SUMMARY);
        ok = e && cJSON_AddItemToArray(arr, e);
        if (!ok) cJSON_Delete(e);
    }
    ok = ok && jset_num(j, "queued", js->nqueued);
    ok = ok && (js->running ? jset_str(j, "running", js->running->id) : cJSON_AddNullToObject(j, "running") != NULL);
    pthread_mutex_unlock(&js->mu);
    return reply_json_list(r, j, collection + 1, arr, ok);
}

int job_reserve(struct jobs *js, struct job *jb, struct jr_error *e) {
    struct server *srv = js->srv;
    jb->state = JS_QUEUED;
    jb->created = now_wall();
    pthread_mutex_lock(&js->mu);
    if (js->stop) {
        pthread_mutex_unlock(&js->mu);
        job_free(jb);
        return jr_refuse(e, 503, "shutting_down", "the service is shutting down");
    }
    if ((unsigned)js->nqueued >= srv->cfg.max_queue) {
        int q = js->nqueued;
        pthread_mutex_unlock(&js->mu);
        job_free(jb);
        jr_refuse(e, 503, "queue_full", "%d jobs are already queued; retry later", q);
        e->retry_after = 30;
        return -1;
    }
    unsigned num = js->next_id++;
    pthread_mutex_unlock(&js->mu);
    snprintf(jb->id, sizeof jb->id, "%c%06u", jb->kind->prefix, num);
    if (!fmt_path(jb->dir, sizeof jb->dir, "%s/%s", js->dir, jb->id) || ensure_dir(jb->dir) != 0) {
        int err = errno;
        job_free(jb);
        return jr_refuse(e, 500, "io", "cannot create the job directory: %s", strerror(err));
    }
    if (ms_fsync_dir(js->dir) != 0) log_msg("job %s: cannot sync %s: %s", jb->id, js->dir, strerror(errno));
    return 0;
}

/* A reserved job that will not be published: its directory and what the caller put there. */
static void job_unreserve(struct job *jb) {
    char file[PATH_MAX];
    DIR *d = opendir(jb->dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && fmt_path(file, sizeof file, "%s/%s", jb->dir, de->d_name)) unlink(file);
    if (d) closedir(d);
    rmdir(jb->dir);
    job_free(jb);
}

int job_publish(struct jobs *js, struct job *jb, struct jr_error *e) {
    /* on disk before it is visible, so an accepted job is never lost */
    cJSON *snap = job_json(jb, VIEW_PERSIST);
    char path[PATH_MAX];
    ms_status st = snap && fmt_path(path, sizeof path, "%s/job.json", jb->dir) ? write_json_atomic(path, snap) : MS_ERR_NOMEM;
    cJSON_Delete(snap);
    if (st) {
        job_unreserve(jb);
        if (st == MS_ERR_NOMEM) return jr_refuse(e, 503, "nomem", "saving the job: out of memory");
        return jr_refuse(e, 500, ms_status_code(st), "saving the job: %s", ms_last_error()[0] ? ms_last_error() : ms_strerror(st));
    }
    jb->persisted_version = jb->version = 1;
    pthread_mutex_lock(&js->mu);
    if (job_add(js, jb) != 0) {
        pthread_mutex_unlock(&js->mu);
        job_unreserve(jb);
        jr_refuse(e, 503, "too_many_jobs", "job registry full or out of memory");
        e->retry_after = 30;
        return -1;
    }
    job_enqueue(js, jb);
    pthread_mutex_unlock(&js->mu);
    log_msg("job %s: queued (%s%s%s)", jb->id, jb->kind->name, jb->dataset[0] ? ", dataset " : "", jb->dataset);
    return 0;
}

struct job *job_submit(struct jobs *js, const char *dataset, const cJSON *config, int activate, int ranks, struct jr_error *e) {
    ms_train_config cfg;
    ms_status st = job_train_config(js, dataset, config, &cfg);
    if (st == MS_ERR_NOTFOUND) return jr_refuse(e, 400, "unknown_dataset", "dataset: no dataset with id '%s'", dataset), NULL;
    if (st == MS_ERR_NOMEM) return jr_refuse(e, 503, "nomem", "out of memory"), NULL;
    if (st) return jr_refuse(e, 400, "invalid_config", "%s", ms_last_error()), NULL;

    struct job *jb = calloc(1, sizeof *jb);
    if (!jb || !(jb->config = job_config_display(&cfg))) {
        job_free(jb);
        return jr_refuse(e, 503, "nomem", "out of memory"), NULL;
    }
    jb->kind = ranks ? &job_kind_mpi : &job_kind_train;
    jb->ranks = ranks;
    snprintf(jb->dataset, sizeof jb->dataset, "%s", dataset);
    jb->activate = activate;
    if (job_reserve(js, jb, e) || job_publish(js, jb, e)) return NULL;
    return jb;
}

enum MHD_Result reply_jr_error(struct req *r, const struct jr_error *e) {
    if (e->retry_after) return reply_error_retry(r, (unsigned)e->status, (unsigned)e->retry_after, e->code, "%s", e->msg);
    return reply_error(r, (unsigned)e->status, e->code, "%s", e->msg);
}

enum MHD_Result jobs_reply_created(struct req *r, struct job *jb) { return reply_job(r, req_server(r)->jobs, jb, 202, VIEW_DETAIL); }

enum MHD_Result h_jobs_create(struct req *r) {
    struct server *srv = req_server(r);
    struct jobs *js = srv->jobs;
    enum MHD_Result res;
    cJSON *body = req_json_object(r, &res);
    if (!body) return res;
    char dataset[32];
    int activate, ranks = 0;
    struct jr_error e;
    if (job_request_fields(body, dataset, sizeof dataset, &activate, &e) || job_request_ranks(body, &ranks, &e) ||
        (ranks && mpi_check_ranks(srv, ranks, &e))) {
        cJSON_Delete(body);
        return reply_error(r, (unsigned)e.status, e.code, "%s", e.msg);
    }
    struct job *jb = job_submit(js, dataset, body, activate, ranks, &e);
    cJSON_Delete(body);
    if (!jb) return reply_jr_error(r, &e);
    return reply_job(r, js, jb, 202, VIEW_DETAIL);
}

enum MHD_Result h_job_get(struct req *r) { return jobs_reply_get(r, "/jobs"); }

enum MHD_Result jobs_reply_get(struct req *r, const char *collection) {
    struct jobs *js = req_server(r)->jobs;
    pthread_mutex_lock(&js->mu);
    struct job *jb = job_find_in(js, req_param(r, 0), collection);
    pthread_mutex_unlock(&js->mu);
    if (!jb) return reply_error(r, 404, "not_found", "no such job");
    return reply_job(r, js, jb, 200, VIEW_DETAIL);
}

enum MHD_Result h_job_delete(struct req *r) { return jobs_reply_cancel(r, "/jobs"); }

enum MHD_Result jobs_reply_cancel(struct req *r, const char *collection) {
    struct jobs *js = req_server(r)->jobs;
    pthread_mutex_lock(&js->mu);
    struct job *jb = job_find_in(js, req_param(r, 0), collection);
    if (!jb) {
        pthread_mutex_unlock(&js->mu);
        return reply_error(r, 404, "not_found", "no such job");
    }
    enum job_state s = jb->state;
    if (s == JS_QUEUED && job_dequeue(js, jb)) {
        pthread_mutex_unlock(&js->mu);
        job_finish(js, jb, JS_CANCELLED, NULL);
        return reply_job(r, js, jb, 200, VIEW_DETAIL);
    }
    if (s == JS_RUNNING) {
        jb->cancel_requested = 1;
        jb->kind->interrupt(jb, 0);
        pthread_mutex_unlock(&js->mu);
        log_msg("job %s: cancel requested", jb->id);
        return reply_job(r, js, jb, 202, VIEW_DETAIL); /* it stops at the next batch */
    }
    pthread_mutex_unlock(&js->mu);
    return reply_error(r, 409, "conflict", "job %s is %s; only queued or running jobs can be cancelled", jb->id, job_state_names[s]);
}

enum MHD_Result h_job_resume(struct req *r) {
    struct server *srv = req_server(r);
    struct jobs *js = srv->jobs;
    pthread_mutex_lock(&js->mu);
    struct job *jb = job_find_in(js, req_param(r, 0), "/jobs");
    if (!jb) {
        pthread_mutex_unlock(&js->mu);
        return reply_error(r, 404, "not_found", "no such job");
    }
    if (jb->state != JS_INTERRUPTED && jb->state != JS_CANCELLED) {
        enum job_state s = jb->state;
        pthread_mutex_unlock(&js->mu);
        return reply_error(r, 409, "conflict", "job %s is %s; only interrupted or cancelled jobs can be resumed", jb->id,
                           job_state_names[s]);
    }
    if ((unsigned)js->nqueued >= srv->cfg.max_queue) {
        pthread_mutex_unlock(&js->mu);
        return reply_error_retry(r, 503, 30, "queue_full", "the job queue is full; retry later");
    }
    jb->state = JS_QUEUED;
    jb->resume = 1;
    jb->error[0] = 0;
    jb->finished = 0;
    job_enqueue(js, jb);
    pthread_mutex_unlock(&js->mu);
    log_msg("job %s: queued to resume", jb->id);
    job_persist(js, jb);
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
    struct job *jb = job_find_in(js, req_param(r, 0), "/jobs");
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
    int last_epoch = job_last_epoch(jb), epochs = job_epochs(jb);
    double best;
    int best_epoch = ms_curves_best(jb->curves, jb->ncurves, &best);
    pthread_mutex_unlock(&js->mu);

    cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int ok = j && arr && jset_str(j, "id", req_param(r, 0)) && jset_str(j, "state", job_state_names[state]) &&
             jset_num(j, "epoch", last_epoch) && jset_num(j, "epochs", epochs) && jset_num(j, "since", since) &&
             jset_item(j, "best_val_miou", best_epoch ? ms_json_number(best) : cJSON_CreateNull()) &&
             jset_num(j, "best_epoch", best_epoch);
    for (int i = 0; i < n && ok; i++) {
        cJSON *p = ms_epoch_stats_to_cjson(&pts[i]);
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
