/* Issue 14's core (include/marsseg_predict.h) on real files (models/default.npz,
 * datasets/sample.npz): float16 against numpy, uncertainty against the test's own entropy loop
 * over ms_model_predict's probabilities, flip TTA against the test's own mirror-and-average,
 * ms_predict's npz and CSV read back, the chunked npz writer, cancel leaving nothing behind,
 * ranking, the evaluation report, PNG folders, and the errors for bad input. */
#include "marsseg.h"
#include "marsseg_npz.h"
#include "marsseg_predict.h"
#include "testutil.h"

#include <cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[256];

static int exists(const char *dir, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The test's own uncertainty of one pixel, in double: -sum p log p / log K, and the top p. */
static double own_entropy(const float *p, size_t stride, int K, double *top) {
    double h = 0, t = 0;
    for (int k = 0; k < K; k++) {
        const double v = p[(size_t)k * stride];
        if (v > 0) h -= v * log(v);
        if (v > t) t = v;
    }
    *top = t;
    return h / log((double)K);
}

/* The test's own per-pixel reference for tiles first..first+n-1 of ds: ms_model_predict's
 * probabilities (optionally with the test's own flip TTA), argmax, entropy, top, tile means. */
typedef struct {
    float *probs;   /* (n,K,hw) */
    uint8_t *labels;
    double *ent, *top; /* (n,hw) */
    double *conf_t, *ent_t; /* (n) */
} reference;

static void reference_run(const ms_model *m, const ms_dataset *ds, int first, int n, int tta, reference *r) {
    const int K = 5;
    const size_t hw = (size_t)ds->h * ds->w;
    float *x = malloc(sizeof(float) * hw * n * 2), *pp = malloc(sizeof(float) * hw * K * n * 2);
    r->probs = malloc(sizeof(float) * hw * K * n);
    r->labels = malloc(hw * n);
    r->ent = malloc(sizeof(double) * hw * n);
    r->top = malloc(sizeof(double) * hw * n);
    r->conf_t = calloc(n, sizeof(double));
    r->ent_t = calloc(n, sizeof(double));
    for (size_t i = 0; i < hw * n; i++) x[i] = (float)ds->img[(size_t)first * hw + i] / 255.0f;
    for (int b = 0; b < n; b++) /* mirrored copies after the originals */
        for (int y = 0; y < ds->h; y++)
            for (int c = 0; c < ds->w; c++)
                x[hw * (n + b) + (size_t)y * ds->w + c] = x[hw * b + (size_t)y * ds->w + (ds->w - 1 - c)];
    CHECK_OK(ms_model_predict(m, x, tta ? 2 * n : n, ds->h, ds->w, NULL, pp));
    for (int b = 0; b < n; b++)
        for (int y = 0; y < ds->h; y++)
            for (int c = 0; c < ds->w; c++) {
                const size_t px = (size_t)y * ds->w + c, mir = (size_t)y * ds->w + (ds->w - 1 - c);
                float *dst = r->probs + (size_t)b * K * hw + px;
                for (int k = 0; k < K; k++) {
                    float v = pp[(size_t)b * K * hw + (size_t)k * hw + px];
                    if (tta) v = 0.5f * (v + pp[(size_t)(n + b) * K * hw + (size_t)k * hw + mir]);
                    dst[(size_t)k * hw] = v;
                }
                int best = 0;
                for (int k = 1; k < K; k++)
                    if (dst[(size_t)k * hw] > dst[(size_t)best * hw]) best = k;
                r->labels[(size_t)b * hw + px] = (uint8_t)best;
                r->ent[(size_t)b * hw + px] = own_entropy(dst, hw, K, &r->top[(size_t)b * hw + px]);
                r->conf_t[b] += r->top[(size_t)b * hw + px] / hw;
                r->ent_t[b] += r->ent[(size_t)b * hw + px] / hw;
            }
    free(x);
    free(pp);
}

static void reference_free(reference *r) {
    free(r->probs);
    free(r->labels);
    free(r->ent);
    free(r->top);
    free(r->conf_t);
    free(r->ent_t);
}

static void test_f16(void) {
    ms_npz *z = NULL;
    CHECK_OK(ms_npz_open(&z, "tests/fixtures/f16.npz"));
    if (!z) return;
    ms_npy_info info;
    CHECK_OK(ms_npz_info(z, "x", &info));
    const size_t n = (size_t)info.count;
    float *x = malloc(sizeof(float) * n);
    int64_t *h = malloc(sizeof(int64_t) * n);
    CHECK_OK(ms_npz_read_f32(z, "x", x, n));
    CHECK_OK(ms_npz_read_i64(z, "h", h, n));
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const uint16_t got = ms_f32_to_f16(x[i]);
        if (got != (uint16_t)h[i] && bad++ < 5) CHECK(0, "f16(%.9g) = 0x%04x, numpy 0x%04x", x[i], got, (unsigned)h[i]);
    }
    CHECK(bad == 0 && n > 4000, "%d of %zu float16 conversions differ from numpy's", bad, n);
    free(x);
    free(h);
    ms_npz_close(z);
}

