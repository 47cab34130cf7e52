/* The Open Inference Protocol routes of `marsseg serve` (server/oip.h) against a real server
 * with the bundled default model (models/default.npz), driven with libcurl:
 *   - metadata, health and readiness answers, versions ("1" only) and unknown models (404);
 *   - labels equal /segment's mask on the same tiles (tu_same_labels: up to near-ties) (AI4Mars tiles of
 *     datasets/sample.npz, examples/tile1.png and tile2.png, odd sizes), with the tiles batched
 *     into one request: binary UINT8, nested JSON UINT8, binary FP32 [N,1,H,W];
 *   - probabilities (sum to 1, argmax = labels) and confidence (their mean top probability);
 *   - the binary tensor data extension both ways (Inference-Header-Content-Length);
 *   - the refusals: datatype, shapes, values, outputs, the pixel limit, the body cap, headers;
 *   - the token: infer needs none, as /segment needs none;
 *   - a model other than the active one, by name (a tiny job's), against /segment once active.
 * The published protocol's own schema and examples are checked in tests/test_server_openapi.c. */
#include "marsseg.h"
#include "testutil.h"
#include "srvutil.h"

#include <cJSON.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define TOKEN "oip-secret"
#define MAX_PIXELS 300000

static struct srv g_srv;

/* ------------------------------------------------------------------ requests */

/* POST .../infer with a JSON body. */
static long infer_json(const char *path, const char *json, struct resp *r) {
    return send_json("POST", g_srv.port, path, json, r);
}

/* POST .../infer with a JSON header and binary data after it. */
static long infer_binary(const char *path, const char *header, const void *bin, size_t blen, struct resp *r) {
    size_t hl = strlen(header);
    uint8_t *body = malloc(hl + blen + 1);
    memcpy(body, header, hl);
    if (blen) memcpy(body + hl, bin, blen);
    char h[96];
    snprintf(h, sizeof h, "Inference-Header-Content-Length: %zu", hl);
    struct reqopt o = {.ctype = "application/octet-stream", .body = body, .len = hl + blen, .has_body = 1, .extra_header = h};
    http("POST", g_srv.port, path, &o, r);
    free(body);
    return r->status;
}

/* A binary answer: the JSON header (parsed) and where the binary data starts. */
static cJSON *split_binary(const struct resp *r, const uint8_t **bin, size_t *blen, size_t header_len) {
    if (!r->body || header_len > r->len) return NULL;
    *bin = (const uint8_t *)r->body + header_len;
    *blen = r->len - header_len;
    return cJSON_ParseWithLength(r->body, header_len);
}

/* A binary answer's JSON header length (Inference-Header-Content-Length), 0 if absent. */
static size_t header_len(const struct resp *r) { return r->infer_header_len[0] ? (size_t)strtoull(r->infer_header_len, NULL, 10) : 0; }

static const cJSON *output_named(const cJSON *ans, const char *name) {
    const cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(ans, "outputs"))
        if (strcmp(jstr(o, "name"), name) == 0) return o;
    return NULL;
}

/* ------------------------------------------------------------------ tiles */

struct tiles {
    int n, h, w;
    uint8_t *img;    /* (n,h,w) */
    uint8_t *labels; /* /segment's masks */
};

/* /segment's class ids for one gray image (the palette PNG's indices). */
static int segment_labels(const uint8_t *gray, int w, int h, uint8_t *out) {
    uint8_t *png = NULL, *lab = NULL;
    size_t plen = 0;
    if (ms_png_encode_gray(gray, w, h, &png, &plen) != MS_OK) return -1;
    struct reqopt o = {.ctype = "image/png", .body = png, .len = plen, .has_body = 1};
    struct resp r;
    http("POST", g_srv.port, "/segment", &o, &r);
    free(png);
    int ow = 0, oh = 0, rc = -1;
    if (r.status == 200 && ms_png_decode_index(r.body, r.len, 0, &lab, &ow, &oh) == MS_OK && ow == w && oh == h) {
        memcpy(out, lab, (size_t)w * h);
        rc = 0;
    } else {
        fprintf(stderr, "    /segment %dx%d: %ld %.200s\n", w, h, r.status, r.ctype);
    }
    free(lab);
    resp_free(&r);
    return rc;
}

