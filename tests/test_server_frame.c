/* Whole camera frames through every path of `marsseg serve` (issue 19), against the bundled
 * default model (model.frame 128) with --max-pixels 300000 --max-body 1M and the default
 * --max-frame-pixels (4096^2):
 *   1. POST /segment?frame=1 takes rover-sized frames: 3000x3000, 4096x4096 and 4096x2160, each
 *      PNG larger than --max-body (frame mode's body cap is 2 bytes per frame pixel), answered at
 *      the frame's size with the labels ms_model_segment_frame gives in this process; the JSON
 *      answer names the size the frame was segmented at;
 *   2. the limits: a frame over --max-frame-pixels (422, from its header), a frame whose resized
 *      size is over --max-pixels (422), a body over the frame cap (413); without frame=1 nothing
 *      changed: 3000x3000 is 422 and the large PNG 413; /schema's limits say both caps;
 *   3. POST /predictions with frame (an npz body with ?frame=1, and {"frame": true} on an uploaded
 *      dataset): 300x200 frames, whose resized size the model's multiples do not divide, get
 *      /segment?frame=1's labels (same_labels: equal up to near-ties); without frame they are refused; bad values 400;
 *   4. the Open Inference Protocol's parameters.frame: UINT8 frames (two 300x200 and the
 *      3000x3000 one, 9 MB of binary data) get /segment?frame=1's labels (up to near-ties),
 *      probabilities at the frames' size; FP32 frames the labels of the same steps with a float
 *      resize (how many equal /segment's is printed); its refusals. */
#include "marsseg.h"
#include "marsseg_npz.h"
#include "marsseg_predict.h"
#include "testutil.h"
#include "srvutil.h"
#include "srvpass.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <zlib.h>

#define MAX_PIXELS 300000
#define FH 200 /* the frames of the batch paths */
#define FW 300
#define NF 2

static struct srv g_srv;
static ms_model *g_model;            /* the served model, loaded here: the reference */
static uint8_t *g_big, *g_big_labels; /* the 3000x3000 frame and its /segment?frame=1 labels */
static uint8_t g_frames[NF][FH * FW], g_frame_labels[NF][FH * FW];

/* ------------------------------------------------------------------ fixtures */

