/* Whole-dataset prediction (see marsseg_predict.h): inputs (an npz array or a folder of PNGs),
 * the batched pass with progress and cancel, its outputs (npz with streamed float16
 * probabilities, the Kaggle CSV), and the least-confident ranking. */
#include "data.h" /* ms_batch_fill */
#include "marsseg_io.h"
#include "marsseg_npz.h"
#include "marsseg_predict.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ inputs */

ms_status ms_predict_default_key(const char *path, char *key, size_t cap) {
    ms_npz *z = NULL;
    ms_status st = ms_npz_open(&z, path);
    if (st) return st;
    const char *pick = ms_npz_has(z, "test_set") ? "test_set"
                       : ms_npz_has(z, "training_set") ? "training_set"
                       : ms_npz_count(z) == 1 ? ms_npz_key(z, 0) : NULL;
    if (pick) snprintf(key, cap, "%s", pick);
    else st = ms_fail(MS_ERR_NOTFOUND, "%s: no test_set or training_set among its %d arrays: name one (--key)", path,
                      ms_npz_count(z));
    ms_npz_close(z);
    return st;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void ms_names_free(char **names, int n) {
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

#define DIR_MAX_PNG_BYTES ((size_t)64 << 20)
#define DIR_MAX_TILE_PIXELS ((size_t)16 << 20)

static ms_status read_png(const char *dir, const char *name, int mask, uint8_t **px, int *w, int *h) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *buf = NULL;
    size_t len = 0;
    ms_status st = ms_read_file(path, DIR_MAX_PNG_BYTES, &buf, &len);
    if (!st) st = mask ? ms_png_decode_index(buf, len, DIR_MAX_TILE_PIXELS, px, w, h)
                       : ms_png_decode_gray(buf, len, DIR_MAX_TILE_PIXELS, px, w, h);
    free(buf);
    if (st) ms_fail(st, "%s: %s", path, ms_last_error());
    return st;
}

ms_status ms_dataset_load_dir(ms_dataset *ds, const char *dir, size_t max_bytes, char ***names_out) {
    memset(ds, 0, sizeof *ds);
    if (names_out) *names_out = NULL;
    DIR *d = opendir(dir);
    if (!d) return ms_fail(errno == ENOENT ? MS_ERR_NOTFOUND : MS_ERR_IO, "%s: %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0, withmask = 0;
    ms_status st = MS_OK;
    struct dirent *e;
    while ((e = readdir(d))) { /* NAME.png, not NAME_mask.png */
        const size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".png") || (l > 9 && !strcmp(e->d_name + l - 9, "_mask.png"))) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            char **nn = realloc(names, sizeof *nn * (size_t)cap);
            if (!nn) { st = ms_fail(MS_ERR_NOMEM, "%s: file list", dir); break; }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) { st = ms_fail(MS_ERR_NOMEM, "%s: file list", dir); break; }
        n++;
    }
    closedir(d);
    if (!st && n == 0) st = ms_fail(MS_ERR_NOTFOUND, "%s: no .png tiles", dir);
    if (st) goto done;
    qsort(names, (size_t)n, sizeof *names, cmp_name);
    char mname[1100];
    for (int i = 0; i < n; i++) { /* labelled only if every tile has a mask */
        snprintf(mname, sizeof mname, "%s/%.*s_mask.png", dir, (int)(strlen(names[i]) - 4), names[i]);
        struct stat sb;
        withmask += stat(mname, &sb) == 0;
    }
    const int labelled = withmask == n;
    for (int i = 0; i < n && !st; i++) {
        uint8_t *img = NULL, *mask = NULL;
        int w, h, mw = 0, mh = 0;
        st = read_png(dir, names[i], 0, &img, &w, &h);
        if (!st && labelled) {
            snprintf(mname, sizeof mname, "%.*s_mask.png", (int)(strlen(names[i]) - 4), names[i]);
            st = read_png(dir, mname, 1, &mask, &mw, &mh);
            if (!st && (mw != w || mh != h))
                st = ms_fail(MS_ERR_SHAPE, "%s/%s: mask is %dx%d, the image %dx%d", dir, mname, mw, mh, w, h);
        }
        if (!st && i > 0 && (w != ds->w || h != ds->h))
            st = ms_fail(MS_ERR_SHAPE, "%s/%s: %dx%d, but %s is %dx%d: all tiles must have one size", dir, names[i], w, h,
                         names[0], ds->w, ds->h);
        const size_t hw = (size_t)w * (size_t)h;
        if (!st && i == 0) {
            size_t need = hw * (size_t)n * (labelled ? 2 : 1);
            if (max_bytes && need > max_bytes)
                st = ms_fail(MS_ERR_LIMIT, "%s: %d tiles of %dx%d need %zu bytes, over the limit of %zu", dir, n, w, h,
                             need, max_bytes);
            else if (!(ds->img = malloc(hw * (size_t)n)) || (labelled && !(ds->mask = malloc(hw * (size_t)n))))
                st = ms_fail(MS_ERR_NOMEM, "%s: %d tiles of %dx%d", dir, n, w, h);
            ds->w = w, ds->h = h;
        }
        for (size_t k = 0; !st && mask && k < hw; k++)
            if (mask[k] >= MS_NUM_CLASSES)
                st = ms_fail(MS_ERR_FORMAT, "%s/%s: pixel (y=%zu, x=%zu) has class %d (classes are 0..4)", dir, mname,
                             k / (size_t)w, k % (size_t)w, mask[k]);
        if (!st) {
            memcpy(ds->img + (size_t)i * hw, img, hw);
            if (mask) memcpy(ds->mask + (size_t)i * hw, mask, hw);
        }
        free(img);
        free(mask);
    }
    if (st) goto done;
    ds->n = n;
    snprintf(ds->img_range, sizeof ds->img_range, "0..255");
    if (names_out) *names_out = names, names = NULL;
