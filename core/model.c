/* The model as users see it: weights files (npz with PyTorch state_dict names) and inference. */
#include "marsseg_npz.h"
#include "marsseg_predict.h"
#include "unet.h"
#include "util.h"

#include <cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

static char *config_json(const ms_model *m, const char *meta_json) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddNumberToObject(root, "depth", m->cfg.depth);
    cJSON_AddNumberToObject(root, "base", m->cfg.base);
    cJSON_AddNumberToObject(root, "classes", m->cfg.classes);
    cJSON_AddNumberToObject(root, "dropout", m->cfg.dropout);
    cJSON_AddNumberToObject(root, "frame", m->cfg.frame > 0 ? m->cfg.frame : MS_DEFAULT_FRAME);
    cJSON_AddBoolToObject(root, "attention", m->cfg.attention);
    cJSON_AddStringToObject(root, "format", "marsseg-weights-1");
    cJSON *meta = meta_json ? cJSON_Parse(meta_json) : NULL;
    if (meta) cJSON_AddItemToObject(root, "meta", meta);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* The parameters as float16 (half the file; BN statistics and the counter stay as they are):
 * finite and within float16's range, or MS_ERR_LIMIT naming the tensor. */
static ms_status add_f16(ms_npz_writer *w, const ms_tensor_info *t, const float *v, const char *path) {
    uint16_t *h = malloc(sizeof *h * t->count);
    if (!h) return ms_fail(MS_ERR_NOMEM, "%s: %s as float16", path, t->name);
    ms_status st = MS_OK;
    for (size_t i = 0; i < t->count && st == MS_OK; i++)
        if (!(fabsf(v[i]) <= 65504.0f)) st = ms_fail(MS_ERR_LIMIT, "%s: %s holds %g, outside float16's range", path, t->name, (double)v[i]);
    if (st == MS_OK) {
        ms_f32_to_f16_n(v, h, t->count);
        st = ms_npz_writer_add(w, t->name, MS_DT_F2, t->ndim, t->shape, h);
    }
    free(h);
    return st;
}

static ms_status write_npz(ms_npz_writer *w, const ms_model *m, const char *path, const char *meta_json, int f16) {
    char *cfg = config_json(m, meta_json ? meta_json : m->meta_json);
    if (!cfg) return ms_fail(MS_ERR_NOMEM, "%s: config json", path);
    int64_t len = (int64_t)strlen(cfg);
    ms_status st = ms_npz_writer_add(w, "config.json", MS_DT_U1, 1, &len, cfg);
    for (int i = 0; i < m->ntensors && st == MS_OK; i++) {
        const ms_tensor_info *t = &m->tensors[i];
        const float *v = (t->kind == MS_T_PARAM ? m->params : m->bufs) + t->offset;
        if (t->kind == MS_T_COUNTER)
            st = ms_npz_writer_add(w, t->name, MS_DT_I8, 0, t->shape, &m->num_batches_tracked);
        else if (f16 && t->kind == MS_T_PARAM)
            st = add_f16(w, t, v, path);
        else
            st = ms_npz_writer_add(w, t->name, MS_DT_F4, t->ndim, t->shape, v);
    }
    free(cfg);
    return st;
}

ms_status ms_model_write_npz(ms_npz_writer *w, const ms_model *m, const char *path, const char *meta_json) {
    return write_npz(w, m, path, meta_json, 0);
}

static ms_status save(const ms_model *m, const char *path, const char *meta_json, int f16) {
    ms_npz_writer *w = NULL;
    ms_status st = ms_npz_writer_open(&w, path);
    if (st) return st;
    st = write_npz(w, m, path, meta_json, f16);
    if (st == MS_OK) return ms_npz_writer_commit(w);
    ms_npz_writer_abort(w);
    return st;
}

ms_status ms_model_save(const ms_model *m, const char *path, const char *meta_json) { return save(m, path, meta_json, 0); }
ms_status ms_model_save_f16(const ms_model *m, const char *path, const char *meta_json) { return save(m, path, meta_json, 1); }

ms_status ms_model_set_frame(ms_model *m, int frame) {
    if (frame < 16 || frame > MS_MAX_FRAME_SIDE) return ms_fail(MS_ERR_ARG, "frame: %d is outside 16..%d", frame, MS_MAX_FRAME_SIDE);
    m->cfg.frame = frame;
    return MS_OK;
}

static int json_int(const cJSON *o, const char *k, int dflt, int *ok) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v) return dflt;
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble) *ok = 0;
    return cJSON_IsNumber(v) ? (int)v->valuedouble : dflt;
}

