/* POST /webhook: the events Label Studio sends an ML backend (the SDK's TRAIN_EVENTS).
 *
 *   ANNOTATION_CREATED, ANNOTATION_UPDATED  {"action", "annotation": {"id", "result": [...],
 *       "task": id, "was_cancelled"}, "task": {"id", "data"}, "project": {"id", "label_config"}}
 *     The annotation's brushlabels regions are decoded (Label Studio's RLE, ls_rle.c) into one
 *     class mask (pixels no region covers are background; later regions win), paired with the
 *     task's image and recorded in the project's dataset "ls<project>" (ls_dataset.c), replacing
 *     an earlier version of the same annotation. Older Label Studio versions send only the
 *     task's id: the task is then read from the Label Studio host's API (GET /api/tasks/<id>).
 *     -> 201 {"status": "ok", "result": {"dataset", "samples", "annotation", "replaced"}}
 *     A skipped task or an annotation without brush regions of a known label records nothing:
 *     -> 200 {"status": "skipped", "reason"}
 *   START_TRAINING  {"action", "project": {"id", ...}}
 *     A training job (the default config, as POST /jobs makes it, with a batch of at most half the
 *     recorded samples so that a few annotated frames can train) on the project's dataset. It
 *     does not replace the serving model when it ends: a model trained on a few annotated frames
 *     is rarely better than the one serving, so activating it is a person's call (the dashboard,
 *     or PUT /models/active) once its validation mIoU is known.
 *     -> 201 {"status": "ok", "result": {"job", "dataset"}}
 *   any other action -> 200 {"status": "Unknown event"} (as the SDK answers)
 *
 * Errors are the service's own {"error", "code"} with a 4xx/5xx status, which Label Studio shows
 * as the backend's error. */
#include "labelstudio.h"

#include "jobs.h"
#include "marsseg_npz.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A JSON number that is an id (a non-negative integer below 2^53). */
static int json_id(const cJSON *x, long long *out) {
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= 0) || x->valuedouble > 9007199254740991.0 ||
        x->valuedouble != floor(x->valuedouble))
        return 0;
    *out = (long long)x->valuedouble;
    return 1;
}

/* {"status": st, "reason": reason, "result": result}; takes result. */
static enum MHD_Result reply_status_text(struct req *r, unsigned status, const char *st, cJSON *result, const char *reason) {
    cJSON *j = cJSON_CreateObject();
    int ok = j && jset_str(j, "status", st) && (!reason || jset_str(j, "reason", reason));
    if (ok && result) {
        ok = jset_item(j, "result", result);
        result = NULL;
    }
    cJSON_Delete(result);
    return reply_json_built(r, status, j, ok);
}

/* The task of the event: body.task, or (older Label Studio) the task read from the Label Studio
 * host by the annotation's task id. *owned is set when the caller must free it. */
static const cJSON *event_task(struct labelstudio *ls, const cJSON *body, const cJSON *annotation, cJSON **owned,
                               struct jr_error *e) {
    *owned = NULL;
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(body, "task");
    if (cJSON_IsObject(task)) return task;
    long long tid;
    if (!json_id(cJSON_GetObjectItemCaseSensitive(annotation, "task"), &tid)) {
        jr_refuse(e, 400, "no_task", "the event has neither a 'task' object nor the annotation's task id");
        return NULL;
    }
    char path[64], err[512];
    snprintf(path, sizeof path, "/api/tasks/%lld", tid);
    uint8_t *bytes = NULL;
    size_t len = 0;
    enum ls_fetch_status fs = ls_fetch(ls->host, path, ls->srv->cfg.max_json, &bytes, &len, err, sizeof err);
    if (fs != LS_FETCH_OK) {
        jr_refuse(e, fs == LS_FETCH_REFUSED ? 400 : 502, "no_task", "the event carries only task id %lld and reading it failed: %.400s",
                  tid, err);
        return NULL;
    }
    struct jr_error je;
    *owned = json_body_object(bytes, len, &je);
    free(bytes);
    if (!*owned) {
        jr_refuse(e, 502, "no_task", "Label Studio's /api/tasks/%lld is not a JSON object: %.400s", tid, je.msg);
    }
    return *owned;
}

/* The annotation's brush regions painted into labels (h x w, background where none). Returns
 * how many regions were used (0: nothing to record), or -1 with *e. */