done:
    if (st) ms_dataset_free(ds);
    ms_names_free(names, n);
    return st;
}

ms_status ms_predict_load(ms_dataset *ds, const char *path, const char *key, size_t max_bytes, char *used_key,
                          size_t cap) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (used_key && cap) used_key[0] = 0;
        return ms_dataset_load_dir(ds, path, max_bytes, NULL);
    }
    char k[256];
    if (!key) {
        ms_status st = ms_predict_default_key(path, k, sizeof k);
        if (st) return st;
        key = k;
    }
    if (used_key && cap) snprintf(used_key, cap, "%s", key);
    return ms_dataset_load(ds, path, key, max_bytes);
}

/* ------------------------------------------------------------------ the pass */

/* What every batched pass checks first: tiles the model can take (any size for whole frames:
 * they are resized and padded), and the indices. */
static ms_status check_input(const ms_model *m, const ms_dataset *ds, const int *idx, int n, int frame) {
    const int q = 1 << ms_model_get_config(m)->depth;
    if (!ds || ds->n < 1 || !ds->img) return ms_fail(MS_ERR_ARG, "predict: no tiles");
    if (!frame && (ds->h % q || ds->w % q))
        return ms_fail(MS_ERR_SHAPE, "predict: tiles are %dx%d (HxW); this model (depth %d) needs multiples of %d", ds->h,
                       ds->w, ms_model_get_config(m)->depth, q);
    if (idx) {
        if (n < 1) return ms_fail(MS_ERR_ARG, "predict: no tiles selected");
        for (int i = 0; i < n; i++)
            if (idx[i] < 0 || idx[i] >= ds->n)
                return ms_fail(MS_ERR_ARG, "predict: tile index %d outside 0..%d", idx[i], ds->n - 1);
    }
    return MS_OK;
}

/* Per-batch buffers: one batch, whatever the number of tiles. The model runs at (mh, mw): the
 * tiles' own size, or with `frame` the size ms_frame_size gives (each tile is then a whole camera
 * frame, resized before and its outputs after: core/frame.c), padded to (ph, pw), the model's
 * multiples, as ms_model_segment_ex pads an image. */