/* A frame that compresses like a rover image: smooth terrain plus a few gray levels of noise. */
static uint8_t *frame_img(int w, int h, unsigned seed) {
    uint8_t *g = malloc((size_t)w * h);
    float *cx = malloc(sizeof(float) * w), *cy = malloc(sizeof(float) * h);
    for (int x = 0; g && x < w; x++) cx[x] = (float)sin(x / (37.0 + seed) + seed);
    for (int y = 0; g && y < h; y++) cy[y] = (float)cos(y / 23.0);
    for (int y = 0; g && y < h; y++)
        for (int x = 0; x < w; x++) {
            uint32_t n = (uint32_t)(x * 73856093u ^ y * 19349663u ^ seed * 83492791u);
            n ^= n >> 13, n *= 0x5bd1e995u, n ^= n >> 15;
            const float v = 110 + 60 * cx[x] * cy[y] + 30 * (float)((x / 97 + y / 61) % 3) + (float)(n % 13);
            g[(size_t)y * w + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    free(cx), free(cy);
    return g;
}

/* A PNG of which only the header counts: a w x h IHDR (CRC right), then nothing usable. */
static uint8_t *png_header_only(int w, int h, size_t *len) {
    uint8_t one = 0, *png = NULL;
    if (ms_png_encode_gray(&one, 1, 1, &png, len) != MS_OK) return NULL;
    const uint8_t be[8] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                           (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h};
    memcpy(png + 16, be, 8);
    const uint32_t crc = (uint32_t)crc32(0, png + 12, 17); /* "IHDR" and its 13 bytes */
    png[29] = (uint8_t)(crc >> 24), png[30] = (uint8_t)(crc >> 16), png[31] = (uint8_t)(crc >> 8), png[32] = (uint8_t)crc;
    return png;
}

/* POST /segment<query> with a PNG body. */
static void post_png(const char *query, const uint8_t *png, size_t len, struct resp *r) {
    char path[128];
    snprintf(path, sizeof path, "/segment%s", query);
    struct reqopt o = {.ctype = "image/png", .body = png, .len = len};
    http("POST", g_srv.port, path, &o, r);
}

/* /segment?frame=1 of a w x h frame: its labels (malloc'd, NULL on any failure, printed). */
static uint8_t *segment_frame(const uint8_t *img, int w, int h, size_t *png_len) {
    uint8_t *png = NULL, *labels = NULL;
    size_t len = 0;
    int gw = 0, gh = 0;
    if (ms_png_encode_gray(img, w, h, &png, &len) != MS_OK) return NULL;
    struct resp r;
    post_png("?frame=1", png, len, &r);
    if (r.status != 200 || ms_png_decode_index(r.body, r.len, 0, &labels, &gw, &gh) != MS_OK || gw != w || gh != h) {
        fprintf(stderr, "    /segment?frame=1 of %dx%d: %ld %.200s\n", w, h, r.status, r.body && r.status != 200 ? r.body : "");
        free(labels), labels = NULL;
    }
    resp_free(&r);
    free(png);
    if (png_len) *png_len = len;
    return labels;
}

/* POST path with Content-Length len and "Expect: 100-continue", no body: the first answer
 * (413 decided from the length, or 100 Continue), in buf. */
static void head_only(const char *path, size_t len, char *buf, size_t cap) {
    buf[0] = 0;
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_srv.port), .sin_addr.s_addr = htonl(0x7f000001)};
    char req[512];
    const int n = snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %zu\r\n"
                                            "Expect: 100-continue\r\n\r\n", path, len);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0 || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        if (fd >= 0) close(fd);
        return;
    }
    size_t got = 0;
    for (double t0 = now_s(); now_s() - t0 < 5 && got + 1 < cap;) { /* until the peer closes or a 100 came */
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        const ssize_t k = recv(fd, buf + got, cap - 1 - got, 0);
        if (k <= 0) break;
        got += (size_t)k;
        buf[got] = 0;
        if (!strncmp(buf, "HTTP/1.1 100", 12) && strstr(buf, "\r\n\r\n")) break;
    }
    buf[got] = 0;
    close(fd);
}

/* ------------------------------------------------------------------ 1, 2. /segment */