/* the model's per-pixel outputs against the reference, without and with TTA */
static void test_pixels(const ms_model *m, const ms_dataset *ds) {
    const int n = 6, first = 10;
    const size_t hw = (size_t)ds->h * ds->w;
    for (int tta = 0; tta <= 1; tta++) {
        reference r;
        reference_run(m, ds, first, n, tta, &r);
        float *x = malloc(sizeof(float) * hw * n), *ent = malloc(sizeof(float) * hw * n), *top = malloc(sizeof(float) * hw * n);
        float *probs = malloc(sizeof(float) * hw * 5 * n);
        uint8_t *lab = malloc(hw * n);
        for (size_t i = 0; i < hw * n; i++) x[i] = (float)ds->img[(size_t)first * hw + i] / 255.0f;
        const ms_pixel_out o = {lab, probs, ent, top};
        CHECK_OK(ms_model_predict_ex(m, x, n, ds->h, ds->w, tta, &o));
        double de = 0, dt = 0, dp = 0;
        size_t dl = 0;
        for (size_t i = 0; i < hw * n; i++) {
            de = fmax(de, fabs(ent[i] - r.ent[i]));
            dt = fmax(dt, fabs(top[i] - r.top[i]));
            dl += lab[i] != r.labels[i];
        }
        for (size_t i = 0; i < hw * n * 5; i++) dp = fmax(dp, fabs(probs[i] - r.probs[i]));
        CHECK(de < 2e-5 && dt < 2e-6 && dp < 1e-6 && dl == 0,
              "tta=%d: entropy off by %.3g, top by %.3g, probs by %.3g, %zu labels differ", tta, de, dt, dp, dl);
        /* without the probabilities (as /segment asks), the uncertainty comes from the vector
         * softmax (core/model.c's exp_nonpos8, 8 pixels at a time): the same reference holds */
        const ms_pixel_out o2 = {lab, NULL, ent, top};
        memset(ent, 0xff, sizeof(float) * hw * n); /* NaN: a pixel left unwritten fails */
        memset(top, 0xff, sizeof(float) * hw * n);
        memset(lab, 0xff, hw * n);
        CHECK_OK(ms_model_predict_ex(m, x, n, ds->h, ds->w, tta, &o2));
        de = dt = 0, dl = 0;
        for (size_t i = 0; i < hw * n; i++) {
            de = fmax(de, isnan(ent[i]) ? 1 : fabs(ent[i] - r.ent[i]));
            dt = fmax(dt, isnan(top[i]) ? 1 : fabs(top[i] - r.top[i]));
            dl += lab[i] != r.labels[i];
        }
        CHECK(de < 2e-5 && dt < 2e-6 && dl == 0, "tta=%d, no probs: entropy off by %.3g, top by %.3g, %zu labels differ",
              tta, de, dt, dl);
        /* tile scores: means of the maps */
        float conf[6], te[6];
        ms_tile_scores(ent, top, n, hw, conf, te);
        for (int b = 0; b < n; b++)
            CHECK(fabs(conf[b] - r.conf_t[b]) < 1e-5 && fabs(te[b] - r.ent_t[b]) < 1e-5, "tile %d scores %g %g vs %g %g", b,
                  conf[b], te[b], r.conf_t[b], r.ent_t[b]);
        /* ms_pixel_entropy on the reference probabilities */
        float t1;
        const float h1 = ms_pixel_entropy(r.probs + 77, hw, 5, &t1);
        CHECK(fabs(h1 - r.ent[77]) < 1e-5 && fabs(t1 - r.top[77]) < 1e-7, "ms_pixel_entropy %g vs %g", h1, r.ent[77]);
        /* segment_ex on one tile (a multiple of 16: no padding; segment scales by *(1/255)) */
        uint8_t *sl = malloc(hw), *sl2 = malloc(hw);
        float *sent = malloc(sizeof(float) * hw);
        ms_tile_score sc;
        const uint8_t *g = ds->img + (size_t)first * hw;
        CHECK_OK(ms_model_segment_ex(m, g, ds->h, ds->w, tta, sl, sent, &sc));
        CHECK_OK(ms_model_segment(m, g, ds->h, ds->w, tta, sl2));
        CHECK(!memcmp(sl, sl2, hw), "segment_ex and segment disagree (tta=%d)", tta);
        size_t sd = 0;
        for (size_t i = 0; i < hw; i++) sd += fabs(sent[i] - r.ent[i]) > 1e-3;
        CHECK(sd < hw / 1000 && fabs(sc.confidence - r.conf_t[0]) < 1e-3 && fabs(sc.entropy - r.ent_t[0]) < 1e-3,
              "segment_ex uncertainty: %zu pixels off, scores %g %g vs %g %g", sd, sc.confidence, sc.entropy, r.conf_t[0],
              r.ent_t[0]);
        /* an odd size: labels as segment's, entropy in [0,1], scores over the image's own pixels */
        CHECK_OK(ms_model_segment_ex(m, g, 37, 101, tta, sl, sent, &sc));
        CHECK_OK(ms_model_segment(m, g, 37, 101, tta, sl2));
        int inside = 1;
        double mean = 0;
        for (int i = 0; i < 37 * 101; i++) inside &= sent[i] >= 0 && sent[i] <= 1, mean += sent[i] / (37 * 101);
        CHECK(!memcmp(sl, sl2, 37 * 101) && inside && fabs(mean - sc.entropy) < 1e-5, "odd-size segment_ex");
        uint8_t gray[4];
        const float hv[4] = {0.0f, 1.0f, 0.5f, 0.2f};
        ms_entropy_to_gray(hv, 4, gray);
        CHECK(gray[0] == 0 && gray[1] == 255 && gray[2] == 128 && gray[3] == 51, "entropy gray %d %d %d %d", gray[0], gray[1],
              gray[2], gray[3]);
        free(sl);
        free(sl2);
        free(sent);
        free(x);
        free(ent);
        free(top);
        free(probs);
        free(lab);
        reference_free(&r);
    }
}

