/* Integration test of `marsseg serve`, every route's answers on a server without jobs (its
 * refusals are tests/test_server_refusals.c; tests/test_server.c drives datasets, jobs and
 * restarts): the real binary on an ephemeral port with a temp data dir, driven over HTTP with
 * libcurl.
 *
 * Covers: health/readiness; /schema; /segment on PNGs of several kinds and sizes (gray, 16-bit,
 * RGB, RGBA, palette, interlaced, 1x1, 37x53) in all three output formats, multipart and raw;
 * ?frame=1 (a whole camera frame);
 * static files, conditional GETs, /favicon.ico and traversal attempts; the token on every
 * state-changing route (401 without it, reads stay open) and the queue bound. Every server must
 * exit 0 on SIGTERM (under SAN=1: and leak nothing). */
#include "marsseg.h"
#include "marsseg_npz.h"
#include "marsseg_predict.h"
#include "testutil.h"
#include "srvutil.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <png.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ fixtures */

struct membuf {
    uint8_t *p;
    size_t n, cap;
};

static void png_mem_write(png_structp png, png_bytep data, png_size_t len) {
    struct membuf *b = png_get_io_ptr(png);
    if (b->n + len > b->cap) {
        size_t ncap = (b->cap ? b->cap * 2 : 4096) + len;
        uint8_t *np = realloc(b->p, ncap);
        if (!np) png_error(png, "oom");
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
}
static void png_mem_flush(png_structp png) { (void)png; }

/* PNG kinds the core encoders do not produce: 16-bit, RGBA, interlaced. */
static uint8_t *make_png(int w, int h, int bit_depth, int color_type, int interlace, size_t *len) {
    struct membuf b = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int channels = color_type == PNG_COLOR_TYPE_RGB ? 3 : color_type == PNG_COLOR_TYPE_RGBA ? 4
                   : color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    size_t row_bytes = (size_t)w * channels * (bit_depth / 8);
    uint8_t *rows = malloc(row_bytes * h);
    png_bytep *ptrs = malloc(sizeof(png_bytep) * h);
    if (!png || !info || !rows || !ptrs || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(rows);
        free(ptrs);
        free(b.p);
        return NULL;
    }
    for (size_t i = 0; i < row_bytes * h; i++) rows[i] = (uint8_t)(i * 7 + i / row_bytes);
    for (int y = 0; y < h; y++) ptrs[y] = rows + row_bytes * y;
    png_set_write_fn(png, &b, png_mem_write, png_mem_flush);
    png_set_IHDR(png, info, w, h, bit_depth, color_type, interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, ptrs);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(ptrs);
    *len = b.n;
    return b.p;
}

/* ------------------------------------------------------------------ tests */

static void test_health(int port) {
    struct resp r;
    CHECK(get(port, "/healthz", &r) == 200, "healthz %ld", r.status);
    CHECK(strstr(r.ctype, "application/json") != NULL, "healthz type %s", r.ctype);
    char blas[96];
    snprintf(blas, sizeof blas, "\"blas\":\"%s\"", ms_blas_core()); /* the server runs the same kernels as this test */
    CHECK(r.body && strstr(r.body, blas) != NULL, "healthz %s lacks %s", r.body ? r.body : "", blas);
    resp_free(&r);
    CHECK(get(port, "/readyz", &r) == 200, "readyz %ld %s", r.status, r.body);
    resp_free(&r);
    CHECK(http("HEAD", port, "/healthz", NULL, &r) == 0 && r.status == 200, "HEAD healthz %ld", r.status);
    resp_free(&r);
}

static void check_mask_png(const struct resp *r, int w, int h, const char *what) {
    uint8_t *lab = NULL;
    int ow = 0, oh = 0;
    CHECK(r->status == 200, "%s: status %ld %.200s", what, r->status, r->body ? r->body : "");
    CHECK(strcmp(r->ctype, "image/png") == 0, "%s: type %s", what, r->ctype);
    if (r->status != 200) return;
    ms_status st = ms_png_decode_index(r->body, r->len, 0, &lab, &ow, &oh);
    CHECK(st == MS_OK && ow == w && oh == h, "%s: mask %dx%d, want %dx%d (%s)", what, ow, oh, w, h, ms_last_error());
    int bad = 0;
    for (int i = 0; st == MS_OK && i < ow * oh; i++) bad += lab[i] >= MS_NUM_CLASSES;
    CHECK(bad == 0, "%s: %d pixels are not class ids", what, bad);
    free(lab);
}

static void test_segment(int port, const char *want_model) {
    struct {
        const char *name;
        uint8_t *png;
        size_t len;
        int w, h;
    } cases[8];
    int n = 0;
    size_t len;
    uint8_t *p;
#define ADD(nm, expr, W, H)                                               \
    do {                                                                  \
        p = (expr);                                                       \
        CHECK(p != NULL, "fixture %s", nm);                               \
        if (p) cases[n++] = (__typeof__(cases[0])){nm, p, len, W, H};         \
    } while (0)
    ADD("gray 37x53", gray_png(37, 53, &len), 37, 53);
    ADD("gray 64x128 tile", gray_png(128, 64, &len), 128, 64);
    ADD("gray 1x1", gray_png(1, 1, &len), 1, 1);
    ADD("gray16 41x29", make_png(41, 29, 16, PNG_COLOR_TYPE_GRAY, 0, &len), 41, 29);
    ADD("rgb 50x30", make_png(50, 30, 8, PNG_COLOR_TYPE_RGB, 0, &len), 50, 30);
    ADD("rgba interlaced 33x65", make_png(33, 65, 8, PNG_COLOR_TYPE_RGBA, 1, &len), 33, 65);
    ADD("gray interlaced 16-bit 20x20", make_png(20, 20, 16, PNG_COLOR_TYPE_GRAY, 1, &len), 20, 20);
    {
        uint8_t lab[24 * 17];
        for (int i = 0; i < 24 * 17; i++) lab[i] = (uint8_t)(i % 5);
        uint8_t *out = NULL;
        ADD("palette 24x17", ms_png_encode_labels(lab, 24, 17, &out, &len) == MS_OK ? out : NULL, 24, 17);
    }
#undef ADD
    for (int i = 0; i < n; i++) {
        struct resp r;
        struct reqopt mp = {.body = cases[i].png, .len = cases[i].len, .mp_field = "img"};
        http("POST", port, "/segment", &mp, &r);
        check_mask_png(&r, cases[i].w, cases[i].h, cases[i].name);
        CHECK(strcmp(r.xmodel, want_model) == 0, "%s: X-Model '%s', want '%s'", cases[i].name, r.xmodel, want_model);
        resp_free(&r);
        struct reqopt raw = {.ctype = "image/png", .body = cases[i].png, .len = cases[i].len};
        http("POST", port, "/segment", &raw, &r);
        check_mask_png(&r, cases[i].w, cases[i].h, cases[i].name);
        resp_free(&r);
    }
    /* overlay: an RGB PNG of the input's size */
    {
        struct resp r;
        struct reqopt mp = {.body = cases[0].png, .len = cases[0].len, .mp_field = "img"};
        http("POST", port, "/segment?format=overlay", &mp, &r);
        uint8_t *g = NULL;
        int w = 0, h = 0;
        CHECK(r.status == 200 && strcmp(r.ctype, "image/png") == 0, "overlay %ld %s", r.status, r.ctype);
        CHECK(r.status == 200 && ms_png_decode_gray(r.body, r.len, 0, &g, &w, &h) == MS_OK && w == 37 && h == 53,
              "overlay decodes to 37x53 (%dx%d)", w, h);
        free(g);
        resp_free(&r);
    }
    /* json: counts and fractions add up */
    {
        struct resp r;
        struct reqopt mp = {.body = cases[0].png, .len = cases[0].len, .mp_field = "img"};
        http("POST", port, "/segment?format=json", &mp, &r);
        CHECK(r.status == 200 && strstr(r.ctype, "application/json"), "json %ld %s", r.status, r.ctype);
        cJSON *j = parse(&r);
        CHECK(jnum(j, "width") == 37 && jnum(j, "height") == 53, "json size");
        CHECK(strcmp(jstr(j, "model"), want_model) == 0, "json model %s", jstr(j, "model"));
        CHECK(strcmp(r.xmodel, want_model) == 0, "json X-Model %s", r.xmodel);
        const cJSON *cl = cJSON_GetObjectItemCaseSensitive(j, "classes"), *c;
        double pix = 0, frac = 0;
        int nc = 0;
        cJSON_ArrayForEach(c, cl) {
            pix += jnum(c, "pixels");
            frac += jnum(c, "fraction");
            nc++;
        }
        CHECK(nc == MS_NUM_CLASSES && pix == 37 * 53 && frac > 0.999 && frac < 1.001, "json classes %d %g %g", nc, pix, frac);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "timing");
        CHECK(jnum(t, "total_ms") >= 0, "json timing");
        cJSON_Delete(j);
        resp_free(&r);
    }
    for (int i = 0; i < n; i++) free(cases[i].png);
}

