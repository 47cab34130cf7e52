/* Output directories of whole-dataset passes (see marsseg_predict.h): `rank` (the least-confident
 * tiles, for labelling next) and `eval --report` (confusion matrix, per-class figures, the worst
 * tiles). A directory is built in "<dir>.tmp" and swapped into place at the end, so a failure or
 * a cancel never leaves a partial one. */
#include "marsseg_io.h"
#include "marsseg_predict.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ atomic directories */

typedef struct {
    char dir[2048], tmp[2100], parent[2048];
    int exists; /* dir is there already (one of ours, or empty): swapped, then the old removed */
} outdir;

/* Removes a directory of plain files (ours: flat). 0, or -1 with errno. */
static int remove_flat(const char *path) {
    DIR *d = opendir(path);
    if (!d) return errno == ENOENT ? 0 : -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (unlinkat(dirfd(d), e->d_name, 0) != 0) rc = -1;
    }
    closedir(d);
    return rmdir(path) == 0 && rc == 0 ? 0 : -1;
}

/* Only what our outputs hold (PNGs, index.csv, report.json, temp files): a leftover "<dir>.tmp"
 * is removed only then, never a user's directory that happens to have that name. */
static int only_ours(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 1;
    struct dirent *e;
    int ours = 1;
    while (ours && (e = readdir(d))) {
        const char *x = strrchr(e->d_name, '.');
        ours = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
               (x && (!strcmp(x, ".png") || !strcmp(x, ".csv") || !strcmp(x, ".json") || !strcmp(x, ".tmp")));
    }
    closedir(d);
    return ours;
}

static int dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d))) empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    return empty;
}

/* marker: the file that makes an existing dir one of ours, safe to replace */
static ms_status outdir_open(outdir *o, const char *dir, const char *marker) {
    memset(o, 0, sizeof *o);
    size_t l = strlen(dir);
    while (l > 1 && dir[l - 1] == '/') l--; /* "out/" is "out" */
    if (l == 0 || l >= sizeof o->dir) return ms_fail(MS_ERR_ARG, "output directory: bad path '%s'", dir);
    memcpy(o->dir, dir, l);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp", o->dir);
    snprintf(o->parent, sizeof o->parent, "%s", o->dir);
    char *sl = strrchr(o->parent, '/');
    if (!sl) snprintf(o->parent, sizeof o->parent, ".");
    else if (sl == o->parent) sl[1] = 0;
    else *sl = 0;
    struct stat sb;
    if (stat(o->dir, &sb) == 0) {
        char m[2200];
        snprintf(m, sizeof m, "%s/%s", o->dir, marker);
        if (!S_ISDIR(sb.st_mode)) return ms_fail(MS_ERR_ARG, "%s exists and is not a directory", o->dir);
        if (access(m, F_OK) != 0 && !dir_is_empty(o->dir))
            return ms_fail(MS_ERR_ARG, "%s exists and is not an earlier output (no %s in it): choose a new directory",
                           o->dir, marker);
        o->exists = 1;
    }
    if (!only_ours(o->tmp))
        return ms_fail(MS_ERR_ARG, "%s exists and holds files that are not ours: move it away", o->tmp);
    if (remove_flat(o->tmp) != 0) /* a crashed earlier run's leftovers */
        return ms_fail(MS_ERR_IO, "%s: cannot remove the old temp directory: %s", o->tmp, strerror(errno));
    if (mkdir(o->tmp, 0755) != 0) return ms_fail(MS_ERR_IO, "%s: cannot create: %s", o->tmp, strerror(errno));
    return MS_OK;
}

static ms_status outdir_put(outdir *o, const char *name, const void *buf, size_t len) {
    char p[2400];
    snprintf(p, sizeof p, "%s/%s", o->tmp, name);
    return ms_write_file_atomic(p, buf, len);
}

static void outdir_abort(outdir *o) {
    if (o->tmp[0]) (void)remove_flat(o->tmp);
    o->tmp[0] = 0;
}

/* Every file is durable (ms_write_file_atomic fsyncs it and tmp): publish tmp as dir in one
 * rename, or one atomic exchange with the old dir, which is then removed. */
