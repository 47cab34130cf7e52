/* NumPy .npz archives (see marsseg_npz.h): the glue between the zip container (zip.c,
 * zip_write.c) and the npy format (npy.c). An archive's arrays are its "*.npy" members (the
 * only ones numpy.savez writes; others are ignored), looked up by name without ".npy".
 *
 * Reading an array opens a zip entry reader, parses the npy header from its first bytes, then
 * delivers the elements in C order, converted, in bounded chunks. A Fortran-order array is read
 * whole first (its C-order elements are spread over all of it), then gathered: one raw copy.
 */
#define _FILE_OFFSET_BITS 64

#include "marsseg_npz.h"
#include "npy.h"
#include "util.h"
#include "zip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONV_CHUNK (1u << 20)   /* bytes of source elements per conversion chunk */
#define STREAM_ELEMS 65536u     /* elements per ms_npz_stream callback */

typedef unsigned long long ull; /* for printf */

typedef struct {
    char *key;                  /* the member name without ".npy" */
    const ms_zip_entry *e;
} npz_array;

struct ms_npz {
    ms_zip *zip;
    const char *name;           /* path or label: every error message starts with it */
    int n;
    npz_array *a;               /* arrays in file order */
    npz_array **sorted;         /* arrays sorted by key, for lookup and duplicate detection */
};

static int array_cmp(const void *a, const void *b) {
    return strcmp((*(const npz_array *const *)a)->key, (*(const npz_array *const *)b)->key);
}

/* The "*.npy" members as arrays, sorted for lookup; a key twice is an error. */
static ms_status index_arrays(ms_npz *z) {
    int total = ms_zip_count(z->zip);
    z->a = malloc((size_t)(total ? total : 1) * sizeof *z->a);
    z->sorted = malloc((size_t)(total ? total : 1) * sizeof *z->sorted);
    if (!z->a || !z->sorted) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", z->name);
    for (int i = 0; i < total; i++) {
        const ms_zip_entry *e = ms_zip_entry_at(z->zip, i);
        if (e->name_len < 4 || memcmp(e->name + e->name_len - 4, ".npy", 4) != 0) continue;
        if (memchr(e->name, 0, e->name_len)) return ms_fail(MS_ERR_FORMAT, "%s: entry name contains a NUL byte", z->name);
        if (!(z->a[z->n].key = strndup(e->name, e->name_len - 4))) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", z->name);
        z->a[z->n].e = e;
        z->sorted[z->n] = &z->a[z->n];
        z->n++;
    }
    qsort(z->sorted, (size_t)z->n, sizeof *z->sorted, array_cmp);
    for (int i = 1; i < z->n; i++)
        if (strcmp(z->sorted[i - 1]->key, z->sorted[i]->key) == 0)
            return ms_fail(MS_ERR_FORMAT, "%s: array '%s' appears twice in the archive", z->name, z->sorted[i]->key);
    return MS_OK;
}

static ms_status npz_wrap(ms_npz **out, ms_zip *zip, ms_status st) {
    if (st) return st;
    ms_npz *z = calloc(1, sizeof *z);
    if (!z) {
        st = ms_fail(MS_ERR_NOMEM, "%s: out of memory", ms_zip_name(zip));
        ms_zip_close(zip);
        return st;
    }
    z->zip = zip;
    z->name = ms_zip_name(zip);
    if ((st = index_arrays(z))) {
        ms_npz_close(z);
        return st;
    }
    *out = z;
    return MS_OK;
}

ms_status ms_npz_open(ms_npz **out, const char *path) {
    if (!out) return ms_fail(MS_ERR_ARG, "ms_npz_open: NULL argument");
    *out = NULL;
    ms_zip *zip = NULL;
    ms_status st = ms_zip_open(&zip, path); /* before npz_wrap reads zip */
    return npz_wrap(out, zip, st);
}

ms_status ms_npz_open_mem(ms_npz **out, const void *data, size_t len, const char *label) {
    if (!out) return ms_fail(MS_ERR_ARG, "%s: ms_npz_open_mem: NULL argument", label ? label : "<memory>");
    *out = NULL;
    ms_zip *zip = NULL;
    ms_status st = ms_zip_open_mem(&zip, data, len, label);
    return npz_wrap(out, zip, st);
}

