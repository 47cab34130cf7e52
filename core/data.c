/* Datasets: loading an npz into u8 image/mask arrays (ms_dataset_load/ms_dataset_free). What the
 * training engine then does with them is data_prep.c (duplicate masks, class statistics, split,
 * oversampling) and augment.c (augmentation, batches). See data.h for the contracts. */
#include "data.h"
#include "marsseg_npz.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ================================================================== loading */

typedef struct {
    const char *path, *key;
    int labelled;     /* (N,2,H,W): element blocks alternate image, mask */
    int unit_range;   /* float dtype and every image value so far was <= 1.0 */
    int w;            /* for error messages */
    size_t hw;        /* pixels per tile */
    int64_t total;    /* elements the stream must deliver */
    int64_t seen;     /* elements delivered so far */
    uint8_t *img, *mask;
} load_ctx;

static ms_status bad_value(const load_ctx *c, const char *what, double v, size_t sample, size_t off, int64_t elem,
                           const char *want) {
    return ms_fail(MS_ERR_FORMAT, "%s: key '%s': %s value %.17g at sample %zu, pixel (y=%zu, x=%zu) (element %lld) %s",
                   c->path, c->key, what, v, sample, off / (size_t)c->w, off % (size_t)c->w, (long long)elem, want);
}

/* Converts one run of values that all belong to the same tile and channel. */
static ms_status convert_run(load_ctx *c, const double *v, size_t n, size_t sample, size_t off, int is_mask,
                             int64_t elem) {
    if (is_mask) {
        uint8_t *d = c->mask + sample * c->hw + off;
        for (size_t j = 0; j < n; j++) {
            double x = v[j];
            /* also refuses NaN (comparisons false) and fractions */
            if (!(x >= 0.0 && x <= MS_NUM_CLASSES - 1) || x != floor(x))
                return bad_value(c, "mask", x, sample, off + j, elem + (int64_t)j, "is not a class id 0..4");
            d[j] = (uint8_t)x;
        }
        return MS_OK;
    }
    uint8_t *d = c->img + sample * c->hw + off;
    for (size_t j = 0; j < n; j++) {
        double x = v[j];
        if (!(x >= 0.0 && x <= 255.0))
            return bad_value(c, "image", x, sample, off + j, elem + (int64_t)j, "is outside 0..255");
        if (c->unit_range) {
            if (x <= 1.0) {
                d[j] = (uint8_t)(x * 255.0 + 0.5);
                continue;
            }
            /* The image is 0..255 after all. Everything stored so far (a prefix of img, as the
             * stream is in C order) was some x <= 1 stored as round(255x); the 0..255 reading
             * wants round(x), which is 1 exactly when round(255x) >= 128. */
            c->unit_range = 0;
            size_t done = (size_t)(d + j - c->img);
            for (size_t k = 0; k < done; k++) c->img[k] = c->img[k] >= 128;
        }
        d[j] = (uint8_t)(x + 0.5);
    }
    return MS_OK;
}

static ms_status load_chunk(void *user, int64_t first, const double *vals, size_t n) {
    load_ctx *c = user;
    if (first != c->seen || (int64_t)n > c->total - first)
        return ms_fail(MS_ERR_INTERNAL, "%s: key '%s': stream chunk at %lld (+%zu) out of order", c->path, c->key,
                       (long long)first, n);
    size_t e = (size_t)first;
    while (n > 0) {
        size_t blk = e / c->hw, off = e % c->hw, run = MS_MIN(n, c->hw - off);
        size_t sample = c->labelled ? blk / 2 : blk;
        int is_mask = c->labelled && (blk & 1);
        ms_status st = convert_run(c, vals, run, sample, off, is_mask, (int64_t)e);
        if (st != MS_OK) return st;
        vals += run;
        e += run;
        n -= run;
    }
    c->seen = (int64_t)e;
    return MS_OK;
}