static int tiles_segment(struct tiles *t) {
    t->labels = malloc((size_t)t->n * t->h * t->w);
    for (int i = 0; i < t->n; i++)
        if (segment_labels(t->img + (size_t)i * t->h * t->w, t->w, t->h, t->labels + (size_t)i * t->h * t->w)) return -1;
    return 0;
}

static void tiles_free(struct tiles *t) {
    free(t->img);
    free(t->labels);
}

/* ------------------------------------------------------------------ checks */

static void test_metadata(void) {
    struct resp r;
    cJSON *j = get_json(g_srv.port, "/v2");
    CHECK(j && strcmp(jstr(j, "name"), "marsseg") == 0 && jstr(j, "version")[0], "GET /v2 name and version");
    const cJSON *ext = cJSON_GetObjectItemCaseSensitive(j, "extensions");
    CHECK(cJSON_IsArray(ext) && cJSON_GetArraySize(ext) == 1 &&
              strcmp(cJSON_GetArrayItem(ext, 0)->valuestring, "binary_tensor_data") == 0,
          "GET /v2 lists the binary_tensor_data extension");
    cJSON_Delete(j);
    j = get_json(g_srv.port, "/v2/");
    CHECK(j && strcmp(jstr(j, "name"), "marsseg") == 0, "GET /v2/ (the path of the published OpenAPI document)");
    cJSON_Delete(j);
    j = get_json(g_srv.port, "/v2/health/live");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "live")), "live: {\"live\": true}");
    cJSON_Delete(j);
    j = get_json(g_srv.port, "/v2/health/ready");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ready")) && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "live")),
          "ready: {\"ready\": true, \"live\": true} (both spec versions' keys)");
    cJSON_Delete(j);

    for (int v = 0; v < 2; v++) {
        const char *path = v ? "/v2/models/default/versions/1" : "/v2/models/default";
        j = get_json(g_srv.port, path);
        CHECK(j && strcmp(jstr(j, "name"), "default") == 0 && jstr(j, "platform")[0], "%s: name, platform", path);
        const cJSON *vs = cJSON_GetObjectItemCaseSensitive(j, "versions");
        CHECK(cJSON_GetArraySize(vs) == 1 && strcmp(cJSON_GetArrayItem(vs, 0)->valuestring, "1") == 0, "%s: versions [\"1\"]", path);
        const cJSON *in = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "inputs"), 0);
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(in, "shape");
        CHECK(strcmp(jstr(in, "name"), "image") == 0 && strcmp(jstr(in, "datatype"), "UINT8") == 0 && cJSON_GetArraySize(sh) == 3 &&
                  cJSON_GetArrayItem(sh, 1)->valueint == -1,
              "%s: input image UINT8 [-1,-1,-1]", path);
        const cJSON *outs = cJSON_GetObjectItemCaseSensitive(j, "outputs");
        CHECK(cJSON_GetArraySize(outs) == 3 && output_named(j, "labels") && output_named(j, "probabilities") &&
                  output_named(j, "confidence"),
              "%s: outputs labels, probabilities, confidence", path);
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(output_named(j, "probabilities"), "shape");
        CHECK(cJSON_GetArraySize(ps) == 4 && cJSON_GetArrayItem(ps, 1)->valueint == 5 && cJSON_GetArrayItem(ps, 0)->valueint == -1,
              "%s: probabilities [-1,5,-1,-1]", path);
        cJSON_Delete(j);
    }
    j = get_json(g_srv.port, "/v2/models/default/ready");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ready")) && strcmp(jstr(j, "name"), "default") == 0, "model ready");
    cJSON_Delete(j);
    j = get_json(g_srv.port, "/v2/models/default/versions/1/ready");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ready")), "model version 1 ready");
    cJSON_Delete(j);

    static const char *const missing[] = {"/v2/models/nosuch", "/v2/models/nosuch/ready", "/v2/models/default/versions/2",
                                          "/v2/models/default/versions/2/ready", "/v2/models/..%2fx", "/v2/models/default/versions/"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        get(g_srv.port, missing[i], &r);
        CHECK(r.status == 404 && is_json_error(&r, NULL), "GET %s: 404 with {\"error\"} (got %ld)", missing[i], r.status);
        resp_free(&r);
    }
    infer_json("/v2/models/nosuch/infer", "{}", &r);
    EXPECT_ERROR(r, 404, "not_found");
    resp_free(&r);
    infer_json("/v2/models/default/versions/7/infer", "{}", &r);
    EXPECT_ERROR(r, 404, "not_found");
    resp_free(&r);
}

