/* The Label Studio ML backend's handlers: GET /health, POST /setup and POST /predict (POST
 * /webhook is in ls_webhook.c), as Label Studio's ML API calls them (label_studio/ml/api_connector.py
 * and the label-studio-ml-backend SDK's api.py, read for their shapes):
 *
 *   GET /health   -> {"status": "UP", "model_class": "marsseg", "model_version": ...}
 *   POST /setup   {"project", "schema" (the label config), "hostname", "access_token", ...}
 *                 -> {"model_version": <active model id>}
 *   POST /predict {"tasks": [{"id", "data": {<key>: <image>}}...], "label_config", "project", ...}
 *                 -> {"results": [one prediction per task, in order]}
 *
 * A prediction is {"result": [one brushlabels region per class present], "score": the tile's
 * confidence, "model_version"}; a region carries from_name/to_name and the label name from the
 * project's config, value {"format": "rle", "rle": [...], "brushlabels": [label]} and the
 * image's original_width/original_height. A task that cannot be predicted (its image refused,
 * too large, not a PNG) gets {"result": [], "error", "code"} in its place, so the other tasks
 * of the batch still get theirs. The hostname and access_token /setup receives are ignored:
 * images are fetched only from --label-studio-url, with --label-studio-token. */
#include "labelstudio.h"
#include "marsseg_predict.h" /* ms_model_segment_ex */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TASKS 10000 /* tasks in one /predict (Label Studio sends batches of tens) */

int labelstudio_create(struct server *srv, struct labelstudio **out) {
    struct labelstudio *ls = calloc(1, sizeof *ls);
    if (!ls) return -1;
    ls->srv = srv;
    char err[256];
    if (ls_host_create(srv->cfg.ls_url, srv->cfg.ls_token, &ls->host, err, sizeof err) != 0) {
        log_msg("%s", err);
        free(ls);
        return -1;
    }
    pthread_mutex_init(&ls->record_mu, NULL);
    *out = ls;
    return 0;
}

void labelstudio_destroy(struct labelstudio *ls) {
    if (!ls) return;
    ls_host_destroy(ls->host);
    pthread_mutex_destroy(&ls->record_mu);
    free(ls);
}

void labelstudio_metrics(struct labelstudio *ls, char **buf, size_t *len, size_t *cap) {
    buf_printf(buf, len, cap,
               "# HELP marsseg_labelstudio_tasks_total Label Studio tasks predicted (POST /predict).\n"
               "# TYPE marsseg_labelstudio_tasks_total counter\n"
               "marsseg_labelstudio_tasks_total %llu\n"
               "# HELP marsseg_labelstudio_tasks_failed_total Label Studio tasks answered with an error instead of a prediction.\n"
               "# TYPE marsseg_labelstudio_tasks_failed_total counter\n"
               "marsseg_labelstudio_tasks_failed_total %llu\n"
               "# HELP marsseg_labelstudio_fetch_refused_total Task image URLs refused (not on the Label Studio host).\n"
               "# TYPE marsseg_labelstudio_fetch_refused_total counter\n"
               "marsseg_labelstudio_fetch_refused_total %llu\n"
               "# HELP marsseg_labelstudio_annotations_total Annotations recorded into datasets (POST /webhook).\n"
               "# TYPE marsseg_labelstudio_annotations_total counter\n"
               "marsseg_labelstudio_annotations_total %llu\n"
               "# HELP marsseg_labelstudio_trainings_total Training jobs started by START_TRAINING.\n"
               "# TYPE marsseg_labelstudio_trainings_total counter\n"
               "marsseg_labelstudio_trainings_total %llu\n",
               (unsigned long long)atomic_load(&ls->tasks), (unsigned long long)atomic_load(&ls->tasks_failed),
               (unsigned long long)atomic_load(&ls->fetch_refused), (unsigned long long)atomic_load(&ls->annotations),
               (unsigned long long)atomic_load(&ls->trainings));
}

