/* Predictions (issue 14): a whole dataset through a model as a background job, what `marsseg
 * predict` does from the command line.
 *
 *   POST /predictions   JSON {model?, dataset?, key?, tta?, probs?, frame?}, or an npz body (raw or
 *                       as a multipart file) with the same options in the query string
 *                       (?model=&key=&tta=&probs=&frame=) -> 202, the job (Location /predictions/{id});
 *                       frame: each image is a whole camera frame (predict --frame, core/frame.c)
 *   GET /predictions, GET /predictions/{id}, DELETE /predictions/{id} (cancel)
 *   GET /predictions/{id}/result            the npz: labels uint8 (N,H,W), confidence and entropy
 *                                           float32 (N,)[, probs float16 (N,5,H,W)]
 *   GET /predictions/{id}/result?format=csv the course's Kaggle submission
 *
 * The job runs ms_predict (core/predict.c) on the job worker, writing both files atomically into
 * its directory; an npz body is kept there as input.npz, so a queued or interrupted prediction
 * survives a restart and runs (again) at the next start. */
#include "jobs.h"

#include "marsseg_predict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static ms_status predict_work(struct pass_run *p) {
    struct job *jb = p->jb;
    char npz[PATH_MAX], csv[PATH_MAX];
    if (!fmt_path(npz, sizeof npz, "%s/result.npz", jb->dir) || !fmt_path(csv, sizeof csv, "%s/result.csv", jb->dir))
        return ms_fail(MS_ERR_ARG, "job directory path too long");
    const int probs = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(jb->config, "probs"));
    const int frame = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(jb->config, "frame"));
    ms_predict_opts o = {.tta = p->tta, .frame = frame, .npz_path = npz, .probs = probs, .csv_path = csv, .progress = p->progress,
                         .user = p, .cancel = &p->cancel};
    ms_predictions r;
    ms_status st = ms_predict(p->snap->model, &p->ds, NULL, 0, &o, &r);
    if (st) return st;
    double c = 0, e = 0;
    for (int i = 0; i < r.n; i++) c += r.confidence[i], e += r.entropy[i];
    char url[96];
    snprintf(url, sizeof url, "/predictions/%s/result", jb->id);
    cJSON *j = cJSON_CreateObject();
    int ok = j && jset_num(j, "tiles", r.n) && jset_num(j, "height", r.h) && jset_num(j, "width", r.w) &&
             jset_num(j, "mean_confidence", round_to(c / r.n, 6)) && jset_num(j, "mean_entropy", round_to(e / r.n, 6)) &&
             jset_bool(j, "probs", probs) && jset_num(j, "seconds", round_to(r.seconds, 3)) && jset_str(j, "npz", url);
    strncat(url, "?format=csv", sizeof url - strlen(url) - 1);
    ok = ok && jset_str(j, "csv", url);
    log_msg("job %s: %d tiles predicted in %.1f s", jb->id, r.n, r.seconds);
    ms_predictions_free(&r);
    if (!ok) {
        cJSON_Delete(j);
        return ms_fail(MS_ERR_NOMEM, "the prediction's summary");
    }
    p->result = j;
    return MS_OK;
}

static ms_status predict_open(struct pass_run *p) { return pass_open_request(p, 0); }

static void run_predict(struct jobs *js, struct job *jb) { pass_execute(js, jb, predict_open, predict_work); }

const struct job_kind job_kind_predict = {"predict", 'p', "/predictions", 1, run_predict, pass_interrupt};

/* ------------------------------------------------------------------ handlers */

static int is_json(struct req *r) {
    const char *ct = req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    return ct && strncasecmp(ct, "application/json", 16) == 0;
}

enum MHD_Result h_predictions_create(struct req *r) {
    struct server *srv = req_server(r);
    const char *upload = req_upload_path(r);
    if (!upload) return reply_error(r, 500, "internal", "upload file missing");
    struct pass_req q;
    struct jr_error e;
    int probs = 0, frame = 0, body_npz = !is_json(r);
    if (body_npz) {
        if (pass_req_from_query(r, &q, &e) || pass_query_bool(r, "probs", &probs, &e) || pass_query_bool(r, "frame", &frame, &e))
            return reply_jr_error(r, &e);
    } else {
        uint8_t *buf = NULL;
        size_t len = 0;
        ms_status st = ms_read_file(upload, srv->cfg.max_json, &buf, &len);
        if (st == MS_ERR_LIMIT)
            return reply_error(r, 413, "body_too_large", "a JSON request body is limited to %zu bytes", srv->cfg.max_json);
        if (st) return reply_status(r, st, "reading the request");
        cJSON *body = json_body_object(buf, len, &e);
        free(buf);
        static const char *const extra[] = {"probs", "frame", NULL};
        const int bad = !body || pass_req_from_json(body, extra, &q, &e) || pass_bool(body, "probs", &probs, &e) ||
                        pass_bool(body, "frame", &frame, &e);
        cJSON_Delete(body);
        if (bad) return reply_jr_error(r, &e);
    }
    q.frame = frame;
    struct model_snap *snap = NULL;
    ms_dataset ds;
    if (pass_open(srv, &q, body_npz ? upload : NULL, 0, &snap, &ds, &e)) return reply_jr_error(r, &e);
    model_release(snap);
    ms_dataset_free(&ds);
    cJSON *request = pass_request_json(&q, body_npz);
    if (!request || !jset_bool(request, "probs", probs) || !jset_bool(request, "frame", frame)) {
        cJSON_Delete(request);
        return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    }
    struct job *jb = pass_submit(srv->jobs, &job_kind_predict, &q, request, body_npz ? upload : NULL, &e);
    if (!jb) return reply_jr_error(r, &e);
    if (body_npz) req_take_upload(r); /* now the job's input.npz */
    return jobs_reply_created(r, jb);
}

enum MHD_Result h_predictions_list(struct req *r) { return jobs_reply_list(r, "/predictions"); }
enum MHD_Result h_prediction_get(struct req *r) { return jobs_reply_get(r, "/predictions"); }
enum MHD_Result h_prediction_cancel(struct req *r) { return jobs_reply_cancel(r, "/predictions"); }

enum MHD_Result h_prediction_result(struct req *r) {
    struct jobs *js = req_server(r)->jobs;
    const char *f = req_query(r, "format");
    const int csv = f && !strcmp(f, "csv");
    if (f && *f && !csv && strcmp(f, "npz") != 0) return reply_error(r, 400, "bad_format", "format must be npz or csv");
    pthread_mutex_lock(&js->mu);
    struct job *jb = job_find_in(js, req_param(r, 0), "/predictions");
    const enum job_state state = jb ? jb->state : JS_COUNT;
    pthread_mutex_unlock(&js->mu);
    if (!jb) return reply_error(r, 404, "not_found", "no such prediction");
    if (state != JS_SUCCEEDED)
        return reply_error(r, 409, "not_ready", "prediction %s is %s; its result exists once it succeeded", jb->id, job_state_names[state]);
    char path[PATH_MAX], name[48];
    if (!fmt_path(path, sizeof path, "%s/result.%s", jb->dir, csv ? "csv" : "npz")) return reply_error(r, 500, "internal", "path too long");
    snprintf(name, sizeof name, "%s.%s", jb->id, csv ? "csv" : "npz");
    return reply_file(r, path, csv ? "text/csv" : "application/octet-stream", name);
}
