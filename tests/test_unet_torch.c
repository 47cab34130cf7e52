/* The U-Net against PyTorch: forward (train and eval), loss, every parameter gradient, BN running
 * stats and parameters after 1 and 3 AdamW steps, from fixtures written by tools/make_fixtures.py
 * (a float64 PyTorch reference of the same module, stored as float32), with and without the
 * attention gates (model.attention); the folded inference form against eval mode, also on fewer
 * images than its buffers hold; attention in weights files.
 * Exits non-zero naming each mismatching tensor and its worst error. */
#include "layers.h"
#include "marsseg.h"
#include "marsseg_npz.h"
#include "plan.h"
#include "testutil.h"
#include "unet.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FWD_TOL 1e-4
#define GRAD_TOL 1e-3
/* parameters after AdamW steps inherit the gradient tolerance: Adam divides by sqrt(v), so a
 * gradient near eps amplifies its rounding */
#define STEP_TOL 1e-3

static float *read_all(ms_npz *z, const char *key, size_t *n) {
    ms_npy_info info;
    if (ms_npz_info(z, key, &info) != MS_OK) {
        fprintf(stderr, "missing fixture array %s: %s\n", key, ms_last_error());
        return NULL;
    }
    float *v = malloc(sizeof(float) * (size_t)(info.count ? info.count : 1));
    if (ms_npz_read_f32(z, key, v, (size_t)info.count) != MS_OK) {
        free(v);
        return NULL;
    }
    *n = (size_t)info.count;
    return v;
}

static void compare(const char *what, const float *got, const float *want, size_t n, double tol) {
    double ref = 0, abs_got = 0;
    for (size_t i = 0; i < n; i++) ref = fmax(ref, fabs(want[i])), abs_got = fmax(abs_got, fabs(got[i]));
    if (ref < 1e-12) {
        /* a gradient that is zero by construction (the attention gate's conv biases, which feed
         * training-mode BatchNorms: the reference holds ~1e-17 of float64 rounding): only float32
         * rounding may show, far below any real gradient of these fixtures (>= 1e-4) */
        CHECK(abs_got <= 1e-6, "%s: %.3g where the reference is zero", what, abs_got);
        return;
    }
    double e = tu_normwise_err(got, want, n);
    CHECK(e <= tol, "%s: worst relative error %.3g > %.1g", what, e, tol);
}

/* (K,B,H,W) channel-major -> (B,K,H,W) */
static void to_nchw(float *dst, const float *src, int K, int B, size_t hw) {
    for (int k = 0; k < K; k++)
        for (int b = 0; b < B; b++) memcpy(dst + ((size_t)b * K + k) * hw, src + ((size_t)k * B + b) * hw, sizeof(float) * hw);
}

static void load_state(ms_model *m, ms_npz *z, const char *prefix) {
    char key[96];
    for (int i = 0; i < m->ntensors; i++) {
        const ms_tensor_info *t = &m->tensors[i];
        snprintf(key, sizeof key, "%s%s", prefix, t->name);
        if (t->kind == MS_T_COUNTER) {
            CHECK_OK(ms_npz_read_i64(z, key, &m->num_batches_tracked, 1));
        } else {
            CHECK_OK(ms_npz_read_f32(z, key, (t->kind == MS_T_PARAM ? m->params : m->bufs) + t->offset, t->count));
        }
    }
}

/* Parameters after AdamW steps. Adam divides by sqrt(v)+eps, so where a gradient is near eps the
 * update direction is ill-conditioned: float32 rounding of a 1e-9 gradient can move that element
 * by up to ~lr per step whatever the implementation. So: every element within `tol` of the
 * reference except a few (below), and those within the bound of 2*lr*steps. */
static void compare_steps(const char *what, const float *got, const float *want, size_t n, double tol, double lr, int steps) {
    double den = 0;
    for (size_t i = 0; i < n; i++) den = fmax(den, fabs(want[i]));
    size_t off = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - want[i]);
        worst = fmax(worst, d);
        if (d > tol * den) off++;
    }
    /* after one step: at most 0.1% of elements; after several, the gaps feed back through the
     * next gradients (measured with OpenBLAS's AVX-512 kernels: up to 4.6% of the bottleneck's
     * weights after 3 steps, 0 with its SSE3 ones): at most 10%. A wrong update rule or bias
     * correction moves nearly every element. */
    const size_t max_off = steps == 1 ? n / 1000 : (n + 9) / 10;
    CHECK(off <= max_off && worst <= 2 * lr * steps, "%s: %zu of %zu elements off by > %.0e relative, worst %.3g (bound %.3g)",
          what, off, n, tol, worst, 2 * lr * steps);
}