/* ------------------------------------------------------------------ shared with ls_webhook.c */

int ls_request_config(struct req *r, const cJSON *body, const char *key, struct ls_config *c, enum MHD_Result *res) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(body, key);
    if (!cJSON_IsString(x)) {
        *res = reply_error(r, 400, "no_label_config", "'%s' (the project's labeling config XML) is missing", key);
        return -1;
    }
    char err[256];
    int rc = ls_config_parse(x->valuestring, strlen(x->valuestring), c, err, sizeof err);
    if (rc == LS_CONFIG_OK) return 0;
    *res = reply_error(r, 400, rc == LS_CONFIG_NO_BRUSH ? "no_brush_labels" : "bad_label_config", "%s", err);
    return -1;
}

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};


int ls_task_image(struct labelstudio *ls, const cJSON *task, const struct ls_config *c, uint8_t **gray, int *w, int *h,
                  struct jr_error *e) {
    const struct server_config *cfg = &ls->srv->cfg;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(task, "data");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(data, c->data_key);
    if (!cJSON_IsObject(data)) return jr_refuse(e, 400, "no_task_data", "the task has no 'data' object");
    if (!cJSON_IsString(ref))
        return jr_refuse(e, 400, "no_image", "the task's data has no '%s' (the Image value of the label config)", c->data_key);
    uint8_t *bytes = NULL;
    size_t len = 0;
    char err[512];
    switch (ls_fetch(ls->host, ref->valuestring, cfg->max_body, &bytes, &len, err, sizeof err)) {
    case LS_FETCH_OK: break;
    case LS_FETCH_REFUSED: atomic_fetch_add(&ls->fetch_refused, 1); return jr_refuse(e, 403, "refused_host", "%s", err);
    case LS_FETCH_TOO_LARGE: return jr_refuse(e, 413, "body_too_large", "%s", err);
    case LS_FETCH_BAD: return jr_refuse(e, 400, "bad_image_ref", "%s", err);
    case LS_FETCH_NOMEM: return jr_refuse(e, 503, "nomem", "%s", err);
    case LS_FETCH_FAILED: return jr_refuse(e, 502, "fetch_failed", "%s", err);
    }
    if (len < sizeof png_sig || memcmp(bytes, png_sig, sizeof png_sig) != 0) {
        free(bytes);
        return jr_refuse(e, 400, "not_png", "the task's image is not a PNG (%zu bytes without the PNG signature); marsseg reads PNG",
                          len);
    }
    ms_status st = ms_png_decode_gray(bytes, len, cfg->max_pixels, gray, w, h);
    free(bytes);
    if (st == MS_ERR_LIMIT)
        return jr_refuse(e, 422, "too_many_pixels", "%s (the limit is %zu pixels)", ms_last_error(), cfg->max_pixels);
    if (st == MS_ERR_NOMEM) return jr_refuse(e, 503, "nomem", "out of memory decoding the image");
    if (st) return jr_refuse(e, 400, "bad_png", "cannot decode the PNG: %s", ms_last_error());
    return 0;
}

/* ------------------------------------------------------------------ inference with confidence */

/* ms_model_segment without TTA, plus the tile's confidence (the mean over the image of each
 * pixel's top softmax probability): the core's ms_model_segment_ex, so the labels are the ones
 * POST /segment answers for the same image. */
static ms_status segment_with_confidence(const ms_model *m, const uint8_t *gray, int H, int W, uint8_t *labels,
                                         float *confidence) {
    ms_tile_score score;
    ms_status st = ms_model_segment_ex(m, gray, H, W, 0, labels, NULL, &score);
    if (st == MS_OK) *confidence = score.confidence;
    return st;
}

struct ls_infer {
    const ms_model *model;
    const uint8_t *gray;
    int h, w;
    uint8_t *labels;
    float confidence;
};

