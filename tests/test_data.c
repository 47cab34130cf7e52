/* Dataset loading (every dtype path, bad values, limits) and the preprocessing of core/data.c:
 * duplicate masks, class counts and weights, split, oversampling, augmentation, batches.
 * Also checks the real 12000-tile training file when ../shared/data has it. */
#include "data.h"
#include "marsseg.h"
#include "marsseg_npz.h"
#include "rng.h"
#include "testutil.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/ms_test_data_XXXXXX";

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* course_small.npz (tools/make_npz_fixtures.py): 4 labelled tiles + 2 test tiles */
static int course_img(int n, int y, int x) { return (n * 31 + y * 7 + x * 3) % 256; }
static int course_mask(int n, int y, int x) { return (n + y / 16 + x / 32) % 5; }
static int course_test(int n, int y, int x) { return (n * 17 + y * 5 + x) % 256; }
#define COURSE "tests/fixtures/npz/course_small.npz"

static int check_course_train(const ms_dataset *ds, const char *what) {
    int bad = 0;
    if (ds->n != 4 || ds->h != 64 || ds->w != 128 || !ds->img || !ds->mask) return -1;
    for (int n = 0; n < 4; n++)
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 128; x++) {
                size_t i = ((size_t)n * 64 + y) * 128 + x;
                bad += ds->img[i] != course_img(n, y, x) || ds->mask[i] != course_mask(n, y, x);
            }
    CHECK(bad == 0, "%s: %d pixels differ", what, bad);
    return bad;
}

static void test_course_fixture(void) {
    ms_dataset ds;
    CHECK_OK(ms_dataset_load(&ds, COURSE, "training_set", 0));
    CHECK(ds.n == 4 && ds.h == 64 && ds.w == 128 && ds.mask, "shape %dx%dx%d", ds.n, ds.h, ds.w);
    CHECK(check_course_train(&ds, "course fast path") == 0, "course");
    CHECK(strcmp(ds.img_range, "0..255") == 0, "img_range %s", ds.img_range);
    ms_dataset_free(&ds);
    CHECK(ds.img == NULL && ds.mask == NULL && ds.n == 0, "free clears");
    ms_dataset_free(&ds); /* twice is harmless */

    CHECK_OK(ms_dataset_load(&ds, COURSE, "test_set", 0));
    CHECK(ds.n == 2 && ds.h == 64 && ds.w == 128 && ds.mask == NULL, "test_set shape %dx%dx%d", ds.n, ds.h, ds.w);
    int bad = 0;
    for (int n = 0; ds.img && n < 2; n++)
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 128; x++) bad += ds.img[((size_t)n * 64 + y) * 128 + x] != course_test(n, y, x);
    CHECK(bad == 0, "test_set: %d pixels differ", bad);
    ms_dataset_free(&ds);

    /* limits: 2 bytes per labelled pixel (image + mask) must fit */
    size_t nhw = 4 * 64 * 128;
    ms_status st = ms_dataset_load(&ds, COURSE, "training_set", 2 * nhw - 1);
    CHECK(st == MS_ERR_LIMIT && ds.img == NULL, "limit -> %s", ms_strerror(st));
    char want1[32], want2[32];
    snprintf(want1, sizeof want1, "%zu", 2 * nhw);
    snprintf(want2, sizeof want2, "%zu", 2 * nhw - 1);
    CHECK(strstr(ms_last_error(), want1) && strstr(ms_last_error(), want2) && strstr(ms_last_error(), "training_set"),
          "limit detail names both sizes and the key: %s", ms_last_error());
    CHECK_OK(ms_dataset_load(&ds, COURSE, "training_set", 2 * nhw));
    CHECK(check_course_train(&ds, "course at the limit") == 0, "course at the limit");
    ms_dataset_free(&ds);
    CHECK(ms_dataset_load(&ds, COURSE, "test_set", nhw / 2 - 1) == MS_ERR_LIMIT, "test_set limit");
    CHECK_OK(ms_dataset_load(&ds, COURSE, "test_set", nhw / 2));
    ms_dataset_free(&ds);

    st = ms_dataset_load(&ds, COURSE, "nope", 0);
    CHECK(st == MS_ERR_NOTFOUND, "missing key -> %s", ms_strerror(st));
    CHECK(strstr(ms_last_error(), "nope") && strstr(ms_last_error(), "training_set") &&
              strstr(ms_last_error(), "test_set") && strstr(ms_last_error(), "course_small.npz"),
          "missing key lists the keys: %s", ms_last_error());
    st = ms_dataset_load(&ds, "tests/fixtures/npz/does_not_exist.npz", "training_set", 0);
    CHECK(st != MS_OK && ds.img == NULL, "missing file -> %s", ms_strerror(st));
    CHECK(strstr(ms_last_error(), "does_not_exist") != NULL, "detail names the file: %s", ms_last_error());
}

