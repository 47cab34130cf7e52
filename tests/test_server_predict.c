/* Issue 14's service half against a real `marsseg serve`: every new route and format with real
 * files.
 *   1. POST /segment?format=uncertainty: the gray PNG against entropies computed here from the
 *      model's probabilities (in this process); X-Confidence; ?format=json's confidence and
 *      entropy; ?format=json&maps=1's labels and uncertainty equal the PNG answers;
 *   2. POST /predictions (JSON on a dataset with probs; an npz body with TTA): the result npz
 *      read back (labels and scores against this process's inference), the Kaggle CSV read back
 *      and held to the labels;
 *   3. GET /datasets/{id}/uncertain: the least-confident tiles, in order, against the prediction;
 *   4. POST /evaluations: the report (confusion counts add up, row-normalised rows sum to 1, IoU
 *      from the counts) and its PNGs; a training job's "if_better" activation (both figures,
 *      the decision following them) and an evaluation of its validation split that reproduces
 *      the job's figure;
 *   5. the bad inputs, each a 4xx JSON error: missing key, wrong dtype, wrong rank, top > N, an
 *      unlabelled dataset to an evaluation, a model trained for fewer classes, unknown
 *      model/dataset/field;
 *   6. cancel of a running prediction (no result), and restart survival: a prediction running
 *      when the server is SIGKILLed and one queued behind it both succeed after the restart.
 * The long passes use the bundled default model (registered through a finished job's directory,
 * as a restart registers one); everything else a depth-2, base-4 model. */
#include "marsseg.h"
#include "marsseg_predict.h"
#include "testutil.h"
#include "srvutil.h"
#include "srvpass.h"
#include "npzutil.h"

#include <math.h>

#define H 64
#define W 128
#define NTRAIN 32
#define NTEST 40
#define NLONG 768 /* tiles of the long prediction: a few seconds with the default model */

static char g_model[512], g_data[512], g_mixed[512];
static uint8_t *g_test_img; /* NTEST unlabelled tiles (also the mixed file's test_set) */

/* ------------------------------------------------------------------ fixtures */

static uint8_t tile_px(int i, int y, int x, uint8_t *mask) {
    const uint8_t m = (uint8_t)(((x + 3 * i) / 16 + y / 16) % MS_NUM_CLASSES);
    if (mask) *mask = m;
    return (uint8_t)(m * 48 + ((x * 7 + y * 13 + i * 29) & 15));
}

/* training_set (N,2,H,W) labelled and test_set (N,H,W) unlabelled in one file: the "sample". */
static int make_mixed(const char *path) {
    uint8_t *tr = malloc((size_t)NTRAIN * 2 * H * W);
    g_test_img = malloc((size_t)NTEST * H * W);
    if (!tr || !g_test_img) return -1;
    for (int i = 0; i < NTRAIN; i++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t m;
                tr[((size_t)i * 2 * H + y) * W + x] = tile_px(i, y, x, &m);
                tr[((size_t)(i * 2 + 1) * H + y) * W + x] = m;
            }
    for (int i = 0; i < NTEST; i++)
        for (int p = 0; p < H * W; p++) g_test_img[(size_t)i * H * W + p] = tile_px(i + 100, p / W, p % W, NULL);
    ms_npz_writer *wr = NULL;
    int64_t s4[4] = {NTRAIN, 2, H, W}, s3[3] = {NTEST, H, W};
    int rc = ms_npz_writer_open(&wr, path) == MS_OK && ms_npz_writer_add(wr, "training_set", MS_DT_U1, 4, s4, tr) == MS_OK &&
                     ms_npz_writer_add(wr, "test_set", MS_DT_U1, 3, s3, g_test_img) == MS_OK && ms_npz_writer_commit(wr) == MS_OK
                 ? 0
                 : -1;
    if (rc && wr) ms_npz_writer_abort(wr);
    free(tr);
    return rc;
}

/* An npz of n images (n,H,W) under key, in memory. */
static uint8_t *npz_images(const char *key, int n, size_t *len) {
    char path[PATH_MAX];
    path_in_tmp(path, sizeof path, "body.npz");
    uint8_t *img = malloc((size_t)n * H * W), *buf = NULL;
    for (int i = 0; img && i < n; i++)
        for (int p = 0; p < H * W; p++) img[(size_t)i * H * W + p] = tile_px(i + 7, p / W, p % W, NULL);
    ms_npz_writer *wr = NULL;
    int64_t s3[3] = {n, H, W};
    if (img && ms_npz_writer_open(&wr, path) == MS_OK && ms_npz_writer_add(wr, key, MS_DT_U1, 3, s3, img) == MS_OK &&
        ms_npz_writer_commit(wr) == MS_OK)
        ms_read_file(path, 0, &buf, len);
    else if (wr)
        ms_npz_writer_abort(wr);
    free(img);
    return buf;
}

