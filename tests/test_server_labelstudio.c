/* Integration test of the Label Studio ML backend (server/labelstudio.h): the real `marsseg
 * serve` on loopback, driven as Label Studio drives a backend, with a small fake Label Studio
 * host started here (tests/lsutil.h: a thread with a listening socket on 127.0.0.1) and a second
 * one on another port that stands in for any foreign host.
 *
 * No Label Studio client or validator is reachable from here (Label Studio and its converter are
 * PyPI-only), so the RLE is checked with the tests' own decoder (tests/lsutil.h), written from
 * the published rle-pack algorithm (label-studio-converter's brush.py documents it) and first
 * run on a published prediction (tests/fixtures/labelstudio/, from label-studio-ml-backend); the
 * shapes of requests and answers follow the published examples there.
 *
 * Covers: /health and /setup (auth: none, Bearer, Basic with the token as password); /predict's
 * masks decoded and compared pixel for pixel with /segment's on the same image, the score
 * against the confidence recomputed here from ms_model_predict, label names from the config
 * (synonyms, predicted_values, entities); images as data: URIs, relative and absolute URLs on
 * the configured host and a redirect that stays there; per-task refusals in one batch (foreign
 * hosts and ports, other schemes, user info, redirects elsewhere, oversized bodies with and
 * without a length, too many pixels, not a PNG, a 404) while the foreign host is never
 * contacted; malformed and unusable label configs; the webhook recording annotations (the
 * tests' own encoder, with literal chunks and other run widths) as a dataset that then loads,
 * an update replacing its sample, an event carrying only the task id, and START_TRAINING. */
#include "marsseg.h"
#include "marsseg_npz.h"
#include "testutil.h"
#include "srvutil.h"
#include "lsutil.h" /* Label Studio: its host, its brush encoding, its requests */

#include <cJSON.h>
#include <math.h>

#define API_TOKEN "api-secret" /* MARSSEG_TOKEN of the server under test */
#define TH 64
#define TW 128

/* ------------------------------------------------------------------ small helpers */

static uint8_t *read_src(const char *rel, size_t *len) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", MS_SRC_DIR, rel);
    uint8_t *b = NULL;
    if (ms_read_file(p, 0, &b, len) != MS_OK) return NULL;
    return b;
}

/* The published example: a YOLO brush prediction from label-studio-ml-backend. Each region's RLE
 * decodes to exactly 4 x width x height bytes, all four channels equal and 0 or 255 (the
 * converter's mask2rle), with some mask in it: the tests' decoder reads the published format. */
static void test_published_prediction(void) {
    size_t len;
    uint8_t *txt = read_src("tests/fixtures/labelstudio/predict_response_yolo_brush.json", &len);
    cJSON *j = txt ? cJSON_ParseWithLength((const char *)txt, len) : NULL;
    CHECK(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 1, "fixture read");
    const cJSON *pred = cJSON_GetArrayItem(j, 0), *reg;
    CHECK(jstr(pred, "model_version")[0] && cJSON_IsArray(cJSON_GetObjectItem(pred, "result")), "prediction shape");
    int regions = 0;
    cJSON_ArrayForEach(reg, cJSON_GetObjectItem(pred, "result")) {
        const cJSON *v = cJSON_GetObjectItem(reg, "value"), *rle = cJSON_GetObjectItem(v, "rle");
        int w = (int)jnum(reg, "original_width"), h = (int)jnum(reg, "original_height");
        size_t nb = (size_t)cJSON_GetArraySize(rle), n = 0;
        uint8_t *bytes = malloc(nb), *out = NULL;
        for (size_t i = 0; i < nb; i++) bytes[i] = (uint8_t)cJSON_GetArrayItem(rle, (int)i)->valueint;
        CHECK(rle_decode(bytes, nb, &out, &n) == 0, "published RLE decodes");
        CHECK(n == (size_t)w * h * 4, "count %zu = 4 x %d x %d", n, w, h);
        size_t on = 0, odd = 0;
        for (size_t p = 0; out && p < n / 4; p++) {
            const uint8_t *q = out + p * 4;
            odd += !(q[0] == q[1] && q[1] == q[2] && q[2] == q[3] && (q[3] == 0 || q[3] == 255));
            on += q[3] == 255;
        }
        CHECK(odd == 0 && on > 0 && on < n / 4, "mask2rle layout: %zu odd pixels, %zu on", odd, on);
        CHECK(strcmp(jstr(v, "format"), "rle") == 0 && strcmp(jstr(reg, "type"), "brushlabels") == 0, "region shape");
        free(bytes);
        free(out);
        regions++;
    }
    CHECK(regions == 3, "3 regions in the fixture");
    cJSON_Delete(j);
    free(txt);
}