typedef struct {
    atomic_int *flag;
    int calls, last_done, total;
} progress_rec;

/* A batch larger than the frozen model's chunk of 32 and not a multiple of it: the images after
 * the last whole chunk run in buffers laid out for 32 (their skip connections were read from the
 * wrong place until core/unet_infer.c placed them by the chunk's own size). 40 at once must give
 * what 8 at a time give. */
static void test_ragged_batch(const ms_model *m, const ms_dataset *ds) {
    enum { N = 40, S = 8 };
    CHECK(ds->n >= N, "the sample's test_set has %d tiles, fewer than %d", ds->n, N);
    if (ds->n < N) return;
    const size_t hw = (size_t)ds->h * ds->w;
    float *x = malloc(sizeof(float) * hw * N), *pa = malloc(sizeof(float) * hw * 5 * N), *pb = malloc(sizeof(float) * hw * 5 * N);
    uint8_t *la = malloc(hw * N), *lb = malloc(hw * N);
    for (size_t i = 0; i < hw * N; i++) x[i] = (float)ds->img[i] / 255.0f;
    const ms_pixel_out all = {la, pa, NULL, NULL};
    CHECK_OK(ms_model_predict_ex(m, x, N, ds->h, ds->w, 0, &all));
    for (int b = 0; b < N; b += S) {
        const ms_pixel_out o = {lb + b * hw, pb + (size_t)b * 5 * hw, NULL, NULL};
        CHECK_OK(ms_model_predict_ex(m, x + b * hw, S, ds->h, ds->w, 0, &o));
    }
    double worst = 0;
    for (size_t i = 0; i < hw * 5 * N; i++) worst = fmax(worst, fabs((double)pa[i] - pb[i]));
    size_t diff = 0;
    for (size_t i = 0; i < hw * N; i++) diff += la[i] != lb[i];
    CHECK(worst < 1e-4 && diff <= hw * N / 10000, "40 images at once vs 8 at a time: probabilities %g apart, %zu labels differ", worst, diff);
    free(x), free(pa), free(pb), free(la), free(lb);
}

static void on_progress(void *user, int done, int total, double elapsed) {
    progress_rec *p = user;
    CHECK(done > p->last_done && done <= total && elapsed >= 0, "progress %d/%d after %d", done, total, p->last_done);
    p->calls++, p->last_done = done, p->total = total;
    if (p->flag) atomic_store(p->flag, 1); /* cancel after the first batch */
}