static int paint_regions(const struct ls_config *c, const cJSON *annotation, uint8_t *labels, int w, int h,
                         struct jr_error *e) {
    const size_t n = (size_t)w * h;
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(annotation, "result");
    if (!cJSON_IsArray(result)) {
        return jr_refuse(e, 400, "bad_annotation", "the annotation has no 'result' array");
    }
    uint8_t *rgba = NULL, *packed = NULL;
    int used = 0;
    const cJSON *reg;
    cJSON_ArrayForEach(reg, result) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(reg, "type");
        const cJSON *from = cJSON_GetObjectItemCaseSensitive(reg, "from_name");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(reg, "value");
        if (!cJSON_IsString(type) || strcasecmp(type->valuestring, "brushlabels") != 0) continue;
        if (cJSON_IsString(from) && strcmp(from->valuestring, c->from_name) != 0) continue;
        const cJSON *names = cJSON_GetObjectItemCaseSensitive(v, "brushlabels");
        const cJSON *name = cJSON_IsArray(names) ? cJSON_GetArrayItem(names, 0) : NULL;
        const int cls = cJSON_IsString(name) ? ls_config_class(c, name->valuestring) : -1;
        if (cls < 0) continue; /* a label none of our classes answers to */
        const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(v, "format"), *rle = cJSON_GetObjectItemCaseSensitive(v, "rle");
        long long ow = -1, oh = -1;
        json_id(cJSON_GetObjectItemCaseSensitive(reg, "original_width"), &ow);
        json_id(cJSON_GetObjectItemCaseSensitive(reg, "original_height"), &oh);
        e->status = 422, e->code = "bad_annotation";
        if ((cJSON_IsString(fmt) && strcmp(fmt->valuestring, "rle") != 0) || !cJSON_IsArray(rle)) {
            snprintf(e->msg, sizeof e->msg, "a brushlabels region of '%s' is not in the rle format", name->valuestring);
            goto fail;
        }
        if (ow != w || oh != h) {
            snprintf(e->msg, sizeof e->msg, "a region of '%s' is for a %lldx%lld image; the task's image is %dx%d",
                     name->valuestring, ow, oh, w, h);
            goto fail;
        }
        const int nb = cJSON_GetArraySize(rle);
        if (!rgba && !(rgba = malloc(n * 4))) goto nomem;
        uint8_t *np = realloc(packed, (size_t)nb + 1);
        if (!np) goto nomem;
        packed = np;
        int k = 0;
        const cJSON *b;
        cJSON_ArrayForEach(b, rle) {
            if (!cJSON_IsNumber(b) || b->valuedouble < 0 || b->valuedouble > 255 || b->valuedouble != floor(b->valuedouble)) {
                snprintf(e->msg, sizeof e->msg, "the rle of '%s' holds something other than bytes", name->valuestring);
                goto fail;
            }
            packed[k++] = (uint8_t)b->valuedouble;
        }
        char err[256];
        if (ls_rle_decode(packed, (size_t)k, rgba, n * 4, err, sizeof err) != 0) {
            snprintf(e->msg, sizeof e->msg, "the rle of '%s': %s", name->valuestring, err);
            goto fail;
        }
        for (size_t p = 0; p < n; p++)
            if (rgba[p * 4 + 3] >= 128) labels[p] = (uint8_t)cls; /* Label Studio paints the alpha channel */
        used++;
    }
    free(rgba);
    free(packed);
    e->code = NULL;
    return used;
nomem:
    jr_refuse(e, 503, "nomem", "out of memory decoding the annotation");
fail:
    free(rgba);
    free(packed);
    return -1;
}

/* The project's id: project.id, or the annotation's project. */
static int event_project(const cJSON *body, long long *pid) {
    const cJSON *project = cJSON_GetObjectItemCaseSensitive(body, "project");
    if (json_id(cJSON_GetObjectItemCaseSensitive(project, "id"), pid) || json_id(project, pid)) return 1;
    return json_id(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(body, "annotation"), "project"), pid);
}