/* A finished job's directory, as a restart finds one: its model registered as `id`. */
static int fake_job(const char *id, const char *model_src, int link) {
    char dir[1024], p[1100], json[256];
    snprintf(dir, sizeof dir, "%s/jobs", g_data);
    mkdir(g_data, 0755);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/jobs/%s", g_data, id);
    if (mkdir(dir, 0755)) return -1;
    snprintf(p, sizeof p, "%s/model.npz", dir);
    if (link ? symlink(model_src, p) : rename(model_src, p)) return -1;
    snprintf(p, sizeof p, "%s/job.json", dir);
    snprintf(json, sizeof json, "{\"id\":\"%s\",\"state\":\"succeeded\",\"dataset\":\"sample\",\"activate\":false,\"config\":{},"
                                "\"model\":\"%s\",\"created\":1}", id, id);
    return write_file(p, json, strlen(json));
}

static int start(struct srv *s) {
    static const char *const extra[] = {"--max-body", "1M", "--max-pixels", "300000", "--max-upload", "32M", NULL};
    struct srv_opts o = {.extra = extra, .model = g_model, .dataset = g_mixed};
    return srv_start_opts(s, g_data, &o);
}

/* The model's probabilities of n tiles (n,5,H,W), in this process. */
static float *probs_of(const uint8_t *img, int n) {
    ms_model *m = NULL;
    float *x = malloc(sizeof(float) * n * H * W), *p = malloc(sizeof(float) * n * MS_NUM_CLASSES * H * W);
    if (ms_model_load(&m, g_model) || !x || !p) return free(x), free(p), ms_model_free(m), NULL;
    for (size_t i = 0; i < (size_t)n * H * W; i++) x[i] = img[i] / 255.0f;
    const ms_pixel_out o = {NULL, p, NULL, NULL};
    const ms_status st = ms_model_predict_ex(m, x, n, H, W, 0, &o);
    ms_model_free(m);
    free(x);
    if (st) free(p), p = NULL;
    return p;
}

/* H = -sum p ln p / ln 5 of pixel i of tile t, and its top probability. */
static double entropy_at(const float *p, int t, size_t i, double *top) {
    const size_t hw = (size_t)H * W;
    double h = 0, best = 0;
    for (int k = 0; k < MS_NUM_CLASSES; k++) {
        const double q = p[((size_t)t * MS_NUM_CLASSES + k) * hw + i];
        if (q > 0) h -= q * log(q);
        if (q > best) best = q;
    }
    if (top) *top = best;
    return h / log(MS_NUM_CLASSES);
}

static uint8_t *b64(const char *s, size_t *n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t *out = malloc(strlen(s) / 4 * 3 + 3);
    uint32_t acc = 0;
    int bits = 0;
    *n = 0;
    for (; out && *s && *s != '='; s++) {
        const char *c = strchr(abc, *s);
        if (!c) return free(out), NULL;
        acc = acc << 6 | (uint32_t)(c - abc);
        if ((bits += 6) >= 8) out[(*n)++] = (uint8_t)(acc >> (bits -= 8));
    }
    return out;
}

/* ------------------------------------------------------------------ 1. /segment */

