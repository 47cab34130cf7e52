/* The preprocessing of a loaded dataset (core/data_prep.c) on hand-made sets: duplicate-mask
 * groups and their removal (order kept, images moving with masks), class pixel counts and the
 * inverse-frequency weights, the grouped train/validation split and the shuffle, oversampling
 * of the tiles holding a class. */
#include "data.h"
#include "marsseg.h"
#include "rng.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ hand-made datasets */

static ms_dataset make_ds(int n, int h, int w) {
    ms_dataset ds = {.n = n, .h = h, .w = w};
    ds.img = calloc((size_t)n * h * w, 1);
    ds.mask = calloc((size_t)n * h * w, 1);
    snprintf(ds.img_range, sizeof ds.img_range, "0..255");
    return ds;
}

static void test_dedup(void) {
    const int h = 8, w = 16, hw = h * w, n = 14;
    ms_dataset ds = make_ds(n, h, w);
    ms_rng rng;
    ms_rng_seed(&rng, 99);
    const int copies[4] = {2, 5, 9, 13};
    uint8_t planted[8 * 16];
    for (int p = 0; p < hw; p++) planted[p] = (uint8_t)ms_rng_below(&rng, 5);
    for (int i = 0; i < n; i++) {
        int is_copy = i == 2 || i == 5 || i == 9 || i == 13;
        for (int p = 0; p < hw; p++) {
            ds.mask[i * hw + p] = is_copy ? planted[p] : (uint8_t)ms_rng_below(&rng, 5);
            ds.img[i * hw + p] = (uint8_t)i; /* identifies the sample after compaction */
        }
    }
    /* a near-copy: one pixel different must not join the group */
    memcpy(ds.mask + 7 * hw, planted, hw);
    ds.mask[7 * hw + 100] = (uint8_t)((planted[100] + 1) % 5);

    ms_mask_group *g = NULL;
    int ng = -1;
    CHECK_OK(ms_duplicate_mask_groups(&ds, 2, &g, &ng));
    CHECK(ng == 1 && g && g[0].first == copies[0] && g[0].count == 4, "groups: %d, first %d count %d", ng,
          g ? g[0].first : -1, g ? g[0].count : -1);
    free(g);
    CHECK_OK(ms_duplicate_mask_groups(&ds, 1, &g, &ng));
    CHECK(ng == 11 && g && g[0].count == 4 && g[1].count == 1 && g[1].first == 0 && g[10].first == 12,
          "min_count 1: %d groups", ng);
    free(g);
    CHECK_OK(ms_duplicate_mask_groups(&ds, 5, &g, &ng));
    CHECK(ng == 0 && g == NULL, "none with 5");

    int dropped = -1;
    CHECK_OK(ms_dedup_masks(&ds, 4, &dropped, NULL));
    CHECK(dropped == 0 && ds.n == n, "k=4 keeps all (dropped %d)", dropped);
    int kept[14];
    CHECK_OK(ms_dedup_masks(&ds, 2, &dropped, kept));
    CHECK(dropped == 4 && ds.n == 10, "k=2 drops the 4 copies (dropped %d, n %d)", dropped, ds.n);
    CHECK(kept[0] == 0 && kept[1] == 1 && kept[2] == 3 && kept[4] == 6 && kept[6] == 8 && kept[9] == 12,
          "kept: which loaded sample each remaining one was");
    int j = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        if (i == 2 || i == 5 || i == 9 || i == 13) continue;
        for (int p = 0; p < hw; p++) bad += ds.img[j * hw + p] != i;
        j++;
    }
    CHECK(bad == 0 && j == 10, "order preserved, images moved with masks");
    CHECK(memcmp(ds.mask + 5 * hw, planted, hw) != 0 && ds.img[5 * hw] == 7, "near-copy kept at its place");
    CHECK(ms_dedup_masks(&ds, 0, &dropped, NULL) == MS_ERR_ARG, "k=0 refused");
    ms_dataset_free(&ds);

    /* two groups of different sizes, ordered by count */
    ds = make_ds(9, 2, 3);
    const uint8_t lab[9] = {1, 2, 1, 3, 2, 1, 4, 2, 1}; /* mask i filled with lab[i] */
    for (int i = 0; i < 9; i++) memset(ds.mask + i * 6, lab[i], 6);
    CHECK_OK(ms_duplicate_mask_groups(&ds, 2, &g, &ng));
    CHECK(ng == 2 && g[0].first == 0 && g[0].count == 4 && g[1].first == 1 && g[1].count == 3, "two groups");
    free(g);
    CHECK_OK(ms_dedup_masks(&ds, 3, &dropped, NULL));
    CHECK(dropped == 4 && ds.n == 5, "drop the group of 4 only");
    ms_dataset_free(&ds);

    ms_dataset nomask = {.n = 1, .h = 1, .w = 1};
    CHECK(ms_dedup_masks(&nomask, 2, &dropped, NULL) == MS_ERR_ARG, "no masks");
}