/* ------------------------------------------------------------------ requests */

static char g_basic[256]; /* "Authorization: Basic base64(labelstudio:API_TOKEN)" */

/* POST a cJSON body the way Label Studio does (Basic auth); takes j. */
static long ls_post(int port, const char *path, cJSON *j, struct resp *r) { return ls_post_as(port, path, j, g_basic, r); }

static const char *CONFIG_ALL =
    "<View>\n  <!-- all five classes, by synonyms and cases -->\n  <Image name=\"image\" value=\"$image\" zoom=\"true\"/>\n"
    "  <BrushLabels name=\"tag\" toName=\"image\">\n    <Label value=\"Background\" background=\"#282828\"/>\n"
    "    <Label value=\"soil\"/><Label value=\"BEDROCK\"/><Label value=\"Sand\"/>\n"
    "    <Label value=\"Big_Rock\"/><Label value=\"Alien\"/>\n  </BrushLabels>\n</View>";

/* /segment's mask of png (h x w class ids, malloc'd) */
static uint8_t *segment_mask(int port, const uint8_t *png, size_t len) {
    struct resp r;
    struct reqopt o = {.ctype = "image/png", .body = png, .len = len, .has_body = 1};
    http("POST", port, "/segment", &o, &r);
    uint8_t *m = NULL;
    int w = 0, h = 0;
    if (r.status != 200 || ms_png_decode_index(r.body, r.len, 0, &m, &w, &h) != MS_OK || w != TW || h != TH) {
        free(m);
        m = NULL;
    }
    resp_free(&r);
    return m;
}

/* The tile's confidence as defined: the mean over its pixels of the top softmax probability. */
static double confidence_of(const char *model_path, const uint8_t *png, size_t len) {
    ms_model *m = NULL;
    uint8_t *g = NULL;
    int w, h;
    double conf = -1;
    if (ms_model_load(&m, model_path) || ms_png_decode_gray(png, len, 0, &g, &w, &h)) goto out;
    float *x = malloc(sizeof(float) * w * h), *p = malloc(sizeof(float) * w * h * MS_NUM_CLASSES);
    for (int i = 0; i < w * h; i++) x[i] = g[i] / 255.0f;
    if (ms_model_predict(m, x, 1, h, w, NULL, p) == MS_OK) {
        double s = 0;
        for (int i = 0; i < w * h; i++) {
            float best = 0;
            for (int k = 0; k < MS_NUM_CLASSES; k++) best = fmaxf(best, p[(size_t)k * w * h + i]);
            s += best;
        }
        conf = s / (w * h);
    }
    free(x);
    free(p);
out:
    ms_model_free(m);
    free(g);
    return conf;
}

/* Checks one prediction against /segment's mask: every region decoded here, each pixel claimed
 * by at most one region, the union equal to ref where ref's class has a label (names: the label
 * of each class, NULL for none), regions only for classes present. */
static void check_prediction(const cJSON *pred, const uint8_t *ref, const char *const names[MS_NUM_CLASSES],
                             double want_score, const char *what) {
    const cJSON *result = cJSON_GetObjectItem(pred, "result"), *reg;
    CHECK(cJSON_IsArray(result) && !cJSON_GetObjectItem(pred, "error"), "%s: a prediction (%s)", what, jstr(pred, "error"));
    CHECK(fabs(jnum(pred, "score") - want_score) < 1e-4, "%s: score %.6f, confidence %.6f", what, jnum(pred, "score"), want_score);
    CHECK(strcmp(jstr(pred, "model_version"), "default") == 0, "%s: model_version", what);
    int mask[TH * TW], seen[MS_NUM_CLASSES] = {0}, present[MS_NUM_CLASSES] = {0};
    for (int i = 0; i < TH * TW; i++) mask[i] = -1, present[ref[i]] = 1;
    cJSON_ArrayForEach(reg, result) {
        const cJSON *v = cJSON_GetObjectItem(reg, "value"), *lab = cJSON_GetObjectItem(v, "brushlabels");
        const char *name = cJSON_IsArray(lab) && cJSON_GetArraySize(lab) == 1 ? cJSON_GetArrayItem(lab, 0)->valuestring : "";
        int cls = -1;
        for (int k = 0; k < MS_NUM_CLASSES; k++)
            if (names[k] && strcmp(names[k], name) == 0) cls = k;
        CHECK(cls >= 0 && !seen[cls], "%s: region label '%s'", what, name);
        if (cls < 0 || seen[cls]) continue;
        seen[cls] = 1;
        CHECK(strcmp(jstr(reg, "type"), "brushlabels") == 0 && strcmp(jstr(reg, "from_name"), "tag") == 0 &&
                  strcmp(jstr(reg, "to_name"), "image") == 0 && strcmp(jstr(v, "format"), "rle") == 0 &&
                  jnum(reg, "original_width") == TW && jnum(reg, "original_height") == TH && jstr(reg, "id")[0],
              "%s: region fields", what);
        const cJSON *rle = cJSON_GetObjectItem(v, "rle");
        size_t nb = (size_t)cJSON_GetArraySize(rle), n = 0;
        uint8_t *bytes = malloc(nb + 1), *out = NULL;
        for (size_t i = 0; i < nb; i++) bytes[i] = (uint8_t)cJSON_GetArrayItem(rle, (int)i)->valueint;
        CHECK(rle_decode(bytes, nb, &out, &n) == 0 && n == (size_t)TH * TW * 4, "%s: '%s' decodes to %zu values", what, name, n);
        for (int p = 0; out && n == (size_t)TH * TW * 4 && p < TH * TW; p++) {
            const uint8_t *q = out + (size_t)p * 4;
            CHECK(q[0] == q[3] && q[1] == q[3] && q[2] == q[3] && (q[3] == 0 || q[3] == 255), "%s: RGBA of pixel %d", what, p);
            if (q[3] == 255) {
                CHECK(mask[p] < 0, "%s: pixel %d in two regions", what, p);
                mask[p] = cls;
            }
        }
        free(bytes);
        free(out);
    }
    int diff = 0;
    for (int i = 0; i < TH * TW; i++) diff += mask[i] != (names[ref[i]] ? ref[i] : -1);
    CHECK(diff == 0, "%s: %d pixels differ from /segment's mask", what, diff);
    for (int k = 0; k < MS_NUM_CLASSES; k++)
        CHECK(seen[k] == (present[k] && names[k] != NULL), "%s: region of class %d iff present and labelled", what, k);
}