/* ------------------------------------------------------------------ dtype variants */

#define N 3
#define H 5
#define W 7
#define HW (H * W)

static void write_npz(const char *path, const char *key, ms_dtype dt, int ndim, const int64_t *shape,
                      const void *data) {
    ms_npz_writer *w = NULL;
    CHECK_OK(ms_npz_writer_open(&w, path));
    if (!w) return;
    ms_status st = ms_npz_writer_add(w, key, dt, ndim, shape, data);
    CHECK(st == MS_OK, "add %s: %s", key, ms_last_error());
    if (st != MS_OK) {
        ms_npz_writer_abort(w);
        return;
    }
    CHECK_OK(ms_npz_writer_commit(w));
}

static const int64_t shape4[4] = {N, 2, H, W}, shape3[3] = {N, H, W};

/* reference pattern: image v(n,p) in 0..255, mask m(n,p) in 0..4 */
static int ref_img(int n, int p) { return (n * 53 + p * 11) % 256; }
static int ref_mask(int n, int p) { return (n + p) % 5; }

static int compare_ref(const ms_dataset *ds, int labelled, const char *what) {
    if (ds->n != N || ds->h != H || ds->w != W || !ds->img || (labelled && !ds->mask) || (!labelled && ds->mask)) {
        CHECK(0, "%s: got %dx%dx%d mask=%p", what, ds->n, ds->h, ds->w, (void *)ds->mask);
        return 1;
    }
    int bad = 0;
    for (int n = 0; n < N; n++)
        for (int p = 0; p < HW; p++) {
            bad += ds->img[n * HW + p] != ref_img(n, p);
            if (labelled) bad += ds->mask[n * HW + p] != ref_mask(n, p);
        }
    CHECK(bad == 0, "%s: %d values differ", what, bad);
    return bad;
}

