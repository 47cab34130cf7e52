/* core/resize.c against Pillow 9.4 (tests/fixtures/resize.npz, tools/make_resize_fixture.py):
 * 8-bit BILINEAR and NEAREST bit for bit, float BILINEAR to float rounding, over shrinking by
 * 2, 3 and odd factors, enlarging, one-axis and no-op resizes and a non-square frame; then
 * core/frame.c: a whole frame is resized to the model's recorded frame width, segmented and its
 * labels brought back, exactly as the same steps composed by hand; predict --frame gives its
 * labels, also on frames whose resized size the model's multiples do not divide (padded); the
 * frame width survives a save and load, and a file without one reads as 128. */
#include "marsseg_npz.h"
#include "marsseg_predict.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const cases[] = {"down2", "down_odd", "down3", "up", "width_only", "height_only", "same", "aspect"};

static int shape2(ms_npz *z, const char *key, int *h, int *w) {
    ms_npy_info info;
    if (ms_npz_info(z, key, &info) != MS_OK || info.ndim != 2) return 0;
    *h = (int)info.shape[0];
    *w = (int)info.shape[1];
    return 1;
}

static void one_case(ms_npz *z, const char *name) {
    char key[64];
    int H = 0, W = 0, h = 0, w = 0;
    snprintf(key, sizeof key, "src_%s", name);
    CHECK(shape2(z, key, &H, &W), "%s: source", name);
    snprintf(key, sizeof key, "bilinear_%s", name);
    CHECK(shape2(z, key, &h, &w), "%s: expected", name);
    if (!H || !h) return;
    const size_t n = (size_t)H * W, m = (size_t)h * w;
    uint8_t *src = malloc(n), *lsrc = malloc(n), *want = malloc(m), *got = malloc(m);
    float *fsrc = malloc(sizeof(float) * n), *fwant = malloc(sizeof(float) * m), *fgot = malloc(sizeof(float) * m);
    snprintf(key, sizeof key, "src_%s", name);
    CHECK_OK(ms_npz_read_u8(z, key, src, n));
    for (size_t i = 0; i < n; i++) fsrc[i] = (float)src[i] / 255.0f, lsrc[i] = (uint8_t)(src[i] / 52);

    snprintf(key, sizeof key, "bilinear_%s", name);
    CHECK_OK(ms_npz_read_u8(z, key, want, m));
    CHECK_OK(ms_resize_bilinear_u8(src, H, W, got, h, w));
    size_t diff = 0;
    for (size_t i = 0; i < m; i++) diff += got[i] != want[i];
    CHECK(diff == 0, "%s: 8-bit bilinear %dx%d -> %dx%d: %zu of %zu pixels differ from Pillow", name, W, H, w, h, diff, m);

    snprintf(key, sizeof key, "fbilinear_%s", name);
    CHECK_OK(ms_npz_read_f32(z, key, fwant, m));
    CHECK_OK(ms_resize_bilinear_f32(fsrc, H, W, fgot, h, w));
    double worst = 0;
    for (size_t i = 0; i < m; i++) worst = fmax(worst, fabs((double)fgot[i] - fwant[i]));
    CHECK(worst <= 1e-6, "%s: float bilinear: %g from Pillow's", name, worst);

    snprintf(key, sizeof key, "nearest_%s", name);
    CHECK_OK(ms_npz_read_u8(z, key, want, m));
    CHECK_OK(ms_resize_nearest_u8(lsrc, H, W, got, h, w));
    diff = 0;
    for (size_t i = 0; i < m; i++) diff += got[i] != want[i];
    CHECK(diff == 0, "%s: nearest: %zu of %zu pixels differ from Pillow", name, diff, m);
    printf("%-12s %3dx%-3d -> %3dx%-3d bilinear, F (max %.1e), nearest as Pillow\n", name, W, H, w, h, worst);
    free(src), free(lsrc), free(want), free(got), free(fsrc), free(fwant), free(fgot);
}

static void bad_sizes(void) {
    uint8_t a[4] = {0}, b[4];
    CHECK(ms_resize_bilinear_u8(a, 0, 2, b, 2, 2) == MS_ERR_ARG, "empty source refused");
    CHECK(ms_resize_nearest_u8(a, 2, 2, b, 2, -1) == MS_ERR_ARG, "negative size refused");
    CHECK(ms_resize_bilinear_u8(a, 2, 2, b, 1 << 15, 1 << 14) == MS_ERR_ARG, "2^29 pixels refused");
}