/* N tiles as one binary UINT8 request; labels (binary) against /segment's. */
static void check_binary_uint8(const struct tiles *t, const char *what) {
    char header[512];
    const size_t total = (size_t)t->n * t->h * t->w;
    snprintf(header, sizeof header,
             "{\"id\":\"bin-%s\",\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[%d,%d,%d],"
             "\"parameters\":{\"binary_data_size\":%zu}}],\"outputs\":[{\"name\":\"labels\",\"parameters\":{\"binary_data\":true}}]}",
             what, t->n, t->h, t->w, total);
    struct resp r;
    infer_binary("/v2/models/default/infer", header, t->img, total, &r);
    CHECK(r.status == 200 && strstr(r.ctype, "application/octet-stream"), "%s: binary infer 200 octet-stream (got %ld %s: %.200s)",
          what, r.status, r.ctype, r.status != 200 && r.body ? r.body : "");
    const uint8_t *bin = NULL;
    size_t blen = 0;
    cJSON *ans = r.status == 200 ? split_binary(&r, &bin, &blen, header_len(&r)) : NULL;
    const cJSON *lab = output_named(ans, "labels");
    const cJSON *bds = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(lab, "parameters"), "binary_data_size");
    CHECK(lab && strcmp(jstr(lab, "datatype"), "UINT8") == 0 && cJSON_IsNumber(bds) && (size_t)bds->valuedouble == total &&
              !cJSON_GetObjectItemCaseSensitive(lab, "data"),
          "%s: labels UINT8 as %zu bytes of binary data", what, total);
    CHECK(strcmp(jstr(ans, "id"), "") != 0 && strncmp(jstr(ans, "id"), "bin-", 4) == 0, "%s: the id comes back", what);
    CHECK(header_len(&r) > 0 && header_len(&r) < r.len && r.body[header_len(&r) - 1] == '}',
          "%s: Inference-Header-Content-Length is the JSON header's length", what);
    /* the same keys as the extension's published example answer (tests/fixtures/oip) */
    uint8_t *fx = NULL;
    size_t fxl = 0;
    cJSON *ex = ms_read_file(MS_SRC_DIR "/tests/fixtures/oip/binary_response_header.json", 1 << 20, &fx, &fxl) == MS_OK
                    ? cJSON_ParseWithLength((const char *)fx, fxl)
                    : NULL;
    const cJSON *exo = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ex, "outputs"), 0);
    int same_keys = exo && lab && cJSON_GetArraySize(exo) == cJSON_GetArraySize(lab);
    for (const cJSON *k = exo ? exo->child : NULL; same_keys && k; k = k->next)
        same_keys = cJSON_GetObjectItemCaseSensitive(lab, k->string) != NULL;
    CHECK(same_keys, "%s: the binary output's JSON has the keys of the extension's example (name, shape, datatype, parameters)", what);
    cJSON_Delete(ex);
    free(fx);
    CHECK(strcmp(jstr(ans, "model_name"), "default") == 0 && strcmp(jstr(ans, "model_version"), "1") == 0, "%s: model_name, model_version", what);
    CHECK(blen == total && bin && tu_same_labels(bin, t->labels, total, what),
          "%s: %d tiles of %dx%d batched: labels equal /segment's masks (up to near-ties)", what, t->n, t->w, t->h);
    cJSON_Delete(ans);
    resp_free(&r);
}

/* One tile as a nested JSON array ([N][H][W]); labels as JSON. */
static void check_json_nested(const struct tiles *t) {
    char *body = malloc((size_t)t->h * t->w * 5 + 4096);
    size_t o = (size_t)sprintf(body, "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,%d,%d],\"data\":[", t->h, t->w);
    for (int y = 0; y < t->h; y++) {
        o += (size_t)sprintf(body + o, "%s[", y ? "," : "");
        for (int x = 0; x < t->w; x++) o += (size_t)sprintf(body + o, "%s%u", x ? "," : "", t->img[(size_t)y * t->w + x]);
        body[o++] = ']';
    }
    strcpy(body + o, "]}]}");
    struct resp r;
    infer_json("/v2/models/default/versions/1/infer", body, &r);
    free(body);
    cJSON *ans = r.status == 200 ? parse(&r) : NULL;
    CHECK(ans && strstr(r.ctype, "application/json"), "nested JSON UINT8: 200 application/json (got %ld)", r.status);
    const cJSON *lab = output_named(ans, "labels"), *data = cJSON_GetObjectItemCaseSensitive(lab, "data");
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(ans, "outputs");
    CHECK(cJSON_GetArraySize(outs) == 1, "without outputs: labels only");
    int same = cJSON_GetArraySize(data) == t->h * t->w;
    for (int i = 0; same && i < t->h * t->w; i++) same = cJSON_GetArrayItem(data, i)->valueint == t->labels[i];
    CHECK(same, "nested JSON UINT8: labels (flat JSON) equal /segment's mask");
    cJSON_Delete(ans);
    resp_free(&r);
}