static void test_segment(int port) {
    const uint8_t *tile = g_test_img; /* test_set tile 0 */
    uint8_t *png = NULL;
    size_t plen = 0;
    CHECK(ms_png_encode_gray(tile, W, H, &png, &plen) == MS_OK, "tile PNG");
    float *p = probs_of(tile, 1);
    CHECK(p != NULL, "probabilities in this process: %s", ms_last_error());
    struct reqopt o = {.ctype = "image/png", .body = png, .len = plen, .extra_header = NULL};
    struct resp r;
    http("POST", port, "/segment?format=uncertainty", &o, &r);
    uint8_t *unc = NULL;
    int uw = 0, uh = 0;
    CHECK(r.status == 200 && strstr(r.ctype, "image/png") &&
              ms_png_decode_index(r.body, r.len, 0, &unc, &uw, &uh) == MS_OK && uw == W && uh == H,
          "uncertainty PNG: %ld %s", r.status, r.ctype);
    resp_free(&r);
    int off = 0, lo = 255, hi = 0;
    double top_sum = 0, ent_sum = 0;
    for (size_t i = 0; p && unc && i < (size_t)H * W; i++) {
        double top;
        const double e = entropy_at(p, 0, i, &top);
        const int want = (int)lround(255 * e);
        if (abs(want - unc[i]) > 1) off++;
        lo = unc[i] < lo ? unc[i] : lo, hi = unc[i] > hi ? unc[i] : hi;
        top_sum += top, ent_sum += e;
    }
    CHECK(unc && off == 0, "%d of %d pixels' uncertainty differ from round(255 H) computed here by more than 1", off, H * W);
    CHECK(hi > lo, "the map is not flat (%d..%d)", lo, hi);
    /* X-Confidence on a PNG answer: the mean top probability */
    CURL *c = curl_easy_init();
    char url[256], hdr[64] = "";
    snprintf(url, sizeof url, "http://127.0.0.1:%d/segment", port);
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: image/png");
    FILE *devnull = fopen("/dev/null", "w");
    char *hbuf = NULL;
    size_t hlen = 0;
    FILE *hf = open_memstream(&hbuf, &hlen);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, png);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)plen);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, hf);
    CHECK(curl_easy_perform(c) == CURLE_OK, "POST /segment");
    fclose(hf);
    const char *xc = hbuf ? strcasestr(hbuf, "X-Confidence:") : NULL;
    if (xc) sscanf(xc + 13, " %63s", hdr);
    CHECK(xc && fabs(atof(hdr) - top_sum / (H * W)) < 2e-4, "X-Confidence %s, mean top probability here %.6f", hdr, top_sum / (H * W));
    free(hbuf), fclose(devnull), curl_slist_free_all(hs), curl_easy_cleanup(c);
    /* ?format=json: the same scores; maps=1: the same maps as the PNG answers */
    http("POST", port, "/segment?format=json&maps=1", &o, &r);
    cJSON *j = parse(&r);
    CHECK(r.status == 200 && fabs(jnum(j, "confidence") - top_sum / (H * W)) < 2e-4 && fabs(jnum(j, "entropy") - ent_sum / (H * W)) < 2e-4,
          "json confidence %.6f entropy %.6f, here %.6f %.6f", jnum(j, "confidence"), jnum(j, "entropy"), top_sum / (H * W), ent_sum / (H * W));
    size_t nl = 0, nu = 0;
    uint8_t *lab = b64(jstr(j, "labels"), &nl), *um = b64(jstr(j, "uncertainty"), &nu);
    CHECK(lab && um && nl == (size_t)H * W && nu == nl && unc && !memcmp(um, unc, nu), "maps=1: uncertainty equals the PNG's (%zu bytes)", nu);
    resp_free(&r);
    http("POST", port, "/segment", &o, &r);
    uint8_t *mask = NULL;
    int mw, mh;
    CHECK(r.status == 200 && ms_png_decode_index(r.body, r.len, 0, &mask, &mw, &mh) == MS_OK && lab && !memcmp(mask, lab, nl),
          "maps=1: labels equal the mask PNG's");
    resp_free(&r);
    http("POST", port, "/segment?format=overlay&maps=1", &o, &r);
    EXPECT_ERROR(r, 400, "bad_maps");
    resp_free(&r);
    free(mask), free(lab), free(um), free(unc), free(p), free(png), cJSON_Delete(j);
}

/* ------------------------------------------------------------------ 2, 3. predictions, ranking */

static int read_f32(ms_npz *z, const char *key, float *out, int n) {
    ms_npy_info info;
    return ms_npz_info(z, key, &info) == MS_OK && info.dtype == MS_DT_F4 && info.shape[0] == n &&
           ms_npz_read_f32(z, key, out, (size_t)n) == MS_OK;
}

