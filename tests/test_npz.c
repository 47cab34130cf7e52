/* Reading numpy's archives (core/npz.c over core/zip.c and core/npy.c): every fixture of
 * tests/fixtures/npz (made by tools/make_npz_fixtures.py, whose value patterns tests/npzutil.h
 * recomputes) from a file and from memory: every dtype and byte order as f64/f32/i64/u8 and
 * streamed, 0-d, 1-d and empty arrays, Fortran order, the course-shaped file, odd keys, npy
 * versions 1-3, zip64 and data descriptors, and the errors a wrong key or size gives.
 * The writer is test_npz_write.c, damaged archives test_npz_corrupt.c, npy headers test_npy.c. */
#include "marsseg_npz.h"
#include "testutil.h"
#include "npzutil.h"

#include <stdint.h>
#include <string.h>

/* Check one dtype archive (stored or deflated) read through handle z. */
static void check_dtypes(ms_npz *z, const char *label) {
    CHECK(ms_npz_count(z) == 16, "%s: %d arrays", label, ms_npz_count(z));
    for (int c = 0; c < 9; c++) {
        for (int be = 0; be < 2; be++) {
            char key[16];
            if (c < 2 && be) continue;
            snprintf(key, sizeof key, c < 2 ? "%s" : be ? "%s_be" : "%s_le", CODES[c]);
            CHECK(ms_npz_has(z, key), "%s: no %s", label, key);
            ms_npy_info info;
            CHECK_OK(ms_npz_info(z, key, &info));
            CHECK(info.dtype == CODE_T[c] && info.big_endian == be && info.ndim == 3 && info.shape[0] == 3 &&
                      info.shape[1] == 4 && info.shape[2] == 5 && info.count == 60,
                  "%s %s: info dtype %d be %d ndim %d count %lld", label, key, info.dtype, info.big_endian,
                  info.ndim, (long long)info.count);
            double d[60];
            float f[60];
            int64_t q[60];
            uint8_t u[60];
            CHECK_OK(ms_npz_read_f64(z, key, d, 60));
            CHECK_OK(ms_npz_read_f32(z, key, f, 60));
            int bad_d = 0, bad_f = 0, bad_q = 0;
            for (int i = 0; i < 60; i++) {
                if (!same_d(d[i], dval(c, i))) bad_d++;
                if (!same_d(f[i], (float)dval(c, i))) bad_f++;
            }
            CHECK(!bad_d && !bad_f, "%s %s: %d f64 / %d f32 values differ (d[2]=%g)", label, key, bad_d, bad_f, d[2]);
            if (c <= 5) {
                CHECK_OK(ms_npz_read_i64(z, key, q, 60));
                for (int i = 0; i < 60; i++) bad_q += q[i] != ival(c, i);
                CHECK(!bad_q, "%s %s: %d i64 values differ", label, key, bad_q);
            } else {
                CHECK_ERR(ms_npz_read_i64(z, key, q, 60), MS_ERR_SHAPE, label);
            }
            if (c == 0) {
                CHECK_OK(ms_npz_read_u8(z, key, u, 60));
                for (int i = 0; i < 60; i++) bad_q += u[i] != ival(c, i);
                CHECK(!bad_q, "%s u1: %d u8 values differ", label, bad_q);
            } else {
                CHECK_ERR(ms_npz_read_u8(z, key, u, 60), MS_ERR_SHAPE, label);
            }
            CHECK_ERR(ms_npz_read_f64(z, key, d, 59), MS_ERR_SHAPE, label);
            stream_acc a = {0};
            CHECK_OK(ms_npz_stream(z, key, acc_cb, &a));
            double want = 0;
            int want_nan = 0;
            for (int i = 0; i < 60; i++) {
                double v = dval(c, i);
                if (isnan(v)) want_nan++;
                else if (!isinf(v)) want += v;
            }
            CHECK(a.next == 60 && a.calls == 1 && a.nan == want_nan && a.sum == want, "%s %s: stream sum %g vs %g",
                  label, key, a.sum, want);
        }
    }
    /* a few float16 values spelled out, independently of half_ref */
    float f[60];
    CHECK_OK(ms_npz_read_f32(z, "f2_be", f, 60));
    CHECK(f[2] == 0x1p-24f && f[3] == -0x1p-24f && f[4] == 1023 * 0x1p-24f && f[5] == 0x1p-14f && f[6] == 1.0f &&
              f[8] == 65504.0f && isinf(f[10]) && f[10] > 0 && isinf(f[11]) && f[11] < 0 && isnan(f[12]) &&
              f[13] == 0.33325195f && signbit(f[1]) && f[1] == 0,
          "float16 specials wrong");
}

