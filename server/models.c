/* The model registry: every model the service knows (the default one and those of finished
 * jobs), and the active one that /segment uses.
 *
 * The active model is an immutable snapshot with a reference count. The registry holds one
 * reference; each request takes another for as long as it runs. Switching swaps the pointer
 * under the mutex and drops the registry's reference, so the old model is freed by whichever
 * request finishes last with it, never under a running inference. Loading a model file takes
 * long (tens of MB), so it happens outside the mutex: only the swap is inside. Activations are
 * serialized by a second mutex so that two switches cannot interleave their load and persist
 * steps (the last one to swap is also the last one written to disk). */
#include "handlers.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_MODELS 4096

struct model_entry {
    char id[64];
    char path[PATH_MAX];
    char source[16]; /* "default" or "job" */
    char job_id[32];
    char *meta_json; /* from the weights file; "{}" if none */
    ms_model_config cfg;
    size_t params;
    double registered;
};

struct models {
    struct server *srv;
    pthread_mutex_t mu;        /* entries and the active pointer */
    pthread_mutex_t switch_mu; /* one activation at a time */
    struct model_entry *v;
    int n, cap;
    struct model_snap *active;
    /* the last model loaded by id for a request that named a model other than the active one
     * (model_acquire_id: the Open Inference Protocol addresses any model by name); one is kept
     * so that a client working with one such model loads it once */
    struct model_snap *named;
    char state_path[PATH_MAX]; /* <data-dir>/active_model.json */
    unsigned long long switches;
};

struct model_snap *model_acquire(struct models *ms) {
    pthread_mutex_lock(&ms->mu);
    struct model_snap *s = ms->active;
    if (s) atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&ms->mu);
    return s;
}

void model_release(struct model_snap *s) {
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        ms_model_free(s->model);
        free(s);
    }
}

void models_active_id(struct models *ms, char *buf, size_t cap) {
    pthread_mutex_lock(&ms->mu);
    snprintf(buf, cap, "%s", ms->active ? ms->active->id : "");
    pthread_mutex_unlock(&ms->mu);
}

static struct model_entry *find_entry(struct models *ms, const char *id) {
    for (int i = 0; i < ms->n; i++)
        if (strcmp(ms->v[i].id, id) == 0) return &ms->v[i];
    return NULL;
}

int models_known(struct models *ms, const char *id, ms_model_config *cfg) {
    pthread_mutex_lock(&ms->mu);
    const struct model_entry *e = find_entry(ms, id);
    if (e && cfg) *cfg = e->cfg;
    pthread_mutex_unlock(&ms->mu);
    return e != NULL;
}

ms_status model_acquire_id(struct models *ms, const char *id, struct model_snap **out) {
    char path[PATH_MAX];
    *out = NULL;
    pthread_mutex_lock(&ms->mu);
    struct model_snap *s = ms->active && strcmp(ms->active->id, id) == 0 ? ms->active
                           : ms->named && strcmp(ms->named->id, id) == 0 ? ms->named
                                                                           : NULL;
    if (s) atomic_fetch_add(&s->refs, 1);
    struct model_entry *e = s ? NULL : find_entry(ms, id);
    if (e) snprintf(path, sizeof path, "%s", e->path);
    pthread_mutex_unlock(&ms->mu);
    if (s) {
        *out = s;
        return MS_OK;
    }
    if (!e) return ms_fail(MS_ERR_NOTFOUND, "no model with id '%s'", id);
    ms_model *m = NULL; /* loaded outside the lock, as models_activate does */
    ms_status st = ms_model_load(&m, path);
    if (st) return st;
    if (!(s = calloc(1, sizeof *s))) {
        ms_model_free(m);
        return ms_fail(MS_ERR_NOMEM, "model %s: out of memory", id);
    }
    s->model = m;
    snprintf(s->id, sizeof s->id, "%s", id);
    atomic_init(&s->refs, 2); /* the registry's and the caller's */
    pthread_mutex_lock(&ms->mu);
    struct model_snap *old = ms->named;
    ms->named = s;
    pthread_mutex_unlock(&ms->mu);
    model_release(old);
    *out = s;
    return MS_OK;
}

