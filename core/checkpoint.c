/* Training checkpoints (see checkpoint.h). State numbers are JSON with exact round-trips
 * (cJSON prints doubles with 17 significant digits when needed; 64-bit RNG words as hex). */
#include "checkpoint.h"

#include "marsseg_curves.h"
#include "marsseg_npz.h"
#include "unet.h"
#include "util.h"

#include <cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void add_rng(cJSON *o, const char *name, const ms_rng *r) {
    char buf[80];
    snprintf(buf, sizeof buf, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, r->s[0], r->s[1], r->s[2], r->s[3]);
    cJSON_AddStringToObject(o, name, buf);
}

static char *state_json(const ms_checkpoint_state *s, const ms_epoch_stats *curves, int ncurves) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "epoch", s->epoch);
    cJSON_AddNumberToObject(o, "batch_in_epoch", s->batch_in_epoch);
    cJSON_AddNumberToObject(o, "step", (double)s->step);
    cJSON_AddNumberToObject(o, "lr", s->lr);
    cJSON_AddItemToObject(o, "best_miou", ms_json_number(s->best_miou));
    cJSON_AddItemToObject(o, "plateau_best", ms_json_number(s->plateau_best));
    cJSON_AddNumberToObject(o, "best_epoch", s->best_epoch);
    cJSON_AddNumberToObject(o, "bad_epochs", s->bad_epochs);
    cJSON_AddNumberToObject(o, "plateau_wait", s->plateau_wait);
    add_rng(o, "order_rng", &s->order_rng);
    add_rng(o, "aug_rng", &s->aug_rng);
    cJSON_AddItemToObject(o, "loss_sum", ms_json_number(s->loss_sum));
    cJSON_AddNumberToObject(o, "seconds_in_epoch", s->seconds_in_epoch);
    cJSON *cm = cJSON_AddArrayToObject(o, "train_cm");
    for (int i = 0; i < MS_NUM_CLASSES; i++)
        for (int j = 0; j < MS_NUM_CLASSES; j++) cJSON_AddItemToArray(cm, cJSON_CreateNumber((double)s->train_cm.cm[i][j]));
    cJSON *cv = cJSON_AddArrayToObject(o, "curves");
    for (int i = 0; i < ncurves; i++) {
        cJSON *p = ms_epoch_stats_to_cjson(&curves[i]);
        if (!p || !cJSON_AddItemToArray(cv, p)) { /* a checkpoint without all its curves is no checkpoint */
            cJSON_Delete(p);
            cJSON_Delete(o);
            return NULL;
        }
    }
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return txt;
}

static ms_status add_text(ms_npz_writer *w, const char *key, const char *txt) {
    int64_t n = (int64_t)strlen(txt);
    return ms_npz_writer_add(w, key, MS_DT_U1, 1, &n, txt);
}

/* A second set of weights of the model's layout (the best epoch's, the moving average) as
 * "<prefix>.params" and "<prefix>.bufs"; nothing when m is NULL. */
static ms_status add_copy(ms_npz_writer *w, const char *prefix, const ms_model *m) {
    if (!m) return MS_OK;
    char key[32];
    int64_t np = (int64_t)m->nparams, nb = (int64_t)m->nbufs;
    snprintf(key, sizeof key, "%s.params", prefix);
    ms_status st = ms_npz_writer_add(w, key, MS_DT_F4, 1, &np, m->params);
    snprintf(key, sizeof key, "%s.bufs", prefix);
    return st ? st : ms_npz_writer_add(w, key, MS_DT_F4, 1, &nb, m->bufs);
}

ms_status ms_checkpoint_save(const char *path, const ms_train_config *cfg, const ms_checkpoint_state *s,
                             const ms_model *model, const ms_model *best, const ms_model *ema, const float *m1,
                             const float *v, const ms_epoch_stats *curves, int ncurves) {
    ms_npz_writer *w = NULL;
    char *cj = ms_train_config_to_json(cfg), *sj = state_json(s, curves, ncurves);
    ms_status st = MS_OK;
    if (!cj || !sj) {
        st = ms_fail(MS_ERR_NOMEM, "%s: checkpoint json", path);
        goto done;
    }
    if ((st = ms_npz_writer_open(&w, path))) goto done;
    int64_t np = (int64_t)model->nparams;
    st = ms_model_write_npz(w, model, path, NULL);
    if (!st) st = add_text(w, "train_config.json", cj);
    if (!st) st = add_text(w, "state.json", sj);
    if (!st) st = ms_npz_writer_add(w, "adam.m", MS_DT_F4, 1, &np, m1);
    if (!st) st = ms_npz_writer_add(w, "adam.v", MS_DT_F4, 1, &np, v);
    if (!st) st = add_copy(w, "best", best);
    if (!st) st = add_copy(w, "ema", ema);
    if (st) {
        ms_npz_writer_abort(w);
    } else {
        st = ms_npz_writer_commit(w);
    }
done:
    free(cj);
    free(sj);
    return st;
}

