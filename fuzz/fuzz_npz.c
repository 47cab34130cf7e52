/* libFuzzer harness: the npz/npy reader (core/npz.c) and the dataset loader (core/data.c).
 *
 * The input is an .npz file. It is opened twice, from memory (ms_npz_open_mem, the upload path)
 * and from a file descriptor (ms_npz_open on a memfd: the pread/bounded-inflate-buffer path that
 * training and `marsseg pack` use), and both must agree on everything. For every array (the
 * first NPZ_MAX_KEYS): ms_npz_info, then, if count * 8 bytes fits NPZ_MAX_ARRAY_BYTES, every
 * reader (f64, f32, i64, u8, stream) and the results are cross-checked: they read the same bytes,
 * so they must succeed or fail together and deliver the same values. Finally ms_dataset_load
 * runs on the file for the first few keys, and what it returns must be a valid dataset. */
#include "marsseg.h"
#include "marsseg_npz.h"
#include "fuzz_common.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPZ_MAX_ARRAY_BYTES ((size_t)64 << 20) /* skip arrays whose count * 8 exceeds this */
#define NPZ_MAX_KEYS 16                         /* arrays examined per input */
#define NPZ_DATASET_KEYS 4                      /* keys tried with ms_dataset_load */

static int npz_same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

typedef struct {
    const double *ref; /* read_f64's values when it succeeded, else NULL */
    int64_t seen, count;
} npz_stream_ctx;

static ms_status npz_stream_cb(void *user, int64_t first, const double *vals, size_t n) {
    npz_stream_ctx *c = user;
    FUZZ_CHECK(first == c->seen, "stream chunk at %lld, expected %lld", (long long)first, (long long)c->seen);
    FUZZ_CHECK(n > 0 && (int64_t)n <= c->count - first, "stream chunk of %zu at %lld of %lld", n,
               (long long)first, (long long)c->count);
    if (c->ref)
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(npz_same_bits(vals[i], c->ref[first + (int64_t)i]), "stream value %lld differs",
                       (long long)first + (long long)i);
    c->seen += (int64_t)n;
    return MS_OK;
}

/* A memfd (or, failing that, an unlinked temp file) holding the current input, and a path that
 * opens it. */
static int npz_fd = -1;
static char npz_path[64];

static int npz_put_file(const uint8_t *data, size_t size) {
    if (npz_fd < 0) {
        npz_fd = memfd_create("fuzz_npz", 0);
        if (npz_fd < 0) {
            char tmpl[] = "/tmp/fuzz_npz.XXXXXX";
            npz_fd = mkstemp(tmpl);
            if (npz_fd < 0) return -1;
            unlink(tmpl);
        }
        snprintf(npz_path, sizeof npz_path, "/proc/self/fd/%d", npz_fd);
    }
    if (ftruncate(npz_fd, 0) != 0) return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t w = pwrite(npz_fd, data + off, size - off, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        off += (size_t)w;
    }
    return 0;
}

static void npz_check_info(const ms_npy_info *in) {
    FUZZ_CHECK((unsigned)in->dtype < MS_DT_COUNT, "dtype %d", (int)in->dtype);
    FUZZ_CHECK(in->ndim >= 0 && in->ndim <= MS_NPY_MAXDIM, "ndim %d", in->ndim);
    int64_t c = 1;
    for (int d = 0; d < in->ndim; d++) {
        FUZZ_CHECK(in->shape[d] >= 0, "negative dimension %lld", (long long)in->shape[d]);
        c *= in->shape[d]; /* the reader refused overflowing products already */
    }
    FUZZ_CHECK(c == in->count, "count %lld != product of shape %lld", (long long)in->count, (long long)c);
}