static void test_segment_big(void) {
    static const int sizes[][2] = {{3000, 3000}, {4096, 4096}, {4096, 2160}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        const int w = sizes[i][0], h = sizes[i][1];
        uint8_t *img = frame_img(w, h, (unsigned)i), *want = malloc((size_t)w * h);
        size_t len = 0;
        const double t0 = now_s();
        uint8_t *got = img ? segment_frame(img, w, h, &len) : NULL;
        const double secs = now_s() - t0;
        CHECK(want && ms_model_segment_frame(g_model, img, h, w, 0, want, NULL, NULL) == MS_OK, "reference labels %dx%d", w, h);
        CHECK(len > (1u << 20), "the %dx%d frame's PNG (%zu bytes) is larger than --max-body 1M", w, h, len);
        CHECK(got && want && tu_same_labels(got, want, (size_t)w * h, "/segment?frame=1 vs this process"),
              "/segment?frame=1 of %dx%d: labels at its size, as ms_model_segment_frame's (%.1f s)", w, h, secs);
        printf("/segment?frame=1 of %dx%d: a %zu-byte PNG, %.2f s with the PNG's encoding here\n", w, h, len, secs);
        if (i == 0) g_big = img, g_big_labels = got, img = got = NULL;
        if (i == 0 && g_big) { /* the same PNG without frame=1: over --max-body, as before */
            uint8_t *png = NULL;
            CHECK_OK(ms_png_encode_gray(g_big, w, h, &png, &len));
            struct resp r;
            post_png("", png, len, &r);
            EXPECT_ERROR(r, 413, "body_too_large");
            resp_free(&r);
            free(png);
        }
        free(img), free(want), free(got);
    }
    /* ?format=json: the size of the frame and the size it was segmented at (300x200 -> 128x85) */
    uint8_t *png = NULL, want[FH * FW];
    size_t len = 0;
    int64_t counts[MS_NUM_CLASSES] = {0};
    CHECK_OK(ms_model_segment_frame(g_model, g_frames[0], FH, FW, 0, want, NULL, NULL));
    for (int p = 0; p < FH * FW; p++) counts[want[p]]++;
    CHECK_OK(ms_png_encode_gray(g_frames[0], FW, FH, &png, &len));
    struct resp r;
    post_png("?frame=1&format=json", png, len, &r);
    cJSON *j = parse(&r), *fr = cJSON_GetObjectItemCaseSensitive(j, "frame"), *cl = cJSON_GetObjectItemCaseSensitive(j, "classes");
    int same = cJSON_GetArraySize(cl) == MS_NUM_CLASSES;
    for (int k = 0; k < MS_NUM_CLASSES && same; k++) same = jnum(cJSON_GetArrayItem(cl, k), "pixels") == (double)counts[k];
    CHECK(r.status == 200 && jnum(j, "width") == FW && jnum(j, "height") == FH && jnum(fr, "width") == 128 && jnum(fr, "height") == 85 &&
              same, "?frame=1&format=json: %dx%d, segmented at %gx%g, the reference's class counts: %.200s", FW, FH, jnum(fr, "width"),
          jnum(fr, "height"), r.body ? r.body : "");
    cJSON_Delete(j);
    resp_free(&r);
    post_png("?format=json", png, len, &r); /* a tile: no "frame" */
    j = parse(&r);
    CHECK(r.status == 200 && !cJSON_HasObjectItem(j, "frame"), "a tile's JSON has no frame member");
    cJSON_Delete(j);
    resp_free(&r);
    free(png);
}

static void test_segment_limits(void) {
    cJSON *s = get_json(g_srv.port, "/schema");
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(s, "limits");
    const double fpx = jnum(lim, "max_frame_pixels"), fbody = jnum(lim, "max_frame_body");
    CHECK(fpx == 4096.0 * 4096 && fbody == 2 * fpx && jnum(lim, "max_pixels") == MAX_PIXELS,
          "/schema: max_frame_pixels %g (4096^2), max_frame_body %g (2 bytes a pixel, over --max-body 1M)", fpx, fbody);
    cJSON_Delete(s);
    struct resp r;
    size_t len = 0;
    uint8_t *png = png_header_only(4097, 4096, &len);
    post_png("?frame=1", png, len, &r);
    EXPECT_ERROR(r, 422, "too_many_pixels");
    CHECK(r.body && strstr(r.body, "--max-frame-pixels"), "the refusal names the frame limit: %s", r.body ? r.body : "");
    resp_free(&r);
    free(png);
    png = png_header_only(3000, 3000, &len); /* without frame=1: --max-pixels, as before */
    post_png("", png, len, &r);
    EXPECT_ERROR(r, 422, "too_many_pixels");
    resp_free(&r);
    free(png);
    /* 32x1024 is a frame of 32K pixels, but segmented at 128x4096 = 524288 > --max-pixels */
    uint8_t *tall = frame_img(32, 1024, 9);
    CHECK_OK(ms_png_encode_gray(tall, 32, 1024, &png, &len));
    post_png("?frame=1", png, len, &r);
    EXPECT_ERROR(r, 422, "too_many_pixels");
    CHECK(r.body && strstr(r.body, "128x4096") && strstr(r.body, "--max-pixels"), "the resized size is what is refused: %s",
          r.body ? r.body : "");
    resp_free(&r);
    free(png), free(tall);
    post_png("?frame=maybe", (const uint8_t *)"\x89PNG\r\n\x1a\n", 8, &r);
    EXPECT_ERROR(r, 400, "bad_flag");
    resp_free(&r);
    /* the frame cap, decided from Content-Length before any byte of the body (the client waits
     * for 100 Continue): one byte over is 413 naming it, the cap itself may come */
    char buf[1024];
    head_only("/segment?frame=1", (size_t)fbody + 1, buf, sizeof buf);
    CHECK(!strncmp(buf, "HTTP/1.1 413", 12) && strstr(buf, "body_too_large") && strstr(buf, "33554432"),
          "a frame body over max_frame_body: %.200s", buf);
    head_only("/segment?frame=1", (size_t)fbody, buf, sizeof buf);
    CHECK(!strncmp(buf, "HTTP/1.1 100", 12), "a frame body of max_frame_body may come: %.60s", buf);
    head_only("/segment", (1u << 20) + 1, buf, sizeof buf); /* and without frame=1, --max-body as before */
    CHECK(!strncmp(buf, "HTTP/1.1 413", 12) && strstr(buf, "1048576"), "a tile body over --max-body: %.200s", buf);
}

