/* The npz writer (ms_npz_writer_*): every dtype, 0-d and empty arrays and a UTF-8 key read back;
 * argument errors that leave the writer usable; nothing visible before commit, abort keeping the
 * old file, numpy's layout (header text, 64-byte aligned data), an empty archive, and failures
 * (a missing directory, a commit onto a non-empty directory) that name the path and leave no
 * temp file. */
#include "marsseg_npz.h"
#include "testutil.h"
#include "npzutil.h"

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

int main(void) {
    if (make_tmpdir("test_npz_write")) return 1;
    test_writer();
    rm_tmpdir();
    return TEST_END();
}