void ms_npz_close(ms_npz *z) {
    if (!z) return;
    ms_zip_close(z->zip);
    for (int i = 0; i < z->n; i++) free(z->a[i].key);
    free(z->a);
    free(z->sorted);
    free(z);
}

int ms_npz_count(const ms_npz *z) { return z ? z->n : 0; }
const char *ms_npz_key(const ms_npz *z, int i) { return z && i >= 0 && i < z->n ? z->a[i].key : NULL; }

static const npz_array *find_array(const ms_npz *z, const char *key) {
    int lo = 0, hi = z->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(key, z->sorted[mid]->key);
        if (c == 0) return z->sorted[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

int ms_npz_has(const ms_npz *z, const char *key) { return z && key && find_array(z, key) != NULL; }

/* MS_ERR_NOTFOUND naming the key and the available ones (shortened to fit the detail). */
static ms_status not_found(const ms_npz *z, const char *key) {
    char list[320];
    size_t o = 0;
    list[0] = 0;
    for (int i = 0; i < z->n; i++) {
        size_t kl = strlen(z->a[i].key);
        if (o + kl + 8 >= sizeof list) {
            snprintf(list + o, sizeof list - o, "%s...", i ? ", " : "");
            break;
        }
        o += (size_t)snprintf(list + o, sizeof list - o, "%s'%s'", i ? ", " : "", z->a[i].key);
    }
    return ms_fail(MS_ERR_NOTFOUND, "%s: no array '%.100s' (available: %s)", z->name, key, z->n ? list : "none");
}

/* ------------------------------------------------------------------ reading an array */
typedef struct {
    ms_zip_reader r;
    ms_npy_header h;
    char label[400];  /* "file.npz: array 'key'" for messages */
    size_t isz, next; /* element size; elements delivered so far (C order) */
    uint8_t *whole;   /* Fortran order: the whole payload in native byte order */
} array_reader;

static void ar_close(array_reader *a) {
    ms_zip_reader_close(&a->r);
    free(a->whole);
    a->whole = NULL;
}

/* Open the entry of `key`, read and validate its npy header; on success the entry reader is
 * positioned at the array data and a must be closed by the caller. */
static ms_status ar_open_header(ms_npz *z, const char *key, array_reader *a) {
    memset(a, 0, sizeof *a);
    if (!z || !key) return ms_fail(MS_ERR_ARG, "npz: NULL argument");
    const npz_array *arr = find_array(z, key);
    if (!arr) return not_found(z, key);
    const ms_zip_entry *e = arr->e;
    snprintf(a->label, sizeof a->label, "%s: array '%.200s'", z->name, key);
    ms_status st = ms_zip_reader_open(&a->r, z->zip, e);
    if (st) return st;
    char *h = NULL;
    uint8_t pre[12];
    size_t lsz = 0;
    if (e->usize < 10) {
        st = ms_fail(MS_ERR_FORMAT, "%s: entry too short for an npy header (%llu bytes)", a->label, (ull)e->usize);
        goto done;
    }
    if ((st = ms_zip_read(&a->r, pre, 8)) || (st = ms_npy_check_magic(a->label, pre, &lsz)) ||
        (st = ms_zip_read(&a->r, pre + 8, lsz)))
        goto done;
    uint64_t hlen = lsz == 2 ? (uint64_t)(pre[8] | pre[9] << 8)
                             : (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
    uint64_t prefix = 8 + lsz;
    if (hlen > e->usize - prefix) {
        st = ms_fail(MS_ERR_FORMAT, "%s: npy header length %llu exceeds the entry (%llu bytes)", a->label, (ull)hlen,
                     (ull)e->usize);
        goto done;
    }
    if (hlen > MS_NPY_MAX_HEADER) {
        st = ms_fail(MS_ERR_LIMIT, "%s: npy header of %llu bytes is too large", a->label, (ull)hlen);
        goto done;
    }
    if (!(h = malloc((size_t)hlen + 1))) {
        st = ms_fail(MS_ERR_NOMEM, "%s: out of memory", z->name);
        goto done;
    }
    if ((st = ms_zip_read(&a->r, h, (size_t)hlen))) goto done;
    h[hlen] = 0;
    if ((st = ms_npy_parse_header(a->label, h, (size_t)hlen, &a->h)) ||
        (st = ms_npy_check_payload(a->label, &a->h.info, e->usize - prefix - hlen)))
        goto done;
    a->isz = ms_dtype_size(a->h.info.dtype);
done:
    free(h);
    if (st) ar_close(a);
    return st;
}

/* After the header: a Fortran-order array is read whole (its CRC checked before anything is
 * delivered); nothing to do in C order. */
static ms_status ar_load(array_reader *a) {
    if (!a->h.fortran) return MS_OK;
    ms_status st;
    size_t bytes = (size_t)a->h.info.count * a->isz; /* checked by ms_npy_check_payload */
    if (!(a->whole = malloc(bytes ? bytes : 1))) {
        st = ms_fail(MS_ERR_NOMEM, "%s: out of memory for %zu bytes (Fortran order is read whole)", a->label, bytes);
    } else if (!(st = ms_zip_read(&a->r, a->whole, bytes)) && !(st = ms_zip_reader_finish(&a->r))) {
        if (ms_npy_needs_swap(&a->h.info)) ms_npy_bswap(a->whole, (size_t)a->h.info.count, a->isz);
    }
    if (st) ar_close(a);
    return st;
}

/* The next m elements in C order and native byte order. */
static ms_status ar_next(array_reader *a, void *out, size_t m) {
    if (a->whole) {
        ms_npy_fortran_gather(a->whole, &a->h.info, a->next, m, out);
    } else {
        ms_status st = ms_zip_read(&a->r, out, m * a->isz);
        if (st) return st;
        if (ms_npy_needs_swap(&a->h.info)) ms_npy_bswap(out, m, a->isz);
    }
    a->next += m;
    return MS_OK;
}

/* All elements delivered: the entry must end there and its CRC match (already checked for a
 * Fortran-order array). */
static ms_status ar_finish(array_reader *a) { return a->whole ? MS_OK : ms_zip_reader_finish(&a->r); }

ms_status ms_npz_info(ms_npz *z, const char *key, ms_npy_info *info) {
    if (!info) return ms_fail(MS_ERR_ARG, "npz: NULL argument");
    array_reader a;
    ms_status st = ar_open_header(z, key, &a);
    if (st) return st;
    *info = a.h.info;
    ar_close(&a);
    return MS_OK;
}

/* Read a whole array into dst as kind k. */
static ms_status read_array(ms_npz *z, const char *key, void *dst, size_t n, ms_npy_target k) {
    array_reader a;
    ms_status st = ar_open_header(z, key, &a);
    if (st) return st;
    const ms_npy_info *info = &a.h.info;
    uint8_t *buf = NULL;
    char sh[200];
    if (k == MS_NPY_TO_U8 && info->dtype != MS_DT_U1) {
        st = ms_fail(MS_ERR_SHAPE, "%s is %s, not uint8", a.label, ms_dtype_name(info->dtype));
        goto done;
    }
    if (k == MS_NPY_TO_I64 && ms_npy_is_float(info->dtype)) {
        st = ms_fail(MS_ERR_SHAPE, "%s is %s, not an integer type", a.label, ms_dtype_name(info->dtype));
        goto done;
    }
    if ((uint64_t)n != (uint64_t)info->count) {
        st = ms_fail(MS_ERR_SHAPE, "%s has %lld elements (shape %s), caller expects %zu", a.label,
                     (long long)info->count, ms_npy_shape_str(sh, sizeof sh, info->ndim, info->shape), n);
        goto done;
    }
    if (!dst && n) {
        st = ms_fail(MS_ERR_ARG, "%s: NULL destination", a.label);
        goto done;
    }
    if ((st = ar_load(&a))) goto done;
    int same = (k == MS_NPY_TO_U8) || (k == MS_NPY_TO_I64 && info->dtype == MS_DT_I8) ||
               (k == MS_NPY_TO_F32 && info->dtype == MS_DT_F4) || (k == MS_NPY_TO_F64 && info->dtype == MS_DT_F8);
    if (same) { /* identical representation: inflate/read straight into the destination */
        if ((st = ar_next(&a, dst, n))) goto done;
    } else {
        size_t chunk = CONV_CHUNK / a.isz;
        if (!(buf = malloc(MS_MAX(MS_MIN(n, chunk), (size_t)1) * a.isz))) {
            st = ms_fail(MS_ERR_NOMEM, "%s: out of memory", z->name);
            goto done;
        }
        for (size_t done_n = 0; done_n < n;) {
            size_t m = MS_MIN(n - done_n, chunk);
            if ((st = ar_next(&a, buf, m))) goto done;
            ms_npy_convert(buf, m, info->dtype, k, (uint8_t *)dst + done_n * ms_npy_target_size(k));
            done_n += m;
        }
    }
    st = ar_finish(&a);
done:
    free(buf);
    ar_close(&a);
    return st;
}

ms_status ms_npz_read_f32(ms_npz *z, const char *key, float *dst, size_t n) { return read_array(z, key, dst, n, MS_NPY_TO_F32); }
ms_status ms_npz_read_f64(ms_npz *z, const char *key, double *dst, size_t n) { return read_array(z, key, dst, n, MS_NPY_TO_F64); }
ms_status ms_npz_read_i64(ms_npz *z, const char *key, int64_t *dst, size_t n) { return read_array(z, key, dst, n, MS_NPY_TO_I64); }
ms_status ms_npz_read_u8(ms_npz *z, const char *key, uint8_t *dst, size_t n) { return read_array(z, key, dst, n, MS_NPY_TO_U8); }

/* Note: the CRC can only be checked at the end, so a corrupt entry is reported (MS_ERR_CHECKSUM)
 * after its chunks were delivered; callers must discard what they accumulated on failure. */
ms_status ms_npz_stream(ms_npz *z, const char *key, ms_npz_chunk_cb cb, void *user) {
    if (!cb) return ms_fail(MS_ERR_ARG, "ms_npz_stream: NULL callback");
    array_reader a;
    ms_status st = ar_open_header(z, key, &a);
    if (st) return st;
    if ((st = ar_load(&a))) return st;
    size_t n = (size_t)a.h.info.count, cap = MS_MAX(MS_MIN(n, (size_t)STREAM_ELEMS), (size_t)1);
    uint8_t *raw = malloc(cap * a.isz);
    double *vals = malloc(cap * sizeof *vals);
    if (!raw || !vals) {
        st = ms_fail(MS_ERR_NOMEM, "%s: out of memory", z->name);
        goto done;
    }
    for (size_t done_n = 0; done_n < n;) {
        size_t m = MS_MIN(n - done_n, cap);
        if ((st = ar_next(&a, raw, m))) goto done;
        ms_npy_convert(raw, m, a.h.info.dtype, MS_NPY_TO_F64, vals);
        if ((st = cb(user, (int64_t)done_n, vals, m))) goto done;
        done_n += m;
    }
    st = ar_finish(&a);
done:
    free(raw);
    free(vals);
    ar_close(&a);
    return st;
}

/* ------------------------------------------------------------------ writer */
/* An npz writer is a zip writer whose members are "<key>.npy" (the opaque types convert). */
ms_status ms_npz_writer_open(ms_npz_writer **out, const char *path) {
    if (!out) return ms_fail(MS_ERR_ARG, "ms_npz_writer_open: NULL argument");
    ms_zip_writer *zw = NULL;
    ms_status st = ms_zip_writer_open(&zw, path);
    *out = (ms_npz_writer *)zw;
    return st;
}

ms_status ms_npz_writer_add(ms_npz_writer *w, const char *key, ms_dtype dtype, int ndim,
                            const int64_t *shape, const void *data) {
    if (!w || !key) return ms_fail(MS_ERR_ARG, "ms_npz_writer_add: NULL argument");
    const char *p = ms_zip_writer_path((ms_zip_writer *)w);
    size_t klen = strlen(key);
    if (klen > ZIP_U16_MAX_FIELD - 4) return ms_fail(MS_ERR_ARG, "%s: key of %zu bytes is too long", p, klen);
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
    char *name = malloc(klen + 5), hdr[MS_NPY_PRINT_MAX];
    if (!name) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", p);
    memcpy(name, key, klen);
    memcpy(name + klen, ".npy", 5);
    const void *piece[2] = {hdr, data};
    size_t len[2] = {ms_npy_print_header(hdr, dtype, ndim, shape), bytes};
    ms_status st = ms_zip_writer_add((ms_zip_writer *)w, name, piece, len, 2);
    free(name);
    return st;
}

ms_status ms_npz_writer_commit(ms_npz_writer *w) { return ms_zip_writer_commit((ms_zip_writer *)w); }
void ms_npz_writer_abort(ms_npz_writer *w) { ms_zip_writer_abort((ms_zip_writer *)w); }