ms_status ms_model_read_npz(ms_npz *z, const char *path, ms_model **out) {
    ms_model *m = NULL;
    char *text = NULL;
    cJSON *root = NULL;
    ms_npy_info info;
    ms_status st = ms_npz_info(z, "config.json", &info);
    if (st) goto done;
    if (info.dtype != MS_DT_U1 || info.ndim != 1 || info.count > (1 << 20)) {
        st = ms_fail(MS_ERR_FORMAT, "%s: config.json must be a uint8 vector under 1 MiB", path);
        goto done;
    }
    text = calloc((size_t)info.count + 1, 1);
    if (!text) {
        st = ms_fail(MS_ERR_NOMEM, "%s: config.json", path);
        goto done;
    }
    if ((st = ms_npz_read_u8(z, "config.json", (uint8_t *)text, (size_t)info.count))) goto done;
    root = cJSON_Parse(text);
    if (!cJSON_IsObject(root)) {
        st = ms_fail(MS_ERR_FORMAT, "%s: config.json is not a JSON object", path);
        goto done;
    }
    int ok = 1;
    ms_model_config cfg = {json_int(root, "depth", 4, &ok), json_int(root, "base", 32, &ok),
                           json_int(root, "classes", 5, &ok), 0.0f, 0, 0};
    const cJSON *dp = cJSON_GetObjectItemCaseSensitive(root, "dropout");
    if (cJSON_IsNumber(dp)) cfg.dropout = (float)dp->valuedouble;
    if (!ok) {
        st = ms_fail(MS_ERR_FORMAT, "%s: config.json depth/base/classes must be integers", path);
        goto done;
    }
    cfg.frame = json_int(root, "frame", MS_DEFAULT_FRAME, &ok); /* older files: the 128x128 frames */
    if (!ok || cfg.frame < 16 || cfg.frame > MS_MAX_FRAME_SIDE) {
        st = ms_fail(MS_ERR_FORMAT, "%s: config.json frame must be an integer in 16..%d", path, MS_MAX_FRAME_SIDE);
        goto done;
    }
    const cJSON *att = cJSON_GetObjectItemCaseSensitive(root, "attention"); /* older files: none */
    if (att && !cJSON_IsBool(att)) {
        st = ms_fail(MS_ERR_FORMAT, "%s: config.json attention must be true or false", path);
        goto done;
    }
    cfg.attention = cJSON_IsTrue(att);
    if ((st = ms_model_alloc_internal(&m, &cfg))) {
        ms_fail(st, "%s: %s", path, ms_last_error());
        goto done;
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "meta");
    if (meta && !(m->meta_json = cJSON_PrintUnformatted(meta))) {
        st = ms_fail(MS_ERR_NOMEM, "%s: meta", path);
        goto done;
    }
    for (int i = 0; i < m->ntensors; i++) {
        const ms_tensor_info *t = &m->tensors[i];
        if ((st = ms_npz_info(z, t->name, &info))) goto done;
        int same = info.ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = info.shape[d] == t->shape[d];
        if (!same) {
            st = ms_fail(MS_ERR_SHAPE, "%s: %s has the wrong shape for a depth %d base %d model%s",
                         path, t->name, cfg.depth, cfg.base, cfg.attention ? " with attention" : "");
            goto done;
        }
        if (t->kind == MS_T_COUNTER) {
            if ((st = ms_npz_read_i64(z, t->name, &m->num_batches_tracked, 1))) goto done;
        } else {
            float *dst = (t->kind == MS_T_PARAM ? m->params : m->bufs) + t->offset;
            if ((st = ms_npz_read_f32(z, t->name, dst, t->count))) goto done;
            for (size_t j = 0; j < t->count; j++) {
                if (!isfinite(dst[j])) {
                    st = ms_fail(MS_ERR_NONFINITE, "%s: %s holds a non-finite value", path, t->name);
                    goto done;
                }
            }
        }
    }
    *out = m;
    m = NULL;
done:
    cJSON_Delete(root);
    free(text);
    ms_model_free(m);
    return st;
}

ms_status ms_model_load(ms_model **out, const char *path) {
    ms_npz *z = NULL;
    ms_status st = ms_npz_open(&z, path);
    if (st) return st;
    st = ms_model_read_npz(z, path, out);
    ms_npz_close(z);
    if (st == MS_OK && (st = ms_model_freeze(*out))) { /* a loaded model serves inference */
        ms_model_free(*out);
        *out = NULL;
    }
    return st;
}

/* ------------------------------------------------------------------ inference */

