/* Zip container: reader (fd or memory, zip64, stored/deflate, CRC-32) and stored-entry writer
 * (see zip.h). Layout of an archive, as far as we read and write it:
 *
 *   [local header, name, extra, data] * n   central directory [header, name, extra, comment] * n
 *   [zip64 end record, zip64 locator]  end record (+ comment of up to 65535 bytes)
 *
 * The reader trusts nothing: the central directory must end exactly at the end record, every
 * entry's data must fit before the central directory, a deflated entry cannot claim more than
 * deflate's maximal ratio, and the local header must agree with the central directory.
 */
#define _FILE_OFFSET_BITS 64
#define ZLIB_CONST

#include "zip.h"
#include "marsseg_io.h"
#include "marsseg_npz.h" /* ms_crc32 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Deflate cannot expand more than ~1032:1; a larger declared ratio is a lie (or a bomb that
 * would make callers allocate from a size the file cannot contain). */
#define MAX_DEFLATE_RATIO 1032u
#define IO_CHUNK (256u * 1024u) /* compressed input buffer for fd-backed archives */
#define OUT_PIECE (1u << 20)    /* inflate/CRC granularity */

typedef unsigned long long ull; /* for printf */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

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

/* ------------------------------------------------------------------ archive handle */
struct ms_zip {
    char *name;         /* path or label: every error message starts with it */
    int fd;             /* -1 for memory archives */
    const uint8_t *mem;
    uint64_t size;
    uint64_t cd_off;    /* entry data must end before the central directory */
    int n;
    ms_zip_entry *e;    /* in central directory order */
};

const char *ms_zip_name(const ms_zip *z) { return z->name; }
int ms_zip_count(const ms_zip *z) { return z ? z->n : 0; }
const ms_zip_entry *ms_zip_entry_at(const ms_zip *z, int i) { return z && i >= 0 && i < z->n ? &z->e[i] : NULL; }

