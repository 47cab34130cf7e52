/* The npy format inside an archive (core/npy.c): dtype sizes and names; header spellings that
 * numpy accepts, and the ones it does not (missing or repeated keys, bad shapes, overflowing or
 * lying sizes, unsupported dtypes and versions, a bad magic or header length); Fortran-order
 * arrays of every dtype read back in C order as numpy.load does, across conversion and stream
 * chunks, and a corrupt one refused before anything is delivered. */
#include "marsseg_npz.h"
#include "testutil.h"
#include "npzutil.h"

#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ npy headers */
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

int main(void) {
    CHECK(ms_dtype_size(MS_DT_F2) == 2 && ms_dtype_size(MS_DT_I8) == 8 && ms_dtype_size(MS_DT_COUNT) == 0, "sizes");
    CHECK(strcmp(ms_dtype_name(MS_DT_F4), "float32") == 0 && strcmp(ms_dtype_name(MS_DT_U1), "uint8") == 0, "names");
    test_headers();
    test_fortran();
    return TEST_END();
}