/* The tiles as FP32 [N,1,H,W] binary, all three outputs binary. */
static void check_fp32_all_outputs(const struct tiles *t) {
    const size_t hw = (size_t)t->h * t->w, total = hw * t->n;
    float *x = malloc(total * sizeof *x);
    for (size_t i = 0; i < total; i++) x[i] = t->img[i] * (1.0f / 255.0f);
    char header[512];
    snprintf(header, sizeof header,
             "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"FP32\",\"shape\":[%d,1,%d,%d],\"parameters\":{\"binary_data_size\":%zu}}],"
             "\"parameters\":{\"binary_data_output\":true},"
             "\"outputs\":[{\"name\":\"confidence\"},{\"name\":\"labels\"},{\"name\":\"probabilities\"}]}",
             t->n, t->h, t->w, total * 4);
    struct resp r;
    infer_binary("/v2/models/default/infer", header, x, total * 4, &r);
    free(x);
    CHECK(r.status == 200, "FP32 [N,1,H,W] binary: 200 (got %ld %.200s)", r.status, r.status != 200 && r.body ? r.body : "");
    const uint8_t *bin = NULL;
    size_t blen = 0;
    cJSON *ans = r.status == 200 ? split_binary(&r, &bin, &blen, header_len(&r)) : NULL;
    const size_t K = 5, want = t->n * 4 + total + total * K * 4;
    CHECK(ans && blen == want, "binary data: confidence, labels, probabilities in the outputs' order (%zu bytes, want %zu)", blen, want);
    if (ans && blen == want) {
        /* the binary data starts right after the JSON header, at any alignment: copied out */
        float *conf = malloc((size_t)t->n * 4), *prob = malloc(total * K * 4);
        memcpy(conf, bin, (size_t)t->n * 4);
        const uint8_t *lab = bin + t->n * 4;
        memcpy(prob, lab + total, total * K * 4);
        CHECK(tu_same_labels(lab, t->labels, total, "FP32 input"), "FP32 input: labels equal /segment's masks");
        int sums_ok = 1, argmax_ok = 1, conf_ok = 1;
        for (int b = 0; b < t->n; b++) {
            double top = 0;
            for (size_t i = 0; i < hw; i++) {
                double s = 0;
                int best = 0;
                float bv = -1;
                for (size_t k = 0; k < K; k++) {
                    float p = prob[((size_t)b * K + k) * hw + i];
                    s += p;
                    if (p > bv) bv = p, best = (int)k;
                }
                sums_ok &= fabs(s - 1) < 1e-4;
                argmax_ok &= best == lab[(size_t)b * hw + i];
                top += bv;
            }
            conf_ok &= fabs(top / hw - conf[b]) < 1e-5;
        }
        CHECK(sums_ok, "probabilities sum to 1 at every pixel");
        CHECK(argmax_ok, "labels are the argmax of the probabilities");
        CHECK(conf_ok, "confidence is the mean top probability of each tile");
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(output_named(ans, "probabilities"), "shape");
        CHECK(cJSON_GetArraySize(ps) == 4 && cJSON_GetArrayItem(ps, 0)->valueint == t->n && cJSON_GetArrayItem(ps, 1)->valueint == 5 &&
                  cJSON_GetArrayItem(ps, 2)->valueint == t->h && cJSON_GetArrayItem(ps, 3)->valueint == t->w,
              "probabilities shape [N,5,H,W]");
        CHECK(strcmp(jstr(output_named(ans, "probabilities"), "datatype"), "FP32") == 0 &&
                  strcmp(jstr(output_named(ans, "confidence"), "datatype"), "FP32") == 0,
              "probabilities and confidence are FP32");
        free(conf);
        free(prob);
    }
    cJSON_Delete(ans);
    resp_free(&r);

    /* the same outputs as JSON, one tile: equal to the binary ones */
    char *body = malloc(hw * 12 + 1024);
    size_t o = (size_t)sprintf(body, "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"FP32\",\"shape\":[1,%d,%d],\"data\":[", t->h, t->w);
    for (size_t i = 0; i < hw; i++) o += (size_t)sprintf(body + o, "%s%.9g", i ? "," : "", t->img[i] * (1.0f / 255.0f));
    strcpy(body + o, "]}],\"outputs\":[{\"name\":\"labels\"},{\"name\":\"confidence\"}]}");
    infer_json("/v2/models/default/infer", body, &r);
    free(body);
    ans = r.status == 200 ? parse(&r) : NULL;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(output_named(ans, "labels"), "data");
    int same = cJSON_GetArraySize(d) == (int)hw;
    for (size_t i = 0; same && i < hw; i++) same = cJSON_GetArrayItem(d, (int)i)->valueint == t->labels[i];
    CHECK(same, "FP32 as JSON text (%%.9g, which reads back to the same float): labels equal /segment's");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(output_named(ans, "confidence"), "data");
    CHECK(cJSON_GetArraySize(c) == 1 && cJSON_GetArrayItem(c, 0)->valuedouble > 0.2 && cJSON_GetArrayItem(c, 0)->valuedouble <= 1,
          "confidence as JSON: one number in (0.2, 1]");
    cJSON_Delete(ans);
    resp_free(&r);
}