static void test_dtypes(void) {
    const char *files[] = {FIX "dtypes_stored.npz", FIX "dtypes_deflated.npz"};
    for (int k = 0; k < 2; k++) {
        check_file(files[k], check_dtypes);
        size_t len;
        uint8_t *b = slurp(files[k], &len);
        CHECK(b, "cannot read %s", files[k]);
        if (!b) continue;
        ms_npz *z = NULL;
        CHECK_OK(ms_npz_open_mem(&z, b, len, "mem-dtypes"));
        if (z) check_dtypes(z, "mem-dtypes");
        ms_npz_close(z);
        free(b);
    }
}

static void test_scalars_fortran(void) {
    ms_npz *z = NULL;
    ms_npy_info info;
    CHECK_OK(ms_npz_open(&z, FIX "scalars.npz"));
    if (z) {
        CHECK_OK(ms_npz_info(z, "scalar", &info));
        CHECK(info.ndim == 0 && info.count == 1 && info.dtype == MS_DT_F8, "0-d info");
        double d = 0;
        CHECK_OK(ms_npz_read_f64(z, "scalar", &d, 1));
        CHECK(d == 42.5, "scalar %g", d);
        int64_t q = 0;
        CHECK_OK(ms_npz_info(z, "one", &info));
        CHECK(info.ndim == 1 && info.shape[0] == 1 && info.dtype == MS_DT_I2, "one info");
        CHECK_OK(ms_npz_read_i64(z, "one", &q, 1));
        CHECK(q == 7, "one %lld", (long long)q);
        CHECK_OK(ms_npz_info(z, "empty", &info));
        CHECK(info.ndim == 2 && info.shape[0] == 0 && info.shape[1] == 3 && info.count == 0, "empty info");
        CHECK_OK(ms_npz_read_f32(z, "empty", NULL, 0));
        stream_acc a = {0};
        CHECK_OK(ms_npz_stream(z, "empty", acc_cb, &a));
        CHECK(a.calls == 0, "empty stream called back");
    }
    ms_npz_close(z);

    z = NULL;
    CHECK_OK(ms_npz_open(&z, FIX "fortran.npz"));
    if (z) { /* Fortran order is read as numpy.load reads it: the values come out in C order */
        CHECK_OK(ms_npz_info(z, "f", &info));
        CHECK(info.ndim == 2 && info.shape[0] == 2 && info.shape[1] == 3, "fortran info");
        double d[6];
        CHECK_OK(ms_npz_read_f64(z, "f", d, 6));
        for (int i = 0; i < 6; i++) CHECK(d[i] == i, "fortran value %d: %g", i, d[i]);
        int64_t q[6];
        CHECK_OK(ms_npz_read_i64(z, "c", q, 6));
        CHECK(q[0] == 0 && q[5] == 5, "c order values");
        CHECK_OK(ms_npz_read_i64(z, "f1d", q, 4));
        CHECK(q[3] == 3, "1-d values");
    }
    ms_npz_close(z);
}