/* logits (K, B*H*W) -> labels, probs (B,K,H,W), normalised entropy and top probability (B*H*W),
 * each optional. The uncertainty comes straight from the logits: with d_k = l_k - max, e_k =
 * exp(d_k) and s = sum e_k, the top probability is 1/s and the entropy in nats is
 * log s - sum e_k d_k / s: one logarithm per pixel instead of one per class. */
static void softmax_pixel(const float *logits, int K, size_t N, size_t hw, size_t i, float inv_log_k,
                          const ms_pixel_out *o) {
    int best = 0;
    float mx = logits[i];
    for (int k = 1; k < K; k++) {
        const float v = logits[(size_t)k * N + i];
        if (v > mx) {
            mx = v;
            best = k;
        }
    }
    if (o->labels) o->labels[i] = (uint8_t)best;
    if (!(o->probs || o->entropy || o->top)) return;
    float s = 0.0f, t = 0.0f, e[64];
    for (int k = 0; k < K; k++) {
        const float d = logits[(size_t)k * N + i] - mx;
        s += (e[k] = expf(d));
        t += e[k] * d;
    }
    if (o->probs) {
        const size_t b = i / hw, px = i % hw;
        for (int k = 0; k < K; k++) o->probs[(b * K + k) * hw + px] = e[k] / s;
    }
    if (o->top) o->top[i] = 1.0f / s;
    if (o->entropy) {
        const float h = (logf(s) - t / s) * inv_log_k;
        o->entropy[i] = h < 0.0f ? 0.0f : h > 1.0f ? 1.0f : h;
    }
}

#if defined(__AVX2__) && defined(__FMA__)
/* e^d for d <= 0, 8 at a time: d = n ln2 + r (|r| <= ln2/2, ln2 in two parts), e^r by Cephes
 * expf's degree-6 polynomial, 2^n into the exponent; below -87.3 it returns e^-87.3 (1e-38,
 * nothing next to the top class's 1). Within 2 ulp of expf: the 8-bit entropy map and the
 * scores it feeds do not move (tests/test_predict.c holds it to the scalar form). */
static inline __m256 exp_nonpos8(__m256 d) {
    const __m256 x = _mm256_max_ps(d, _mm256_set1_ps(-87.3f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* pixels i .. i+7 (a serving request's 8192 pixels spent ~4% of its CPU in scalar expf) */
static void softmax_pixels8(const float *logits, int K, size_t N, size_t i, float inv_log_k, const ms_pixel_out *o) {
    __m256 mx = _mm256_loadu_ps(logits + i);
    __m256i best = _mm256_setzero_si256();
    for (int k = 1; k < K; k++) {
        const __m256 v = _mm256_loadu_ps(logits + (size_t)k * N + i);
        const __m256 gt = _mm256_cmp_ps(v, mx, _CMP_GT_OQ); /* strict: the first maximum wins, as above */
        mx = _mm256_max_ps(v, mx);
        best = _mm256_blendv_epi8(best, _mm256_set1_epi32(k), _mm256_castps_si256(gt));
    }
    if (o->labels) {
        int32_t b[8];
        _mm256_storeu_si256((__m256i *)b, best);
        for (int j = 0; j < 8; j++) o->labels[i + j] = (uint8_t)b[j];
    }
    if (!(o->entropy || o->top)) return;
    __m256 s = _mm256_setzero_ps(), t = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(logits + (size_t)k * N + i), mx);
        const __m256 e = exp_nonpos8(d);
        s = _mm256_add_ps(s, e);
        t = _mm256_fmadd_ps(e, d, t);
    }
    const __m256 inv_s = _mm256_div_ps(_mm256_set1_ps(1.0f), s);
    if (o->top) _mm256_storeu_ps(o->top + i, inv_s);
    if (o->entropy) {
        float sv[8], ts[8];
        _mm256_storeu_ps(sv, s);
        _mm256_storeu_ps(ts, _mm256_mul_ps(t, inv_s));
        for (int j = 0; j < 8; j++) {
            const float h = (logf(sv[j]) - ts[j]) * inv_log_k;
            o->entropy[i + j] = h < 0.0f ? 0.0f : h > 1.0f ? 1.0f : h;
        }
    }
}
#endif

static void softmax_argmax(const float *logits, int K, int B, size_t hw, const ms_pixel_out *o) {
    const size_t N = (size_t)B * hw;
    const float inv_log_k = K > 1 ? 1.0f / logf((float)K) : 0.0f;
#if defined(__AVX2__) && defined(__FMA__)
    if (!o->probs && K <= 64) { /* the probabilities (B,K,H,W) stay per pixel */
        const size_t N8 = N / 8 * 8;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < N8; i += 8) softmax_pixels8(logits, K, N, i, inv_log_k, o);
        for (size_t i = N8; i < N; i++) softmax_pixel(logits, K, N, hw, i, inv_log_k, o);
        return;
    }
#endif
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) softmax_pixel(logits, K, N, hw, i, inv_log_k, o);
}