/* a 160x160 frame with model.frame 80: segmented at 80x80, labels back at 160x160 */
/* predict --frame's answers for n frames of h x w against segment --frame on each alone: how many
 * labels agree, and (in *dc) the largest confidence gap. one: room for a frame's labels. */
static int frames_as_segment(const ms_model *m, const uint8_t *imgs, int n, int h, int w, const ms_predictions *pr,
                             uint8_t *one, double *dc) {
    int same = 0;
    for (int i = 0; i < n && pr->labels; i++) {
        ms_tile_score sc;
        CHECK_OK(ms_model_segment_frame(m, imgs + (size_t)i * h * w, h, w, 0, one, NULL, &sc));
        for (int p = 0; p < h * w; p++) same += one[p] == pr->labels[(size_t)i * h * w + p];
        *dc = fmax(*dc, fabs(sc.confidence - pr->confidence[i]));
    }
    return same;
}

static void whole_frame(ms_npz *z) {
    enum { H = 160, W = 160, h = 80, w = 80 };
    const ms_model_config mc = {2, 4, MS_NUM_CLASSES, 0.0f, 80, 0};
    ms_model *m = NULL, *back = NULL, *old = NULL;
    CHECK_OK(ms_model_create(&m, &mc, 5));
    if (!m) return;
    CHECK_OK(ms_model_freeze(m));
    int fh, fw;
    ms_frame_size(m, H, W, &fh, &fw);
    CHECK(fh == h && fw == w, "frame size %dx%d, wanted %dx%d", fw, fh, w, h);
    ms_frame_size(m, 120, 160, &fh, &fw);
    CHECK(fh == 60 && fw == 80, "a 160x120 frame keeps its aspect: %dx%d", fw, fh);
    static uint8_t src[H * W], small[h * w], lab_small[h * w], want[H * W], got[H * W];
    static float ent_small[h * w], ent_want[H * W], ent_got[H * W];
    CHECK_OK(ms_npz_read_u8(z, "src_down2", src, sizeof src));
    ms_tile_score s1, s2;
    CHECK_OK(ms_resize_bilinear_u8(src, H, W, small, h, w));
    CHECK_OK(ms_model_segment_ex(m, small, h, w, 0, lab_small, ent_small, &s1));
    CHECK_OK(ms_resize_nearest_u8(lab_small, h, w, want, H, W));
    CHECK_OK(ms_resize_bilinear_f32(ent_small, h, w, ent_want, H, W));
    CHECK_OK(ms_model_segment_frame(m, src, H, W, 0, got, ent_got, &s2));
    CHECK(memcmp(got, want, sizeof got) == 0, "frame labels = resize, segment, resize back");
    double worst = 0;
    for (int i = 0; i < H * W; i++) worst = fmax(worst, fabs((double)ent_got[i] - fminf(fmaxf(ent_want[i], 0), 1)));
    CHECK(worst == 0, "frame entropy = the resized entropy map: %g", worst);
    CHECK(s1.confidence == s2.confidence && s1.entropy == s2.entropy, "the score is the resized frame's");
    CHECK(ms_model_segment_frame(m, src, 0, W, 0, got, NULL, NULL) == MS_ERR_SHAPE, "empty frame refused");

    /* predict --frame: three frames in one batch, each as ms_model_segment_frame segments it alone
     * (labels; the tiles' scores within float rounding of a batch of 3 against 1), the probability
     * maps back at the frames' size */
    {
        enum { N = 3 };
        static uint8_t imgs[N * H * W], one[H * W];
        for (int i = 0; i < N; i++)
            for (int p = 0; p < H * W; p++) imgs[i * H * W + p] = (uint8_t)(src[p] + 40 * i);
        ms_dataset ds = {N, H, W, imgs, NULL, "0..255"};
        ms_predictions pr;
        char npz[] = "/tmp/ms_frame_probs_XXXXXX";
        const int fd = mkstemp(npz);
        if (fd >= 0) close(fd);
        const ms_predict_opts po = {.frame = 1, .npz_path = npz, .probs = 1};
        CHECK_OK(ms_predict(m, &ds, NULL, 0, &po, &pr));
        double dc = 0;
        const int same = frames_as_segment(m, imgs, N, H, W, &pr, one, &dc);
        CHECK(pr.labels && pr.h == H && pr.w == W && same >= N * H * W * 999 / 1000 && dc < 1e-5,
              "predict --frame: %d of %d labels as segment --frame's, confidence %g apart", same, N * H * W, dc);
        ms_predictions_free(&pr);
        /* the probabilities, resized back: (N,5,H,W) float16 whose classes still sum to 1 */
        ms_npz *pz = NULL;
        ms_npy_info info;
        CHECK_OK(ms_npz_open(&pz, npz));
        if (pz && ms_npz_info(pz, "probs", &info) == MS_OK) {
            CHECK(info.ndim == 4 && info.shape[0] == N && info.shape[1] == MS_NUM_CLASSES && info.shape[2] == H && info.shape[3] == W,
                  "probs shape at the frames' size");
            float *pp = malloc(sizeof(float) * N * MS_NUM_CLASSES * H * W);
            CHECK_OK(ms_npz_read_f32(pz, "probs", pp, (size_t)N * MS_NUM_CLASSES * H * W));
            double worst = 0;
            for (int i = 0; i < N; i++)
                for (int p = 0; p < H * W; p++) {
                    double sum = 0;
                    for (int k = 0; k < MS_NUM_CLASSES; k++) sum += pp[((size_t)i * MS_NUM_CLASSES + k) * H * W + p];
                    worst = fmax(worst, fabs(sum - 1));
                }
            CHECK(worst < 3e-3, "resized probabilities sum to 1 within float16's rounding: %g", worst);
            free(pp);
        } else CHECK(0, "no probs in %s", npz);
        ms_npz_close(pz);
        unlink(npz);
    }

    /* predict --frame on frames of any size: 70x150 (HxW; not multiples of the model's 4) is
     * segmented at 80x37, padded to 80x40 as ms_model_segment_ex pads; labels and scores as
     * segment --frame's */
    {
        enum { N = 2, FH = 70, FW = 150 };
        static uint8_t imgs[N * FH * FW], one[FH * FW];
        for (int i = 0; i < N; i++)
            for (int y = 0; y < FH; y++)
                for (int x = 0; x < FW; x++) imgs[(i * FH + y) * FW + x] = src[(y + 40 * i) * W + x + 5 * i];
        ms_dataset ds = {N, FH, FW, imgs, NULL, "0..255"};
        ms_predictions pr;
        const ms_predict_opts po = {.frame = 1};
        CHECK_OK(ms_predict(m, &ds, NULL, 0, &po, &pr));
        double dc = 0;
        const int same = frames_as_segment(m, imgs, N, FH, FW, &pr, one, &dc);
        CHECK(pr.labels && pr.h == FH && pr.w == FW && same == N * FH * FW && dc < 1e-5,
              "predict --frame, 150x70 frames: %d of %d labels as segment --frame's, confidence %g apart", same, N * FH * FW, dc);
        ms_predictions_free(&pr);
        ds.h = 69; /* without frame, tiles must still be multiples */
        CHECK(ms_predict(m, &ds, NULL, 0, &(ms_predict_opts){0}, &pr) == MS_ERR_SHAPE, "tiles of 150x69 refused without frame");
    }

    /* model.frame in the weights file; an older file (no "frame") reads as 128 */
    char path[] = "/tmp/ms_resize_XXXXXX";
    const int fd = mkstemp(path);
    CHECK(fd >= 0, "temp file");
    if (fd >= 0) close(fd);
    CHECK_OK(ms_model_save(m, path, NULL));
    CHECK_OK(ms_model_load(&back, path));
    CHECK(back && ms_model_get_config(back)->frame == 80, "frame 80 saved and loaded");
    const ms_model_config plain = {2, 4, MS_NUM_CLASSES, 0.0f, 0, 0};
    ms_model_free(m);
    m = NULL;
    CHECK_OK(ms_model_create(&m, &plain, 5));
    CHECK_OK(ms_model_save(m, path, NULL));
    CHECK_OK(ms_model_load(&old, path));
    CHECK(old && ms_model_get_config(old)->frame == MS_DEFAULT_FRAME, "no frame given: 128 recorded");
    unlink(path);
    ms_model_free(m);
    ms_model_free(back);
    ms_model_free(old);
}

int main(void) {
    ms_npz *z = NULL;
    CHECK_OK(ms_npz_open(&z, "tests/fixtures/resize.npz"));
    if (!z) return TEST_END();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) one_case(z, cases[i]);
    bad_sizes();
    whole_frame(z);
    ms_npz_close(z);
    return TEST_END();
}