static void test_dtypes(void) {
    double f64[N * 2 * HW];
    float f32[N * 2 * HW];
    int16_t i16[N * 2 * HW];
    int32_t i32[N * HW];
    uint8_t u8[N * 2 * HW];
    for (int n = 0; n < N; n++)
        for (int p = 0; p < HW; p++) {
            int ii = (n * 2) * HW + p, im = (n * 2 + 1) * HW + p;
            /* float64 0..255 with fractions that must round: v-0.4 and v+0.49 round to v */
            f64[ii] = ref_img(n, p) + (p % 2 ? -0.4 : 0.49);
            if (ref_img(n, p) == 0) f64[ii] = 0.3;
            if (ref_img(n, p) == 255) f64[ii] = 254.5; /* ties round up */
            f64[im] = ref_mask(n, p);
            f32[ii] = (float)ref_img(n, p) / 255.0f; /* 0..1 floats */
            f32[im] = (float)ref_mask(n, p);
            i16[ii] = (int16_t)ref_img(n, p);
            i16[im] = (int16_t)ref_mask(n, p);
            i32[n * HW + p] = ref_img(n, p);
            u8[ii] = (uint8_t)ref_img(n, p);
            u8[im] = (uint8_t)ref_mask(n, p);
        }
    ms_dataset ds;
    write_npz(tmp_path("f64.npz"), "training_set", MS_DT_F8, 4, shape4, f64);
    CHECK_OK(ms_dataset_load(&ds, tmp_path("f64.npz"), "training_set", 0));
    compare_ref(&ds, 1, "float64 0..255");
    CHECK(strcmp(ds.img_range, "0..255") == 0, "f64 range %s", ds.img_range);
    ms_dataset_free(&ds);

    write_npz(tmp_path("f32.npz"), "training_set", MS_DT_F4, 4, shape4, f32);
    CHECK_OK(ms_dataset_load(&ds, tmp_path("f32.npz"), "training_set", 0));
    compare_ref(&ds, 1, "float32 0..1");
    CHECK(strcmp(ds.img_range, "0..1") == 0, "f32 range %s", ds.img_range);
    ms_dataset_free(&ds);

    write_npz(tmp_path("i16.npz"), "data", MS_DT_I2, 4, shape4, i16);
    CHECK_OK(ms_dataset_load(&ds, tmp_path("i16.npz"), "data", 0));
    compare_ref(&ds, 1, "int16");
    ms_dataset_free(&ds);

    write_npz(tmp_path("i32img.npz"), "test_set", MS_DT_I4, 3, shape3, i32);
    CHECK_OK(ms_dataset_load(&ds, tmp_path("i32img.npz"), "test_set", 0));
    compare_ref(&ds, 0, "int32 images only");
    ms_dataset_free(&ds);

    write_npz(tmp_path("u8.npz"), "training_set", MS_DT_U1, 4, shape4, u8);
    CHECK_OK(ms_dataset_load(&ds, tmp_path("u8.npz"), "training_set", 0));
    compare_ref(&ds, 1, "uint8");
    ms_dataset_free(&ds);
    /* more tiles than one de-interleave step (64), an odd count */
    {
        const int nb = 131;
        uint8_t *big = malloc((size_t)nb * 2 * HW);
        for (int n = 0; n < nb; n++)
            for (int p = 0; p < HW; p++) {
                big[(n * 2) * HW + p] = (uint8_t)ref_img(n, p);
                big[(n * 2 + 1) * HW + p] = (uint8_t)ref_mask(n, p);
            }
        const int64_t sb[4] = {nb, 2, H, W};
        write_npz(tmp_path("u8big.npz"), "training_set", MS_DT_U1, 4, sb, big);
        CHECK_OK(ms_dataset_load(&ds, tmp_path("u8big.npz"), "training_set", 0));
        int bad = ds.n != nb;
        for (int n = 0; !bad && n < nb; n++)
            for (int p = 0; p < HW; p++)
                bad += ds.img[n * HW + p] != ref_img(n, p) || ds.mask[n * HW + p] != ref_mask(n, p);
        CHECK(bad == 0, "131 uint8 tiles: %d wrong", bad);
        ms_dataset_free(&ds);
        free(big);
    }

    /* float images that start with values <= 1 and turn out to be 0..255 later: the first
     * values are re-read as round(x), not x*255 */
    double late[N * HW];
    for (int i = 0; i < N * HW; i++) late[i] = 100.0 + i % 50;
    const double head[] = {0.0, 0.2, 0.49, 0.5, 0.51, 0.999, 1.0, 0.0039};
    const int head_want[] = {0, 0, 0, 1, 1, 1, 1, 0};
    for (int i = 0; i < 8; i++) late[i] = head[i];
    write_npz(tmp_path("late.npz"), "test_set", MS_DT_F8, 3, shape3, late);
    CHECK_OK(ms_dataset_load(&ds, tmp_path("late.npz"), "test_set", 0));
    CHECK(strcmp(ds.img_range, "0..255") == 0, "late range %s", ds.img_range);
    for (int i = 0; ds.img && i < N * HW; i++) {
        int want = i < 8 ? head_want[i] : 100 + i % 50;
        CHECK(ds.img[i] == want, "late[%d] = %d, want %d", i, ds.img[i], want);
    }
    ms_dataset_free(&ds);
    /* ...and a float image entirely within 0..1 really is scaled */
    for (int i = 0; i < N * HW; i++) late[i] = (i % 3) * 0.5;
    write_npz(tmp_path("unit.npz"), "test_set", MS_DT_F8, 3, shape3, late);
    CHECK_OK(ms_dataset_load(&ds, tmp_path("unit.npz"), "test_set", 0));
    CHECK(strcmp(ds.img_range, "0..1") == 0, "unit range %s", ds.img_range);
    for (int i = 0; ds.img && i < N * HW; i++) CHECK(ds.img[i] == (i % 3) * 255 / 2 + (i % 3 == 1), "unit[%d]=%d", i, ds.img[i]);
    ms_dataset_free(&ds);

    /* bad values: each refused with a message naming the value and where it is */
    struct {
        const char *name;
        ms_dtype dt;
        int elem;      /* element index in the (N,2,H,W) array */
        double value;
        const char *want; /* substring of the detail */
    } bad[] = {
        {"mask5_u8", MS_DT_U1, (1 * 2 + 1) * HW + 2 * W + 3, 5, "mask value 5 at sample 1, pixel (y=2, x=3)"},
        {"mask25_f64", MS_DT_F8, (2 * 2 + 1) * HW + 4, 2.5, "mask value 2.5 at sample 2, pixel (y=0, x=4)"},
        {"maskneg_i16", MS_DT_I2, 1 * HW, -1, "mask value -1 at sample 0"},
        {"mask5_f32", MS_DT_F4, 1 * HW + 9, 5, "mask value 5 at sample 0, pixel (y=1, x=2)"},
        {"masknan_f64", MS_DT_F8, 1 * HW + 1, NAN, "mask value nan"},
        {"img256_f64", MS_DT_F8, 2 * HW + 6, 256, "image value 256 at sample 1"},
        {"imgneg_i16", MS_DT_I2, 5, -3, "image value -3 at sample 0, pixel (y=0, x=5)"},
        {"imginf_f32", MS_DT_F4, 0, INFINITY, "image value inf"},
        {"img300_i16", MS_DT_I2, 2 * 2 * HW + HW - 1, 300, "image value 300 at sample 2, pixel (y=4, x=6)"},
    };
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        int e = bad[b].elem;
        char file[64];
        snprintf(file, sizeof file, "%s.npz", bad[b].name);
        if (bad[b].dt == MS_DT_U1) {
            uint8_t a[N * 2 * HW];
            memcpy(a, u8, sizeof a);
            a[e] = (uint8_t)bad[b].value;
            write_npz(tmp_path(file), "training_set", MS_DT_U1, 4, shape4, a);
        } else if (bad[b].dt == MS_DT_F8) {
            double a[N * 2 * HW];
            for (int i = 0; i < N * 2 * HW; i++) a[i] = u8[i];
            a[e] = bad[b].value;
            write_npz(tmp_path(file), "training_set", MS_DT_F8, 4, shape4, a);
        } else if (bad[b].dt == MS_DT_F4) {
            float a[N * 2 * HW];
            for (int i = 0; i < N * 2 * HW; i++) a[i] = u8[i];
            a[e] = (float)bad[b].value;
            write_npz(tmp_path(file), "training_set", MS_DT_F4, 4, shape4, a);
        } else {
            int16_t a[N * 2 * HW];
            for (int i = 0; i < N * 2 * HW; i++) a[i] = u8[i];
            a[e] = (int16_t)bad[b].value;
            write_npz(tmp_path(file), "training_set", MS_DT_I2, 4, shape4, a);
        }
        ms_status st = ms_dataset_load(&ds, tmp_path(file), "training_set", 0);
        CHECK(st == MS_ERR_FORMAT && ds.img == NULL && ds.mask == NULL, "%s -> %s", bad[b].name, ms_strerror(st));
        CHECK(strstr(ms_last_error(), bad[b].want) && strstr(ms_last_error(), file) &&
                  strstr(ms_last_error(), "'training_set'"),
              "%s detail: %s", bad[b].name, ms_last_error());
    }
    /* a uint8 mask value far out, in a later sample, at the memory limit */
    {
        uint8_t a[N * 2 * HW];
        memcpy(a, u8, sizeof a);
        a[3 * HW] = 9;
        write_npz(tmp_path("mask9.npz"), "training_set", MS_DT_U1, 4, shape4, a);
        ms_status st = ms_dataset_load(&ds, tmp_path("mask9.npz"), "training_set", 2 * N * HW);
        CHECK(st == MS_ERR_FORMAT && strstr(ms_last_error(), "mask value 9 at sample 1"), "streamed u8 mask 9: %s",
              ms_last_error());
    }

    /* shapes that are neither layout */
    const int64_t s3ch[4] = {N, 3, H, W}, s2[2] = {N, HW}, s0[3] = {0, H, W};
    static uint8_t zeros[N * 3 * HW];
    write_npz(tmp_path("shape3ch.npz"), "x", MS_DT_U1, 4, s3ch, zeros);
    CHECK(ms_dataset_load(&ds, tmp_path("shape3ch.npz"), "x", 0) == MS_ERR_SHAPE, "(N,3,H,W)");
    CHECK(strstr(ms_last_error(), "(3,3,5,7)") != NULL, "shape detail: %s", ms_last_error());
    write_npz(tmp_path("shape2d.npz"), "x", MS_DT_U1, 2, s2, u8);
    CHECK(ms_dataset_load(&ds, tmp_path("shape2d.npz"), "x", 0) == MS_ERR_SHAPE, "2-D");
    write_npz(tmp_path("empty.npz"), "x", MS_DT_U1, 3, s0, u8);
    CHECK(ms_dataset_load(&ds, tmp_path("empty.npz"), "x", 0) == MS_ERR_SHAPE, "no samples");
    CHECK(ms_dataset_load(&ds, NULL, "x", 0) == MS_ERR_ARG, "NULL path");
}

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
    CHECK_OK(ms_dedup_masks(&ds, 4, &dropped));
    CHECK(dropped == 0 && ds.n == n, "k=4 keeps all (dropped %d)", dropped);
    CHECK_OK(ms_dedup_masks(&ds, 2, &dropped));
    CHECK(dropped == 4 && ds.n == 10, "k=2 drops the 4 copies (dropped %d, n %d)", dropped, ds.n);
    int j = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        if (i == 2 || i == 5 || i == 9 || i == 13) continue;
        for (int p = 0; p < hw; p++) bad += ds.img[j * hw + p] != i;
        j++;
    }
    CHECK(bad == 0 && j == 10, "order preserved, images moved with masks");
    CHECK(memcmp(ds.mask + 5 * hw, planted, hw) != 0 && ds.img[5 * hw] == 7, "near-copy kept at its place");
    CHECK(ms_dedup_masks(&ds, 0, &dropped) == MS_ERR_ARG, "k=0 refused");
    ms_dataset_free(&ds);

    /* two groups of different sizes, ordered by count */
    ds = make_ds(9, 2, 3);
    const uint8_t lab[9] = {1, 2, 1, 3, 2, 1, 4, 2, 1}; /* mask i filled with lab[i] */
    for (int i = 0; i < 9; i++) memset(ds.mask + i * 6, lab[i], 6);
    CHECK_OK(ms_duplicate_mask_groups(&ds, 2, &g, &ng));
    CHECK(ng == 2 && g[0].first == 0 && g[0].count == 4 && g[1].first == 1 && g[1].count == 3, "two groups");
    free(g);
    CHECK_OK(ms_dedup_masks(&ds, 3, &dropped));
    CHECK(dropped == 4 && ds.n == 5, "drop the group of 4 only");
    ms_dataset_free(&ds);

    ms_dataset nomask = {.n = 1, .h = 1, .w = 1};
    CHECK(ms_dedup_masks(&nomask, 2, &dropped) == MS_ERR_ARG, "no masks");
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

