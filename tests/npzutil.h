/* Shared helpers of the npz tests (test_npz, test_npz_write, test_npz_corrupt, test_npy): whole
 * files in and out of memory, a temp directory, CHECK_ERR (a refusal whose detail names the file),
 * the value patterns of the fixtures in tests/fixtures/npz (made by tools/make_npz_fixtures.py,
 * recomputed here), little-endian fields, and archives built byte by byte. Include after
 * testutil.h. */
#ifndef MS_NPZUTIL_H
#define MS_NPZUTIL_H

#include "marsseg_npz.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* static, and unused in some of the programs that include this */
#define NU_FN static __attribute__((unused))

#define FIX "tests/fixtures/npz/"

/* ------------------------------------------------------------------ files */
NU_FN char tmpdir[64];

NU_FN uint8_t *slurp(const char *path, size_t *len) {
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

NU_FN int spit(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(buf, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

NU_FN uint8_t *dup_bytes(const uint8_t *b, size_t len) {
    uint8_t *c = malloc(len ? len : 1); /* exact size, so ASan catches reads past len */
    if (len) memcpy(c, b, len);
    return c;
}

NU_FN int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* A fresh temp directory $TMPDIR/<name>.XXXXXX in tmpdir; 0 or -1 (perror'd). */
NU_FN int make_tmpdir(const char *name) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/%s.XXXXXX", base && strlen(base) < 40 ? base : "/tmp", name);
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

NU_FN void rm_tmpdir(void) {
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
NU_FN const char *const CODES[] = {"u1", "i1", "u2", "i2", "i4", "i8", "f2", "f4", "f8"};
NU_FN const ms_dtype CODE_T[] = {MS_DT_U1, MS_DT_I1, MS_DT_U2, MS_DT_I2, MS_DT_I4,
                                  MS_DT_I8, MS_DT_F2, MS_DT_F4, MS_DT_F8};
NU_FN const uint16_t F2_BITS[] = {0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xC000,
                                   0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x3555, 0x1234, 0x0200};

NU_FN int64_t ival(int c, int i) {
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
NU_FN uint16_t f2_bits(int i) { return i < 16 ? F2_BITS[i] : (uint16_t)((i * 977) & 0xFFFF); }
/* reference half decoding, written independently of core/npz.c */
NU_FN double half_ref(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}
NU_FN double dval(int c, int i) {
    if (c <= 5) return (double)ival(c, i);
    if (c == 6) return half_ref(f2_bits(i));
    if (c == 7) return (i - 30) * 0.25;
    return (i - 30) * 0.1;
}
NU_FN int same_d(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

typedef struct {
    double sum;
    int64_t next;
    int calls, nan;
} stream_acc;

NU_FN ms_status acc_cb(void *user, int64_t first, const double *v, size_t n) {
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

NU_FN ms_status stop_cb(void *user, int64_t first, const double *v, size_t n) {
    (void)first, (void)v, (void)n;
    ++*(int *)user;
    return MS_ERR_CANCELLED;
}

/* Open the fixture at path and run check on it. */
NU_FN void check_file(const char *path, void (*check)(ms_npz *z, const char *label)) {
    ms_npz *z = NULL;
    CHECK_OK(ms_npz_open(&z, path));
    if (z) check(z, path);
    ms_npz_close(z);
}

/* ------------------------------------------------------------------ little-endian fields */
NU_FN uint16_t g16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
NU_FN uint32_t g32(const uint8_t *p) { return g16(p) | (uint32_t)g16(p + 2) << 16; }
NU_FN void p32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
NU_FN void p16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
/* offset of the n-th occurrence of a 4-byte signature */
NU_FN size_t find_sig(const uint8_t *b, size_t len, const char *sig, int nth) {
    for (size_t i = 0; i + 4 <= len; i++)
        if (memcmp(b + i, sig, 4) == 0 && nth-- == 0) return i;
    return (size_t)-1;
}

/* ------------------------------------------------------------------ archives built byte by byte */
typedef struct {
    uint8_t *b;
    size_t len, cap;
} buf_t;
NU_FN void put(buf_t *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->b = realloc(b->b, b->cap);
    }
    memcpy(b->b + b->len, p, n);
    b->len += n;
}
NU_FN void put16(buf_t *b, uint32_t v) { uint8_t x[2]; p16(x, v); put(b, x, 2); }
NU_FN void put32(buf_t *b, uint32_t v) { uint8_t x[4]; p32(x, v); put(b, x, 4); }

/* A one-entry stored zip "a.npy" with the given content (correct CRC and sizes). */
NU_FN buf_t zip1(const uint8_t *content, size_t n) {
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
NU_FN buf_t npy(int major, const char *hdr, size_t payload) {
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

#endif