/* ------------------------------------------------------------------ 3. /predictions */

/* An npz of the NF frames as `key`: (NF,FH,FW), or with masks (NF,2,FH,FW); its bytes. */
static uint8_t *frames_npz(const char *key, int with_masks, size_t *len) {
    char path[PATH_MAX];
    path_in_tmp(path, sizeof path, "frames.npz");
    static uint8_t both[NF * 2 * FH * FW];
    for (int i = 0; i < NF; i++) {
        memcpy(both + (size_t)(2 * i) * FH * FW, g_frames[i], FH * FW);
        memset(both + (size_t)(2 * i + 1) * FH * FW, i + 1, FH * FW);
    }
    const int64_t s3[3] = {NF, FH, FW}, s4[4] = {NF, 2, FH, FW};
    ms_npz_writer *wr = NULL;
    uint8_t *buf = NULL;
    if (ms_npz_writer_open(&wr, path) == MS_OK &&
        ms_npz_writer_add(wr, key, MS_DT_U1, with_masks ? 4 : 3, with_masks ? s4 : s3, with_masks ? both : (uint8_t *)g_frames) ==
            MS_OK &&
        ms_npz_writer_commit(wr) == MS_OK)
        ms_read_file(path, 0, &buf, len);
    else if (wr)
        ms_npz_writer_abort(wr);
    return buf;
}

/* A finished prediction's labels equal /segment?frame=1's, and its request says frame. */
static void check_prediction(const char *id, const char *what) {
    char last[32], path[128];
    CHECK(id && pass_wait(g_srv.port, "/predictions", id, "succeeded|failed", 120, last, sizeof last) && !strcmp(last, "succeeded"),
          "%s: prediction %s %s", what, id ? id : "-", id ? last : "not created");
    if (!id) return;
    snprintf(path, sizeof path, "/predictions/%s", id);
    cJSON *j = get_json(g_srv.port, path);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "request"), "frame")),
          "%s: the stored request has frame: true", what);
    cJSON_Delete(j);
    struct resp r;
    snprintf(path, sizeof path, "/predictions/%s/result", id);
    get(g_srv.port, path, &r);
    char file[PATH_MAX];
    path_in_tmp(file, sizeof file, "result.npz");
    static uint8_t labels[NF * FH * FW];
    ms_npz *z = NULL;
    ms_npy_info info;
    int ok = r.status == 200 && write_file(file, r.body, r.len) == 0 && ms_npz_open(&z, file) == MS_OK &&
             ms_npz_info(z, "labels", &info) == MS_OK && info.ndim == 3 && info.shape[0] == NF && info.shape[1] == FH &&
             info.shape[2] == FW && ms_npz_read_u8(z, "labels", labels, sizeof labels) == MS_OK;
    CHECK(ok, "%s: the result's labels are (%d,%d,%d)", what, NF, FH, FW);
    for (int i = 0; ok && i < NF; i++)
        CHECK(tu_same_labels(labels + (size_t)i * FH * FW, g_frame_labels[i], FH * FW, what), "%s: frame %d's labels are /segment?frame=1's",
              what, i);
    ms_npz_close(z);
    resp_free(&r);
}

