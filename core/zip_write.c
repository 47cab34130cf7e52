/* Zip container, writing (see zip.h): stored members streamed into an ms_atomic_file, then
 * the central directory and the end records; zip64 records only where a size, an offset or the
 * member count needs them, so that small archives stay plain zip (numpy reads both). */
#define _FILE_OFFSET_BITS 64

#include "zip.h"
#include "marsseg_io.h"
#include "marsseg_npz.h" /* ms_crc32 */
#include "util.h"

#include <stdlib.h>
#include <string.h>

static void wr16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, v & 0xFFFF); wr16(p + 2, v >> 16); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }

/* The writer switches to zip64 records at this size/offset (overridable for testing the
 * zip64 path with small files: -DMS_NPZ_ZIP64_LIMIT=1000). */
#ifndef MS_NPZ_ZIP64_LIMIT
#define MS_NPZ_ZIP64_LIMIT ZIP_U32_MAX_FIELD
#endif
#ifndef MS_NPZ_ZIP64_COUNT
#define MS_NPZ_ZIP64_COUNT ZIP_U16_MAX_FIELD
#endif


typedef struct {
    char *name;
    size_t name_len;
    uint64_t off, size;
    uint32_t crc;
    int utf8;
} wentry;

struct ms_zip_writer {
    char *path;
    ms_atomic_file *f;
    uint64_t off; /* bytes written so far */
    wentry *e;
    size_t n, cap;
};

static void writer_free(ms_zip_writer *w) {
    for (size_t i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    free(w->path);
    free(w);
}

ms_status ms_zip_writer_open(ms_zip_writer **out, const char *path) {
    if (!out || !path || !*path) return ms_fail(MS_ERR_ARG, "ms_npz_writer_open: missing path");
    *out = NULL;
    ms_zip_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        if (w) writer_free(w);
        return ms_fail(MS_ERR_NOMEM, "%s: out of memory", path);
    }
    ms_status st = ms_atomic_open(&w->f, path);
    if (st) {
        writer_free(w);
        return st;
    }
    *out = w;
    return MS_OK;
}

const char *ms_zip_writer_path(const ms_zip_writer *w) { return w->path; }

/* A failed write marks the temp file broken: later writes fail, and so does the commit. */
static ms_status wput(ms_zip_writer *w, const void *buf, size_t len) {
    ms_status st = ms_atomic_write(w->f, buf, len);
    if (!st) w->off += len;
    return st;
}

ms_status ms_zip_writer_add(ms_zip_writer *w, const char *name, const void *const *piece,
                            const size_t *piece_len, int n) {
    if (!w || !name || (n > 0 && (!piece || !piece_len))) return ms_fail(MS_ERR_ARG, "zip writer: NULL argument");
    size_t nlen = strlen(name);
    if (nlen > ZIP_U16_MAX_FIELD) return ms_fail(MS_ERR_ARG, "%s: entry name of %zu bytes is too long", w->path, nlen);
    for (size_t i = 0; i < w->n; i++)
        if (w->e[i].name_len == nlen && memcmp(w->e[i].name, name, nlen) == 0)
            return ms_fail(MS_ERR_ARG, "%s: '%s' added twice", w->path, name);
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 8;
        wentry *ne = realloc(w->e, nc * sizeof *ne);
        if (!ne) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", w->path);
        w->e = ne;
        w->cap = nc;
    }
    wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name))) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", w->path);
    e->name_len = nlen;
    for (size_t i = 0; i < nlen; i++)
        if ((unsigned char)name[i] >= 0x80) e->utf8 = 1; /* general purpose flag bit 11 */
    e->off = w->off;
    for (int i = 0; i < n; i++) {
        e->size += piece_len[i];
        e->crc = ms_crc32(e->crc, piece[i], piece_len[i]);
    }
    w->n++; /* from here on an I/O failure breaks the temp file; the entry is freed with w */

    int z64 = e->size >= MS_NPZ_ZIP64_LIMIT;
    uint8_t lh[ZIP_LOCAL_LEN + 20];
    wr32(lh, ZIP_SIG_LOCAL);
    wr16(lh + 4, z64 ? 45 : 20);
    wr16(lh + 6, e->utf8 ? 0x800 : 0);
    wr16(lh + 8, 0);        /* stored */
    wr16(lh + 10, 0);       /* 00:00:00 */
    wr16(lh + 12, 0x21);    /* 1980-01-01: fixed, so output is reproducible */
    wr32(lh + 14, e->crc);
    wr32(lh + 18, z64 ? (uint32_t)ZIP_U32_MAX_FIELD : (uint32_t)e->size);
    wr32(lh + 22, z64 ? (uint32_t)ZIP_U32_MAX_FIELD : (uint32_t)e->size);
    wr16(lh + 26, (uint32_t)e->name_len);
    wr16(lh + 28, z64 ? 20 : 0);
    if (z64) {
        wr16(lh + 30, 1);
        wr16(lh + 32, 16);
        wr64(lh + 34, e->size);
        wr64(lh + 42, e->size);
    }
    ms_status st;
    if ((st = wput(w, lh, ZIP_LOCAL_LEN)) || (st = wput(w, e->name, e->name_len)) ||
        (z64 && (st = wput(w, lh + ZIP_LOCAL_LEN, 20))))
        return st;
    for (int i = 0; i < n; i++)
        if ((st = wput(w, piece[i], piece_len[i]))) return st;
    return MS_OK;
}

