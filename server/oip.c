/* The Open Inference Protocol's routes (oip.h): GET /v2, /v2/health/live, /v2/health/ready,
 * /v2/models/{name}[/versions/{v}], .../ready and POST .../infer.
 *
 * Inference: the request's N images are padded (edge replication, as ms_model_segment pads) to
 * the model's multiple of 2^depth and run as one batch through ms_model_predict on an inference
 * worker (infer_call: /segment's workers, queue bound and metrics); labels are the argmax of the
 * softmax taken exactly as ms_model_segment takes it, so a tile's labels equal /segment's mask.
 * confidence is the mean over the image of the top softmax probability.
 *
 * parameters.frame (true/false): each image is a whole camera frame, as /segment?frame=1 takes
 * one: resized to the model's frame width (core/frame.c), segmented, labels (nearest) and
 * probabilities (bilinear) brought back to the image's size; confidence is the resized frame's.
 * UINT8 images are resized as 8-bit images (ms_resize_bilinear_u8, what /segment does with a
 * PNG's gray bytes), so their labels are /segment?frame=1's byte for byte; FP32 images are
 * resized as float maps (Pillow's "F" mode), which skips the 8-bit rounding of the resized
 * pixels. N*H*W may reach --max-frame-pixels; the resized batch is held to --max-pixels.
 *
 * Errors are the service's {"error": "...", "code": "..."} (the protocol asks for "error"):
 * 404 for an unknown model or version, 400 for a request the model cannot take (datatype, shape,
 * values, outputs, more pixels than --max-pixels), 413 for a body over its cap, 503 when
 * overloaded. infer needs no token, as /segment needs none: both only read. */
#include "handlers.h"
#include "oip.h"
#include "marsseg_predict.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OIP_SERVER_NAME "marsseg"
#define OIP_SERVER_VERSION "1.0.0" /* openapi/base.json's info.version */
#define OIP_PLATFORM "marsseg_npz"
/* a batch's padded pixels may be at most this times --max-pixels (tiny images pad a lot) */
#define OIP_MAX_PAD_FACTOR 4

/* ------------------------------------------------------------------ server and models */

enum MHD_Result h_oip_server(struct req *r) {
    cJSON *j = cJSON_CreateObject(), *ext = cJSON_CreateArray();
    int ok = j && ext && jset_str(j, "name", OIP_SERVER_NAME) && jset_str(j, "version", OIP_SERVER_VERSION);
    if (ok) ok = cJSON_AddItemToArray(ext, cJSON_CreateString("binary_tensor_data"));
    if (ok) ok = jset_item(j, "extensions", ext), ext = NULL;
    cJSON_Delete(ext);
    return reply_json_built(r, 200, j, ok);
}

/* Both spellings of the spec's health answers ({"live"} and {"ready"}), so that clients of
 * either version read theirs. */
static enum MHD_Result health(struct req *r, unsigned status, int ready, const char *error) {
    cJSON *j = cJSON_CreateObject();
    int ok = j && jset_bool(j, "live", 1) && jset_bool(j, "ready", ready);
    if (ok && error) ok = jset_str(j, "error", error);
    return reply_json_built(r, status, j, ok);
}

enum MHD_Result h_oip_live(struct req *r) { return health(r, 200, 1, NULL); }

/* Ready when a model serves (as /readyz); 400 otherwise, as Triton answers. */
enum MHD_Result h_oip_ready(struct req *r) {
    char id[64];
    models_active_id(req_server(r)->models, id, sizeof id);
    return id[0] ? health(r, 200, 1, NULL) : health(r, 400, 0, "no model is loaded");
}

/* The model the path names ({name}, and {version} when given): 1, or 0 with a 404 queued. */
static int path_model(struct req *r, ms_model_config *cfg, enum MHD_Result *res) {
    const char *name = req_param(r, 0), *version = req_param(r, 1);
    if (!is_safe_id(name, 63) || !models_known(req_server(r)->models, name, cfg)) {
        *res = reply_error(r, 404, "not_found", "no model named '%.64s' (GET /models lists them)", name);
        return 0;
    }
    if (version[0] && strcmp(version, OIP_VERSION) != 0) {
        *res = reply_error(r, 404, "not_found", "model %s has no version '%.32s' (its one version is \"" OIP_VERSION "\")",
                           name, version);
        return 0;
    }
    return 1;
}