/* Inference activations are cached per thread (keyed by shape and architecture): allocating
 * and page-faulting tens of MB per request would cost more than the forward pass itself. The
 * cache dies with its thread (pthread key destructor). */
typedef struct {
    ms_acts a;
    ms_model_config cfg;
    int valid;
} infer_cache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_free(void *p) {
    infer_cache *c = p;
    if (c && c->valid) ms_acts_free(&c->a);
    free(c);
}
static void cache_init(void) { pthread_key_create(&cache_key, cache_free); }

/* Drop this thread's cached activations (e.g. before a long idle period). */
void ms_infer_cache_release(void) {
    pthread_once(&cache_once, cache_init);
    infer_cache *c = pthread_getspecific(cache_key);
    if (c) {
        cache_free(c);
        pthread_setspecific(cache_key, NULL);
    }
}

#ifndef MS_INFER_CHUNK
#define MS_INFER_CHUNK 32
#endif

static ms_status cached_acts(const ms_model *m, int B, int H, int W, ms_acts **out) {
    pthread_once(&cache_once, cache_init);
    infer_cache *c = pthread_getspecific(cache_key);
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) return ms_fail(MS_ERR_NOMEM, "inference cache");
        pthread_setspecific(cache_key, c);
    }
    if (c->valid && c->a.B == B && c->a.H == H && c->a.W == W && memcmp(&c->cfg, &m->cfg, sizeof c->cfg) == 0) {
        *out = &c->a;
        return MS_OK;
    }
    if (c->valid) ms_acts_free(&c->a);
    c->valid = 0;
    ms_status st = ms_acts_create(&c->a, m, B, H, W, 0);
    if (st) return st;
    c->cfg = m->cfg;
    c->valid = 1;
    *out = &c->a;
    return MS_OK;
}

/* One pass of the model (no TTA), per-pixel outputs as o asks. */
static ms_status predict_pass(const ms_model *m, const float *x, int B, int H, int W, const ms_pixel_out *o) {
    ms_acts *a = NULL;
    if (!m->plan) {
        ms_status st = cached_acts(m, B, H, W, &a);
        if (st) return st;
        /* eval mode reads but never writes the model (no running-stat updates): the cast is
         * safe, and it is what lets many threads share one immutable model */
        ms_unet_forward((ms_model *)m, a, x, 0, 0);
        softmax_argmax(a->logits, m->cfg.classes, B, (size_t)H * W, o);
        return MS_OK;
    }
    /* A frozen model runs a batch MS_INFER_CHUNK images at a time, which bounds the activation
     * memory of a large batch (eval). Measured at 64x128, F=32, batch 32: chunks of 4 / 8 / 16 /
     * 32 images took 355 / 321 / 312 / 300 ms (4 had paid before the Winograd path, when B=32's
     * 1 MiB power-of-two plane stride made the direct kernel's loads alias in the caches). */
    const int S = B < MS_INFER_CHUNK ? B : MS_INFER_CHUNK, K = m->cfg.classes;
    const size_t hw = (size_t)H * W;
    ms_status st = cached_acts(m, S, H, W, &a);
    if (st) return st;
    for (int b0 = 0; b0 < B; b0 += S) {
        const int nb = B - b0 < S ? B - b0 : S;
        ms_unet_forward_infer(m, a, x + (size_t)b0 * hw, nb);
        const size_t px = (size_t)b0 * hw;
        const ms_pixel_out ob = {o->labels ? o->labels + px : NULL, o->probs ? o->probs + px * K : NULL,
                                 o->entropy ? o->entropy + px : NULL, o->top ? o->top + px : NULL};
        softmax_argmax(a->logits, K, nb, hw, &ob);
    }
    return MS_OK;
}

ms_status ms_model_predict(const ms_model *m, const float *x, int B, int H, int W,
                           uint8_t *labels, float *probs) {
    const ms_pixel_out o = {labels, probs, NULL, NULL};
    return predict_pass(m, x, B, H, W, &o);
}

/* Flip TTA, the one implementation (segment, predict, rank and reports): the B images and their
 * mirrors run as one batch of 2B; each image's probabilities are averaged with its mirror's,
 * mirrored back, and the uncertainty comes from the averaged probabilities. 0.5 (a + b) is
 * exact, so the argmax is that of the sum that segment used before. */