static void test_static(int port) {
    struct resp r;
    static const struct {
        const char *path, *type;
    } ok[] = {
        {"/", "text/html"}, {"/static/index.html", "text/html"}, {"/static/app.js", "text/javascript"},
        {"/static/style.css", "text/css"}, {"/static/icon.svg", "image/svg+xml"}, {"/static/sub/data.json", "application/json"},
        {"/favicon.ico", "image/svg+xml"}, /* static/favicon.svg: it answered 404 before */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        get(port, ok[i].path, &r);
        CHECK(r.status == 200 && strncmp(r.ctype, ok[i].type, strlen(ok[i].type)) == 0, "%s: %ld %s", ok[i].path, r.status, r.ctype);
        resp_free(&r);
    }
    get(port, "/static/app.js", &r);
    char etag[64];
    snprintf(etag, sizeof etag, "%s", r.etag);
    resp_free(&r);
    char h[128];
    snprintf(h, sizeof h, "If-None-Match: %s", etag);
    struct reqopt o = {.extra_header = h};
    http("GET", port, "/static/app.js", &o, &r);
    CHECK(etag[0] && r.status == 304, "conditional GET: %ld (etag %s)", r.status, etag);
    resp_free(&r);
    static const char *const bad[] = {
        "/static/../Makefile", "/static/../../../../etc/passwd", "/static/%2e%2e/secret.txt", "/static/%2e%2e%2fsecret.txt",
        "/static/..%2f..%2fetc/passwd", "/static/escape.txt", "/static/sub/../../secret.txt", "/static/", "/static//etc/passwd",
        "/static/./app.js", "/static/app.js%00.png", "/static/sub", "/static/missing.js", "/static/..\\secret.txt",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        get(port, bad[i], &r);
        CHECK(r.status == 404 || r.status == 400, "%s: %ld", bad[i], r.status);
        CHECK(!r.body || !strstr(r.body, "TOP SECRET"), "%s leaked the secret", bad[i]);
        resp_free(&r);
    }
}