/* "a, b, c" (truncated with "..." if long) for the missing-key message. */
static void list_keys(const ms_npz *z, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < ms_npz_count(z); i++) {
        int r = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", ms_npz_key(z, i));
        if (r < 0 || (size_t)r >= cap - used) {
            if (cap > 4) memcpy(buf + cap - 4, "...", 4);
            return;
        }
        used += (size_t)r;
    }
    if (used == 0) snprintf(buf, cap, "none");
}

static ms_status first_bad_mask_u8(const char *path, const char *key, const uint8_t *m, size_t total, size_t hw,
                                   int w) {
    for (size_t i = 0; i < total; i++)
        if (m[i] >= MS_NUM_CLASSES) {
            size_t s = i / hw, off = i % hw;
            return ms_fail(MS_ERR_FORMAT,
                           "%s: key '%s': mask value %u at sample %zu, pixel (y=%zu, x=%zu) is not a class id 0..4",
                           path, key, (unsigned)m[i], s, off / (size_t)w, off % (size_t)w);
        }
    return MS_OK;
}

/* malloc for the big dataset arrays, asking Linux for transparent huge pages (a hint; THP is
 * usually in "madvise" mode): first-touch page faults on 4 KB pages were a third of the load
 * time of the 12000-tile set, and 2 MB pages also spare the TLB during training. */
static void *big_malloc(size_t n) {
    void *p = malloc(n);
#ifdef MADV_HUGEPAGE
    const uintptr_t pg = 4096;
    if (p && n >= ((size_t)4 << 20)) {
        uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), e = ((uintptr_t)p + n) & ~(pg - 1);
        (void)madvise((void *)a, e - a, MADV_HUGEPAGE); /* failure only loses the speed-up */
    }
#endif
    return p;
}

/* De-interleaves the (N,2,H,W) array `both` into img and mask, walking from the last tile and
 * shrinking `both` as it goes. img and mask are fresh allocations whose pages the kernel only
 * commits when first written, and each step gives the source's tail pages back (glibc shrinks
 * large blocks in place with mremap), so the resident peak stays near 2 bytes per pixel instead
 * of the 3 that a copy-then-free would need. Elsewhere only the peak differs. Frees `both`;
 * returns NULL. */
static uint8_t *split_from_tail(uint8_t *both, size_t n, size_t hw, uint8_t *img, uint8_t *mask) {
    const size_t step = 64; /* tiles per shrink: 1 MB of 64x128 tile pairs */
    size_t left = n;
    int shrink = 1;
    while (left > 0) {
        size_t first = left > step ? left - step : 0;
        for (size_t i = first; i < left; i++) {
            memcpy(img + i * hw, both + 2 * i * hw, hw);
            memcpy(mask + i * hw, both + (2 * i + 1) * hw, hw);
        }
        left = first;
        if (left && shrink) {
            uint8_t *p = realloc(both, 2 * left * hw);
            /* An allocator that moves instead of shrinking in place (ASan's does) would copy
             * the rest at every step, quadratic: stop asking after the first move. A failed
             * shrink just keeps the bigger block. */
            if (p && p != both) shrink = 0;
            if (p) both = p;
        }
    }
    free(both);
    return NULL;
}