static double g_lr;
static int g_steps;

static void compare_state(const ms_model *m, ms_npz *z, const char *prefix, int kind, const float *block, double tol) {
    char key[96];
    for (int i = 0; i < m->ntensors; i++) {
        const ms_tensor_info *t = &m->tensors[i];
        if ((int)t->kind != kind && !(kind == MS_T_BUFFER && t->kind == MS_T_COUNTER)) continue;
        snprintf(key, sizeof key, "%s%s", prefix, t->name);
        if (t->kind == MS_T_COUNTER) {
            int64_t c = -1;
            CHECK_OK(ms_npz_read_i64(z, key, &c, 1));
            CHECK(c == m->num_batches_tracked, "%s: %lld != %lld", key, (long long)m->num_batches_tracked, (long long)c);
            continue;
        }
        size_t n = 0;
        float *want = read_all(z, key, &n);
        CHECK(want && n == t->count, "%s: missing or wrong size", key);
        if (want && n == t->count) {
            if (strncmp(prefix, "after", 5) == 0)
                compare_steps(key, block + t->offset, want, n, tol, g_lr, prefix[5] - '0');
            else
                compare(key, block + t->offset, want, n, tol);
        }
        free(want);
    }
}

static void run_fixture(const char *path) {
    printf("fixture %s\n", path);
    ms_npz *z = NULL;
    CHECK_OK(ms_npz_open(&z, path));
    if (!z) return;
    size_t n = 0;
    ms_npy_info info;
    CHECK_OK(ms_npz_info(z, "config.json", &info));
    char *txt = calloc((size_t)info.count + 1, 1);
    CHECK_OK(ms_npz_read_u8(z, "config.json", (uint8_t *)txt, (size_t)info.count));
    cJSON *cfgj = cJSON_Parse(txt);
    free(txt);
#define JI(k) (int)cJSON_GetObjectItem(cfgj, k)->valuedouble
#define JD(k) cJSON_GetObjectItem(cfgj, k)->valuedouble
    ms_model_config cfg = {JI("depth"), JI("base"), JI("classes"), 0.0f, 0, cJSON_IsTrue(cJSON_GetObjectItem(cfgj, "attention"))};
    const int B = JI("batch"), H = JI("height"), W = JI("width"), steps = JI("steps");
    ms_adamw_cfg opt = {(float)JD("lr"), 0.9f, 0.999f, (float)JD("eps"), (float)JD("weight_decay")};
    cJSON_Delete(cfgj);
    const int K = cfg.classes;
    g_lr = opt.lr;
    g_steps = steps;

    ms_model *m = NULL;
    CHECK_OK(ms_model_create(&m, &cfg, 1));
    load_state(m, z, "init.");

    /* eval-mode forward at a non-training size, B=1 */
    CHECK_OK(ms_npz_info(z, "eval_input", &info));
    const int EH = (int)info.shape[2], EW = (int)info.shape[3];
    float *ex = read_all(z, "eval_input", &n), *elog = read_all(z, "eval_logits", &n);
    ms_acts ea;
    CHECK_OK(ms_acts_create(&ea, m, 1, EH, EW, 0));
    ms_unet_forward(m, &ea, ex, 0, 0);
    compare("eval_logits", ea.logits, elog, n, FWD_TOL);
    /* the inference form (BN folded, shortcut merged into conv2) against PyTorch too */
    CHECK_OK(ms_model_freeze(m));
    ms_unet_forward_infer(m, &ea, ex, ea.B);
    compare("eval_logits (inference form)", ea.logits, elog, n, FWD_TOL);
    /* ... and with F(4x4) Winograd wherever it can run (widths of 64: the 64x128 and 32x64 fixtures) */
    conv_plan_force(CONV_WINO4);
    ms_unet_forward_infer(m, &ea, ex, ea.B);
    conv_plan_force(-1);
    compare("eval_logits (inference form, F(4x4) Winograd where it runs)", ea.logits, elog, n, FWD_TOL);
    free(m->plan);
    m->plan = NULL;
    ms_acts_free(&ea);
    free(elog);

    /* training steps */
    float *x = read_all(z, "input", &n);
    float *cw = read_all(z, "class_weights", &n);
    uint8_t *tgt = malloc((size_t)B * H * W);
    CHECK_OK(ms_npz_read_u8(z, "target", tgt, (size_t)B * H * W));
    float *want_logits = read_all(z, "logits", &n);
    float *want_loss = read_all(z, "loss", &n);
    float *nchw = malloc(sizeof(float) * (size_t)K * B * H * W);
    float *grads = calloc(m->nparams, sizeof(float));
    float *mom1 = calloc(m->nparams, sizeof(float)), *mom2 = calloc(m->nparams, sizeof(float));
    ms_acts a;
    CHECK_OK(ms_acts_create(&a, m, B, H, W, 1));
    for (int step = 1; step <= steps; step++) {
        ms_unet_forward(m, &a, x, 1, 0);
        double loss = softmax_ce_forward_backward(a.d_logits, a.logits, tgt, cw, K, (size_t)B * H * W, 1.0f, NULL);
        memset(grads, 0, sizeof(float) * m->nparams);
        ms_unet_backward(m, &a, grads);
        if (step == 1) {
            to_nchw(nchw, a.logits, K, B, (size_t)H * W);
            compare("logits", nchw, want_logits, (size_t)K * B * H * W, FWD_TOL);
            CHECK(fabs(loss - want_loss[0]) <= FWD_TOL * fabs(want_loss[0]), "loss %.7f != %.7f", loss, want_loss[0]);
            compare_state(m, z, "grad.", MS_T_PARAM, grads, GRAD_TOL);
            compare_state(m, z, "buf1.", MS_T_BUFFER, m->bufs, FWD_TOL);
        }
        if (step == 1) {
            /* AdamW on its own, fed PyTorch's own gradients: must match tightly */
            float *p = malloc(sizeof(float) * m->nparams), *g = malloc(sizeof(float) * m->nparams);
            float *z1 = calloc(m->nparams, sizeof(float)), *z2 = calloc(m->nparams, sizeof(float));
            memcpy(p, m->params, sizeof(float) * m->nparams);
            char key[96];
            for (int i = 0; i < m->ntensors; i++) {
                const ms_tensor_info *t = &m->tensors[i];
                if (t->kind != MS_T_PARAM) continue;
                snprintf(key, sizeof key, "grad.%s", t->name);
                CHECK_OK(ms_npz_read_f32(z, key, g + t->offset, t->count));
            }
            adamw_step(p, g, z1, z2, m->nparams, 1, &opt);
            compare_state(m, z, "after1.", MS_T_PARAM, p, 1e-5);
            free(p); free(g); free(z1); free(z2);
        }
        adamw_step(m->params, grads, mom1, mom2, m->nparams, step, &opt);
        if (step == 1) compare_state(m, z, "after1.", MS_T_PARAM, m->params, STEP_TOL);
    }
    char pre[16];
    snprintf(pre, sizeof pre, "after%d.", steps);
    compare_state(m, z, pre, MS_T_PARAM, m->params, STEP_TOL);
    snprintf(pre, sizeof pre, "buf%d.", steps);
    /* the running stats after several steps saw the activations of the (slightly) diverged
     * weights above: measured up to 2e-3 relative with the AVX-512 kernels */
    compare_state(m, z, pre, MS_T_BUFFER, m->bufs, steps == 1 ? FWD_TOL : 1e-2);

    /* after training, BN's running stats are far from (0, 1): the inference form still gives
     * the eval-mode logits */
    CHECK_OK(ms_acts_create(&ea, m, 1, EH, EW, 0));
    float *ref = malloc(sizeof(float) * (size_t)K * EH * EW);
    ms_unet_forward(m, &ea, ex, 0, 0);
    memcpy(ref, ea.logits, sizeof(float) * (size_t)K * EH * EW);
    CHECK_OK(ms_model_freeze(m));
    ms_unet_forward_infer(m, &ea, ex, ea.B);
    compare("trained eval logits (inference form)", ea.logits, ref, (size_t)K * EH * EW, 1e-5);
    ms_acts_free(&ea);
    free(ref);
    free(ex);

    /* the inference form on fewer images than its buffers hold (the last chunk of a large batch):
     * the encoder's outputs (and with attention the gated skips) sit where B images put them */
    if (B > 1) {
        ms_acts small;
        CHECK_OK(ms_acts_create(&ea, m, B, H, W, 0));
        CHECK_OK(ms_acts_create(&small, m, B - 1, H, W, 0));
        ms_unet_forward_infer(m, &ea, x, B - 1);
        free(m->plan);
        m->plan = NULL;
        ms_unet_forward(m, &small, x, 0, 0);
        compare("inference form, fewer images than its buffers", ea.logits, small.logits, (size_t)K * (B - 1) * H * W, 1e-5);
        ms_acts_free(&small);
        ms_acts_free(&ea);
    }

    ms_acts_free(&a);
    free(x); free(cw); free(tgt); free(want_logits); free(want_loss); free(nchw);
    free(grads); free(mom1); free(mom2);
    ms_model_free(m);
    ms_npz_close(z);
}

