/* Datasets: the bundled one ("sample") and uploads, kept in <data-dir>/datasets/.
 *
 * An upload is streamed by the HTTP layer to <data-dir>/datasets/.upload-XXXXXX (capped by
 * --max-upload) and fsync'd. Here it is validated by loading it as the trainer would (key
 * training_set, labelled, memory capped by --max-dataset-mem) before it gets an id. Publishing
 * is two steps, each atomic: rename the file to <id>.npz, then write <id>.json atomically. The
 * JSON is what registers a dataset: at start-up an <id>.npz without its <id>.json (a crash
 * between the two steps) and any .upload-* leftover are deleted, so no upload is ever listed
 * half-registered. Jobs name datasets by id only; paths never come from a client. */
#include "handlers.h"

#include "marsseg_io.h"
#include "marsseg_npz.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DATASETS 10000

struct dataset {
    char id[32];
    char name[128];
    char path[PATH_MAX];
    int n, h, w;
    long long bytes;
    double created;
    int builtin;
};

struct datasets {
    struct server *srv;
    pthread_mutex_t mu;
    struct dataset *v;
    int n, cap;
    unsigned next_id;
    char dir[PATH_MAX];
};

static int add_dataset(struct datasets *ds, const struct dataset *d) {
    if (ds->n == ds->cap) {
        if (ds->n >= MAX_DATASETS) return -1;
        int ncap = ds->cap ? ds->cap * 2 : 16;
        struct dataset *nv = realloc(ds->v, (size_t)ncap * sizeof *nv);
        if (!nv) return -1;
        ds->v = nv;
        ds->cap = ncap;
    }
    ds->v[ds->n++] = *d;
    return 0;
}

static struct dataset *find(struct datasets *ds, const char *id) {
    for (int i = 0; i < ds->n; i++)
        if (strcmp(ds->v[i].id, id) == 0) return &ds->v[i];
    return NULL;
}

ms_status datasets_path(struct datasets *ds, const char *id, char *buf, size_t cap) {
    pthread_mutex_lock(&ds->mu);
    struct dataset *d = find(ds, id);
    int ok = d && fmt_path(buf, cap, "%s", d->path);
    pthread_mutex_unlock(&ds->mu);
    return ok ? MS_OK : ms_fail(MS_ERR_NOTFOUND, "no dataset with id '%s'", id);
}

/* Reads the shape of training_set from the npz directory and header only (no data). */
static int probe_npz(const char *path, int *n, int *h, int *w) {
    ms_npz *z = NULL;
    ms_npy_info info;
    int ok = ms_npz_open(&z, path) == MS_OK && ms_npz_info(z, "training_set", &info) == MS_OK &&
             ((info.ndim == 4 && info.shape[1] == 2) || info.ndim == 3) && info.shape[0] <= INT32_MAX &&
             info.shape[info.ndim - 2] <= INT32_MAX && info.shape[info.ndim - 1] <= INT32_MAX;
    if (ok) {
        *n = (int)info.shape[0];
        *h = (int)info.shape[info.ndim - 2];
        *w = (int)info.shape[info.ndim - 1];
    }
    ms_npz_close(z);
    return ok;
}