static void expect_refusal(const char *what, long status, const char *code, const char *json) {
    struct resp r;
    infer_json("/v2/models/default/infer", json, &r);
    CHECK(r.status == status, "%s: status %ld, want %ld (%.200s)", what, r.status, status, r.body ? r.body : "");
    CHECK(is_json_error(&r, code), "%s: {\"error\": ..., \"code\": \"%s\"}", what, code);
    resp_free(&r);
}

static void test_refusals(void) {
    expect_refusal("not JSON", 400, "bad_json", "{\"inputs\": [");
    expect_refusal("no inputs", 400, "bad_input", "{}");
    expect_refusal("two inputs", 400, "bad_input",
                   "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,1],\"data\":[1]},"
                   "{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,1],\"data\":[1]}]}");
    expect_refusal("input name", 400, "bad_input", "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"UINT8\",\"shape\":[1,1,1],\"data\":[1]}]}");
    expect_refusal("datatype INT32", 400, "bad_datatype", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"INT32\",\"shape\":[1,1,1],\"data\":[1]}]}");
    expect_refusal("strings as data", 400, "bad_datatype", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,2],\"data\":[1,\"a\"]}]}");
    expect_refusal("booleans as data", 400, "bad_datatype", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,1],\"data\":[true]}]}");
    expect_refusal("rank 2", 400, "bad_shape", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[2,2],\"data\":[1,2,3,4]}]}");
    expect_refusal("3 channels", 400, "bad_shape", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,3,1,1],\"data\":[1,2,3]}]}");
    expect_refusal("zero dimension", 400, "bad_shape", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[0,4,4],\"data\":[]}]}");
    expect_refusal("fractional dimension", 400, "bad_shape", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1.5,2],\"data\":[1,2,3]}]}");
    expect_refusal("data shorter than the shape", 400, "bad_shape", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,2,2],\"data\":[1,2,3]}]}");
    expect_refusal("data longer than the shape", 400, "bad_shape", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,2],\"data\":[[1,2],[3]]}]}");
    expect_refusal("UINT8 256", 400, "bad_value", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,2],\"data\":[1,256]}]}");
    expect_refusal("UINT8 fraction", 400, "bad_value", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,2],\"data\":[1,2.5]}]}");
    expect_refusal("UINT8 negative", 400, "bad_value", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,1],\"data\":[-1]}]}");
    expect_refusal("FP32 above 1", 400, "bad_value", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"FP32\",\"shape\":[1,1,2],\"data\":[0.5,1.5]}]}");
    expect_refusal("FP32 overflow", 400, "bad_value", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"FP32\",\"shape\":[1,1,1],\"data\":[1e999]}]}");
    expect_refusal("unknown output", 400, "bad_output",
                   "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,1],\"data\":[1]}],\"outputs\":[{\"name\":\"logits\"}]}");
    expect_refusal("an output twice", 400, "bad_output",
                   "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,1],\"data\":[1]}],\"outputs\":[{\"name\":\"labels\"},{\"name\":\"labels\"}]}");
    expect_refusal("binary_data not a boolean", 400, "bad_parameter",
                   "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,1],\"data\":[1]}],\"outputs\":[{\"name\":\"labels\",\"parameters\":{\"binary_data\":1}}]}");
    expect_refusal("binary_data_size without the header", 400, "bad_input",
                   "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,1],\"parameters\":{\"binary_data_size\":1}}]}");
    char big[256];
    snprintf(big, sizeof big, "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[4,%d,300],\"data\":[0]}]}", MAX_PIXELS / 1000);
    expect_refusal("N*H*W over --max-pixels", 400, "too_many_pixels", big);
    expect_refusal("huge shape (overflow)", 400, "too_many_pixels",
                   "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[4294967296,4294967296,4294967296],\"data\":[0]}]}");

    /* data values past the pixel limit are refused while reading, before the shape is known */
    size_t n = (size_t)MAX_PIXELS + 10, o = 0;
    char *body = malloc(n * 2 + 256);
    o = (size_t)sprintf(body, "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,1],\"data\":[");
    for (size_t i = 0; i < n; i++) body[o++] = '0', body[o++] = ',';
    strcpy(body + o - 1, "]}]}");
    expect_refusal("more data values than the pixel limit", 400, "too_many_pixels", body);
    free(body);

    /* binary data: size mismatches, bytes left over, a header past the body */
    struct resp r;
    uint8_t bytes[64] = {0};
    infer_binary("/v2/models/default/infer",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,4,4],\"parameters\":{\"binary_data_size\":15}}]}", bytes, 15, &r);
    EXPECT_ERROR(r, 400, "bad_shape");
    resp_free(&r);
    infer_binary("/v2/models/default/infer",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"FP32\",\"shape\":[1,4,4],\"parameters\":{\"binary_data_size\":64}}]}", bytes, 63, &r);
    EXPECT_ERROR(r, 400, "bad_input");
    resp_free(&r);
    infer_binary("/v2/models/default/infer",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,1],\"data\":[3]}]}", bytes, 5, &r);
    EXPECT_ERROR(r, 400, "bad_input");
    resp_free(&r);
    struct reqopt ho = {.ctype = "application/octet-stream", .body = "{}", .len = 2, .has_body = 1,
                        .extra_header = "Inference-Header-Content-Length: 3"};
    http("POST", g_srv.port, "/v2/models/default/infer", &ho, &r);
    EXPECT_ERROR(r, 400, "bad_header");
    resp_free(&r);
    ho.extra_header = "Inference-Header-Content-Length: two";
    http("POST", g_srv.port, "/v2/models/default/infer", &ho, &r);
    EXPECT_ERROR(r, 400, "bad_header");
    resp_free(&r);
    /* 150000 images of 1x1 are within the pixel limit, but pad to 16x16 each for the model */
    uint8_t *ones = calloc(MAX_PIXELS / 2, 1);
    char hdr[256];
    snprintf(hdr, sizeof hdr,
             "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[%d,1,1],\"parameters\":{\"binary_data_size\":%d}}]}",
             MAX_PIXELS / 2, MAX_PIXELS / 2);
    infer_binary("/v2/models/default/infer", hdr, ones, MAX_PIXELS / 2, &r);
    EXPECT_ERROR(r, 400, "too_many_pixels");
    resp_free(&r);
    free(ones);
    float bad[16] = {0.5f, NAN};
    infer_binary("/v2/models/default/infer",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"FP32\",\"shape\":[1,4,4],\"parameters\":{\"binary_data_size\":64}}]}", bad, 64, &r);
    EXPECT_ERROR(r, 400, "bad_value");
    resp_free(&r);

    /* the body cap: max(--max-body, --max-json + 4 * --max-pixels, --max-json + --max-frame-pixels),
     * decided from Content-Length */
    cJSON *s = get_json(g_srv.port, "/schema");
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(s, "limits");
    size_t cap = (size_t)jnum(lim, "max_json") + 4 * (size_t)jnum(lim, "max_pixels");
    if ((size_t)jnum(lim, "max_json") + (size_t)jnum(lim, "max_frame_pixels") > cap)
        cap = (size_t)jnum(lim, "max_json") + (size_t)jnum(lim, "max_frame_pixels");
    if ((size_t)jnum(lim, "max_body") > cap) cap = (size_t)jnum(lim, "max_body");
    cJSON_Delete(s);
    char *huge = malloc(cap + 2);
    memset(huge, ' ', cap + 1);
    huge[0] = '{';
    huge[cap] = '}';
    struct reqopt bo = {.ctype = "application/json", .body = huge, .len = cap + 1, .has_body = 1};
    http("POST", g_srv.port, "/v2/models/default/infer", &bo, &r);
    EXPECT_ERROR(r, 413, "body_too_large");
    resp_free(&r);
    bo.len = cap; /* at the cap: read, and refused for what it says */
    huge[cap - 1] = '}';
    http("POST", g_srv.port, "/v2/models/default/infer", &bo, &r);
    EXPECT_ERROR(r, 400, "bad_input");
    resp_free(&r);
    free(huge);

    /* the spec's own example request (tests/fixtures/oip/): a model of two inputs we do not have */
    uint8_t *ex = NULL;
    size_t exl = 0;
    CHECK(ms_read_file(MS_SRC_DIR "/tests/fixtures/oip/inference_request.json", 1 << 20, &ex, &exl) == MS_OK, "spec example fixture");
    if (ex) {
        char *txt = strndup((const char *)ex, exl);
        expect_refusal("the protocol's example request (two inputs)", 400, "bad_input", txt);
        free(txt);
        free(ex);
    }
    ex = NULL;
    CHECK(ms_read_file(MS_SRC_DIR "/tests/fixtures/oip/binary_request_header.json", 1 << 20, &ex, &exl) == MS_OK, "binary example fixture");
    if (ex) { /* the extension's example: 16 bytes of UINT32 and 3 of BOOL after the header */
        char *txt = strndup((const char *)ex, exl);
        infer_binary("/v2/models/default/infer", txt, bytes, 19, &r);
        EXPECT_ERROR(r, 400, "bad_input");
        resp_free(&r);
        free(txt);
        free(ex);
    }
}