typedef struct {
    int frame, h, w, mh, mw, ph, pw;
    float *x;             /* (B, ph*pw) input */
    float *probs;         /* (B,K, ph*pw), only when probabilities are written */
    float *ent, *top;     /* (B, ph*pw) per-pixel uncertainty */
    uint8_t *g8, *mlab;   /* frame: one resized tile; (B, ph*pw) labels */
    float *oprobs, *oent; /* at the tiles' size: probs and ent themselves without frame */
} batch_bufs;

static ms_status bufs_alloc(batch_bufs *b, const ms_model *m, int B, int H, int W, int frame, int probs) {
    memset(b, 0, sizeof *b);
    const int K = ms_model_get_config(m)->classes, q = 1 << ms_model_get_config(m)->depth;
    b->frame = frame, b->h = H, b->w = W, b->mh = H, b->mw = W;
    if (frame) ms_frame_size(m, H, W, &b->mh, &b->mw);
    b->ph = (b->mh + q - 1) / q * q, b->pw = (b->mw + q - 1) / q * q; /* the tiles' own: checked multiples */
    const size_t hw = (size_t)H * W, phw = (size_t)b->ph * b->pw;
    b->x = malloc(sizeof(float) * phw * B);
    b->ent = malloc(sizeof(float) * phw * B);
    b->top = malloc(sizeof(float) * phw * B);
    if (probs) b->probs = malloc(sizeof(float) * phw * K * B);
    int ok = b->x && b->ent && b->top && (!probs || b->probs);
    if (frame) {
        b->g8 = malloc((size_t)b->mh * b->mw);
        b->mlab = malloc(phw * B);
        b->oent = malloc(sizeof(float) * hw * B);
        if (probs) b->oprobs = malloc(sizeof(float) * hw * K * B);
        ok = ok && b->g8 && b->mlab && b->oent && (!probs || b->oprobs);
    } else {
        b->oprobs = b->probs, b->oent = b->ent;
    }
    return ok ? MS_OK : ms_fail(MS_ERR_NOMEM, "predict: buffers for a batch of %d", B);
}

static void bufs_free(batch_bufs *b) {
    if (b->frame) free(b->oprobs), free(b->oent), free(b->g8), free(b->mlab);
    free(b->x);
    free(b->probs);
    free(b->ent);
    free(b->top);
}

/* n planes of (ph,pw) elements cut to their top-left (mh,mw), packed in place: each row moves
 * down (never up) in memory, so no row is overwritten before it is read. */
static void crop_planes(void *buf, size_t esize, size_t n, int ph, int pw, int mh, int mw) {
    char *p = buf;
    for (size_t k = 0; k < n; k++)
        for (int y = 0; y < mh; y++)
            memmove(p + (k * mh + y) * (size_t)mw * esize, p + (k * ph + y) * (size_t)pw * esize, (size_t)mw * esize);
}

/* One batch: tiles order[0..nb-1] through the model -> labels (nb,hw), b->oprobs when allocated,
 * per-pixel entropy into b->oent, the tiles' scores into conf/ent (a frame's: of the resized frame,
 * as ms_model_segment_frame's). */