static void test_course(void) {
    ms_npz *z = NULL;
    CHECK_OK(ms_npz_open(&z, FIX "course_small.npz"));
    if (!z) return;
    ms_npy_info info;
    CHECK_OK(ms_npz_info(z, "training_set", &info));
    CHECK(info.dtype == MS_DT_U1 && info.ndim == 4 && info.shape[0] == 4 && info.shape[1] == 2 &&
              info.shape[2] == 64 && info.shape[3] == 128 && info.count == 65536,
          "training_set info");
    uint8_t *t = malloc(65536), *s = malloc(16384);
    CHECK_OK(ms_npz_read_u8(z, "training_set", t, 65536));
    int bad = 0;
    for (int n = 0; n < 4; n++)
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 128; x++) {
                bad += t[((n * 2 + 0) * 64 + y) * 128 + x] != (n * 31 + y * 7 + x * 3) % 256;
                bad += t[((n * 2 + 1) * 64 + y) * 128 + x] != (n + y / 16 + x / 32) % 5;
            }
    CHECK(!bad, "training_set: %d values differ", bad);
    CHECK_OK(ms_npz_read_u8(z, "test_set", s, 16384));
    bad = 0;
    for (int n = 0; n < 2; n++)
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 128; x++) bad += s[(n * 64 + y) * 128 + x] != (n * 17 + y * 5 + x) % 256;
    CHECK(!bad, "test_set: %d values differ", bad);
    float *f = malloc(65536 * sizeof *f);
    CHECK_OK(ms_npz_read_f32(z, "training_set", f, 65536));
    bad = 0;
    for (int i = 0; i < 65536; i++) bad += f[i] != t[i];
    CHECK(!bad, "training_set as f32: %d differ", bad);
    stream_acc a = {0};
    CHECK_OK(ms_npz_stream(z, "training_set", acc_cb, &a));
    double want = 0;
    for (int i = 0; i < 65536; i++) want += t[i];
    CHECK(a.next == 65536 && a.sum == want, "stream sum %g vs %g", a.sum, want);
    int calls = 0;
    CHECK(ms_npz_stream(z, "training_set", stop_cb, &calls) == MS_ERR_CANCELLED && calls == 1, "stream stop");
    /* wrong key: names the key, the file and what is there */
    CHECK_ERR(ms_npz_read_u8(z, "trainig_set", t, 65536), MS_ERR_NOTFOUND, FIX "course_small.npz");
    CHECK(strstr(ms_last_error(), "trainig_set") && strstr(ms_last_error(), "'training_set'") &&
              strstr(ms_last_error(), "'test_set'"),
          "%s", ms_last_error());
    CHECK_ERR(ms_npz_info(z, "", &info), MS_ERR_NOTFOUND, "course_small");
    CHECK(ms_npz_key(z, 0) && strcmp(ms_npz_key(z, 0), "training_set") == 0, "key 0");
    CHECK(ms_npz_key(z, 2) == NULL && ms_npz_key(z, -1) == NULL, "key out of range");
    ms_npz_close(z);
    free(t);
    free(s);
    free(f);
}

static void test_odd_and_zip64(void) {
    ms_npz *z = NULL;
    CHECK_OK(ms_npz_open(&z, FIX "odd_keys.npz"));
    if (z) {
        const char *keys[] = {"with space", "dots.in.name", "x.npy", "na\xc3\xafve_\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87",
                              "a/b", ""};
        CHECK(ms_npz_count(z) == 6, "odd keys: %d arrays (notes.txt must be ignored)", ms_npz_count(z));
        for (int k = 0; k < 6; k++) {
            CHECK(ms_npz_key(z, k) && strcmp(ms_npz_key(z, k), keys[k]) == 0, "key %d is '%s'", k,
                  ms_npz_key(z, k) ? ms_npz_key(z, k) : "(null)");
            uint8_t v[8] = {0};
            CHECK_OK(ms_npz_read_u8(z, keys[k], v, (size_t)k + 3));
            CHECK(v[0] == 0 && v[k + 2] == k + 2, "values of '%s'", keys[k]);
        }
        CHECK(!ms_npz_has(z, "notes.txt") && !ms_npz_has(z, "notes"), "non-npy member listed");
    }
    ms_npz_close(z);

    z = NULL;
    CHECK_OK(ms_npz_open(&z, FIX "npy_versions.npz"));
    if (z) {
        const char *keys[] = {"v1", "v2", "v3"};
        for (int k = 0; k < 3; k++) {
            float f[24];
            CHECK_OK(ms_npz_read_f32(z, keys[k], f, 24));
            int bad = 0;
            for (int i = 0; i < 24; i++) bad += f[i] != (float)(i - 5);
            CHECK(!bad, "%s values", keys[k]);
        }
    }
    ms_npz_close(z);

    const char *files[] = {FIX "zip64_local.npz", FIX "data_descriptor.npz", FIX "zip64_full.npz"};
    const char *k0[] = {"stored", "stored", "first"}, *k1[] = {"deflated", "deflated", "second"};
    for (int f = 0; f < 3; f++) {
        z = NULL;
        CHECK_OK(ms_npz_open(&z, files[f]));
        if (!z) continue;
        int64_t *q = malloc(1000 * sizeof *q);
        CHECK_OK(ms_npz_read_i64(z, k0[f], q, 1000));
        int bad = 0;
        for (int i = 0; i < 1000; i++) bad += q[i] != i * 3 - 7;
        CHECK_OK(ms_npz_read_i64(z, k1[f], q, 1000));
        for (int i = 0; i < 1000; i++) bad += q[i] != (f == 2 ? (999 - i) * 3 - 7 : i * 3 - 7);
        CHECK(!bad, "%s: %d values differ", files[f], bad);
        free(q);
        ms_npz_close(z);
    }
}

int main(void) {
    test_dtypes();
    test_scalars_fortran();
    test_course();
    test_odd_and_zip64();
    return TEST_END();
}