/* A weights file as written before "frame" and "attention" existed: m saved, then its archive
 * copied array by array with those two keys deleted from config.json. 0 on success. */
static int write_legacy(const ms_model *m, const char *path) {
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    if (ms_model_save(m, tmp, NULL)) return -1;
    ms_npz *z = NULL;
    ms_npz_writer *w = NULL;
    int ok = !ms_npz_open(&z, tmp) && !ms_npz_writer_open(&w, path);
    for (int i = 0; ok && i < ms_npz_count(z); i++) {
        const char *key = ms_npz_key(z, i);
        ms_npy_info info;
        ok = !ms_npz_info(z, key, &info);
        size_t n = 1;
        for (int d = 0; ok && d < info.ndim; d++) n *= (size_t)info.shape[d];
        void *buf = malloc(n * 8 + 1);
        if (ok && strcmp(key, "config.json") == 0) {
            ok = !ms_npz_read_u8(z, key, buf, n);
            ((char *)buf)[n] = 0;
            cJSON *c = cJSON_Parse(buf);
            cJSON_DeleteItemFromObjectCaseSensitive(c, "frame");
            cJSON_DeleteItemFromObjectCaseSensitive(c, "attention");
            char *text = cJSON_PrintUnformatted(c);
            const int64_t len = (int64_t)strlen(text);
            ok = ok && !ms_npz_writer_add(w, key, MS_DT_U1, 1, &len, text);
            free(text);
            cJSON_Delete(c);
        } else if (ok && info.dtype == MS_DT_F4) {
            ok = !ms_npz_read_f32(z, key, buf, n) && !ms_npz_writer_add(w, key, MS_DT_F4, info.ndim, info.shape, buf);
        } else if (ok && info.dtype == MS_DT_I8) {
            ok = !ms_npz_read_i64(z, key, buf, n) && !ms_npz_writer_add(w, key, MS_DT_I8, info.ndim, info.shape, buf);
        } else ok = 0;
        free(buf);
    }
    ms_npz_close(z);
    if (ok) ok = !ms_npz_writer_commit(w);
    else if (w) ms_npz_writer_abort(w);
    unlink(tmp);
    return ok ? 0 : -1;
}

