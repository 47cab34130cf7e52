/* Per-class logit offsets (core/calibrate.c, `marsseg calibrate`):
 * - the search on synthetic log-probabilities: it never lowers the objective, reports the score
 *   of the offsets it returns, ends where no single step of its finest size (0.02) on any class
 *   gains, keeps offsets[0] = 0 and every offset within [-4, 4]; and it finds the offset a
 *   biased classifier needs (labels drawn from the probabilities, then one class's logit pushed
 *   down by 1.5: the search gives it back);
 * - folded into the default model on the sample's tiles: the calibrated model's labels are
 *   argmax(log p + offsets) of the original model's probabilities, computed here;
 * - the CLI: the file it writes carries the offsets in its meta and segments as the fold;
 *   bad arguments are refused. */
#include "marsseg.h"
#include "marsseg_calibrate.h"
#include "rng.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define K MS_NUM_CLASSES

static void test_search(void) {
    const size_t n = 60000;
    float *lp = malloc(sizeof(float) * n * K);
    uint8_t *y = malloc(n);
    ms_rng r;
    ms_rng_seed(&r, 7);
    for (size_t i = 0; i < n; i++) {
        float z[K], s = 0, mx = -1e30f;
        for (int k = 0; k < K; k++) z[k] = 2.0f * (float)ms_rng_float(&r), mx = fmaxf(mx, z[k]);
        for (int k = 0; k < K; k++) s += expf(z[k] - mx);
        /* the label drawn from softmax(z): a calibrated classifier */
        double u = ms_rng_float(&r) * s, c = 0;
        int lab = K - 1;
        for (int k = 0; k < K; k++)
            if ((c += expf(z[k] - mx)) >= u) { lab = k; break; }
        y[i] = (uint8_t)lab;
        z[3] -= 1.5f; /* the model under-predicts class 3 */
        s = 0;
        mx = -1e30f;
        for (int k = 0; k < K; k++) mx = fmaxf(mx, z[k]);
        for (int k = 0; k < K; k++) s += expf(z[k] - mx);
        for (int k = 0; k < K; k++) lp[i * K + k] = z[k] - mx - logf(s);
    }
    float off[K];
    double before = 0, after = 0;
    ms_calibrate_search(lp, y, n, off, &before, &after);
    printf("search: mIoU %.4f -> %.4f, offsets %+.2f %+.2f %+.2f %+.2f %+.2f\n", before, after, off[0], off[1], off[2], off[3], off[4]);
    const float zero[K] = {0};
    CHECK(fabs(before - ms_calibrate_score(lp, y, n, zero)) < 1e-12, "before is the score without offsets");
    CHECK(fabs(after - ms_calibrate_score(lp, y, n, off)) < 1e-12, "after is the score of the offsets returned");
    CHECK(after > before + 0.01, "a biased classifier gains (%.4f -> %.4f)", before, after);
    CHECK(off[0] == 0.0f, "offsets[0] stays 0");
    CHECK(off[3] - (off[1] + off[2] + off[4]) / 3 > 0.8f, "class 3's logit given back (%+.2f)", off[3]);
    int in_range = 1, step_gains = 0;
    for (int k = 0; k < K; k++) in_range &= fabsf(off[k]) <= 4.0f;
    for (int k = 1; k < K; k++)
        for (int d = -1; d <= 1; d += 2) {
            float c[K];
            memcpy(c, off, sizeof c);
            c[k] += 0.02f * (float)d;
            step_gains += ms_calibrate_score(lp, y, n, c) > after + 1e-9;
        }
    CHECK(in_range && step_gains == 0, "a local optimum within [-4, 4] (%d single steps gain)", step_gains);
    free(lp);
    free(y);
}