static cJSON *dataset_json(const struct dataset *d) {
    cJSON *j = cJSON_CreateObject();
    int ok = j && jset_str(j, "id", d->id) && jset_str(j, "name", d->name) && jset_num(j, "samples", d->n) &&
             jset_num(j, "height", d->h) && jset_num(j, "width", d->w) && jset_num(j, "bytes", (double)d->bytes) &&
             jset_num(j, "created", round_to(d->created, 3)) && jset_bool(j, "builtin", d->builtin);
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* Loads <dir>/<id>.json written by a completed upload. */
static int load_meta(struct datasets *ds, const char *id) {
    char jpath[PATH_MAX], npath[PATH_MAX];
    if (!fmt_path(jpath, sizeof jpath, "%s/%s.json", ds->dir, id) || !fmt_path(npath, sizeof npath, "%s/%s.npz", ds->dir, id))
        return -1;
    struct stat sb;
    if (stat(npath, &sb) != 0) {
        log_msg("dataset %s: %s is missing; not listed", id, npath);
        return -1;
    }
    cJSON *j = read_json_file(jpath, 65536);
    if (!j) return -1;
    struct dataset d = {0};
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name"), *n = cJSON_GetObjectItemCaseSensitive(j, "samples"),
                *h = cJSON_GetObjectItemCaseSensitive(j, "height"), *w = cJSON_GetObjectItemCaseSensitive(j, "width"),
                *c = cJSON_GetObjectItemCaseSensitive(j, "created");
    snprintf(d.id, sizeof d.id, "%s", id);
    snprintf(d.name, sizeof d.name, "%s", cJSON_IsString(name) ? name->valuestring : id);
    snprintf(d.path, sizeof d.path, "%s", npath);
    d.n = cJSON_IsNumber(n) ? n->valueint : 0;
    d.h = cJSON_IsNumber(h) ? h->valueint : 0;
    d.w = cJSON_IsNumber(w) ? w->valueint : 0;
    d.created = cJSON_IsNumber(c) ? c->valuedouble : (double)sb.st_mtime;
    d.bytes = (long long)sb.st_size;
    cJSON_Delete(j);
    return add_dataset(ds, &d);
}

int datasets_create(struct server *srv, struct datasets **out) {
    struct datasets *ds = calloc(1, sizeof *ds);
    if (!ds) return -1;
    ds->srv = srv;
    ds->next_id = 1;
    pthread_mutex_init(&ds->mu, NULL);
    if (!fmt_path(ds->dir, sizeof ds->dir, "%s/datasets", srv->cfg.data_dir) || ensure_dir(ds->dir) != 0) {
        log_msg("cannot create %s: %s", ds->dir, strerror(errno));
        datasets_destroy(ds);
        return -1;
    }
    /* the bundled dataset */
    struct stat sb;
    const char *sp = srv->cfg.dataset_path;
    if (sp[0] && stat(sp, &sb) == 0) {
        struct dataset d = {.builtin = 1, .bytes = (long long)sb.st_size, .created = (double)sb.st_mtime};
        snprintf(d.id, sizeof d.id, "sample");
        snprintf(d.name, sizeof d.name, "bundled sample");
        snprintf(d.path, sizeof d.path, "%s", sp);
        if (probe_npz(sp, &d.n, &d.h, &d.w)) add_dataset(ds, &d);
        else log_msg("bundled dataset %s is not usable (%s); not listed", sp, ms_last_error());
    } else if (sp[0]) {
        log_msg("no bundled dataset at %s", sp);
    }
    /* uploads, and the debris of interrupted ones */
    DIR *dir = opendir(ds->dir);
    if (!dir) {
        log_msg("cannot read %s: %s", ds->dir, strerror(errno));
        datasets_destroy(ds);
        return -1;
    }
    struct dirent *de;
    int removed = 0;
    while ((de = readdir(dir))) {
        const char *nm = de->d_name;
        size_t l = strlen(nm);
        char path[PATH_MAX], id[32];
        if (strncmp(nm, ".upload-", 8) == 0 || (l > 4 && strcmp(nm + l - 4, ".tmp") == 0)) {
            if (fmt_path(path, sizeof path, "%s/%s", ds->dir, nm) && unlink(path) == 0) removed++;
            continue;
        }
        if (l > 4 && l - 4 < sizeof id && strcmp(nm + l - 4, ".npz") == 0) {
            memcpy(id, nm, l - 4);
            id[l - 4] = 0;
            char jpath[PATH_MAX];
            struct stat js;
            if (is_safe_id(id, sizeof id - 1) && fmt_path(jpath, sizeof jpath, "%s/%s.json", ds->dir, id) &&
                stat(jpath, &js) != 0 && fmt_path(path, sizeof path, "%s/%s", ds->dir, nm)) {
                log_msg("dataset %s was never registered (interrupted upload); removed", id);
                if (unlink(path) == 0) removed++;
            }
            continue;
        }
        if (l > 5 && l - 5 < sizeof id && strcmp(nm + l - 5, ".json") == 0) {
            memcpy(id, nm, l - 5);
            id[l - 5] = 0;
            if (!is_safe_id(id, sizeof id - 1) || strcmp(id, "sample") == 0) continue;
            if (load_meta(ds, id) == 0 && id[0] == 'd') {
                unsigned num = (unsigned)strtoul(id + 1, NULL, 10);
                if (num >= ds->next_id) ds->next_id = num + 1;
            }
        }
    }
    closedir(dir);
    if (removed && ms_fsync_dir(ds->dir) != 0) log_msg("cannot sync %s: %s", ds->dir, strerror(errno));
    *out = ds;
    return 0;
}

void datasets_destroy(struct datasets *ds) {
    if (!ds) return;
    free(ds->v);
    pthread_mutex_destroy(&ds->mu);
    free(ds);
}

int datasets_file(struct datasets *ds, const char *id, char *buf, size_t cap) {
    return is_safe_id(id, sizeof ((struct dataset *)0)->id - 1) && fmt_path(buf, cap, "%s/%s.npz", ds->dir, id);
}

ms_status datasets_publish(struct datasets *ds, const char *id, const char *name, int n, int h, int w) {
    struct dataset e = {.n = n, .h = h, .w = w, .created = now_wall()};
    char jpath[PATH_MAX];
    struct stat sb;
    if (!datasets_file(ds, id, e.path, sizeof e.path) || !fmt_path(jpath, sizeof jpath, "%s/%s.json", ds->dir, id))
        return ms_fail(MS_ERR_ARG, "dataset id '%s' is not usable", id);
    if (stat(e.path, &sb) != 0) return ms_fail(MS_ERR_IO, "dataset %s: %s", id, strerror(errno));
    e.bytes = (long long)sb.st_size;
    snprintf(e.id, sizeof e.id, "%s", id);
    snprintf(e.name, sizeof e.name, "%s", name);
    pthread_mutex_lock(&ds->mu);
    struct dataset *old = find(ds, id);
    if (old) e.created = old->created;
    pthread_mutex_unlock(&ds->mu);
    cJSON *meta = dataset_json(&e);
    ms_status st = meta ? write_json_atomic(jpath, meta) : ms_fail(MS_ERR_NOMEM, "dataset %s", id);
    cJSON_Delete(meta);
    if (st) return st;
    pthread_mutex_lock(&ds->mu);
    old = find(ds, id);
    int rc = 0;
    if (old) *old = e;
    else rc = add_dataset(ds, &e);
    pthread_mutex_unlock(&ds->mu);
    return rc ? ms_fail(MS_ERR_NOMEM, "dataset registry full or out of memory") : MS_OK;
}

/* ------------------------------------------------------------------ handlers */

enum MHD_Result h_datasets_list(struct req *r) {
    struct datasets *ds = req_server(r)->datasets;
    cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int ok = j && arr;
    pthread_mutex_lock(&ds->mu);
    for (int i = 0; i < ds->n && ok; i++) {
        cJSON *d = dataset_json(&ds->v[i]);
        ok = d && cJSON_AddItemToArray(arr, d);
        if (!ok) cJSON_Delete(d);
    }
    pthread_mutex_unlock(&ds->mu);
    return reply_json_list(r, j, "datasets", arr, ok);
}

enum MHD_Result h_dataset_get(struct req *r) {
    struct datasets *ds = req_server(r)->datasets;
    pthread_mutex_lock(&ds->mu);
    struct dataset *d = find(ds, req_param(r, 0));
    cJSON *j = d ? dataset_json(d) : NULL;
    pthread_mutex_unlock(&ds->mu);
    if (!d) return reply_error(r, 404, "not_found", "no such dataset");
    if (!j) return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    return reply_json(r, 200, j, NULL);
}

enum MHD_Result h_datasets_upload(struct req *r) {
    struct server *srv = req_server(r);
    struct datasets *ds = srv->datasets;
    const char *tmp = req_upload_path(r);
    if (!tmp) return reply_error(r, 500, "internal", "upload file missing");
    struct stat sb;
    if (stat(tmp, &sb) != 0 || sb.st_size == 0) return reply_error(r, 400, "empty", "the upload is empty");

    char name[128] = "";
    const char *qn = req_query(r, "name");
    if (qn) { /* a display name only: printable ASCII, bounded */
        size_t o = 0;
        for (const char *s = qn; *s && o + 1 < sizeof name; s++) name[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '_';
        name[o] = 0;
    }

    ms_dataset d;
    const double t0 = now_mono();
    ms_status st = ms_dataset_load(&d, tmp, "training_set", srv->cfg.max_dataset_mem);
    if (st == MS_OK && !d.mask) {
        ms_dataset_free(&d);
        st = ms_fail(MS_ERR_SHAPE, "%s: training_set has no masks; want (N,2,H,W) image+mask", tmp);
    }
    if (st) {
        char msg[512];
        str_replace(msg, sizeof msg, ms_last_error(), tmp, "upload"); /* no server paths */
        if (st == MS_ERR_NOMEM) return reply_error_retry(r, 503, 10, "nomem", "validating the dataset: %s", msg);
        if (st == MS_ERR_LIMIT) return reply_error(r, 413, "dataset_too_large", "%s", msg);
        if (st == MS_ERR_IO) return reply_error(r, 500, "io", "%s", msg);
        return reply_error(r, 422, "invalid_dataset", "not a usable dataset: %s", msg);
    }
    struct dataset e = {.n = d.n, .h = d.h, .w = d.w, .bytes = (long long)sb.st_size, .created = now_wall()};
    ms_dataset_free(&d);

    pthread_mutex_lock(&ds->mu);
    unsigned num = ds->next_id++;
    pthread_mutex_unlock(&ds->mu);
    snprintf(e.id, sizeof e.id, "d%06u", num);
    snprintf(e.name, sizeof e.name, "%s", name[0] ? name : e.id);
    char jpath[PATH_MAX];
    if (!fmt_path(e.path, sizeof e.path, "%s/%s.npz", ds->dir, e.id) ||
        !fmt_path(jpath, sizeof jpath, "%s/%s.json", ds->dir, e.id))
        return reply_error(r, 500, "internal", "data directory path too long");
    if (rename(tmp, e.path) != 0) return reply_error(r, 500, "io", "cannot store the dataset: %s", strerror(errno));
    req_take_upload(r);
    cJSON *meta = dataset_json(&e);
    st = meta ? write_json_atomic(jpath, meta) : MS_ERR_NOMEM;
    if (st) {
        /* never leave a listed-looking file without its registration */
        unlink(e.path);
        (void)ms_fsync_dir(ds->dir); /* best effort: the registration failed anyway */
        cJSON_Delete(meta);
        return reply_status(r, st, "registering the dataset");
    }
    pthread_mutex_lock(&ds->mu);
    int added = add_dataset(ds, &e);
    pthread_mutex_unlock(&ds->mu);
    if (added != 0) {
        cJSON_Delete(meta);
        return reply_error_retry(r, 503, 5, "nomem", "dataset registry full or out of memory");
    }
    log_msg("dataset %s registered: %d samples of %dx%d, %lld bytes, validated in %.1fs", e.id, e.n, e.h, e.w, e.bytes,
            now_mono() - t0);
    char loc[64];
    snprintf(loc, sizeof loc, "/datasets/%s", e.id);
    return reply_json(r, 201, meta, loc);
}
