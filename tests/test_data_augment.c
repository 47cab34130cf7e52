/* Augmentation and batches (core/augment.c): a flip twice is the identity, each geometric result
 * is exactly one (flip, shift) of a reference with image and mask moved together, photometric
 * jitter stays one increasing map, always 5 random draws per sample, clamped huge shifts; a batch
 * holds img/255 and the masks in the given order, augmented as each sample in turn, and zero
 * masks for an unlabelled set. */
#include "data.h"
#include "marsseg.h"
#include "rng.h"
#include "testutil.h"
#include "course.h"

#include <string.h>

/* ------------------------------------------------------------------ augmentation */

#define AH 64
#define AW 128

/* the reference geometry: flip then shift by (dx,dy); image edge-replicated, mask 0-filled */
static void ref_geom(const float *img, const uint8_t *mask, int flip, int dx, int dy, float *oi, uint8_t *om) {
    for (int y = 0; y < AH; y++)
        for (int x = 0; x < AW; x++) {
            int sy = y - dy, sx = x - dx;
            int inside = sy >= 0 && sy < AH && sx >= 0 && sx < AW;
            int cy = sy < 0 ? 0 : sy >= AH ? AH - 1 : sy, cx = sx < 0 ? 0 : sx >= AW ? AW - 1 : sx;
            int fx = flip ? AW - 1 - cx : cx;
            oi[y * AW + x] = img[cy * AW + fx];
            om[y * AW + x] = inside ? mask[cy * AW + fx] : 0;
        }
}

static void make_pair(float *img, uint8_t *mask, uint64_t seed) {
    ms_rng r;
    ms_rng_seed(&r, seed);
    /* blocks of classes 1..4 (never 0, so a 0 in the output marks a vacated pixel) */
    for (int y = 0; y < AH; y++)
        for (int x = 0; x < AW; x++) {
            mask[y * AW + x] = (uint8_t)(1 + (x / 9 + y / 7 + (x * y) % 3) % 4);
            if (ms_rng_below(&r, 20) == 0) mask[y * AW + x] = (uint8_t)(1 + ms_rng_below(&r, 4));
            img[y * AW + x] = mask[y * AW + x] * 50 / 255.0f;
        }
}

