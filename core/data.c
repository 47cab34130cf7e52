/* Datasets: loading an npz into u8 image/mask arrays, and the preprocessing the training
 * engine does on them (duplicate masks, class statistics, split, oversampling, augmentation,
 * batches). See data.h for the contracts. */
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

/* ================================================================== duplicate masks */

/* Word-at-a-time multiplicative hash: collisions are only a speed matter, memcmp decides. */
static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        h = (h ^ v) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 33);
}

typedef struct {
    uint64_t h;
    int idx;
} hash_idx;

static int cmp_hash_idx(const void *a, const void *b) {
    const hash_idx *x = a, *y = b;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* rep[i] = first sample whose mask equals sample i's; cnt[r] = size of the group of rep r. */
static ms_status mask_groups(const ms_dataset *ds, int *rep, int *cnt) {
    size_t hw = (size_t)ds->h * (size_t)ds->w;
    hash_idx *hi = malloc((size_t)ds->n * sizeof *hi);
    if (!hi) return ms_fail(MS_ERR_NOMEM, "duplicate masks: out of memory for %d hashes", ds->n);
    for (int i = 0; i < ds->n; i++) {
        hi[i].h = hash_bytes(ds->mask + (size_t)i * hw, hw);
        hi[i].idx = i;
        rep[i] = -1;
        cnt[i] = 0;
    }
    qsort(hi, (size_t)ds->n, sizeof *hi, cmp_hash_idx);
    for (int a = 0; a < ds->n;) {
        int b = a + 1;
        while (b < ds->n && hi[b].h == hi[a].h) b++;
        /* within a run of equal hashes (ascending indices), split by actual content */
        for (int j = a; j < b; j++) {
            int r = hi[j].idx;
            if (rep[r] >= 0) continue;
            rep[r] = r;
            cnt[r] = 1;
            const uint8_t *mr = ds->mask + (size_t)r * hw;
            for (int k = j + 1; k < b; k++) {
                int q = hi[k].idx;
                if (rep[q] < 0 && memcmp(mr, ds->mask + (size_t)q * hw, hw) == 0) {
                    rep[q] = r;
                    cnt[r]++;
                }
            }
        }
        a = b;
    }
    free(hi);
    return MS_OK;
}

static ms_status alloc_groups(const ms_dataset *ds, int **rep, int **cnt) {
    *rep = malloc((size_t)ds->n * sizeof **rep);
    *cnt = malloc((size_t)ds->n * sizeof **cnt);
    if (!*rep || !*cnt) return ms_fail(MS_ERR_NOMEM, "duplicate masks: out of memory for %d samples", ds->n);
    return mask_groups(ds, *rep, *cnt);
}

ms_status ms_dedup_masks(ms_dataset *ds, int k, int *dropped) {
    if (dropped) *dropped = 0;
    if (!ds || !ds->mask || ds->n < 0) return ms_fail(MS_ERR_ARG, "dedup: the dataset has no masks");
    if (k < 1) return ms_fail(MS_ERR_ARG, "dedup: k must be >= 1 (got %d)", k);
    if (ds->n == 0) return MS_OK;
    int *rep = NULL, *cnt = NULL;
    ms_status st = alloc_groups(ds, &rep, &cnt);
    if (st == MS_OK) {
        size_t hw = (size_t)ds->h * (size_t)ds->w;
        int out = 0;
        for (int i = 0; i < ds->n; i++) {
            if (cnt[rep[i]] > k) continue;
            if (out != i) {
                memmove(ds->img + (size_t)out * hw, ds->img + (size_t)i * hw, hw);
                memmove(ds->mask + (size_t)out * hw, ds->mask + (size_t)i * hw, hw);
            }
            out++;
        }
        if (dropped) *dropped = ds->n - out;
        ds->n = out;
    }
    free(rep);
    free(cnt);
    return st;
}

static int cmp_group(const void *a, const void *b) {
    const ms_mask_group *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return (x->first > y->first) - (x->first < y->first);
}

ms_status ms_duplicate_mask_groups(const ms_dataset *ds, int min_count, ms_mask_group **groups, int *ngroups) {
    if (!groups || !ngroups) return ms_fail(MS_ERR_ARG, "mask groups: NULL argument");
    *groups = NULL;
    *ngroups = 0;
    if (!ds || !ds->mask || ds->n < 0) return ms_fail(MS_ERR_ARG, "mask groups: the dataset has no masks");
    if (min_count < 1) return ms_fail(MS_ERR_ARG, "mask groups: min_count must be >= 1 (got %d)", min_count);
    if (ds->n == 0) return MS_OK;
    int *rep = NULL, *cnt = NULL;
    ms_status st = alloc_groups(ds, &rep, &cnt);
    int ng = 0;
    if (st == MS_OK) {
        for (int i = 0; i < ds->n; i++) ng += rep[i] == i && cnt[i] >= min_count;
        if (ng > 0) {
            ms_mask_group *g = malloc((size_t)ng * sizeof *g);
            if (!g) {
                st = ms_fail(MS_ERR_NOMEM, "mask groups: out of memory");
            } else {
                int j = 0;
                for (int i = 0; i < ds->n; i++)
                    if (rep[i] == i && cnt[i] >= min_count) g[j++] = (ms_mask_group){.first = i, .count = cnt[i]};
                qsort(g, (size_t)ng, sizeof *g, cmp_group);
                *groups = g;
                *ngroups = ng;
            }
        }
    }
    free(rep);
    free(cnt);
    return st;
}

/* ================================================================== class statistics */

void ms_class_pixel_counts(const ms_dataset *ds, const int *idx, int n, int64_t counts[MS_NUM_CLASSES]) {
    for (int c = 0; c < MS_NUM_CLASSES; c++) counts[c] = 0;
    if (!ds || !ds->mask) return;
    if (!idx) n = ds->n;
    size_t hw = (size_t)ds->h * (size_t)ds->w;
    /* A full byte histogram (4 interleaved tables to break the store-to-load dependency on
     * runs of one class), folded at the end; values >= MS_NUM_CLASSES cannot occur after
     * loading and are not counted. */
    int64_t hist[4][256];
    memset(hist, 0, sizeof hist);
    for (int k = 0; k < n; k++) {
        int i = idx ? idx[k] : k;
        if (i < 0 || i >= ds->n) continue;
        const uint8_t *m = ds->mask + (size_t)i * hw;
        size_t p = 0;
        for (; p + 4 <= hw; p += 4) {
            hist[0][m[p]]++;
            hist[1][m[p + 1]]++;
            hist[2][m[p + 2]]++;
            hist[3][m[p + 3]]++;
        }
        for (; p < hw; p++) hist[0][m[p]]++;
    }
    for (int c = 0; c < MS_NUM_CLASSES; c++) counts[c] = hist[0][c] + hist[1][c] + hist[2][c] + hist[3][c];
}

void ms_class_weights_from_counts(const int64_t counts[MS_NUM_CLASSES], float power, float bg_weight,
                                  float out[MS_NUM_CLASSES]) {
    double inv[MS_NUM_CLASSES] = {0}, sum = 0;
    int present = 0;
    for (int c = 1; c < MS_NUM_CLASSES; c++)
        if (counts[c] > 0) {
            inv[c] = pow((double)counts[c], -(double)power);
            sum += inv[c];
            present++;
        }
    for (int c = 1; c < MS_NUM_CLASSES; c++) out[c] = present ? (float)(inv[c] * present / sum) : 0.0f;
    /* a negative bg_weight means "by the same rule as the other classes" */
    if (bg_weight < 0) bg_weight = counts[0] > 0 && present ? (float)(pow((double)counts[0], -(double)power) * present / sum) : 0.0f;
    out[0] = bg_weight;
}

/* ================================================================== split and sampling */

void ms_shuffle_int(int *a, int n, ms_rng *rng) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)ms_rng_below(rng, (uint32_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

ms_status ms_split(int n, float val_frac, int group, uint64_t seed, int **train, int *ntrain, int **val,
                   int *nval) {
    if (!train || !ntrain || !val || !nval) return ms_fail(MS_ERR_ARG, "split: NULL argument");
    *train = *val = NULL;
    *ntrain = *nval = 0;
    if (n < 1) return ms_fail(MS_ERR_ARG, "split: no samples (n=%d)", n);
    if (group < 1) return ms_fail(MS_ERR_ARG, "split: group must be >= 1 (got %d)", group);
    if (!(val_frac >= 0.0f && val_frac <= 1.0f))
        return ms_fail(MS_ERR_ARG, "split: validation fraction %g is not in [0,1]", (double)val_frac);
    int ngroups = (int)(((int64_t)n + group - 1) / group);
    long nvg = lround((double)val_frac * ngroups);
    nvg = MS_MAX(0, MS_MIN(nvg, ngroups));
    int *perm = malloc((size_t)ngroups * sizeof *perm);
    unsigned char *is_val = calloc((size_t)ngroups, 1);
    int *tr = malloc((size_t)n * sizeof *tr), *va = malloc((size_t)n * sizeof *va);
    if (!perm || !is_val || !tr || !va) {
        free(perm);
        free(is_val);
        free(tr);
        free(va);
        return ms_fail(MS_ERR_NOMEM, "split: out of memory for %d samples", n);
    }
    ms_rng rng;
    ms_rng_seed(&rng, seed);
    for (int g = 0; g < ngroups; g++) perm[g] = g;
    ms_shuffle_int(perm, ngroups, &rng);
    for (long j = 0; j < nvg; j++) is_val[perm[j]] = 1;
    int nt = 0, nv = 0;
    for (int i = 0; i < n; i++) { /* ascending by construction */
        if (is_val[i / group]) va[nv++] = i;
        else tr[nt++] = i;
    }
    free(perm);
    free(is_val);
    *train = tr;
    *ntrain = nt;
    *val = va;
    *nval = nv;
    return MS_OK;
}

ms_status ms_oversample(const ms_dataset *ds, const int *idx, int n, int cls, int factor, int **out, int *nout) {
    if (!out || !nout || (!idx && n > 0)) return ms_fail(MS_ERR_ARG, "oversample: NULL argument");
    *out = NULL;
    *nout = 0;
    if (!ds || !ds->mask) return ms_fail(MS_ERR_ARG, "oversample: the dataset has no masks");
    if (cls < 0 || cls >= MS_NUM_CLASSES) return ms_fail(MS_ERR_ARG, "oversample: class %d is not 0..4", cls);
    if (factor < 1) return ms_fail(MS_ERR_ARG, "oversample: factor must be >= 1 (got %d)", factor);
    if (n < 0) return ms_fail(MS_ERR_ARG, "oversample: negative count %d", n);
    size_t hw = (size_t)ds->h * (size_t)ds->w;
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        if (idx[k] < 0 || idx[k] >= ds->n)
            return ms_fail(MS_ERR_ARG, "oversample: index %d at position %d is not a sample 0..%d", idx[k], k,
                           ds->n - 1);
        total += memchr(ds->mask + (size_t)idx[k] * hw, cls, hw) ? factor : 1;
    }
    if (total > INT32_MAX) return ms_fail(MS_ERR_LIMIT, "oversample: %lld indices is too many", (long long)total);
    int *o = malloc((size_t)MS_MAX(total, 1) * sizeof *o);
    if (!o) return ms_fail(MS_ERR_NOMEM, "oversample: out of memory for %lld indices", (long long)total);
    int j = 0;
    for (int k = 0; k < n; k++) {
        int reps = memchr(ds->mask + (size_t)idx[k] * hw, cls, hw) ? factor : 1;
        for (int r = 0; r < reps; r++) o[j++] = idx[k];
    }
    *out = o;
    *nout = j;
    return MS_OK;
}

/* ================================================================== augmentation */

/* Geometry helpers work on rows of w elements of es bytes, so the same code moves the float
 * image and the byte mask; `replicate` chooses edge replication or zero fill for what a shift
 * vacates. All in place: no allocation, so augmentation cannot fail. */

static void flip_rows(void *base, size_t es, int h, int w) {
    uint8_t *a = base, t[8];
    for (int y = 0; y < h; y++) {
        uint8_t *r = a + (size_t)y * w * es;
        for (int i = 0, j = w - 1; i < j; i++, j--) {
            memcpy(t, r + i * es, es);
            memcpy(r + i * es, r + j * es, es);
            memcpy(r + j * es, t, es);
        }
    }
}

static void shift_vertical(void *base, size_t es, int h, int w, int dy, int replicate) {
    uint8_t *a = base;
    size_t row = (size_t)w * es;
    if (dy > 0) { /* content moves down; walk bottom-up so sources are read before overwritten */
        for (int y = h - 1; y >= dy; y--) memcpy(a + y * row, a + (size_t)(y - dy) * row, row);
        for (int y = dy - 1; y >= 0; y--) {
            if (!replicate) memset(a + y * row, 0, row);
            else if (y > 0) memcpy(a + y * row, a, row); /* row 0 still holds the old top row */
        }
    } else if (dy < 0) {
        int d = -dy;
        for (int y = 0; y + d < h; y++) memcpy(a + y * row, a + (size_t)(y + d) * row, row);
        for (int y = h - d; y < h; y++) {
            if (!replicate) memset(a + y * row, 0, row);
            else if (y < h - 1) memcpy(a + y * row, a + (size_t)(h - 1) * row, row);
        }
    }
}

static void shift_horizontal(void *base, size_t es, int h, int w, int dx, int replicate) {
    if (dx == 0) return;
    uint8_t *a = base, edge[8];
    int d = dx > 0 ? dx : -dx;
    for (int y = 0; y < h; y++) {
        uint8_t *r = a + (size_t)y * w * es;
        if (replicate) memcpy(edge, dx > 0 ? r : r + (size_t)(w - 1) * es, es);
        else memset(edge, 0, es);
        if (dx > 0) memmove(r + (size_t)d * es, r, (size_t)(w - d) * es);
        else memmove(r, r + (size_t)d * es, (size_t)(w - d) * es);
        uint8_t *fill = dx > 0 ? r : r + (size_t)(w - d) * es;
        for (int i = 0; i < d; i++) memcpy(fill + (size_t)i * es, edge, es);
    }
}

void ms_augment(float *img, uint8_t *mask, int h, int w, const ms_augment_cfg *cfg, ms_rng *rng) {
    if (!img || !cfg || !rng || h <= 0 || w <= 0) return;
    int sx = MS_MAX(0, MS_MIN(cfg->max_shift, w - 1)), sy = MS_MAX(0, MS_MIN(cfg->max_shift, h - 1));
    /* the fixed draw order: flip, brightness, contrast, dx, dy */
    int flip = ms_rng_float(rng) < 0.5f;
    float db = (2.0f * ms_rng_float(rng) - 1.0f) * cfg->brightness;
    float cf = 1.0f + (2.0f * ms_rng_float(rng) - 1.0f) * cfg->contrast;
    int dx = (int)ms_rng_below(rng, (uint32_t)(2 * sx + 1)) - sx;
    int dy = (int)ms_rng_below(rng, (uint32_t)(2 * sy + 1)) - sy;

    if (cfg->hflip && flip) {
        flip_rows(img, sizeof *img, h, w);
        if (mask) flip_rows(mask, 1, h, w);
    }
    shift_vertical(img, sizeof *img, h, w, dy, 1);
    shift_horizontal(img, sizeof *img, h, w, dx, 1);
    if (mask) {
        shift_vertical(mask, 1, h, w, dy, 0);
        shift_horizontal(mask, 1, h, w, dx, 0);
    }
    size_t n = (size_t)h * (size_t)w;
    float mean = 0.0f;
    if (cfg->contrast != 0.0f) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += img[i];
        mean = (float)(s / (double)n);
    }
    for (size_t i = 0; i < n; i++) {
        float v = img[i];
        if (cfg->contrast != 0.0f) v = mean + (v - mean) * cf;
        v += db;
        img[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
}

/* ================================================================== batching */

void ms_batch_fill(const ms_dataset *ds, const int *order, int count, float *x, uint8_t *y,
                   const ms_augment_cfg *aug, ms_rng *rng) {
    if (!ds || !order || !x || count <= 0) return;
    /* table lookup: exactly v/255.0f, with no division per pixel */
    float lut[256];
    for (int v = 0; v < 256; v++) lut[v] = (float)v / 255.0f;
    size_t hw = (size_t)ds->h * (size_t)ds->w;
    for (int k = 0; k < count; k++) {
        size_t i = (size_t)order[k];
        const uint8_t *src = ds->img + i * hw;
        float *xd = x + (size_t)k * hw;
        uint8_t *yd = y ? y + (size_t)k * hw : NULL;
        for (size_t p = 0; p < hw; p++) xd[p] = lut[src[p]];
        if (yd) {
            if (ds->mask) memcpy(yd, ds->mask + i * hw, hw);
            else memset(yd, 0, hw);
        }
        if (aug && rng) ms_augment(xd, yd, ds->h, ds->w, aug, rng);
    }
}
