/* Dataset loading (ms_dataset_load, core/data.c): the course fixture, every dtype path (float
 * images in 0..1 or 0..255, integer and uint8 fast paths, (N,H,W) image-only sets), bad values
 * named with their place, shapes that are neither layout, the memory limit. Also checks the
 * real 12000-tile training file when ../shared/data has it. The preprocessing is
 * test_data_prep.c, augmentation and batches test_data_augment.c. */
#include "data.h"
#include "marsseg.h"
#include "marsseg_npz.h"
#include "testutil.h"
#include "course.h"

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
    test_real_data();
    /* remove the temp files */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return TEST_END();
}