/* ------------------------------------------------------------------ the tests */

static void test_health_setup(int port) {
    struct resp r;
    CHECK(get(port, "/health", &r) == 200, "GET /health");
    cJSON *j = parse(&r);
    CHECK(strcmp(jstr(j, "status"), "UP") == 0 && jstr(j, "model_class")[0] && strcmp(jstr(j, "model_version"), "default") == 0,
          "health: %s", r.body);
    cJSON_Delete(j);
    resp_free(&r);
    /* as Label Studio's setup() sends it */
    char body[2048];
    snprintf(body, sizeof body, "{\"project\": \"1.1700000000\", \"schema\": %s, \"hostname\": \"http://10.0.0.1:8080\", "
             "\"access_token\": \"abc\", \"extra_params\": null}", "\"<View><Image name='image' value='$image'/><BrushLabels name='tag' toName='image'><Label value='Sand'/></BrushLabels></View>\"");
    CHECK(send_json("POST", port, "/setup", body, &r) == 401, "setup without credentials: %ld", r.status);
    resp_free(&r);
    CHECK(send_json_tok("POST", port, "/setup", body, API_TOKEN, &r) == 200, "setup with Bearer: %ld %s", r.status, r.body);
    j = parse(&r);
    CHECK(strcmp(jstr(j, "model_version"), "default") == 0, "setup: model_version");
    cJSON_Delete(j);
    resp_free(&r);
    CHECK(ls_post(port, "/setup", cJSON_Parse(body), &r) == 200, "setup with Basic (token as password): %ld", r.status);
    resp_free(&r);
    char *cred = b64((const uint8_t *)"labelstudio:wrong", 17), hdr[128];
    snprintf(hdr, sizeof hdr, "Authorization: Basic %s", cred);
    free(cred);
    struct reqopt o = {.ctype = "application/json", .body = body, .len = strlen(body), .has_body = 1, .extra_header = hdr};
    http("POST", port, "/setup", &o, &r);
    CHECK(r.status == 401, "setup with a wrong Basic password: %ld", r.status);
    resp_free(&r);
    j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "schema", "<View><Image name=\"image\" value=\"$image\"/><Choices name=\"c\" toName=\"image\"/></View>");
    ls_post(port, "/setup", j, &r);
    EXPECT_ERROR(r, 400, "no_brush_labels");
    resp_free(&r);
}