static void test_predict_outputs(const ms_model *m, const ms_dataset *ds) {
    const size_t hw = (size_t)ds->h * ds->w;
    const int n = ds->n;
    char npz[512], csv[512];
    snprintf(npz, sizeof npz, "%s/preds.npz", tmp);
    snprintf(csv, sizeof csv, "%s/sub.csv", tmp);
    progress_rec pr = {0};
    ms_predict_opts o = {.batch = 24, .npz_path = npz, .probs = 1, .csv_path = csv, .progress = on_progress, .user = &pr};
    ms_predictions p;
    CHECK_OK(ms_predict(m, ds, NULL, 0, &o, &p));
    CHECK(pr.calls == (n + 23) / 24 && pr.last_done == n && pr.total == n, "progress: %d calls, last %d", pr.calls, pr.last_done);
    reference r;
    reference_run(m, ds, 0, n, 0, &r);
    size_t dl = 0;
    for (size_t i = 0; i < hw * n; i++) dl += p.labels[i] != r.labels[i];
    CHECK(dl == 0, "%zu labels differ from ms_model_predict's", dl);
    /* the npz, read back */
    ms_npz *z = NULL;
    CHECK_OK(ms_npz_open(&z, npz));
    ms_npy_info info;
    uint8_t *lab = malloc(hw * n);
    float *conf = malloc(sizeof(float) * n), *ent = malloc(sizeof(float) * n), *pf = malloc(sizeof(float) * hw * 5 * n);
    CHECK_OK(ms_npz_info(z, "labels", &info));
    CHECK(info.dtype == MS_DT_U1 && info.ndim == 3 && info.shape[0] == n && info.shape[1] == ds->h, "labels shape");
    CHECK_OK(ms_npz_info(z, "probs", &info));
    CHECK(info.dtype == MS_DT_F2 && info.ndim == 4 && info.shape[1] == 5 && info.shape[3] == ds->w, "probs shape");
    CHECK_OK(ms_npz_info(z, "confidence", &info));
    CHECK(info.dtype == MS_DT_F4 && info.ndim == 1 && info.shape[0] == n, "confidence shape");
    CHECK_OK(ms_npz_read_u8(z, "labels", lab, hw * n));
    CHECK_OK(ms_npz_read_f32(z, "confidence", conf, n));
    CHECK_OK(ms_npz_read_f32(z, "entropy", ent, n));
    CHECK_OK(ms_npz_read_f32(z, "probs", pf, hw * 5 * n));
    ms_npz_close(z);
    CHECK(!memcmp(lab, p.labels, hw * n), "npz labels differ from the returned ones");
    double dc = 0, de = 0, dp = 0;
    for (int i = 0; i < n; i++) dc = fmax(dc, fabs(conf[i] - r.conf_t[i])), de = fmax(de, fabs(ent[i] - r.ent_t[i]));
    /* float16 keeps 11 significant bits: half an ulp is 2^-11 relative (2^-25 absolute below 2^-14);
     * the reference is a separate float32 pass (other batches, maybe other convolution algorithms
     * by the plan: F(4x4) Winograd's differ from F(2x2)'s by up to ~2e-5 relative on the smallest
     * probabilities), which the rounding can add to: 2^-11 + 5e-5 */
    for (size_t i = 0; i < hw * 5 * n; i++) dp = fmax(dp, fabs(pf[i] - r.probs[i]) / fmax(fabs(r.probs[i]), 0x1p-14));
    CHECK(dc < 1e-5 && de < 1e-5 && dp <= 1.0 / 2048 + 5e-5, "npz: confidence off by %.3g, entropy by %.3g, probs by %.3g (relative)", dc, de, dp);
    /* the CSV, read back */
    FILE *f = fopen(csv, "r");
    CHECK(f != NULL, "no %s", csv);
    if (f) {
        size_t cap = 64 * hw;
        char *line = malloc(cap);
        int ok = fgets(line, (int)cap, f) && !strncmp(line, "id,0,1,2,", 9);
        char last[32];
        snprintf(last, sizeof last, ",%zu\n", hw - 1);
        ok &= strlen(line) > strlen(last) && !strcmp(line + strlen(line) - strlen(last), last);
        CHECK(ok, "CSV header: %.40s", line);
        int rows = 0, mism = 0;
        while (fgets(line, (int)cap, f)) {
            char *s = line, *end;
            long id = strtol(s, &end, 10);
            mism += id != rows;
            for (size_t px = 0; px < hw; px++) {
                s = end + 1;
                long v = strtol(s, &end, 10);
                if (end == s || v != p.labels[(size_t)rows * hw + px]) mism++;
            }
            mism += *end != '\n';
            rows++;
        }
        CHECK(rows == n && mism == 0, "CSV: %d rows, %d mismatches against labels", rows, mism);
        free(line);
        fclose(f);
    }
    /* TTA through ms_predict: its scores are the reference's with TTA */
    reference rt;
    reference_run(m, ds, 0, 8, 1, &rt);
    ms_predict_opts ot = {.tta = 1};
    ms_predictions pt;
    const int first8[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    CHECK_OK(ms_predict(m, ds, first8, 8, &ot, &pt));
    for (int i = 0; i < 8 && pt.n == 8; i++)
        CHECK(fabs(pt.confidence[i] - rt.conf_t[i]) < 1e-5 && !memcmp(pt.labels + i * hw, rt.labels + i * hw, hw), "tta tile %d", i);
    ms_predictions_free(&pt);
    reference_free(&rt);
    /* ranking: ascending confidence, the test's own sort */
    int order[5];
    CHECK_OK(ms_rank_least_confident(&p, 5, order));
    for (int i = 0; i < 5; i++) {
        int below = 0; /* exactly i tiles are less confident than the i-th */
        for (int j = 0; j < n; j++) below += p.confidence[j] < p.confidence[order[i]];
        CHECK(below == i, "rank %d: tile %d has %d tiles below it", i, order[i], below);
    }
    CHECK(ms_rank_least_confident(&p, n + 1, order) == MS_ERR_ARG && strstr(ms_last_error(), "not that many"), "top > n: %s",
          ms_last_error());
    /* cancel after the first batch: an error, and neither output nor a temp file left */
    unlink(npz);
    unlink(csv);
    atomic_int stop = 0;
    progress_rec pc = {.flag = &stop};
    ms_predict_opts oc = {.batch = 8, .npz_path = npz, .probs = 1, .csv_path = csv, .progress = on_progress, .user = &pc, .cancel = &stop};
    ms_predictions px;
    CHECK(ms_predict(m, ds, NULL, 0, &oc, &px) == MS_ERR_CANCELLED && pc.calls == 1, "cancel: %s", ms_last_error());
    CHECK(count_files(tmp) == 0, "cancel left %d files in %s", count_files(tmp), tmp);
    /* an output that cannot be written: an error naming it, and nothing left */
    ms_predict_opts ob = {.npz_path = npz, .csv_path = "/nonexistent-dir/sub.csv"};
    CHECK(ms_predict(m, ds, first8, 8, &ob, &px) == MS_ERR_IO && strstr(ms_last_error(), "nonexistent-dir"), "bad csv: %s",
          ms_last_error());
    CHECK(count_files(tmp) == 0, "a failed CSV left %d files", count_files(tmp));
    ms_predictions_free(&p);
    reference_free(&r);
    free(lab);
    free(conf);
    free(ent);
    free(pf);
}

/* the streamed npz member is byte for byte what ms_npz_writer_add writes */
static void test_chunked_writer(void) {
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/whole.npz", tmp);
    snprintf(b, sizeof b, "%s/chunked.npz", tmp);
    uint16_t data[3 * 5 * 7];
    for (int i = 0; i < 105; i++) data[i] = (uint16_t)(i * 977);
    const int64_t shape[3] = {3, 5, 7}, one = 4;
    const float tail[4] = {1, 2, 3, 4};
    ms_npz_writer *w = NULL;
    CHECK_OK(ms_npz_writer_open(&w, a));
    CHECK_OK(ms_npz_writer_add(w, "probs", MS_DT_F2, 3, shape, data));
    CHECK_OK(ms_npz_writer_add(w, "tail", MS_DT_F4, 1, &one, tail));
    CHECK_OK(ms_npz_writer_commit(w));
    CHECK_OK(ms_npz_writer_open(&w, b));
    CHECK_OK(ms_npz_writer_begin(w, "probs", MS_DT_F2, 3, shape));
    CHECK(ms_npz_writer_add(w, "x", MS_DT_F4, 1, &one, tail) == MS_ERR_ARG, "add while a member streams must fail");
    size_t off = 0;
    const size_t pieces[] = {1, 33, 0, 100, 76};
    for (size_t i = 0; i < 5; i++) {
        CHECK_OK(ms_npz_writer_write(w, (const uint8_t *)data + off, pieces[i]));
        off += pieces[i];
    }
    CHECK(off == sizeof data, "pieces sum");
    CHECK_OK(ms_npz_writer_end(w));
    CHECK_OK(ms_npz_writer_add(w, "tail", MS_DT_F4, 1, &one, tail));
    CHECK_OK(ms_npz_writer_commit(w));
    uint8_t *fa = NULL, *fb = NULL;
    size_t la = 0, lb = 0;
    CHECK_OK(ms_read_file(a, 1 << 20, &fa, &la));
    CHECK_OK(ms_read_file(b, 1 << 20, &fb, &lb));
    CHECK(la == lb && fa && fb && !memcmp(fa, fb, la), "chunked npz differs from the whole-array one (%zu vs %zu bytes)", lb, la);
    free(fa);
    free(fb);
    /* too few bytes: the end and the commit fail, nothing is left */
    unlink(b);
    CHECK_OK(ms_npz_writer_open(&w, b));
    CHECK_OK(ms_npz_writer_begin(w, "probs", MS_DT_F2, 3, shape));
    CHECK_OK(ms_npz_writer_write(w, data, 10));
    CHECK(ms_npz_writer_write(w, data, sizeof data) == MS_ERR_ARG, "more bytes than the shape must fail");
    CHECK(ms_npz_writer_end(w) == MS_ERR_ARG && strstr(ms_last_error(), "short"), "short end: %s", ms_last_error());
    CHECK(ms_npz_writer_commit(w) != MS_OK, "a commit after a failed member must fail");
    CHECK(access(b, F_OK) != 0 && count_files(tmp) == 1, "a failed chunked write left files (%d)", count_files(tmp));
    unlink(a);
}

static cJSON *read_json(const char *path) {
    uint8_t *buf = NULL;
    size_t len = 0;
    if (ms_read_file(path, 1 << 22, &buf, &len)) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    return j;
}

static void test_rank_and_report(const ms_model *m, const ms_dataset *test, const ms_dataset *train) {
    char dir[512], p[1100];
    snprintf(dir, sizeof dir, "%s/rank", tmp);
    ms_rank_opts ro = {.top = 4};
    cJSON *list = NULL;
    CHECK_OK(ms_rank(m, test, NULL, 0, &ro, dir, &list));
    CHECK(cJSON_GetArraySize(list) == 4 && count_files(dir) == 13 && exists(dir, "index.csv"), "rank dir: %d files",
          count_files(dir));
    const cJSON *e;
    double prev = -1;
    cJSON_ArrayForEach(e, list) {
        const int i = (int)cJSON_GetObjectItem(e, "index")->valuedouble;
        const double c = cJSON_GetObjectItem(e, "confidence")->valuedouble;
        char f[64];
        snprintf(f, sizeof f, "%05d_uncertainty.png", i);
        CHECK(c >= prev && exists(dir, f), "rank entry %d (%g after %g)", i, c, prev);
        prev = c;
    }
    cJSON_Delete(list);
    ro.top = test->n + 1;
    CHECK(ms_rank(m, test, NULL, 0, &ro, dir, NULL) == MS_ERR_ARG && strstr(ms_last_error(), "more than"), "top > n: %s",
          ms_last_error());
    ro.top = 2; /* an earlier ranking is replaced */
    CHECK_OK(ms_rank(m, test, NULL, 0, &ro, dir, NULL));
    CHECK(count_files(dir) == 7, "replaced rank dir: %d files", count_files(dir));
    snprintf(p, sizeof p, "%s/mine", tmp); /* a directory that is not ours is refused, untouched */
    mkdir(p, 0755);
    snprintf(dir, sizeof dir, "%s/mine/keep.txt", tmp);
    FILE *f = fopen(dir, "w");
    if (f) fclose(f);
    CHECK(ms_rank(m, test, NULL, 0, &ro, p, NULL) == MS_ERR_ARG && strstr(ms_last_error(), "not an earlier output"), "foreign dir: %s",
          ms_last_error());
    CHECK(count_files(p) == 1, "foreign dir touched");

    /* the report: confusion as ms_evaluate's, figures, worst tiles */
    const int n = 48;
    int idx[48];
    for (int i = 0; i < n; i++) idx[i] = 3 * i + 1;
    snprintf(dir, sizeof dir, "%s/report", tmp);
    ms_report_opts rep = {.worst = 5, .model_label = "models/default.npz", .data_label = "sample"};
    cJSON *rj = NULL;
    ms_confusion cm, ref = {0}, ev = {0};
    CHECK_OK(ms_eval_report(m, train, idx, n, &rep, dir, &rj, &cm));
    /* the reference: the labels of ms_model_predict (the inference form, as the report's) */
    {
        const size_t thw = (size_t)train->h * train->w;
        float *x = malloc(sizeof(float) * n * thw);
        uint8_t *lab = malloc((size_t)n * thw), *truth = malloc((size_t)n * thw);
        for (int i = 0; i < n; i++)
            for (size_t q = 0; q < thw; q++) {
                x[i * thw + q] = train->img[idx[i] * thw + q] / 255.0f;
                truth[i * thw + q] = train->mask[idx[i] * thw + q];
            }
        CHECK_OK(ms_model_predict(m, x, n, train->h, train->w, lab, NULL));
        ms_confusion_add(&ref, truth, lab, (size_t)n * thw);
        free(x), free(lab), free(truth);
    }
    CHECK(!memcmp(&cm, &ref, sizeof cm), "report confusion differs from ms_model_predict's labels'");
    /* ms_evaluate runs the unfolded eval-mode graph: the same up to float rounding (near-ties) */
    CHECK_OK(ms_evaluate(m, train, idx, n, 0, 16, &ev));
    int64_t moved = 0;
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 5; b++) moved += llabs(ev.cm[a][b] - ref.cm[a][b]);
    CHECK(moved <= (int64_t)n * train->h * train->w / 10000, "ms_evaluate's confusion within float rounding: %lld cells moved",
          (long long)moved);
    snprintf(p, sizeof p, "%s/report.json", dir);
    cJSON *disk = read_json(p);
    CHECK(disk && cJSON_Compare(disk, rj, 1), "report.json differs from the returned report");
    ms_scores s;
    ms_confusion_scores(&ref, &s);
    const cJSON *iou = cJSON_GetObjectItem(disk, "iou"), *prec = cJSON_GetObjectItem(disk, "precision"),
                *rec = cJSON_GetObjectItem(disk, "recall"), *norm = cJSON_GetObjectItem(disk, "confusion_normalized");
    for (int k = 0; k < 5; k++) {
        int64_t row = 0, col = 0;
        for (int j = 0; j < 5; j++) row += ref.cm[k][j], col += ref.cm[j][k];
        const double want_p = (double)ref.cm[k][k] / col, want_r = (double)ref.cm[k][k] / row;
        CHECK(fabs(cJSON_GetArrayItem(iou, k)->valuedouble - s.iou[k]) < 1e-12 &&
                  fabs(cJSON_GetArrayItem(prec, k)->valuedouble - want_p) < 1e-12 &&
                  fabs(cJSON_GetArrayItem(rec, k)->valuedouble - want_r) < 1e-12 &&
                  fabs(cJSON_GetArrayItem(cJSON_GetArrayItem(norm, k), k)->valuedouble - want_r) < 1e-12,
              "class %d figures", k);
    }
    CHECK(fabs(cJSON_GetObjectItem(disk, "miou")->valuedouble - s.miou) < 1e-12, "report miou");
    const cJSON *worst = cJSON_GetObjectItem(disk, "worst");
    CHECK(cJSON_GetArraySize(worst) == 5 && count_files(dir) == 21, "worst: %d, files %d", cJSON_GetArraySize(worst),
          count_files(dir));
    prev = -1;
    const size_t hw = (size_t)train->h * train->w;
    cJSON_ArrayForEach(e, worst) {
        const int i = (int)cJSON_GetObjectItem(e, "index")->valuedouble;
        const double mi = cJSON_GetObjectItem(e, "miou")->valuedouble;
        int chosen = 0;
        for (int j = 0; j < n; j++) chosen |= idx[j] == i;
        /* the tile's own mIoU, recomputed */
        uint8_t *lab = malloc(hw);
        CHECK_OK(ms_predict_tiles(m, train, &i, 1, 0, lab, NULL, NULL));
        ms_confusion tc;
        memset(&tc, 0, sizeof tc);
        ms_confusion_add(&tc, train->mask + (size_t)i * hw, lab, hw);
        ms_scores ts;
        ms_confusion_scores(&tc, &ts);
        free(lab);
        CHECK(chosen && mi >= prev && fabs(ts.miou - mi) < 1e-12 &&
                  exists(dir, cJSON_GetStringValue(cJSON_GetObjectItem(e, "truth"))),
              "worst tile %d: miou %g (recomputed %g) after %g", i, mi, ts.miou, prev);
        prev = mi;
    }
    cJSON_Delete(rj);
    cJSON_Delete(disk);
    /* unlabelled data, and a model whose classes do not cover the labels */
    CHECK(ms_eval_report(m, test, NULL, 0, &rep, dir, NULL, NULL) == MS_ERR_ARG && strstr(ms_last_error(), "no masks"),
          "unlabelled: %s", ms_last_error());
    ms_model_config c3 = {2, 4, 3, 0.0f, 0, 0};
    ms_model *m3 = NULL;
    CHECK_OK(ms_model_create(&m3, &c3, 7));
    CHECK(ms_eval_report(m3, train, NULL, 0, &rep, dir, NULL, NULL) == MS_ERR_SHAPE && strstr(ms_last_error(), "3 classes"),
          "3-class model: %s", ms_last_error());
    ms_model_free(m3);
    CHECK(count_files(dir) == 21, "a refused report touched the old one");
}