/* A model that is not the active one, by name: a tiny job's (activate false). */
static void test_named_model(const struct tiles *t) {
    char job[512], last[32];
    snprintf(job, sizeof job, "{\"dataset\":\"sample\",\"epochs\":1,\"batch\":4,\"limit\":16,\"model\":{\"depth\":2,\"base\":4},"
                              "\"threads\":1,\"early_stop\":0,\"activate\":false}");
    struct resp r;
    send_json_tok("POST", g_srv.port, "/jobs", job, TOKEN, &r);
    cJSON *j = parse(&r);
    char id[32] = "";
    snprintf(id, sizeof id, "%s", jstr(j, "id"));
    cJSON_Delete(j);
    resp_free(&r);
    CHECK(id[0], "a tiny job was accepted");
    if (!id[0]) return;
    CHECK(wait_state(g_srv.port, id, "succeeded|failed", 60, last, sizeof last) && strcmp(last, "succeeded") == 0,
          "the tiny job succeeded (%s)", last);
    cJSON *jb = job_get(g_srv.port, id);
    char model[64];
    snprintf(model, sizeof model, "%s", jstr(jb, "model"));
    cJSON_Delete(jb);
    CHECK(model[0], "the job registered a model");
    char path[160], active[128];
    snprintf(path, sizeof path, "/v2/models/%s/infer", model);
    const size_t total = (size_t)t->n * t->h * t->w;
    char header[512];
    snprintf(header, sizeof header,
             "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[%d,%d,%d],\"parameters\":{\"binary_data_size\":%zu}}],"
             "\"parameters\":{\"binary_data_output\":true}}",
             t->n, t->h, t->w, total);
    infer_binary(path, header, t->img, total, &r);
    const uint8_t *bin = NULL;
    size_t blen = 0;
    cJSON *ans = r.status == 200 ? split_binary(&r, &bin, &blen, header_len(&r)) : NULL;
    CHECK(ans && strcmp(jstr(ans, "model_name"), model) == 0 && blen == total, "infer on %s (not active): 200 (got %ld)", model, r.status);
    uint8_t *named = blen == total ? malloc(total) : NULL;
    if (named) memcpy(named, bin, total);
    cJSON_Delete(ans);
    resp_free(&r);

    /* activate it: /segment's masks must be what the named inference gave */
    snprintf(active, sizeof active, "{\"id\":\"%s\"}", model);
    send_json_tok("PUT", g_srv.port, "/models/active", active, TOKEN, &r);
    CHECK(r.status == 200, "PUT /models/active %s", model);
    resp_free(&r);
    struct tiles seg = {.n = t->n, .h = t->h, .w = t->w, .img = t->img};
    CHECK(tiles_segment(&seg) == 0, "/segment with %s", model);
    CHECK(named && seg.labels && tu_same_labels(named, seg.labels, total, "named model"), "the named model's labels equal /segment's once it is active");
    free(seg.labels);
    free(named);

    /* and "default", no longer active, is loaded by name and still answers as before */
    struct tiles def = *t;
    check_binary_uint8(&def, "default-by-name");
    send_json_tok("PUT", g_srv.port, "/models/active", "{\"id\":\"default\"}", TOKEN, &r);
    resp_free(&r);
}

