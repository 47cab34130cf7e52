/* The JSON views of a job: the summary (GET /jobs), the detail (GET /jobs/{id}, replies of the
 * state-changing routes) and job.json (VIEW_PERSIST: what a restart needs; no progress, no log
 * and no curves, which the run's checkpoint owns). A training job's "activation" is what its
 * activate rule decided; a pass (prediction, evaluation) shows its "request" and "result"
 * instead of a training config. Callers hold js->mu. */
#include "jobs.h"

#include "marsseg_curves.h"

const char *const job_state_names[JS_COUNT] = {"queued", "running", "succeeded", "failed", "cancelled", "interrupted"};

cJSON *progress_json(const ms_progress *p) {
    cJSON *j = cJSON_CreateObject();
    int ok = j && jset_num(j, "epoch", p->epoch) && jset_num(j, "epochs", p->epochs) && jset_num(j, "batch", p->batch) &&
             jset_num(j, "batches", p->batches) && jset_item(j, "loss", ms_json_number(p->loss)) &&
             jset_item(j, "eta_s", ms_json_number(p->eta_s)) && jset_item(j, "images_per_s", ms_json_number(p->images_per_s));
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

int job_epochs(const struct job *jb) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(jb->config, "epochs");
    return cJSON_IsNumber(e) ? e->valueint : 0;
}

int job_last_epoch(const struct job *jb) { return jb->ncurves ? jb->curves[jb->ncurves - 1].epoch : 0; }

/* a time, or null when it has not happened */
static int set_time(cJSON *j, const char *k, double t) {
    return t > 0 ? jset_num(j, k, round_to(t, 3)) : cJSON_AddNullToObject(j, k) != NULL;
}

static int set_str_or_null(cJSON *j, const char *k, const char *s) {
    return s[0] ? jset_str(j, k, s) : cJSON_AddNullToObject(j, k) != NULL;
}

/* A pass's progress: tiles done of all, their rate, the time left. */
static cJSON *pass_progress_json(const ms_progress *p) {
    cJSON *j = cJSON_CreateObject();
    int ok = j && jset_num(j, "done", p->batch) && jset_num(j, "total", p->batches) &&
             jset_item(j, "tiles_per_s", ms_json_number(p->images_per_s)) && jset_item(j, "eta_s", ms_json_number(p->eta_s));
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static int set_dup_or_null(cJSON *j, const char *k, const cJSON *v) {
    return v ? jset_item(j, k, cJSON_Duplicate(v, 1)) : cJSON_AddNullToObject(j, k) != NULL;
}

static int set_log(cJSON *j, const struct job *jb) {
    cJSON *arr = cJSON_CreateArray();
    int ok = arr != NULL;
    for (int i = 0; i < jb->log_n && ok; i++) {
        cJSON *s = cJSON_CreateString(jb->log[(jb->log_head + i) % LOG_LINES]);
        ok = s && cJSON_AddItemToArray(arr, s);
        if (!ok) cJSON_Delete(s);
    }
    if (ok) return jset_item(j, "log", arr);
    cJSON_Delete(arr);
    return 0;
}

/* A prediction's or an evaluation's view: its request, progress and result. */
static cJSON *pass_json(const struct job *jb, enum job_view view) {
    cJSON *j = cJSON_CreateObject();
    int ok = j && jset_str(j, "id", jb->id) && jset_str(j, "kind", jb->kind->name) &&
             jset_str(j, "state", job_state_names[jb->state]) && set_str_or_null(j, "model", jb->model_id) &&
             set_str_or_null(j, "dataset", jb->dataset) && jset_num(j, "created", round_to(jb->created, 3)) &&
             set_time(j, "started", jb->started) && set_time(j, "finished", jb->finished);
    if (ok && view != VIEW_PERSIST) {
        const int live = jb->state == JS_RUNNING && jb->has_progress;
        ok = (live ? jset_item(j, "progress", pass_progress_json(&jb->progress)) : cJSON_AddNullToObject(j, "progress") != NULL) &&
             (live ? jset_item(j, "eta_s", ms_json_number(jb->progress.eta_s)) : cJSON_AddNullToObject(j, "eta_s") != NULL);
    }
    ok = ok && set_str_or_null(j, "error", jb->error) && jset_item(j, "request", cJSON_Duplicate(jb->config, 1)) &&
         set_dup_or_null(j, "result", jb->outcome);
    if (ok && view == VIEW_DETAIL) ok = set_log(j, jb);
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

cJSON *job_json(const struct job *jb, enum job_view view) {
    if (jb->kind->pass) return pass_json(jb, view);
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    double best = 0;
    int best_epoch = ms_curves_best(jb->curves, jb->ncurves, &best);
    int ok = jset_str(j, "id", jb->id) && jset_str(j, "state", job_state_names[jb->state]) &&
             jset_str(j, "dataset", jb->dataset) && jset_item(j, "activate", activate_json((enum activate_rule)jb->activate)) &&
             jset_num(j, "created", round_to(jb->created, 3)) && set_time(j, "started", jb->started) &&
             set_time(j, "finished", jb->finished) && jset_num(j, "epoch", job_last_epoch(jb)) &&
             jset_num(j, "epochs", job_epochs(jb)) &&
             jset_item(j, "best_val_miou", best_epoch ? ms_json_number(best) : cJSON_CreateNull()) &&
             jset_num(j, "best_epoch", best_epoch);
    if (ok && view != VIEW_PERSIST) {
        if (jb->state == JS_RUNNING && jb->has_progress) {
            ok = jset_item(j, "progress", progress_json(&jb->progress)) &&
                 jset_item(j, "eta_s", ms_json_number(jb->progress.eta_s));
        } else {
            ok = cJSON_AddNullToObject(j, "progress") && cJSON_AddNullToObject(j, "eta_s");
        }
    }
    ok = ok && set_str_or_null(j, "error", jb->error) && set_str_or_null(j, "model", jb->model_id) &&
         set_dup_or_null(j, "activation", jb->outcome);
    if (ok && jb->ranks > 0) ok = jset_num(j, "ranks", jb->ranks); /* an MPI job */
    if (ok && view != VIEW_SUMMARY) ok = jset_item(j, "config", cJSON_Duplicate(jb->config, 1));
    if (ok && view == VIEW_PERSIST) ok = jset_bool(j, "resume", jb->resume);
    if (ok && view == VIEW_DETAIL) ok = set_log(j, jb);
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}