/* Predictions for images given every accepted way, compared with /segment's masks. */
static void test_predict(int port, int fake_port, const char *model) {
    size_t l1, l2;
    uint8_t *t1 = read_src("examples/tile1.png", &l1), *t2 = read_src("examples/tile2.png", &l2); /* t2: the fake's tile */
    uint8_t *m1 = segment_mask(port, t1, l1), *m2 = segment_mask(port, t2, l2);
    CHECK(m1 && m2, "reference masks from /segment");
    if (!m1 || !m2) goto out;
    const double c1 = confidence_of(model, t1, l1), c2 = confidence_of(model, t2, l2);
    char *uri = data_uri(t1, l1), abs[128];
    snprintf(abs, sizeof abs, "http://127.0.0.1:%d/data/upload/1/tile.png", fake_port);
    cJSON *tasks = cJSON_CreateArray();
    cJSON_AddItemToArray(tasks, task_json(1, uri));
    cJSON_AddItemToArray(tasks, task_json(2, "/data/upload/1/tile.png"));
    cJSON_AddItemToArray(tasks, task_json(3, abs));
    cJSON_AddItemToArray(tasks, task_json(4, "/redirect-in"));
    free(uri);
    struct resp r;
    CHECK(ls_post(port, "/predict", predict_request(CONFIG_ALL, tasks), &r) == 200, "predict: %ld %.300s", r.status, r.body);
    cJSON *j = parse(&r), *res = cJSON_GetObjectItem(j, "results");
    CHECK(cJSON_GetArraySize(res) == 4, "4 results for 4 tasks");
    const char *const all[MS_NUM_CLASSES] = {"Background", "soil", "BEDROCK", "Sand", "Big_Rock"};
    if (cJSON_GetArraySize(res) == 4) {
        check_prediction(cJSON_GetArrayItem(res, 0), m1, all, c1, "data: URI");
        check_prediction(cJSON_GetArrayItem(res, 1), m2, all, c2, "relative URL");
        check_prediction(cJSON_GetArrayItem(res, 2), m2, all, c2, "absolute URL");
        check_prediction(cJSON_GetArrayItem(res, 3), m2, all, c2, "redirect on the host");
    }
    /* the published answer's keys are all in ours */
    size_t fl;
    uint8_t *ftxt = read_src("tests/fixtures/labelstudio/predict_response_yolo_brush.json", &fl);
    cJSON *fx = ftxt ? cJSON_ParseWithLength((const char *)ftxt, fl) : NULL, *k;
    const cJSON *ours = cJSON_GetArrayItem(res, 0), *fpred = cJSON_GetArrayItem(fx, 0);
    const cJSON *oreg = cJSON_GetArrayItem(cJSON_GetObjectItem(ours, "result"), 0);
    const cJSON *freg = cJSON_GetArrayItem(cJSON_GetObjectItem(fpred, "result"), 0);
    cJSON_ArrayForEach(k, fpred) CHECK(cJSON_GetObjectItem(ours, k->string), "prediction key '%s' as published", k->string);
    cJSON_ArrayForEach(k, freg) CHECK(cJSON_GetObjectItem(oreg, k->string), "region key '%s' as published", k->string);
    cJSON_ArrayForEach(k, cJSON_GetObjectItem(freg, "value"))
        CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(oreg, "value"), k->string), "value key '%s' as published", k->string);
    cJSON_Delete(fx);
    free(ftxt);
    cJSON_Delete(j);
    resp_free(&r);

    /* names: synonyms, predicted_values, entities; unmapped classes get no region; one task as
     * an object (the SDK's own test sends that) */
    const char *cfg2 =
        "<View><Image name=\"image\" value=\"$image\"/><BrushLabels name=\"tag\" toName=\"image\">"
        "<Label value=\"Dirt\"/><Label value=\"Ripples\" predicted_values=\"dunes, sand\"/>"
        "<Label value=\"Big&#x20;rocks &amp; boulders\" predicted_values=\"boulder\"/><Label value=\"Roca\"/>"
        "</BrushLabels><![CDATA[ <not parsed> ]]></View>";
    uri = data_uri(t1, l1);
    j = predict_request(cfg2, task_json(9, uri));
    free(uri);
    CHECK(ls_post(port, "/predict", j, &r) == 200, "predict, config 2: %ld %.300s", r.status, r.body);
    j = parse(&r);
    const char *const some[MS_NUM_CLASSES] = {NULL, "Dirt", NULL, "Ripples", "Big rocks & boulders"};
    check_prediction(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "results"), 0), m1, some, c1, "config 2");
    cJSON_Delete(j);
    resp_free(&r);
out:
    free(t1);
    free(t2);
    free(m1);
    free(m2);
}

/* One batch of tasks that must each be refused, between two good ones; the foreign host is
 * never contacted. */