static ms_status outdir_commit(outdir *o) {
    if (o->exists) {
        if (renameat2(AT_FDCWD, o->tmp, AT_FDCWD, o->dir, RENAME_EXCHANGE) != 0) {
            ms_status st = ms_fail(MS_ERR_IO, "%s: cannot swap in %s: %s", o->dir, o->tmp, strerror(errno));
            outdir_abort(o);
            return st;
        }
        (void)ms_fsync_dir(o->parent);
        (void)remove_flat(o->tmp); /* the old output; a failure leaves only a .tmp behind */
    } else if (rename(o->tmp, o->dir) != 0) {
        ms_status st = ms_fail(MS_ERR_IO, "%s: cannot rename %s to it: %s", o->dir, o->tmp, strerror(errno));
        outdir_abort(o);
        return st;
    }
    o->tmp[0] = 0;
    if (ms_fsync_dir(o->parent) != 0) return ms_fail(MS_ERR_IO, "%s: fsync: %s", o->parent, strerror(errno));
    return MS_OK;
}

/* ------------------------------------------------------------------ tile pictures */

typedef enum { PIC_GRAY, PIC_LABELS, PIC_ENTROPY } pic_kind;

static ms_status put_png(outdir *o, const char *name, pic_kind kind, const void *px, int h, int w, uint8_t *scratch) {
    uint8_t *png = NULL;
    size_t len = 0;
    ms_status st;
    if (kind == PIC_LABELS) st = ms_png_encode_labels(px, w, h, &png, &len);
    else {
        if (kind == PIC_ENTROPY) ms_entropy_to_gray(px, (size_t)h * w, scratch), px = scratch;
        st = ms_png_encode_gray(px, w, h, &png, &len);
    }
    if (!st) st = outdir_put(o, name, png, len);
    free(png);
    return st;
}

/* Runs the model again on tiles sel[0..k-1] a batch at a time (memory: one batch of entropy
 * maps) and hands each tile's prediction to `emit`. */
typedef ms_status (*emit_fn)(void *user, int j, const uint8_t *labels, const float *entropy);
static ms_status for_each_tile(const ms_model *m, const ms_dataset *ds, const int *sel, int k, int tta, emit_fn emit,
                               void *user) {
    const size_t hw = (size_t)ds->h * ds->w;
    const int B = MS_MIN(k, MS_PREDICT_MAX_BATCH);
    uint8_t *lab = malloc(hw * (size_t)B);
    float *ent = malloc(sizeof(float) * hw * (size_t)B);
    ms_status st = lab && ent ? MS_OK : ms_fail(MS_ERR_NOMEM, "tile pictures: buffers");
    for (int j0 = 0; j0 < k && !st; j0 += B) {
        const int nb = MS_MIN(B, k - j0);
        st = ms_predict_tiles(m, ds, sel + j0, nb, tta, lab, ent, NULL);
        for (int j = 0; j < nb && !st; j++) st = emit(user, j0 + j, lab + (size_t)j * hw, ent + (size_t)j * hw);
    }
    free(lab);
    free(ent);
    return st;
}

static int cancelled(const atomic_int *c) { return c && atomic_load(c); }

/* ------------------------------------------------------------------ rank */

typedef struct {
    outdir *o;
    const ms_dataset *ds;
    const int *sel;
    uint8_t *scratch;
} rank_ctx;

static ms_status rank_emit(void *user, int j, const uint8_t *labels, const float *entropy) {
    rank_ctx *c = user;
    const int i = c->sel[j], h = c->ds->h, w = c->ds->w;
    char name[64];
    ms_status st;
    snprintf(name, sizeof name, "%05d.png", i);
    if ((st = put_png(c->o, name, PIC_GRAY, c->ds->img + (size_t)i * h * w, h, w, NULL))) return st;
    snprintf(name, sizeof name, "%05d_pred.png", i);
    if ((st = put_png(c->o, name, PIC_LABELS, labels, h, w, NULL))) return st;
    snprintf(name, sizeof name, "%05d_uncertainty.png", i);
    return put_png(c->o, name, PIC_ENTROPY, entropy, h, w, c->scratch);
}