/* Frames: tile 2f on top of tile 2f+1, images and masks alike; skipped frames and an odd last
 * tile left out. */
static void test_frames(void) {
    const int h = 2, w = 3, hw = h * w;
    ms_dataset ds = make_ds(7, h, w), fr;
    for (int i = 0; i < 7; i++)
        for (int p = 0; p < hw; p++) {
            ds.img[i * hw + p] = (uint8_t)(10 * i + p);
            ds.mask[i * hw + p] = (uint8_t)((i + p) % 5);
        }
    const uint8_t skip[3] = {0, 1, 0};
    CHECK_OK(ms_join_frames(&ds, skip, &fr));
    CHECK(fr.n == 2 && fr.h == 2 * h && fr.w == w && strcmp(fr.img_range, "0..255") == 0, "frames: %d of %dx%d", fr.n,
          fr.h, fr.w);
    const int src[2] = {0, 2}; /* frames kept: 0 and 2 */
    int bad = 0;
    for (int k = 0; k < 2; k++)
        for (int half = 0; half < 2; half++)
            for (int p = 0; p < hw; p++) {
                const int t = 2 * src[k] + half;
                bad += fr.img[(k * 2 + half) * hw + p] != 10 * t + p || fr.mask[(k * 2 + half) * hw + p] != (t + p) % 5;
            }
    CHECK(bad == 0, "frame f = tile 2f above tile 2f+1 (%d wrong pixels)", bad);
    ms_dataset_free(&fr);
    CHECK_OK(ms_join_frames(&ds, NULL, &fr));
    CHECK(fr.n == 3 && fr.img[2 * 2 * hw] == 40 && fr.img[2 * 2 * hw + hw] == 50, "no skip: 3 frames, tile 6 alone left out");
    ms_dataset_free(&fr);
    ms_dataset nomask = {.n = 2, .h = 1, .w = 1};
    CHECK(ms_join_frames(&nomask, NULL, &fr) == MS_ERR_ARG, "an unlabelled set refused");
    ms_dataset_free(&ds);
}

/* Dynamic re-weighting: weights scaled by (1 - IoU) over its mean, clamped to [1/4, 4]; classes
 * without a weight or an IoU keep theirs. */
static void test_reweight(void) {
    const float base[MS_NUM_CLASSES] = {0.5f, 1.0f, 1.0f, 1.0f, 2.0f};
    const double iou[MS_NUM_CLASSES] = {0.9, 0.8, 0.6, NAN, 0.2};
    float w[MS_NUM_CLASSES];
    ms_reweight(base, iou, 1.0f, w); /* 1 - IoU: .1 .2 .4 - .8, mean .375 */
    const float want[MS_NUM_CLASSES] = {0.5f * 0.1f / 0.375f, 0.2f / 0.375f, 0.4f / 0.375f, 1.0f, 2.0f * 0.8f / 0.375f};
    int bad = 0;
    for (int c = 0; c < MS_NUM_CLASSES; c++) bad += fabsf(w[c] - want[c]) > 1e-5f;
    CHECK(bad == 0, "reweight: %g %g %g %g %g", w[0], w[1], w[2], w[3], w[4]);
    ms_reweight(base, iou, 2.0f, w);
    CHECK(fabsf(w[0] - 0.5f * 0.25f) < 1e-6f && fabsf(w[4] - 2.0f * 4.0f) < 1e-5f, "clamped to [1/4, 4]: %g %g", w[0], w[4]);
    const float zero_bg[MS_NUM_CLASSES] = {0.0f, 1.0f, 1.0f, 1.0f, 1.0f};
    const double perfect[MS_NUM_CLASSES] = {0.1, 1.0, 1.0, 1.0, 1.0};
    ms_reweight(zero_bg, perfect, 1.0f, w);
    CHECK(w[0] == 0.0f && w[1] == 1.0f && w[4] == 1.0f, "nothing to re-weigh: base kept");
}