static void test_predictions(int port) {
    char last[32], path[128], file[PATH_MAX];
    char *id = pass_post(port, "/predictions", "{\"key\": \"test_set\", \"probs\": true}", NULL);
    CHECK(id && pass_wait(port, "/predictions", id, "succeeded|failed", 60, last, sizeof last) && !strcmp(last, "succeeded"),
          "prediction %s: %s", id ? id : "-", last);
    if (!id) return;
    snprintf(path, sizeof path, "/predictions/%s", id);
    cJSON *j = get_json(port, path);
    const cJSON *res = cJSON_GetObjectItem(j, "result"), *req = cJSON_GetObjectItem(j, "request");
    CHECK(jnum(res, "tiles") == NTEST && !strcmp(jstr(req, "dataset"), "sample") && !strcmp(jstr(req, "model"), "default"),
          "result of %s: %s", id, cJSON_PrintUnformatted(j));
    cJSON_Delete(j);
    /* the npz, read back */
    struct resp r;
    snprintf(path, sizeof path, "/predictions/%s/result", id);
    get(port, path, &r);
    path_in_tmp(file, sizeof file, "result.npz");
    CHECK(r.status == 200 && r.len > 0 && write_file(file, r.body, r.len) == 0, "GET %s: %ld", path, r.status);
    resp_free(&r);
    ms_npz *z = NULL;
    uint8_t *labels = malloc((size_t)NTEST * H * W);
    float conf[NTEST], ent[NTEST];
    ms_npy_info pi;
    CHECK(ms_npz_open(&z, file) == MS_OK && ms_npz_read_u8(z, "labels", labels, (size_t)NTEST * H * W) == MS_OK &&
              read_f32(z, "confidence", conf, NTEST) && read_f32(z, "entropy", ent, NTEST) && ms_npz_info(z, "probs", &pi) == MS_OK &&
              pi.dtype == MS_DT_F2 && pi.ndim == 4 && pi.shape[1] == MS_NUM_CLASSES,
          "result npz: labels, confidence, entropy, probs: %s", ms_last_error());
    ms_npz_close(z);
    /* against this process's inference: labels (ties aside) and per-tile confidence */
    float *p = probs_of(g_test_img, NTEST);
    int diff = 0, bad_conf = 0;
    for (int t = 0; p && t < NTEST; t++) {
        double cs = 0;
        for (size_t i = 0; i < (size_t)H * W; i++) {
            double top;
            entropy_at(p, t, i, &top);
            cs += top;
            int best = 0;
            for (int k = 1; k < MS_NUM_CLASSES; k++)
                if (p[((size_t)t * MS_NUM_CLASSES + k) * H * W + i] > p[((size_t)t * MS_NUM_CLASSES + best) * H * W + i]) best = k;
            diff += labels[(size_t)t * H * W + i] != best;
        }
        bad_conf += fabs(cs / (H * W) - conf[t]) > 2e-4;
    }
    CHECK(p && diff <= NTEST * H * W / 1000 && bad_conf == 0, "labels differ at %d pixels, %d tiles' confidence differs", diff, bad_conf);
    free(p);
    /* the Kaggle CSV, read back and held to the labels */
    snprintf(path, sizeof path, "/predictions/%s/result?format=csv", id);
    get(port, path, &r);
    CHECK(r.status == 200 && strstr(r.ctype, "text/csv"), "GET %s: %ld %s", path, r.status, r.ctype);
    char *s = r.body;
    int ok = s && !strncmp(s, "id,0,1,2,", 9), rows = 0;
    char want_end[32];
    snprintf(want_end, sizeof want_end, ",%d\n", H * W - 1);
    char *nl = s ? strchr(s, '\n') : NULL;
    ok = ok && nl && !strncmp(nl - strlen(want_end) + 1, want_end, strlen(want_end));
    for (char *q = nl ? nl + 1 : NULL; ok && q && *q; rows++) {
        char *e;
        ok = strtol(q, &e, 10) == rows && *e == ',';
        for (int i = 0; ok && i < H * W; i++) {
            q = e + 1;
            ok = strtol(q, &e, 10) == labels[(size_t)rows * H * W + i] && (*e == ',' || (i == H * W - 1 && *e == '\n'));
        }
        q = e + 1;
    }
    CHECK(ok && rows == NTEST, "the CSV read back: header id,0..%d and %d rows equal to labels (%d rows read)", H * W - 1, NTEST, rows);
    resp_free(&r);

    /* 3. the ranking: the least-confident tiles of test_set, as the prediction's confidence orders them */
    get(port, "/datasets/sample/uncertain?top=5&key=test_set", &r);
    j = parse(&r);
    const cJSON *list = cJSON_GetObjectItem(j, "uncertain");
    int order_ok = r.status == 200 && cJSON_GetArraySize(list) == 5 && jnum(j, "tiles") == NTEST;
    double prev = -1;
    for (int k = 0; order_ok && k < 5; k++) {
        const cJSON *e = cJSON_GetArrayItem(list, k);
        const int idx = (int)jnum(e, "index");
        order_ok = jnum(e, "rank") == k + 1 && idx >= 0 && idx < NTEST && fabs(jnum(e, "confidence") - conf[idx]) < 1e-5 &&
                   jnum(e, "confidence") >= prev;
        prev = jnum(e, "confidence");
    }
    int below = 0; /* tiles less confident than the list's last entry: only the entries before it */
    for (int t = 0; t < NTEST; t++) below += conf[t] < prev - 1e-6;
    CHECK(order_ok && below <= 4, "uncertain (%d below the last): %ld %.300s", below, r.status, r.body ? r.body : "");
    resp_free(&r);
    cJSON_Delete(j);
    free(labels);
    free(id);

    /* an npz body with TTA: the options in the query string */
    size_t blen = 0;
    uint8_t *body = npz_images("frames", 9, &blen);
    struct reqopt o = {.ctype = "application/octet-stream", .body = body, .len = blen};
    id = pass_post(port, "/predictions?key=frames&tta=1", NULL, &o);
    CHECK(id && pass_wait(port, "/predictions", id, "succeeded|failed", 60, last, sizeof last) && !strcmp(last, "succeeded"),
          "npz-body prediction: %s", last);
    if (id) {
        snprintf(path, sizeof path, "/predictions/%s", id);
        j = get_json(port, path);
        const cJSON *rq = cJSON_GetObjectItem(j, "request");
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "dataset")) && cJSON_IsTrue(cJSON_GetObjectItem(rq, "tta")) &&
                  jnum(cJSON_GetObjectItem(j, "result"), "tiles") == 9,
              "npz body: dataset null, tta, 9 tiles");
        cJSON_Delete(j);
    }
    free(id);
    free(body);
}