static ms_status run_batch(const ms_model *m, const ms_dataset *ds, const int *order, int nb, int tta, batch_bufs *b,
                           uint8_t *labels, float *conf, float *ent) {
    const size_t hw = (size_t)b->h * b->w, mhw = (size_t)b->mh * b->mw, phw = (size_t)b->ph * b->pw;
    const int K = ms_model_get_config(m)->classes;
    ms_status st = MS_OK;
    if (!b->frame) {
        ms_batch_fill(ds, order, nb, b->x, NULL, NULL, NULL); /* exactly what eval feeds the model */
    } else {
        /* Pillow's bilinear, then padded by edge replication and v * (1/255): ms_model_segment_ex's
         * input, so that a frame gets segment --frame's labels */
        for (int i = 0; i < nb && !st; i++) {
            st = ms_resize_bilinear_u8(ds->img + (size_t)order[i] * hw, b->h, b->w, b->g8, b->mh, b->mw);
            for (int y = 0; y < b->ph; y++) {
                const uint8_t *row = b->g8 + (size_t)MS_MIN(y, b->mh - 1) * b->mw;
                for (int x = 0; x < b->pw; x++) b->x[i * phw + (size_t)y * b->pw + x] = row[MS_MIN(x, b->mw - 1)] * (1.0f / 255.0f);
            }
        }
    }
    const ms_pixel_out o = {b->frame ? b->mlab : labels, b->probs, b->ent, b->top};
    if (!st) st = ms_model_predict_ex(m, b->x, nb, b->ph, b->pw, tta, &o);
    if (!st && phw != mhw) { /* the padding off: scores and outputs are of the frame's own pixels */
        crop_planes(b->mlab, 1, (size_t)nb, b->ph, b->pw, b->mh, b->mw);
        crop_planes(b->ent, sizeof(float), (size_t)nb, b->ph, b->pw, b->mh, b->mw);
        crop_planes(b->top, sizeof(float), (size_t)nb, b->ph, b->pw, b->mh, b->mw);
        if (b->probs) crop_planes(b->probs, sizeof(float), (size_t)nb * K, b->ph, b->pw, b->mh, b->mw);
    }
    if (!st) ms_tile_scores(b->ent, b->top, nb, mhw, conf, ent);
    for (int i = 0; i < nb && b->frame && !st; i++) { /* back to the tiles' size */
        st = ms_frame_outputs_back(b->mlab + i * mhw, b->ent + i * mhw, b->mh, b->mw, labels ? labels + i * hw : NULL,
                                   b->oent + i * hw, b->h, b->w);
        for (int k = 0; k < K && b->probs && !st; k++)
            st = ms_resize_bilinear_f32(b->probs + ((size_t)i * K + k) * mhw, b->mh, b->mw, b->oprobs + ((size_t)i * K + k) * hw,
                                        b->h, b->w);
    }
    return st;
}