static cJSON *tensor_meta(const char *name, const char *datatype, int rank, const int *shape) {
    cJSON *t = cJSON_CreateObject(), *s = cJSON_CreateIntArray(shape, rank);
    if (t && s && jset_str(t, "name", name) && jset_str(t, "datatype", datatype) && jset_item(t, "shape", s)) return t;
    if (!t) cJSON_Delete(s);
    cJSON_Delete(t);
    return NULL;
}

enum MHD_Result h_oip_model(struct req *r) {
    ms_model_config cfg;
    enum MHD_Result res;
    if (!path_model(r, &cfg, &res)) return res;
    const int nhw[] = {-1, -1, -1}, nkhw[] = {-1, cfg.classes, -1, -1}, n[] = {-1};
    cJSON *j = cJSON_CreateObject(), *versions = cJSON_CreateArray(), *in = cJSON_CreateArray(), *out = cJSON_CreateArray();
    int ok = j && versions && in && out && cJSON_AddItemToArray(versions, cJSON_CreateString(OIP_VERSION));
    /* the input also takes FP32 and [N,1,H,W]; metadata can name one datatype and shape */
    ok = ok && cJSON_AddItemToArray(in, tensor_meta("image", "UINT8", 3, nhw)) &&
         cJSON_AddItemToArray(out, tensor_meta(oip_output_names[OIP_LABELS], "UINT8", 3, nhw)) &&
         cJSON_AddItemToArray(out, tensor_meta(oip_output_names[OIP_PROBS], "FP32", 4, nkhw)) &&
         cJSON_AddItemToArray(out, tensor_meta(oip_output_names[OIP_CONF], "FP32", 1, n));
    ok = ok && jset_str(j, "name", req_param(r, 0));
    if (ok) ok = jset_item(j, "versions", versions), versions = NULL;
    ok = ok && jset_str(j, "platform", OIP_PLATFORM);
    if (ok) ok = jset_item(j, "inputs", in), in = NULL;
    if (ok) ok = jset_item(j, "outputs", out), out = NULL;
    cJSON_Delete(versions);
    cJSON_Delete(in);
    cJSON_Delete(out);
    return reply_json_built(r, 200, j, ok);
}

/* A registered model is ready: its file loaded when it was registered, and loads on demand. */
enum MHD_Result h_oip_model_ready(struct req *r) {
    enum MHD_Result res;
    if (!path_model(r, NULL, &res)) return res;
    cJSON *j = cJSON_CreateObject();
    return reply_json_built(r, 200, j, j && jset_str(j, "name", req_param(r, 0)) && jset_bool(j, "ready", 1));
}

/* ------------------------------------------------------------------ inference */

struct oip_work {
    const ms_model *model;
    const float *xp; /* (N, Hp, Wp) */
    int n, h, w, hp, wp;
    uint8_t *labels; /* (N, H, W) */
    float *probs;    /* (N, K, H, W) or NULL */
    float *conf;     /* (N) */
};

/* On an inference worker. */
static ms_status oip_run(void *ctx) {
    const struct oip_work *wk = ctx;
    const int K = ms_model_get_config(wk->model)->classes, h = wk->h, w = wk->w, wp = wk->wp;
    const size_t hwp = (size_t)wk->hp * wp, hw = (size_t)h * w;
    float *pp = malloc(sizeof(float) * hwp * K * wk->n);
    if (!pp) return ms_fail(MS_ERR_NOMEM, "inference: %d images of %dx%d", wk->n, w, h);
    ms_status st = ms_model_predict(wk->model, wk->xp, wk->n, wk->hp, wp, NULL, pp);
    for (int b = 0; !st && b < wk->n; b++) {
        const float *pb = pp + (size_t)b * K * hwp;
        double sum = 0;
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int best = 0; /* ms_model_segment's argmax: the first of equal maxima */
                float bv = -1.0f;
                for (int k = 0; k < K; k++) {
                    const float p = pb[(size_t)k * hwp + (size_t)y * wp + x];
                    if (p > bv) {
                        bv = p;
                        best = k;
                    }
                    if (wk->probs) wk->probs[((size_t)b * K + k) * hw + (size_t)y * w + x] = p;
                }
                wk->labels[(size_t)b * hw + (size_t)y * w + x] = (uint8_t)best;
                sum += bv;
            }
        }
        wk->conf[b] = (float)(sum / (double)hw);
    }
    free(pp);
    return st;
}