static void test_refused(int port, struct fake *ls, struct fake *foreign) {
    size_t l1;
    uint8_t *t1 = read_src("examples/tile1.png", &l1);
    size_t lbig = 0;
    uint8_t *big = gray_png(600, 600, &lbig); /* 360000 pixels > --max-pixels 300000 */
    char *good = data_uri(t1, l1), *huge = data_uri(big, lbig), *text = data_uri((const uint8_t *)"hello world", 11);
    char u[16][160];
    snprintf(u[0], sizeof u[0], "http://127.0.0.1:%d/data/upload/1/tile.png", foreign->port);
    snprintf(u[1], sizeof u[1], "http://localhost:%d/data/upload/1/tile.png", ls->port);
    snprintf(u[2], sizeof u[2], "https://127.0.0.1:%d/data/upload/1/tile.png", ls->port);
    snprintf(u[3], sizeof u[3], "//127.0.0.1:%d/data/upload/1/tile.png", foreign->port);
    snprintf(u[4], sizeof u[4], "http://user@127.0.0.1:%d/data/upload/1/tile.png", ls->port);
    snprintf(u[5], sizeof u[5], "http://127.0.0.1:%d@127.0.0.1:%d/data/upload/1/tile.png", ls->port, foreign->port);
    static const struct {
        int idx; /* into u, or -1: ref below */
        const char *ref, *code;
    } cases[] = {
        {0, NULL, "refused_host"},        {1, NULL, "refused_host"},        {2, NULL, "refused_host"},
        {3, NULL, "refused_host"},        {4, NULL, "refused_host"},        {5, NULL, "refused_host"},
        {-1, "s3://bucket/tile.png", "refused_host"}, {-1, "file:///etc/passwd", "refused_host"},
        {-1, "/redirect-out", "refused_host"},        {-1, "/redirect-loop", "fetch_failed"},
        {-1, "/big.png", "body_too_large"},           {-1, "/big-chunked.png", "body_too_large"},
        {-1, "/data/upload/1/missing.png", "fetch_failed"}, {-1, "/data/upload/1/notes.txt", "not_png"},
        {-2, NULL, "too_many_pixels"},    {-3, NULL, "not_png"},            {-4, NULL, "no_image"},
        {-1, "data:image/png;base64,@@@@", "bad_image_ref"},
    };
    const int nc = (int)(sizeof cases / sizeof cases[0]);
    cJSON *tasks = cJSON_CreateArray();
    cJSON_AddItemToArray(tasks, task_json(100, good));
    for (int i = 0; i < nc; i++) {
        const char *ref = cases[i].idx >= 0 ? u[cases[i].idx] : cases[i].idx == -1 ? cases[i].ref
                        : cases[i].idx == -2 ? huge : cases[i].idx == -3 ? text : NULL;
        cJSON_AddItemToArray(tasks, task_json(101 + i, ref));
    }
    cJSON_AddItemToArray(tasks, task_json(200, good));
    const int before = atomic_load(&foreign->connections);
    struct resp r;
    CHECK(ls_post(port, "/predict", predict_request(CONFIG_ALL, tasks), &r) == 200, "refusals batch: %ld %.300s", r.status, r.body);
    cJSON *j = parse(&r), *res = cJSON_GetObjectItem(j, "results");
    CHECK(cJSON_GetArraySize(res) == nc + 2, "one result per task: %d", cJSON_GetArraySize(res));
    for (int i = 0; i < nc && cJSON_GetArraySize(res) == nc + 2; i++) {
        const cJSON *p = cJSON_GetArrayItem(res, i + 1);
        CHECK(strcmp(jstr(p, "code"), cases[i].code) == 0 && jstr(p, "error")[0] &&
                  cJSON_GetArraySize(cJSON_GetObjectItem(p, "result")) == 0,
              "case %d (%s): code '%s' want '%s': %s", i, cases[i].idx >= 0 ? u[cases[i].idx] : cases[i].ref ? cases[i].ref : "inline",
              jstr(p, "code"), cases[i].code, jstr(p, "error"));
    }
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 0), "result")) > 0 &&
              cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(res, nc + 1), "result")) > 0,
          "the good tasks around the refused ones got predictions");
    CHECK(atomic_load(&foreign->connections) == before, "the foreign host was never contacted (%d connections)",
          atomic_load(&foreign->connections) - before);
    CHECK(atomic_load(&ls->bad_auth) == 0, "every fetch carried 'Authorization: Token ...'");
    cJSON_Delete(j);
    resp_free(&r);
    free(good);
    free(huge);
    free(text);
    free(big);
    free(t1);
}