static void test_counts_weights(void) {
    ms_dataset ds = make_ds(3, 2, 5);
    const uint8_t m[30] = {0, 0, 0, 0, 1, 1, 2, 2, 2, 3, /* sample 0 */
                           0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* sample 1 */
                           4, 4, 1, 0, 0, 0, 0, 0, 0, 3};
    memcpy(ds.mask, m, 30);
    int64_t c[MS_NUM_CLASSES];
    ms_class_pixel_counts(&ds, NULL, 0, c);
    CHECK(c[0] == 20 && c[1] == 3 && c[2] == 3 && c[3] == 2 && c[4] == 2, "all: %lld %lld %lld %lld %lld",
          (long long)c[0], (long long)c[1], (long long)c[2], (long long)c[3], (long long)c[4]);
    const int idx[] = {2, 2, 1};
    ms_class_pixel_counts(&ds, idx, 3, c);
    CHECK(c[0] == 22 && c[1] == 2 && c[2] == 0 && c[3] == 2 && c[4] == 4, "subset (with a repeat)");
    ms_dataset_free(&ds);

    /* weights: present foreground classes average 1, proportional to 1/count, absent -> 0 */
    const int64_t k1[MS_NUM_CLASSES] = {100, 10, 20, 40, 0};
    float wt[MS_NUM_CLASSES];
    ms_class_weights_from_counts(k1, 1.0f, 0.25f, wt);
    /* 1/10 : 1/20 : 1/40 = 4 : 2 : 1, mean 7/3 -> 12/7, 6/7, 3/7 */
    CHECK(fabsf(wt[1] - 12.0f / 7) < 1e-6f && fabsf(wt[2] - 6.0f / 7) < 1e-6f && fabsf(wt[3] - 3.0f / 7) < 1e-6f &&
              wt[4] == 0.0f && wt[0] == 0.25f,
          "weights %g %g %g %g %g", wt[0], wt[1], wt[2], wt[3], wt[4]);
    const int64_t k2[MS_NUM_CLASSES] = {5, 7, 7, 7, 7};
    ms_class_weights_from_counts(k2, 1.0f, 0.0f, wt);
    CHECK(wt[0] == 0.0f && wt[1] == 1.0f && wt[2] == 1.0f && wt[3] == 1.0f && wt[4] == 1.0f, "equal counts -> 1");
    const int64_t k3[MS_NUM_CLASSES] = {5, 0, 0, 0, 0};
    ms_class_weights_from_counts(k3, 1.0f, 1.0f, wt);
    CHECK(wt[0] == 1.0f && wt[1] == 0 && wt[2] == 0 && wt[3] == 0 && wt[4] == 0, "no foreground -> 0");
    /* power 0.5 (inverse square root) and background by the same rule:
     * counts 100, 25, 100, 400 (fg) -> 1/5 : 1/10 : 1/20 = 4:2:1 (mean 7/3 -> 12/7, 6/7, 3/7),
     * background 100 -> 1/10 -> 6/7 */
    const int64_t k4[MS_NUM_CLASSES] = {100, 25, 100, 400, 0};
    ms_class_weights_from_counts(k4, 0.5f, -1.0f, wt);
    CHECK(fabsf(wt[1] - 12.0f / 7) < 1e-6f && fabsf(wt[2] - 6.0f / 7) < 1e-6f && fabsf(wt[3] - 3.0f / 7) < 1e-6f &&
              wt[4] == 0.0f && fabsf(wt[0] - 6.0f / 7) < 1e-6f,
          "power 0.5 weights %g %g %g %g %g", wt[0], wt[1], wt[2], wt[3], wt[4]);
}

