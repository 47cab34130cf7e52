/* The end of a training run, local (job_train.c) or through mpirun (job_mpi.c): its model is
 * registered, and served or not by the job's "activate" rule (jobreq.h's table):
 *
 *  - "if_better" (the default): the new model and the serving one are evaluated on the run's own
 *    validation split (the tiles the run held out, ms_validation_set of its config), and the new
 *    one serves only if its mIoU is higher. A 6-epoch run on the bundled sample (mIoU 0.08) once
 *    replaced the 0.60 default model unannounced; now it says "default keeps serving", with both
 *    figures, in the job log and in GET /jobs/{id}'s "activation". When the serving model cannot
 *    be evaluated there (a model trained for other labels) it keeps serving: an unproven model
 *    never replaces a working one by default. With no model serving, the new one serves.
 *  - "always": it serves, whatever its score; false: it is only registered.
 * Also the job's log ring and the scrubbing of server paths that both training kinds share. */
#include "jobs.h"

#include "marsseg_predict.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void job_scrub(const struct job *jb, const char *data_path, char *dst, size_t cap, const char *src) {
    char tmp[2048];
    str_replace(tmp, sizeof tmp, src, data_path && data_path[0] ? data_path : NULL, jb->dataset);
    str_replace(dst, cap, tmp, jb->dir, jb->id);
}

void job_log(struct jobs *js, struct job *jb, const char *line) {
    log_msg("job %s: %s", jb->id, line);
    char *copy = strdup(line);
    if (!copy) return;
    pthread_mutex_lock(&js->mu);
    if (jb->log_n == LOG_LINES) {
        free(jb->log[jb->log_head]);
        jb->log[jb->log_head] = copy;
        jb->log_head = (jb->log_head + 1) % LOG_LINES;
    } else {
        jb->log[(jb->log_head + jb->log_n++) % LOG_LINES] = copy;
    }
    pthread_mutex_unlock(&js->mu);
}

/* mIoU of m on tiles idx of ds (plain inference, as the run's validation measured it). */
static ms_status split_miou(const ms_model *m, const ms_dataset *ds, const int *idx, int n, double *miou) {
    ms_confusion cm;
    memset(&cm, 0, sizeof cm);
    ms_status st = ms_check_labels_fit(m, ds, idx, n);
    if (!st) st = ms_evaluate(m, ds, idx, n, 0, MS_PREDICT_MAX_BATCH, &cm);
    if (!st) {
        ms_scores s;
        ms_confusion_scores(&cm, &s);
        *miou = s.miou;
    }
    return st;
}

struct verdict {
    int activate, tiles;
    double miou, serving_miou; /* NaN: not measured */
    char serving[64];
    char message[768];
};

/* The if_better comparison on the run's validation split. */
static void compare(struct jobs *js, struct job *jb, const char *data_path, struct verdict *v) {
    struct models *ms = js->srv->models;
    struct model_snap *old = model_acquire(ms), *fresh = NULL;
    if (!old) {
        v->activate = 1;
        snprintf(v->message, sizeof v->message, "no model was serving: %s serves now", jb->id);
        return;
    }
    snprintf(v->serving, sizeof v->serving, "%s", old->id);
    ms_train_config cfg;
    ms_dataset ds = {0};
    int *idx = NULL, n = 0;
    char err[256] = "";
    ms_status st = job_train_config(js, jb->dataset, jb->config, &cfg);
    if (!st) {
        ms_set_threads(cfg.threads);
        st = ms_validation_set(&cfg, &ds, &idx, &n);
    }
    if (!st && n == 0) st = ms_fail(MS_ERR_ARG, "the run held out no validation tiles (val_frac 0)");
    if (!st) st = model_acquire_id(ms, jb->id, &fresh);
    if (!st) st = split_miou(fresh->model, &ds, idx, n, &v->miou);
    if (st) {
        job_scrub(jb, data_path, err, sizeof err, ms_last_error());
        snprintf(v->message, sizeof v->message, "the new model could not be compared (%s): %s keeps serving", err, v->serving);
    } else if ((st = split_miou(old->model, &ds, idx, n, &v->serving_miou))) {
        job_scrub(jb, data_path, err, sizeof err, ms_last_error());
        snprintf(v->message, sizeof v->message,
                 "new model: validation mIoU %.4f on %d tiles; the serving model %s cannot be evaluated on them (%s): it keeps "
                 "serving",
                 v->miou, n, v->serving, err);
    } else {
        v->tiles = n;
        v->activate = v->miou > v->serving_miou;
        snprintf(v->message, sizeof v->message, "new model: validation mIoU %.4f, serving model %s: %.4f, on this run's %d validation tiles: %s",
                 v->miou, v->serving, v->serving_miou, n,
                 v->activate ? "the new model is better and serves now" : "not better, so the serving model stays");
        if (!v->activate) snprintf(v->message + strlen(v->message), sizeof v->message - strlen(v->message), " (%s)", v->serving);
    }
    model_release(fresh);
    model_release(old);
    ms_dataset_free(&ds);
    free(idx);
}

static cJSON *verdict_json(enum activate_rule rule, const struct verdict *v) {
    cJSON *j = cJSON_CreateObject();
    int ok = j && jset_item(j, "rule", activate_json(rule)) && jset_bool(j, "activated", v->activate) &&
             jset_item(j, "miou", ms_json_number(v->miou)) &&
             (v->serving[0] ? jset_str(j, "serving_model", v->serving) : cJSON_AddNullToObject(j, "serving_model") != NULL) &&
             jset_item(j, "serving_miou", ms_json_number(v->serving_miou)) && jset_num(j, "tiles", v->tiles) &&
             jset_str(j, "message", v->message);
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

void job_train_succeeded(struct jobs *js, struct job *jb, const char *data_path) {
    char path[PATH_MAX], err[400];
    if (!fmt_path(path, sizeof path, "%s/model.npz", jb->dir)) {
        job_finish(js, jb, JS_FAILED, "job directory path too long");
        return;
    }
    const enum activate_rule rule = (enum activate_rule)jb->activate;
    ms_status st = models_register(js->srv->models, jb->id, path, "job", jb->id, rule == ACTIVATE_ALWAYS);
    if (st) {
        job_scrub(jb, data_path, err, sizeof err, ms_last_error());
        job_finish(js, jb, JS_FAILED, "trained, but the model could not be loaded: %s", err);
        return;
    }
    struct verdict v = {.miou = NAN, .serving_miou = NAN};
    if (rule == ACTIVATE_IF_BETTER) {
        compare(js, jb, data_path, &v);
        if (v.activate && (st = models_activate(js->srv->models, jb->id, 1))) {
            v.activate = 0;
            job_scrub(jb, data_path, err, sizeof err, ms_last_error());
            snprintf(v.message, sizeof v.message, "the new model could not be activated: %s", err);
        }
    } else {
        v.activate = rule == ACTIVATE_ALWAYS;
        snprintf(v.message, sizeof v.message, "%s", v.activate ? "serves now, whatever its score (activate: always)"
                                                                : "registered, not served (activate: false)");
    }
    job_log(js, jb, v.message);
    cJSON *outcome = verdict_json(rule, &v);
    pthread_mutex_lock(&js->mu);
    snprintf(jb->model_id, sizeof jb->model_id, "%s", jb->id);
    cJSON_Delete(jb->outcome);
    jb->outcome = outcome;
    pthread_mutex_unlock(&js->mu);
    job_finish(js, jb, JS_SUCCEEDED, NULL);
}