ms_status ms_model_predict_ex(const ms_model *m, const float *x, int B, int H, int W, int tta, const ms_pixel_out *o) {
    if (!tta) return predict_pass(m, x, B, H, W, o);
    const int K = m->cfg.classes;
    const size_t hw = (size_t)H * W, n = (size_t)B * hw;
    float *xx = malloc(sizeof(float) * 2 * n), *pp = malloc(sizeof(float) * 2 * n * K);
    ms_status st = MS_OK;
    if (!xx || !pp) {
        st = ms_fail(MS_ERR_NOMEM, "predict: flip TTA buffers for %d images of %dx%d", B, W, H);
        goto done;
    }
    memcpy(xx, x, sizeof(float) * n);
    for (size_t r = 0; r < (size_t)B * H; r++) /* image rows: (b, y) */
        for (int c = 0; c < W; c++) xx[n + r * W + (W - 1 - c)] = x[r * W + c];
    const ms_pixel_out both = {NULL, pp, NULL, NULL};
    if ((st = predict_pass(m, xx, 2 * B, H, W, &both))) goto done;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const size_t b = i / hw, y = i % hw / W, c = i % W;
        const float *pa = pp + b * K * hw + y * W + c, *pb = pp + ((size_t)B + b) * K * hw + y * W + (W - 1 - c);
        float avg[64];
        int best = 0;
        for (int k = 0; k < K; k++) {
            avg[k] = 0.5f * (pa[(size_t)k * hw] + pb[(size_t)k * hw]);
            if (o->probs) o->probs[b * K * hw + (size_t)k * hw + y * W + c] = avg[k];
            if (avg[k] > avg[best]) best = k;
        }
        if (o->labels) o->labels[i] = (uint8_t)best;
        if (o->entropy || o->top) {
            float top;
            const float h = ms_pixel_entropy(avg, 1, K, &top);
            if (o->entropy) o->entropy[i] = h;
            if (o->top) o->top[i] = top;
        }
    }
done:
    free(xx);
    free(pp);
    return st;
}

ms_status ms_model_segment_ex(const ms_model *m, const uint8_t *gray, int H, int W, int tta, uint8_t *labels,
                              float *entropy, ms_tile_score *score) {
    if (H < 1 || W < 1) return ms_fail(MS_ERR_SHAPE, "segment: empty image %dx%d", W, H);
    const int q = 1 << m->cfg.depth;
    const int Hp = (H + q - 1) / q * q, Wp = (W + q - 1) / q * q;
    const size_t hw = (size_t)Hp * Wp;
    const int unc = entropy || score;
    float *x = malloc(sizeof(float) * hw), *ent = unc ? malloc(sizeof(float) * hw) : NULL;
    float *top = unc ? malloc(sizeof(float) * hw) : NULL;
    uint8_t *lab = malloc(hw);
    ms_status st = MS_OK;
    if (!x || !lab || (unc && (!ent || !top))) {
        st = ms_fail(MS_ERR_NOMEM, "segment: %dx%d image", W, H);
        goto done;
    }
    /* pad by edge replication (reflection would need H, W >= pad; replication always works) */
    for (int y = 0; y < Hp; y++) {
        const uint8_t *row = gray + (size_t)MS_MIN(y, H - 1) * W;
        for (int xx = 0; xx < Wp; xx++) x[(size_t)y * Wp + xx] = row[MS_MIN(xx, W - 1)] * (1.0f / 255.0f);
    }
    const ms_pixel_out o = {lab, NULL, ent, top};
    if ((st = ms_model_predict_ex(m, x, 1, Hp, Wp, tta, &o))) goto done;
    double sc = 0, se = 0; /* scores over the image's own pixels, not the padding */
    for (int y = 0; y < H; y++) {
        memcpy(labels + (size_t)y * W, lab + (size_t)y * Wp, (size_t)W);
        if (entropy) memcpy(entropy + (size_t)y * W, ent + (size_t)y * Wp, sizeof(float) * W);
        for (int xx = 0; unc && xx < W; xx++) sc += top[(size_t)y * Wp + xx], se += ent[(size_t)y * Wp + xx];
    }
    if (score) {
        score->confidence = (float)(sc / ((double)H * W));
        score->entropy = (float)(se / ((double)H * W));
    }
done:
    free(x);
    free(ent);
    free(top);
    free(lab);
    return st;
}

ms_status ms_model_segment(const ms_model *m, const uint8_t *gray, int H, int W, int tta, uint8_t *labels) {
    return ms_model_segment_ex(m, gray, H, W, tta, labels, NULL, NULL);
}