/* Every reader on one array; zf (may be NULL) is the same archive opened from a file. */
static void npz_read_key(ms_npz *z, ms_npz *zf, const char *key) {
    ms_npy_info info, finfo;
    ms_status st = ms_npz_info(z, key, &info);
    if (zf) {
        ms_status fst = ms_npz_info(zf, key, &finfo);
        FUZZ_CHECK(fst == st, "info of '%s': memory %d, file %d", key, (int)st, (int)fst);
        if (st == MS_OK) {
            FUZZ_CHECK(finfo.dtype == info.dtype && finfo.ndim == info.ndim && finfo.count == info.count &&
                           finfo.big_endian == info.big_endian &&
                           memcmp(finfo.shape, info.shape, sizeof info.shape) == 0,
                       "info of '%s' differs between memory and file", key);
        }
    }
    if (st != MS_OK) {
        /* the readers parse the same header: they must fail as well */
        double dummy;
        FUZZ_CHECK(ms_npz_read_f64(z, key, &dummy, 1) != MS_OK, "info failed but read_f64 did not");
        return;
    }
    npz_check_info(&info);
    if ((uint64_t)info.count > NPZ_MAX_ARRAY_BYTES / 8) return;
    const size_t n = (size_t)info.count, alloc = n ? n : 1;
    /* a wrong element count is refused before anything is read */
    {
        double two[2];
        ms_status s2 = ms_npz_read_f64(z, key, two, n == 1 ? 2 : 1);
        FUZZ_CHECK(s2 == MS_ERR_SHAPE, "read_f64 of %zu elements with a wrong count gave %d", n, (int)s2);
    }
    double *f64 = malloc(alloc * sizeof *f64);
    float *f32 = malloc(alloc * sizeof *f32);
    int64_t *i64 = malloc(alloc * sizeof *i64);
    uint8_t *u8 = malloc(alloc);
    if (!f64 || !f32 || !i64 || !u8) goto out;

    const ms_status s64 = ms_npz_read_f64(z, key, f64, n);
    if (zf) {
        double *ff = malloc(alloc * sizeof *ff);
        if (ff) {
            ms_status fs = ms_npz_read_f64(zf, key, ff, n);
            FUZZ_CHECK(fs == s64, "read_f64 of '%s': memory %d, file %d", key, (int)s64, (int)fs);
            if (fs == MS_OK)
                for (size_t i = 0; i < n; i++)
                    FUZZ_CHECK(npz_same_bits(ff[i], f64[i]), "file and memory values differ at %zu", i);
            free(ff);
        }
    }
    const ms_status s32 = ms_npz_read_f32(z, key, f32, n);
    FUZZ_CHECK(s32 == s64, "read_f32 %d but read_f64 %d", (int)s32, (int)s64);
    if (s64 == MS_OK)
        for (size_t i = 0; i < n; i++) {
            if (isnan(f64[i])) {
                FUZZ_CHECK(isnan(f32[i]), "NaN lost at %zu", i);
            } else if (info.dtype == MS_DT_I8) { /* int64 -> double -> float may round twice */
                FUZZ_CHECK(fabs((double)f32[i] - f64[i]) <= fabs(f64[i]) * 0x1p-23, "f32/f64 at %zu", i);
            } else {
                FUZZ_CHECK(f32[i] == (float)f64[i], "f32 %g != f64 %g at %zu", (double)f32[i], f64[i], i);
            }
        }
    const int is_float = info.dtype == MS_DT_F2 || info.dtype == MS_DT_F4 || info.dtype == MS_DT_F8;
    const ms_status si = ms_npz_read_i64(z, key, i64, n);
    if (is_float) {
        FUZZ_CHECK(si == MS_ERR_SHAPE, "read_i64 of a float array gave %d", (int)si);
    } else {
        FUZZ_CHECK(si == s64, "read_i64 %d but read_f64 %d", (int)si, (int)s64);
        if (si == MS_OK)
            for (size_t i = 0; i < n; i++) FUZZ_CHECK((double)i64[i] == f64[i], "i64/f64 differ at %zu", i);
    }
    const ms_status su = ms_npz_read_u8(z, key, u8, n);
    if (info.dtype != MS_DT_U1) {
        FUZZ_CHECK(su == MS_ERR_SHAPE, "read_u8 of a %s array gave %d", ms_dtype_name(info.dtype), (int)su);
    } else {
        FUZZ_CHECK(su == s64, "read_u8 %d but read_f64 %d", (int)su, (int)s64);
        if (su == MS_OK)
            for (size_t i = 0; i < n; i++) FUZZ_CHECK((double)u8[i] == f64[i], "u8/f64 differ at %zu", i);
    }
    npz_stream_ctx sc = {s64 == MS_OK ? f64 : NULL, 0, info.count};
    const ms_status ss = ms_npz_stream(z, key, npz_stream_cb, &sc);
    FUZZ_CHECK(ss == s64, "stream %d but read_f64 %d", (int)ss, (int)s64);
    if (ss == MS_OK) FUZZ_CHECK(sc.seen == info.count, "stream delivered %lld of %lld", (long long)sc.seen, (long long)info.count);
out:
    free(f64);
    free(f32);
    free(i64);
    free(u8);
}

