/* NumPy .npz / .npy reading and writing (see npz.h).
 *
 * Reader layout: ms_npz_open/ms_npz_open_mem read the end-of-central-directory record (plain or
 * zip64) and the central directory only, validating every offset and size against the file
 * size. Reading an array opens an "entry reader" that checks the entry's local header against
 * the central directory, then delivers the uncompressed bytes (stored: pread/memcpy; deflate:
 * zlib inflate with a bounded input buffer) while computing the CRC-32, which is compared when
 * the entry has been read completely. Every size that leads to an allocation is bounded by
 * what the file can actually hold.
 *
 * Writer: stored entries, npy 1.0 headers padded like numpy's (data 64-byte aligned inside the
 * npy), zip64 records only when a size/offset/count needs them, atomic commit via <path>.tmp.
 */
#define _FILE_OFFSET_BITS 64
#define ZLIB_CONST

#include "marsseg_io.h"
#include "marsseg_npz.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------------ constants */
#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u
#define LOCAL_LEN 30u
#define CENTRAL_LEN 46u
#define EOCD_LEN 22u
#define EOCD64_LEN 56u
#define LOC64_LEN 20u
#define U32_MAX_FIELD 0xFFFFFFFFull
#define U16_MAX_FIELD 0xFFFFu

/* Deflate cannot expand more than ~1032:1; a larger declared ratio is a lie (or a bomb that
 * would make callers allocate from a size the file cannot contain). */
#define MAX_DEFLATE_RATIO 1032u
/* numpy itself refuses headers above 10000 bytes by default; 64 KiB is generous. */
#define NPY_MAX_HEADER 65536u
#define IO_CHUNK (256u * 1024u)     /* compressed input buffer for fd-backed archives */
#define OUT_PIECE (1u << 20)        /* inflate/CRC granularity, and the conversion chunk */
#define STREAM_ELEMS 65536u         /* elements per ms_npz_stream callback */

/* The writer switches to zip64 records at this size/offset (overridable for testing the
 * zip64 path with small files: -DMS_NPZ_ZIP64_LIMIT=1000). */
#ifndef MS_NPZ_ZIP64_LIMIT
#define MS_NPZ_ZIP64_LIMIT U32_MAX_FIELD
#endif
#ifndef MS_NPZ_ZIP64_COUNT
#define MS_NPZ_ZIP64_COUNT U16_MAX_FIELD
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HOST_BIG 1
#else
#define HOST_BIG 0
#endif

typedef unsigned long long ull; /* for printf */

/* ------------------------------------------------------------------ small helpers */
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, v & 0xFFFF); wr16(p + 2, v >> 16); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }

/* a + b <= limit without overflow */
static int fits(uint64_t a, uint64_t b, uint64_t limit) { return a <= limit && b <= limit - a; }

uint32_t ms_crc32(uint32_t crc, const void *buf, size_t len) {
    const unsigned char *p = buf;
    while (len > 0) { /* zlib's crc32 takes a uInt length */
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        crc = (uint32_t)crc32(crc, p, n);
        p += n;
        len -= n;
    }
    return crc;
}

static const struct {
    const char *name;
    char kind;
    unsigned size;
} dtype_tab[MS_DT_COUNT] = {
    [MS_DT_U1] = {"uint8", 'u', 1},   [MS_DT_I1] = {"int8", 'i', 1},
    [MS_DT_U2] = {"uint16", 'u', 2},  [MS_DT_I2] = {"int16", 'i', 2},
    [MS_DT_I4] = {"int32", 'i', 4},   [MS_DT_I8] = {"int64", 'i', 8},
    [MS_DT_F2] = {"float16", 'f', 2}, [MS_DT_F4] = {"float32", 'f', 4},
    [MS_DT_F8] = {"float64", 'f', 8},
};

size_t ms_dtype_size(ms_dtype t) { return (unsigned)t < MS_DT_COUNT ? dtype_tab[t].size : 0; }
const char *ms_dtype_name(ms_dtype t) { return (unsigned)t < MS_DT_COUNT ? dtype_tab[t].name : "invalid"; }

/* "(12000, 2, 64, 128)" */
static const char *fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, ndim == 1 ? ",)" : ")");
    return buf;
}

/* ------------------------------------------------------------------ archive handle */
typedef struct {
    char *key;          /* entry name without ".npy", NUL-terminated */
    size_t key_len;
    uint64_t local_off; /* offset of the local header */
    uint64_t csize, usize;
    uint32_t crc;
    uint16_t method, flags;
} zentry;

struct ms_npz {
    char *name;         /* path or label: every error message starts with it */
    int fd;             /* -1 for memory archives */
    const uint8_t *mem;
    uint64_t size;
    uint64_t cd_off;    /* entry data must end before the central directory */
    int n;
    zentry *e;          /* arrays in file order */
    zentry **sorted;    /* entries sorted by key, for lookup and duplicate detection */
};

/* Read len bytes at off (bounds-checked against the file size). */
static ms_status src_read(const ms_npz *z, uint64_t off, void *buf, size_t len) {
    if (!fits(off, len, z->size))
        return ms_fail(MS_ERR_FORMAT, "%s: truncated: %zu bytes needed at offset %llu, file has %llu",
                       z->name, len, (ull)off, (ull)z->size);
    if (z->mem) {
        if (len) memcpy(buf, z->mem + off, len);
        return MS_OK;
    }
    uint8_t *p = buf;
    while (len > 0) {
        size_t want = MS_MIN(len, (size_t)1 << 30);
        ssize_t r = pread(z->fd, p, want, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return ms_fail(MS_ERR_IO, "%s: read failed at offset %llu: %s", z->name, (ull)off,
                           strerror(errno));
        }
        if (r == 0)
            return ms_fail(MS_ERR_FORMAT, "%s: unexpected end of file at offset %llu (file shrank while open?)",
                           z->name, (ull)off);
        p += r;
        off += (uint64_t)r;
        len -= (size_t)r;
    }
    return MS_OK;
}

/* Find the zip64 extended-information extra field (id 1) in an extra block. */
static const uint8_t *find_zip64_extra(const uint8_t *x, size_t xlen, size_t *dlen) {
    size_t p = 0;
    while (xlen - p >= 4) {
        uint16_t id = rd16(x + p), sz = rd16(x + p + 2);
        if (sz > xlen - p - 4) return NULL; /* malformed block: treat as absent */
        if (id == 1) {
            *dlen = sz;
            return x + p + 4;
        }
        p += 4u + sz;
    }
    return NULL;
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp((*(const zentry *const *)a)->key, (*(const zentry *const *)b)->key);
}