/* Swap in a loaded model; takes ownership of m. */
static ms_status swap_in(struct models *ms, const char *id, ms_model *m, int persist) {
    infer_warm(ms->srv, m);
    struct model_snap *s = calloc(1, sizeof *s);
    if (!s) {
        ms_model_free(m);
        return ms_fail(MS_ERR_NOMEM, "model %s: out of memory", id);
    }
    s->model = m;
    snprintf(s->id, sizeof s->id, "%s", id);
    atomic_init(&s->refs, 1);
    pthread_mutex_lock(&ms->mu);
    struct model_snap *old = ms->active;
    ms->active = s;
    ms->switches++;
    pthread_mutex_unlock(&ms->mu);
    model_release(old);
    log_msg("model %s is now active", id);
    if (persist) {
        cJSON *j = cJSON_CreateObject();
        ms_status st = j && jset_str(j, "id", id) ? write_json_atomic(ms->state_path, j) : MS_ERR_NOMEM;
        cJSON_Delete(j);
        if (st) log_msg("cannot save the active model choice to %s: %s", ms->state_path, ms_last_error());
    }
    return MS_OK;
}

ms_status models_register(struct models *ms, const char *id, const char *path, const char *source,
                          const char *job_id, int activate) {
    ms_model *m = NULL;
    ms_status st = ms_model_load(&m, path);
    if (st) return st;
    char *meta = strdup(ms_model_meta(m));
    if (!meta) {
        ms_model_free(m);
        return ms_fail(MS_ERR_NOMEM, "model %s: out of memory", id);
    }
    pthread_mutex_lock(&ms->mu);
    struct model_entry *e = find_entry(ms, id);
    if (!e) {
        if (ms->n == ms->cap) {
            int ncap = ms->cap ? ms->cap * 2 : 16;
            struct model_entry *nv = ms->n < MAX_MODELS ? realloc(ms->v, (size_t)ncap * sizeof *nv) : NULL;
            if (!nv) {
                pthread_mutex_unlock(&ms->mu);
                free(meta);
                ms_model_free(m);
                return ms_fail(MS_ERR_NOMEM, "model %s: registry full or out of memory", id);
            }
            ms->v = nv;
            ms->cap = ncap;
        }
        e = &ms->v[ms->n++];
        memset(e, 0, sizeof *e);
    }
    free(e->meta_json);
    snprintf(e->id, sizeof e->id, "%s", id);
    snprintf(e->path, sizeof e->path, "%s", path);
    snprintf(e->source, sizeof e->source, "%s", source);
    snprintf(e->job_id, sizeof e->job_id, "%s", job_id ? job_id : "");
    e->meta_json = meta;
    e->cfg = *ms_model_get_config(m);
    e->params = ms_model_num_params(m);
    e->registered = now_wall();
    struct model_snap *stale = NULL;
    if (ms->named && strcmp(ms->named->id, id) == 0) { /* a new file under that id */
        stale = ms->named;
        ms->named = NULL;
    }
    pthread_mutex_unlock(&ms->mu);
    model_release(stale);
    if (!activate) {
        ms_model_free(m);
        return MS_OK;
    }
    pthread_mutex_lock(&ms->switch_mu);
    st = swap_in(ms, id, m, 1);
    pthread_mutex_unlock(&ms->switch_mu);
    return st;
}

ms_status models_activate(struct models *ms, const char *id, int persist) {
    char path[PATH_MAX];
    pthread_mutex_lock(&ms->switch_mu);
    pthread_mutex_lock(&ms->mu);
    struct model_entry *e = find_entry(ms, id);
    if (e) snprintf(path, sizeof path, "%s", e->path);
    pthread_mutex_unlock(&ms->mu);
    ms_status st;
    if (!e) {
        st = ms_fail(MS_ERR_NOTFOUND, "no model with id '%s'", id);
    } else {
        ms_model *m = NULL;
        st = ms_model_load(&m, path);
        if (!st) st = swap_in(ms, id, m, persist);
    }
    pthread_mutex_unlock(&ms->switch_mu);
    return st;
}

void models_saved_id(struct models *ms, char *buf, size_t cap) {
    cJSON *j = read_json_file(ms->state_path, 4096);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    snprintf(buf, cap, "%s", cJSON_IsString(id) && is_safe_id(id->valuestring, 63) ? id->valuestring : "");
    cJSON_Delete(j);
}