/* What ms_dataset_load returned against the array as read_f64 delivers it: images are the
 * values rounded (or, for a float set entirely in 0..1, scaled by 255 and rounded), masks the
 * values themselves, de-interleaved from (N,2,H,W) or taken from (N,H,W). */
static void npz_check_dataset_values(ms_npz *z, const char *key, const ms_dataset *ds) {
    const size_t hw = (size_t)ds->h * (size_t)ds->w, n = (size_t)ds->n * hw * (ds->mask ? 2 : 1);
    if (n > NPZ_MAX_ARRAY_BYTES / 8) return;
    double *v = malloc(n * sizeof *v);
    if (!v) return;
    ms_status st = ms_npz_read_f64(z, key, v, n);
    FUZZ_CHECK(st == MS_OK, "dataset '%s' loaded but read_f64 gives %d: %s", key, (int)st, ms_last_error());
    const int unit = strcmp(ds->img_range, "0..1") == 0;
    for (size_t e = 0; e < n; e++) {
        const size_t blk = e / hw, off = e % hw;
        const int is_mask = ds->mask && (blk & 1);
        const size_t at = (ds->mask ? blk / 2 : blk) * hw + off;
        if (is_mask) {
            FUZZ_CHECK(ds->mask[at] == (uint8_t)v[e], "mask %u at %zu but the array holds %.17g", ds->mask[at], at, v[e]);
        } else {
            const uint8_t want = (uint8_t)(unit ? v[e] * 255.0 + 0.5 : v[e] + 0.5);
            FUZZ_CHECK(ds->img[at] == want, "image %u at %zu but the array holds %.17g (range %s)", ds->img[at], at,
                       v[e], ds->img_range);
        }
    }
    free(v);
}

static void npz_check_dataset(const ms_dataset *ds) {
    FUZZ_CHECK(ds->n >= 1 && ds->h >= 1 && ds->w >= 1 && ds->img, "dataset %d x %d x %d", ds->n, ds->h, ds->w);
    FUZZ_CHECK(strcmp(ds->img_range, "0..255") == 0 || strcmp(ds->img_range, "0..1") == 0, "img_range '%s'",
               ds->img_range);
    const size_t total = (size_t)ds->n * (size_t)ds->h * (size_t)ds->w;
    volatile unsigned sum = 0; /* touch every image byte: ASan checks the allocation's size */
    for (size_t i = 0; i < total; i++) sum += ds->img[i];
    if (ds->mask)
        for (size_t i = 0; i < total; i++) FUZZ_CHECK(ds->mask[i] < MS_NUM_CLASSES, "mask value %u", ds->mask[i]);
    (void)sum;
}

static int fuzz_npz_one(const uint8_t *data, size_t size) {
    ms_npz *z = NULL, *zf = NULL;
    const ms_status st = ms_npz_open_mem(&z, data, size, "fuzz.npz");
    const int have_file = npz_put_file(data, size) == 0;
    if (have_file) {
        ms_status fst = ms_npz_open(&zf, npz_path);
        FUZZ_CHECK(fst == st, "open: memory %d (%s), file %d", (int)st, st ? "failed" : "ok", (int)fst);
    }
    if (st != MS_OK) {
        FUZZ_CHECK(!z && !zf, "a failed open must leave the handle NULL");
        FUZZ_CHECK(ms_last_error()[0] != 0, "a failure without a detail");
        return 0;
    }
    const int count = ms_npz_count(z);
    FUZZ_CHECK(count >= 0 && (!zf || ms_npz_count(zf) == count), "count %d", count);
    FUZZ_CHECK(ms_npz_key(z, count) == NULL && ms_npz_key(z, -1) == NULL, "key out of range");
    for (int i = 0; i < count && i < NPZ_MAX_KEYS; i++) {
        const char *key = ms_npz_key(z, i);
        FUZZ_CHECK(key && ms_npz_has(z, key), "key %d", i);
        FUZZ_CHECK(!zf || strcmp(ms_npz_key(zf, i), key) == 0, "key %d differs", i);
        npz_read_key(z, zf, key);
    }
    if (!ms_npz_has(z, "\x01missing")) {
        ms_npy_info info;
        FUZZ_CHECK(ms_npz_info(z, "\x01missing", &info) == MS_ERR_NOTFOUND, "missing key");
    }
    if (have_file) {
        ms_dataset ds;
        if (!ms_npz_has(z, "\x01missing")) /* the error lists the keys there are */
            FUZZ_CHECK(ms_dataset_load(&ds, npz_path, "\x01missing", NPZ_MAX_ARRAY_BYTES) == MS_ERR_NOTFOUND,
                       "dataset_load of a missing key");
        for (int i = 0; i < count && i < NPZ_DATASET_KEYS; i++) {
            if (ms_dataset_load(&ds, npz_path, ms_npz_key(z, i), NPZ_MAX_ARRAY_BYTES) == MS_OK) {
                npz_check_dataset(&ds);
                npz_check_dataset_values(z, ms_npz_key(z, i), &ds);
                ms_dataset_free(&ds);
            }
        }
    }
    ms_npz_close(zf);
    ms_npz_close(z);
    return 0;
}