/* Parse one central directory; fills z->e. cd points at cd_size bytes. */
static ms_status parse_central(ms_npz *z, const uint8_t *cd, uint64_t cd_size, uint64_t n_total) {
    const char *nm = z->name;
    z->e = calloc(n_total ? (size_t)n_total : 1, sizeof *z->e);
    if (!z->e) return ms_fail(MS_ERR_NOMEM, "%s: out of memory for %llu directory entries", nm, (ull)n_total);
    uint64_t pos = 0;
    for (uint64_t k = 0; k < n_total; k++) {
        if (cd_size - pos < CENTRAL_LEN)
            return ms_fail(MS_ERR_FORMAT, "%s: central directory entry %llu is truncated", nm, (ull)k);
        const uint8_t *h = cd + pos;
        if (rd32(h) != SIG_CENTRAL)
            return ms_fail(MS_ERR_FORMAT, "%s: central directory entry %llu has a bad signature", nm, (ull)k);
        uint16_t flags = rd16(h + 8), method = rd16(h + 10);
        uint32_t crc = rd32(h + 16);
        uint64_t csize = rd32(h + 20), usize = rd32(h + 24);
        size_t nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32);
        uint32_t disk = rd16(h + 34);
        uint64_t loff = rd32(h + 42);
        if (CENTRAL_LEN + nlen + xlen + clen > cd_size - pos)
            return ms_fail(MS_ERR_FORMAT, "%s: central directory entry %llu runs past the directory", nm, (ull)k);
        const uint8_t *name = h + CENTRAL_LEN, *extra = name + nlen;
        int need_u = usize == U32_MAX_FIELD, need_c = csize == U32_MAX_FIELD;
        int need_o = loff == U32_MAX_FIELD, need_d = disk == U16_MAX_FIELD;
        if (need_u || need_c || need_o || need_d) {
            /* zip64: only the fields whose 32/16-bit value is saturated are present, in order */
            size_t dlen = 0, q = 0;
            const uint8_t *d = find_zip64_extra(extra, xlen, &dlen);
            size_t want = 8u * (size_t)(need_u + need_c + need_o) + 4u * (size_t)need_d;
            if (!d || dlen < want)
                return ms_fail(MS_ERR_FORMAT, "%s: entry '%.*s': zip64 extra field missing or too short",
                               nm, (int)MS_MIN(nlen, 200), (const char *)name);
            if (need_u) { usize = rd64(d + q); q += 8; }
            if (need_c) { csize = rd64(d + q); q += 8; }
            if (need_o) { loff = rd64(d + q); q += 8; }
            if (need_d) disk = rd32(d + q);
        }
        pos += CENTRAL_LEN + nlen + xlen + clen;
        if (disk != 0)
            return ms_fail(MS_ERR_UNSUPPORTED, "%s: multi-disk zip archives are not supported", nm);
        /* sizes must fit between the local header and the central directory */
        if (!fits(loff, LOCAL_LEN, z->cd_off) || csize > z->cd_off - loff - LOCAL_LEN)
            return ms_fail(MS_ERR_FORMAT,
                           "%s: entry '%.*s': %llu bytes at offset %llu do not fit before the central "
                           "directory at %llu (lying sizes or truncated file)",
                           nm, (int)MS_MIN(nlen, 200), (const char *)name, (ull)csize, (ull)loff, (ull)z->cd_off);
        if (method == 0 && csize != usize)
            return ms_fail(MS_ERR_FORMAT, "%s: stored entry '%.*s' has compressed size %llu != size %llu",
                           nm, (int)MS_MIN(nlen, 200), (const char *)name, (ull)csize, (ull)usize);
        if (method == 8 && usize / MAX_DEFLATE_RATIO > csize + 1)
            return ms_fail(MS_ERR_FORMAT,
                           "%s: entry '%.*s' declares %llu bytes from only %llu compressed bytes (impossible ratio)",
                           nm, (int)MS_MIN(nlen, 200), (const char *)name, (ull)usize, (ull)csize);
        /* only "*.npy" members are arrays (numpy.savez writes nothing else); others are ignored */
        if (nlen < 4 || memcmp(name + nlen - 4, ".npy", 4) != 0) continue;
        if (memchr(name, 0, nlen))
            return ms_fail(MS_ERR_FORMAT, "%s: entry name contains a NUL byte", nm);
        zentry *e = &z->e[z->n];
        e->key_len = nlen - 4;
        e->key = malloc(e->key_len + 1);
        if (!e->key) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", nm);
        memcpy(e->key, name, e->key_len);
        e->key[e->key_len] = 0;
        e->local_off = loff;
        e->csize = csize;
        e->usize = usize;
        e->crc = crc;
        e->method = method;
        e->flags = flags;
        z->n++;
    }
    if (pos != cd_size)
        return ms_fail(MS_ERR_FORMAT, "%s: central directory has %llu bytes beyond its %llu entries",
                       nm, (ull)(cd_size - pos), (ull)n_total);
    z->sorted = malloc((size_t)(z->n ? z->n : 1) * sizeof *z->sorted);
    if (!z->sorted) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", nm);
    for (int i = 0; i < z->n; i++) z->sorted[i] = &z->e[i];
    qsort(z->sorted, (size_t)z->n, sizeof *z->sorted, entry_cmp);
    for (int i = 1; i < z->n; i++)
        if (strcmp(z->sorted[i - 1]->key, z->sorted[i]->key) == 0)
            return ms_fail(MS_ERR_FORMAT, "%s: array '%s' appears twice in the archive", nm, z->sorted[i]->key);
    return MS_OK;
}

/* Locate the end records and parse the central directory. */
static ms_status npz_parse(ms_npz *z) {
    const char *nm = z->name;
    ms_status st = MS_OK;
    uint8_t *tailbuf = NULL, *cdbuf = NULL;
    if (z->size == 0) return ms_fail(MS_ERR_FORMAT, "%s: empty file, not an npz archive", nm);
    if (z->size < EOCD_LEN)
        return ms_fail(MS_ERR_FORMAT, "%s: not an npz (zip) archive: only %llu bytes", nm, (ull)z->size);

    /* The end record is the last 22 bytes plus a comment of up to 65535 bytes. */
    size_t tail_len = (size_t)MS_MIN(z->size, (uint64_t)EOCD_LEN + 0xFFFF);
    uint64_t tail_off = z->size - tail_len;
    const uint8_t *tail;
    if (z->mem) {
        tail = z->mem + tail_off;
    } else {
        tailbuf = malloc(tail_len);
        if (!tailbuf) { st = ms_fail(MS_ERR_NOMEM, "%s: out of memory", nm); goto cleanup; }
        if ((st = src_read(z, tail_off, tailbuf, tail_len))) goto cleanup;
        tail = tailbuf;
    }
    size_t i = tail_len - EOCD_LEN;
    int found = 0;
    for (;; i--) {
        if (rd32(tail + i) == SIG_EOCD && rd16(tail + i + 20) == tail_len - i - EOCD_LEN) { found = 1; break; }
        if (i == 0) break;
    }
    if (!found) {
        uint8_t magic[6] = {0};
        if (z->size >= 6) src_read(z, 0, magic, 6);
        if (memcmp(magic, "\x93NUMPY", 6) == 0)
            st = ms_fail(MS_ERR_FORMAT, "%s: this is a single .npy array, not an .npz archive", nm);
        else if (memcmp(magic, "PK\3\4", 4) == 0)
            st = ms_fail(MS_ERR_FORMAT, "%s: zip archive without an end of central directory record (truncated?)", nm);
        else
            st = ms_fail(MS_ERR_FORMAT, "%s: not an npz (zip) archive", nm);
        goto cleanup;
    }
    uint64_t eocd = tail_off + i;
    const uint8_t *p = tail + i;
    uint32_t disk = rd16(p + 4), cd_disk = rd16(p + 6);
    uint64_t n_disk = rd16(p + 8), n_total = rd16(p + 10), cd_size = rd32(p + 12), cd_off = rd32(p + 16);
    uint64_t cd_end = eocd; /* where the central directory must end */

    if (eocd >= LOC64_LEN) {
        uint8_t loc[LOC64_LEN];
        if ((st = src_read(z, eocd - LOC64_LEN, loc, LOC64_LEN))) goto cleanup;
        if (rd32(loc) == SIG_LOC64) {
            uint32_t rdisk = rd32(loc + 4), ndisks = rd32(loc + 16);
            uint64_t roff = rd64(loc + 8), lpos = eocd - LOC64_LEN;
            if (rdisk != 0 || ndisks > 1) {
                st = ms_fail(MS_ERR_UNSUPPORTED, "%s: multi-disk zip archives are not supported", nm);
                goto cleanup;
            }
            if (!fits(roff, EOCD64_LEN, lpos)) {
                st = ms_fail(MS_ERR_FORMAT, "%s: zip64 end of central directory offset %llu is out of range", nm, (ull)roff);
                goto cleanup;
            }
            uint8_t r[EOCD64_LEN];
            if ((st = src_read(z, roff, r, EOCD64_LEN))) goto cleanup;
            if (rd32(r) != SIG_EOCD64 || rd64(r + 4) < EOCD64_LEN - 12 || rd64(r + 4) > lpos - roff - 12) {
                st = ms_fail(MS_ERR_FORMAT, "%s: bad zip64 end of central directory record", nm);
                goto cleanup;
            }
            disk = rd32(r + 16);
            cd_disk = rd32(r + 20);
            n_disk = rd64(r + 24);
            n_total = rd64(r + 32);
            cd_size = rd64(r + 40);
            cd_off = rd64(r + 48);
            cd_end = roff;
        }
    }
    if (disk != 0 || cd_disk != 0 || n_disk != n_total) {
        st = ms_fail(MS_ERR_UNSUPPORTED, "%s: multi-disk zip archives are not supported", nm);
        goto cleanup;
    }
    /* Strict: the directory ends exactly where the end record starts (no prepended data). */
    if (cd_off > cd_end || cd_size != cd_end - cd_off) {
        st = ms_fail(MS_ERR_FORMAT,
                     "%s: central directory (offset %llu, %llu bytes) does not end at the end record "
                     "(offset %llu): corrupt sizes or truncated file",
                     nm, (ull)cd_off, (ull)cd_size, (ull)cd_end);
        goto cleanup;
    }
    if (n_total > cd_size / CENTRAL_LEN) {
        st = ms_fail(MS_ERR_FORMAT, "%s: central directory claims %llu entries but its %llu bytes hold at most %llu",
                     nm, (ull)n_total, (ull)cd_size, (ull)(cd_size / CENTRAL_LEN));
        goto cleanup;
    }
    if (n_total > INT_MAX || cd_size > SIZE_MAX) {
        st = ms_fail(MS_ERR_LIMIT, "%s: too many entries (%llu)", nm, (ull)n_total);
        goto cleanup;
    }
    z->cd_off = cd_off;
    const uint8_t *cd;
    if (z->mem) {
        cd = z->mem + cd_off;
    } else {
        cdbuf = malloc(cd_size ? (size_t)cd_size : 1);
        if (!cdbuf) { st = ms_fail(MS_ERR_NOMEM, "%s: out of memory for the central directory", nm); goto cleanup; }
        if ((st = src_read(z, cd_off, cdbuf, (size_t)cd_size))) goto cleanup;
        cd = cdbuf;
    }
    st = parse_central(z, cd, cd_size, n_total);
cleanup:
    free(tailbuf);
    free(cdbuf);
    return st;
}