/* ------------------------------------------------------------------ 4. evaluations, activation */

static void check_report(const cJSON *rep, int tiles, int worst, int port, const char *id) {
    const cJSON *cm = cJSON_GetObjectItem(rep, "confusion"), *cn = cJSON_GetObjectItem(rep, "confusion_normalized"),
                *iou = cJSON_GetObjectItem(rep, "iou"), *w = cJSON_GetObjectItem(rep, "worst");
    double total = 0, row_bad = 0, iou_bad = 0;
    for (int k = 0; k < MS_NUM_CLASSES; k++) {
        double rs = 0, ns = 0, col = 0;
        for (int c = 0; c < MS_NUM_CLASSES; c++) {
            rs += cJSON_GetArrayItem(cJSON_GetArrayItem(cm, k), c)->valuedouble;
            ns += cJSON_GetArrayItem(cJSON_GetArrayItem(cn, k), c)->valuedouble;
            col += cJSON_GetArrayItem(cJSON_GetArrayItem(cm, c), k)->valuedouble;
        }
        const double tp = cJSON_GetArrayItem(cJSON_GetArrayItem(cm, k), k)->valuedouble;
        total += rs;
        if (rs > 0 && fabs(ns - 1) > 1e-9) row_bad++;
        const cJSON *v = cJSON_GetArrayItem(iou, k);
        if (rs + col - tp > 0 && (!cJSON_IsNumber(v) || fabs(v->valuedouble - tp / (rs + col - tp)) > 1e-9)) iou_bad++;
    }
    CHECK(total == (double)tiles * H * W && row_bad == 0 && iou_bad == 0, "report: %.0f pixels counted (want %d), %.0f rows not normalised, %.0f IoUs not from the counts",
          total, tiles * H * W, row_bad, iou_bad);
    CHECK(cJSON_GetArraySize(w) == worst, "report: %d worst tiles, want %d", cJSON_GetArraySize(w), worst);
    static const char *const files[] = {"image", "truth", "pred", "uncertainty"};
    for (int i = 0; i < 4 && cJSON_GetArraySize(w); i++) {
        char path[160];
        snprintf(path, sizeof path, "/evaluations/%s/files/%s", id, jstr(cJSON_GetArrayItem(w, 0), files[i]));
        struct resp r;
        get(port, path, &r);
        uint8_t *px = NULL;
        int pw = 0, ph = 0;
        CHECK(r.status == 200 && ms_png_decode_index(r.body, r.len, 0, &px, &pw, &ph) == MS_OK && pw == W && ph == H, "GET %s: %ld", path, r.status);
        free(px);
        resp_free(&r);
    }
}