static char *read_text(ms_npz *z, const char *path, const char *key, ms_status *st) {
    ms_npy_info info;
    if ((*st = ms_npz_info(z, key, &info))) return NULL;
    if (info.dtype != MS_DT_U1 || info.ndim != 1 || info.count > (16 << 20)) {
        *st = ms_fail(MS_ERR_FORMAT, "%s: %s must be a uint8 vector", path, key);
        return NULL;
    }
    char *txt = calloc((size_t)info.count + 1, 1);
    if (!txt) {
        *st = ms_fail(MS_ERR_NOMEM, "%s: %s", path, key);
        return NULL;
    }
    if ((*st = ms_npz_read_u8(z, key, (uint8_t *)txt, (size_t)info.count))) {
        free(txt);
        return NULL;
    }
    return txt;
}

static void jrng(const cJSON *o, const char *k, ms_rng *r, int *ok) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v) || strlen(v->valuestring) != 64) {
        *ok = 0;
        return;
    }
    for (int i = 0; i < 4; i++) {
        char part[17];
        memcpy(part, v->valuestring + 16 * i, 16);
        part[16] = 0;
        char *end;
        r->s[i] = strtoull(part, &end, 16);
        if (*end) *ok = 0;
    }
}

/* The "curves" array of a state.json object; MS_ERR_FORMAT when malformed. */
static ms_status curves_read(const cJSON *so, const char *path, ms_epoch_stats **out, int *ncurves) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(so, "curves");
    const int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    if (n < 0 || n > 100000) return ms_fail(MS_ERR_FORMAT, "%s: state.json is malformed", path);
    ms_epoch_stats *cv = n > 0 ? calloc((size_t)n, sizeof *cv) : NULL;
    if (n > 0 && !cv) return ms_fail(MS_ERR_NOMEM, "%s: curves", path);
    int ok = 1;
    for (int i = 0; ok && i < n; i++) ok = ms_epoch_stats_from_cjson(cJSON_GetArrayItem(arr, i), &cv[i]);
    if (!ok) {
        free(cv);
        return ms_fail(MS_ERR_FORMAT, "%s: state.json is malformed", path);
    }
    *out = cv;
    *ncurves = n;
    return MS_OK;
}

ms_status ms_run_curves(const char *dir, ms_epoch_stats **out, int *n) {
    char path[1100];
    *out = NULL;
    *n = 0;
    if (snprintf(path, sizeof path, "%s/checkpoint.npz", dir) >= (int)sizeof path)
        return ms_fail(MS_ERR_ARG, "%s: path too long", dir);
    ms_npz *z = NULL;
    ms_status st = ms_npz_open(&z, path);
    if (st) return st;
    char *sj = read_text(z, path, "state.json", &st);
    ms_npz_close(z);
    if (!sj) return st;
    cJSON *so = cJSON_Parse(sj);
    free(sj);
    st = cJSON_IsObject(so) ? curves_read(so, path, out, n) : ms_fail(MS_ERR_FORMAT, "%s: state.json is malformed", path);
    cJSON_Delete(so);
    return st;
}

static ms_status read_floats(ms_npz *z, const char *key, size_t n, float **out) {
    *out = malloc(sizeof(float) * (n ? n : 1));
    if (!*out) return ms_fail(MS_ERR_NOMEM, "checkpoint: %s", key);
    return ms_npz_read_f32(z, key, *out, n);
}

