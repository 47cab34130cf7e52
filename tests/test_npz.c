/* Tests of core/npz.c: every fixture of tests/fixtures/npz (made by tools/make_npz_fixtures.py,
 * whose value patterns are recomputed here), the writer round trip, and hand-corrupted
 * archives (truncations, flipped bytes, lying sizes, bad npy headers) that must all fail
 * cleanly with a detail naming the file. Run under ASan+UBSan with `make test SAN=1`. */
#include "marsseg_npz.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX "tests/fixtures/npz/"

static char tmpdir[64];

/* ------------------------------------------------------------------ helpers */
static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int spit(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(buf, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static uint8_t *dup_bytes(const uint8_t *b, size_t len) {
    uint8_t *c = malloc(len ? len : 1); /* exact size, so ASan catches reads past len */
    if (len) memcpy(c, b, len);
    return c;
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* The failure must carry a detail naming the file. */
#define CHECK_ERR(expr, want, label)                                                          \
    do {                                                                                      \
        ms_status s_ = (expr);                                                                \
        CHECK(s_ == (want), "%s -> %s (want %s): %s", #expr, ms_status_code(s_),              \
              ms_status_code(want), ms_last_error());                                         \
        CHECK(ms_last_error()[0] && strstr(ms_last_error(), (label)), "detail '%s' lacks '%s'", \
              ms_last_error(), (label));                                                      \
    } while (0)

/* ------------------------------------------------------------------ fixture value patterns */
static const char *const CODES[] = {"u1", "i1", "u2", "i2", "i4", "i8", "f2", "f4", "f8"};
static const ms_dtype CODE_T[] = {MS_DT_U1, MS_DT_I1, MS_DT_U2, MS_DT_I2, MS_DT_I4,
                                  MS_DT_I8, MS_DT_F2, MS_DT_F4, MS_DT_F8};
static const uint16_t F2_BITS[] = {0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xC000,
                                   0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x3555, 0x1234, 0x0200};

static int64_t ival(int c, int i) {
    switch (c) {
    case 0: return i * 37 % 251;
    case 1: return i * 37 % 251 - 125;
    case 2: return i * 1000 + 7;
    case 3: return i * 1000 - 30000;
    case 4: return (int64_t)(i - 30) * 70000000;
    case 5: return i == 0 ? INT64_MIN : i == 1 ? INT64_MAX : (int64_t)(i - 30) * 123456789012345LL;
    }
    return 0;
}
static uint16_t f2_bits(int i) { return i < 16 ? F2_BITS[i] : (uint16_t)((i * 977) & 0xFFFF); }
/* reference half decoding, written independently of core/npz.c */
static double half_ref(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}
static double dval(int c, int i) {
    if (c <= 5) return (double)ival(c, i);
    if (c == 6) return half_ref(f2_bits(i));
    if (c == 7) return (i - 30) * 0.25;
    return (i - 30) * 0.1;
}
static int same_d(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

typedef struct {
    double sum;
    int64_t next;
    int calls, nan;
} stream_acc;

static ms_status acc_cb(void *user, int64_t first, const double *v, size_t n) {
    stream_acc *a = user;
    if (first != a->next) return MS_ERR_INTERNAL;
    for (size_t i = 0; i < n; i++) {
        if (isnan(v[i])) a->nan++;
        else if (!isinf(v[i])) a->sum += v[i];
    }
    a->next += (int64_t)n;
    a->calls++;
    return MS_OK;
}

static ms_status stop_cb(void *user, int64_t first, const double *v, size_t n) {
    (void)first, (void)v, (void)n;
    ++*(int *)user;
    return MS_ERR_CANCELLED;
}

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

/* Open the fixture at path and run check on it. */
static void check_file(const char *path, void (*check)(ms_npz *z, const char *label)) {
    ms_npz *z = NULL;
    CHECK_OK(ms_npz_open(&z, path));
    if (z) check(z, path);
    ms_npz_close(z);
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

/* ------------------------------------------------------------------ errors: open */
static void test_open_errors(void) {
    ms_npz *z = (ms_npz *)1;
    CHECK_ERR(ms_npz_open(&z, FIX "no_such_file.npz"), MS_ERR_NOTFOUND, "no_such_file.npz");
    CHECK(z == NULL, "handle set on failure");
    CHECK_ERR(ms_npz_open(&z, FIX), MS_ERR_IO, FIX);

    char p[128];
    snprintf(p, sizeof p, "%s/empty.npz", tmpdir);
    CHECK(spit(p, "", 0), "write %s", p);
    CHECK_ERR(ms_npz_open(&z, p), MS_ERR_FORMAT, p);
    CHECK_ERR(ms_npz_open_mem(&z, NULL, 0, "empty-upload"), MS_ERR_FORMAT, "empty-upload");
    CHECK_ERR(ms_npz_open_mem(&z, "x", 1, NULL), MS_ERR_FORMAT, "<memory>");

    const char *text = "this is plain text, certainly not a zip archive; it is long enough though.";
    snprintf(p, sizeof p, "%s/text.npz", tmpdir);
    CHECK(spit(p, text, strlen(text)), "write");
    CHECK_ERR(ms_npz_open(&z, p), MS_ERR_FORMAT, p);
    CHECK_ERR(ms_npz_open_mem(&z, text, strlen(text), "text-upload"), MS_ERR_FORMAT, "text-upload");

    static const char npy[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }";
    CHECK_ERR(ms_npz_open_mem(&z, npy, sizeof npy - 1, "single.npy"), MS_ERR_FORMAT, "single.npy");
    CHECK(strstr(ms_last_error(), ".npy"), "%s", ms_last_error());
}

/* Every truncation of a file must fail to open (the end record is gone) without crashing. */
static void test_truncations(void) {
    const char *files[] = {FIX "dtypes_stored.npz", FIX "course_small.npz", FIX "zip64_full.npz"};
    for (int k = 0; k < 3; k++) {
        size_t len;
        uint8_t *b = slurp(files[k], &len);
        if (!b) { CHECK(0, "read %s", files[k]); continue; }
        int bad = 0;
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *c = dup_bytes(b, cut);
            ms_npz *z = NULL;
            ms_status st = ms_npz_open_mem(&z, c, cut, "cut.npz");
            if (st == MS_OK || !strstr(ms_last_error(), "cut.npz")) bad++;
            ms_npz_close(z);
            free(c);
        }
        CHECK(!bad, "%s: %d truncations not refused", files[k], bad);
        /* through the file reader too, every 37th offset */
        char p[128];
        snprintf(p, sizeof p, "%s/cut.npz", tmpdir);
        for (size_t cut = 0; cut < len; cut += 37) {
            CHECK(spit(p, b, cut), "write");
            ms_npz *z = NULL;
            ms_status st = ms_npz_open(&z, p);
            CHECK(st != MS_OK && strstr(ms_last_error(), p), "cut at %zu: %s", cut, ms_last_error());
            ms_npz_close(z);
        }
        free(b);
    }
}

/* Flip every byte of small archives: whatever happens must be OK or a clean error. Flips in
 * array data of stored entries must be caught by the CRC. */
static int read_all(ms_npz *z, int *n_ok) {
    int errs = 0;
    for (int i = 0; i < ms_npz_count(z); i++) {
        ms_npy_info info;
        const char *k = ms_npz_key(z, i);
        if (ms_npz_info(z, k, &info) != MS_OK) { errs++; continue; }
        double *d = malloc((size_t)(info.count ? info.count : 1) * sizeof *d);
        ms_status st = ms_npz_read_f64(z, k, d, (size_t)info.count);
        free(d);
        if (st) {
            errs++;
            if (!strstr(ms_last_error(), "flip.npz")) errs += 1000000;
        } else {
            ++*n_ok;
        }
    }
    return errs;
}

static void test_flips(void) {
    const char *files[] = {FIX "scalars.npz", FIX "dtypes_deflated.npz", FIX "zip64_full.npz",
                           FIX "data_descriptor.npz"};
    for (int k = 0; k < 4; k++) {
        size_t len;
        uint8_t *b = slurp(files[k], &len);
        if (!b) { CHECK(0, "read %s", files[k]); continue; }
        int unlabelled = 0, detected = 0;
        for (size_t i = 0; i < len; i++) {
            uint8_t *c = dup_bytes(b, len);
            c[i] ^= 0xFF;
            ms_npz *z = NULL;
            int ok = 0, errs = 0;
            ms_status st = ms_npz_open_mem(&z, c, len, "flip.npz");
            if (st != MS_OK) {
                errs = 1;
                if (!strstr(ms_last_error(), "flip.npz")) unlabelled++;
            } else {
                errs = read_all(z, &ok);
                if (errs >= 1000000) unlabelled++;
            }
            detected += errs > 0;
            ms_npz_close(z);
            free(c);
        }
        CHECK(!unlabelled, "%s: %d flips gave errors without the file name", files[k], unlabelled);
        /* timestamps, attributes, version fields and header padding are not checked */
        CHECK(detected > (int)len / 2, "%s: only %d of %zu flips detected", files[k], detected, len);
        free(b);
    }
}

/* ------------------------------------------------------------------ errors: lying sizes */
static uint16_t g16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t g32(const uint8_t *p) { return g16(p) | (uint32_t)g16(p + 2) << 16; }
static void p32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void p16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
/* offset of the n-th occurrence of a 4-byte signature */
static size_t find_sig(const uint8_t *b, size_t len, const char *sig, int nth) {
    for (size_t i = 0; i + 4 <= len; i++)
        if (memcmp(b + i, sig, 4) == 0 && nth-- == 0) return i;
    return (size_t)-1;
}

typedef void (*mutator)(uint8_t *b, size_t len);
static ms_status open_read_first(const uint8_t *b, size_t len, const char *label) {
    uint8_t *c = dup_bytes(b, len);
    ms_npz *z = NULL;
    ms_status st = ms_npz_open_mem(&z, c, len, label);
    if (st == MS_OK) {
        double d[60];
        ms_npy_info info;
        const char *k = ms_npz_key(z, 0);
        st = ms_npz_info(z, k, &info);
        if (st == MS_OK) st = ms_npz_read_f64(z, k, d, 60);
    }
    ms_npz_close(z);
    free(c);
    return st;
}

static void test_lying_sizes(void) {
    size_t sl, dl;
    uint8_t *s = slurp(FIX "dtypes_stored.npz", &sl), *d = slurp(FIX "dtypes_deflated.npz", &dl);
    if (!s || !d) { CHECK(0, "read fixtures"); free(s); free(d); return; }
    CHECK_OK(open_read_first(s, sl, "lie.npz"));
    CHECK_OK(open_read_first(d, dl, "lie.npz"));
    size_t cs = find_sig(s, sl, "PK\1\2", 0), cd = find_sig(d, dl, "PK\1\2", 0);
    size_t es = find_sig(s, sl, "PK\5\6", 0);
    uint8_t *c;
#define MUTATE(buf, len, stmt, want)                                                           \
    do {                                                                                       \
        c = dup_bytes(buf, len);                                                               \
        stmt;                                                                                  \
        CHECK_ERR(open_read_first(c, len, "lie.npz"), want, "lie.npz");                        \
        free(c);                                                                               \
    } while (0)
    /* stored entry: central sizes disagree with each other / with the local header */
    MUTATE(s, sl, p32(c + cs + 24, g32(c + cs + 24) + 1), MS_ERR_FORMAT);
    MUTATE(s, sl, (p32(c + cs + 20, g32(c + cs + 20) + 1), p32(c + cs + 24, g32(c + cs + 24) + 1)), MS_ERR_FORMAT);
    MUTATE(s, sl, (p32(c + cs + 20, 0xFFFFFFF0u), p32(c + cs + 24, 0xFFFFFFF0u)), MS_ERR_FORMAT);
    MUTATE(s, sl, p32(c + 18, g32(c + 18) - 1), MS_ERR_FORMAT);           /* local csize */
    MUTATE(s, sl, p32(c + 14, g32(c + 14) ^ 1), MS_ERR_FORMAT);           /* local crc */
    MUTATE(s, sl, p32(c + cs + 16, g32(c + cs + 16) ^ 1), MS_ERR_FORMAT); /* central crc */
    /* both headers agree on a wrong CRC: only the data check catches it */
    MUTATE(s, sl, (p32(c + cs + 16, g32(c + cs + 16) ^ 1), p32(c + 14, g32(c + 14) ^ 1)), MS_ERR_CHECKSUM);
    /* both headers agree on a size 8 bytes too small: the npy payload check catches it */
    MUTATE(s, sl,
           (p32(c + cs + 20, g32(c + cs + 20) - 8), p32(c + cs + 24, g32(c + cs + 24) - 8),
            p32(c + 18, g32(c + 18) - 8), p32(c + 22, g32(c + 22) - 8)),
           MS_ERR_FORMAT);
    MUTATE(s, sl, p32(c + cs + 42, (uint32_t)sl), MS_ERR_FORMAT);         /* local offset past the end */
    MUTATE(s, sl, p32(c + cs + 42, 1), MS_ERR_FORMAT);                    /* local offset wrong */
    MUTATE(s, sl, p16(c + cs + 28, 60000), MS_ERR_FORMAT);                /* name length */
    MUTATE(s, sl, p16(c + 26, 60000), MS_ERR_FORMAT);                     /* local name length */
    MUTATE(s, sl, c[30] = 'X', MS_ERR_FORMAT);                            /* local name differs */
    MUTATE(s, sl, p16(c + 8, 12), MS_ERR_FORMAT);                         /* local method != central */
    MUTATE(s, sl, (p16(c + 8, 12), p16(c + cs + 10, 12)), MS_ERR_UNSUPPORTED); /* bzip2 */
    MUTATE(s, sl, p16(c + cs + 8, 1), MS_ERR_UNSUPPORTED);                /* encrypted */
    /* end record: counts and directory position */
    MUTATE(s, sl, (p16(c + es + 8, 200), p16(c + es + 10, 200)), MS_ERR_FORMAT);
    MUTATE(s, sl, (p16(c + es + 8, 14), p16(c + es + 10, 14)), MS_ERR_FORMAT);
    MUTATE(s, sl, (p16(c + es + 8, 0xFFFF), p16(c + es + 10, 0xFFFF)), MS_ERR_FORMAT);
    MUTATE(s, sl, p16(c + es + 10, 3), MS_ERR_UNSUPPORTED);               /* disk counts differ */
    MUTATE(s, sl, p32(c + es + 12, 0xFFFFFF00u), MS_ERR_FORMAT);          /* directory size */
    MUTATE(s, sl, p32(c + es + 16, g32(c + es + 16) + 1), MS_ERR_FORMAT); /* directory offset */
    MUTATE(s, sl, p32(c + es + 16, 0xFFFFFFFFu), MS_ERR_FORMAT);
    MUTATE(s, sl, p16(c + es + 20, 1), MS_ERR_FORMAT);                    /* comment length */
    MUTATE(s, sl, c[cs] = 'Q', MS_ERR_FORMAT);                            /* central signature */
    MUTATE(s, sl, c[0] = 'Q', MS_ERR_FORMAT);                             /* local signature */
    /* deflated entry: impossible ratio, sizes disagreeing, a data byte flipped */
    MUTATE(d, dl, p32(c + cd + 24, 0x7FFFFFFFu), MS_ERR_FORMAT);
    MUTATE(d, dl, p32(c + cd + 24, g32(c + cd + 24) + 1), MS_ERR_FORMAT);
    MUTATE(d, dl, p32(c + cd + 20, g32(c + cd + 20) + 1), MS_ERR_FORMAT);
    MUTATE(d, dl, (p32(c + cd + 20, g32(c + cd + 20) - 1), p32(c + 18, g32(c + 18) - 1)), MS_ERR_FORMAT);
    /* both headers claim one more compressed byte (taken from the next entry's header) */
    MUTATE(d, dl, (p32(c + cd + 20, g32(c + cd + 20) + 1), p32(c + 18, g32(c + 18) + 1)), MS_ERR_FORMAT);
    /* both headers claim 8 more uncompressed bytes: the npy payload no longer matches the shape */
    MUTATE(d, dl, (p32(c + cd + 24, g32(c + cd + 24) + 8), p32(c + 22, g32(c + 22) + 8)), MS_ERR_FORMAT);
    /* a flipped deflate byte: a deflate error or a CRC mismatch, depending on where it lands */
    size_t data0 = 30 + g16(d + 26) + g16(d + 28), dend = data0 + g32(d + 18);
    c = dup_bytes(d, dl);
    c[dend - 3] ^= 0x55;
    ms_status st = open_read_first(c, dl, "lie.npz");
    CHECK((st == MS_ERR_FORMAT || st == MS_ERR_CHECKSUM) && strstr(ms_last_error(), "lie.npz"), "%s",
          ms_last_error());
    free(c);
    free(s);
    free(d);
#undef MUTATE
}

/* Flip every byte of the payload of the first stored entry: must always be a CRC mismatch. */
static void test_crc_stored(void) {
    size_t sl;
    uint8_t *s = slurp(FIX "dtypes_stored.npz", &sl);
    if (!s) { CHECK(0, "read"); return; }
    size_t data0 = 30 + g16(s + 26) + g16(s + 28), end = data0 + g32(s + 18);
    int bad = 0;
    for (size_t i = data0; i < end; i++) {
        uint8_t *c = dup_bytes(s, sl);
        c[i] ^= 0x01;
        ms_npz *z = NULL;
        ms_status st = ms_npz_open_mem(&z, c, sl, "crc.npz");
        uint8_t u[60];
        if (st == MS_OK) st = ms_npz_read_u8(z, "u1", u, 60);
        /* flips in the header bytes may be caught by the header parser first */
        if (i >= end - 60 ? st != MS_ERR_CHECKSUM : st == MS_OK) bad++;
        if (st != MS_OK && !strstr(ms_last_error(), "crc.npz")) bad++;
        ms_npz_close(z);
        free(c);
    }
    CHECK(!bad, "%d payload flips not reported as checksum errors", bad);
    free(s);
}

/* Deflate payload flips: CRC or deflate error, or (rarely, e.g. a match distance changed to
 * another period of this periodic data) exactly the original values - never different data. */
static void test_crc_deflated(void) {
    size_t dl;
    uint8_t *d = slurp(FIX "course_small.npz", &dl);
    if (!d) { CHECK(0, "read"); return; }
    size_t data0 = 30 + g16(d + 26) + g16(d + 28), end = data0 + g32(d + 18);
    int bad = 0, crc = 0;
    uint8_t *t = malloc(65536), *ref = malloc(65536);
    ms_npz *z0 = NULL;
    CHECK_OK(ms_npz_open_mem(&z0, d, dl, "crc.npz"));
    CHECK_OK(ms_npz_read_u8(z0, "training_set", ref, 65536));
    ms_npz_close(z0);
    /* (the last byte may hold padding bits after the end-of-block code, which inflate ignores) */
    for (size_t i = data0; i + 1 < end; i += 3) {
        uint8_t *c = dup_bytes(d, dl);
        c[i] ^= 0x10;
        ms_npz *z = NULL;
        ms_status st = ms_npz_open_mem(&z, c, dl, "crc.npz");
        if (st == MS_OK) st = ms_npz_read_u8(z, "training_set", t, 65536);
        if (st == MS_OK ? memcmp(t, ref, 65536) != 0 : !strstr(ms_last_error(), "crc.npz")) bad++;
        crc += st == MS_ERR_CHECKSUM;
        ms_npz_close(z);
        free(c);
    }
    CHECK(!bad && crc > 0, "%d deflate flips accepted with different data (%d checksum errors)", bad, crc);
    free(t);
    free(ref);
    free(d);
}

/* ------------------------------------------------------------------ errors: npy headers */
typedef struct {
    uint8_t *b;
    size_t len, cap;
} buf_t;
static void put(buf_t *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->b = realloc(b->b, b->cap);
    }
    memcpy(b->b + b->len, p, n);
    b->len += n;
}
static void put16(buf_t *b, uint32_t v) { uint8_t x[2]; p16(x, v); put(b, x, 2); }
static void put32(buf_t *b, uint32_t v) { uint8_t x[4]; p32(x, v); put(b, x, 4); }

/* A one-entry stored zip "a.npy" with the given content (correct CRC and sizes). */
static buf_t zip1(const uint8_t *content, size_t n) {
    buf_t z = {0};
    uint32_t crc = ms_crc32(0, content, n);
    put32(&z, 0x04034b50), put16(&z, 20), put16(&z, 0), put16(&z, 0), put16(&z, 0), put16(&z, 0x21);
    put32(&z, crc), put32(&z, (uint32_t)n), put32(&z, (uint32_t)n), put16(&z, 5), put16(&z, 0);
    put(&z, "a.npy", 5);
    put(&z, content, n);
    size_t cdo = z.len;
    put32(&z, 0x02014b50), put16(&z, 20), put16(&z, 20), put16(&z, 0), put16(&z, 0), put16(&z, 0);
    put16(&z, 0x21), put32(&z, crc), put32(&z, (uint32_t)n), put32(&z, (uint32_t)n), put16(&z, 5);
    put16(&z, 0), put16(&z, 0), put16(&z, 0), put16(&z, 0), put32(&z, 0), put32(&z, 0);
    put(&z, "a.npy", 5);
    size_t cds = z.len - cdo;
    put32(&z, 0x06054b50), put16(&z, 0), put16(&z, 0), put16(&z, 1), put16(&z, 1);
    put32(&z, (uint32_t)cds), put32(&z, (uint32_t)cdo), put16(&z, 0);
    return z;
}

/* npy bytes: magic, version, header length, header text, payload */
static buf_t npy(int major, const char *hdr, size_t payload) {
    buf_t b = {0};
    uint8_t v[2] = {(uint8_t)major, 0};
    put(&b, "\x93NUMPY", 6);
    put(&b, v, 2);
    if (major == 1) put16(&b, (uint32_t)strlen(hdr));
    else put32(&b, (uint32_t)strlen(hdr));
    put(&b, hdr, strlen(hdr));
    for (size_t i = 0; i < payload; i++) put(&b, &(uint8_t){(uint8_t)i}, 1);
    return b;
}

static ms_status try_header(int major, const char *hdr, size_t payload, ms_npy_info *info) {
    buf_t n = npy(major, hdr, payload);
    buf_t z = zip1(n.b, n.len);
    uint8_t *c = dup_bytes(z.b, z.len);
    ms_npz *h = NULL;
    ms_status st = ms_npz_open_mem(&h, c, z.len, "hdr.npz");
    if (st == MS_OK) st = ms_npz_info(h, "a", info);
    if (st == MS_OK) {
        double *d = malloc((size_t)(info->count ? info->count : 1) * sizeof *d);
        st = ms_npz_read_f64(h, "a", d, (size_t)info->count);
        free(d);
    }
    ms_npz_close(h);
    free(c);
    free(n.b);
    free(z.b);
    return st;
}

static void test_headers(void) {
    ms_npy_info info;
    /* accepted spellings */
    CHECK_OK(try_header(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }   \n", 24, &info));
    CHECK(info.ndim == 2 && info.count == 6 && info.dtype == MS_DT_F4, "plain");
    CHECK_OK(try_header(1, "{ \"shape\" :(2,3) ,\"fortran_order\":False,'descr':'>i2'}", 12, &info));
    CHECK(info.ndim == 2 && info.shape[1] == 3 && info.dtype == MS_DT_I2 && info.big_endian, "reordered");
    CHECK_OK(try_header(2, "{'descr': '|u1', 'fortran_order': False, 'shape': (4L, 1L), }", 4, &info));
    CHECK_OK(try_header(3, "{'descr':'<i8','fortran_order':True,'shape':(1,5,1)}", 40, &info));
    CHECK_OK(try_header(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, &info));
    CHECK(info.ndim == 2 && info.count == 4, "fortran 2x2");
    CHECK_OK(try_header(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 8, &info));
    CHECK(info.ndim == 0 && info.count == 1, "0-d");
    CHECK_OK(try_header(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (0, 9999999999), }", 0, &info));
    CHECK_OK(try_header(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1), }", 4, &info));
    /* refused */
    static const struct {
        int major;
        const char *hdr;
        size_t payload;
        ms_status want;
    } bad[] = {
        {1, "{'fortran_order': False, 'shape': (2,), }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'shape': (2,), }", 8, MS_ERR_FORMAT},
        {1, "garbage", 8, MS_ERR_FORMAT},
        {1, "", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': 2, }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4), }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000,), }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 12, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 8, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4, MS_ERR_LIMIT},
        /* Fortran order with a shape the payload does not hold, or that overflows */
        {1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 16, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 20, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': True, 'shape': (4294967296, 4294967296, 4), }", 16, MS_ERR_FORMAT},
        {1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2305843009213693952), }", 16, MS_ERR_FORMAT},
        {1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, -2), }", 16, MS_ERR_FORMAT},
        {1, "{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", 2, MS_ERR_UNSUPPORTED},
        {1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16, MS_ERR_UNSUPPORTED},
        {1, "{'descr': '<u4', 'fortran_order': False, 'shape': (2,), }", 8, MS_ERR_UNSUPPORTED},
        {1, "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16, MS_ERR_UNSUPPORTED},
        {1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, MS_ERR_UNSUPPORTED},
        {1, "{'descr': 4, 'fortran_order': False, 'shape': (2,), }", 8, MS_ERR_FORMAT},
        {4, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8, MS_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ms_status st = try_header(bad[i].major, bad[i].hdr, bad[i].payload, &info);
        CHECK(st == bad[i].want && strstr(ms_last_error(), "hdr.npz"), "header %zu \"%s\": %s (want %s): %s", i,
              bad[i].hdr, ms_status_code(st), ms_status_code(bad[i].want), ms_last_error());
    }
    /* header length beyond the entry, bad magic, entry too short for a header */
    buf_t n = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8);
    p16(n.b + 8, 5000);
    buf_t z = zip1(n.b, n.len);
    ms_npz *h = NULL;
    CHECK_OK(ms_npz_open_mem(&h, z.b, z.len, "hdr.npz"));
    if (h) CHECK_ERR(ms_npz_info(h, "a", &info), MS_ERR_FORMAT, "hdr.npz");
    ms_npz_close(h);
    free(z.b);
    n.b[0] = 'X';
    z = zip1(n.b, n.len);
    h = NULL;
    CHECK_OK(ms_npz_open_mem(&h, z.b, z.len, "hdr.npz"));
    if (h) CHECK_ERR(ms_npz_info(h, "a", &info), MS_ERR_FORMAT, "hdr.npz");
    ms_npz_close(h);
    free(z.b);
    z = zip1(n.b, 7);
    h = NULL;
    CHECK_OK(ms_npz_open_mem(&h, z.b, z.len, "hdr.npz"));
    if (h) CHECK_ERR(ms_npz_info(h, "a", &info), MS_ERR_FORMAT, "hdr.npz");
    ms_npz_close(h);
    free(z.b);
    free(n.b);
}

/* ------------------------------------------------------------------ Fortran order */
/* numpy's fortran_stored/_deflated.npz: every dtype array of the dtype fixtures, as '<key>_3d'
 * (3, 4, 5) and '<key>_2d' (6, 10) in Fortran order; read back in C order they must give the
 * C-order pattern of dval(), as numpy.load does. */
static void check_fortran(ms_npz *z, const char *label) {
    CHECK(ms_npz_count(z) == 32, "%s: %d arrays", label, ms_npz_count(z));
    for (int c = 0; c < 9; c++)
        for (int be = 0; be < 2; be++)
            for (int d3 = 0; d3 < 2; d3++) {
                char key[24];
                if (c < 2 && be) continue;
                snprintf(key, sizeof key, c < 2 ? "%s%s" : be ? "%s_be%s" : "%s_le%s", CODES[c], d3 ? "_3d" : "_2d");
                ms_npy_info info;
                CHECK_OK(ms_npz_info(z, key, &info));
                int shape_ok = d3 ? info.ndim == 3 && info.shape[0] == 3 && info.shape[1] == 4 && info.shape[2] == 5
                                  : info.ndim == 2 && info.shape[0] == 6 && info.shape[1] == 10;
                CHECK(shape_ok && info.dtype == CODE_T[c] && info.big_endian == be && info.count == 60, "%s %s info",
                      label, key);
                double d[60];
                float f[60];
                int64_t q[60];
                uint8_t u[60];
                int bad = 0;
                CHECK_OK(ms_npz_read_f64(z, key, d, 60));
                CHECK_OK(ms_npz_read_f32(z, key, f, 60));
                for (int i = 0; i < 60; i++) bad += !same_d(d[i], dval(c, i)) + !same_d(f[i], (float)dval(c, i));
                if (c <= 5) {
                    CHECK_OK(ms_npz_read_i64(z, key, q, 60));
                    for (int i = 0; i < 60; i++) bad += q[i] != ival(c, i);
                }
                if (c == 0) {
                    CHECK_OK(ms_npz_read_u8(z, key, u, 60));
                    for (int i = 0; i < 60; i++) bad += u[i] != ival(c, i);
                }
                stream_acc a = {0};
                CHECK_OK(ms_npz_stream(z, key, acc_cb, &a));
                double want = 0;
                for (int i = 0; i < 60; i++)
                    if (!isnan(dval(c, i)) && !isinf(dval(c, i))) want += dval(c, i);
                CHECK(!bad && a.next == 60 && a.sum == want, "%s %s: %d values differ (d[1]=%g), stream sum %g vs %g",
                      label, key, bad, d[1], a.sum, want);
            }
}

/* A stored "a.npy" in Fortran order, u2 (rows, cols), whose C-order element i holds i & 0xFFFF. */
static buf_t fortran_u2(int rows, int cols) {
    char hdr[120];
    snprintf(hdr, sizeof hdr, "{'descr': '<u2', 'fortran_order': True, 'shape': (%d, %d), }", rows, cols);
    buf_t n = npy(1, hdr, 0);
    for (int c = 0; c < cols; c++)
        for (int r = 0; r < rows; r++) put16(&n, (uint32_t)(r * cols + c) & 0xFFFF);
    buf_t z = zip1(n.b, n.len);
    free(n.b);
    return z;
}

static void test_fortran(void) {
    check_file(FIX "fortran_stored.npz", check_fortran);
    check_file(FIX "fortran_deflated.npz", check_fortran);
    /* larger than one conversion and one stream chunk: C order across chunk boundaries */
    enum { R = 70, C = 1000 };
    buf_t zb = fortran_u2(R, C);
    ms_npz *z = NULL;
    CHECK_OK(ms_npz_open_mem(&z, zb.b, zb.len, "fortran-mem"));
    if (z) {
        int64_t *q = malloc(R * C * sizeof *q);
        double *d = malloc(R * C * sizeof *d);
        int bad = 0;
        CHECK_OK(ms_npz_read_i64(z, "a", q, R * C));
        CHECK_OK(ms_npz_read_f64(z, "a", d, R * C));
        for (int i = 0; i < R * C; i++) bad += q[i] != (i & 0xFFFF) || d[i] != (i & 0xFFFF);
        CHECK(!bad, "fortran (70, 1000): %d values out of C order", bad);
        stream_acc a = {0};
        double want = 0;
        for (int i = 0; i < R * C; i++) want += i & 0xFFFF;
        CHECK_OK(ms_npz_stream(z, "a", acc_cb, &a));
        CHECK(a.next == R * C && a.calls == 2 && a.sum == want, "fortran stream: %d calls, sum %g vs %g", a.calls,
              a.sum, want);
        free(q);
        free(d);
    }
    ms_npz_close(z);
    /* a corrupt Fortran-order array fails its CRC before anything is delivered */
    zb.b[zb.len - 200] ^= 1; /* inside the payload, before the central directory */
    z = NULL;
    CHECK_OK(ms_npz_open_mem(&z, zb.b, zb.len, "fortran-crc"));
    if (z) {
        stream_acc a = {0};
        CHECK_ERR(ms_npz_stream(z, "a", acc_cb, &a), MS_ERR_CHECKSUM, "fortran-crc");
        CHECK(a.calls == 0, "corrupt Fortran array delivered %d chunks", a.calls);
        double d[4];
        CHECK_ERR(ms_npz_read_f64(z, "a", d, 4), MS_ERR_SHAPE, "fortran-crc"); /* checks before reading */
    }
    ms_npz_close(z);
    free(zb.b);
}

/* ------------------------------------------------------------------ writer */
static void test_writer(void) {
    char path[128], tmp[200];
    snprintf(path, sizeof path, "%s/w.npz", tmpdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(spit(path, "old", 3), "write old");

    uint8_t u1[6] = {0, 1, 2, 3, 254, 255};
    int8_t i1[4] = {-128, -1, 0, 127};
    uint16_t u2[3] = {0, 1, 65535};
    int16_t i2[4] = {-32768, -1, 1, 32767};
    int32_t i4[5] = {INT32_MIN, -1, 0, 1, INT32_MAX};
    int64_t i8[3] = {INT64_MIN, 0, INT64_MAX};
    uint16_t f2[4] = {0x3C00, 0x0001, 0x7C00, 0xC000};
    float f4[8] = {0.5f, -1.5f, 3e38f, -0.0f, 1e-40f, 7, 8, 9};
    double f8 = 3.25;
    const int64_t s6[] = {2, 3}, s4[] = {4}, s3[] = {3}, s22[] = {2, 2}, s5[] = {5}, s222[] = {2, 2, 2},
                  s04[] = {0, 4};

    ms_npz_writer *w = NULL;
    CHECK_OK(ms_npz_writer_open(&w, path));
    if (!w) return;
    CHECK_OK(ms_npz_writer_add(w, "u1", MS_DT_U1, 2, s6, u1));
    CHECK_OK(ms_npz_writer_add(w, "i1", MS_DT_I1, 1, s4, i1));
    CHECK_OK(ms_npz_writer_add(w, "u2", MS_DT_U2, 1, s3, u2));
    CHECK_OK(ms_npz_writer_add(w, "i2", MS_DT_I2, 2, s22, i2));
    CHECK_OK(ms_npz_writer_add(w, "i4", MS_DT_I4, 1, s5, i4));
    CHECK_OK(ms_npz_writer_add(w, "i8", MS_DT_I8, 1, s3, i8));
    CHECK_OK(ms_npz_writer_add(w, "f2", MS_DT_F2, 1, s4, f2));
    CHECK_OK(ms_npz_writer_add(w, "f4 \xd0\xba", MS_DT_F4, 3, s222, f4));
    CHECK_OK(ms_npz_writer_add(w, "f8", MS_DT_F8, 0, NULL, &f8));
    CHECK_OK(ms_npz_writer_add(w, "empty", MS_DT_F4, 2, s04, NULL));
    /* argument errors do not spoil the writer */
    CHECK_ERR(ms_npz_writer_add(w, "u1", MS_DT_U1, 2, s6, u1), MS_ERR_ARG, path);
    CHECK_ERR(ms_npz_writer_add(w, "bad", MS_DT_COUNT, 1, s4, u1), MS_ERR_ARG, path);
    CHECK_ERR(ms_npz_writer_add(w, "neg", MS_DT_U1, 1, (const int64_t[]){-1}, u1), MS_ERR_ARG, path);
    CHECK_ERR(ms_npz_writer_add(w, "big", MS_DT_F8, 2, (const int64_t[]){INT64_MAX, 4}, u1), MS_ERR_LIMIT, path);
    CHECK_ERR(ms_npz_writer_add(w, "null", MS_DT_U1, 1, s4, NULL), MS_ERR_ARG, path);
    CHECK_ERR(ms_npz_writer_add(w, "dims", MS_DT_U1, 9, s4, u1), MS_ERR_ARG, path);
    /* nothing is visible until commit */
    size_t len;
    uint8_t *b = slurp(path, &len);
    CHECK(b && len == 3 && memcmp(b, "old", 3) == 0, "old file touched before commit");
    free(b);
    CHECK(file_exists(tmp), "no temp file");
    CHECK_OK(ms_npz_writer_commit(w));
    CHECK(!file_exists(tmp), "temp file left behind");

    ms_npz *z = NULL;
    CHECK_OK(ms_npz_open(&z, path));
    if (z) {
        CHECK(ms_npz_count(z) == 10, "count %d", ms_npz_count(z));
        int64_t q[8];
        double d[8];
        float f[8];
        uint8_t u[6];
        ms_npy_info info;
        CHECK_OK(ms_npz_info(z, "u1", &info));
        CHECK(info.dtype == MS_DT_U1 && info.ndim == 2 && info.shape[0] == 2 && info.shape[1] == 3, "u1 info");
        CHECK_OK(ms_npz_read_u8(z, "u1", u, 6));
        CHECK(memcmp(u, u1, 6) == 0, "u1");
        CHECK_OK(ms_npz_read_i64(z, "i1", q, 4));
        CHECK(q[0] == -128 && q[1] == -1 && q[3] == 127, "i1");
        CHECK_OK(ms_npz_read_i64(z, "u2", q, 3));
        CHECK(q[2] == 65535, "u2");
        CHECK_OK(ms_npz_read_i64(z, "i2", q, 4));
        CHECK(q[0] == -32768 && q[3] == 32767, "i2");
        CHECK_OK(ms_npz_read_i64(z, "i4", q, 5));
        CHECK(q[0] == INT32_MIN && q[4] == INT32_MAX, "i4");
        CHECK_OK(ms_npz_read_i64(z, "i8", q, 3));
        CHECK(q[0] == INT64_MIN && q[2] == INT64_MAX, "i8");
        CHECK_OK(ms_npz_read_f32(z, "f2", f, 4));
        CHECK(f[0] == 1 && f[1] == 0x1p-24f && isinf(f[2]) && f[3] == -2, "f2");
        CHECK_OK(ms_npz_read_f32(z, "f4 \xd0\xba", f, 8));
        CHECK(memcmp(f, f4, sizeof f4) == 0, "f4");
        CHECK_OK(ms_npz_info(z, "f8", &info));
        CHECK(info.ndim == 0 && info.count == 1, "f8 0-d");
        CHECK_OK(ms_npz_read_f64(z, "f8", d, 1));
        CHECK(d[0] == 3.25, "f8");
        CHECK_OK(ms_npz_info(z, "empty", &info));
        CHECK(info.count == 0 && info.ndim == 2 && info.shape[1] == 4, "empty");
    }
    ms_npz_close(z);

    /* numpy's layout: header text as numpy writes it, data 64-byte aligned within each npy */
    b = slurp(path, &len);
    int n_npy = 0, misaligned = 0;
    for (size_t i = 0; b && i + 10 <= len; i++) {
        if (memcmp(b + i, "\x93NUMPY\x01\x00", 8) != 0) continue;
        n_npy++;
        size_t hl = g16(b + i + 8);
        if ((10 + hl) % 64 != 0 || b[i + 10 + hl - 1] != '\n') misaligned++;
    }
    CHECK(n_npy == 10 && !misaligned, "%d npy headers, %d misaligned", n_npy, misaligned);
    const char *want = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }";
    CHECK(b && memmem(b, len, want, strlen(want)), "numpy-style header text missing");
    CHECK(b && memmem(b, len, "'shape': (4,), }", 16) && memmem(b, len, "'shape': (), }", 14), "1-d/0-d shapes");

    /* abort keeps the committed file and removes the temp file */
    w = NULL;
    CHECK_OK(ms_npz_writer_open(&w, path));
    CHECK_OK(ms_npz_writer_add(w, "u1", MS_DT_U1, 2, s6, u1));
    ms_npz_writer_abort(w);
    size_t len2;
    uint8_t *b2 = slurp(path, &len2);
    CHECK(b && b2 && len == len2 && memcmp(b, b2, len) == 0, "abort changed the file");
    CHECK(!file_exists(tmp), "abort left the temp file");
    free(b2);
    free(b);

    /* empty archive */
    w = NULL;
    CHECK_OK(ms_npz_writer_open(&w, path));
    CHECK_OK(ms_npz_writer_commit(w));
    z = NULL;
    CHECK_OK(ms_npz_open(&z, path));
    CHECK(ms_npz_count(z) == 0, "empty archive");
    ms_npz_close(z);

    /* failures name the path */
    char bad[160];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.npz", tmpdir);
    w = NULL;
    CHECK_ERR(ms_npz_writer_open(&w, bad), MS_ERR_IO, bad);
    CHECK(w == NULL, "writer set on failure");
    /* commit fails when the target is a non-empty directory; the temp file goes away */
    snprintf(bad, sizeof bad, "%s/adir", tmpdir);
    CHECK(mkdir(bad, 0755) == 0, "mkdir");
    char inner[200];
    snprintf(inner, sizeof inner, "%s/keep", bad);
    CHECK(spit(inner, "k", 1), "write");
    w = NULL;
    CHECK_OK(ms_npz_writer_open(&w, bad));
    CHECK_OK(ms_npz_writer_add(w, "u1", MS_DT_U1, 2, s6, u1));
    CHECK_ERR(ms_npz_writer_commit(w), MS_ERR_IO, bad);
    snprintf(tmp, sizeof tmp, "%s.tmp", bad);
    CHECK(!file_exists(tmp), "failed commit left the temp file");
    CHECK(file_exists(inner), "failed commit touched the target");
    unlink(inner);
    rmdir(bad);
}

static void rm_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(tmpdir);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_npz.XXXXXX", base && strlen(base) < 40 ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    CHECK(ms_crc32(0, "123456789", 9) == 0xCBF43926u, "crc32 check value");
    CHECK(ms_dtype_size(MS_DT_F2) == 2 && ms_dtype_size(MS_DT_I8) == 8 && ms_dtype_size(MS_DT_COUNT) == 0, "sizes");
    CHECK(strcmp(ms_dtype_name(MS_DT_F4), "float32") == 0 && strcmp(ms_dtype_name(MS_DT_U1), "uint8") == 0, "names");
    test_dtypes();
    test_scalars_fortran();
    test_course();
    test_odd_and_zip64();
    test_open_errors();
    test_truncations();
    test_flips();
    test_lying_sizes();
    test_crc_stored();
    test_crc_deflated();
    test_headers();
    test_fortran();
    test_writer();
    rm_tmpdir();
    return TEST_END();
}