static void test_evaluations(int port) {
    char last[32], path[128];
    char *id = pass_post(port, "/evaluations", "{\"worst\": 3}", NULL);
    CHECK(id && pass_wait(port, "/evaluations", id, "succeeded|failed", 60, last, sizeof last) && !strcmp(last, "succeeded"), "evaluation: %s", last);
    if (id) {
        snprintf(path, sizeof path, "/evaluations/%s", id);
        cJSON *j = get_json(port, path);
        check_report(cJSON_GetObjectItem(j, "report"), NTRAIN, 3, port, id);
        cJSON_Delete(j);
        struct resp r;
        snprintf(path, sizeof path, "/evaluations/%s/files/report.json", id);
        get(port, path, &r);
        EXPECT_ERROR(r, 404, "not_found");
        resp_free(&r);
    }
    free(id);

    /* a training job with the default activate rule: if_better, with both figures */
    const char *job = "{\"epochs\": 1, \"batch\": 4, \"model\": {\"depth\": 2, \"base\": 4}, \"threads\": 1, \"val_frac\": 0.25}";
    char *jid = post_job(port, job);
    CHECK(jid && wait_state(port, jid, "succeeded|failed", 90, last, sizeof last) && !strcmp(last, "succeeded"), "job: %s", last);
    if (!jid) return;
    cJSON *j = job_get(port, jid), *act = cJSON_GetObjectItem(j, "activation");
    const double miou = jnum(act, "miou"), serving = jnum(act, "serving_miou");
    cJSON *active = get_json(port, "/models/active");
    const int activated = cJSON_IsTrue(cJSON_GetObjectItem(act, "activated"));
    CHECK(!strcmp(jstr(j, "activate"), "if_better") && !strcmp(jstr(act, "rule"), "if_better") && miou >= 0 && serving >= 0 &&
              jnum(act, "tiles") > 0 && !strcmp(jstr(act, "serving_model"), "default") && activated == (miou > serving) &&
              !strcmp(jstr(active, "id"), activated ? jid : "default"),
          "activation %s; serving %s", cJSON_PrintUnformatted(act), jstr(active, "id"));
    char *log = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "log"));
    char fig[32];
    snprintf(fig, sizeof fig, "%.4f", serving);
    CHECK(log && strstr(log, fig) && strstr(log, "serving model default"), "the job log says it with both figures: %s", log);
    free(log);
    /* its validation split, evaluated: the same tiles and the same figure */
    char body[96];
    snprintf(body, sizeof body, "{\"job\": \"%s\", \"worst\": 1}", jid);
    id = pass_post(port, "/evaluations", body, NULL);
    CHECK(id && pass_wait(port, "/evaluations", id, "succeeded|failed", 60, last, sizeof last) && !strcmp(last, "succeeded"), "split evaluation: %s", last);
    if (id) {
        snprintf(path, sizeof path, "/evaluations/%s", id);
        cJSON *e = get_json(port, path), *rep = cJSON_GetObjectItem(e, "report");
        CHECK(!strcmp(jstr(e, "model"), jid) && jnum(rep, "tiles") == jnum(act, "tiles") && fabs(jnum(rep, "miou") - miou) < 1e-6,
              "the split's report: model %s, %g tiles, mIoU %g; the activation measured %g on %g", jstr(e, "model"), jnum(rep, "tiles"),
              jnum(rep, "miou"), miou, jnum(act, "tiles"));
        check_report(rep, (int)jnum(act, "tiles"), 1, port, id);
        cJSON_Delete(e);
    }
    if (activated) { /* back to the default model for what follows */
        struct resp r;
        send_json("PUT", port, "/models/active", "{\"id\": \"default\"}", &r);
        resp_free(&r);
    }
    free(id);
    free(jid);
    cJSON_Delete(j);
    cJSON_Delete(active);
}

/* ------------------------------------------------------------------ 5. bad input */