/* The central directory header of e (with its zip64 extra field when needed) into ch; returns
 * the length of the extra field, which follows the name. */
static size_t central_header(const wentry *e, uint8_t ch[ZIP_CENTRAL_LEN + 28]) {
    int big = e->size >= MS_NPZ_ZIP64_LIMIT, far = e->off >= MS_NPZ_ZIP64_LIMIT;
    size_t xl = 0;
    uint8_t *x = ch + ZIP_CENTRAL_LEN;
    if (big || far) {
        xl = 4 + 16 * (size_t)big + 8 * (size_t)far;
        wr16(x, 1);
        wr16(x + 2, (uint32_t)(xl - 4));
        size_t q = 4;
        if (big) { wr64(x + q, e->size); wr64(x + q + 8, e->size); q += 16; }
        if (far) wr64(x + q, e->off);
    }
    wr32(ch, ZIP_SIG_CENTRAL);
    wr16(ch + 4, 0x0300 | (big || far ? 45 : 20)); /* made by: Unix */
    wr16(ch + 6, big || far ? 45 : 20);
    wr16(ch + 8, e->utf8 ? 0x800 : 0);
    wr16(ch + 10, 0);
    wr16(ch + 12, 0);
    wr16(ch + 14, 0x21);
    wr32(ch + 16, e->crc);
    wr32(ch + 20, big ? (uint32_t)ZIP_U32_MAX_FIELD : (uint32_t)e->size);
    wr32(ch + 24, big ? (uint32_t)ZIP_U32_MAX_FIELD : (uint32_t)e->size);
    wr16(ch + 28, (uint32_t)e->name_len);
    wr16(ch + 30, (uint32_t)xl);
    wr16(ch + 32, 0);
    wr16(ch + 34, 0);
    wr16(ch + 36, 0);
    wr32(ch + 38, 0100644u << 16); /* regular file, rw-r--r-- */
    wr32(ch + 42, far ? (uint32_t)ZIP_U32_MAX_FIELD : (uint32_t)e->off);
    return xl;
}

/* The end records into end; returns their length. */
static size_t end_records(uint8_t end[ZIP_EOCD64_LEN + ZIP_LOC64_LEN + ZIP_EOCD_LEN], uint64_t n, uint64_t cd_off,
                          uint64_t cd_size) {
    int z64 = n >= MS_NPZ_ZIP64_COUNT || cd_off >= MS_NPZ_ZIP64_LIMIT || cd_size >= MS_NPZ_ZIP64_LIMIT;
    size_t el = 0;
    if (z64) {
        uint64_t rec = cd_off + cd_size;
        wr32(end, ZIP_SIG_EOCD64);
        wr64(end + 4, ZIP_EOCD64_LEN - 12);
        wr16(end + 12, 0x0300 | 45);
        wr16(end + 14, 45);
        wr32(end + 16, 0);
        wr32(end + 20, 0);
        wr64(end + 24, n);
        wr64(end + 32, n);
        wr64(end + 40, cd_size);
        wr64(end + 48, cd_off);
        wr32(end + 56, ZIP_SIG_LOC64);
        wr32(end + 60, 0);
        wr64(end + 64, rec);
        wr32(end + 72, 1);
        el = ZIP_EOCD64_LEN + ZIP_LOC64_LEN;
    }
    uint8_t *eo = end + el;
    wr32(eo, ZIP_SIG_EOCD);
    wr16(eo + 4, 0);
    wr16(eo + 6, 0);
    wr16(eo + 8, z64 ? ZIP_U16_MAX_FIELD : (uint32_t)n);
    wr16(eo + 10, z64 ? ZIP_U16_MAX_FIELD : (uint32_t)n);
    wr32(eo + 12, z64 ? (uint32_t)ZIP_U32_MAX_FIELD : (uint32_t)cd_size);
    wr32(eo + 16, z64 ? (uint32_t)ZIP_U32_MAX_FIELD : (uint32_t)cd_off);
    wr16(eo + 20, 0);
    return el + ZIP_EOCD_LEN;
}

ms_status ms_zip_writer_commit(ms_zip_writer *w) {
    if (!w) return ms_fail(MS_ERR_ARG, "ms_npz_writer_commit: NULL writer");
    ms_status st = MS_OK;
    uint64_t cd_off = w->off;
    for (size_t i = 0; i < w->n; i++) {
        uint8_t ch[ZIP_CENTRAL_LEN + 28];
        size_t xl = central_header(&w->e[i], ch);
        if ((st = wput(w, ch, ZIP_CENTRAL_LEN)) || (st = wput(w, w->e[i].name, w->e[i].name_len)) ||
            (st = wput(w, ch + ZIP_CENTRAL_LEN, xl)))
            goto cleanup;
    }
    uint8_t end[ZIP_EOCD64_LEN + ZIP_LOC64_LEN + ZIP_EOCD_LEN];
    if ((st = wput(w, end, end_records(end, w->n, cd_off, w->off - cd_off)))) goto cleanup;
    st = ms_atomic_commit(w->f); /* an earlier failed write makes this fail too */
    w->f = NULL;
cleanup:
    ms_atomic_abort(w->f);
    writer_free(w);
    return st;
}

void ms_zip_writer_abort(ms_zip_writer *w) {
    if (!w) return;
    ms_atomic_abort(w->f);
    writer_free(w);
}