static void test_augment(void) {
    static float img[AH * AW], img0[AH * AW], ri[AH * AW], img2[AH * AW];
    static uint8_t mask[AH * AW], mask0[AH * AW], rm[AH * AW], mask2[AH * AW];
    make_pair(img0, mask0, 1);

    /* hflip twice (same seed, so the same coin) = identity */
    ms_augment_cfg flip = {.hflip = 1};
    int flipped_seen = 0;
    for (uint64_t s = 0; s < 8; s++) {
        memcpy(img, img0, sizeof img);
        memcpy(mask, mask0, sizeof mask);
        ms_rng r;
        ms_rng_seed(&r, s);
        ms_augment(img, mask, AH, AW, &flip, &r);
        flipped_seen += memcmp(mask, mask0, sizeof mask) != 0;
        ms_rng_seed(&r, s);
        ms_augment(img, mask, AH, AW, &flip, &r);
        CHECK(memcmp(img, img0, sizeof img) == 0 && memcmp(mask, mask0, sizeof mask) == 0, "flip twice, seed %d",
              (int)s);
    }
    CHECK(flipped_seen > 0 && flipped_seen < 8, "the coin varies: %d of 8 flipped", flipped_seen);

    /* geometry only: the result is exactly one (flip, dx, dy) of the reference, and the image
     * still equals mask*50/255 wherever the mask was not vacated */
    ms_augment_cfg geo = {.hflip = 1, .max_shift = 6};
    int shifts_seen = 0;
    for (uint64_t s = 0; s < 12; s++) {
        memcpy(img, img0, sizeof img);
        memcpy(mask, mask0, sizeof mask);
        ms_rng r;
        ms_rng_seed(&r, 100 + s);
        ms_augment(img, mask, AH, AW, &geo, &r);
        int rel_bad = 0, vacated = 0;
        for (int i = 0; i < AH * AW; i++) {
            if (mask[i] == 0) vacated++;
            else if (img[i] != mask[i] * 50 / 255.0f) rel_bad++;
        }
        CHECK(rel_bad == 0, "seed %d: %d pixels where image and mask disagree", (int)s, rel_bad);
        int matches = 0, mdx = 0, mdy = 0;
        for (int f = 0; f <= 1; f++)
            for (int dy = -6; dy <= 6; dy++)
                for (int dx = -6; dx <= 6; dx++) {
                    ref_geom(img0, mask0, f, dx, dy, ri, rm);
                    if (memcmp(ri, img, sizeof img) == 0 && memcmp(rm, mask, sizeof mask) == 0) {
                        matches++;
                        mdx = dx;
                        mdy = dy;
                    }
                }
        CHECK(matches == 1, "seed %d: output matches %d reference transforms", (int)s, matches);
        if (matches == 1) {
            int adx = abs(mdx), ady = abs(mdy);
            CHECK(vacated == adx * AH + ady * AW - adx * ady, "vacated %d for (%d,%d)", vacated, mdx, mdy);
            shifts_seen += mdx != 0 || mdy != 0;
        }
    }
    CHECK(shifts_seen >= 8, "shifts happen: %d of 12", shifts_seen);

    /* photometric too: still one affine increasing map of the original (up to clamping), values
     * in [0,1], the same for a seed and different for another */
    ms_augment_cfg all = {.hflip = 1, .brightness = 0.2f, .contrast = 0.3f, .max_shift = 5};
    for (uint64_t s = 0; s < 10; s++) {
        memcpy(img, img0, sizeof img);
        memcpy(mask, mask0, sizeof mask);
        memcpy(img2, img0, sizeof img);
        memcpy(mask2, mask0, sizeof mask);
        ms_rng r, r2;
        ms_rng_seed(&r, 200 + s);
        ms_rng_seed(&r2, 200 + s);
        ms_augment(img, mask, AH, AW, &all, &r);
        ms_augment(img2, mask2, AH, AW, &all, &r2);
        CHECK(memcmp(img, img2, sizeof img) == 0 && memcmp(mask, mask2, sizeof mask) == 0, "deterministic");
        float val[5] = {-1, -1, -1, -1, -1};
        int incons = 0, range = 0;
        for (int i = 0; i < AH * AW; i++) {
            if (img[i] < 0 || img[i] > 1) range++;
            if (mask[i] == 0) continue;
            if (val[mask[i]] < 0) val[mask[i]] = img[i];
            else if (fabsf(val[mask[i]] - img[i]) > 1e-6f) incons++;
        }
        int mono = 1;
        for (int c = 1; c < 4; c++)
            if (val[c] >= 0 && val[c + 1] >= 0 && val[c] > val[c + 1] + 1e-6f) mono = 0;
        CHECK(incons == 0 && range == 0 && mono, "seed %d: %d inconsistent, %d out of range, monotone %d", (int)s,
              incons, range, mono);
        /* consumption is fixed: 5 draws whatever the config */
        ms_rng r3;
        ms_rng_seed(&r3, 200 + s);
        for (int k = 0; k < 5; k++) (void)ms_rng_u64(&r3);
        CHECK(memcmp(&r3, &r, sizeof r) == 0, "5 draws per sample");
        ms_rng_seed(&r3, 200 + s);
        ms_augment_cfg none = {0};
        ms_augment(img2, mask2, AH, AW, &none, &r3);
        CHECK(memcmp(&r3, &r, sizeof r) == 0, "5 draws even with nothing enabled");
    }
    memcpy(img, img0, sizeof img);
    memcpy(img2, img0, sizeof img);
    ms_rng ra, rb;
    ms_rng_seed(&ra, 1);
    ms_rng_seed(&rb, 2);
    ms_augment(img, NULL, AH, AW, &all, &ra); /* mask may be NULL */
    ms_augment(img2, NULL, AH, AW, &all, &rb);
    CHECK(memcmp(img, img2, sizeof img) != 0, "another seed, another result");

    /* contrast alone keeps the mean (up to rounding); brightness alone shifts by <= b */
    ms_augment_cfg con = {.contrast = 0.5f};
    memcpy(img, img0, sizeof img);
    ms_rng rc;
    ms_rng_seed(&rc, 3);
    ms_augment(img, NULL, AH, AW, &con, &rc);
    double m0 = 0, m1 = 0;
    for (int i = 0; i < AH * AW; i++) {
        m0 += img0[i];
        m1 += img[i];
    }
    CHECK(fabs(m0 - m1) / (AH * AW) < 1e-5, "contrast keeps the mean: %g vs %g", m0 / (AH * AW), m1 / (AH * AW));
    ms_augment_cfg bri = {.brightness = 0.1f};
    memcpy(img, img0, sizeof img);
    ms_rng_seed(&rc, 4);
    ms_augment(img, NULL, AH, AW, &bri, &rc);
    float d0 = img[0] - img0[0];
    int uniform = 1;
    for (int i = 0; i < AH * AW; i++) uniform &= fabsf((img[i] - img0[i]) - d0) < 1e-6f;
    CHECK(uniform && fabsf(d0) <= 0.1f + 1e-6f && d0 != 0, "brightness offset %g", d0);

    /* a shift larger than the tile is clamped, not a crash */
    ms_augment_cfg huge = {.max_shift = 1000};
    memcpy(img, img0, sizeof img);
    memcpy(mask, mask0, sizeof mask);
    ms_rng_seed(&rc, 5);
    ms_augment(img, mask, AH, AW, &huge, &rc);
    int nz = 0;
    for (int i = 0; i < AH * AW; i++) nz += mask[i] != 0;
    CHECK(nz >= 1, "at least one pixel survives a maximal shift");
}