ms_status ms_rank(const ms_model *m, const ms_dataset *ds, const int *idx, int n, const ms_rank_opts *o,
                  const char *dir, cJSON **list) {
    if (list) *list = NULL;
    const int total = idx ? n : ds->n, k = o->top;
    if (k < 1 || k > total)
        return ms_fail(MS_ERR_ARG, "top %d: %s", k,
                       k < 1 ? "ask for at least 1 tile" : total == 1 ? "there is only 1 tile" : "more than the tiles there are");
    ms_predictions p = {0};
    ms_predict_opts po = {.tta = o->tta, .batch = o->batch, .progress = o->progress, .user = o->user, .cancel = o->cancel};
    outdir od = {0};
    int *sel = malloc(sizeof(int) * (size_t)k);
    uint8_t *scratch = malloc((size_t)ds->h * ds->w);
    char *csv = NULL;
    cJSON *arr = cJSON_CreateArray();
    ms_status st = sel && scratch && arr ? MS_OK : ms_fail(MS_ERR_NOMEM, "rank: buffers");
    if (!st) st = ms_predict(m, ds, idx, n, &po, &p);
    if (!st) st = ms_rank_least_confident(&p, k, sel);
    if (!st && cancelled(o->cancel)) st = ms_fail(MS_ERR_CANCELLED, "rank: cancelled");
    if (st) goto done;
    /* index.csv, and the JSON list, from the pass's own scores */
    size_t cap = 128 + (size_t)k * 128, used = 0;
    if (!(csv = malloc(cap))) {
        st = ms_fail(MS_ERR_NOMEM, "rank: index.csv");
        goto done;
    }
    used += (size_t)snprintf(csv, cap, "rank,index,confidence,entropy,image,prediction,uncertainty\n");
    for (int r = 0; r < k; r++) {
        const int pos = sel[r], i = idx ? idx[pos] : pos;
        used += (size_t)snprintf(csv + used, cap - used, "%d,%d,%.6f,%.6f,%05d.png,%05d_pred.png,%05d_uncertainty.png\n", r + 1,
                                 i, p.confidence[pos], p.entropy[pos], i, i, i);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, e);
        cJSON_AddNumberToObject(e, "rank", r + 1);
        cJSON_AddNumberToObject(e, "index", i);
        cJSON_AddNumberToObject(e, "confidence", p.confidence[pos]);
        cJSON_AddNumberToObject(e, "entropy", p.entropy[pos]);
        sel[r] = i; /* from here on: dataset indices */
    }
    if (dir) {
        if ((st = outdir_open(&od, dir, "index.csv"))) goto done;
        rank_ctx c = {&od, ds, sel, scratch};
        if ((st = for_each_tile(m, ds, sel, k, o->tta, rank_emit, &c)) || (st = outdir_put(&od, "index.csv", csv, used)))
            goto done;
        if (cancelled(o->cancel)) {
            st = ms_fail(MS_ERR_CANCELLED, "rank: cancelled");
            goto done;
        }
        if ((st = outdir_commit(&od))) goto done;
    }
    if (list) *list = arr, arr = NULL;
done:
    outdir_abort(&od);
    ms_predictions_free(&p);
    cJSON_Delete(arr);
    free(sel);
    free(scratch);
    free(csv);
    return st;
}

/* ------------------------------------------------------------------ evaluation report */

void ms_class_report_from(const ms_confusion *c, ms_class_report *r) {
    ms_scores s;
    ms_confusion_scores(c, &s);
    r->miou = s.miou;
    r->pixel_acc = s.pixel_acc;
    for (int k = 0; k < MS_NUM_CLASSES; k++) {
        int64_t row = 0, col = 0;
        for (int j = 0; j < MS_NUM_CLASSES; j++) row += c->cm[k][j], col += c->cm[j][k];
        r->iou[k] = s.iou[k];
        r->precision[k] = col ? (double)c->cm[k][k] / (double)col : NAN;
        r->recall[k] = row ? (double)c->cm[k][k] / (double)row : NAN;
    }
}

ms_status ms_check_labels_fit(const ms_model *m, const ms_dataset *ds, const int *idx, int n) {
    const int K = ms_model_get_config(m)->classes;
    if (!ds->mask) return ms_fail(MS_ERR_ARG, "the dataset has no masks (labels) to evaluate against");
    if (K > MS_NUM_CLASSES)
        return ms_fail(MS_ERR_SHAPE, "the model predicts %d classes; the metrics know %d (%s..%s)", K, MS_NUM_CLASSES,
                       ms_class_names[0], ms_class_names[MS_NUM_CLASSES - 1]);
    const size_t hw = (size_t)ds->h * ds->w;
    const int count = idx ? n : ds->n;
    for (int j = 0; j < count; j++) {
        const int i = idx ? idx[j] : j;
        const uint8_t *mk = ds->mask + (size_t)i * hw;
        for (size_t p = 0; p < hw; p++)
            if (mk[p] >= K)
                return ms_fail(MS_ERR_SHAPE,
                               "the labels hold class %d (%s) at tile %d, pixel (y=%zu, x=%zu), but the model predicts "
                               "only %d classes (0..%d): it was trained for other labels",
                               mk[p], mk[p] < MS_NUM_CLASSES ? ms_class_names[mk[p]] : "?", i, p / (size_t)ds->w,
                               p % (size_t)ds->w, K, K - 1);
    }
    return MS_OK;
}