static void test_bad_configs(int port) {
    static const struct {
        const char *xml, *code;
    } cases[] = {
        {"<View><Image name=\"image\" value=\"$image\"/><BrushLabels name=\"tag\" toName=\"image\"></View>", "bad_label_config"},
        {"<View><Image name=\"image\" value=\"$image\"/><BrushLabels name=\"tag\" toName=\"image\">", "bad_label_config"},
        {"<View><Image name=\"image value=\"$image\"/></View>", "bad_label_config"},
        {"<View><Image name=\"image\" value=\"$image\"/><BrushLabels name=tag toName=\"image\"/></View>", "bad_label_config"},
        {"<View><Image name=\"image\" value=\"$image\"/><BrushLabels name toName=\"image\"/></View>", "bad_label_config"},
        {"<!DOCTYPE v [<!ENTITY x \"Sand\">]><View><Image name=\"image\" value=\"$image\"/>"
         "<BrushLabels name=\"tag\" toName=\"image\"><Label value=\"&x;\"/></BrushLabels></View>", "bad_label_config"},
        {"<View><Image name=\"image\" value=\"$image\"/><BrushLabels name=\"tag\" toName=\"image\">"
         "<Label value=\"&nbsp;\"/></BrushLabels></View>", "bad_label_config"},
        {"<View><Image name=\"image\" value=\"$image\"/><BrushLabels name=\"tag\" toName=\"image\">"
         "<Label value=\"&#0;\"/></BrushLabels></View>", "bad_label_config"},
        {"<View><Image name=\"image\" value=\"$image\"/><BrushLabels name=\"tag\" toName=\"image\"/></View><View/>", "bad_label_config"},
        {"<View><!-- unterminated <BrushLabels name=\"tag\" toName=\"image\"/></View>", "bad_label_config"},
        {"<View><Image name=\"other\" value=\"$image\"/><BrushLabels name=\"tag\" toName=\"image\"/></View>", "bad_label_config"},
        {"<View><Image name=\"image\" value=\"$image\"/><RectangleLabels name=\"r\" toName=\"image\"/></View>", "no_brush_labels"},
        {"", "bad_label_config"},
        {"just text", "bad_label_config"},
    };
    struct resp r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ls_post(port, "/predict", predict_request(cases[i].xml, cJSON_CreateArray()), &r);
        EXPECT_ERROR(r, 400, cases[i].code);
        resp_free(&r);
    }
    /* nested deeper than 64 */
    char deep[2048] = "";
    for (int i = 0; i < 70; i++) strcat(deep, "<V>");
    for (int i = 0; i < 70; i++) strcat(deep, "</V>");
    ls_post(port, "/predict", predict_request(deep, cJSON_CreateArray()), &r);
    EXPECT_ERROR(r, 400, "bad_label_config");
    resp_free(&r);
    /* no label_config at all, tasks not an array */
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "tasks", cJSON_CreateArray());
    ls_post(port, "/predict", j, &r);
    EXPECT_ERROR(r, 400, "no_label_config");
    resp_free(&r);
    j = predict_request(CONFIG_ALL, cJSON_CreateString("x"));
    ls_post(port, "/predict", j, &r);
    EXPECT_ERROR(r, 400, "no_tasks");
    resp_free(&r);
    /* Label Studio's bearer-less call on a server with a token */
    CHECK(send_json("POST", port, "/predict", "{}", &r) == 401, "predict without credentials: %ld", r.status);
    resp_free(&r);
}

/* An ANNOTATION_CREATED/UPDATED event of the five classes of mask, each region encoded here. */
static cJSON *annotation_event(const char *action, int project, int ann, int task, const char *task_image,
                               const uint8_t *mask, int w, int h) {
    static const char *const labels[MS_NUM_CLASSES] = {"Background", "soil", "BEDROCK", "Sand", "Big_Rock"};
    cJSON *res = cJSON_CreateArray();
    for (int c = 1; c < MS_NUM_CLASSES; c++) cJSON_AddItemToArray(res, brush_region(mask, c, labels[c], w, h));
    return annotation_event_of(action, project, CONFIG_ALL, ann, task, task_image, res);
}

/* The npz of dataset id in the data directory: n samples, and sample i's image and mask. */
static void check_dataset(const char *data, const char *id, int n, int i, const uint8_t *gray, const uint8_t *mask,
                          const char *what) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/datasets/%s.npz", data, id);
    ms_dataset d;
    ms_status st = ms_dataset_load(&d, path, "training_set", 0);
    CHECK(st == MS_OK && d.n == n && d.h == TH && d.w == TW && d.mask, "%s: dataset %s loads with %d samples (%s)", what, id,
          n, ms_last_error());
    if (st) return;
    if (d.n == n && d.mask) {
        CHECK(memcmp(d.img + (size_t)i * TH * TW, gray, TH * TW) == 0, "%s: sample %d's image", what, i);
        CHECK(memcmp(d.mask + (size_t)i * TH * TW, mask, TH * TW) == 0, "%s: sample %d's mask", what, i);
    }
    ms_dataset_free(&d);
}