static void test_batch(void) {
    ms_dataset ds;
    CHECK_OK(ms_dataset_load(&ds, COURSE, "training_set", 0));
    if (!ds.img) return;
    const int order[3] = {3, 0, 2};
    size_t hw = 64 * 128;
    float *x = malloc(3 * hw * sizeof *x), *x2 = malloc(3 * hw * sizeof *x);
    uint8_t *y = malloc(3 * hw), *y2 = malloc(3 * hw);
    ms_batch_fill(&ds, order, 3, x, y, NULL, NULL);
    int bad = 0;
    for (int k = 0; k < 3; k++)
        for (size_t p = 0; p < hw; p++) {
            int n = order[k], py = (int)(p / 128), px = (int)(p % 128);
            bad += x[k * hw + p] != (float)course_img(n, py, px) / 255.0f;
            bad += y[k * hw + p] != course_mask(n, py, px);
        }
    CHECK(bad == 0, "batch values: %d wrong", bad);

    /* with augmentation: the same as augmenting each sample in turn with one rng */
    ms_augment_cfg aug = {.hflip = 1, .brightness = 0.1f, .contrast = 0.1f, .max_shift = 4};
    ms_rng r1, r2;
    ms_rng_seed(&r1, 11);
    ms_rng_seed(&r2, 11);
    ms_batch_fill(&ds, order, 3, x, y, &aug, &r1);
    ms_batch_fill(&ds, order, 3, x2, y2, NULL, NULL);
    for (int k = 0; k < 3; k++) ms_augment(x2 + k * hw, y2 + k * hw, 64, 128, &aug, &r2);
    CHECK(memcmp(x, x2, 3 * hw * sizeof *x) == 0 && memcmp(y, y2, 3 * hw) == 0, "augmented batch");
    ms_dataset_free(&ds);

    /* an unlabelled set gives zero masks */
    CHECK_OK(ms_dataset_load(&ds, COURSE, "test_set", 0));
    memset(y, 7, 2 * hw);
    const int o2[2] = {1, 0};
    ms_batch_fill(&ds, o2, 2, x, y, NULL, NULL);
    int nz = 0;
    for (size_t p = 0; p < 2 * hw; p++) nz += y[p] != 0;
    CHECK(nz == 0 && x[0] == (float)course_test(1, 0, 0) / 255.0f, "unlabelled batch");
    ms_dataset_free(&ds);
    free(x);
    free(x2);
    free(y);
    free(y2);
}

int main(void) {
    test_augment();
    test_batch();
    return TEST_END();
}