static enum MHD_Result on_annotation(struct req *r, struct labelstudio *ls, const cJSON *body) {
    enum MHD_Result res;
    long long pid, aid;
    if (!event_project(body, &pid)) return reply_error(r, 400, "no_project", "the event names no project id");
    struct ls_config c;
    if (ls_request_config(r, cJSON_GetObjectItemCaseSensitive(body, "project"), "label_config", &c, &res) != 0) return res;
    const cJSON *annotation = cJSON_GetObjectItemCaseSensitive(body, "annotation");
    if (!cJSON_IsObject(annotation) || !json_id(cJSON_GetObjectItemCaseSensitive(annotation, "id"), &aid))
        return reply_error(r, 400, "bad_annotation", "the event has no 'annotation' with an id");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(annotation, "was_cancelled")))
        return reply_status_text(r, 200, "skipped", NULL, "the task was skipped (was_cancelled): nothing to record");

    struct jr_error e = {0};
    cJSON *owned = NULL;
    const cJSON *task = event_task(ls, body, annotation, &owned, &e);
    if (!task) return reply_jr_error(r, &e);
    long long tid = -1;
    json_id(cJSON_GetObjectItemCaseSensitive(task, "id"), &tid);
    uint8_t *gray = NULL, *labels = NULL;
    int w = 0, h = 0, used = -1;
    enum MHD_Result ret;
    if (ls_task_image(ls, task, &c, &gray, &w, &h, &e) != 0) {
        ret = reply_jr_error(r, &e);
        goto done;
    }
    if (!(labels = calloc((size_t)w * h, 1))) {
        ret = reply_error_retry(r, 503, 5, "nomem", "out of memory for a %dx%d mask", w, h);
        goto done;
    }
    if ((used = paint_regions(&c, annotation, labels, w, h, &e)) < 0) {
        ret = reply_jr_error(r, &e);
        goto done;
    }
    if (used == 0) {
        ret = reply_status_text(r, 200, "skipped", NULL, "the annotation has no brush region with a label of our classes");
        goto done;
    }
    char id[32];
    int samples = 0, replaced = 0;
    ms_status st = ls_dataset_record(ls, pid, aid, tid, gray, labels, h, w, &samples, &replaced, id, sizeof id);
    if (st) {
        ret = st == MS_ERR_SHAPE ? reply_error(r, 422, "size_mismatch", "%s", ms_last_error())
                                 : reply_status(r, st, "recording the annotation");
        goto done;
    }
    atomic_fetch_add(&ls->annotations, 1);
    log_msg("label studio: annotation %lld of project %lld recorded in dataset %s (%d samples%s)", aid, pid, id, samples,
            replaced ? ", replacing its previous version" : "");
    cJSON *result = cJSON_CreateObject();
    if (!result || !jset_str(result, "dataset", id) || !jset_num(result, "samples", samples) ||
        !jset_num(result, "annotation", (double)aid) || !jset_bool(result, "replaced", replaced)) {
        cJSON_Delete(result);
        ret = reply_error_retry(r, 503, 5, "nomem", "out of memory");
        goto done;
    }
    ret = reply_status_text(r, 201, "ok", result, NULL);
done:
    free(gray);
    free(labels);
    cJSON_Delete(owned);
    return ret;
}

static enum MHD_Result on_start_training(struct req *r, struct labelstudio *ls, const cJSON *body) {
    struct server *srv = ls->srv;
    long long pid;
    if (!event_project(body, &pid)) return reply_error(r, 400, "no_project", "the event names no project id");
    char id[32], path[PATH_MAX];
    ls_dataset_id(pid, id, sizeof id);
    if (datasets_path(srv->datasets, id, path, sizeof path) != MS_OK)
        return reply_error(r, 409, "no_annotations",
                           "no annotation of project %lld has been recorded yet: the dataset %s is made from "
                           "ANNOTATION_CREATED/UPDATED events (enable them for this ML backend in Label Studio)",
                           pid, id);
    /* the default config, but a batch that a few annotated frames can fill: the trainer refuses a
     * dataset smaller than one batch (32 by default) */
    ms_npz *z = NULL;
    ms_npy_info info;
    long long samples = 0;
    if (ms_npz_open(&z, path) == MS_OK && ms_npz_info(z, "training_set", &info) == MS_OK) samples = info.shape[0];
    ms_npz_close(z);
    const long long batch = samples / 2 < 1 ? 1 : samples / 2 > 32 ? 32 : samples / 2;
    cJSON *config = cJSON_CreateObject();
    if (!config || !jset_num(config, "batch", (double)batch)) {
        cJSON_Delete(config);
        return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    }
    struct jr_error je;
    struct job *jb = job_submit(srv->jobs, id, config, 0, 0, &je);
    cJSON_Delete(config);
    if (!jb) {
        if (je.retry_after) return reply_error_retry(r, (unsigned)je.status, (unsigned)je.retry_after, je.code, "%s", je.msg);
        return reply_error(r, (unsigned)je.status, je.code, "%s", je.msg);
    }
    atomic_fetch_add(&ls->trainings, 1);
    log_msg("label studio: START_TRAINING for project %lld: job %s on dataset %s", pid, jb->id, id);
    cJSON *result = cJSON_CreateObject();
    if (!result || !jset_str(result, "job", jb->id) || !jset_str(result, "dataset", id)) {
        cJSON_Delete(result);
        return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    }
    return reply_status_text(r, 201, "ok", result, NULL);
}

enum MHD_Result h_ls_webhook(struct req *r) {
    struct labelstudio *ls = req_server(r)->labelstudio;
    enum MHD_Result res;
    cJSON *body = req_json_object(r, &res);
    if (!body) return res;
    const cJSON *action = cJSON_GetObjectItemCaseSensitive(body, "action");
    const char *a = cJSON_IsString(action) ? action->valuestring : "";
    if (strcmp(a, "ANNOTATION_CREATED") == 0 || strcmp(a, "ANNOTATION_UPDATED") == 0) res = on_annotation(r, ls, body);
    else if (strcmp(a, "START_TRAINING") == 0) res = on_start_training(r, ls, body);
    else res = reply_status_text(r, 200, "Unknown event", NULL, NULL);
    cJSON_Delete(body);
    return res;
}