/* Read len bytes at off (bounds-checked against the file size). */
static ms_status src_read(const ms_zip *z, uint64_t off, void *buf, size_t len) {
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

/* Parse the central directory (cd_size bytes at cd) into z->e. */
static ms_status parse_central(ms_zip *z, const uint8_t *cd, uint64_t cd_size, uint64_t n_total) {
    const char *nm = z->name;
    z->e = calloc(n_total ? (size_t)n_total : 1, sizeof *z->e);
    if (!z->e) return ms_fail(MS_ERR_NOMEM, "%s: out of memory for %llu directory entries", nm, (ull)n_total);
    uint64_t pos = 0;
    for (uint64_t k = 0; k < n_total; k++) {
        if (cd_size - pos < ZIP_CENTRAL_LEN)
            return ms_fail(MS_ERR_FORMAT, "%s: central directory entry %llu is truncated", nm, (ull)k);
        const uint8_t *h = cd + pos;
        if (rd32(h) != ZIP_SIG_CENTRAL)
            return ms_fail(MS_ERR_FORMAT, "%s: central directory entry %llu has a bad signature", nm, (ull)k);
        uint16_t flags = rd16(h + 8), method = rd16(h + 10);
        uint32_t crc = rd32(h + 16);
        uint64_t csize = rd32(h + 20), usize = rd32(h + 24);
        size_t nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32);
        uint32_t disk = rd16(h + 34);
        uint64_t loff = rd32(h + 42);
        if (ZIP_CENTRAL_LEN + nlen + xlen + clen > cd_size - pos)
            return ms_fail(MS_ERR_FORMAT, "%s: central directory entry %llu runs past the directory", nm, (ull)k);
        const uint8_t *name = h + ZIP_CENTRAL_LEN, *extra = name + nlen;
        int shown = (int)MS_MIN(nlen, 200);
        int need_u = usize == ZIP_U32_MAX_FIELD, need_c = csize == ZIP_U32_MAX_FIELD;
        int need_o = loff == ZIP_U32_MAX_FIELD, need_d = disk == ZIP_U16_MAX_FIELD;
        if (need_u || need_c || need_o || need_d) {
            /* zip64: only the fields whose 32/16-bit value is saturated are present, in order */
            size_t dlen = 0, q = 0;
            const uint8_t *d = find_zip64_extra(extra, xlen, &dlen);
            size_t want = 8u * (size_t)(need_u + need_c + need_o) + 4u * (size_t)need_d;
            if (!d || dlen < want)
                return ms_fail(MS_ERR_FORMAT, "%s: entry '%.*s': zip64 extra field missing or too short",
                               nm, shown, (const char *)name);
            if (need_u) { usize = rd64(d + q); q += 8; }
            if (need_c) { csize = rd64(d + q); q += 8; }
            if (need_o) { loff = rd64(d + q); q += 8; }
            if (need_d) disk = rd32(d + q);
        }
        pos += ZIP_CENTRAL_LEN + nlen + xlen + clen;
        if (disk != 0)
            return ms_fail(MS_ERR_UNSUPPORTED, "%s: multi-disk zip archives are not supported", nm);
        /* sizes must fit between the local header and the central directory */
        if (!fits(loff, ZIP_LOCAL_LEN, z->cd_off) || csize > z->cd_off - loff - ZIP_LOCAL_LEN)
            return ms_fail(MS_ERR_FORMAT,
                           "%s: entry '%.*s': %llu bytes at offset %llu do not fit before the central "
                           "directory at %llu (lying sizes or truncated file)",
                           nm, shown, (const char *)name, (ull)csize, (ull)loff, (ull)z->cd_off);
        if (method == 0 && csize != usize)
            return ms_fail(MS_ERR_FORMAT, "%s: stored entry '%.*s' has compressed size %llu != size %llu",
                           nm, shown, (const char *)name, (ull)csize, (ull)usize);
        if (method == 8 && usize / MAX_DEFLATE_RATIO > csize + 1)
            return ms_fail(MS_ERR_FORMAT,
                           "%s: entry '%.*s' declares %llu bytes from only %llu compressed bytes (impossible ratio)",
                           nm, shown, (const char *)name, (ull)usize, (ull)csize);
        ms_zip_entry *e = &z->e[z->n];
        if (!(e->name = malloc(nlen + 1))) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", nm);
        memcpy(e->name, name, nlen);
        e->name[nlen] = 0;
        e->name_len = nlen;
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
    return MS_OK;
}

/* The end record is the last 22 bytes plus a comment of up to 65535 bytes: scan backwards for
 * a signature whose comment length reaches exactly to the end of the file. */
static ms_status find_eocd(const ms_zip *z, const uint8_t *tail, size_t tail_len, size_t *at) {
    for (size_t i = tail_len - ZIP_EOCD_LEN;; i--) {
        if (rd32(tail + i) == ZIP_SIG_EOCD && rd16(tail + i + 20) == tail_len - i - ZIP_EOCD_LEN) {
            *at = i;
            return MS_OK;
        }
        if (i == 0) break;
    }
    uint8_t magic[6] = {0};
    if (z->size >= 6) src_read(z, 0, magic, 6);
    if (memcmp(magic, "\x93NUMPY", 6) == 0)
        return ms_fail(MS_ERR_FORMAT, "%s: this is a single .npy array, not an .npz archive", z->name);
    if (memcmp(magic, "PK\3\4", 4) == 0)
        return ms_fail(MS_ERR_FORMAT, "%s: zip archive without an end of central directory record (truncated?)",
                       z->name);
    return ms_fail(MS_ERR_FORMAT, "%s: not an npz (zip) archive", z->name);
}

/* Locate the end records and parse the central directory. */
static ms_status zip_parse(ms_zip *z) {
    const char *nm = z->name;
    ms_status st = MS_OK;
    uint8_t *tailbuf = NULL, *cdbuf = NULL;
    if (z->size == 0) return ms_fail(MS_ERR_FORMAT, "%s: empty file, not an npz archive", nm);
    if (z->size < ZIP_EOCD_LEN)
        return ms_fail(MS_ERR_FORMAT, "%s: not an npz (zip) archive: only %llu bytes", nm, (ull)z->size);

    size_t tail_len = (size_t)MS_MIN(z->size, (uint64_t)ZIP_EOCD_LEN + 0xFFFF), i = 0;
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
    if ((st = find_eocd(z, tail, tail_len, &i))) goto cleanup;
    uint64_t eocd = tail_off + i;
    const uint8_t *p = tail + i;
    uint32_t disk = rd16(p + 4), cd_disk = rd16(p + 6);
    uint64_t n_disk = rd16(p + 8), n_total = rd16(p + 10), cd_size = rd32(p + 12), cd_off = rd32(p + 16);
    uint64_t cd_end = eocd; /* where the central directory must end */

    if (eocd >= ZIP_LOC64_LEN) {
        uint8_t loc[ZIP_LOC64_LEN];
        if ((st = src_read(z, eocd - ZIP_LOC64_LEN, loc, ZIP_LOC64_LEN))) goto cleanup;
        if (rd32(loc) == ZIP_SIG_LOC64) {
            uint32_t rdisk = rd32(loc + 4), ndisks = rd32(loc + 16);
            uint64_t roff = rd64(loc + 8), lpos = eocd - ZIP_LOC64_LEN;
            if (rdisk != 0 || ndisks > 1) {
                st = ms_fail(MS_ERR_UNSUPPORTED, "%s: multi-disk zip archives are not supported", nm);
                goto cleanup;
            }
            if (!fits(roff, ZIP_EOCD64_LEN, lpos)) {
                st = ms_fail(MS_ERR_FORMAT, "%s: zip64 end of central directory offset %llu is out of range", nm, (ull)roff);
                goto cleanup;
            }
            uint8_t r[ZIP_EOCD64_LEN];
            if ((st = src_read(z, roff, r, ZIP_EOCD64_LEN))) goto cleanup;
            if (rd32(r) != ZIP_SIG_EOCD64 || rd64(r + 4) < ZIP_EOCD64_LEN - 12 || rd64(r + 4) > lpos - roff - 12) {
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
    if (n_total > cd_size / ZIP_CENTRAL_LEN) {
        st = ms_fail(MS_ERR_FORMAT, "%s: central directory claims %llu entries but its %llu bytes hold at most %llu",
                     nm, (ull)n_total, (ull)cd_size, (ull)(cd_size / ZIP_CENTRAL_LEN));
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

void ms_zip_close(ms_zip *z) {
    if (!z) return;
    if (z->fd >= 0) close(z->fd);
    for (int i = 0; i < z->n; i++) free(z->e[i].name);
    free(z->e);
    free(z->name);
    free(z);
}

static ms_zip *zip_new(const char *name) {
    ms_zip *z = calloc(1, sizeof *z);
    if (!z) return NULL;
    z->fd = -1;
    z->name = strdup(name);
    if (!z->name) { free(z); return NULL; }
    return z;
}

ms_status ms_zip_open(ms_zip **out, const char *path) {
    if (!out || !path) return ms_fail(MS_ERR_ARG, "ms_npz_open: NULL argument");
    *out = NULL;
    ms_zip *z = zip_new(path);
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
    if ((st = zip_parse(z))) goto fail;
    *out = z;
    return MS_OK;
fail:
    ms_zip_close(z);
    return st;
}

ms_status ms_zip_open_mem(ms_zip **out, const void *data, size_t len, const char *label) {
    if (!label) label = "<memory>";
    if (!out || (!data && len)) return ms_fail(MS_ERR_ARG, "%s: ms_npz_open_mem: NULL argument", label);
    *out = NULL;
    ms_zip *z = zip_new(label);
    if (!z) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", label);
    static const uint8_t empty[1];
    z->mem = data ? data : empty; /* mem != NULL marks a memory archive */
    z->size = len;
    ms_status st = zip_parse(z);
    if (st) {
        ms_zip_close(z);
        return st;
    }
    *out = z;
    return MS_OK;
}

/* ------------------------------------------------------------------ entry reader */
void ms_zip_reader_close(ms_zip_reader *r) {
    if (r->zinit) inflateEnd(&r->zs);
    r->zinit = 0;
    free(r->inbuf);
    r->inbuf = NULL;
}

/* The local header's sizes must agree with the central directory's (unless a data descriptor
 * follows the data); nx holds the local name and extra field. */
static ms_status check_local_sizes(const ms_zip_reader *r, const uint8_t *h, const uint8_t *nx) {
    const ms_zip_entry *e = r->e;
    const char *nm = r->z->name, *key = e->name;
    uint32_t lcrc = rd32(h + 14);
    uint64_t lcsize = rd32(h + 18), lusize = rd32(h + 22);
    size_t nlen = rd16(h + 26), xlen = rd16(h + 28);
    if (lcsize == ZIP_U32_MAX_FIELD || lusize == ZIP_U32_MAX_FIELD) {
        size_t dlen = 0;
        const uint8_t *d = find_zip64_extra(nx + nlen, xlen, &dlen);
        if (d && dlen >= 16) { /* the spec says a local zip64 field holds both sizes */
            lusize = rd64(d);
            lcsize = rd64(d + 8);
        } else if (d && dlen >= 8 && (lusize == ZIP_U32_MAX_FIELD) != (lcsize == ZIP_U32_MAX_FIELD)) {
            if (lusize == ZIP_U32_MAX_FIELD) lusize = rd64(d);
            else lcsize = rd64(d);
        } else {
            return ms_fail(MS_ERR_FORMAT, "%s: '%s': local zip64 extra field missing", nm, key);
        }
    }
    if (lcrc != e->crc || lcsize != e->csize || lusize != e->usize)
        return ms_fail(MS_ERR_FORMAT,
                       "%s: '%s': local header (crc %08x, %llu/%llu bytes) disagrees with the central "
                       "directory (crc %08x, %llu/%llu bytes)",
                       nm, key, lcrc, (ull)lcsize, (ull)lusize, e->crc, (ull)e->csize, (ull)e->usize);
    return MS_OK;
}

ms_status ms_zip_reader_open(ms_zip_reader *r, const ms_zip *z, const ms_zip_entry *e) {
    memset(r, 0, sizeof *r);
    r->z = z;
    r->e = e;
    const char *nm = z->name, *key = e->name;
    ms_status st;
    if (e->flags & 1) return ms_fail(MS_ERR_UNSUPPORTED, "%s: '%s' is encrypted", nm, key);
    if (e->method != 0 && e->method != 8)
        return ms_fail(MS_ERR_UNSUPPORTED, "%s: '%s' uses zip compression method %u (only stored and deflate are supported)",
                       nm, key, e->method);
    uint8_t h[ZIP_LOCAL_LEN];
    if ((st = src_read(z, e->local_off, h, ZIP_LOCAL_LEN))) return st;
    if (rd32(h) != ZIP_SIG_LOCAL)
        return ms_fail(MS_ERR_FORMAT, "%s: '%s': bad local header signature at offset %llu", nm, key,
                       (ull)e->local_off);
    uint16_t lflags = rd16(h + 6), lmethod = rd16(h + 8);
    size_t nlen = rd16(h + 26), xlen = rd16(h + 28);
    uint64_t data_off = e->local_off + ZIP_LOCAL_LEN + nlen + xlen; /* cannot overflow: local_off < cd_off */
    if (data_off > z->cd_off || e->csize > z->cd_off - data_off)
        return ms_fail(MS_ERR_FORMAT, "%s: '%s': data (%llu bytes at offset %llu) runs into the central directory",
                       nm, key, (ull)e->csize, (ull)data_off);
    if (lmethod != e->method)
        return ms_fail(MS_ERR_FORMAT, "%s: '%s': local header says method %u, central directory %u",
                       nm, key, lmethod, e->method);
    uint8_t *nx = malloc(nlen + xlen + 1);
    if (!nx) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", nm);
    if ((st = src_read(z, e->local_off + ZIP_LOCAL_LEN, nx, nlen + xlen))) goto done;
    if (nlen != e->name_len || memcmp(nx, e->name, nlen) != 0) {
        st = ms_fail(MS_ERR_FORMAT, "%s: '%s': local header names a different entry", nm, key);
        goto done;
    }
    if (!(lflags & 8) && (st = check_local_sizes(r, h, nx))) goto done;
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
    if (st) ms_zip_reader_close(r);
    return st;
}

/* Hand zlib the next piece of compressed input. */
static ms_status refill(ms_zip_reader *r) {
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

static ms_status zerr(const ms_zip_reader *r, int ret) {
    const char *nm = r->z->name, *key = r->e->name;
    if (ret == Z_MEM_ERROR) return ms_fail(MS_ERR_NOMEM, "%s: '%s': zlib out of memory", nm, key);
    if (ret == Z_BUF_ERROR)
        return ms_fail(MS_ERR_FORMAT, "%s: '%s': compressed data ends early (%llu of %llu bytes produced)",
                       nm, key, (ull)r->out_done, (ull)r->e->usize);
    return ms_fail(MS_ERR_FORMAT, "%s: '%s': corrupt deflate data (%s)", nm, key,
                   r->zs.msg ? r->zs.msg : "zlib error");
}

ms_status ms_zip_read(ms_zip_reader *r, void *dst, size_t len) {
    const ms_zip_entry *e = r->e;
    if (len > e->usize - r->out_done)
        return ms_fail(MS_ERR_FORMAT, "%s: '%s': entry is shorter than its contents imply (%llu bytes)",
                       r->z->name, e->name, (ull)e->usize);
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
                    return ms_fail(MS_ERR_FORMAT, "%s: '%s': deflate data ends after %llu of %llu bytes",
                                   r->z->name, e->name, (ull)(r->out_done + piece - r->zs.avail_out), (ull)e->usize);
                if (r->zs.avail_in == 0 && r->in_left > 0 && (st = refill(r))) return st;
                int ret = inflate(&r->zs, Z_NO_FLUSH);
                if (ret == Z_STREAM_END) r->zend = 1;
                else if (ret != Z_OK) return zerr(r, ret);
            }
        }
        r->crc = ms_crc32(r->crc, out, piece);
        r->out_done += piece;
        out += piece;
        len -= piece;
    }
    return MS_OK;
}

ms_status ms_zip_reader_finish(ms_zip_reader *r) {
    const ms_zip_entry *e = r->e;
    const char *nm = r->z->name;
    ms_status st;
    if (r->out_done != e->usize)
        return ms_fail(MS_ERR_INTERNAL, "%s: '%s': entry not read completely", nm, e->name);
    if (e->method == 8) {
        while (!r->zend) {
            uint8_t sink;
            if (r->zs.avail_in == 0 && r->in_left > 0 && (st = refill(r))) return st;
            r->zs.next_out = &sink;
            r->zs.avail_out = 1;
            int ret = inflate(&r->zs, Z_NO_FLUSH);
            if (r->zs.avail_out == 0)
                return ms_fail(MS_ERR_FORMAT, "%s: '%s': deflate data holds more than the declared %llu bytes",
                               nm, e->name, (ull)e->usize);
            if (ret == Z_STREAM_END) r->zend = 1;
            else if (ret != Z_OK) return zerr(r, ret);
        }
        uint64_t left = r->zs.avail_in + r->in_left;
        if (left)
            return ms_fail(MS_ERR_FORMAT,
                           "%s: '%s': compressed size says %llu bytes but the deflate data ends %llu bytes earlier",
                           nm, e->name, (ull)e->csize, (ull)left);
    }
    if (r->crc != e->crc)
        return ms_fail(MS_ERR_CHECKSUM, "%s: '%s': CRC-32 mismatch (stored %08x, computed %08x): corrupt data",
                       nm, e->name, e->crc, r->crc);
    return MS_OK;
}