ms_status ms_dataset_load(ms_dataset *ds, const char *path, const char *key, size_t max_bytes) {
    if (!ds || !path || !key) return ms_fail(MS_ERR_ARG, "dataset_load: NULL argument");
    memset(ds, 0, sizeof *ds);
    ms_npz *z = NULL;
    uint8_t *img = NULL, *mask = NULL, *both = NULL;
    ms_status st = ms_npz_open(&z, path);
    if (st != MS_OK) return st; /* the npz reader's detail names the file */

    ms_npy_info info;
    if (!ms_npz_has(z, key)) {
        char keys[256];
        list_keys(z, keys, sizeof keys);
        st = ms_fail(MS_ERR_NOTFOUND, "%s: no array '%s' (available: %s)", path, key, keys);
        goto done;
    }
    if ((st = ms_npz_info(z, key, &info)) != MS_OK) goto done;

    int labelled = info.ndim == 4;
    if (!((info.ndim == 4 && info.shape[1] == 2) || info.ndim == 3)) {
        char shp[128];
        size_t u = 0;
        shp[0] = 0;
        for (int i = 0; i < info.ndim && u < sizeof shp; i++)
            u += (size_t)snprintf(shp + u, sizeof shp - u, "%s%lld", i ? "," : "", (long long)info.shape[i]);
        st = ms_fail(MS_ERR_SHAPE, "%s: key '%s' has shape (%s); want (N,2,H,W) image+mask or (N,H,W) images",
                     path, key, shp);
        goto done;
    }
    int64_t N = info.shape[0], H = info.shape[info.ndim - 2], W = info.shape[info.ndim - 1];
    size_t hw, nhw, need;
    if (N < 1 || H < 1 || W < 1 || N > INT32_MAX || H > INT32_MAX || W > INT32_MAX ||
        !ms_mul_size((size_t)H, (size_t)W, &hw) || hw > INT32_MAX || !ms_mul_size((size_t)N, hw, &nhw) ||
        !ms_mul_size(nhw, labelled ? 2 : 1, &need)) {
        st = ms_fail(MS_ERR_SHAPE, "%s: key '%s': unusable dimensions N=%lld H=%lld W=%lld", path, key,
                     (long long)N, (long long)H, (long long)W);
        goto done;
    }
    /* What stays resident at the peak: the two final arrays (see split_from_tail for uint8). */
    if (max_bytes && need > max_bytes) {
        st = ms_fail(MS_ERR_LIMIT, "%s: key '%s': %lld samples of %lldx%lld need %zu bytes, over the limit of %zu bytes",
                     path, key, (long long)N, (long long)H, (long long)W, need, max_bytes);
        goto done;
    }
    int fast = info.dtype == MS_DT_U1;
    const char *range = "0..255";
    if (fast && labelled) {
        if (!(img = big_malloc(nhw)) || !(mask = big_malloc(nhw)) || !(both = big_malloc(need))) {
            st = ms_fail(MS_ERR_NOMEM, "%s: key '%s': out of memory for %zu bytes", path, key, need);
            goto done;
        }
        if ((st = ms_npz_read_u8(z, key, both, need)) != MS_OK) goto done;
        both = split_from_tail(both, (size_t)N, hw, img, mask);
        if ((st = first_bad_mask_u8(path, key, mask, nhw, hw, (int)W)) != MS_OK) goto done;
    } else if (fast) {
        if (!(img = big_malloc(nhw))) {
            st = ms_fail(MS_ERR_NOMEM, "%s: key '%s': out of memory for %zu bytes", path, key, nhw);
            goto done;
        }
        if ((st = ms_npz_read_u8(z, key, img, nhw)) != MS_OK) goto done;
    } else {
        if (!(img = big_malloc(nhw)) || (labelled && !(mask = big_malloc(nhw)))) {
            st = ms_fail(MS_ERR_NOMEM, "%s: key '%s': out of memory for %zu bytes", path, key, need);
            goto done;
        }
        int is_float = info.dtype == MS_DT_F2 || info.dtype == MS_DT_F4 || info.dtype == MS_DT_F8;
        load_ctx c = {.path = path, .key = key, .labelled = labelled, .unit_range = is_float,
                      .w = (int)W, .hw = hw, .total = (int64_t)need, .img = img, .mask = mask};
        if ((st = ms_npz_stream(z, key, load_chunk, &c)) != MS_OK) goto done;
        if (c.seen != c.total) {
            st = ms_fail(MS_ERR_FORMAT, "%s: key '%s': %lld of %lld elements delivered", path, key,
                         (long long)c.seen, (long long)c.total);
            goto done;
        }
        if (c.unit_range) range = "0..1";
    }
    ds->n = (int)N;
    ds->h = (int)H;
    ds->w = (int)W;
    ds->img = img;
    ds->mask = mask;
    snprintf(ds->img_range, sizeof ds->img_range, "%s", range);
    img = mask = NULL;
done:
    free(both);
    free(img);
    free(mask);
    ms_npz_close(z);
    return st;
}

void ms_dataset_free(ms_dataset *ds) {
    if (!ds) return;
    free(ds->img);
    free(ds->mask);
    memset(ds, 0, sizeof *ds);
}