/* n images (h,w) padded to hp x wp by edge replication (ms_model_segment's padding). */
static void pad_images(const float *x, int n, int h, int w, float *xp, int hp, int wp) {
    for (int b = 0; b < n; b++) {
        const float *src = x + (size_t)b * h * w;
        float *dst = xp + (size_t)b * hp * wp;
        for (int y = 0; y < hp; y++) {
            const float *row = src + (size_t)(y < h ? y : h - 1) * w;
            for (int c = 0; c < wp; c++) dst[(size_t)y * wp + c] = row[c < w ? c : w - 1];
        }
    }
}

/* Whole frames: the request's images resized to (fh, fw) into small (n*fh*fw). A UINT8 image's
 * bytes come back exactly from its values (v * (1/255), times 255, rounded), are resized as /segment
 * resizes a PNG's and converted as ms_model_segment_ex converts them; FP32 maps are resized as floats. */
static ms_status frames_in(const struct oip_request *rq, int fh, int fw, float *small) {
    const size_t hw = (size_t)rq->h * rq->w, fhw = (size_t)fh * fw;
    uint8_t *b8 = rq->dtype == OIP_UINT8 ? malloc(hw + fhw) : NULL;
    if (rq->dtype == OIP_UINT8 && !b8) return ms_fail(MS_ERR_NOMEM, "frames: %dx%d", rq->w, rq->h);
    ms_status st = MS_OK;
    for (int b = 0; b < rq->n && !st; b++) {
        const float *x = rq->x + b * hw;
        float *dst = small + b * fhw;
        if (!b8) {
            st = ms_resize_bilinear_f32(x, rq->h, rq->w, dst, fh, fw);
            continue;
        }
        for (size_t i = 0; i < hw; i++) b8[i] = (uint8_t)lrintf(x[i] * 255.0f);
        if (!(st = ms_resize_bilinear_u8(b8, rq->h, rq->w, b8 + hw, fh, fw)))
            for (size_t i = 0; i < fhw; i++) dst[i] = b8[hw + i] * (1.0f / 255.0f);
    }
    free(b8);
    return st;
}

/* Whole frames: labels (nearest) and probabilities (bilinear) of the (fh, fw) frames brought back
 * to the images' size, into wk's buffers (which then hold the answer's). */
static ms_status frames_out(const struct oip_request *rq, int K, struct oip_work *wk) {
    const size_t hw = (size_t)rq->h * rq->w, fhw = (size_t)wk->h * wk->w;
    uint8_t *labels = malloc(hw * rq->n);
    float *probs = wk->probs ? malloc(sizeof(float) * hw * K * rq->n) : NULL;
    ms_status st = !labels || (wk->probs && !probs) ? ms_fail(MS_ERR_NOMEM, "frames: outputs") : MS_OK;
    for (int b = 0; b < rq->n && !st; b++) {
        st = ms_frame_outputs_back(wk->labels + b * fhw, NULL, wk->h, wk->w, labels + b * hw, NULL, rq->h, rq->w);
        for (int k = 0; k < K && probs && !st; k++)
            st = ms_resize_bilinear_f32(wk->probs + ((size_t)b * K + k) * fhw, wk->h, wk->w, probs + ((size_t)b * K + k) * hw, rq->h,
                                        rq->w);
    }
    free(wk->labels);
    free(wk->probs);
    wk->labels = labels, wk->probs = probs;
    return st;
}

/* ------------------------------------------------------------------ the answer */

/* A growing buffer; `failed` once an allocation failed (checked once, at the end). */
struct obuf {
    char *p;
    size_t len, cap;
    int failed;
};