static void test_predictions(void) {
    size_t len = 0;
    uint8_t *body = frames_npz("test_set", 0, &len);
    struct reqopt o = {.ctype = "application/octet-stream", .body = body, .len = len};
    char *id = pass_post(g_srv.port, "/predictions?frame=1", NULL, &o);
    check_prediction(id, "npz body, ?frame=1");
    free(id);
    struct resp r;
    http("POST", g_srv.port, "/predictions", &o, &r); /* 300x200 tiles without frame: multiples of 16 */
    EXPECT_ERROR(r, 400, "bad_shape");
    resp_free(&r);
    http("POST", g_srv.port, "/predictions?frame=yes", &o, &r);
    EXPECT_ERROR(r, 400, "invalid_argument");
    resp_free(&r);
    free(body);
    /* the JSON request on an uploaded dataset of the same frames (with masks, as uploads are) */
    body = frames_npz("training_set", 1, &len);
    o = (struct reqopt){.ctype = "application/octet-stream", .body = body, .len = len};
    http("POST", g_srv.port, "/datasets?name=frames", &o, &r);
    cJSON *j = parse(&r);
    char json[160];
    snprintf(json, sizeof json, "{\"dataset\": \"%s\", \"key\": \"training_set\", \"frame\": true}", jstr(j, "id"));
    CHECK(r.status == 201, "frames uploaded as a dataset: %ld %.200s", r.status, r.body ? r.body : "");
    cJSON_Delete(j);
    resp_free(&r);
    id = pass_post(g_srv.port, "/predictions", json, NULL);
    check_prediction(id, "JSON {\"frame\": true}");
    free(id);
    free(body);
    send_json("POST", g_srv.port, "/predictions", "{\"frame\": 1}", &r);
    EXPECT_ERROR(r, 400, "invalid_argument");
    resp_free(&r);
}

/* ------------------------------------------------------------------ 4. the Open Inference Protocol */

/* POST /v2/models/default/infer: a JSON header then binary data; the answer's labels (and
 * probabilities, confidence) as binary data. */
static long infer(const char *header, const void *bin, size_t blen, struct resp *r) {
    const size_t hl = strlen(header);
    uint8_t *body = malloc(hl + blen);
    if (!body) return -1;
    memcpy(body, header, hl);
    memcpy(body + hl, bin, blen);
    char h[96];
    snprintf(h, sizeof h, "Inference-Header-Content-Length: %zu", hl);
    struct reqopt o = {.ctype = "application/octet-stream", .body = body, .len = hl + blen, .has_body = 1, .extra_header = h};
    http("POST", g_srv.port, "/v2/models/default/infer", &o, r);
    free(body);
    return r->status;
}

/* The binary data of a binary answer (after its JSON header). */
static const uint8_t *answer_data(const struct resp *r, size_t *n) {
    const size_t hl = r->infer_header_len[0] ? (size_t)strtoull(r->infer_header_len, NULL, 10) : 0;
    *n = r->body && hl <= r->len ? r->len - hl : 0;
    return r->body && hl && hl <= r->len ? (const uint8_t *)r->body + hl : NULL;
}

/* An FP32 frame's labels as the protocol defines them: resized as floats (Pillow's "F" mode) to
 * the model's frame size, padded by edge replication, segmented, labels back by nearest. */