int main(int argc, char **argv) {
    (void)argc;
    if (su_init(argv[0], "oip")) return 1;
    /* a small frame limit keeps the body cap's test body small (whole frames: test_server_frame) */
    const char *extra[] = {"--max-pixels", "300000", "--max-body", "1M", "--max-frame-pixels", "1M", "--threads", "1", NULL};
    if (su_start_bundled(&g_srv, extra, TOKEN)) return TEST_END();

    test_metadata();

    /* tiles: 12 AI4Mars tiles of the sample dataset and the two examples (64x128 each) */
    ms_dataset ds;
    CHECK(ms_dataset_load(&ds, MS_SRC_DIR "/datasets/sample.npz", "training_set", 1u << 30) == MS_OK, "sample dataset");
    struct tiles t = {.n = 14, .h = ds.h, .w = ds.w};
    t.img = malloc((size_t)t.n * t.h * t.w);
    memcpy(t.img, ds.img + (size_t)100 * ds.h * ds.w, (size_t)12 * ds.h * ds.w);
    for (int e = 0; e < 2; e++) {
        uint8_t *png = NULL, *g = NULL;
        size_t len = 0;
        int w = 0, h = 0;
        const char *ex = e ? MS_SRC_DIR "/examples/tile2.png" : MS_SRC_DIR "/examples/tile1.png";
        CHECK(ms_read_file(ex, 1 << 24, &png, &len) == MS_OK && ms_png_decode_gray(png, len, 0, &g, &w, &h) == MS_OK &&
                  w == t.w && h == t.h,
              "%s is a %dx%d tile", ex, t.w, t.h);
        if (g && w == t.w && h == t.h) memcpy(t.img + (size_t)(12 + e) * t.h * t.w, g, (size_t)t.h * t.w);
        free(png);
        free(g);
    }
    CHECK(tiles_segment(&t) == 0, "/segment on every tile");
    check_binary_uint8(&t, "64x128");
    struct tiles one = {.n = 1, .h = t.h, .w = t.w, .img = t.img, .labels = t.labels};
    check_binary_uint8(&one, "one-tile");
    check_json_nested(&t);
    check_fp32_all_outputs(&t);

    /* odd sizes: 37x53 crops of three tiles (padded to 48x64 for the depth-4 model) */
    struct tiles odd = {.n = 3, .h = 37, .w = 53};
    odd.img = malloc((size_t)odd.n * odd.h * odd.w);
    for (int i = 0; i < odd.n; i++)
        for (int y = 0; y < odd.h; y++)
            memcpy(odd.img + ((size_t)i * odd.h + y) * odd.w, ds.img + ((size_t)(200 + i) * ds.h + y + 5) * ds.w + 9, (size_t)odd.w);
    CHECK(tiles_segment(&odd) == 0, "/segment on 37x53 crops");
    check_binary_uint8(&odd, "37x53");
    tiles_free(&odd);
    ms_dataset_free(&ds);

    test_refusals();

    /* the token: infer only reads, like /segment, and needs none (the server has one) */
    struct resp r;
    infer_json("/v2/models/default/infer", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,2,2],\"data\":[1,2,3,4]}]}", &r);
    CHECK(r.status == 200, "infer without the token on a server that has one: 200, as /segment (got %ld)", r.status);
    resp_free(&r);

    test_named_model(&t);
    tiles_free(&t);

    CHECK(srv_stop(&g_srv, SIGTERM) == 0, "server exits 0 on SIGTERM");
    su_done();
    return TEST_END();
}