ms_status models_follow_saved(struct models *ms) {
    char want[64], cur[64];
    ms_status st = MS_OK;
    pthread_mutex_lock(&ms->switch_mu);
    models_saved_id(ms, want, sizeof want);
    models_active_id(ms, cur, sizeof cur);
    if (want[0] && strcmp(want, cur) != 0) {
        char path[PATH_MAX];
        pthread_mutex_lock(&ms->mu);
        struct model_entry *e = find_entry(ms, want);
        if (e) snprintf(path, sizeof path, "%s", e->path);
        pthread_mutex_unlock(&ms->mu);
        ms_model *m = NULL;
        if (!e) st = ms_fail(MS_ERR_NOTFOUND, "no model with id '%s'", want);
        else if (!(st = ms_model_load(&m, path))) st = swap_in(ms, want, m, 0);
    }
    pthread_mutex_unlock(&ms->switch_mu);
    return st;
}

void models_restore_active(struct models *ms) {
    cJSON *j = read_json_file(ms->state_path, 4096);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    if (cJSON_IsString(id) && is_safe_id(id->valuestring, 63)) {
        char cur[64];
        models_active_id(ms, cur, sizeof cur);
        if (strcmp(cur, id->valuestring) != 0) {
            ms_status st = models_activate(ms, id->valuestring, 0);
            if (st) log_msg("cannot restore active model %s: %s", id->valuestring, ms_last_error());
        }
    }
    cJSON_Delete(j);
}

int models_create(struct server *srv, struct models **out) {
    struct models *ms = calloc(1, sizeof *ms);
    if (!ms) return -1;
    ms->srv = srv;
    pthread_mutex_init(&ms->mu, NULL);
    pthread_mutex_init(&ms->switch_mu, NULL);
    char tmp[PATH_MAX];
    if (!fmt_path(ms->state_path, sizeof ms->state_path, "%s/active_model.json", srv->cfg.data_dir) ||
        !fmt_path(tmp, sizeof tmp, "%s.tmp", ms->state_path)) {
        models_destroy(ms);
        return -1;
    }
    /* the temp file of a write that a crash interrupted (only this name: the data directory
     * may be shared with other files; an inference replica never writes there) */
    if (srv->role != ROLE_INFERENCE && unlink(tmp) == 0) log_msg("removed %s, left by an interrupted write", tmp);
    const char *mp = srv->cfg.model_path;
    struct stat sb;
    if (mp[0] && stat(mp, &sb) == 0) {
        ms_status st = models_register(ms, "default", mp, "default", NULL, 0);
        if (st) log_msg("default model %s not loaded: %s", mp, ms_last_error());
        else if ((st = models_activate(ms, "default", 0))) log_msg("default model %s: %s", mp, ms_last_error());
    } else if (mp[0]) {
        log_msg("no default model at %s: /segment answers 503 until a model is trained or activated", mp);
    }
    *out = ms;
    return 0;
}

void models_destroy(struct models *ms) {
    if (!ms) return;
    model_release(ms->active);
    model_release(ms->named);
    for (int i = 0; i < ms->n; i++) free(ms->v[i].meta_json);
    free(ms->v);
    pthread_mutex_destroy(&ms->mu);
    pthread_mutex_destroy(&ms->switch_mu);
    free(ms);
}

void models_metrics(struct models *ms, char **buf, size_t *len, size_t *cap) {
    pthread_mutex_lock(&ms->mu);
    buf_printf(buf, len, cap,
               "# HELP marsseg_models Models known to the service.\n"
               "# TYPE marsseg_models gauge\n"
               "marsseg_models %d\n"
               "# HELP marsseg_model_switches_total Times the active model changed.\n"
               "# TYPE marsseg_model_switches_total counter\n"
               "marsseg_model_switches_total %llu\n"
               "# HELP marsseg_model_info The active model (value 1).\n"
               "# TYPE marsseg_model_info gauge\n",
               ms->n, ms->switches);
    if (ms->active) {
        const ms_model_config *c = ms_model_get_config(ms->active->model);
        buf_printf(buf, len, cap, "marsseg_model_info{id=\"%s\",depth=\"%d\",base=\"%d\",params=\"%zu\"} 1\n",
                   ms->active->id, c->depth, c->base, ms_model_num_params(ms->active->model));
    }
    pthread_mutex_unlock(&ms->mu);
}

/* ------------------------------------------------------------------ handlers */

/* The headline numbers of a model's meta (written by the trainer), for listings. */
static cJSON *metrics_of(const cJSON *meta) {
    static const char *const keys[] = {"val_miou", "val_iou", "pixel_acc", "val_loss", "epoch"};
    cJSON *m = cJSON_CreateObject();
    for (size_t i = 0; m && i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, keys[i]);
        if (v && !jset_item(m, keys[i], cJSON_Duplicate(v, 1))) {
            cJSON_Delete(m);
            return NULL;
        }
    }
    return m;
}