static int fp32_frame_labels(const float *x, int h, int w, uint8_t *labels) {
    int fh, fw;
    ms_frame_size(g_model, h, w, &fh, &fw);
    const int q = 1 << ms_model_get_config(g_model)->depth, hp = (fh + q - 1) / q * q, wp = (fw + q - 1) / q * q;
    float *small = malloc(sizeof(float) * fh * fw), *xp = malloc(sizeof(float) * hp * wp);
    uint8_t *lp = malloc((size_t)hp * wp), *lab = malloc((size_t)fh * fw);
    int rc = small && xp && lp && lab && ms_resize_bilinear_f32(x, h, w, small, fh, fw) == MS_OK ? 0 : -1;
    for (int y = 0; !rc && y < hp; y++)
        for (int c = 0; c < wp; c++) xp[y * wp + c] = small[(y < fh ? y : fh - 1) * fw + (c < fw ? c : fw - 1)];
    if (!rc) rc = ms_model_predict(g_model, xp, 1, hp, wp, lp, NULL) == MS_OK ? 0 : -1;
    for (int y = 0; !rc && y < fh; y++) memcpy(lab + (size_t)y * fw, lp + (size_t)y * wp, (size_t)fw);
    if (!rc) rc = ms_resize_nearest_u8(lab, fh, fw, labels, h, w) == MS_OK ? 0 : -1;
    free(small), free(xp), free(lp), free(lab);
    return rc;
}

static void test_oip(void) {
    char hdr[512];
    struct resp r;
    size_t n = 0;
    /* two UINT8 frames: labels, probabilities and confidence as binary data */
    snprintf(hdr, sizeof hdr,
             "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[%d,%d,%d],\"parameters\":{\"binary_data_size\":%d}}],"
             "\"parameters\":{\"frame\":true,\"binary_data_output\":true},\"outputs\":[{\"name\":\"labels\"},{\"name\":\"probabilities\"},"
             "{\"name\":\"confidence\"}]}", NF, FH, FW, NF * FH * FW);
    infer(hdr, g_frames, sizeof g_frames, &r);
    const uint8_t *d = answer_data(&r, &n);
    const size_t hw = (size_t)FH * FW, want = NF * hw * (1 + 4 * MS_NUM_CLASSES) + 4 * NF;
    CHECK(r.status == 200 && d && n == want, "UINT8 frames: %ld, %zu bytes of outputs (want %zu) %.200s", r.status, n, want,
          r.status != 200 && r.body ? r.body : "");
    if (d && n == want) {
        CHECK(tu_same_labels(d, &g_frame_labels[0][0], NF * hw, "parameters.frame, UINT8"),
              "parameters.frame, UINT8: labels are /segment?frame=1's");
        float *p = malloc(n - NF * hw), *conf = p ? p + NF * MS_NUM_CLASSES * hw : NULL; /* aligned copies */
        if (p) memcpy(p, d + NF * hw, n - NF * hw);
        double worst = p ? 0 : INFINITY;
        for (int b = 0; p && b < NF; b++)
            for (size_t i = 0; i < hw; i++) {
                double sum = 0;
                for (int k = 0; k < MS_NUM_CLASSES; k++) sum += p[((size_t)b * MS_NUM_CLASSES + k) * hw + i];
                worst = fmax(worst, fabs(sum - 1));
            }
        CHECK(conf && worst < 1e-4 && conf[0] > 0.2f && conf[0] <= 1 && conf[1] > 0.2f && conf[1] <= 1,
              "probabilities at the frames' size sum to 1 (%g), confidence %g %g", worst, conf ? conf[0] : 0, conf ? conf[1] : 0);
        free(p);
    }
    resp_free(&r);
    /* the 3000x3000 frame: 9 MB of UINT8 data, over --max-body, under the protocol's frame cap */
    snprintf(hdr, sizeof hdr,
             "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,3000,3000],\"parameters\":{\"binary_data_size\":9000000}}],"
             "\"parameters\":{\"frame\":true,\"binary_data_output\":true}}");
    if (g_big) infer(hdr, g_big, 9000000, &r);
    d = answer_data(&r, &n);
    CHECK(g_big && g_big_labels && r.status == 200 && d && n == 9000000 && tu_same_labels(d, g_big_labels, n, "3000x3000 UINT8"),
          "parameters.frame, a 3000x3000 UINT8 frame: /segment?frame=1's labels (%ld)", r.status);
    resp_free(&r);
    /* FP32 v/255: resized as a float map, without the 8-bit rounding of /segment's resize: the
     * labels of those steps done here; how many equal /segment's is printed */
    static float f[FH * FW];
    static uint8_t fref[FH * FW];
    for (size_t i = 0; i < hw; i++) f[i] = g_frames[1][i] / 255.0f;
    CHECK(fp32_frame_labels(f, FH, FW, fref) == 0, "FP32 reference labels");
    snprintf(hdr, sizeof hdr,
             "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"FP32\",\"shape\":[1,1,%d,%d],\"parameters\":{\"binary_data_size\":%zu}}],"
             "\"parameters\":{\"frame\":true,\"binary_data_output\":true}}", FH, FW, sizeof f);
    infer(hdr, f, sizeof f, &r);
    d = answer_data(&r, &n);
    size_t same = 0;
    for (size_t i = 0; d && n == hw && i < hw; i++) same += d[i] == g_frame_labels[1][i];
    CHECK(r.status == 200 && d && n == hw && tu_same_labels(d, fref, hw, "parameters.frame, FP32"),
          "parameters.frame, FP32: the labels of a float resize, segmentation and nearest resize back (%ld)", r.status);
    printf("FP32 frame (resized as floats): %zu of %zu labels (%.1f%%) equal /segment?frame=1's\n", same, hw, 100.0 * same / hw);
    resp_free(&r);
    /* refusals */
    static const struct {
        const char *what, *json, *code;
    } bad[] = {
        {"frame not a boolean", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,1],\"data\":[1]}],\"parameters\":{\"frame\":1}}",
         "bad_parameter"},
        {"a frame over --max-frame-pixels", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,4097,4096],\"data\":[0]}],"
                                            "\"parameters\":{\"frame\":true}}", "too_many_pixels"},
        {"1000x1000 without frame: --max-pixels", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1000,1000],\"data\":[0]}]}",
         "too_many_pixels"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        send_json("POST", g_srv.port, "/v2/models/default/infer", bad[i].json, &r);
        CHECK(r.status == 400 && is_json_error(&r, bad[i].code), "%s: 400 %s (%ld %.160s)", bad[i].what, bad[i].code, r.status,
              r.body ? r.body : "");
        resp_free(&r);
    }
    static uint8_t tall[1024 * 32];
    snprintf(hdr, sizeof hdr,
             "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1024,32],\"parameters\":{\"binary_data_size\":%zu}}],"
             "\"parameters\":{\"frame\":true}}", sizeof tall);
    infer(hdr, tall, sizeof tall, &r);
    EXPECT_ERROR(r, 400, "too_many_pixels"); /* segmented at 128x4096: over --max-pixels */
    resp_free(&r);
}