/* model.attention in weights files: the PyTorch fixture's weights saved and loaded give PyTorch's
 * eval logits through the loaded (frozen) model; a file written before attention existed loads
 * without gates and with frame 128; "attention" of another type than a boolean is refused. */
static void attention_weights_file(void) {
    const char *fx = "tests/fixtures/unet_d2_f4_att.npz";
    ms_npz *z = NULL;
    CHECK_OK(ms_npz_open(&z, fx));
    if (!z) return;
    ms_model_config cfg = {2, 4, 5, 0.0f, 0, 1};
    ms_model *m = NULL, *back = NULL;
    CHECK_OK(ms_model_create(&m, &cfg, 1));
    load_state(m, z, "init.");
    char path[] = "/tmp/ms_att_XXXXXX";
    const int fd = mkstemp(path);
    CHECK(fd >= 0, "temp file");
    if (fd >= 0) close(fd);
    CHECK_OK(ms_model_save(m, path, NULL));
    CHECK_OK(ms_model_load(&back, path));
    if (back) {
        CHECK(ms_model_get_config(back)->attention == 1, "attention not loaded");
        ms_npy_info info;
        size_t n = 0;
        CHECK_OK(ms_npz_info(z, "eval_input", &info));
        float *ex = read_all(z, "eval_input", &n), *want = read_all(z, "eval_logits", &n);
        ms_acts ea;
        CHECK_OK(ms_acts_create(&ea, back, 1, (int)info.shape[2], (int)info.shape[3], 0));
        ms_unet_forward_infer(back, &ea, ex, 1);
        compare("eval_logits of the saved and loaded model", ea.logits, want, n, FWD_TOL);
        ms_acts_free(&ea);
        free(ex);
        free(want);
    }
    ms_model_free(back);
    back = NULL;
    const ms_model_config plain_cfg = {2, 4, 5, 0.0f, 0, 0};
    ms_model *plain = NULL;
    CHECK_OK(ms_model_create(&plain, &plain_cfg, 3));
    CHECK_OK(ms_model_set_frame(plain, 80)); /* stripped from the file: it must read as 128 */
    CHECK(plain && write_legacy(plain, path) == 0, "a weights file without frame and attention written");
    ms_model_free(plain);
    CHECK_OK(ms_model_load(&back, path));
    CHECK(back && ms_model_get_config(back)->attention == 0 && !ms_model_find_tensor(back, "dec.0.att.wg.weight"),
          "a file without \"attention\" has gates");
    CHECK(back && ms_model_get_config(back)->frame == MS_DEFAULT_FRAME, "a file without \"frame\" reads as %d",
          MS_DEFAULT_FRAME);
    ms_model_free(back);
    back = NULL;
    ms_npz_writer *w = NULL;
    const char *bad = "{\"depth\": 2, \"base\": 4, \"classes\": 5, \"attention\": 1}";
    int64_t len = (int64_t)strlen(bad);
    CHECK_OK(ms_npz_writer_open(&w, path));
    CHECK_OK(ms_npz_writer_add(w, "config.json", MS_DT_U1, 1, &len, bad));
    CHECK_OK(ms_npz_writer_commit(w));
    CHECK(ms_model_load(&back, path) == MS_ERR_FORMAT && strstr(ms_last_error(), "attention must be true or false"),
          "attention: 1 in config.json: %s", ms_last_error());
    ms_model_free(back);
    unlink(path);
    ms_model_free(m);
    ms_npz_close(z);
}