static cJSON *entry_json(const struct model_entry *e, int active) {
    cJSON *j = cJSON_CreateObject(), *cfg = cJSON_CreateObject();
    cJSON *meta = cJSON_Parse(e->meta_json);
    /* the training config in the meta names server paths: not for clients */
    cJSON *tcfg = cJSON_GetObjectItemCaseSensitive(meta, "config");
    if (cJSON_IsObject(tcfg)) {
        cJSON_DeleteItemFromObjectCaseSensitive(tcfg, "data");
        cJSON_DeleteItemFromObjectCaseSensitive(tcfg, "key");
    }
    int ok = j && cfg;
    if (ok) {
        ok &= jset_str(j, "id", e->id);
        ok &= jset_str(j, "source", e->source);
        if (e->job_id[0]) ok &= jset_str(j, "job", e->job_id);
        ok &= jset_bool(j, "active", active);
        ok &= jset_num(j, "params", (double)e->params);
        ok &= jset_num(j, "registered", round_to(e->registered, 3));
        ok &= jset_num(cfg, "depth", e->cfg.depth);
        ok &= jset_num(cfg, "base", e->cfg.base);
        ok &= jset_num(cfg, "classes", e->cfg.classes);
        ok &= jset_num(cfg, "dropout", tidy_float(e->cfg.dropout));
        ok &= jset_num(cfg, "frame", e->cfg.frame > 0 ? e->cfg.frame : MS_DEFAULT_FRAME);
        ok &= jset_bool(cfg, "attention", e->cfg.attention != 0);
        ok &= jset_item(j, "config", cfg);
        cfg = NULL;
        ok &= jset_item(j, "metrics", metrics_of(meta));
        ok &= jset_item(j, "meta", meta ? meta : cJSON_CreateObject());
        meta = NULL;
    }
    cJSON_Delete(cfg);
    cJSON_Delete(meta);
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

enum MHD_Result h_models_list(struct req *r) {
    struct models *ms = req_server(r)->models;
    cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int ok = j && arr;
    pthread_mutex_lock(&ms->mu);
    const char *active = ms->active ? ms->active->id : NULL;
    for (int i = 0; i < ms->n && ok; i++) {
        cJSON *e = entry_json(&ms->v[i], active && strcmp(active, ms->v[i].id) == 0);
        ok = e && cJSON_AddItemToArray(arr, e);
        if (!ok) cJSON_Delete(e);
    }
    if (ok) ok = active ? jset_str(j, "active", active) : cJSON_AddNullToObject(j, "active") != NULL;
    pthread_mutex_unlock(&ms->mu);
    return reply_json_list(r, j, "models", arr, ok);
}

static enum MHD_Result reply_active(struct req *r, unsigned status) {
    struct models *ms = req_server(r)->models;
    cJSON *j = NULL;
    int none = 0;
    pthread_mutex_lock(&ms->mu);
    struct model_entry *e = ms->active ? find_entry(ms, ms->active->id) : NULL;
    if (e) j = entry_json(e, 1);
    else none = 1;
    pthread_mutex_unlock(&ms->mu);
    if (none) {
        j = cJSON_CreateObject();
        if (j && !cJSON_AddNullToObject(j, "id")) {
            cJSON_Delete(j);
            j = NULL;
        }
    }
    if (!j) return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    return reply_json(r, status, j, NULL);
}

enum MHD_Result h_models_active_get(struct req *r) { return reply_active(r, 200); }

enum MHD_Result h_models_active_put(struct req *r) {
    enum MHD_Result res;
    cJSON *body = req_json_object(r, &res);
    if (!body) return res;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(body, "id");
    if (!cJSON_IsString(id)) {
        cJSON_Delete(body);
        return reply_error(r, 400, "invalid_argument", "body must be {\"id\": \"<model id>\"}");
    }
    char want[64];
    if (!is_safe_id(id->valuestring, sizeof want - 1)) {
        cJSON_Delete(body);
        return reply_error(r, 404, "not_found", "no such model");
    }
    snprintf(want, sizeof want, "%s", id->valuestring);
    cJSON_Delete(body);
    ms_status st = models_activate(req_server(r)->models, want, 1);
    if (st) return reply_status(r, st, "activating the model");
    return reply_active(r, 200);
}