void ms_npz_close(ms_npz *z) {
    if (!z) return;
    if (z->fd >= 0) close(z->fd);
    if (z->e)
        for (int i = 0; i < z->n; i++) free(z->e[i].key);
    free(z->e);
    free(z->sorted);
    free(z->name);
    free(z);
}

static ms_npz *npz_new(const char *name) {
    ms_npz *z = calloc(1, sizeof *z);
    if (!z) return NULL;
    z->fd = -1;
    z->name = strdup(name);
    if (!z->name) { free(z); return NULL; }
    return z;
}

ms_status ms_npz_open(ms_npz **out, const char *path) {
    if (!out || !path) return ms_fail(MS_ERR_ARG, "ms_npz_open: NULL argument");
    *out = NULL;
    ms_npz *z = npz_new(path);
    if (!z) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", path);
    ms_status st;
    struct stat sb;
    z->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (z->fd < 0) {
        int err = errno;
        st = ms_fail(err == ENOENT ? MS_ERR_NOTFOUND : MS_ERR_IO, "%s: cannot open: %s", path, strerror(err));
        goto fail;
    }
    if (fstat(z->fd, &sb) != 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = ms_fail(MS_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    z->size = (uint64_t)sb.st_size;
    if ((st = npz_parse(z))) goto fail;
    *out = z;
    return MS_OK;
fail:
    ms_npz_close(z);
    return st;
}

ms_status ms_npz_open_mem(ms_npz **out, const void *data, size_t len, const char *label) {
    if (!label) label = "<memory>";
    if (!out || (!data && len)) return ms_fail(MS_ERR_ARG, "%s: ms_npz_open_mem: NULL argument", label);
    *out = NULL;
    ms_npz *z = npz_new(label);
    if (!z) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", label);
    static const uint8_t empty[1];
    z->mem = data ? data : empty; /* mem != NULL marks a memory archive */
    z->size = len;
    ms_status st = npz_parse(z);
    if (st) {
        ms_npz_close(z);
        return st;
    }
    *out = z;
    return MS_OK;
}

int ms_npz_count(const ms_npz *z) { return z ? z->n : 0; }

const char *ms_npz_key(const ms_npz *z, int i) {
    return z && i >= 0 && i < z->n ? z->e[i].key : NULL;
}

static const zentry *find_entry(const ms_npz *z, const char *key) {
    int lo = 0, hi = z->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const zentry *e = z->sorted[mid];
        int c = strcmp(key, e->key);
        if (c == 0) return e;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

int ms_npz_has(const ms_npz *z, const char *key) { return z && key && find_entry(z, key) != NULL; }

/* MS_ERR_NOTFOUND naming the key and the available ones (shortened to fit the detail). */
static ms_status not_found(const ms_npz *z, const char *key) {
    char list[320];
    size_t o = 0;
    list[0] = 0;
    for (int i = 0; i < z->n; i++) {
        size_t kl = z->e[i].key_len;
        if (o + kl + 8 >= sizeof list) {
            snprintf(list + o, sizeof list - o, "%s...", i ? ", " : "");
            break;
        }
        o += (size_t)snprintf(list + o, sizeof list - o, "%s'%s'", i ? ", " : "", z->e[i].key);
    }
    return ms_fail(MS_ERR_NOTFOUND, "%s: no array '%.100s' (available: %s)", z->name, key,
                   z->n ? list : "none");
}

/* ------------------------------------------------------------------ entry reader */
typedef struct {
    ms_npz *z;
    const zentry *e;
    uint64_t in_off;  /* file offset of the next compressed byte not yet handed to zlib */
    uint64_t in_left; /* compressed bytes not yet handed to zlib */
    uint64_t out_done;
    uint32_t crc;
    int zinit, zend;
    z_stream zs;
    uint8_t *inbuf;   /* fd archives only: bounded compressed input buffer */
} ereader;

static void er_close(ereader *r) {
    if (r->zinit) inflateEnd(&r->zs);
    r->zinit = 0;
    free(r->inbuf);
    r->inbuf = NULL;
}

/* Check the local header against the central directory and position at the entry data. */
static ms_status er_open(ereader *r, ms_npz *z, const zentry *e) {
    memset(r, 0, sizeof *r);
    r->z = z;
    r->e = e;
    const char *nm = z->name, *key = e->key;
    ms_status st;
    if (e->flags & 1)
        return ms_fail(MS_ERR_UNSUPPORTED, "%s: array '%s' is encrypted", nm, key);
    if (e->method != 0 && e->method != 8)
        return ms_fail(MS_ERR_UNSUPPORTED, "%s: array '%s' uses zip compression method %u (only stored and deflate are supported)",
                       nm, key, e->method);
    uint8_t h[LOCAL_LEN];
    if ((st = src_read(z, e->local_off, h, LOCAL_LEN))) return st;
    if (rd32(h) != SIG_LOCAL)
        return ms_fail(MS_ERR_FORMAT, "%s: array '%s': bad local header signature at offset %llu", nm, key,
                       (ull)e->local_off);
    uint16_t lflags = rd16(h + 6), lmethod = rd16(h + 8);
    uint32_t lcrc = rd32(h + 14);
    uint64_t lcsize = rd32(h + 18), lusize = rd32(h + 22);
    size_t nlen = rd16(h + 26), xlen = rd16(h + 28);
    uint64_t data_off = e->local_off + LOCAL_LEN + nlen + xlen; /* cannot overflow: local_off < cd_off */
    if (data_off > z->cd_off || e->csize > z->cd_off - data_off)
        return ms_fail(MS_ERR_FORMAT, "%s: array '%s': data (%llu bytes at offset %llu) runs into the central directory",
                       nm, key, (ull)e->csize, (ull)data_off);
    if (lmethod != e->method)
        return ms_fail(MS_ERR_FORMAT, "%s: array '%s': local header says method %u, central directory %u",
                       nm, key, lmethod, e->method);
    uint8_t *nx = malloc(nlen + xlen + 1);
    if (!nx) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", nm);
    if ((st = src_read(z, e->local_off + LOCAL_LEN, nx, nlen + xlen))) goto done;
    if (nlen != e->key_len + 4 || memcmp(nx, key, e->key_len) != 0 || memcmp(nx + e->key_len, ".npy", 4) != 0) {
        st = ms_fail(MS_ERR_FORMAT, "%s: array '%s': local header names a different entry", nm, key);
        goto done;
    }
    if (!(lflags & 8)) { /* without a data descriptor the local sizes must agree */
        if (lcsize == U32_MAX_FIELD || lusize == U32_MAX_FIELD) {
            size_t dlen = 0;
            const uint8_t *d = find_zip64_extra(nx + nlen, xlen, &dlen);
            if (d && dlen >= 16) { /* the spec says a local zip64 field holds both sizes */
                lusize = rd64(d);
                lcsize = rd64(d + 8);
            } else if (d && dlen >= 8 && (lusize == U32_MAX_FIELD) != (lcsize == U32_MAX_FIELD)) {
                if (lusize == U32_MAX_FIELD) lusize = rd64(d);
                else lcsize = rd64(d);
            } else {
                st = ms_fail(MS_ERR_FORMAT, "%s: array '%s': local zip64 extra field missing", nm, key);
                goto done;
            }
        }
        if (lcrc != e->crc || lcsize != e->csize || lusize != e->usize) {
            st = ms_fail(MS_ERR_FORMAT,
                         "%s: array '%s': local header (crc %08x, %llu/%llu bytes) disagrees with the central "
                         "directory (crc %08x, %llu/%llu bytes)",
                         nm, key, lcrc, (ull)lcsize, (ull)lusize, e->crc, (ull)e->csize, (ull)e->usize);
            goto done;
        }
    }
    r->in_off = data_off;
    r->in_left = e->csize;
    if (e->method == 8) {
        if (inflateInit2(&r->zs, -MAX_WBITS) != Z_OK) {
            st = ms_fail(MS_ERR_NOMEM, "%s: cannot initialise zlib", nm);
            goto done;
        }
        r->zinit = 1;
        if (!z->mem) {
            r->inbuf = malloc((size_t)MS_MAX(MS_MIN(e->csize, (uint64_t)IO_CHUNK), 1));
            if (!r->inbuf) { st = ms_fail(MS_ERR_NOMEM, "%s: out of memory", nm); goto done; }
        }
    }
done:
    free(nx);
    if (st) er_close(r);
    return st;
}

/* Hand zlib the next piece of compressed input. */
static ms_status er_refill(ereader *r) {
    if (r->z->mem) {
        uint64_t n = MS_MIN(r->in_left, (uint64_t)(1u << 30));
        r->zs.next_in = r->z->mem + r->in_off;
        r->zs.avail_in = (uInt)n;
        r->in_off += n;
        r->in_left -= n;
        return MS_OK;
    }
    size_t n = (size_t)MS_MIN(r->in_left, (uint64_t)IO_CHUNK);
    ms_status st = src_read(r->z, r->in_off, r->inbuf, n);
    if (st) return st;
    r->zs.next_in = r->inbuf;
    r->zs.avail_in = (uInt)n;
    r->in_off += n;
    r->in_left -= n;
    return MS_OK;
}

static ms_status er_zerr(ereader *r, int ret) {
    const char *nm = r->z->name, *key = r->e->key;
    if (ret == Z_MEM_ERROR) return ms_fail(MS_ERR_NOMEM, "%s: array '%s': zlib out of memory", nm, key);
    if (ret == Z_BUF_ERROR)
        return ms_fail(MS_ERR_FORMAT, "%s: array '%s': compressed data ends early (%llu of %llu bytes produced)",
                       nm, key, (ull)r->out_done, (ull)r->e->usize);
    return ms_fail(MS_ERR_FORMAT, "%s: array '%s': corrupt deflate data (%s)", nm, key,
                   r->zs.msg ? r->zs.msg : "zlib error");
}

/* Deliver exactly len uncompressed bytes into dst, updating the CRC. */
static ms_status er_read(ereader *r, void *dst, size_t len) {
    const zentry *e = r->e;
    if (len > e->usize - r->out_done)
        return ms_fail(MS_ERR_FORMAT, "%s: array '%s': entry is shorter than its npy header implies",
                       r->z->name, e->key);
    uint8_t *out = dst;
    ms_status st;
    while (len > 0) {
        /* work piece by piece so that the CRC runs while the bytes are still in cache */
        size_t piece = MS_MIN(len, (size_t)OUT_PIECE);
        if (e->method == 0) {
            if ((st = src_read(r->z, r->in_off, out, piece))) return st;
            r->in_off += piece;
            r->in_left -= piece;
        } else {
            r->zs.next_out = out;
            r->zs.avail_out = (uInt)piece;
            while (r->zs.avail_out > 0) {
                if (r->zend)
                    return ms_fail(MS_ERR_FORMAT, "%s: array '%s': deflate data ends after %llu of %llu bytes",
                                   r->z->name, e->key, (ull)(r->out_done + piece - r->zs.avail_out), (ull)e->usize);
                if (r->zs.avail_in == 0 && r->in_left > 0 && (st = er_refill(r))) return st;
                int ret = inflate(&r->zs, Z_NO_FLUSH);
                if (ret == Z_STREAM_END) r->zend = 1;
                else if (ret != Z_OK) return er_zerr(r, ret);
            }
        }
        r->crc = ms_crc32(r->crc, out, piece);
        r->out_done += piece;
        out += piece;
        len -= piece;
    }
    return MS_OK;
}

/* After the whole entry was read: the deflate stream must end exactly there, and the CRC match. */
static ms_status er_finish(ereader *r) {
    const zentry *e = r->e;
    const char *nm = r->z->name;
    ms_status st;
    if (r->out_done != e->usize)
        return ms_fail(MS_ERR_INTERNAL, "%s: array '%s': entry not read completely", nm, e->key);
    if (e->method == 8) {
        while (!r->zend) {
            uint8_t sink;
            if (r->zs.avail_in == 0 && r->in_left > 0 && (st = er_refill(r))) return st;
            r->zs.next_out = &sink;
            r->zs.avail_out = 1;
            int ret = inflate(&r->zs, Z_NO_FLUSH);
            if (r->zs.avail_out == 0)
                return ms_fail(MS_ERR_FORMAT, "%s: array '%s': deflate data holds more than the declared %llu bytes",
                               nm, e->key, (ull)e->usize);
            if (ret == Z_STREAM_END) r->zend = 1;
            else if (ret != Z_OK) return er_zerr(r, ret);
        }
        uint64_t left = r->zs.avail_in + r->in_left;
        if (left)
            return ms_fail(MS_ERR_FORMAT,
                           "%s: array '%s': compressed size says %llu bytes but the deflate data ends %llu bytes earlier",
                           nm, e->key, (ull)e->csize, (ull)left);
    }
    if (r->crc != e->crc)
        return ms_fail(MS_ERR_CHECKSUM, "%s: array '%s': CRC-32 mismatch (stored %08x, computed %08x): corrupt data",
                       nm, e->key, e->crc, r->crc);
    return MS_OK;
}

/* ------------------------------------------------------------------ npy header */
typedef struct {
    const char *p, *end;
} lexer;

static void lx_ws(lexer *l) {
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r')) l->p++;
}
static int lx_char(lexer *l, char c) {
    lx_ws(l);
    if (l->p < l->end && *l->p == c) { l->p++; return 1; }
    return 0;
}
/* 'text' or "text" without escapes (npy header strings never need them) */
static int lx_str(lexer *l, const char **s, size_t *n) {
    lx_ws(l);
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"')) return 0;
    char q = *l->p++;
    const char *start = l->p;
    while (l->p < l->end && *l->p != q) {
        if (*l->p == '\\' || *l->p == '\n') return 0;
        l->p++;
    }
    if (l->p >= l->end) return 0;
    *s = start;
    *n = (size_t)(l->p - start);
    l->p++;
    return 1;
}
static int lx_word(lexer *l, const char *w) {
    lx_ws(l);
    size_t n = strlen(w);
    if ((size_t)(l->end - l->p) < n || memcmp(l->p, w, n) != 0) return 0;
    if (l->p + n < l->end && (l->p[n] == '_' || (l->p[n] >= 'a' && l->p[n] <= 'z') ||
                              (l->p[n] >= 'A' && l->p[n] <= 'Z') || (l->p[n] >= '0' && l->p[n] <= '9')))
        return 0;
    l->p += n;
    return 1;
}
static int str_is(const char *s, size_t n, const char *w) { return strlen(w) == n && memcmp(s, w, n) == 0; }

typedef struct {
    ms_npy_info info;
    uint64_t data_off;  /* offset of the array data inside the entry */
} npy_hdr;

static ms_status hdr_fail(ms_status st, const ms_npz *z, const zentry *e, const char *what,
                          const char *h, size_t n) {
    return ms_fail(st, "%s: array '%s': npy header: %s (header: \"%.*s\")", z->name, e->key, what,
                   (int)MS_MIN(n, 120), h);
}

/* Parse the header dict: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } in any
 * key order, with or without a trailing comma, any spacing. */
static ms_status parse_dict(const ms_npz *z, const zentry *e, const char *h, size_t n, ms_npy_info *info) {
    lexer l = {h, h + n};
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    const char *descr = NULL;
    size_t descr_len = 0;
    char msg[160];
    memset(info, 0, sizeof *info);
    if (!lx_char(&l, '{')) return hdr_fail(MS_ERR_FORMAT, z, e, "not a dict", h, n);
    for (;;) {
        if (lx_char(&l, '}')) break;
        const char *k;
        size_t kn;
        if (!lx_str(&l, &k, &kn)) return hdr_fail(MS_ERR_FORMAT, z, e, "expected a quoted key or '}'", h, n);
        if (!lx_char(&l, ':')) return hdr_fail(MS_ERR_FORMAT, z, e, "expected ':' after a key", h, n);
        if (str_is(k, kn, "descr")) {
            if (have_descr++) return hdr_fail(MS_ERR_FORMAT, z, e, "duplicate 'descr'", h, n);
            lx_ws(&l);
            if (l.p < l.end && l.p[0] == '[')
                return hdr_fail(MS_ERR_UNSUPPORTED, z, e, "structured dtypes are not supported", h, n);
            if (!lx_str(&l, &descr, &descr_len))
                return hdr_fail(MS_ERR_FORMAT, z, e, "'descr' is not a string", h, n);
        } else if (str_is(k, kn, "fortran_order")) {
            if (have_fortran++) return hdr_fail(MS_ERR_FORMAT, z, e, "duplicate 'fortran_order'", h, n);
            if (lx_word(&l, "True")) fortran = 1;
            else if (lx_word(&l, "False")) fortran = 0;
            else return hdr_fail(MS_ERR_FORMAT, z, e, "'fortran_order' is not True/False", h, n);
        } else if (str_is(k, kn, "shape")) {
            if (have_shape++) return hdr_fail(MS_ERR_FORMAT, z, e, "duplicate 'shape'", h, n);
            if (!lx_char(&l, '(')) return hdr_fail(MS_ERR_FORMAT, z, e, "'shape' is not a tuple", h, n);
            for (;;) {
                if (lx_char(&l, ')')) break;
                lx_ws(&l);
                if (l.p < l.end && *l.p == '-') return hdr_fail(MS_ERR_FORMAT, z, e, "negative dimension", h, n);
                if (l.p >= l.end || *l.p < '0' || *l.p > '9')
                    return hdr_fail(MS_ERR_FORMAT, z, e, "bad dimension in 'shape'", h, n);
                int64_t v = 0;
                while (l.p < l.end && *l.p >= '0' && *l.p <= '9') {
                    int dg = *l.p++ - '0';
                    if (v > (INT64_MAX - dg) / 10) return hdr_fail(MS_ERR_FORMAT, z, e, "dimension too large", h, n);
                    v = v * 10 + dg;
                }
                if (l.p < l.end && (*l.p == 'L' || *l.p == 'l')) l.p++; /* Python 2 long suffix */
                if (info->ndim >= MS_NPY_MAXDIM) {
                    snprintf(msg, sizeof msg, "more than %d dimensions are not supported", MS_NPY_MAXDIM);
                    return hdr_fail(MS_ERR_LIMIT, z, e, msg, h, n);
                }
                info->shape[info->ndim++] = v;
                if (lx_char(&l, ',')) continue;
                if (lx_char(&l, ')')) break;
                return hdr_fail(MS_ERR_FORMAT, z, e, "expected ',' or ')' in 'shape'", h, n);
            }
        } else {
            snprintf(msg, sizeof msg, "unexpected key '%.*s'", (int)MS_MIN(kn, 40), k);
            return hdr_fail(MS_ERR_FORMAT, z, e, msg, h, n);
        }
        if (lx_char(&l, ',')) continue;
        if (lx_char(&l, '}')) break;
        return hdr_fail(MS_ERR_FORMAT, z, e, "expected ',' or '}'", h, n);
    }
    lx_ws(&l);
    if (l.p != l.end) return hdr_fail(MS_ERR_FORMAT, z, e, "trailing characters after the dict", h, n);
    if (!have_descr || !have_fortran || !have_shape)
        return hdr_fail(MS_ERR_FORMAT, z, e, "missing 'descr', 'fortran_order' or 'shape'", h, n);
    /* dtype, decoded only now so that syntax errors are reported as such */
    const char *d = descr;
    size_t dn = descr_len;
    /* optional byte order, kind letter, item size */
    char order = '|';
    if (dn > 0 && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '=')) { order = d[0]; d++; dn--; }
    int t = -1;
    for (int i = 0; i < MS_DT_COUNT; i++) {
        char code[4];
        snprintf(code, sizeof code, "%c%u", dtype_tab[i].kind, dtype_tab[i].size);
        if (str_is(d, dn, code)) t = i;
    }
    if (t < 0) {
        if (str_is(d, dn, "b1"))
            return hdr_fail(MS_ERR_UNSUPPORTED, z, e, "boolean arrays (|b1) are not supported; save them as uint8", h, n);
        snprintf(msg, sizeof msg, "dtype '%.*s' is not supported (supported: u1 i1 u2 i2 i4 i8 f2 f4 f8)",
                 (int)MS_MIN(descr_len, 20), descr);
        return hdr_fail(MS_ERR_UNSUPPORTED, z, e, msg, h, n);
    }
    info->dtype = (ms_dtype)t;
    info->big_endian = dtype_tab[t].size > 1 && (order == '>' || (HOST_BIG && order != '<'));
    int64_t count = 1;
    int big_dims = 0;
    for (int i = 0; i < info->ndim; i++) {
        int64_t dim = info->shape[i];
        if (dim > 1) big_dims++;
        if (dim != 0 && count > INT64_MAX / dim) return hdr_fail(MS_ERR_FORMAT, z, e, "element count overflows", h, n);
        count *= dim;
    }
    info->count = count;
    /* Fortran order only matters when more than one dimension has extent > 1. */
    if (fortran && big_dims > 1)
        return ms_fail(MS_ERR_UNSUPPORTED,
                       "%s: array '%s' is stored in Fortran order, which is not supported; save it with "
                       "np.ascontiguousarray()", z->name, e->key);
    return MS_OK;
}

/* Open the entry of `key`, read and validate its npy header; on success r is positioned at
 * the array data and must be closed by the caller. */
static ms_status npy_begin(ms_npz *z, const char *key, ereader *r, ms_npy_info *info) {
    if (!z || !key || !info) return ms_fail(MS_ERR_ARG, "npz: NULL argument");
    const zentry *e = find_entry(z, key);
    if (!e) return not_found(z, key);
    ms_status st = er_open(r, z, e);
    if (st) return st;
    char *h = NULL;
    uint8_t pre[12];
    if (e->usize < 10) {
        st = ms_fail(MS_ERR_FORMAT, "%s: array '%s': entry too short for an npy header (%llu bytes)", z->name, key,
                     (ull)e->usize);
        goto done;
    }
    if ((st = er_read(r, pre, 8))) goto done;
    if (memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = ms_fail(MS_ERR_FORMAT, "%s: array '%s': not an npy array (bad magic)", z->name, key);
        goto done;
    }
    if (!((pre[6] == 1 || pre[6] == 2 || pre[6] == 3) && pre[7] == 0)) {
        st = ms_fail(MS_ERR_UNSUPPORTED, "%s: array '%s': npy format version %u.%u is not supported (1.0-3.0 are)",
                     z->name, key, pre[6], pre[7]);
        goto done;
    }
    size_t lsz = pre[6] == 1 ? 2 : 4;
    if ((st = er_read(r, pre + 8, lsz))) goto done;
    uint64_t hlen = lsz == 2 ? rd16(pre + 8) : rd32(pre + 8);
    uint64_t prefix = 8 + lsz;
    if (hlen > e->usize - prefix) {
        st = ms_fail(MS_ERR_FORMAT, "%s: array '%s': npy header length %llu exceeds the entry (%llu bytes)",
                     z->name, key, (ull)hlen, (ull)e->usize);
        goto done;
    }
    if (hlen > NPY_MAX_HEADER) {
        st = ms_fail(MS_ERR_LIMIT, "%s: array '%s': npy header of %llu bytes is too large", z->name, key, (ull)hlen);
        goto done;
    }
    h = malloc((size_t)hlen + 1);
    if (!h) { st = ms_fail(MS_ERR_NOMEM, "%s: out of memory", z->name); goto done; }
    if ((st = er_read(r, h, (size_t)hlen))) goto done;
    h[hlen] = 0;
    if ((st = parse_dict(z, e, h, (size_t)hlen, info))) goto done;
    /* The payload must hold exactly count * itemsize bytes. */
    uint64_t isz = ms_dtype_size(info->dtype), payload = e->usize - prefix - hlen;
    int overflow = (uint64_t)info->count > UINT64_MAX / isz;
    uint64_t need = overflow ? UINT64_MAX : (uint64_t)info->count * isz;
    if (overflow || need != payload) {
        char sh[200];
        st = ms_fail(MS_ERR_FORMAT, "%s: array '%s': payload is %llu bytes but shape %s of %s needs %s%llu",
                     z->name, key, (ull)payload, fmt_shape(sh, sizeof sh, info->ndim, info->shape),
                     ms_dtype_name(info->dtype), overflow ? "more than " : "", (ull)need);
        goto done;
    }
    if ((uint64_t)info->count > SIZE_MAX / isz) {
        st = ms_fail(MS_ERR_LIMIT, "%s: array '%s' is too large for this machine", z->name, key);
        goto done;
    }
done:
    free(h);
    if (st) er_close(r);
    return st;
}

ms_status ms_npz_info(ms_npz *z, const char *key, ms_npy_info *info) {
    ereader r;
    ms_npy_info tmp;
    ms_status st = npy_begin(z, key, &r, &tmp);
    if (st) return st;
    er_close(&r);
    *info = tmp;
    return MS_OK;
}

/* ------------------------------------------------------------------ conversions */
typedef enum { DST_U8, DST_I64, DST_F32, DST_F64 } dst_kind;
static const size_t dst_size[] = {1, 8, 4, 8};

/* IEEE half -> float, exact for every value including subnormals, infinities and NaNs. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, ex = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (ex == 0) {
        float f = (float)man * 0x1p-24f; /* zero or subnormal: man * 2^-24, exact */
        return sign ? -f : f;
    }
    if (ex == 31) bits = sign | 0x7F800000u | man << 13;      /* inf / NaN (payload kept) */
    else bits = sign | (ex + 112) << 23 | man << 13;          /* rebias 15 -> 127 */
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void bswap_inplace(void *buf, size_t n, size_t isz) {
    uint8_t *p = buf;
    if (isz == 2) {
        for (size_t i = 0; i < n; i++) { uint16_t v; memcpy(&v, p + 2 * i, 2); v = __builtin_bswap16(v); memcpy(p + 2 * i, &v, 2); }
    } else if (isz == 4) {
        for (size_t i = 0; i < n; i++) { uint32_t v; memcpy(&v, p + 4 * i, 4); v = __builtin_bswap32(v); memcpy(p + 4 * i, &v, 4); }
    } else if (isz == 8) {
        for (size_t i = 0; i < n; i++) { uint64_t v; memcpy(&v, p + 8 * i, 8); v = __builtin_bswap64(v); memcpy(p + 8 * i, &v, 8); }
    }
}

#define CONV_LOOP(SRCT, DSTT, EXPR)                                                      \
    do {                                                                                 \
        DSTT *d_ = dst;                                                                  \
        for (size_t i = 0; i < n; i++) {                                                 \
            SRCT v;                                                                      \
            memcpy(&v, src + i * sizeof(SRCT), sizeof(SRCT));                            \
            d_[i] = (DSTT)(EXPR);                                                        \
        }                                                                                \
    } while (0)

#define CONV_ALL(DSTT)                                                                   \
    switch (t) {                                                                         \
    case MS_DT_U1: CONV_LOOP(uint8_t, DSTT, v); break;                                   \
    case MS_DT_I1: CONV_LOOP(int8_t, DSTT, v); break;                                    \
    case MS_DT_U2: CONV_LOOP(uint16_t, DSTT, v); break;                                  \
    case MS_DT_I2: CONV_LOOP(int16_t, DSTT, v); break;                                   \
    case MS_DT_I4: CONV_LOOP(int32_t, DSTT, v); break;                                   \
    case MS_DT_I8: CONV_LOOP(int64_t, DSTT, v); break;                                   \
    case MS_DT_F2: CONV_LOOP(uint16_t, DSTT, half_to_float(v)); break;                   \
    case MS_DT_F4: CONV_LOOP(float, DSTT, v); break;                                     \
    case MS_DT_F8: CONV_LOOP(double, DSTT, v); break;                                    \
    default: break;                                                                      \
    }

/* Convert n native-order elements of type t to the destination kind (never float -> int). */
static void convert(const uint8_t *src, size_t n, ms_dtype t, dst_kind k, void *dst) {
    switch (k) {
    case DST_F32: CONV_ALL(float); break;
    case DST_F64: CONV_ALL(double); break;
    case DST_I64:
        switch (t) {
        case MS_DT_U1: CONV_LOOP(uint8_t, int64_t, v); break;
        case MS_DT_I1: CONV_LOOP(int8_t, int64_t, v); break;
        case MS_DT_U2: CONV_LOOP(uint16_t, int64_t, v); break;
        case MS_DT_I2: CONV_LOOP(int16_t, int64_t, v); break;
        case MS_DT_I4: CONV_LOOP(int32_t, int64_t, v); break;
        case MS_DT_I8: CONV_LOOP(int64_t, int64_t, v); break;
        default: break;
        }
        break;
    case DST_U8: memcpy(dst, src, n); break;
    }
}

static int is_float(ms_dtype t) { return t == MS_DT_F2 || t == MS_DT_F4 || t == MS_DT_F8; }

/* Read a whole array into dst as kind k. */
static ms_status read_array(ms_npz *z, const char *key, void *dst, size_t n, dst_kind k) {
    ereader r;
    ms_npy_info info;
    ms_status st = npy_begin(z, key, &r, &info);
    if (st) return st;
    uint8_t *buf = NULL;
    char sh[200];
    if (k == DST_U8 && info.dtype != MS_DT_U1) {
        st = ms_fail(MS_ERR_SHAPE, "%s: array '%s' is %s, not uint8", z->name, key, ms_dtype_name(info.dtype));
        goto done;
    }
    if (k == DST_I64 && is_float(info.dtype)) {
        st = ms_fail(MS_ERR_SHAPE, "%s: array '%s' is %s, not an integer type", z->name, key, ms_dtype_name(info.dtype));
        goto done;
    }
    if ((uint64_t)n != (uint64_t)info.count) {
        st = ms_fail(MS_ERR_SHAPE, "%s: array '%s' has %lld elements (shape %s), caller expects %zu", z->name, key,
                     (long long)info.count, fmt_shape(sh, sizeof sh, info.ndim, info.shape), n);
        goto done;
    }
    if (!dst && n) {
        st = ms_fail(MS_ERR_ARG, "%s: array '%s': NULL destination", z->name, key);
        goto done;
    }
    size_t isz = ms_dtype_size(info.dtype);
    int swap = isz > 1 && info.big_endian != HOST_BIG;
    int same = (k == DST_U8) || (k == DST_I64 && info.dtype == MS_DT_I8) ||
               (k == DST_F32 && info.dtype == MS_DT_F4) || (k == DST_F64 && info.dtype == MS_DT_F8);
    if (same) {
        /* identical representation: inflate/read straight into the destination */
        if ((st = er_read(&r, dst, n * isz))) goto done;
        if (swap) bswap_inplace(dst, n, isz);
    } else {
        size_t chunk = OUT_PIECE / isz, done_n = 0;
        buf = malloc(MS_MAX(MS_MIN(n, chunk), (size_t)1) * isz);
        if (!buf) { st = ms_fail(MS_ERR_NOMEM, "%s: out of memory", z->name); goto done; }
        while (done_n < n) {
            size_t m = MS_MIN(n - done_n, chunk);
            if ((st = er_read(&r, buf, m * isz))) goto done;
            if (swap) bswap_inplace(buf, m, isz);
            convert(buf, m, info.dtype, k, (uint8_t *)dst + done_n * dst_size[k]);
            done_n += m;
        }
    }
    st = er_finish(&r);
done:
    free(buf);
    er_close(&r);
    return st;
}

ms_status ms_npz_read_f32(ms_npz *z, const char *key, float *dst, size_t n) { return read_array(z, key, dst, n, DST_F32); }
ms_status ms_npz_read_f64(ms_npz *z, const char *key, double *dst, size_t n) { return read_array(z, key, dst, n, DST_F64); }
ms_status ms_npz_read_i64(ms_npz *z, const char *key, int64_t *dst, size_t n) { return read_array(z, key, dst, n, DST_I64); }
ms_status ms_npz_read_u8(ms_npz *z, const char *key, uint8_t *dst, size_t n) { return read_array(z, key, dst, n, DST_U8); }

/* Note: the CRC can only be checked at the end, so a corrupt entry is reported (MS_ERR_CHECKSUM)
 * after its chunks were delivered; callers must discard what they accumulated on failure. */
ms_status ms_npz_stream(ms_npz *z, const char *key, ms_npz_chunk_cb cb, void *user) {
    if (!cb) return ms_fail(MS_ERR_ARG, "ms_npz_stream: NULL callback");
    ereader r;
    ms_npy_info info;
    ms_status st = npy_begin(z, key, &r, &info);
    if (st) return st;
    size_t isz = ms_dtype_size(info.dtype), n = (size_t)info.count, done_n = 0;
    size_t cap = MS_MAX(MS_MIN(n, (size_t)STREAM_ELEMS), (size_t)1);
    int swap = isz > 1 && info.big_endian != HOST_BIG;
    uint8_t *raw = malloc(cap * isz);
    double *vals = malloc(cap * sizeof *vals);
    if (!raw || !vals) { st = ms_fail(MS_ERR_NOMEM, "%s: out of memory", z->name); goto done; }
    while (done_n < n) {
        size_t m = MS_MIN(n - done_n, cap);
        if ((st = er_read(&r, raw, m * isz))) goto done;
        if (swap) bswap_inplace(raw, m, isz);
        convert(raw, m, info.dtype, DST_F64, vals);
        if ((st = cb(user, (int64_t)done_n, vals, m))) goto done;
        done_n += m;
    }
    st = er_finish(&r);
done:
    free(raw);
    free(vals);
    er_close(&r);
    return st;
}

/* ------------------------------------------------------------------ writer */
typedef struct {
    char *name;     /* "key.npy" */
    size_t name_len;
    uint64_t off, size;
    uint32_t crc;
    int utf8;
} wentry;

struct ms_npz_writer {
    char *path;
    ms_atomic_file *f;
    uint64_t off;   /* bytes written so far */
    wentry *e;
    size_t n, cap;
};

static void writer_free(ms_npz_writer *w) {
    for (size_t i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    free(w->path);
    free(w);
}

ms_status ms_npz_writer_open(ms_npz_writer **out, const char *path) {
    if (!out || !path || !*path) return ms_fail(MS_ERR_ARG, "ms_npz_writer_open: missing path");
    *out = NULL;
    ms_npz_writer *w = calloc(1, sizeof *w);
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

/* A failed write marks the temp file broken: later adds fail, and so does the commit. */
static ms_status wput(ms_npz_writer *w, const void *buf, size_t len) {
    ms_status st = ms_atomic_write(w->f, buf, len);
    if (!st) w->off += len;
    return st;
}

ms_status ms_npz_writer_add(ms_npz_writer *w, const char *key, ms_dtype dtype, int ndim,
                            const int64_t *shape, const void *data) {
    if (!w || !key) return ms_fail(MS_ERR_ARG, "ms_npz_writer_add: NULL argument");
    const char *p = w->path;
    size_t klen = strlen(key);
    if (klen > U16_MAX_FIELD - 4) return ms_fail(MS_ERR_ARG, "%s: key of %zu bytes is too long", p, klen);
    if ((unsigned)dtype >= MS_DT_COUNT) return ms_fail(MS_ERR_ARG, "%s: array '%s': invalid dtype %d", p, key, (int)dtype);
    if (ndim < 0 || ndim > MS_NPY_MAXDIM || (ndim > 0 && !shape))
        return ms_fail(MS_ERR_ARG, "%s: array '%s': invalid ndim %d", p, key, ndim);
    size_t count = 1, bytes;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return ms_fail(MS_ERR_ARG, "%s: array '%s': negative dimension", p, key);
        if ((uint64_t)shape[i] > SIZE_MAX || !ms_mul_size(count, (size_t)shape[i], &count))
            return ms_fail(MS_ERR_LIMIT, "%s: array '%s': element count overflows", p, key);
    }
    if (!ms_mul_size(count, ms_dtype_size(dtype), &bytes) || bytes > SIZE_MAX - 4096)
        return ms_fail(MS_ERR_LIMIT, "%s: array '%s': too large", p, key);
    if (bytes && !data) return ms_fail(MS_ERR_ARG, "%s: array '%s': NULL data", p, key);
    for (size_t i = 0; i < w->n; i++)
        if (w->e[i].name_len == klen + 4 && memcmp(w->e[i].name, key, klen) == 0)
            return ms_fail(MS_ERR_ARG, "%s: array '%s' added twice", p, key);
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 8;
        wentry *ne = realloc(w->e, nc * sizeof *ne);
        if (!ne) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", p);
        w->e = ne;
        w->cap = nc;
    }

    /* npy 1.0 header exactly as numpy writes it: dict, spaces, '\n', data 64-byte aligned */
    char dict[64 + MS_NPY_MAXDIM * 24], hdr[sizeof dict + 80];
    int dl = snprintf(dict, sizeof dict, "{'descr': '%c%c%u', 'fortran_order': False, 'shape': (",
                      dtype_tab[dtype].size == 1 ? '|' : (HOST_BIG ? '>' : '<'), dtype_tab[dtype].kind,
                      dtype_tab[dtype].size);
    for (int i = 0; i < ndim; i++)
        dl += snprintf(dict + dl, sizeof dict - (size_t)dl, i ? ", %lld" : "%lld", (long long)shape[i]);
    dl += snprintf(dict + dl, sizeof dict - (size_t)dl, "%s), }", ndim == 1 ? "," : "");
    size_t pad = 64 - (10 + (size_t)dl + 1) % 64, hlen = (size_t)dl + pad + 1;
    memcpy(hdr, "\x93NUMPY\x01\x00", 8);
    wr16((uint8_t *)hdr + 8, (uint32_t)hlen);
    memcpy(hdr + 10, dict, (size_t)dl);
    memset(hdr + 10 + dl, ' ', pad);
    hdr[10 + hlen - 1] = '\n';
    size_t hsize = 10 + hlen;

    wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name_len = klen + 4;
    e->name = malloc(e->name_len + 1);
    if (!e->name) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", p);
    memcpy(e->name, key, klen);
    memcpy(e->name + klen, ".npy", 5);
    for (size_t i = 0; i < klen; i++)
        if ((unsigned char)key[i] >= 0x80) e->utf8 = 1; /* general purpose flag bit 11 */
    e->off = w->off;
    e->size = hsize + bytes;
    e->crc = ms_crc32(ms_crc32(0, hdr, hsize), data, bytes);
    w->n++; /* from here on an I/O failure marks the writer broken; the entry is freed with it */

    int z64 = e->size >= MS_NPZ_ZIP64_LIMIT;
    uint8_t lh[LOCAL_LEN + 20];
    wr32(lh, SIG_LOCAL);
    wr16(lh + 4, z64 ? 45 : 20);
    wr16(lh + 6, e->utf8 ? 0x800 : 0);
    wr16(lh + 8, 0);        /* stored */
    wr16(lh + 10, 0);       /* 00:00:00 */
    wr16(lh + 12, 0x21);    /* 1980-01-01: fixed, so output is reproducible */
    wr32(lh + 14, e->crc);
    wr32(lh + 18, z64 ? (uint32_t)U32_MAX_FIELD : (uint32_t)e->size);
    wr32(lh + 22, z64 ? (uint32_t)U32_MAX_FIELD : (uint32_t)e->size);
    wr16(lh + 26, (uint32_t)e->name_len);
    wr16(lh + 28, z64 ? 20 : 0);
    if (z64) {
        wr16(lh + 30, 1);
        wr16(lh + 32, 16);
        wr64(lh + 34, e->size);
        wr64(lh + 42, e->size);
    }
    ms_status st;
    if ((st = wput(w, lh, LOCAL_LEN)) || (st = wput(w, e->name, e->name_len)) ||
        (z64 && (st = wput(w, lh + LOCAL_LEN, 20))) || (st = wput(w, hdr, hsize)) ||
        (st = wput(w, data, bytes)))
        return st;
    return MS_OK;
}

ms_status ms_npz_writer_commit(ms_npz_writer *w) {
    if (!w) return ms_fail(MS_ERR_ARG, "ms_npz_writer_commit: NULL writer");
    ms_status st = MS_OK;
    uint64_t cd_off = w->off;
    for (size_t i = 0; i < w->n; i++) {
        const wentry *e = &w->e[i];
        int big = e->size >= MS_NPZ_ZIP64_LIMIT, far = e->off >= MS_NPZ_ZIP64_LIMIT;
        uint8_t ch[CENTRAL_LEN + 28];
        size_t xl = 0;
        uint8_t *x = ch + CENTRAL_LEN;
        if (big || far) {
            xl = 4 + 16 * (size_t)big + 8 * (size_t)far;
            wr16(x, 1);
            wr16(x + 2, (uint32_t)(xl - 4));
            size_t q = 4;
            if (big) { wr64(x + q, e->size); wr64(x + q + 8, e->size); q += 16; }
            if (far) wr64(x + q, e->off);
        }
        wr32(ch, SIG_CENTRAL);
        wr16(ch + 4, 0x0300 | (big || far ? 45 : 20)); /* made by: Unix */
        wr16(ch + 6, big || far ? 45 : 20);
        wr16(ch + 8, e->utf8 ? 0x800 : 0);
        wr16(ch + 10, 0);
        wr16(ch + 12, 0);
        wr16(ch + 14, 0x21);
        wr32(ch + 16, e->crc);
        wr32(ch + 20, big ? (uint32_t)U32_MAX_FIELD : (uint32_t)e->size);
        wr32(ch + 24, big ? (uint32_t)U32_MAX_FIELD : (uint32_t)e->size);
        wr16(ch + 28, (uint32_t)e->name_len);
        wr16(ch + 30, (uint32_t)xl);
        wr16(ch + 32, 0);
        wr16(ch + 34, 0);
        wr16(ch + 36, 0);
        wr32(ch + 38, 0100644u << 16); /* regular file, rw-r--r-- */
        wr32(ch + 42, far ? (uint32_t)U32_MAX_FIELD : (uint32_t)e->off);
        if ((st = wput(w, ch, CENTRAL_LEN)) || (st = wput(w, e->name, e->name_len)) ||
            (st = wput(w, ch + CENTRAL_LEN, xl)))
            goto cleanup;
    }
    uint64_t cd_size = w->off - cd_off, n = w->n;
    int z64 = n >= MS_NPZ_ZIP64_COUNT || cd_off >= MS_NPZ_ZIP64_LIMIT || cd_size >= MS_NPZ_ZIP64_LIMIT;
    uint8_t end[EOCD64_LEN + LOC64_LEN + EOCD_LEN];
    size_t el = 0;
    if (z64) {
        uint64_t rec = w->off;
        wr32(end, SIG_EOCD64);
        wr64(end + 4, EOCD64_LEN - 12);
        wr16(end + 12, 0x0300 | 45);
        wr16(end + 14, 45);
        wr32(end + 16, 0);
        wr32(end + 20, 0);
        wr64(end + 24, n);
        wr64(end + 32, n);
        wr64(end + 40, cd_size);
        wr64(end + 48, cd_off);
        wr32(end + 56, SIG_LOC64);
        wr32(end + 60, 0);
        wr64(end + 64, rec);
        wr32(end + 72, 1);
        el = EOCD64_LEN + LOC64_LEN;
    }
    uint8_t *eo = end + el;
    wr32(eo, SIG_EOCD);
    wr16(eo + 4, 0);
    wr16(eo + 6, 0);
    wr16(eo + 8, z64 ? U16_MAX_FIELD : (uint32_t)n);
    wr16(eo + 10, z64 ? U16_MAX_FIELD : (uint32_t)n);
    wr32(eo + 12, z64 ? (uint32_t)U32_MAX_FIELD : (uint32_t)cd_size);
    wr32(eo + 16, z64 ? (uint32_t)U32_MAX_FIELD : (uint32_t)cd_off);
    wr16(eo + 20, 0);
    if ((st = wput(w, end, el + EOCD_LEN))) goto cleanup;

    st = ms_atomic_commit(w->f); /* an earlier failed write makes this fail too */
    w->f = NULL;
cleanup:
    ms_atomic_abort(w->f);
    writer_free(w);
    return st;
}

void ms_npz_writer_abort(ms_npz_writer *w) {
    if (!w) return;
    ms_atomic_abort(w->f);
    writer_free(w);
}