/* GET /schema (contract 2 of issue 17): classes from the core's tables, the training-config
 * table exactly, the limits this server was started with (srv_start: --max-body 1M --max-pixels
 * 300000 --max-upload 4M, --max-json at its default 64k), and whether a token is required. */
static void test_schema(int port, int token_required) {
    struct resp r;
    get(port, "/schema", &r);
    cJSON *j = parse(&r);
    CHECK(r.status == 200 && strstr(r.ctype, "application/json"), "schema %ld %s", r.status, r.ctype);
    const cJSON *classes = cJSON_GetObjectItemCaseSensitive(j, "classes");
    CHECK(cJSON_GetArraySize(classes) == MS_NUM_CLASSES, "schema: %d classes", cJSON_GetArraySize(classes));
    for (int c = 0; c < MS_NUM_CLASSES && cJSON_GetArraySize(classes) == MS_NUM_CLASSES; c++) {
        const cJSON *o = cJSON_GetArrayItem(classes, c);
        char color[8];
        snprintf(color, sizeof color, "#%02x%02x%02x", ms_class_colors[c][0], ms_class_colors[c][1], ms_class_colors[c][2]);
        CHECK(jnum(o, "id") == c && strcmp(jstr(o, "name"), ms_class_names[c]) == 0 && strcmp(jstr(o, "color"), color) == 0,
              "schema class %d: %s %s", c, jstr(o, "name"), jstr(o, "color"));
    }
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(j, "config"), *f;
    cJSON *want = ms_train_config_schema();
    CHECK(cJSON_GetArraySize(config) > 0 && cJSON_Compare(config, want, 1), "schema config is ms_train_config_schema()");
    cJSON_Delete(want);
    int bounded = 0;
    cJSON_ArrayForEach(f, config) bounded += cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(f, "min")) &&
                                             cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(f, "max"));
    CHECK(bounded > 0, "schema config fields with min and max: %d", bounded);
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(j, "limits");
    CHECK(jnum(lim, "max_body") == 1 << 20 && jnum(lim, "max_pixels") == 300000 && jnum(lim, "max_json") == 64 << 10 &&
              jnum(lim, "max_upload") == 4 << 20,
          "schema limits: %s", r.body);
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "auth"), "token_required");
    CHECK(cJSON_IsBool(tr) && cJSON_IsTrue(tr) == token_required, "schema token_required: %s", r.body);
    cJSON_Delete(j);
    resp_free(&r);
}