static void ob_put(struct obuf *b, const void *data, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (ncap < b->len + n + 1) ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void ob_str(struct obuf *b, const char *s) { ob_put(b, s, strlen(s)); }

static void ob_printf(struct obuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ob_printf(struct obuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) b->failed = 1;
    else ob_put(b, tmp, (size_t)n);
}

/* A JSON string (the request's id, a model id) with its escapes. */
static void ob_json_string(struct obuf *b, const char *s) {
    char *q = cJSON_PrintUnformatted(&(cJSON){.type = cJSON_String, .valuestring = (char *)s});
    if (!q) {
        b->failed = 1;
        return;
    }
    ob_str(b, q);
    cJSON_free(q);
}

struct tensor_out {
    const char *datatype;
    int rank, shape[4];
    const void *data;
    size_t count, esize;
};

static void ob_values(struct obuf *b, const struct tensor_out *t) {
    ob_put(b, "[", 1);
    for (size_t i = 0; i < t->count && !b->failed; i++) {
        if (t->esize == 1) {
            char d[5];
            int n = snprintf(d, sizeof d, i ? ",%u" : "%u", ((const uint8_t *)t->data)[i]);
            ob_put(b, d, (size_t)n);
        } else {
            ob_printf(b, i ? ",%.9g" : "%.9g", ((const float *)t->data)[i]);
        }
    }
    ob_put(b, "]", 1);
}

static enum MHD_Result answer(struct req *r, const struct oip_request *rq, const char *model,
                              const struct oip_work *wk, int K, double infer_s) {
    struct tensor_out outs[OIP_NOUTPUTS] = {
        [OIP_LABELS] = {"UINT8", 3, {rq->n, rq->h, rq->w}, wk->labels, (size_t)rq->n * rq->h * rq->w, 1},
        [OIP_PROBS] = {"FP32", 4, {rq->n, K, rq->h, rq->w}, wk->probs, (size_t)rq->n * K * rq->h * rq->w, 4},
        [OIP_CONF] = {"FP32", 1, {rq->n}, wk->conf, (size_t)rq->n, 4},
    };
    struct obuf b = {0};
    int binary = 0;
    ob_str(&b, "{\"model_name\":");
    ob_json_string(&b, model);
    ob_str(&b, ",\"model_version\":\"" OIP_VERSION "\"");
    if (rq->id) {
        ob_str(&b, ",\"id\":");
        ob_json_string(&b, rq->id);
    }
    ob_printf(&b, ",\"parameters\":{\"inference_ms\":%.3f},\"outputs\":[", infer_s * 1e3);
    for (int i = 0; i < rq->norder; i++) {
        const enum oip_output o = rq->order[i];
        const struct tensor_out *t = &outs[o];
        ob_printf(&b, "%s{\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":[", i ? "," : "", oip_output_names[o], t->datatype);
        for (int d = 0; d < t->rank; d++) ob_printf(&b, d ? ",%d" : "%d", t->shape[d]);
        ob_str(&b, "]");
        if (rq->binary[o]) {
            ob_printf(&b, ",\"parameters\":{\"binary_data_size\":%zu}}", t->count * t->esize);
            binary = 1;
        } else {
            ob_str(&b, ",\"data\":");
            ob_values(&b, t);
            ob_str(&b, "}");
        }
    }
    ob_str(&b, "]}");
    const size_t header_len = b.len;
    /* the binary data after the JSON, in the order of the outputs (little-endian: x86-64) */
    for (int i = 0; i < rq->norder; i++)
        if (rq->binary[rq->order[i]]) ob_put(&b, outs[rq->order[i]].data, outs[rq->order[i]].count * outs[rq->order[i]].esize);
    if (b.failed) {
        free(b.p);
        return reply_error_retry(r, 503, 5, "nomem", "out of memory for the answer");
    }
    char hl[32];
    snprintf(hl, sizeof hl, "%zu", header_len);
    return reply_buffer(r, 200, binary ? "application/octet-stream" : "application/json", b.p, b.len,
                        binary ? "Inference-Header-Content-Length" : NULL, binary ? hl : NULL);
}

/* The Inference-Header-Content-Length header: its value, -1 when absent, -2 when unreadable. */
static long long header_length(struct req *r) {
    const char *v = req_header(r, "Inference-Header-Content-Length");
    if (!v) return -1;
    long long n = 0;
    if (!*v) return -2;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || n > (1ll << 40)) return -2;
        n = n * 10 + (*v - '0');
    }
    return n;
}

enum MHD_Result h_oip_infer(struct req *r) {
    struct server *srv = req_server(r);
    enum MHD_Result res;
    if (!path_model(r, NULL, &res)) return res;
    const long long hlen = header_length(r);
    if (hlen == -2) return reply_error(r, 400, "bad_header", "Inference-Header-Content-Length must be a byte count");
    size_t len;
    const uint8_t *body = req_body(r, &len);
    struct oip_request rq;
    struct jr_error e;
    if (oip_parse_request(body, len, hlen, srv->cfg.max_pixels, srv->cfg.max_frame_pixels, &rq, &e))
        return e.retry_after ? reply_error_retry(r, (unsigned)e.status, (unsigned)e.retry_after, e.code, "%s", e.msg)
                             : reply_error(r, (unsigned)e.status, e.code, "%s", e.msg);
    struct model_snap *snap = NULL;
    ms_status st = model_acquire_id(srv->models, req_param(r, 0), &snap);
    if (st) {
        oip_request_free(&rq);
        return reply_status(r, st, "loading the model");
    }
    const ms_model_config *mc = ms_model_get_config(snap->model);
    int h = rq.h, w = rq.w; /* what the model runs on: the images, or the frames resized */
    if (rq.frame) ms_frame_size(snap->model, rq.h, rq.w, &h, &w);
    const int q = 1 << mc->depth, hp = (h + q - 1) / q * q, wp = (w + q - 1) / q * q;
    float *xp = NULL, *small = NULL;
    struct oip_work wk = {.model = snap->model, .n = rq.n, .h = h, .w = w, .hp = hp, .wp = wp};
    if (rq.frame && (size_t)rq.n * h * w > srv->cfg.max_pixels) {
        res = reply_error(r, 400, "too_many_pixels",
                          "%d frames of %dx%d are segmented at %dx%d for this model: more than the limit of %zu pixels", rq.n,
                          rq.w, rq.h, w, h, srv->cfg.max_pixels);
        goto done;
    }
    if ((double)rq.n * hp * wp > (double)OIP_MAX_PAD_FACTOR * srv->cfg.max_pixels) {
        res = reply_error(r, 400, "too_many_pixels",
                          "%d images of %dx%d pad to %dx%d for this model (multiples of %d): more than %d times the "
                          "limit of %zu pixels; send larger images or fewer of them",
                          rq.n, w, h, wp, hp, q, OIP_MAX_PAD_FACTOR, srv->cfg.max_pixels);
        goto done;
    }
    const size_t hw = (size_t)h * w;
    int want_probs = 0;
    for (int i = 0; i < rq.norder; i++) want_probs |= rq.order[i] == OIP_PROBS;
    xp = malloc(sizeof(float) * rq.n * hp * wp);
    small = rq.frame ? malloc(sizeof(float) * rq.n * hw) : NULL;
    wk.xp = xp;
    wk.labels = malloc(hw * rq.n);
    wk.conf = malloc(sizeof(float) * rq.n);
    wk.probs = want_probs ? malloc(sizeof(float) * hw * mc->classes * rq.n) : NULL;
    if (!xp || !wk.labels || !wk.conf || (want_probs && !wk.probs) || (rq.frame && !small)) {
        res = reply_error_retry(r, 503, 5, "nomem", "out of memory for %d images of %dx%d", rq.n, rq.w, rq.h);
        goto done;
    }
    if (rq.frame && (st = frames_in(&rq, h, w, small))) {
        res = reply_status(r, st, "resizing the frames");
        goto done;
    }
    pad_images(small ? small : rq.x, rq.n, h, w, xp, hp, wp);
    struct infer_job job = {.fn = oip_run, .ctx = &wk};
    if (infer_call(srv->infer, &job) != 0) {
        res = reply_error_retry(r, 503, 1, "overloaded", "all %u inference workers are busy; retry shortly", srv->cfg.threads);
        goto done;
    }
    if (job.st == MS_ERR_NOMEM || job.st == MS_ERR_LIMIT) {
        res = reply_error_retry(r, 503, 5, ms_status_code(job.st), "%s", job.err);
        goto done;
    }
    if (job.st) {
        res = reply_error(r, 500, ms_status_code(job.st), "inference failed: %s", job.err);
        goto done;
    }
    if (rq.frame && (st = frames_out(&rq, mc->classes, &wk))) {
        res = reply_status(r, st, "resizing the outputs back");
        goto done;
    }
    res = answer(r, &rq, snap->id, &wk, mc->classes, job.seconds);
done:
    free(xp);
    free(small);
    free(wk.labels);
    free(wk.conf);
    free(wk.probs);
    model_release(snap);
    oip_request_free(&rq);
    return res;
}