static void test_webhook(int port, const char *data) {
    size_t l1, l2, ls_small;
    uint8_t *t1 = read_src("examples/tile1.png", &l1), *t2 = read_src("examples/tile2.png", &l2), *g1 = NULL, *g2 = NULL;
    int w, h;
    CHECK(ms_png_decode_gray(t1, l1, 0, &g1, &w, &h) == MS_OK && ms_png_decode_gray(t2, l2, 0, &g2, &w, &h) == MS_OK, "tiles");
    uint8_t m1[TH * TW], m2[TH * TW];
    for (int y = 0; y < TH; y++)
        for (int x = 0; x < TW; x++) {
            m1[y * TW + x] = (uint8_t)((x / 8 + y / 8) % MS_NUM_CLASSES);
            m2[y * TW + x] = (uint8_t)((x / 16 + (y > 40)) % MS_NUM_CLASSES);
        }
    char *uri = data_uri(t1, l1);
    struct resp r;

    CHECK(ls_post(port, "/webhook", annotation_event("ANNOTATION_CREATED", 5, 101, 11, uri, m1, TW, TH), &r) == 201,
          "annotation created: %ld %.300s", r.status, r.body);
    cJSON *j = parse(&r), *res = cJSON_GetObjectItem(j, "result");
    CHECK(strcmp(jstr(j, "status"), "ok") == 0 && strcmp(jstr(res, "dataset"), "ls5") == 0 && jnum(res, "samples") == 1 &&
              cJSON_IsFalse(cJSON_GetObjectItem(res, "replaced")),
          "created: %s", r.body);
    cJSON_Delete(j);
    resp_free(&r);
    check_dataset(data, "ls5", 1, 0, g1, m1, "created");
    cJSON *list = get_json(port, "/datasets"), *d;
    int listed = 0;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(list, "datasets")) listed |= strcmp(jstr(d, "id"), "ls5") == 0 &&
        jnum(d, "samples") == 1 && jnum(d, "width") == TW && jnum(d, "height") == TH;
    CHECK(listed, "GET /datasets lists ls5 with 1 sample of 128x64");
    cJSON_Delete(list);

    CHECK(ls_post(port, "/webhook", annotation_event("ANNOTATION_UPDATED", 5, 101, 11, uri, m2, TW, TH), &r) == 201,
          "annotation updated: %ld %.300s", r.status, r.body);
    j = parse(&r);
    res = cJSON_GetObjectItem(j, "result");
    CHECK(jnum(res, "samples") == 1 && cJSON_IsTrue(cJSON_GetObjectItem(res, "replaced")), "updated replaces: %s", r.body);
    cJSON_Delete(j);
    resp_free(&r);
    check_dataset(data, "ls5", 1, 0, g1, m2, "updated");

    /* an event with only the task id: the task is read from Label Studio's /api/tasks/7 */
    CHECK(ls_post(port, "/webhook", annotation_event("ANNOTATION_CREATED", 5, 102, 7, NULL, m1, TW, TH), &r) == 201,
          "annotation of task 7 by id: %ld %.300s", r.status, r.body);
    resp_free(&r);
    check_dataset(data, "ls5", 2, 1, g2, m1, "task by id");

    /* nothing to record, and refusals */
    j = annotation_event("ANNOTATION_CREATED", 5, 103, 11, uri, m1, TW, TH);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "annotation"), "was_cancelled", cJSON_CreateTrue());
    CHECK(ls_post(port, "/webhook", j, &r) == 200, "skipped task: %ld", r.status);
    resp_free(&r);
    j = annotation_event("ANNOTATION_CREATED", 5, 104, 11, uri, m1, TW, TH);
    cJSON_SetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "annotation"), "result"), 0),
                                             "original_width"), 100);
    ls_post(port, "/webhook", j, &r);
    EXPECT_ERROR(r, 422, "bad_annotation");
    resp_free(&r);
    uint8_t small_mask[64 * 64] = {0};
    small_mask[0] = 1;
    ls_post(port, "/webhook", annotation_event("ANNOTATION_CREATED", 5, 105, 12, "/data/upload/1/small.png", small_mask, 64, 64), &r);
    EXPECT_ERROR(r, 422, "size_mismatch");
    resp_free(&r);
    j = annotation_event("ANNOTATION_CREATED", 5, 106, 11, uri, m1, TW, TH);
    cJSON *rle = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "annotation"), "result"), 1), "value"), "rle");
    cJSON_DeleteItemFromArray(rle, cJSON_GetArraySize(rle) - 1); /* cut short */
    cJSON_DeleteItemFromArray(rle, cJSON_GetArraySize(rle) - 1);
    ls_post(port, "/webhook", j, &r);
    EXPECT_ERROR(r, 422, "bad_annotation");
    resp_free(&r);
    (void)ls_small;

    /* the published example (a text project, from Label Studio's webhook reference) */
    size_t fl;
    uint8_t *ftxt = read_src("tests/fixtures/labelstudio/webhook_annotation_created.json", &fl);
    cJSON *fx = ftxt ? cJSON_ParseWithLength((const char *)ftxt, fl) : NULL;
    CHECK(fx != NULL, "webhook fixture");
    ls_post(port, "/webhook", fx, &r);
    EXPECT_ERROR(r, 400, "no_brush_labels");
    resp_free(&r);
    free(ftxt);

    CHECK(ls_post(port, "/webhook", cJSON_Parse("{\"action\": \"PROJECT_UPDATED\", \"project\": {\"id\": 5}}"), &r) == 200,
          "unknown event: %ld", r.status);
    j = parse(&r);
    CHECK(strcmp(jstr(j, "status"), "Unknown event") == 0, "unknown event answer: %s", r.body);
    cJSON_Delete(j);
    resp_free(&r);

    /* START_TRAINING: a job on ls5, never activating; none for a project without annotations */
    ls_post(port, "/webhook", cJSON_Parse("{\"action\": \"START_TRAINING\", \"project\": {\"id\": 99}}"), &r);
    EXPECT_ERROR(r, 409, "no_annotations");
    resp_free(&r);
    CHECK(ls_post(port, "/webhook", cJSON_Parse("{\"action\": \"START_TRAINING\", \"project\": {\"id\": 5, \"title\": \"Mars\"}}"),
                  &r) == 201,
          "start training: %ld %.300s", r.status, r.body);
    j = parse(&r);
    const char *job = jstr(cJSON_GetObjectItem(j, "result"), "job");
    cJSON *jb = job[0] ? job_get(port, job) : NULL;
    CHECK(jb && strcmp(jstr(jb, "dataset"), "ls5") == 0 && cJSON_IsFalse(cJSON_GetObjectItem(jb, "activate")) &&
              jnum(cJSON_GetObjectItem(jb, "config"), "batch") == 1,
          "job %s on ls5, activate false, batch 1 for 2 samples", job);
    if (job[0]) { /* no need to train it here */
        char path[64];
        snprintf(path, sizeof path, "/jobs/%s", job);
        struct resp del;
        send_json_tok("DELETE", port, path, NULL, API_TOKEN, &del);
        resp_free(&del);
        char last[32];
        CHECK(wait_state(port, job, "cancelled|succeeded", 60, last, sizeof last), "job cancelled, not failed: %s", last);
    }
    cJSON_Delete(jb);
    cJSON_Delete(j);
    resp_free(&r);
    free(uri);
    free(t1);
    free(t2);
    free(g1);
    free(g2);
}