void ms_predictions_free(ms_predictions *p) {
    if (!p) return;
    free(p->labels);
    free(p->confidence);
    free(p->entropy);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------ the Kaggle CSV */

/* "id,0,1,...,hw-1\n" */
static ms_status csv_header(ms_atomic_file *f, size_t hw) {
    char buf[1 << 14];
    size_t used = (size_t)snprintf(buf, sizeof buf, "id");
    for (size_t i = 0; i < hw; i++) {
        if (used > sizeof buf - 32) {
            ms_status st = ms_atomic_write(f, buf, used);
            if (st) return st;
            used = 0;
        }
        used += (size_t)snprintf(buf + used, sizeof buf - used, ",%zu", i);
    }
    buf[used++] = '\n';
    return ms_atomic_write(f, buf, used);
}

/* "<id>,<c0>,<c1>,...\n" into buf (room for 12 + 4 hw bytes); returns its length */
static size_t csv_row(char *buf, long id, const uint8_t *lab, size_t hw) {
    size_t u = (size_t)sprintf(buf, "%ld", id);
    for (size_t i = 0; i < hw; i++) {
        const unsigned v = lab[i];
        buf[u++] = ',';
        if (v >= 100) buf[u++] = (char)('0' + v / 100);
        if (v >= 10) buf[u++] = (char)('0' + v / 10 % 10);
        buf[u++] = (char)('0' + v % 10);
    }
    buf[u++] = '\n';
    return u;
}

/* The whole CSV into an open atomic file, a row at a time. */
static ms_status csv_write(ms_atomic_file *f, const uint8_t *labels, int n, size_t hw) {
    ms_status st = csv_header(f, hw);
    char *row = st ? NULL : malloc(16 + 4 * hw);
    if (!st && !row) st = ms_fail(MS_ERR_NOMEM, "submission CSV: row buffer");
    for (int i = 0; i < n && !st; i++) st = ms_atomic_write(f, row, csv_row(row, i, labels + (size_t)i * hw, hw));
    free(row);
    return st;
}

ms_status ms_write_submission_csv(const char *path, const uint8_t *labels, int n, int h, int w) {
    ms_atomic_file *f = NULL;
    ms_status st = ms_atomic_open(&f, path);
    if (st) return st;
    if ((st = csv_write(f, labels, n, (size_t)h * w))) {
        ms_atomic_abort(f);
        return st;
    }
    return ms_atomic_commit(f);
}

/* ------------------------------------------------------------------ ms_predict */

ms_status ms_predict(const ms_model *m, const ms_dataset *ds, const int *idx, int n, const ms_predict_opts *o,
                     ms_predictions *out) {
    static const ms_predict_opts none = {0};
    if (!o) o = &none;
    memset(out, 0, sizeof *out);
    ms_status st = check_input(m, ds, idx, n, o->frame);
    if (st) return st;
    if (!idx) n = ds->n;
    const int K = ms_model_get_config(m)->classes, H = ds->h, W = ds->w;
    const size_t hw = (size_t)H * W;
    const int B = o->batch >= 1 && o->batch <= MS_PREDICT_MAX_BATCH ? o->batch : MS_PREDICT_MAX_BATCH;
    const int want_probs = o->npz_path && o->probs;
    batch_bufs bb;
    st = bufs_alloc(&bb, m, B, H, W, o->frame, want_probs);
    uint16_t *half = want_probs ? malloc(sizeof(uint16_t) * hw * K * B) : NULL;
    int order[MS_PREDICT_MAX_BATCH];
    ms_npz_writer *zw = NULL;
    ms_atomic_file *csv = NULL;
    out->n = n, out->h = H, out->w = W, out->classes = K;
    out->labels = malloc(hw * (size_t)n);
    out->confidence = malloc(sizeof(float) * (size_t)n);
    out->entropy = malloc(sizeof(float) * (size_t)n);
    if (st || (want_probs && !half) || !out->labels || !out->confidence || !out->entropy) {
        st = ms_fail(MS_ERR_NOMEM, "predict: buffers for %d tiles of %dx%d", n, W, H);
        goto done;
    }
    if (o->npz_path && (st = ms_npz_writer_open(&zw, o->npz_path))) goto done;
    if (want_probs) { /* streamed batch by batch: never the whole (N,K,H,W) in memory */
        const int64_t shape[4] = {n, K, H, W};
        if ((st = ms_npz_writer_begin(zw, "probs", MS_DT_F2, 4, shape))) goto done;
    }
    const double t0 = ms_now_s();
    for (int i0 = 0; i0 < n; i0 += B) {
        if (o->cancel && atomic_load(o->cancel)) {
            st = ms_fail(MS_ERR_CANCELLED, "predict: cancelled after %d of %d tiles", i0, n);
            goto done;
        }
        const int nb = MS_MIN(B, n - i0);
        for (int i = 0; i < nb; i++) order[i] = idx ? idx[i0 + i] : i0 + i;
        if ((st = run_batch(m, ds, order, nb, o->tta, &bb, out->labels + (size_t)i0 * hw, out->confidence + i0,
                            out->entropy + i0)))
            goto done;
        if (want_probs) {
            ms_f32_to_f16_n(bb.oprobs, half, (size_t)nb * K * hw);
            if ((st = ms_npz_writer_write(zw, half, sizeof(uint16_t) * (size_t)nb * K * hw))) goto done;
        }
        if (o->progress) o->progress(o->user, i0 + nb, n, ms_now_s() - t0);
    }
    if (zw) {
        const int64_t s3[3] = {n, H, W}, s1[1] = {n};
        if ((want_probs && (st = ms_npz_writer_end(zw))) ||
            (st = ms_npz_writer_add(zw, "labels", MS_DT_U1, 3, s3, out->labels)) ||
            (st = ms_npz_writer_add(zw, "confidence", MS_DT_F4, 1, s1, out->confidence)) ||
            (st = ms_npz_writer_add(zw, "entropy", MS_DT_F4, 1, s1, out->entropy)))
            goto done;
    }
    if (o->csv_path && ((st = ms_atomic_open(&csv, o->csv_path)) || (st = csv_write(csv, out->labels, n, hw)))) goto done;
    /* both outputs are complete in their temp files: publish them; if the second cannot be,
     * take the first back so that a failure leaves neither */
    if (zw) {
        st = ms_npz_writer_commit(zw);
        zw = NULL;
        if (st) goto done;
    }
    if (csv) {
        st = ms_atomic_commit(csv);
        csv = NULL;
        if (st && o->npz_path && unlink(o->npz_path) == 0) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s", o->npz_path);
            char *sl = strrchr(dir, '/');
            (void)ms_fsync_dir(sl ? (sl == dir ? "/" : (*sl = 0, dir)) : ".");
        }
        if (st) goto done;
    }
    out->seconds = ms_now_s() - t0;
done:
    if (zw) ms_npz_writer_abort(zw);
    ms_atomic_abort(csv);
    bufs_free(&bb);
    free(half);
    if (st) ms_predictions_free(out);
    return st;
}