int main(int argc, char **argv) {
    (void)argc;
    if (su_init(argv[0], "frame")) return 1;
    CHECK_OK(ms_model_load(&g_model, MS_SRC_DIR "/models/default.npz"));
    const char *extra[] = {"--max-pixels", "300000", "--max-body", "1M", "--threads", "1", NULL};
    if (!g_model || su_start_bundled(&g_srv, extra, NULL)) {
        ms_model_free(g_model);
        return TEST_END();
    }
    for (int i = 0; i < NF; i++) {
        uint8_t *img = frame_img(FW, FH, 20 + (unsigned)i), *lab = img ? segment_frame(img, FW, FH, NULL) : NULL;
        uint8_t want[FH * FW];
        CHECK(lab && ms_model_segment_frame(g_model, img, FH, FW, 0, want, NULL, NULL) == MS_OK &&
                  tu_same_labels(lab, want, sizeof want, "300x200 /segment?frame=1 vs this process"),
              "300x200 frame %d: /segment?frame=1 = ms_model_segment_frame", i);
        if (img) memcpy(g_frames[i], img, FH * FW);
        if (lab) memcpy(g_frame_labels[i], lab, FH * FW);
        free(img), free(lab);
    }
    test_segment_big();
    test_segment_limits();
    test_predictions();
    test_oip();
    CHECK(srv_stop(&g_srv, SIGTERM) == 0, "server exits 0 on SIGTERM");
    free(g_big), free(g_big_labels);
    ms_model_free(g_model);
    su_done();
    return TEST_END();
}