static void test_metrics(int port) {
    struct resp r;
    get(port, "/metrics", &r);
    CHECK(r.status == 200 && strstr(r.body, "marsseg_labelstudio_tasks_total") &&
              strstr(r.body, "marsseg_labelstudio_annotations_total 3") && strstr(r.body, "route=\"ls_predict\""),
          "metrics name the Label Studio routes and counters");
    resp_free(&r);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    char model[PATH_MAX], data[PATH_MAX];
    (void)argc;
    if (su_init(argv[0], "test-server-labelstudio")) return 1;
    su_fixtures(model, data, 0);
    ls_basic_header(g_basic, sizeof g_basic, API_TOKEN);
    test_published_prediction();

    struct fake ls = {0}, foreign = {0};
    size_t l2, lsmall;
    uint8_t *t2 = read_src("examples/tile2.png", &l2), *small = gray_png(64, 64, &lsmall);
    ls.png = t2, ls.png_len = l2, ls.small = small, ls.small_len = lsmall;
    foreign.png = t2, foreign.png_len = l2;
    CHECK(t2 && small && fake_start(&foreign) == 0, "foreign host");
    ls.other_port = foreign.port;
    CHECK(fake_start(&ls) == 0, "fake Label Studio");

    /* a URL that is not an http(s) origin stops the server at start-up */
    struct srv s;
    const char *bad[] = {"--label-studio-url", "ftp://127.0.0.1/", NULL};
    CHECK(srv_start(&s, data, model, NULL, bad) != 0, "--label-studio-url ftp:// is refused at start-up");

    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ls.port);
    const char *extra[] = {"--label-studio-url", url, "--label-studio-token", LS_TOKEN, NULL};
    if (srv_start(&s, data, model, API_TOKEN, extra) != 0) {
        CHECK(0, "server start");
    } else {
        test_health_setup(s.port);
        test_predict(s.port, ls.port, model);
        test_refused(s.port, &ls, &foreign);
        test_bad_configs(s.port);
        test_webhook(s.port, data);
        test_metrics(s.port);
        CHECK(srv_stop(&s, SIGTERM) == 0, "clean exit (see %s)", s.log);
    }
    CHECK(atomic_load(&foreign.connections) == 0, "nothing ever reached the foreign host");
    fake_stop(&ls);
    fake_stop(&foreign);
    free(t2);
    free(small);
    su_done();
    return TEST_END();
}