static void test_split(void) {
    int *tr = NULL, *va = NULL, nt = 0, nv = 0;
    const int n = 101; /* 51 groups of 2, the last one a single tile */
    CHECK_OK(ms_split(n, 0.2f, 2, 7, &tr, &nt, &va, &nv));
    CHECK(nt + nv == n, "sizes %d + %d", nt, nv);
    CHECK(nv == 20 || nv == 19, "round(0.2*51) = 10 groups -> 19 or 20 tiles, got %d", nv);
    char *where = calloc(n, 1);
    int sorted = 1;
    for (int i = 0; i < nt; i++) {
        where[tr[i]] |= 1;
        if (i && tr[i] <= tr[i - 1]) sorted = 0;
    }
    for (int i = 0; i < nv; i++) {
        where[va[i]] |= 2;
        if (i && va[i] <= va[i - 1]) sorted = 0;
    }
    int straddle = 0, missing = 0;
    for (int i = 0; i < n; i++) missing += where[i] != 1 && where[i] != 2;
    for (int i = 0; i + 1 < n; i += 2) straddle += where[i] != where[i + 1];
    CHECK(sorted && missing == 0 && straddle == 0, "sorted %d, missing %d, straddling %d", sorted, missing, straddle);
    /* same seed -> same split; another seed -> another */
    int *tr2, *va2, nt2, nv2;
    CHECK_OK(ms_split(n, 0.2f, 2, 7, &tr2, &nt2, &va2, &nv2));
    CHECK(nt2 == nt && nv2 == nv && memcmp(va2, va, nv * sizeof *va) == 0, "deterministic");
    free(tr2);
    free(va2);
    CHECK_OK(ms_split(n, 0.2f, 2, 8, &tr2, &nt2, &va2, &nv2));
    CHECK(nv2 != nv || memcmp(va2, va, nv * sizeof *va) != 0, "another seed differs");
    free(tr2);
    free(va2);
    free(tr);
    free(va);
    free(where);

    /* group 1, the edges of val_frac */
    CHECK_OK(ms_split(10, 0.25f, 1, 1, &tr, &nt, &va, &nv));
    CHECK(nt == 7 && nv == 3, "round(2.5) = 3 -> %d/%d", nt, nv);
    free(tr);
    free(va);
    CHECK_OK(ms_split(10, 0.0f, 3, 1, &tr, &nt, &va, &nv));
    CHECK(nt == 10 && nv == 0 && tr && va, "val_frac 0");
    free(tr);
    free(va);
    CHECK_OK(ms_split(10, 1.0f, 3, 1, &tr, &nt, &va, &nv));
    CHECK(nt == 0 && nv == 10 && tr && va, "val_frac 1");
    free(tr);
    free(va);
    CHECK(ms_split(10, 1.5f, 1, 1, &tr, &nt, &va, &nv) == MS_ERR_ARG, "val_frac 1.5");
    CHECK(ms_split(10, NAN, 1, 1, &tr, &nt, &va, &nv) == MS_ERR_ARG, "val_frac NaN");
    CHECK(ms_split(10, 0.5f, 0, 1, &tr, &nt, &va, &nv) == MS_ERR_ARG, "group 0");
    CHECK(ms_split(0, 0.5f, 1, 1, &tr, &nt, &va, &nv) == MS_ERR_ARG, "n 0");

    /* shuffle: a permutation, reproducible */
    int a[50], b[50];
    for (int i = 0; i < 50; i++) a[i] = b[i] = i;
    ms_rng r1, r2;
    ms_rng_seed(&r1, 5);
    ms_rng_seed(&r2, 5);
    ms_shuffle_int(a, 50, &r1);
    ms_shuffle_int(b, 50, &r2);
    int seen[50] = {0}, moved = 0;
    for (int i = 0; i < 50; i++) {
        seen[a[i]]++;
        moved += a[i] != i;
    }
    int perm = 1;
    for (int i = 0; i < 50; i++) perm &= seen[i] == 1;
    CHECK(perm && moved > 25 && memcmp(a, b, sizeof a) == 0, "shuffle perm %d moved %d", perm, moved);
}

static void test_oversample(void) {
    ms_dataset ds = make_ds(5, 2, 4);
    ds.mask[1 * 8 + 5] = 4;
    ds.mask[3 * 8 + 0] = 4;
    ds.mask[2 * 8 + 7] = 3;
    int all[5] = {0, 1, 2, 3, 4}, *o = NULL, no = 0;
    CHECK_OK(ms_oversample(&ds, all, 5, 4, 3, &o, &no));
    const int want[] = {0, 1, 1, 1, 2, 3, 3, 3, 4};
    CHECK(no == 9 && o && memcmp(o, want, sizeof want) == 0, "factor 3: %d", no);
    free(o);
    CHECK_OK(ms_oversample(&ds, all, 5, 4, 1, &o, &no));
    CHECK(no == 5 && memcmp(o, all, sizeof all) == 0, "factor 1 unchanged");
    free(o);
    const int sub[3] = {3, 2, 3};
    CHECK_OK(ms_oversample(&ds, sub, 3, 3, 2, &o, &no));
    const int want2[] = {3, 2, 2, 3};
    CHECK(no == 4 && memcmp(o, want2, sizeof want2) == 0, "subset, class 3");
    free(o);
    CHECK_OK(ms_oversample(&ds, all, 0, 4, 2, &o, &no));
    CHECK(no == 0 && o != NULL, "empty");
    free(o);
    const int oob[1] = {5};
    CHECK(ms_oversample(&ds, oob, 1, 4, 2, &o, &no) == MS_ERR_ARG, "index out of range");
    CHECK(ms_oversample(&ds, all, 5, 5, 2, &o, &no) == MS_ERR_ARG, "class 5");
    CHECK(ms_oversample(&ds, all, 5, 4, 0, &o, &no) == MS_ERR_ARG, "factor 0");
    ms_dataset_free(&ds);
}

int main(void) {
    test_dedup();
    test_frames();
    test_reweight();
    test_counts_weights();
    test_split();
    test_oversample();
    return TEST_END();
}