/* ------------------------------------------------------------------ the real training file */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void test_real_data(void) {
    const char *path = "../shared/data/ai4mars-train-64x128.npz";
    if (access(path, R_OK) != 0) {
        printf("test_data: %s absent, real-data check skipped\n", path);
        return;
    }
    ms_dataset ds;
    double t0 = now_s();
    ms_status st = ms_dataset_load(&ds, path, "training_set", 0);
    double t1 = now_s();
    CHECK(st == MS_OK, "load real data: %s", ms_last_error());
    if (st != MS_OK) return;
    printf("real data: %d tiles of %dx%d loaded in %.2f s\n", ds.n, ds.h, ds.w, t1 - t0);
    CHECK(ds.n == 12000 && ds.h == 64 && ds.w == 128 && ds.mask, "shape %dx%dx%d", ds.n, ds.h, ds.w);
    size_t total = (size_t)ds.n * ds.h * ds.w;
    size_t over = 0;
    for (size_t i = 0; i < total; i++) over += ds.mask[i] > 4;
    CHECK(over == 0, "%zu mask values above 4", over);
    int64_t c[MS_NUM_CLASSES];
    ms_class_pixel_counts(&ds, NULL, 0, c);
    const double want[MS_NUM_CLASSES] = {43.0, 21.2, 28.5, 6.7, 0.49};
    for (int k = 0; k < MS_NUM_CLASSES; k++) {
        double share = 100.0 * (double)c[k] / (double)total;
        printf("  %-10s %6.2f%%\n", ms_class_names[k], share);
        CHECK(fabs(share - want[k]) <= 0.5, "%s share %.2f%%, want %.2f%% +-0.5", ms_class_names[k], share, want[k]);
    }
    ms_mask_group *g = NULL;
    int ng = 0;
    CHECK_OK(ms_duplicate_mask_groups(&ds, 2, &g, &ng));
    int dup_tiles = 0;
    for (int i = 0; i < ng; i++) dup_tiles += g[i].count;
    printf("  %d groups of identical masks (%d tiles)", ng, dup_tiles);
    for (int i = 0; i < ng && i < 3; i++) printf("%s %dx from tile %d", i ? "," : ":", g[i].count, g[i].first);
    printf("\n");
    free(g);
    int *tr, *va, nt, nv;
    CHECK_OK(ms_split(ds.n, 0.1f, 2, 1, &tr, &nt, &va, &nv));
    CHECK(nv == 1200 && nt == 10800, "split 10%%: %d/%d", nt, nv);
    free(tr);
    free(va);
    ms_dataset_free(&ds);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_course_fixture();
    test_dtypes();
    test_dedup();
    test_counts_weights();
    test_split();
    test_oversample();
    test_augment();
    test_batch();
    test_real_data();
    /* remove the temp files */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return TEST_END();
}