/* ------------------------------------------------------------------ selected tiles, ranking */

ms_status ms_predict_tiles(const ms_model *m, const ms_dataset *ds, const int *idx, int n, int tta, uint8_t *labels,
                           float *entropy, ms_tile_score *score) {
    ms_status st = check_input(m, ds, idx, n, 0);
    if (st) return st;
    if (!idx) n = ds->n;
    const int B = MS_MIN(n, MS_PREDICT_MAX_BATCH);
    const size_t hw = (size_t)ds->h * ds->w;
    float conf[MS_PREDICT_MAX_BATCH], ent[MS_PREDICT_MAX_BATCH];
    int order[MS_PREDICT_MAX_BATCH];
    batch_bufs bb;
    st = bufs_alloc(&bb, m, B, ds->h, ds->w, 0, 0);
    for (int i0 = 0; i0 < n && !st; i0 += B) {
        const int nb = MS_MIN(B, n - i0);
        for (int i = 0; i < nb; i++) order[i] = idx ? idx[i0 + i] : i0 + i;
        st = run_batch(m, ds, order, nb, tta, &bb, labels ? labels + (size_t)i0 * hw : NULL, conf, ent);
        if (!st && entropy) memcpy(entropy + (size_t)i0 * hw, bb.oent, sizeof(float) * hw * nb);
        for (int i = 0; i < nb && !st && score; i++) score[i0 + i] = (ms_tile_score){conf[i], ent[i]};
    }
    bufs_free(&bb);
    return st;
}

typedef struct {
    float conf;
    int i;
} ranked;

static int cmp_ranked(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    return x->conf < y->conf ? -1 : x->conf > y->conf ? 1 : (x->i > y->i) - (x->i < y->i);
}

ms_status ms_rank_least_confident(const ms_predictions *p, int k, int *order) {
    if (k < 1 || k > p->n)
        return ms_fail(MS_ERR_ARG, "rank: top %d of %d tiles: %s", k, p->n,
                       k < 1 ? "ask for at least 1" : "there are not that many");
    ranked *all = malloc(sizeof *all * (size_t)p->n);
    if (!all) return ms_fail(MS_ERR_NOMEM, "rank: %d tiles", p->n);
    for (int i = 0; i < p->n; i++) all[i] = (ranked){p->confidence[i], i};
    qsort(all, (size_t)p->n, sizeof *all, cmp_ranked);
    for (int i = 0; i < k; i++) order[i] = all[i].i;
    free(all);
    return MS_OK;
}