/* With MARSSEG_TOKEN: every state-changing route needs it, reads stay open. */
static void test_token(const char *model) {
    char data[PATH_MAX];
    path_in_tmp(data, sizeof data, "data-token");
    struct srv s;
    const char *extra[] = {"--max-queue", "1", NULL};
    if (srv_start(&s, data, model, "s3cret-token", extra) != 0) {
        CHECK(0, "token server start");
        return;
    }
    struct resp r;
    static const char *const routes[][3] = {
        {"POST", "/jobs", "{}"}, {"DELETE", "/jobs/j000001", NULL}, {"POST", "/jobs/j000001/resume", NULL},
        {"PUT", "/models/active", "{\"id\":\"default\"}"}, {"POST", "/datasets", "x"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        for (int k = 0; k < 3; k++) {
            const char *tok = k == 0 ? NULL : k == 1 ? "wrong" : "s3cret-token-and-more";
            send_json_tok(routes[i][0], s.port, routes[i][1], routes[i][2], tok, &r);
            EXPECT_ERROR(r, 401, "unauthorized");
            resp_free(&r);
        }
        send_json_tok(routes[i][0], s.port, routes[i][1], routes[i][2], "s3cret-token", &r);
        CHECK(r.status != 401, "%s %s with the token: %ld", routes[i][0], routes[i][1], r.status);
        resp_free(&r);
    }
    test_schema(s.port, 1);
    static const char *const open_routes[] = {"/healthz", "/readyz", "/jobs", "/models", "/datasets", "/metrics", "/", "/schema"};
    for (size_t i = 0; i < sizeof open_routes / sizeof open_routes[0]; i++) {
        get(s.port, open_routes[i], &r);
        CHECK(r.status == 200, "GET %s without token: %ld", open_routes[i], r.status);
        resp_free(&r);
    }
    size_t len;
    uint8_t *png = gray_png(37, 53, &len);
    struct reqopt o = {.ctype = "image/png", .body = png, .len = len};
    http("POST", s.port, "/segment", &o, &r);
    CHECK(r.status == 200, "segment needs no token: %ld", r.status);
    resp_free(&r);
    free(png);
    /* the queue bound (--max-queue 1): the job posted above holds the worker (or the queue) */
    char cfg[512];
    int full = 0;
    for (int i = 0; i < 4 && !full; i++) {
        send_json_tok("POST", s.port, "/jobs", tiny_job(cfg, sizeof cfg, "sample", 10000), "s3cret-token", &r);
        if (r.status == 503) {
            full = 1;
            CHECK(r.retry_after[0] != 0, "queue full has Retry-After");
            CHECK(is_json_error(&r, "queue_full"), "queue full error");
        }
        resp_free(&r);
    }
    CHECK(full, "POST /jobs answered 503 once the queue was full");
    CHECK(srv_stop(&s, SIGTERM) == 0, "token server clean exit (see %s)", s.log);
}

/* ?frame=1: a 256x128 "camera frame" segmented at the model's frame width (128) and answered at
 * 256x128: the labels ms_model_segment_frame gives in this process; a bad flag is a 400. */
static void test_segment_frame(int port, const char *model) {
    enum { FW = 256, FH = 128 };
    static uint8_t img[FW * FH], want[FW * FH];
    for (int y = 0; y < FH; y++)
        for (int x = 0; x < FW; x++) img[y * FW + x] = (uint8_t)(128 + 90 * sin(x / 11.0) * cos(y / 7.0) + (x > 170 ? 30 : 0));
    uint8_t *png = NULL, *got = NULL;
    size_t plen = 0;
    int gw = 0, gh = 0;
    ms_model *m = NULL;
    CHECK_OK(ms_png_encode_gray(img, FW, FH, &png, &plen));
    CHECK_OK(ms_model_load(&m, model));
    if (m) CHECK_OK(ms_model_segment_frame(m, img, FH, FW, 0, want, NULL, NULL));
    struct reqopt o = {.ctype = "image/png", .body = png, .len = plen};
    struct resp r;
    http("POST", port, "/segment?frame=1", &o, &r);
    CHECK(r.status == 200 && ms_png_decode_index(r.body, r.len, 0, &got, &gw, &gh) == MS_OK && gw == FW && gh == FH && m &&
              tu_same_labels(got, want, sizeof want, "?frame=1"), "?frame=1: %ld, %dx%d, the labels of ms_model_segment_frame", r.status, gw, gh);
    resp_free(&r);
    http("POST", port, "/segment?frame=2", &o, &r);
    EXPECT_ERROR(r, 400, "bad_flag");
    resp_free(&r);
    free(png), free(got);
    ms_model_free(m);
}

/* The answers of one server started as srv_start starts it, without a token. */
static void test_answers(const char *data, const char *model) {
    struct srv s;
    if (srv_start(&s, data, model, NULL, NULL) != 0) {
        CHECK(0, "server start");
        return;
    }
    test_health(s.port);
    test_schema(s.port, 0);
    test_segment(s.port, "default");
    test_segment_frame(s.port, model);
    test_static(s.port);
    CHECK(srv_stop(&s, SIGTERM) == 0, "clean exit (see %s)", s.log);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    char model[PATH_MAX], data[PATH_MAX];
    (void)argc;
    if (su_init(argv[0], "test-server-api")) return 1;
    su_fixtures(model, data, 1); /* with static/ for test_static and the token's GET / */
    test_answers(data, model);
    test_token(model);
    su_done();
    return TEST_END();
}