typedef struct {
    double miou;
    int pos;
} tile_iou;

static int cmp_tile_iou(const void *a, const void *b) {
    const tile_iou *x = a, *y = b;
    return x->miou < y->miou ? -1 : x->miou > y->miou ? 1 : (x->pos > y->pos) - (x->pos < y->pos);
}

typedef struct {
    outdir *o;
    const ms_dataset *ds;
    const int *sel;
    uint8_t *scratch;
} report_ctx;

static ms_status report_emit(void *user, int j, const uint8_t *labels, const float *entropy) {
    report_ctx *c = user;
    const int i = c->sel[j], h = c->ds->h, w = c->ds->w;
    const size_t off = (size_t)i * h * w;
    char name[64];
    ms_status st;
    snprintf(name, sizeof name, "%05d_image.png", i);
    if ((st = put_png(c->o, name, PIC_GRAY, c->ds->img + off, h, w, NULL))) return st;
    snprintf(name, sizeof name, "%05d_truth.png", i);
    if ((st = put_png(c->o, name, PIC_LABELS, c->ds->mask + off, h, w, NULL))) return st;
    snprintf(name, sizeof name, "%05d_pred.png", i);
    if ((st = put_png(c->o, name, PIC_LABELS, labels, h, w, NULL))) return st;
    snprintf(name, sizeof name, "%05d_uncertainty.png", i);
    return put_png(c->o, name, PIC_ENTROPY, entropy, h, w, c->scratch);
}

static cJSON *double_row(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i])); /* NaN prints as null */
    return a;
}