/* add_copy's entries as a clone of m holding them; *out stays NULL when the checkpoint has none */
static ms_status read_copy(ms_npz *z, const char *path, const char *prefix, const ms_model *m, ms_model **out) {
    char kp[32], kb[32];
    snprintf(kp, sizeof kp, "%s.params", prefix);
    snprintf(kb, sizeof kb, "%s.bufs", prefix);
    if (!ms_npz_has(z, kp)) return MS_OK;
    ms_status st = ms_model_clone(out, m);
    if (!st) st = ms_npz_read_f32(z, kp, (*out)->params, m->nparams);
    if (!st) st = ms_npz_read_f32(z, kb, (*out)->bufs, m->nbufs);
    if (st) {
        ms_fail(st, "%s: %s: %s", path, prefix, ms_last_error());
        ms_model_free(*out);
        *out = NULL;
    }
    return st;
}

ms_status ms_checkpoint_load(const char *path, ms_checkpoint *ck) {
    ms_npz *z = NULL;
    char *cj = NULL, *sj = NULL;
    cJSON *so = NULL;
    ms_checkpoint_state *s = &ck->state;
    memset(ck, 0, sizeof *ck);
    ms_status st = ms_npz_open(&z, path);
    if (st) return st;
    if ((st = ms_model_read_npz(z, path, &ck->model))) goto done;
    if (!(cj = read_text(z, path, "train_config.json", &st))) goto done;
    if (!(sj = read_text(z, path, "state.json", &st))) goto done;
    ms_train_config_default(&ck->cfg);
    if ((st = ms_train_config_from_json(&ck->cfg, cj, strlen(cj)))) {
        ms_fail(st, "%s: train_config.json: %s", path, ms_last_error());
        goto done;
    }
    so = cJSON_Parse(sj);
    int ok = cJSON_IsObject(so);
    if (ok) {
        s->epoch = (int)ms_json_get_number(so, "epoch", &ok);
        s->batch_in_epoch = (int)ms_json_get_number(so, "batch_in_epoch", &ok);
        s->step = (int64_t)ms_json_get_number(so, "step", &ok);
        s->lr = (float)ms_json_get_number(so, "lr", &ok);
        s->best_miou = ms_json_get_number(so, "best_miou", &ok);
        s->plateau_best = ms_json_get_number(so, "plateau_best", &ok);
        s->best_epoch = (int)ms_json_get_number(so, "best_epoch", &ok);
        s->bad_epochs = (int)ms_json_get_number(so, "bad_epochs", &ok);
        s->plateau_wait = (int)ms_json_get_number(so, "plateau_wait", &ok);
        s->loss_sum = ms_json_get_number(so, "loss_sum", &ok);
        s->seconds_in_epoch = ms_json_get_number(so, "seconds_in_epoch", &ok);
        jrng(so, "order_rng", &s->order_rng, &ok);
        jrng(so, "aug_rng", &s->aug_rng, &ok);
        const cJSON *cm = cJSON_GetObjectItemCaseSensitive(so, "train_cm");
        ok = ok && cJSON_IsArray(cm) && cJSON_GetArraySize(cm) == MS_NUM_CLASSES * MS_NUM_CLASSES;
        for (int i = 0; ok && i < MS_NUM_CLASSES * MS_NUM_CLASSES; i++) {
            const cJSON *e = cJSON_GetArrayItem(cm, i);
            ok = cJSON_IsNumber(e);
            if (ok) s->train_cm.cm[i / MS_NUM_CLASSES][i % MS_NUM_CLASSES] = (int64_t)e->valuedouble;
        }
        if (ok && (st = curves_read(so, path, &ck->curves, &ck->ncurves)) != MS_OK) goto done;
    }
    if (!ok || s->epoch < 0 || s->batch_in_epoch < 0 || s->step < 0) {
        st = ms_fail(MS_ERR_FORMAT, "%s: state.json is malformed", path);
        goto done;
    }
    const ms_model *m = ck->model;
    if ((st = read_floats(z, "adam.m", m->nparams, &ck->m1))) goto done;
    if ((st = read_floats(z, "adam.v", m->nparams, &ck->v))) goto done;
    if ((st = read_copy(z, path, "best", m, &ck->best))) goto done;
    if ((st = read_copy(z, path, "ema", m, &ck->ema))) goto done;
done:
    ms_npz_close(z);
    free(cj);
    free(sj);
    cJSON_Delete(so);
    if (st) ms_checkpoint_free(ck);
    return st;
}

void ms_checkpoint_free(ms_checkpoint *ck) {
    ms_model_free(ck->model);
    ms_model_free(ck->best);
    ms_model_free(ck->ema);
    free(ck->m1);
    free(ck->v);
    free(ck->curves);
    memset(ck, 0, sizeof *ck);
}