FUZZ_ENTRY(fuzz_npz_one)

#ifndef MS_FUZZ_REGRESS
/* Custom mutator (FUZZ_CHECKSUM_MUTATOR): every entry's CRC-32 recomputed in
 * the central directory, the local header and any data descriptor. Without it nearly every
 * mutated array fails its CRC check at the end of the read, and the paths that follow a
 * successful read (conversions, ms_dataset_load's mask checks and de-interleaving) would only
 * ever see the seeds' shapes. The reader still gets the bytes exactly as they are. */
static uint32_t mz_rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t mz_rd32(const uint8_t *p) { return mz_rd16(p) | mz_rd16(p + 2) << 16; }
static uint64_t mz_rd64(const uint8_t *p) { return mz_rd32(p) | (uint64_t)mz_rd32(p + 4) << 32; }
static void mz_wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* CRC-32 of the uncompressed entry; *ok = 0 when it cannot be had cheaply. */
static uint32_t mz_entry_crc(const uint8_t *d, size_t n, int method, int *ok) {
    uLong crc = 0;
    size_t used;
    *ok = method == 0 || (method == 8 && fuzz_inflate_sum(d, n, crc32, &crc, &used));
    return method == 0 ? (uint32_t)crc32(0, d, (uInt)n) : (uint32_t)crc;
}

static void mz_fix_crcs(uint8_t *d, size_t n) {
    for (size_t c = 0; c + 46 <= n; c++) {
        if (mz_rd32(d + c) != 0x02014b50u) continue;
        uint32_t flags = mz_rd16(d + c + 8), method = mz_rd16(d + c + 10);
        uint64_t csize = mz_rd32(d + c + 20), usize = mz_rd32(d + c + 24), loff = mz_rd32(d + c + 42);
        size_t nlen = mz_rd16(d + c + 28), xlen = mz_rd16(d + c + 30);
        if (c + 46 + nlen + xlen > n) continue;
        const uint8_t *x = d + c + 46 + nlen;
        for (size_t p = 0; p + 4 <= xlen;) { /* zip64: the saturated fields, in this order */
            size_t id = mz_rd16(x + p), sz = mz_rd16(x + p + 2), q = p + 4;
            if (p + 4 + sz > xlen) break;
            if (id == 1) {
                if (usize == 0xFFFFFFFFu && q + 8 <= p + 4 + sz) { usize = mz_rd64(x + q); q += 8; }
                if (csize == 0xFFFFFFFFu && q + 8 <= p + 4 + sz) { csize = mz_rd64(x + q); q += 8; }
                if (loff == 0xFFFFFFFFu && q + 8 <= p + 4 + sz) loff = mz_rd64(x + q);
                break;
            }
            p += 4 + sz;
        }
        if (loff > n || n - loff < 30 || mz_rd32(d + loff) != 0x04034b50u) continue;
        uint64_t doff = loff + 30 + mz_rd16(d + loff + 26) + mz_rd16(d + loff + 28);
        if (doff > n || csize > n - doff) continue;
        int ok;
        uint32_t crc = mz_entry_crc(d + doff, (size_t)csize, (int)method, &ok);
        if (!ok) continue;
        mz_wr32(d + c + 16, crc);
        if (!(flags & 8)) {
            mz_wr32(d + loff + 14, crc);
        } else if (doff + csize + 4 <= n) { /* data descriptor, with or without its signature */
            uint64_t dd = doff + csize;
            if (mz_rd32(d + dd) == 0x08074b50u) dd += 4;
            if (dd + 4 <= n) mz_wr32(d + dd, crc);
        }
    }
}

FUZZ_CHECKSUM_MUTATOR(mz_fix_crcs)
#endif
