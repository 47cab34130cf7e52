/* Annotations from Label Studio recorded as a training dataset: one per project, id "ls<project>",
 * in the data directory beside uploaded datasets and listed by GET /datasets like them.
 *
 * The npz holds what POST /jobs trains on, "training_set" (N,2,H,W) uint8 (image, mask), plus
 * "annotation_ids" and "task_ids" (N,) int64, so that ANNOTATION_UPDATED replaces the sample of
 * its annotation instead of adding a second one. Each record rewrites the file through the npz
 * writer (temp file, fsync, rename, fsync of the directory) and then registers it
 * (datasets_publish: <id>.json, also atomic), one record at a time: a crash leaves the previous
 * version whole, and a training job that already opened the old file keeps reading it. A
 * rewrite costs O(N): fine for the hundreds of frames a labelling session produces; the memory
 * it needs is capped by --max-dataset-mem like any dataset the service loads. */
#include "labelstudio.h"

#include "marsseg_npz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void ls_dataset_id(long long project, char *buf, size_t cap) { snprintf(buf, cap, "ls%lld", project); }

/* The current contents of the project's npz (none when absent): n samples of h x w. */
struct contents {
    int n, h, w;
    uint8_t *data;   /* (n,2,h,w) */
    int64_t *ann_ids, *task_ids;
};

static void contents_free(struct contents *c) {
    free(c->data);
    free(c->ann_ids);
    free(c->task_ids);
}

static ms_status read_contents(const char *path, const char *id, int h, int w, size_t max_mem, struct contents *c) {
    memset(c, 0, sizeof *c);
    struct stat sb;
    if (stat(path, &sb) != 0) return MS_OK; /* the project's first annotation */
    ms_npz *z = NULL;
    ms_npy_info info, ai;
    ms_status st = ms_npz_open(&z, path);
    if (!st) st = ms_npz_info(z, "training_set", &info);
    if (!st && (info.dtype != MS_DT_U1 || info.ndim != 4 || info.shape[1] != 2 || info.shape[0] >= INT32_MAX))
        st = ms_fail(MS_ERR_FORMAT, "dataset %s is not a (N,2,H,W) uint8 stack", id);
    if (!st && (info.shape[2] != h || info.shape[3] != w))
        st = ms_fail(MS_ERR_SHAPE, "dataset %s holds %lldx%lld images; this one is %dx%d (one size per project)", id,
                     (long long)info.shape[3], (long long)info.shape[2], w, h);
    const size_t plane = (size_t)h * w;
    if (!st && ((size_t)info.shape[0] + 1) * 2 * plane > max_mem)
        st = ms_fail(MS_ERR_LIMIT, "dataset %s would need more than --max-dataset-mem (%zu bytes)", id, max_mem);
    if (!st) {
        c->n = (int)info.shape[0];
        c->h = h, c->w = w;
        c->data = malloc(((size_t)c->n + 1) * 2 * plane); /* room for one more */
        c->ann_ids = calloc((size_t)c->n + 1, sizeof *c->ann_ids);
        c->task_ids = calloc((size_t)c->n + 1, sizeof *c->task_ids);
        if (!c->data || !c->ann_ids || !c->task_ids) st = ms_fail(MS_ERR_NOMEM, "dataset %s", id);
    }
    if (!st) st = ms_npz_read_u8(z, "training_set", c->data, (size_t)c->n * 2 * plane);
    /* the ids, when this file has them (they are ours, but a sample without one is kept) */
    if (!st && ms_npz_has(z, "annotation_ids") && ms_npz_info(z, "annotation_ids", &ai) == MS_OK && ai.count == c->n)
        st = ms_npz_read_i64(z, "annotation_ids", c->ann_ids, (size_t)c->n);
    if (!st && ms_npz_has(z, "task_ids") && ms_npz_info(z, "task_ids", &ai) == MS_OK && ai.count == c->n)
        st = ms_npz_read_i64(z, "task_ids", c->task_ids, (size_t)c->n);
    ms_npz_close(z);
    if (st) contents_free(c);
    return st;
}

ms_status ls_dataset_record(struct labelstudio *ls, long long project, long long annotation, long long task,
                            const uint8_t *gray, const uint8_t *labels, int h, int w, int *samples, int *replaced,
                            char *dataset_id, size_t idcap) {
    struct server *srv = ls->srv;
    char id[32], path[PATH_MAX], name[96];
    ls_dataset_id(project, id, sizeof id);
    snprintf(dataset_id, idcap, "%s", id);
    if (!datasets_file(srv->datasets, id, path, sizeof path)) return ms_fail(MS_ERR_ARG, "project id %lld", project);
    snprintf(name, sizeof name, "Label Studio project %lld", project);
    const size_t plane = (size_t)h * w;

    pthread_mutex_lock(&ls->record_mu);
    struct contents c;
    ms_status st = read_contents(path, id, h, w, srv->cfg.max_dataset_mem, &c);
    if (st) goto out;
    if (!c.data) { /* the project's first sample */
        c.data = malloc(2 * plane);
        c.ann_ids = calloc(1, sizeof *c.ann_ids);
        c.task_ids = calloc(1, sizeof *c.task_ids);
        if (!c.data || !c.ann_ids || !c.task_ids) {
            st = ms_fail(MS_ERR_NOMEM, "dataset %s", id);
            goto free_out;
        }
    }
    int at = c.n;
    for (int i = 0; i < c.n; i++)
        if (c.ann_ids[i] == annotation) at = i;
    *replaced = at < c.n;
    if (at == c.n) c.n++; /* read_contents left room for one more */
    memcpy(c.data + (size_t)at * 2 * plane, gray, plane);
    memcpy(c.data + ((size_t)at * 2 + 1) * plane, labels, plane);
    c.ann_ids[at] = annotation;
    c.task_ids[at] = task;

    ms_npz_writer *wr = NULL;
    const int64_t shape[4] = {c.n, 2, h, w}, n1[1] = {c.n};
    st = ms_npz_writer_open(&wr, path);
    if (!st) st = ms_npz_writer_add(wr, "training_set", MS_DT_U1, 4, shape, c.data);
    if (!st) st = ms_npz_writer_add(wr, "annotation_ids", MS_DT_I8, 1, n1, c.ann_ids);
    if (!st) st = ms_npz_writer_add(wr, "task_ids", MS_DT_I8, 1, n1, c.task_ids);
    if (!st) st = ms_npz_writer_commit(wr);
    else if (wr) ms_npz_writer_abort(wr);
    if (!st) st = datasets_publish(srv->datasets, id, name, c.n, h, w);
    if (!st) *samples = c.n;
free_out:
    contents_free(&c);
out:
    pthread_mutex_unlock(&ls->record_mu);
    return st;
}