static ms_status ls_infer_run(void *ctx) { /* on an inference worker (infer_call) */
    struct ls_infer *t = ctx;
    return segment_with_confidence(t->model, t->gray, t->h, t->w, t->labels, &t->confidence);
}

/* ------------------------------------------------------------------ GET /health, POST /setup */

enum MHD_Result h_ls_health(struct req *r) {
    struct model_snap *snap = model_acquire(req_server(r)->models);
    cJSON *j = cJSON_CreateObject();
    int ok = j && jset_str(j, "status", "UP") && jset_str(j, "model_class", "marsseg") &&
             (snap ? jset_str(j, "model_version", snap->id) : cJSON_AddNullToObject(j, "model_version") != NULL) &&
             jset_bool(j, "model_loaded", snap != NULL);
    if (snap) model_release(snap);
    return reply_json_built(r, 200, j, ok);
}

enum MHD_Result h_ls_setup(struct req *r) {
    enum MHD_Result res;
    cJSON *body = req_json_object(r, &res);
    if (!body) return res;
    struct ls_config c;
    int bad = ls_request_config(r, body, "schema", &c, &res);
    cJSON_Delete(body);
    if (bad) return res;
    char id[64];
    models_active_id(req_server(r)->models, id, sizeof id);
    cJSON *j = cJSON_CreateObject();
    return reply_json_built(r, 200, j, j && jset_str(j, "model_version", id[0] ? id : "none"));
}

/* ------------------------------------------------------------------ POST /predict */