static void test_bad_inputs(int port) {
    static const struct {
        const char *path, *body, *code;
        int status;
    } cases[] = {
        {"/predictions", "{\"key\": \"nope\"}", "missing_key", 400},
        {"/predictions", "{\"model\": \"nosuch\"}", "unknown_model", 400},
        {"/predictions", "{\"dataset\": \"nosuch\"}", "unknown_dataset", 400},
        {"/predictions", "{\"tiles\": 3}", "invalid_argument", 400},
        {"/predictions", "{\"probs\": \"yes\"}", "invalid_argument", 400},
        {"/evaluations", "{\"key\": \"test_set\"}", "unlabelled", 422},
        {"/evaluations", "{\"model\": \"j000901\"}", "class_mismatch", 422},
        {"/evaluations", "{\"job\": \"j999999\"}", "unknown_job", 400},
        {"/evaluations", "{\"worst\": 1000}", "invalid_argument", 400},
        {"/evaluations", "{\"job\": \"j000900\", \"dataset\": \"sample\"}", "invalid_argument", 400},
    };
    struct resp r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        send_json("POST", port, cases[i].path, cases[i].body, &r);
        EXPECT_ERROR(r, cases[i].status, cases[i].code);
        CHECK(!r.body || !strstr(r.body, g_tmp), "%s %s: a server path in the error: %s", cases[i].path, cases[i].body, r.body);
        resp_free(&r);
    }
    /* the npz bodies: a missing key, the wrong dtype (bool), the wrong rank */
    size_t blen = 0;
    uint8_t *body = npz_images("frames", 2, &blen);
    struct reqopt o = {.ctype = "application/octet-stream", .body = body, .len = blen};
    http("POST", port, "/predictions?key=images", &o, &r);
    EXPECT_ERROR(r, 400, "missing_key");
    CHECK(r.body && strstr(r.body, "frames"), "the error names the keys there are: %s", r.body);
    resp_free(&r);
    free(body);
    static const struct {
        const char *header, *code; /* npy header text (a multiple of 16 bytes with the magic), the refusal */
        size_t bytes;
    } arrays[] = {
        {"{'descr': '|b1', 'fortran_order': False, 'shape': (2, 64, 128), }          \n", "bad_dtype", 2 * H * W},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 64, 128), }       \n", "bad_shape", 6 * H * W},
    };
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        buf_t nb = npy(1, arrays[i].header, arrays[i].bytes), zb = zip1(nb.b, nb.len);
        o.body = zb.b, o.len = zb.len;
        http("POST", port, "/predictions?key=a", &o, &r);
        EXPECT_ERROR(r, 400, arrays[i].code);
        resp_free(&r);
        free(nb.b), free(zb.b);
    }
    /* the ranking: top > N, an unknown dataset, a bad top; results of nothing */
    static const struct {
        const char *path, *code;
        int status;
    } gets[] = {
        {"/datasets/sample/uncertain?top=41&key=test_set", "invalid_argument", 400},
        {"/datasets/nosuch/uncertain?top=1", "not_found", 404},
        {"/datasets/sample/uncertain?top=x", "invalid_argument", 400},
        {"/predictions/nosuch/result", "not_found", 404},
        {"/evaluations/nosuch", "not_found", 404},
    };
    for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++) {
        get(port, gets[i].path, &r);
        EXPECT_ERROR(r, gets[i].status, gets[i].code);
        resp_free(&r);
    }
    /* no queued job appeared from any of these */
    cJSON *p = get_json(port, "/predictions"), *e = get_json(port, "/evaluations");
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(p, "predictions")) == 2 && cJSON_GetArraySize(cJSON_GetObjectItem(e, "evaluations")) == 2,
          "refused requests queued nothing");
    cJSON_Delete(p);
    cJSON_Delete(e);
}

/* ------------------------------------------------------------------ 6. cancel, restart */

static char *long_prediction(int port, uint8_t *body, size_t blen) {
    struct reqopt o = {.ctype = "application/octet-stream", .body = body, .len = blen};
    return pass_post(port, "/predictions?model=j000900&key=frames", NULL, &o);
}