/* The default model calibrated on 64 sample tiles: its labels against the fold computed here. */
static void test_fold(ms_dataset *ds) {
    ms_model *m = NULL, *ref = NULL;
    CHECK_OK(ms_model_load(&m, "models/default.npz"));
    CHECK_OK(ms_model_load(&ref, "models/default.npz"));
    if (!m || !ref) return;
    const int n = 64, hw = ds->h * ds->w;
    ms_calibration cal;
    CHECK_OK(ms_calibrate(m, ds, NULL, n, &cal));
    printf("default model on %d sample tiles: %.4f -> %.4f, offsets %+.2f %+.2f %+.2f %+.2f %+.2f\n", n, cal.miou_before,
           cal.miou_after, cal.offsets[0], cal.offsets[1], cal.offsets[2], cal.offsets[3], cal.offsets[4]);
    CHECK(cal.tiles == n && cal.miou_after >= cal.miou_before, "calibrated: %d tiles, %.4f -> %.4f", cal.tiles,
          cal.miou_before, cal.miou_after);
    float *x = malloc(sizeof(float) * (size_t)n * hw), *p = malloc(sizeof(float) * (size_t)n * hw * K);
    uint8_t *lab = malloc((size_t)n * hw);
    for (size_t i = 0; i < (size_t)n * hw; i++) x[i] = ds->img[i] / 255.0f;
    CHECK_OK(ms_model_predict(ref, x, n, ds->h, ds->w, NULL, p));
    CHECK_OK(ms_model_predict(m, x, n, ds->h, ds->w, lab, NULL));
    size_t differ = 0;
    for (int b = 0; b < n; b++)
        for (int q = 0; q < hw; q++) {
            int best = 0;
            float mx = -1e30f;
            for (int k = 0; k < K; k++) {
                const float v = logf(fmaxf(p[((size_t)b * K + k) * hw + q], 1e-30f)) + cal.offsets[k];
                if (v > mx) mx = v, best = k;
            }
            differ += lab[(size_t)b * hw + q] != best;
        }
    CHECK(differ <= (size_t)n * hw / 10000, "the folded model labels as argmax(log p + offsets): %zu of %d pixels differ",
          differ, n * hw);
    ms_dataset bad = *ds;
    bad.mask = NULL;
    CHECK(ms_calibrate(m, &bad, NULL, n, &cal) == MS_ERR_ARG, "unlabelled tiles refused");
    CHECK(ms_calibrate(m, ds, NULL, 0, &cal) == MS_ERR_ARG, "no tiles refused");
    free(x);
    free(p);
    free(lab);
    ms_model_free(m);
    ms_model_free(ref);
}

static int sh(const char *cmd) {
    const int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(const char *bin) {
    char tmp[] = "/tmp/marsseg-test-calibrate-XXXXXX", cmd[1024], cfg[128], out[128];
    if (!mkdtemp(tmp)) return;
    snprintf(cfg, sizeof cfg, "%s/cfg.json", tmp);
    snprintf(out, sizeof out, "%s/cal.npz", tmp);
    FILE *f = fopen(cfg, "w");
    if (!f) return;
    fputs("{\"data\": \"datasets/sample.npz\", \"limit\": 80, \"val_frac\": 0.2}\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s calibrate --model models/default.npz --split-of %s --out %s --tiles 32 --threads 1", bin, cfg, out);
    CHECK(sh(cmd) == 0, "%s", cmd);
    ms_model *m = NULL;
    CHECK_OK(ms_model_load(&m, out));
    if (m) {
        const char *meta = ms_model_meta(m);
        CHECK(strstr(meta, "\"calibration\"") && strstr(meta, "\"offsets\"") && strstr(meta, "\"tiles\":32"),
              "meta records the calibration: %.200s", meta);
        ms_model_free(m);
    }
    snprintf(cmd, sizeof cmd, "%s calibrate --model models/default.npz --out %s 2>/dev/null", bin, out);
    CHECK(sh(cmd) == 2, "no --split-of: usage error");
    snprintf(cmd, sizeof cmd, "%s calibrate --model models/default.npz --split-of %s --out %s --tiles -1 2>/dev/null", bin, cfg, out);
    CHECK(sh(cmd) == 2, "--tiles -1 refused");
    snprintf(cmd, sizeof cmd, "%s calibrate --model %s/none.npz --split-of %s --out %s 2>/dev/null", bin, tmp, cfg, out);
    CHECK(sh(cmd) == 1, "a missing model fails");
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
}

int main(int argc, char **argv) {
    (void)argc;
    ms_set_threads(1);
    test_search();
    ms_dataset ds;
    CHECK_OK(ms_dataset_load(&ds, "datasets/sample.npz", "training_set", 0));
    test_fold(&ds);
    ms_dataset_free(&ds);
    char bin[512];
    snprintf(bin, sizeof bin, "%s", argv[0]); /* the binary: build/marsseg beside build/tests/ */
    for (int i = 0; i < 2; i++) {
        char *s = strrchr(bin, '/');
        if (s) *s = 0;
    }
    strncat(bin, "/marsseg", sizeof bin - strlen(bin) - 1);
    test_cli(bin);
    return TEST_END();
}