ms_status ms_eval_report(const ms_model *m, const ms_dataset *ds, const int *idx, int n, const ms_report_opts *o,
                         const char *dir, cJSON **report, ms_confusion *cm_out) {
    if (report) *report = NULL;
    ms_status st = ms_check_labels_fit(m, ds, idx, n);
    if (st) return st;
    const int count = idx ? n : ds->n;
    const size_t hw = (size_t)ds->h * ds->w;
    ms_predictions p = {0};
    ms_predict_opts po = {.tta = o->tta, .batch = o->batch, .progress = o->progress, .user = o->user, .cancel = o->cancel};
    outdir od = {0};
    tile_iou *t = malloc(sizeof *t * (size_t)count);
    int *sel = malloc(sizeof(int) * (size_t)(o->worst > 0 ? MS_MIN(o->worst, count) : 1));
    uint8_t *scratch = malloc(hw);
    cJSON *root = cJSON_CreateObject();
    char *text = NULL;
    ms_confusion cm;
    memset(&cm, 0, sizeof cm);
    if (!t || !sel || !scratch || !root) {
        st = ms_fail(MS_ERR_NOMEM, "report: buffers");
        goto done;
    }
    if ((st = ms_predict(m, ds, idx, n, &po, &p))) goto done;
    /* the whole confusion matrix, and each tile's own mIoU */
    int ranked = 0;
    double csum = 0, esum = 0;
    for (int j = 0; j < count; j++) {
        const int i = idx ? idx[j] : j;
        ms_confusion tc;
        memset(&tc, 0, sizeof tc);
        ms_confusion_add(&tc, ds->mask + (size_t)i * hw, p.labels + (size_t)j * hw, hw);
        for (int a = 0; a < MS_NUM_CLASSES; a++)
            for (int b = 0; b < MS_NUM_CLASSES; b++) cm.cm[a][b] += tc.cm[a][b];
        ms_scores s;
        ms_confusion_scores(&tc, &s);
        if (!isnan(s.miou)) t[ranked++] = (tile_iou){s.miou, j};
        csum += p.confidence[j];
        esum += p.entropy[j];
    }
    qsort(t, (size_t)ranked, sizeof *t, cmp_tile_iou);
    const int nworst = o->worst > 0 ? MS_MIN(o->worst, ranked) : 0;
    for (int r = 0; r < nworst; r++) sel[r] = idx ? idx[t[r].pos] : t[r].pos;

    ms_class_report cr;
    ms_class_report_from(&cm, &cr);
    cJSON_AddStringToObject(root, "format", "marsseg-report-1");
    if (o->model_label) cJSON_AddStringToObject(root, "model", o->model_label);
    if (o->data_label) cJSON_AddStringToObject(root, "data", o->data_label);
    cJSON_AddNumberToObject(root, "tiles", count);
    cJSON_AddNumberToObject(root, "height", ds->h);
    cJSON_AddNumberToObject(root, "width", ds->w);
    cJSON_AddBoolToObject(root, "tta", o->tta);
    cJSON *classes = cJSON_AddArrayToObject(root, "classes"), *conf = cJSON_AddArrayToObject(root, "confusion"),
          *norm = cJSON_AddArrayToObject(root, "confusion_normalized");
    for (int k = 0; k < MS_NUM_CLASSES; k++) {
        cJSON *c = cJSON_CreateObject();
        char col[8];
        snprintf(col, sizeof col, "#%02x%02x%02x", ms_class_colors[k][0], ms_class_colors[k][1], ms_class_colors[k][2]);
        cJSON_AddNumberToObject(c, "id", k);
        cJSON_AddStringToObject(c, "name", ms_class_names[k]);
        cJSON_AddStringToObject(c, "color", col);
        cJSON_AddItemToArray(classes, c);
        double row[MS_NUM_CLASSES], rn[MS_NUM_CLASSES], sum = 0;
        for (int j = 0; j < MS_NUM_CLASSES; j++) sum += (double)cm.cm[k][j];
        for (int j = 0; j < MS_NUM_CLASSES; j++) row[j] = (double)cm.cm[k][j], rn[j] = sum > 0 ? row[j] / sum : NAN;
        cJSON_AddItemToArray(conf, double_row(row, MS_NUM_CLASSES));
        cJSON_AddItemToArray(norm, double_row(rn, MS_NUM_CLASSES));
    }
    cJSON_AddItemToObject(root, "iou", double_row(cr.iou, MS_NUM_CLASSES));
    cJSON_AddItemToObject(root, "precision", double_row(cr.precision, MS_NUM_CLASSES));
    cJSON_AddItemToObject(root, "recall", double_row(cr.recall, MS_NUM_CLASSES));
    cJSON_AddNumberToObject(root, "miou", cr.miou);
    cJSON_AddNumberToObject(root, "pixel_acc", cr.pixel_acc);
    cJSON_AddNumberToObject(root, "confidence", csum / count);
    cJSON_AddNumberToObject(root, "entropy", esum / count);
    cJSON_AddNumberToObject(root, "seconds", p.seconds);
    cJSON *worst = cJSON_AddArrayToObject(root, "worst");
    for (int r = 0; r < nworst; r++) {
        const int j = t[r].pos, i = sel[r];
        cJSON *e = cJSON_CreateObject();
        char f[64];
        cJSON_AddNumberToObject(e, "rank", r + 1);
        cJSON_AddNumberToObject(e, "index", i);
        cJSON_AddNumberToObject(e, "miou", t[r].miou);
        cJSON_AddNumberToObject(e, "confidence", p.confidence[j]);
        cJSON_AddNumberToObject(e, "entropy", p.entropy[j]);
        static const char *const kind[4] = {"image", "truth", "pred", "uncertainty"};
        for (int q = 0; q < 4; q++) {
            snprintf(f, sizeof f, "%05d_%s.png", i, kind[q]);
            cJSON_AddStringToObject(e, kind[q], f);
        }
        cJSON_AddItemToArray(worst, e);
    }
    if (!(text = cJSON_Print(root))) {
        st = ms_fail(MS_ERR_NOMEM, "report: json");
        goto done;
    }
    if (cancelled(o->cancel)) {
        st = ms_fail(MS_ERR_CANCELLED, "report: cancelled");
        goto done;
    }
    if (dir) {
        report_ctx c = {&od, ds, sel, scratch};
        if ((st = outdir_open(&od, dir, "report.json"))) goto done;
        if (nworst && (st = for_each_tile(m, ds, sel, nworst, o->tta, report_emit, &c))) goto done;
        if ((st = outdir_put(&od, "report.json", text, strlen(text)))) goto done; /* last: the marker */
        if (cancelled(o->cancel)) {
            st = ms_fail(MS_ERR_CANCELLED, "report: cancelled");
            goto done;
        }
        if ((st = outdir_commit(&od))) goto done;
    }
    if (cm_out) *cm_out = cm;
    if (report) *report = root, root = NULL;
done:
    outdir_abort(&od);
    ms_predictions_free(&p);
    cJSON_Delete(root);
    free(text);
    free(t);
    free(sel);
    free(scratch);
    return st;
}