static void test_cancel_restart(struct srv *s) {
    char last[32], path[160], file[PATH_MAX + 64];
    size_t blen = 0;
    uint8_t *body = npz_images("frames", NLONG, &blen);
    char *id = long_prediction(s->port, body, blen);
    CHECK(id && pass_wait(s->port, "/predictions", id, "running", 60, last, sizeof last), "long prediction running: %s", last);
    if (id) {
        snprintf(path, sizeof path, "/predictions/%s", id);
        struct resp r;
        send_json("DELETE", s->port, path, NULL, &r);
        CHECK(r.status == 202 || r.status == 200, "cancel: %ld %s", r.status, r.body);
        resp_free(&r);
        CHECK(pass_wait(s->port, "/predictions", id, "cancelled|succeeded|failed", 60, last, sizeof last) && !strcmp(last, "cancelled"),
              "cancelled: %s", last);
        snprintf(file, sizeof file, "%s/jobs/%s/result.npz", g_data, id);
        CHECK(access(file, F_OK) != 0, "a cancelled prediction leaves no result");
        snprintf(path, sizeof path, "/predictions/%s/result", id);
        get(s->port, path, &r);
        EXPECT_ERROR(r, 409, "not_ready");
        resp_free(&r);
    }
    free(id);
    /* restart: one running, one queued behind it; SIGKILL; both done after the restart */
    char *run = long_prediction(s->port, body, blen), *queued = pass_post(s->port, "/predictions", "{\"key\": \"test_set\"}", NULL);
    CHECK(run && queued && pass_wait(s->port, "/predictions", run, "running", 60, last, sizeof last), "running before the kill: %s", last);
    CHECK(srv_stop(s, SIGKILL) == 128 + SIGKILL, "SIGKILL");
    CHECK(start(s) == 0, "restart");
    if (run && queued && s->pid) {
        CHECK(pass_wait(s->port, "/predictions", run, "succeeded|failed|cancelled", 120, last, sizeof last) && !strcmp(last, "succeeded"),
              "the interrupted prediction ran again: %s", last);
        CHECK(pass_wait(s->port, "/predictions", queued, "succeeded|failed|cancelled", 60, last, sizeof last) && !strcmp(last, "succeeded"),
              "the queued one ran: %s", last);
        snprintf(path, sizeof path, "/predictions/%s", run);
        cJSON *j = get_json(s->port, path);
        CHECK(jnum(cJSON_GetObjectItem(j, "result"), "tiles") == NLONG, "its result: %d tiles", NLONG);
        cJSON_Delete(j);
        /* job.json says "running" a few ms after GET does (the worker writes it after taking the
         * job): a kill in between finds it still queued on disk, which is as good */
        CHECK(log_has(s, "queued to run again") || log_has(s, "(2 queued)"), "the log says it was queued again");
    }
    free(run);
    free(queued);
    free(body);
}

int main(int argc, char **argv) {
    (void)argc;
    if (su_init(argv[0], "predict")) return 1;
    char src_model[PATH_MAX], three[PATH_MAX];
    path_in_tmp(g_model, sizeof g_model, "model.npz");
    path_in_tmp(g_mixed, sizeof g_mixed, "mixed.npz");
    path_in_tmp(g_data, sizeof g_data, "data");
    path_in_tmp(three, sizeof three, "three.npz");
    snprintf(src_model, sizeof src_model, "%s/models/default.npz", MS_SRC_DIR);
    CHECK(make_model(g_model, 2, 4) == 0 && make_mixed(g_mixed) == 0, "fixtures: %s", ms_last_error());
    ms_model_config c3 = {2, 4, 3, 0.0f, 0, 0};
    ms_model *m3 = NULL;
    CHECK(ms_model_create(&m3, &c3, 3) == MS_OK && ms_model_save(m3, three, "{}") == MS_OK, "a 3-class model");
    ms_model_free(m3);
    CHECK(fake_job("j000900", src_model, 1) == 0 && fake_job("j000901", three, 0) == 0, "finished jobs' directories");
    struct srv s;
    if (start(&s)) {
        CHECK(0, "server start");
        su_done();
        return TEST_END();
    }
    test_segment(s.port);
    test_predictions(s.port);
    test_evaluations(s.port);
    struct resp mr; /* Prometheus: jobs by kind (test_server_promtool checks the format) */
    get(s.port, "/metrics", &mr);
    CHECK(mr.body && strstr(mr.body, "{kind=\"predict\",state=\"succeeded\"}") && !strstr(mr.body, "{kind=\"predict\",state=\"succeeded\"} 0\n") &&
              !strstr(mr.body, "{kind=\"evaluate\",state=\"succeeded\"} 0\n"), "metrics count the finished predictions and evaluations");
    resp_free(&mr);
    test_bad_inputs(s.port);
    test_cancel_restart(&s);
    CHECK(s.pid && srv_stop(&s, SIGTERM) == 0, "server exits 0 on SIGTERM");
    free(g_test_img);
    su_done();
    return TEST_END();
}