int main(void) {
    attention_weights_file();
    /* every fixture with the algorithms the plan measures best here, then with each one forced
     * wherever it can run the shape (conv_plan_force; the rest take the fixed rule's choice):
     * with AVX-512, every level on the direct convolution (d2_f8), Winograd in the eval form
     * (d2_f16) and in training (d1_f32, forward and dinp; F(4x4,3x3) too), im2col and col2im
     * everywhere */
    const int force[] = {-1, CONV_IM2COL, CONV_DIRECT, CONV_WINO, CONV_WINO_SPLIT, CONV_WINO4};
    for (size_t i = 0; i < sizeof force / sizeof *force; i++) {
        printf("== algorithms: %s\n", force[i] < 0 ? "as planned" : conv_algo_name(force[i], CONV_OP_INFER));
        conv_plan_force(force[i]);
        run_fixture("tests/fixtures/unet_d3_f4.npz");
        run_fixture("tests/fixtures/unet_d2_f4.npz");
        run_fixture("tests/fixtures/unet_d2_f8.npz");
        run_fixture("tests/fixtures/unet_d2_f16.npz");
        run_fixture("tests/fixtures/unet_d1_f32.npz");
        run_fixture("tests/fixtures/unet_d2_f4_att.npz"); /* model.attention: the gates on both skips */
    }
    conv_plan_force(-1);
    return TEST_END();
}