static void test_inputs(void) {
    char key[64];
    CHECK_OK(ms_predict_default_key("datasets/sample.npz", key, sizeof key));
    CHECK(!strcmp(key, "test_set"), "default key %s", key);
    char dir[512], p[1024];
    snprintf(dir, sizeof dir, "%s/pngs", tmp);
    mkdir(dir, 0755);
    uint8_t img[3][32 * 16], mask[3][32 * 16];
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < 32 * 16; i++) img[t][i] = (uint8_t)(i * 7 + t), mask[t][i] = (uint8_t)((i / 16 + t) % 5);
        uint8_t *png;
        size_t len;
        const char *names[3] = {"b", "a", "c"}; /* name order: a, b, c */
        CHECK_OK(ms_png_encode_gray(img[t], 16, 32, &png, &len));
        snprintf(p, sizeof p, "%s/%s.png", dir, names[t]);
        CHECK_OK(ms_write_file_atomic(p, png, len));
        free(png);
        CHECK_OK(ms_png_encode_labels(mask[t], 16, 32, &png, &len));
        snprintf(p, sizeof p, "%s/%s_mask.png", dir, names[t]);
        CHECK_OK(ms_write_file_atomic(p, png, len));
        free(png);
    }
    ms_dataset ds;
    char **names = NULL;
    CHECK_OK(ms_dataset_load_dir(&ds, dir, 0, &names));
    CHECK(ds.n == 3 && ds.h == 32 && ds.w == 16 && ds.mask && names && !strcmp(names[0], "a.png") &&
              !memcmp(ds.img, img[1], 512) && !memcmp(ds.mask + 512, mask[0], 512),
          "PNG folder as a dataset");
    ms_names_free(names, ds.n);
    ms_dataset_free(&ds);
    snprintf(p, sizeof p, "%s/c_mask.png", dir); /* one mask missing: unlabelled */
    unlink(p);
    CHECK_OK(ms_predict_load(&ds, dir, NULL, 0, key, sizeof key));
    CHECK(ds.n == 3 && !ds.mask && key[0] == 0, "folder without every mask");
    ms_dataset_free(&ds);
    uint8_t *png;
    size_t len;
    CHECK_OK(ms_png_encode_gray(img[0], 8, 8, &png, &len));
    snprintf(p, sizeof p, "%s/d.png", dir);
    CHECK_OK(ms_write_file_atomic(p, png, len));
    free(png);
    CHECK(ms_dataset_load_dir(&ds, dir, 0, NULL) == MS_ERR_SHAPE && strstr(ms_last_error(), "one size"), "mixed sizes: %s",
          ms_last_error());
    snprintf(p, sizeof p, "%s/empty", tmp);
    mkdir(p, 0755);
    CHECK(ms_dataset_load_dir(&ds, p, 0, NULL) == MS_ERR_NOTFOUND && strstr(ms_last_error(), "no .png"), "empty dir: %s",
          ms_last_error());
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/marsseg-test-predict-XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    ms_set_threads(0);
    test_f16();
    test_chunked_writer();
    ms_model *m = NULL;
    ms_dataset test = {0}, train = {0};
    CHECK_OK(ms_model_load(&m, "models/default.npz"));
    CHECK_OK(ms_dataset_load(&test, "datasets/sample.npz", "test_set", 0));
    CHECK_OK(ms_dataset_load(&train, "datasets/sample.npz", "training_set", 0));
    if (m && test.n && train.n) {
        test_pixels(m, &test);
        test_ragged_batch(m, &test);
        test_predict_outputs(m, &test);
        test_rank_and_report(m, &test, &train);
    }
    test_inputs();
    ms_model_free(m);
    ms_dataset_free(&test);
    ms_dataset_free(&train);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return TEST_END();
}