/* One brushlabels region: the pixels of class cls, named label. */
static cJSON *region(const struct ls_config *c, const char *label, int cls, const uint8_t *labels, int w, int h,
                     double score) {
    size_t nbytes;
    char *rle = ls_rle_encode_json(labels, (size_t)w * h, (uint8_t)cls, &nbytes);
    cJSON *o = cJSON_CreateObject(), *v = cJSON_CreateObject(), *names = cJSON_CreateArray();
    cJSON *raw = rle ? cJSON_CreateRaw(rle) : NULL; /* the bytes are printed once, not held as nodes */
    free(rle);
    char id[32];
    snprintf(id, sizeof id, "marsseg-%d", cls);
    int ok = o && v && names && raw && cJSON_AddItemToArray(names, cJSON_CreateString(label)) && jset_str(v, "format", "rle") && jset_item(v, "rle", raw);
    raw = NULL;
    ok = ok && jset_item(v, "brushlabels", names);
    names = NULL;
    ok = ok && jset_str(o, "id", id) && jset_str(o, "from_name", c->from_name) && jset_str(o, "to_name", c->to_name) &&
         jset_str(o, "type", "brushlabels") && jset_num(o, "original_width", w) && jset_num(o, "original_height", h) &&
         jset_num(o, "image_rotation", 0) && jset_num(o, "score", score) && jset_bool(o, "readonly", 0) &&
         jset_item(o, "value", v);
    v = NULL;
    cJSON_Delete(raw);
    cJSON_Delete(names);
    cJSON_Delete(v);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The prediction of one task, or its error in its place. NULL only when out of memory. */
static cJSON *predict_task(struct labelstudio *ls, const struct model_snap *snap, const struct ls_config *c,
                           const cJSON *task) {
    struct server *srv = ls->srv;
    struct jr_error e = {0};
    uint8_t *gray = NULL, *labels = NULL;
    int w = 0, h = 0;
    float conf = 0;
    cJSON *out = cJSON_CreateObject(), *result = cJSON_CreateArray();
    int ok = out && result;
    atomic_fetch_add(&ls->tasks, 1);
    if (ok && ls_task_image(ls, task, c, &gray, &w, &h, &e) == 0) {
        struct ls_infer t = {.model = snap->model, .gray = gray, .h = h, .w = w};
        struct infer_job job = {.fn = ls_infer_run, .ctx = &t};
        if (!(labels = t.labels = malloc((size_t)w * h)))
            jr_refuse(&e, 503, "nomem", "out of memory for a %dx%d image", w, h);
        else if (infer_call(srv->infer, &job) != 0)
            jr_refuse(&e, 503, "overloaded", "all %u inference workers are busy; retry shortly", srv->cfg.threads);
        else if (job.st)
            jr_refuse(&e, job.st == MS_ERR_NOMEM || job.st == MS_ERR_LIMIT ? 503 : 500, ms_status_code(job.st),
                       "inference failed: %s", job.err);
        conf = t.confidence;
    }
    if (ok && !e.code) {
        int64_t counts[MS_NUM_CLASSES] = {0};
        for (size_t i = 0; i < (size_t)w * h; i++)
            if (labels[i] < MS_NUM_CLASSES) counts[labels[i]]++;
        for (int k = 0; k < MS_NUM_CLASSES && ok; k++) {
            const int li = c->label_of_class[k];
            if (li < 0 || counts[k] == 0) continue;
            cJSON *reg = region(c, c->labels[li].value, k, labels, w, h, tidy_float(conf));
            ok = reg && cJSON_AddItemToArray(result, reg);
            if (!ok) cJSON_Delete(reg);
        }
    }
    if (ok) {
        ok = jset_item(out, "result", result);
        result = NULL;
    }
    if (ok && !e.code) ok = jset_num(out, "score", tidy_float(conf));
    ok = ok && jset_str(out, "model_version", snap->id);
    if (ok && e.code) {
        atomic_fetch_add(&ls->tasks_failed, 1);
        const cJSON *tid = cJSON_GetObjectItemCaseSensitive(task, "id");
        char ts[32] = "?";
        if (cJSON_IsNumber(tid)) snprintf(ts, sizeof ts, "%.0f", tid->valuedouble);
        log_msg("label studio: task %s: %s", ts, e.msg);
        ok = jset_str(out, "error", e.msg) && jset_str(out, "code", e.code) && jset_num(out, "status", e.status);
    }
    free(gray);
    free(labels);
    cJSON_Delete(result);
    if (!ok) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

enum MHD_Result h_ls_predict(struct req *r) {
    struct server *srv = req_server(r);
    enum MHD_Result res;
    cJSON *body = req_json_object(r, &res);
    if (!body) return res;
    struct ls_config c;
    if (ls_request_config(r, body, "label_config", &c, &res) != 0) {
        cJSON_Delete(body);
        return res;
    }
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(body, "tasks");
    /* the SDK's own test sends one task as an object */
    const int one = cJSON_IsObject(tasks);
    if (!one && !cJSON_IsArray(tasks)) {
        cJSON_Delete(body);
        return reply_error(r, 400, "no_tasks", "'tasks' must be an array of tasks");
    }
    const int n = one ? 1 : cJSON_GetArraySize(tasks);
    if (n > MAX_TASKS) {
        cJSON_Delete(body);
        return reply_error(r, 400, "too_many_tasks", "%d tasks in one request; at most %d", n, MAX_TASKS);
    }
    struct model_snap *snap = model_acquire(srv->models);
    if (!snap) {
        cJSON_Delete(body);
        return reply_error_retry(r, 503, 5, "no_model", "no model is loaded: train one or activate one with PUT /models/active");
    }
    cJSON *j = cJSON_CreateObject(), *results = cJSON_CreateArray();
    int ok = j && results;
    const cJSON *t = one ? tasks : tasks->child;
    for (int i = 0; i < n && ok; i++, t = t->next) {
        cJSON *p = predict_task(srv->labelstudio, snap, &c, t);
        ok = p && cJSON_AddItemToArray(results, p);
        if (!ok) cJSON_Delete(p);
    }
    model_release(snap);
    cJSON_Delete(body);
    return reply_json_list(r, j, "results", results, ok);
}
